//! Checks on a cluster's workload manifests before anything runs: every document is YAML, an
//! object with `apiVersion`, `kind` and a valid `metadata.name`, in a namespace the cluster
//! will have; labels and annotations are well formed; no object is declared twice; and the
//! rules the API server would refuse an object for (a workload's selector that does not match
//! its template, containers without a unique name or an image, Service ports) hold.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::syntax;
use crate::spec::ClusterSpec;
use crate::spec::error::{Anchor, Diagnostic};
use crate::spec::load::Repo;
use crate::spec::manifests::{self, Manifest};
use crate::spec::yaml::FieldPath;

/// Kinds that live outside namespaces (a namespace on them is ignored by the API).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "CSIDriver",
    "CustomResourceDefinition",
    "APIService",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Namespaces every k3s cluster has.
const BUILT_IN: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Kinds whose pods come from `spec.template` and are chosen by `spec.selector`.
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"];

fn at(m: &Manifest, path: &str, anchor: Anchor, message: impl Into<String>) -> Diagnostic {
    Diagnostic::at(&m.doc, &FieldPath::parse(path), anchor, message)
}

/// Read and check every workload manifest of a cluster. Files that do not exist are reported
/// by the caller.
pub fn check(repo: &Repo, spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) {
    // A profile checked on its own lacks the namespaces its clusters declare.
    if spec.name.starts_with("profile-") {
        return;
    }
    let objects = read(repo, spec, problems);
    objects_and_routing(spec, &objects, problems);
}

/// Every object of the cluster's workload manifests, in order.
pub fn read(repo: &Repo, spec: &ClusterSpec, problems: &mut Vec<Diagnostic>) -> Vec<Manifest> {
    let mut objects = Vec::new();
    let mut seen_files = BTreeSet::new();
    for file in &spec.body.workloads {
        let path = repo.root.join(file);
        if !seen_files.insert(file) || !path.is_file() {
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(
                    Diagnostic::file(file, format!("cannot read the manifest: {e}"))
                        .with_help("make the file readable"),
                );
                continue;
            }
        };
        match manifests::parse(file, &text) {
            Ok(ms) => objects.extend(ms),
            Err(d) => problems.push(d),
        }
    }
    objects
}

/// The objects' own checks, then the analysis of their Istio routing.
pub fn objects_and_routing(
    spec: &ClusterSpec,
    objects: &[Manifest],
    problems: &mut Vec<Diagnostic>,
) {
    let namespaces = namespaces(spec, objects);
    let mut first: BTreeMap<(String, String, String, String), &Manifest> = BTreeMap::new();
    for m in objects {
        if !object(m, problems) {
            continue;
        }
        namespace(m, &namespaces, problems);
        metadata_maps(m, problems);
        if let Some(key) = identity(m)
            && let Some(before) = first.insert(key, m)
        {
            let p = manifests::start(before);
            problems.push(
                at(
                    m,
                    "metadata.name",
                    Anchor::Value,
                    format!("{} is declared twice", m.describe()),
                )
                .with_help(format!(
                    "{}:{} declares it first; remove one or rename it",
                    before.file, p.line
                )),
            );
        }
        match m.kind() {
            Some(k) if WORKLOADS.contains(&k) => {
                selector_matches_template(m, problems);
                containers(m, "spec.template.spec", problems);
            }
            Some("Pod") => containers(m, "spec", problems),
            Some("Service") => service_ports(m, problems),
            _ => {}
        }
    }
    if spec.body.istio.is_some() {
        problems.extend(crate::mesh::analyze::analyze(spec, objects));
    }
}

