//! Kills inside a step's side effect: paddock SIGKILLed while the real helm it runs is working,
//! its release `pending-*` in helm's storage. Killed alone, paddock leaves that helm running,
//! orphaned: the rerun waits for it and does not do its work again. Killed with its whole
//! process group, helm dies too and leaves the release pending: the rerun recovers it. Either
//! way the rerun converges and every effect happened once.
//!
//! The window: the sim's `helm` waits a little before starting the real one (`toolLatencyMs`),
//! long enough for the API to be slowed (`slowVerbs`) before the real helm writes anything;
//! helm then records its release pending, applies its objects slowly and takes its time to
//! record the outcome (PUT, which only helm uses).
//!
//! An orphaned tool must also be able to finish writing its output: paddock gives its tools
//! files, not pipes it alone reads, so a tool writing after paddock died does not die of
//! SIGPIPE mid-work.

mod support;

use std::io::Read;
use std::process::Child;
use std::time::{Duration, Instant};

use paddock_sim::knobs::Knobs;
use serde_json::Value;
use support::children::{Note, helm_log, helm_note, helm_runs};
use support::mesh::{assert_all_on, assert_releases_deployed, mesh_world, patches, two_workloads};
use support::{World, result, stderr, stdout};

/// How paddock is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// SIGKILL of paddock's pid: the helm it runs goes on, orphaned.
    Paddock,
    /// SIGKILL of paddock's process group: paddock and its helm die together.
    Group,
}

/// The helm run to kill paddock inside: the words of its command line, its release and the
/// status helm gives that release while it works.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    words: &'a [&'a str],
    namespace: &'a str,
    release: &'a str,
    working: &'a str,
}

/// Mutating helm runs start a while after the sim's `helm` does: the knobs that slow the API
/// reach the cluster before the real helm writes.
fn before_helm() -> Knobs {
    Knobs {
        tool_latency_ms: [
            ("helm upgrade".to_string(), 300),
            ("helm uninstall".to_string(), 300),
        ]
        .into(),
        ..Knobs::default()
    }
}

/// A slow API for the helm run being caught: objects applied and deleted slowly, helm's
/// records (PUT) slower still, so its release stays `pending-*` for seconds.
fn slow_api() -> Knobs {
    Knobs {
        slow_verbs: [
            ("PATCH".to_string(), 100),
            ("DELETE".to_string(), 150),
            ("PUT".to_string(), 2_000),
        ]
        .into(),
        ..before_helm()
    }
}

/// What a killed run left.
struct Killed {
    /// The helm child that was working.
    helm: Note,
    /// What paddock printed before it died.
    output: String,
}

/// Read a child's pipe to the end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// Kill a child (if it still runs), reap it, and return what it printed.
fn stop(
    mut child: Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
) -> String {
    let _ = child.kill();
    let _ = child.wait();
    format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    )
}

