//! Step `restart` (ISTIO.md, canary step 7, and in place): every workload whose proxy is
//! stale restarts (rolling restarts, evictions for OnDelete and bare pods; Jobs are left
//! alone). Undo: canary, the tags move back to the old revision and the workloads restart
//! onto it; in place, they restart again (the undo of `istiod`, which runs after this one,
//! restarts them once more onto the rolled-back istiod).

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::{Strategy, main_tags};

#[derive(Debug)]
pub(super) struct Restart;

impl Step for Restart {
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
    ctx.restart(Vec::new()).await?;
    Ok(Value::Null)
}

/// No workload has a stale proxy.
async fn check(ctx: &Ctx<'_>) -> bool {
    ctx.stale(Vec::new()).await.is_ok_and(|n| n == 0)
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    if p.strategy == Strategy::Canary {
        ctx.point_tags(&main_tags(ctx.spec), &p.from, &p.from_rev)
            .await?;
    }
    ctx.restart(Vec::new()).await?;
    Ok(true)
}
