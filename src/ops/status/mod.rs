//! `status`: where a cluster stands — nodes, Istio revisions and tags, each namespace's
//! revision, each workload's injected revision, proxy version and whether it needs a restart
//! (ISTIO.md's rule), Helm releases and addons, and the URLs to reach the cluster.

mod addons;

pub use addons::AddonRow;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;

use crate::drivers::helm::cli::Helm;
use crate::drivers::k3d::cli::K3d;
use crate::drivers::kube as driver;
use crate::drivers::toolchain::Toolchain;
use crate::mesh;
use crate::ops::restart::{self, Mesh};
use crate::ops::up;

/// Why a cluster's status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool paddock needs is missing; the message says how to install it.
    #[error(transparent)]
    MissingTool(#[from] crate::drivers::toolchain::Missing),
    /// Finding the cluster or connecting to its API failed; the error names the step.
    #[error(transparent)]
    Connect(up::Error),
    #[error("failed to read {kind} objects")]
    List {
        kind: &'static str,
        #[source]
        source: driver::Error,
    },
    /// Reading the mesh (injectors, namespaces) failed; the error names what.
    #[error(transparent)]
    Mesh(restart::Error),
}

/// A cluster's status, as `status --output json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub cluster: String,
    /// Exactly when `live` is there.
    pub running: bool,
    pub owned: bool,
    /// What the API says; only a running cluster has it.
    #[serde(flatten)]
    pub live: Option<Live>,
    pub urls: Urls,
}

pub use crate::ops::access::Urls;

/// What a running cluster's API, and helm, report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// The hash of the spec paddock last applied (from its in-cluster record).
    pub spec_hash: Option<String>,
    pub nodes: Vec<NodeRow>,
    pub revisions: Vec<RevisionRow>,
    /// Tag → revision.
    pub tags: BTreeMap<String, String>,
    pub namespaces: Vec<NamespaceRow>,
    pub workloads: Vec<WorkloadRow>,
    pub releases: Vec<ReleaseRow>,
    /// The addons the spec enables, whether they are ready and how to open them.
    pub addons: Vec<AddonRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub ready: bool,
    /// `server` or `agent`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRow {
    /// "" for the unrevisioned control plane.
    pub revision: String,
    /// The tag of the proxy image it injects ("" when unknown).
    pub version: String,
    /// Its istiod Deployment.
    pub istiod: String,
    pub ready: bool,
    pub proxy_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceRow {
    pub name: String,
    /// The label that picks its injector, as `key=value`.
    pub selects: String,
    /// The revision its new pods get, `None` when not injected.
    pub revision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRow {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// Pods that run on (not terminating).
    pub pods: u64,
    pub terminating: u64,
    /// Each distinct injected revision of its running pods (`None`: not injected).
    pub revisions: Vec<Option<String>>,
    /// Each distinct proxy version of its running pods (`None`: no proxy).
    pub proxy_versions: Vec<Option<String>>,
    pub expected_revision: Option<String>,
    pub needs_restart: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    pub name: String,
    pub namespace: String,
    pub chart: String,
    pub status: String,
}

/// Namespaces whose pods are the platform's, not the user's workloads.
const SYSTEM: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "paddock-system",
];

/// Collect a cluster's status; `addons` are the addons its spec enables (none when the spec
/// cannot be read).
pub async fn collect(
    cx: &crate::ops::Context,
    cluster: &str,
    addons: &[crate::spec::types::Addon],
) -> Result<Status, Error> {
    let tools = &cx.tools;
    let k3d = K3d::new(tools.need_k3d()?);
    let info = up::find_existing(&k3d, cluster)
        .await
        .map_err(Error::Connect)?;
    let urls = Urls {
        ingress: info.host_port(80).map(|p| format!("http://127.0.0.1:{p}/")),
        ingress_tls: info
            .host_port(443)
            .map(|p| format!("https://127.0.0.1:{p}/")),
    };
    let owned = info.owned();
    if !info.running() {
        return Ok(Status {
            cluster: cluster.to_string(),
            running: false,
            owned,
            live: None,
            urls,
        });
    }
    let c = up::connect(&k3d, tools, info)
        .await
        .map_err(Error::Connect)?;
    Ok(Status {
        cluster: cluster.to_string(),
        running: true,
        owned,
        live: Some(live(&c, tools, addons).await?),
        urls,
    })
}

