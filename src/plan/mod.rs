//! Planning: a pure function from a cluster spec and its observed state to a DAG of named,
//! idempotent steps. Independent steps share a group and run concurrently.

pub mod observed;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::drivers::helm::{self, Release};
use crate::drivers::k3d;
use crate::mesh::istio;
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

struct Builder {
    steps: Vec<Step>,
}

/// What "installed" waits for after a release.
#[derive(Default)]
struct Readiness {
    workloads: Vec<WorkloadRef>,
    checks: Vec<String>,
    ca_bundles: Vec<String>,
    endpoints: Vec<String>,
    timeout_secs: u64,
}

impl Builder {
    /// `helm.install/NAME` after `after`, then `kube.wait/NAME` after the install; returns the
    /// wait step's id.
    fn install_and_wait(&mut self, release: Release, after: &[&str], ready: Readiness) -> String {
        let Readiness {
            workloads,
            checks,
            ca_bundles,
            endpoints,
            timeout_secs,
        } = ready;
        let name = release.name.clone();
        let namespace = release.namespace.clone();
        let install = self.add(
            format!("helm.install/{name}"),
            after,
            Action::HelmInstall { release },
        );
        self.add(
            format!("kube.wait/{name}"),
            &[&install],
            Action::WaitReady {
                namespace,
                workloads,
                checks,
                ca_bundles,
                endpoints,
                timeout_secs,
            },
        )
    }

    fn add(&mut self, id: String, needs: &[&str], action: Action) -> String {
        self.steps.push(Step {
            id: id.clone(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            action,
        });
        id
    }
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
    let mut plan = from_nothing(spec, observed, applied);
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

fn from_nothing(spec: &ClusterSpec, observed: &ClusterState, applied: &[Value]) -> Plan {
    let mut b = Builder { steps: Vec::new() };
    let caches: Vec<String> = spec
        .body
        .caches
        .as_ref()
        .map(|c| c.registries())
        .unwrap_or_default()
        .into_iter()
        .map(|registry| {
            b.add(
                format!("k3d.registry/{}", registry.name),
                &[],
                Action::EnsureRegistry { registry },
            )
        })
        .collect();
    let cache_refs: Vec<&str> = caches.iter().map(String::as_str).collect();
    let create = b.add(
        format!("k3d.create/{}", spec.name),
        &cache_refs,
        Action::CreateCluster {
            config: k3d::config(spec),
        },
    );
    let nodes = b.add("kube.wait/nodes".into(), &[&create], Action::WaitNodesReady);
    let dns = b.add("kube.wait/coredns".into(), &[&nodes], Action::WaitCoreDns);
    let mut finals = vec![dns.clone()];
    if !spec.body.images.is_empty() {
        finals.push(b.add(
            "k3d.import".into(),
            &[&nodes],
            Action::ImportImages {
                images: spec.body.images.clone(),
            },
        ));
    }

    let mut namespace_steps = Vec::new();
    for ns in &spec.body.namespaces {
        namespace_steps.push(b.add(
            format!("kube.namespace/{}", ns.name),
            &[&dns],
            Action::Namespace {
                name: ns.name.clone(),
                labels: namespace_labels(ns),
            },
        ));
    }

    let releases = istio::releases(spec);
    let mut base_step = None;
    let mut istiod_ready = None;
    let mut gateway_ready = Vec::new();
    for rel in releases {
        match rel.chart.as_str() {
            "base" => {
                base_step = Some(b.add(
                    format!("helm.install/{}", rel.name),
                    &[&dns],
                    Action::HelmInstall { release: rel },
                ));
            }
            "istiod" => {
                let base = base_step.clone().unwrap_or_else(|| dns.clone());
                let name = rel.name.clone();
                let checks = vec![
                    format!("Service {name} has ready endpoints"),
                    format!(
                        "MutatingWebhookConfiguration istio-sidecar-injector-{} has a caBundle",
                        name.trim_start_matches("istiod-")
                    ),
                ];
                let tags = spec
                    .body
                    .istio
                    .as_ref()
                    .map(istio::tags_of)
                    .unwrap_or_default();
                let ca_bundles = vec![format!(
                    "istio-sidecar-injector-{}",
                    name.trim_start_matches("istiod-")
                )];
                let revision = name.trim_start_matches("istiod-").to_string();
                let (repo, version) = (rel.repo.clone(), rel.version.clone());
                let workloads = vec![WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: name.clone(),
                }];
                let ready = b.install_and_wait(
                    rel,
                    &[&base],
                    Readiness {
                        workloads,
                        checks,
                        ca_bundles,
                        endpoints: vec![name],
                        timeout_secs: 300,
                    },
                );
                istiod_ready = Some(b.add(
                    format!("kube.tags/{revision}"),
                    &[&ready],
                    Action::ApplyTags {
                        repo,
                        version,
                        revision,
                        tags,
                    },
                ));
            }
            _ => {
                let after = istiod_ready.clone().unwrap_or_else(|| dns.clone());
                let workloads = vec![WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: rel.name.clone(),
                }];
                let checks =
                    vec!["pods run the proxy image of the revision tag `default` points at".into()];
                let (name, namespace) = (rel.name.clone(), rel.namespace.clone());
                let ready = b.install_and_wait(
                    rel,
                    &[&after],
                    Readiness {
                        workloads,
                        checks,
                        timeout_secs: 300,
                        ..Readiness::default()
                    },
                );
                gateway_ready.push(b.add(
                    format!("kube.apply/probe-{name}"),
                    &[&ready],
                    Action::Apply {
                        source: format!("paddock's probe route through gateway {name}"),
                        objects: istio::probe_route(&spec.name, &name, &namespace),
                        origins: Vec::new(),
                    },
                ));
            }
        }
    }
    finals.extend(namespace_steps.iter().cloned());
    finals.extend(istiod_ready.iter().cloned());
    finals.extend(gateway_ready.iter().cloned());

