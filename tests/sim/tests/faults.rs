//! Fault and latency knobs, set per test through the sim home's `knobs.json`: failing, hanging
//! and half-done tool invocations, Helm 3 versus 4, an API server that is down for a while, and
//! a cluster that keeps its objects across `k3d cluster stop` / `start`.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use paddock_sim::knobs::{FaultAction, Knobs, ToolFault};
use serde_json::Value;

const ISTIO: &str = "https://istio-release.storage.googleapis.com/charts";

mod common;

use common::Home;

impl Home {
    fn knobs(&self, k: &Knobs) {
        k.save(self.path()).expect("knobs");
    }
}

fn base_install(h: &Home) -> Output {
    h.run(
        "helm",
        &[
            "upgrade",
            "--install",
            "istio-base",
            "base",
            "--repo",
            ISTIO,
            "--version",
            "1.29.6",
            "-n",
            "istio-system",
            "--create-namespace",
        ],
        None,
    )
}

#[test]
fn tool_faults_fail_chosen_invocations_and_are_logged() {
    let h = Home::new();
    h.cluster("faults");
    h.knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "helm".into(),
            args: vec!["istio-base".into()],
            action: FaultAction::Fail,
            after: 1,
            times: Some(1),
            stderr: Some("Error: UPGRADE FAILED: simulated".into()),
            exit_code: None,
        }],
        ..Knobs::default()
    });
    assert!(base_install(&h).status.success(), "first passes (after: 1)");
    let failed = base_install(&h);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr),
        "Error: UPGRADE FAILED: simulated\n"
    );
    assert!(
        base_install(&h).status.success(),
        "only one failure (times: 1)"
    );
    let log = paddock_sim::world::invocations(h.path());
    let codes: Vec<i32> = log
        .iter()
        .filter(|i| i.tool == "helm")
        .map(|i| i.code)
        .collect();
    assert_eq!(codes, [0, 1, 0]);
}

#[test]
fn hanging_tools_hang_until_killed() {
    let h = Home::new();
    h.knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "k3d".into(),
            args: vec!["create".into()],
            action: FaultAction::Hang,
            after: 0,
            times: None,
            stderr: None,
            exit_code: None,
        }],
        ..Knobs::default()
    });
    let mut child = h
        .command("k3d", &["cluster", "create", "x", "--config", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still hanging"
    );
    child.kill().expect("kill");
    let _ = child.wait();
    let list = h.run("k3d", &["cluster", "list", "-o", "json"], None);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "[]",
        "nothing was created"
    );
}

#[test]
fn a_helm_killed_mid_upgrade_leaves_a_pending_release() {
    let h = Home::new();
    h.cluster("pending");
    assert!(base_install(&h).status.success());
    h.knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "helm".into(),
            args: vec!["upgrade".into()],
            action: FaultAction::DiePending,
            after: 0,
            times: Some(1),
            stderr: None,
            exit_code: None,
        }],
        ..Knobs::default()
    });
    assert_eq!(base_install(&h).status.code(), Some(137));
    let all = h.run(
        "helm",
        &["list", "-n", "istio-system", "--pending", "-o", "json"],
        None,
    );
    let rows: Value = serde_json::from_slice(&all.stdout).expect("json");
    assert_eq!(rows[0]["status"], "pending-upgrade", "{rows}");
    // Helm 4 (the default here) lists every status unless told which (as the real helm 4 does
    // in tests/real_helm.rs); Helm 3 hides pending releases without `--all`.
    let default = h.run("helm", &["list", "-n", "istio-system", "-o", "json"], None);
    let rows: Value = serde_json::from_slice(&default.stdout).expect("json");
    assert_eq!(rows[0]["status"], "pending-upgrade", "{rows}");
    h.knobs(&Knobs {
        helm_major: 3,
        ..Knobs::default()
    });
    let default3 = h.run("helm", &["list", "-n", "istio-system", "-o", "json"], None);
    assert_eq!(
        String::from_utf8_lossy(&default3.stdout).trim(),
        "[]",
        "Helm 3's list hides pending releases by default"
    );
    let again = base_install(&h);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n"
    );
    let history = h.run(
        "helm",
        &["history", "istio-base", "-n", "istio-system", "-o", "json"],
        None,
    );
    let rows: Value = serde_json::from_slice(&history.stdout).expect("json");
    let statuses: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, ["deployed", "pending-upgrade"]);
}

fn statuses(h: &Home) -> Vec<String> {
    let history = h.run(
        "helm",
        &["history", "istio-base", "-n", "istio-system", "-o", "json"],
        None,
    );
    let rows: Value = serde_json::from_slice(&history.stdout).expect("json");
    rows.as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["status"].as_str().map(str::to_string))
        .collect()
}

