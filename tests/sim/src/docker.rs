//! Docker-backed clusters and registries for the fake `k3d`: when a Docker engine answers
//! (and `PADDOCK_SIM_DOCKER` is not `0`), each cluster's nodes and load balancer are real
//! containers with k3d's names, labels, network and image volume, running the sim from a tiny
//! image built locally (`FROM scratch`: the sim binary and the libraries it links). The server
//! container runs the cluster; the `serverlb` container forwards the API and load-balancer
//! ports to it over the cluster network, published on 127.0.0.1 only.
//!
//! Everything created carries the label `dev.paddock.sim.home=<sim home>`, so a test removes
//! what it made ([`cleanup`]) and leftovers of dead homes go too ([`cleanup_stale`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::world::{ClusterRecord, RegistryRecord};

pub const HOME_LABEL: &str = "dev.paddock.sim.home";
/// Port of the API inside the cluster network, as k3s serves it.
pub const API_PORT: u16 = 6443;

/// Is Docker to be used? `PADDOCK_SIM_DOCKER=0` turns it off; otherwise when the engine answers.
pub fn enabled() -> bool {
    if std::env::var("PADDOCK_SIM_DOCKER").is_ok_and(|v| v == "0") {
        return false;
    }
    available()
}

/// Does a Docker engine answer?
pub fn available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn docker(args: &[String]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The sim's image, built once per binary (tagged by the binary's size and mtime).
pub fn image() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&exe).map_err(|e| e.to_string())?;
    let stamp = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag = format!("paddock-sim:{:x}-{:x}", meta.len(), stamp);
    if docker(&s(&["image", "inspect", "--format", "{{.Id}}", &tag])).is_ok() {
        return Ok(tag);
    }
    let ctx = tempfile_dir()?;
    let root = ctx.join("rootfs");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    std::fs::copy(&exe, root.join("paddock-sim")).map_err(|e| e.to_string())?;
    let ldd = Command::new("ldd")
        .arg(&exe)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dest = root.join(lib.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::copy(lib, &dest).map_err(|e| format!("{lib}: {e}"))?;
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/paddock-sim\"]\n",
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("docker")
        .args(["build", "-q", "--label", "app=paddock-sim", "-t", &tag])
        .arg(&ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&ctx);
    if !out.status.success() {
        return Err(format!(
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Images of older sim binaries go (those still in use by a container stay).
    if let Ok(old) = docker(&s(&[
        "images",
        "--filter",
        "label=app=paddock-sim",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])) {
        for img in old.lines().filter(|i| *i != tag) {
            let _ = docker(&s(&["rmi", img]));
        }
    }
    Ok(tag)
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "paddock-sim-image-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn label_args(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

fn node_labels(
    home: &Path,
    rec: &ClusterRecord,
    role: &str,
    api_port: u16,
) -> BTreeMap<String, String> {
    let mut l = rec.labels.clone();
    l.insert("k3d.role".into(), role.into());
    l.insert("k3d.server.api.port".into(), api_port.to_string());
    l.insert("k3d.server.api.host".into(), rec.api_host());
    l.insert("k3d.server.api.hostIP".into(), rec.api_host_ip());
    l.insert(HOME_LABEL.into(), home.display().to_string());
    l
}

/// Create and start a cluster's containers, network and image volume.
pub fn create_cluster(home: &Path, rec: &ClusterRecord) -> Result<(), String> {
    let img = image()?;
    let name = &rec.name;
    let net = format!("k3d-{name}");
    let mut base = BTreeMap::new();
    base.insert("app".to_string(), "k3d".to_string());
    base.insert("k3d.cluster".to_string(), name.clone());
    base.insert(HOME_LABEL.to_string(), home.display().to_string());
    let mut args = s(&["network", "create"]);
    args.extend(label_args(&base));
    args.push(net.clone());
    docker(&args)?;
    let mut args = s(&["volume", "create"]);
    args.extend(label_args(&base));
    args.push(format!("k3d-{name}-images"));
    docker(&args)?;
    let home_s = home.display().to_string();
    let run =
        |node: &str, role: &str, publish: Vec<String>, cmd: Vec<String>| -> Result<(), String> {
            let mut args = s(&[
                "run",
                "-d",
                "--name",
                node,
                "--hostname",
                node,
                "--network",
                &net,
            ]);
            args.extend(label_args(&node_labels(home, rec, role, rec.api_port)));
            args.extend(["-v".into(), format!("{home_s}:{home_s}")]);
            args.extend(["-v".into(), format!("k3d-{name}-images:/k3d/images")]);
            args.extend(["-e".into(), "PADDOCK_SIM_IN_CONTAINER=1".into()]);
            args.extend(publish);
            args.push(img.clone());
            args.extend(cmd);
            docker(&args).map(|_| ())
        };
    for i in 0..rec.servers.max(1) {
        let cmd = if i == 0 {
            s(&["serve-cluster", "--home", &home_s, "--name", name])
        } else {
            s(&["idle"])
        };
        run(&format!("k3d-{name}-server-{i}"), "server", vec![], cmd)?;
    }
    for i in 0..rec.agents {
        run(
            &format!("k3d-{name}-agent-{i}"),
            "agent",
            vec![],
            s(&["idle"]),
        )?;
    }
    let server = format!("k3d-{name}-server-0");
    let mut publish = vec![
        "-p".to_string(),
        format!("127.0.0.1:{}:{API_PORT}", rec.api_port),
    ];
    let mut routes = vec![format!("{API_PORT}={server}:{API_PORT}")];
    for (host, container) in &rec.lb_ports {
        publish.extend(["-p".to_string(), format!("127.0.0.1:{host}:{container}")]);
        routes.push(format!("{container}={server}:{container}"));
    }
    let mut cmd = s(&["proxy"]);
    cmd.extend(routes);
    run(
        &format!("k3d-{name}-serverlb"),
        "loadbalancer",
        publish,
        cmd,
    )
}

/// The cluster's containers, by name.
fn containers(home: &Path, cluster: &str) -> Vec<String> {
    docker(&s(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=k3d.cluster={cluster}"),
        "--filter",
        &format!("label={HOME_LABEL}={}", home.display()),
        "--format",
        "{{.Names}}",
    ]))
    .map(|o| o.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

/// Are all of a cluster's containers running?
pub fn running(home: &Path, cluster: &str) -> bool {
    let all = containers(home, cluster);
    let mut args = s(&["inspect", "--format", "{{.State.Running}}"]);
    args.extend(all.iter().cloned());
    !all.is_empty() && docker(&args).is_ok_and(|o| o.lines().all(|l| l.trim() == "true"))
}

pub fn stop_cluster(home: &Path, cluster: &str) -> Result<(), String> {
    let mut args = s(&["stop", "-t", "5"]);
    args.extend(containers(home, cluster));
    docker(&args).map(|_| ())
}

pub fn start_cluster(home: &Path, cluster: &str) -> Result<(), String> {
    let mut args = s(&["start"]);
    let mut all = containers(home, cluster);
    // Server first, then the rest.
    all.sort_by_key(|c| !c.contains("-server-"));
    args.extend(all);
    docker(&args).map(|_| ())
}

pub fn delete_cluster(home: &Path, cluster: &str) {
    let all = containers(home, cluster);
    if !all.is_empty() {
        let mut args = s(&["rm", "-f", "-v"]);
        args.extend(all);
        let _ = docker(&args);
    }
    let _ = docker(&s(&["network", "rm", &format!("k3d-{cluster}")]));
    let _ = docker(&s(&[
        "volume",
        "rm",
        "-f",
        &format!("k3d-{cluster}-images"),
    ]));
}

/// A registry container `k3d-NAME` with k3d's registry labels.
pub fn create_registry(home: &Path, reg: &RegistryRecord) -> Result<(), String> {
    let img = image()?;
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "k3d".to_string());
    labels.insert("k3d.role".to_string(), "registry".to_string());
    labels.insert("k3d.registry.host".to_string(), String::new());
    labels.insert("k3d.registry.hostIP".to_string(), "0.0.0.0".to_string());
    labels.insert("k3d.registry.port".to_string(), reg.host_port.to_string());
    labels.insert(HOME_LABEL.to_string(), home.display().to_string());
    let mut args = s(&["run", "-d", "--name", &format!("k3d-{}", reg.name)]);
    args.extend(label_args(&labels));
    args.extend(["-p".into(), format!("127.0.0.1:{}:5000", reg.host_port)]);
    if !reg.proxy_remote_url.is_empty() {
        args.extend([
            "-e".into(),
            format!("REGISTRY_PROXY_REMOTEURL={}", reg.proxy_remote_url),
        ]);
    }
    for v in &reg.volumes {
        // Named volumes are made first, with the home's label, so cleanup finds them.
        if let Some((src, _)) = v.split_once(':')
            && !src.contains('/')
        {
            let mut create = s(&["volume", "create"]);
            create.extend(label_args(&BTreeMap::from([(
                HOME_LABEL.to_string(),
                home.display().to_string(),
            )])));
            create.push(src.to_string());
            docker(&create)?;
        }
        args.extend(["-v".into(), v.clone()]);
    }
    args.push(img);
    args.extend(s(&["proxy"]));
    docker(&args).map(|_| ())
}

pub fn delete_registry(name: &str) {
    let _ = docker(&s(&["rm", "-f", &format!("k3d-{name}")]));
}

/// Remove every container, network and volume a sim home created.
pub fn cleanup(home: &Path) {
    let filter = format!("label={HOME_LABEL}={}", home.display());
    remove_matching(&filter);
}

fn remove_matching(filter: &str) {
    if let Ok(ids) = docker(&s(&["ps", "-aq", "--filter", filter])) {
        let ids: Vec<String> = ids.lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let mut args = s(&["rm", "-f", "-v"]);
            args.extend(ids);
            let _ = docker(&args);
        }
    }
    for kind in ["network", "volume"] {
        if let Ok(names) = docker(&s(&[kind, "ls", "-q", "--filter", filter])) {
            for n in names.lines() {
                let _ = docker(&s(&[kind, "rm", n]));
            }
        }
    }
}

/// The file whose lock says a sim home is in use.
fn owner_file(home: &Path) -> std::path::PathBuf {
    home.join(".owner.lock")
}

/// Mark a sim home as in use for as long as the returned file stays open (a process's locks go
/// with it, however it dies): [`cleanup_stale`] leaves such a home's Docker objects alone.
pub fn claim(home: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(owner_file(home))?;
    f.lock()?;
    Ok(f)
}

/// Has a home's owner gone? Its folder is gone, or nobody holds its claim any more (a test
/// process killed before it could remove its temporary folder).
fn abandoned(home: &Path) -> bool {
    if !home.exists() {
        return true;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .open(owner_file(home))
    else {
        // Never claimed: a home this code did not make; only its removal tells.
        return false;
    };
    f.try_lock().is_ok()
}

/// Remove what abandoned sim homes left behind (an earlier run that was killed).
pub fn cleanup_stale() {
    let mut homes = std::collections::BTreeSet::new();
    for kind in [&["ps", "-a"][..], &["network", "ls"], &["volume", "ls"]] {
        let mut args = s(kind);
        args.extend(s(&[
            "--filter",
            &format!("label={HOME_LABEL}"),
            "--format",
            &format!("{{{{.Label \"{HOME_LABEL}\"}}}}"),
        ]));
        if let Ok(out) = docker(&args) {
            homes.extend(out.lines().map(str::to_string));
        }
    }
    for h in &homes {
        if abandoned(Path::new(h)) {
            remove_matching(&format!("label={HOME_LABEL}={h}"));
        }
    }
}
