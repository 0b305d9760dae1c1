//! Istio's ingress gateway as its Envoy is configured: which container ports a gateway pod
//! listens on, and where each HTTP request goes. Pure decisions over the store; the load
//! balancer (`lb`) picks the gateway pod, carries the bytes and times the answers.
//!
//! What istiod would push, derived from the objects every time (no push delay is modelled):
//! - Listeners: every `Gateway` (`networking.istio.io`, any namespace) whose `spec.selector`
//!   matches the pod's labels (absent or empty: every gateway pod) contributes its servers. A
//!   server's `port.number` names a port of a Service selecting the pod and is listened on at
//!   that port's `targetPort` (a name is looked up in the pod's container ports); with no such
//!   Service port, at the number itself. On one port the first server's protocol wins; HTTP
//!   servers merge by host.
//! - Virtual hosts: for each HTTP server and each VirtualService bound to its Gateway
//!   (`spec.gateways`: `ns/name`, `name` in the VirtualService's namespace; absent means `mesh`
//!   only), the intersection of the server's hosts (`ns/host`: only VirtualServices of `ns`) and
//!   the VirtualService's hosts. VirtualServices for one host merge in creation order, with
//!   catch-all routes moved last. The Host header (port ignored) picks the exact domain, else
//!   the longest `*.suffix`, else `*`.
//! - Routes: first `http` entry whose `match` (any block) holds; `route` destinations with
//!   `weight`s (one destination takes all; several: zero weights dropped, the rest share
//!   `weight / sum`, as from Istio 1.15), `directResponse`, `redirect`. Destination hosts
//!   resolve as istiod resolves short names; subsets come from the DestinationRule for the host
//!   (gateway's namespace, then the Service's, then `istio-system`).
//! - Endpoints: the Service's `Endpoints` ready addresses, whatever lag they have, filtered by
//!   subset labels through each address's `targetRef` pod.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::controllers::containers;
use crate::selector::labels_of;
use crate::store::{Resource, Store, res};

/// Istio's root namespace, where mesh-wide DestinationRules live.
const ROOT_NAMESPACE: &str = "istio-system";
/// The cluster domain Kubernetes Service hostnames end with.
const CLUSTER_DOMAIN: &str = "svc.cluster.local";

fn s_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn istio(plural: &str, kind: &str) -> Resource {
    // Objects are stored per group and plural, whichever served version wrote them.
    Resource::new("networking.istio.io", "v1", plural, kind, true, &[])
}

/// Objects sorted as istiod orders configuration: oldest first, then by name and namespace.
fn by_age(mut objs: Vec<Value>) -> Vec<Value> {
    objs.sort_by_cached_key(|o| {
        (
            s_at(o, "/metadata/creationTimestamp").to_string(),
            s_at(o, "/metadata/name").to_string(),
            s_at(o, "/metadata/namespace").to_string(),
        )
    });
    objs
}

fn subset_of(selector: &serde_json::Map<String, Value>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// Who a pod is, as the sim's apps and gateways tell clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub namespace: String,
    /// The revision that injected the pod (annotation `istio.io/rev`); empty when not injected.
    pub revision: String,
    /// The tag of its `istio-proxy` image (containers or native-sidecar init containers).
    pub proxy_version: String,
}

pub fn identity(pod: &Value) -> Identity {
    let image = containers(pod)
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default();
    let image = image.split('@').next().unwrap_or_default();
    let proxy_version = image
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.contains('/'))
        .unwrap_or_default();
    Identity {
        name: s_at(pod, "/metadata/name").to_string(),
        namespace: s_at(pod, "/metadata/namespace").to_string(),
        revision: s_at(pod, "/metadata/annotations/istio.io~1rev").to_string(),
        proxy_version: proxy_version.to_string(),
    }
}

/// The pod an endpoint address points at (`targetRef`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    /// The pod while its object exists, terminating included. A pod that took the same name
    /// since (a StatefulSet's replacement) is another pod: its uid differs.
    pub fn get(&self, s: &Store) -> Option<Value> {
        let pod = s.get(&res("pods"), &self.namespace, &self.name).ok()?;
        (self.uid.is_empty() || s_at(&pod, "/metadata/uid") == self.uid).then_some(pod)
    }
}

