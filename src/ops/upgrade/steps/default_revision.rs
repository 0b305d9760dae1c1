//! Step `default-revision` (ISTIO.md, canary step 10): `istio-base` moves its
//! `defaultRevision` to the new revision, so the cluster-wide validator
//! (`istiod-default-validator`) calls the new istiod. Undo: back to the old revision.

use futures::future::BoxFuture;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use serde_json::{Value, json};

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

const VALIDATOR: &str = "istiod-default-validator";

#[derive(Debug)]
pub(super) struct DefaultRevision;

impl Step for DefaultRevision {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(undo(ctx))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let p = &ctx.params;
    let base = ctx.release(&p.to, &p.to_rev, "base")?;
    ctx.helm_install(&base).await?;
    let service = validator_service(ctx).await?;
    if service != format!("istiod-{}", p.to_rev) {
        return Err(Error::Validator {
            service,
            rev: p.to_rev.clone(),
        });
    }
    Ok(Value::Null)
}

/// The Service the default validator's (first) webhook calls; empty when there is none.
async fn validator_service(ctx: &Ctx<'_>) -> Result<String, Error> {
    let vwc: Option<ValidatingWebhookConfiguration> = ctx
        .kube
        .get_cluster_scoped(VALIDATOR)
        .await
        .map_err(|source| Error::Kube {
            action: format!("read {VALIDATOR}"),
            source,
        })?;
    Ok(vwc
        .and_then(|v| v.webhooks)
        .and_then(|hooks| hooks.into_iter().next())
        .and_then(|hook| hook.client_config.service)
        .map(|service| service.name)
        .unwrap_or_default())
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    let p = &ctx.params;
    let mut base = ctx.release(&p.to, &p.to_rev, "base")?;
    base.values["defaultRevision"] = json!(p.from_rev);
    ctx.helm_install(&base).await?;
    Ok(true)
}
