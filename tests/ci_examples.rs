//! The CI examples in `docs/ci/` run as written against the sim: every shell step of the
//! GitHub Actions workflow (but the one that installs paddock) and the GitLab CI job's `script`
//! and `after_script`, with `paddock` and the real `kubectl` on `PATH`. Up, kubectl through the
//! exported kubeconfig, down.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::World;

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/ci")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read the example");
    serde_saphyr::from_str(&text).expect("the example is YAML")
}

/// A `PATH` directory holding `paddock` (this build) and the real `kubectl`.
fn tools_dir(w: &World, kubectl: &Path) -> PathBuf {
    let dir = w.home.path().join("ci-bin");
    std::fs::create_dir_all(&dir).expect("ci-bin");
    let paddock = std::env::var_os("PADDOCK_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_paddock").into());
    std::os::unix::fs::symlink(paddock, dir.join("paddock")).expect("link paddock");
    std::os::unix::fs::symlink(kubectl, dir.join("kubectl")).expect("link kubectl");
    dir
}

/// A shell as the CI service runs one, in the world's repository, with `env` added.
fn shell(w: &World, bin: &Path, script: &str, env: &[(String, String)]) -> Output {
    // The world's environment (sim home, state directory, the fake k3d first on PATH).
    let c: Command = w.paddock_cmd(&[]);
    let path = c
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().to_string()))
        .unwrap_or_default();
    let mut sh = Command::new("bash");
    sh.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script]);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.env("PATH", format!("{}:{path}", bin.display()))
        .env("PADDOCK_NO_DAEMON", "1")
        .current_dir(w.repo.path());
    for (k, v) in env {
        sh.env(k, v);
    }
    sh.output().expect("bash runs")
}

fn says(what: &str, o: &Output) -> String {
    format!(
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        support::stdout(o),
        support::stderr(o)
    )
}

fn cluster_exists(w: &World, name: &str) -> bool {
    let out = w.tool("k3d", &["cluster", "list", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("k3d list json");
    list.as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name)
}

/// Actions' expressions the steps use, as a run of this commit would fill them in.
fn expand(script: &str) -> String {
    script.replace(
        "${{ github.sha }}",
        "0123456789abcdef0123456789abcdef01234567",
    )
}

#[test]
fn the_github_actions_workflow_runs_against_the_sim() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let w = World::new(support::require_docker());
    let bin = tools_dir(&w, &kubectl);
    let workflow = example("github-actions.yml");
    let steps = workflow["jobs"]["integration"]["steps"]
        .as_array()
        .expect("steps")
        .clone();
    let github_env = w.home.path().join("github-env");
    std::fs::write(&github_env, "").expect("GITHUB_ENV");
    let mut failed: Option<String> = None;
    let mut ran = Vec::new();
    for step in &steps {
        let (Some(id), Some(run)) = (step["id"].as_str(), step["run"].as_str()) else {
            continue;
        };
        if id == "install" {
            continue;
        }
        let always = step["if"].as_str() == Some("always()");
        if failed.is_some() && !always {
            continue;
        }
        if id == "down" {
            assert!(cluster_exists(&w, "ci"), "the cluster is up before `down`");
        }
        // What earlier steps wrote to $GITHUB_ENV is in the environment of later ones.
        let mut env: Vec<(String, String)> = std::fs::read_to_string(&github_env)
            .expect("read GITHUB_ENV")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("GITHUB_ENV".into(), github_env.display().to_string()));
        let o = shell(&w, &bin, &expand(run), &env);
        ran.push(id.to_string());
        if !o.status.success() && failed.is_none() {
            failed = Some(says(id, &o));
        }
        if id == "test" {
            assert!(
                support::stdout(&o).contains("k3d-ci-server-0"),
                "{}",
                says(id, &o)
            );
        }
    }
    assert_eq!(failed, None);
    assert_eq!(ran, ["doctor", "up", "kubeconfig", "test", "down"]);
    assert!(!cluster_exists(&w, "ci"), "`down` removed the cluster");
}

#[test]
fn the_gitlab_ci_job_runs_against_the_sim() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    // Local processes: cluster `ci` as Docker containers is the other test's (names are
    // machine-wide, as k3d's are).
    let w = World::new(false);
    let bin = tools_dir(&w, &kubectl);
    let job = &example("gitlab-ci.yml")["integration"];
    let lines = |key: &str| -> String {
        job[key]
            .as_array()
            .expect("a list of lines")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let commit = [("CI_COMMIT_SHORT_SHA".to_string(), "0123abcd".to_string())];
    // The script's lines run in one shell, stopping at the first failure, as GitLab runs them.
    let script = shell(&w, &bin, &lines("script"), &commit);
    assert!(script.status.success(), "{}", says("script", &script));
    assert!(
        support::stdout(&script).contains("k3d-ci-server-0"),
        "{}",
        says("script", &script)
    );
    assert!(cluster_exists(&w, "ci"));
    let after = shell(&w, &bin, &lines("after_script"), &commit);
    assert!(after.status.success(), "{}", says("after_script", &after));
    assert!(!cluster_exists(&w, "ci"), "`down` removed the cluster");
    // A cleanup step whose cluster is already gone succeeds too.
    let again = shell(&w, &bin, &lines("after_script"), &commit);
    assert!(
        again.status.success(),
        "{}",
        says("after_script again", &again)
    );
}