/// The pods behind a Service's ready endpoint addresses, as its `Endpoints` object lists them now.
pub fn ready_endpoints(s: &Store, namespace: &str, service: &str) -> Vec<PodRef> {
    let Ok(ep) = s.get(&res("endpoints"), namespace, service) else {
        return Vec::new();
    };
    ep.pointer("/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sub| sub.get("addresses").and_then(Value::as_array))
        .flatten()
        .filter_map(|a| a.get("targetRef"))
        .filter(|r| r["kind"] == "Pod")
        .map(|r| PodRef {
            namespace: r["namespace"].as_str().unwrap_or(namespace).to_string(),
            name: s_at(r, "/name").to_string(),
            uid: s_at(r, "/uid").to_string(),
        })
        .collect()
}

/// A Service port's target on a pod: `targetPort` (a name is looked up among the pod's
/// container ports), else the port itself.
pub fn target_port(service_port: &Value, pod: &Value) -> Option<u16> {
    let port = service_port.get("port").and_then(Value::as_u64)?;
    let target = match service_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_u64()?,
        Some(Value::String(name)) => containers(pod)
            .filter_map(|c| c.get("ports").and_then(Value::as_array))
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())?,
        _ => port,
    };
    u16::try_from(target).ok()
}

/// What a gateway pod does with a connection to one of its container ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// No Gateway declares the port: Envoy has no listener and the connection is refused.
    None,
    /// Plain-text HTTP servers.
    Http,
    /// HTTPS, TLS, TCP and other servers, which the sim does not serve.
    Other,
}

/// One server of a Gateway, as merged onto a listener.
#[derive(Debug, Clone)]
struct Server {
    /// `namespace/name` of its Gateway.
    gateway: String,
    number: u16,
    /// Hosts after istiod's sanitising: `./h` → `<gateway ns>/h`, `*/h` → `h`.
    hosts: Vec<String>,
    http: bool,
    https_redirect: bool,
}

fn http_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_uppercase().as_str(),
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
    )
}

/// The servers of every Gateway selecting `pod` that resolve to container port `port`.
fn servers(s: &Store, pod: &Value, port: u16) -> Vec<Server> {
    let labels = labels_of(pod);
    let pod_ns = s_at(pod, "/metadata/namespace");
    // Ports of the Services selecting the pod: what a server's number refers to.
    let mut targets = Vec::new();
    for svc in by_age(s.all(&res("services"), pod_ns)) {
        let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
            continue;
        };
        if sel.is_empty() || !subset_of(sel, &labels) {
            continue;
        }
        for p in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(number), Some(target)) = (p["port"].as_u64(), target_port(p, pod)) {
                targets.push((number, target));
            }
        }
    }
    let mut out: Vec<Server> = Vec::new();
    for gw in by_age(s.all(&istio("gateways", "Gateway"), "")) {
        if let Some(sel) = gw.pointer("/spec/selector").and_then(Value::as_object)
            && !subset_of(sel, &labels)
        {
            continue;
        }
        let gw_ns = s_at(&gw, "/metadata/namespace");
        let name = format!("{gw_ns}/{}", s_at(&gw, "/metadata/name"));
        for server in gw
            .pointer("/spec/servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(number) = server
                .pointer("/port/number")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            let resolved = targets
                .iter()
                .find(|(p, _)| *p == u64::from(number))
                .map_or(number, |(_, t)| *t);
            if resolved != port {
                continue;
            }
            let http = http_protocol(s_at(server, "/port/protocol"));
            // Servers of another protocol than the port's first are dropped, as istiod does.
            if out.first().is_some_and(|first| first.http != http || !http) {
                continue;
            }
            let mut hosts = Vec::new();
            for h in server
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                match h.split_once('/') {
                    Some((".", host)) => hosts.push(format!("{gw_ns}/{host}")),
                    Some(("*", "*")) => {
                        hosts = vec!["*".to_string()];
                        break;
                    }
                    Some(("*", host)) => hosts.push(host.to_string()),
                    _ => hosts.push(h.to_string()),
                }
            }
            out.push(Server {
                gateway: name.clone(),
                number,
                hosts,
                http,
                https_redirect: server.pointer("/tls/httpsRedirect") == Some(&Value::Bool(true)),
            });
        }
    }
    out
}