/// The namespaces the cluster will have when its workloads are applied.
fn namespaces<'a>(spec: &'a ClusterSpec, objects: &'a [Manifest]) -> BTreeSet<&'a str> {
    let body = &spec.body;
    let mut out: BTreeSet<&str> = BUILT_IN.iter().copied().collect();
    out.insert("paddock-system");
    out.extend(body.namespaces.iter().map(|n| n.name.as_str()));
    if let Some(istio) = &body.istio {
        out.insert("istio-system");
        out.extend(istio.gateways.iter().map(|g| g.namespace.as_str()));
    }
    out.extend(spec.addons.iter().map(|a| a.namespace.as_str()));
    out.extend(
        objects
            .iter()
            .filter(|m| m.kind() == Some("Namespace"))
            .filter_map(Manifest::name),
    );
    out
}

/// `apiVersion`, `kind` and `metadata.name`; false when the object cannot be told apart.
fn object(m: &Manifest, problems: &mut Vec<Diagnostic>) -> bool {
    if !m.doc.value.is_object() {
        problems.push(
            at(
                m,
                "",
                Anchor::Value,
                "a manifest document must be one object (a mapping)",
            )
            .with_help("write one Kubernetes object per document, separated by `---`"),
        );
        return false;
    }
    let mut ok = true;
    match m.doc.value.get("apiVersion") {
        Some(Value::String(v)) if api_version_ok(v) => {}
        Some(Value::String(v)) => problems.push(
            at(
                m,
                "apiVersion",
                Anchor::Value,
                format!("`{v}` is not an apiVersion"),
            )
            .with_help("write `v1` or `GROUP/VERSION`, e.g. `apps/v1` or `networking.istio.io/v1`"),
        ),
        Some(_) => problems.push(
            at(
                m,
                "apiVersion",
                Anchor::Value,
                "apiVersion must be a string",
            )
            .with_help("quote it: `apiVersion: \"v1\"`"),
        ),
        None => {
            ok = false;
            problems.push(
                at(
                    m,
                    "",
                    Anchor::Value,
                    format!("{} has no `apiVersion`", m.describe()),
                )
                .with_help("add `apiVersion:`, e.g. `v1` or `apps/v1`"),
            )
        }
    }
    match m.doc.value.get("kind") {
        Some(Value::String(k))
            if k.starts_with(|c: char| c.is_ascii_uppercase())
                && k.chars().all(|c| c.is_ascii_alphanumeric()) => {}
        Some(k) => problems.push(
            at(m, "kind", Anchor::Value, format!("{k} is not a kind"))
                .with_help("kinds are CamelCase words such as `Deployment` or `VirtualService`"),
        ),
        None => {
            ok = false;
            problems.push(
                at(m, "", Anchor::Value, "the object has no `kind`")
                    .with_help("add `kind:`, e.g. `Deployment`"),
            )
        }
    }
    match m.doc.value.pointer("/metadata/name") {
        Some(Value::String(n)) if name_ok(m.kind().unwrap_or(""), n) => {}
        Some(Value::String(n)) => problems.push(
            at(
                m,
                "metadata.name",
                Anchor::Value,
                format!("invalid name `{n}` for a {}", m.kind().unwrap_or("object")),
            )
            .with_help(name_rule(m.kind().unwrap_or(""))),
        ),
        Some(_) => problems.push(
            at(
                m,
                "metadata.name",
                Anchor::Value,
                "metadata.name must be a string",
            )
            .with_help("quote it"),
        ),
        None => {
            ok = false;
            problems.push(
                at(m, "metadata", Anchor::Key, format!("{} has no `metadata.name`", m.describe()))
                    .with_help("paddock applies objects by name (server-side apply): add `metadata: {name: …}`; `generateName` cannot be applied"),
            )
        }
    }
    ok
}

fn api_version_ok(v: &str) -> bool {
    // `v1`, `v2beta1`, `v1alpha3`: Kubernetes' version names.
    let version_ok = |s: &str| {
        let Some(rest) = s.strip_prefix('v') else {
            return false;
        };
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let tail = &rest[digits..];
        digits > 0
            && (tail.is_empty()
                || ["alpha", "beta"].iter().any(|p| {
                    tail.strip_prefix(p)
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                }))
    };
    match v.split_once('/') {
        None => version_ok(v),
        Some((group, version)) => syntax::is_dns_subdomain(group) && version_ok(version),
    }
}

