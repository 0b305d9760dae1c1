//! The daemon's state as the API serves it.

use tokio::sync::broadcast;

use super::Daemon;
use crate::daemon::backend::{Backend, CancelError, SubmitError};
use crate::daemon::model::{
    ClusterView, Health, OperationRequest, OperationState, OperationView, SourceView, StreamEvent,
};

impl Backend for Daemon {
    fn health(&self) -> Health {
        Health {
            ok: true,
            pid: std::process::id(),
            version: self.settings.version.clone(),
            started_at: self.started_at.clone(),
            state_dir: self.settings.state_dir.display().to_string(),
        }
    }

    fn clusters(&self) -> Vec<ClusterView> {
        let st = self.state();
        let (kind, location) = self.settings.source.clone();
        let source = SourceView {
            kind: kind.to_string(),
            location,
            commit: st.revision.as_ref().and_then(|(r, _)| r.commit.clone()),
            rejected: st.rejected.clone(),
        };
        st.clusters
            .iter()
            .map(|(name, c)| ClusterView {
                name: name.clone(),
                source: source.clone(),
                state: c.state.clone(),
                drift: c.drift.clone(),
                last_operation: c.last_operation.clone(),
                next_schedule: c.next_schedule.clone(),
                missed: c.missed.iter().cloned().collect(),
            })
            .collect()
    }

    fn submit(&self, req: OperationRequest) -> Result<OperationView, SubmitError> {
        self.submit_as(req, "api")
    }

    fn operations(&self) -> Vec<OperationView> {
        self.state()
            .ops
            .iter()
            .rev()
            .map(|o| o.view.clone())
            .collect()
    }

    fn operation(&self, id: &str) -> Option<OperationView> {
        self.with_op(id, |o| o.view.clone())
    }

    fn cancel(&self, id: &str) -> Result<OperationView, CancelError> {
        let found = self.with_op(id, |o| {
            if matches!(
                o.view.state,
                OperationState::Queued | OperationState::Running
            ) {
                o.cancel.cancel();
                Ok(o.view.clone())
            } else {
                Err(CancelError::Finished(id.to_string()))
            }
        });
        found.unwrap_or_else(|| Err(CancelError::Unknown(id.to_string())))
    }

    fn subscribe(&self, id: &str) -> Option<(Vec<StreamEvent>, broadcast::Receiver<StreamEvent>)> {
        // Subscribe under the state lock, so no event falls between the replay and the
        // receiver.
        let st = self.state();
        let op = st.ops.iter().find(|o| o.view.id == id)?;
        Some((op.events.clone(), self.events.subscribe()))
    }

    fn subscribe_all(&self) -> broadcast::Receiver<StreamEvent> {
        self.events.subscribe()
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}
