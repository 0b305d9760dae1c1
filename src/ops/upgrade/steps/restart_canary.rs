//! Step `restart-canary` (ISTIO.md, canary step 5): the workloads of the canary namespaces
//! restart onto the new revision, and must all run its proxy before the other tags move —
//! the canary's verdict on the new revision. Undo: tag `canary` back to the old revision and
//! restart them again.

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use super::tag_canary::canary;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::canary_namespaces;

#[derive(Debug)]
pub(super) struct RestartCanary;

impl Step for RestartCanary {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn check<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(check(ctx))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(undo(ctx))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    ctx.restart(canary_namespaces(ctx.spec)).await?;
    let left = ctx.stale(canary_namespaces(ctx.spec)).await?;
    if left > 0 {
        return Err(Error::CanaryStale {
            left,
            rev: ctx.params.to_rev.clone(),
        });
    }
    Ok(Value::Null)
}

/// No canary workload has a stale proxy.
async fn check(ctx: &Ctx<'_>) -> bool {
    ctx.stale(canary_namespaces(ctx.spec))
        .await
        .is_ok_and(|n| n == 0)
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    ctx.point_tags(&canary(), &p.from, &p.from_rev).await?;
    ctx.restart(canary_namespaces(ctx.spec)).await?;
    Ok(true)
}
