//! The real end-to-end suite: the same `up` → `status` → `down` scenario the sim tests run,
//! against real Docker, k3d, helm and Istio. Enabled with `PADDOCK_E2E=1` on a machine that
//! has them (and can pull images); otherwise every test returns at once, saying so.
//!
//! ```sh
//! PADDOCK_E2E=1 cargo test --test e2e -- --nocapture
//! ```
//!
//! The tests share the machine's k3d cluster `ci` and its host ports: they run one at a time.

mod kill;
mod open;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

/// Held by a test while it uses the machine's cluster `ci`.
fn machine() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn enabled() -> bool {
    if std::env::var("PADDOCK_E2E").is_ok_and(|v| v == "1") {
        return true;
    }
    eprintln!(
        "skipping: the real end-to-end suite runs with PADDOCK_E2E=1 (needs Docker, k3d, helm and image pulls)"
    );
    false
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn paddock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("-C")
        .arg(repo())
        .args(args)
        .output()
        .expect("paddock runs")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the cluster even when the test fails.
struct Cleanup(&'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = paddock(&["down", self.0, "--yes"]);
    }
}

#[test]
fn ci_cluster_up_status_down_on_a_real_machine() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    ok(&paddock(&["doctor"]), "doctor");
    let _cleanup = Cleanup("ci");
    let up = ok(&paddock(&["up", "ci", "-o", "json"]), "up");
    let result: Value = up
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &Value| v["event"] == "result")
        .expect("a result");
    assert_eq!(result["ok"], true);
    assert!(result["steps"]["verify/ingress"].is_u64(), "{result}");
    // The probe route answers through the load balancer, as `up` verified.
    let probe = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            "Host: paddock-probe.invalid",
            "http://127.0.0.1:9080/",
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "200");
    // The kubeconfig `up` names is the one `kubeconfig --export` exports, and kubectl reads it.
    assert_eq!(result["urls"]["ingress"], "http://127.0.0.1:9080/");
    let export = ok(
        &paddock(&["kubeconfig", "ci", "--export"]),
        "kubeconfig --export",
    );
    let path = result["kubeconfig"].as_str().expect("kubeconfig path");
    assert_eq!(export.trim(), format!("export KUBECONFIG={path}"));
    let nodes = Command::new("kubectl")
        .args([
            "--kubeconfig",
            path,
            "--context",
            "k3d-ci",
            "get",
            "nodes",
            "-o",
            "name",
        ])
        .output()
        .expect("kubectl");
    assert!(
        nodes.status.success(),
        "{}",
        String::from_utf8_lossy(&nodes.stderr)
    );
    let again = ok(&paddock(&["up", "ci"]), "second up");
    assert!(again.contains("up to date"), "{again}");
    let status: Value =
        serde_json::from_str(&ok(&paddock(&["status", "ci", "-o", "json"]), "status"))
            .expect("status json");
    assert_eq!(status["running"], true);
    assert_eq!(status["tags"]["stable"], "1-30-3");
    assert!(
        status["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|w| w["needsRestart"] == false),
        "{status}"
    );
    ok(&paddock(&["down", "ci", "--yes"]), "down");
    let list = Command::new("k3d")
        .args(["cluster", "list", "-o", "json"])
        .output()
        .expect("k3d");
    let clusters: Value = serde_json::from_slice(&list.stdout).expect("k3d json");
    assert!(
        clusters
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["name"] != "ci"),
        "ci is gone"
    );
}

/// A copy of the repository whose `ci` cluster a test changes, with a state directory of its
/// own; `ci` is deleted when it goes, even when the test fails.
struct CiCopy {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl CiCopy {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["profiles", "clusters", "addons", "manifests"] {
            let from = repo().join(d);
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
            for e in std::fs::read_dir(&from).expect("read_dir").flatten() {
                std::fs::copy(e.path(), dir.path().join(d).join(e.file_name())).expect("copy");
            }
        }
        std::fs::copy(repo().join("paddock.yaml"), dir.path().join("paddock.yaml"))
            .expect("paddock.yaml");
        let state = tempfile::tempdir().expect("state dir");
        Self { dir, state }
    }

    fn edit_ci(&self, f: impl FnOnce(String) -> String) {
        let ci = self.dir.path().join("clusters/ci.yaml");
        let text = std::fs::read_to_string(&ci).expect("ci.yaml");
        std::fs::write(&ci, f(text)).expect("write");
    }

    /// paddock with `args` on this copy and its state directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paddock"));
        c.arg("-C")
            .arg(self.dir.path())
            .args(args)
            .env("PADDOCK_STATE_DIR", self.state.path())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("paddock runs")
    }

    /// A kubeconfig file for `ci`, as `k3d kubeconfig get` prints it.
    fn kubeconfig(&self) -> PathBuf {
        let out = Command::new("k3d")
            .args(["kubeconfig", "get", "ci"])
            .output()
            .expect("k3d");
        ok(&out, "k3d kubeconfig get ci");
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, &out.stdout).expect("kubeconfig");
        path
    }
}

impl Drop for CiCopy {
    fn drop(&mut self) {
        let _ = self.run(&["down", "ci", "--yes"]);
    }
}

#[test]
fn canary_upgrade_on_a_real_machine() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    let copy = CiCopy::new();
    copy.edit_ci(|text| {
        format!("{text}istio:\n  version: 1.29.6\n  upgrade:\n    strategy: canary\n    gracePeriod: 10s\n")
    });
    let run = |args: &[&str]| copy.run(args);
    ok(&run(&["up", "ci"]), "up at 1.29");
    ok(&run(&["upgrade", "ci", "--to", "1.30.3"]), "canary upgrade");
    let status: Value =
        serde_json::from_str(&ok(&run(&["status", "ci", "-o", "json"]), "status")).expect("json");
    let revisions: Vec<&str> = status["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["revision"].as_str())
        .collect();
    assert_eq!(revisions, ["1-30-3"], "{status}");
}

/// A label taken out of the spec is removed by `up` (server-side apply ownership), on a real
/// API server.
#[test]
fn a_namespace_label_removed_from_the_spec_goes_on_a_real_machine() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    let copy = CiCopy::new();
    copy.edit_ci(|text| {
        text.replace(
            "    tag: stable\n",
            "    tag: stable\n    labels: {team: web, tier: front}\n",
        )
    });
    let run = |args: &[&str]| copy.run(args);
    ok(&run(&["up", "ci"]), "up with the label");
    copy.edit_ci(|text| text.replace(", tier: front", ""));
    ok(&run(&["up", "ci"]), "up without it");
    let kubeconfig = copy.kubeconfig();
    let ns = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespace", "e2e", "-o", "json"])
        .output()
        .expect("kubectl");
    let ns: Value = serde_json::from_slice(&ns.stdout).expect("namespace json");
    assert!(ns["metadata"]["labels"].get("tier").is_none(), "{ns}");
    assert_eq!(ns["metadata"]["labels"]["team"], "web", "{ns}");
}
