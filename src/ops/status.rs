//! `status`: where a cluster stands — nodes, Istio revisions and tags, each namespace's
//! revision, each workload's injected revision, proxy version and whether it needs a restart
//! (ISTIO.md's rule), Helm releases and addons, and the URLs to reach the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::drivers::helm::cli::Helm;
use crate::drivers::k3d::cli::K3d;
use crate::drivers::toolchain::Toolchain;
use crate::mesh;
use crate::ops::up::{self, Error};

/// Namespaces whose pods are the platform's, not the user's workloads.
const SYSTEM: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "paddock-system",
];

fn list_failed(kind: &str) -> impl FnOnce(crate::drivers::kube::Error) -> Error {
    move |e| Error::Failed(format!("failed to read {kind} objects: {e}"))
}

/// A workload's status row before its pods are counted in.
fn workload_entry(ns: &str, kind: &str, name: &str, expected_revision: Option<String>) -> Value {
    json!({"namespace": ns, "kind": kind, "name": name, "pods": 0, "terminating": 0,
        "revisions": [], "proxyVersions": [], "expectedRevision": expected_revision,
        "needsRestart": false, "reasons": []})
}

/// Collect a cluster's status as JSON.
pub async fn collect(cluster: &str, tools: &Toolchain) -> Result<Value, Error> {
    let k3d = K3d::new(tools.need_k3d()?);
    let info = k3d
        .find(cluster)
        .await
        .map_err(|e| {
            Error::Failed(format!(
                "could not tell whether cluster {cluster} exists: {e}"
            ))
        })?
        .ok_or_else(|| {
            Error::Failed(format!(
                "cluster {cluster} does not exist; `paddock up {cluster}` creates it"
            ))
        })?;
    let mut urls = serde_json::Map::new();
    if let Some(p) = info.host_port(80) {
        urls.insert("ingress".into(), json!(format!("http://127.0.0.1:{p}/")));
    }
    if let Some(p) = info.host_port(443) {
        urls.insert(
            "ingressTls".into(),
            json!(format!("https://127.0.0.1:{p}/")),
        );
    }
    if !info.running() {
        return Ok(
            json!({"cluster": cluster, "running": false, "owned": info.owned(), "urls": urls}),
        );
    }
    let owned = info.owned();
    let c = up::connect(&k3d, tools, info).await?;
    let kube = &c.kube;
    let nodes: Vec<Value> = kube
        .list::<Node>()
        .await
        .map_err(list_failed("Node"))?
        .iter()
        .map(|n| {
            let role = if mesh::labels_of(&n.metadata)
                .contains_key("node-role.kubernetes.io/control-plane")
            {
                "server"
            } else {
                "agent"
            };
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            json!({"name": n.metadata.name.as_deref().unwrap_or_default(), "ready": ready, "role": role})
        })
        .collect();
    let view = crate::ops::restart::Mesh::read(kube)
        .await
        .map_err(|e| Error::Failed(crate::ops::chain(&e)))?;
    let image_of = |rev: &str| view.images.get(rev).cloned();
    let deployments = kube
        .list_in::<Deployment>("istio-system")
        .await
        .unwrap_or_default();
    let mut revisions = Vec::new();
    for rev in &view.injectors.revisions {
        let dname = if rev.is_empty() {
            "istiod".to_string()
        } else {
            format!("istiod-{rev}")
        };
        let d = deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(dname.as_str()));
        let image = image_of(rev);
        revisions.push(json!({
            "revision": rev,
            "version": image.as_deref().map(mesh::image_tag).unwrap_or_default(),
            "istiod": dname,
            "ready": d.is_some_and(|d| d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) > 0),
            "proxyImage": image,
        }));
    }
    let mut namespaces = Vec::new();
    for (n, l) in &view.namespaces {
        if SYSTEM.contains(&n.as_str()) {
            continue;
        }
        let via = if l.get("istio-injection").is_some() {
            format!("istio-injection={}", l["istio-injection"])
        } else if let Some(r) = l.get("istio.io/rev") {
            format!("istio.io/rev={r}")
        } else {
            "no injection label".to_string()
        };
        namespaces.push(json!({"name": n, "selects": via,
            "revision": mesh::resolve(l, &BTreeMap::new(), &view.injectors)}));
    }
    let pods = kube.list::<Pod>().await.map_err(list_failed("Pod"))?;
    let mut workloads: BTreeMap<(String, String, String), Value> = BTreeMap::new();
    for pod in &pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if SYSTEM.contains(&ns.as_str()) {
            continue;
        }
        let (kind, wname) = crate::ops::restart::workload_of(pod);
        if mesh::terminating(pod) {
            // On its way out: counted, but its proxy is not what the workload runs.
            let entry = workloads
                .entry((ns.clone(), kind.clone(), wname.clone()))
                .or_insert_with(|| workload_entry(&ns, &kind, &wname, view.expected_revision(pod)));
            entry["terminating"] = json!(entry["terminating"].as_u64().unwrap_or(0) + 1);
            continue;
        }
        let proxy = mesh::proxy_of(pod);
        let expected_rev = view.expected_revision(pod);
        let reason = if kind == "Job" {
            None
        } else {
            view.restart_reason(pod)
        };
        let entry = workloads
            .entry((ns.clone(), kind.clone(), wname.clone()))
            .or_insert_with(|| workload_entry(&ns, &kind, &wname, expected_rev));
        entry["pods"] = json!(entry["pods"].as_u64().unwrap_or(0) + 1);
        let mut push = |key: &str, v: Value| {
            if let Some(a) = entry[key].as_array_mut()
                && !a.contains(&v)
            {
                a.push(v);
            }
        };
        push("revisions", json!(proxy.revision));
        push(
            "proxyVersions",
            json!(proxy.image.as_deref().map(mesh::image_tag)),
        );
        if let Some(r) = reason {
            push("reasons", json!(r));
            entry["needsRestart"] = json!(true);
        }
    }
    let helm = match tools.helm.as_deref() {
        Some(bin) => Helm::detect(bin).await.ok(),
        None => None,
    };
    let releases = match &helm {
        Some(h) => h.list(&c.kubeconfig).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let record = kube.record().await.ok().flatten();
    Ok(json!({
        "cluster": cluster,
        "running": true,
        "owned": owned,
        "specHash": record.as_ref().map(|r| r.spec_hash.clone()),
        "nodes": nodes,
        "revisions": revisions,
        "tags": view.injectors.tags,
        "namespaces": namespaces,
        "workloads": workloads.into_values().collect::<Vec<_>>(),
        "releases": releases.iter().map(|r| json!({"name": r.name, "namespace": r.namespace, "chart": r.chart, "status": r.status})).collect::<Vec<_>>(),
        "urls": urls,
    }))
}

