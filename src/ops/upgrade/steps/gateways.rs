//! Step `gateways` (ISTIO.md, canary step 8, and in place): the gateway releases move to
//! the target version, roll out, and must run the new proxy. Undo: each gateway that did
//! move is rolled back (`helm rollback`) and rolls out again.

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Step, run_id, undo_id};
use crate::drivers::helm::Release;
use crate::engine::events::StepProgress;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::UpgradeStep;

#[derive(Debug)]
pub(super) struct Gateways;

impl Step for Gateways {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn check<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(ctx.deployed_at_target("gateway"))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(undo(ctx))
    }
}

fn gateways(releases: Vec<Release>) -> Vec<Release> {
    releases
        .into_iter()
        .filter(|r| r.chart == "gateway")
        .collect()
}

/// Wait for gateway `gw`'s rollout, reported as part `part` of `progress`.
async fn wait_rollout(
    ctx: &Ctx<'_>,
    gw: &Release,
    progress: &StepProgress,
    part: usize,
) -> Result<(), Error> {
    ctx.kube
        .wait_rollout_reporting(
            "Deployment",
            &gw.namespace,
            &gw.name,
            ctx.step_timeout,
            &|done, total| progress.report(part, done, total),
        )
        .await
        .map_err(|source| Error::Kube {
            action: format!(
                "wait for the rollout of gateway {}/{}",
                gw.namespace, gw.name
            ),
            source,
        })
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    let gateways = gateways(ctx.desired(&p.to, &p.to_rev));
    let progress = ctx.reporter.step_progress(&run_id(UpgradeStep::Gateways));
    for (i, gw) in gateways.iter().enumerate() {
        ctx.helm_install(gw).await?;
        wait_rollout(ctx, gw, &progress, i).await?;
    }
    let namespaces = gateways.iter().map(|r| r.namespace.clone()).collect();
    let left = ctx.stale(namespaces).await?;
    if left > 0 {
        return Err(Error::GatewaysStale { left });
    }
    Ok(Value::Null)
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    let moved_to = format!("gateway-{}", p.to);
    let progress = ctx.reporter.step_progress(&undo_id(UpgradeStep::Gateways));
    for (i, gw) in gateways(ctx.desired(&p.from, &p.from_rev))
        .iter()
        .enumerate()
    {
        // Only a gateway that did move is rolled back.
        let moved = ctx
            .release_chart(&gw.name)
            .await?
            .is_some_and(|(chart, _)| chart == moved_to);
        if !moved {
            continue;
        }
        ctx.helm(
            format!("roll back {}", gw.name),
            &["rollback", &gw.name, "-n", &gw.namespace],
        )
        .await?;
        wait_rollout(ctx, gw, &progress, i).await?;
    }
    Ok(true)
}
