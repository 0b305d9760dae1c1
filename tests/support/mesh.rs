//! The `mesh` cluster of the upgrade scenarios (tests/upgrade.rs, tests/kill.rs): Istio with
//! namespaces on tag `stable`, on tag `canary` and with `istio-injection=enabled`, workloads
//! posted straight to its API, and the checks that everything runs one version.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Helm, World, api, result, stderr, stdout};

/// A cluster `mesh` on Istio `version`: namespaces on `stable`, on `canary`, and with
/// `istio-injection=enabled`.
pub fn mesh_world(version: &str, strategy: &str) -> World {
    mesh_world_with(version, strategy, Helm::Real)
}

/// [`mesh_world`] with the given helm.
pub fn mesh_world_with(version: &str, strategy: &str, helm: Helm) -> World {
    let w = World::with(false, helm);
    // The only cluster of this repository: it takes the `istio` profile's ports.
    for other in ["dev", "ci"] {
        std::fs::remove_file(w.repo.path().join(format!("clusters/{other}.yaml"))).expect("remove");
    }
    std::fs::write(w.repo.path().join("paddock.yaml"), "defaultCluster: mesh\n")
        .expect("paddock.yaml");
    std::fs::write(
        w.repo.path().join("clusters/mesh.yaml"),
        format!(
            "name: mesh\nprofile: istio\nistio:\n  version: {version}\n  upgrade:\n    strategy: {strategy}\n    gracePeriod: 1s\nnamespaces:\n  - name: apps\n    tag: stable\n  - name: apps-canary\n    canary: true\n  - name: legacy\n    injection: enabled\n"
        ),
    )
    .expect("cluster file");
    let up = w.paddock(&["up", "mesh", "-o", "json"]);
    assert_eq!(result(&up)["ok"], true, "{}{}", stdout(&up), stderr(&up));
    w
}

/// A workload of `kind` running image `example/NAME:1`, with `extra` merged into its spec.
pub fn workload(kind: &str, name: &str, replicas: Option<u32>, extra: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": format!("example/{name}:1")}]}}});
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    paddock_sim::store::merge_patch(&mut spec, &extra);
    json!({"apiVersion": if kind == "Job" { "batch/v1" } else { "apps/v1" }, "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// POST `body` to `path` of cluster `mesh`, which must create it.
pub fn post(w: &World, path: &str, body: Value) {
    let (code, resp) = api(w, "mesh", "POST", path, Some(&body));
    assert_eq!(code, 201, "POST {path}: {resp}");
}

/// A canary Deployment and a stable one, started.
pub fn two_workloads(w: &World) {
    post(
        w,
        "/apis/apps/v1/namespaces/apps-canary/deployments",
        workload("Deployment", "canary-web", Some(1), json!({})),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/apps/deployments",
        workload("Deployment", "web", Some(2), json!({})),
    );
    std::thread::sleep(Duration::from_millis(300));
}

/// `paddock status mesh -o json`.
pub fn status(w: &World) -> Value {
    let out = w.paddock(&["status", "mesh", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Every meshed workload runs `version` and needs no restart; Jobs are left as they were.
pub fn assert_all_on(w: &World, version: &str) {
    let s = status(w);
    for wl in s["workloads"].as_array().expect("workloads") {
        let ns = wl["namespace"].as_str().unwrap_or_default();
        if ns == "istio-system" || wl["kind"] == "Job" {
            continue;
        }
        assert_eq!(wl["proxyVersions"], json!([version]), "{wl}");
        assert_eq!(wl["needsRestart"], false, "{wl}");
    }
}

/// Every release is `deployed` at `version` as the real helm's own `list` reports it, and no
/// release of another Istio version is left (with the fake helm: nothing to ask).
pub fn assert_releases_deployed(w: &World, version: &str) {
    if w.real_helm.is_none() {
        return;
    }
    let rel = w.helm_list("mesh");
    assert!(!rel.is_empty());
    for r in &rel {
        assert_eq!(r["status"], "deployed", "{rel:?}");
        assert!(
            r["chart"]
                .as_str()
                .is_some_and(|c| c.ends_with(&format!("-{version}"))),
            "{rel:?}"
        );
    }
}

/// Count the mutating API requests whose path ends with `suffix`.
pub fn patches(w: &World, suffix: &str) -> usize {
    w.requests("mesh")
        .1
        .iter()
        .filter(|r| r.starts_with("PATCH") && r.ends_with(suffix))
        .count()
}
