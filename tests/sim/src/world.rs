//! The process-backed world behind the fake `k3d`: one sim home directory
//! (`PADDOCK_SIM_HOME`) holds a record per cluster and per registry, the knobs file and the
//! log of every fake tool invocation. Each running cluster is a `paddock-sim serve-cluster`
//! process serving its API and load-balancer ports on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The sim home: `PADDOCK_SIM_HOME`, else `$TMPDIR/paddock-sim`.
pub fn home() -> PathBuf {
    std::env::var_os("PADDOCK_SIM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("paddock-sim"))
}

/// A cluster as the fake k3d knows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterRecord {
    pub name: String,
    pub pid: Option<u32>,
    pub api_port: u16,
    pub servers: usize,
    pub agents: usize,
    pub image: String,
    /// (host port, container port) through the load balancer.
    pub lb_ports: Vec<(u16, u16)>,
    /// Docker labels of every node (k3d's own plus `options.runtime.labels`).
    pub labels: BTreeMap<String, String>,
    /// Images loaded with `k3d image import`.
    pub images: Vec<String>,
    /// Registries from `registries.use`.
    pub registries: Vec<String>,
    pub running: bool,
    pub created: String,
    /// The config the cluster was created from.
    pub config: Value,
    /// Nodes are Docker containers (else one local process).
    pub docker: bool,
    /// The CAs and certificates made when the cluster was created.
    pub pki: Option<crate::pki::Pki>,
}

impl ClusterRecord {
    pub fn dir(home: &Path) -> PathBuf {
        home.join("clusters")
    }

    pub fn path(home: &Path, name: &str) -> PathBuf {
        Self::dir(home).join(format!("{name}.json"))
    }

    pub fn snapshot_path(home: &Path, name: &str) -> PathBuf {
        Self::dir(home).join(format!("{name}.store.json"))
    }

    pub fn log_path(home: &Path, name: &str) -> PathBuf {
        Self::dir(home).join(format!("{name}.log"))
    }

    pub fn load(home: &Path, name: &str) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(home, name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(Self::dir(home))?;
        let tmp = Self::dir(home).join(format!(".{}.tmp", self.name));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, Self::path(home, &self.name))
    }

    pub fn list(home: &Path) -> Vec<Self> {
        let mut out: Vec<Self> = std::fs::read_dir(Self::dir(home))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let stem = name.strip_suffix(".json")?;
                if stem.ends_with(".store") || stem.starts_with('.') {
                    return None;
                }
                Self::load(home, stem)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Is the cluster running (its process alive, or all its containers running)?
    pub fn is_running(&self, home: &Path) -> bool {
        if self.docker {
            return self.running && crate::docker::running(home, &self.name);
        }
        self.running && self.pid.is_some_and(alive)
    }

    /// Written by a cluster serving inside a container once it listens.
    pub fn ready_path(home: &Path, name: &str) -> PathBuf {
        Self::dir(home).join(format!("{name}.ready"))
    }

    /// The address k3d binds the API's port to: `kubeAPI.hostIP`, else 0.0.0.0. (The sim
    /// publishes on 127.0.0.1 whatever it says, so tests stay on loopback.)
    pub fn api_host_ip(&self) -> String {
        self.config
            .pointer("/kubeAPI/hostIP")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .unwrap_or("0.0.0.0")
            .to_string()
    }

    /// The host k3d writes into kubeconfigs (label `k3d.server.api.host`): `kubeAPI.host`,
    /// else `kubeAPI.hostIP`, else 0.0.0.0 (k3d v5 `TransformSimpleToClusterConfig`).
    /// Connecting to 0.0.0.0 reaches loopback on Linux.
    pub fn api_host(&self) -> String {
        self.config
            .pointer("/kubeAPI/host")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.api_host_ip())
    }

    pub fn server_url(&self) -> String {
        format!("https://{}:{}", self.api_host(), self.api_port)
    }

    /// The names k3s puts in its serving certificate for this cluster: its own, the servers'
    /// node IPs and names, and the `--tls-san`s (k3d adds the API host and the `serverlb`).
    pub fn serving_names(&self) -> Vec<String> {
        let mut extra = Vec::new();
        for i in 0..self.servers.max(1) {
            extra.push(crate::controllers::node_ip(i));
            extra.push(format!("k3d-{}-server-{i}", self.name));
        }
        extra.push(self.api_host());
        extra.push(format!("k3d-{}-serverlb", self.name));
        extra.extend(tls_sans(&self.config));
        crate::pki::serving_names(&extra)
    }

    /// The kubeconfig `k3d kubeconfig get` prints: the admin's credentials unless
    /// `client_cert` is false.
    pub fn kubeconfig_with(&self, client_cert: bool) -> String {
        let pki = self.pki.clone().unwrap_or_default();
        crate::api::kubeconfig(&self.name, &self.server_url(), &pki, client_cert)
    }

    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_with(true)
    }
}

