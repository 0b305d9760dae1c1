//! The journal: every operation and each of its steps, recorded in the state directory before
//! and after it runs (started, done, failed, undone), with timestamps and outputs. An embedded
//! append-only store: one JSON line per event in `journal/<cluster>.jsonl`, synced to disk
//! before the step it describes proceeds. A killed operation is found here and continued.
//!
//! Guarantees:
//! - A record is one `write` of one complete line (JSON and its newline), then `fsync`; the
//!   step it describes proceeds only after both returned.
//! - A record cut short by a crash (no newline at the end of the file) is found when the
//!   journal is opened and removed, and [`Journal::open`] says so: the step it described never
//!   proceeded (or, for a `step-done`, is re-checked when the operation continues).
//! - A journal that cannot be read, or has a damaged line anywhere but a torn tail, is an error
//!   naming the file and line. It is never taken for an empty journal.

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
    /// What opening the journal repaired, to tell the user.
    repaired: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to write the journal {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the journal {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the journal {} is damaged at line {line}: {reason}; nothing was read from it. Move the file aside to start a new journal (its history is then lost), or repair that line",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Split a journal's bytes into its complete records and a torn tail (the bytes after the last
/// newline, which a crash cut short). Each complete line must be a record.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Entry>, usize), Error> {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut entries = Vec::new();
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = serde_json::from_slice(line).map_err(|e| Error::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("not a journal record ({e})"),
        })?;
        entries.push(entry);
    }
    Ok((entries, bytes.len() - complete))
}

