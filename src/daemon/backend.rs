//! What the API serves from: the daemon's state behind one trait, so the HTTP layer can be
//! tested (and fuzzed) against a small in-memory backend.

use tokio::sync::broadcast;

use super::model::{ClusterView, Health, OperationRequest, OperationView, StreamEvent};

/// Why an operation was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// 404.
    #[error("no cluster {0} in the repository the daemon follows")]
    UnknownCluster(String),
    /// 422: the request is well-formed JSON but asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// 503.
    #[error("the daemon is shutting down; submit again once it runs")]
    ShuttingDown,
}

/// Why an operation could not be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// 404.
    #[error("no operation {0}")]
    Unknown(String),
    /// 409.
    #[error("operation {0} has already finished")]
    Finished(String),
}

pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> Health;
    fn clusters(&self) -> Vec<ClusterView>;
    fn cluster(&self, name: &str) -> Option<ClusterView> {
        self.clusters().into_iter().find(|c| c.name == name)
    }
    /// Queue an operation asked for through the API.
    fn submit(&self, req: OperationRequest) -> Result<OperationView, SubmitError>;
    /// Newest first.
    fn operations(&self) -> Vec<OperationView>;
    fn operation(&self, id: &str) -> Option<OperationView>;
    /// Cancel: a queued operation never starts; a running one starts no further step.
    fn cancel(&self, id: &str) -> Result<OperationView, CancelError>;
    /// The events of operation `id` so far and a receiver for those to come (events of every
    /// operation arrive on it: filter by `operation`); `None` for an unknown operation. The
    /// last event of an operation is `{"event": "end", ...}` carrying its outcome.
    fn subscribe(&self, id: &str) -> Option<(Vec<StreamEvent>, broadcast::Receiver<StreamEvent>)>;
    /// A receiver for the events of every operation from now on.
    fn subscribe_all(&self) -> broadcast::Receiver<StreamEvent>;
    /// The Prometheus text exposition of the daemon's metrics.
    fn metrics(&self) -> String;
}
