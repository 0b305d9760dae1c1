//! Step `tag-canary` (ISTIO.md, canary step 4; only when the spec has namespaces on tag
//! `canary`): tag `canary` moves to the new revision, so those namespaces' next pods get the
//! new proxy. Undo: the tag moves back.

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

#[derive(Debug)]
pub(super) struct TagCanary;

impl Step for TagCanary {
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

/// The tag this step moves.
pub(super) fn canary() -> Vec<String> {
    vec!["canary".to_string()]
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    ctx.point_tags(&canary(), &p.to, &p.to_rev).await?;
    Ok(Value::Null)
}

async fn check(ctx: &Ctx<'_>) -> bool {
    ctx.tags_on(&canary(), &ctx.params.to_rev).await
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    ctx.point_tags(&canary(), &p.from, &p.from_rev).await?;
    Ok(true)
}
