//! Injection decided by evaluating the MutatingWebhookConfigurations in the store equals
//! ISTIO.md's rule table (`paddock_sim::injection`, the oracle) for every combination of
//! namespace and pod labels, with the webhook objects the real Istio charts render
//! (`charts/istio-<version>.yaml`, copies of `shared/vendor/istio-charts-rendered/`):
//!
//! - one revision (1.30.3) with tags `stable` and `default`;
//! - the canary upgrade midway: 1.29.6 with `stable` and `default`, and 1.30.3 with `canary`.
//!
//! The renderings summarise each webhook (name, selectors, failure policy, service); the
//! `rules` every Istio injector webhook carries (pods, CREATE) and a caBundle (istiod patches
//! it in) are added here. Tag `canary` renders exactly as tag `stable` with the name replaced.

use std::collections::BTreeMap;
use std::path::Path;

use paddock_sim::injection::{Decision, Injectors, resolve};
use paddock_sim::store::{Store, res};
use paddock_sim::webhook::injected;
use serde_json::{Value, json};

fn rendered(version: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts");
    let text =
        std::fs::read_to_string(dir.join(format!("istio-{version}.yaml"))).expect("rendered file");
    serde_saphyr::from_str(&text).expect("rendered YAML")
}

/// The MutatingWebhookConfigurations of a render, as the API server would store them.
fn webhook_configs(version: &str, render: &str) -> Vec<Value> {
    let doc = rendered(version);
    let objects = doc["renders"][render]["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("no render {render:?} of {version}"))
        .clone();
    objects
        .iter()
        .filter(|o| o["kind"] == "MutatingWebhookConfiguration")
        .map(|o| {
            let webhooks: Vec<Value> = o["webhooks"]
                .as_array()
                .expect("webhooks")
                .iter()
                .map(|w| {
                    let mut hook = json!({
                        "name": w["name"], "failurePolicy": w["failurePolicy"],
                        "clientConfig": {"caBundle": "Y2E=", "service": {"name": w["service"], "namespace": "istio-system", "path": "/inject", "port": 443}},
                        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                    });
                    for sel in ["namespaceSelector", "objectSelector"] {
                        if !w[sel].is_null() {
                            hook[sel] = w[sel].clone();
                        }
                    }
                    hook
                })
                .collect();
            json!({"metadata": {"name": o["name"], "labels": o["labels"]}, "webhooks": webhooks})
        })
        .collect()
}

fn named(configs: &[Value], name: &str) -> Value {
    configs
        .iter()
        .find(|c| c["metadata"]["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}"))
}

/// Tag `stable`'s objects with the tag renamed.
fn renamed_tag(stable: &Value, tag: &str) -> Value {
    let text = stable
        .to_string()
        .replace(
            "istio-revision-tag-stable",
            &format!("istio-revision-tag-{tag}"),
        )
        .replace("\"stable\"", &format!("\"{tag}\""));
    serde_json::from_str(&text).expect("json")
}

/// A store with a serving istiod (pod, Service, Endpoints, injector ConfigMap) per revision
/// and the given webhook configurations.
fn world(revisions: &[(&str, &str)], configs: &[Value]) -> Store {
    let mut s = Store::new();
    s.create(
        &res("namespaces"),
        "",
        json!({"metadata": {"name": "istio-system"}}),
    )
    .expect("ns");
    for (rev, version) in revisions {
        let labels = json!({"app": "istiod", "istio.io/rev": rev});
        let name = format!("istiod-{rev}");
        let values = json!({"global": {"hub": "docker.io/istio", "tag": version, "proxy": {"image": "proxyv2"}}});
        s.create(&res("configmaps"), "istio-system", json!({"metadata": {"name": format!("istio-sidecar-injector-{rev}")}, "data": {"values": values.to_string()}})).expect("cm");
        s.create(
            &res("pods"),
            "istio-system",
            json!({"metadata": {"name": format!("{name}-0"), "labels": labels}}),
        )
        .expect("pod");
        s.create(
            &res("services"),
            "istio-system",
            json!({"metadata": {"name": name}, "spec": {"selector": labels}}),
        )
        .expect("svc");
        s.create(&res("endpoints"), "istio-system", json!({"metadata": {"name": name}, "subsets": [{"addresses": [
            {"ip": "10.42.0.5", "targetRef": {"kind": "Pod", "namespace": "istio-system", "name": format!("{name}-0")}}]}]})).expect("ep");
    }
    for c in configs {
        s.create(&res("mutatingwebhookconfigurations"), "", c.clone())
            .expect("mwc");
    }
    s
}

fn label_sets(key: &str, values: &[&str]) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for v in values {
        out.push([(key.to_string(), v.to_string())].into());
    }
    out
}

