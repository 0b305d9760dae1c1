//! Planning: a pure function from a cluster spec and its observed state to a DAG of named,
//! idempotent steps. Independent steps share a group and run concurrently.

mod from_nothing;
pub mod observed;
pub mod upgrade;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::drivers::helm::Release;
use crate::drivers::k3d;
use crate::plan::observed::{ClusterState, Record};
use crate::spec::ClusterSpec;
use crate::spec::types::{CacheRegistry, Injection, WorkloadKind};

/// Namespace holding paddock's in-cluster record of the applied spec.
pub const SYSTEM_NAMESPACE: &str = "paddock-system";

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Stable, unique id such as `helm.install/istiod-1-30-3`.
    pub id: String,
    pub needs: Vec<String>,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Action {
    /// A standalone pull-through cache registry (`k3d registry create`), kept across clusters.
    EnsureRegistry { registry: CacheRegistry },
    /// `k3d cluster create NAME --config -` with the generated config.
    CreateCluster { config: Value },
    /// `k3d image import` of local images into the nodes.
    ImportImages { images: Vec<String> },
    /// Every node reports Ready.
    WaitNodesReady,
    /// CoreDNS has an available replica.
    WaitCoreDns,
    /// `helm upgrade --install` of a release; paddock waits separately.
    HelmInstall { release: Release },
    /// Point revision tags at a revision (rendered from the istiod chart, server-side
    /// applied), then wait for their caBundles.
    ApplyTags {
        repo: String,
        version: String,
        revision: String,
        tags: Vec<String>,
    },
    /// Workloads rolled out and ready (kubectl's rollout rules).
    WaitReady {
        namespace: String,
        workloads: Vec<WorkloadRef>,
        checks: Vec<String>,
        /// Webhook configurations that must carry a caBundle (istiod patched them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ca_bundles: Vec<String>,
        /// Services (in `namespace`) that must have a ready endpoint: what webhooks and
        /// proxies reach, which lags behind ready pods.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        endpoints: Vec<String>,
        /// How long to wait, in seconds.
        timeout_secs: u64,
    },
    /// Create or label a namespace.
    Namespace {
        name: String,
        labels: BTreeMap<String, String>,
    },
    /// Server-side apply of manifests.
    Apply {
        source: String,
        objects: Vec<Value>,
        /// The manifest file each object came from (parallel to `objects`; empty when they
        /// are paddock's own), so a refusal names the file to fix.
        #[serde(skip)]
        origins: Vec<String>,
    },
    /// HTTP through the load balancer's published port, with paddock's probe host, is answered
    /// by the probe route: load balancer → gateway → configuration pushed by istiod.
    VerifyIngress { url: String, host: String },
    /// Record the applied spec, its hash and what was installed in `paddock-system`.
    RecordSpec { record: Record },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub name: String,
}

/// A plan for one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub profile: String,
    pub observed: ClusterState,
    pub spec_hash: String,
    pub steps: Vec<Step>,
    /// Steps grouped by depth in the DAG: every step of a group can run at the same time.
    pub groups: Vec<Vec<String>>,
    /// Addons in install order, grouped by what can install in parallel.
    pub addon_groups: Vec<Vec<String>>,
    /// Things the user should know (insecure dev-only addons).
    pub notes: Vec<String>,
}

/// Content hash of a cluster spec (hex SHA-256 of its canonical JSON).
pub fn spec_hash(spec: &ClusterSpec) -> String {
    let canonical = serde_json::to_vec(&json!({ "body": spec.body, "addons": spec.addons }))
        .unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The namespace labels a namespace spec asks for.
pub fn namespace_labels(ns: &crate::spec::types::NamespaceSpec) -> BTreeMap<String, String> {
    let mut labels = ns.labels.clone();
    if let Some(tag) = ns.effective_tag() {
        labels.insert("istio.io/rev".into(), tag.to_string());
    }
    match ns.injection {
        Some(Injection::Enabled) => {
            labels.insert("istio-injection".into(), "enabled".into());
        }
        Some(Injection::Disabled) => {
            labels.insert("istio-injection".into(), "disabled".into());
        }
        None => {}
    }
    labels
}

impl Action {
    /// Does running this step change the cluster (as opposed to waiting or checking)?
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Action::CreateCluster { .. }
                | Action::EnsureRegistry { .. }
                | Action::ImportImages { .. }
                | Action::HelmInstall { .. }
                | Action::ApplyTags { .. }
                | Action::Namespace { .. }
                | Action::Apply { .. }
                | Action::RecordSpec { .. }
        )
    }
}

/// What paddock records about a release it installed, to tell later whether it changed.
pub fn release_fingerprint(r: &Release) -> Value {
    json!({"chart": r.chart, "repo": r.repo, "version": r.version, "values": r.values})
}

