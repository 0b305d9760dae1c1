//! `paddock serve` against the sim: following a git branch (a pushed commit reaches the
//! cluster; a bad one changes nothing and says where it is wrong), one daemon per state
//! directory, its socket's mode, and a daemon killed in the middle of an upgrade that
//! continues it when it starts again.

#[path = "support/api.rs"]
mod api_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::Daemon;
use support::{World, api, stdout};

/// `git` in `dir`, as a user who commits.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=paddock tests",
            "-c",
            "user.email=tests@paddock.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commit everything in `work` and push it to its origin's `main`: the new commit.
fn push(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "--quiet", "-m", message]);
    git(work, &["push", "--quiet", "origin", "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// A world with one cluster, `ci`, whose repository is also pushed to a bare git remote:
/// (world, remote, working clone).
fn git_world() -> (World, tempfile::TempDir) {
    let w = World::new(false);
    std::fs::remove_file(w.repo.path().join("clusters/dev.yaml")).expect("remove dev");
    std::fs::write(w.repo.path().join("paddock.yaml"), "defaultCluster: ci\n").expect("write");
    let git_dir = tempfile::tempdir().expect("tempdir");
    let origin = git_dir.path().join("origin.git");
    let work = git_dir.path().join("work");
    std::fs::create_dir_all(&origin).expect("mkdir");
    git(&origin, &["init", "--quiet", "--bare"]);
    let status = Command::new("cp")
        .arg("-a")
        .arg(w.repo.path())
        .arg(&work)
        .status()
        .expect("cp");
    assert!(status.success());
    git(&work, &["init", "--quiet"]);
    git(
        &work,
        &["remote", "add", "origin", &origin.display().to_string()],
    );
    (w, git_dir)
}

/// What the daemon answers conforms to the OpenAPI description (docs/api/openapi.yaml):
/// health, every cluster and every operation.
fn assert_documented(d: &Daemon) {
    let api = api_support::openapi();
    let (_, health) = d.get("/v1/health").expect("health");
    let mut checked = vec![("Health", health)];
    let (_, clusters) = d.get("/v1/clusters").expect("clusters");
    checked.extend(
        clusters
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| ("ClusterView", c.clone())),
    );
    checked.extend(d.operations().into_iter().map(|o| ("OperationView", o)));
    for (schema, value) in checked {
        let errors: Vec<String> = api
            .schema(schema)
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{schema}: {errors:?}\n{value:#}");
    }
}

fn op_from(d: &Daemon, commit: &str) -> Option<Value> {
    d.operations()
        .into_iter()
        .find(|o| o["source"].as_str() == Some(commit))
}

/// A commit pushed to the remote reaches the cluster within one poll interval — taken,
/// validated, planned and applied by `up`, its commit recorded with the operation in
/// `history` — and a commit with a mistake changes nothing: the daemon says which file, line
/// and field, and keeps the last good commit in force.
#[test]
fn a_pushed_commit_reaches_the_cluster_and_a_bad_one_changes_nothing() {
    let (w, git_dir) = git_world();
    let work = git_dir.path().join("work");
    let origin = git_dir.path().join("origin.git");
    let first = push(&work, "ci cluster");
    let poll = Duration::from_secs(2);
    let mut d = Daemon::start(
        &w,
        &[
            "--repo",
            &origin.display().to_string(),
            "--branch",
            "main",
            "--poll-interval",
            "2s",
        ],
    );
    d.wait_for(
        "ci to be in sync at the first commit",
        Duration::from_secs(240),
        |d| {
            let c = d.cluster("ci");
            c["state"] == "in-sync" && c["source"]["commit"] == first.as_str()
        },
    );

    std::fs::write(
        work.join("clusters/ci.yaml"),
        std::fs::read_to_string(work.join("clusters/ci.yaml")).expect("read")
            + "  - name: pushed\n",
    )
    .expect("write");
    let second = push(&work, "a namespace");
    let pushed = Instant::now();
    d.wait_for("an operation from the pushed commit", poll * 3, |d| {
        op_from(d, &second).is_some()
    });
    let taken_after = pushed.elapsed();
    println!(
        "the pushed commit's operation appeared {taken_after:?} after the push (poll interval {poll:?})"
    );
    assert!(
        taken_after <= poll + Duration::from_millis(1500),
        "taken {taken_after:?} after the push; the poll interval is {poll:?}"
    );
    d.wait_for(
        "the pushed commit's operation to end",
        Duration::from_secs(120),
        |d| op_from(d, &second).is_some_and(|o| o["state"] != "queued" && o["state"] != "running"),
    );
    let op = op_from(&d, &second).expect("op");
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(op["trigger"], "source", "{op:#}");
    let (code, _) = api(&w, "ci", "GET", "/api/v1/namespaces/pushed", None);
    assert_eq!(code, 200, "the pushed namespace exists in the cluster");
    let history = w.paddock(&["history", "ci", "-o", "json"]);
    let h: Value = serde_json::from_slice(&history.stdout).expect("history json");
    assert!(
        h["operations"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| {
                o["source"] == second.as_str()
                    && o["op"].as_str().is_some_and(|id| id.starts_with("up-"))
                    && o["entries"]
                        .as_array()
                        .and_then(|e| e.last())
                        .is_some_and(|e| e["event"] == "op-done")
            })),
        "history records the commit with its up: {h:#}"
    );

    // A misspelt field on line 3 of clusters/ci.yaml.
    let text = std::fs::read_to_string(work.join("clusters/ci.yaml")).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "profil: ci");
    std::fs::write(work.join("clusters/ci.yaml"), lines.join("\n") + "\n").expect("write");
    let bad = push(&work, "a typo");
    let ops_before = d.operations().len();
    d.wait_for("the bad commit to be refused", poll * 3, |d| {
        d.cluster("ci")["source"]["rejected"]["commit"] == bad.as_str()
    });
    let c = d.cluster("ci");
    let errors = c["source"]["rejected"]["errors"].to_string();
    assert!(
        errors.contains("clusters/ci.yaml:3:") && errors.contains("profil"),
        "the error names file, line and field: {errors}"
    );
    assert_eq!(
        c["source"]["commit"],
        second.as_str(),
        "the last good commit stays: {c:#}"
    );
    std::thread::sleep(poll * 2);
    assert_eq!(
        d.operations().len(),
        ops_before,
        "no operation from a bad commit"
    );
    assert!(op_from(&d, &bad).is_none());
    assert_documented(&d);
    // Checked-out trees: the commit in force and the newest; the first one is gone.
    let mut trees: Vec<String> = std::fs::read_dir(w.state.path().join("source/trees"))
        .expect("trees")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    trees.sort();
    let mut want = vec![second.clone(), bad.clone()];
    want.sort();
    assert_eq!(trees, want, "the first commit's tree ({first}) is removed");
    let (status, log) = d.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops it cleanly: {log}"
    );
}

