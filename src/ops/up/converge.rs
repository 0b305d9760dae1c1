//! `up` as users run it: an unfinished upgrade of the cluster is continued first, and a
//! spec whose `istio.version` moved is upgraded by the spec's strategy (never reinstalled)
//! before the rest converges.

use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::chain;

use super::{Error, UpOptions, UpReport, up};
use crate::ops::Context;
use crate::ops::upgrade::{self, Report, Request};
use crate::spec::ClusterSpec;

/// What `up` did: the upgrade it ran first, if any, then the convergence.
#[derive(Debug)]
pub struct Converged {
    pub upgrade: Option<Report>,
    pub up: UpReport,
}

/// Bring `spec`'s cluster to its spec, upgrading Istio first where that is due.
pub async fn converge(
    cx: &Context,
    spec: &ClusterSpec,
    applied: &[Value],
    opts: &UpOptions,
) -> Result<Converged, Error> {
    // Without its tools nothing can happen: say so before anything is written.
    cx.tools.need_k3d()?;
    let journal = cx.journal(&spec.name)?;
    let mut upgraded = None;
    if spec.body.istio.is_some() && unfinished_upgrade(&journal, &spec.name)? {
        upgraded = Some(upgrade_to(cx, spec, None).await?);
    }
    let op = cx.operation_id("up");
    journal.record(&op, "op-started", None, json!({"cluster": spec.name}))?;
    let result = match up(cx, spec, applied, opts).await {
        // `up` learns it from the same observation it plans from.
        Err(Error::UpgradeDue(to)) => match upgrade_to(cx, spec, Some(to)).await {
            Ok(report) => {
                upgraded = Some(report);
                up(cx, spec, applied, opts).await
            }
            Err(e) => Err(e),
        },
        other => other,
    };
    // The operation's own error is what the user needs; a journal that cannot say how it
    // ended too is secondary (it reads as unfinished, and `up` is rerun anyway).
    let _ = match &result {
        Ok(r) => journal.record(
            &op,
            "op-done",
            None,
            json!({"upToDate": r.up_to_date, "stepsRun": r.steps_run}),
        ),
        Err(e) => journal.record(&op, "op-failed", None, json!({"error": chain(e)})),
    };
    Ok(Converged {
        upgrade: upgraded,
        up: result?,
    })
}

/// Is there an upgrade to continue first? One paused for a person's check is theirs to
/// continue: `up` refuses until they do.
fn unfinished_upgrade(
    journal: &crate::engine::journal::Journal,
    cluster: &str,
) -> Result<bool, Error> {
    let Some((op, _)) = journal.unfinished_upgrade()? else {
        return Ok(false);
    };
    if journal.status(&op)?.as_deref() == Some("paused") {
        return Err(Error::UpgradePaused {
            cluster: cluster.to_string(),
            op,
        });
    }
    Ok(true)
}

/// Upgrade (or, with `to` unset, continue the unfinished upgrade) with the defaults of a plain
/// `paddock upgrade`.
async fn upgrade_to(cx: &Context, spec: &ClusterSpec, to: Option<String>) -> Result<Report, Error> {
    let req = Request {
        to,
        max_concurrent: 4,
        step_timeout: Duration::from_secs(300),
        ..Request::default()
    };
    let report = upgrade::execute(cx, spec, &req)
        .await
        .map_err(|e| Error::Upgrade(Box::new(e)))?;
    if matches!(report, Report::Interrupted { .. }) {
        return Err(Error::Interrupted {
            cluster: spec.name.clone(),
        });
    }
    Ok(report)
}

/// What `up` would change on `spec`'s cluster now — the ids of the steps it would run — read
/// and planned, not applied (the daemon's report mode). Manifests are read under `root`.
pub async fn drift(
    cx: &Context,
    spec: &ClusterSpec,
    root: &std::path::Path,
) -> Result<Vec<String>, Error> {
    let k3d = crate::drivers::k3d::cli::K3d::new(cx.tools.need_k3d()?);
    let helm = crate::drivers::helm::cli::Helm::detect(cx.tools.need_helm()?)
        .await
        .map_err(Error::Helm)?;
    let (state, registries, _) =
        super::observe(spec, &k3d, &helm, &cx.tools, &cx.events, false, false).await?;
    let applied = super::load_manifests(root, &spec.body.workloads)?;
    let plan = crate::plan::up(spec, &state, &applied, &registries);
    Ok(plan.steps.iter().map(|s| s.id.clone()).collect())
}
