//! VirtualServices: the Gateways they bind to, their destinations (host, port, subset),
//! weights, and hosts claimed by more than one of them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Model, resolve_host};
use crate::spec::Diagnostic;
use crate::spec::error::Anchor;
use crate::spec::manifests::Manifest;
use crate::spec::yaml::FieldPath;

pub(super) fn finding(
    m: &Manifest,
    path: &str,
    anchor: Anchor,
    code: &str,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic::at(&m.doc, &FieldPath::parse(path), anchor, message).with_code(code)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A VirtualService's `gateways` as (namespace, name); `mesh` (or none) as `None`.
fn gateway_refs(vs: &Manifest) -> Vec<(usize, Option<(String, String)>)> {
    let ns = vs.namespace().unwrap_or("default");
    let listed = strings(vs.doc.value.pointer("/spec/gateways"));
    if listed.is_empty() {
        return vec![(0, None)];
    }
    listed
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            if g == "mesh" {
                return (i, None);
            }
            let r = match g.split_once('/') {
                Some((n, name)) => (n.to_string(), name.to_string()),
                None => match g.strip_suffix(&format!(".{}", super::CLUSTER_DOMAIN)) {
                    Some(short) => match short.split_once('.') {
                        Some((name, n)) => (n.to_string(), name.to_string()),
                        None => (ns.to_string(), short.to_string()),
                    },
                    None => (ns.to_string(), g.to_string()),
                },
            };
            (i, Some(r))
        })
        .collect()
}

pub(super) fn virtual_services(model: &Model, out: &mut Vec<Diagnostic>) {
    let gateways: Vec<(String, String)> = model
        .istio("Gateway")
        .filter_map(|g| {
            Some((
                g.namespace().unwrap_or("default").to_string(),
                g.name()?.to_string(),
            ))
        })
        .collect();
    let mut mesh_hosts: BTreeMap<String, &Manifest> = BTreeMap::new();
    let mut bound: BTreeMap<(String, String, String), &Manifest> = BTreeMap::new();
    for vs in model.istio("VirtualService") {
        let ns = vs.namespace().unwrap_or("default");
        let hosts: Vec<String> = strings(vs.doc.value.pointer("/spec/hosts"))
            .into_iter()
            .map(|h| resolve_host(h, ns))
            .collect();
        for (i, r) in gateway_refs(vs) {
            match r {
                None => {
                    for h in &hosts {
                        if let Some(first) = mesh_hosts.insert(h.clone(), vs) {
                            out.push(
                                finding(vs, "spec.hosts", Anchor::Value, "IST0109", format!("host `{h}` is routed by {} too: sidecars use only one VirtualService per host (the oldest) and ignore the other", first.describe()))
                                    .warning()
                                    .with_help(format!("merge the routes into one VirtualService ({}:{})", first.file, crate::spec::manifests::start(first).line)),
                            );
                        }
                    }
                }
                Some((gns, gname)) => {
                    if !gateways.iter().any(|(n, g)| *n == gns && *g == gname) {
                        out.push(
                            finding(vs, &format!("spec.gateways[{i}]"), Anchor::Value, "IST0101", format!("Referenced gateway not found: `{gns}/{gname}`; the routes are bound to no gateway and every request gets 404"))
                                .with_help("name a Gateway of the manifests as `NAMESPACE/NAME` (or `NAME` in this namespace)"),
                        );
                    } else if catch_all(vs) {
                        for h in &hosts {
                            if let Some(first) =
                                bound.insert((gns.clone(), gname.clone(), h.clone()), vs)
                                && catch_all(first)
                            {
                                out.push(
                                    finding(vs, "spec.http", Anchor::Key, "PAD1003", format!("{} and {} both route every request for `{h}` on gateway {gns}/{gname}: they merge in creation order, so which one answers depends on the order they were applied", vs.describe(), first.describe()))
                                        .warning()
                                        .with_help("give one of them `match` conditions, or merge them into one VirtualService"),
                                );
                            }
                        }
                    }
                }
            }
        }
        destinations(model, vs, out);
    }
}

/// Whether a VirtualService has an HTTP route without `match` (every request).
fn catch_all(vs: &Manifest) -> bool {
    vs.doc
        .value
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| {
            r.get("match")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        })
}

