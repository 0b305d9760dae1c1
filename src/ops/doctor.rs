//! `doctor`: can this machine run paddock's clusters? Each check says what it found and, when
//! it fails, the exact fix.

use serde::Serialize;

use crate::drivers::provision::Tool;
use crate::drivers::toolchain::{Toolchain, install_help};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Worth knowing, but not a failure.
    pub warning: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn pass(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        warning: false,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        warning: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        warning: true,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

async fn tool_version(
    bin: &std::path::Path,
    args: &[&str],
) -> Result<String, crate::drivers::exec::ExecError> {
    let out =
        crate::drivers::exec::exec(crate::drivers::exec::Cmd::new(bin).args(args.iter().copied()))
            .await?;
    Ok(out
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A host port a spec claims, where, and which cluster claims it.
#[derive(Debug, Clone)]
pub struct PortClaim {
    pub port: u16,
    pub cluster: String,
    pub field: String,
}

/// Run every check. `ports` are the host ports the repository's clusters claim.
pub async fn run(cx: &crate::ops::Context, ports: &[PortClaim], clusters: usize) -> Vec<Check> {
    let tools = &cx.tools;
    let mut checks = Vec::new();
    let containers = docker(&mut checks).await;
    let k3d_clusters = k3d_helm_kubectl(tools, &mut checks).await;
    port_checks(ports, &containers, &k3d_clusters, &mut checks);
    memory(clusters, &mut checks);
    inotify(&mut checks);
    checks
}

/// The Docker engine, and the k3d containers it runs (to tell our ports from others').
async fn docker(checks: &mut Vec<Check>) -> Vec<crate::drivers::docker::K3dContainer> {
    let docker_fix = "start the Docker engine (e.g. `sudo systemctl start docker`), or set DOCKER_HOST to a reachable engine";
    match crate::drivers::docker::version().await {
        Ok(v) => {
            checks.push(pass("docker", format!("Docker engine {v} reachable")));
            crate::drivers::docker::k3d_containers()
                .await
                .unwrap_or_default()
        }
        Err(e) => {
            checks.push(fail("docker", e.to_string(), docker_fix));
            Vec::new()
        }
    }
}

/// The tools paddock drives, and the clusters k3d knows.
async fn k3d_helm_kubectl(
    tools: &Toolchain,
    checks: &mut Vec<Check>,
) -> Vec<crate::drivers::k3d::cli::ClusterInfo> {
    let mut k3d_clusters = Vec::new();
    match &tools.k3d {
        Some(bin) => match tool_version(bin, &["version"]).await {
            Ok(v) => {
                checks.push(pass("k3d", format!("{v} ({})", bin.display())));
                k3d_clusters = crate::drivers::k3d::cli::K3d::new(bin)
                    .list()
                    .await
                    .unwrap_or_default();
            }
            Err(e) => checks.push(fail("k3d", e.to_string(), install_help("k3d"))),
        },
        None => checks.push(missing(tools, Tool::K3d)),
    }
    match &tools.helm {
        Some(bin) => match crate::drivers::helm::cli::Helm::detect(bin).await {
            Ok(h) => checks.push(pass(
                "helm",
                format!("Helm {} ({})", h.version, bin.display()),
            )),
            Err(e) => checks.push(fail("helm", e.to_string(), install_help("helm"))),
        },
        None => checks.push(missing(tools, Tool::Helm)),
    }
    match &tools.kubectl {
        Some(bin) => match tool_version(bin, &["version", "--client"]).await {
            Ok(v) => checks.push(pass("kubectl", format!("{v} ({})", bin.display()))),
            Err(e) => checks.push(warn("kubectl", e.to_string(), install_help("kubectl"))),
        },
        None => checks.push(warn(
            "kubectl",
            "not found (optional)",
            install_help("kubectl"),
        )),
    }
    k3d_clusters
}

/// A tool that is not here: a warning saying exactly what paddock will download, or (with
/// downloads off) a failure with how to install it.
fn missing(tools: &Toolchain, tool: Tool) -> Check {
    let name = tool.name();
    let Some(settings) = &tools.downloads else {
        return fail(name, "not found", install_help(name));
    };
    let source = match settings.source(tool) {
        Ok(s) => s,
        Err(e) => return fail(name, format!("not found; {e}"), install_help(name)),
    };
    match settings.off_by {
        None => warn(
            name,
            format!(
                "not found; the commands that need it download {name} {} from {} (checked against {}) into {}",
                source.version,
                source.url,
                source.checksum_url,
                source.dest.display()
            ),
            format!(
                "nothing to do, or install it yourself: {}",
                install_help(name)
            ),
        ),
        Some(off_by) => fail(
            name,
            format!("not found, and downloads are off ({off_by})"),
            install_help(name),
        ),
    }
}

/// Each host port a cluster claims: free, or already published by that cluster.
fn port_checks(
    ports: &[PortClaim],
    containers: &[crate::drivers::docker::K3dContainer],
    k3d_clusters: &[crate::drivers::k3d::cli::ClusterInfo],
    checks: &mut Vec<Check>,
) {
    for claim in ports {
        let free = std::net::TcpListener::bind(("127.0.0.1", claim.port)).is_ok();
        let ours = containers
            .iter()
            .any(|c| c.cluster == claim.cluster && c.ports.iter().any(|(h, _)| *h == claim.port))
            || k3d_clusters
                .iter()
                .any(|c| c.name == claim.cluster && c.publishes(claim.port));
        let name = format!("port {}", claim.port);
        if free {
            checks.push(pass(
                &name,
                format!("free for cluster {} ({})", claim.cluster, claim.field),
            ));
        } else if ours {
            checks.push(pass(
                &name,
                format!("published by cluster {} (already up)", claim.cluster),
            ));
        } else {
            checks.push(fail(
                &name,
                format!("in use by another program; cluster {} claims it at {}", claim.cluster, claim.field),
                format!("free port {} (`ss -ltnp 'sport = :{}'` shows who holds it) or change {} in the cluster's spec", claim.port, claim.port, claim.field),
            ));
        }
    }
}

/// About 2 GiB available per cluster.
fn memory(clusters: usize, checks: &mut Vec<Check>) {
    let Some(kb) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    }) else {
        return;
    };
    let gib = kb as f64 / 1024.0 / 1024.0;
    let want = 2.0 * clusters.max(1) as f64;
    if gib >= want {
        checks.push(pass("memory", format!("{gib:.1} GiB available")));
    } else {
        checks.push(warn(
            "memory",
            format!("{gib:.1} GiB available; {clusters} cluster(s) want about {want:.0} GiB"),
            "close other programs or run fewer clusters at once",
        ));
    }
}

/// inotify limits several clusters need.
fn inotify(checks: &mut Vec<Check>) {
    let fix = "sudo sysctl -w fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288, and to keep it: printf 'fs.inotify.max_user_instances=512\\nfs.inotify.max_user_watches=524288\\n' | sudo tee /etc/sysctl.d/99-paddock.conf";
    for (key, min) in [
        ("max_user_instances", 512u64),
        ("max_user_watches", 524_288),
    ] {
        match read_number(&format!("/proc/sys/fs/inotify/{key}")) {
            Some(v) if v >= min => checks.push(pass(&format!("inotify {key}"), format!("{v}"))),
            // One cluster runs within the stock limits; several exhaust them.
            Some(v) => checks.push(warn(
                &format!("inotify {key}"),
                format!("{v}, below {min}: enough for one cluster, several exhaust it"),
                fix,
            )),
            None => checks.push(warn(&format!("inotify {key}"), "cannot read it", fix)),
        }
    }
}
