//! `up` and `down` against the sim: from nothing to verified, idempotent reruns, incremental
//! changes, ownership, locking, failures and kills that a rerun recovers from.

mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use paddock_sim::knobs::{FaultAction, Knobs, SlowPods, ToolFault};
use support::{World, probe, result, stderr, stdout, up_fails, up_ok};

fn up_from_nothing(docker: bool) {
    let w = World::new(docker);
    // istiod's pods start slowly enough for its wait to see them come up.
    w.set_knobs(&Knobs {
        slow_pods: vec![SlowPods {
            matches: "pilot".into(),
            ms: 1_000,
        }],
        ..Knobs::default()
    });
    for (cluster, port) in [("ci", w.port(9080)), ("dev", w.port(8080))] {
        let events = up_events(&w, cluster);
        assert_rollout_progress(&events, "kube.wait/istiod-1-30-3");
        let r = events.last().cloned().unwrap_or_default();
        assert_eq!(r["ok"], true);
        assert_eq!(r["upToDate"], false);
        assert!(
            r["steps"]["verify/ingress"].is_u64(),
            "{cluster} ends verified: {r}"
        );
        assert!(r["steps"]["paddock.record"].is_u64(), "{r}");
        let (code, head) = probe(port).expect("the ingress answers");
        assert_eq!(code, 200, "paddock's probe route answers");
        assert!(head.contains("server: istio-envoy"), "{head}");
        assert!(
            head.contains(&format!("x-paddock-cluster: {cluster}")),
            "{head}"
        );
        assert!(
            head.contains("x-paddock-gateway-proxy-version: 1.30.3"),
            "{head}"
        );
    }
    let list = w.tool("k3d", &["cluster", "list", "-o", "json"]);
    let clusters: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(clusters.as_array().map(Vec::len), Some(2));
}

/// `paddock up CLUSTER -o json`, which must succeed: every event it printed, its result last.
fn up_events(w: &World, cluster: &str) -> Vec<serde_json::Value> {
    let out = w.paddock(&["up", cluster, "-o", "json"]);
    assert!(
        out.status.success(),
        "up {cluster} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON ({e}): {l}")))
        .collect()
}

/// A rollout wait reported its replicas coming up, while it ran: `done` growing to `total`,
/// each event a change.
fn assert_rollout_progress(events: &[serde_json::Value], step: &str) {
    let at = |status: &str| {
        events
            .iter()
            .position(|e| e["event"] == "step" && e["step"] == step && e["status"] == status)
            .unwrap_or_else(|| panic!("step {step} {status}: {events:?}"))
    };
    let (started, done) = (at("started"), at("done"));
    let progress: Vec<(usize, u64, u64)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "progress" && e["step"] == step)
        .map(|(i, e)| {
            let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}"));
            (i, n("done"), n("total"))
        })
        .collect();
    let counts: Vec<(u64, u64)> = progress.iter().map(|&(_, d, t)| (d, t)).collect();
    assert!(
        progress.iter().all(|&(i, _, _)| started < i && i < done),
        "progress of {step} while it runs: {events:?}"
    );
    assert!(
        counts.len() >= 2 && counts[0].0 < counts[0].1,
        "{step} saw its replicas come up: {counts:?}"
    );
    assert!(
        counts.windows(2).all(|w| w[0] != w[1] && w[0].0 <= w[1].0),
        "only changes, done never going back: {counts:?}"
    );
    let last = counts[counts.len() - 1];
    assert!(
        last.1 > 0 && last.0 == last.1,
        "{step} ends rolled out: {counts:?}"
    );
}

#[test]
fn up_from_nothing_converges_ci_and_dev_with_processes() {
    up_from_nothing(false);
}

#[test]
fn up_from_nothing_converges_ci_and_dev_with_docker() {
    if support::require_docker() {
        up_from_nothing(true);
    }
}

