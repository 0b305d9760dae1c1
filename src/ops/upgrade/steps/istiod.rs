//! Step `istiod` (ISTIO.md, canary step 2, and in place). Canary: install istiod of the
//! new revision beside the old one, which keeps serving every workload. In place: upgrade the
//! one istiod where it stands (its revision name stays). Either way it is done when istiod
//! rolled out, its Service has an endpoint, its injector webhook has a caBundle and it injects
//! the new version's proxy. Undo: canary, uninstall the new revision (nothing uses it yet);
//! in place, roll the release back and restart what it injected meanwhile.

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Step, run_id, undo_id};
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::{Strategy, UpgradeStep};

#[derive(Debug)]
pub(super) struct Istiod;

impl Step for Istiod {
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

/// Install (canary) or upgrade (in place) `istiod-<to_rev>` at the target version, and wait
/// until it serves.
async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    let istiod = ctx.release(&p.to, &p.to_rev, "istiod")?;
    ctx.helm_install(&istiod).await?;
    ctx.wait_istiod(&p.to_rev, &p.to, Some(&run_id(UpgradeStep::Istiod)))
        .await?;
    Ok(Value::Null)
}

/// The release is deployed at the target version and istiod still serves.
async fn check(ctx: &Ctx<'_>) -> bool {
    let p = &ctx.params;
    let want = format!("istiod-{}", p.to);
    let deployed = matches!(
        ctx.release_chart(&format!("istiod-{}", p.to_rev)).await,
        Ok(Some((chart, status))) if chart == want && status == "deployed"
    );
    deployed && ctx.wait_istiod(&p.to_rev, &p.to, None).await.is_ok()
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    match p.strategy {
        Strategy::Canary => {
            ctx.helm_uninstall(&format!("istiod-{}", p.to_rev)).await?;
            Ok(true)
        }
        Strategy::InPlace => {
            let release = format!("istiod-{}", p.from_rev);
            // Only a release that did move is rolled back.
            let moved = ctx
                .release_chart(&release)
                .await?
                .is_some_and(|(chart, _)| chart == format!("istiod-{}", p.to));
            if !moved {
                return Ok(false);
            }
            ctx.helm(
                format!("roll back {release}"),
                &["rollback", &release, "-n", "istio-system"],
            )
            .await?;
            ctx.wait_istiod(&p.from_rev, &p.from, Some(&undo_id(UpgradeStep::Istiod)))
                .await?;
            ctx.restart(Vec::new()).await?;
            Ok(true)
        }
    }
}
