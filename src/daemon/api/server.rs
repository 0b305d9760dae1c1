//! The accept loop and the connections it serves: HTTP/1.1 by hyper, routed by axum, within
//! [`Limits`], ended gracefully on shutdown.

use std::sync::Arc;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Limits;

/// Serve `router` on `listener` until `shutdown`: at most `limits.max_connections` connections
/// at once (the next waits, unaccepted, until one ends); `admit` decides, per accepted
/// connection, whether it is served or closed. On shutdown the listener is dropped, idle
/// connections close, and those with a request in flight get `limits.shutdown_grace` to finish
/// before they are cut.
pub(crate) async fn run<L>(
    mut listener: L,
    router: Router,
    limits: &Limits,
    shutdown: CancellationToken,
    admit: impl Fn(&L::Io) -> bool,
) where
    L: Listener,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let io = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            (io, _) = listener.accept() => io,
        };
        if !admit(&io) {
            continue;
        }
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        connections.spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    let in_flight = graceful.count();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                connections = in_flight,
                "API requests still running {:?} after shutdown began; closing their connections",
                limits.shutdown_grace
            );
        }
    }
    connections.shutdown().await;
}
