//! The journal: every operation and each of its steps, recorded in the state directory before
//! and after it runs (started, done, failed, undone), with timestamps and outputs. A killed
//! operation is found here and continued.
//!
//! # Storage
//!
//! One SQLite database per state directory, `<state>/journal.db`, holding every cluster's
//! operations (a `cluster` column tells them apart). One file because it is the one place a
//! user looks (`sqlite3 <state>/journal.db`), queries across clusters need no attaching, and
//! SQLite's write lock is held only for the few milliseconds of one record, so operations on
//! different clusters (each cluster's are kept apart by its lock) wait on each other for no
//! longer than that (the busy timeout, 10 s, covers it).
//!
//! - WAL mode: readers (`paddock history`, opened read-only) see the last committed record and
//!   never wait for a writer, nor make it wait.
//! - `synchronous=FULL`: each commit syncs the WAL, so a record that was committed survives a
//!   crash of the machine too, not only of paddock (NORMAL would keep it across a paddock crash
//!   but could lose the last records on power loss, and a step must never run unrecorded).
//! - Each record is one `BEGIN IMMEDIATE … COMMIT` transaction (the event, and its operation's
//!   row created or updated); the step it describes proceeds only after the commit returned. A
//!   crash before the commit leaves the journal as it was before the record: what the
//!   transaction wrote to the WAL has no commit frame and is ignored when the database is next
//!   opened.
//! - A database that cannot be opened or read, or is damaged, is an error naming the file. It
//!   is never taken for an empty journal. A database that does not exist yet is an empty
//!   journal; it is created by the first record.
//!
//! # Schema (version 1, in `PRAGMA user_version`)
//!
//! ```sql
#![doc = include_str!("journal.sql")]
//! ```
//!
//! `status` follows the events: `running` from the first; `paused` on `op-paused` (and
//! `running` again when the next step starts); `done`, `failed` or `rolled-back` (with
//! `finished_at`) on `op-done`, `op-failed`, `op-rolled-back`, after which it no longer
//! changes. Times are UTC, RFC 3339 with milliseconds; `parameters` and `detail` are JSON text.
//!
//! # The journal before SQLite
//!
//! Earlier versions kept one fsynced JSON line per event in `journal/<cluster>.jsonl`. When
//! such a file exists, opening that cluster's journal imports it in one transaction (with a
//! row in `imports` naming its SHA-256, so a crash between the import and the rename never
//! imports it twice), then renames it `<cluster>.jsonl.migrated` (kept, never deleted). Its
//! rules are kept for the import:
//! - A last record cut short by a crash (no newline at the end of the file) is not imported,
//!   and [`Journal::repaired`] says so: the step it described never proceeded (or, for a
//!   `step-done`, is re-checked when the operation continues).
//! - A file that cannot be read, or has a damaged line anywhere but a torn tail, is an error
//!   naming the file and line; nothing is imported and the file stays where it is.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The database's file name in the state directory.
pub const FILE: &str = "journal.db";
/// The schema version this paddock writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// How long a record waits for another process's record (or import) to commit.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One event of an operation.
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
#[derive(Debug)]
pub struct Journal {
    /// The database.
    path: PathBuf,
    cluster: String,
    /// Where the specs of the operations this handle starts came from.
    source: Option<String>,
    read_only: bool,
    /// `None` until the database exists (created by the first record of a writable handle).
    conn: Mutex<Option<Connection>>,
    /// What opening repaired, to tell the user.
    repaired: Option<String>,
    /// What opening imported, to tell the user.
    migrated: Option<String>,
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to write the journal {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("failed to read the journal {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error(
        "the journal {} is damaged; nothing was read from it. Move it aside (with its -wal and -shm files) to start a new journal (its history is then lost), or inspect it with sqlite3",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error(
        "the journal {} was written by a newer paddock (schema version {found}; this one knows {SCHEMA_VERSION}); nothing was read from it",
        path.display()
    )]
    Newer { path: PathBuf, found: i64 },
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

/// Map a database error: damage is [`Error::Corrupt`], anything else a read or write error.
fn db_error(path: &Path, write: bool) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                Error::Corrupt {
                    path,
                    source: e.into(),
                }
            }
            _ if write => Error::Write {
                path,
                source: e.into(),
            },
            _ => Error::Read {
                path,
                source: e.into(),
            },
        }
    }
}

/// Split a legacy JSONL journal's bytes into its complete records and a torn tail (the bytes
/// after the last newline, which a crash cut short). Each complete line must be a record.
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