/// With no files at all, `up` makes cluster `paddock` from the embedded default profile and
/// proves its ingress through the probe route (on the profile's own 127.0.0.1:8080).
#[test]
fn the_embedded_default_verifies_its_ingress_through_the_probe_route() {
    if ["127.0.0.1:8080", "127.0.0.1:8443"]
        .iter()
        .any(|a| std::net::TcpListener::bind(a).is_err())
    {
        eprintln!(
            "skipping: 127.0.0.1:8080 or :8443, which the embedded profile publishes, is in use"
        );
        return;
    }
    // The embedded default pins the public Istio repository, which only the fake helm can
    // install from without a network.
    let w = World::fake_helm(false);
    for d in ["profiles", "clusters", "addons", "manifests"] {
        std::fs::remove_dir_all(w.repo.path().join(d)).expect("remove");
    }
    std::fs::remove_file(w.repo.path().join("paddock.yaml")).expect("remove");
    let r = up_ok(&w, "paddock");
    assert!(r["steps"]["kube.apply/probe-istio-ingress"].is_u64(), "{r}");
    assert!(r["steps"]["verify/ingress"].is_u64(), "{r}");
    let (code, head) = probe(8080).expect("the ingress answers");
    assert_eq!(code, 200, "{head}");
    let down = w.paddock(&["down", "paddock", "--yes"]);
    assert!(down.status.success(), "{}", stderr(&down));
}

/// Without paddock's probe route the ingress cannot be proven: a gateway without a Gateway
/// selecting it listens on nothing. The probe's objects removed behind paddock's back, the
/// next `up` that verifies fails and says what to check.
#[test]
fn verification_fails_and_says_what_to_check_when_the_probe_route_is_gone() {
    let w = World::new(false);
    up_ok(&w, "ci");
    for kind in ["virtualservices", "gateways"] {
        let (code, body) = support::api(
            &w,
            "ci",
            "DELETE",
            &format!(
                "/apis/networking.istio.io/v1/namespaces/istio-ingress/{kind}/paddock-probe-istio-ingress"
            ),
            None,
        );
        assert_eq!(code, 200, "{body}");
    }
    w.edit("clusters/ci.yaml", |t| format!("{t}  - name: more\n"));
    let text = up_fails(&w, "ci", &["--verify-timeout", "3"]);
    assert!(
        text.contains("did not answer paddock's probe route")
            && text.contains("closed the connection without an answer")
            && text.contains(
                "kubectl get gateways.networking.istio.io,virtualservices.networking.istio.io"
            ),
        "{text}"
    );
}

