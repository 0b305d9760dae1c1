//! Executing a plan: steps whose needs are done run concurrently; each step is idempotent, so a
//! run that stops (failure, Ctrl-C, SIGKILL) is continued by planning again and rerunning.
//! On a failure no new step starts; running ones finish; the error names the step and quotes
//! the command and its stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::drivers::helm::cli::Helm;
use crate::drivers::k3d::cli::K3d;
use crate::drivers::kube::Kube;
use crate::engine::events::Events;
use crate::plan::{Action, Plan, Step};
use crate::spec::types::WorkloadKind;

/// Why a step of `up` failed: what it was doing, with the cause in `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("failed to {action} {name}")]
    K3d {
        action: &'static str,
        name: String,
        #[source]
        source: crate::drivers::k3d::cli::Error,
    },
    #[error("failed to get the kubeconfig of cluster {cluster}")]
    Kubeconfig {
        cluster: String,
        #[source]
        source: crate::drivers::k3d::cli::Error,
    },
    #[error("failed to save the kubeconfig to {}", path.display())]
    SaveKubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] crate::drivers::kube::Error),
    #[error("failed to {action} {release}")]
    Helm {
        action: &'static str,
        release: String,
        #[source]
        source: crate::drivers::helm::cli::Error,
    },
    #[error("failed to apply {file} ({object})")]
    Apply {
        file: String,
        object: String,
        #[source]
        source: crate::drivers::kube::Error,
    },
    #[error(transparent)]
    Tags(crate::ops::tags::Error),
    #[error(transparent)]
    Ingress(IngressError),
    #[error("a step panicked: {0}")]
    Panicked(String),
}

/// The ingress did not answer paddock's probe route in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ingress did not answer paddock's probe route at {url} (Host: {host}) within {}s: {last}. Check that the probe Gateway and VirtualService exist and select the gateway's pods (`kubectl get gateways.networking.istio.io,virtualservices.networking.istio.io -A -l app.kubernetes.io/managed-by=paddock`), that the gateway pods are ready (`kubectl -n istio-ingress get pods`), and that the port is published by the cluster's load balancer",
    timeout.as_secs()
)]
pub struct IngressError {
    pub url: String,
    pub host: String,
    pub timeout: Duration,
    /// What the last attempt got instead.
    pub last: String,
}

/// Everything steps need.
#[derive(Debug)]
pub struct Ctx {
    pub cluster: String,
    pub k3d: K3d,
    pub helm: Helm,
    /// Where the cluster's kubeconfig is kept for helm.
    pub kubeconfig: PathBuf,
    pub kube: OnceCell<Kube>,
    pub events: Events,
    /// Set by Ctrl-C: start no new step.
    pub cancel: tokio_util::sync::CancellationToken,
    /// The merged spec, recorded in the cluster.
    pub spec_json: Value,
    /// Releases observed `pending-*` (left by an interrupted helm): (name, namespace) → status.
    pub pending: BTreeMap<(String, String), String>,
    /// Releases observed `deployed`: (name, namespace) → chart (`istiod-1.30.3`).
    pub deployed: BTreeMap<(String, String), String>,
    /// How long the ingress may take to answer the probe route.
    pub verify_timeout: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    Done(Summary),
    Failed {
        step: String,
        error: StepError,
        summary: Summary,
    },
    Interrupted(Summary),
}

/// Timings of a run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub steps: BTreeMap<String, Duration>,
    pub wall: Duration,
    /// Sum of all step times (what running them one by one would take).
    pub sum: Duration,
    /// Longest chain of step times through the DAG.
    pub critical_path: Duration,
}

fn summarize(plan: &Plan, steps: BTreeMap<String, Duration>, wall: Duration) -> Summary {
    let mut finish: BTreeMap<&str, Duration> = BTreeMap::new();
    for s in &plan.steps {
        let start = s
            .needs
            .iter()
            .filter_map(|n| finish.get(n.as_str()))
            .max()
            .copied()
            .unwrap_or_default();
        finish.insert(&s.id, start + steps.get(&s.id).copied().unwrap_or_default());
    }
    Summary {
        sum: steps.values().sum(),
        critical_path: finish.values().max().copied().unwrap_or_default(),
        steps,
        wall,
    }
}

