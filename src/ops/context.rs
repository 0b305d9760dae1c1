//! What every operation runs with: the tools it drives (and the state directory they keep),
//! the sink its events go to, the clock it reads wall time from, a cancellation token, and
//! where the spec it works from came from. The CLI builds one per command; the daemon one
//! per operation it runs.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::drivers::toolchain::Toolchain;
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::events::Events;
use crate::engine::journal::{self, Journal};

#[derive(Debug, Clone)]
pub struct Context {
    /// The k3d and helm binaries, and the state directory (`tools.state_dir`).
    pub tools: Toolchain,
    pub events: Events,
    pub clock: Arc<dyn Clock>,
    /// Cancelled: start no new step; the steps running finish, and a journaled operation
    /// stays unfinished, to be continued by its next run.
    pub cancel: CancellationToken,
    /// The spec repository's path, or a commit: recorded with each operation started.
    pub source: Option<String>,
}

impl Context {
    /// A context on the system clock that nothing cancels yet.
    pub fn new(tools: Toolchain, events: Events) -> Self {
        Self {
            tools,
            events,
            clock: Arc::new(SystemClock),
            cancel: CancellationToken::new(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Open a cluster's journal to record in, on this context's clock and source. What
    /// opening repaired or imported is said.
    pub fn journal(&self, cluster: &str) -> Result<Journal, journal::Error> {
        let mut journal =
            Journal::open(&self.tools.state_dir, cluster)?.with_clock(self.clock.clone());
        if let Some(source) = &self.source {
            journal = journal.with_source(source.clone());
        }
        for note in [journal.migrated(), journal.repaired()]
            .into_iter()
            .flatten()
        {
            self.events.note(note);
        }
        Ok(journal)
    }

    /// A new operation's id: its kind and the wall time in milliseconds (`upgrade-1764…`).
    pub fn operation_id(&self, kind: &str) -> String {
        format!("{kind}-{}", self.clock.now().as_millisecond())
    }
}
