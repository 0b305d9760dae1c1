//! `up` and `down`: observe a cluster through the drivers, plan, execute, report. Safety lives
//! here: one operation per cluster (the lock), never mutating a cluster without paddock's
//! marker unless `--adopt`, and confirmation before deleting.

pub mod steps;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::drivers::helm::cli::Helm;
use crate::drivers::k3d::cli::{ClusterInfo, K3d};
use crate::drivers::kube::Kube;
use crate::drivers::toolchain::Toolchain;
use crate::engine::events::Events;
use crate::engine::lock;
use crate::plan;
use crate::plan::observed::{ClusterState, Observed};
use crate::spec::ClusterSpec;
use steps::{Ctx, Outcome};

/// Why an operation did not succeed, mapped to exit codes by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotOwned(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Interrupted(String),
    /// The spec's Istio version differs from the installed one: an upgrade comes first.
    #[error("Istio must first be upgraded to {0}")]
    UpgradeDue(String),
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::Failed(s)
    }
}

/// How `up` behaves beyond the spec.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Manage a cluster paddock did not create.
    pub adopt: bool,
    /// How long the ingress may take to answer paddock's probe route.
    pub verify_timeout: std::time::Duration,
    /// The manifest file of each workload object `up` applies (parallel to them).
    pub origins: Vec<String>,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            adopt: false,
            verify_timeout: std::time::Duration::from_secs(120),
            origins: Vec::new(),
        }
    }
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub cluster: String,
    pub steps_run: usize,
    pub summary: steps::Summary,
    pub up_to_date: bool,
    pub notes: Vec<String>,
}

fn not_owned(cluster: &str) -> Error {
    Error::NotOwned(format!(
        "cluster {cluster} exists but paddock did not create it (its nodes lack the `{}=true` label); paddock leaves it alone. Pass --adopt to manage it anyway, or pick another cluster name",
        crate::drivers::k3d::MANAGED_LABEL
    ))
}

/// A connected view of an existing cluster.
#[derive(Debug)]
pub struct Connected {
    pub info: ClusterInfo,
    pub kube: Kube,
    pub kubeconfig: PathBuf,
}

/// Fetch a running cluster's kubeconfig, save it for helm, and connect.
pub async fn connect(k3d: &K3d, tools: &Toolchain, info: ClusterInfo) -> Result<Connected, Error> {
    let name = info.name.clone();
    let text = k3d.run(k3d.kubeconfig_cmd(&name)).await.map_err(|e| {
        Error::Failed(format!(
            "failed to get the kubeconfig of cluster {name}: {e}"
        ))
    })?;
    let kubeconfig = tools.cluster_dir(&name).join("kubeconfig");
    steps::write_kubeconfig(&kubeconfig, &text).map_err(|e| {
        Error::Failed(format!(
            "failed to save the kubeconfig of cluster {name} to {}: {e}",
            kubeconfig.display()
        ))
    })?;
    let kube = Kube::connect(&name, &text)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok(Connected {
        info,
        kube,
        kubeconfig,
    })
}

