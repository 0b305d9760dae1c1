//! The daemon's configuration, from (lowest to highest precedence) its defaults, the `serve:`
//! section of the repository's `paddock.yaml`, `PADDOCK_*` environment variables, and the
//! flags of `paddock serve`. Merged with figment; every value checked before the daemon starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

use crate::spec::types::ServeSettings;

pub use crate::spec::types::ServeMode as Mode;

/// One layer of settings: every field optional (`None` leaves the layer below in force).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

impl From<&ServeSettings> for Layer {
    fn from(s: &ServeSettings) -> Self {
        Self {
            repo: s.repo.clone(),
            branch: s.branch.clone(),
            poll_interval: s.poll_interval.clone(),
            mode: s.mode.clone(),
            socket: s.socket.clone(),
            metrics_address: s.metrics_address.clone(),
        }
    }
}

/// The merged, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A git remote to follow; `None`: the repository folder, watched.
    pub repo: Option<String>,
    pub branch: String,
    pub poll_interval: Duration,
    pub mode: Mode,
    pub socket: PathBuf,
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the daemon's settings could not be read")]
    Merge(#[source] Box<figment::Error>),
    #[error("{field} {value:?} (from {origin}): {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        origin: String,
        reason: String,
    },
}

/// Where each layer comes from, named in errors.
const ORIGINS: &str = "flags, PADDOCK_* variables or paddock.yaml `serve:`";

/// Merge `file` (paddock.yaml `serve:`), the environment (`PADDOCK_REPO`, `PADDOCK_BRANCH`,
/// `PADDOCK_POLL_INTERVAL`, `PADDOCK_MODE`, `PADDOCK_SOCKET`, `PADDOCK_METRICS_ADDRESS`) and
/// `flags`, in that order of precedence (later wins).
pub fn load(file: &ServeSettings, flags: &Layer, state_dir: &Path) -> Result<Config, Error> {
    // PADDOCK_POLL_INTERVAL → pollInterval, as the file and the flags spell it.
    let env = Env::prefixed("PADDOCK_")
        .only(&[
            "repo",
            "branch",
            "poll_interval",
            "mode",
            "socket",
            "metrics_address",
        ])
        .map(|key| camel(key.as_str()).into());
    let merged: Layer = Figment::new()
        .merge(Serialized::defaults(Layer::from(file)))
        .merge(env)
        .merge(Serialized::defaults(flags.clone()))
        .extract()
        .map_err(|e| Error::Merge(Box::new(e)))?;
    check(merged, state_dir)
}

/// `poll_interval` → `pollInterval`.
fn camel(key: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in key.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        value: value.to_string(),
        origin: ORIGINS.to_string(),
        reason: reason.into(),
    }
}

fn check(l: Layer, state_dir: &Path) -> Result<Config, Error> {
    use crate::spec::validate::serve;
    let poll = l.poll_interval.as_deref().unwrap_or("60s");
    let poll_interval =
        serve::poll_interval(poll).map_err(|help| invalid("pollInterval", poll, help))?;
    let mode = l.mode.as_deref().unwrap_or("apply");
    let mode = serve::mode(mode).map_err(|help| invalid("mode", mode, help))?;
    let metrics_address = match l.metrics_address.as_deref() {
        None | Some("") => None,
        Some(a) => {
            Some(serve::metrics_address(a).map_err(|help| invalid("metricsAddress", a, help))?)
        }
    };
    let branch = l.branch.unwrap_or_else(|| "main".into());
    serve::not_an_option(&branch).map_err(|help| invalid("branch", &branch, help))?;
    if let Some(repo) = &l.repo {
        serve::not_an_option(repo).map_err(|help| invalid("repo", repo, help))?;
    }
    Ok(Config {
        repo: l.repo,
        branch,
        poll_interval,
        mode,
        socket: l.socket.unwrap_or_else(|| state_dir.join("paddock.sock")),
        metrics_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ServeSettings {
        ServeSettings {
            branch: Some("from-file".into()),
            poll_interval: Some("5m".into()),
            mode: Some("report".into()),
            ..ServeSettings::default()
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail returns its own error type
    fn flags_beat_the_environment_which_beats_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PADDOCK_BRANCH", "from-env");
            jail.set_env("PADDOCK_POLL_INTERVAL", "10s");
            let flags = Layer {
                poll_interval: Some("2s".into()),
                ..Layer::default()
            };
            let c = load(&file(), &flags, Path::new("/state")).expect("config");
            assert_eq!(c.branch, "from-env", "env over file");
            assert_eq!(c.poll_interval, Duration::from_secs(2), "flag over env");
            assert_eq!(c.mode, Mode::Report, "file over default");
            assert_eq!(c.socket, Path::new("/state/paddock.sock"), "default");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_named_with_what_to_do() {
        let bad = |l: Layer| load(&ServeSettings::default(), &l, Path::new("/s")).expect_err("bad");
        let e = bad(Layer {
            mode: Some("yolo".into()),
            ..Layer::default()
        });
        assert!(e.to_string().contains("mode \"yolo\""), "{e}");
        let e = bad(Layer {
            metrics_address: Some("0.0.0.0:9464".into()),
            ..Layer::default()
        });
        assert!(e.to_string().contains("loopback only"), "{e}");
        let e = bad(Layer {
            poll_interval: Some("soon".into()),
            ..Layer::default()
        });
        assert!(e.to_string().contains("pollInterval \"soon\""), "{e}");
    }
}
