//! Pull-through registry caches: real registry containers with k3d's labels, shared by every
//! cluster (a second cluster makes none) and kept when a cluster goes.

mod support;

use support::{World, result, stderr};

#[test]
fn caches_are_shared_registry_containers_that_outlive_clusters() {
    if !support::require_docker() {
        return;
    }
    let w = World::new(true);
    let up = w.paddock(&["up", "ci", "-o", "json"]);
    assert_eq!(result(&up)["ok"], true, "{}", stderr(&up));
    let caches = w.cache_containers();
    assert_eq!(caches.len(), 5, "one per upstream: {caches:?}");
    for c in &caches {
        assert!(c.starts_with("k3d-t"), "k3d's container name: {c}");
        assert!(c.contains(" k3d "), "label app=k3d: {c}");
        assert!(c.contains("127.0.0.1:"), "published on loopback only: {c}");
        assert!(!c.contains("0.0.0.0"), "{c}");
    }
    let creates = |w: &World| {
        w.mutations()
            .iter()
            .filter(|m| m.starts_with("k3d registry create"))
            .count()
    };
    assert_eq!(creates(&w), 5);

    // A second cluster reuses them.
    let ci2 = std::fs::read_to_string(w.repo.path().join("clusters/ci.yaml"))
        .expect("ci.yaml")
        .replace("name: ci\n", "name: ci2\n");
    std::fs::write(w.repo.path().join("clusters/ci2.yaml"), ci2).expect("ci2.yaml");
    w.edit("clusters/ci2.yaml", |t| {
        format!("{t}k3d:\n  ports:\n    - port: \"127.0.0.1:{}:80\"\n      nodeFilters: [loadbalancer]\n", free())
    });
    let up2 = w.paddock(&["up", "ci2", "-o", "json"]);
    assert_eq!(
        result(&up2)["ok"],
        true,
        "{}{}",
        support::stdout(&up2),
        stderr(&up2)
    );
    assert_eq!(creates(&w), 5, "no new cache registries");
    assert_eq!(w.cache_containers(), caches, "the same cache containers");

    // Deleting a cluster keeps them.
    let down = w.paddock(&["down", "ci", "--yes"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(w.cache_containers(), caches, "caches outlive clusters");
}

fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}
