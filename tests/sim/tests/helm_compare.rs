//! The fake helm and the real helm 4 install the same releases the same way: the same objects
//! (kind, namespace, name, and content apart from what the API server sets), owned by the
//! same field manager, and release Secrets with the same name, type, labels and the same
//! release record fields that matter to readers (name, namespace, version, status, chart name
//! and version, config). Both store the record as helm does (gzipped JSON, base64). Not
//! compared: the record's `manifest` (the fake keeps object references and the rendered
//! objects beside it, the real helm YAML text), its `chart` (the fake keeps metadata only),
//! timestamps, description and notes.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use common::Home;
use paddock_sim::chart_repo::ChartRepo;
use paddock_sim::client::Client;
use serde_json::{Value, json};

/// The releases both install, in order: (release, chart, namespace, values).
const RELEASES: &[(&str, &str, &str, &str)] = &[
    (
        "istio-base",
        "base",
        "istio-system",
        "defaultRevision=1-30-3",
    ),
    ("istiod-1-30-3", "istiod", "istio-system", "revision=1-30-3"),
    (
        "istio-ingress",
        "gateway",
        "istio-ingress",
        "revision=1-30-3",
    ),
];

fn client(kc: &std::path::Path) -> Client {
    Client::from_kubeconfig(&std::fs::read_to_string(kc).expect("kubeconfig"), None)
        .expect("client")
}

fn get(c: &Client, path: &str) -> Value {
    let r = c.get(path).expect("GET");
    assert_eq!(r.code, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

/// Every object the API serves, through discovery and cluster-wide lists.
fn everything(c: &Client) -> Vec<Value> {
    let mut lists = Vec::new();
    for r in get(c, "/api/v1")["resources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        lists.push(format!(
            "/api/v1/{}",
            r["name"].as_str().unwrap_or_default()
        ));
    }
    for g in get(c, "/apis")["groups"].as_array().into_iter().flatten() {
        let gv = g["preferredVersion"]["groupVersion"]
            .as_str()
            .unwrap_or_default();
        for r in get(c, &format!("/apis/{gv}"))["resources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            lists.push(format!(
                "/apis/{gv}/{}",
                r["name"].as_str().unwrap_or_default()
            ));
        }
    }
    let mut out = Vec::new();
    for l in lists
        .iter()
        .filter(|l| !l.rsplit('/').next().unwrap_or("").is_empty())
    {
        if l.split('/').count() > 5 || l.contains("/status") || l.contains("/eviction") {
            continue;
        }
        let v = get(c, l);
        let kind = v["kind"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches("List")
            .to_string();
        for mut item in v["items"].as_array().cloned().unwrap_or_default() {
            item["kind"] = json!(kind);
            out.push(item);
        }
    }
    out
}

fn install(h: &Home, kc: &std::path::Path, repo: &str, real: Option<&std::path::Path>) {
    for (release, chart, ns, set) in RELEASES {
        let args = [
            "upgrade",
            "--install",
            release,
            chart,
            "--repo",
            repo,
            "--version",
            "1.30.3",
            "-n",
            ns,
            "--create-namespace",
            "--set",
            set,
            "--kubeconfig",
            kc.to_str().expect("utf8"),
        ];
        let mut c = h.command("helm", &args);
        if let Some(real) = real {
            c.env(paddock_sim::tools::REAL_HELM, real);
        }
        let out = c.output().expect("helm");
        assert!(
            out.status.success(),
            "{}: helm {}: {}",
            kc.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every object a release owns, keyed by (kind, namespace, name), without what the API server
/// sets and with managedFields reduced to their managers and operations.
fn owned(all: &[Value]) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    {
        for obj in all {
            if obj
                .pointer("/metadata/annotations/meta.helm.sh~1release-name")
                .is_none()
            {
                continue;
            }
            let mut o = obj.clone();
            let meta = o["metadata"].as_object_mut().expect("metadata");
            for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
                meta.remove(k);
            }
            let managers: Vec<Value> = meta
                .remove("managedFields")
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|m| json!([m["manager"], m["operation"]]))
                .collect();
            meta.insert("managers".into(), json!(managers));
            if let Some(o) = o.as_object_mut() {
                o.remove("status");
            }
            let key = |p: &str| {
                obj.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            out.insert(
                (
                    key("/kind"),
                    key("/metadata/namespace"),
                    key("/metadata/name"),
                ),
                o,
            );
        }
    }
    out
}

/// The release Secrets: name → (type, labels, the decoded release record).
fn storage(all: &[Value]) -> BTreeMap<String, (Value, Value, Value)> {
    let mut out = BTreeMap::new();
    {
        for obj in all {
            if obj["kind"] != "Secret" || obj["type"] != "helm.sh/release.v1" {
                continue;
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            let data = obj["data"]["release"].as_str().unwrap_or_default();
            let once = b64.decode(data).expect("secret data is base64");
            let twice = b64.decode(&once).expect("the release is base64 again");
            let json = if twice.starts_with(&[0x1f, 0x8b, 0x08]) {
                let mut text = String::new();
                flate2::read::GzDecoder::new(&twice[..])
                    .read_to_string(&mut text)
                    .expect("gzip");
                text
            } else {
                String::from_utf8(twice).expect("utf8")
            };
            let rel: Value = serde_json::from_str(&json).expect("release JSON");
            let mut labels = obj["metadata"]["labels"].clone();
            if let Some(l) = labels.as_object_mut() {
                // A timestamp: present in both, equal in neither.
                l.remove("modifiedAt");
            }
            out.insert(
                obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (obj["type"].clone(), labels, rel),
            );
        }
    }
    out
}

#[test]
fn the_fake_and_the_real_helm_leave_the_same_releases_and_objects() {
    let (Some(real), Some(charts)) = (paddock_sim::real_tools::helm(), ChartRepo::shared()) else {
        return;
    };
    let h = Home::new();
    let (kf, kr) = (h.cluster("fake"), h.cluster("real"));
    install(&h, &kf, &charts.istio(), None);
    install(&h, &kr, &charts.istio(), Some(&real));
    let (all_fake, all_real) = (everything(&client(&kf)), everything(&client(&kr)));

    let (fake, realo) = (owned(&all_fake), owned(&all_real));
    assert_eq!(
        fake.keys().collect::<Vec<_>>(),
        realo.keys().collect::<Vec<_>>(),
        "the same objects"
    );
    for (k, f) in &fake {
        assert_eq!(f, &realo[k], "{k:?}");
    }

    let (fs, rs) = (storage(&all_fake), storage(&all_real));
    assert_eq!(
        fs.keys().collect::<Vec<_>>(),
        rs.keys().collect::<Vec<_>>(),
        "the same release Secrets"
    );
    for (name, (ft, fl, frel)) in &fs {
        let (rt, rl, rrel) = &rs[name];
        assert_eq!(ft, rt, "{name}: type");
        assert_eq!(fl, rl, "{name}: labels");
        for p in [
            "/name",
            "/namespace",
            "/version",
            "/info/status",
            "/chart/metadata/name",
            "/chart/metadata/version",
            "/config",
        ] {
            assert_eq!(frel.pointer(p), rrel.pointer(p), "{name}: {p}");
        }
    }
}