/// Open the database (creating it if writable) with the journal's settings, and check or
/// create its schema. `None`: a read-only handle on a database whose schema another process
/// has not committed yet, which holds nothing.
fn connect(path: &Path, read_only: bool) -> Result<Option<Connection>, Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let err = db_error(path, !read_only);
    let mut conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Write {
                path: path.to_path_buf(),
                source: format!("SQLite refused WAL mode (journal_mode is {mode})").into(),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
    }
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(&err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    match version {
        SCHEMA_VERSION => Ok(Some(conn)),
        v if v > SCHEMA_VERSION => Err(Error::Newer {
            path: path.to_path_buf(),
            found: v,
        }),
        v if v != 0 => Err(Error::Corrupt {
            path: path.to_path_buf(),
            source: format!("unknown schema version {v}").into(),
        }),
        _ => {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(&err)?;
            if tables > 0 {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    source: "it holds tables but no journal schema version".into(),
                });
            }
            if read_only {
                return Ok(None);
            }
            // Another process may be creating it too: whoever takes the write lock first does.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(&err)?;
            if version == 0 {
                tx.execute_batch(include_str!("journal.sql"))
                    .map_err(&err)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
            Ok(Some(conn))
        }
    }
}

/// What an event makes of its operation's status, and whether it finishes it.
fn status_after(event: &str) -> (&'static str, bool) {
    match event {
        "op-done" => ("done", true),
        "op-failed" => ("failed", true),
        "op-rolled-back" => ("rolled-back", true),
        "op-paused" => ("paused", false),
        _ => ("running", false),
    }
}

