//! Step `save-values` (ISTIO.md, in place: "save `helm get values` of each release"): every
//! release's values as installed go into the journal, so what the cluster had before is on
//! record (the undo of `istiod` uses `helm rollback`, not these). Changes nothing: no undo,
//! and a resumed upgrade trusts the journal.

use futures::future::BoxFuture;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

#[derive(Debug)]
pub(super) struct SaveValues;

impl Step for SaveValues {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }
}

/// The journaled detail: release name → its values.
async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    let mut saved = serde_json::Map::new();
    for r in ctx.desired(&p.from, &p.from_rev) {
        let values = ctx
            .helm(
                format!("read the values of {}", r.name),
                &["get", "values", &r.name, "-n", &r.namespace, "-o", "json"],
            )
            .await?;
        saved.insert(
            r.name.clone(),
            serde_json::from_str(&values).unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(saved))
}
