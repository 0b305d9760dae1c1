//! paddock's simulated world: a Kubernetes API server with controllers and Istio's injection
//! rules, fake `k3d` and `helm` executables, load balancers that serve HTTP through the ingress
//! gateway to application pods, and a traffic harness that measures what clients see. For tests
//! only; never part of the shipped `paddock` binary.

pub mod api;
pub mod chart_repo;
pub mod client;
pub mod controllers;
pub mod docker;
pub mod gateway;
pub mod helm;
pub mod http1;
pub mod injection;
pub mod knobs;
pub mod lb;
pub mod openapi;
pub mod pki;
pub mod portforward;
pub mod protobuf;
pub mod real_tools;
pub mod render;
pub mod selector;
pub mod ssa;
pub mod store;
pub mod tls;
pub mod tool_mirror;
pub mod tools;
pub mod traffic;
pub mod validation;
pub mod webhook;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use knobs::Knobs;
use store::Store;

/// How a cluster is laid out and where it listens.
#[derive(Debug, Clone)]
pub struct Options {
    pub servers: usize,
    pub agents: usize,
    pub knobs: Knobs,
    /// Port of 127.0.0.1 for the API (0: any free port).
    pub api_port: u16,
    /// Load-balancer ports: (host port on 127.0.0.1, container port).
    pub lb_ports: Vec<(u16, u16)>,
    /// Sim home whose `knobs.json` is re-read when it changes.
    pub home: Option<PathBuf>,
    /// A store snapshot to start from (a stopped cluster being started again).
    pub snapshot: Option<serde_json::Value>,
    /// Address to listen on: 127.0.0.1, or 0.0.0.0 inside a node container.
    pub bind: String,
    /// The cluster's CAs and certificates (`k3d cluster create` made them); fresh ones for
    /// `bind` and the node IPs when absent.
    pub pki: Option<pki::Pki>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            servers: 1,
            agents: 0,
            knobs: Knobs::default(),
            api_port: 0,
            lb_ports: Vec::new(),
            home: None,
            snapshot: None,
            bind: "127.0.0.1".into(),
            pki: None,
        }
    }
}

/// A running simulated cluster: its API address, its store and its controllers.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub addr: SocketAddr,
    pub store: api::Shared,
    pub knobs: api::SharedKnobs,
    /// Bound load-balancer ports: (host port, container port).
    pub lb_ports: Vec<(u16, u16)>,
    /// The CAs and certificates the API serves and its kubeconfig carries.
    pub pki: pki::Pki,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// Start a cluster with one server node and default latencies on free ports of 127.0.0.1.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        Self::start_with(name, Options::default()).await
    }

    pub async fn start_with(name: &str, opts: Options) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.api_port)).await?;
        let addr = listener.local_addr()?;
        let pki = match opts.pki.clone() {
            Some(p) => p,
            None => {
                let mut names = vec![opts.bind.clone()];
                names.extend((0..opts.servers.max(1)).map(controllers::node_ip));
                pki::Pki::generate(&pki::serving_names(&names)).map_err(std::io::Error::other)?
            }
        };
        let tls = tls::ServerTls::new(&pki).map_err(std::io::Error::other)?;
        let mut store = Store::new();
        let mut ctrl = controllers::Controllers::new(name, opts.servers, opts.agents);
        match &opts.snapshot {
            Some(snap) => store.restore(snap),
            None => ctrl.bootstrap(&mut store),
        }
        let store = Arc::new(Mutex::new(store));
        let knobs = Arc::new(RwLock::new(opts.knobs.clone()));
        let mut tasks = Vec::new();
        let (s, k, n) = (store.clone(), knobs.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let _ = api::serve(listener, s, k, tls, n).await;
        }));
        let mut lb_ports = Vec::new();
        for (host, container) in &opts.lb_ports {
            let l = tokio::net::TcpListener::bind((opts.bind.as_str(), *host)).await?;
            let bound = l.local_addr()?.port();
            lb_ports.push((bound, *container));
            tasks.push(tokio::spawn(lb::serve(
                l,
                name.to_string(),
                *container,
                store.clone(),
                knobs.clone(),
            )));
        }
        tasks.push(tokio::spawn(run_controllers(
            store.clone(),
            knobs.clone(),
            ctrl,
            opts.home.clone(),
        )));
        Ok(Self {
            name: name.to_string(),
            addr,
            store,
            knobs,
            lb_ports,
            pki,
            tasks,
        })
    }

    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig with the admin's credentials.
    pub fn kubeconfig(&self) -> String {
        api::kubeconfig(&self.name, &self.server_url(), &self.pki, true)
    }

    /// A client for the API with the admin's credentials (blocking: see `client`).
    pub fn client(&self) -> Result<client::Client, String> {
        client::Client::from_kubeconfig(&self.kubeconfig(), None)
    }

    /// Change latencies and faults while the cluster runs.
    pub fn set_knobs(&self, knobs: Knobs) {
        match self.knobs.write() {
            Ok(mut k) => *k = knobs,
            Err(p) => *p.into_inner() = knobs,
        }
    }

    /// Check `f` on the store every few milliseconds until it holds (`true`) or `timeout`
    /// passes (`false`): how a test waits for the controllers.
    pub async fn holds_within(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&mut Store) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.with_store(&mut f) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Run `f` on the store (for assertions and for seeding a test's world).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        match self.store.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Run the controllers whenever the store changes, a deadline passes, or the knobs file does.
async fn run_controllers(
    store: api::Shared,
    knobs: api::SharedKnobs,
    mut ctrl: controllers::Controllers,
    home: Option<PathBuf>,
) {
    let mut rx = match store.lock() {
        Ok(s) => s.events.subscribe(),
        Err(p) => p.into_inner().events.subscribe(),
    };
    let mut knobs_mtime = None;
    loop {
        if let Some(home) = &home {
            let mtime = std::fs::metadata(Knobs::path(home))
                .and_then(|m| m.modified())
                .ok();
            if mtime != knobs_mtime {
                knobs_mtime = mtime;
                if let Ok(k) = Knobs::load(home) {
                    match knobs.write() {
                        Ok(mut w) => *w = k,
                        Err(p) => *p.into_inner() = k,
                    }
                }
            }
        }
        let k = match knobs.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let wake = {
            let mut s = match store.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            ctrl.reconcile(&mut s, &k)
        };
        let idle = tokio::time::Instant::now() + Duration::from_millis(200);
        let at = wake.map_or(idle, |w| tokio::time::Instant::from_std(w).min(idle));
        tokio::select! {
            _ = rx.recv() => {
                // Let a burst of changes land, then reconcile once for all of them.
                tokio::time::sleep(Duration::from_millis(2)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep_until(at) => {}
        }
    }
}
