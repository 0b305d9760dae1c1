//! Step `remove-old` (ISTIO.md, canary step 11): the old istiod is uninstalled and webhook
//! configurations still labelled with its revision are deleted. Nothing is undone past here:
//! a failure stops the upgrade (rolling back would mean reinstalling the old revision).

use std::fmt::Debug;

use futures::future::BoxFuture;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Resource;
use kube::core::ClusterResourceScope;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

#[derive(Debug)]
pub(super) struct RemoveOld;

impl Step for RemoveOld {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn check<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(check(ctx))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let old = ctx.params.from_rev.as_str();
    ctx.helm_uninstall(&format!("istiod-{old}")).await?;
    delete_on_revision::<MutatingWebhookConfiguration>(ctx, old).await?;
    delete_on_revision::<ValidatingWebhookConfiguration>(ctx, old).await?;
    Ok(Value::Null)
}

/// The old istiod's release is gone.
async fn check(ctx: &Ctx<'_>) -> bool {
    matches!(
        ctx.release_chart(&format!("istiod-{}", ctx.params.from_rev))
            .await,
        Ok(None)
    )
}

/// Delete every object of kind `K` labelled `istio.io/rev: <rev>`.
async fn delete_on_revision<K>(ctx: &Ctx<'_>, rev: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send,
{
    let kind = K::kind(&()).to_string();
    let objects: Vec<K> = ctx.kube.list().await.map_err(|source| Error::Kube {
        action: format!("list the {kind}s"),
        source,
    })?;
    for o in objects {
        let meta = o.meta();
        let on_rev = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("istio.io/rev"))
            .is_some_and(|r| r == rev);
        if !on_rev {
            continue;
        }
        let name = meta.name.clone().unwrap_or_default();
        ctx.kube
            .delete_cluster_scoped::<K>(&name)
            .await
            .map_err(|source| Error::Kube {
                action: format!("delete {kind} {name}"),
                source,
            })?;
    }
    Ok(())
}
