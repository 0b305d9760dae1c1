//! Gateways, DestinationRules, injection, PeerAuthentication, Service ports and Sidecars.

use std::collections::BTreeMap;

use serde_json::Value;

use super::routes::finding;
use super::{Model, ROOT_NAMESPACE, resolve_host, selects, string_map};
use crate::spec::Diagnostic;
use crate::spec::error::Anchor;

/// A Gateway's selector must match a gateway pod: one paddock installs, or a pod template of
/// the manifests. Its server ports should be ports of the gateway's Service.
pub(super) fn gateways(model: &Model, out: &mut Vec<Diagnostic>) {
    for g in model.istio("Gateway") {
        let selector = string_map(g.doc.value.pointer("/spec/selector"));
        if selector.is_empty() {
            continue;
        }
        let installed: Vec<_> = model
            .gateways
            .iter()
            .filter(|gw| selects(&selector, &gw.labels))
            .collect();
        let own_pods = model.pods.iter().any(|p| selects(&selector, &p.labels));
        if installed.is_empty() && !own_pods {
            let theirs: Vec<String> = model
                .gateways
                .iter()
                .map(|gw| format!("`istio: {}` ({})", gw.labels["istio"], gw.release))
                .collect();
            let help = if theirs.is_empty() {
                "this cluster installs no gateway: add one to `istio.gateways`, or fix the selector"
                    .to_string()
            } else {
                format!(
                    "paddock's gateways carry {}: select one of them",
                    theirs.join(", ")
                )
            };
            let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push(
                finding(g, "spec.selector", Anchor::Value, "IST0101", format!("Referenced selector not found: no gateway pod has `{}`, so no gateway listens for {} and its routes are unreachable", sel.join(", "), g.describe()))
                    .with_help(help),
            );
            continue;
        }
        let servers = g
            .doc
            .value
            .pointer("/spec/servers")
            .and_then(Value::as_array);
        for (i, s) in servers.into_iter().flatten().enumerate() {
            let Some(port) = s.pointer("/port/number").and_then(Value::as_u64) else {
                continue;
            };
            if let Some(gw) = installed
                .iter()
                .find(|gw| !gw.service_ports.contains(&port))
            {
                out.push(
                    finding(g, &format!("spec.servers[{i}].port.number"), Anchor::Value, "IST0162", format!("port {port} is not a port of gateway {}'s Service ({:?}): requests through the Service never reach this server", gw.release, gw.service_ports))
                        .with_help("use the Service's port (80 for HTTP, 443 for HTTPS on paddock's gateways), not the container's"),
                );
            }
        }
    }
}

/// A DestinationRule's subsets should select pods: each subset's labels among the labels of a
/// pod template behind the host's Service.
pub(super) fn destination_rules(model: &Model, out: &mut Vec<Diagnostic>) {
    for dr in model.istio("DestinationRule") {
        let ns = dr.namespace().unwrap_or("default");
        let Some(host) = dr.doc.value.pointer("/spec/host").and_then(Value::as_str) else {
            continue;
        };
        let fqdn = resolve_host(host, ns);
        if !model.known_host(&fqdn) && !fqdn.contains('*') {
            out.push(
                finding(dr, "spec.host", Anchor::Value, "IST0101", format!("Referenced host not found: `{fqdn}` is no Service or ServiceEntry of the manifests"))
                    .warning()
                    .with_help("fine when it lives outside paddock's manifests; otherwise fix the host (`NAME` or `NAME.NAMESPACE.svc.cluster.local`)"),
            );
        }
        let Some(svc) = model.service(&fqdn) else {
            continue;
        };
        let behind: Vec<_> = model
            .pods
            .iter()
            .filter(|p| {
                p.namespace == svc.namespace
                    && !svc.selector.is_empty()
                    && selects(&svc.selector, &p.labels)
            })
            .collect();
        let subsets = dr
            .doc
            .value
            .pointer("/spec/subsets")
            .and_then(Value::as_array);
        for (i, s) in subsets.into_iter().flatten().enumerate() {
            let labels = string_map(s.get("labels"));
            if !behind.iter().any(|p| selects(&labels, &p.labels)) {
                let name = s["name"].as_str().unwrap_or("?");
                out.push(
                    finding(dr, &format!("spec.subsets[{i}].labels"), Anchor::Value, "PAD1004", format!("subset `{name}` selects no pod of Service {}: traffic sent to it gets 503 no healthy upstream", svc.fqdn))
                        .warning()
                        .with_help("match the labels of the pod template (e.g. `version: v2`), or deploy that version"),
                );
            }
        }
    }
}

