//! A simulated world for paddock's scenario tests: the sim's fake `k3d` first on `PATH`, the
//! real `helm` 4 (run through the sim's `helm` name, which logs each run and can inject the
//! faults a real helm can fail with) with the real charts from a loopback chart repository —
//! or the sim's fake `helm` for the faults only it can produce —, a fresh sim home, state
//! directory and copy of the repository (with free host ports), and everything removed
//! afterwards, Docker objects included.

#![allow(dead_code)]

pub mod children;
pub mod daemon;
pub mod istio_cases;
pub mod mesh;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use paddock_sim::chart_repo::ChartRepo;
use serde_json::Value;

pub struct World {
    pub docker: bool,
    pub home: tempfile::TempDir,
    /// Held while the world lives: its Docker objects are not another run's leftovers.
    _claim: std::fs::File,
    pub repo: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub bin: PathBuf,
    /// Host ports substituted for the shipped ones: (shipped, here).
    pub ports: Vec<(u16, u16)>,
    /// The real helm behind `helm`, and the loopback repository the specs point at; `None`:
    /// the fake helm.
    pub real_helm: Option<(PathBuf, &'static ChartRepo)>,
}

/// Which helm a world runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helm {
    /// The real helm 4 with the real charts (where neither can be had, the test binary says so
    /// and skips its tests; under `PADDOCK_REQUIRE_TOOLS=1` it fails).
    Real,
    /// The real Helm 3 with the real charts.
    Real3,
    /// The sim's fake helm: for the faults only it produces (a release left pending on
    /// demand, Helm 3 mode).
    Fake,
}

/// The real helm and the chart repository, or `None` (after saying why) for the fake one.
fn real_helm(major: u8) -> Option<(PathBuf, &'static ChartRepo)> {
    let helm = if major == 3 {
        paddock_sim::real_tools::helm3()?
    } else {
        paddock_sim::real_tools::helm()?
    };
    let repo = ChartRepo::shared()?;
    Some((helm, repo))
}

/// Point the specs of a repository copy at the loopback chart repository: every addon's
/// `chart.repo`, and every profile's `istio` (an added `repo`).
fn use_chart_repo(root: &Path, charts: &ChartRepo) {
    for dir in ["profiles", "clusters", "addons"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let mut out = String::new();
            for line in text.lines() {
                if dir == "addons" && line.trim_start().starts_with("repo: https://") {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    out.push_str(&format!("{indent}repo: {}\n", charts.addons()));
                    continue;
                }
                out.push_str(line);
                out.push('\n');
                if line == "istio:" {
                    out.push_str(&format!("  repo: {}\n", charts.istio()));
                }
            }
            std::fs::write(&p, out).expect("write");
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sim binary beside paddock's, rebuilt once per test process so it is never stale.
fn sim_binary() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let paddock = PathBuf::from(env!("CARGO_BIN_EXE_paddock"));
    let sim = paddock.with_file_name("paddock-sim");
    BUILT.call_once(|| {
        let release = paddock
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == "release");
        let mut args = vec!["build", "-q", "-p", "paddock-sim", "--bin", "paddock-sim"];
        if release {
            args.push("--release");
        }
        let st = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(workspace())
            .status()
            .expect("cargo build paddock-sim");
        assert!(st.success(), "building the sim failed");
    });
    sim
}

pub fn require_docker() -> bool {
    if paddock_sim::docker::available() {
        paddock_sim::docker::cleanup_stale();
        return true;
    }
    if std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("a Docker engine is required (PADDOCK_REQUIRE_TOOLS=1) but does not answer");
    }
    eprintln!("skipping: no Docker engine answers");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The first of `n` consecutive free ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base < 65000
            && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn copy_dir(from: &Path, to: &Path, ports: &[(u16, u16)]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest, ports);
        } else {
            let mut text = std::fs::read_to_string(&p).expect("read");
            for (old, new) in ports {
                text = text.replace(&format!("127.0.0.1:{old}:"), &format!("127.0.0.1:{new}:"));
            }
            std::fs::write(&dest, text).expect("write");
        }
    }
}

impl World {
    /// A world whose clusters are Docker containers (`docker`) or local processes, with the
    /// real helm and charts.
    pub fn new(docker: bool) -> Self {
        Self::with(docker, Helm::Real)
    }

    /// A world running the sim's fake helm.
    pub fn fake_helm(docker: bool) -> Self {
        Self::with(docker, Helm::Fake)
    }

