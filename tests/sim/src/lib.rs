//! paddock's simulated world: a Kubernetes API server with Istio's injection rules, for tests.
//! Never part of the shipped `paddock` binary.

pub mod api;
pub mod injection;
pub mod selector;
pub mod store;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use store::Store;

/// A running simulated cluster: its API address and its store.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub addr: SocketAddr,
    pub store: api::Shared,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Cluster {
    /// Start a cluster's API server on a free port of 127.0.0.1.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Mutex::new(Store::new()));
        let task = tokio::spawn(api::serve(listener, store.clone()));
        Ok(Self {
            name: name.to_string(),
            addr,
            store,
            task,
        })
    }

    pub fn server_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kubeconfig(&self) -> String {
        api::kubeconfig(&self.name, &self.server_url())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}
