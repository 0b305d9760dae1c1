//! Istio routing checked before it is applied, as `istioctl analyze` checks files, but from
//! what paddock knows of the cluster before it exists: the Istio version, the gateways it
//! installs and their pod labels and Service ports, the namespaces and their injection, and
//! every object of the workload manifests. Each finding is a located diagnostic with
//! istioctl's code where one exists; errors refuse the spec, warnings are reported.
//!
//! The model here is deliberately separate from the sim's gateway: the tests hold the two
//! against each other (a configuration called an error here really misroutes there).

mod checks;
mod routes;
mod schema;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::spec::ClusterSpec;
use crate::spec::manifests::Manifest;

/// The Kubernetes cluster domain Service hostnames end with.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";
/// Istio's root namespace: mesh-wide policy lives there.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The API group of Istio's routing and security kinds.
fn is_istio(m: &Manifest, kind: &str) -> bool {
    m.kind() == Some(kind)
        && m.api_version().is_some_and(|v| {
            v.starts_with("networking.istio.io/") || v.starts_with("security.istio.io/")
        })
}

/// A gateway paddock installs: its pods' labels and its Service's ports.
#[derive(Debug, Clone)]
pub struct InstalledGateway {
    pub release: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_ports: Vec<u64>,
}

/// A Service of the manifests.
#[derive(Debug)]
pub struct Service<'a> {
    pub m: &'a Manifest,
    pub namespace: String,
    pub fqdn: String,
    pub ports: Vec<Value>,
    pub selector: BTreeMap<String, String>,
}

/// A pod template (or bare pod) of the manifests, with the labels its pods get.
#[derive(Debug)]
pub struct Pods<'a> {
    pub m: &'a Manifest,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub injected: bool,
}

/// Everything the checks look at.
#[derive(Debug)]
pub struct Model<'a> {
    pub version: Option<semver::Version>,
    pub gateways: Vec<InstalledGateway>,
    pub services: Vec<Service<'a>>,
    pub pods: Vec<Pods<'a>>,
    /// Namespace → whether its pods are injected.
    pub injected: BTreeMap<String, bool>,
    pub objects: &'a [Manifest],
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The gateways paddock installs, as the gateway chart labels their pods and ports their
/// Service: `app: RELEASE`, `istio: RELEASE without "istio-"`, `app.kubernetes.io/name`, plus
/// the values' `labels`; ports 15021, 80 and 443 unless `service.ports` says otherwise.
pub fn installed_gateways(spec: &ClusterSpec) -> Vec<InstalledGateway> {
    let Some(istio) = &spec.body.istio else {
        return Vec::new();
    };
    istio
        .gateways
        .iter()
        .map(|g| {
            let mut labels = string_map(g.values.get("labels"));
            labels.insert("app".into(), g.name.clone());
            labels.insert(
                "istio".into(),
                crate::mesh::istio::gateway_selector(&g.name).to_string(),
            );
            labels.insert("app.kubernetes.io/name".into(), g.name.clone());
            let service_ports = g
                .values
                .get("service")
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_array)
                .map(|ps| ps.iter().filter_map(|p| p["port"].as_u64()).collect())
                .unwrap_or_else(|| vec![15021, 80, 443]);
            InstalledGateway {
                release: g.name.clone(),
                namespace: g.namespace.clone(),
                labels,
                service_ports,
            }
        })
        .collect()
}

/// Whether each namespace's pods are injected: by the spec's `tag`, `canary` or `injection`,
/// or by a Namespace of the manifests labelled `istio-injection=enabled` or `istio.io/rev`.
fn injection(spec: &ClusterSpec, objects: &[Manifest]) -> BTreeMap<String, bool> {
    let istio = spec.body.istio.is_some();
    let mut out: BTreeMap<String, bool> = spec
        .body
        .namespaces
        .iter()
        .map(|n| {
            let on = n.tag.is_some()
                || n.canary
                || n.injection == Some(crate::spec::types::Injection::Enabled);
            (n.name.clone(), istio && on)
        })
        .collect();
    for m in objects.iter().filter(|m| m.kind() == Some("Namespace")) {
        let labels = string_map(m.doc.value.pointer("/metadata/labels"));
        let on = labels.get("istio-injection").map(String::as_str) == Some("enabled")
            || labels.contains_key("istio.io/rev");
        if let Some(name) = m.name() {
            let e = out.entry(name.to_string()).or_insert(false);
            *e = *e || (istio && on);
        }
    }
    out
}

