//! Step `verify` (ISTIO.md, in place: "verify no old images remain"): no workload runs an
//! old proxy image any more. Changes nothing, so it has no undo.

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

#[derive(Debug)]
pub(super) struct Verify;

impl Step for Verify {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn check<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(check(ctx))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let left = ctx.stale(Vec::new()).await?;
    if left > 0 {
        return Err(Error::Stale { left });
    }
    Ok(Value::Null)
}

async fn check(ctx: &Ctx<'_>) -> bool {
    ctx.stale(Vec::new()).await.is_ok_and(|n| n == 0)
}
