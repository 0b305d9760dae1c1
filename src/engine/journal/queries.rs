//! What the journal answers about operations beyond their entries: the unfinished upgrade,
//! an operation's status and source, the step an interruption cut short.

use rusqlite::OptionalExtension;
use serde_json::Value;

use super::{Error, Journal};

impl Journal {
    /// The newest upgrade (an operation `upgrade-*`) if it neither finished, failed nor was
    /// rolled back: (id, params). Operations of other kinds recorded after it do not hide it.
    pub fn unfinished_upgrade(&self) -> Result<Option<(String, Value)>, Error> {
        let last: Option<(String, String, bool)> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT o.op, o.parameters, o.finished_at IS NULL \
                 FROM events e JOIN operations o ON o.id = e.operation \
                 WHERE o.cluster = ?1 AND e.event = 'op-started' AND o.op LIKE 'upgrade-%' \
                 ORDER BY e.id DESC LIMIT 1",
            )?
            .query_row([&self.cluster], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })?;
        match last {
            Some((op, params, true)) => {
                let params = serde_json::from_str(&params).map_err(|e| Error::Read {
                    path: self.path.clone(),
                    source: e.into(),
                })?;
                Ok(Some((op, params)))
            }
            _ => Ok(None),
        }
    }

    /// The status of operation `op` (`running`, `paused`, `done`…), `None` when unknown.
    pub fn status(&self, op: &str) -> Result<Option<String>, Error> {
        self.read(|conn| {
            conn.prepare_cached("SELECT status FROM operations WHERE cluster = ?1 AND op = ?2")?
                .query_row((&self.cluster, op), |r| r.get(0))
                .optional()
        })
    }

    /// Where each operation's spec came from (`operations.source`): the repository's path or
    /// a commit.
    pub fn sources(&self) -> Result<std::collections::BTreeMap<String, String>, Error> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT op, source FROM operations WHERE cluster = ?1 AND source IS NOT NULL",
            )?
            .query_map([&self.cluster], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// The step of `op` that was started and neither finished, failed nor was undone: the one
    /// running when the operation was interrupted.
    pub fn interrupted_step(&self, op: &str) -> Result<Option<String>, Error> {
        let last: Option<(String, String)> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT e.event, e.step FROM events e JOIN operations o ON o.id = e.operation \
                 WHERE o.cluster = ?1 AND o.op = ?2 AND e.step IS NOT NULL \
                 ORDER BY e.id DESC LIMIT 1",
            )?
            .query_row((&self.cluster, op), |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        })?;
        Ok(last.and_then(|(event, step)| (event == "step-started").then_some(step)))
    }
}
