//! The journal's guarantees, each shown by a test.

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
    assert_eq!(
        j.interrupted_step("op1").expect("read").as_deref(),
        Some("istiod"),
        "istiod was running when the operation stopped"
    );
    j.record("op1", "step-done", Some("istiod"), Value::Null)
        .expect("write");
    assert_eq!(j.interrupted_step("op1").expect("read"), None);
    j.record("op1", "step-undone", Some("istiod"), Value::Null)
        .expect("write");
    j.record("op1", "step-undone", Some("base"), Value::Null)
        .expect("write");
    assert!(j.done_steps("op1").expect("read").is_empty());
    j.record("op1", "op-rolled-back", None, Value::Null)
        .expect("write");
    assert_eq!(j.unfinished().expect("read"), None);
}

/// An unfinished upgrade is found even when operations of other kinds were recorded after it.
#[test]
fn an_unfinished_upgrade_is_not_hidden_by_later_operations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path(), "dev").expect("open");
    j.record("upgrade-1", "op-started", None, json!({"to": "1.30.3"}))
        .expect("write");
    j.record("up-2", "op-started", None, Value::Null)
        .expect("write");
    j.record("up-2", "op-done", None, Value::Null)
        .expect("write");
    assert_eq!(
        j.unfinished().expect("read"),
        None,
        "the newest operation finished"
    );
    assert_eq!(
        j.unfinished_upgrade().expect("read"),
        Some(("upgrade-1".into(), json!({"to": "1.30.3"})))
    );
    j.record("upgrade-1", "op-done", None, Value::Null)
        .expect("write");
    assert_eq!(j.unfinished_upgrade().expect("read"), None);
}

/// Record times come from the journal's clock.
#[test]
fn records_are_stamped_by_the_clock_given() {
    use crate::engine::clock::ManualClock;
    let dir = tempfile::tempdir().expect("tempdir");
    let at: jiff::Timestamp = "2026-10-25T00:59:59.250Z".parse().expect("a timestamp");
    let clock = std::sync::Arc::new(ManualClock::new(at));
    let j = Journal::open(dir.path(), "dev")
        .expect("open")
        .with_clock(clock.clone());
    j.record("op1", "op-started", None, Value::Null)
        .expect("write");
    clock.advance(jiff::SignedDuration::from_secs(3600));
    j.record("op1", "op-done", None, Value::Null)
        .expect("write");
    let times: Vec<String> = j
        .entries()
        .expect("read")
        .into_iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(
        times,
        ["2026-10-25T00:59:59.250Z", "2026-10-25T01:59:59.250Z"]
    );
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
                    .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
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
