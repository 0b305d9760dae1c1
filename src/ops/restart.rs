//! Proxy-aware restarts: find the workloads whose pods need a restart (ISTIO.md's rule, via
//! [`crate::mesh`]), restart rolling workloads with the `restartedAt` annotation and wait by
//! kubectl's rules, evict pods of `OnDelete` workloads and bare pods through the Eviction API
//! (retrying while a PodDisruptionBudget says 429), recreate evicted bare pods so they are
//! injected anew, and leave Jobs alone. Bounded concurrency; the first failure stops new work
//! and is reported with its pods' reasons.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::output::Reporter;
use crate::drivers::kube::Kube;
use crate::mesh::{self, Injectors};

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
    pub pod_objects: Vec<Value>,
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
}

fn s(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

use crate::mesh::labels_of as labels;

/// The mesh as the cluster has it now: injectors and each revision's proxy image.
#[derive(Debug)]
pub struct Mesh {
    pub injectors: Injectors,
    pub images: BTreeMap<String, String>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Mesh {
    pub async fn read(kube: &Kube) -> Result<Self, String> {
        let injectors = kube.injectors().await.map_err(|e| e.to_string())?;
        let cms = kube
            .list_json("v1", "ConfigMap", Some("istio-system"))
            .await
            .unwrap_or_default();
        let mut images = BTreeMap::new();
        for cm in &cms {
            let name = s(cm, "/metadata/name");
            let rev = if name == "istio-sidecar-injector" {
                Some(String::new())
            } else {
                name.strip_prefix("istio-sidecar-injector-")
                    .map(str::to_string)
            };
            if let (Some(rev), Some(img)) = (
                rev,
                cm["data"]["values"].as_str().and_then(mesh::expected_image),
            ) {
                images.insert(rev, img);
            }
        }
        let namespaces = kube
            .list_json("v1", "Namespace", None)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|n| (s(n, "/metadata/name"), labels(n)))
            .collect();
        Ok(Self {
            injectors,
            images,
            namespaces,
        })
    }

    /// The revision that would inject this pod now.
    pub fn expected_revision(&self, pod: &Value) -> Option<String> {
        let ns = s(pod, "/metadata/namespace");
        let empty = BTreeMap::new();
        mesh::resolve(
            self.namespaces.get(&ns).unwrap_or(&empty),
            &labels(pod),
            &self.injectors,
        )
    }

    /// Why a pod needs a restart, if it does.
    pub fn restart_reason(&self, pod: &Value) -> Option<String> {
        let want = self.expected_revision(pod);
        let image = want
            .as_deref()
            .and_then(|r| self.images.get(r))
            .map(String::as_str);
        mesh::restart_reason(&mesh::proxy_of(pod), want.as_deref(), image)
    }
}

/// The workload a pod belongs to: (kind, name); a pod no controller owns is its own `Pod`.
pub fn workload_of(pod: &Value) -> (String, String) {
    let owner = &pod["metadata"]["ownerReferences"][0];
    let kind = owner["kind"].as_str().unwrap_or("");
    let oname = owner["name"].as_str().unwrap_or("");
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
        _ => ("Pod".into(), s(pod, "/metadata/name")),
    }
}

