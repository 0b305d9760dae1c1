//! Which control plane serves a pod, and whether a pod needs a restart (ISTIO.md, "Injection"
//! and "Which control plane a pod has"). Pure functions over labels and what the cluster's
//! webhooks say; `status` and `restart` use them.

pub mod istio;

use std::collections::BTreeMap;

use serde_json::Value;

/// An object's labels (`metadata.labels`) as a map.
pub fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Has the pod been asked to stop? Such a pod still runs (and carries its old revision and
/// proxy) until its containers exit, but it is on its way out: no question about which
/// proxies the mesh runs may count it as staying (KUBERNETES.md, "Deletion is not instant").
pub fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// The injectors a cluster has: revision webhooks and tag webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injectors {
    /// Revisions with an `istio-sidecar-injector[-<rev>]` webhook ("" for the unrevisioned).
    pub revisions: Vec<String>,
    /// Tag → revision (`istio-revision-tag-<tag>` webhooks).
    pub tags: BTreeMap<String, String>,
}

impl Injectors {
    /// Read them from MutatingWebhookConfigurations (as JSON).
    pub fn from_webhooks(hooks: &[Value]) -> Self {
        let mut out = Self::default();
        for h in hooks {
            let name = h["metadata"]["name"].as_str().unwrap_or_default();
            let labels = &h["metadata"]["labels"];
            let rev = labels["istio.io/rev"].as_str().unwrap_or_default();
            if let Some(tag) = labels["istio.io/tag"].as_str() {
                out.tags.insert(tag.to_string(), rev.to_string());
            } else if name == "istio-sidecar-injector" {
                out.revisions.push(String::new());
            } else if let Some(r) = name.strip_prefix("istio-sidecar-injector-") {
                out.revisions.push(r.to_string());
            }
        }
        out
    }

    fn named(&self, name: &str) -> Option<String> {
        if self.revisions.iter().any(|r| r == name) {
            return Some(name.to_string());
        }
        self.tags.get(name).cloned()
    }

    fn default_injector(&self) -> Option<String> {
        if self.revisions.iter().any(String::is_empty) {
            return Some(String::new());
        }
        self.tags.get("default").cloned()
    }
}

fn get<'a>(m: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    m.get(k).map(String::as_str)
}

/// The revision that would inject a new pod with these labels, or `None` (rules 1–5).
pub fn resolve(
    ns: &BTreeMap<String, String>,
    pod: &BTreeMap<String, String>,
    injectors: &Injectors,
) -> Option<String> {
    if get(ns, "istio-injection") == Some("disabled")
        || get(pod, "sidecar.istio.io/inject") == Some("false")
    {
        return None;
    }
    if get(ns, "istio-injection") == Some("enabled") {
        return injectors.default_injector();
    }
    if let Some(rev) = get(ns, "istio.io/rev") {
        return injectors.named(rev);
    }
    if let Some(rev) = get(pod, "istio.io/rev") {
        return injectors.named(rev);
    }
    if get(pod, "sidecar.istio.io/inject") == Some("true") {
        return injectors.default_injector();
    }
    None
}

/// The proxy image a revision injects, from its injector ConfigMap's `values` (JSON):
/// `global.proxy.image` if it contains "/", else `<global.hub>/<global.proxy.image>:<global.tag>`.
pub fn expected_image(values_json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(values_json).ok()?;
    let image = v.pointer("/global/proxy/image")?.as_str()?;
    if image.contains('/') {
        return Some(image.to_string());
    }
    let hub = v.pointer("/global/hub")?.as_str()?;
    let tag = match v.pointer("/global/tag")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(format!("{hub}/{image}:{tag}"))
}

/// A pod's proxy as injected: revision annotation and `istio-proxy` image, looked for in both
/// `containers` and native-sidecar `initContainers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    pub revision: Option<String>,
    pub image: Option<String>,
}

pub fn proxy_of(pod: &Value) -> Proxy {
    let image = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str())
        .map(str::to_string);
    Proxy {
        revision: pod["metadata"]["annotations"]["istio.io/rev"]
            .as_str()
            .map(str::to_string),
        image,
    }
}

/// [`proxy_of`] for a typed pod.
pub fn proxy_of_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Proxy {
    let image = pod.spec.as_ref().and_then(|spec| {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == "istio-proxy")
            .and_then(|c| c.image.clone())
    });
    Proxy {
        revision: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("istio.io/rev"))
            .cloned(),
        image,
    }
}

