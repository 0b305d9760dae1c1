//! Port forwarding through the API server (`pods/portforward` over a WebSocket, kube-rs'
//! `ws` feature), and the reads that pick what to forward to: pods by label selector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use tokio::io::DuplexStream;

use super::*;

/// One forwarded connection to a pod's port: the byte stream, and what the kubelet says on
/// the port's error channel (`None` when the connection ended without an error).
pub struct Forwarded {
    pub stream: DuplexStream,
    pub error: futures::future::BoxFuture<'static, Option<String>>,
}

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarded").finish_non_exhaustive()
    }
}

impl Kube {
    /// The pods of `namespace` that the label `selector` (a Service's) selects.
    pub async fn pods_selected(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let list = api
            .list(&ListParams::default().labels(&labels.join(",")))
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(list.items)
    }

    /// Open a connection to `port` of pod `namespace/name` through the API server.
    pub async fn forward(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<Forwarded, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut pf = api
            .portforward(name, &[port])
            .await
            .map_err(|e| self.api_err(e))?;
        let (Some(stream), Some(error)) = (pf.take_stream(port), pf.take_error(port)) else {
            return Err(Error::BadObject {
                what: format!("port forward to {namespace}/{name}"),
                reason: format!("kube-rs gave no stream for port {port}"),
            });
        };
        // The forwarder's task runs until the WebSocket closes; it needs no joining.
        drop(pf);
        Ok(Forwarded {
            stream,
            error: Box::pin(error),
        })
    }
}