/// One daemon per state directory: a second one refuses and names the first. The API's
/// socket is the user's alone (0600).
#[test]
fn a_second_daemon_refuses_and_the_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(false);
    let mut d = Daemon::start(&w, &["--mode", "report"]);
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let second = w.paddock(&["serve", "--mode", "report"]);
    let text = format!("{}{}", stdout(&second), support::stderr(&second));
    assert!(
        !second.status.success(),
        "the second daemon refuses: {text}"
    );
    assert!(
        text.contains("another daemon serves the state directory")
            && text.contains(&format!("(pid {})", d.pid)),
        "it names the first: {text}"
    );
    assert!(d.get("/v1/health").is_some(), "the first one still serves");
    let (status, log) = d.stop();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert!(!d.socket.exists(), "the socket is removed on exit");
}

/// How the daemon is stopped in the middle of an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `kill -9`: its helm child goes on, orphaned.
    Kill,
    /// SIGTERM: it lets the running step finish, journals, and exits 0.
    Term,
}

/// `kill -9` in the middle of an upgrade (see [`stopped_mid_upgrade`]).
#[test]
fn a_daemon_killed_mid_upgrade_continues_it_when_it_starts_again() {
    stopped_mid_upgrade(Stop::Kill);
}

/// SIGTERM in the middle of an upgrade (see [`stopped_mid_upgrade`]).
#[test]
fn a_daemon_terminated_mid_upgrade_finishes_the_step_and_continues_at_start() {
    stopped_mid_upgrade(Stop::Term);
}