/// Why a pod needs a restart, or `None` when its proxy is what it should be.
pub fn restart_reason(
    proxy: &Proxy,
    expected_revision: Option<&str>,
    expected_image: Option<&str>,
) -> Option<String> {
    match (proxy.image.as_deref(), expected_revision) {
        (None, None) => None,
        (None, Some(rev)) => Some(format!(
            "has no proxy but revision {} would inject it",
            shown(rev)
        )),
        (Some(_), None) => Some(format!(
            "has a proxy from revision {} but no control plane should inject it now",
            shown(proxy.revision.as_deref().unwrap_or("?"))
        )),
        (Some(img), Some(rev)) => {
            if proxy.revision.as_deref() != Some(rev) {
                return Some(format!(
                    "injected by revision {} but its labels now resolve to {}",
                    shown(proxy.revision.as_deref().unwrap_or("?")),
                    shown(rev)
                ));
            }
            match expected_image {
                Some(want) if want != img => Some(format!("proxy image {img} differs from {want}")),
                _ => None,
            }
        }
    }
}

fn shown(rev: &str) -> String {
    if rev.is_empty() {
        "\"\" (unrevisioned)".to_string()
    } else {
        rev.to_string()
    }
}

/// The version tag of an image reference (`docker.io/istio/proxyv2:1.30.3` → `1.30.3`).
pub fn image_tag(image: &str) -> &str {
    image
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("")
}

