//! The binary end to end: exit codes, JSON output and golden snapshots of `plan` and `render`
//! for every shipped cluster.

use std::path::Path;

use assert_cmd::Command;
use predicates::str::contains;

fn paddock() -> Command {
    let mut cmd = Command::cargo_bin("paddock").expect("binary builds");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("PADDOCK_DIR");
    // Plans here are the offline ones, whatever k3d this machine has.
    cmd.env("PADDOCK_K3D", "/nonexistent/k3d");
    cmd
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_accepts_every_shipped_file() {
    paddock()
        .arg("validate")
        .assert()
        .code(0)
        .stdout(contains("5 profiles, 2 clusters, 4 addons are valid"));
}

#[test]
fn validate_exits_2_and_names_the_file_on_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("clusters")).expect("mkdir");
    std::fs::write(
        dir.path().join("clusters/x.yaml"),
        "name: x\nprofile: default\nistio:\n  version: \"1.30\"\n",
    )
    .expect("write");
    paddock()
        .arg("validate")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains(
            "clusters/x.yaml:4:12: istio.version: invalid Istio version `1.30`",
        ))
        .stderr(contains("nothing was changed"));
}

#[test]
fn validate_a_single_file_reports_only_that_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("clusters")).expect("mkdir");
    std::fs::write(dir.path().join("clusters/good.yaml"), "name: good\n").expect("write");
    std::fs::write(
        dir.path().join("clusters/bad.yaml"),
        "name: bad\nnope: 1\nk3d:\n  ports: []\n",
    )
    .expect("write");
    paddock()
        .arg("validate")
        .arg(dir.path().join("clusters/good.yaml"))
        .assert()
        .code(0);
    paddock()
        .arg("validate")
        .arg(dir.path().join("clusters/bad.yaml"))
        .assert()
        .code(2)
        .stderr(contains(
            "clusters/bad.yaml:2:1: nope: unknown field `nope`",
        ));
}

#[test]
fn validate_json_lists_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("clusters")).expect("mkdir");
    std::fs::write(dir.path().join("clusters/x.yaml"), "name: x\nistoi: {}\n").expect("write");
    let out = paddock()
        .args(["validate", "--output", "json"])
        .arg(dir.path())
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["file"], "clusters/x.yaml");
    assert_eq!(v["problems"][0]["line"], 2);
    assert_eq!(v["problems"][0]["field"], "istoi");
    assert_eq!(v["problems"][0]["help"], "did you mean `istio`?");
}

#[test]
fn plan_and_render_match_their_golden_snapshots() {
    for cluster in ["dev", "ci"] {
        let plan = paddock()
            .args(["plan", cluster])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        insta::assert_snapshot!(format!("plan_{cluster}"), String::from_utf8_lossy(&plan));
        let render = paddock()
            .args(["render", cluster])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        insta::assert_snapshot!(
            format!("render_{cluster}"),
            String::from_utf8_lossy(&render)
        );
    }
}

#[test]
fn with_no_files_the_embedded_profile_describes_an_istio_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = paddock()
        .args(["plan", "--output", "json", "-C"])
        .arg(dir.path())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&plan).expect("json");
    assert_eq!(v["cluster"], "paddock");
    assert_eq!(v["profile"], "default");
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    for want in [
        "k3d.create/paddock",
        "helm.install/istio-base",
        "helm.install/istiod-1-30-3",
        "helm.install/istio-ingress",
        "verify/ingress",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    insta::assert_snapshot!(
        "plan_embedded_default",
        String::from_utf8_lossy(
            &paddock()
                .args(["plan", "-C"])
                .arg(dir.path())
                .assert()
                .code(0)
                .get_output()
                .stdout
                .clone()
        )
    );
}

#[test]
fn plan_json_groups_independent_addons_together() {
    let out = paddock()
        .args(["plan", "dev", "--output", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    let groups = v["addon_groups"].as_array().expect("addon groups");
    // prometheus and jaeger need nothing; grafana and kiali both need prometheus.
    assert_eq!(groups[0], serde_json::json!(["prometheus", "jaeger"]));
    assert_eq!(groups[1], serde_json::json!(["grafana", "kiali"]));
    let grafana_group = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .position(|g| {
            g.as_array()
                .expect("group")
                .iter()
                .any(|s| s == "helm.install/grafana")
        });
    let kiali_group = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .position(|g| {
            g.as_array()
                .expect("group")
                .iter()
                .any(|s| s == "helm.install/kiali")
        });
    assert_eq!(
        grafana_group, kiali_group,
        "grafana and kiali install in the same group"
    );
}

#[test]
fn commands_that_are_not_built_yet_say_so() {
    paddock()
        .args(["switchover", "dev"])
        .assert()
        .code(1)
        .stderr(contains("not yet available"));
}

#[test]
fn up_without_k3d_says_what_to_install_and_changes_nothing() {
    let state = tempfile::tempdir().expect("state");
    let cache = tempfile::tempdir().expect("cache");
    paddock()
        .args(["up", "dev"])
        .env("PATH", "/nonexistent")
        .env("PADDOCK_STATE_DIR", state.path())
        // Not downloaded (tests/provision.rs covers that): said what to install.
        .env("PADDOCK_TOOLS_DOWNLOAD", "0")
        .env("PADDOCK_CACHE_DIR", cache.path())
        .env_remove("PADDOCK_K3D")
        .assert()
        .code(1)
        .stderr(contains("k3d was not found"))
        .stderr(contains("install k3d 5.x"));
    assert!(
        std::fs::read_dir(state.path())
            .expect("state dir")
            .next()
            .is_none(),
        "nothing was written"
    );
}

#[test]
fn plan_refuses_an_unknown_cluster_with_a_suggestion() {
    paddock()
        .args(["plan", "devv"])
        .assert()
        .code(2)
        .stderr(contains("did you mean `dev`?"));
}

#[test]
fn the_repository_default_cluster_is_dev() {
    let named = paddock()
        .args(["plan", "dev"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let default = paddock()
        .arg("plan")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(named, default);
    assert!(repo().join("paddock.yaml").exists());
}
