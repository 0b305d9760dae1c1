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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::clock::{Clock, SystemClock};

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
    /// Where record times come from.
    clock: Arc<dyn Clock>,
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

fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
        "op-interrupted" => ("interrupted", true),
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

    /// Record times come from `clock` (the system's by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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
            clock: Arc::new(SystemClock),
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
                (
                    cluster,
                    &file,
                    &sha,
                    entries.len() as i64,
                    stamp(self.clock.now()),
                ),
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
            at: stamp(self.clock.now()),
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

mod queries;

#[cfg(test)]
mod tests;