/// Whether and how `pod` listens on container port `port`.
pub fn listener(s: &Store, pod: &Value, port: u16) -> Listener {
    match servers(s, pod, port).first() {
        None => Listener::None,
        Some(server) if server.http => Listener::Http,
        Some(_) => Listener::Other,
    }
}

/// An HTTP request as the gateway routes it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target: path and query.
    pub target: &'a str,
    /// Header fields, names lowercased (`host` among them).
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn host(&self) -> String {
        self.header("host").unwrap_or_default()
    }

    fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }
}

/// Where the gateway sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No virtual host or route matches: Envoy's `404` (response flag NR).
    NoRoute,
    /// `directResponse`.
    Direct { status: u16, body: Vec<u8> },
    /// `redirect`, or an HTTP server with `tls.httpsRedirect`.
    Redirect { status: u16, location: String },
    /// The route names a cluster that does not exist (unknown Service or port, a subset no
    /// DestinationRule defines): Envoy's `503` with an empty body (response flag NC).
    ClusterNotFound,
    /// Forward to one of these endpoints (none: `503 no healthy upstream`).
    Forward(Vec<PodRef>),
}

/// One Envoy route: a match block of a VirtualService's `http` entry.
#[derive(Debug, Clone)]
struct Route {
    matcher: Option<Value>,
    http: Value,
    namespace: String,
    listen_port: u16,
}

#[derive(Debug, Default)]
struct VirtualHost {
    routes: Vec<Route>,
    require_tls: bool,
}

/// `ns/name` a VirtualService's `gateways` entry names, or `mesh`.
fn gateway_name(entry: &str, vs_ns: &str) -> String {
    if entry == "mesh" {
        return entry.to_string();
    }
    if entry.contains('/') {
        return entry.to_string();
    }
    match entry.split_once('.') {
        // `name.namespace[.svc.cluster.local]`
        Some((name, rest)) => format!("{}/{name}", rest.split('.').next().unwrap_or_default()),
        None => format!("{vs_ns}/{entry}"),
    }
}

fn gateway_names(list: Option<&Value>, vs_ns: &str) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|g| gateway_name(g, vs_ns))
        .collect()
}

/// A hostname as istiod resolves it in a namespace: a name without dots is a Service there.
fn resolve_host(host: &str, ns: &str) -> String {
    if host == "*" || host.contains('.') {
        host.to_ascii_lowercase()
    } else {
        format!("{host}.{ns}.{CLUSTER_DOMAIN}").to_ascii_lowercase()
    }
}

/// Does host `a` fall within host `b` (`b` may be a wildcard)?
fn host_within(a: &str, b: &str) -> bool {
    if b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => a == b,
        (None, Some(suffix)) => a.len() > suffix.len() && a.ends_with(suffix),
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (Some(_), None) => false,
    }
}

/// The hosts both lists cover, each the narrower of a matching pair.
fn intersect(server_hosts: &[String], vs_hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in server_hosts {
        for b in vs_hosts {
            let narrower = if host_within(a, b) {
                a
            } else if host_within(b, a) {
                b
            } else {
                continue;
            };
            if !out.contains(narrower) {
                out.push(narrower.clone());
            }
        }
    }
    out
}

/// A server's hosts that VirtualServices of namespace `ns` may bind.
fn hosts_for_namespace(hosts: &[String], ns: &str) -> Vec<String> {
    hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((hns, host)) => (hns == ns).then(|| host.to_ascii_lowercase()),
            None => Some(h.to_ascii_lowercase()),
        })
        .collect()
}

fn is_catch_all(m: Option<&Value>) -> bool {
    let Some(m) = m else {
        return true;
    };
    let uri_all = match m.get("uri") {
        None => true,
        Some(u) => u["prefix"] == "/" || u["regex"] == "*",
    };
    uri_all
        && [
            "headers",
            "withoutHeaders",
            "queryParams",
            "method",
            "authority",
            "scheme",
        ]
        .iter()
        .all(|k| {
            m.get(*k)
                .is_none_or(|v| v.as_object().is_some_and(|o| o.is_empty()))
        })
}

