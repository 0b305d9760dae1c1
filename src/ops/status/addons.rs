//! The addons part of `status`: each addon the spec enables, whether its workloads are ready
//! (what its `ready:` list names, in its namespace), and the `paddock open` that reaches its
//! web UI.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use serde::Serialize;

use crate::drivers::kube::Kube;
use crate::spec::types::{Addon, WorkloadKind};

/// One enabled addon, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddonRow {
    pub name: String,
    pub namespace: String,
    /// `ready`, `not ready` (a workload without a ready replica) or `not installed` (one
    /// missing).
    pub state: String,
    pub ready: bool,
    /// The command that opens its web UI, when paddock knows it.
    pub open: Option<String>,
}

/// The rows of the addons `enabled` in cluster `cluster`, read from the API.
pub async fn rows(kube: &Kube, cluster: &str, enabled: &[Addon]) -> Vec<AddonRow> {
    let mut out = Vec::new();
    for addon in enabled {
        let mut state = "ready";
        for w in &addon.ready {
            match ready_replicas(kube, &addon.namespace, &w.kind, &w.name).await {
                None => state = "not installed",
                Some(0) if state == "ready" => state = "not ready",
                Some(_) => {}
            }
        }
        out.push(row(cluster, addon, state));
    }
    out
}

fn row(cluster: &str, addon: &Addon, state: &str) -> AddonRow {
    AddonRow {
        name: addon.name.clone(),
        namespace: addon.namespace.clone(),
        state: state.to_string(),
        ready: state == "ready",
        open: crate::ops::open::ui(&addon.name)
            .map(|u| format!("paddock open {cluster} {}", u.addon)),
    }
}

/// A workload's ready replicas; `None` when it does not exist (or cannot be read).
async fn ready_replicas(kube: &Kube, ns: &str, kind: &WorkloadKind, name: &str) -> Option<i32> {
    match kind {
        WorkloadKind::Deployment => {
            ready_of::<Deployment>(kube, ns, name, |d| d.status?.ready_replicas).await
        }
        WorkloadKind::StatefulSet => {
            ready_of::<StatefulSet>(kube, ns, name, |s| s.status?.ready_replicas).await
        }
        WorkloadKind::DaemonSet => {
            ready_of::<DaemonSet>(kube, ns, name, |d| Some(d.status?.number_ready)).await
        }
    }
}

async fn ready_of<K>(kube: &Kube, ns: &str, name: &str, ready: fn(K) -> Option<i32>) -> Option<i32>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object = kube.get_in::<K>(ns, name).await.ok().flatten()?;
    Some(ready(object).unwrap_or(0))
}
