//! What exists: the observed state the planner compares a spec with. Drivers fill it in; the
//! planner only reads it. "Could not tell" is its own state and never reads as "absent".

use serde::Serialize;

/// What paddock knows about a cluster before planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum ClusterState {
    /// No k3d cluster of that name exists.
    Absent,
}

impl ClusterState {
    pub fn describe(&self) -> &'static str {
        match self {
            ClusterState::Absent => "does not exist yet",
        }
    }
}
