//! Which control plane serves a pod, and whether a pod needs a restart (ISTIO.md, "Injection"
//! and "Which control plane a pod has"). Pure functions over labels and what the cluster's
//! webhooks say; `status` and `restart` use them.

use std::collections::BTreeMap;

use serde_json::Value;

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