/// Hash of objects applied with server-side apply.
pub fn objects_hash(objects: &[&Value]) -> String {
    let digest = Sha256::digest(serde_json::to_vec(objects).unwrap_or_default());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Plan `up` for a cluster: everything from nothing, or, for a cluster that exists, only
/// what differs from what paddock recorded and what helm and the API report. `applied` are the
/// parsed workload manifests of the spec.
/// `registries` names the registry containers that exist (`k3d-<name>`).
pub fn up(
    spec: &ClusterSpec,
    observed: &ClusterState,
    applied: &[Value],
    registries: &[String],
) -> Plan {
    let mut plan = from_nothing::from_nothing(spec, observed, applied);
    let missing = |step: &Step| match &step.action {
        Action::EnsureRegistry { registry } => {
            !registries.contains(&format!("k3d-{}", registry.name))
        }
        _ => true,
    };
    plan.steps = prune(std::mem::take(&mut plan.steps), missing);
    plan.groups = layers(&plan.steps);
    match observed {
        ClusterState::Absent => plan,
        ClusterState::Present(o) => converge(spec, plan, o),
    }
}

fn record_of(plan: &Plan) -> Option<&Record> {
    plan.steps.iter().find_map(|s| match &s.action {
        Action::RecordSpec { record } => Some(record),
        _ => None,
    })
}

fn is_istio_chart(r: &Release) -> bool {
    matches!(r.chart.as_str(), "base" | "istiod" | "gateway")
}

/// Trim a from-nothing plan to what an existing cluster still needs.
fn converge(spec: &ClusterSpec, mut plan: Plan, o: &crate::plan::observed::Observed) -> Plan {
    let desired = record_of(&plan).cloned().unwrap_or_default();
    let recorded = o.record.as_ref();
    let istio_change = recorded
        .filter(|r| !r.istio_version.is_empty() && r.istio_version != desired.istio_version)
        .map(|r| (r.istio_version.clone(), desired.istio_version.clone()));
    if let Some((from, to)) = &istio_change {
        plan.notes.push(format!(
            "Istio {from} → {to} is an upgrade, not a reinstall: run `paddock upgrade {} --to {to}`; `up` leaves Istio as it is",
            spec.name
        ));
    }
    if let Some(r) = recorded
        && !r.k3d.is_null()
        && r.k3d != k3d::config(spec)
    {
        plan.notes.push(format!(
            "the k3d section changed (node layout, image or ports): that needs a new cluster; run `paddock switchover {}` to replace it blue-green",
            spec.name
        ));
    }
    let installed = |rel: &Release| {
        let chart = format!("{}-{}", rel.chart, rel.version);
        o.releases.iter().any(|h| {
            h.name == rel.name
                && h.namespace == rel.namespace
                && h.status == "deployed"
                && h.chart == chart
        }) && recorded.and_then(|r| r.releases.get(&rel.name)) == Some(&release_fingerprint(rel))
    };
    let keep = |step: &Step| match &step.action {
        Action::CreateCluster { .. } => false,
        Action::EnsureRegistry { .. } => true,
        Action::ApplyTags { revision, tags, .. } => {
            istio_change.is_none() && !tags.iter().all(|t| o.tags.get(t) == Some(revision))
        }
        Action::ImportImages { images } => recorded.is_none_or(|r| &r.images != images),
        Action::HelmInstall { release } => {
            let upgrade_needed = istio_change.is_some() && is_istio_chart(release);
            !upgrade_needed && !installed(release)
        }
        Action::Namespace { name, labels } => {
            let stale = o
                .applied_labels
                .get(name)
                .is_some_and(|applied| applied.iter().any(|k| !labels.contains_key(k)));
            stale
                || o.namespaces
                    .get(name)
                    .is_none_or(|have| labels.iter().any(|(k, v)| have.get(k) != Some(v)))
        }
        Action::Apply { .. } => {
            recorded.map(|r| r.applied_hash.as_str()) != Some(desired.applied_hash.as_str())
        }
        Action::RecordSpec { .. } => istio_change.is_none(),
        Action::WaitNodesReady
        | Action::WaitCoreDns
        | Action::WaitReady { .. }
        | Action::VerifyIngress { .. } => true,
    };
    let changes = plan
        .steps
        .iter()
        .any(|s| s.action.mutates() && !matches!(s.action, Action::RecordSpec { .. }) && keep(s));
    let recorded_same = recorded.is_some_and(|r| r.spec_hash == desired.spec_hash);
    if !changes && (recorded_same || istio_change.is_some()) {
        plan.steps.clear();
    } else {
        plan.steps = prune(std::mem::take(&mut plan.steps), keep);
    }
    plan.groups = layers(&plan.steps);
    plan
}

/// Drop steps, handing each dropped step's needs on to the steps that needed it.
pub fn prune(steps: Vec<Step>, keep: impl Fn(&Step) -> bool) -> Vec<Step> {
    let mut resolved: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for step in steps {
        let mut needs: Vec<String> = Vec::new();
        for n in &step.needs {
            match resolved.get(n) {
                Some(through) => needs.extend(through.iter().cloned()),
                None => needs.push(n.clone()),
            }
        }
        needs.sort();
        needs.dedup();
        if keep(&step) {
            resolved.insert(step.id.clone(), vec![step.id.clone()]);
            out.push(Step { needs, ..step });
        } else {
            resolved.insert(step.id.clone(), needs);
        }
    }
    out
}

/// Group steps by their depth in the DAG (longest chain of needs before them).
pub fn layers(steps: &[Step]) -> Vec<Vec<String>> {
    depth_groups(steps.iter().map(|s| (s.id.as_str(), s.needs.as_slice())))
}

fn addon_layers(spec: &ClusterSpec) -> Vec<Vec<String>> {
    depth_groups(
        spec.addons
            .iter()
            .map(|a| (a.name.as_str(), a.needs.as_slice())),
    )
}

/// Items must come after everything they need (as plans and ordered addons do).
fn depth_groups<'a>(items: impl Iterator<Item = (&'a str, &'a [String])>) -> Vec<Vec<String>> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (id, needs) in items {
        let d = needs
            .iter()
            .filter_map(|n| depth.get(n.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(id, d);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(id.to_string());
    }
    out
}