/// A VirtualService's routes for a server port, as istiod translates them for one gateway.
fn translate(vs: &Value, listen_port: u16, gateway: &str, pod: &Value) -> Vec<Route> {
    let ns = s_at(vs, "/metadata/namespace");
    let labels = labels_of(pod);
    let mut out = Vec::new();
    for http in vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let matches = http
            .get("match")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty());
        let route = |m: Option<&Value>| Route {
            matcher: m.cloned(),
            http: http.clone(),
            namespace: ns.to_string(),
            listen_port,
        };
        let mut catch_all = false;
        match matches {
            None => {
                out.push(route(None));
                catch_all = true;
            }
            Some(blocks) => {
                for m in blocks {
                    if m.get("port")
                        .and_then(Value::as_u64)
                        .is_some_and(|p| p != u64::from(listen_port))
                    {
                        continue;
                    }
                    let gws = gateway_names(m.get("gateways"), ns);
                    let source_ok = if gws.is_empty() {
                        m.get("sourceLabels")
                            .and_then(Value::as_object)
                            .is_none_or(|sel| subset_of(sel, &labels))
                            && m.get("sourceNamespace")
                                .and_then(Value::as_str)
                                .is_none_or(|sn| sn == s_at(pod, "/metadata/namespace"))
                    } else {
                        gws.iter().any(|g| g == gateway)
                    };
                    if !source_ok {
                        continue;
                    }
                    out.push(route(Some(m)));
                    if is_catch_all(Some(m)) {
                        catch_all = true;
                        break;
                    }
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// The virtual hosts of a gateway pod's HTTP listener on `port`, by domain.
fn virtual_hosts(s: &Store, pod: &Value, port: u16) -> BTreeMap<String, VirtualHost> {
    let servers: Vec<Server> = servers(s, pod, port)
        .into_iter()
        .filter(|srv| srv.http)
        .collect();
    let mut vhosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    if servers.is_empty() {
        return vhosts;
    }
    let vss = by_age(s.all(&istio("virtualservices", "VirtualService"), ""));
    for server in &servers {
        for vs in &vss {
            let vs_ns = s_at(vs, "/metadata/namespace");
            if !gateway_names(vs.pointer("/spec/gateways"), vs_ns).contains(&server.gateway) {
                continue;
            }
            let vs_hosts: Vec<String> = vs
                .pointer("/spec/hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|h| resolve_host(h, vs_ns))
                .collect();
            let domains = intersect(&hosts_for_namespace(&server.hosts, vs_ns), &vs_hosts);
            if domains.is_empty() {
                continue;
            }
            let routes = translate(vs, server.number, &server.gateway, pod);
            if routes.is_empty() {
                continue;
            }
            for d in domains {
                let vh = vhosts.entry(d).or_default();
                vh.routes.extend(routes.iter().cloned());
                vh.require_tls |= server.https_redirect;
            }
        }
        if server.https_redirect {
            for h in &server.hosts {
                vhosts
                    .entry(h.to_ascii_lowercase())
                    .or_default()
                    .require_tls = true;
            }
        }
    }
    for vh in vhosts.values_mut() {
        // Catch-all routes go last, the others keep their order (istiod's SortVHostRoutes).
        let (rest, catch_all): (Vec<Route>, Vec<Route>) = std::mem::take(&mut vh.routes)
            .into_iter()
            .partition(|r| !is_catch_all(r.matcher.as_ref()));
        vh.routes = rest.into_iter().chain(catch_all).collect();
    }
    vhosts
}

/// Envoy's virtual host choice: exact domain, else the longest matching `*suffix`, else `*`.
fn pick_vhost<'a>(
    vhosts: &'a BTreeMap<String, VirtualHost>,
    host: &str,
) -> Option<&'a VirtualHost> {
    if let Some(vh) = vhosts.get(host) {
        return Some(vh);
    }
    vhosts
        .iter()
        .filter_map(|(d, vh)| {
            let suffix = d.strip_prefix('*')?;
            (!suffix.is_empty() && host.len() > suffix.len() && host.ends_with(suffix))
                .then_some((suffix.len(), vh))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, vh)| vh)
        .or_else(|| vhosts.get("*"))
}

/// The Host header without its port.
fn strip_port(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, _)) => format!("[{addr}]"),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host,
    }
}

