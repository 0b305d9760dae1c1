//! Why a restart failed.

use crate::drivers::kube as driver;

/// What went wrong in a restart. The workload-level failure carries the step that failed as
/// its source; [`crate::engine::chain`] shows the whole story on one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {what}")]
    Read {
        what: String,
        #[source]
        source: driver::Error,
    },
    #[error("failed to evict pod {namespace}/{pod}")]
    Evict {
        namespace: String,
        pod: String,
        #[source]
        source: driver::Error,
    },
    /// A PodDisruptionBudget answered 429 until the deadline.
    #[error(
        "pod {namespace}/{pod} could not be evicted: its PodDisruptionBudget kept refusing (429)"
    )]
    EvictionRefused { namespace: String, pod: String },
    #[error("Deployment {namespace}/{name} is paused; resume it to restart it")]
    Paused { namespace: String, name: String },
    #[error("failed to set restartedAt on {kind} {namespace}/{name}")]
    Annotate {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: driver::Error,
    },
    #[error("{kind} {namespace}/{name} did not roll out")]
    Rollout {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: driver::Error,
    },
    #[error("failed to recreate pod {namespace}/{pod}")]
    Recreate {
        namespace: String,
        pod: String,
        #[source]
        source: driver::Error,
    },
    #[error(
        "{kind} {namespace}/{name}: pod {pod} was not replaced by a ready, current pod in time"
    )]
    NotReplaced {
        kind: String,
        namespace: String,
        name: String,
        pod: String,
    },
    /// An earlier restart failed, so this one was never begun.
    #[error("not started: an earlier restart failed")]
    NotStarted,
    /// The cluster could not be locked, found or connected to; its own error says what to do.
    #[error(transparent)]
    Connect(Box<crate::ops::up::Error>),
    #[error(transparent)]
    Journal(#[from] crate::engine::journal::Error),
    /// A workload's restart failed; `reasons` is what its pods said.
    #[error("restart of {workload} failed (pods: {reasons})")]
    Workload {
        workload: String,
        reasons: String,
        #[source]
        source: Box<Error>,
    },
}
