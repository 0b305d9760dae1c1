//! The sim's controllers roll pods as Kubernetes does: Deployments within maxSurge and
//! maxUnavailable, StatefulSets from the highest ordinal down to the partition, OnDelete only
//! on deletion, DaemonSets per node; evictions honour PDBs; crash-looping rollouts hit their
//! progress deadline; istiod patches caBundles only once ready.

use std::time::Duration;

use paddock_sim::controllers::{pod_ready, terminating};
use paddock_sim::knobs::Knobs;
use paddock_sim::store::{Store, res};
use paddock_sim::{Cluster, Options};
use serde_json::{Value, json};

async fn until(cluster: &Cluster, what: &str, f: impl FnMut(&mut Store) -> bool) {
    assert!(
        cluster.holds_within(Duration::from_secs(10), f).await,
        "timed out waiting for {what}"
    );
}

/// The pods of an app that are not terminating (what Kubernetes counts against a rollout's
/// bounds).
fn pods(s: &Store, ns: &str, app: &str) -> Vec<Value> {
    s.all(&res("pods"), ns)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app && !terminating(p))
        .collect()
}

fn workload(kind_plural: &str, name: &str, replicas: i64, spec_extra: Value) -> (String, Value) {
    let labels = json!({"app": name});
    let mut spec = json!({"replicas": replicas, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}});
    if kind_plural == "daemonsets" {
        spec.as_object_mut().map(|m| m.remove("replicas"));
    }
    paddock_sim::store::merge_patch(&mut spec, &spec_extra);
    (
        kind_plural.to_string(),
        json!({"metadata": {"name": name}, "spec": spec}),
    )
}

fn create(cluster: &Cluster, ns: &str, (plural, obj): (String, Value)) {
    cluster.with_store(|s| {
        if s.get(&res("namespaces"), "", ns).is_err() {
            s.create(&res("namespaces"), "", json!({"metadata": {"name": ns}}))
                .expect("ns");
        }
        s.create(&res(&plural), ns, obj).expect("workload");
    });
}

fn restart(cluster: &Cluster, plural: &str, ns: &str, name: &str) {
    cluster.with_store(|s| {
        s.patch(
            &res(plural),
            ns,
            name,
            &json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-28T00:00:00Z"}}}}}),
        )
        .expect("restart patch");
    });
}

fn status(s: &Store, plural: &str, ns: &str, name: &str, field: &str) -> i64 {
    s.get(&res(plural), ns, name)
        .ok()
        .and_then(|o| o["status"][field].as_i64())
        .unwrap_or(-1)
}