/// Istio's StringMatch (`exact`, `prefix`, `regex` as an RE2 full match); an empty one
/// matches any present value.
fn string_match(m: &Value, value: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    if let Some(exact) = m.get("exact").and_then(Value::as_str) {
        return eq(exact, value);
    }
    if let Some(prefix) = m.get("prefix").and_then(Value::as_str) {
        return value.len() >= prefix.len()
            && value.is_char_boundary(prefix.len())
            && eq(&value[..prefix.len()], prefix);
    }
    if let Some(re) = m.get("regex").and_then(Value::as_str) {
        return regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(value));
    }
    true
}

/// Envoy's header matcher: a missing header matches only an inverted presence check.
fn header_match(m: &Value, value: Option<&str>, invert: bool) -> bool {
    let presence_only = m.as_object().is_none_or(|o| o.is_empty());
    match value {
        None => invert && presence_only,
        Some(v) => string_match(m, v, false) != invert,
    }
}

fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let query = target.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn request_matches(m: &Value, req: &Request) -> bool {
    let ignore_case = m.get("ignoreUriCase") == Some(&Value::Bool(true));
    let maps = |key: &str| m.get(key).and_then(Value::as_object).into_iter().flatten();
    m.get("uri")
        .is_none_or(|u| string_match(u, req.path(), ignore_case))
        && m.get("method")
            .is_none_or(|sm| header_match(sm, Some(req.method), false))
        && m.get("authority")
            .is_none_or(|sm| header_match(sm, Some(&req.host()), false))
        && m.get("scheme")
            .is_none_or(|sm| header_match(sm, Some("http"), false))
        && maps("headers").all(|(k, sm)| header_match(sm, req.header(k).as_deref(), false))
        && maps("withoutHeaders").all(|(k, sm)| header_match(sm, req.header(k).as_deref(), true))
        && maps("queryParams").all(|(k, sm)| header_match(sm, query_param(req.target, k), false))
}

/// The subsets the DestinationRule for `fqdn` defines, looked up where istiod looks: the
/// gateway's namespace, then the Service's, then the root namespace.
fn subsets(s: &Store, fqdn: &str, gateway_ns: &str, service_ns: &str) -> Option<Vec<Value>> {
    let drs = by_age(s.all(&istio("destinationrules", "DestinationRule"), ""));
    let mut namespaces = vec![gateway_ns, service_ns, ROOT_NAMESPACE];
    namespaces.dedup();
    for ns in namespaces {
        let candidates: Vec<(String, &Value)> = drs
            .iter()
            .filter(|d| s_at(d, "/metadata/namespace") == ns)
            .map(|d| (resolve_host(s_at(d, "/spec/host"), ns), d))
            .filter(|(h, _)| host_within(fqdn, h))
            .collect();
        // The most specific host wins: exact, else the longest wildcard.
        let Some(best) = candidates
            .iter()
            .map(|(h, _)| h)
            .max_by_key(|h| (!h.starts_with('*'), h.len()))
            .cloned()
        else {
            continue;
        };
        return Some(
            candidates
                .iter()
                .filter(|(h, _)| *h == best)
                .filter_map(|(_, d)| d.pointer("/spec/subsets").and_then(Value::as_array))
                .flatten()
                .cloned()
                .collect(),
        );
    }
    None
}