/// The human-readable status.
pub fn text(s: &Value) -> String {
    let mut out = String::new();
    let cluster = s["cluster"].as_str().unwrap_or_default();
    if s["running"] != true {
        out.push_str(&format!("cluster {cluster}: stopped\n"));
        return out;
    }
    out.push_str(&format!(
        "cluster {cluster}: running{}\n",
        if s["owned"] == true {
            ""
        } else {
            " (not created by paddock)"
        }
    ));
    out.push_str("\nnodes\n");
    for n in s["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<32} {:<7} {}\n",
            n["name"].as_str().unwrap_or_default(),
            n["role"].as_str().unwrap_or_default(),
            if n["ready"] == true {
                "Ready"
            } else {
                "NotReady"
            }
        ));
    }
    out.push_str("\nistio revisions\n");
    for r in s["revisions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<12} {:<10} {}\n",
            r["revision"].as_str().unwrap_or_default(),
            r["version"].as_str().unwrap_or_default(),
            if r["ready"] == true {
                "ready"
            } else {
                "NOT READY"
            }
        ));
    }
    out.push_str("\ntags\n");
    for (t, r) in s["tags"].as_object().into_iter().flatten() {
        out.push_str(&format!("  {t:<12} → {}\n", r.as_str().unwrap_or_default()));
    }
    out.push_str("\nnamespaces\n");
    for n in s["namespaces"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<24} {:<28} → {}\n",
            n["name"].as_str().unwrap_or_default(),
            n["selects"].as_str().unwrap_or_default(),
            n["revision"].as_str().unwrap_or("not injected")
        ));
    }
    out.push_str("\nworkloads\n");
    for w in s["workloads"].as_array().into_iter().flatten() {
        let revs: Vec<String> = w["revisions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().unwrap_or("none").to_string())
            .collect();
        let vers: Vec<String> = w["proxyVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().unwrap_or("-").to_string())
            .collect();
        let flag = if w["needsRestart"] == true {
            "NEEDS RESTART"
        } else {
            "ok"
        };
        let terminating = match w["terminating"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(", {n} terminating"),
        };
        out.push_str(&format!(
            "  {}/{} {} ({} pods{terminating}): revision {}, proxy {}, {flag}\n",
            w["namespace"].as_str().unwrap_or_default(),
            w["name"].as_str().unwrap_or_default(),
            w["kind"].as_str().unwrap_or_default(),
            w["pods"],
            revs.join(","),
            vers.join(",")
        ));
        for r in w["reasons"].as_array().into_iter().flatten() {
            out.push_str(&format!("      {}\n", r.as_str().unwrap_or_default()));
        }
    }
    out.push_str("\nhelm releases\n");
    for r in s["releases"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<20} {:<16} {:<28} {}\n",
            r["name"].as_str().unwrap_or_default(),
            r["namespace"].as_str().unwrap_or_default(),
            r["chart"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default()
        ));
    }
    out.push_str("\nurls\n");
    for (k, v) in s["urls"].as_object().into_iter().flatten() {
        out.push_str(&format!("  {k:<12} {}\n", v.as_str().unwrap_or_default()));
    }
    out
}
