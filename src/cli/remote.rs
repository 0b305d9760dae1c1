//! Running `up`, `upgrade` and `restart` in a daemon that serves the state directory: the
//! operation is submitted over its socket and its events are rendered as they arrive, so the
//! output and the exit code are those of running it here. `--no-daemon` runs it here anyway;
//! the cluster locks keep the two apart either way.

use super::*;
use crate::daemon::client::Client;
use crate::daemon::model::OperationRequest;

/// The limits the daemon runs `upgrade` and `restart` with (the CLI's defaults); a command
/// given others runs here.
pub(super) const MAX_CONCURRENT: usize = 4;
pub(super) const TIMEOUT_SECS: u64 = 300;

/// The daemon serving this state directory, if one answers and `--no-daemon` was not given.
pub(super) fn daemon(args: &Args, rt: &tokio::runtime::Runtime) -> Option<Client> {
    if args.no_daemon {
        return None;
    }
    let tools = toolchain(args);
    let file = spec::load(&args.dir).repo.config.serve;
    let socket = crate::daemon::config::load(&file, &Default::default(), &tools.state_dir)
        .map(|c| c.socket)
        .unwrap_or_else(|_| tools.state_dir.join("paddock.sock"));
    let client = rt.block_on(Client::find(&socket))?;
    // The daemon runs its own specs: only when they are this repository's is that the same as
    // running here. Otherwise run here; the cluster locks keep the two apart.
    let here = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    match rt.block_on(client.source()) {
        Some((kind, location)) if kind == "folder" && std::path::Path::new(&location) == here => {
            Some(client)
        }
        other => {
            let follows = other.map_or("no valid specs".to_string(), |(k, l)| {
                format!("the {k} {l}")
            });
            tracing::warn!(
                "a daemon (pid {}) serves this state directory but follows {follows}, not {}; running here",
                client.health.pid,
                here.display()
            );
            None
        }
    }
}

/// Run `req` in the daemon behind `client`; Ctrl-C asks it to cancel (no further step
/// starts), as it does here.
pub(super) fn run(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    client: &Client,
    req: OperationRequest,
) -> Result<(), Failure> {
    let rep = reporter(args);
    let events = rep.events();
    let lost = |e: crate::daemon::client::Error| Failure::Op {
        message: chain(&e),
        hint: Some("run it here with --no-daemon, or see the daemon's log".into()),
        code: exit::FAILED,
    };
    let outcomes = rt.block_on(async {
        let view = client.submit(&req).await.map_err(lost)?;
        events.note(&format!(
            "running in the daemon (pid {}) as operation {}; --no-daemon runs it here instead",
            client.health.pid, view.id
        ));
        let (canceller, id, said) = (client.clone(), view.id.clone(), events.clone());
        let interrupt = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                said.note(
                    "interrupted: the daemon finishes the steps already running (Ctrl-C again to stop following it)",
                );
                let _ = canceller.cancel(&id).await;
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let outcomes = client
            .follow(&view.id, |v| {
                if let Some(e) = crate::engine::events::Event::from_json(v) {
                    events.emit(e);
                }
            })
            .await;
        interrupt.abort();
        outcomes.map_err(lost)
    })?;
    finish(&rep, outcomes)
}