/// Run paddock with `args` (in a process group of its own) until the helm run of `t` has
/// started and is inside its work — its release `t.working` in helm's storage —, then kill it
/// `how`. `orphan`: a helm an earlier killed run left working, which keeps its slow API until
/// it is done (so this run finds it working).
fn kill_inside(
    w: &World,
    cluster: &str,
    args: &[&str],
    t: Target<'_>,
    how: Kill,
    orphan: Option<&Note>,
) -> Killed {
    let mut orphan = orphan.filter(|o| o.alive());
    if orphan.is_none() {
        w.set_knobs(&before_helm());
    }
    let mut child: Child = support::spawn_group(w, args);
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + Duration::from_secs(240);
    let helm = loop {
        if orphan.is_some_and(|o| !o.alive()) {
            w.set_knobs(&before_helm());
            orphan = None;
        }
        if orphan.is_none()
            && let Some(n) = helm_note(w, cluster, t.words)
        {
            break n;
        }
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            panic!(
                "paddock {args:?} never ran helm with {:?}: {}",
                t.words,
                stop(child, out, err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    w.set_knobs(&slow_api());
    loop {
        if support::storage_status(w, cluster, t.namespace, t.release).as_deref() == Some(t.working)
        {
            break;
        }
        if !helm.alive() || Instant::now() > deadline {
            panic!(
                "{:?}: the release was never seen {} while helm worked: {}",
                t.words,
                t.working,
                stop(child, out, err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match how {
        Kill::Paddock => child.kill().expect("SIGKILL paddock"),
        Kill::Group => support::kill_group(child.id()),
    }
    let output = stop(child, out, err);
    match how {
        Kill::Paddock => assert!(
            helm.alive(),
            "{:?}: the orphaned helm goes on working after paddock is killed",
            t.words
        ),
        Kill::Group => {
            // Give SIGKILL a moment to land on every process of the group.
            std::thread::sleep(Duration::from_millis(200));
            assert!(!helm.alive(), "{:?}: helm died with its group", t.words);
            assert_eq!(
                support::storage_status(w, cluster, t.namespace, t.release).as_deref(),
                Some(t.working),
                "{:?}: the killed helm left its release {}",
                t.words,
                t.working
            );
        }
    }
    Killed { helm, output }
}

/// Run paddock with `args` to completion after a kill: with paddock killed alone, the API gets
/// its speed back once the orphaned helm is done (it keeps its slow window until then, so the
/// rerun finds it working); with the group killed, at once.
fn rerun(w: &World, args: &[&str], killed: &Killed, how: Kill) -> std::process::Output {
    if how == Kill::Group {
        w.set_knobs(&Knobs::default());
        return w.paddock(args);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(300);
            while killed.helm.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            w.set_knobs(&Knobs::default());
        });
        w.paddock(args)
    })
}

/// The releases `up ci` installs, from its plan: (namespace, name).
fn up_releases(w: &World) -> Vec<(String, String)> {
    let plan = w.paddock(&["plan", "ci", "--offline", "-o", "json"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["action"]["kind"] == "helm-install")
        .map(|s| {
            let r = &s["action"]["release"];
            let f = |k: &str| r[k].as_str().expect("release field").to_string();
            (f("namespace"), f("name"))
        })
        .collect()
}

/// `up ci` killed `how` inside each helm install it runs (a fresh cluster each time); the
/// rerun converges, a further `up` is up to date, every release is `deployed` as the real
/// `helm list` reports it, and each was installed by exactly one helm run that ended: with
/// paddock killed alone, by the orphaned helm (the rerun waited for it, found the release
/// deployed with its chart and values, and did not install it again); with the group killed,
/// by the rerun (it recovered the release the killed helm left `pending-install`).
fn up_killed_inside_each_install(how: Kill) {
    let w = World::new(false);
    let releases = up_releases(&w);
    let names: Vec<&str> = releases.iter().map(|(_, n)| n.as_str()).collect();
    for want in ["istio-base", "istiod-1-30-3", "istio-ingress"] {
        assert!(names.contains(&want), "up ci installs {want}: {names:?}");
    }
    for (namespace, release) in &releases {
        let from = w.invocations().len();
        let words = ["upgrade", "--install", release.as_str()];
        let t = Target {
            words: &words,
            namespace: namespace.as_str(),
            release: release.as_str(),
            working: "pending-install",
        };
        let killed = kill_inside(&w, "ci", &["up", "ci", "-o", "json"], t, how, None);
        let out = rerun(&w, &["up", "ci", "-o", "json"], &killed, how);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            out.status.success(),
            "{how:?} inside {release}: rerun: {text}\nkilled run: {}",
            killed.output
        );
        // The sim logs a helm run as it ends: a helm killed with its group is never logged.
        let log = helm_log(&w, from);
        for (_, other) in &releases {
            let n = helm_runs(&w, from, &["upgrade", "--install", other.as_str()]);
            assert_eq!(
                n, 1,
                "{how:?} inside {release}: {other} installed {n} times; helm ran: {log:#?}\nrerun: {text}"
            );
        }
        match how {
            Kill::Paddock => assert!(
                text.contains("from an interrupted run is still working; waiting for it to finish")
                    && text.contains(&format!(
                        "release {release} is already deployed with its chart and values"
                    )),
                "{release}: the rerun waited for the orphaned helm and found its work done: {text}"
            ),
            Kill::Group => assert!(
                text.contains(&format!(
                    "release {release} was left pending-install by an interrupted run"
                )),
                "{release}: the rerun recovered the pending release: {text}"
            ),
        }
        let again = result(&w.paddock(&["up", "ci", "-o", "json"]));
        assert_eq!(again["upToDate"], true, "{how:?} inside {release}: {again}");
        let listed = w.helm_list("ci");
        assert_eq!(listed.len(), releases.len(), "{listed:?}");
        assert!(
            listed.iter().all(|r| r["status"] == "deployed"),
            "{how:?} inside {release}: {listed:?}"
        );
        let down = w.paddock(&["down", "ci", "--yes"]);
        assert!(down.status.success(), "{}", stderr(&down));
    }
}

#[test]
fn up_killed_alone_inside_each_helm_install_lets_the_orphaned_helm_install_it_once() {
    up_killed_inside_each_install(Kill::Paddock);
}

#[test]
fn up_killed_with_its_helm_inside_each_helm_install_recovers_the_pending_release() {
    up_killed_inside_each_install(Kill::Group);
}

/// The helm runs of a canary upgrade of `mesh` 1.29.6 → 1.30.3 to kill paddock inside, in the
/// order the upgrade runs them: the upgrade step that runs it, and the run.
const UPGRADE_TARGETS: [(&str, Target<'static>); 4] = [
    (
        "base",
        Target {
            words: &["upgrade", "istio-base"],
            namespace: "istio-system",
            release: "istio-base",
            working: "pending-upgrade",
        },
    ),
    (
        "istiod",
        Target {
            words: &["upgrade", "--install", "istiod-1-30-3"],
            namespace: "istio-system",
            release: "istiod-1-30-3",
            working: "pending-install",
        },
    ),
    (
        "gateways",
        Target {
            words: &["upgrade", "istio-ingress"],
            namespace: "istio-ingress",
            release: "istio-ingress",
            working: "pending-upgrade",
        },
    ),
    (
        "remove-old",
        Target {
            words: &["uninstall", "istiod-1-29-6"],
            namespace: "istio-system",
            release: "istiod-1-29-6",
            working: "uninstalling",
        },
    ),
];

/// A run after a kill `how` inside `t` said what it found: with paddock killed alone, that it
/// waited for the orphaned helm; with the group killed, that it recovered the release the
/// killed helm left pending (an interrupted uninstall is simply run again).
fn assert_found_the_kill(text: &str, t: Target<'_>, how: Kill, step: &str) {
    match how {
        Kill::Paddock => assert!(
            text.contains("from an interrupted run is still working; waiting for it to finish"),
            "after a kill inside {step}: the next run waited for the orphaned helm: {text}"
        ),
        Kill::Group if t.working.starts_with("pending-") => assert!(
            text.contains(&format!(
                "release {} was left {} by an interrupted run",
                t.release, t.working
            )),
            "after a kill inside {step}: the next run recovered the pending release: {text}"
        ),
        Kill::Group => {}
    }
}

/// `paddock upgrade mesh --to 1.30.3` (canary) killed `how` inside the helm run of
/// `helm upgrade istio-base`; the run that continues it killed inside `helm upgrade --install
/// istiod-1-30-3`; the next inside the gateway's upgrade, the next inside `helm uninstall
/// istiod-1-29-6`. Each run got past the step the one before was killed in (it reached the
/// next step's helm; a step that fails rolls back instead) and said what it found; the last
/// `paddock upgrade mesh` completes: every workload and release on 1.30.3, the history one
/// upgrade operation that ended done with no step failed, and each effect once. With the group
/// killed, the killed helm never finished (the sim logs a run as it ends), so each helm run
/// ended exactly as often as in an upgrade that nothing interrupted. With paddock killed
/// alone, its orphaned helm finished the step's work; the continuing run found the step it
/// interrupted done (its check holds) and did not run its helm again: exactly as often too.
fn upgrade_killed_inside_each_helm_run(how: Kill) {
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    let from = w.invocations().len();
    let (web_before, canary_before) = (
        patches(&w, "/namespaces/apps/deployments/web"),
        patches(&w, "/namespaces/apps-canary/deployments/canary-web"),
    );
    let first = [
        "upgrade", "mesh", "--to", "1.30.3", "--grace", "0", "-o", "json",
    ];
    let mut before: Option<(&str, Target<'_>, Killed)> = None;
    for (step, t) in UPGRADE_TARGETS {
        let args: &[&str] = if before.is_none() {
            &first
        } else {
            &["upgrade", "mesh", "-o", "json"]
        };
        let orphan = before.as_ref().map(|(_, _, k)| &k.helm);
        let killed = kill_inside(&w, "mesh", args, t, how, orphan);
        assert!(
            killed.output.contains(&format!(
                "\"step\":\"upgrade/{step}\",\"status\":\"started\""
            )),
            "{how:?}: killed inside step {step}: {}",
            killed.output
        );
        if let Some((step, t, _)) = &before {
            assert_found_the_kill(&killed.output, *t, how, step);
        }
        before = Some((step, t, killed));
    }
    let (step, t, killed) = before.expect("killed");
    let out = rerun(&w, &["upgrade", "mesh", "-o", "json"], &killed, how);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        result(&out)["ok"],
        true,
        "{how:?}: the last run: {text}\nthe run killed inside {step}: {}",
        killed.output
    );
    assert_found_the_kill(&text, t, how, step);
    std::thread::sleep(Duration::from_millis(300));
    assert_all_on(&w, "1.30.3");
    assert_releases_deployed(&w, "1.30.3");
    let history = w.paddock(&["history", "mesh", "-o", "json"]);
    let h: Value = serde_json::from_slice(&history.stdout).expect("history json");
    // The `up` that made the cluster is journaled too; the upgrade is one operation.
    let ops: Vec<&Value> = h["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| o["op"].as_str().is_some_and(|id| !id.starts_with("up-")))
        .collect();
    assert_eq!(ops.len(), 1, "{how:?}: one operation, continued: {h}");
    assert!(
        ops[0]["op"]
            .as_str()
            .is_some_and(|o| o.starts_with("upgrade-")),
        "{h}"
    );
    let events: Vec<&str> = ops[0]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events.last(), Some(&"op-done"), "{how:?}: ended done: {h}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(*e, "op-rolled-back" | "op-failed" | "step-failed")),
        "{how:?}: nothing failed or was rolled back: {h}"
    );
    let log = helm_log(&w, from);
    let once = |what: &str, n: usize, normal: usize| {
        assert_eq!(n, normal, "{how:?}: {what}; helm ran: {log:#?}")
    };
    // istio-base is upgraded twice: to 1.30.3, then its default revision.
    once(
        "istio-base upgraded",
        helm_runs(&w, from, &["upgrade", "istio-base"]),
        2,
    );
    once(
        "istiod-1-30-3 installed",
        helm_runs(&w, from, &["upgrade", "istiod-1-30-3"]),
        1,
    );
    once(
        "the gateway upgraded",
        helm_runs(&w, from, &["upgrade", "istio-ingress"]),
        1,
    );
    once(
        "istiod-1-29-6 uninstalled",
        helm_runs(&w, from, &["uninstall", "istiod-1-29-6"]),
        1,
    );
    assert_eq!(
        patches(&w, "/namespaces/apps/deployments/web") - web_before,
        1,
        "{how:?}: web restarted once"
    );
    assert_eq!(
        patches(&w, "/namespaces/apps-canary/deployments/canary-web") - canary_before,
        1,
        "{how:?}: canary-web restarted once"
    );
}

#[test]
fn an_upgrade_killed_alone_inside_each_helm_run_completes_with_each_effect_once() {
    upgrade_killed_inside_each_helm_run(Kill::Paddock);
}

#[test]
fn an_upgrade_killed_with_its_helm_inside_each_helm_run_completes_with_each_effect_once() {
    upgrade_killed_inside_each_helm_run(Kill::Group);
}

/// `paddock upgrade` sent SIGINT (Ctrl-C, to paddock alone) while the helm of its istiod
/// step works: the running step finishes, no further step starts, and paddock exits 1 saying
/// where it stopped and how to continue; the operation stays unfinished in the journal. The
/// next `paddock upgrade` continues it without redoing istiod and completes, each effect
/// once.
#[test]
fn an_upgrade_interrupted_inside_a_step_finishes_that_step_and_stops_then_continues() {
    let w = mesh_world("1.29.6", "canary");
    two_workloads(&w);
    let from = w.invocations().len();
    let args = [
        "upgrade", "mesh", "--to", "1.30.3", "--grace", "0", "-o", "json",
    ];
    w.set_knobs(&before_helm());
    let mut child: Child = support::spawn_group(&w, &args);
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + Duration::from_secs(240);
    while helm_note(&w, "mesh", &["upgrade", "--install", "istiod-1-30-3"]).is_none() {
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            panic!("paddock never ran istiod's helm: {}", stop(child, out, err));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = std::process::Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "SIGINT paddock");
    w.set_knobs(&Knobs::default());
    let code = child.wait().expect("paddock ends");
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    assert_eq!(code.code(), Some(1), "interrupted exits 1: {text}");
    assert!(
        text.contains("\"step\":\"upgrade/istiod\",\"status\":\"done\""),
        "the running step finished: {text}"
    );
    assert!(
        text.contains("interrupted before step smoke")
            && text.contains("run `paddock upgrade mesh` to continue"),
        "it says where it stopped and how to continue: {text}"
    );
    assert_eq!(
        text.matches("\"status\":\"started\"").count(),
        2,
        "no step after base and istiod started: {text}"
    );
    let history = w.paddock(&["history", "mesh"]);
    assert!(
        stdout(&history)
            .lines()
            .any(|l| l.starts_with("upgrade-") && l.ends_with("unfinished")),
        "the operation stays unfinished: {}",
        stdout(&history)
    );
    let out = w.paddock(&["upgrade", "mesh", "-o", "json"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(result(&out)["ok"], true, "the next run completes: {text}");
    assert!(
        text.contains("step istiod was done and still is; not redone"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_all_on(&w, "1.30.3");
    assert_releases_deployed(&w, "1.30.3");
    assert_eq!(
        helm_runs(&w, from, &["upgrade", "istiod-1-30-3"]),
        1,
        "istiod installed once: {:#?}",
        helm_log(&w, from)
    );
}

/// A tool for paddock to run: it says it started (its pid in `<itself>.started`), works a
/// while, then writes more than a pipe holds to stdout and to stderr, and leaves
/// `<itself>.done` only if every write succeeded.
const SLOW_WRITER: &str = r#"#!/bin/sh
set -e
echo $$ > "$0.pid"
mv "$0.pid" "$0.started"
sleep 1
head -c 200000 /dev/zero | tr '\0' o
head -c 200000 /dev/zero | tr '\0' e >&2
touch "$0.done"
"#;

/// paddock (`doctor`, which asks k3d its version) SIGKILLed alone while the tool it runs
/// works: the orphaned tool still writes all it has to say and finishes.
#[test]
fn a_tool_paddock_killed_alone_left_working_writes_all_its_output_and_finishes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tool = dir.path().join("k3d");
    std::fs::write(&tool, SLOW_WRITER).expect("write the tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (started, done) = (dir.path().join("k3d.started"), dir.path().join("k3d.done"));
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).expect("repo");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("-C")
        .arg(&repo)
        .arg("--k3d")
        .arg(&tool)
        .args(["doctor", "-o", "json"])
        .env("HOME", dir.path())
        .env("PADDOCK_STATE_DIR", dir.path().join("state"))
        .env_remove("PADDOCK_DIR")
        .env_remove("PADDOCK_K3D")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("paddock starts");
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            panic!("paddock never ran the tool: {}", stop(child, out, err));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL paddock");
    let output = stop(child, out, err);
    assert!(
        !done.exists(),
        "paddock was killed while the tool worked, before it wrote: {output}"
    );
    let pid = std::fs::read_to_string(&started).expect("the tool's pid");
    let tool_runs = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tool_runs() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        done.exists(),
        "the orphaned tool wrote its output and finished (a write that failed stopped it)"
    );
}