/// What the API and helm say about a running cluster.
async fn live(
    c: &up::Connected,
    tools: &Toolchain,
    enabled: &[crate::spec::types::Addon],
) -> Result<Live, Error> {
    let kube = &c.kube;
    let nodes = kube
        .list::<Node>()
        .await
        .map_err(|source| Error::List {
            kind: "Node",
            source,
        })?
        .iter()
        .map(node_row)
        .collect();
    let view = Mesh::read(kube).await.map_err(Error::Mesh)?;
    let deployments = kube
        .list_in::<Deployment>("istio-system")
        .await
        .unwrap_or_default();
    let pods = kube.list::<Pod>().await.map_err(|source| Error::List {
        kind: "Pod",
        source,
    })?;
    let helm = match tools.helm.as_deref() {
        Some(bin) => Helm::detect(bin).await.ok(),
        None => None,
    };
    let releases = match &helm {
        Some(h) => h.list(&c.kubeconfig).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let record = kube.record().await.ok().flatten();
    let addons = addons::rows(kube, &c.info.name, enabled).await;
    Ok(Live {
        spec_hash: record.map(|r| r.spec_hash),
        nodes,
        revisions: revision_rows(&view, &deployments),
        tags: view.injectors.tags.clone(),
        namespaces: namespace_rows(&view),
        workloads: workload_rows(&pods, &view),
        releases: releases
            .into_iter()
            .map(|r| ReleaseRow {
                name: r.name,
                namespace: r.namespace,
                chart: r.chart,
                status: r.status,
            })
            .collect(),
        addons,
    })
}

fn node_row(n: &Node) -> NodeRow {
    let role = if mesh::labels_of(&n.metadata).contains_key("node-role.kubernetes.io/control-plane")
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
    NodeRow {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready,
        role: role.to_string(),
    }
}

/// Each revision with an injector, its istiod Deployment (among `deployments`) and its image.
fn revision_rows(view: &Mesh, deployments: &[Deployment]) -> Vec<RevisionRow> {
    view.injectors
        .revisions
        .iter()
        .map(|rev| {
            let istiod = if rev.is_empty() {
                "istiod".to_string()
            } else {
                format!("istiod-{rev}")
            };
            let ready = deployments
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(istiod.as_str()))
                .is_some_and(|d| {
                    d.status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                        > 0
                });
            let image = view.images.get(rev).cloned();
            RevisionRow {
                revision: rev.clone(),
                version: image
                    .as_deref()
                    .map(mesh::image_tag)
                    .unwrap_or_default()
                    .to_string(),
                istiod,
                ready,
                proxy_image: image,
            }
        })
        .collect()
}

/// The user's namespaces and the revision each one's new pods get.
fn namespace_rows(view: &Mesh) -> Vec<NamespaceRow> {
    view.namespaces
        .iter()
        .filter(|(n, _)| !SYSTEM.contains(&n.as_str()))
        .map(|(n, l)| {
            let selects = if let Some(v) = l.get("istio-injection") {
                format!("istio-injection={v}")
            } else if let Some(r) = l.get("istio.io/rev") {
                format!("istio.io/rev={r}")
            } else {
                "no injection label".to_string()
            };
            NamespaceRow {
                name: n.clone(),
                selects,
                revision: mesh::resolve(l, &BTreeMap::new(), &view.injectors),
            }
        })
        .collect()
}