impl<'a> Model<'a> {
    pub fn new(spec: &ClusterSpec, objects: &'a [Manifest]) -> Self {
        let injected = injection(spec, objects);
        let ns_of = |m: &Manifest| m.namespace().unwrap_or("default").to_string();
        let services = objects
            .iter()
            .filter(|m| m.kind() == Some("Service") && m.api_version() == Some("v1"))
            .filter_map(|m| {
                let namespace = ns_of(m);
                Some(Service {
                    fqdn: format!("{}.{namespace}.{CLUSTER_DOMAIN}", m.name()?),
                    ports: m
                        .doc
                        .value
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    selector: string_map(m.doc.value.pointer("/spec/selector")),
                    namespace,
                    m,
                })
            })
            .collect();
        let pods = objects
            .iter()
            .filter_map(|m| {
                let (labels, annotations) = match m.kind()? {
                    "Pod" => ("/metadata/labels", "/metadata/annotations"),
                    "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => (
                        "/spec/template/metadata/labels",
                        "/spec/template/metadata/annotations",
                    ),
                    _ => return None,
                };
                let labels = string_map(m.doc.value.pointer(labels));
                let annotations = string_map(m.doc.value.pointer(annotations));
                let namespace = ns_of(m);
                let by_pod = labels
                    .get("sidecar.istio.io/inject")
                    .or_else(|| annotations.get("sidecar.istio.io/inject"))
                    .map(|v| v == "true");
                let injected = match by_pod {
                    Some(false) => false,
                    Some(true) => spec.body.istio.is_some(),
                    None => injected.get(&namespace).copied().unwrap_or(false),
                };
                Some(Pods {
                    m,
                    namespace,
                    labels,
                    injected,
                })
            })
            .collect();
        Self {
            version: spec
                .body
                .istio
                .as_ref()
                .and_then(|i| crate::mesh::istio::parse_version(&i.version).ok()),
            gateways: installed_gateways(spec),
            services,
            pods,
            injected,
            objects,
        }
    }

    /// The Istio objects of a kind.
    pub fn istio(&self, kind: &'a str) -> impl Iterator<Item = &'a Manifest> + 'a {
        self.objects.iter().filter(move |m| is_istio(m, kind))
    }

    /// The DestinationRules whose host covers `fqdn`.
    pub fn rules_for<'s>(&'s self, fqdn: &'s str) -> impl Iterator<Item = &'a Manifest> + 's {
        self.istio("DestinationRule").filter(move |dr| {
            let ns = dr.namespace().unwrap_or("default");
            let h = dr
                .doc
                .value
                .pointer("/spec/host")
                .and_then(Value::as_str)
                .unwrap_or("");
            host_within(fqdn, &resolve_host(h, ns))
        })
    }

    pub fn service(&self, fqdn: &str) -> Option<&Service<'a>> {
        self.services.iter().find(|s| s.fqdn == fqdn)
    }

    /// Whether a host is known: a Service of the manifests or a ServiceEntry's host.
    pub fn known_host(&self, fqdn: &str) -> bool {
        self.service(fqdn).is_some()
            || self.istio("ServiceEntry").any(|se| {
                se.doc
                    .value
                    .pointer("/spec/hosts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|h| host_within(fqdn, h))
            })
    }
}

/// A host as istiod reads it in an object of `namespace`: a short name (no dot) is a Service
/// of that namespace; anything with a dot is taken as written (`web.app` is not expanded).
pub fn resolve_host(host: &str, namespace: &str) -> String {
    if host.contains('*') || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    }
}

/// Whether `host` is `pattern` or lies under its wildcard.
pub fn host_within(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len() || pattern == "*",
        None => host == pattern,
    }
}

/// Whether every label of `selector` is among `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Analyze the Istio objects of a cluster's manifests.
pub fn analyze(spec: &ClusterSpec, objects: &[Manifest]) -> Vec<crate::spec::Diagnostic> {
    let model = Model::new(spec, objects);
    let mut out = Vec::new();
    schema::check(&model, &mut out);
    checks::gateways(&model, &mut out);
    routes::virtual_services(&model, &mut out);
    checks::destination_rules(&model, &mut out);
    checks::injection(&model, &mut out);
    checks::peer_authentication(&model, &mut out);
    checks::service_ports(&model, &mut out);
    checks::sidecars(&model, &mut out);
    out
}