fn name_ok(kind: &str, name: &str) -> bool {
    match kind {
        "Namespace" => super::is_dns_label(name),
        "Service" => syntax::is_dns1035_label(name),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            syntax::is_path_segment(name)
        }
        _ => syntax::is_dns_subdomain(name),
    }
}

fn name_rule(kind: &str) -> &'static str {
    match kind {
        "Namespace" => {
            "namespace names are DNS labels: lowercase letters, digits and `-`, at most 63 characters"
        }
        "Service" => {
            "Service names start with a letter, then lowercase letters, digits and `-`, at most 63 characters"
        }
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            "RBAC names may not contain `/` or `%`"
        }
        _ => {
            "names are lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at most 253 characters"
        }
    }
}

/// A namespaced object's namespace must exist when it is applied.
fn namespace(m: &Manifest, known: &BTreeSet<&str>, problems: &mut Vec<Diagnostic>) {
    let kind = m.kind().unwrap_or("");
    if CLUSTER_SCOPED.contains(&kind) {
        return;
    }
    let ns = m.namespace().unwrap_or("default");
    if !known.contains(ns) {
        let path = if m.namespace().is_some() {
            "metadata.namespace"
        } else {
            "metadata"
        };
        problems.push(
            at(m, path, Anchor::Value, format!("{} is in namespace `{ns}`, which the cluster will not have", m.describe()))
                .with_help(format!("declare it in the cluster's `namespaces` (`- name: {ns}`), add a Namespace object to the manifests, or set `metadata.namespace`")),
        );
    }
}

/// Labels and annotations: string values, well-formed keys, label values' syntax.
fn metadata_maps(m: &Manifest, problems: &mut Vec<Diagnostic>) {
    for (field, labels) in [
        ("metadata.labels", true),
        ("metadata.annotations", false),
        ("spec.template.metadata.labels", true),
        ("spec.template.metadata.annotations", false),
    ] {
        let path = FieldPath::parse(field);
        let Some(Value::Object(map)) = m.doc.get(&path) else {
            continue;
        };
        for (k, v) in map {
            let here = format!("{field}.{k}");
            if let Some(p) = syntax::key_problem(k) {
                problems.push(
                    at(m, &here, Anchor::Key, p).with_help(
                        "fix the key; prefixes are DNS names such as `app.kubernetes.io/`",
                    ),
                );
            }
            match v {
                Value::String(s) if labels => {
                    if let Some(p) = syntax::label_value_problem(s) {
                        problems.push(
                            at(m, &here, Anchor::Value, p)
                                .with_help("shorten or simplify the value"),
                        );
                    }
                }
                Value::String(_) => {}
                other => problems.push(
                    at(
                        m,
                        &here,
                        Anchor::Value,
                        format!("`{k}` must be a string, not {other}"),
                    )
                    .with_help(format!(
                        "quote the value: `{k}: \"{}\"`",
                        other.to_string().trim_matches('"')
                    )),
                ),
            }
        }
    }
}

/// (group, kind, namespace, name): two documents with the same one are the same object.
fn identity(m: &Manifest) -> Option<(String, String, String, String)> {
    let group = m
        .api_version()?
        .split_once('/')
        .map_or("", |(g, _)| g)
        .to_string();
    let kind = m.kind()?.to_string();
    let ns = if CLUSTER_SCOPED.contains(&kind.as_str()) {
        String::new()
    } else {
        m.namespace().unwrap_or("default").to_string()
    };
    Some((group, kind, ns, m.name()?.to_string()))
}

