//! Step `tags` (ISTIO.md, canary step 6): every other tag (`default`, `stable`, the spec's)
//! moves to the new revision; namespaces keep their labels, their next pods get the new
//! proxy. Undo: the tags move back.

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::main_tags;

#[derive(Debug)]
pub(super) struct Tags;

impl Step for Tags {
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
    let p = &ctx.params;
    ctx.point_tags(&main_tags(ctx.spec), &p.to, &p.to_rev)
        .await?;
    Ok(Value::Null)
}

async fn check(ctx: &Ctx<'_>) -> bool {
    ctx.tags_on(&main_tags(ctx.spec), &ctx.params.to_rev).await
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    ctx.point_tags(&main_tags(ctx.spec), &p.from, &p.from_rev)
        .await?;
    Ok(true)
}
