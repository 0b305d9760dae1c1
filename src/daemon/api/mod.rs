//! The daemon's HTTP API: HTTP/1.1 and JSON on a unix socket in the state directory, served
//! from a [`Backend`]. The paths, bodies and status codes are described in
//! `docs/api/openapi.yaml`; the JSON shapes are [`super::model`].
//!
//! Who may call: the socket is created mode 0600 ([`bind`]) and every connection's peer uid is
//! checked against the daemon's effective uid; others are closed unanswered.
//!
//! What a caller can cost ([`Limits`]): a bounded number of connections at once (further ones
//! wait in the listen backlog), request heads read within a deadline (idle keep-alive
//! connections close after it too), request bodies bounded in size (413) and read within a
//! deadline (408). Backend methods are called on the async threads, so they must answer from
//! memory, quickly.
//!
//! Shutdown: when the token is cancelled the listener closes, event streams end, and requests
//! in flight get [`Limits::shutdown_grace`] to finish before their connections are cut. The
//! socket file stays (its bound name is the staging path, so the listener cannot tell where it
//! was moved); the next [`bind`] replaces it, as nothing answers on it.

mod events;
mod routes;
mod server;

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::backend::Backend;

pub(crate) use routes::{State, metrics_router};
pub(crate) use server::run;

/// What one caller can cost the daemon. [`Limits::default`] is what `paddock serve` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head (request line and headers) must arrive within this; an idle keep-alive
    /// connection is closed after it.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this once its head is read (else 408).
    pub body_read_timeout: Duration,
    /// The largest request body accepted (else 413).
    pub max_body_bytes: usize,
    /// The largest request head accepted (else 431); at least 8 KiB.
    pub max_head_bytes: usize,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long requests in flight get to finish once shutdown is asked for.
    pub shutdown_grace: Duration,
    /// How often an idle event stream sends a keep-alive comment.
    pub sse_keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            max_head_bytes: 64 * 1024,
            max_connections: 256,
            shutdown_grace: Duration::from_secs(10),
            sse_keep_alive: Duration::from_secs(15),
        }
    }
}

/// Why the API (or the metrics listener) could not listen. Carried inside the `io::Error`s
/// [`bind`] and [`super::metrics::bind_metrics`] return (`io::Error::get_ref`).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another process answers on {0}; is a daemon already running on this state directory?")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; move it away or use another state directory")]
    NotASocket(PathBuf),
    #[error("failed to create the API socket {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to serve metrics on {0}: not a loopback address; use 127.0.0.1 or ::1")]
    NotLoopback(SocketAddr),
    #[error("failed to listen for metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

fn listen_error(e: ListenError) -> io::Error {
    let kind = match &e {
        ListenError::InUse(_) => io::ErrorKind::AddrInUse,
        ListenError::NotASocket(_) => io::ErrorKind::AlreadyExists,
        ListenError::NotLoopback(_) => io::ErrorKind::InvalidInput,
        ListenError::Create { source, .. } | ListenError::Metrics { source, .. } => source.kind(),
    };
    io::Error::new(kind, e)
}

/// Serve the API on `listener` until `shutdown` is cancelled, with the default [`Limits`].
pub async fn serve(
    listener: UnixListener,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with(listener, backend, shutdown, Limits::default()).await
}

/// [`serve`] with other limits.
pub async fn serve_with(
    listener: UnixListener,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let router = routes::router(State::new(backend, &limits, &shutdown));
    let euid = rustix::process::geteuid().as_raw();
    server::run(listener, router, &limits, shutdown, move |stream| {
        same_user(stream, euid)
    })
    .await;
    Ok(())
}

/// Whether the peer of `stream` runs as `euid`; a refusal is logged.
fn same_user(stream: &UnixStream, euid: u32) -> bool {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == euid => true,
        Ok(cred) => {
            tracing::warn!(
                uid = cred.uid(),
                pid = cred.pid(),
                "refused an API connection from uid {}: only uid {euid} may use the daemon",
                cred.uid()
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "refused an API connection whose peer could not be identified");
            false
        }
    }
}

/// Create the API's socket at `path`, mode 0600 from the moment it exists there: it is bound
/// in a fresh 0700 directory beside `path`, narrowed to 0600, then renamed into place. A
/// socket already at `path` is replaced only when nothing answers on it (a daemon that died);
/// anything else there is an error. Must be called within a tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(listen_error(ListenError::InUse(path.to_path_buf()))),
                // Nothing listens: the socket of a daemon that is gone, replaced below.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(source) => {
                    return Err(listen_error(ListenError::Create {
                        path: path.to_path_buf(),
                        source,
                    }));
                }
            }
        }
        Ok(_) => return Err(listen_error(ListenError::NotASocket(path.to_path_buf()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(listen_error(ListenError::Create {
                path: path.to_path_buf(),
                source,
            }));
        }
    }
    bind_private(path).map_err(|source| {
        listen_error(ListenError::Create {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn bind_private(path: &Path) -> io::Result<UnixListener> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent.join(format!(
        ".sock-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // The umask can only narrow 0700.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let staged = dir.join("s");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&dir);
    result
}