/// The API server refuses a workload whose selector does not select its own template.
fn selector_matches_template(m: &Manifest, problems: &mut Vec<Diagnostic>) {
    let v = &m.doc.value;
    let Some(want) = v
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    else {
        if v.pointer("/spec/selector").is_none() && m.api_version() == Some("apps/v1") {
            problems.push(
                at(m, "spec", Anchor::Key, format!("{} has no `spec.selector`", m.describe()))
                    .with_help("apps/v1 workloads need `selector.matchLabels` matching `template.metadata.labels`"),
            );
        }
        return;
    };
    let have = v
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    for (k, val) in want {
        if have.and_then(|h| h.get(k)) != Some(val) {
            problems.push(
                at(m, &format!("spec.selector.matchLabels.{k}"), Anchor::Key, format!("selector `{k}: {}` does not match the template's labels", val.as_str().unwrap_or(&val.to_string())))
                    .with_help("the API refuses a workload whose selector does not select its own pods: add the label to `spec.template.metadata.labels` or fix the selector"),
            );
        }
    }
}

/// Every container has a unique DNS-label name and an image.
fn containers(m: &Manifest, pod_spec: &str, problems: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let field = format!("{pod_spec}.{list}");
        let Some(Value::Array(cs)) = m.doc.get(&FieldPath::parse(&field)) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let here = format!("{field}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                Some(n) if !super::is_dns_label(n) => problems.push(
                    at(
                        m,
                        &format!("{here}.name"),
                        Anchor::Value,
                        format!("invalid container name `{n}`"),
                    )
                    .with_help("container names are DNS labels: lowercase letters, digits and `-`"),
                ),
                Some(n) if !names.insert(n.to_string()) => problems.push(
                    at(
                        m,
                        &format!("{here}.name"),
                        Anchor::Value,
                        format!("container name `{n}` is used twice in the pod"),
                    )
                    .with_help("give every container and init container its own name"),
                ),
                Some(_) => {}
                None => problems.push(
                    at(m, &here, Anchor::Value, "a container has no `name`")
                        .with_help("add `name:`"),
                ),
            }
            match c.get("image").and_then(Value::as_str) {
                Some(img) => {
                    if let Some(p) = syntax::image_problem(img) {
                        problems.push(
                            at(m, &format!("{here}.image"), Anchor::Value, p)
                                .with_help("write `[registry/]repository[:tag]`, lowercase"),
                        );
                    }
                }
                None => problems.push(
                    at(m, &here, Anchor::Value, "a container has no `image`")
                        .with_help("add `image:`; a Deployment's pods cannot start without one"),
                ),
            }
        }
    }
}

/// Service ports: numbers in range, names unique and required when there are several.
fn service_ports(m: &Manifest, problems: &mut Vec<Diagnostic>) {
    let Some(Value::Array(ports)) = m.doc.get(&FieldPath::parse("spec.ports")) else {
        return;
    };
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let here = format!("spec.ports[{i}]");
        match p.get("port").and_then(Value::as_u64) {
            Some(1..=65535) => {}
            _ => problems.push(
                at(
                    m,
                    &format!("{here}.port"),
                    Anchor::Value,
                    "a Service port must be a number from 1 to 65535",
                )
                .with_help("set `port:` to the port clients connect to"),
            ),
        }
        match p.get("name").and_then(Value::as_str) {
            Some(n) if !names.insert(n.to_string()) => problems.push(
                at(
                    m,
                    &format!("{here}.name"),
                    Anchor::Value,
                    format!("port name `{n}` is used twice"),
                )
                .with_help("give each port its own name"),
            ),
            None if ports.len() > 1 => problems.push(
                at(
                    m,
                    &here,
                    Anchor::Value,
                    "a Service with several ports must name each one",
                )
                .with_help("add `name:`, e.g. `http` (Istio also reads the protocol from it)"),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in [
            "v1",
            "apps/v1",
            "networking.istio.io/v1beta1",
            "batch/v1",
            "x.io/v2alpha1",
        ] {
            assert!(api_version_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "apps",
            "apps/",
            "Apps/v1",
            "apps/v1/x",
            "v 1",
            "/v1",
        ] {
            assert!(!api_version_ok(bad), "{bad}");
        }
    }
}
