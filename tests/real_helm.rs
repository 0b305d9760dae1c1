//! The real helm 4 and the real charts (from a loopback chart repository) driving the sim:
//! what `up` installs is what helm's own storage reports, the command lines are the ones the
//! plan snapshots show, a helm killed mid-install is recovered, and helm's and the API
//! server's refusals reach the user with helm's own words and the manifest's file.

mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use paddock_sim::knobs::Knobs;
use serde_json::Value;
use support::{Helm, World, result, stderr, stdout, up_fails, up_ok};

/// A world with the real helm, or `None` (the test skips) where it cannot be had.
fn real_world() -> Option<World> {
    let w = World::with(false, Helm::Real);
    if w.real_helm.is_none() {
        eprintln!("skipping: needs the real helm and charts");
        return None;
    }
    Some(w)
}

/// `name → (status, chart)` of every release, as the real `helm list -A -a` reports them.
fn releases(w: &World, cluster: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = w
        .helm_list(cluster)
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("status"), s("chart"))
        })
        .collect();
    v.sort();
    v
}

/// The `helm upgrade --install` command lines of a plan snapshot, with the public chart
/// repositories replaced by the loopback ones the world's specs use.
fn snapshot_installs(w: &World, snapshot: &str) -> Vec<String> {
    let (_, charts) = w.real_helm.as_ref().expect("real helm");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(snapshot),
    )
    .expect("snapshot");
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("helm upgrade --install "))
        .map(|l| {
            let mut l = l.replace(
                "https://istio-release.storage.googleapis.com/charts",
                &charts.istio(),
            );
            for (_, repo, _, _) in paddock_sim::chart_repo::PUBLIC {
                l = l.replace(repo, &charts.addons());
            }
            l
        })
        .collect();
    v.sort();
    v
}

/// The `helm upgrade --install` runs the world saw, without the kubeconfig flag (a
/// per-cluster path) and the values, which come on stdin (`-f -`).
fn helm_installs(w: &World) -> Vec<String> {
    let mut v: Vec<String> = w
        .invocations()
        .into_iter()
        .filter(|i| i.tool == "helm" && i.args.iter().any(|a| a == "--install"))
        .map(|i| {
            let mut args = i.args.clone();
            if let Some(k) = args.iter().position(|a| a == "--kubeconfig") {
                args.drain(k..k + 2);
            }
            assert_eq!(i.code, 0, "helm {}", args.join(" "));
            format!("helm {}", args.join(" ").trim_end_matches(" -f -"))
        })
        .collect();
    v.sort();
    v
}

/// `up dev` (Istio 1.30.3 with its gateway, prometheus, grafana, kiali, jaeger) with the real
/// helm and charts: every step passes, the ingress answers, every release is `deployed` at
/// its pinned chart as the real `helm list` reports it, and helm ran exactly the command lines
/// the plan snapshot shows.
#[test]
fn up_dev_with_the_real_helm_deploys_every_release_with_the_snapshot_command_lines() {
    let Some(w) = real_world() else { return };
    let r = up_ok(&w, "dev");
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["steps"]["verify/ingress"].is_u64(), "{r}");
    let (code, head) = support::probe(w.port(8080)).expect("the ingress answers");
    assert_eq!(code, 200, "{head}");
    let want: Vec<(String, String, String)> = [
        ("grafana", "grafana-9.4.5"),
        ("istio-base", "base-1.30.3"),
        ("istio-ingress", "gateway-1.30.3"),
        ("istiod-1-30-3", "istiod-1.30.3"),
        ("jaeger", "jaeger-3.4.1"),
        ("kiali", "kiali-server-2.17.0"),
        ("prometheus", "prometheus-27.39.0"),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), "deployed".to_string(), c.to_string()))
    .collect();
    assert_eq!(releases(&w, "dev"), want);
    let ran = helm_installs(&w);
    let shown = snapshot_installs(&w, "cli__plan_dev.snap");
    assert!(!shown.is_empty(), "the snapshot shows helm command lines");
    assert_eq!(ran, shown, "helm ran what the plan snapshot shows");
}