/// Run a plan's steps.
pub async fn run(plan: &Plan, ctx: Arc<Ctx>) -> Outcome {
    let started = Instant::now();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut times: BTreeMap<String, Duration> = BTreeMap::new();
    let mut failure: Option<(String, StepError)> = None;
    let mut set = tokio::task::JoinSet::new();
    loop {
        let stop = failure.is_some() || ctx.cancel.is_cancelled();
        if !stop {
            for step in &plan.steps {
                if done.contains(&step.id) || running.contains(&step.id) {
                    continue;
                }
                if step.needs.iter().all(|n| done.contains(n)) {
                    running.insert(step.id.clone());
                    ctx.events.step_started(&step.id);
                    let (step, ctx) = (step.clone(), ctx.clone());
                    set.spawn(async move {
                        let t = Instant::now();
                        let r = run_step(&step, &ctx).await;
                        (step.id, t.elapsed(), r)
                    });
                }
            }
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (id, took, result) = match joined {
            Ok(v) => v,
            Err(e) => {
                failure.get_or_insert(("?".into(), StepError::Panicked(e.to_string())));
                continue;
            }
        };
        running.remove(&id);
        times.insert(id.clone(), took);
        match result {
            Ok(()) => {
                ctx.events.step_done(&id, took);
                done.insert(id);
            }
            Err(e) => {
                ctx.events.step_failed(&id, took, &crate::engine::chain(&e));
                failure.get_or_insert((id, e));
            }
        }
    }
    let summary = summarize(plan, times, started.elapsed());
    match failure {
        Some((step, error)) => Outcome::Failed {
            step,
            error,
            summary,
        },
        None if done.len() < plan.steps.len() => Outcome::Interrupted(summary),
        None => Outcome::Done(summary),
    }
}

async fn kube(ctx: &Ctx) -> Result<&Kube, StepError> {
    ctx.kube
        .get_or_try_init(|| async {
            let text = ctx
                .k3d
                .run(ctx.k3d.kubeconfig_cmd(&ctx.cluster))
                .await
                .map_err(|source| StepError::Kubeconfig {
                    cluster: ctx.cluster.clone(),
                    source,
                })?;
            write_kubeconfig(&ctx.kubeconfig, &text).map_err(|source| {
                StepError::SaveKubeconfig {
                    path: ctx.kubeconfig.clone(),
                    source,
                }
            })?;
            Ok(Kube::connect(&ctx.cluster, &text).await?)
        })
        .await
}

/// Save a kubeconfig readable only by the user.
pub fn write_kubeconfig(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
    }
    std::fs::rename(tmp, path)
}

async fn run_step(step: &Step, ctx: &Ctx) -> Result<(), StepError> {
    match &step.action {
        Action::CreateCluster { .. }
        | Action::EnsureRegistry { .. }
        | Action::ImportImages { .. } => k3d_step(&step.action, ctx).await,
        Action::WaitNodesReady => kube(ctx)
            .await?
            .wait_nodes_ready(Duration::from_secs(300))
            .await
            .map_err(StepError::from),
        Action::WaitCoreDns => {
            let progress = ctx.events.step_progress(&step.id);
            kube(ctx)
                .await?
                .wait_rollout_reporting(
                    "Deployment",
                    "kube-system",
                    "coredns",
                    Duration::from_secs(300),
                    &|done, total| progress.report(0, done, total),
                )
                .await
                .map_err(StepError::from)
        }
        Action::HelmInstall { release } => helm_install(ctx, release).await,
        Action::ApplyTags {
            repo,
            version,
            revision,
            tags,
        } => {
            let k = kube(ctx).await?;
            crate::ops::tags::point(
                &ctx.helm,
                &ctx.kubeconfig,
                k,
                repo,
                version,
                revision,
                tags,
                Duration::from_secs(300),
            )
            .await
            .map_err(StepError::Tags)
        }
        Action::WaitReady {
            namespace,
            workloads,
            ca_bundles,
            endpoints,
            timeout_secs,
            ..
        } => {
            wait_ready(
                ctx,
                &step.id,
                namespace,
                workloads,
                ca_bundles,
                endpoints,
                *timeout_secs,
            )
            .await
        }
        Action::Namespace { name, labels } => kube(ctx)
            .await?
            .apply_namespace(name, labels)
            .await
            .map_err(StepError::from),
        Action::Apply {
            objects,
            source,
            origins,
        } => apply(ctx, objects, source, origins).await,
        Action::VerifyIngress { url, host } => verify_ingress(url, host, ctx.verify_timeout)
            .await
            .map_err(StepError::Ingress),
        Action::RecordSpec { record } => kube(ctx)
            .await?
            .write_record(&ctx.cluster, record, &ctx.spec_json)
            .await
            .map_err(StepError::from),
    }
}