/// `--tls-san` values in the config's k3s `extraArgs` that reach servers (`--tls-san=A,B` or
/// `--tls-san A`; k3s splits on commas).
fn tls_sans(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for a in config
        .pointer("/options/k3s/extraArgs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let filters: Vec<&str> = a["nodeFilters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !filters.is_empty()
            && filters
                .iter()
                .all(|f| f.starts_with("agent") || f.starts_with("loadbalancer"))
        {
            continue;
        }
        let arg = a["arg"].as_str().unwrap_or_default();
        let value = arg
            .strip_prefix("--tls-san=")
            .or_else(|| arg.strip_prefix("--tls-san "));
        if let Some(v) = value {
            out.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

/// A registry made by `k3d registry create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryRecord {
    /// Without the `k3d-` prefix.
    pub name: String,
    pub host_port: u16,
    pub proxy_remote_url: String,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl RegistryRecord {
    pub fn path(home: &Path, name: &str) -> PathBuf {
        home.join("registries").join(format!("{name}.json"))
    }

    pub fn list(home: &Path) -> Vec<Self> {
        let mut out: Vec<Self> = std::fs::read_dir(home.join("registries"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(home.join("registries"))?;
        std::fs::write(
            Self::path(home, &self.name),
            serde_json::to_vec_pretty(self)?,
        )
    }
}

/// Is a process alive (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Send a signal to a process with the system's `kill`.
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stop a cluster's server process, letting it save its store first.
pub fn stop_server(pid: u32) {
    signal(pid, "TERM");
    for _ in 0..200 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(pid, "KILL");
}

/// Start a cluster's server process, detached from the caller, and wait until it serves.
pub fn spawn_server(home: &Path, name: &str) -> Result<ClusterRecord, String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(ClusterRecord::log_path(home, name)).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(["serve-cluster", "--home"])
        .arg(home)
        .args(["--name", name])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    for _ in 0..1000 {
        if let Ok(Some(status)) = child.try_wait() {
            let log =
                std::fs::read_to_string(ClusterRecord::log_path(home, name)).unwrap_or_default();
            return Err(format!("cluster process exited ({status}): {}", log.trim()));
        }
        if let Some(rec) = ClusterRecord::load(home, name)
            && rec.running
            && rec.pid == Some(pid)
        {
            // Reap it later from nobody: detach so it outlives this process.
            std::mem::forget(child);
            return Ok(rec);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(pid, "KILL");
    Err("cluster process did not start within 5s".into())
}

/// `paddock-sim serve-cluster --home H --name N`: run one cluster from its record until
/// SIGTERM, then save its store so `k3d cluster start` can bring it back.
pub async fn serve_cluster(home: PathBuf, name: String) -> Result<(), String> {
    let mut rec =
        ClusterRecord::load(&home, &name).ok_or(format!("no cluster record for {name}"))?;
    let snapshot = std::fs::read_to_string(ClusterRecord::snapshot_path(&home, &name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let knobs = crate::knobs::Knobs::load(&home)?;
    if rec.pki.is_none() {
        // A record from before clusters had certificates.
        rec.pki = Some(crate::pki::Pki::generate(&rec.serving_names())?);
        rec.save(&home).map_err(|e| e.to_string())?;
    }
    let in_container = std::env::var("PADDOCK_SIM_IN_CONTAINER").is_ok_and(|v| v == "1");
    let (bind, api_port, lb_ports) = if in_container {
        // Inside the server container: k3s's ports, reached through the serverlb container.
        let lb = rec.lb_ports.iter().map(|(_, c)| (*c, *c)).collect();
        ("0.0.0.0".to_string(), crate::docker::API_PORT, lb)
    } else {
        ("127.0.0.1".to_string(), rec.api_port, rec.lb_ports.clone())
    };
    let cluster = crate::Cluster::start_with(
        &name,
        crate::Options {
            servers: rec.servers,
            agents: rec.agents,
            knobs,
            api_port,
            lb_ports,
            home: Some(home.clone()),
            snapshot,
            bind,
            pki: rec.pki.clone(),
        },
    )
    .await
    .map_err(|e| format!("Bind for 127.0.0.1 failed: {e}: port is already allocated"))?;
    if in_container {
        std::fs::write(ClusterRecord::ready_path(&home, &name), "ready")
            .map_err(|e| e.to_string())?;
    } else {
        rec.api_port = cluster.addr.port();
        rec.lb_ports = cluster.lb_ports.clone();
        rec.pid = Some(std::process::id());
        rec.running = true;
        rec.save(&home).map_err(|e| e.to_string())?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let snap = cluster.with_store(|s| s.snapshot());
    let _ = std::fs::write(ClusterRecord::snapshot_path(&home, &name), snap.to_string());
    Ok(())
}

/// One fake tool invocation, as logged in `invocations.ndjson`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invocation {
    pub tool: String,
    pub args: Vec<String>,
    pub code: i32,
    pub ms: u64,
    /// When it started (Unix milliseconds).
    #[serde(default)]
    pub at_ms: u64,
}

pub fn invocations_path(home: &Path) -> PathBuf {
    home.join("invocations.ndjson")
}

/// Every fake tool invocation so far, in order.
pub fn invocations(home: &Path) -> Vec<Invocation> {
    std::fs::read_to_string(invocations_path(home))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn log_invocation(home: &Path, inv: &Invocation) {
    use std::io::Write;
    let _ = std::fs::create_dir_all(home);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(invocations_path(home))
        && let Ok(line) = serde_json::to_string(inv)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Start a Docker-backed cluster from its saved record and wait until it serves.
pub fn start_docker_cluster(
    home: &Path,
    rec: &mut ClusterRecord,
    fresh: bool,
) -> Result<(), String> {
    let _ = std::fs::remove_file(ClusterRecord::ready_path(home, &rec.name));
    rec.running = true;
    rec.save(home).map_err(|e| e.to_string())?;
    let started = if fresh {
        crate::docker::create_cluster(home, rec)
    } else {
        crate::docker::start_cluster(home, &rec.name)
    };
    started?;
    let mut ready = false;
    for _ in 0..2000 {
        if ClusterRecord::ready_path(home, &rec.name).exists() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !ready {
        return Err("the server container did not serve within 20s".into());
    }
    // k3d also waits for the load balancer: the API must answer through `serverlb`, whose
    // forwarder may start a moment after the server (a TLS handshake there fails until then).
    let pki = rec.pki.clone().unwrap_or_default();
    let client = crate::client::Client::new(
        &format!("https://127.0.0.1:{}", rec.api_port),
        &pki.server_ca,
        Some((&pki.admin_cert, &pki.admin_key)),
    )?;
    for _ in 0..1000 {
        if client.get("/version").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("the load balancer did not forward the API within 10s".into())
}

/// A free port of 127.0.0.1 (for publishing a container port).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
