//! `status --output json` reports what the sim actually runs: a workload on the current
//! revision, one left on an older revision after its namespace moved (needs a restart), and one
//! outside the mesh.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{World, api, result, stderr};

fn deployment(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("example/{name}:1")}]}}}})
}

#[test]
fn status_json_matches_the_clusters_actual_state() {
    let w = World::new(false);
    let up = w.paddock(&["up", "ci", "-o", "json"]);
    assert_eq!(result(&up)["ok"], true, "{}", stderr(&up));
    let kc = w.state.path().join("clusters/ci/kubeconfig");
    let kc = kc.to_str().expect("utf8");
    let istio = w.istio_repo();
    let old = w.tool(
        "helm",
        &[
            "upgrade",
            "--install",
            "istiod-1-29-6",
            "istiod",
            "--repo",
            &istio,
            "--version",
            "1.29.6",
            "-n",
            "istio-system",
            "--set",
            "revision=1-29-6",
            "--wait",
            "--kubeconfig",
            kc,
        ],
    );
    assert!(old.status.success(), "{}", stderr(&old));
    for (ns, labels) in [
        ("older", json!({"istio.io/rev": "1-29-6"})),
        ("plain", json!({})),
    ] {
        let (code, body) = api(
            &w,
            "ci",
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"metadata": {"name": ns, "labels": labels}})),
        );
        assert_eq!(code, 201, "{body}");
    }
    for (ns, name, n) in [
        ("e2e", "web", 2),
        ("older", "old", 2),
        ("plain", "plain", 1),
    ] {
        let (code, body) = api(
            &w,
            "ci",
            "POST",
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            Some(&deployment(name, n)),
        );
        assert_eq!(code, 201, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, pods) = api(&w, "ci", "GET", "/api/v1/pods", None);
        let ready = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                ["web", "old", "plain"]
                    .contains(&p["metadata"]["labels"]["app"].as_str().unwrap_or_default())
            })
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if ready == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "pods did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The namespace moves to tag `stable` (1.30): its running pods are now stale.
    let (code, body) = api(
        &w,
        "ci",
        "PATCH",
        "/api/v1/namespaces/older",
        Some(&json!({"metadata": {"labels": {"istio.io/rev": "stable"}}})),
    );
    assert_eq!(code, 200, "{body}");

    let out = w.paddock(&["status", "ci", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).expect("status json");
    let workload = |ns: &str, name: &str| -> Value {
        s["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .find(|w| w["namespace"] == ns && w["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{ns}/{name} in {s}"))
    };
    // Cross-check each workload against the pods the sim actually runs.
    let (_, pods) = api(&w, "ci", "GET", "/api/v1/pods", None);
    for (ns, name) in [("e2e", "web"), ("older", "old"), ("plain", "plain")] {
        let theirs: Vec<&Value> = pods["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|p| p["metadata"]["namespace"] == ns && p["metadata"]["labels"]["app"] == name)
            .collect();
        let mine = workload(ns, name);
        assert_eq!(
            mine["pods"].as_u64(),
            Some(theirs.len() as u64),
            "{ns}/{name} pod count"
        );
        let mut revs: Vec<Value> = Vec::new();
        for p in &theirs {
            let r = p["metadata"]["annotations"]["istio.io/rev"].clone();
            if !revs.contains(&r) {
                revs.push(r);
            }
        }
        assert_eq!(mine["revisions"], json!(revs), "{ns}/{name} revisions");
        assert_eq!(mine["kind"], "Deployment");
    }
    let web = workload("e2e", "web");
    assert_eq!(web["proxyVersions"], json!(["1.30.3"]));
    assert_eq!(web["needsRestart"], false);
    let old = workload("older", "old");
    assert_eq!(old["revisions"], json!(["1-29-6"]));
    assert_eq!(old["proxyVersions"], json!(["1.29.6"]));
    assert_eq!(old["expectedRevision"], "1-30-3");
    assert_eq!(old["needsRestart"], true);
    assert!(
        old["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("injected by revision 1-29-6"),
        "{old}"
    );
    let plain = workload("plain", "plain");
    assert_eq!(plain["revisions"], json!([null]));
    assert_eq!(plain["needsRestart"], false);
    assert_eq!(plain["expectedRevision"], Value::Null);
    let revisions: Vec<(String, String)> = s["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["revision"].as_str().unwrap_or_default().into(),
                r["version"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert!(
        revisions.contains(&("1-29-6".into(), "1.29.6".into())),
        "{revisions:?}"
    );
    assert!(
        revisions.contains(&("1-30-3".into(), "1.30.3".into())),
        "{revisions:?}"
    );
    assert_eq!(s["tags"]["stable"], "1-30-3");
    assert_eq!(s["tags"]["default"], "1-30-3");
    let older = s["namespaces"]
        .as_array()
        .expect("ns")
        .iter()
        .find(|n| n["name"] == "older")
        .expect("older");
    assert_eq!(older["revision"], "1-30-3");
    assert_eq!(
        s["urls"]["ingress"],
        format!("http://127.0.0.1:{}/", w.port(9080))
    );
    assert_eq!(s["owned"], true);
}