/// The steps k3d does: create the cluster, a registry cache, import images.
async fn k3d_step(action: &Action, ctx: &Ctx) -> Result<(), StepError> {
    match action {
        Action::CreateCluster { config } => {
            let cmd = ctx.k3d.create_cmd(&ctx.cluster, config);
            ctx.events.command(&cmd.to_string());
            ctx.k3d.run(cmd).await.map_err(|source| StepError::K3d {
                action: "create cluster",
                name: ctx.cluster.clone(),
                source,
            })?;
            kube(ctx).await.map(|_| ())
        }
        Action::EnsureRegistry { registry } => {
            let volume = format!("{}-data", registry.name);
            let cmd = ctx.k3d.registry_create_cmd(
                &registry.name,
                registry.port,
                &registry.remote,
                &volume,
            );
            ctx.events.command(&cmd.to_string());
            match ctx.k3d.run(cmd).await {
                Ok(_) => Ok(()),
                // Another cluster's `up` may have made it meanwhile: that is just as good.
                Err(e) => match ctx.k3d.registries().await {
                    Ok(regs)
                        if regs
                            .iter()
                            .any(|r| r.name == format!("k3d-{}", registry.name)) =>
                    {
                        Ok(())
                    }
                    _ => Err(StepError::K3d {
                        action: "create registry cache",
                        name: registry.name.clone(),
                        source: e,
                    }),
                },
            }
        }
        Action::ImportImages { images } => {
            let cmd = ctx.k3d.image_import_cmd(&ctx.cluster, images);
            ctx.events.command(&cmd.to_string());
            ctx.k3d
                .run(cmd)
                .await
                .map(|_| ())
                .map_err(|source| StepError::K3d {
                    action: "import images into cluster",
                    name: ctx.cluster.clone(),
                    source,
                })
        }
        _ => Ok(()),
    }
}

/// Install (or upgrade) a release: recover what an interrupted run left pending, skip what an
/// orphaned helm already finished, then record it.
async fn helm_install(ctx: &Ctx, release: &crate::drivers::helm::Release) -> Result<(), StepError> {
    recover_pending(ctx, &release.name, &release.namespace).await?;
    if installed_unrecorded(ctx, release).await {
        ctx.events.note(&format!(
            "release {} is already deployed with its chart and values (by an interrupted run); not installed again",
            release.name
        ));
    } else {
        let cmd = ctx.helm.upgrade_install_cmd(release, &ctx.kubeconfig);
        ctx.events.command(&cmd.to_string());
        ctx.helm.run(cmd).await.map_err(|source| StepError::Helm {
            action: "install",
            release: release.name.clone(),
            source,
        })?;
    }
    Ok(kube(ctx)
        .await?
        .record_release(&release.name, &crate::plan::release_fingerprint(release))
        .await?)
}

/// Wait until a release's workloads are rolled out, its webhooks have their CA bundles and
/// its Services have endpoints. How far the rollouts are is step `id`'s progress: replicas
/// rolled out, summed over the workloads waited for so far.
async fn wait_ready(
    ctx: &Ctx,
    id: &str,
    namespace: &str,
    workloads: &[crate::plan::WorkloadRef],
    ca_bundles: &[String],
    endpoints: &[String],
    timeout_secs: u64,
) -> Result<(), StepError> {
    let k = kube(ctx).await?;
    let timeout = Duration::from_secs(timeout_secs);
    let progress = ctx.events.step_progress(id);
    for (i, w) in workloads.iter().enumerate() {
        let kind = match w.kind {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        };
        k.wait_rollout_reporting(kind, namespace, &w.name, timeout, &|done, total| {
            progress.report(i, done, total)
        })
        .await?;
    }
    for hook in ca_bundles {
        k.wait_webhook_ca(hook, timeout).await?;
    }
    for service in endpoints {
        k.wait_endpoints(namespace, service, timeout).await?;
    }
    Ok(())
}

/// Apply workload objects one by one, so an error names the manifest file it came from.
async fn apply(
    ctx: &Ctx,
    objects: &[Value],
    source: &String,
    origins: &[String],
) -> Result<(), StepError> {
    let k = kube(ctx).await?;
    for (i, obj) in objects.iter().enumerate() {
        k.apply_object(obj, "default")
            .await
            .map_err(|e| StepError::Apply {
                file: origins.get(i).unwrap_or(source).clone(),
                object: crate::drivers::kube::describe(obj),
                source: e,
            })?;
    }
    Ok(())
}

