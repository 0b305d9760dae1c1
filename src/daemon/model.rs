//! What the daemon's API speaks: the JSON shapes of clusters, operations and events, shared
//! by the server, the CLI's client and the OpenAPI description (`docs/api/openapi.yaml`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A cluster the daemon keeps in line with its repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub name: String,
    /// Where its spec comes from, and the commit in force (git sources).
    pub source: SourceView,
    /// `in-sync`, `drifted` (changes `up` would make, not applied in report mode),
    /// `reconciling`, `failed`, or `unknown` (not observed yet).
    pub state: String,
    /// What `up` would change, one line per step (empty when in sync).
    #[serde(default)]
    pub drift: Vec<String>,
    /// The newest operation the daemon ran on it.
    #[serde(default)]
    pub last_operation: Option<String>,
    /// The next schedule to fire.
    #[serde(default)]
    pub next_schedule: Option<NextSchedule>,
    /// Scheduled runs that did not run (the newest reports), oldest first.
    #[serde(default)]
    pub missed: Vec<MissedRuns>,
}

/// Instants of a schedule that passed without a run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissedRuns {
    pub schedule: String,
    /// `daemon-down` or `outside-window`.
    pub reason: String,
    /// RFC 3339.
    pub instants: Vec<String>,
}

/// The spec source the daemon follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    /// `folder` or `git`.
    pub kind: String,
    /// The folder, or the remote URL and branch (`URL#branch`).
    pub location: String,
    /// The commit in force (git sources).
    #[serde(default)]
    pub commit: Option<String>,
    /// Why the newest revision of the source is not in force (its located errors), if so.
    #[serde(default)]
    pub rejected: Option<Rejected>,
}

/// A source revision that was not taken: the last good one stays in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    #[serde(default)]
    pub commit: Option<String>,
    /// Each problem as `file:line: field: message`.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextSchedule {
    pub name: String,
    pub action: String,
    /// RFC 3339.
    pub at: String,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    Up,
    Upgrade,
    Restart,
}

/// A request to run an operation (`POST /v1/operations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationRequest {
    pub cluster: String,
    pub kind: OperationKind,
    /// `upgrade`: the target version; absent continues an unfinished upgrade.
    #[serde(default)]
    pub to: Option<String>,
    /// `upgrade`: `canary` or `in-place`; absent: the spec's.
    #[serde(default)]
    pub strategy: Option<String>,
    /// `upgrade`: stop after this step.
    #[serde(default)]
    pub pause_after: Option<String>,
    /// `upgrade`: seconds old proxies get before their revision is removed.
    #[serde(default)]
    pub grace_secs: Option<u64>,
    /// `restart`: only these namespaces (all when empty).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `restart`: only workloads with a stale proxy.
    #[serde(default)]
    pub stale_only: bool,
    /// `up`: manage a cluster paddock did not create.
    #[serde(default)]
    pub adopt: bool,
}

impl OperationRequest {
    /// An operation of `kind` on `cluster`, everything else as its defaults.
    pub fn new(cluster: &str, kind: OperationKind) -> Self {
        Self {
            cluster: cluster.to_string(),
            kind,
            to: None,
            strategy: None,
            pause_after: None,
            grace_secs: None,
            namespaces: Vec::new(),
            stale_only: false,
            adopt: false,
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Cancelled before or while it ran (a journaled upgrade stays unfinished, to continue).
    Cancelled,
}

/// An operation the daemon runs or ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    /// The daemon's id (`op-<n>`); the journal's own id is in `result` where there is one.
    pub id: String,
    pub cluster: String,
    pub kind: OperationKind,
    pub state: OperationState,
    /// Who asked: `api`, `source` (a change of the repository) or `schedule:<name>`.
    pub trigger: String,
    /// The source revision it ran from (a commit, or the folder).
    #[serde(default)]
    pub source: Option<String>,
    pub submitted_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// How it ended, as the CLI reports it (empty until it ends): the result lines with their
    /// JSON, and the error it ended with, what to do and the exit kind. `up` has two when it
    /// upgraded Istio first.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
}

pub use crate::ops::outcome::{Ending, Exit, Outcome};

/// One event of an operation's stream (`GET /v1/operations/{id}/events`, `GET /v1/events`):
/// the operation's id and the event in the NDJSON schema the CLI prints with `--output json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEvent {
    pub operation: String,
    pub event: Value,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub ok: bool,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub state_dir: String,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    pub error: String,
}