/// Every combination of one injection label and one revision label (each possibly absent).
fn combinations(
    inject_key: &str,
    inject: &[&str],
    names: &[&str],
) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for a in label_sets(inject_key, inject) {
        for b in label_sets("istio.io/rev", names) {
            let mut m = a.clone();
            m.extend(b);
            out.push(m);
        }
    }
    out
}

/// Compare webhook evaluation with the oracle for every label combination; returns how many
/// pods were injected (so a test can tell the comparison is not vacuous).
fn compare(mut store: Store, oracle: &Injectors, names: &[&str]) -> usize {
    let mut injected_count = 0;
    let namespaces = combinations("istio-injection", &["enabled", "disabled"], names);
    let pods = combinations("sidecar.istio.io/inject", &["true", "false"], names);
    for (i, ns_labels) in namespaces.iter().enumerate() {
        let ns = format!("ns-{i}");
        store
            .create(
                &res("namespaces"),
                "",
                json!({"metadata": {"name": ns, "labels": ns_labels}}),
            )
            .expect("ns");
        for (j, pod_labels) in pods.iter().enumerate() {
            let pod = json!({"metadata": {"name": format!("p-{j}"), "labels": pod_labels},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
            let got = store
                .create(&res("pods"), &ns, pod)
                .map(|p| injected(&p).map(|(rev, _)| rev))
                .unwrap_or_else(|e| panic!("namespace {ns_labels:?} pod {pod_labels:?}: {e:?}"));
            let want = match resolve(ns_labels, pod_labels, oracle) {
                Decision::Inject { revision, .. } => Some(revision),
                Decision::None(_) => None,
            };
            assert_eq!(
                got, want,
                "namespace labels {ns_labels:?}, pod labels {pod_labels:?}"
            );
            injected_count += usize::from(got.is_some());
        }
    }
    injected_count
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const NAMES: &[&str] = &["stable", "canary", "default", "1-29-6", "1-30-3", "nope"];

#[test]
fn one_revision_with_tags_injects_as_the_rule_table_says() {
    let configs = webhook_configs(
        "1.30.3",
        "istiod (revision=1-30-3, revisionTags={stable,default})",
    );
    assert_eq!(configs.len(), 3, "revision, stable and default");
    let store = world(&[("1-30-3", "1.30.3")], &configs);
    let oracle = Injectors {
        revisions: vec!["1-30-3".into()],
        tags: tags(&[("stable", "1-30-3"), ("default", "1-30-3")]),
    };
    let n = compare(store, &oracle, NAMES);
    assert!(n > 50, "many combinations inject: {n}");
}

#[test]
fn the_canary_midway_state_injects_as_the_rule_table_says() {
    let old = webhook_configs(
        "1.29.6",
        "istiod (revision=1-29-6, revisionTags={stable,default})",
    );
    let new = webhook_configs(
        "1.30.3",
        "istiod (revision=1-30-3, revisionTags={stable,default})",
    );
    let mut configs = old.clone();
    configs.push(named(&new, "istio-sidecar-injector-1-30-3"));
    configs.push(renamed_tag(
        &named(&new, "istio-revision-tag-stable"),
        "canary",
    ));
    let store = world(&[("1-29-6", "1.29.6"), ("1-30-3", "1.30.3")], &configs);
    let oracle = Injectors {
        revisions: vec!["1-29-6".into(), "1-30-3".into()],
        tags: tags(&[
            ("stable", "1-29-6"),
            ("default", "1-29-6"),
            ("canary", "1-30-3"),
        ]),
    };
    let n = compare(store, &oracle, NAMES);
    assert!(n > 50, "many combinations inject: {n}");
}

/// The comparison catches a webhook object that differs from what the oracle assumes: the
/// same canary state with tag `canary` still pointing at 1.29.6's Service.
#[test]
fn a_tag_object_calling_the_wrong_istiod_disagrees_with_the_table() {
    let old = webhook_configs(
        "1.29.6",
        "istiod (revision=1-29-6, revisionTags={stable,default})",
    );
    let mut configs = old.clone();
    configs.push(renamed_tag(
        &named(&old, "istio-revision-tag-stable"),
        "canary",
    ));
    let store = world(&[("1-29-6", "1.29.6"), ("1-30-3", "1.30.3")], &configs);
    let oracle = Injectors {
        revisions: vec!["1-29-6".into()],
        tags: tags(&[
            ("stable", "1-29-6"),
            ("default", "1-29-6"),
            ("canary", "1-30-3"),
        ]),
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compare(store, &oracle, NAMES)
    }));
    assert!(caught.is_err(), "a canary tag serving 1.29.6 is told apart");
}