/// What exists of a cluster, read through k3d, the API and helm. A stopped cluster is started
/// when `start_stopped`; an unowned one is refused unless `adopt`.
pub async fn observe(
    spec: &ClusterSpec,
    k3d: &K3d,
    helm: &Helm,
    tools: &Toolchain,
    events: &Events,
    adopt: bool,
    start_stopped: bool,
) -> Result<(ClusterState, Vec<String>, Option<Kube>), Error> {
    // The registry caches and the cluster are observed at once: each k3d call takes its time.
    let caches = async {
        if !spec.body.caches.as_ref().is_some_and(|c| c.enabled) {
            return Ok(Vec::new());
        }
        k3d.registries()
            .await
            .map(|rs| rs.into_iter().map(|r| r.name).collect::<Vec<String>>())
            .map_err(|e| Error::Failed(format!("could not list the registry caches: {e}")))
    };
    let cluster = async {
        let found = k3d.find(&spec.name).await.map_err(|e| {
            Error::Failed(format!(
                "could not tell whether cluster {} exists: {e}",
                spec.name
            ))
        })?;
        let mut kube = None;
        let observed = match found {
            None => ClusterState::Absent,
            Some(info) => {
                if !info.owned() && !adopt {
                    return Err(not_owned(&spec.name));
                }
                if !info.running() {
                    if !start_stopped {
                        return Err(Error::Failed(format!(
                            "cluster {} is stopped; `paddock up {}` starts it",
                            spec.name, spec.name
                        )));
                    }
                    events.note(&format!("cluster {} is stopped; starting it", spec.name));
                    k3d.run(
                        crate::drivers::exec::Cmd::new(&k3d.bin)
                            .args(["cluster", "start", &spec.name]),
                    )
                    .await
                    .map_err(|e| {
                        Error::Failed(format!("failed to start cluster {}: {e}", spec.name))
                    })?;
                }
                let c = connect(k3d, tools, info).await?;
                // Helm and the API are read at once.
                let kube_reads = async {
                    let record = c.kube.record().await?;
                    let views = c.kube.namespaces().await?;
                    Ok::<_, crate::drivers::kube::Error>((record, views))
                };
                let helm_list = helm.list(&c.kubeconfig);
                let tags = crate::ops::tags::observed(&c.kube);
                let (reads, releases, tags) = tokio::join!(kube_reads, helm_list, tags);
                let (record, views) = reads.map_err(|e| Error::Failed(e.to_string()))?;
                let releases = releases.map_err(|e| {
                    Error::Failed(format!(
                        "could not list the Helm releases of cluster {}: {e}",
                        spec.name
                    ))
                })?;
                let tags = tags.map_err(Error::Failed)?;
                let applied_labels = views
                    .iter()
                    .filter(|v| !v.applied_labels.is_empty())
                    .map(|v| (v.name.clone(), v.applied_labels.clone()))
                    .collect();
                let namespaces = views.into_iter().map(|v| (v.name, v.labels)).collect();
                kube = Some(c.kube);
                ClusterState::Present(Box::new(Observed {
                    record,
                    releases,
                    namespaces,
                    applied_labels,
                    tags,
                }))
            }
        };
        Ok::<_, Error>((observed, kube))
    };
    let ((observed, kube), registries) = tokio::try_join!(cluster, caches)?;
    Ok((observed, registries, kube))
}

/// Converge a cluster to its spec.
pub async fn up(
    spec: &ClusterSpec,
    applied: &[Value],
    tools: &Toolchain,
    events: Events,
    cancel: Arc<AtomicBool>,
    opts: &UpOptions,
) -> Result<UpReport, Error> {
    let k3d = K3d::new(tools.need_k3d()?);
    let helm = Helm::detect(tools.need_helm()?)
        .await
        .map_err(|e| Error::Failed(format!("failed to run helm: {e}")))?;
    let _lock = lock::acquire(&tools.state_dir, &spec.name, "up")
        .map_err(|e| Error::Failed(e.to_string()))?;
    let helm = tools
        .settle_children(&spec.name, helm, |m| events.note(m))
        .await
        .map_err(Error::Failed)?;
    let kubeconfig = tools.cluster_dir(&spec.name).join("kubeconfig");
    let kube_cell = OnceCell::new();
    let (observed, registries, kube) =
        observe(spec, &k3d, &helm, tools, &events, opts.adopt, true).await?;
    if let Some(k) = kube {
        let _ = kube_cell.set(k);
    }
    if let ClusterState::Present(o) = &observed
        && let (Some(r), Some(istio)) = (&o.record, &spec.body.istio)
        && !r.istio_version.is_empty()
        && r.istio_version != istio.version
    {
        return Err(Error::UpgradeDue(istio.version.clone()));
    }
    let mut plan = plan::up(spec, &observed, applied, &registries);
    for step in plan
        .steps
        .iter_mut()
        .filter(|s| s.id == "kube.apply/workloads")
    {
        if let plan::Action::Apply { origins, .. } = &mut step.action {
            origins.clone_from(&opts.origins);
        }
    }
    for n in &plan.notes {
        events.note(n);
    }
    if plan.steps.is_empty() {
        return Ok(UpReport {
            cluster: spec.name.clone(),
            steps_run: 0,
            summary: steps::Summary::default(),
            up_to_date: true,
            notes: plan.notes.clone(),
        });
    }
    let pending = match &observed {
        ClusterState::Present(o) => o
            .releases
            .iter()
            .filter(|r| r.status.starts_with("pending-"))
            .map(|r| ((r.name.clone(), r.namespace.clone()), r.status.clone()))
            .collect(),
        ClusterState::Absent => Default::default(),
    };
    let deployed = match &observed {
        ClusterState::Present(o) => o
            .releases
            .iter()
            .filter(|r| r.status == "deployed")
            .map(|r| ((r.name.clone(), r.namespace.clone()), r.chart.clone()))
            .collect(),
        ClusterState::Absent => Default::default(),
    };
    let ctx = Arc::new(Ctx {
        pending,
        deployed,
        cluster: spec.name.clone(),
        k3d,
        helm,
        kubeconfig,
        kube: kube_cell,
        events: events.clone(),
        cancel,
        spec_json: serde_json::to_value(spec).unwrap_or(Value::Null),
        verify_timeout: opts.verify_timeout,
    });
    match steps::run(&plan, ctx).await {
        Outcome::Done(summary) => Ok(UpReport {
            cluster: spec.name.clone(),
            steps_run: summary.steps.len(),
            summary,
            up_to_date: false,
            notes: plan.notes.clone(),
        }),
        Outcome::Failed { step, error, .. } => Err(Error::Failed(format!(
            "step {step} failed: {error}\nnothing is lost: fix the cause and run `paddock up {}` again to continue",
            spec.name
        ))),
        Outcome::Interrupted(_) => Err(Error::Interrupted(format!(
            "interrupted; the steps that finished stay done: run `paddock up {}` again to continue",
            spec.name
        ))),
    }
}