/// Does a label selector (`matchLabels` + `matchExpressions`) select these labels?
pub fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if selector.is_null() {
        return true;
    }
    let labels_ok = selector["matchLabels"].as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    });
    let exprs_ok = selector["matchExpressions"].as_array().is_none_or(|es| {
        es.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).map(String::as_str);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// Webhook overlap analysis: every combination of namespace and pod injection labels must be
/// matched by at most one injector (MutatingWebhookConfiguration). Returns one problem per
/// combination that two or more match.
pub fn overlaps(hooks: &[Value]) -> Vec<String> {
    let injectors: Vec<&Value> = hooks
        .iter()
        .filter(|h| h["metadata"]["labels"]["app"] == "sidecar-injector")
        .collect();
    let mut names: Vec<String> = Vec::new();
    for h in &injectors {
        for w in h["webhooks"].as_array().into_iter().flatten() {
            for sel in ["namespaceSelector", "objectSelector"] {
                for e in w[sel]["matchExpressions"].as_array().into_iter().flatten() {
                    if e["key"] == "istio.io/rev" {
                        for v in e["values"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                        {
                            if !names.iter().any(|n| n == v) {
                                names.push(v.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    let one = |k: &str, v: Option<&str>| -> BTreeMap<String, String> {
        v.map(|v| [(k.to_string(), v.to_string())].into())
            .unwrap_or_default()
    };
    let mut ns_sets: Vec<BTreeMap<String, String>> = Vec::new();
    for inj in [None, Some("enabled"), Some("disabled")] {
        ns_sets.push(one("istio-injection", inj));
    }
    for n in &names {
        ns_sets.push(one("istio.io/rev", Some(n)));
    }
    let mut pod_sets: Vec<BTreeMap<String, String>> = Vec::new();
    for inj in [None, Some("true"), Some("false")] {
        pod_sets.push(one("sidecar.istio.io/inject", inj));
    }
    for n in &names {
        pod_sets.push(one("istio.io/rev", Some(n)));
    }
    let mut problems = Vec::new();
    for ns in &ns_sets {
        for pod in &pod_sets {
            let matching: Vec<&str> = injectors
                .iter()
                .filter(|h| {
                    h["webhooks"].as_array().into_iter().flatten().any(|w| {
                        selects(&w["namespaceSelector"], ns) && selects(&w["objectSelector"], pod)
                    })
                })
                .filter_map(|h| h["metadata"]["name"].as_str())
                .collect();
            if matching.len() > 1 {
                problems.push(format!(
                    "namespace labels {ns:?} with pod labels {pod:?} are injected by {} webhooks at once ({}): delete the stray injector or retarget its selectors so only one serves each combination",
                    matching.len(),
                    matching.join(", ")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn injection_resolution_follows_istio_md() {
        let inj = Injectors {
            revisions: vec!["1-29-6".into(), "1-30-3".into()],
            tags: [
                ("stable".to_string(), "1-29-6".to_string()),
                ("default".to_string(), "1-30-3".to_string()),
            ]
            .into(),
        };
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Labels, Labels, Option<&str>, &str)] = &[
            (
                &[("istio-injection", "disabled"), ("istio.io/rev", "stable")],
                &[],
                None,
                "rule 1: disabled wins",
            ),
            (
                &[("istio-injection", "enabled"), ("istio.io/rev", "stable")],
                &[],
                Some("1-30-3"),
                "rule 2: enabled → default, beats istio.io/rev",
            ),
            (
                &[("istio.io/rev", "stable")],
                &[],
                Some("1-29-6"),
                "rule 3: a tag",
            ),
            (
                &[("istio.io/rev", "1-30-3")],
                &[],
                Some("1-30-3"),
                "rule 3: a revision",
            ),
            (
                &[("istio.io/rev", "nope")],
                &[],
                None,
                "rule 3: unknown name injects nothing",
            ),
            (
                &[],
                &[("istio.io/rev", "stable")],
                Some("1-29-6"),
                "rule 4: pod label",
            ),
            (
                &[],
                &[("sidecar.istio.io/inject", "true")],
                Some("1-30-3"),
                "rule 4: inject=true → default",
            ),
            (&[], &[], None, "rule 4: neither"),
            (
                &[("istio.io/rev", "stable")],
                &[("sidecar.istio.io/inject", "false")],
                None,
                "rule 5: opt out",
            ),
        ];
        for (ns, pod, want, why) in cases {
            assert_eq!(
                resolve(&labels(ns), &labels(pod), &inj).as_deref(),
                *want,
                "{why}"
            );
        }
    }

    #[test]
    fn a_typed_pod_has_the_proxy_its_json_has() {
        let native_sidecar = serde_json::json!({
            "metadata": {"name": "p", "annotations": {"istio.io/rev": "1-30-3"}},
            "spec": {
                "initContainers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.30.3"}],
                "containers": [{"name": "app", "image": "app:1"}]
            }
        });
        let sidecar = serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "app", "image": "app:1"},
                {"name": "istio-proxy", "image": "istio/proxyv2:1.29.6"}
            ]}
        });
        let bare = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        for pod in [native_sidecar, sidecar, bare] {
            let typed: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(pod.clone()).expect("a pod");
            assert_eq!(proxy_of_pod(&typed), proxy_of(&pod), "{pod}");
        }
    }

    #[test]
    fn restart_rule_catches_revision_image_and_missing_proxy() {
        let p = |rev: &str, img: &str| Proxy {
            revision: Some(rev.into()),
            image: Some(img.into()),
        };
        let img = "docker.io/istio/proxyv2:1.30.3";
        assert_eq!(
            restart_reason(&p("1-30-3", img), Some("1-30-3"), Some(img)),
            None
        );
        assert!(
            restart_reason(
                &p("1-29-6", "docker.io/istio/proxyv2:1.29.6"),
                Some("1-30-3"),
                Some(img)
            )
            .is_some_and(|r| r.contains("injected by revision 1-29-6"))
        );
        assert!(
            restart_reason(
                &p("1-30-3", "docker.io/istio/proxyv2:1.30.2"),
                Some("1-30-3"),
                Some(img)
            )
            .is_some_and(|r| r.contains("differs")),
            "in-place upgrade leaves old images"
        );
        assert!(
            restart_reason(&Proxy::default(), Some("1-30-3"), Some(img))
                .is_some_and(|r| r.contains("no proxy"))
        );
        assert_eq!(restart_reason(&Proxy::default(), None, None), None);
    }

    #[test]
    fn overlapping_injectors_are_found() {
        let hook = |name: &str, ns: Value, obj: Value| {
            serde_json::json!({"metadata": {"name": name, "labels": {"app": "sidecar-injector"}},
                "webhooks": [{"namespaceSelector": ns, "objectSelector": obj}]})
        };
        let enabled = serde_json::json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]});
        let rev = |r: &str| serde_json::json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [r]}]});
        let fine = vec![
            hook("istio-sidecar-injector-1-29-6", rev("1-29-6"), Value::Null),
            hook("istio-revision-tag-default", enabled.clone(), Value::Null),
        ];
        assert!(overlaps(&fine).is_empty(), "{:?}", overlaps(&fine));
        let clash = vec![
            hook("istio-sidecar-injector", enabled.clone(), Value::Null),
            hook("istio-revision-tag-default", enabled, Value::Null),
        ];
        let p = overlaps(&clash);
        assert_eq!(
            p.len(),
            3,
            "every pod combination in enabled namespaces: {p:?}"
        );
        assert!(
            p[0].contains("istio-sidecar-injector, istio-revision-tag-default"),
            "{p:?}"
        );
    }

    #[test]
    fn expected_images_follow_the_injector_values() {
        assert_eq!(
            expected_image(
                r#"{"global":{"hub":"docker.io/istio","tag":"1.30.3","proxy":{"image":"proxyv2"}}}"#
            )
            .as_deref(),
            Some("docker.io/istio/proxyv2:1.30.3")
        );
        assert_eq!(
            expected_image(
                r#"{"global":{"hub":"x","tag":"y","proxy":{"image":"my.reg/proxy:9"}}}"#
            )
            .as_deref(),
            Some("my.reg/proxy:9")
        );
        assert_eq!(image_tag("docker.io/istio/proxyv2:1.30.3"), "1.30.3");
        assert_eq!(image_tag("localhost:5000/proxy"), "");
    }
}