    pub fn with(docker: bool, helm: Helm) -> Self {
        let home = tempfile::tempdir().expect("home");
        let _claim = paddock_sim::docker::claim(home.path()).expect("claim the home");
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let st = Command::new(sim_binary())
            .arg("link")
            .arg(&bin)
            .status()
            .expect("link");
        assert!(st.success());
        let ports: Vec<(u16, u16)> = [8080, 8443, 9080]
            .iter()
            .map(|p| (*p, free_port()))
            .collect();
        let repo = tempfile::tempdir().expect("repo");
        for d in ["profiles", "clusters", "addons", "manifests"] {
            copy_dir(&workspace().join(d), &repo.path().join(d), &ports);
        }
        std::fs::copy(
            workspace().join("paddock.yaml"),
            repo.path().join("paddock.yaml"),
        )
        .expect("paddock.yaml");
        // Caches of their own: registry names and ports are machine-wide.
        let minimal = repo.path().join("profiles/minimal.yaml");
        let text = std::fs::read_to_string(&minimal).expect("minimal profile");
        let prefix: String = repo
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().to_lowercase())
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let text = text.replace(
            "caches:\n",
            &format!(
                "caches:\n  prefix: t{prefix}\n  portBase: {}\n",
                free_ports(5)
            ),
        );
        std::fs::write(&minimal, text).expect("write minimal");
        let real_helm = match helm {
            Helm::Real => real_helm(4),
            Helm::Real3 => real_helm(3),
            Helm::Fake => None,
        };
        // Either helm needs the real one and the charts: the fake applies what the real one
        // renders. Without them (and not required, else the lookups above panic) the scenarios
        // of this test binary cannot run: skip them, saying so.
        let usable = match helm {
            Helm::Fake => paddock_sim::render::real_helm().is_ok() && ChartRepo::shared().is_some(),
            _ => real_helm.is_some(),
        };
        if !usable {
            // Straight to stderr: the test harness would swallow a captured message.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping the rest of this test binary: its scenarios need the real helm (scripts/install-tools) and the real charts (../shared/vendor/charts, PADDOCK_CHARTS_DIR, or a network for helm pull)"
            );
            std::process::exit(0);
        }
        if let Some((_, charts)) = real_helm {
            use_chart_repo(repo.path(), charts);
        }
        Self {
            real_helm,
            docker,
            home,
            _claim,
            repo,
            state: tempfile::tempdir().expect("state"),
            bin,
            ports,
        }
    }

    /// Registry cache containers of this world: "name app-label ports", sorted.
    pub fn cache_containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "--filter", "label=k3d.role=registry", "--filter"])
            .arg(format!(
                "label=dev.paddock.sim.home={}",
                self.home.path().display()
            ))
            .args(["--format", "{{.Names}} {{.Label \"app\"}} {{.Ports}}"])
            .output()
            .expect("docker ps");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// The host port used here for a shipped one (8080, 8443, 9080).
    pub fn port(&self, shipped: u16) -> u16 {
        self.ports
            .iter()
            .find(|(o, _)| *o == shipped)
            .map(|(_, n)| *n)
            .expect("known port")
    }

    fn env(&self, c: &mut Command) {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("PADDOCK_SIM_HOME", self.home.path())
            .env("PADDOCK_SIM_DOCKER", if self.docker { "1" } else { "0" })
            .env("PADDOCK_STATE_DIR", self.state.path())
            .env("HOME", self.home.path())
            .env_remove("PADDOCK_K3D")
            .env_remove("PADDOCK_HELM")
            .env_remove("KUBECONFIG")
            .env_remove("PADDOCK_DIR");
        match &self.real_helm {
            Some((helm, _)) => c.env(paddock_sim::tools::REAL_HELM, helm),
            None => c.env_remove(paddock_sim::tools::REAL_HELM),
        };
    }

    pub fn paddock_cmd(&self, args: &[&str]) -> Command {
        // PADDOCK_TEST_BIN: another build to run (measurements use the release build).
        let bin = std::env::var_os("PADDOCK_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_paddock").into());
        let mut c = Command::new(bin);
        c.arg("-C").arg(self.repo.path()).args(args);
        self.env(&mut c);
        c.stdin(Stdio::null());
        c
    }

    pub fn paddock(&self, args: &[&str]) -> Output {
        self.paddock_cmd(args).output().expect("paddock runs")
    }

    pub fn spawn_paddock(&self, args: &[&str]) -> Child {
        self.paddock_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paddock starts")
    }

    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let mut c = Command::new(self.bin.join(tool));
        c.args(args);
        self.env(&mut c);
        c.stdin(Stdio::null()).output().expect("tool runs")
    }

    pub fn invocations(&self) -> Vec<paddock_sim::world::Invocation> {
        paddock_sim::world::invocations(self.home.path())
    }

    /// Invocations that change something: helm installs/upgrades/uninstalls/rollbacks, k3d
    /// creates/deletes/imports.
    pub fn mutations(&self) -> Vec<String> {
        self.invocations()
            .into_iter()
            .filter(|i| {
                let a: Vec<&str> = i.args.iter().map(String::as_str).collect();
                match i.tool.as_str() {
                    "helm" => a
                        .iter()
                        .any(|w| matches!(*w, "upgrade" | "install" | "uninstall" | "rollback")),
                    _ => a
                        .iter()
                        .any(|w| matches!(*w, "create" | "delete" | "import" | "start" | "stop")),
                }
            })
            .map(|i| format!("{} {}", i.tool, i.args.join(" ")))
            .collect()
    }

    pub fn set_knobs(&self, k: &paddock_sim::knobs::Knobs) {
        k.save(self.home.path()).expect("knobs");
    }

    /// The API server log of a cluster: (total requests, mutating requests).
    pub fn requests(&self, cluster: &str) -> (u64, Vec<String>) {
        let r = api_client(self, cluster)
            .get("/sim/requests")
            .expect("request log");
        assert_eq!(r.code, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("requests json");
        let mutating = v["mutating"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        (v["total"].as_u64().unwrap_or(0), mutating)
    }

    /// The Istio chart repository this world's specs use: the loopback one with the real
    /// helm, the public one (which only the fake helm serves offline) otherwise.
    pub fn istio_repo(&self) -> String {
        match &self.real_helm {
            Some((_, charts)) => charts.istio(),
            None => paddock_sim::chart_repo::ISTIO_REPO.to_string(),
        }
    }

    /// A kubeconfig file for `cluster`, as `k3d kubeconfig get` prints it.
    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        let out = self.tool("k3d", &["kubeconfig", "get", cluster]);
        assert!(out.status.success(), "{}", stderr(&out));
        let path = self.home.path().join(format!("kubeconfig-{cluster}"));
        std::fs::write(&path, &out.stdout).expect("write kubeconfig");
        path
    }

    /// Every release of `cluster` as the real helm reports it (`helm list -A` of every status,
    /// as JSON, run directly, not through the sim's name for it).
    pub fn helm_list(&self, cluster: &str) -> Vec<Value> {
        let (helm, _) = self.real_helm.as_ref().expect("a world with the real helm");
        let mut c = Command::new(helm);
        c.args([
            "list",
            "-A",
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(self.kubeconfig(cluster));
        self.env(&mut c);
        let out = c.output().expect("helm list");
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("helm list json")
    }

    pub fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let p = self.repo.path().join(file);
        let text = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, f(text)).expect("write");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.tool("k3d", &["cluster", "delete", "--all"]);
        if self.docker {
            paddock_sim::docker::cleanup(self.home.path());
        }
    }
}

