//! Istio upgrades, exactly as ISTIO.md lays them out: the revision canary with tags (steps
//! 1–11, each with its wait and its undo) and the in-place upgrade. Every step is journaled
//! before and after it runs; a killed upgrade continues on the next `paddock upgrade` (done
//! steps are re-checked, not redone); a step whose check fails or times out rolls back the
//! completed steps in reverse.
//!
//! Where things are:
//! - `plan::upgrade`: the steps as values ([`UpgradeStep`]), which a strategy has and in which
//!   order, and what each does in words — pure, so `--dry-run` prints what this runs.
//! - `steps/<step>.rs`: one file per step with its do (`run`), its re-check when a killed
//!   upgrade resumes (`check`) and its `undo`, for both strategies.
//! - this file: the runner (journaling, pausing, rollback in reverse), [`Ctx`] with what the
//!   steps share, [`Outcome`] and [`Error`]; `preflight.rs`: the checks before anything changes.
//!
//! Why a trait (`steps::Step`) rather than methods on the enum: the enum is the plan's pure
//! value, journaled and printed, and must not know the drivers; doing a step needs them. One
//! `match` (`steps::of`) joins a value to its behaviour, so a new variant does not compile
//! until it has a description (in the plan) and a do/check/undo (here).

pub mod preflight;
mod start;
mod steps;

pub use start::{Preview, PreviewStep, Report, Request, execute};

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use serde_json::{Value, json};

use crate::drivers::exec::Cmd;
use crate::drivers::helm::Release;
use crate::drivers::helm::cli::{self as helm_cli, Helm};
use crate::drivers::kube::{self, Kube};
use crate::engine::chain;
use crate::engine::events::Events;
use crate::engine::journal::{self, Journal};
use crate::mesh::istio;
use crate::ops::restart::{self, Mesh};
use crate::ops::tags;
use crate::plan::upgrade::{self as plan, Params, UpgradeStep};
use crate::spec::ClusterSpec;

/// Why an upgrade, or one of its steps, failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action}")]
    Helm {
        action: String,
        #[source]
        source: helm_cli::Error,
    },
    #[error("failed to {action}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to point {} at revision {rev}", tag_list(tags))]
    Tags {
        tags: Vec<String>,
        rev: String,
        #[source]
        source: Box<tags::Error>,
    },
    /// What `ops::restart` (a restart, its targets, its reading of the mesh) said; its
    /// messages name what failed.
    #[error(transparent)]
    Restart(Box<crate::ops::restart::Error>),
    #[error("failed to read the Kubernetes version of the cluster")]
    ServerVersion(#[source] ::kube::Error),
    #[error("no {0} release")]
    NoRelease(&'static str),
    #[error("revision {rev} injects {image}, not version {version}")]
    InjectorImage {
        rev: String,
        image: String,
        version: String,
    },
    #[error("{left} canary workload(s) still not on {rev}")]
    CanaryStale { left: usize, rev: String },
    #[error("{left} gateway workload(s) do not run the new proxy")]
    GatewaysStale { left: usize },
    #[error("{left} workload(s) still run an old proxy")]
    Stale { left: usize },
    #[error("the probe pod was refused")]
    ProbeRefused(#[source] kube::Error),
    #[error(
        "the probe pod was injected by {got_revision:?} with {got_image:?}, not by {rev} with {want_image:?}"
    )]
    ProbeInjection {
        got_revision: Option<String>,
        got_image: Option<String>,
        rev: String,
        want_image: Option<String>,
    },
    #[error("namespace {namespace} still selects revision {rev}")]
    NamespaceOnOld { namespace: String, rev: String },
    #[error("tag {tag} still points at revision {rev}")]
    TagOnOld { tag: String, rev: String },
    #[error("pod {pod} still runs a proxy of revision {rev}")]
    PodOnOld { pod: String, rev: String },
    #[error(
        "pod {pod} still runs a proxy of revision {rev}: it has been terminating for longer than {}s",
        timeout.as_secs()
    )]
    PodTerminating {
        pod: String,
        rev: String,
        timeout: Duration,
    },
    #[error("istiod-default-validator calls {service:?}, not istiod-{rev}")]
    Validator { service: String, rev: String },
    #[error("preflight refused the upgrade; nothing was changed:\n  - {}", problems.join("\n  - "))]
    Refused { problems: Vec<String> },
    #[error(
        "stopped so nothing happens that the journal does not know; fix the state directory and run `paddock upgrade` again to continue"
    )]
    Unjournaled(#[source] journal::Error),
    #[error("past this point rollback means reinstalling revision {rev}")]
    PastRollback {
        rev: String,
        #[source]
        source: Box<Error>,
    },
    #[error("cluster {cluster} has no Istio to upgrade")]
    NoIstio { cluster: String },
    /// The cluster could not be locked, found or connected to; its own error says what to do.
    #[error(transparent)]
    Connect(Box<crate::ops::up::Error>),
    #[error(transparent)]
    Journal(journal::Error),
    #[error(transparent)]
    Missing(crate::drivers::toolchain::Missing),
    #[error("failed to run helm")]
    HelmMissing(#[source] helm_cli::Error),
    #[error(transparent)]
    Leftover(crate::drivers::exec::LeftoverError),
    #[error("the journal's unfinished upgrade is unreadable")]
    UnreadableParams(#[source] serde_json::Error),
    #[error(
        "an upgrade of cluster {cluster} to {to} is unfinished; run `paddock upgrade {cluster}` to continue it first"
    )]
    OtherUnfinished { cluster: String, to: String },
    #[error("say which version to upgrade to: --to VERSION")]
    NoTarget,
    #[error("Istio version {version}")]
    BadVersion {
        version: String,
        #[source]
        source: istio::VersionError,
    },
    #[error("--pause-after {given}: no such step; the steps are {}", steps.join(", "))]
    NoSuchStep { given: String, steps: Vec<String> },
    /// `step` failed and what was done is undone (`undone`, in the order it was undone): the
    /// cluster is on Istio `from` again.
    #[error("step {step} failed")]
    RolledBack {
        step: UpgradeStep,
        undone: Vec<UpgradeStep>,
        from: String,
        #[source]
        source: Box<Error>,
    },
    /// A step failed and could not be (fully) undone, or the journal could not record it.
    #[error("step {at} failed")]
    StepFailed {
        at: String,
        #[source]
        source: Box<Error>,
    },
    /// Undoing `step` failed while rolling back from `failed` (the step error, as text).
    #[error("{failed}; undoing {step} failed too")]
    UndoFailed {
        failed: String,
        step: UpgradeStep,
        #[source]
        source: Box<Error>,
    },
}

