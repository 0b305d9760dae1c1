//! Step `smoke` (ISTIO.md, canary step 3): before any workload moves, a probe pod in a
//! throwaway namespace on the new revision must be injected by that revision with the new
//! proxy image. The namespace goes whatever the result; undo deletes it again (the step may
//! have failed before it could).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::Step;
use crate::ops::upgrade::{Ctx, Error};
use crate::plan::upgrade::smoke_namespace;

#[derive(Debug)]
pub(super) struct Smoke;

impl Step for Smoke {
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(run(ctx))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(undo(ctx))
    }
}

/// The journaled detail: which revision injected the probe, with which image.
async fn run(ctx: &Ctx<'_>) -> Result<Value, Error> {
    let rev = ctx.params.to_rev.as_str();
    let ns = smoke_namespace(rev);
    let labels = BTreeMap::from([
        ("istio.io/rev".to_string(), rev.to_string()),
        ("dev.paddock.smoke".to_string(), "true".to_string()),
    ]);
    ctx.kube
        .apply_namespace(&ns, &labels)
        .await
        .map_err(|source| Error::Kube {
            action: format!("create namespace {ns}"),
            source,
        })?;
    let result = probe(ctx, &ns, rev).await;
    // The throwaway namespace goes whatever the result.
    delete_namespace(ctx, &ns).await?;
    result
}

async fn probe(ctx: &Ctx<'_>, ns: &str, rev: &str) -> Result<Value, Error> {
    let created = match ctx
        .kube
        .create_namespaced(ns, &probe_pod(ns, &ctx.params.to))
        .await
    {
        Ok(Some(pod)) => pod,
        Ok(None) => ctx
            .kube
            .get_in::<Pod>(ns, "probe")
            .await
            .map_err(|source| Error::Kube {
                action: format!("read the probe pod in {ns}"),
                source,
            })?
            .unwrap_or_default(),
        Err(e) => return Err(Error::ProbeRefused(e)),
    };
    let proxy = crate::mesh::proxy_of(&created);
    let mesh = ctx.mesh().await?;
    let want = mesh.images.get(rev).cloned();
    if proxy.revision.as_deref() != Some(rev) || proxy.image != want {
        return Err(Error::ProbeInjection {
            got_revision: proxy.revision,
            got_image: proxy.image,
            rev: rev.to_string(),
            want_image: want,
        });
    }
    Ok(json!({"injectedBy": rev, "image": proxy.image}))
}

/// A pod that only has to exist: its image is the new proxy's, already on the nodes.
fn probe_pod(ns: &str, version: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                "app".to_string(),
                "paddock-smoke".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "probe".into(),
                image: Some(format!("docker.io/istio/proxyv2:{version}")),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn delete_namespace(ctx: &Ctx<'_>, ns: &str) -> Result<(), Error> {
    ctx.kube
        .delete_namespace(ns)
        .await
        .map_err(|source| Error::Kube {
            action: format!("delete namespace {ns}"),
            source,
        })
}

async fn undo(ctx: &Ctx<'_>) -> Result<bool, Error> {
    delete_namespace(ctx, &smoke_namespace(&ctx.params.to_rev)).await?;
    Ok(true)
}
