//! A loopback Helm chart repository: the real Istio and addon charts served over HTTP on
//! 127.0.0.1, so the real `helm` fetches exactly what the public repositories serve
//! (`helm ... --repo URL --version V` reads `URL/index.yaml`, then the chart archive it names).
//!
//! The charts come from, in order: `PADDOCK_CHARTS_DIR`; the workspace's
//! `../shared/vendor/charts` (folders `istio/` and `addons/`, each a repository with its
//! `index.yaml`); or a cache under `target/chart-cache` filled once with `helm pull` from the
//! public repositories. Without any of them a test skips with a message, or fails under
//! `PADDOCK_REQUIRE_TOOLS=1`. What is served is a copy in `target/chart-serve` with a few
//! [`DERIVED`] versions beside the real ones.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The public repository of Istio's charts.
pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";

/// The charts paddock pins, where their public repositories are: (folder, repository, chart,
/// versions).
pub const PUBLIC: &[(&str, &str, &str, &[&str])] = &[
    (
        "istio",
        ISTIO_REPO,
        "base",
        &["1.28.10", "1.29.6", "1.30.3"],
    ),
    (
        "istio",
        ISTIO_REPO,
        "istiod",
        &["1.28.10", "1.29.6", "1.30.3"],
    ),
    (
        "istio",
        ISTIO_REPO,
        "gateway",
        &["1.28.10", "1.29.6", "1.30.3"],
    ),
    (
        "addons",
        "https://prometheus-community.github.io/helm-charts",
        "prometheus",
        &["27.39.0"],
    ),
    (
        "addons",
        "https://grafana.github.io/helm-charts",
        "grafana",
        &["9.4.5"],
    ),
    (
        "addons",
        "https://kiali.org/helm-charts",
        "kiali-server",
        &["2.17.0"],
    ),
    (
        "addons",
        "https://jaegertracing.github.io/helm-charts",
        "jaeger",
        &["3.4.1"],
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn has_repos(dir: &Path) -> bool {
    dir.join("istio/index.yaml").is_file() && dir.join("addons/index.yaml").is_file()
}

/// Fill `cache` with `helm pull` from the public repositories; `Err` says what failed.
fn pull_into(cache: &Path, helm: &Path) -> Result<(), String> {
    let partial = cache.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    for (folder, repo, chart, versions) in PUBLIC {
        let dest = partial.join(folder);
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        for v in *versions {
            let out = Command::new(helm)
                .args(["pull", chart, "--repo", repo, "--version", v, "-d"])
                .arg(&dest)
                .output()
                .map_err(|e| format!("{}: {e}", helm.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "helm pull {chart} {v} from {repo}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    for folder in ["istio", "addons"] {
        let out = Command::new(helm)
            .args(["repo", "index"])
            .arg(partial.join(folder))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    std::fs::rename(&partial, cache).map_err(|e| e.to_string())
}

/// Versions made from a published one for scenarios the published set cannot show: (folder,
/// chart, made from, version). The vendored charts hold one patch per minor; an in-place
/// patch upgrade needs two, so 1.30.2 is 1.30.3's charts with their version, appVersion and
/// image tag set to 1.30.2 (what Istio's release build rewrites per tag).
pub const DERIVED: &[(&str, &str, &str, &str)] = &[
    ("istio", "base", "1.30.3", "1.30.2"),
    ("istio", "istiod", "1.30.3", "1.30.2"),
    ("istio", "gateway", "1.30.3", "1.30.2"),
];

/// The charts served and rendered: the real ones (see [`source_dir`]) with the [`DERIVED`]
/// versions beside them, built once into `target/chart-serve` (the source is read-only).
pub fn charts_dir() -> Result<PathBuf, String> {
    let source = source_dir()?;
    let served = workspace().join("target/chart-serve");
    if has_repos(&served) && served.join(".complete").is_file() {
        return Ok(served);
    }
    let helm = crate::real_tools::find("helm").ok_or("the real helm is not installed")?;
    let building = workspace().join(format!("target/chart-serve.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    build_served(&source, &building, &helm).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&building);
    })?;
    // Another process may have finished first: either copy is the same.
    if std::fs::rename(&building, &served).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    if has_repos(&served) {
        Ok(served)
    } else {
        Err(format!("{}: incomplete", served.display()))
    }
}

fn build_served(source: &Path, dest: &Path, helm: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    for folder in ["istio", "addons"] {
        std::fs::create_dir_all(dest.join(folder)).map_err(io)?;
        for e in std::fs::read_dir(source.join(folder))
            .map_err(io)?
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "tgz") {
                std::fs::copy(e.path(), dest.join(folder).join(e.file_name())).map_err(io)?;
            }
        }
    }
    let work = dest.join(".work");
    for (folder, chart, from, to) in DERIVED {
        let archive = source.join(folder).join(format!("{chart}-{from}.tgz"));
        let unpacked = work.join(format!("{chart}-{to}"));
        std::fs::create_dir_all(&unpacked).map_err(io)?;
        run(Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked))?;
        let dir = unpacked.join(chart);
        for (file, pairs) in [
            (
                "Chart.yaml",
                vec![
                    (format!("version: {from}"), format!("version: {to}")),
                    (format!("appVersion: {from}"), format!("appVersion: {to}")),
                ],
            ),
            (
                "values.yaml",
                vec![(format!("tag: {from}"), format!("tag: {to}"))],
            ),
        ] {
            let path = dir.join(file);
            let mut text = std::fs::read_to_string(&path).map_err(io)?;
            for (a, b) in pairs {
                text = text.replace(&a, &b);
            }
            std::fs::write(&path, text).map_err(io)?;
        }
        run(Command::new(helm)
            .arg("package")
            .arg(&dir)
            .arg("-d")
            .arg(dest.join(folder)))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    for folder in ["istio", "addons"] {
        run(Command::new(helm)
            .args(["repo", "index"])
            .arg(dest.join(folder)))?;
    }
    std::fs::write(dest.join(".complete"), "").map_err(io)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where the real charts are, fetching them into the cache when needed; `Err` says why not.
pub fn source_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("PADDOCK_CHARTS_DIR") {
        let d = PathBuf::from(d);
        return if has_repos(&d) {
            Ok(d)
        } else {
            Err(format!(
                "PADDOCK_CHARTS_DIR={} has no istio/index.yaml and addons/index.yaml",
                d.display()
            ))
        };
    }
    let vendored = workspace().join("../shared/vendor/charts");
    if has_repos(&vendored) {
        return Ok(vendored);
    }
    let cache = workspace().join("target/chart-cache");
    if has_repos(&cache) {
        return Ok(cache);
    }
    let helm = crate::real_tools::find("helm").ok_or("the real helm is not installed")?;
    pull_into(&cache, &helm).map(|()| cache)
}

/// A repository server: `url()/istio` and `url()/addons` are Helm repositories.
#[derive(Debug)]
pub struct ChartRepo {
    pub root: PathBuf,
    pub port: u16,
    /// Paths asked for, in order (`/istio/index.yaml`, ...).
    pub served: Arc<Mutex<Vec<String>>>,
}

impl ChartRepo {
    /// Serve `root` on a free loopback port until the process ends.
    pub fn serve(root: PathBuf) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let served = Arc::new(Mutex::new(Vec::new()));
        let (dir, log) = (root.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (dir, log) = (dir.clone(), log.clone());
                std::thread::spawn(move || answer(conn, &dir, &log));
            }
        });
        Ok(Self { root, port, served })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Istio charts' repository URL.
    pub fn istio(&self) -> String {
        format!("{}/istio", self.url())
    }

    /// The addon charts' repository URL.
    pub fn addons(&self) -> String {
        format!("{}/addons", self.url())
    }

    /// One server per test process. `None` (after a message) when the charts cannot be had
    /// and tools are not required; a panic when they are (`PADDOCK_REQUIRE_TOOLS=1`).
    pub fn shared() -> Option<&'static ChartRepo> {
        static REPO: OnceLock<Result<ChartRepo, String>> = OnceLock::new();
        let repo = REPO.get_or_init(|| {
            let dir = charts_dir()?;
            ChartRepo::serve(dir).map_err(|e| e.to_string())
        });
        match repo {
            Ok(r) => Some(r),
            Err(e) if crate::real_tools::required() => {
                panic!("the real charts are required (PADDOCK_REQUIRE_TOOLS=1): {e}")
            }
            Err(e) => {
                eprintln!("skipping: the real charts cannot be had: {e}");
                None
            }
        }
    }
}

/// One HTTP/1.1 GET per connection: the file under `root`, or 404.
fn answer(conn: TcpStream, root: &Path, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/").to_string();
    if let Ok(mut l) = log.lock() {
        l.push(path.clone());
    }
    let rel = Path::new(path.trim_start_matches('/'));
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let file = root.join(rel);
    let body = if safe && file.is_file() {
        std::fs::File::open(&file).and_then(|mut f| {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map(|_| b)
        })
    } else {
        Err(std::io::ErrorKind::NotFound.into())
    };
    let mut conn = conn;
    let (status, ctype, body) = match body {
        Ok(b) => {
            let ctype = if path.ends_with(".yaml") {
                "application/x-yaml"
            } else {
                "application/gzip"
            };
            ("200 OK", ctype, b)
        }
        Err(_) => (
            "404 Not Found",
            "text/plain",
            b"404 page not found\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = conn.write_all(&body);
    }
}
