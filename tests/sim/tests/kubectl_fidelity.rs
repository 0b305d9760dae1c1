//! The real `kubectl` talks to the sim's API server: discovery, lists, gets and JSON output.
//! Needs kubectl (installed by scripts/install-tools); skipped with a message when it is missing,
//! and a failure when PADDOCK_REQUIRE_TOOLS=1 (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use paddock_sim::Cluster;
use paddock_sim::store::Resource;
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubectl() -> Option<PathBuf> {
    let local = workspace().join(".tools/bin/kubectl");
    if local.is_file() {
        return Some(local);
    }
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some(PathBuf::from("kubectl"));
    }
    // Try the project's installer once (PyPI); then look again.
    let _ = Command::new(workspace().join("scripts/install-tools")).status();
    local.is_file().then_some(local)
}

fn require_or_skip(tool: &str) -> bool {
    if std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!(
            "{tool} is required (PADDOCK_REQUIRE_TOOLS=1) but was not found; run scripts/install-tools"
        );
    }
    eprintln!("skipping: {tool} not found; run scripts/install-tools to enable this test");
    false
}

fn seed(cluster: &Cluster) {
    let mut s = cluster.store.lock().expect("store");
    let ns = Resource::new("", "v1", "namespaces", "Namespace", false, &[]);
    let pods = Resource::new("", "v1", "pods", "Pod", true, &[]);
    let deploy = Resource::new("apps", "v1", "deployments", "Deployment", true, &[]);
    for n in ["apps", "istio-system"] {
        s.create(
            &ns,
            "",
            json!({"metadata": {"name": n, "labels": {"istio.io/rev": "stable"}}}),
        )
        .expect("namespace");
    }
    s.create(
        &deploy,
        "apps",
        json!({"metadata": {"name": "httpbin"}, "spec": {"replicas": 2}}),
    )
    .expect("deployment");
    for i in 0..2 {
        s.create(&pods, "apps", json!({"metadata": {"name": format!("httpbin-{i}"), "labels": {"app": "httpbin"}}, "status": {"phase": "Running"}})).expect("pod");
    }
    s.create(
        &pods,
        "istio-system",
        json!({"metadata": {"name": "istiod-1-30-3-0", "labels": {"app": "istiod"}}}),
    )
    .expect("pod");
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
    let Some(kubectl) = kubectl() else {
        require_or_skip("kubectl");
        return;
    };
    let cluster = Cluster::start("fidelity").await.expect("sim starts");
    seed(&cluster);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");

    let kc = kubectl.clone();
    let kcfg = kubeconfig.clone();
    let (namespaces, pods, selected, deploy, ctx) = tokio::task::spawn_blocking(move || {
        (
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

    assert_eq!(
        namespaces.lines().collect::<Vec<_>>(),
        ["namespace/apps", "namespace/istio-system"]
    );
    assert_eq!(pods.lines().count(), 3, "{pods}");
    assert_eq!(
        selected.lines().collect::<Vec<_>>(),
        ["pod/httpbin-0", "pod/httpbin-1"]
    );
    let d: Value = serde_json::from_str(&deploy).expect("deployment json");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["namespace"], "apps");
    assert_eq!(ctx.trim(), "k3d-fidelity");
    let store = cluster.store.lock().expect("store");
    assert!(
        store.requests.len() >= 5,
        "the request log saw kubectl's calls"
    );
    assert_eq!(store.mutating_requests(), 0, "kubectl get mutates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_watch_sees_changes_as_they_happen() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let Some(kubectl) = kubectl() else {
        require_or_skip("kubectl");
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
    let mut seen = vec![next(&rx), next(&rx)];
    seen.sort();
    assert_eq!(seen, ["namespace/apps", "namespace/istio-system"]);
    {
        let mut s = cluster.store.lock().expect("store");
        let ns = Resource::new("", "v1", "namespaces", "Namespace", false, &[]);
        s.create(&ns, "", json!({"metadata": {"name": "late"}}))
            .expect("namespace");
    }
    assert_eq!(next(&rx), "namespace/late");
    let _ = child.kill();
    let _ = child.wait();
}
