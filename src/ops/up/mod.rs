//! `up` and `down`: observe a cluster through the drivers, plan, execute, report. Safety lives
//! here: one operation per cluster (the lock), never mutating a cluster without paddock's
//! marker unless `--adopt`, and confirmation before deleting.

// An error is made once per failed operation and carries its causes by value; its size does
// not matter next to the tool runs that led to it.
#![allow(clippy::result_large_err)]

mod converge;
mod error;
pub mod steps;

pub use converge::{Converged, converge, drift};
pub use error::{Error, ManifestError};

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
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
    /// How to reach the cluster: kubeconfig, context, URLs, versions.
    pub access: crate::ops::access::Access,
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
    let text = k3d
        .run(k3d.kubeconfig_cmd(&name))
        .await
        .map_err(|source| Error::Kubeconfig {
            cluster: name.clone(),
            source,
        })?;
    let kubeconfig = tools.cluster_dir(&name).join("kubeconfig");
    steps::write_kubeconfig(&kubeconfig, &text).map_err(|source| Error::SaveKubeconfig {
        cluster: name.clone(),
        path: kubeconfig.clone(),
        source,
    })?;
    let kube = Kube::connect(&name, &text).await?;
    Ok(Connected {
        info,
        kube,
        kubeconfig,
    })
}

/// Lock and connect to an existing cluster paddock owns (for operations on a running cluster:
/// `upgrade`, `restart`).
pub async fn connect_owned(
    tools: &Toolchain,
    cluster: &str,
    command: &'static str,
) -> Result<(lock::ClusterLock, Connected), Error> {
    let k3d = K3d::new(tools.need_k3d()?);
    let lock = lock::acquire(&tools.state_dir, cluster, command)?;
    let info = find_existing(&k3d, cluster).await?;
    if !info.owned() {
        return Err(Error::NotOwned {
            cluster: cluster.to_string(),
            command,
        });
    }
    let c = connect(&k3d, tools, info).await?;
    Ok((lock, c))
}