/// Plain HTTP GET (a load-balancer port), body as text.
pub fn get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// HTTP GET through paddock's probe route (`Host: paddock-probe.invalid`): (status,
/// lower-cased head) or None when nothing answered.
pub fn probe(port: u16) -> Option<(u16, String)> {
    request(port, "paddock-probe.invalid", "/")
}

/// HTTP GET of `path` on 127.0.0.1:`port` with `Host: host`: (status, lower-cased head) or
/// None when nothing answered.
pub fn request(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let head = raw.split("\r\n\r\n").next()?.to_ascii_lowercase();
    Some((head.split_whitespace().nth(1)?.parse().ok()?, head))
}

/// Spawn paddock in a process group of its own, so the test can kill it with its children.
pub fn spawn_group(w: &World, args: &[&str]) -> Child {
    let mut c = w.paddock_cmd(args);
    use std::os::unix::process::CommandExt;
    c.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("paddock starts")
}

/// The status label of release `name`'s newest storage Secret, straight from the sim.
pub fn storage_status(w: &World, cluster: &str, ns: &str, name: &str) -> Option<String> {
    let r = api_client(w, cluster)
        .get(&format!(
            "/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm%2Cname%3D{name}"
        ))
        .ok()?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["items"]
        .as_array()?
        .iter()
        .max_by_key(|s| {
            s["metadata"]["labels"]["version"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .and_then(|s| s["metadata"]["labels"]["status"].as_str())
        .map(str::to_string)
}

/// SIGKILL every process of the process group `pgid` (one [`spawn_group`] started).
pub fn kill_group(pgid: u32) {
    let st = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -s KILL -- -{pgid}");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `paddock up CLUSTER -o json`, which must succeed: its final result.
pub fn up_ok(w: &World, cluster: &str) -> Value {
    let out = w.paddock(&["up", cluster, "-o", "json"]);
    assert!(
        out.status.success(),
        "up {cluster} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    result(&out)
}

/// `paddock up CLUSTER ARGS...`, which must fail with exit 1: what it printed, stdout and
/// stderr together.
pub fn up_fails(w: &World, cluster: &str, args: &[&str]) -> String {
    let mut all = vec!["up", cluster];
    all.extend_from_slice(args);
    let out = w.paddock(&all);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

/// The final NDJSON result of a `--output json` run.
pub fn result(o: &Output) -> Value {
    stdout(o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "result" || v.get("ok").is_some())
        .unwrap_or(Value::Null)
}

/// A client for a cluster's API server with the admin's credentials from its record (whatever
/// the knobs make `k3d kubeconfig get` print).
pub fn api_client(w: &World, cluster: &str) -> paddock_sim::client::Client {
    let rec =
        paddock_sim::world::ClusterRecord::load(w.home.path(), cluster).expect("cluster record");
    paddock_sim::client::Client::from_kubeconfig(&rec.kubeconfig(), None).expect("api client")
}

/// An HTTPS request to a cluster's API server: (status, body).
pub fn api(
    w: &World,
    cluster: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let ctype = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let r = api_client(w, cluster)
        .request(method, path, ctype, body.as_bytes())
        .expect("api request");
    (r.code, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}
