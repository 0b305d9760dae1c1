//! Every error of the Istio routing analysis is about real behaviour: applied to a cluster
//! anyway (with kubectl, around paddock's refusal), each failing manifest of the table
//! really misroutes through the ingress gateway — no answer, 404 or 503 where the app should
//! answer — and its passing twin reaches the app's pod. The sim's gateway is the oracle.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paddock::spec::Severity;
use support::World;
use support::istio_cases::{BASE, beyond_the_sim, checks, sim_host};

/// `kubectl VERB -f` of `text`: whether the API server took it, and what kubectl said.
fn try_kubectl(kubectl: &Path, kubeconfig: &Path, verb: &str, text: &str) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write");
    let mut args = vec![verb, "-f"];
    let path = file.path().display().to_string();
    args.push(&path);
    if verb == "delete" {
        args.extend(["--wait=false", "--ignore-not-found"]);
    }
    let o = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(&args)
        .output()
        .expect("kubectl runs");
    (o.status.success(), support::stderr(&o))
}

fn kubectl(kubectl: &Path, kubeconfig: &Path, verb: &str, text: &str) {
    let (ok, said) = try_kubectl(kubectl, kubeconfig, verb, text);
    assert!(ok, "kubectl {verb}: {said}");
}

/// What the gateway does with a request: the status and the pod that answered, or `None`
/// when nothing answered (no listener).
fn ask(port: u16, host: &str) -> Option<(u16, Option<String>)> {
    let (status, head) = support::request(port, host, "/")?;
    let pod = head
        .lines()
        .find_map(|l| l.strip_prefix("x-paddock-pod: "))
        .map(str::to_string);
    Some((status, pod))
}

/// Ask until the answer settles on `want` (the sim's endpoints lag a little), or give up
/// after `wait` and return the last answer.
fn ask_until(
    port: u16,
    host: &str,
    wait: Duration,
    want: impl Fn(&Option<(u16, Option<String>)>) -> bool,
) -> Option<(u16, Option<String>)> {
    let deadline = Instant::now() + wait;
    loop {
        let got = ask(port, host);
        if want(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reaches_web(a: &Option<(u16, Option<String>)>) -> bool {
    matches!(a, Some((200, Some(pod))) if pod.starts_with("web-v1-"))
}

#[test]
fn each_routing_error_misroutes_in_the_sim_and_its_fix_reaches_the_app() {
    let Some(kctl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let w = World::new(false);
    std::fs::write(
        w.repo.path().join("clusters/ci.yaml"),
        "name: ci\nprofile: ci\nnamespaces:\n  - name: shop\n    tag: stable\n  - name: plain\n",
    )
    .expect("cluster file");
    support::up_ok(&w, "ci");
    let kubeconfig = w.kubeconfig("ci");
    let port = w.port(9080);
    kubectl(&kctl, &kubeconfig, "apply", BASE);
    let errors: Vec<_> = checks()
        .into_iter()
        .filter(|c| c.severity == Severity::Error && !beyond_the_sim(c))
        .collect();
    assert!(errors.len() >= 6, "every error class has a scenario");
    let mut failures = Vec::new();
    for c in &errors {
        let host = sim_host(c);
        // Applied, or refused by the API server (a schema error): either way no route.
        let (applied, said) = try_kubectl(&kctl, &kubeconfig, "apply", &c.failing);
        // A misroute is stable: asked for a while, it never reaches the app (the gateway's
        // configuration follows the objects at once; only endpoints lag, by milliseconds).
        let bad = ask_until(port, host, Duration::from_secs(2), reaches_web);
        if reaches_web(&bad) {
            failures.push(format!(
                "{}: the failing manifest still reaches the app: {bad:?}",
                c.name
            ));
        }
        kubectl(&kctl, &kubeconfig, "delete", &c.failing);
        kubectl(&kctl, &kubeconfig, "apply", &c.passing);
        let good = ask_until(port, host, Duration::from_secs(20), reaches_web);
        if !reaches_web(&good) {
            failures.push(format!(
                "{}: the passing manifest does not reach the app: {good:?}",
                c.name
            ));
        }
        kubectl(&kctl, &kubeconfig, "delete", &c.passing);
        let refused = if applied {
            String::new()
        } else {
            format!(" (refused: {})", said.trim())
        };
        eprintln!("{}: failing {bad:?}{refused}, passing {good:?}", c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
