//! Running `up`, `upgrade` and `restart` in a daemon that serves the state directory: the
//! operation is submitted over its socket and its events are rendered as they arrive, so the
//! output and the exit code are those of running it here. `--no-daemon` runs it here anyway;
//! the cluster locks keep the two apart either way.

use super::*;
use crate::daemon::client::Client;
use crate::daemon::model::OperationRequest;

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
    rt.block_on(Client::find(&socket))
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
                said.note("interrupted: the daemon finishes the steps already running");
                let _ = canceller.cancel(&id).await;
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
