//! Which control plane serves a pod, and whether a pod needs a restart (ISTIO.md, "Injection"
//! and "Which control plane a pod has"). Pure functions over labels and the cluster's objects
//! as k8s-openapi types (pods, MutatingWebhookConfigurations), which the Kubernetes driver
//! reads; the injector's Helm values, which have no published types, through a small view of
//! their own. `status`, `restart` and `upgrade` use them.

pub mod analyze;
pub mod istio;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Deserializer};

/// An object's labels (`metadata.labels`); an object without any has an empty map.
pub fn labels_of(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&NONE)
}

/// Has the pod been asked to stop? Such a pod still runs (and carries its old revision and
/// proxy) until its containers exit, but it is on its way out: no question about which
/// proxies the mesh runs may count it as staying (KUBERNETES.md, "Deletion is not instant").
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
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
    /// Read them from the cluster's MutatingWebhookConfigurations.
    pub fn from_webhooks(hooks: &[MutatingWebhookConfiguration]) -> Self {
        let mut out = Self::default();
        for h in hooks {
            let name = h.metadata.name.as_deref().unwrap_or_default();
            let labels = labels_of(&h.metadata);
            let rev = get(labels, "istio.io/rev").unwrap_or_default();
            if let Some(tag) = get(labels, "istio.io/tag") {
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

/// What paddock reads of the Helm values an injector ConfigMap carries (its `values` key,
/// JSON): the `global` settings the proxy image is made of. Istio publishes no schema for
/// them; everything else in them is ignored.
#[derive(Debug, Deserialize)]
struct InjectorValues {
    #[serde(default)]
    global: Option<GlobalValues>,
}

#[derive(Debug, Deserialize)]
struct GlobalValues {
    #[serde(default, deserialize_with = "text")]
    hub: Option<String>,
    /// A number when the chart was given `--set global.tag=1.30`; shown as JSON then.
    #[serde(default, deserialize_with = "scalar_text")]
    tag: Option<String>,
    #[serde(default)]
    proxy: Option<ProxyValues>,
}

#[derive(Debug, Deserialize)]
struct ProxyValues {
    #[serde(default, deserialize_with = "text")]
    image: Option<String>,
}

/// A string, or nothing for any other JSON value (values are free-form: a field paddock does
/// not need must not make the rest unreadable).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// A string as it is, any other JSON value as its JSON text.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }))
}

/// The proxy image a revision injects, from its injector ConfigMap's `values` (JSON):
/// `global.proxy.image` if it contains "/", else `<global.hub>/<global.proxy.image>:<global.tag>`.
pub fn expected_image(values_json: &str) -> Option<String> {
    let values: InjectorValues = serde_json::from_str(values_json).ok()?;
    let global = values.global?;
    let image = global.proxy?.image?;
    if image.contains('/') {
        return Some(image);
    }
    let hub = global.hub?;
    let tag = global.tag?;
    Some(format!("{hub}/{image}:{tag}"))
}

/// A pod's proxy as injected: revision annotation and `istio-proxy` image, looked for in both
/// `containers` and native-sidecar `initContainers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    pub revision: Option<String>,
    pub image: Option<String>,
}

pub fn proxy_of(pod: &Pod) -> Proxy {
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

/// Does a label selector (`matchLabels` + `matchExpressions`) select these labels? No
/// selector selects everything.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Webhook overlap analysis: every combination of namespace and pod injection labels must be
/// matched by at most one injector (MutatingWebhookConfiguration). Returns one problem per
/// combination that two or more match.
pub fn overlaps(hooks: &[MutatingWebhookConfiguration]) -> Vec<String> {
    let injectors: Vec<&MutatingWebhookConfiguration> = hooks
        .iter()
        .filter(|h| get(labels_of(&h.metadata), "app") == Some("sidecar-injector"))
        .collect();
    let mut names: Vec<String> = Vec::new();
    for h in &injectors {
        for w in h.webhooks.iter().flatten() {
            for sel in [&w.namespace_selector, &w.object_selector] {
                let exprs = sel
                    .iter()
                    .flat_map(|s| s.match_expressions.iter().flatten());
                for e in exprs.filter(|e| e.key == "istio.io/rev") {
                    for v in e.values.iter().flatten() {
                        if !names.contains(v) {
                            names.push(v.clone());
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
                    h.webhooks.iter().flatten().any(|w| {
                        selects(w.namespace_selector.as_ref(), ns)
                            && selects(w.object_selector.as_ref(), pod)
                    })
                })
                .filter_map(|h| h.metadata.name.as_deref())
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
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::fixtures::{PodFixture, labels, pod};
    use super::*;

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

    /// A selector with one `matchExpressions` entry.
    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    /// A MutatingWebhookConfiguration with the given name and labels and one webhook.
    fn webhook(
        name: &str,
        pairs: &[(&str, &str)],
        ns: Option<LabelSelector>,
        obj: Option<LabelSelector>,
    ) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(pairs)),
                ..ObjectMeta::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: "sidecar-injector.istio.io".into(),
                namespace_selector: ns,
                object_selector: obj,
                ..MutatingWebhook::default()
            }]),
        }
    }

    fn injector(name: &str, ns: Option<LabelSelector>) -> MutatingWebhookConfiguration {
        webhook(name, &[("app", "sidecar-injector")], ns, None)
    }

    #[test]
    fn overlapping_injectors_are_found() {
        let enabled = || Some(expression("istio-injection", "In", &["enabled"]));
        let fine = vec![
            injector(
                "istio-sidecar-injector-1-29-6",
                Some(expression("istio.io/rev", "In", &["1-29-6"])),
            ),
            injector("istio-revision-tag-default", enabled()),
        ];
        assert!(overlaps(&fine).is_empty(), "{:?}", overlaps(&fine));
        let clash = vec![
            injector("istio-sidecar-injector", enabled()),
            injector("istio-revision-tag-default", enabled()),
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
        let mut not_injectors = clash.clone();
        for h in &mut not_injectors {
            h.metadata.labels = None;
        }
        assert!(
            overlaps(&not_injectors).is_empty(),
            "only webhooks labelled app=sidecar-injector inject"
        );
    }

    #[test]
    fn selectors_follow_kubernetes_label_selector_rules() {
        let l = labels(&[("team", "web"), ("istio.io/rev", "1-30-3")]);
        let cases: &[(Option<LabelSelector>, bool, &str)] = &[
            (None, true, "no selector selects everything"),
            (Some(LabelSelector::default()), true, "an empty one too"),
            (
                Some(LabelSelector {
                    match_labels: Some(labels(&[("team", "web")])),
                    match_expressions: None,
                }),
                true,
                "matchLabels met",
            ),
            (
                Some(LabelSelector {
                    match_labels: Some(labels(&[("team", "api")])),
                    match_expressions: None,
                }),
                false,
                "matchLabels unmet",
            ),
            (Some(expression("team", "In", &["api", "web"])), true, "In"),
            (Some(expression("team", "In", &["api"])), false, "not In"),
            (Some(expression("team", "NotIn", &["api"])), true, "NotIn"),
            (
                Some(expression("tier", "NotIn", &["x"])),
                true,
                "NotIn, absent",
            ),
            (
                Some(expression("team", "NotIn", &["web"])),
                false,
                "in NotIn",
            ),
            (Some(expression("team", "Exists", &[])), true, "Exists"),
            (
                Some(expression("tier", "Exists", &[])),
                false,
                "Exists, absent",
            ),
            (
                Some(expression("tier", "DoesNotExist", &[])),
                true,
                "DoesNotExist",
            ),
            (
                Some(expression("team", "DoesNotExist", &[])),
                false,
                "exists",
            ),
            (
                Some(expression("team", "Bogus", &[])),
                false,
                "unknown operator",
            ),
        ];
        for (selector, want, why) in cases {
            assert_eq!(selects(selector.as_ref(), &l), *want, "{why}");
        }
    }

    #[test]
    fn injectors_are_read_from_revision_and_tag_webhooks() {
        let hooks = vec![
            webhook("istio-sidecar-injector", &[], None, None),
            webhook(
                "istio-sidecar-injector-1-30-3",
                &[("istio.io/rev", "1-30-3")],
                None,
                None,
            ),
            webhook(
                "istio-revision-tag-stable",
                &[("istio.io/rev", "1-30-3"), ("istio.io/tag", "stable")],
                None,
                None,
            ),
            webhook("some-other-webhook", &[], None, None),
        ];
        assert_eq!(
            Injectors::from_webhooks(&hooks),
            Injectors {
                revisions: vec![String::new(), "1-30-3".into()],
                tags: [("stable".to_string(), "1-30-3".to_string())].into(),
            }
        );
    }

    #[test]
    fn the_proxy_is_found_among_containers_and_native_sidecars() {
        let img = "docker.io/istio/proxyv2:1.30.3";
        let want = Proxy {
            revision: Some("1-30-3".into()),
            image: Some(img.into()),
        };
        assert_eq!(proxy_of(&pod("apps", "web").injected("1-30-3", img)), want);
        let mut native = pod("apps", "web").injected("1-30-3", img);
        if let Some(spec) = &mut native.spec {
            let proxy = spec.containers.pop();
            spec.init_containers = Some(proxy.into_iter().collect());
        }
        assert_eq!(proxy_of(&native), want, "native sidecar");
        assert_eq!(proxy_of(&pod("apps", "web")), Proxy::default());
        assert_eq!(proxy_of(&Pod::default()), Proxy::default(), "no spec");
    }

    #[test]
    fn a_pod_with_a_deletion_timestamp_is_terminating() {
        assert!(!terminating(&pod("apps", "web")));
        assert!(terminating(&pod("apps", "web").terminating()));
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
        assert_eq!(
            expected_image(r#"{"global":{"hub":"h","tag":1.3,"proxy":{"image":"proxyv2"}}}"#)
                .as_deref(),
            Some("h/proxyv2:1.3"),
            "a numeric tag is shown as JSON"
        );
        assert_eq!(
            expected_image(r#"{"global":{"hub":7,"proxy":{"image":"my.reg/proxy:9"}}}"#).as_deref(),
            Some("my.reg/proxy:9"),
            "a full image needs no hub"
        );
        for unusable in [
            r#"{"global":{"tag":"1","proxy":{"image":"proxyv2"}}}"#,
            r#"{"global":{"hub":"h","proxy":{"image":"proxyv2"}}}"#,
            r#"{"global":{"hub":"h","tag":"1","proxy":{"image":3}}}"#,
            r#"{"global":"x"}"#,
            "not json",
        ] {
            assert_eq!(expected_image(unusable), None, "{unusable}");
        }
        assert_eq!(image_tag("docker.io/istio/proxyv2:1.30.3"), "1.30.3");
        assert_eq!(image_tag("localhost:5000/proxy"), "");
    }
}