/// The daemon stopped `how` in the middle of an upgrade the spec asked for — its istiod helm
/// working, the release `pending-install` — then started again: it continues the journal's
/// unfinished upgrade (after a kill, waiting for the helm the killed daemon left working;
/// after SIGTERM, from the step after istiod, which it let finish), completes it and
/// reconciles, with each effect once.
fn stopped_mid_upgrade(how: Stop) {
    use paddock_sim::knobs::Knobs;
    use support::children::{helm_note, helm_runs};
    use support::mesh::{
        assert_all_on, assert_releases_deployed, mesh_world, patches, two_workloads,
    };
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    let from = w.invocations().len();
    let web_before = patches(&w, "/namespaces/apps/deployments/web");
    let mut d = Daemon::start(&w, &[]);
    d.wait_for("mesh to be in sync", Duration::from_secs(120), |d| {
        d.cluster("mesh")["state"] == "in-sync"
    });
    // Helm's mutating runs start late enough for the API to be slowed under them.
    w.set_knobs(&Knobs {
        tool_latency_ms: [("helm upgrade".to_string(), 300)].into(),
        ..Knobs::default()
    });
    w.edit("clusters/mesh.yaml", |t| {
        t.replace("version: 1.29.6", "version: 1.30.3")
    });
    let istiod = ["upgrade", "--install", "istiod-1-30-3"];
    d.wait_for("the istiod helm to start", Duration::from_secs(120), |_| {
        helm_note(&w, "mesh", &istiod).is_some()
    });
    w.set_knobs(&Knobs {
        slow_verbs: [("PATCH".to_string(), 100), ("PUT".to_string(), 2_000)].into(),
        ..Knobs::default()
    });
    d.wait_for(
        "istiod to be pending-install",
        Duration::from_secs(60),
        |_| {
            support::storage_status(&w, "mesh", "istio-system", "istiod-1-30-3").as_deref()
                == Some("pending-install")
        },
    );
    let orphan = helm_note(&w, "mesh", &istiod).expect("helm");
    match how {
        Stop::Kill => {
            let log = d.kill9();
            assert!(orphan.alive(), "the killed daemon's helm goes on: {log}");
            let deadline = Instant::now() + Duration::from_secs(120);
            while orphan.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            w.set_knobs(&Knobs::default());
        }
        Stop::Term => {
            let (status, log) = d.stop();
            assert!(
                status.is_some_and(|s| s.success()),
                "SIGTERM: exit 0: {log}"
            );
            assert!(!orphan.alive(), "the daemon waited for its helm: {log}");
            assert!(
                log.lines()
                    .any(|l| l.contains("upgrade/istiod") && l.contains("\"status\":\"done\"")),
                "the running step finished: {log}"
            );
            w.set_knobs(&Knobs::default());
        }
    }

    let mut d = Daemon::start(&w, &[]);
    d.wait_for(
        "the continued upgrade to succeed",
        Duration::from_secs(120),
        |d| {
            d.operations().iter().any(|o| {
                o["trigger"] == "resume" && o["kind"] == "upgrade" && o["state"] == "succeeded"
            })
        },
    );
    d.wait_for("mesh to be in sync again", Duration::from_secs(120), |d| {
        d.cluster("mesh")["state"] == "in-sync"
    });
    let (status, log) = d.stop();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert_all_on(&w, "1.30.3");
    assert_releases_deployed(&w, "1.30.3");
    assert_eq!(
        helm_runs(&w, from, &["upgrade", "istiod-1-30-3"]),
        1,
        "istiod installed once"
    );
    assert_eq!(
        patches(&w, "/namespaces/apps/deployments/web") - web_before,
        1,
        "web restarted once"
    );
    let history = w.paddock(&["history", "mesh", "-o", "json"]);
    let h: Value = serde_json::from_slice(&history.stdout).expect("history json");
    let upgrades: Vec<&Value> = h["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| {
            o["op"]
                .as_str()
                .is_some_and(|id| id.starts_with("upgrade-"))
        })
        .collect();
    assert_eq!(upgrades.len(), 1, "one upgrade, continued: {h:#}");
    let last = upgrades[0]["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned();
    assert_eq!(
        last.map(|e| e["event"].clone()),
        Some("op-done".into()),
        "{h:#}"
    );
}

