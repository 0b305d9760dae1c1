//! The real `kubectl` talks to the sim's API server: discovery, lists, gets and JSON output.
//! Needs kubectl (installed by scripts/install-tools); skipped with a message when it is missing,
//! and a failure when PADDOCK_REQUIRE_TOOLS=1 (as in CI).

use std::path::Path;
use std::process::Command;

use paddock_sim::Cluster;
use paddock_sim::store::res;
use serde_json::{Value, json};

fn seed(cluster: &Cluster) {
    cluster.with_store(|s| {
        for n in ["apps", "mesh"] {
            s.create(&res("namespaces"), "", json!({"metadata": {"name": n}}))
                .expect("namespace");
        }
        let labels = json!({"app": "httpbin"});
        s.create(
            &res("deployments"),
            "apps",
            json!({"metadata": {"name": "httpbin"}, "spec": {"replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "httpbin", "image": "kennethreitz/httpbin"}]}}}}),
        )
        .expect("deployment");
        s.create(
            &res("pods"),
            "mesh",
            json!({"metadata": {"name": "bare", "labels": {"app": "bare"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .expect("pod");
    });
}

fn run(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_lists_namespaces_pods_and_deployments() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("fidelity").await.expect("sim starts");
    seed(&cluster);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");

    let kc = kubectl.clone();
    let kcfg = kubeconfig.clone();
    let (rollout, namespaces, pods, selected, deploy, ctx) =
        tokio::task::spawn_blocking(move || {
            // Rollout status first: it waits for the controllers, so the lists see their pods.
            (
                run(
                    &kc,
                    &kcfg,
                    &[
                        "rollout",
                        "status",
                        "deployment/httpbin",
                        "-n",
                        "apps",
                        "--timeout=20s",
                    ],
                ),
                run(&kc, &kcfg, &["get", "namespaces", "-o", "name"]),
                run(&kc, &kcfg, &["get", "pods", "-A", "-o", "name"]),
                run(
                    &kc,
                    &kcfg,
                    &[
                        "get",
                        "pods",
                        "-n",
                        "apps",
                        "-l",
                        "app in (httpbin)",
                        "-o",
                        "name",
                    ],
                ),
                run(
                    &kc,
                    &kcfg,
                    &["get", "deploy", "httpbin", "-n", "apps", "-o", "json"],
                ),
                run(&kc, &kcfg, &["config", "current-context"]),
            )
        })
        .await
        .expect("kubectl task");

    let namespaces: Vec<&str> = namespaces.lines().collect();
    for n in [
        "namespace/apps",
        "namespace/mesh",
        "namespace/kube-system",
        "namespace/default",
    ] {
        assert!(namespaces.contains(&n), "{n} in {namespaces:?}");
    }
    assert!(pods.lines().any(|l| l == "pod/bare"), "{pods}");
    assert!(
        pods.lines().any(|l| l.starts_with("pod/coredns-")),
        "k3s system pods run: {pods}"
    );
    let selected: Vec<&str> = selected.lines().collect();
    assert_eq!(selected.len(), 2, "{selected:?}");
    assert!(selected.iter().all(|p| p.starts_with("pod/httpbin-")));
    let d: Value = serde_json::from_str(&deploy).expect("deployment json");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["namespace"], "apps");
    assert_eq!(ctx.trim(), "k3d-fidelity");
    assert!(
        rollout.contains("successfully rolled out"),
        "kubectl's rollout rules accept the sim's status: {rollout}"
    );
    let store = cluster.store.lock().expect("store");
    assert!(
        store.requests.len() >= 5,
        "the request log saw kubectl's calls"
    );
    assert_eq!(
        store.mutating_requests(),
        0,
        "kubectl get and rollout status mutate nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_watch_sees_changes_as_they_happen() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("watch").await.expect("sim starts");
    seed(&cluster);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    let mut child = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespaces", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |rx: &mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a watch line within 10 s")
    };
    let mut seen: Vec<String> = (0..6).map(|_| next(&rx)).collect();
    seen.sort();
    assert!(seen.contains(&"namespace/mesh".to_string()), "{seen:?}");
    cluster.with_store(|s| {
        s.create(
            &res("namespaces"),
            "",
            json!({"metadata": {"name": "late"}}),
        )
        .expect("namespace");
    });
    assert_eq!(next(&rx), "namespace/late");
    let _ = child.kill();
    let _ = child.wait();
}

/// What kubectl says against a kubeconfig, and whether it succeeded.
fn attempt(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_client_certificate_kubectl_and_plain_clients_get_401() {
    use paddock_sim::client::Client;
    use paddock_sim::pki::{Pki, serving_names};

    let cluster = Cluster::start("anon").await.expect("sim starts");
    let server = cluster.server_url();
    let no_cert = paddock_sim::api::kubeconfig("anon", &server, &cluster.pki, false);
    // A client certificate signed by another cluster's client CA, presented with its key.
    let other = Pki::generate(&serving_names(&[])).expect("other pki");
    let foreign_pki = Pki {
        admin_cert: other.admin_cert.clone(),
        admin_key: other.admin_key.clone(),
        ..cluster.pki.clone()
    };
    let foreign = paddock_sim::api::kubeconfig("anon", &server, &foreign_pki, true);
    let valid = cluster.kubeconfig();
    let before = cluster.with_store(|s| s.requests.len());

    let (n, f, v) = (no_cert.clone(), foreign.clone(), valid.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (what, kc) in [
            ("no certificate", &n),
            ("foreign certificate", &f),
            ("admin", &v),
        ] {
            let client = Client::from_kubeconfig(kc, None).expect("client");
            for path in ["/version", "/api/v1/namespaces", "/sim/requests"] {
                out.push((what, path, client.get(path).expect("an answer")));
            }
        }
        out
    })
    .await
    .expect("join");
    for (what, path, r) in &answers {
        if *what == "admin" {
            assert_eq!(r.code, 200, "{what} {path}: {}", r.body);
            continue;
        }
        assert_eq!(r.code, 401, "{what} {path}: {}", r.body);
        let status = r.json();
        assert_eq!(
            (
                &status["kind"],
                &status["reason"],
                &status["message"],
                &status["code"]
            ),
            (
                &json!("Status"),
                &json!("Unauthorized"),
                &json!("Unauthorized"),
                &json!(401)
            ),
            "{what} {path}"
        );
    }
    assert_eq!(
        cluster.with_store(|s| s.requests.len()),
        before + 2,
        "only the admin's two API requests reached the API (/sim is not logged)"
    );

    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    // kubectl prompts for a user name and password (on a terminal) when the kubeconfig's user
    // has no credentials at all, so it meets the API with a token the server does not know.
    let unknown_token = no_cert.replace("  user: {}\n", "  user:\n    token: not-a-token\n");
    assert_ne!(unknown_token, no_cert);
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, kc, ok) in [
        ("foreign-certificate", foreign, false),
        ("unknown-token", unknown_token, false),
        ("admin", valid, true),
    ] {
        let path = dir.path().join(what);
        std::fs::write(&path, kc).expect("kubeconfig");
        let k = kubectl.clone();
        let (success, stderr) =
            tokio::task::spawn_blocking(move || attempt(&k, &path, &["get", "namespaces"]))
                .await
                .expect("join");
        assert_eq!(success, ok, "kubectl with the {what} kubeconfig: {stderr}");
        if !ok {
            // client-go's words for a 401: "(Unauthorized)" from the Status body, or "(the
            // server has asked for the client to provide credentials)" when discovery fails.
            assert!(
                stderr.contains("error: You must be logged in to the server ("),
                "kubectl with the {what} kubeconfig: {stderr}"
            );
        }
    }
}