/// Is the release deployed with the chart, version and values it is to be installed with,
/// though the record does not say so (else the plan would not install it)? A helm that a
/// killed paddock left working finishes after paddock died, before paddock recorded its
/// work: the release is done, and installing it again would only repeat it. (Helm keeps no
/// record of the chart's repository: that one is taken as it is.)
async fn installed_unrecorded(ctx: &Ctx, release: &crate::drivers::helm::Release) -> bool {
    let key = (release.name.clone(), release.namespace.clone());
    if ctx.deployed.get(&key) != Some(&format!("{}-{}", release.chart, release.version)) {
        return false;
    }
    match ctx
        .helm
        .values(&release.name, &release.namespace, &ctx.kubeconfig)
        .await
    {
        // helm reports a release installed without values as `null`.
        Ok(Value::Null) => release.values == Value::Object(Default::default()),
        Ok(v) => v == release.values,
        Err(_) => false,
    }
}

/// A release left `pending-*` by an interrupted helm (we hold the cluster lock, so nobody
/// else is operating on it): roll an upgrade back, remove an install, so it can run again.
async fn recover_pending(ctx: &Ctx, name: &str, namespace: &str) -> Result<(), StepError> {
    let Some(status) = ctx.pending.get(&(name.to_string(), namespace.to_string())) else {
        return Ok(());
    };
    let cmd = match status.as_str() {
        "pending-install" => ctx.helm.uninstall_cmd(name, namespace, &ctx.kubeconfig),
        "pending-upgrade" | "pending-rollback" => {
            ctx.helm.rollback_cmd(name, namespace, &ctx.kubeconfig)
        }
        _ => return Ok(()),
    };
    ctx.events.note(&format!(
        "release {name} was left {status} by an interrupted run; recovering with `{cmd}`"
    ));
    ctx.helm
        .run(cmd)
        .await
        .map(|_| ())
        .map_err(|source| StepError::Helm {
            action: "recover",
            release: name.to_string(),
            source,
        })
}

/// GET `url` with `Host: host` until paddock's probe route answers `200` with its body: the
/// load balancer reached a gateway pod, and istiod pushed it the probe's configuration.
pub async fn verify_ingress(url: &str, host: &str, timeout: Duration) -> Result<(), IngressError> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        let (u, h) = (url.to_string(), host.to_string());
        match tokio::task::spawn_blocking(move || http_get(&u, Some(&h))).await {
            Ok(Ok(a)) if a.status == 200 && a.body.contains(crate::mesh::istio::PROBE_BODY) => {
                return Ok(());
            }
            Ok(Ok(a)) if a.status == 404 && a.head.contains("server: istio-envoy") => {
                last = "the gateway answered 404: it has no route for the probe host (its VirtualService is missing, or not bound to the probe Gateway)".to_string()
            }
            Ok(Ok(a)) => {
                last = format!(
                    "answered {} ({}) instead of the probe's 200",
                    a.status,
                    a.body.trim()
                )
            }
            Ok(Err(e)) => last = crate::engine::chain(&e),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(IngressError {
                url: url.to_string(),
                host: host.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What an HTTP server answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// The status line and headers, lower-cased.
    pub head: String,
    pub body: String,
}

/// Why a GET got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("only http:// URLs are checked: {0}")]
    Scheme(String),
    #[error("{host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{action} {host}")]
    Io {
        action: &'static str,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} closed the connection without an answer: nothing listens behind the load balancer (a gateway listens only on ports a Gateway resource declares)"
    )]
    Closed(String),
    #[error("{0} did not answer HTTP")]
    NotHttp(String),
}

/// A minimal HTTP/1.1 GET (the connection closed after it), with an optional Host header.
pub fn http_get(url: &str, host_header: Option<&str>) -> Result<HttpAnswer, HttpError> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Scheme(url.to_string()))?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let io = |action: &'static str| {
        move |source| HttpError::Io {
            action,
            host: host.to_string(),
            source,
        }
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| HttpError::Resolve {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| HttpError::Resolve {
            host: host.to_string(),
            reason: "no address".into(),
        })?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(io("connect"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io("configure the connection to"))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host_header.unwrap_or(host)
    )
    .map_err(io("write to"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io("read from"))?;
    if raw.is_empty() {
        return Err(HttpError::Closed(host.to_string()));
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HttpError::NotHttp(host.to_string()))?;
    Ok(HttpAnswer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}