fn tag_list(tags: &[String]) -> String {
    match tags {
        [one] => format!("tag {one}"),
        _ => format!("tags {}", tags.join(", ")),
    }
}

/// Recover the Istio releases an interrupted run of this upgrade left `pending-*` (its helm
/// killed with it; we hold the cluster lock and waited for any helm it left working): roll a
/// pending upgrade back, remove a pending install, so the step that ran it can run again
/// instead of failing on helm's "another operation is in progress".
pub async fn recover_pending(ctx: &Ctx<'_>) -> Result<(), Error> {
    let p = &ctx.params;
    let ours: Vec<Release> = ctx
        .desired(&p.from, &p.from_rev)
        .into_iter()
        .chain(ctx.desired(&p.to, &p.to_rev))
        .collect();
    let list = ctx
        .helm
        .list(ctx.kubeconfig)
        .await
        .map_err(|source| Error::Helm {
            action: "list the Helm releases".into(),
            source,
        })?;
    for r in list.iter().filter(|r| {
        r.status.starts_with("pending-")
            && ours
                .iter()
                .any(|o| o.name == r.name && o.namespace == r.namespace)
    }) {
        let cmd = if r.status == "pending-install" {
            ctx.helm
                .uninstall_cmd(&r.name, &r.namespace, ctx.kubeconfig)
        } else {
            ctx.helm.rollback_cmd(&r.name, &r.namespace, ctx.kubeconfig)
        };
        ctx.reporter.note(&format!(
            "release {} was left {} by an interrupted run; recovering with `{cmd}`",
            r.name, r.status
        ));
        ctx.helm.run(cmd).await.map_err(|source| Error::Helm {
            action: format!("recover release {}", r.name),
            source,
        })?;
    }
    Ok(())
}

/// How an upgrade ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    Paused(UpgradeStep),
    /// Cancelled before this step started.
    Interrupted(UpgradeStep),
    /// `step` failed; what was done is undone (`undone`, in the order it was undone).
    RolledBack {
        step: UpgradeStep,
        error: Error,
        undone: Vec<UpgradeStep>,
    },
    /// A step failed and could not be (fully) undone, or the journal could not record the
    /// upgrade. `at`: the step, or the journal record (`journal`, `op-done`) that failed.
    Failed {
        at: String,
        error: Error,
    },
}

