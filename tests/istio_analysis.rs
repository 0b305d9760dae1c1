//! Istio routing analysis: every check with a manifest that fails it and one that passes, each
//! finding located at its file, line and field, with its code and severity.

mod support;

use std::path::Path;

use paddock::spec::Severity;
use support::istio_cases::*;

#[test]
fn the_base_manifests_analyze_clean() {
    let all = findings("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\n");
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn every_check_fails_its_failing_manifest_at_its_line_and_passes_the_other() {
    let base_lines = BASE.lines().count() as u64 + 1;
    let mut failures = Vec::new();
    for c in checks() {
        let got = findings(&c.failing);
        let hit = got
            .iter()
            .find(|d| d.code.as_deref() == Some(c.code) && d.message.contains(c.message));
        match hit {
            None => failures.push(format!(
                "{}: no {} {:?} among {got:#?}",
                c.name, c.code, c.message
            )),
            Some(d) => {
                let want = (base_lines + c.line, c.field, c.severity);
                if (d.line, d.field.as_str(), d.severity) != want
                    || d.file != "manifests/m.yaml"
                    || d.help.is_none()
                {
                    failures.push(format!("{}: want line {} field {} {:?} in manifests/m.yaml with help; got {d} ({:?})", c.name, want.0, want.1, want.2, d.severity));
                }
            }
        }
        let clean = findings(&c.passing);
        if let Some(d) = clean.iter().find(|d| d.code.as_deref() == Some(c.code)) {
            failures.push(format!("{}: the passing manifest still gets {d}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_refuse_the_spec_and_warnings_let_it_through() {
    let error = findings(&vs(
        "    - route:\n        - destination: {host: web, subset: v3, port: {number: 8080}}\n",
    ));
    assert!(error.iter().any(|d| d.severity == Severity::Error));
    let dir = tempfile::tempdir().expect("tempdir");
    // A warning only: the repository validates, and the warning is reported beside it.
    let warned = findings(&vs(
        "    - route:\n        - destination: {host: web.shop, port: {number: 8080}}\n",
    ));
    assert!(
        warned.iter().all(|d| d.severity == Severity::Warning),
        "{warned:#?}"
    );
    drop(dir);
}

#[test]
fn the_shipped_repository_and_a_realistic_split_analyze_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = analyzed(root);
    assert!(shipped.is_empty(), "{shipped:#?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    std::fs::create_dir_all(r.join("profiles")).expect("mkdir");
    std::fs::create_dir_all(r.join("clusters")).expect("mkdir");
    std::fs::create_dir_all(r.join("manifests")).expect("mkdir");
    std::fs::write(r.join("profiles/p.yaml"), PROFILE).expect("write");
    std::fs::write(
        r.join("clusters/c.yaml"),
        "name: c\nprofile: p\nnamespaces:\n  - name: shop\n    tag: stable\nworkloads:\n  - manifests/web-split.yaml\n",
    )
    .expect("write");
    std::fs::copy(
        root.join("docs/examples/web-split.yaml"),
        r.join("manifests/web-split.yaml"),
    )
    .expect("copy");
    let split = analyzed(r);
    assert!(split.is_empty(), "{split:#?}");
}

/// The schema follows the cluster's Istio version: a DestinationRule's warmup `aggression`
/// below 1 is refused by Istio 1.28's CRD (minimum 1) and taken by 1.30's (minimum 0).
#[test]
fn the_crd_schema_is_the_one_of_the_clusters_istio_version() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: warm, namespace: shop}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer:\n      simple: LEAST_REQUEST\n      warmup: {duration: 30s, aggression: 0.5}\n";
    let old = findings_on("1.28.10", dr);
    assert!(
        old.iter().any(|d| d.code.as_deref() == Some("IST0106")
            && d.severity == Severity::Error
            && d.field == "spec.trafficPolicy.loadBalancer.warmup.aggression"
            && d.message.contains("Istio 1.28")),
        "{old:#?}"
    );
    let new = findings_on("1.30.3", dr);
    assert!(new.is_empty(), "{new:#?}");
}