/// Every route's destinations: host, port, subset, and the weights between them.
fn destinations(model: &Model, vs: &Manifest, out: &mut Vec<Diagnostic>) {
    let ns = vs.namespace().unwrap_or("default");
    for proto in ["http", "tcp", "tls"] {
        let Some(routes) = vs
            .doc
            .value
            .pointer(&format!("/spec/{proto}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for (i, r) in routes.iter().enumerate() {
            let Some(dests) = r.get("route").and_then(Value::as_array) else {
                continue;
            };
            let base = format!("spec.{proto}[{i}].route");
            for (j, d) in dests.iter().enumerate() {
                destination(model, vs, &format!("{base}[{j}].destination"), d, ns, out);
            }
            weights(model, vs, &base, dests, ns, out);
        }
    }
}

fn destination(
    model: &Model,
    vs: &Manifest,
    path: &str,
    d: &Value,
    ns: &str,
    out: &mut Vec<Diagnostic>,
) {
    let Some(host) = d.pointer("/destination/host").and_then(Value::as_str) else {
        return;
    };
    let fqdn = resolve_host(host, ns);
    if !model.known_host(&fqdn) {
        let hint = if !host.contains('.') || host.ends_with(super::CLUSTER_DOMAIN) {
            String::new()
        } else {
            format!(
                "; `{host}` has a dot, so istiod takes it as written: for a Service write `NAME.NAMESPACE.svc.cluster.local`"
            )
        };
        out.push(
            finding(vs, &format!("{path}.host"), Anchor::Value, "IST0101", format!("Referenced host not found: `{fqdn}` is no Service or ServiceEntry of the manifests{hint}"))
                .warning()
                .with_help("fine when it lives outside paddock's manifests; otherwise fix the host"),
        );
    }
    if let Some(svc) = model.service(&fqdn) {
        let ports: Vec<u64> = svc
            .ports
            .iter()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        match d.pointer("/destination/port/number").and_then(Value::as_u64) {
            Some(p) if !ports.contains(&p) => out.push(
                finding(vs, &format!("{path}.port.number"), Anchor::Value, "IST0101", format!("Referenced port not found: Service {} has no port {p} (it has {ports:?}); the route goes nowhere (503)", svc.fqdn))
                    .with_help("use one of the Service's `port` numbers (not a targetPort)"),
            ),
            None if ports.len() > 1 => out.push(
                finding(vs, path, Anchor::Value, "IST0112", format!("Service {} exposes several ports {ports:?}: a destination without `port` is sent to the listener's port, which it may not have (503)", svc.fqdn))
                    .with_help("add `port: {number: N}` to the destination"),
            ),
            _ => {}
        }
    }
    if let Some(subset) = d.pointer("/destination/subset").and_then(Value::as_str) {
        let defined = model.rules_for(&fqdn).any(|dr| {
            dr.doc
                .value
                .pointer("/spec/subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|s| s["name"] == subset)
        });
        if !defined {
            out.push(
                finding(vs, &format!("{path}.subset"), Anchor::Value, "IST0101", format!("Referenced host+subset in destinationrule not found: `{fqdn}+{subset}`; requests routed there get 503"))
                    .with_help(format!("define subset `{subset}` in a DestinationRule for `{fqdn}`, or remove `subset`")),
            );
        }
    }
}

fn weights(
    model: &Model,
    vs: &Manifest,
    base: &str,
    dests: &[Value],
    ns: &str,
    out: &mut Vec<Diagnostic>,
) {
    if dests.len() < 2 {
        return;
    }
    let weight = |d: &Value| d.get("weight").and_then(Value::as_u64).unwrap_or(0);
    // paddock drives Istio 1.20 and later: weights are shared in proportion (from 1.15), so
    // only a total of 0 goes nowhere.
    let total: u64 = dests.iter().map(weight).sum();
    if total == 0 {
        out.push(
            finding(vs, base, Anchor::Key, "PAD1001", "the destinations' weights add up to 0: no destination gets traffic and every request gets 503")
                .with_help("give the destinations weights (e.g. 90 and 10)"),
        );
    }
    let weighted = dests.iter().filter(|d| weight(d) > 0).count() > 1;
    if !weighted {
        return;
    }
    for (j, d) in dests.iter().enumerate() {
        let Some(host) = d.pointer("/destination/host").and_then(Value::as_str) else {
            continue;
        };
        let fqdn = resolve_host(host, ns);
        let sticky = model.rules_for(&fqdn).find(|dr| {
            dr.doc
                .value
                .pointer("/spec/trafficPolicy/loadBalancer/consistentHash")
                .is_some()
        });
        if let Some(dr) = sticky {
            out.push(
                finding(vs, &format!("{base}[{j}].weight"), Anchor::Value, "PAD1002", format!("weighted routes to `{fqdn}`, whose {} sets consistent-hash load balancing: a split and stickiness cannot both hold (a client keeps its subset only within one destination)", dr.describe()))
                    .warning()
                    .with_help("drop `consistentHash` while splitting traffic, or route by a header instead of weights"),
            );
            break;
        }
    }
}