/// While a helm upgrade works (its latency), its release is `pending-upgrade`; another
/// operation meanwhile is refused; the first then finishes `deployed`. A helm killed with
/// SIGKILL inside that window leaves the release pending for good.
#[test]
fn a_working_helm_holds_its_release_pending_and_a_killed_one_leaves_it_so() {
    let h = Home::new();
    h.cluster("window");
    assert!(base_install(&h).status.success());
    h.knobs(&Knobs {
        tool_latency_ms: [("helm upgrade".to_string(), 1_500)].into(),
        ..Knobs::default()
    });
    let spawn = || {
        h.command(
            "helm",
            &[
                "upgrade",
                "--install",
                "istio-base",
                "base",
                "--repo",
                ISTIO,
                "--version",
                "1.29.6",
                "-n",
                "istio-system",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
    };
    let pending_soon = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while statuses(&h).last().map(String::as_str) != Some("pending-upgrade") {
            assert!(
                Instant::now() < deadline,
                "never pending: {:?}",
                statuses(&h)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = spawn();
    pending_soon();
    h.knobs(&Knobs::default());
    let second = base_install(&h);
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&second.stderr),
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n"
    );
    let out = first.wait_with_output().expect("first helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(statuses(&h), ["superseded", "deployed"]);

    h.knobs(&Knobs {
        tool_latency_ms: [("helm upgrade".to_string(), 1_500)].into(),
        ..Knobs::default()
    });
    let mut killed = spawn();
    pending_soon();
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    std::thread::sleep(Duration::from_millis(1_700));
    assert_eq!(
        statuses(&h),
        ["superseded", "deployed", "pending-upgrade"],
        "nobody finishes what a killed helm started"
    );
}

#[test]
fn helm_3_and_4_differ_in_flags_and_version() {
    let h = Home::new();
    let v4 = h.run("helm", &["version", "--short"], None);
    assert_eq!(String::from_utf8_lossy(&v4.stdout), "v4.1.4+gsim\n");
    let atomic4 = h.run(
        "helm",
        &["upgrade", "--install", "x", "base", "--atomic"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&atomic4.stderr),
        "Error: unknown flag: --atomic\n"
    );
    h.knobs(&Knobs {
        helm_major: 3,
        ..Knobs::default()
    });
    let v3 = h.run("helm", &["version", "--template", "{{.Version}}"], None);
    assert_eq!(String::from_utf8_lossy(&v3.stdout), "v3.19.0");
    let rof3 = h.run(
        "helm",
        &["upgrade", "--install", "x", "base", "--rollback-on-failure"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&rof3.stderr),
        "Error: unknown flag: --rollback-on-failure\n"
    );
    let wait3 = h.run(
        "helm",
        &["upgrade", "--install", "x", "base", "--wait=watcher"],
        None,
    );
    assert!(String::from_utf8_lossy(&wait3.stderr).contains("invalid argument \"watcher\""));
}

#[test]
fn the_api_server_can_be_down_for_a_while() {
    let h = Home::new();
    h.cluster("flaky");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    // Long enough to outlast the fake helm's rendering of the chart before it calls the API.
    h.knobs(&Knobs {
        api_down_until_ms: now + 3_000,
        ..Knobs::default()
    });
    // The server re-reads its knobs within its 200 ms idle tick.
    std::thread::sleep(Duration::from_millis(300));
    let down = base_install(&h);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if base_install(&h).status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the API server came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stopped_clusters_keep_their_objects() {
    let h = Home::new();
    h.cluster("pause");
    assert!(base_install(&h).status.success());
    assert!(
        h.run("k3d", &["cluster", "stop", "pause"], None)
            .status
            .success()
    );
    let list: Value = serde_json::from_slice(
        &h.run("k3d", &["cluster", "list", "-o", "json"], None)
            .stdout,
    )
    .expect("json");
    assert_eq!(list[0]["serversRunning"], 0);
    assert_eq!(list[0]["nodes"][0]["State"]["Status"], "exited");
    let unreachable = h.run("helm", &["list", "-A", "-o", "json"], None);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        h.run("k3d", &["cluster", "start", "pause"], None)
            .status
            .success()
    );
    let kc = h.run("k3d", &["kubeconfig", "get", "pause"], None);
    std::fs::write(h.kubeconfig_path(), &kc.stdout).expect("kubeconfig");
    let rows: Value =
        serde_json::from_slice(&h.run("helm", &["list", "-A", "-o", "json"], None).stdout)
            .expect("json");
    assert_eq!(
        rows[0]["name"], "istio-base",
        "the release survived stop/start: {rows}"
    );
}
