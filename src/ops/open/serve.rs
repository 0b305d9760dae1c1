//! The local end of `open`: a listener on 127.0.0.1 whose every accepted connection is
//! forwarded to the addon's pod, until cancelled.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Error, Resolver, Target};

/// A forward listening on 127.0.0.1, ready to serve.
#[derive(Debug)]
pub struct Forward {
    pub addon: String,
    /// `http://127.0.0.1:PORT/PATH`.
    pub url: String,
    /// The pod connections go to first.
    pub pod: String,
    /// The addon's usual port, when it was taken and a free one is used instead.
    pub usual_port_taken: Option<u16>,
    listener: TcpListener,
    resolver: Resolver,
    target: Arc<Mutex<Target>>,
}

/// Listen on `port` (must be free), or on the addon's usual port, else on a free one.
pub(super) async fn listen(
    resolver: Resolver,
    target: Target,
    port: Option<u16>,
) -> Result<Forward, Error> {
    let bind = |port: u16| TcpListener::bind(("127.0.0.1", port));
    let usual = resolver.ui.port;
    let (listener, usual_port_taken) = match port {
        Some(p) => (
            bind(p)
                .await
                .map_err(|source| Error::Listen { port: p, source })?,
            None,
        ),
        None => match bind(usual).await {
            Ok(l) => (l, None),
            Err(_) => (
                bind(0)
                    .await
                    .map_err(|source| Error::Listen { port: 0, source })?,
                Some(usual),
            ),
        },
    };
    let local = listener.local_addr().map_err(|source| Error::Listen {
        port: usual,
        source,
    })?;
    Ok(Forward {
        addon: resolver.ui.addon.to_string(),
        url: format!("http://{local}{}", resolver.ui.path),
        pod: target.pod.clone(),
        usual_port_taken,
        listener,
        resolver,
        target: Arc::new(Mutex::new(target)),
    })
}

impl Forward {
    /// Forward every accepted connection until `cancel`; the listener closes on return.
    pub async fn serve(self, cancel: CancellationToken) {
        let Forward {
            listener,
            resolver,
            target,
            ..
        } = self;
        let resolver = Arc::new(resolver);
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((tcp, _)) = accepted else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (resolver, target) = (resolver.clone(), target.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(&resolver, &target, tcp).await {
                    tracing::warn!(
                        "a connection to {} failed: {}",
                        resolver.ui.addon,
                        crate::engine::chain(&e)
                    );
                }
            });
        }
    }
}

/// The target to use now: the last one while its pod is good, else one resolved anew.
async fn current(resolver: &Resolver, target: &Mutex<Target>) -> Result<Target, Error> {
    let mut t = target.lock().await;
    if !resolver.still_good(&t).await {
        let fresh = resolver.resolve().await?;
        if fresh.pod != t.pod {
            tracing::warn!(
                "pod {} of {} is gone or not ready: forwarding to {}",
                t.pod,
                resolver.ui.addon,
                fresh.pod
            );
        }
        *t = fresh;
    }
    Ok(t.clone())
}

/// Forward one local connection to the pod, both ways, until either side closes.
async fn connection(
    resolver: &Resolver,
    target: &Mutex<Target>,
    mut tcp: TcpStream,
) -> Result<(), Error> {
    let t = current(resolver, target).await?;
    let forwarded = resolver
        .kube
        .forward(&resolver.namespace, &t.pod, t.port)
        .await
        .map_err(|source| Error::Read {
            what: format!("a port forward to pod {}/{}", resolver.namespace, t.pod),
            source,
        })?;
    let (pod, addon) = (t.pod.clone(), resolver.ui.addon);
    tokio::spawn(async move {
        if let Some(message) = forwarded.error.await {
            tracing::warn!("{addon} pod {pod}: {message}");
        }
    });
    let mut stream = forwarded.stream;
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
    Ok(())
}
