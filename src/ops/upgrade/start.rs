//! The upgrade operation as the CLI and the daemon ask for it: continue the cluster's
//! unfinished upgrade or start a new one (its parameters decided from the request, the spec
//! and what the cluster records), check before changing anything, run the steps, and record
//! the new Istio in the cluster when they are done.

use std::time::Duration;

use serde::Serialize;

use super::{Ctx, Error, Outcome, preflight, recover_pending, run};
use crate::drivers::helm::cli::Helm;
use crate::drivers::kube::Kube;
use crate::engine::journal::Journal;
use crate::mesh::istio;
use crate::ops::Context;
use crate::ops::up::connect_owned;
use crate::plan::upgrade::{self as plan, Params, Strategy, UpgradeStep};
use crate::spec::ClusterSpec;

/// What is asked for. Without `to`, only an unfinished upgrade can be continued.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub to: Option<String>,
    /// `None`: the spec's strategy (canary when in place would jump more than one minor).
    pub strategy: Option<Strategy>,
    /// Decide and say what would run; change nothing.
    pub dry_run: bool,
    /// Stop after this step (by its journal name) for a human check.
    pub pause_after: Option<String>,
    /// Seconds old proxies get before their revision is removed; `None`: the spec's.
    pub grace_secs: Option<u64>,
    pub max_concurrent: usize,
    /// How long each step may wait for the cluster.
    pub step_timeout: Duration,
}

/// How an upgrade that did not fail ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Report {
    Done {
        op: String,
        params: Params,
    },
    /// Stopped after `after` as asked; the next run continues.
    Paused {
        op: String,
        params: Params,
        after: UpgradeStep,
    },
    /// Cancelled: stopped before `next`; the next run continues.
    Interrupted {
        op: String,
        params: Params,
        next: UpgradeStep,
    },
    /// `dry_run`: what would run.
    Preview(Preview),
}

/// What an upgrade would do: its parameters and steps, each marked done when an unfinished
/// operation (`continues`) recorded it so (a done step is re-checked, not blindly skipped).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub params: Params,
    pub continues: Option<String>,
    pub steps: Vec<PreviewStep>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStep {
    pub step: UpgradeStep,
    pub describe: String,
    pub done: bool,
}

/// The operation to run: a new one, or the unfinished one continued.
struct Decided {
    op: String,
    params: Params,
    resumed: bool,
}

/// Upgrade `spec`'s cluster as `req` asks, under the cluster's lock.
pub async fn execute(cx: &Context, spec: &ClusterSpec, req: &Request) -> Result<Report, Error> {
    if spec.body.istio.is_none() {
        return Err(Error::NoIstio {
            cluster: spec.name.clone(),
        });
    }
    let journal = cx.journal(&spec.name).map_err(Error::Journal)?;
    let (_lock, c) = connect_owned(&cx.tools, &spec.name, "upgrade")
        .await
        .map_err(|e| Error::Connect(Box::new(e)))?;
    let helm = helm(cx, &spec.name).await?;
    let decided = decide(cx, spec, &journal, &c.kube, req).await?;
    let ctx = Ctx {
        cluster: &spec.name,
        spec,
        kube: &c.kube,
        helm: &helm,
        kubeconfig: &c.kubeconfig,
        reporter: &cx.events,
        journal: &journal,
        params: decided.params.clone(),
        step_timeout: req.step_timeout,
        max_concurrent: req.max_concurrent,
        cancel: cx.cancel.clone(),
    };
    let steps = plan::steps(
        decided.params.strategy,
        !plan::canary_namespaces(spec).is_empty(),
    );
    if req.dry_run {
        return preview(&journal, decided, &steps).map(Report::Preview);
    }
    let pause_after = pause_after(req, &steps)?;
    let Decided {
        op,
        params,
        resumed,
    } = decided;
    if resumed {
        recover_pending(&ctx).await?;
    } else {
        preflight::check(&ctx).await?;
        journal
            .record(
                &op,
                "op-started",
                None,
                serde_json::to_value(&params).unwrap_or_default(),
            )
            .map_err(Error::Unjournaled)?;
    }
    match run(&ctx, &op, pause_after).await {
        Outcome::Done => {
            finish(cx, spec, &c.kube, &params).await?;
            Ok(Report::Done { op, params })
        }
        Outcome::Paused(after) => Ok(Report::Paused { op, params, after }),
        Outcome::Interrupted(next) => Ok(Report::Interrupted { op, params, next }),
        Outcome::RolledBack {
            step,
            error,
            undone,
        } => Err(Error::RolledBack {
            step,
            undone,
            from: params.from,
            source: Box::new(error),
        }),
        Outcome::Failed { at, error } => Err(Error::StepFailed {
            at,
            source: Box::new(error),
        }),
    }
}

/// helm, once no helm an earlier run left behind still works on the cluster.
async fn helm(cx: &Context, cluster: &str) -> Result<Helm, Error> {
    let bin = cx.tools.need_helm().map_err(Error::Missing)?;
    let helm = Helm::detect(bin).await.map_err(Error::HelmMissing)?;
    cx.tools
        .settle_children(cluster, helm, |m| cx.events.note(m))
        .await
        .map_err(Error::Leftover)
}

