//! `paddock-sim serve NAME [KUBECONFIG]`: run one simulated cluster's API server until killed,
//! writing a k3d-style kubeconfig.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, kubeconfig) = match args.as_slice() {
        [cmd, name, rest @ ..] if cmd == "serve" => (name.clone(), rest.first().cloned()),
        _ => {
            eprintln!("usage: paddock-sim serve NAME [KUBECONFIG]");
            std::process::exit(2);
        }
    };
    let cluster = paddock_sim::Cluster::start(&name).await?;
    match kubeconfig {
        Some(path) => std::fs::write(&path, cluster.kubeconfig())?,
        None => print!("{}", cluster.kubeconfig()),
    }
    eprintln!("cluster {name} serving on {}", cluster.server_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