/// The lines of a JSON run without the times, sorted (concurrent steps end in any order): the
/// events and the result, to compare a run in the daemon with one here.
fn shape(out: &std::process::Output) -> Vec<String> {
    let mut lines: Vec<String> = stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] != "note")
        .map(|mut v| {
            for k in [
                "at_ms",
                "ms",
                "wallMs",
                "criticalPathMs",
                "sumMs",
                "steps",
                "op",
            ] {
                if let Some(o) = v.as_object_mut() {
                    o.remove(k);
                }
            }
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// With a daemon serving the state directory, `up`, `upgrade` and `restart` run in it: the
/// same events, result and exit code as running here (`--no-daemon`), on success and on
/// failure.
#[test]
fn the_cli_runs_operations_in_the_daemon_with_the_same_output_and_exit_codes() {
    let w = World::new(false);
    std::fs::remove_file(w.repo.path().join("clusters/dev.yaml")).expect("remove dev");
    std::fs::write(w.repo.path().join("paddock.yaml"), "defaultCluster: ci\n").expect("write");
    // Report mode: the daemon changes nothing by itself, so every change below is asked for.
    let mut d = Daemon::start(&w, &["--mode", "report"]);
    let first = w.paddock(&["up", "ci", "-o", "json"]);
    let text = format!("{}{}", stdout(&first), support::stderr(&first));
    assert!(first.status.success(), "{text}");
    assert!(text.contains("running in the daemon (pid"), "{text}");
    assert_eq!(support::result(&first)["ok"], true, "{text}");
    let ops = d.operations();
    assert!(
        ops.iter()
            .any(|o| o["kind"] == "up" && o["trigger"] == "api" && o["state"] == "succeeded"),
        "the daemon ran it: {ops:#?}"
    );
    let remote = w.paddock(&["up", "ci", "-o", "json"]);
    let local = w.paddock(&["up", "ci", "-o", "json", "--no-daemon"]);
    assert_eq!(remote.status.code(), local.status.code());
    assert!(!stdout(&local).contains("running in the daemon"));
    assert_eq!(
        shape(&remote),
        shape(&local),
        "an up to date cluster reads the same"
    );
    assert_eq!(support::result(&remote)["upToDate"], true);

    // A failure: ci is on Istio 1.30.3 already; preflight refuses, nothing changes.
    let args = ["upgrade", "ci", "--to", "1.30.3", "-o", "json"];
    let remote = w.paddock(&args);
    let local = w.paddock(&[&args[..], &["--no-daemon"]].concat());
    assert!(!remote.status.success(), "{}", support::stderr(&remote));
    assert_eq!(remote.status.code(), local.status.code(), "same exit code");
    let error = |o: &std::process::Output| {
        support::stderr(o)
            .lines()
            .filter(|l| l.starts_with("error:") || l.trim_start().starts_with("what to do:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(error(&remote), error(&local), "same error");
    assert_eq!(shape(&remote), shape(&local));

    let restart = w.paddock(&["restart", "ci", "--stale-only", "-o", "json"]);
    assert!(restart.status.success(), "{}", support::stderr(&restart));
    assert!(stdout(&restart).contains("running in the daemon"));

    // Report mode: an edit of the spec is planned, not applied, and shown as drift.
    w.edit("clusters/ci.yaml", |t| t + "  - name: drifted\n");
    d.wait_for("the edit to show as drift", Duration::from_secs(60), |d| {
        let c = d.cluster("ci");
        c["state"] == "drifted"
            && c["drift"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "kube.namespace/drifted"))
    });
    let (code, _) = api(&w, "ci", "GET", "/api/v1/namespaces/drifted", None);
    assert_eq!(code, 404, "report mode changes nothing");
    assert!(
        d.operations().iter().all(|o| o["trigger"] == "api"),
        "the daemon ran nothing by itself"
    );
    assert_documented(&d);
    let (status, log) = d.stop();
    assert!(status.is_some_and(|s| s.success()), "{log}");
}

/// CPU time (user + system, clock ticks → ms) and resident memory (kB: now, peak) of `pid`.
fn footprint(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3; utime and stime are 14 and 15 (1-based).
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    let hz = 100; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks * 1000 / hz, kb("VmRSS:"), kb("VmHWM:"))
}

/// The daemon at rest: three clusters in sync, nothing to do, for 60 s (`PADDOCK_IDLE_SECS`
/// to change it). Prints its CPU time and memory; run with the release build:
/// `cargo build --release && PADDOCK_TEST_BIN=target/release/paddock cargo test --test daemon
/// idle -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: about 90 s; run it by name"]
fn idle_daemon_with_three_clusters_cpu_and_memory() {
    let w = World::new(false);
    std::fs::write(
        w.repo.path().join("clusters/third.yaml"),
        "name: third\nprofile: minimal\n",
    )
    .expect("third cluster");
    let mut d = Daemon::start(&w, &["--poll-interval", "60s"]);
    d.wait_for("three clusters in sync", Duration::from_secs(400), |d| {
        ["dev", "ci", "third"]
            .iter()
            .all(|c| d.cluster(c)["state"] == "in-sync")
    });
    std::thread::sleep(Duration::from_secs(2));
    let secs: u64 = std::env::var("PADDOCK_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (cpu0, _, _) = footprint(d.pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, rss, peak) = footprint(d.pid);
    let wall = t.elapsed();
    let cpu = cpu1 - cpu0;
    println!(
        "idle daemon, 3 clusters, {:.0} s: CPU {cpu} ms ({:.3}% of one core), RSS {} kB now ({:.1} MB), peak {} kB ({:.1} MB)",
        wall.as_secs_f64(),
        cpu as f64 / wall.as_millis() as f64 * 100.0,
        rss,
        rss as f64 / 1024.0,
        peak,
        peak as f64 / 1024.0
    );
    let (status, log) = d.stop();
    assert!(status.is_some_and(|s| s.success()), "{log}");
}