/// Continue the cluster's unfinished upgrade, or decide a new one's parameters.
async fn decide(
    cx: &Context,
    spec: &ClusterSpec,
    journal: &Journal,
    kube: &Kube,
    req: &Request,
) -> Result<Decided, Error> {
    let unfinished = journal
        .unfinished_upgrade()
        .map_err(Error::Journal)?
        .filter(|(op, _)| op.starts_with("upgrade-"));
    if let Some((op, detail)) = unfinished {
        let params: Params = serde_json::from_value(detail).map_err(Error::UnreadableParams)?;
        if req.to.as_deref().is_some_and(|t| t != params.to) {
            return Err(Error::OtherUnfinished {
                cluster: spec.name.clone(),
                to: params.to,
            });
        }
        cx.events.note(&format!(
            "continuing the unfinished upgrade {op} ({} → {})",
            params.from, params.to
        ));
        return Ok(Decided {
            op,
            params,
            resumed: true,
        });
    }
    let to = req.to.clone().ok_or(Error::NoTarget)?;
    let params = new_params(cx, spec, kube, req, to).await?;
    Ok(Decided {
        op: cx.operation_id("upgrade"),
        params,
        resumed: false,
    })
}

/// A new upgrade's parameters: from what the cluster records (the spec's version when it
/// records none) to `to`, by the requested strategy or the spec's.
async fn new_params(
    cx: &Context,
    spec: &ClusterSpec,
    kube: &Kube,
    req: &Request,
    to: String,
) -> Result<Params, Error> {
    let istio_spec = spec.body.istio.as_ref().ok_or_else(|| Error::NoIstio {
        cluster: spec.name.clone(),
    })?;
    let version = |v: &str| {
        istio::parse_version(v).map_err(|source| Error::BadVersion {
            version: v.to_string(),
            source,
        })
    };
    let to_v = version(&to)?;
    let record = kube
        .record()
        .await
        .map_err(|source| Error::Kube {
            action: "read what paddock recorded in the cluster".into(),
            source,
        })?
        .unwrap_or_default();
    let from = if record.istio_version.is_empty() {
        istio_spec.version.clone()
    } else {
        record.istio_version.clone()
    };
    let from_v = version(&from)?;
    let from_rev = if record.istio_revision.is_empty() {
        istio::revision_for(&from_v)
    } else {
        record.istio_revision.clone()
    };
    let jump = (to_v.minor as i64 - from_v.minor as i64).unsigned_abs();
    let spec_default = match istio_spec.upgrade.strategy {
        crate::spec::types::Strategy::InPlace => Strategy::InPlace,
        crate::spec::types::Strategy::Canary => Strategy::Canary,
    };
    let strategy = match req.strategy {
        Some(s) => s,
        None if spec_default == Strategy::InPlace && jump > 1 => {
            cx.events.note(&format!(
                "{from} → {to} is too big a jump in place; using a canary upgrade"
            ));
            Strategy::Canary
        }
        None => spec_default,
    };
    let to_rev = match strategy {
        Strategy::Canary => istio::revision_for(&to_v),
        Strategy::InPlace => from_rev.clone(),
    };
    let grace_secs = req.grace_secs.unwrap_or_else(|| {
        crate::spec::validate::parse_duration(&istio_spec.upgrade.grace_period)
            .map(|d| d.as_secs().max(0) as u64)
            .unwrap_or(120)
    });
    Ok(Params {
        strategy,
        from,
        to,
        from_rev,
        to_rev,
        grace_secs,
    })
}

fn preview(journal: &Journal, d: Decided, steps: &[UpgradeStep]) -> Result<Preview, Error> {
    let done = if d.resumed {
        journal.done_steps(&d.op).map_err(Error::Journal)?
    } else {
        Vec::new()
    };
    Ok(Preview {
        steps: steps
            .iter()
            .map(|&step| PreviewStep {
                step,
                describe: step.describe(&d.params),
                done: done.iter().any(|s| s == step.name()),
            })
            .collect(),
        continues: d.resumed.then_some(d.op),
        params: d.params,
    })
}

fn pause_after(req: &Request, steps: &[UpgradeStep]) -> Result<Option<UpgradeStep>, Error> {
    let Some(given) = &req.pause_after else {
        return Ok(None);
    };
    match given.parse::<UpgradeStep>() {
        Ok(step) if steps.contains(&step) => Ok(Some(step)),
        _ => Err(Error::NoSuchStep {
            given: given.clone(),
            steps: steps.iter().map(|s| s.name().to_string()).collect(),
        }),
    }
}

/// The steps are done: record the new Istio in the cluster, and say when the spec still
/// names the old one.
async fn finish(
    cx: &Context,
    spec: &ClusterSpec,
    kube: &Kube,
    params: &Params,
) -> Result<(), Error> {
    kube.record_istio(
        &params.to,
        &params.to_rev,
        &istio::releases_for(spec, &params.to, &params.to_rev),
    )
    .await
    .map_err(|source| Error::Kube {
        action: format!("record Istio {} in the cluster", params.to),
        source,
    })?;
    let said = spec.body.istio.as_ref().map(|i| i.version.as_str());
    if said.is_some_and(|v| v != params.to) {
        cx.events.note(&format!(
            "the spec of cluster {} still says Istio {}: set `istio.version: {}` so the next `up` keeps it",
            spec.name,
            said.unwrap_or_default(),
            params.to
        ));
    }
    Ok(())
}
