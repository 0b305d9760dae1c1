//! Kills inside a step's side effect on a real machine, as tests/kill.rs runs them against the
//! sim: paddock SIGKILLed while the real helm it runs is working, its release `pending-*` (or
//! `uninstalling`) in helm's storage. Killed alone, paddock leaves that helm running, orphaned:
//! the rerun waits for it and does not do its work again. Killed with its whole process group,
//! helm dies too and leaves the release pending: the rerun recovers it. Either way the rerun
//! converges and every effect happened once, as the real `helm history` tells.
//!
//! The window: a real API server cannot be slowed as the sim's can, so the test holds helm
//! itself. Once paddock has started the helm run, the test stops it (SIGSTOP) and lets it go
//! on in short slices (SIGCONT) until helm's storage shows its release `pending-*`: helm is
//! then inside its work, and stays there while paddock is killed. An orphaned helm stays
//! stopped until the next run has said that it waits for it, so that run always finds it
//! working.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CiCopy, enabled, machine, ok};

/// How long helm runs between two looks at its release.
const SLICE: Duration = Duration::from_millis(20);

/// How long a paddock run may take to reach the helm run it is killed in (an `up` from
/// nothing pulls images).
const REACH: Duration = Duration::from_secs(900);

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

/// A helm child paddock noted as running (`<state>/clusters/ci/running/<pid>`).
#[derive(Debug, Clone)]
struct Note {
    pid: u32,
    argv: Vec<String>,
}

impl Note {
    /// Is the noted process still running, and not another one that reuses its pid?
    fn alive(&self) -> bool {
        let Ok(raw) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            if Path::new("/proc/self").exists() {
                return false;
            }
            // No procfs (macOS): ask ps for the command line.
            return Command::new("ps")
                .args(["-o", "command=", "-p", &self.pid.to_string()])
                .output()
                .is_ok_and(|o| {
                    o.status.success()
                        && String::from_utf8_lossy(&o.stdout).trim() == self.argv.join(" ")
                });
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        argv == self.argv && !zombie
    }