    let mut addon_ready: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = Vec::new();
    for addon in &spec.addons {
        if addon.dev_only {
            notes.push(format!(
                "addon `{}` is dev-only and insecure by default: expose it only on localhost",
                addon.name
            ));
        }
        let mut needs = vec![dns.clone()];
        needs.extend(
            addon
                .needs
                .iter()
                .filter_map(|n| addon_ready.get(n).cloned()),
        );
        let needs_ref: Vec<&str> = needs.iter().map(String::as_str).collect();
        let workloads = addon
            .ready
            .iter()
            .map(|r| WorkloadRef {
                kind: r.kind,
                name: r.name.clone(),
            })
            .collect();
        let timeout = addon
            .ready
            .iter()
            .filter_map(|r| crate::spec::validate::parse_duration(&r.timeout).ok())
            .map(|d| d.as_secs().max(1) as u64)
            .max()
            .unwrap_or(300);
        let ready = b.install_and_wait(
            helm::addon_release(addon),
            &needs_ref,
            Readiness {
                workloads,
                timeout_secs: timeout,
                ..Readiness::default()
            },
        );
        let mut last = ready.clone();
        if !addon.manifests.is_empty() {
            let mut deps = vec![ready.as_str()];
            if let Some(base) = &base_step {
                deps.push(base);
            }
            last = b.add(
                format!("kube.apply/addon-{}", addon.name),
                &deps,
                Action::Apply {
                    source: format!("addons/{}.yaml manifests", addon.name),
                    objects: addon.manifests.clone(),
                    origins: Vec::new(),
                },
            );
        }
        addon_ready.insert(addon.name.clone(), ready);
        finals.push(last);
    }

    if !spec.body.workloads.is_empty() {
        let mut deps: Vec<&str> = namespace_steps.iter().map(String::as_str).collect();
        deps.extend(istiod_ready.iter().map(String::as_str));
        deps.extend(gateway_ready.iter().map(String::as_str));
        if deps.is_empty() {
            deps.push(&dns);
        }
        let id = b.add(
            "kube.apply/workloads".into(),
            &deps,
            Action::Apply {
                source: spec.body.workloads.join(", "),
                objects: applied.to_vec(),
                origins: Vec::new(),
            },
        );
        finals.push(id);
    }

    if !gateway_ready.is_empty()
        && let Some(port) = k3d::published_port(&spec.body.k3d, 80)
    {
        let deps: Vec<&str> = finals.iter().map(String::as_str).collect();
        let id = b.add(
            "verify/ingress".into(),
            &deps,
            Action::VerifyIngress {
                url: format!("http://127.0.0.1:{port}/"),
                host: istio::PROBE_HOST.into(),
            },
        );
        finals = vec![id];
    }
    let hash = spec_hash(spec);
    let deps: Vec<&str> = finals.iter().map(String::as_str).collect();
    let mut releases = BTreeMap::new();
    let mut applied_objects: Vec<&Value> = Vec::new();
    for step in &b.steps {
        match &step.action {
            Action::HelmInstall { release } => {
                releases.insert(release.name.clone(), release_fingerprint(release));
            }
            Action::Apply { objects, .. } => applied_objects.extend(objects.iter()),
            _ => {}
        }
    }
    let record = Record {
        spec_hash: hash.clone(),
        releases,
        k3d: k3d::config(spec),
        istio_version: spec
            .body
            .istio
            .as_ref()
            .map(|i| i.version.clone())
            .unwrap_or_default(),
        applied_hash: objects_hash(&applied_objects),
        images: spec.body.images.clone(),
        istio_revision: spec
            .body
            .istio
            .as_ref()
            .and_then(|i| istio::parse_version(&i.version).ok())
            .map(|v| istio::revision_for(&v))
            .unwrap_or_default(),
    };
    b.add(
        "paddock.record".into(),
        &deps,
        Action::RecordSpec { record },
    );

    let groups = layers(&b.steps);
    let addon_groups = addon_layers(spec);
    Plan {
        cluster: spec.name.clone(),
        profile: spec.profile.clone(),
        observed: observed.clone(),
        spec_hash: hash,
        steps: b.steps,
        groups,
        addon_groups,
        notes,
    }
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
