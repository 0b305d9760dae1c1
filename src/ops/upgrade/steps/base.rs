//! Step `base` (ISTIO.md, canary step 1, and in place): upgrade the `istio-base` release
//! (CRDs, the default validator) to the target version. A canary keeps
//! `defaultRevision` on the old revision, which validates until `default-revision` moves
//! it. No undo (ISTIO.md: "usually none").

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::Step;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::Strategy;

#[derive(Debug)]
pub(super) struct Base;

impl Step for Base {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn check<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(ctx.deployed_at_target("base"))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    let mut base = ctx.release(&p.to, &p.to_rev, "base")?;
    if p.strategy == Strategy::Canary {
        base.values["defaultRevision"] = json!(p.from_rev);
    }
    ctx.helm_install(&base).await?;
    Ok(Value::Null)
}