    /// Send `signal` (`STOP`, `CONT`) to the noted process, while it is that process.
    fn signal(&self, signal: &str) -> bool {
        self.alive()
            && Command::new("kill")
                .args(["-s", signal, &self.pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
    }

    /// What a run that finds this helm still working says.
    fn waited_for(&self) -> String {
        format!(
            "(pid {}) from an interrupted run is still working; waiting for it to finish",
            self.pid
        )
    }
}

/// A helm held stopped; it goes on (SIGCONT) when let go or dropped, whatever the test does.
#[derive(Debug)]
struct Held(Note);

impl Held {
    /// Stop the noted helm; `None` when it is no longer running.
    fn stop(note: &Note) -> Option<Held> {
        note.signal("STOP").then(|| Held(note.clone()))
    }

    fn go(self) {}
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// The running helm child of paddock whose command line has all of `words`, if noted.
fn helm_note(copy: &CiCopy, words: &[&str]) -> Option<Note> {
    let dir = copy.state.path().join("clusters/ci/running");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
        // A note that a child is about to start names paddock's pid, not the child's.
        if v["starting"] == true {
            return None;
        }
        let argv: Vec<String> = v["argv"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let pid = u32::try_from(v["pid"].as_u64()?).ok()?;
        words
            .iter()
            .all(|x| argv.iter().any(|a| a == x))
            .then_some(Note { pid, argv })
    })
}

/// One revision of a release, as `helm history -o json` reports it.
#[derive(Debug, Clone)]
struct Revision {
    status: String,
    chart: String,
    description: String,
}

/// The real `helm history` of a release, oldest first; empty when helm knows no such release.
fn history(kubeconfig: &Path, namespace: &str, release: &str) -> Vec<Revision> {
    let out = Command::new("helm")
        .args([
            "history",
            release,
            "-n",
            namespace,
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .output()
        .expect("helm history");
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found") {
        return Vec::new();
    }
    let text = ok(&out, &format!("helm history {release}"));
    let revisions: Vec<Value> = serde_json::from_str(&text).expect("helm history json");
    revisions
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            Revision {
                status: f("status"),
                chart: f("chart"),
                description: f("description"),
            }
        })
        .collect()
}

/// The status of a release's newest revision in helm's storage.
fn release_status(kubeconfig: &Path, namespace: &str, release: &str) -> Option<String> {
    history(kubeconfig, namespace, release)
        .pop()
        .map(|r| r.status)
}

/// Every release as the real helm reports it (`helm list -A` of every status, as JSON).
fn helm_list(kubeconfig: &Path) -> Vec<Value> {
    let out = Command::new("helm")
        .args([
            "list",
            "-A",
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .output()
        .expect("helm list");
    serde_json::from_str(&ok(&out, "helm list")).expect("helm list json")
}

/// A release's revisions that completed an install or an upgrade: the effects of helm runs
/// that ended (a killed run leaves its revision `Initial install underway` or `Preparing
/// upgrade`; a recovery's rollback is `Rollback to N`).
fn completed(revisions: &[Revision]) -> usize {
    revisions
        .iter()
        .filter(|r| {
            matches!(
                r.description.as_str(),
                "Install complete" | "Upgrade complete"
            )
        })
        .count()
}

/// A release helm holds deployed once: its newest revision is the one `deployed`. (The
/// revision of a helm killed inside an upgrade stays `pending-upgrade` in the history after
/// the rollback that recovers it.)
fn assert_deployed_once(revisions: &[Revision], what: &str) {
    let deployed = revisions.iter().filter(|r| r.status == "deployed").count();
    assert!(
        deployed == 1 && revisions.last().is_some_and(|r| r.status == "deployed"),
        "{what}: {revisions:#?}"
    );
}

/// A paddock run, what it prints gathered as it comes.
struct Run {
    child: Child,
    text: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Run {
    /// Start paddock with `args`: in a process group of its own when it is to be killed with
    /// its group, else in the test's. (A group left with no member whose parent is outside it
    /// is orphaned, and the kernel sends SIGHUP to its stopped members: a held helm in
    /// paddock's own group would die when paddock is killed alone.)
    fn start(copy: &CiCopy, args: &[&str], how: Kill) -> Run {
        use std::os::unix::process::CommandExt;
        let mut command = copy.command(args);
        if how == Kill::Group {
            command.process_group(0);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("paddock starts");
        let text = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for mut pipe in pipes.into_iter().flatten() {
            let text = Arc::clone(&text);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                    text.lock().expect("output").push_str(&chunk);
                }
            }));
        }
        Run {
            child,
            text,
            readers,
        }
    }

    fn said(&self, what: &str) -> bool {
        self.text.lock().expect("output").contains(what)
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Kill paddock `how`.
    fn kill(&mut self, how: Kill) {
        match how {
            Kill::Paddock => self.child.kill().expect("SIGKILL paddock"),
            Kill::Group => {
                let st = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                    .status()
                    .expect("kill");
                assert!(st.success(), "kill -s KILL -- -{}", self.child.id());
            }
        }
    }

    /// Wait for paddock to end: its status and everything it printed.
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("paddock ends");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text = self.text.lock().expect("output").clone();
        (status, text)
    }

    /// Kill paddock (if it still runs) and return what it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        self.finish().1
    }
}

/// What a killed run left.
struct Killed {
    /// The helm child that was working.
    helm: Note,
    /// With paddock killed alone: that helm, orphaned, held until the next run waits for it.
    orphan: Option<Held>,
    /// What paddock printed before it died.
    output: String,
}

