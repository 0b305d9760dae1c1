//! Why `up` and `down` did not succeed. Each message names what failed; the cause is in
//! `source()`, and [`Error::what_to_do`] says what the user can do next.

use std::path::PathBuf;

use crate::drivers::{exec, helm, k3d, kube, toolchain};
use crate::engine::lock;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cluster {cluster} exists but paddock did not create it (its nodes lack the `{label}=true` label); paddock leaves it alone",
        label = crate::drivers::k3d::MANAGED_LABEL
    )]
    NotOwned {
        cluster: String,
        command: &'static str,
    },
    #[error(transparent)]
    Missing(#[from] toolchain::Missing),
    #[error(transparent)]
    Busy(#[from] lock::Error),
    #[error(transparent)]
    Leftover(#[from] exec::LeftoverError),
    #[error("failed to run helm")]
    Helm(#[source] helm::cli::Error),
    #[error("could not tell whether cluster {cluster} exists")]
    Find {
        cluster: String,
        #[source]
        source: k3d::cli::Error,
    },
    #[error("could not list the registry caches")]
    Registries(#[source] k3d::cli::Error),
    #[error("cluster {cluster} does not exist; `paddock up {cluster}` creates it")]
    Absent { cluster: String },
    #[error("cluster {cluster} is stopped; `paddock up {cluster}` starts it")]
    Stopped { cluster: String },
    #[error("failed to {action} cluster {cluster}")]
    K3d {
        action: &'static str,
        cluster: String,
        #[source]
        source: k3d::cli::Error,
    },
    #[error("failed to get the kubeconfig of cluster {cluster}")]
    Kubeconfig {
        cluster: String,
        #[source]
        source: k3d::cli::Error,
    },
    #[error("failed to save the kubeconfig of cluster {cluster} to {}", path.display())]
    SaveKubeconfig {
        cluster: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("could not list the Helm releases of cluster {cluster}")]
    Releases {
        cluster: String,
        #[source]
        source: helm::cli::Error,
    },
    #[error("could not read the revision tags")]
    Tags(#[source] crate::ops::tags::Error),
    #[error("step {step} failed")]
    Step {
        cluster: String,
        step: String,
        #[source]
        source: super::steps::StepError,
    },
    #[error("interrupted; the steps that finished stay done")]
    Interrupted { cluster: String },
    #[error("not confirmed; cluster {cluster} is untouched (pass --yes to skip the question)")]
    NotConfirmed { cluster: String },
    /// The spec's Istio version differs from the installed one: an upgrade comes first.
    #[error("Istio must first be upgraded to {0}")]
    UpgradeDue(String),
    /// The upgrade `up` runs first (an unfinished one, or the spec's new `istio.version`)
    /// did not succeed.
    #[error(transparent)]
    Upgrade(Box<crate::ops::upgrade::Error>),
    #[error(transparent)]
    Journal(#[from] crate::engine::journal::Error),
    /// An upgrade paused for a person's check: `up` leaves the cluster alone until it goes on.
    #[error(
        "the upgrade {op} of cluster {cluster} is paused for a check; `up` changes nothing until it is continued"
    )]
    UpgradePaused { cluster: String, op: String },
    #[error("failed to read the manifest {}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
}

/// Why a manifest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
}

impl Error {
    /// What the user can do about it, when there is something to say beyond the message.
    pub fn what_to_do(&self) -> Option<String> {
        match self {
            Error::NotOwned {
                cluster,
                command: "down",
            } => Some(format!(
                "delete it with `k3d cluster delete {cluster}` yourself if you mean to"
            )),
            Error::NotOwned { command: "up", .. } => {
                Some("pass --adopt to manage it anyway, or pick another cluster name".into())
            }
            Error::Step { cluster, .. } => Some(format!(
                "nothing is lost: fix the cause and run `paddock up {cluster}` again to continue"
            )),
            Error::UpgradePaused { cluster, .. } => Some(format!(
                "check the cluster, then run `paddock upgrade {cluster}` to continue the upgrade"
            )),
            Error::Interrupted { cluster } => {
                Some(format!("run `paddock up {cluster}` again to continue"))
            }
            _ => None,
        }
    }
}