/// Delete a cluster paddock owns. Standalone registry caches are kept for other clusters.
pub async fn down(
    cluster: &str,
    tools: &Toolchain,
    confirmed: bool,
    confirm: impl FnOnce(&str) -> bool,
) -> Result<Value, Error> {
    let k3d = K3d::new(tools.need_k3d()?);
    let _lock = lock::acquire(&tools.state_dir, cluster, "down")
        .map_err(|e| Error::Failed(e.to_string()))?;
    let found = k3d.find(cluster).await.map_err(|e| {
        Error::Failed(format!(
            "could not tell whether cluster {cluster} exists: {e}"
        ))
    })?;
    let Some(info) = found else {
        return Ok(
            json!({"cluster": cluster, "deleted": false, "message": format!("cluster {cluster} does not exist; nothing to delete")}),
        );
    };
    if !info.owned() {
        return Err(Error::NotOwned(format!(
            "cluster {cluster} was not created by paddock (no `{}=true` label); delete it with `k3d cluster delete {cluster}` yourself if you mean to",
            crate::drivers::k3d::MANAGED_LABEL
        )));
    }
    if !confirmed
        && !confirm(&format!(
            "Delete cluster {cluster} and everything in it ({} nodes)? [y/N] ",
            info.nodes.len()
        ))
    {
        return Err(Error::Failed(format!(
            "not confirmed; cluster {cluster} is untouched (pass --yes to skip the question)"
        )));
    }
    k3d.run(k3d.delete_cmd(cluster))
        .await
        .map_err(|e| Error::Failed(format!("failed to delete cluster {cluster}: {e}")))?;
    let _ = std::fs::remove_dir_all(tools.cluster_dir(cluster));
    Ok(
        json!({"cluster": cluster, "deleted": true, "message": format!("cluster {cluster} deleted; registry caches are kept for other clusters")}),
    )
}

/// Parse workload manifests (multi-document YAML files relative to `root`).
pub fn load_manifests(root: &std::path::Path, files: &[String]) -> Result<Vec<Value>, String> {
    Ok(load_manifests_from(root, files)?
        .into_iter()
        .map(|(_, o)| o)
        .collect())
}

/// The objects of the manifest files, each with the file it came from.
pub fn load_manifests_from(
    root: &std::path::Path,
    files: &[String],
) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for f in files {
        let path = root.join(f);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        out.extend(
            docs.into_iter()
                .filter(|d| !d.is_null())
                .map(|d| (f.clone(), d)),
        );
    }
    Ok(out)
}