/// Every workload in scope with its pods and what they need.
pub async fn targets(kube: &Kube, opts: &Options) -> Result<(Mesh, Vec<Target>), String> {
    let mesh = Mesh::read(kube).await?;
    let pods = kube
        .list_json("v1", "Pod", None)
        .await
        .map_err(|e| e.to_string())?;
    let mut by: BTreeMap<(String, String, String), Target> = BTreeMap::new();
    let mut strategies: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for pod in pods {
        let ns = s(&pod, "/metadata/namespace");
        if SYSTEM.contains(&ns.as_str())
            || (!opts.namespaces.is_empty() && !opts.namespaces.contains(&ns))
        {
            continue;
        }
        // Finished pods run nothing; terminating ones are already being replaced.
        if s(&pod, "/status/phase") == "Succeeded"
            || s(&pod, "/status/phase") == "Failed"
            || mesh::terminating(&pod)
        {
            continue;
        }
        let (kind, name) = workload_of(&pod);
        let key = (ns.clone(), kind.clone(), name.clone());
        if matches!(kind.as_str(), "StatefulSet" | "DaemonSet") && !strategies.contains_key(&key) {
            let w = kube
                .get_json("apps/v1", &kind, Some(&ns), &name)
                .await
                .map_err(|e| e.to_string())?;
            let st = w
                .map(|w| s(&w, "/spec/updateStrategy/type"))
                .unwrap_or_default();
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
            t.stale.insert(s(&pod, "/metadata/name"), r);
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
    let pods = kube
        .list_json("v1", "Pod", Some(&t.namespace))
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for p in pods {
        let owner = s(&p, "/metadata/ownerReferences/0/name");
        if !(owner == t.name
            || owner.starts_with(&format!("{}-", t.name))
            || s(&p, "/metadata/name") == t.name)
        {
            continue;
        }
        for c in ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|k| p["status"][k].as_array())
            .flatten()
        {
            if let Some(w) = c["state"]["waiting"].as_object() {
                out.push(format!(
                    "pod {} container {}: {} {}",
                    s(&p, "/metadata/name"),
                    c["name"].as_str().unwrap_or_default(),
                    w.get("reason").and_then(Value::as_str).unwrap_or_default(),
                    w.get("message").and_then(Value::as_str).unwrap_or_default()
                ));
            }
        }
    }
    if t.kind == "Deployment"
        && let Ok(Some(d)) = kube
            .get_json("apps/v1", "Deployment", Some(&t.namespace), &t.name)
            .await
    {
        for c in d["status"]["conditions"].as_array().into_iter().flatten() {
            if c["type"] == "ReplicaFailure" || c["reason"] == "ProgressDeadlineExceeded" {
                out.push(c["message"].as_str().unwrap_or_default().to_string());
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
async fn evict(kube: &Kube, ns: &str, pod: &str, deadline: Instant) -> Result<(), String> {
    let mut wait = Duration::from_millis(100);
    loop {
        if kube.evict(ns, pod).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        if Instant::now() + wait > deadline {
            return Err(format!(
                "pod {ns}/{pod} could not be evicted: its PodDisruptionBudget kept refusing (429)"
            ));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// A bare pod's spec without what injection added, so the webhook injects it anew.
fn fresh_copy(pod: &Value) -> Value {
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
    let mut spec = pod["spec"].clone();
    for k in ["containers", "initContainers"] {
        if let Some(a) = spec[k].as_array_mut() {
            a.retain(|c| !INJECTED.contains(&c["name"].as_str().unwrap_or_default()));
        }
    }
    if let Some(a) = spec["volumes"].as_array_mut() {
        a.retain(|v| !VOLUMES.contains(&v["name"].as_str().unwrap_or_default()));
    }
    if let Some(m) = spec.as_object_mut() {
        m.remove("nodeName");
    }
    let mut annotations = pod["metadata"]["annotations"].clone();
    if let Some(m) = annotations.as_object_mut() {
        m.remove("istio.io/rev");
        m.remove("sidecar.istio.io/status");
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
            "labels": pod["metadata"]["labels"], "annotations": annotations},
        "spec": spec})
}

async fn restart_one(
    kube: &Kube,
    mesh: &Mesh,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    match t.method {
        Method::Job => Ok(()),
        Method::Rolling => {
            if t.kind == "Deployment"
                && let Ok(Some(d)) = kube
                    .get_json("apps/v1", "Deployment", Some(&t.namespace), &t.name)
                    .await
                && d["spec"]["paused"] == true
            {
                return Err(format!(
                    "Deployment {}/{} is paused; resume it to restart it",
                    t.namespace, t.name
                ));
            }
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now()}}}}});
            kube.merge_patch("apps/v1", &t.kind, Some(&t.namespace), &t.name, &patch)
                .await
                .map_err(|e| e.to_string())?;
            kube.wait_rollout(&t.kind, &t.namespace, &t.name, timeout)
                .await
                .map_err(|e| e.to_string())
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
                let name = s(pod, "/metadata/name");
                if !t.stale.contains_key(&name) {
                    continue;
                }
                evict(kube, &t.namespace, &name, deadline).await?;
                let copy = fresh_copy(pod);
                loop {
                    match kube
                        .create_json("v1", "Pod", Some(&t.namespace), &copy)
                        .await
                    {
                        Ok(_) => break,
                        Err(e)
                            if Instant::now() < deadline
                                && e.to_string().contains("already exists") =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            return Err(format!(
                                "failed to recreate pod {}/{name}: {e}",
                                t.namespace
                            ));
                        }
                    }
                }
                wait_replaced(kube, mesh, t, &name, 1, deadline).await?;
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
) -> Result<(), String> {
    let old_uid = t
        .pod_objects
        .iter()
        .find(|p| s(p, "/metadata/name") == name)
        .map(|p| s(p, "/metadata/uid"))
        .unwrap_or_default();
    let originals: Vec<String> = t
        .pod_objects
        .iter()
        .map(|p| s(p, "/metadata/uid"))
        .collect();
    loop {
        let pods = kube
            .list_json("v1", "Pod", Some(&t.namespace))
            .await
            .map_err(|e| e.to_string())?;
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                let owner = s(p, "/metadata/ownerReferences/0/name");
                (owner == t.name && t.method != Method::Bare) || s(p, "/metadata/name") == name
            })
            .collect();
        let old_gone = !mine.iter().any(|p| s(p, "/metadata/uid") == old_uid);
        // The replacement: a pod the workload did not have before, Ready and current.
        let fresh: Vec<&&Value> = mine
            .iter()
            .filter(|p| !originals.contains(&s(p, "/metadata/uid")) && !mesh::terminating(p))
            .collect();
        // One replacement per pod evicted so far (for OnDelete controllers).
        let replaced = fresh.len() >= replacements
            && fresh.iter().all(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                }) && mesh.restart_reason(p).is_none()
            });
        if old_gone && replaced {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} {}/{}: pod {name} was not replaced by a ready, current pod in time",
                t.kind, t.namespace, t.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restart the chosen workloads, `max_concurrent` at a time.
pub async fn run(kube: &Kube, opts: &Options, reporter: &Reporter) -> Result<Report, String> {
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
    let results: Vec<(Target, Result<(), String>)> = futures::stream::iter(work)
        .map(|t| {
            let (stop, mesh) = (stop.clone(), mesh.clone());
            async move {
                if stop.load(Ordering::SeqCst) {
                    return (t, Err("not started: an earlier restart failed".to_string()));
                }
                reporter.step_started(&format!("restart/{}", t.id()));
                let started = Instant::now();
                let r = restart_one(kube, &mesh, &t, opts.timeout).await;
                match &r {
                    Ok(()) => reporter.step_done(&format!("restart/{}", t.id()), started.elapsed()),
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        reporter.step_failed(&format!("restart/{}", t.id()), started.elapsed(), e);
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
            Err(e) if e.starts_with("not started") => {}
            Err(e) => {
                let reasons = pod_reasons(kube, &t).await;
                return Err(format!(
                    "restart of {} failed: {e}; pods: {reasons}",
                    t.id()
                ));
            }
        }
    }
    report.restarted.sort();
    Ok(report)
}
