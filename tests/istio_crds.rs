//! The Istio CRD schemas paddock checks manifests against (`src/mesh/analyze/crds/*.json`)
//! are those of the real base charts (`shared/vendor/charts/istio/base-*.tgz`,
//! `files/crd-all.gen.yaml`): each kind's `spec` schema per served version, descriptions left
//! out. `PADDOCK_REGENERATE_CRDS=1 cargo test --test istio_crds` writes them anew.

use std::io::Read;
use std::path::PathBuf;

use serde_json::{Map, Value};

const KINDS: &[&str] = &[
    "Gateway",
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "Sidecar",
    "PeerAuthentication",
];

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("description");
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

fn extract(tgz: &std::path::Path) -> Value {
    let file = std::fs::File::open(tgz).expect("open chart");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut text = String::new();
    for entry in tar.entries().expect("entries") {
        let mut e = entry.expect("entry");
        if e.path().expect("path").ends_with("files/crd-all.gen.yaml") {
            e.read_to_string(&mut text).expect("read crds");
        }
    }
    assert!(
        !text.is_empty(),
        "{} has no files/crd-all.gen.yaml",
        tgz.display()
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("crds parse");
    let mut kinds = Map::new();
    for crd in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        if !KINDS.contains(&kind) || !group.ends_with(".istio.io") {
            continue;
        }
        let mut versions = Map::new();
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if v["served"] != true {
                continue;
            }
            let mut schema = v["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
            strip(&mut schema);
            versions.insert(v["name"].as_str().unwrap_or_default().to_string(), schema);
        }
        kinds.insert(
            kind.to_string(),
            serde_json::json!({"group": group, "versions": versions}),
        );
    }
    Value::Object(kinds)
}

#[test]
fn the_embedded_crd_schemas_are_the_base_charts() {
    let dir = match paddock_sim::chart_repo::charts_dir() {
        Ok(d) => d.join("istio"),
        Err(e) if paddock_sim::real_tools::required() => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/mesh/analyze/crds");
    let regenerate = std::env::var("PADDOCK_REGENERATE_CRDS").is_ok_and(|v| v == "1");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("charts dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(version) = name
            .strip_prefix("base-")
            .and_then(|n| n.strip_suffix(".tgz"))
        else {
            continue;
        };
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let schemas = extract(&path);
        let file = out.join(format!("{minor}.json"));
        let text = serde_json::to_string(&schemas).expect("json") + "\n";
        if regenerate {
            std::fs::write(&file, &text).expect("write");
        }
        let embedded = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            embedded == text,
            "{} differs from {name}'s CRDs; run PADDOCK_REGENERATE_CRDS=1 cargo test --test istio_crds",
            file.display()
        );
        seen += 1;
    }
    assert!(seen >= 3, "base charts found: {seen}");
}