/// A cluster that must exist, as k3d knows it; one that does not is an error saying how to
/// create it.
pub async fn find_existing(k3d: &K3d, cluster: &str) -> Result<ClusterInfo, Error> {
    k3d.find(cluster)
        .await
        .map_err(|source| Error::Find {
            cluster: cluster.to_string(),
            source,
        })?
        .ok_or_else(|| Error::Absent {
            cluster: cluster.to_string(),
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
    // The registry caches and the cluster are looked up at once: each k3d call takes its time.
    let (found, registries) = tokio::try_join!(find(spec, k3d, adopt), caches(spec, k3d))?;
    let (observed, kube) = match found {
        None => (ClusterState::Absent, None),
        Some(info) => read_cluster(spec, k3d, helm, tools, events, info, start_stopped).await?,
    };
    Ok((observed, registries, kube))
}

/// The registry caches that exist (only looked up when the spec uses caches).
async fn caches(spec: &ClusterSpec, k3d: &K3d) -> Result<Vec<String>, Error> {
    if !spec.body.caches.as_ref().is_some_and(|c| c.enabled) {
        return Ok(Vec::new());
    }
    k3d.registries()
        .await
        .map(|rs| rs.into_iter().map(|r| r.name).collect::<Vec<String>>())
        .map_err(Error::Registries)
}

/// The cluster as k3d knows it; one paddock does not own is refused unless `adopt`.
async fn find(spec: &ClusterSpec, k3d: &K3d, adopt: bool) -> Result<Option<ClusterInfo>, Error> {
    let found = k3d.find(&spec.name).await.map_err(|source| Error::Find {
        cluster: spec.name.clone(),
        source,
    })?;
    if let Some(info) = &found
        && !info.owned()
        && !adopt
    {
        return Err(Error::NotOwned {
            cluster: spec.name.clone(),
            command: "up",
        });
    }
    Ok(found)
}

/// Start a stopped cluster (when allowed), connect, and read helm and the API at once.
async fn read_cluster(
    spec: &ClusterSpec,
    k3d: &K3d,
    helm: &Helm,
    tools: &Toolchain,
    events: &Events,
    info: ClusterInfo,
    start_stopped: bool,
) -> Result<(ClusterState, Option<Kube>), Error> {
    if !info.running() {
        if !start_stopped {
            return Err(Error::Stopped {
                cluster: spec.name.clone(),
            });
        }
        events.note(&format!("cluster {} is stopped; starting it", spec.name));
        k3d.run(crate::drivers::exec::Cmd::new(&k3d.bin).args(["cluster", "start", &spec.name]))
            .await
            .map_err(|source| Error::K3d {
                action: "start",
                cluster: spec.name.clone(),
                source,
            })?;
    }
    let c = connect(k3d, tools, info).await?;
    let kube_reads = async {
        let record = c.kube.record().await?;
        let views = c.kube.namespaces().await?;
        Ok::<_, crate::drivers::kube::Error>((record, views))
    };
    let helm_list = helm.list(&c.kubeconfig);
    let tags = crate::ops::tags::observed(&c.kube);
    let (reads, releases, tags) = tokio::join!(kube_reads, helm_list, tags);
    let (record, views) = reads?;
    let releases = releases.map_err(|source| Error::Releases {
        cluster: spec.name.clone(),
        source,
    })?;
    let tags = tags.map_err(Error::Tags)?;
    let applied_labels = views
        .iter()
        .filter(|v| !v.applied_labels.is_empty())
        .map(|v| (v.name.clone(), v.applied_labels.clone()))
        .collect();
    let namespaces = views.into_iter().map(|v| (v.name, v.labels)).collect();
    let observed = ClusterState::Present(Box::new(Observed {
        record,
        releases,
        namespaces,
        applied_labels,
        tags,
    }));
    Ok((observed, Some(c.kube)))
}

/// Run one observation as a step: its events, its time.
async fn timed<T>(
    events: &Events,
    times: &std::sync::Mutex<Vec<(String, std::time::Duration)>>,
    id: &str,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let t = tokio::time::Instant::now();
    events.step_started(id);
    let r = work.await;
    let took = t.elapsed();
    match &r {
        Ok(_) => events.step_done(id, took),
        Err(e) => events.step_failed(id, took, &e.to_string()),
    }
    if let Ok(mut v) = times.lock() {
        v.push((id.to_string(), took));
    }
    r
}

/// What `up` observes before it plans, as steps: helm's version (and any helm a killed run
/// left working), the cluster and the registry caches at once, then the cluster's releases
/// and objects.
struct Observation {
    helm: Helm,
    observed: ClusterState,
    registries: Vec<String>,
    kube: Option<Kube>,
    /// Each observation step's time, in the order they finished.
    times: Vec<(String, std::time::Duration)>,
    /// The longest chain of observation steps.
    critical_path: std::time::Duration,
}

async fn observe_steps(
    spec: &ClusterSpec,
    k3d: &K3d,
    tools: &Toolchain,
    events: &Events,
    adopt: bool,
) -> Result<Observation, Error> {
    let times = std::sync::Mutex::new(Vec::new());
    let helm = timed(events, &times, "observe/helm", async {
        let helm = Helm::detect(tools.need_helm()?)
            .await
            .map_err(Error::Helm)?;
        Ok(tools
            .settle_children(&spec.name, helm, |m| events.note(m))
            .await?)
    });
    let found = timed(events, &times, "observe/k3d", find(spec, k3d, adopt));
    let registries = async {
        if spec.body.caches.as_ref().is_some_and(|c| c.enabled) {
            timed(events, &times, "observe/registries", caches(spec, k3d)).await
        } else {
            Ok(Vec::new())
        }
    };
    let (helm, found, registries) = tokio::try_join!(helm, found, registries)?;
    let first = times
        .lock()
        .map(|v| v.iter().map(|(_, d)| *d).max().unwrap_or_default())
        .unwrap_or_default();
    let (observed, kube, read) = match found {
        None => (ClusterState::Absent, None, std::time::Duration::ZERO),
        Some(info) => {
            let t = tokio::time::Instant::now();
            let (o, k) = timed(
                events,
                &times,
                "observe/cluster",
                read_cluster(spec, k3d, &helm, tools, events, info, true),
            )
            .await?;
            (o, k, t.elapsed())
        }
    };
    Ok(Observation {
        helm,
        observed,
        registries,
        kube,
        times: times.into_inner().unwrap_or_default(),
        critical_path: first + read,
    })
}

/// Converge a cluster to its spec.
pub async fn up(
    cx: &crate::ops::Context,
    spec: &ClusterSpec,
    applied: &[Value],
    opts: &UpOptions,
) -> Result<UpReport, Error> {
    let (tools, events) = (&cx.tools, &cx.events);
    let started = tokio::time::Instant::now();
    let k3d = K3d::new(tools.need_k3d()?);
    let _lock = lock::acquire(&tools.state_dir, &spec.name, "up")?;
    let kubeconfig = crate::ops::access::kubeconfig_path(tools, &spec.name);
    let kube_cell = OnceCell::new();
    let Observation {
        helm,
        observed,
        registries,
        kube,
        times: observe_times,
        critical_path: observe_path,
    } = observe_steps(spec, &k3d, tools, events, opts.adopt).await?;
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
            access: crate::ops::access::Access::of_spec(tools, spec),
        });
    }
    let (pending, deployed) = releases_by_status(&observed);
    let ctx = Arc::new(Ctx {
        pending,
        deployed,
        cluster: spec.name.clone(),
        k3d,
        helm,
        kubeconfig,
        kube: kube_cell,
        events: events.clone(),
        cancel: cx.cancel.clone(),
        spec_json: serde_json::to_value(spec).unwrap_or(Value::Null),
        verify_timeout: opts.verify_timeout,
    });
    let outcome = steps::run(&plan, ctx).await;
    let observation = (observe_times, observe_path, started);
    let access = crate::ops::access::Access::of_spec(tools, spec);
    report(spec, outcome, observation, plan.notes.clone(), access)
}

