//! ISTIO.md's rule table of which control plane injects a new pod, kept as the oracle that
//! the webhook evaluation in `webhook` is tested against (tests/admission.rs). The sim itself
//! decides injection from the MutatingWebhookConfigurations in its store, never from this.
//!
//! The rules:
//!
//! 1. Namespace `istio-injection=disabled` → no injection.
//! 2. Namespace `istio-injection=enabled` → only revision "" or tag `default` injects
//!    (this label beats `istio.io/rev`).
//! 3. Namespace `istio.io/rev=X` (no `istio-injection`) → revision X, or the revision tag X
//!    points to.
//! 4. Namespace with neither label → pod label `istio.io/rev=X` decides; pod label
//!    `sidecar.istio.io/inject=true` alone → `default`.
//! 5. Pod label `sidecar.istio.io/inject=false` always opts out.

use std::collections::BTreeMap;

/// The injectors that exist: revision webhooks and tag webhooks.
#[derive(Debug, Clone, Default)]
pub struct Injectors {
    /// Revisions with an `istio-sidecar-injector-<rev>` webhook ("" for the unrevisioned one).
    pub revisions: Vec<String>,
    /// Tag → revision, from `istio-revision-tag-<tag>` webhooks.
    pub tags: BTreeMap<String, String>,
}

/// Who injects a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not injected, and why.
    None(&'static str),
    /// Injected by `revision`, through webhook `webhook`.
    Inject { revision: String, webhook: String },
}

impl Injectors {
    fn by_revision_or_tag(&self, name: &str) -> Decision {
        if self.revisions.iter().any(|r| r == name) {
            return Decision::Inject {
                revision: name.to_string(),
                webhook: revision_webhook(name),
            };
        }
        if let Some(rev) = self.tags.get(name) {
            return Decision::Inject {
                revision: rev.clone(),
                webhook: format!("istio-revision-tag-{name}"),
            };
        }
        Decision::None("no revision or tag of that name")
    }

    fn default_injector(&self) -> Decision {
        if self.revisions.iter().any(String::is_empty) {
            return Decision::Inject {
                revision: String::new(),
                webhook: revision_webhook(""),
            };
        }
        match self.tags.get("default") {
            Some(rev) => Decision::Inject {
                revision: rev.clone(),
                webhook: "istio-revision-tag-default".into(),
            },
            None => Decision::None("no default injector (revision \"\" or tag `default`)"),
        }
    }
}

/// `istio-sidecar-injector-<rev>`, no suffix for revision "".
pub fn revision_webhook(rev: &str) -> String {
    if rev.is_empty() {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{rev}")
    }
}

fn get<'a>(m: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    m.get(k).map(String::as_str)
}

