//! Proxy-aware restarts: find the workloads whose pods need a restart (ISTIO.md's rule, via
//! [`crate::mesh`]), restart rolling workloads with the `restartedAt` annotation and wait by
//! kubectl's rules, evict pods of `OnDelete` workloads and bare pods through the Eviction API
//! (retrying while a PodDisruptionBudget says 429), recreate evicted bare pods so they are
//! injected anew, and leave Jobs alone. Bounded concurrency; the first failure stops new work
//! and is reported with its pods' reasons.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::json;

use crate::drivers::kube::{self as driver, Kube};
use crate::engine::events::Events;
use crate::mesh::{self, Injectors};

mod error;
mod operation;

pub use error::Error;
pub use operation::execute;

fn read(what: impl Into<String>) -> impl FnOnce(driver::Error) -> Error {
    let what = what.into();
    move |source| Error::Read { what, source }
}

/// Namespaces never touched.
const SYSTEM: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "paddock-system",
];

#[derive(Debug, Clone)]
pub struct Options {
    /// Only these namespaces (all but the system ones when empty).
    pub namespaces: Vec<String>,
    /// Only workloads with a pod that needs a restart (else every injected or injectable one).
    pub stale_only: bool,
    pub max_concurrent: usize,
    pub timeout: Duration,
}

/// How a workload is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `restartedAt` on the pod template; the controller rolls.
    Rolling,
    /// Evict stale pods one by one; the controller recreates them.
    OnDelete,
    /// Evict and recreate a pod no controller owns.
    Bare,
    /// Jobs are reported, not touched.
    Job,
}

/// A workload and what its pods need.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub method: Method,
    /// Pod name → why it needs a restart.
    pub stale: BTreeMap<String, String>,
    pub pods: usize,
    #[serde(skip)]
    pub pod_objects: Vec<Pod>,
}