/// kubectl's rollout-status rule for Deployments.
fn deployment_done(s: &Store, ns: &str, name: &str) -> bool {
    let Ok(d) = s.get(&res("deployments"), ns, name) else {
        return false;
    };
    let st = &d["status"];
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    st["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
        && st["updatedReplicas"].as_i64().unwrap_or(0) >= want
        && st["replicas"].as_i64().unwrap_or(0) <= st["updatedReplicas"].as_i64().unwrap_or(0)
        && st["availableReplicas"].as_i64().unwrap_or(0)
            >= st["updatedReplicas"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_roll_within_max_surge_and_max_unavailable() {
    let cluster = Cluster::start("deploy").await.expect("start");
    create(
        &cluster,
        "apps",
        workload(
            "deployments",
            "web",
            4,
            json!({"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}),
        ),
    );
    until(&cluster, "first rollout", |s| {
        deployment_done(s, "apps", "web")
    })
    .await;
    let before: Vec<String> = cluster.with_store(|s| {
        pods(s, "apps", "web")
            .iter()
            .map(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    });
    restart(&cluster, "deployments", "apps", "web");
    let (mut max_total, mut min_ready) = (0, usize::MAX);
    until(&cluster, "restart rollout", |s| {
        let ps = pods(s, "apps", "web");
        max_total = max_total.max(ps.len());
        min_ready = min_ready.min(ps.iter().filter(|p| pod_ready(p)).count());
        deployment_done(s, "apps", "web")
    })
    .await;
    assert!(
        max_total <= 5,
        "never more than replicas + maxSurge pods: {max_total}"
    );
    assert!(
        min_ready >= 3,
        "never fewer than replicas - maxUnavailable ready: {min_ready}"
    );
    let after: Vec<String> = cluster.with_store(|s| {
        pods(s, "apps", "web")
            .iter()
            .map(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    });
    assert_eq!(after.len(), 4);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_roll_from_the_highest_ordinal_down_to_the_partition() {
    let cluster = Cluster::start("sts").await.expect("start");
    create(
        &cluster,
        "db",
        workload(
            "statefulsets",
            "pg",
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        ),
    );
    until(&cluster, "sts ready", |s| {
        status(s, "statefulsets", "db", "pg", "readyReplicas") == 3
    })
    .await;
    let old = cluster.with_store(|s| {
        s.get(&res("statefulsets"), "db", "pg").expect("sts")["status"]["updateRevision"].clone()
    });
    restart(&cluster, "statefulsets", "db", "pg");
    let mut order: Vec<String> = Vec::new();
    until(&cluster, "partitioned rollout", |s| {
        for p in pods(s, "db", "pg") {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if p["metadata"]["labels"]["controller-revision-hash"] != old && !order.contains(&name)
            {
                order.push(name);
            }
        }
        // kubectl: generation observed, ready ≥ replicas, updated ≥ replicas − partition.
        let sts = s.get(&res("statefulsets"), "db", "pg").expect("sts");
        sts["status"]["observedGeneration"] == sts["metadata"]["generation"]
            && status(s, "statefulsets", "db", "pg", "readyReplicas") >= 3
            && status(s, "statefulsets", "db", "pg", "updatedReplicas") >= 2
    })
    .await;
    assert_eq!(
        order,
        ["pg-2", "pg-1"],
        "highest ordinal first; pg-0 is below the partition"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        cluster.with_store(|s| status(s, "statefulsets", "db", "pg", "updatedReplicas")),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_statefulsets_change_only_when_pods_are_deleted() {
    let cluster = Cluster::start("ondelete").await.expect("start");
    create(
        &cluster,
        "db",
        workload(
            "statefulsets",
            "redis",
            2,
            json!({"updateStrategy": {"type": "OnDelete"}}),
        ),
    );
    until(&cluster, "ready", |s| {
        status(s, "statefulsets", "db", "redis", "readyReplicas") == 2
    })
    .await;
    restart(&cluster, "statefulsets", "db", "redis");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        cluster.with_store(|s| status(s, "statefulsets", "db", "redis", "updatedReplicas")),
        0
    );
    cluster
        .with_store(|s| s.delete(&res("pods"), "db", "redis-1").map(|_| ()))
        .expect("delete");
    until(&cluster, "recreated on the new revision", |s| {
        status(s, "statefulsets", "db", "redis", "updatedReplicas") == 1
            && status(s, "statefulsets", "db", "redis", "readyReplicas") == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_run_a_pod_per_ready_node_and_roll() {
    let cluster = Cluster::start_with(
        "ds",
        Options {
            agents: 2,
            ..Options::default()
        },
    )
    .await
    .expect("start");
    create(
        &cluster,
        "kube-system",
        workload("daemonsets", "agent", 0, json!({})),
    );
    until(&cluster, "one pod per node", |s| {
        status(s, "daemonsets", "kube-system", "agent", "numberReady") == 3
    })
    .await;
    restart(&cluster, "daemonsets", "kube-system", "agent");
    until(&cluster, "rolled", |s| {
        let ds = s
            .get(&res("daemonsets"), "kube-system", "agent")
            .expect("ds");
        let st = &ds["status"];
        st["observedGeneration"] == ds["metadata"]["generation"]
            && st["updatedNumberScheduled"].as_i64() >= st["desiredNumberScheduled"].as_i64()
            && st["numberAvailable"].as_i64() >= st["desiredNumberScheduled"].as_i64()
    })
    .await;
    let nodes: std::collections::BTreeSet<String> = cluster.with_store(|s| {
        pods(s, "kube-system", "agent")
            .iter()
            .map(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    });
    assert_eq!(nodes.len(), 3, "one pod on each node: {nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_honour_disruption_budgets() {
    let cluster = Cluster::start("evict").await.expect("start");
    create(
        &cluster,
        "apps",
        workload("deployments", "api", 2, json!({})),
    );
    until(&cluster, "ready", |s| deployment_done(s, "apps", "api")).await;
    cluster.with_store(|s| {
        s.create(&res("poddisruptionbudgets"), "apps",
            json!({"metadata": {"name": "api"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "api"}}}}))
            .expect("pdb");
    });
    let victim = cluster.with_store(|s| {
        pods(s, "apps", "api")[0]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let client = cluster.client().expect("client");
    let path = format!("/api/v1/namespaces/apps/pods/{victim}/eviction");
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim, "namespace": "apps"}}).to_string();
    let (c, p, b) = (client.clone(), path.clone(), body.clone());
    let paddock_sim::client::Response {
        code, body: text, ..
    } = tokio::task::spawn_blocking(move || c.post_json(&p, &b))
        .await
        .expect("join")
        .expect("post");
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("disruption budget"), "{text}");
    cluster.with_store(|s| {
        s.patch(
            &res("poddisruptionbudgets"),
            "apps",
            "api",
            &json!({"spec": {"minAvailable": 1}}),
        )
        .expect("relax");
    });
    let paddock_sim::client::Response {
        code, body: text, ..
    } = tokio::task::spawn_blocking(move || client.post_json(&path, &body))
        .await
        .expect("join")
        .expect("post");
    assert_eq!(code, 201, "{text}");
    until(&cluster, "replaced", |s| {
        let ps = pods(s, "apps", "api");
        ps.len() == 2 && ps.iter().all(|p| p["metadata"]["name"] != victim.as_str())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_rollouts_exceed_their_progress_deadline() {
    let cluster = Cluster::start_with(
        "crash",
        Options {
            knobs: Knobs {
                crashloop: vec!["app:2".into()],
                ..Knobs::default()
            },
            ..Options::default()
        },
    )
    .await
    .expect("start");
    create(
        &cluster,
        "apps",
        workload(
            "deployments",
            "bad",
            1,
            json!({"progressDeadlineSeconds": 1}),
        ),
    );
    until(&cluster, "ready", |s| deployment_done(s, "apps", "bad")).await;
    cluster.with_store(|s| {
        s.patch(&res("deployments"), "apps", "bad",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app:2"}]}}}}))
            .expect("bad image");
    });
    until(&cluster, "ProgressDeadlineExceeded", |s| {
        s.get(&res("deployments"), "apps", "bad").is_ok_and(|d| {
            d["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded"
                })
            })
        })
    })
    .await;
    let (old_ready, crashing) = cluster.with_store(|s| {
        let ps = pods(s, "apps", "bad");
        (
            ps.iter().filter(|p| pod_ready(p)).count(),
            ps.iter().any(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CrashLoopBackOff"
            }),
        )
    });
    assert_eq!(
        old_ready, 1,
        "the old pod keeps serving (maxUnavailable rounds down to 0)"
    );
    assert!(crashing, "the new pod reports CrashLoopBackOff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_patches_ca_bundles_once_ready_unless_stalled() {
    // The fake helm applies what the real helm renders.
    if paddock_sim::real_tools::helm().is_none() {
        return;
    }
    let cluster = Cluster::start_with(
        "ca",
        Options {
            knobs: Knobs {
                stall_ca_bundle: vec!["1-29-6".into()],
                ..Knobs::default()
            },
            ..Options::default()
        },
    )
    .await
    .expect("start");
    for (rel, rev) in [("istiod-1-30-3", "1-30-3"), ("istiod-1-29-6", "1-29-6")] {
        let version = rev.replace('-', ".");
        let req = paddock_sim::helm::rendered(&json!({"op": "upgrade", "install": true, "release": rel, "chart": "istiod",
                "version": version, "namespace": "istio-system", "create_namespace": true, "values": {"revision": rev}}))
        .expect("the real helm renders istiod");
        let r = cluster.with_store(|s| paddock_sim::helm::serve(s, &req));
        assert_eq!(r["code"], 0, "{r}");
    }
    until(&cluster, "1.30 webhook has a caBundle", |s| {
        s.get(
            &res("mutatingwebhookconfigurations"),
            "",
            "istio-sidecar-injector-1-30-3",
        )
        .is_ok_and(|h| {
            h["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
    })
    .await;
    until(&cluster, "1.29 istiod ready", |s| {
        status(
            s,
            "deployments",
            "istio-system",
            "istiod-1-29-6",
            "readyReplicas",
        ) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stalled = cluster.with_store(|s| {
        s.get(
            &res("mutatingwebhookconfigurations"),
            "",
            "istio-sidecar-injector-1-29-6",
        )
        .expect("hook")["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    assert_eq!(stalled, "", "a stalled revision never gets its caBundle");
}