/// Decide who injects a pod with these labels in a namespace with these labels.
pub fn resolve(
    ns: &BTreeMap<String, String>,
    pod: &BTreeMap<String, String>,
    injectors: &Injectors,
) -> Decision {
    if get(ns, "istio-injection") == Some("disabled") {
        return Decision::None("namespace has istio-injection=disabled");
    }
    if get(pod, "sidecar.istio.io/inject") == Some("false") {
        return Decision::None("pod has sidecar.istio.io/inject=false");
    }
    if get(ns, "istio-injection") == Some("enabled") {
        return injectors.default_injector();
    }
    if let Some(rev) = get(ns, "istio.io/rev") {
        return injectors.by_revision_or_tag(rev);
    }
    if let Some(rev) = get(pod, "istio.io/rev") {
        return injectors.by_revision_or_tag(rev);
    }
    if get(pod, "sidecar.istio.io/inject") == Some("true") {
        return injectors.default_injector();
    }
    Decision::None("neither namespace nor pod asks for injection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn world() -> Injectors {
        Injectors {
            revisions: vec!["1-29-6".into(), "1-30-3".into()],
            tags: [
                ("default", "1-29-6"),
                ("stable", "1-29-6"),
                ("canary", "1-30-3"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        }
    }

    fn inj(rev: &str, webhook: &str) -> Decision {
        Decision::Inject {
            revision: rev.into(),
            webhook: webhook.into(),
        }
    }

    #[test]
    fn resolution_table_from_istio_md() {
        let w = world();
        type Labels = BTreeMap<String, String>;
        let cases: Vec<(&str, Labels, Labels, Decision)> = vec![
            (
                "rule 1: disabled namespace",
                l(&[("istio-injection", "disabled")]),
                l(&[("istio.io/rev", "canary")]),
                Decision::None("namespace has istio-injection=disabled"),
            ),
            (
                "rule 1 beats pod inject=true",
                l(&[("istio-injection", "disabled")]),
                l(&[("sidecar.istio.io/inject", "true")]),
                Decision::None("namespace has istio-injection=disabled"),
            ),
            (
                "rule 2: enabled namespace → tag default",
                l(&[("istio-injection", "enabled")]),
                l(&[]),
                inj("1-29-6", "istio-revision-tag-default"),
            ),
            (
                "rule 2 beats namespace istio.io/rev",
                l(&[("istio-injection", "enabled"), ("istio.io/rev", "canary")]),
                l(&[]),
                inj("1-29-6", "istio-revision-tag-default"),
            ),
            (
                "rule 3: namespace tag",
                l(&[("istio.io/rev", "canary")]),
                l(&[]),
                inj("1-30-3", "istio-revision-tag-canary"),
            ),
            (
                "rule 3: namespace revision",
                l(&[("istio.io/rev", "1-29-6")]),
                l(&[]),
                inj("1-29-6", "istio-sidecar-injector-1-29-6"),
            ),
            (
                "rule 3: namespace label beats pod label",
                l(&[("istio.io/rev", "stable")]),
                l(&[("istio.io/rev", "canary")]),
                inj("1-29-6", "istio-revision-tag-stable"),
            ),
            (
                "rule 3: unknown tag",
                l(&[("istio.io/rev", "nope")]),
                l(&[]),
                Decision::None("no revision or tag of that name"),
            ),
            (
                "rule 4: pod revision label",
                l(&[]),
                l(&[("istio.io/rev", "canary")]),
                inj("1-30-3", "istio-revision-tag-canary"),
            ),
            (
                "rule 4: pod inject=true alone → default",
                l(&[]),
                l(&[("sidecar.istio.io/inject", "true")]),
                inj("1-29-6", "istio-revision-tag-default"),
            ),
            (
                "rule 4: nothing asked",
                l(&[]),
                l(&[]),
                Decision::None("neither namespace nor pod asks for injection"),
            ),
            (
                "rule 5: pod opt-out in tagged namespace",
                l(&[("istio.io/rev", "stable")]),
                l(&[("sidecar.istio.io/inject", "false")]),
                Decision::None("pod has sidecar.istio.io/inject=false"),
            ),
            (
                "rule 5: pod opt-out in enabled namespace",
                l(&[("istio-injection", "enabled")]),
                l(&[("sidecar.istio.io/inject", "false")]),
                Decision::None("pod has sidecar.istio.io/inject=false"),
            ),
        ];
        for (name, ns, pod, want) in cases {
            assert_eq!(resolve(&ns, &pod, &w), want, "{name}");
        }
    }

    #[test]
    fn unrevisioned_istiod_serves_enabled_namespaces() {
        let w = Injectors {
            revisions: vec![String::new()],
            tags: BTreeMap::new(),
        };
        assert_eq!(
            resolve(&l(&[("istio-injection", "enabled")]), &l(&[]), &w),
            inj("", "istio-sidecar-injector")
        );
        let none = Injectors::default();
        assert!(matches!(
            resolve(&l(&[("istio-injection", "enabled")]), &l(&[]), &none),
            Decision::None(_)
        ));
    }
}
