//! Istio facts paddock computes with: versions, revision names, chart releases and their values.
//! Pure functions; the procedures that use them live in the planner and executor.

use semver::Version;
use serde_json::{Map, Value, json};

use crate::drivers::helm::Release;
use crate::spec::ClusterSpec;
use crate::spec::merge::merge_values;

/// Oldest Istio release whose install and upgrade procedures paddock implements.
pub const MIN_MINOR: u64 = 20;

pub const SYSTEM_NAMESPACE: &str = "istio-system";
pub const BASE_RELEASE: &str = "istio-base";

/// The host of paddock's probe route: reserved (`.invalid`), so it never meets a real one.
pub const PROBE_HOST: &str = "paddock-probe.invalid";
/// The start of the probe route's answer body.
pub const PROBE_BODY: &str = "paddock probe";

/// The label value the gateway chart gives a release's pods: `istio: <release without
/// "istio-">` (release `istio-ingress` → `istio: ingress`).
pub fn gateway_selector(release: &str) -> &str {
    release.strip_prefix("istio-").unwrap_or(release)
}

/// paddock's own route through a gateway (ISTIO.md, "Proving the ingress works"): a
/// `Gateway` selecting the gateway's pods with an HTTP server on port 80 for
/// [`PROBE_HOST`] only, and a `VirtualService` bound to it answering `200` directly. A gateway
/// pod listens on nothing until a Gateway selects it, so this is what makes "the ingress
/// answers" provable on a fresh cluster; servers on one port merge by host, so it sits beside
/// the user's own Gateways.
pub fn probe_route(cluster: &str, release: &str, namespace: &str) -> Vec<Value> {
    let name = format!("paddock-probe-{release}");
    let labels = json!({"app.kubernetes.io/managed-by": "paddock"});
    vec![
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"istio": gateway_selector(release)},
                "servers": [{"port": {"number": 80, "name": "http-paddock-probe", "protocol": "HTTP"},
                    "hosts": [PROBE_HOST]}],
            },
        }),
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "hosts": [PROBE_HOST],
                "gateways": [name],
                "http": [{"directResponse": {"status": 200,
                    "body": {"string": format!("{PROBE_BODY}: cluster {cluster}, gateway {namespace}/{release}\n")}}}],
            },
        }),
    ]
}

/// Why a spec's Istio version is not one paddock can install.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("write the version without the leading `v`: `{0}`")]
    LeadingV(String),
    #[error(
        "`{text}` is not a semantic version ({reason}); write a full Istio release such as `1.30.3`"
    )]
    NotSemver { text: String, reason: String },
    #[error("build metadata (`+...`) is not part of an Istio release version")]
    Build,
    #[error("paddock drives Istio 1.{MIN_MINOR} and later; `{0}` is older")]
    TooOld(String),
}

/// Parse an Istio version as written in a spec (`1.30.3`).
pub fn parse_version(text: &str) -> Result<Version, VersionError> {
    if let Some(stripped) = text.strip_prefix('v') {
        return Err(VersionError::LeadingV(stripped.to_string()));
    }
    let v = Version::parse(text).map_err(|e| VersionError::NotSemver {
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    if !v.build.is_empty() {
        return Err(VersionError::Build);
    }
    if v.major != 1 || v.minor < MIN_MINOR {
        return Err(VersionError::TooOld(text.to_string()));
    }
    Ok(v)
}

/// The revision name for a version: dots become dashes (`1.30.3` → `1-30-3`), since revision
/// names cannot contain dots.
pub fn revision_for(version: &Version) -> String {
    version.to_string().replace(['.', '+'], "-")
}

/// Whether a name has the shape of a revision derived from a version (`1-29-6`), which a tag
/// must never take: the next upgrade would create a revision of the same name.
pub fn looks_like_revision(name: &str) -> bool {
    let mut parts = name.splitn(4, '-');
    (0..3).all(|_| {
        parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The tags installed with a revision: `default` plus the spec's, without duplicates.
pub fn tags_of(spec: &crate::spec::types::IstioSpec) -> Vec<String> {
    let mut tags = vec!["default".to_string()];
    for t in &spec.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags
}

/// The Helm releases that make up the control plane and gateways, in install order.
pub fn releases(cluster: &ClusterSpec) -> Vec<Release> {
    let Some(istio) = &cluster.body.istio else {
        return Vec::new();
    };
    let Ok(version) = parse_version(&istio.version) else {
        return Vec::new();
    };
    releases_for(cluster, &version.to_string(), &revision_for(&version))
}

/// The releases for a given chart version and revision name (an in-place upgrade keeps the
/// revision name of the version it started from).
pub fn releases_for(cluster: &ClusterSpec, v: &str, rev: &str) -> Vec<Release> {
    let Some(istio) = &cluster.body.istio else {
        return Vec::new();
    };
    let (v, rev) = (v.to_string(), rev.to_string());

    let mut base = Value::Object(istio.values.base.clone());
    merge_values(&mut base, &json!({ "defaultRevision": rev }));

    let mut istiod = Value::Object(Map::new());
    for addon in &cluster.addons {
        merge_values(&mut istiod, &Value::Object(addon.istiod_values.clone()));
    }
    merge_values(&mut istiod, &Value::Object(istio.values.istiod.clone()));
    merge_values(
        &mut istiod,
        // Tags are not part of the release: paddock applies them itself (see `tags`).
        &json!({ "revision": rev }),
    );

    let mut out = vec![
        Release::new(
            BASE_RELEASE,
            SYSTEM_NAMESPACE,
            &istio.repo,
            "base",
            &v,
            base,
        ),
        Release::new(
            &format!("istiod-{rev}"),
            SYSTEM_NAMESPACE,
            &istio.repo,
            "istiod",
            &v,
            istiod,
        ),
    ];
    for gw in &istio.gateways {
        out.push(Release::new(
            &gw.name,
            &gw.namespace,
            &istio.repo,
            "gateway",
            &v,
            Value::Object(gw.values.clone()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_table() {
        let cases = [
            ("1.30.3", "1-30-3"),
            ("1.29.6", "1-29-6"),
            ("1.28.10", "1-28-10"),
            ("1.30.0-beta.1", "1-30-0-beta-1"),
            ("1.20.0", "1-20-0"),
        ];
        for (version, want) in cases {
            let v = parse_version(version).expect("valid version");
            assert_eq!(revision_for(&v), want, "{version}");
            assert!(!revision_for(&v).contains('.'));
        }
    }

    #[test]
    fn bad_versions_explain_themselves() {
        assert!(
            parse_version("v1.30.3")
                .expect_err("v prefix")
                .to_string()
                .contains("without the leading `v`")
        );
        assert!(
            parse_version("1.30")
                .expect_err("short")
                .to_string()
                .contains("not a semantic version")
        );
        assert!(
            parse_version("1.19.0")
                .expect_err("old")
                .to_string()
                .contains("1.20 and later")
        );
        assert!(parse_version("2.0.0").is_err());
    }

    #[test]
    fn revision_shaped_names_are_recognised() {
        assert!(looks_like_revision("1-30-3"));
        assert!(looks_like_revision("1-30-0-beta-1"));
        assert!(!looks_like_revision("stable"));
        assert!(!looks_like_revision("1-30"));
        assert!(!looks_like_revision("v1-30-3"));
    }
}
