//! Step `old-unused` (ISTIO.md, canary step 9): before the old revision is removed it must be
//! provably unused — no namespace selects it, no tag points at it, no live pod runs its proxy
//! (a terminating pod is waited out) — and still so after the grace period. Changes nothing,
//! so it has no undo and a resumed upgrade trusts the journal.

use std::time::Duration;

use tokio::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::Step;
use crate::ops::upgrade::{Ctx, Error};

#[derive(Debug)]
pub(super) struct OldUnused;

impl Step for OldUnused {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let old = ctx.params.from_rev.as_str();
    unused(ctx, old).await?;
    tokio::time::sleep(Duration::from_secs(ctx.params.grace_secs)).await;
    unused(ctx, old).await?;
    Ok(Value::Null)
}

async fn unused(ctx: &Ctx<'_>, old: &str) -> Result<(), Error> {
    let mesh = ctx.mesh().await?;
    if let Some((n, _)) = mesh
        .namespaces
        .iter()
        .find(|(_, l)| l.get("istio.io/rev").map(String::as_str) == Some(old))
    {
        return Err(Error::NamespaceOnOld {
            namespace: n.clone(),
            rev: old.to_string(),
        });
    }
    if let Some((t, _)) = mesh.injectors.tags.iter().find(|(_, r)| r.as_str() == old) {
        return Err(Error::TagOnOld {
            tag: t.clone(),
            rev: old.to_string(),
        });
    }
    no_pods_on(ctx, old).await
}

/// No pod that has not finished runs a proxy of `old`. A pod still terminating runs the old
/// proxy until it exits: it is waited out, up to the step timeout.
async fn no_pods_on(ctx: &Ctx<'_>, old: &str) -> Result<(), Error> {
    let deadline = Instant::now() + ctx.step_timeout;
    loop {
        let pods: Vec<Pod> = ctx.kube.list().await.map_err(|source| Error::Kube {
            action: "list the pods".into(),
            source,
        })?;
        let on_old: Vec<&Pod> = pods.iter().filter(|p| runs_proxy_of(p, old)).collect();
        if let Some(p) = on_old
            .iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
        {
            return Err(Error::PodOnOld {
                pod: id(p),
                rev: old.to_string(),
            });
        }
        let Some(p) = on_old.first() else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(Error::PodTerminating {
                pod: id(p),
                rev: old.to_string(),
                timeout: ctx.step_timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Injected by revision `rev` and not finished.
fn runs_proxy_of(pod: &Pod, rev: &str) -> bool {
    let injected_by = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("istio.io/rev"));
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    injected_by.is_some_and(|r| r == rev) && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn id(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}