/// The endpoints of one route destination, or `None` when its cluster does not exist.
fn cluster(s: &Store, dest: &Value, route: &Route, gateway_ns: &str) -> Option<Vec<PodRef>> {
    let fqdn = resolve_host(s_at(dest, "/destination/host"), &route.namespace);
    let (name, ns) = fqdn
        .strip_suffix(&format!(".{CLUSTER_DOMAIN}"))?
        .split_once('.')?;
    let svc = s.get(&res("services"), ns, name).ok()?;
    let ports: Vec<u64> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    let port = match dest
        .pointer("/destination/port/number")
        .and_then(Value::as_u64)
    {
        Some(p) => p,
        None if ports.len() == 1 => ports[0],
        None => u64::from(route.listen_port),
    };
    if !ports.contains(&port) {
        return None;
    }
    let subset = s_at(dest, "/destination/subset");
    let labels = if subset.is_empty() {
        None
    } else {
        let all = subsets(s, &fqdn, gateway_ns, ns)?;
        let found = all.into_iter().find(|x| x["name"] == subset)?;
        Some(
            found
                .get("labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        )
    };
    let endpoints = ready_endpoints(s, ns, name);
    Some(match labels {
        None => endpoints,
        Some(sel) => endpoints
            .into_iter()
            .filter(|e| e.get(s).is_some_and(|p| subset_of(&sel, &labels_of(&p))))
            .collect(),
    })
}

fn redirect(r: &Value, req: &Request, port: u16) -> Decision {
    let scheme = r.get("scheme").and_then(Value::as_str).unwrap_or("http");
    let mut authority = r
        .get("authority")
        .and_then(Value::as_str)
        .map_or_else(|| strip_port(&req.host()), str::to_string);
    let redirect_port = match r.get("redirectPort").and_then(Value::as_u64) {
        Some(p) => Some(p),
        None => (r.get("derivePort").and_then(Value::as_str) == Some("FROM_REQUEST_PORT"))
            .then_some(u64::from(port)),
    };
    if let Some(p) = redirect_port
        && !(p == 80 && scheme == "http" || p == 443 && scheme == "https")
    {
        authority = format!("{authority}:{p}");
    }
    let path = r.get("uri").and_then(Value::as_str).unwrap_or(req.target);
    Decision::Redirect {
        status: r
            .get("redirectCode")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(301),
        location: format!("{scheme}://{authority}{path}"),
    }
}

/// Where the gateway pod `pod` sends `req`, which arrived on its container port `port`.
pub fn route(
    s: &Store,
    pod: &Value,
    port: u16,
    req: &Request,
    rng: &mut fastrand::Rng,
) -> Decision {
    let vhosts = virtual_hosts(s, pod, port);
    let host = strip_port(&req.host());
    let Some(vh) = pick_vhost(&vhosts, &host) else {
        return Decision::NoRoute;
    };
    if vh.require_tls {
        return Decision::Redirect {
            status: 301,
            location: format!("https://{host}{}", req.target),
        };
    }
    let Some(route) = vh
        .routes
        .iter()
        .find(|r| r.matcher.as_ref().is_none_or(|m| request_matches(m, req)))
    else {
        return Decision::NoRoute;
    };
    let http = &route.http;
    if let Some(r) = http.get("redirect") {
        return redirect(r, req, route.listen_port);
    }
    if let Some(d) = http.get("directResponse") {
        let body = match d.pointer("/body/string").and_then(Value::as_str) {
            Some(text) => text.as_bytes().to_vec(),
            None => d
                .pointer("/body/bytes")
                .and_then(Value::as_str)
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default(),
        };
        return Decision::Direct {
            status: d
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(200),
            body,
        };
    }
    let dests: Vec<&Value> = http
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let dest = match dests.as_slice() {
        [] => return Decision::NoRoute,
        [only] => *only,
        many => {
            let weight = |d: &Value| d.get("weight").and_then(Value::as_u64).unwrap_or(0);
            let total: u64 = many.iter().map(|d| weight(d)).sum();
            if total == 0 {
                return Decision::ClusterNotFound;
            }
            let mut roll = rng.u64(..total);
            let mut chosen = many[0];
            for d in many {
                if roll < weight(d) {
                    chosen = d;
                    break;
                }
                roll -= weight(d);
            }
            chosen
        }
    };
    match cluster(s, dest, route, s_at(pod, "/metadata/namespace")) {
        Some(endpoints) => Decision::Forward(endpoints),
        None => Decision::ClusterNotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_intersect_to_the_narrower_of_each_pair() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            intersect(&s(&["*.foo.com"]), &s(&["a.foo.com", "bar.com", "foo.com"])),
            s(&["a.foo.com"])
        );
        assert_eq!(
            intersect(&s(&["a.foo.com", "b.net"]), &s(&["*"])),
            s(&["a.foo.com", "b.net"])
        );
        assert_eq!(
            intersect(&s(&["*.com"]), &s(&["*.foo.com"])),
            s(&["*.foo.com"])
        );
        assert_eq!(
            hosts_for_namespace(&s(&["apps/a.com", "b.com", "other/c.com"]), "apps"),
            s(&["a.com", "b.com"])
        );
    }

    #[test]
    fn names_resolve_as_istiod_resolves_them() {
        assert_eq!(gateway_name("gw", "apps"), "apps/gw");
        assert_eq!(gateway_name("edge/gw", "apps"), "edge/gw");
        assert_eq!(gateway_name("gw.edge.svc.cluster.local", "apps"), "edge/gw");
        assert_eq!(gateway_name("mesh", "apps"), "mesh");
        assert_eq!(resolve_host("web", "apps"), "web.apps.svc.cluster.local");
        assert_eq!(resolve_host("web.apps", "x"), "web.apps");
        assert_eq!(strip_port("Example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn string_and_header_matches_follow_envoy() {
        let m = |v: Value| v;
        assert!(string_match(
            &m(serde_json::json!({"regex": "/v[0-9]+"})),
            "/v12",
            false
        ));
        assert!(!string_match(
            &m(serde_json::json!({"regex": "/v[0-9]+"})),
            "/v12/x",
            false
        ));
        assert!(string_match(
            &m(serde_json::json!({"prefix": "/API"})),
            "/api/x",
            true
        ));
        let exact = serde_json::json!({"exact": "a"});
        let present = serde_json::json!({});
        assert!(header_match(&exact, Some("a"), false));
        assert!(!header_match(&exact, None, false));
        assert!(
            !header_match(&exact, None, true),
            "missing header fails an inverted value match"
        );
        assert!(header_match(&present, None, true));
        assert!(header_match(&exact, Some("b"), true));
        assert_eq!(query_param("/p?a=1&b=two", "b"), Some("two"));
    }

    #[test]
    fn gateway_ports_resolve_through_the_services_target_ports() {
        let mut s = Store::new();
        s.create(
            &res("namespaces"),
            "",
            serde_json::json!({"metadata": {"name": "gw"}}),
        )
        .expect("namespace");
        let pod = s
            .create(
                &res("pods"),
                "gw",
                serde_json::json!({"metadata": {"name": "gw-1", "labels": {"istio": "ingress"}},
                    "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2:1.29.6",
                        "ports": [{"containerPort": 8080, "name": "http-alt"}]}]}}),
            )
            .expect("pod");
        s.create(
            &res("services"),
            "gw",
            serde_json::json!({"metadata": {"name": "gw"}, "spec": {"selector": {"istio": "ingress"},
                "ports": [{"port": 80, "targetPort": "http-alt"}]}}),
        )
        .expect("service");
        let gateway = |s: &mut Store, name: &str, number: u16, protocol: &str| {
            s.create(
                &istio("gateways", "Gateway"),
                "gw",
                serde_json::json!({"metadata": {"name": name}, "spec": {"selector": {"istio": "ingress"},
                    "servers": [{"port": {"number": number, "protocol": protocol}, "hosts": ["*"]}]}}),
            )
            .expect("gateway");
        };
        gateway(&mut s, "web", 80, "HTTP");
        // Port 80 names the Service port: Envoy listens on its target, 8080.
        assert_eq!(listener(&s, &pod, 8080), Listener::Http);
        assert_eq!(listener(&s, &pod, 80), Listener::None);
        // No Service port 9443: the number itself; a TLS server there is not served.
        gateway(&mut s, "tls", 9443, "HTTPS");
        assert_eq!(listener(&s, &pod, 9443), Listener::Other);
    }

    #[test]
    fn proxy_versions_come_from_the_image_tag() {
        let pod = serde_json::json!({"metadata": {"name": "p", "namespace": "n",
            "annotations": {"istio.io/rev": "1-29-6"}},
            "spec": {"initContainers": [{"name": "istio-proxy", "image": "reg:5000/istio/proxyv2:1.29.6@sha256:ab"}],
                     "containers": [{"name": "app", "image": "app:1"}]}});
        let id = identity(&pod);
        assert_eq!(
            (id.revision.as_str(), id.proxy_version.as_str()),
            ("1-29-6", "1.29.6")
        );
        let bare = serde_json::json!({"spec": {"containers": [{"name": "istio-proxy", "image": "reg:5000/proxyv2"}]}});
        assert_eq!(identity(&bare).proxy_version, "");
    }
}
