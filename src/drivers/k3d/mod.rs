//! k3d facts paddock computes with: the generated `k3d.io/v1alpha5` config and the host ports a
//! cluster claims. Pure functions; running `k3d` is the driver's job.

use serde_json::{Map, Value, json};

use crate::spec::ClusterSpec;
use crate::spec::yaml::FieldPath;

pub mod cli;

pub const API_VERSION: &str = "k3d.io/v1alpha5";
pub const KIND: &str = "Simple";
/// Docker label on every node container of a cluster paddock created.
pub const MANAGED_LABEL: &str = "dev.paddock.managed";
/// Docker label carrying the paddock cluster name.
pub const CLUSTER_LABEL: &str = "dev.paddock.cluster";
pub const DISABLE_TRAEFIK: &str = "--disable=traefik";

/// The k3d config paddock pipes to `k3d cluster create NAME --config -`: the spec's `k3d`
/// section plus what paddock owns (name, ownership labels, Traefik disabled so the Istio
/// gateway can own ports 80/443).
pub fn config(cluster: &ClusterSpec) -> Value {
    let mut cfg = Map::new();
    cfg.insert("apiVersion".into(), json!(API_VERSION));
    cfg.insert("kind".into(), json!(KIND));
    cfg.insert("metadata".into(), json!({ "name": cluster.name }));
    for (k, v) in &cluster.body.k3d {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            cfg.insert(k.clone(), v.clone());
        }
    }
    let options = object_at(&mut cfg, "options");
    let k3s = object_at(options, "k3s");
    let extra = array_at(k3s, "extraArgs");
    let has_traefik_arg = extra.iter().any(|a| {
        a.get("arg")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("--disable=traefik"))
    });
    if !has_traefik_arg {
        extra.push(json!({ "arg": DISABLE_TRAEFIK, "nodeFilters": ["server:*"] }));
    }
    let caches = cluster
        .body
        .caches
        .as_ref()
        .map(|c| c.registries())
        .unwrap_or_default();
    let runtime = object_at(options, "runtime");
    let labels = array_at(runtime, "labels");
    for label in [
        format!("{MANAGED_LABEL}=true"),
        format!("{CLUSTER_LABEL}={}", cluster.name),
    ] {
        if !labels
            .iter()
            .any(|l| l.get("label").and_then(Value::as_str) == Some(label.as_str()))
        {
            labels.push(json!({ "label": label, "nodeFilters": ["all"] }));
        }
    }
    if !caches.is_empty() {
        let registries = object_at(&mut cfg, "registries");
        let used = array_at(registries, "use");
        for c in &caches {
            let r = json!(format!("k3d-{}:{}", c.name, c.port));
            if !used.contains(&r) {
                used.push(r);
            }
        }
        if !registries.contains_key("config") {
            let mut mirrors = String::from("mirrors:\n");
            for c in &caches {
                mirrors.push_str(&format!(
                    "  \"{}\":\n    endpoint:\n      - http://k3d-{}:5000\n",
                    c.host, c.name
                ));
            }
            registries.insert("config".into(), json!(mirrors));
        }
    }
    Value::Object(cfg)
}

fn object_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("slot was just made an object"),
    }
}

fn array_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("slot was just made an array"),
    }
}

/// A port mapping from k3d's `ports[].port` syntax `[HOST:][HOSTPORT:]CONTAINERPORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    /// Host ports (a range expands); empty when Docker picks one.
    pub host_ports: Vec<u16>,
    pub container_ports: Vec<u16>,
    pub protocol: String,
}

/// Why a port mapping is not k3d's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("unknown protocol `{0}`; use tcp, udp or sctp")]
    Protocol(String),
    #[error("`{0}` is not `[HOST:][HOSTPORT:]CONTAINERPORT[/PROTO]`")]
    Shape(String),
    #[error("`{0}`: host and container port ranges differ in length")]
    Lengths(String),
    #[error("`{0}` is not a port number (1-65535)")]
    Number(String),
    #[error("port range `{0}` runs backwards")]
    Backwards(String),
}