/// Routing rules act in sidecars: a namespace whose pods have none does not follow its
/// VirtualServices and DestinationRules.
pub(super) fn injection(model: &Model, out: &mut Vec<Diagnostic>) {
    let mut reported = std::collections::BTreeSet::new();
    for kind in ["VirtualService", "DestinationRule"] {
        for m in model.istio(kind) {
            let ns = m.namespace().unwrap_or("default").to_string();
            let mesh_bound = kind == "DestinationRule"
                || m.doc
                    .value
                    .pointer("/spec/gateways")
                    .and_then(Value::as_array)
                    .is_none_or(|g| g.iter().any(|x| x == "mesh"));
            let pods: Vec<_> = model.pods.iter().filter(|p| p.namespace == ns).collect();
            if !mesh_bound
                || pods.is_empty()
                || pods.iter().any(|p| p.injected)
                || !reported.insert(ns.clone())
            {
                continue;
            }
            out.push(
                finding(m, "metadata", Anchor::Key, "IST0102", format!("namespace `{ns}` is not injected: its pods have no sidecar, so the routing of {} does not apply to their requests", m.describe()))
                    .warning()
                    .with_help(format!("give namespace `{ns}` a `tag` (or `injection: enabled`) in the cluster's `namespaces`")),
            );
        }
    }
}

/// STRICT mTLS where some pods have no sidecar: those pods cannot call the injected workloads
/// in scope (plain text is refused).
pub(super) fn peer_authentication(model: &Model, out: &mut Vec<Diagnostic>) {
    for pa in model.istio("PeerAuthentication") {
        if pa
            .doc
            .value
            .pointer("/spec/mtls/mode")
            .and_then(Value::as_str)
            != Some("STRICT")
        {
            continue;
        }
        let ns = pa.namespace().unwrap_or("default");
        let selector = string_map(pa.doc.value.pointer("/spec/selector/matchLabels"));
        let in_scope = |p: &&super::Pods| {
            (ns == ROOT_NAMESPACE || p.namespace == ns) && selects(&selector, &p.labels)
        };
        let plain: Vec<String> = model
            .pods
            .iter()
            .filter(in_scope)
            .filter(|p| !p.injected)
            .map(|p| format!("{} in {}", p.m.describe(), p.namespace))
            .collect();
        if !plain.is_empty() {
            out.push(
                finding(pa, "spec.mtls.mode", Anchor::Value, "PAD1005", format!("STRICT mTLS covers workloads without a sidecar ({}): their plain-text calls to injected workloads here are refused", plain.join(", ")))
                    .warning()
                    .with_help("inject those namespaces, or use `PERMISSIVE` until every workload has a sidecar"),
            );
        }
    }
}

/// Protocols Istio reads from a Service port's name (`NAME` or `NAME-suffix`).
const PROTOCOLS: &[&str] = &[
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "mysql", "redis",
];

/// A port whose protocol Istio cannot tell from `appProtocol` or its name is sniffed, which
/// fails for server-first protocols (MySQL, SMTP…).
pub(super) fn service_ports(model: &Model, out: &mut Vec<Diagnostic>) {
    for svc in &model.services {
        if !model.injected.get(&svc.namespace).copied().unwrap_or(false) {
            continue;
        }
        for (i, p) in svc.ports.iter().enumerate() {
            if p.get("appProtocol").and_then(Value::as_str).is_some() {
                continue;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let named = PROTOCOLS.iter().any(|proto| {
                name == *proto || name.strip_prefix(proto).is_some_and(|r| r.starts_with('-'))
            });
            if !named {
                out.push(
                    finding(svc.m, &format!("spec.ports[{i}]"), Anchor::Value, "IST0118", format!("port {} of Service {} has no protocol Istio can read (name `{name}`, no `appProtocol`): Istio sniffs it, which breaks server-first protocols", p["port"], svc.fqdn))
                        .warning()
                        .with_help("name it `http`, `http-…`, `grpc`, `tcp`… or set `appProtocol`"),
                );
            }
        }
    }
}

/// Sidecars: one without a selector per namespace; a selector must match a pod.
pub(super) fn sidecars(model: &Model, out: &mut Vec<Diagnostic>) {
    let mut unselected: BTreeMap<String, String> = BTreeMap::new();
    for sc in model.istio("Sidecar") {
        let ns = sc.namespace().unwrap_or("default").to_string();
        let selector = string_map(sc.doc.value.pointer("/spec/workloadSelector/labels"));
        if selector.is_empty() {
            if let Some(first) = unselected.insert(ns.clone(), sc.describe()) {
                out.push(
                    finding(sc, "metadata.name", Anchor::Value, "IST0126", format!("namespace `{ns}` has another Sidecar without a workload selector ({first}): which one applies is undefined"))
                        .warning()
                        .with_help("keep one Sidecar without `workloadSelector` per namespace"),
                );
            }
        } else if !model
            .pods
            .iter()
            .any(|p| p.namespace == ns && selects(&selector, &p.labels))
        {
            out.push(
                finding(
                    sc,
                    "spec.workloadSelector.labels",
                    Anchor::Value,
                    "IST0131",
                    format!("{} selects no pod of namespace `{ns}`", sc.describe()),
                )
                .warning()
                .with_help("match the labels of a pod template in that namespace"),
            );
        }
    }
}
