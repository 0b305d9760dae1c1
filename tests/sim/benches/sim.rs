//! `cargo bench -p paddock-sim`: how fast the sim starts a cluster, how it copes with 1,000
//! pods (10 Deployments × 100 replicas) at default latencies, and what a server-side apply
//! costs. Prints numbers; asserts only that the requests it times succeed.

use std::time::{Duration, Instant};

use paddock_sim::Cluster;
use paddock_sim::store::res;
use serde_json::json;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut starts = Vec::new();
        for i in 0..20 {
            let t = Instant::now();
            let c = Cluster::start(&format!("bench{i}")).await.expect("start");
            // Started = API answering and nodes Ready with CoreDNS rolled out.
            loop {
                let ready = c.with_store(|s| {
                    s.get(&res("deployments"), "kube-system", "coredns")
                        .is_ok_and(|d| d["status"]["readyReplicas"] == 1)
                });
                if ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            starts.push(t.elapsed());
        }
        starts.sort();
        println!(
            "cluster start to CoreDNS ready: median {:?}, max {:?} (20 runs, default latencies)",
            starts[10], starts[19]
        );

        let c = Cluster::start("bench-pods").await.expect("start");
        let t = Instant::now();
        c.with_store(|s| {
            s.create(&res("namespaces"), "", json!({"metadata": {"name": "load"}}))
                .expect("ns");
            for d in 0..10 {
                let labels = json!({"app": format!("app{d}")});
                s.create(
                    &res("deployments"),
                    "load",
                    json!({"metadata": {"name": format!("app{d}")}, "spec": {"replicas": 100,
                        "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}}}),
                )
                .expect("deployment");
            }
        });
        loop {
            let ready: i64 = c.with_store(|s| {
                s.all(&res("deployments"), "load")
                    .iter()
                    .map(|d| d["status"]["readyReplicas"].as_i64().unwrap_or(0))
                    .sum()
            });
            if ready == 1000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("1,000 pods from 10 Deployments created and Ready: {:?}", t.elapsed());

        let client = c.client().expect("client");
        let t = Instant::now();
        let n = 20;
        for _ in 0..n {
            let cl = client.clone();
            tokio::task::spawn_blocking(move || get(&cl, "/api/v1/namespaces/load/pods"))
                .await
                .expect("join");
        }
        println!("LIST of 1,000 pods over HTTPS: {:?} each", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..200 {
            let cl = client.clone();
            tokio::task::spawn_blocking(move || {
                get(&cl, "/apis/apps/v1/namespaces/load/deployments/app0")
            })
            .await
            .expect("join");
        }
        println!("GET of one Deployment with 1,000 pods stored: {:?} each", t.elapsed() / 200);

        let t = Instant::now();
        c.with_store(|s| {
            for d in 0..10 {
                s.patch(&res("deployments"), "load", &format!("app{d}"),
                    &json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}))
                    .expect("restart");
            }
        });
        loop {
            let done = c.with_store(|s| {
                s.all(&res("deployments"), "load").iter().all(|d| {
                    d["status"]["observedGeneration"] == d["metadata"]["generation"]
                        && d["status"]["updatedReplicas"] == 100
                        && d["status"]["replicas"] == 100
                        && d["status"]["readyReplicas"] == 100
                })
            });
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("rolling restart of all 1,000 pods (25% surge): {:?}", t.elapsed());

        // Server-side apply, on a cluster of its own so the controllers' reconcile of 1,000
        // pods after every write does not dominate: over HTTP as paddock applies objects
        // (200 ConfigMaps of 20 keys created, applied unchanged — no write — and with one key
        // changed), and in process against the merge patch apply used to be.
        let c = Cluster::start("bench-apply").await.expect("start");
        c.with_store(|s| {
            s.create(&res("namespaces"), "", json!({"metadata": {"name": "load"}}))
                .expect("ns")
        });
        let client = c.client().expect("client");
        let configmap = |i: usize, round: usize| {
            let data: serde_json::Map<String, serde_json::Value> = (0..20)
                .map(|k| (format!("key{k}"), json!(format!("value{}", k * round))))
                .collect();
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm{i}"), "namespace": "load", "labels": {"app": "bench"}},
                "data": data})
        };
        for (what, round) in [("created", 0), ("unchanged", 0), ("one key changed", 1)] {
            let t = Instant::now();
            for i in 0..200 {
                let body = configmap(i, round).to_string();
                let path =
                    format!("/api/v1/namespaces/load/configmaps/cm{i}?fieldManager=bench&force=true");
                let cl = client.clone();
                tokio::task::spawn_blocking(move || apply(&cl, &path, &body))
                    .await
                    .expect("join");
            }
            println!(
                "server-side apply over HTTPS of a 20-key ConfigMap ({what}): {:?} each",
                t.elapsed() / 200
            );
        }
        let cms = res("configmaps");
        let n = 2000;
        let (merge, ssa) = c.with_store(|s| {
            let t = Instant::now();
            for i in 0..n {
                s.patch(&cms, "load", &format!("cm{}", i % 200), &configmap(i % 200, i))
                    .expect("merge patch");
            }
            let merge = t.elapsed() / n as u32;
            let t = Instant::now();
            for i in 0..n {
                let name = format!("cm{}", i % 200);
                let target = paddock_sim::ssa::Target {
                    res: &cms,
                    namespace: "load",
                    name: &name,
                    subresource: None,
                };
                paddock_sim::ssa::apply(s, &target, configmap(i % 200, i + 1), "bench", true)
                    .expect("apply");
            }
            (merge, t.elapsed() / n as u32)
        });
        println!(
            "a changed 20-key ConfigMap in process: merge patch {merge:?}, server-side apply {ssa:?}"
        );
    });
}

/// One server-side apply on a new TLS connection.
fn apply(client: &paddock_sim::client::Client, path: &str, body: &str) {
    let r = client
        .request(
            "PATCH",
            path,
            "application/apply-patch+yaml",
            body.as_bytes(),
        )
        .expect("apply");
    assert!(r.code / 100 == 2, "apply failed: {} {}", r.code, r.body);
}

/// One request on a new TLS connection, as the fake helm makes them.
fn get(client: &paddock_sim::client::Client, path: &str) {
    let r = client.get(path).expect("get");
    assert_eq!(r.code, 200, "{}", r.body);
}