/// `kubectl --kubeconfig FILE ARGS...` with the real kubectl: (success, stdout).
fn kubectl(kubectl: &Path, env: &[(&str, &Path)], args: &[&str]) -> (bool, String) {
    let mut c = Command::new(kubectl);
    c.args(args).env_remove("KUBECONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("kubectl runs");
    (
        o.status.success(),
        support::stdout(&o) + &support::stderr(&o),
    )
}

#[test]
fn up_names_the_kubeconfig_context_urls_and_versions_and_kubeconfig_prints_exports_and_merges_it() {
    let Some(kctl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let w = World::new(false);
    let r = support::up_ok(&w, "ci");
    // The kubeconfig `up` names reaches the cluster, by the context it names (the real kubectl).
    let path = PathBuf::from(r["kubeconfig"].as_str().expect("kubeconfig path"));
    assert!(path.starts_with(w.state.path()), "{r}");
    assert_eq!(r["context"], "k3d-ci");
    let (ok, nodes) = kubectl(
        &kctl,
        &[("KUBECONFIG", &path)],
        &["--context", "k3d-ci", "get", "nodes", "-o", "name"],
    );
    assert!(ok && nodes.contains("node/k3d-ci-server-0"), "{nodes}");
    // The URL is the load balancer's port for 80 in this world, and the gateway answers there.
    let port = w.port(9080);
    assert_eq!(r["urls"]["ingress"], format!("http://127.0.0.1:{port}/"));
    assert!(support::probe(port).is_some(), "nothing answers on {port}");
    // Versions as profiles/ci.yaml pins them.
    assert_eq!(r["versions"]["istio"], "1.30.3");
    assert!(
        r["versions"]["k3s"]
            .as_str()
            .is_some_and(|k| k.starts_with("rancher/k3s:")),
        "{r}"
    );
    // The text result says the same.
    let text = support::stdout(&w.paddock(&["up", "ci"]));
    for want in [
        format!("kubeconfig: {}", path.display()),
        "context:    k3d-ci".to_string(),
        format!("ingress:    http://127.0.0.1:{port}/"),
        "Istio 1.30.3".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} in {text}");
    }

    // --export prints a line a shell evaluates to that same file.
    let export = w.paddock(&["kubeconfig", "ci", "--export"]);
    assert!(export.status.success(), "{}", support::stderr(&export));
    assert_eq!(
        support::stdout(&export).trim(),
        format!("export KUBECONFIG={}", path.display())
    );
    // Plain: the kubeconfig itself, which kubectl reads.
    let plain = w.paddock(&["kubeconfig", "ci"]);
    let printed = w.home.path().join("printed-kubeconfig");
    std::fs::write(&printed, &plain.stdout).expect("write");
    let (ok, out) = kubectl(
        &kctl,
        &[("KUBECONFIG", &printed)],
        &["get", "ns", "e2e", "-o", "name"],
    );
    assert!(ok, "{out}");

    // --merge keeps what the default kubeconfig had and adds the cluster's context.
    let default = w.home.path().join("default-kubeconfig");
    std::fs::write(
        &default,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\nusers:\n- name: me\n  user:\n    token: secret\ncurrent-context: prod\n",
    )
    .expect("write");
    let merged = w
        .paddock_cmd(&["kubeconfig", "ci", "--merge"])
        .env("KUBECONFIG", &default)
        .output()
        .expect("paddock runs");
    assert!(merged.status.success(), "{}", support::stderr(&merged));
    assert!(support::stdout(&merged).contains("merged context k3d-ci into"));
    let (_, contexts) = kubectl(
        &kctl,
        &[("KUBECONFIG", &default)],
        &["config", "get-contexts", "-o", "name"],
    );
    let mut contexts: Vec<&str> = contexts.lines().collect();
    contexts.sort();
    assert_eq!(contexts, ["k3d-ci", "prod"]);
    let (_, current) = kubectl(
        &kctl,
        &[("KUBECONFIG", &default)],
        &["config", "current-context"],
    );
    assert_eq!(current.trim(), "prod");
    let (ok, out) = kubectl(
        &kctl,
        &[("KUBECONFIG", &default)],
        &["--context", "k3d-ci", "get", "ns", "e2e", "-o", "name"],
    );
    assert!(ok, "{out}");

    // An absent cluster has no kubeconfig: exit 1 saying how to make it.
    let down = w.paddock(&["down", "ci", "--yes"]);
    assert!(down.status.success());
    let gone = w.paddock(&["kubeconfig", "ci", "--export"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        support::stderr(&gone).contains("cluster ci does not exist; `paddock up ci` creates it"),
        "{}",
        support::stderr(&gone)
    );
}

/// A cleanup step's `down` succeeds when k3d says the cluster is not there, and fails when
/// k3d cannot say (Docker down): "absent" is k3d's answer, never a guess.
#[test]
fn down_of_an_absent_cluster_succeeds_and_of_an_unknown_one_fails() {
    use paddock_sim::knobs::{FaultAction, Knobs, ToolFault};
    let w = World::fake_helm(false);
    let absent = w.paddock(&["down", "ci", "--yes", "-o", "json"]);
    assert_eq!(
        absent.status.code(),
        Some(0),
        "{}",
        support::stderr(&absent)
    );
    let r = support::result(&absent);
    assert_eq!(r["deleted"], false, "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist; nothing to delete"))
    );

    w.set_knobs(&Knobs {
        tool_faults: vec![ToolFault {
            tool: "k3d".into(),
            args: vec!["cluster".into(), "list".into()],
            action: FaultAction::Fail,
            after: 0,
            times: None,
            stderr: Some(
                "FATA[0000] Failed to list clusters: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?".into(),
            ),
            exit_code: None,
        }],
        ..Knobs::default()
    });
    let unknown = w.paddock(&["down", "ci", "--yes"]);
    assert_eq!(unknown.status.code(), Some(1));
    let msg = support::stderr(&unknown);
    assert!(
        msg.contains("could not tell whether cluster ci exists"),
        "{msg}"
    );
    assert!(msg.contains("Cannot connect to the Docker daemon"), "{msg}");
}
