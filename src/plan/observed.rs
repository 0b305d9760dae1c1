//! What exists: the observed state the planner compares a spec with. Drivers fill it in; the
//! planner only reads it. "Could not tell" is an error from the drivers and never reads as
//! "absent".

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::drivers::helm::cli::ReleaseInfo;

/// What paddock knows about a cluster before planning.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum ClusterState {
    /// No k3d cluster of that name exists.
    Absent,
    /// The cluster runs and paddock could read it.
    Present(Box<Observed>),
}

/// A running cluster as read through k3d, helm and the Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    /// paddock's in-cluster record, absent until a first `up` finished.
    pub record: Option<Record>,
    /// Every Helm release, whatever its status.
    pub releases: Vec<ReleaseInfo>,
    /// Namespace → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Namespace → the label keys paddock applied to it last (its server-side apply
    /// ownership, `metadata.managedFields`): a key here the spec no longer asks for is removed
    /// by applying again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied_labels: BTreeMap<String, BTreeSet<String>>,
    /// Revision tag → revision, from the tag webhooks.
    pub tags: BTreeMap<String, String>,
}

impl ClusterState {
    pub fn describe(&self) -> &'static str {
        match self {
            ClusterState::Absent => "does not exist yet",
            ClusterState::Present(o) if o.record.is_some() => "exists and was set up by paddock",
            ClusterState::Present(_) => "exists; paddock's setup did not finish",
        }
    }
}

/// paddock's in-cluster record of what it applied (ConfigMap `paddock-system/paddock`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Record {
    pub spec_hash: String,
    /// Release name → `{chart, repo, version, values}` as last installed by paddock.
    pub releases: BTreeMap<String, Value>,
    /// The k3d config the cluster was created from.
    pub k3d: Value,
    /// The Istio version installed (empty without Istio).
    pub istio_version: String,
    /// The revision serving it (differs from the version's after an in-place upgrade).
    pub istio_revision: String,
    /// Hash of everything applied with server-side apply (workloads, addon manifests).
    pub applied_hash: String,
    /// Local images imported into the nodes.
    pub images: Vec<String>,
}