impl Target {
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub restarted: Vec<String>,
    pub jobs_left_alone: Vec<String>,
    pub up_to_date: Vec<String>,
    /// Cancelled before these began.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_started: Vec<String>,
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn uid_of(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

/// The name of an object's first owner ("" for none).
fn owner_of(meta: &ObjectMeta) -> &str {
    meta.owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.name.as_str())
        .unwrap_or_default()
}

/// Has the pod finished (`Succeeded` or `Failed`)? It runs nothing any more.
fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Does the pod report the `Ready` condition?
pub(crate) fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The mesh as the cluster has it now: injectors and each revision's proxy image.
#[derive(Debug)]
pub struct Mesh {
    pub injectors: Injectors,
    pub images: BTreeMap<String, String>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Mesh {
    pub async fn read(kube: &Kube) -> Result<Self, Error> {
        let injectors = kube
            .injectors()
            .await
            .map_err(read("the sidecar injector webhooks"))?;
        let cms = kube
            .list_in::<ConfigMap>("istio-system")
            .await
            .unwrap_or_default();
        let namespaces = kube
            .list::<Namespace>()
            .await
            .map_err(read("the namespaces"))?
            .iter()
            .map(|n| {
                (
                    name_of(&n.metadata).to_string(),
                    mesh::labels_of(&n.metadata).clone(),
                )
            })
            .collect();
        Ok(Self {
            injectors,
            images: injected_images(&cms),
            namespaces,
        })
    }

    /// The revision that would inject this pod now.
    pub fn expected_revision(&self, pod: &Pod) -> Option<String> {
        let empty = BTreeMap::new();
        mesh::resolve(
            self.namespaces
                .get(namespace_of(&pod.metadata))
                .unwrap_or(&empty),
            mesh::labels_of(&pod.metadata),
            &self.injectors,
        )
    }

    /// Why a pod needs a restart, if it does.
    pub fn restart_reason(&self, pod: &Pod) -> Option<String> {
        let want = self.expected_revision(pod);
        let image = want
            .as_deref()
            .and_then(|r| self.images.get(r))
            .map(String::as_str);
        mesh::restart_reason(&mesh::proxy_of(pod), want.as_deref(), image)
    }
}

/// Revision → the proxy image it injects, from the injector ConfigMaps
/// (`istio-sidecar-injector[-<rev>]`, "" for the unrevisioned).
fn injected_images(cms: &[ConfigMap]) -> BTreeMap<String, String> {
    let mut images = BTreeMap::new();
    for cm in cms {
        let name = name_of(&cm.metadata);
        let rev = if name == "istio-sidecar-injector" {
            Some(String::new())
        } else {
            name.strip_prefix("istio-sidecar-injector-")
                .map(str::to_string)
        };
        let image = cm
            .data
            .as_ref()
            .and_then(|d| d.get("values"))
            .and_then(|v| mesh::expected_image(v));
        if let (Some(rev), Some(img)) = (rev, image) {
            images.insert(rev, img);
        }
    }
    images
}

/// The workload a pod belongs to: (kind, name); a pod no controller owns is its own `Pod`.
pub fn workload_of(pod: &Pod) -> (String, String) {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first());
    let kind = owner.map(|o| o.kind.as_str()).unwrap_or("");
    let oname = owner.map(|o| o.name.as_str()).unwrap_or("");
    match kind {
        // ReplicaSet `<deployment>-<pod-template-hash>`: the hash has no dash.
        "ReplicaSet" => (
            "Deployment".into(),
            oname
                .rsplit_once('-')
                .map(|(d, _)| d)
                .unwrap_or(oname)
                .into(),
        ),
        "StatefulSet" | "DaemonSet" | "Job" => (kind.into(), oname.into()),
        _ => ("Pod".into(), name_of(&pod.metadata).into()),
    }
}

/// A StatefulSet's or DaemonSet's `spec.updateStrategy.type` ("" when unset or gone).
async fn update_strategy(kube: &Kube, kind: &str, ns: &str, name: &str) -> Result<String, Error> {
    let what = || format!("{kind} {ns}/{name}");
    let strategy = match kind {
        "StatefulSet" => kube
            .get_in::<StatefulSet>(ns, name)
            .await
            .map_err(read(what()))?
            .and_then(|s| s.spec?.update_strategy?.type_),
        _ => kube
            .get_in::<DaemonSet>(ns, name)
            .await
            .map_err(read(what()))?
            .and_then(|d| d.spec?.update_strategy?.type_),
    };
    Ok(strategy.unwrap_or_default())
}

/// Every workload in scope with its pods and what they need.
pub async fn targets(kube: &Kube, opts: &Options) -> Result<(Mesh, Vec<Target>), Error> {
    let mesh = Mesh::read(kube).await?;
    let pods = kube.list::<Pod>().await.map_err(read("the pods"))?;
    let mut by: BTreeMap<(String, String, String), Target> = BTreeMap::new();
    let mut strategies: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for pod in pods {
        let ns = namespace_of(&pod.metadata).to_string();
        if SYSTEM.contains(&ns.as_str())
            || (!opts.namespaces.is_empty() && !opts.namespaces.contains(&ns))
        {
            continue;
        }
        // Finished pods run nothing; terminating ones are already being replaced.
        if finished(&pod) || mesh::terminating(&pod) {
            continue;
        }
        let (kind, name) = workload_of(&pod);
        let key = (ns.clone(), kind.clone(), name.clone());
        if matches!(kind.as_str(), "StatefulSet" | "DaemonSet") && !strategies.contains_key(&key) {
            let st = update_strategy(kube, &kind, &ns, &name).await?;
            strategies.insert(key.clone(), st);
        }
        let method = match kind.as_str() {
            "Job" => Method::Job,
            "Pod" => Method::Bare,
            _ if strategies.get(&key).is_some_and(|st| st == "OnDelete") => Method::OnDelete,
            _ => Method::Rolling,
        };
        let t = by.entry(key).or_insert_with(|| Target {
            namespace: ns,
            kind,
            name,
            method,
            stale: BTreeMap::new(),
            pods: 0,
            pod_objects: Vec::new(),
        });
        t.pods += 1;
        if let Some(r) = mesh.restart_reason(&pod) {
            t.stale.insert(name_of(&pod.metadata).to_string(), r);
        }
        t.pod_objects.push(pod);
    }
    let all: Vec<Target> = by.into_values().collect();
    let chosen = all
        .into_iter()
        .filter(|t| !opts.stale_only || !t.stale.is_empty() || t.method == Method::Job)
        .collect();
    Ok((mesh, chosen))
}

/// Why a workload's pods are not ready, from their container states.
async fn pod_reasons(kube: &Kube, t: &Target) -> String {
    let pods = kube.list_in::<Pod>(&t.namespace).await.unwrap_or_default();
    let mut out = Vec::new();
    for p in pods {
        let owner = owner_of(&p.metadata);
        let name = name_of(&p.metadata);
        if !(owner == t.name || owner.starts_with(&format!("{}-", t.name)) || name == t.name) {
            continue;
        }
        let statuses = p.status.iter().flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        });
        for c in statuses {
            if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                out.push(format!(
                    "pod {name} container {}: {} {}",
                    c.name,
                    w.reason.as_deref().unwrap_or_default(),
                    w.message.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    if t.kind == "Deployment"
        && let Ok(Some(d)) = kube.get_in::<Deployment>(&t.namespace, &t.name).await
    {
        let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
        for c in conditions {
            if c.type_ == "ReplicaFailure"
                || c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            {
                out.push(c.message.unwrap_or_default());
            }
        }
    }
    if out.is_empty() {
        "no pod reports a reason".into()
    } else {
        out.join("; ")
    }
}

/// RFC 3339 with nanoseconds: two restarts within one second must still differ, or the
/// second changes nothing and rolls nothing.
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// Evict a pod, retrying while a disruption budget refuses it.
async fn evict(kube: &Kube, ns: &str, pod: &str, deadline: Instant) -> Result<(), Error> {
    let mut wait = Duration::from_millis(100);
    loop {
        let evicted = kube.evict(ns, pod).await.map_err(|source| Error::Evict {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            source,
        })?;
        if evicted {
            return Ok(());
        }
        if Instant::now() + wait > deadline {
            return Err(Error::EvictionRefused {
                namespace: ns.to_string(),
                pod: pod.to_string(),
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// A bare pod's spec without what injection added, so the webhook injects it anew.
fn fresh_copy(pod: &Pod) -> Pod {
    const INJECTED: &[&str] = &["istio-proxy", "istio-init", "istio-validation"];
    const VOLUMES: &[&str] = &[
        "workload-socket",
        "credential-socket",
        "workload-certs",
        "istio-envoy",
        "istio-data",
        "istio-podinfo",
        "istio-token",
        "istiod-ca-cert",
    ];
    let spec = pod.spec.clone().map(|mut spec| {
        spec.containers
            .retain(|c| !INJECTED.contains(&c.name.as_str()));
        if let Some(init) = &mut spec.init_containers {
            init.retain(|c| !INJECTED.contains(&c.name.as_str()));
        }
        if let Some(volumes) = &mut spec.volumes {
            volumes.retain(|v| !VOLUMES.contains(&v.name.as_str()));
        }
        spec.node_name = None;
        spec
    });
    let mut annotations = pod.metadata.annotations.clone();
    if let Some(m) = &mut annotations {
        m.remove("istio.io/rev");
        m.remove("sidecar.istio.io/status");
    }
    Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            annotations,
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

async fn restart_one(kube: &Kube, mesh: &Mesh, t: &Target, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    match t.method {
        Method::Job => Ok(()),
        Method::Rolling => {
            if t.kind == "Deployment"
                && let Ok(Some(d)) = kube.get_in::<Deployment>(&t.namespace, &t.name).await
                && d.spec.and_then(|s| s.paused) == Some(true)
            {
                return Err(Error::Paused {
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                });
            }
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now()}}}}});
            kube.merge_patch("apps/v1", &t.kind, Some(&t.namespace), &t.name, &patch)
                .await
                .map_err(|source| Error::Annotate {
                    kind: t.kind.clone(),
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    source,
                })?;
            kube.wait_rollout(&t.kind, &t.namespace, &t.name, timeout)
                .await
                .map_err(|source| Error::Rollout {
                    kind: t.kind.clone(),
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    source,
                })
        }
        Method::OnDelete => {
            for (i, pod) in t.stale.keys().enumerate() {
                evict(kube, &t.namespace, pod, deadline).await?;
                wait_replaced(kube, mesh, t, pod, i + 1, deadline).await?;
            }
            Ok(())
        }
        Method::Bare => {
            for pod in &t.pod_objects {
                let name = name_of(&pod.metadata);
                if !t.stale.contains_key(name) {
                    continue;
                }
                evict(kube, &t.namespace, name, deadline).await?;
                let copy = fresh_copy(pod);
                loop {
                    match kube.create_in(&t.namespace, &copy).await {
                        Ok(_) => break,
                        Err(e)
                            if Instant::now() < deadline
                                && e.to_string().contains("already exists") =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(source) => {
                            return Err(Error::Recreate {
                                namespace: t.namespace.clone(),
                                pod: name.to_string(),
                                source,
                            });
                        }
                    }
                }
                wait_replaced(kube, mesh, t, name, 1, deadline).await?;
            }
            Ok(())
        }
    }
}

/// Wait until the pod `name` is gone and `replacements` new pods (recreated under the same
/// name, or replacing it) are Ready and current.
async fn wait_replaced(
    kube: &Kube,
    mesh: &Mesh,
    t: &Target,
    name: &str,
    replacements: usize,
    deadline: Instant,
) -> Result<(), Error> {
    let old_uid = t
        .pod_objects
        .iter()
        .find(|p| name_of(&p.metadata) == name)
        .map(|p| uid_of(&p.metadata))
        .unwrap_or_default();
    let originals: Vec<&str> = t.pod_objects.iter().map(|p| uid_of(&p.metadata)).collect();
    loop {
        let pods = kube
            .list_in::<Pod>(&t.namespace)
            .await
            .map_err(read(format!("the pods in namespace {}", t.namespace)))?;
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                (owner_of(&p.metadata) == t.name && t.method != Method::Bare)
                    || name_of(&p.metadata) == name
            })
            .collect();
        let old_gone = !mine.iter().any(|p| uid_of(&p.metadata) == old_uid);
        // The replacement: a pod the workload did not have before, Ready and current.
        let fresh: Vec<&Pod> = mine
            .into_iter()
            .filter(|p| !originals.contains(&uid_of(&p.metadata)) && !mesh::terminating(p))
            .collect();
        // One replacement per pod evicted so far (for OnDelete controllers).
        let replaced = fresh.len() >= replacements
            && fresh
                .iter()
                .all(|p| ready(p) && mesh.restart_reason(p).is_none());
        if old_gone && replaced {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReplaced {
                kind: t.kind.clone(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                pod: name.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restart the chosen workloads, `max_concurrent` at a time.
pub async fn run(kube: &Kube, opts: &Options, reporter: &Events) -> Result<Report, Error> {
    run_until(kube, opts, reporter, &CancellationToken::new()).await
}

/// [`run`], starting no further workload once `cancel` is cancelled; those not begun are
/// the report's `not_started`.
pub async fn run_until(
    kube: &Kube,
    opts: &Options,
    reporter: &Events,
    cancel: &CancellationToken,
) -> Result<Report, Error> {
    let (mesh, targets) = targets(kube, opts).await?;
    let mut report = Report::default();
    let mut work = Vec::new();
    for t in targets {
        match t.method {
            Method::Job => {
                reporter.note(&format!(
                    "Job {}/{} is left alone (Jobs are not restarted)",
                    t.namespace, t.name
                ));
                report.jobs_left_alone.push(t.id());
            }
            _ if opts.stale_only && t.stale.is_empty() => report.up_to_date.push(t.id()),
            _ => work.push(t),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mesh = Arc::new(mesh);
    // How far the whole restart is, for a progress bar: workloads finished of those to do.
    let total = work.len() as u64;
    let finished = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if total > 0 {
        reporter.progress("restart", 0, total);
    }
    let results: Vec<(Target, Result<(), Error>)> = futures::stream::iter(work)
        .map(|t| {
            let (stop, mesh, finished) = (stop.clone(), mesh.clone(), finished.clone());
            async move {
                if stop.load(Ordering::SeqCst) || cancel.is_cancelled() {
                    return (t, Err(Error::NotStarted));
                }
                reporter.step_started(&format!("restart/{}", t.id()));
                let started = Instant::now();
                let r = restart_one(kube, &mesh, &t, opts.timeout).await;
                match &r {
                    Ok(()) => {
                        reporter.step_done(&format!("restart/{}", t.id()), started.elapsed());
                        let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                        reporter.progress("restart", n, total);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        reporter.step_failed(
                            &format!("restart/{}", t.id()),
                            started.elapsed(),
                            &crate::engine::chain(e),
                        );
                    }
                }
                (t, r)
            }
        })
        .buffer_unordered(opts.max_concurrent.max(1))
        .collect()
        .await;
    for (t, r) in results {
        match r {
            Ok(()) => report.restarted.push(t.id()),
            Err(Error::NotStarted) if cancel.is_cancelled() => report.not_started.push(t.id()),
            Err(Error::NotStarted) => {}
            Err(e) => {
                return Err(Error::Workload {
                    workload: t.id(),
                    reasons: pod_reasons(kube, &t).await,
                    source: Box::new(e),
                });
            }
        }
    }
    report.restarted.sort();
    report.not_started.sort();
    Ok(report)
}

#[cfg(test)]
mod tests;