/// The releases observed `pending-*` (left by an interrupted helm) and `deployed` (name,
/// namespace → status, chart).
#[allow(clippy::type_complexity)]
fn releases_by_status(
    observed: &ClusterState,
) -> (
    std::collections::BTreeMap<(String, String), String>,
    std::collections::BTreeMap<(String, String), String>,
) {
    let ClusterState::Present(o) = observed else {
        return Default::default();
    };
    let key = |r: &crate::drivers::helm::cli::ReleaseInfo| (r.name.clone(), r.namespace.clone());
    let pending = o
        .releases
        .iter()
        .filter(|r| r.status.starts_with("pending-"))
        .map(|r| (key(r), r.status.clone()))
        .collect();
    let deployed = o
        .releases
        .iter()
        .filter(|r| r.status == "deployed")
        .map(|r| (key(r), r.chart.clone()))
        .collect();
    (pending, deployed)
}

/// How a run of the plan ended, as `up`'s report: observation counts as part of the run (its
/// steps come first on every path).
fn report(
    spec: &ClusterSpec,
    outcome: Outcome,
    (observe_times, observe_path, started): (
        Vec<(String, std::time::Duration)>,
        std::time::Duration,
        tokio::time::Instant,
    ),
    notes: Vec<String>,
    access: crate::ops::access::Access,
) -> Result<UpReport, Error> {
    match outcome {
        Outcome::Done(mut summary) => {
            let steps_run = summary.steps.len();
            summary.critical_path += observe_path;
            for (id, took) in observe_times {
                summary.sum += took;
                summary.steps.insert(id, took);
            }
            summary.wall = started.elapsed();
            Ok(UpReport {
                cluster: spec.name.clone(),
                steps_run,
                summary,
                up_to_date: false,
                notes,
                access,
            })
        }
        Outcome::Failed { step, error, .. } => Err(Error::Step {
            cluster: spec.name.clone(),
            step,
            source: error,
        }),
        Outcome::Interrupted(_) => Err(Error::Interrupted {
            cluster: spec.name.clone(),
        }),
    }
}

/// Delete a cluster paddock owns. Standalone registry caches are kept for other clusters.
pub async fn down(
    cx: &crate::ops::Context,
    cluster: &str,
    confirmed: bool,
    confirm: impl FnOnce(&str) -> bool,
) -> Result<DownReport, Error> {
    let tools = &cx.tools;
    let k3d = K3d::new(tools.need_k3d()?);
    let _lock = lock::acquire(&tools.state_dir, cluster, "down")?;
    let found = k3d.find(cluster).await.map_err(|source| Error::Find {
        cluster: cluster.to_string(),
        source,
    })?;
    let Some(info) = found else {
        return Ok(DownReport {
            cluster: cluster.to_string(),
            deleted: false,
        });
    };
    if !info.owned() {
        return Err(Error::NotOwned {
            cluster: cluster.to_string(),
            command: "down",
        });
    }
    if !confirmed
        && !confirm(&format!(
            "Delete cluster {cluster} and everything in it ({} nodes)? [y/N] ",
            info.nodes.len()
        ))
    {
        return Err(Error::NotConfirmed {
            cluster: cluster.to_string(),
        });
    }
    k3d.run(k3d.delete_cmd(cluster))
        .await
        .map_err(|source| Error::K3d {
            action: "delete",
            cluster: cluster.to_string(),
            source,
        })?;
    let _ = std::fs::remove_dir_all(tools.cluster_dir(cluster));
    Ok(DownReport {
        cluster: cluster.to_string(),
        deleted: true,
    })
}

/// What `down` did: deleted the cluster, or found nothing to delete.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DownReport {
    pub cluster: String,
    pub deleted: bool,
}

impl DownReport {
    pub fn message(&self) -> String {
        let cluster = &self.cluster;
        if self.deleted {
            format!("cluster {cluster} deleted; registry caches are kept for other clusters")
        } else {
            format!("cluster {cluster} does not exist; nothing to delete")
        }
    }
}

/// Parse workload manifests (multi-document YAML files relative to `root`).
pub fn load_manifests(root: &std::path::Path, files: &[String]) -> Result<Vec<Value>, Error> {
    Ok(load_manifests_from(root, files)?
        .into_iter()
        .map(|(_, o)| o)
        .collect())
}

/// The objects of the manifest files, each with the file it came from.
pub fn load_manifests_from(
    root: &std::path::Path,
    files: &[String],
) -> Result<Vec<(String, Value)>, Error> {
    let mut out = Vec::new();
    for f in files {
        let path = root.join(f);
        let read = || -> Result<Vec<Value>, ManifestError> {
            let text = std::fs::read_to_string(&path)?;
            Ok(serde_saphyr::from_multiple(&text)?)
        };
        let docs = read().map_err(|source| Error::Manifest {
            path: path.clone(),
            source,
        })?;
        out.extend(
            docs.into_iter()
                .filter(|d| !d.is_null())
                .map(|d| (f.clone(), d)),
        );
    }
    Ok(out)
}