impl Journal {
    /// Open a cluster's journal, removing a record a crash tore (see the module's guarantees).
    pub fn open(state_dir: &Path, cluster: &str) -> Result<Self, Error> {
        let path = state_dir.join("journal").join(format!("{cluster}.jsonl"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let (_, torn) = parse(&path, &bytes)?;
        let mut repaired = None;
        if torn > 0 {
            let keep = (bytes.len() - torn) as u64;
            let write_err = |source| Error::Write {
                path: path.clone(),
                source,
            };
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(write_err)?;
            f.set_len(keep).map_err(write_err)?;
            f.sync_all().map_err(write_err)?;
            repaired = Some(format!(
                "the journal {} ended in a record cut short by a crash ({torn} bytes); it was removed, and what it described is checked again",
                path.display()
            ));
        }
        Ok(Self { path, repaired })
    }

    /// What opening repaired, if anything (for the user to see).
    pub fn repaired(&self) -> Option<&str> {
        self.repaired.as_deref()
    }

    /// Append an event and sync it to disk: one write of the whole line.
    pub fn record(
        &self,
        op: &str,
        event: &str,
        step: Option<&str>,
        detail: Value,
    ) -> Result<(), Error> {
        let err = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut line = serde_json::to_vec(&Entry {
            op: op.to_string(),
            event: event.to_string(),
            step: step.map(str::to_string),
            at: now(),
            detail,
        })
        .map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        // A tail torn since `open` can only be another process's record being written now.
        parse(&self.path, &bytes).map(|(entries, _)| entries)
    }

    /// The last operation that neither finished, failed nor was rolled back: (id, params).
    pub fn unfinished(&self) -> Result<Option<(String, Value)>, Error> {
        let entries = self.entries()?;
        let Some(last_start) = entries.iter().rev().find(|e| e.event == "op-started") else {
            return Ok(None);
        };
        let ended = entries.iter().any(|e| {
            e.op == last_start.op
                && matches!(e.event.as_str(), "op-done" | "op-failed" | "op-rolled-back")
        });
        Ok((!ended).then(|| (last_start.op.clone(), last_start.detail.clone())))
    }

    /// Steps of an operation that finished (and were not undone since).
    pub fn done_steps(&self, op: &str) -> Result<Vec<String>, Error> {
        let mut done: Vec<String> = Vec::new();
        for e in self.entries()?.into_iter().filter(|e| e.op == op) {
            let Some(step) = e.step else { continue };
            match e.event.as_str() {
                "step-done" if !done.contains(&step) => done.push(step),
                "step-undone" => done.retain(|s| *s != step),
                _ => {}
            }
        }
        Ok(done)
    }

    /// Operations, oldest first, each with its entries.
    pub fn operations(&self) -> Result<Vec<(String, Vec<Entry>)>, Error> {
        let mut ops: Vec<(String, Vec<Entry>)> = Vec::new();
        for e in self.entries()? {
            match ops.iter_mut().find(|(id, _)| *id == e.op) {
                Some((_, v)) => v.push(e),
                None => ops.push((e.op.clone(), vec![e])),
            }
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(dir: &Path) -> PathBuf {
        dir.join("journal/dev.jsonl")
    }

    #[test]
    fn unfinished_operations_and_their_done_steps_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev").expect("open");
        j.record("op1", "op-started", None, json!({"to": "1.30.3"}))
            .expect("write");
        j.record("op1", "step-started", Some("base"), Value::Null)
            .expect("write");
        j.record("op1", "step-done", Some("base"), Value::Null)
            .expect("write");
        j.record("op1", "step-started", Some("istiod"), Value::Null)
            .expect("write");
        assert_eq!(
            j.unfinished().expect("read"),
            Some(("op1".into(), json!({"to": "1.30.3"})))
        );
        assert_eq!(j.done_steps("op1").expect("read"), ["base"]);
        j.record("op1", "step-undone", Some("base"), Value::Null)
            .expect("write");
        assert!(j.done_steps("op1").expect("read").is_empty());
        j.record("op1", "op-rolled-back", None, Value::Null)
            .expect("write");
        assert_eq!(j.unfinished().expect("read"), None);
    }

    /// The journal cut at every byte offset of its last record reads as the journal without
    /// that record, says it was repaired, and takes new records after it cleanly.
    #[test]
    fn a_record_torn_at_any_byte_is_removed_on_open_and_said_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev").expect("open");
        j.record("op1", "op-started", None, json!({"to": "1.30.3"}))
            .expect("write");
        j.record("op1", "step-done", Some("base"), Value::Null)
            .expect("write");
        let before = std::fs::read(path(dir.path())).expect("read");
        let expected = j.entries().expect("entries");
        j.record("op1", "step-done", Some("istiod"), json!({"image": "x"}))
            .expect("write");
        let full = std::fs::read(path(dir.path())).expect("read");
        assert_eq!(
            Journal::open(dir.path(), "dev")
                .expect("open")
                .done_steps("op1")
                .expect("read"),
            ["base", "istiod"]
        );
        for cut in before.len()..full.len() {
            std::fs::write(path(dir.path()), &full[..cut]).expect("cut");
            let j = Journal::open(dir.path(), "dev").expect("a torn tail opens");
            assert_eq!(j.entries().expect("entries"), expected, "cut at {cut}");
            assert_eq!(j.done_steps("op1").expect("read"), ["base"], "cut at {cut}");
            assert_eq!(
                j.repaired().is_some(),
                cut > before.len(),
                "cut at {cut}: said so exactly when bytes were removed"
            );
            assert_eq!(std::fs::read(path(dir.path())).expect("read"), before);
            j.record("op1", "step-done", Some("istiod"), Value::Null)
                .expect("write after repair");
            assert_eq!(
                j.done_steps("op1").expect("read"),
                ["base", "istiod"],
                "cut at {cut}: the next record is whole"
            );
        }
    }

    #[test]
    fn a_damaged_or_unreadable_journal_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev").expect("open");
        j.record("op1", "op-started", None, Value::Null)
            .expect("write");
        j.record("op1", "op-done", None, Value::Null)
            .expect("write");
        let mut bytes = std::fs::read(path(dir.path())).expect("read");
        bytes[3] = b'#';
        std::fs::write(path(dir.path()), &bytes).expect("damage");
        let err = Journal::open(dir.path(), "dev").expect_err("damaged");
        let msg = err.to_string();
        assert!(msg.contains("dev.jsonl") && msg.contains("line 1"), "{msg}");
        assert!(j.operations().is_err(), "never read as empty");
        std::fs::remove_file(path(dir.path())).expect("rm");
        std::fs::create_dir(path(dir.path())).expect("a directory where the file was");
        let err = Journal::open(dir.path(), "dev").expect_err("unreadable");
        assert!(matches!(err, Error::Read { .. }), "{err}");
        assert!(err.to_string().contains("dev.jsonl"), "{err}");
    }
}