/// Run paddock with `args` until the helm run of `t` has started and is inside its work — its
/// release `t.working` in helm's storage —, then kill it `how`. `orphan`: a helm an earlier
/// killed run left, held until this run says it waits for it.
fn kill_inside(
    copy: &CiCopy,
    args: &[&str],
    t: Target<'_>,
    how: Kill,
    mut orphan: Option<Held>,
) -> Killed {
    let mut run = Run::start(copy, args, how);
    let deadline = Instant::now() + REACH;
    let helm = loop {
        if orphan.as_ref().is_some_and(|o| run.said(&o.0.waited_for()))
            && let Some(o) = orphan.take()
        {
            o.go();
        }
        let earlier = orphan.as_ref().map(|o| o.0.pid);
        if let Some(n) = helm_note(copy, t.words).filter(|n| Some(n.pid) != earlier && n.alive()) {
            break n;
        }
        if run.exited() || Instant::now() > deadline {
            panic!(
                "paddock {args:?} never ran helm with {:?}: {}",
                t.words,
                run.stop()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(orphan);
    let kubeconfig = copy.kubeconfig();
    let held = loop {
        let Some(held) = Held::stop(&helm) else {
            panic!(
                "{:?}: helm ended before its release was seen {}: {}",
                t.words,
                t.working,
                run.stop()
            );
        };
        if release_status(&kubeconfig, t.namespace, t.release).as_deref() == Some(t.working) {
            break held;
        }
        held.go();
        std::thread::sleep(SLICE);
    };
    run.kill(how);
    let output = run.finish().1;
    match how {
        Kill::Paddock => {
            assert!(
                helm.alive(),
                "{:?}: the orphaned helm goes on after paddock is killed",
                t.words
            );
            Killed {
                helm,
                orphan: Some(held),
                output,
            }
        }
        Kill::Group => {
            // Give SIGKILL a moment to land on every process of the group.
            std::thread::sleep(Duration::from_millis(200));
            assert!(!helm.alive(), "{:?}: helm died with its group", t.words);
            drop(held);
            assert_eq!(
                release_status(&kubeconfig, t.namespace, t.release).as_deref(),
                Some(t.working),
                "{:?}: the killed helm left its release {}",
                t.words,
                t.working
            );
            Killed {
                helm,
                orphan: None,
                output,
            }
        }
    }
}

/// Run paddock with `args` to completion after a kill; an orphaned helm the kill left goes on
/// once this run says it waits for it.
fn rerun(copy: &CiCopy, args: &[&str], killed: Killed) -> (ExitStatus, String) {
    let mut run = Run::start(copy, args, Kill::Paddock);
    if let Some(orphan) = killed.orphan {
        let deadline = Instant::now() + REACH;
        while !run.said(&killed.helm.waited_for()) && !run.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        orphan.go();
    }
    run.finish()
}

/// The final NDJSON result of a `--output json` run.
fn result(text: &str) -> Value {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or(Value::Null)
}

/// The releases `up ci` installs, from its plan: (namespace, name).
fn up_releases(copy: &CiCopy) -> Vec<(String, String)> {
    let plan = ok(
        &copy.run(&["plan", "ci", "--offline", "-o", "json"]),
        "plan",
    );
    let plan: Value = serde_json::from_str(&plan).expect("plan json");
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
/// `helm list` reports it, and its `helm history` is one revision, installed once: with
/// paddock killed alone, by the orphaned helm (the rerun waited for it, found the release
/// deployed with its chart and values, and did not install it again); with the group killed,
/// by the rerun (it removed the release the killed helm left `pending-install`, and with it
/// that revision).
fn up_killed_inside_each_install(how: Kill) {
    let copy = CiCopy::new();
    let releases = up_releases(&copy);
    let names: Vec<&str> = releases.iter().map(|(_, n)| n.as_str()).collect();
    for want in ["istio-base", "istiod-1-30-3", "istio-ingress"] {
        assert!(names.contains(&want), "up ci installs {want}: {names:?}");
    }
    for (namespace, release) in &releases {
        let words = ["upgrade", "--install", release.as_str()];
        let t = Target {
            words: &words,
            namespace: namespace.as_str(),
            release: release.as_str(),
            working: "pending-install",
        };
        let killed = kill_inside(&copy, &["up", "ci", "-o", "json"], t, how, None);
        let killed_output = killed.output.clone();
        let (status, text) = rerun(&copy, &["up", "ci", "-o", "json"], killed);
        assert!(
            status.success(),
            "{how:?} inside {release}: rerun: {text}\nkilled run: {killed_output}"
        );
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
        let again = ok(&copy.run(&["up", "ci", "-o", "json"]), "up again");
        assert_eq!(
            result(&again)["upToDate"],
            true,
            "{how:?} inside {release}: {again}"
        );
        let kubeconfig = copy.kubeconfig();
        let listed = helm_list(&kubeconfig);
        assert_eq!(listed.len(), releases.len(), "{listed:?}");
        assert!(
            listed.iter().all(|r| r["status"] == "deployed"),
            "{how:?} inside {release}: {listed:?}"
        );
        for (ns, other) in &releases {
            let revisions = history(&kubeconfig, ns, other);
            let what = format!("{how:?} inside {release}: {other}");
            assert_deployed_once(&revisions, &what);
            assert_eq!(revisions.len(), 1, "{what}: installed once: {revisions:#?}");
            assert_eq!(completed(&revisions), 1, "{what}: {revisions:#?}");
        }
        ok(&copy.run(&["down", "ci", "--yes"]), "down");
    }
}

#[test]
fn up_killed_alone_inside_each_helm_install_lets_the_orphaned_helm_install_it_once() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    up_killed_inside_each_install(Kill::Paddock);
}

#[test]
fn up_killed_with_its_helm_inside_each_helm_install_recovers_the_pending_release() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    up_killed_inside_each_install(Kill::Group);
}

/// The helm runs of a canary upgrade of `ci` 1.29.6 → 1.30.3 to kill paddock inside, in the
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

/// `paddock upgrade ci --to 1.30.3` (canary, from 1.29.6) killed `how` inside the helm run of
/// `helm upgrade istio-base`; the run that continues it killed inside `helm upgrade --install
/// istiod-1-30-3`; the next inside the gateway's upgrade, the next inside `helm uninstall
/// istiod-1-29-6`. Each run got past the step the one before was killed in and said what it
/// found; the last `paddock upgrade ci` completes: every release deployed on 1.30.3 and the
/// old istiod gone, as the real `helm list` reports it, the history one upgrade operation that
/// ended done with no step failed, and each effect once, as the real `helm history` tells:
/// with the group killed, each release completed as many installs and upgrades as in an
/// upgrade nothing interrupted (a killed helm's revision never completed, and a recovery is a
/// rollback); with paddock killed alone, its orphaned helm completed and the continuing run
/// ran the step's helm again (a step not journaled done is redone): at most once more.
fn upgrade_killed_inside_each_helm_run(how: Kill) {
    let copy = CiCopy::new();
    copy.edit_ci(|text| {
        format!("{text}istio:\n  version: 1.29.6\n  upgrade:\n    strategy: canary\n    gracePeriod: 10s\n")
    });
    ok(&copy.run(&["up", "ci"]), "up at 1.29.6");
    let first = [
        "upgrade", "ci", "--to", "1.30.3", "--grace", "0", "-o", "json",
    ];
    let mut before: Option<(&str, Target<'_>, Killed)> = None;
    for (step, t) in UPGRADE_TARGETS {
        let args: &[&str] = if before.is_none() {
            &first
        } else {
            &["upgrade", "ci", "-o", "json"]
        };
        let orphan = before.as_mut().and_then(|(_, _, k)| k.orphan.take());
        let killed = kill_inside(&copy, args, t, how, orphan);
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
    let killed_output = killed.output.clone();
    let (_, text) = rerun(&copy, &["upgrade", "ci", "-o", "json"], killed);
    assert_eq!(
        result(&text)["ok"],
        true,
        "{how:?}: the last run: {text}\nthe run killed inside {step}: {killed_output}"
    );
    assert_found_the_kill(&text, t, how, step);
    let status: Value =
        serde_json::from_str(&ok(&copy.run(&["status", "ci", "-o", "json"]), "status"))
            .expect("status json");
    let revisions: Vec<&str> = status["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["revision"].as_str())
        .collect();
    assert_eq!(revisions, ["1-30-3"], "{how:?}: {status}");
    let kubeconfig = copy.kubeconfig();
    let listed = helm_list(&kubeconfig);
    assert!(!listed.is_empty());
    for r in &listed {
        assert_eq!(r["status"], "deployed", "{how:?}: {listed:?}");
        assert!(
            r["chart"].as_str().is_some_and(|c| c.ends_with("-1.30.3")),
            "{how:?}: {listed:?}"
        );
    }
    let history_out = ok(&copy.run(&["history", "ci", "-o", "json"]), "history");
    let h: Value = serde_json::from_str(&history_out).expect("history json");
    // `up` operations are journaled too; the upgrade is one operation.
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
    // Installs and upgrades completed in an upgrade nothing interrupted, counting `up`'s
    // install: istio-base is upgraded twice (to 1.30.3, then its default revision).
    for (namespace, release, normal) in [
        ("istio-system", "istio-base", 3),
        ("istio-system", "istiod-1-30-3", 1),
        ("istio-ingress", "istio-ingress", 2),
    ] {
        let revisions = history(&kubeconfig, namespace, release);
        let what = format!("{how:?}: {release}");
        assert_deployed_once(&revisions, &what);
        assert!(
            revisions
                .last()
                .is_some_and(|r| r.chart.ends_with("-1.30.3")),
            "{what}: {revisions:#?}"
        );
        let n = completed(&revisions);
        match how {
            Kill::Group => assert_eq!(n, normal, "{what}: {revisions:#?}"),
            Kill::Paddock => assert!(
                (normal..=normal + 1).contains(&n),
                "{what}: {n}: {revisions:#?}"
            ),
        }
    }
    assert!(
        history(&kubeconfig, "istio-system", "istiod-1-29-6").is_empty(),
        "{how:?}: istiod-1-29-6 uninstalled"
    );
}

#[test]
fn an_upgrade_killed_alone_inside_each_helm_run_completes_with_each_effect_once() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    upgrade_killed_inside_each_helm_run(Kill::Paddock);
}

#[test]
fn an_upgrade_killed_with_its_helm_inside_each_helm_run_completes_with_each_effect_once() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    upgrade_killed_inside_each_helm_run(Kill::Group);
}
