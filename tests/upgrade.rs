//! Istio upgrades against the sim: canary 1.29 → 1.30 under continuous traffic with every kind
//! of workload, in place (minor and patch), automatic rollback at each canary step, and
//! preflight refusals.

mod support;

use std::time::{Duration, Instant};

use paddock_sim::knobs::{FaultAction, Knobs, ToolFault};
use paddock_sim::traffic::{Connections, Expect, Options as TrafficOptions, Report, Traffic};
use serde_json::{Value, json};
use support::mesh::{
    assert_all_on, assert_releases_deployed, mesh_world, mesh_world_with, patches, post, status,
    two_workloads, workload,
};
use support::{Helm, World, api, probe, result, stderr, stdout};

/// Every kind of workload the upgrade must carry over.
fn deploy_workloads(w: &World) {
    post(
        w,
        "/apis/apps/v1/namespaces/apps-canary/deployments",
        workload("Deployment", "canary-web", Some(2), json!({})),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/apps/deployments",
        workload("Deployment", "web", Some(2), json!({})),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/apps/statefulsets",
        workload("StatefulSet", "db", Some(2), json!({})),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/apps/statefulsets",
        workload(
            "StatefulSet",
            "cache",
            Some(2),
            json!({"updateStrategy": {"type": "OnDelete"}}),
        ),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/apps/daemonsets",
        workload("DaemonSet", "agent", None, json!({})),
    );
    post(
        w,
        "/apis/batch/v1/namespaces/apps/jobs",
        workload(
            "Job",
            "once",
            None,
            json!({"template": {"spec": {"restartPolicy": "Never"}}}),
        ),
    );
    post(
        w,
        "/apis/apps/v1/namespaces/legacy/deployments",
        workload("Deployment", "old-style", Some(1), json!({})),
    );
    for pod in ["solo-a", "solo-b"] {
        post(
            w,
            "/api/v1/namespaces/apps/pods",
            json!({"metadata": {"name": pod, "labels": {"app": "solo"}},
            "spec": {"containers": [{"name": "app", "image": "example/solo:1"}]}}),
        );
    }
    post(
        w,
        "/apis/policy/v1/namespaces/apps/poddisruptionbudgets",
        json!({"metadata": {"name": "solo"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "solo"}}}}),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, pods) = api(w, "mesh", "GET", "/api/v1/pods", None);
        let ours: Vec<&Value> = pods["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|p| {
                ["apps", "apps-canary", "legacy"]
                    .contains(&p["metadata"]["namespace"].as_str().unwrap_or_default())
            })
            .collect();
        let running = ours
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" || p["status"]["phase"] == "Succeeded")
            .count();
        // 2 canary-web + 2 web + 2 db + 2 cache + 2 agent (2 nodes) + 1 job + 1 old-style + 2 solo
        if running >= 14 && ours.len() == running {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workloads did not start: {running} of {}",
            ours.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Route the mesh workloads from the ingress: a Service for `web` (tag `stable`),
/// `canary-web` (tag `canary`) and `old-style` (`istio-injection=enabled`), a Gateway for
/// `shop.example` on the ingress gateway's pods, and a VirtualService sending `/stable`,
/// `/canary` and `/legacy` to them.
fn route_workloads(w: &World) {
    for (ns, app) in ROUTES.iter().map(|(_, ns, app)| (*ns, *app)) {
        post(
            w,
            &format!("/api/v1/namespaces/{ns}/services"),
            json!({"metadata": {"name": app}, "spec": {"selector": {"app": app},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        );
    }
    post(
        w,
        "/apis/networking.istio.io/v1/namespaces/istio-ingress/gateways",
        json!({"metadata": {"name": "shop"}, "spec": {"selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["shop.example"]}]}}),
    );
    let http: Vec<Value> = ROUTES
        .iter()
        .map(|(path, ns, app)| {
            json!({"match": [{"uri": {"prefix": path}}],
                "route": [{"destination": {"host": format!("{app}.{ns}.svc.cluster.local"), "port": {"number": 80}}}]})
        })
        .collect();
    post(
        w,
        "/apis/networking.istio.io/v1/namespaces/istio-ingress/virtualservices",
        json!({"metadata": {"name": "shop"}, "spec": {"hosts": ["shop.example"], "gateways": ["shop"], "http": http}}),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    for (path, _, _) in ROUTES {
        loop {
            let answer = support::request(w.port(8080), "shop.example", path);
            if answer
                .as_ref()
                .is_some_and(|(code, head)| *code == 200 && head.contains("x-paddock-pod"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Ingress path, namespace and app of each routed mesh workload.
const ROUTES: [(&str, &str, &str); 3] = [
    ("/stable", "apps", "web"),
    ("/canary", "apps-canary", "canary-web"),
    ("/legacy", "legacy", "old-style"),
];

/// `clients` clients (half keep-alive, half a connection per request) sending requests to an
/// app through the ingress; a request counts only when an app pod answers it.
fn route_traffic(w: &World, path: &str, clients: usize) -> Traffic {
    Traffic::start(TrafficOptions {
        port: w.port(8080),
        host_header: "shop.example".into(),
        path: path.into(),
        clients,
        connections: Connections::Mixed,
        pause: Duration::from_millis(40),
        expect: Expect::App,
        timeout: Duration::from_secs(5),
    })
}

/// Traffic to every routed workload at once: 4 clients each (12 in all).
fn mesh_traffic(w: &World) -> Vec<(&'static str, Traffic)> {
    ROUTES
        .iter()
        .map(|(path, _, _)| (*path, route_traffic(w, path, 4)))
        .collect()
}

/// Stop the traffic and check no request failed; returns the reports by path.
fn no_request_failed(traffic: Vec<(&'static str, Traffic)>) -> Vec<(&'static str, Report)> {
    let reports: Vec<(&str, Report)> = traffic.into_iter().map(|(p, t)| (p, t.finish())).collect();
    for (path, r) in &reports {
        assert!(r.total > 100, "{path}: traffic ran throughout: {r:?}");
        assert_eq!(
            r.failed, 0,
            "{path}: {} of {} requests failed: {:?}",
            r.failed, r.total, r.failures
        );
    }
    reports
}

/// Latencies close to a real cluster (pods start in seconds, terminate for seconds while
/// proxies drain, endpoints follow after a second), for the traffic checks.
fn realistic(w: &World) {
    w.set_knobs(&Knobs {
        app_latency_ms: 20,
        ..Knobs::realistic()
    });
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn canary_upgrade_under_traffic_moves_every_workload_and_drops_no_request() {
    let w = mesh_world("1.29.6", "canary");
    deploy_workloads(&w);
    assert_all_on(&w, "1.29.6");
    let (_, job_before) = api(
        &w,
        "mesh",
        "GET",
        "/api/v1/namespaces/apps/pods?labelSelector=job-name%3Donce",
        None,
    );
    route_workloads(&w);
    realistic(&w);
    let traffic = mesh_traffic(&w);
    std::thread::sleep(Duration::from_millis(300));
    let out = w.paddock(&[
        "upgrade",
        "mesh",
        "--to",
        "1.30.3",
        "--grace",
        "1",
        "--timeout",
        "180",
        "-o",
        "json",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let reports = no_request_failed(traffic);
    assert_eq!(result(&out)["ok"], true, "{}{}", stdout(&out), stderr(&out));
    for (path, r) in &reports {
        assert_eq!(
            r.by_revision.keys().collect::<Vec<_>>(),
            ["1-29-6", "1-30-3"],
            "{path}: answered by both control planes' proxies across the upgrade: {r:?}"
        );
    }
    assert_all_on(&w, "1.30.3");
    let s = status(&w);
    let revisions: Vec<&str> = s["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .filter_map(|r| r["revision"].as_str())
        .collect();
    assert_eq!(revisions, ["1-30-3"], "the 1.29 control plane is gone");
    let (code, _) = api(
        &w,
        "mesh",
        "GET",
        "/apis/apps/v1/namespaces/istio-system/deployments/istiod-1-29-6",
        None,
    );
    assert_eq!(code, 404);
    let (_, hooks) = api(
        &w,
        "mesh",
        "GET",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?labelSelector=istio.io%2Frev%3D1-29-6",
        None,
    );
    assert_eq!(
        hooks["items"].as_array().map(Vec::len),
        Some(0),
        "no webhook of 1.29 left: {hooks}"
    );
    let (_, vwc) = api(
        &w,
        "mesh",
        "GET",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/istiod-default-validator",
        None,
    );
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"]["service"]["name"],
        "istiod-1-30-3"
    );
    let (_, job_after) = api(
        &w,
        "mesh",
        "GET",
        "/api/v1/namespaces/apps/pods?labelSelector=job-name%3Donce",
        None,
    );
    assert_eq!(
        job_before["items"][0]["metadata"]["uid"], job_after["items"][0]["metadata"]["uid"],
        "the Job's pod was left alone"
    );
    let history = w.paddock(&["history", "mesh"]);
    assert!(
        stdout(&history).contains("remove-old"),
        "{}",
        stdout(&history)
    );
    assert_releases_deployed(&w, "1.30.3");
}

fn in_place(from: &str, to: &str) {
    let w = mesh_world(from, "in-place");
    deploy_workloads(&w);
    assert_all_on(&w, from);
    route_workloads(&w);
    realistic(&w);
    let traffic = mesh_traffic(&w);
    std::thread::sleep(Duration::from_millis(300));
    let out = w.paddock(&[
        "upgrade",
        "mesh",
        "--to",
        to,
        "--timeout",
        "180",
        "-o",
        "json",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let reports = no_request_failed(traffic);
    assert_eq!(result(&out)["ok"], true, "{}{}", stdout(&out), stderr(&out));
    for (path, r) in &reports {
        assert_eq!(
            r.by_proxy_version.keys().collect::<Vec<_>>(),
            [from, to],
            "{path}: answered by old and new proxies across the upgrade: {r:?}"
        );
    }
    assert_all_on(&w, to);
    let rev = from.replace('.', "-");
    let s = status(&w);
    assert_eq!(
        s["revisions"][0]["revision"], rev,
        "in place keeps the revision name"
    );
    assert_eq!(s["revisions"][0]["version"], to);
    assert_releases_deployed(&w, to);
}

#[test]
fn in_place_minor_upgrade_under_traffic_drops_no_request() {
    in_place("1.29.6", "1.30.3");
}

#[test]
fn in_place_patch_upgrade_under_traffic_drops_no_request() {
    in_place("1.30.2", "1.30.3");
}

/// The traffic check of the upgrade tests fails when a rollout really drops requests: a single
/// replica allowed to go unavailable during a restart (its old pod leaves the endpoints before
/// the new one joins them), and a pod deleted outright (grace 0) while the lagging endpoints
/// still send it requests.
#[test]
fn the_traffic_check_catches_rollouts_that_drop_requests() {
    let w = mesh_world("1.30.3", "canary");
    deploy_workloads(&w);
    route_workloads(&w);
    realistic(&w);
    let (code, body) = api(
        &w,
        "mesh",
        "PATCH",
        "/apis/apps/v1/namespaces/legacy/deployments/old-style",
        Some(&json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}})),
    );
    assert_eq!(code, 200, "{body}");
    let traffic = route_traffic(&w, "/legacy", 4);
    std::thread::sleep(Duration::from_millis(300));
    let out = w.paddock(&[
        "restart",
        "mesh",
        "--namespace",
        "legacy",
        "--timeout",
        "60",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    let r = traffic.finish();
    assert!(
        r.failed > 0,
        "one replica with maxUnavailable 1 drops requests: {r:?}"
    );

    let traffic = route_traffic(&w, "/stable", 4);
    std::thread::sleep(Duration::from_millis(500));
    let (_, pods) = api(
        &w,
        "mesh",
        "GET",
        "/api/v1/namespaces/apps/pods?labelSelector=app%3Dweb",
        None,
    );
    let victim = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("a web pod")
        .to_string();
    let (code, body) = api(
        &w,
        "mesh",
        "DELETE",
        &format!("/api/v1/namespaces/apps/pods/{victim}?gracePeriodSeconds=0"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(2_500));
    let r = traffic.finish();
    assert!(
        r.failed > 0,
        "a pod deleted with grace 0 drops what still reaches it: {r:?}"
    );
}

/// Pods terminating for a while after each rollout is done, and endpoints lagging behind.
fn terminating_knobs() -> Knobs {
    Knobs {
        termination_ms: 1_200,
        termination_drain_ms: 1_500,
        endpoint_lag_ms: 150,
        ..Knobs::default()
    }
}

/// A rollout is done by kubectl's rules while the old pods still terminate, annotated with the
/// old revision and running the old proxy (KUBERNETES.md): an upgrade's checks must not take
/// them for workloads left behind and roll a healthy upgrade back.
#[test]
fn upgrades_are_not_fooled_by_pods_that_are_still_terminating() {
    for (strategy, to) in [("canary", "1.30.3"), ("in-place", "1.30.3")] {
        let w = mesh_world("1.29.6", strategy);
        two_workloads(&w);
        w.set_knobs(&terminating_knobs());
        std::thread::sleep(Duration::from_millis(400));
        let out = w.paddock(&[
            "upgrade",
            "mesh",
            "--to",
            to,
            "--grace",
            "0",
            "--timeout",
            "60",
            "-o",
            "json",
        ]);
        assert_eq!(
            result(&out)["ok"],
            true,
            "{strategy}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_all_on(&w, to);
    }
}

/// The smoke step deletes its namespace, which then terminates for a while; undoing the step
/// meanwhile (a later step failed) must not fail on the API's 409 for a namespace already
/// being deleted.
#[test]
fn a_rollback_right_after_the_smoke_test_copes_with_its_terminating_namespace() {
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    let mut k = fault("helm", &["template"], 0);
    k.termination_ms = 3_000;
    k.termination_drain_ms = 3_000;
    w.set_knobs(&k);
    std::thread::sleep(Duration::from_millis(400));
    let out = w.paddock(&[
        "upgrade",
        "mesh",
        "--to",
        "1.30.3",
        "--timeout",
        "20",
        "-o",
        "json",
    ]);
    let r = rolled_back_at(&out, "tag-canary");
    assert!(
        r["undone"]
            .as_array()
            .is_some_and(|u| u.iter().any(|s| s == "smoke")),
        "{r}"
    );
}

/// A canary upgrade of `mesh` paused after `tags`, and its journal as the JSONL file paddock
/// kept before SQLite (`journal/mesh.jsonl`, one JSON line per record), rebuilt from the
/// records `history -o json` shows, as a crash right after `tags` finished would have left it
/// (the pause record dropped); and where its last record, `step-done tags`, starts.
fn paused_after_tags() -> (World, Vec<u8>, usize) {
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    let out = w.paddock(&[
        "upgrade",
        "mesh",
        "--to",
        "1.30.3",
        "--grace",
        "0",
        "--pause-after",
        "tags",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Paused for a person's check: `up` leaves the cluster alone and says how to go on.
    let up = w.paddock(&["up", "mesh"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("is paused for a check")
            && stderr(&up).contains("run `paddock upgrade mesh` to continue"),
        "{}",
        stderr(&up)
    );
    let history = w.paddock(&["history", "mesh", "-o", "json"]);
    let h: Value = serde_json::from_slice(&history.stdout).expect("history json");
    // The `up` that made the cluster is journaled too; the upgrade is one operation.
    let ops: Vec<&Value> = h["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| {
            o["op"]
                .as_str()
                .is_some_and(|id| id.starts_with("upgrade-"))
        })
        .collect();
    assert_eq!(ops.len(), 1, "{h}");
    let mut lines: Vec<String> = ops[0]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(lines.pop().is_some_and(|l| l.contains("op-paused")));
    let last = lines.last().expect("a record");
    assert!(
        last.contains("step-done") && last.contains("\"tags\""),
        "{last}"
    );
    let whole: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let start = whole.len() - last.len() - 1;
    (w, whole.into_bytes(), start)
}

/// Put `bytes` in place as the legacy journal of `mesh`, with no database beside it: the next
/// paddock imports it.
fn legacy_journal(w: &World, bytes: &[u8]) {
    for f in ["journal.db", "journal.db-wal", "journal.db-shm"] {
        let _ = std::fs::remove_file(w.state.path().join(f));
    }
    let dir = w.state.path().join("journal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("journal/");
    std::fs::write(dir.join("mesh.jsonl"), bytes).expect("cut");
}

/// The legacy JSONL journal cut at every byte offset of its last record (a crash mid-write
/// before the journal moved to SQLite): every run after it imports it, says it was repaired
/// exactly when bytes were left out and continues from what the journal then holds; the real
/// resume from cuts at the start, the middle and the end of that record completes the upgrade,
/// through `paddock upgrade` and through `paddock up`.
#[test]
fn a_journal_cut_anywhere_in_its_last_record_resumes_correctly() {
    let (w, whole, start) = paused_after_tags();
    for cut in start..=whole.len() {
        legacy_journal(&w, &whole[..cut]);
        let out = w.paddock(&["upgrade", "mesh", "--dry-run"]);
        let text = stdout(&out);
        assert!(out.status.success(), "cut at {cut}: {text}{}", stderr(&out));
        assert!(
            !w.state.path().join("journal/mesh.jsonl").exists()
                && w.state.path().join("journal/mesh.jsonl.migrated").exists()
                && w.state.path().join("journal.db").exists(),
            "cut at {cut}: imported into journal.db and kept aside"
        );
        let torn = cut > start && cut < whole.len();
        assert_eq!(
            text.contains("cut short by a crash"),
            torn,
            "cut at {cut}: the repair is said exactly when bytes were removed: {text}"
        );
        assert!(
            text.contains("tag-canary [done]") && text.contains("restart-canary [done]"),
            "cut at {cut}: earlier steps stay done: {text}"
        );
        assert_eq!(
            text.contains("tags [done]"),
            cut == whole.len(),
            "cut at {cut}: `tags` counts as done only with its whole record: {text}"
        );
    }
    for (i, command) in ["upgrade", "up", "upgrade"].into_iter().enumerate() {
        let (w, whole, start) = paused_after_tags();
        let cut = [start, start + (whole.len() - start) / 2, whole.len() - 1][i];
        legacy_journal(&w, &whole[..cut]);
        if command == "up" {
            // `up` converges to the spec: the spec asks for the version being upgraded to.
            w.edit("clusters/mesh.yaml", |t| {
                t.replace("version: 1.29.6", "version: 1.30.3")
            });
        }
        let out = w.paddock(&[command, "mesh", "-o", "json"]);
        assert_eq!(
            result(&out)["ok"],
            true,
            "{command} after a cut at {cut}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_all_on(&w, "1.30.3");
        let history = w.paddock(&["history", "mesh", "-o", "json"]);
        let h: Value = serde_json::from_slice(&history.stdout).expect("history json");
        let ops: Vec<&Value> = h["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .filter(|o| {
                o["op"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("upgrade-"))
            })
            .collect();
        assert_eq!(ops.len(), 1, "the same operation continued: {h}");
        assert!(
            ops[0]["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["event"] == "op-done"),
            "{h}"
        );
    }
}

/// `history` reads the journal while an upgrade records in it: every run succeeds with whole
/// JSON, sees no fewer records than the one before, and the upgrade is seen under way.
#[test]
fn history_reads_the_journal_while_an_upgrade_records() {
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    w.set_knobs(&Knobs {
        tool_latency_ms: [("helm".to_string(), 100)].into(),
        ..Knobs::default()
    });
    let mut child = w.spawn_paddock(&["upgrade", "mesh", "--to", "1.30.3", "--grace", "0"]);
    let mut counts: Vec<usize> = Vec::new();
    let mut reads = 0;
    while child.try_wait().expect("wait").is_none() {
        let history = w.paddock(&["history", "mesh", "-o", "json"]);
        assert!(history.status.success(), "{}", stderr(&history));
        let h: Value = serde_json::from_slice(&history.stdout).expect("whole history json");
        // The upgrade's records (the `up` that made the cluster is journaled too).
        let n = h["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .filter(|op| {
                op["op"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("upgrade-"))
            })
            .map(|op| op["entries"].as_array().expect("entries").len())
            .sum();
        assert!(
            counts.last().is_none_or(|last| *last <= n),
            "{counts:?} then {n}"
        );
        if counts.last() != Some(&n) {
            counts.push(n);
        }
        reads += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("upgrade");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        counts.iter().filter(|n| **n > 0).count() >= 3,
        "the upgrade was seen under way ({reads} reads): {counts:?}"
    );
    let history = w.paddock(&["history", "mesh"]);
    assert!(stdout(&history).contains("done"), "{}", stdout(&history));
    // The operation's row, as a user inspecting the database sees it.
    let db = rusqlite::Connection::open(w.state.path().join("journal.db")).expect("journal.db");
    let row: (String, String, String, String, bool) = db
        .query_row(
            "SELECT cluster, kind, status, source, finished_at IS NOT NULL FROM operations \
             WHERE kind = 'upgrade'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("one operation");
    let repo = std::fs::canonicalize(w.repo.path()).expect("repo");
    assert_eq!(
        row,
        (
            "mesh".into(),
            "upgrade".into(),
            "done".into(),
            repo.display().to_string(),
            true
        )
    );
}

/// An upgrade that failed at `step` and rolled back: exit 3 and a result saying so.
fn rolled_back_at(out: &std::process::Output, step: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(3),
        "{step}: rolled back exits 3: {}{}",
        stdout(out),
        stderr(out)
    );
    let r = result(out);
    assert_eq!(r["rolledBack"], true, "{step}: {r}");
    assert_eq!(r["step"], step, "{step}: {r}");
    r
}

fn fault(tool: &str, args: &[&str], after: usize) -> Knobs {
    Knobs {
        tool_faults: vec![ToolFault {
            tool: tool.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            action: FaultAction::Fail,
            after,
            // Once: the rollback runs the same tools and must get through.
            times: Some(1),
            stderr: Some("Error: simulated failure".into()),
            exit_code: None,
        }],
        ..Knobs::default()
    }
}

/// Make `step` fail: pause right before it when the fault needs the earlier steps done.
fn inject(w: &World, step: &str) -> Option<&'static str> {
    match step {
        "base" => {
            w.set_knobs(&fault("helm", &["upgrade", "istio-base"], 0));
            None
        }
        "istiod" => {
            w.set_knobs(&Knobs {
                crashloop: vec!["pilot:1.30.3".into()],
                ..Knobs::default()
            });
            None
        }
        "tag-canary" => {
            w.set_knobs(&fault("helm", &["template"], 0));
            None
        }
        "tags" => {
            w.set_knobs(&fault("helm", &["template"], 1));
            None
        }
        "gateways" => {
            w.set_knobs(&fault("helm", &["upgrade", "istio-ingress"], 0));
            None
        }
        // A leftover namespace of the smoke test's name turns injection off.
        "smoke" => {
            let ns = json!({"metadata": {"name": "paddock-smoke-1-30-3", "labels": {"istio-injection": "disabled"}}});
            let (code, body) = api(w, "mesh", "POST", "/api/v1/namespaces", Some(&ns));
            assert_eq!(code, 201, "{body}");
            None
        }
        "restart-canary" => Some("tag-canary"),
        "restart" => Some("tags"),
        "old-unused" => Some("gateways"),
        "default-revision" => Some("old-unused"),
        _ => None,
    }
}

/// After pausing before `step`, break it.
fn break_after_pause(w: &World, step: &str) {
    match step {
        // New proxies crash: restarted workloads never become ready.
        "restart-canary" | "restart" => w.set_knobs(&Knobs {
            crashloop: vec!["proxyv2:1.30.3".into()],
            ..Knobs::default()
        }),
        // Something still selects the old revision.
        "old-unused" => {
            let (code, body) = api(
                w,
                "mesh",
                "POST",
                "/api/v1/namespaces",
                Some(
                    &json!({"metadata": {"name": "straggler", "labels": {"istio.io/rev": "1-29-6"}}}),
                ),
            );
            assert_eq!(code, 201, "{body}");
        }
        "default-revision" => w.set_knobs(&fault("helm", &["upgrade", "istio-base"], 0)),
        _ => {}
    }
}

#[test]
fn a_failure_at_each_canary_step_rolls_back_to_a_serving_1_29() {
    for step in [
        "base",
        "istiod",
        "smoke",
        "tag-canary",
        "restart-canary",
        "tags",
        "restart",
        "gateways",
        "old-unused",
        "default-revision",
    ] {
        let w = mesh_world("1.29.6", "canary");
        two_workloads(&w);
        let pause = inject(&w, step);
        if let Some(before) = pause {
            let out = w.paddock(&[
                "upgrade",
                "mesh",
                "--to",
                "1.30.3",
                "--timeout",
                "3",
                "--pause-after",
                before,
            ]);
            assert!(
                out.status.success(),
                "{step}: pausing after {before}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            break_after_pause(&w, step);
            // The sim's cluster re-reads its knobs within 200 ms.
            std::thread::sleep(Duration::from_millis(400));
        }
        let mut args = vec!["upgrade", "mesh", "--timeout", "3", "-o", "json"];
        if pause.is_none() {
            args.extend(["--to", "1.30.3"]);
        }
        let out = w.paddock(&args);
        rolled_back_at(&out, step);
        // Heal the fault, then check: every workload on 1.29, serving, and `up` verifies.
        w.set_knobs(&Knobs::default());
        if step == "old-unused" {
            let _ = api(&w, "mesh", "DELETE", "/api/v1/namespaces/straggler", None);
        }
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("after a failure at {step}: {}", stdout(&out));
        assert_all_on(&w, "1.29.6");
        let (_, head) = probe(w.port(8080)).expect("the ingress answers");
        assert!(
            head.contains("x-paddock-gateway-proxy-version: 1.29.6"),
            "{step}: {head}"
        );
        let up = w.paddock(&["up", "mesh", "-o", "json"]);
        assert_eq!(
            result(&up)["ok"],
            true,
            "{step}: up after rollback: {}{}",
            stdout(&up),
            stderr(&up)
        );
    }
}

#[test]
fn preflight_refuses_what_istio_md_forbids() {
    // The fake helm: the release stuck in pending-upgrade below is a fault only it leaves on
    // demand.
    // 1.28 → 1.31 in place: too big a jump.
    let w = mesh_world_with("1.28.10", "in-place", Helm::Fake);
    let out = w.paddock(&[
        "upgrade",
        "mesh",
        "--to",
        "1.31.0",
        "--strategy",
        "in-place",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("jumps 3 minor versions"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    // A namespace with both injection labels.
    let (code, _) = api(
        &w,
        "mesh",
        "POST",
        "/api/v1/namespaces",
        Some(
            &json!({"metadata": {"name": "both", "labels": {"istio-injection": "enabled", "istio.io/rev": "stable"}}}),
        ),
    );
    assert_eq!(code, 201);
    let out = w.paddock(&["upgrade", "mesh", "--to", "1.29.6"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("namespace both has both istio-injection and istio.io/rev"),
        "{}",
        stderr(&out)
    );
    let _ = api(&w, "mesh", "DELETE", "/api/v1/namespaces/both", None);
    // Overlapping webhooks: an unrevisioned istiod beside tag `default`.
    let kc = w.state.path().join("clusters/mesh/kubeconfig");
    let stray = w.tool(
        "helm",
        &[
            "upgrade",
            "--install",
            "istiod",
            "istiod",
            "--repo",
            &w.istio_repo(),
            "--version",
            "1.28.10",
            "-n",
            "istio-system",
            "--kubeconfig",
            kc.to_str().expect("utf8"),
        ],
    );
    assert!(stray.status.success(), "{}", stderr(&stray));
    let out = w.paddock(&["upgrade", "mesh", "--to", "1.29.6"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("injected by 2 webhooks at once"), "{msg}");
    assert!(
        msg.contains("istio-sidecar-injector") && msg.contains("istio-revision-tag-default"),
        "{msg}"
    );
    let gone = w.tool(
        "helm",
        &[
            "uninstall",
            "istiod",
            "-n",
            "istio-system",
            "--kubeconfig",
            kc.to_str().expect("utf8"),
        ],
    );
    assert!(gone.status.success(), "{}", stderr(&gone));
    // A release stuck in pending-upgrade.
    w.set_knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "helm".into(),
            args: vec!["istio-ingress".into()],
            action: FaultAction::DiePending,
            after: 0,
            times: Some(1),
            stderr: None,
            exit_code: None,
        }],
        ..Knobs::default()
    });
    let gw = w.tool(
        "helm",
        &[
            "upgrade",
            "--install",
            "istio-ingress",
            "gateway",
            "--repo",
            &w.istio_repo(),
            "--version",
            "1.28.10",
            "-n",
            "istio-ingress",
            "--kubeconfig",
            kc.to_str().expect("utf8"),
        ],
    );
    assert_eq!(gw.status.code(), Some(137));
    let out = w.paddock(&["upgrade", "mesh", "--to", "1.29.6"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("release istio-ingress/istio-ingress is `pending-upgrade`"),
        "{}",
        stderr(&out)
    );
    assert!(
        w.paddock(&["history", "mesh", "-o", "json"])
            .stdout
            .windows(9)
            .all(|b| b != b"upgrade-1"),
        "refusals start no operation"
    );
}

#[test]
fn an_upgrade_killed_at_every_step_completes_on_rerun_with_each_effect_once() {
    use std::io::{BufRead, BufReader};
    for step in [
        "base",
        "istiod",
        "smoke",
        "tag-canary",
        "restart-canary",
        "tags",
        "restart",
        "gateways",
        "old-unused",
        "default-revision",
        "remove-old",
    ] {
        let w = mesh_world("1.29.6", "canary");
        two_workloads(&w);
        // Slow enough that the kill lands inside the step.
        w.set_knobs(&Knobs {
            pod_start_ms: 150,
            tool_latency_ms: [("helm".to_string(), 150)].into(),
            ..Knobs::default()
        });
        let helm_before = w.invocations().len();
        let (web_before, canary_before) = (
            patches(&w, "/namespaces/apps/deployments/web"),
            patches(&w, "/namespaces/apps-canary/deployments/canary-web"),
        );
        let mut child = w.spawn_paddock(&[
            "upgrade", "mesh", "--to", "1.30.3", "--grace", "0", "-o", "json",
        ]);
        let stdout_pipe = child.stdout.take().expect("stdout");
        let target = format!("upgrade/{step}");
        for line in BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["status"] == "started" && v["step"] == target.as_str() {
                child.kill().expect("SIGKILL");
                break;
            }
        }
        let _ = child.wait();
        let rerun = w.paddock(&["upgrade", "mesh", "-o", "json"]);
        assert_eq!(
            result(&rerun)["ok"],
            true,
            "rerun after a kill at {step}: {}{}",
            stdout(&rerun),
            stderr(&rerun)
        );
        w.set_knobs(&Knobs::default());
        std::thread::sleep(Duration::from_millis(300));
        assert_all_on(&w, "1.30.3");
        // Each step's effect happened once (the killed step may have run twice).
        let runs = |words: &[&str]| {
            let all = w.invocations();
            all[helm_before..]
                .iter()
                .filter(|i| i.tool == "helm" && words.iter().all(|x| i.args.iter().any(|a| a == x)))
                .count()
        };
        let once = |what: &str, n: usize, owner: &[&str]| {
            if !owner.contains(&step) {
                assert_eq!(n, 1, "{what} after a kill at {step}");
            } else {
                assert!((1..=2).contains(&n), "{what} after a kill at {step}: {n}");
            }
        };
        once(
            "istiod-1-30-3 installed",
            runs(&["upgrade", "istiod-1-30-3"]),
            &["istiod"],
        );
        once(
            "the gateway upgraded",
            runs(&["upgrade", "istio-ingress"]),
            &["gateways"],
        );
        once(
            "istiod-1-29-6 uninstalled",
            runs(&["uninstall", "istiod-1-29-6"]),
            &["remove-old"],
        );
        once(
            "web restarted",
            patches(&w, "/namespaces/apps/deployments/web") - web_before,
            &["restart"],
        );
        once(
            "canary-web restarted",
            patches(&w, "/namespaces/apps-canary/deployments/canary-web") - canary_before,
            &["restart-canary"],
        );
    }
}

#[test]
fn changing_the_spec_version_makes_up_upgrade_by_the_spec_strategy() {
    let w = mesh_world("1.29.6", "canary");
    post(
        &w,
        "/apis/apps/v1/namespaces/apps/deployments",
        workload("Deployment", "web", Some(2), json!({})),
    );
    std::thread::sleep(Duration::from_millis(300));
    w.edit("clusters/mesh.yaml", |t| {
        t.replace("version: 1.29.6", "version: 1.30.3")
            .replace("gracePeriod: 1s", "gracePeriod: 0s")
    });
    let out = w.paddock(&["up", "mesh"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("upgrade/tag-canary"),
        "the canary procedure ran: {}",
        stdout(&out)
    );
    assert!(
        !w.mutations()
            .iter()
            .any(|m| m.contains("upgrade --install istiod-1-30-3") && m.contains("revisionTags")),
        "never a reinstall with tags"
    );
    assert_all_on(&w, "1.30.3");
    let again = w.paddock(&["up", "mesh"]);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));
}
