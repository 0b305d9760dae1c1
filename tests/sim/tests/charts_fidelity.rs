//! What the fake helm applies — the real helm's `helm template` of the real chart archives,
//! with the namespace, values, Kubernetes version and CRDs the sim passes — matches the
//! reference renderings of the Istio charts for 1.28, 1.29 and 1.30
//! (`charts/istio-<version>.yaml`, copies of `shared/vendor/istio-charts-rendered/`): the same
//! objects by kind, name and namespace, with the same labels, webhook selectors and targets,
//! Service selectors, pod labels and annotations, and injector values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use paddock_sim::render;
use serde_json::{Value, json};

const VERSIONS: [&str; 3] = ["1.28.10", "1.29.6", "1.30.3"];

fn rendered(version: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts");
    let text =
        std::fs::read_to_string(dir.join(format!("istio-{version}.yaml"))).expect("rendered file");
    serde_saphyr::from_str(&text).expect("rendered YAML")
}

/// `RELEASE CHART -n NS --set k=v ...` → (chart, release, namespace, values).
fn parse_args(args: &str) -> (String, String, String, Value) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let release = words[0].to_string();
    let chart = match words[1] {
        "istio-control/istio-discovery" => "istiod",
        other => other.rsplit('/').next().unwrap_or(other),
    }
    .to_string();
    let mut ns = "default".to_string();
    let mut values = json!({});
    let mut i = 2;
    while i < words.len() {
        match words[i] {
            "-n" => ns = words[i + 1].to_string(),
            "--set" => {
                let (k, v) = words[i + 1].split_once('=').expect("k=v");
                values[k] = match v.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    Some(list) => json!(list.split(',').collect::<Vec<_>>()),
                    None => json!(v),
                };
            }
            _ => {}
        }
        i += 2;
    }
    (chart, release, ns, values)
}

fn key(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&o["kind"]), s(&o["name"]), s(&o["namespace"]))
}

fn ours_key(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["name"]),
        s(&o["metadata"]["namespace"]),
    )
}

/// Rendered placeholders (`1.0.0` app version) become the chart version.
fn normalise_labels(v: &Value, version: &str) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let v = if k == "app.kubernetes.io/version" && v == "1.0.0" {
                version
            } else {
                v
            };
            (k.clone(), v.to_string())
        })
        .collect()
}

/// Every label (or annotation) of the reference holds in ours: the packaged charts add Helm's
/// standard labels and Istio's operator labels to objects the reference (rendered from the
/// sources, reduced) shows without them.
fn holds_all(ours: &Value, reference: &Value, version: &str, at: &str) {
    let mine = normalise_labels(ours, version);
    for (k, v) in normalise_labels(reference, version) {
        assert_eq!(mine.get(&k), Some(&v), "{at}: {k} in {mine:?}");
    }
}

fn image_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last).to_string()
}

