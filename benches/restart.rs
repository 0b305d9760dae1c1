//! `cargo bench --bench restart`: `paddock restart` of 500 Deployments in 50 namespaces
//! against the sim with 100 ms pod start latency: wall time with bounded concurrency versus a
//! one-at-a-time baseline, and API requests per workload. Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{World, api, result};

fn main() {
    let w = World::new(false);
    for other in ["dev", "ci"] {
        let _ = std::fs::remove_file(w.repo.path().join(format!("clusters/{other}.yaml")));
    }
    std::fs::write(w.repo.path().join("paddock.yaml"), "defaultCluster: load\n")
        .expect("paddock.yaml");
    std::fs::write(
        w.repo.path().join("clusters/load.yaml"),
        "name: load\nprofile: istio\n",
    )
    .expect("cluster");
    let up = w.paddock(&["up", "load", "-o", "json"]);
    assert_eq!(result(&up)["ok"], true, "{}", support::stderr(&up));
    w.set_knobs(&paddock_sim::knobs::Knobs {
        pod_start_ms: 100,
        ..Default::default()
    });
    for n in 0..50 {
        let ns = format!("team-{n:02}");
        let (code, body) = api(
            &w,
            "load",
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"metadata": {"name": ns, "labels": {"istio.io/rev": "stable"}}})),
        );
        assert_eq!(code, 201, "{body}");
        for d in 0..10 {
            let name = format!("svc-{d}");
            let obj = json!({"metadata": {"name": name}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}}});
            let (code, body) = api(
                &w,
                "load",
                "POST",
                &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                Some(&obj),
            );
            assert_eq!(code, 201, "{body}");
        }
    }
    wait_ready(&w);
    // All 500 at once, bounded; then the same 50-workload slice bounded and one at a time
    // (a full one-at-a-time run takes longer than a benchmark should).
    let slice: Vec<String> = (0..5).map(|n| format!("team-{n:02}")).collect();
    let runs: [(&str, &str, Vec<String>); 3] = [
        ("all namespaces, 32 at a time", "32", Vec::new()),
        ("5 namespaces, 32 at a time", "32", slice.clone()),
        ("5 namespaces, one at a time", "1", slice),
    ];
    for (label, concurrency, namespaces) in runs {
        let (before, _) = w.requests("load");
        let mut args = vec![
            "restart",
            "load",
            "--max-concurrent",
            concurrency,
            "-q",
            "-o",
            "json",
        ];
        for ns in &namespaces {
            args.extend(["--namespace", ns.as_str()]);
        }
        let t = Instant::now();
        let out = w.paddock(&args);
        let wall = t.elapsed();
        let r = result(&out);
        assert_eq!(r["ok"], true, "{}", support::stderr(&out));
        let restarted = r["report"]["restarted"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let (after, _) = w.requests("load");
        println!(
            "restart of {restarted} workloads ({label}): {:.1} s ({:.0} ms per workload), {:.1} API requests per workload",
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1000.0 / restarted.max(1) as f64,
            (after - before) as f64 / restarted.max(1) as f64
        );
        wait_ready(&w);
    }
}

fn wait_ready(w: &World) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list) = api(w, "load", "GET", "/apis/apps/v1/deployments", None);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let ready = items
            .iter()
            .filter(|d| {
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("team-")
            })
            .filter(|d| {
                d["status"]["readyReplicas"] == 1
                    && d["status"]["updatedReplicas"] == 1
                    && d["status"]["replicas"] == 1
            })
            .count();
        if ready == 500 {
            return;
        }
        assert!(Instant::now() < deadline, "only {ready} of 500 ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}
