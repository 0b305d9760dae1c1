//! Deletion is not instant (KUBERNETES.md): terminating pods keep their object, are not Ready,
//! leave ReplicaSet counts and Endpoints (the latter after the endpoint lag), and go when their
//! containers have exited or their grace period ends; a StatefulSet reuses a pod's name only
//! once the old pod is gone; a namespace terminates with the real 409 and 403 answers.

use std::time::{Duration, Instant};

use paddock_sim::controllers::{pod_ready, terminating};
use paddock_sim::knobs::Knobs;
use paddock_sim::store::{Store, res};
use paddock_sim::{Cluster, Options};
use serde_json::{Value, json};

async fn cluster(knobs: Knobs) -> Cluster {
    Cluster::start_with(
        "term",
        Options {
            knobs,
            ..Options::default()
        },
    )
    .await
    .expect("start")
}

async fn until(cluster: &Cluster, what: &str, f: impl FnMut(&mut Store) -> bool) {
    assert!(
        cluster.holds_within(Duration::from_secs(10), f).await,
        "timed out waiting for {what}"
    );
}

fn app_pods(s: &Store, ns: &str, app: &str) -> Vec<Value> {
    s.all(&res("pods"), ns)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

fn ready_web_pods(s: &Store) -> usize {
    app_pods(s, "apps", "web")
        .iter()
        .filter(|p| pod_ready(p))
        .count()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn deploy(cluster: &Cluster, plural: &str, replicas: i64) {
    let labels = json!({"app": "web"});
    cluster.with_store(|s| {
        s.create(&res("namespaces"), "", json!({"metadata": {"name": "apps"}}))
            .expect("ns");
        s.create(
            &res(plural),
            "apps",
            json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "app:1"}]}}}}),
        )
        .expect("workload");
        s.create(
            &res("services"),
            "apps",
            json!({"metadata": {"name": "web"}, "spec": {"selector": labels, "ports": [{"port": 80}]}}),
        )
        .expect("service");
    });
}

