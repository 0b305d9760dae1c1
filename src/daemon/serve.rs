//! The daemon's life: claim the state directory, take the source's newest valid revision,
//! continue unfinished upgrades, serve the API, then follow the source (watched folder or
//! polled git branch) and the schedules until SIGTERM or SIGINT — after which no new
//! operation starts, running ones finish their step, and the daemon exits.

// An error is made once per failed fetch or start and carries its causes by value.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::config::{self, Config};
use super::core::{Daemon, Settings};
use super::instance;
use super::source::{self, Source};
use super::timetable::Timetable;
use crate::engine::clock::Clock;

/// What `paddock serve` was given besides its configuration.
#[derive(Debug, Clone)]
pub struct Start {
    /// The repository folder (followed itself unless a git remote is configured).
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub k3d: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    /// `--no-download`: operations never download k3d or helm.
    pub no_download: bool,
    pub config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Instance(#[from] instance::Error),
    #[error("failed to serve the API on {}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error("failed to listen for signals")]
    Signals(#[source] std::io::Error),
}

/// Run the daemon until a signal stops it.
pub async fn run(start: Start, clock: Arc<dyn Clock>) -> Result<(), Error> {
    let started = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cfg = &start.config;
    let _instance = instance::claim(&start.state_dir, &cfg.socket, &started)?;
    let src = match &cfg.repo {
        Some(url) => Source::Git {
            url: url.clone(),
            branch: cfg.branch.clone(),
            cache: start.state_dir.join("source"),
        },
        None => Source::Folder(start.dir.clone()),
    };
    let (kind, location) = src.describe();
    let daemon = Daemon::new(
        Settings {
            state_dir: start.state_dir.clone(),
            k3d: start.k3d.clone(),
            helm: start.helm.clone(),
            no_download: start.no_download,
            mode: cfg.mode,
            source: (kind, location.clone()),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        clock.clone(),
    );
    let stop = CancellationToken::new();
    watch_signals(stop.clone())?;
    let listener = super::api::bind(&cfg.socket).map_err(|source| Error::Socket {
        path: cfg.socket.clone(),
        source,
    })?;
    let api_stop = CancellationToken::new();
    let api = tokio::spawn(super::api::serve(
        listener,
        daemon.clone(),
        api_stop.clone(),
    ));
    if let Some(addr) = cfg.metrics_address {
        let l = super::metrics::bind_metrics(addr)
            .await
            .map_err(|source| Error::Metrics { addr, source })?;
        tokio::spawn(super::metrics::serve_metrics_on(
            l,
            daemon.clone(),
            api_stop.clone(),
        ));
    }
    tracing::info!(source = %location, socket = %cfg.socket.display(), pid = std::process::id(), "daemon started");
    take_newest(&daemon, &src).await;
    daemon.resume_unfinished();
    daemon.reconcile_all("source");
    let followed = follow(&daemon, &src, cfg, &stop, &clock, &start.state_dir).await;
    if let Err(e) = &followed {
        tracing::error!(error = %crate::engine::chain(e), "cannot follow the source; stopping");
    }
    tracing::info!("stopping: running operations finish their current step");
    daemon.shut_down().await;
    api_stop.cancel();
    let _ = api.await;
    let _ = std::fs::remove_file(&cfg.socket);
    tracing::info!("daemon stopped");
    followed
}

/// SIGTERM or SIGINT: stop.
fn watch_signals(stop: CancellationToken) -> Result<(), Error> {
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.cancel();
        // A second signal: stop now, as a second Ctrl-C does for the CLI.
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!(
            "stopped at once by a second signal; an unfinished upgrade continues at the next start"
        );
        std::process::exit(130);
    });
    Ok(())
}

/// Take the source's newest revision if it is valid; say so either way. `true`: a new
/// revision is in force.
async fn take_newest(daemon: &Daemon, src: &Source) -> bool {
    match src.newest().await {
        Ok(rev) => {
            let newest = rev.commit.clone();
            let taken = daemon.take_revision(rev).unwrap_or(false);
            let in_force = daemon.revision().and_then(|(r, _)| r.commit);
            let keep: Vec<&str> = [&newest, &in_force]
                .into_iter()
                .filter_map(|c| c.as_deref())
                .collect();
            src.prune(&keep).await;
            taken
        }
        Err(e) => {
            tracing::warn!(error = %crate::engine::chain(&e), "could not read the source; the specs in force stay");
            false
        }
    }
}

/// What wakes the daemon between signals.
enum Wake {
    Stop,
    /// The folder changed, or the poll interval passed: look at the source again.
    Source,
    /// A schedule is due.
    Schedule,
}

/// Follow the source and the schedules until `stop`: a folder on each settled change, a git
/// branch every poll interval; a new valid revision is reconciled and its schedules served.
async fn follow(
    daemon: &Arc<Daemon>,
    src: &Source,
    cfg: &Config,
    stop: &CancellationToken,
    clock: &Arc<dyn Clock>,
    state_dir: &std::path::Path,
) -> Result<(), Error> {
    let mut timetable = Timetable::new(state_dir, clock.now());
    timetable.take(daemon, clock.now());
    let mut changes = match src {
        Source::Folder(root) => Some(source::watch(root, Duration::from_millis(300))?),
        Source::Git { .. } => None,
    };
    loop {
        let wake = tokio::select! {
            _ = stop.cancelled() => Wake::Stop,
            changed = async {
                match &mut changes {
                    Some((_, rx)) => rx.recv().await.is_some(),
                    None => {
                        tokio::time::sleep(cfg.poll_interval).await;
                        true
                    }
                }
            } => if changed { Wake::Source } else { Wake::Stop },
            _ = tokio::time::sleep(timetable.sleep_for(clock.now())) => Wake::Schedule,
        };
        match wake {
            Wake::Stop => return Ok(()),
            Wake::Source => {
                if take_newest(daemon, src).await {
                    timetable.take(daemon, clock.now());
                    daemon.reconcile_all("source");
                }
            }
            Wake::Schedule => timetable.fire(daemon, clock.now()).await,
        }
    }
}
