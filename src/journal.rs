//! The journal: every operation and each of its steps, recorded in the state directory before
//! and after it runs (started, done, failed, undone), with timestamps and outputs. An embedded
//! append-only store: one JSON line per event in `journal/<cluster>.jsonl`, synced to disk
//! before the step it describes proceeds. A killed operation is found here and continued.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Operation id (`upgrade-<unix ms>`).
    pub op: String,
    /// `op-started`, `step-started`, `step-done`, `step-failed`, `step-undone`, `op-done`,
    /// `op-failed`, `op-rolled-back`, `op-paused`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub at: String,
    /// What the step printed or decided; for `op-started`, the operation's parameters.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// The journal of one cluster.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to write the journal {}: {source}", path.display())]
pub struct Error {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Journal {
    pub fn open(state_dir: &Path, cluster: &str) -> Self {
        Self {
            path: state_dir.join("journal").join(format!("{cluster}.jsonl")),
        }
    }

    /// Append an event and sync it to disk.
    pub fn record(
        &self,
        op: &str,
        event: &str,
        step: Option<&str>,
        detail: Value,
    ) -> Result<(), Error> {
        let err = |source| Error {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let line = serde_json::to_string(&Entry {
            op: op.to_string(),
            event: event.to_string(),
            step: step.map(str::to_string),
            at: now(),
            detail,
        })
        .unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        writeln!(f, "{line}").map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Every entry, oldest first (a torn last line from a crash is skipped).
    pub fn entries(&self) -> Vec<Entry> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last operation that neither finished, failed nor was rolled back: (id, params).
    pub fn unfinished(&self) -> Option<(String, Value)> {
        let entries = self.entries();
        let last_start = entries.iter().rev().find(|e| e.event == "op-started")?;
        let ended = entries.iter().any(|e| {
            e.op == last_start.op
                && matches!(e.event.as_str(), "op-done" | "op-failed" | "op-rolled-back")
        });
        (!ended).then(|| (last_start.op.clone(), last_start.detail.clone()))
    }

    /// Steps of an operation that finished (and were not undone since).
    pub fn done_steps(&self, op: &str) -> Vec<String> {
        let mut done: Vec<String> = Vec::new();
        for e in self.entries().into_iter().filter(|e| e.op == op) {
            let Some(step) = e.step else { continue };
            match e.event.as_str() {
                "step-done" if !done.contains(&step) => done.push(step),
                "step-undone" => done.retain(|s| *s != step),
                _ => {}
            }
        }
        done
    }

    /// Operations, oldest first, each with its entries.
    pub fn operations(&self) -> Vec<(String, Vec<Entry>)> {
        let mut ops: Vec<(String, Vec<Entry>)> = Vec::new();
        for e in self.entries() {
            match ops.iter_mut().find(|(id, _)| *id == e.op) {
                Some((_, v)) => v.push(e),
                None => ops.push((e.op.clone(), vec![e])),
            }
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unfinished_operations_and_their_done_steps_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev");
        j.record("op1", "op-started", None, json!({"to": "1.30.3"}))
            .expect("write");
        j.record("op1", "step-started", Some("base"), Value::Null)
            .expect("write");
        j.record("op1", "step-done", Some("base"), Value::Null)
            .expect("write");
        j.record("op1", "step-started", Some("istiod"), Value::Null)
            .expect("write");
        assert_eq!(
            j.unfinished(),
            Some(("op1".into(), json!({"to": "1.30.3"})))
        );
        assert_eq!(j.done_steps("op1"), ["base"]);
        j.record("op1", "step-undone", Some("base"), Value::Null)
            .expect("write");
        assert!(j.done_steps("op1").is_empty());
        j.record("op1", "op-rolled-back", None, Value::Null)
            .expect("write");
        assert_eq!(j.unfinished(), None);
        // A torn line (a crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal/dev.jsonl"))
            .and_then(|mut f| f.write_all(b"{\"op\":\"op2\",\"ev"))
            .expect("torn");
        assert_eq!(j.operations().len(), 1);
    }
}