/// Parse k3d's port syntax.
pub fn parse_port(spec: &str) -> Result<PortMapping, PortError> {
    let (addr, protocol) = match spec.rsplit_once('/') {
        Some((a, p)) if matches!(p, "tcp" | "udp" | "sctp") => (a, p.to_string()),
        Some((_, p)) => return Err(PortError::Protocol(p.to_string())),
        None => (spec, "tcp".to_string()),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(ip.to_string()), (!h.is_empty()).then_some(*h), *c),
        _ => return Err(PortError::Shape(spec.to_string())),
    };
    let container_ports = parse_range(container)?;
    let host_ports = match host {
        Some(h) => parse_range(h)?,
        None => Vec::new(),
    };
    if !host_ports.is_empty() && host_ports.len() != container_ports.len() {
        return Err(PortError::Lengths(spec.to_string()));
    }
    Ok(PortMapping {
        host_ip,
        host_ports,
        container_ports,
        protocol,
    })
}

fn parse_range(text: &str) -> Result<Vec<u16>, PortError> {
    let one = |s: &str| -> Result<u16, PortError> {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| PortError::Number(s.to_string()))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(PortError::Backwards(text.to_string()));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![one(text)?]),
    }
}

/// A host port claimed by a cluster's k3d config, with the field that claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortClaim {
    pub port: u16,
    /// Path inside the `k3d` section.
    pub field: FieldPath,
}

/// Every host port the `k3d` section publishes (`ports[]`, `kubeAPI.hostPort`,
/// `registries.create.hostPort`). Unparseable entries are skipped; validation reports them.
pub fn host_port_claims(k3d: &Map<String, Value>) -> Vec<HostPortClaim> {
    let mut out = Vec::new();
    if let Some(ports) = k3d.get("ports").and_then(Value::as_array) {
        for (i, p) in ports.iter().enumerate() {
            if let Some(Ok(m)) = p.get("port").and_then(Value::as_str).map(parse_port) {
                for port in m.host_ports {
                    out.push(HostPortClaim {
                        port,
                        field: FieldPath::parse("ports").index(i).key("port"),
                    });
                }
            }
        }
    }
    for (path, value) in [
        (
            "kubeAPI.hostPort",
            k3d.get("kubeAPI").and_then(|a| a.get("hostPort")),
        ),
        (
            "registries.create.hostPort",
            k3d.get("registries")
                .and_then(|r| r.get("create"))
                .and_then(|c| c.get("hostPort")),
        ),
    ] {
        if let Some(port) = value
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u16>().ok())
        {
            out.push(HostPortClaim {
                port,
                field: FieldPath::parse(path),
            });
        }
    }
    out
}

/// The host port that reaches container port `container` through the load balancer.
pub fn published_port(k3d: &Map<String, Value>, container: u16) -> Option<u16> {
    let ports = k3d.get("ports")?.as_array()?;
    ports.iter().find_map(|p| {
        let filters = p.get("nodeFilters").and_then(Value::as_array);
        let via_lb = filters.is_none_or(|f| f.iter().any(|x| x.as_str() == Some("loadbalancer")));
        let m = parse_port(p.get("port")?.as_str()?).ok()?;
        let i = m.container_ports.iter().position(|c| *c == container)?;
        via_lb.then(|| m.host_ports.get(i).copied()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_syntax_table() {
        let ok = [
            ("80", None, vec![], vec![80]),
            ("8080:80", None, vec![8080], vec![80]),
            ("127.0.0.1:8080:80", Some("127.0.0.1"), vec![8080], vec![80]),
            (
                "127.0.0.1:8080:80/tcp",
                Some("127.0.0.1"),
                vec![8080],
                vec![80],
            ),
            (
                "30000-30002:30000-30002",
                None,
                vec![30000, 30001, 30002],
                vec![30000, 30001, 30002],
            ),
        ];
        for (text, ip, host, container) in ok {
            let m = parse_port(text).expect(text);
            assert_eq!(m.host_ip.as_deref(), ip, "{text}");
            assert_eq!(m.host_ports, host, "{text}");
            assert_eq!(m.container_ports, container, "{text}");
        }
        for bad in [
            "",
            "x:80",
            "8080:80/http",
            "0:80",
            "70000:80",
            "1:2:3:4",
            "9-8:9-8",
            "1-3:80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad} should be rejected");
        }
    }
}