/// Everything the steps need.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub cluster: &'a str,
    pub spec: &'a ClusterSpec,
    pub kube: &'a Kube,
    pub helm: &'a Helm,
    pub kubeconfig: &'a std::path::Path,
    pub reporter: &'a Events,
    pub journal: &'a Journal,
    pub params: Params,
    pub step_timeout: Duration,
    pub max_concurrent: usize,
    /// Cancelled: no further step starts; the operation stays unfinished.
    pub cancel: CancellationToken,
}

fn repo(spec: &ClusterSpec) -> String {
    spec.body
        .istio
        .as_ref()
        .map(|i| i.repo.clone())
        .unwrap_or_else(|| "https://istio-release.storage.googleapis.com/charts".into())
}

impl Ctx<'_> {
    /// The releases of `version` on revision `rev`, from the spec.
    fn desired(&self, version: &str, rev: &str) -> Vec<Release> {
        istio::releases_for(self.spec, version, rev)
    }

    /// The release of `chart` the spec has for `version` on revision `rev`.
    fn release(&self, version: &str, rev: &str, chart: &'static str) -> Result<Release, Error> {
        self.desired(version, rev)
            .into_iter()
            .find(|r| r.chart == chart)
            .ok_or(Error::NoRelease(chart))
    }

    async fn helm_install(&self, r: &Release) -> Result<(), Error> {
        let cmd = self.helm.upgrade_install_cmd(r, self.kubeconfig);
        self.reporter.command(&cmd.to_string());
        self.helm
            .run(cmd)
            .await
            .map(|_| ())
            .map_err(|source| Error::Helm {
                action: format!("install {}", r.name),
                source,
            })
    }

    /// Run `helm <args>` against the cluster; `action` says what it does when it fails.
    async fn helm(&self, action: impl Into<String>, args: &[&str]) -> Result<String, Error> {
        let cmd = Cmd::new(&self.helm.bin)
            .args([
                "--kubeconfig".to_string(),
                self.kubeconfig.display().to_string(),
            ])
            .args(args.iter().copied());
        self.reporter.command(&cmd.to_string());
        self.helm.run(cmd).await.map_err(|source| Error::Helm {
            action: action.into(),
            source,
        })
    }

    /// `helm uninstall`; a release already gone is fine.
    async fn helm_uninstall(&self, release: &str) -> Result<(), Error> {
        let action = format!("uninstall {release}");
        match self
            .helm(action, &["uninstall", release, "-n", "istio-system"])
            .await
        {
            Err(Error::Helm { source, .. }) if source.to_string().contains("not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// A release's chart (`istiod-1.30.3`) and status, `None` when it is not installed.
    async fn release_chart(&self, name: &str) -> Result<Option<(String, String)>, Error> {
        let list = self
            .helm
            .list(self.kubeconfig)
            .await
            .map_err(|source| Error::Helm {
                action: "list the Helm releases".into(),
                source,
            })?;
        Ok(list
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| (r.chart, r.status)))
    }

    /// Every release of `chart` the target version has is deployed at that version.
    async fn deployed_at_target(&self, chart: &str) -> bool {
        let p = &self.params;
        let want = format!("{chart}-{}", p.to);
        for r in self.desired(&p.to, &p.to_rev) {
            if r.chart != chart {
                continue;
            }
            match self.release_chart(&r.name).await {
                Ok(Some((c, status))) if c == want && status == "deployed" => {}
                _ => return false,
            }
        }
        true
    }

    /// Point tags at a revision (rendered from the chart of `version`, applied, waited for).
    async fn point_tags(
        &self,
        tag_names: &[String],
        version: &str,
        rev: &str,
    ) -> Result<(), Error> {
        tags::point(
            self.helm,
            self.kubeconfig,
            self.kube,
            &repo(self.spec),
            version,
            rev,
            tag_names,
            self.step_timeout,
        )
        .await
        .map_err(|source| Error::Tags {
            tags: tag_names.to_vec(),
            rev: rev.to_string(),
            source: Box::new(source),
        })
    }

    /// Do the tags in `tag_names` all point at `rev`?
    async fn tags_on(&self, tag_names: &[String], rev: &str) -> bool {
        let Ok(mesh) = self.mesh().await else {
            return false;
        };
        tag_names
            .iter()
            .all(|t| mesh.injectors.tags.get(t).map(String::as_str) == Some(rev))
    }

    async fn mesh(&self) -> Result<Mesh, Error> {
        Mesh::read(self.kube)
            .await
            .map_err(|e| Error::Restart(Box::new(e)))
    }

    /// Restart the workloads of `namespaces` (all when empty) whose proxy is stale.
    async fn restart(&self, namespaces: Vec<String>) -> Result<(), Error> {
        let opts = restart::Options {
            namespaces,
            stale_only: true,
            max_concurrent: self.max_concurrent,
            timeout: self.step_timeout,
        };
        restart::run(self.kube, &opts, self.reporter)
            .await
            .map(|_| ())
            .map_err(|e| Error::Restart(Box::new(e)))
    }

    /// How many workloads of `namespaces` (all when empty) still have a stale proxy.
    async fn stale(&self, namespaces: Vec<String>) -> Result<usize, Error> {
        let opts = restart::Options {
            namespaces,
            stale_only: true,
            max_concurrent: 1,
            timeout: self.step_timeout,
        };
        let (_, targets) = restart::targets(self.kube, &opts)
            .await
            .map_err(|e| Error::Restart(Box::new(e)))?;
        Ok(targets
            .iter()
            .filter(|t| !t.stale.is_empty() && t.method != restart::Method::Job)
            .count())
    }

    /// istiod of revision `rev` serves: rolled out, reachable, its injector patched, and it
    /// injects the proxy of `version`. Its rollout is the progress of step `step`, if given.
    async fn wait_istiod(&self, rev: &str, version: &str, step: Option<&str>) -> Result<(), Error> {
        let (name, hook) = if rev.is_empty() {
            ("istiod".to_string(), "istio-sidecar-injector".to_string())
        } else {
            (
                format!("istiod-{rev}"),
                format!("istio-sidecar-injector-{rev}"),
            )
        };
        let waited = |what: String| {
            move |source| Error::Kube {
                action: format!("wait for {what}"),
                source,
            }
        };
        let progress = step.map(|s| self.reporter.step_progress(s));
        self.kube
            .wait_rollout_reporting(
                "Deployment",
                "istio-system",
                &name,
                self.step_timeout,
                &|done, total| {
                    if let Some(p) = &progress {
                        p.report(0, done, total);
                    }
                },
            )
            .await
            .map_err(waited(format!("the rollout of {name}")))?;
        // Injection calls istiod through its Service: endpoints lag behind ready pods.
        self.kube
            .wait_endpoints("istio-system", &name, self.step_timeout)
            .await
            .map_err(waited(format!("an endpoint of {name}")))?;
        self.kube
            .wait_webhook_ca(&hook, self.step_timeout)
            .await
            .map_err(waited(format!("the caBundle of {hook}")))?;
        let mesh = self.mesh().await?;
        let image = mesh.images.get(rev).cloned().unwrap_or_default();
        if crate::mesh::image_tag(&image) != version {
            return Err(Error::InjectorImage {
                rev: rev.to_string(),
                image,
                version: version.to_string(),
            });
        }
        Ok(())
    }
}

/// Why the runner stopped at a step.
enum Stop {
    /// The step failed: roll back.
    Failed(Error),
    /// The journal could not record the step: stop where the journal says the cluster is.
    Unjournaled(journal::Error),
}

/// A journal write failed: stop where the journal says the cluster is, so a rerun continues.
fn unjournaled(at: &str, e: journal::Error) -> Outcome {
    Outcome::Failed {
        at: at.to_string(),
        error: Error::Unjournaled(e),
    }
}

/// Run (or continue) an upgrade. `op` is the journal operation id.
pub async fn run(ctx: &Ctx<'_>, op: &str, pause_after: Option<UpgradeStep>) -> Outcome {
    let p = &ctx.params;
    let steps = plan::steps(p.strategy, !plan::canary_namespaces(ctx.spec).is_empty());
    let done_before = match ctx.journal.done_steps(op) {
        Ok(d) => d,
        Err(e) => return unjournaled("journal", e),
    };
    let interrupted = match ctx.journal.interrupted_step(op) {
        Ok(s) => s,
        Err(e) => return unjournaled("journal", e),
    };
    let mut completed: Vec<UpgradeStep> = Vec::new();
    for &step in &steps {
        if ctx.cancel.is_cancelled() {
            return Outcome::Interrupted(step);
        }
        if done_before.iter().any(|d| d == step.name()) && steps::of(step).check(ctx).await {
            ctx.reporter
                .note(&format!("step {step} was done and still is; not redone"));
            completed.push(step);
            continue;
        }
        if interrupted.as_deref() == Some(step.name()) {
            match finished_before(ctx, op, step).await {
                Ok(true) => {
                    completed.push(step);
                    continue;
                }
                Ok(false) => {}
                Err(e) => return unjournaled(step.name(), e),
            }
        }
        match forward(ctx, op, step).await {
            Ok(()) => completed.push(step),
            Err(Stop::Unjournaled(e)) => return unjournaled(step.name(), e),
            Err(Stop::Failed(e)) => return roll_back(ctx, op, step, e, &completed).await,
        }
        if pause_after == Some(step) && completed.len() < steps.len() {
            if let Err(e) = ctx
                .journal
                .record(op, "op-paused", None, json!({"after": step}))
            {
                return unjournaled(step.name(), e);
            }
            return Outcome::Paused(step);
        }
    }
    if let Err(e) = ctx.journal.record(op, "op-done", None, Value::Null) {
        return unjournaled("op-done", e);
    }
    Outcome::Done
}

/// `step` was running when the operation was interrupted: when its effects are all there
/// (its check holds), it finished before the interruption and is journaled done, so it is not
/// run a second time.
async fn finished_before(
    ctx: &Ctx<'_>,
    op: &str,
    step: UpgradeStep,
) -> Result<bool, journal::Error> {
    if !steps::of(step).check(ctx).await {
        return Ok(false);
    }
    ctx.journal.record(
        op,
        "step-done",
        Some(step.name()),
        json!({"finishedBeforeInterruption": true}),
    )?;
    ctx.reporter.note(&format!(
        "step {step} was interrupted after its work was done; not redone"
    ));
    Ok(true)
}

/// Run one step, journaled before and after.
async fn forward(ctx: &Ctx<'_>, op: &str, step: UpgradeStep) -> Result<(), Stop> {
    let id = steps::run_id(step);
    ctx.reporter.step_started(&id);
    ctx.journal
        .record(op, "step-started", Some(step.name()), Value::Null)
        .map_err(Stop::Unjournaled)?;
    let t = Instant::now();
    match steps::of(step).run(ctx).await {
        Ok(detail) => {
            ctx.journal
                .record(op, "step-done", Some(step.name()), detail)
                .map_err(Stop::Unjournaled)?;
            ctx.reporter.step_done(&id, t.elapsed());
            Ok(())
        }
        Err(e) => {
            let text = chain(&e);
            // Best effort from here on: the undo must run whatever the journal says, and its
            // records only describe it.
            let _ =
                ctx.journal
                    .record(op, "step-failed", Some(step.name()), json!({"error": text}));
            ctx.reporter.step_failed(&id, t.elapsed(), &text);
            Err(Stop::Failed(e))
        }
    }
}

/// `step` failed with `error`: undo its partial effects, then the completed steps, in reverse.
async fn roll_back(
    ctx: &Ctx<'_>,
    op: &str,
    step: UpgradeStep,
    error: Error,
    completed: &[UpgradeStep],
) -> Outcome {
    let text = chain(&error);
    if step == UpgradeStep::RemoveOld {
        let _ = ctx
            .journal
            .record(op, "op-failed", None, json!({"step": step, "error": text}));
        let error = Error::PastRollback {
            rev: ctx.params.from_rev.clone(),
            source: Box::new(error),
        };
        return Outcome::Failed {
            at: step.name().to_string(),
            error,
        };
    }
    let mut undone = Vec::new();
    for &s in completed.iter().chain([&step]).rev() {
        let uid = steps::undo_id(s);
        let t = Instant::now();
        match steps::of(s).undo(ctx).await {
            Ok(true) => {
                let _ = ctx
                    .journal
                    .record(op, "step-undone", Some(s.name()), Value::Null);
                ctx.reporter.step_done(&uid, t.elapsed());
                undone.push(s);
            }
            Ok(false) => {}
            Err(ue) => {
                let undo_text = chain(&ue);
                ctx.reporter.step_failed(&uid, t.elapsed(), &undo_text);
                let _ = ctx.journal.record(
                    op,
                    "op-failed",
                    None,
                    json!({"step": step, "error": text, "undoFailed": s, "undoError": undo_text}),
                );
                let error = Error::UndoFailed {
                    failed: text,
                    step: s,
                    source: Box::new(ue),
                };
                return Outcome::Failed {
                    at: step.name().to_string(),
                    error,
                };
            }
        }
    }
    let _ = ctx.journal.record(
        op,
        "op-rolled-back",
        None,
        json!({"step": step, "error": text, "undone": undone}),
    );
    Outcome::RolledBack {
        step,
        error,
        undone,
    }
}