fn endpoint_pods(s: &Store) -> Vec<String> {
    s.get(&res("endpoints"), "apps", "web")
        .ok()
        .and_then(|e| e.pointer("/subsets/0/addresses").cloned())
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|a| {
            a["targetRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn restart(cluster: &Cluster, plural: &str) {
    cluster.with_store(|s| {
        s.patch(
            &res(plural),
            "apps",
            "web",
            &json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}),
        )
        .expect("restart");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_done_while_old_pods_still_terminate() {
    let c = cluster(Knobs {
        termination_ms: 800,
        ..Knobs::default()
    })
    .await;
    deploy(&c, "deployments", 2);
    until(&c, "two ready pods", |s| ready_web_pods(s) == 2).await;
    let old: Vec<String> = c.with_store(|s| app_pods(s, "apps", "web").iter().map(name).collect());
    restart(&c, "deployments");
    until(&c, "kubectl's rule says done", |s| {
        let d = s.get(&res("deployments"), "apps", "web").expect("d");
        let st = &d["status"];
        st["observedGeneration"] == d["metadata"]["generation"]
            && st["updatedReplicas"] == 2
            && st["replicas"] == 2
            && st["availableReplicas"] == 2
    })
    .await;
    c.with_store(|s| {
        let pods = app_pods(s, "apps", "web");
        let lingering: Vec<&Value> = pods.iter().filter(|p| old.contains(&name(p))).collect();
        assert!(
            !lingering.is_empty(),
            "old pods are still there when the rollout is done"
        );
        for p in lingering {
            assert!(terminating(p), "{p}");
            assert!(!pod_ready(p), "a terminating pod is not Ready");
            assert_eq!(
                p["status"]["phase"], "Running",
                "still running its containers"
            );
            assert!(p["metadata"]["deletionGracePeriodSeconds"].is_i64());
        }
        let rs_replicas: i64 = s
            .all(&res("replicasets"), "apps")
            .iter()
            .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(rs_replicas, 2, "ReplicaSets count only active pods");
    });
    until(&c, "old pods gone", |s| {
        app_pods(s, "apps", "web")
            .iter()
            .all(|p| !old.contains(&name(p)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pods_after_the_lag() {
    let c = cluster(Knobs {
        termination_ms: 2_000,
        endpoint_lag_ms: 400,
        ..Knobs::default()
    })
    .await;
    deploy(&c, "deployments", 1);
    let pod = {
        let mut pod = String::new();
        until(&c, "a ready pod", |s| {
            let ready: Vec<Value> = app_pods(s, "apps", "web")
                .into_iter()
                .filter(pod_ready)
                .collect();
            pod = ready.first().map(name).unwrap_or_default();
            !pod.is_empty()
        })
        .await;
        pod
    };
    let ready_at = Instant::now();
    until(&c, "the endpoint", |s| endpoint_pods(s) == [pod.clone()]).await;
    assert!(
        ready_at.elapsed() >= Duration::from_millis(300),
        "a ready pod shows in Endpoints only after the lag: {:?}",
        ready_at.elapsed()
    );
    c.with_store(|s| s.delete(&res("pods"), "apps", &pod).expect("delete"));
    let deleted_at = Instant::now();
    until(&c, "the endpoint to go", |s| {
        !endpoint_pods(s).contains(&pod)
    })
    .await;
    let took = deleted_at.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "a terminating pod leaves Endpoints after the lag: {took:?}"
    );
    assert!(
        c.with_store(|s| s.get(&res("pods"), "apps", &pod).is_ok()),
        "and is still terminating then"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_goes_at_the_end_of_its_grace_period_or_at_once_with_grace_zero() {
    let c = cluster(Knobs {
        termination_ms: 60_000,
        ..Knobs::default()
    })
    .await;
    deploy(&c, "deployments", 2);
    until(&c, "two ready pods", |s| ready_web_pods(s) == 2).await;
    let pods: Vec<String> = c.with_store(|s| app_pods(s, "apps", "web").iter().map(name).collect());
    c.with_store(|s| {
        s.delete_with(&res("pods"), "apps", &pods[0], Some(1))
            .expect("grace 1");
        s.delete_with(&res("pods"), "apps", &pods[1], Some(0))
            .expect("grace 0");
        assert!(
            s.get(&res("pods"), "apps", &pods[1]).is_err(),
            "gone at once"
        );
    });
    let t = Instant::now();
    until(&c, "the grace period to end", |s| {
        s.get(&res("pods"), "apps", &pods[0]).is_err()
    })
    .await;
    assert!(
        t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(3),
        "killed at its grace period, not when its containers would have exited: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_reuses_a_name_only_after_the_old_pod_is_gone() {
    let c = cluster(Knobs {
        termination_ms: 500,
        ..Knobs::default()
    })
    .await;
    deploy(&c, "statefulsets", 1);
    until(&c, "web-0 ready", |s| {
        s.get(&res("pods"), "apps", "web-0")
            .is_ok_and(|p| pod_ready(&p))
    })
    .await;
    let old_uid = c.with_store(|s| {
        s.get(&res("pods"), "apps", "web-0").expect("pod")["metadata"]["uid"].clone()
    });
    restart(&c, "statefulsets");
    let mut saw_terminating = false;
    until(&c, "a new web-0", |s| {
        match s.get(&res("pods"), "apps", "web-0") {
            Ok(p) if p["metadata"]["uid"] == old_uid => {
                saw_terminating |= terminating(&p);
                false
            }
            Ok(_) => true,
            Err(_) => false,
        }
    })
    .await;
    assert!(saw_terminating, "the old web-0 terminated first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_terminates_its_content_then_goes() {
    let c = cluster(Knobs {
        termination_ms: 400,
        ..Knobs::default()
    })
    .await;
    deploy(&c, "deployments", 1);
    until(&c, "a ready pod", |s| {
        app_pods(s, "apps", "web").iter().any(pod_ready)
    })
    .await;
    c.with_store(|s| {
        let ns = s.delete(&res("namespaces"), "", "apps").expect("delete");
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    });
    until(&c, "its pods to terminate", |s| {
        app_pods(s, "apps", "web").iter().all(terminating)
    })
    .await;
    c.with_store(|s| {
        assert!(s.get(&res("namespaces"), "", "apps").is_ok(), "still there");
        let e = s.delete(&res("namespaces"), "", "apps").expect_err("again");
        assert_eq!(e.code, 409);
        let e = s
            .create(
                &res("configmaps"),
                "apps",
                json!({"metadata": {"name": "x"}}),
            )
            .expect_err("content");
        assert_eq!(e.code, 403);
        let e = s
            .create(
                &res("namespaces"),
                "",
                json!({"metadata": {"name": "apps"}}),
            )
            .expect_err("same name");
        assert_eq!(e.code, 409);
    });
    until(&c, "the namespace to go", |s| {
        s.get(&res("namespaces"), "", "apps").is_err()
    })
    .await;
    c.with_store(|s| {
        assert!(s.contents("apps").is_empty());
        s.create(
            &res("namespaces"),
            "",
            json!({"metadata": {"name": "apps"}}),
        )
        .expect("the name is free again");
    });
}
