//! Generated configs satisfy the other tools' own schemas: every k3d config paddock would pipe
//! to `k3d cluster create` validates against k3d's v1alpha5 schema, and every gateway release's
//! values against the Istio gateway chart's `values.schema.json`.

use std::path::{Path, PathBuf};

use paddock::drivers::k3d;
use paddock::mesh::istio;
use paddock::spec::{self, ClusterSpec};
use serde_json::Value;

fn vendor_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor");
    dir.is_dir().then_some(dir)
}

/// The vendored schema when the shared directory is present, else paddock's embedded copy.
fn schema(file: &str, embedded: &str) -> jsonschema::Validator {
    let text = vendor_dir()
        .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .unwrap_or_else(|| embedded.to_string());
    let value: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&value).expect("schema compiles")
}

fn shipped_specs() -> Vec<ClusterSpec> {
    let repo =
        spec::validate_repo(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("shipped files validate");
    let mut specs: Vec<ClusterSpec> = repo
        .clusters
        .keys()
        .map(|c| repo.resolve(c).expect("cluster resolves"))
        .collect();
    specs.extend(
        repo.profiles
            .keys()
            .map(|p| repo.resolve_profile(p).expect("profile resolves")),
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let bare = spec::load(empty.path()).repo;
    specs.push(
        bare.resolve(spec::load::IMPLICIT_CLUSTER)
            .expect("embedded default resolves"),
    );
    specs
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path().as_str()))
        .collect()
}

#[test]
fn embedded_schemas_are_the_vendored_ones() {
    let Some(dir) = vendor_dir() else {
        eprintln!("skipping: ../shared/vendor is not present");
        return;
    };
    for (file, embedded) in [
        ("k3d-v1alpha5.schema.json", spec::schema::K3D_SCHEMA),
        (
            "istio-gateway-values.schema.json",
            spec::schema::GATEWAY_SCHEMA,
        ),
    ] {
        let vendored = std::fs::read_to_string(dir.join(file)).expect("read vendored schema");
        assert_eq!(
            vendored, embedded,
            "src/spec/schemas/{file} differs from the vendored copy"
        );
    }
}

#[test]
fn every_generated_k3d_config_validates_against_k3ds_schema() {
    let v = schema("k3d-v1alpha5.schema.json", spec::schema::K3D_SCHEMA);
    let specs = shipped_specs();
    assert!(
        specs.len() >= 8,
        "clusters, profiles and the embedded default"
    );
    for s in specs {
        let cfg = k3d::config(&s);
        assert_eq!(
            errors(&v, &cfg),
            Vec::<String>::new(),
            "k3d config of {}",
            s.name
        );
        assert_eq!(cfg["metadata"]["name"], Value::from(s.name.clone()));
        let args = cfg["options"]["k3s"]["extraArgs"]
            .as_array()
            .expect("extraArgs");
        assert!(
            args.iter().any(|a| a["arg"] == "--disable=traefik"),
            "{} disables traefik",
            s.name
        );
        let labels = cfg["options"]["runtime"]["labels"]
            .as_array()
            .expect("labels");
        assert!(
            labels
                .iter()
                .any(|l| l["label"] == "dev.paddock.managed=true"),
            "{} carries the marker",
            s.name
        );
    }
}

#[test]
fn the_schema_check_rejects_what_k3d_would_reject() {
    let v = schema("k3d-v1alpha5.schema.json", spec::schema::K3D_SCHEMA);
    let bad = serde_json::json!({ "apiVersion": "k3d.io/v1alpha5", "kind": "Simple", "servers": 0, "nodes": 2 });
    assert_eq!(
        errors(&v, &bad).len(),
        2,
        "minimum servers and an unknown key"
    );
}

#[test]
fn every_gateway_release_validates_against_the_gateway_chart_schema() {
    let v = schema(
        "istio-gateway-values.schema.json",
        spec::schema::GATEWAY_SCHEMA,
    );
    let mut checked = 0;
    for s in shipped_specs() {
        for rel in istio::releases(&s)
            .into_iter()
            .filter(|r| r.chart == "gateway")
        {
            assert_eq!(
                errors(&v, &rel.values),
                Vec::<String>::new(),
                "{} of {}",
                rel.name,
                s.name
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "gateways of the Istio clusters and profiles were checked ({checked})"
    );
    let bad = serde_json::json!({ "replicaCount": "two", "hub": "docker.io/istio" });
    assert_eq!(
        errors(&v, &bad).len(),
        2,
        "gateway values have no hub and replicaCount is an integer"
    );
}