#[test]
fn a_second_up_changes_nothing() {
    let w = World::new(false);
    up_ok(&w, "ci");
    let mutations_before = w.mutations();
    let (_, api_before) = w.requests("ci");
    let out = w.paddock(&["up", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cluster ci is up to date with its spec; nothing to do"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.mutations(), mutations_before, "no helm or k3d mutation");
    let (_, api_after) = w.requests("ci");
    assert_eq!(api_after, api_before, "no mutating API call");
}

#[test]
fn adding_an_addon_installs_only_that_addon() {
    let w = World::new(false);
    up_ok(&w, "ci");
    let before = w.mutations().len();
    w.edit("clusters/ci.yaml", |t| format!("{t}addons: [prometheus]\n"));
    let r = up_ok(&w, "ci");
    let new: Vec<String> = w.mutations().split_off(before);
    assert_eq!(new.len(), 1, "one helm install: {new:?}");
    assert!(
        new[0].contains("upgrade --install prometheus prometheus"),
        "{new:?}"
    );
    assert!(
        r["steps"]["kube.wait/prometheus"].is_u64(),
        "waited for it: {r}"
    );
    assert!(
        r["steps"].get("helm.install/istiod-1-30-3").is_none(),
        "{r}"
    );
}

/// Server-side apply removes what its field manager stops applying (KUBERNETES.md): a label
/// taken out of the spec is gone after `up`, and a converged cluster still gets no write.
#[test]
fn a_namespace_label_removed_from_the_spec_is_gone_after_up() {
    let w = World::new(false);
    w.edit("clusters/ci.yaml", |t| {
        t.replace(
            "    tag: stable\n",
            "    tag: stable\n    labels: {team: web, tier: front}\n",
        )
    });
    up_ok(&w, "ci");
    let labels = |w: &World| {
        let (code, ns) = support::api(w, "ci", "GET", "/api/v1/namespaces/e2e", None);
        assert_eq!(code, 200, "{ns}");
        ns["metadata"]["labels"].clone()
    };
    assert_eq!(labels(&w)["tier"], "front");
    w.edit("clusters/ci.yaml", |t| t.replace(", tier: front", ""));
    up_ok(&w, "ci");
    let now = labels(&w);
    assert!(
        now.get("tier").is_none(),
        "the removed label is gone: {now}"
    );
    assert_eq!(now["team"], "web");
    assert_eq!(now["istio.io/rev"], "stable");
    let (_, before) = w.requests("ci");
    let again = up_ok(&w, "ci");
    assert_eq!(again["upToDate"], true, "{again}");
    let (_, after) = w.requests("ci");
    assert_eq!(after, before, "a converged cluster gets no mutating call");
}

#[test]
fn down_removes_what_the_cluster_owned() {
    let w = World::new(false);
    up_ok(&w, "ci");
    let refused = w.paddock(&["down", "ci"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "no confirmation on a non-interactive input"
    );
    let out = w.paddock(&["down", "ci", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = w.tool("k3d", &["cluster", "list", "-o", "json"]);
    assert_eq!(stdout(&list).trim(), "[]");
    assert!(
        probe(w.port(9080)).is_none(),
        "nothing listens on the ingress port"
    );
    assert!(
        !w.state.path().join("clusters/ci").exists(),
        "its kubeconfig is gone"
    );
    let again = w.paddock(&["down", "ci", "--yes"]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("does not exist"));
}

#[test]
fn up_refuses_a_cluster_without_paddocks_marker() {
    let w = World::new(false);
    // Made by hand, with the same ingress port, but without paddock's labels.
    let cfg = format!(
        "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: ci\nports:\n  - port: 127.0.0.1:{}:80\n    nodeFilters: [loadbalancer]\noptions:\n  kubeconfig:\n    updateDefaultKubeconfig: false\n",
        w.port(9080)
    );
    let mut c = std::process::Command::new(w.bin.join("k3d"));
    c.args(["cluster", "create", "ci", "--config", "-"])
        .env("PADDOCK_SIM_HOME", w.home.path())
        .env("PADDOCK_SIM_DOCKER", "0")
        .env("HOME", w.home.path())
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("k3d");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cfg.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
    let before = w.mutations();
    let out = w.paddock(&["up", "ci"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("paddock did not create it"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--adopt"), "{}", stderr(&out));
    assert_eq!(w.mutations(), before, "nothing was changed");
    let down = w.paddock(&["down", "ci", "--yes"]);
    assert_eq!(down.status.code(), Some(4), "down refuses it too");
    let adopted = w.paddock(&["up", "ci", "--adopt"]);
    assert!(
        adopted.status.success(),
        "--adopt manages it: {}",
        stderr(&adopted)
    );
}

#[test]
fn two_concurrent_ups_on_one_cluster_one_fails_clearly() {
    let w = World::new(false);
    w.set_knobs(&Knobs {
        tool_latency_ms: [("k3d".to_string(), 400)].into(),
        ..Knobs::default()
    });
    let first = w.spawn_paddock(&["up", "ci"]);
    std::thread::sleep(Duration::from_millis(250));
    let second = w.paddock(&["up", "ci"]);
    let first = first.wait_with_output().expect("first");
    assert!(
        first.status.success(),
        "the first finishes: {}",
        stderr(&first)
    );
    assert_eq!(second.status.code(), Some(1));
    let msg = stderr(&second);
    assert!(msg.contains("cluster ci is busy"), "{msg}");
    assert!(msg.contains("`paddock up` (pid"), "names the holder: {msg}");
}

#[test]
fn a_failing_helm_install_is_reported_and_a_rerun_continues() {
    let w = World::new(false);
    w.set_knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "helm".into(),
            args: vec!["istiod-1-30-3".into()],
            action: FaultAction::Fail,
            after: 0,
            times: Some(1),
            stderr: Some("Error: INSTALLATION FAILED: simulated chart trouble".into()),
            exit_code: None,
        }],
        ..Knobs::default()
    });
    let out = w.paddock(&["up", "ci"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("step helm.install/istiod-1-30-3 failed"),
        "{msg}"
    );
    assert!(
        msg.contains("upgrade --install istiod-1-30-3 istiod"),
        "quotes the command: {msg}"
    );
    assert!(msg.contains("exit status 1"), "{msg}");
    assert!(
        msg.contains("simulated chart trouble"),
        "quotes stderr: {msg}"
    );
    assert!(msg.contains("run `paddock up ci` again"), "{msg}");
    let r = up_ok(&w, "ci");
    assert!(
        r["steps"].get("k3d.create/ci").is_none(),
        "the cluster is not created twice: {r}"
    );
    assert!(r["steps"]["verify/ingress"].is_u64(), "{r}");
    let creates = w
        .mutations()
        .iter()
        .filter(|m| m.starts_with("k3d cluster create"))
        .count();
    assert_eq!(creates, 1);
}

/// Kill `paddock up` with SIGKILL as step `target` starts; the rerun must converge.
#[test]
fn up_killed_at_each_step_converges_on_rerun() {
    let w = World::new(false);
    let plan = w.paddock(&["plan", "ci", "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let steps: Vec<String> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert!(steps.len() >= 10, "{steps:?}");
    // Slow enough that the kill lands inside each step.
    w.set_knobs(&Knobs {
        pod_start_ms: 150,
        tool_latency_ms: [("helm".to_string(), 100), ("k3d".to_string(), 100)].into(),
        ..Knobs::default()
    });
    for target in &steps {
        let mut child = w.spawn_paddock(&["up", "ci", "-o", "json"]);
        let out = child.stdout.take().expect("stdout");
        let mut killed = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == "step" && v["status"] == "started" && v["step"] == target.as_str() {
                child.kill().expect("SIGKILL");
                killed = true;
                break;
            }
        }
        let _ = child.wait();
        let rerun = w.paddock(&["up", "ci", "-o", "json"]);
        assert!(
            rerun.status.success(),
            "rerun after a kill at {target}: {}{}",
            stdout(&rerun),
            stderr(&rerun)
        );
        let again = result(&w.paddock(&["up", "ci", "-o", "json"]));
        assert_eq!(
            again["upToDate"], true,
            "converged after a kill at {target} (killed: {killed})"
        );
        let down = w.paddock(&["down", "ci", "--yes"]);
        assert!(down.status.success(), "{}", stderr(&down));
    }
}

/// Helm works with its release pending (K3D.md, KUBERNETES.md): a paddock killed meanwhile
/// leaves that helm running. The next `up` lets it finish instead of racing it ("another
/// operation is in progress") or undoing what it does.
#[test]
fn up_killed_while_helm_works_lets_that_helm_finish_and_undoes_nothing() {
    let w = World::new(false);
    w.set_knobs(&Knobs {
        tool_latency_ms: [("helm upgrade".to_string(), 1_500)].into(),
        ..Knobs::default()
    });
    let mut child = w.spawn_paddock(&["up", "ci", "-o", "json"]);
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["status"] == "started" && v["step"] == "helm.install/istiod-1-30-3" {
            // Inside helm's window: its release is pending-install now.
            std::thread::sleep(Duration::from_millis(400));
            child.kill().expect("SIGKILL");
            break;
        }
    }
    let _ = child.wait();
    let before = w.mutations().len();
    let rerun = w.paddock(&["up", "ci", "-o", "json"]);
    assert!(
        rerun.status.success(),
        "rerun: {}{}",
        stdout(&rerun),
        stderr(&rerun)
    );
    let undone: Vec<String> = w.mutations()[before..]
        .iter()
        .filter(|m| {
            m.contains("istiod-1-30-3") && (m.contains("uninstall") || m.contains("rollback"))
        })
        .cloned()
        .collect();
    assert!(
        undone.is_empty(),
        "what the interrupted run's helm did is not undone: {undone:?}"
    );
    let again = result(&w.paddock(&["up", "ci", "-o", "json"]));
    assert_eq!(again["upToDate"], true);
}

#[test]
fn ctrl_c_stops_between_steps_and_a_rerun_continues() {
    let w = World::new(false);
    w.set_knobs(&Knobs {
        tool_latency_ms: [("helm".to_string(), 300)].into(),
        ..Knobs::default()
    });
    let mut child = w.spawn_paddock(&["up", "ci", "-o", "json"]);
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if line.contains("\"step\":\"helm.install/istio-base\"") && line.contains("started") {
            let st = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(st.success());
            break;
        }
    }
    let rest: Vec<String> = lines.collect();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "interrupted is a failure exit");
    let text = rest.join("\n");
    assert!(text.contains("interrupted"), "says so: {text}");
    assert!(
        text.contains("\"step\":\"helm.install/istio-base\",\"status\":\"done\""),
        "the running step finished: {text}"
    );
    assert!(
        !text.contains("\"step\":\"helm.install/istiod-1-30-3\""),
        "no new step started: {text}"
    );
    let r = up_ok(&w, "ci");
    assert!(
        r["steps"].get("helm.install/istio-base").is_none(),
        "done steps are not redone: {r}"
    );
    assert!(r["steps"]["verify/ingress"].is_u64(), "{r}");
}

#[test]
fn plan_looks_at_the_cluster_and_shows_only_what_differs() {
    let w = World::new(false);
    let offline = w.paddock(&["plan", "ci", "--offline", "-o", "json"]);
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).expect("json");
    assert_eq!(offline["observed"]["state"], "absent");
    up_ok(&w, "ci");
    let converged = w.paddock(&["plan", "ci", "-o", "json"]);
    let converged: serde_json::Value = serde_json::from_slice(&converged.stdout).expect("json");
    assert_eq!(converged["observed"]["state"], "present");
    assert_eq!(
        converged["steps"].as_array().map(Vec::len),
        Some(0),
        "{converged}"
    );
    w.edit("clusters/ci.yaml", |t| format!("{t}addons: [prometheus]\n"));
    let before = w.mutations();
    let changed = w.paddock(&["plan", "ci", "-o", "json"]);
    let changed: serde_json::Value = serde_json::from_slice(&changed.stdout).expect("json");
    let installs: Vec<&str> = changed["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["action"]["kind"] == "helm-install")
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(installs, ["helm.install/prometheus"]);
    assert_eq!(w.mutations(), before, "plan changes nothing");
}

#[test]
fn a_release_left_pending_by_a_killed_helm_is_recovered_on_rerun() {
    // The fake helm leaves a release pending on demand; the real one is killed inside its
    // install in tests/real_helm.rs.
    let w = World::fake_helm(false);
    w.set_knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "helm".into(),
            args: vec!["istiod-1-30-3".into()],
            action: FaultAction::DiePending,
            after: 0,
            times: Some(1),
            stderr: None,
            exit_code: None,
        }],
        ..Knobs::default()
    });
    let first = w.paddock(&["up", "ci"]);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let out = w.paddock(&["up", "ci"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out)
            .contains("release istiod-1-30-3 was left pending-install by an interrupted run"),
        "{}",
        stdout(&out)
    );
    let again = result(&w.paddock(&["up", "ci", "-o", "json"]));
    assert_eq!(again["upToDate"], true);
}