/// One row per workload of the user's pods: what its pods run and whether they need a
/// restart. A terminating pod is counted apart: its proxy is not what the workload runs.
fn workload_rows(pods: &[Pod], view: &Mesh) -> Vec<WorkloadRow> {
    let mut rows: BTreeMap<(String, String, String), WorkloadRow> = BTreeMap::new();
    for pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if SYSTEM.contains(&ns.as_str()) {
            continue;
        }
        let (kind, name) = restart::workload_of(pod);
        let row = rows
            .entry((ns.clone(), kind.clone(), name.clone()))
            .or_insert_with(|| WorkloadRow {
                namespace: ns,
                kind: kind.clone(),
                name,
                pods: 0,
                terminating: 0,
                revisions: Vec::new(),
                proxy_versions: Vec::new(),
                expected_revision: view.expected_revision(pod),
                needs_restart: false,
                reasons: Vec::new(),
            });
        if mesh::terminating(pod) {
            row.terminating += 1;
            continue;
        }
        row.pods += 1;
        let proxy = mesh::proxy_of(pod);
        push_new(&mut row.revisions, proxy.revision);
        push_new(
            &mut row.proxy_versions,
            proxy
                .image
                .as_deref()
                .map(|i| mesh::image_tag(i).to_string()),
        );
        let reason = if kind == "Job" {
            None
        } else {
            view.restart_reason(pod)
        };
        if let Some(r) = reason {
            push_new(&mut row.reasons, r);
            row.needs_restart = true;
        }
    }
    rows.into_values().collect()
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The human-readable status.
pub fn text(s: &Status) -> String {
    let mut out = String::new();
    let cluster = &s.cluster;
    let Some(live) = s.live.as_ref().filter(|_| s.running) else {
        out.push_str(&format!("cluster {cluster}: stopped\n"));
        return out;
    };
    out.push_str(&format!(
        "cluster {cluster}: running{}\n",
        if s.owned {
            ""
        } else {
            " (not created by paddock)"
        }
    ));
    out.push_str("\nnodes\n");
    for n in &live.nodes {
        out.push_str(&format!(
            "  {:<32} {:<7} {}\n",
            n.name,
            n.role,
            if n.ready { "Ready" } else { "NotReady" }
        ));
    }
    out.push_str("\nistio revisions\n");
    for r in &live.revisions {
        out.push_str(&format!(
            "  {:<12} {:<10} {}\n",
            r.revision,
            r.version,
            if r.ready { "ready" } else { "NOT READY" }
        ));
    }
    out.push_str("\ntags\n");
    for (t, r) in &live.tags {
        out.push_str(&format!("  {t:<12} → {r}\n"));
    }
    out.push_str("\nnamespaces\n");
    for n in &live.namespaces {
        out.push_str(&format!(
            "  {:<24} {:<28} → {}\n",
            n.name,
            n.selects,
            n.revision.as_deref().unwrap_or("not injected")
        ));
    }
    out.push_str("\nworkloads\n");
    for w in &live.workloads {
        out.push_str(&workload_line(w));
    }
    out.push_str("\nhelm releases\n");
    for r in &live.releases {
        out.push_str(&format!(
            "  {:<20} {:<16} {:<28} {}\n",
            r.name, r.namespace, r.chart, r.status
        ));
    }
    out.push_str("\nurls\n");
    for (k, v) in s.urls.entries() {
        out.push_str(&format!("  {k:<12} {v}\n"));
    }
    out
}

/// One workload's line (and its restart reasons) in `status`'s text.
fn workload_line(w: &WorkloadRow) -> String {
    let revs: Vec<&str> = w
        .revisions
        .iter()
        .map(|r| r.as_deref().unwrap_or("none"))
        .collect();
    let vers: Vec<&str> = w
        .proxy_versions
        .iter()
        .map(|v| v.as_deref().unwrap_or("-"))
        .collect();
    let flag = if w.needs_restart {
        "NEEDS RESTART"
    } else {
        "ok"
    };
    let terminating = match w.terminating {
        0 => String::new(),
        n => format!(", {n} terminating"),
    };
    let mut out = format!(
        "  {}/{} {} ({} pods{terminating}): revision {}, proxy {}, {flag}\n",
        w.namespace,
        w.name,
        w.kind,
        w.pods,
        revs.join(","),
        vers.join(",")
    );
    for r in &w.reasons {
        out.push_str(&format!("      {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
