//! `paddock-sim`: the sim's one binary.
//!
//! - Called as `k3d` or `helm` (a link with that name), or as `paddock-sim k3d ...` /
//!   `paddock-sim helm ...`: the fake tools.
//! - `paddock-sim serve NAME [KUBECONFIG]`: one in-process cluster until Ctrl-C.
//! - `paddock-sim serve-cluster --home DIR --name NAME`: a k3d cluster's server process
//!   (started by the fake `k3d`).
//! - `paddock-sim link DIR`: make `DIR/k3d` and `DIR/helm` links to this binary.
//! - `paddock-sim tool-mirror [--port N] [--binary PATH] [--fault F]`: serve k3d's and helm's release
//!   layouts on 127.0.0.1 (the binary: this one) and print the variables pointing paddock at
//!   them, until killed.
//! - `paddock-sim proxy PORT=HOST:PORT...`: forward TCP ports (the `serverlb` container);
//!   `paddock-sim idle`: wait for SIGTERM (agent nodes).

use std::path::PathBuf;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let called = argv
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let args: Vec<String> = argv.iter().skip(1).cloned().collect();
    // The sim's own commands come first: a copy installed as `k3d` starts its clusters by
    // running itself (`serve-cluster`), and k3d has no such commands.
    let own = matches!(
        args.first().map(String::as_str),
        Some("serve-cluster" | "proxy" | "idle")
    );
    let code = match (called.as_str(), args.first().map(String::as_str)) {
        ("k3d" | "helm", _) if !own => paddock_sim::tools::run(&called, &args),
        (_, Some(tool @ ("k3d" | "helm"))) => paddock_sim::tools::run(tool, &args[1..]),
        (_, Some("link")) => link(args.get(1)),
        (_, Some("serve")) => serve(&args[1..]),
        (_, Some("serve-cluster")) => serve_cluster(&args[1..]),
        (_, Some("proxy")) => proxy(&args[1..]),
        (_, Some("idle")) => proxy(&[]),
        (_, Some("tool-mirror")) => tool_mirror(&args[1..]),
        _ => {
            eprintln!(
                "usage: paddock-sim (k3d|helm) ARGS... | serve NAME [KUBECONFIG] | serve-cluster --home DIR --name NAME | link DIR | tool-mirror [--port N] [--binary PATH] [--fault F]"
            );
            2
        }
    };
    std::process::exit(code);
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock-sim: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn link(dir: Option<&String>) -> i32 {
    let Some(dir) = dir else {
        eprintln!("usage: paddock-sim link DIR");
        return 2;
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("paddock-sim: {e}");
            return 1;
        }
    };
    let dir = PathBuf::from(dir);
    for tool in ["k3d", "helm"] {
        let target = dir.join(tool);
        let _ = std::fs::remove_file(&target);
        if let Err(e) = std::os::unix::fs::symlink(&exe, &target) {
            eprintln!("paddock-sim: {}: {e}", target.display());
            return 1;
        }
    }
    0
}

fn serve(args: &[String]) -> i32 {
    let Some(name) = args.first() else {
        eprintln!("usage: paddock-sim serve NAME [KUBECONFIG]");
        return 2;
    };
    runtime().block_on(async {
        let cluster = match paddock_sim::Cluster::start(name).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("paddock-sim: {e}");
                return 1;
            }
        };
        match args.get(1) {
            Some(path) => {
                if let Err(e) = std::fs::write(path, cluster.kubeconfig()) {
                    eprintln!("paddock-sim: {path}: {e}");
                    return 1;
                }
            }
            None => print!("{}", cluster.kubeconfig()),
        }
        eprintln!("cluster {name} serving on {}", cluster.server_url());
        let _ = tokio::signal::ctrl_c().await;
        0
    })
}

fn serve_cluster(args: &[String]) -> i32 {
    let home = args
        .iter()
        .position(|a| a == "--home")
        .and_then(|i| args.get(i + 1));
    let name = args
        .iter()
        .position(|a| a == "--name")
        .and_then(|i| args.get(i + 1));
    let (Some(home), Some(name)) = (home, name) else {
        eprintln!("usage: paddock-sim serve-cluster --home DIR --name NAME");
        return 2;
    };
    match runtime().block_on(paddock_sim::world::serve_cluster(
        PathBuf::from(home),
        name.clone(),
    )) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("paddock-sim: {e}");
            1
        }
    }
}

/// Forward each `PORT=HOST:PORT` until SIGTERM, as k3d's load balancer forwards to the servers.
fn proxy(routes: &[String]) -> i32 {
    runtime().block_on(async {
        for r in routes {
            let Some((listen, target)) = r.split_once('=') else {
                eprintln!("paddock-sim: bad route {r:?}: want PORT=HOST:PORT");
                return 2;
            };
            let listener = match tokio::net::TcpListener::bind(format!("0.0.0.0:{listen}")).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("paddock-sim: listen {listen}: {e}");
                    return 1;
                }
            };
            let target = target.to_string();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
        }
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        0
    })
}

/// `paddock-sim tool-mirror [--port N] [--binary PATH] [--fault checksum|truncate|404|stall|slow]`:
/// the release sites' layouts on loopback until SIGTERM or Ctrl-C; prints the `export` lines
/// that point paddock at them.
fn tool_mirror(args: &[String]) -> i32 {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let port = match value("--port").map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("paddock-sim: --port wants a port number");
            return 2;
        }
    };
    let binary = match value("--binary") {
        Some(b) => PathBuf::from(b),
        None => match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("paddock-sim: {e}");
                return 1;
            }
        },
    };
    use paddock_sim::tool_mirror::Fault;
    let fault = match value("--fault").map(String::as_str) {
        None => Fault::None,
        Some("checksum") => Fault::BadChecksum,
        Some("truncate") => Fault::Truncated,
        Some("404") => Fault::NotFound,
        Some("stall") => Fault::Stall,
        Some("slow") => Fault::Slow,
        Some(other) => {
            eprintln!(
                "paddock-sim: unknown fault {other:?}: checksum, truncate, 404, stall or slow"
            );
            return 2;
        }
    };
    let mirror = match paddock_sim::tool_mirror::ToolMirror::start(&binary, port) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("paddock-sim: cannot serve {}: {e}", binary.display());
            return 1;
        }
    };
    mirror.set_fault(fault);
    println!("export PADDOCK_K3D_MIRROR={}", mirror.k3d_base());
    println!("export PADDOCK_HELM_MIRROR={}", mirror.helm_base());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!(
        "serving k3d {} and helm {} ({}) on {} until killed",
        paddock_sim::tool_mirror::K3D_VERSION,
        paddock_sim::tool_mirror::HELM_VERSION,
        paddock_sim::tool_mirror::os_arch(),
        mirror.addr
    );
    proxy(&[])
}