/// Injection goes through the webhook's Service, whose endpoints lag behind istiod turning
/// ready. In a cluster without gateways (nothing else waits for injection first), a bare Pod
/// applied as a workload right after istiod is up is refused ("no endpoints available for
/// service") unless `up` waits for istiod's endpoints first, as it does.
#[test]
fn a_bare_pod_workload_is_injected_even_when_istiods_endpoints_lag() {
    let w = World::new(false);
    w.set_knobs(&Knobs {
        endpoint_lag_ms: 4_000,
        ..Knobs::default()
    });
    std::fs::write(
        w.repo.path().join("profiles/lean.yaml"),
        format!(
            "name: lean\nextends: minimal\nistio:\n  repo: {}\n  version: 1.30.3\n  tags: [stable]\n",
            w.istio_repo()
        ),
    )
    .expect("profile");
    std::fs::write(
        w.repo.path().join("clusters/lean.yaml"),
        "name: lean\nprofile: lean\nnamespaces:\n  - name: e2e\n    tag: stable\nworkloads:\n  - manifests/bare.yaml\n",
    )
    .expect("cluster");
    std::fs::write(
        w.repo.path().join("manifests/bare.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: e2e\nspec:\n  containers:\n    - name: app\n      image: example/bare:1\n",
    )
    .expect("manifest");
    up_ok(&w, "lean");
    let (code, pod) = support::api(&w, "lean", "GET", "/api/v1/namespaces/e2e/pods/bare", None);
    assert_eq!(code, 200, "{pod}");
    assert!(
        pod["metadata"]["annotations"]["sidecar.istio.io/status"].is_string(),
        "injected: {pod}"
    );
}