/// SIGKILL of paddock and its real helm while helm installs istiod leaves the release
/// `pending-install` in helm's storage; the rerun recovers it and completes, and every release
/// ends `deployed`.
#[test]
fn a_real_helm_killed_while_installing_istiod_is_recovered_on_rerun() {
    let Some(w) = real_world() else { return };
    // Each API write takes a while, so helm's install of istiod lasts long enough to be
    // caught inside.
    w.set_knobs(&Knobs {
        slow_verbs: [("PATCH".to_string(), 150)].into(),
        ..Knobs::default()
    });
    let mut child = support::spawn_group(&w, &["up", "ci", "-o", "json"]);
    let out = child.stdout.take().expect("stdout");
    let mut caught = false;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["status"] == "started" && v["step"] == "helm.install/istiod-1-30-3" {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if support::storage_status(&w, "ci", "istio-system", "istiod-1-30-3").as_deref()
                    == Some("pending-install")
                {
                    caught = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
    }
    let pgid = child.id();
    // The process group: paddock, the helm it runs and that helm's own child.
    support::kill_group(pgid);
    let _ = child.wait();
    assert!(caught, "helm's release was seen pending-install");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        support::storage_status(&w, "ci", "istio-system", "istiod-1-30-3").as_deref(),
        Some("pending-install"),
        "the killed helm left its release pending"
    );
    // Helm 4's plain `helm list` shows every status, pending ones included (Helm 3's shows
    // only deployed and failed ones): the fake helm's Helm 4 mode is held to this.
    let (helm, _) = w.real_helm.as_ref().expect("real helm");
    let plain = std::process::Command::new(helm)
        .args(["list", "-A", "-o", "json", "--kubeconfig"])
        .arg(w.kubeconfig("ci"))
        .env("HOME", w.home.path())
        .output()
        .expect("helm list");
    let shown: Vec<Value> = serde_json::from_slice(&plain.stdout).expect("json");
    assert!(
        shown
            .iter()
            .any(|r| r["name"] == "istiod-1-30-3" && r["status"] == "pending-install"),
        "{shown:?}"
    );
    w.set_knobs(&Knobs::default());
    let rerun = w.paddock(&["up", "ci"]);
    assert!(
        rerun.status.success(),
        "rerun: {}{}",
        stdout(&rerun),
        stderr(&rerun)
    );
    assert!(
        stdout(&rerun)
            .contains("release istiod-1-30-3 was left pending-install by an interrupted run"),
        "{}",
        stdout(&rerun)
    );
    assert!(
        releases(&w, "ci")
            .iter()
            .all(|(_, status, _)| status == "deployed"),
        "{:?}",
        releases(&w, "ci")
    );
    let again = result(&w.paddock(&["up", "ci", "-o", "json"]));
    assert_eq!(again["upToDate"], true, "{again}");
}

/// A value of the wrong type for a chart with a values schema (prometheus: `server.replicaCount`
/// is an integer) fails `up` at that release, quoting helm's own schema message.
#[test]
fn a_mistyped_addon_value_fails_up_with_helms_own_message() {
    let Some(w) = real_world() else { return };
    w.edit("addons/prometheus.yaml", |t| {
        t.replace("  server:\n", "  server:\n    replicaCount: \"two\"\n")
    });
    let all = up_fails(&w, "dev", &[]);
    assert!(all.contains("helm.install/prometheus"), "{all}");
    assert!(
        all.contains("values don't meet the specifications of the schema(s)")
            && all.contains("/server/replicaCount")
            && all.contains("want integer"),
        "helm's message is quoted: {all}"
    );
}

/// A workload manifest with a field its kind does not have is refused by the API server's
/// strict field validation, and paddock's error names the manifest file.
#[test]
fn a_workload_manifest_with_an_unknown_field_is_refused_naming_its_file() {
    let Some(w) = real_world() else { return };
    std::fs::write(
        w.repo.path().join("manifests/typo.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: e2e\ndata:\n  a: b\nsurprise: true\n",
    )
    .expect("write manifest");
    w.edit("clusters/ci.yaml", |t| {
        format!("{t}workloads:\n  - manifests/typo.yaml\n")
    });
    let all = up_fails(&w, "ci", &[]);
    assert!(all.contains("manifests/typo.yaml"), "{all}");
    assert!(all.contains("ConfigMap e2e/settings"), "{all}");
    assert!(
        all.contains("surprise"),
        "the unknown field is named: {all}"
    );
}

/// The core scenario with the real Helm 3 (3.19): `up ci` from nothing installs every release
/// `deployed` (as Helm 3's own `list` reports it) and verifies the ingress; a rerun changes
/// nothing.
#[test]
fn up_ci_with_the_real_helm_3() {
    let w = World::with(false, Helm::Real3);
    if w.real_helm.is_none() {
        eprintln!("skipping: needs the real Helm 3 and charts");
        return;
    }
    let r = up_ok(&w, "ci");
    assert!(r["steps"]["verify/ingress"].is_u64(), "{r}");
    let v = w.tool("helm", &["version", "--template", "{{.Version}}"]);
    assert!(stdout(&v).starts_with("v3."), "{}", stdout(&v));
    let rel = releases(&w, "ci");
    assert_eq!(rel.len(), 3, "{rel:?}");
    assert!(rel.iter().all(|(_, s, _)| s == "deployed"), "{rel:?}");
    let again = up_ok(&w, "ci");
    assert_eq!(again["upToDate"], true, "{again}");
}

/// A misspelt key in an addon's values, for a chart whose values schema is closed (Istio's
/// `gateway` chart, added as an addon): `up` fails at that release quoting helm's own schema
/// message, which names the key.
#[test]
fn a_wrong_key_in_an_addon_with_a_closed_values_schema_fails_up_with_helms_own_message() {
    let Some(w) = real_world() else { return };
    std::fs::write(
        w.repo.path().join("addons/edge.yaml"),
        format!(
            "name: edge\nchart:\n  repo: {}\n  name: gateway\n  version: 1.30.3\nnamespace: edge\nvalues:\n  replicaCont: 2\n",
            w.istio_repo()
        ),
    )
    .expect("addon");
    w.edit("clusters/ci.yaml", |t| format!("{t}addons: [edge]\n"));
    let all = up_fails(&w, "ci", &[]);
    assert!(all.contains("helm.install/edge"), "{all}");
    assert!(
        all.contains("values don't meet the specifications of the schema(s)")
            && all.contains("replicaCont"),
        "helm's message is quoted: {all}"
    );
}