#[test]
fn chart_object_sets_match_the_real_charts() {
    if paddock_sim::real_tools::helm().is_none()
        || paddock_sim::chart_repo::ChartRepo::shared().is_none()
    {
        return;
    }
    for version in VERSIONS {
        let doc = rendered(version);
        assert_eq!(doc["istioVersion"], version);
        let renders = doc["renders"].as_object().expect("renders");
        assert!(renders.len() >= 6, "{version}: every render case present");
        for (case, r) in renders {
            let what = format!("{version} {case}");
            let (chart, release, ns, values) = parse_args(r["args"].as_str().expect("args"));
            let ours = render::render(&chart, version, "test", &release, &ns, &values)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let ours: Vec<&Value> = ours
                .iter()
                .filter(|o| o["kind"] != "CustomResourceDefinition")
                .collect();
            let theirs = r["objects"].as_array().expect("objects");
            let want: BTreeSet<_> = theirs.iter().map(key).collect();
            let got: BTreeSet<_> = ours.iter().map(|o| ours_key(o)).collect();
            assert_eq!(got, want, "{what}: object set");
            for t in theirs {
                let o = ours
                    .iter()
                    .find(|o| ours_key(o) == key(t))
                    .expect("matched above");
                let at = format!("{what} {:?}", key(t));
                // The packaged charts add Helm's standard labels to some objects the
                // reference (rendered from the sources) lacks; every reference label holds.
                holds_all(&o["metadata"]["labels"], &t["labels"], version, &at);
                if let Some(hooks) = t["webhooks"].as_array() {
                    let mine = o["webhooks"].as_array().expect("webhooks");
                    assert_eq!(mine.len(), hooks.len(), "{at}: webhook count");
                    for (m, h) in mine.iter().zip(hooks) {
                        assert_eq!(m["name"], h["name"], "{at}");
                        assert_eq!(m["failurePolicy"], h["failurePolicy"], "{at} {}", h["name"]);
                        assert_eq!(
                            m["clientConfig"]["service"]["name"], h["service"],
                            "{at} {}",
                            h["name"]
                        );
                        for sel in ["namespaceSelector", "objectSelector"] {
                            assert_eq!(
                                m.get(sel).cloned().unwrap_or(Value::Null),
                                h.get(sel).cloned().unwrap_or(Value::Null),
                                "{at} {} {sel}",
                                h["name"]
                            );
                        }
                    }
                }
                if t["kind"] == "Service" {
                    assert_eq!(o["spec"]["selector"], t["selector"], "{at}: selector");
                    // No type is ClusterIP, as the API server defaults it.
                    let ty = o["spec"]["type"].as_str().unwrap_or("ClusterIP");
                    assert_eq!(Some(ty), t["type"].as_str(), "{at}: type");
                }
                if t["kind"] == "Deployment" {
                    let tpl = &o["spec"]["template"]["metadata"];
                    holds_all(&tpl["labels"], &t["podLabels"], version, &at);
                    holds_all(&tpl["annotations"], &t["podAnnotations"], version, &at);
                    let mine: Vec<(String, String)> = o["spec"]["template"]["spec"]["containers"]
                        .as_array()
                        .expect("containers")
                        .iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().into(),
                                image_name(c["image"].as_str().unwrap_or_default()),
                            )
                        })
                        .collect();
                    let want: Vec<(String, String)> = t["containers"]
                        .as_array()
                        .expect("containers")
                        .iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().into(),
                                image_name(c["image"].as_str().unwrap_or_default()),
                            )
                        })
                        .collect();
                    assert_eq!(mine, want, "{at}: containers");
                }
                if let Some(v) = t.get("valuesProxyImage") {
                    let values: Value =
                        serde_json::from_str(o["data"]["values"].as_str().expect("values"))
                            .expect("values JSON");
                    assert_eq!(
                        values["global"]["proxy"]["image"], v["global.proxy.image"],
                        "{at}"
                    );
                    assert_eq!(values["revision"], v["revision"], "{at}");
                    // The chart archives carry the version as tag (their hub is the sources'
                    // own, as the reference renderings show it).
                    assert_eq!(values["global"]["tag"], version, "{at}");
                }
            }
        }
        let crds: BTreeSet<String> = doc["baseCRDs"]
            .as_array()
            .expect("baseCRDs")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        let ours: BTreeSet<String> = render::render(
            "base",
            version,
            "test",
            "istio-base",
            "istio-system",
            &json!({}),
        )
        .expect("base")
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
        assert_eq!(ours, crds, "{version}: base CRDs");
    }
}

#[test]
fn vendored_copies_match_the_shared_originals_when_present() {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vendor/istio-charts-rendered");
    if !shared.is_dir() {
        eprintln!("skipping: {} not present", shared.display());
        return;
    }
    for version in VERSIONS {
        let file = format!("istio-{version}.yaml");
        let a = std::fs::read(shared.join(&file)).expect("shared copy");
        let b = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("charts")
                .join(&file),
        )
        .expect("vendored copy");
        assert_eq!(a, b, "{file} drifted from shared/vendor");
    }
}