/// Insert one event (creating its operation's row on its first), inside `tx`.
fn insert(
    tx: &Transaction<'_>,
    cluster: &str,
    source: Option<&str>,
    e: &Entry,
) -> rusqlite::Result<()> {
    let detail = serde_json::to_string(&e.detail)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id FROM operations WHERE cluster = ?1 AND op = ?2")?
        .query_row((cluster, &e.op), |r| r.get(0))
        .optional()?;
    let id = match existing {
        Some(id) => id,
        None => {
            let kind = e.op.split_once('-').map_or(e.op.as_str(), |(k, _)| k);
            tx.prepare_cached(
                "INSERT INTO operations (cluster, op, kind, started_at, status, source) \
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            )?
            .execute((cluster, &e.op, kind, &e.at, source))?;
            tx.last_insert_rowid()
        }
    };
    tx.prepare_cached(
        "INSERT INTO events (operation, seq, event, step, at, detail) VALUES \
         (?1, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE operation = ?1), ?2, ?3, ?4, ?5)",
    )?
    .execute((id, &e.event, &e.step, &e.at, &detail))?;
    let (status, finishes) = status_after(&e.event);
    tx.prepare_cached(
        "UPDATE operations SET status = ?2, finished_at = CASE WHEN ?3 THEN ?4 END \
         WHERE id = ?1 AND finished_at IS NULL",
    )?
    .execute((id, status, finishes, &e.at))?;
    if e.event == "op-started" {
        tx.prepare_cached("UPDATE operations SET parameters = ?2 WHERE id = ?1")?
            .execute((id, &detail))?;
    }
    Ok(())
}

impl Journal {
    /// Open a cluster's journal for recording, importing its legacy JSONL journal if there is
    /// one (see the module's doc).
    pub fn open(state_dir: &Path, cluster: &str) -> Result<Self, Error> {
        let mut journal = Self::handle(state_dir, cluster, false)?;
        journal.import_legacy(state_dir)?;
        Ok(journal)
    }

    /// Open a cluster's journal to read it, without taking any lock: works while another
    /// process records. A legacy JSONL journal still to be imported is imported first.
    pub fn open_read_only(state_dir: &Path, cluster: &str) -> Result<Self, Error> {
        // Where it cannot be told, `open` says why.
        if !matches!(
            Self::legacy_path(state_dir, cluster).try_exists(),
            Ok(false)
        ) {
            let writer = Self::open(state_dir, cluster)?;
            let mut journal = Self::handle(state_dir, cluster, true)?;
            journal.repaired = writer.repaired;
            journal.migrated = writer.migrated;
            return Ok(journal);
        }
        Self::handle(state_dir, cluster, true)
    }

    /// The operations this handle starts came from `source` (the spec repository's path, or a
    /// commit): kept in their `operations.source`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    fn handle(state_dir: &Path, cluster: &str, read_only: bool) -> Result<Self, Error> {
        let path = state_dir.join(FILE);
        // Absent is an empty journal; "could not tell" is an error, never absent.
        let exists = path.try_exists().map_err(|e| Error::Read {
            path: path.clone(),
            source: e.into(),
        })?;
        let conn = if exists {
            connect(&path, read_only)?
        } else {
            None
        };
        Ok(Self {
            path,
            cluster: cluster.to_string(),
            source: None,
            read_only,
            conn: Mutex::new(conn),
            repaired: None,
            migrated: None,
        })
    }

    fn legacy_path(state_dir: &Path, cluster: &str) -> PathBuf {
        state_dir.join("journal").join(format!("{cluster}.jsonl"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening repaired, if anything (for the user to see).
    pub fn repaired(&self) -> Option<&str> {
        self.repaired.as_deref()
    }

    /// What opening imported from a legacy JSONL journal, if anything (for the user to see).
    pub fn migrated(&self) -> Option<&str> {
        self.migrated.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` in a write transaction (`BEGIN IMMEDIATE`) and commit it, creating the database
    /// on the first record.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let mut guard = self.lock();
        if guard.is_none() {
            if self.read_only {
                return Err(Error::Write {
                    path: self.path.clone(),
                    source: "this journal was opened read-only".into(),
                });
            }
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::Write {
                    path: self.path.clone(),
                    source: e.into(),
                })?;
            }
            *guard = connect(&self.path, false)?;
        }
        let err = db_error(&self.path, true);
        let conn = guard.as_mut().ok_or_else(|| Error::Write {
            path: self.path.clone(),
            source: "the database was created by another process but has no schema yet".into(),
        })?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let out = f(&tx).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(out)
    }

    /// Import `journal/<cluster>.jsonl` in one transaction, then rename it.
    fn import_legacy(&mut self, state_dir: &Path) -> Result<(), Error> {
        use sha2::{Digest, Sha256};
        let legacy = Self::legacy_path(state_dir, &self.cluster);
        let bytes = match std::fs::read(&legacy) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Read {
                    path: legacy,
                    source: e.into(),
                });
            }
        };
        let (entries, torn) = parse(&legacy, &bytes)?;
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (cluster, file) = (&self.cluster, legacy.display().to_string());
        let imported = self.write(|tx| {
            let done: bool = tx.query_row(
                "SELECT count(*) > 0 FROM imports WHERE cluster = ?1 AND sha256 = ?2",
                (cluster, &sha),
                |r| r.get(0),
            )?;
            if done {
                // Imported before a crash kept the file from being renamed, or by another
                // process opening the journal at the same time.
                return Ok(false);
            }
            for e in &entries {
                insert(tx, cluster, None, e)?;
            }
            tx.execute(
                "INSERT INTO imports (cluster, file, sha256, records, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (cluster, &file, &sha, entries.len() as i64, now()),
            )?;
            Ok(true)
        })?;
        let mut kept = legacy.with_extension("jsonl.migrated");
        if kept.exists() {
            kept = legacy.with_extension(format!("jsonl.migrated-{}", &sha[..12]));
        }
        match std::fs::rename(&legacy, &kept) {
            Ok(()) => {}
            // Another process that imported it too moved it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !imported => return Ok(()),
            Err(e) => {
                return Err(Error::Write {
                    path: legacy.clone(),
                    source: e.into(),
                });
            }
        }
        self.migrated = Some(format!(
            "imported the journal {} ({} records) into {}; the old file is kept as {}",
            legacy.display(),
            entries.len(),
            self.path.display(),
            kept.display()
        ));
        if torn > 0 {
            self.repaired = Some(format!(
                "the journal {} ended in a record cut short by a crash ({torn} bytes); it was left out, and what it described is checked again",
                legacy.display()
            ));
        }
        Ok(())
    }

    /// Record an event in its own transaction, committed (and synced) before this returns.
    pub fn record(
        &self,
        op: &str,
        event: &str,
        step: Option<&str>,
        detail: Value,
    ) -> Result<(), Error> {
        let entry = Entry {
            op: op.to_string(),
            event: event.to_string(),
            step: step.map(str::to_string),
            at: now(),
            detail,
        };
        self.write(|tx| {
            insert(tx, &self.cluster, self.source.as_deref(), &entry)?;
            #[cfg(test)]
            tests::before_commit(tx, event);
            Ok(())
        })
    }

    /// Run a read on the connection; a journal whose database does not exist yet is empty.
    fn read<T: Default>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let guard = self.lock();
        match guard.as_ref() {
            Some(conn) => f(conn).map_err(db_error(&self.path, false)),
            None => Ok(T::default()),
        }
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT o.op, e.event, e.step, e.at, e.detail \
                 FROM events e JOIN operations o ON o.id = e.operation \
                 WHERE o.cluster = ?1 ORDER BY e.id",
            )?;
            stmt.query_map([&self.cluster], |r| {
                let detail: String = r.get(4)?;
                Ok(Entry {
                    op: r.get(0)?,
                    event: r.get(1)?,
                    step: r.get(2)?,
                    at: r.get(3)?,
                    detail: serde_json::from_str(&detail).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            4,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                })
            })?
            .collect()
        })
    }

    /// The last operation that neither finished, failed nor was rolled back: (id, params).
    pub fn unfinished(&self) -> Result<Option<(String, Value)>, Error> {
        let last: Option<(String, String, bool)> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT o.op, o.parameters, o.finished_at IS NULL \
                 FROM events e JOIN operations o ON o.id = e.operation \
                 WHERE o.cluster = ?1 AND e.event = 'op-started' ORDER BY e.id DESC LIMIT 1",
            )?
            .query_row([&self.cluster], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })?;
        let Some((op, params, open)) = last else {
            return Ok(None);
        };
        if !open {
            return Ok(None);
        }
        let params = serde_json::from_str(&params).map_err(|e| Error::Read {
            path: self.path.clone(),
            source: e.into(),
        })?;
        Ok(Some((op, params)))
    }

    /// Steps of an operation that finished (and were not undone since).
    pub fn done_steps(&self, op: &str) -> Result<Vec<String>, Error> {
        let events: Vec<(String, String)> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT e.event, e.step FROM events e JOIN operations o ON o.id = e.operation \
                 WHERE o.cluster = ?1 AND o.op = ?2 AND e.step IS NOT NULL \
                 AND e.event IN ('step-done', 'step-undone') ORDER BY e.id",
            )?
            .query_map((&self.cluster, op), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })?;
        let mut done: Vec<String> = Vec::new();
        for (event, step) in events {
            match event.as_str() {
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
    use std::io::{BufRead, BufReader};

    /// Set in a child process: the event whose record hangs inside its transaction.
    const HANG_AT: &str = "PADDOCK_JOURNAL_TEST_HANG_AT";
    /// Set in a child process: the state directory it records in.
    const CHILD_DIR: &str = "PADDOCK_JOURNAL_TEST_CHILD_DIR";

    /// Called by [`Journal::record`] inside its transaction, before the commit. In a child
    /// process told to, writes enough more in the same transaction that SQLite spills pages
    /// into the WAL file, says so, and waits to be killed.
    pub(super) fn before_commit(tx: &Transaction<'_>, event: &str) {
        if std::env::var(HANG_AT).ok().as_deref() != Some(event) {
            return;
        }
        let filler = "x".repeat(4000);
        for i in 0..3000 {
            tx.execute(
                "INSERT INTO events (operation, seq, event, at, detail) \
                 VALUES ((SELECT max(operation) FROM events), ?1, 'filler', 'now', json_quote(?2))",
                (1_000_000 + i, &filler),
            )
            .expect("filler");
        }
        println!("in-transaction");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    /// The events' (op, event, step, detail), without their times.
    fn events(entries: &[Entry]) -> Vec<(String, String, Option<String>, Value)> {
        entries
            .iter()
            .map(|e| {
                (
                    e.op.clone(),
                    e.event.clone(),
                    e.step.clone(),
                    e.detail.clone(),
                )
            })
            .collect()
    }

    fn db(dir: &Path) -> Connection {
        Connection::open(dir.join(FILE)).expect("open the database")
    }

    fn legacy(dir: &Path) -> PathBuf {
        dir.join("journal/dev.jsonl")
    }

    fn entry(op: &str, event: &str, step: Option<&str>, detail: Value) -> Entry {
        Entry {
            op: op.into(),
            event: event.into(),
            step: step.map(str::to_string),
            at: "2026-01-01T00:00:00.000Z".into(),
            detail,
        }
    }

    /// A legacy journal's bytes: one JSON line per entry.
    fn jsonl(entries: &[Entry]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|e| {
                let mut line = serde_json::to_vec(e).expect("json");
                line.push(b'\n');
                line
            })
            .collect()
    }

    fn write_legacy(dir: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(dir.join("journal")).expect("mkdir");
        std::fs::write(legacy(dir), bytes).expect("write the legacy journal");
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

    /// Each cluster reads only its own operations from the one database.
    #[test]
    fn clusters_share_the_database_but_not_their_operations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Journal::open(dir.path(), "a").expect("open");
        let b = Journal::open(dir.path(), "b").expect("open");
        a.record("upgrade-1", "op-started", None, json!({"to": "1"}))
            .expect("write");
        b.record("upgrade-1", "op-started", None, json!({"to": "2"}))
            .expect("write");
        b.record("upgrade-1", "op-done", None, Value::Null)
            .expect("write");
        assert_eq!(
            a.unfinished().expect("read"),
            Some(("upgrade-1".into(), json!({"to": "1"})))
        );
        assert_eq!(b.unfinished().expect("read"), None);
        assert_eq!(a.entries().expect("read").len(), 1);
        assert_eq!(b.entries().expect("read").len(), 2);
    }

    /// The operations table follows the events: kind, status, finish time, parameters, source.
    #[test]
    fn an_operations_row_follows_its_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev")
            .expect("open")
            .with_source("/repo");
        let row = |op: &str| -> (String, String, bool, String, Option<String>) {
            db(dir.path())
                .query_row(
                    "SELECT kind, status, finished_at IS NOT NULL, parameters, source \
                     FROM operations WHERE cluster = 'dev' AND op = ?1",
                    [op],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .expect("row")
        };
        j.record("upgrade-7", "op-started", None, json!({"to": "1.30.3"}))
            .expect("write");
        assert_eq!(
            row("upgrade-7"),
            (
                "upgrade".into(),
                "running".into(),
                false,
                r#"{"to":"1.30.3"}"#.into(),
                Some("/repo".into())
            )
        );
        j.record("upgrade-7", "op-paused", None, json!({"after": "tags"}))
            .expect("write");
        assert_eq!(row("upgrade-7").1, "paused");
        j.record("upgrade-7", "step-started", Some("restart"), Value::Null)
            .expect("write");
        assert_eq!(row("upgrade-7").1, "running");
        j.record("upgrade-7", "op-rolled-back", None, Value::Null)
            .expect("write");
        assert_eq!(row("upgrade-7").1, "rolled-back");
        assert!(row("upgrade-7").2, "finished");
        j.record("upgrade-7", "op-done", None, Value::Null)
            .expect("write");
        assert_eq!(row("upgrade-7").1, "rolled-back", "a finished status stays");
        let seqs: Vec<i64> = db(dir.path())
            .prepare("SELECT seq FROM events ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let mode: String = db(dir.path())
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    /// Opening creates nothing; a read-only journal of a state directory without a database
    /// is empty, and cannot record.
    #[test]
    fn nothing_is_created_before_the_first_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let j = Journal::open(&state, "dev").expect("open");
        let r = Journal::open_read_only(&state, "dev").expect("open read-only");
        assert!(!state.exists());
        assert!(r.operations().expect("read").is_empty());
        assert_eq!(r.unfinished().expect("read"), None);
        assert!(r.record("op1", "op-started", None, Value::Null).is_err());
        j.record("op1", "op-started", None, Value::Null)
            .expect("write");
        assert!(state.join(FILE).exists());
        assert_eq!(
            Journal::open_read_only(&state, "dev")
                .expect("open read-only")
                .entries()
                .expect("read")
                .len(),
            1
        );
    }

    /// A writer records many operations while a read-only reader reads them over and over:
    /// every read succeeds and is exactly a prefix of what was recorded, whole records only.
    #[test]
    fn a_reader_sees_whole_committed_records_while_a_writer_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut planned: Vec<(String, String, Option<String>, Value)> = Vec::new();
        for i in 0..6 {
            let op = format!("upgrade-{i}");
            planned.push((op.clone(), "op-started".into(), None, json!({"i": i})));
            for s in 0..20 {
                let step = Some(format!("step{s}"));
                planned.push((op.clone(), "step-started".into(), step.clone(), Value::Null));
                planned.push((
                    op.clone(),
                    "step-done".into(),
                    step,
                    json!({"i": i, "s": s}),
                ));
            }
            planned.push((op.clone(), "op-done".into(), None, Value::Null));
        }
        let writer = Journal::open(dir.path(), "dev").expect("open");
        let (op, event, step, detail) = &planned[0];
        writer
            .record(op, event, step.as_deref(), detail.clone())
            .expect("write");
        let done = std::sync::atomic::AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let r = Journal::open_read_only(dir.path(), "dev").expect("open read-only");
                let raw = Connection::open_with_flags(
                    dir.path().join(FILE),
                    OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open");
                let mut seen = Vec::new();
                loop {
                    let last = done.load(std::sync::atomic::Ordering::SeqCst);
                    let ops = r.operations().expect("a read while the writer records");
                    let got = events(&ops.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>());
                    assert!(got.len() <= planned.len());
                    assert_eq!(got, planned[..got.len()], "a prefix, whole records");
                    // Both tables of a record, or neither: each operation's status is its last
                    // event's.
                    let rows: Vec<(String, Option<String>)> = raw
                        .prepare_cached(
                            "SELECT o.status, (SELECT event FROM events WHERE operation = o.id \
                             ORDER BY seq DESC LIMIT 1) FROM operations o",
                        )
                        .and_then(|mut s| {
                            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
                        })
                        .expect("a raw read");
                    for (status, last_event) in rows {
                        let want = if last_event.as_deref() == Some("op-done") {
                            "done"
                        } else {
                            "running"
                        };
                        assert!(
                            last_event.is_some() && status == want,
                            "{status} {last_event:?}"
                        );
                    }
                    if seen.last() != Some(&got.len()) {
                        seen.push(got.len());
                    }
                    if last {
                        return seen;
                    }
                }
            });
            for (op, event, step, detail) in &planned[1..] {
                writer
                    .record(op, event, step.as_deref(), detail.clone())
                    .expect("write");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            reader.join().expect("the reader")
        });
        assert_eq!(seen.last(), Some(&planned.len()), "the last read saw all");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "never fewer: {seen:?}"
        );
        assert!(
            seen.len() > 3,
            "the reads interleaved with the writes: {seen:?}"
        );
    }

    /// A writer's transaction left open (another process mid-record) blocks no reader, and
    /// the reader sees only what was committed.
    #[test]
    fn a_reader_is_not_held_up_by_an_open_write_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "dev").expect("open");
        j.record("op1", "op-started", None, Value::Null)
            .expect("write");
        let mut other = db(dir.path());
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        tx.execute(
            "INSERT INTO events (operation, seq, event, at) VALUES (1, 2, 'op-done', 'now')",
            [],
        )
        .expect("insert");
        let t = std::time::Instant::now();
        let r = Journal::open_read_only(dir.path(), "dev").expect("open read-only");
        assert_eq!(r.entries().expect("read").len(), 1);
        assert_eq!(j.entries().expect("read").len(), 1);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        tx.commit().expect("commit");
        assert_eq!(r.entries().expect("read").len(), 2);
    }

    /// A process killed inside a record's transaction, after SQLite wrote pages of it to the
    /// WAL: the reopened journal holds exactly the records committed before, and takes new
    /// ones.
    #[test]
    fn a_record_killed_before_its_commit_leaves_exactly_the_committed_ones() {
        if let Ok(dir) = std::env::var(CHILD_DIR) {
            // The child: commit three records, then hang inside the fourth's transaction.
            let j = Journal::open(Path::new(&dir), "dev").expect("open");
            j.record("op1", "op-started", None, json!({"to": "1.30.3"}))
                .expect("write");
            j.record("op1", "step-started", Some("base"), Value::Null)
                .expect("write");
            j.record("op1", "step-done", Some("base"), json!({"ok": true}))
                .expect("write");
            j.record("op1", "op-done", None, Value::Null)
                .expect("hangs before its commit");
            unreachable!("killed before the commit");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "engine::journal::tests::a_record_killed_before_its_commit_leaves_exactly_the_committed_ones",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(HANG_AT, "op-done")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let out = child.stdout.take().expect("stdout");
        let ready = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("in-transaction"));
        let wal = std::fs::metadata(dir.path().join(format!("{FILE}-wal")))
            .map(|m| m.len())
            .unwrap_or(0);
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(ready, "the child reached its open transaction ({status})");
        assert!(
            wal > 4_000_000,
            "the uncommitted transaction reached the WAL file ({wal} bytes)"
        );
        let j = Journal::open(dir.path(), "dev").expect("reopen after the crash");
        assert_eq!(
            events(&j.entries().expect("read")),
            [
                (
                    "op1".into(),
                    "op-started".into(),
                    None,
                    json!({"to": "1.30.3"})
                ),
                (
                    "op1".into(),
                    "step-started".into(),
                    Some("base".into()),
                    Value::Null
                ),
                (
                    "op1".into(),
                    "step-done".into(),
                    Some("base".into()),
                    json!({"ok": true})
                ),
            ]
        );
        assert_eq!(
            j.unfinished().expect("read"),
            Some(("op1".into(), json!({"to": "1.30.3"}))),
            "the uncommitted op-done did not finish it"
        );
        let conn = db(dir.path());
        let (rows, check): (i64, String) = (
            conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .expect("count"),
            conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("check"),
        );
        assert_eq!((rows, check.as_str()), (3, "ok"));
        j.record("op1", "op-done", None, Value::Null)
            .expect("a record after the crash");
        assert_eq!(j.unfinished().expect("read"), None);
        let seq: i64 = conn
            .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
            .expect("seq");
        assert_eq!(seq, 4);
    }

    /// A legacy JSONL journal is imported once, in order, and kept renamed; its unfinished
    /// operation continues in the database.
    #[test]
    fn a_legacy_journal_is_imported_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = [
            entry("restart-1", "op-started", None, json!({"namespaces": []})),
            entry("restart-1", "op-done", None, json!({"restarted": []})),
            entry("upgrade-2", "op-started", None, json!({"to": "1.30.3"})),
            entry("upgrade-2", "step-done", Some("base"), json!({"x": 1})),
        ];
        let bytes = jsonl(&old);
        write_legacy(dir.path(), &bytes);
        let j = Journal::open(dir.path(), "dev").expect("open");
        assert!(j.migrated().is_some_and(|m| m.contains("4 records")));
        assert_eq!(j.repaired(), None);
        assert_eq!(j.entries().expect("read"), old);
        assert!(!legacy(dir.path()).exists());
        let kept = dir.path().join("journal/dev.jsonl.migrated");
        assert_eq!(std::fs::read(&kept).expect("kept"), bytes);
        assert_eq!(
            j.unfinished().expect("read"),
            Some(("upgrade-2".into(), json!({"to": "1.30.3"})))
        );
        assert_eq!(j.done_steps("upgrade-2").expect("read"), ["base"]);
        j.record("upgrade-2", "op-done", None, Value::Null)
            .expect("write");
        // A crash between the import's commit and the rename: the file is back, and is not
        // imported again.
        std::fs::copy(&kept, legacy(dir.path())).expect("copy back");
        let j = Journal::open(dir.path(), "dev").expect("reopen");
        assert_eq!(j.entries().expect("read").len(), 5);
        assert!(!legacy(dir.path()).exists());
        assert!(
            std::fs::read_dir(dir.path().join("journal"))
                .expect("ls")
                .count()
                == 2,
            "the first kept file is not overwritten"
        );
        // The import of a read-only open.
        let other = [entry("upgrade-3", "op-started", None, Value::Null)];
        std::fs::write(dir.path().join("journal/qa.jsonl"), jsonl(&other)).expect("write");
        let r = Journal::open_read_only(dir.path(), "qa").expect("open read-only");
        assert_eq!(r.entries().expect("read"), other);
        assert!(r.migrated().is_some());
        let kinds: Vec<String> = db(dir.path())
            .prepare("SELECT kind || ' ' || status FROM operations ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(kinds, ["restart done", "upgrade done", "upgrade running"]);
    }

    /// The legacy journal cut at every byte offset of its last record imports as the journal
    /// without that record, says it was repaired exactly when bytes were left out, and takes
    /// new records after it cleanly.
    #[test]
    fn a_legacy_record_torn_at_any_byte_is_left_out_and_said_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = [
            entry("op1", "op-started", None, json!({"to": "1.30.3"})),
            entry("op1", "step-done", Some("base"), Value::Null),
        ];
        let before = jsonl(&kept);
        let mut full = before.clone();
        full.extend(jsonl(&[entry(
            "op1",
            "step-done",
            Some("istiod"),
            json!({"image": "x"}),
        )]));
        for cut in before.len()..full.len() {
            let _ = std::fs::remove_file(dir.path().join(FILE));
            let _ = std::fs::remove_file(dir.path().join("journal/dev.jsonl.migrated"));
            write_legacy(dir.path(), &full[..cut]);
            let j = Journal::open(dir.path(), "dev").expect("a torn tail opens");
            assert_eq!(j.entries().expect("entries"), kept, "cut at {cut}");
            assert_eq!(j.done_steps("op1").expect("read"), ["base"], "cut at {cut}");
            assert_eq!(
                j.repaired()
                    .is_some_and(|r| r.contains("cut short by a crash")),
                cut > before.len(),
                "cut at {cut}: said so exactly when bytes were left out"
            );
            assert_eq!(
                std::fs::read(dir.path().join("journal/dev.jsonl.migrated")).expect("kept"),
                &full[..cut],
                "cut at {cut}: the old file is kept as it was"
            );
            j.record("op1", "step-done", Some("istiod"), Value::Null)
                .expect("write after repair");
            assert_eq!(
                j.done_steps("op1").expect("read"),
                ["base", "istiod"],
                "cut at {cut}: the next record is whole"
            );
        }
    }

    /// A damaged line of a legacy journal: an error naming the file and line, nothing
    /// imported, the file left where it is, and the same error on the next open.
    #[test]
    fn a_damaged_legacy_line_is_an_error_and_nothing_is_imported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = jsonl(&[
            entry("op1", "op-started", None, Value::Null),
            entry("op1", "op-done", None, Value::Null),
            entry("op2", "op-started", None, Value::Null),
        ]);
        let second = bytes.iter().position(|b| *b == b'\n').expect("a line") + 1;
        bytes[second + 3] = b'#';
        write_legacy(dir.path(), &bytes);
        for read_only in [false, true, false] {
            let err = if read_only {
                Journal::open_read_only(dir.path(), "dev").expect_err("damaged")
            } else {
                Journal::open(dir.path(), "dev").expect_err("damaged")
            };
            let msg = err.to_string();
            assert!(msg.contains("dev.jsonl") && msg.contains("line 2"), "{msg}");
            assert!(legacy(dir.path()).exists(), "left where it is");
        }
        let imported = Journal::open_read_only(dir.path(), "other")
            .expect("another cluster")
            .read(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)))
            .expect("count");
        assert_eq!(imported, 0);
        std::fs::remove_file(legacy(dir.path())).expect("rm");
        std::fs::create_dir(legacy(dir.path())).expect("a directory where the file was");
        let err = Journal::open(dir.path(), "dev").expect_err("unreadable");
        assert!(matches!(err, Error::Read { .. }), "{err}");
        assert!(err.to_string().contains("dev.jsonl"), "{err}");
    }

    /// A damaged, unreadable or newer database is an error naming it, for writers and
    /// readers alike, never an empty journal.
    #[test]
    fn a_damaged_or_unreadable_database_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        let j = Journal::open(dir.path(), "dev").expect("open");
        j.record("op1", "op-started", None, Value::Null)
            .expect("write");
        drop(j);
        db(dir.path())
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
        let whole = std::fs::read(&path).expect("read");
        let expect_err = |what: &str| {
            for read_only in [false, true] {
                let err = if read_only {
                    Journal::open_read_only(dir.path(), "dev").and_then(|j| j.entries())
                } else {
                    Journal::open(dir.path(), "dev").and_then(|j| j.entries())
                }
                .expect_err(what);
                assert!(err.to_string().contains("journal.db"), "{what}: {err}");
            }
        };
        // The header damaged.
        let mut bytes = whole.clone();
        bytes[..16].copy_from_slice(b"not a database!\0");
        std::fs::write(&path, &bytes).expect("damage");
        expect_err("a damaged header");
        assert!(matches!(
            Journal::open(dir.path(), "dev").expect_err("damaged"),
            Error::Corrupt { .. }
        ));
        // The tables' pages damaged (all but the first, which holds the header and schema).
        let mut bytes = whole.clone();
        assert!(bytes.len() > 4096, "{} bytes", bytes.len());
        for b in &mut bytes[4096..] {
            *b = 0x55;
        }
        std::fs::write(&path, &bytes).expect("damage");
        expect_err("a damaged page");
        // Written by a newer paddock.
        std::fs::write(&path, &whole).expect("restore");
        db(dir.path())
            .pragma_update(None, "user_version", 99)
            .expect("version");
        expect_err("a newer schema");
        // Unreadable.
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("a directory where the file was");
        expect_err("a directory");
        // A state directory that cannot be looked into: not an empty journal either.
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("write");
        let err = Journal::open_read_only(&file.join("state"), "dev").expect_err("not a dir");
        assert!(err.to_string().contains("journal"), "{err}");
    }
}
