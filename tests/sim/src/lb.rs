//! The cluster's load balancer (k3d's `serverlb` + k3s ServiceLB): HTTP on a published host
//! port of 127.0.0.1 reaches the LoadBalancer Service that exposes the container port, and is
//! answered by one of its ready pods, round robin.
//!
//! An ingress gateway pod answers as Envoy does with no route configured: `404` with
//! `server: istio-envoy`. It adds headers that tell tests who served: `x-paddock-cluster`,
//! `x-paddock-pod`, `x-paddock-revision` (the pod's injected revision) and
//! `x-paddock-proxy-version` (its proxy image tag). With no ready pod behind the Service, the
//! request fails with `503` and no `server: istio-envoy` header: a failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::api::Shared;
use crate::controllers::{containers, pod_ready};
use crate::selector::labels_of;
use crate::store::res;

#[derive(Clone)]
struct Lb {
    cluster: String,
    port: u16,
    store: Shared,
    next: Arc<AtomicUsize>,
}

/// Serve one load-balancer port until the task is dropped.
pub async fn serve(listener: TcpListener, cluster: String, port: u16, store: Shared) {
    let lb = Lb {
        cluster,
        port,
        store,
        next: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new().fallback(handle).with_state(lb);
    let _ = axum::serve(listener, app).await;
}

/// The ready pods behind the LoadBalancer Service that exposes `port`.
fn backends(store: &Shared, port: u16) -> Vec<Value> {
    let s = match store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let mut out = Vec::new();
    for svc in s.all(&res("services"), "") {
        let exposes = svc.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
            && svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["port"].as_u64() == Some(u64::from(port)))
                });
        let Some(selector) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
            continue;
        };
        if !exposes {
            continue;
        }
        let ns = svc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for pod in s.all(&res("pods"), ns) {
            let labels = labels_of(&pod);
            if pod_ready(&pod)
                && selector
                    .iter()
                    .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            {
                out.push(pod);
            }
        }
    }
    out
}

async fn handle(State(lb): State<Lb>) -> Response {
    let pods = backends(&lb.store, lb.port);
    if pods.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no ready endpoints behind the load balancer\n",
        )
            .into_response();
    }
    let pod = &pods[lb.next.fetch_add(1, Ordering::Relaxed) % pods.len()];
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let revision = pod
        .pointer("/metadata/annotations/istio.io~1rev")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let proxy = containers(pod)
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default();
    let version = proxy.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    let mut resp = (StatusCode::NOT_FOUND, "").into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        ("server", "istio-envoy"),
        ("x-paddock-cluster", lb.cluster.as_str()),
        ("x-paddock-pod", name),
        ("x-paddock-revision", revision),
        ("x-paddock-proxy-version", version),
    ] {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    resp
}
