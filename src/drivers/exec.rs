//! Running external tools (`k3d`, `helm`): a command line is a value with `Display`, and one
//! [`exec`] turns a non-zero exit into an error that quotes the command, its exit status and
//! its stderr. Commands run off the async threads.
//!
//! A tool reads its stdin from, and writes its stdout and stderr to, anonymous files (unlinked
//! temporary files), never pipes: paddock reads them back once the tool has exited. A pipe's
//! other end is paddock alone; killed alone, paddock leaves its tools running, and an orphaned
//! helm writing to a pipe nobody reads any more dies of SIGPIPE, mid-work if unlucky, its
//! release left `pending-*`. A file takes whatever the tool writes, whoever is left to read it.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// A command line to run: program, arguments, optional stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Text given on stdin (k3d's `--config -`, helm's `-f -`), not shown in `Display`.
    pub stdin: Option<String>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%{}".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", quote(&self.program.display().to_string()))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        if self.stdin.is_some() {
            write!(f, " < (generated input)")?;
        }
        Ok(())
    }
}

/// A tool run that failed, with everything the user needs to see.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{cmd}` could not be started: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed with {status}: {}", stderr.trim())]
    Failed {
        cmd: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    #[error("could not read the output of `{cmd}`: {source}")]
    Read {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// The tool's stderr, when it ran.
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            ExecError::Spawn { .. } | ExecError::Read { .. } => "",
        }
    }
}

/// A tool process an interrupted run left working, still running after the wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{command}` (pid {pid}) from an interrupted run is still working after {}s; wait for it, or stop it (`kill {pid}`) and run again",
    waited.as_secs()
)]
pub struct LeftoverError {
    pub command: String,
    pub pid: u32,
    pub waited: std::time::Duration,
}

/// What a successful run printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// A started tool process and the anonymous files its stdout and stderr go to.
struct Started {
    handle: duct::Handle,
    stdout: File,
    stderr: File,
}

/// Start a command: stdin from an anonymous file holding its text (or closed), stdout and
/// stderr to anonymous files of their own.
fn start(cmd: &Cmd) -> Result<Started, ExecError> {
    let spawn_err = |source| ExecError::Spawn {
        cmd: cmd.to_string(),
        source,
    };
    let stdout = tempfile::tempfile().map_err(spawn_err)?;
    let stderr = tempfile::tempfile().map_err(spawn_err)?;
    // An OsString (not a Path) so a bare name is looked up on PATH.
    let program = cmd.program.clone().into_os_string();
    let expr = duct::cmd(program, &cmd.args)
        .stdout_file(stdout.try_clone().map_err(spawn_err)?)
        .stderr_file(stderr.try_clone().map_err(spawn_err)?)
        .unchecked();
    let expr = match &cmd.stdin {
        Some(input) => expr.stdin_file(text_file(input).map_err(spawn_err)?),
        None => expr.stdin_null(),
    };
    let handle = expr.start().map_err(spawn_err)?;
    Ok(Started {
        handle,
        stdout,
        stderr,
    })
}

/// An anonymous file holding `text`, positioned at its start.
fn text_file(text: &str) -> std::io::Result<File> {
    let mut f = tempfile::tempfile()?;
    f.write_all(text.as_bytes())?;
    f.rewind()?;
    Ok(f)
}

impl Started {
    fn pids(&self) -> Vec<u32> {
        self.handle.pids()
    }

    /// Wait for the process to exit.
    fn wait(self, cmd: &Cmd) -> Result<Ended, ExecError> {
        let out = self
            .handle
            .into_output()
            .map_err(|source| ExecError::Spawn {
                cmd: cmd.to_string(),
                source,
            })?;
        Ok(Ended {
            status: out.status,
            stdout: self.stdout,
            stderr: self.stderr,
        })
    }
}

/// A tool process that exited, what it wrote still in its files.
struct Ended {
    status: std::process::ExitStatus,
    stdout: File,
    stderr: File,
}

/// The text written to an output file, from its start.
fn written(mut f: File) -> std::io::Result<String> {
    f.rewind()?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A finished run: its output, or the error quoting command, status and stderr.
fn finished(cmd: &Cmd, ended: Ended) -> Result<Output, ExecError> {
    let read_err = |source| ExecError::Read {
        cmd: cmd.to_string(),
        source,
    };
    let stdout = written(ended.stdout).map_err(read_err)?;
    let stderr = written(ended.stderr).map_err(read_err)?;
    let status = ended.status;
    tracing::debug!(command = %cmd, status = ?status.code(), stderr = %stderr.trim(), "command finished");
    if status.success() {
        Ok(Output { stdout, stderr })
    } else {
        let status = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_string(),
        };
        Err(ExecError::Failed {
            cmd: cmd.to_string(),
            status,
            stdout,
            stderr,
        })
    }
}

/// Run a command to completion (blocking).
pub fn exec_blocking(cmd: &Cmd) -> Result<Output, ExecError> {
    tracing::debug!(command = %cmd, "run");
    let ended = start(cmd)?.wait(cmd)?;
    finished(cmd, ended)
}

/// The tool processes paddock runs for one cluster, each noted by a file in a directory of the
/// state dir while it runs. A killed paddock cannot stop its children: helm goes on working
/// with its release `pending-*`. The next run under the cluster's lock finds the notes and
/// waits for those processes ([`Children::wait_for_leftovers`]) instead of racing them or
/// undoing what they finish.
#[derive(Debug, Clone)]
pub struct Children {
    dir: PathBuf,
}

/// The note left for a running child.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Note {
    pid: u32,
    /// argv as started, to tell the process from a later one that reuses its pid.
    argv: Vec<String>,
    shown: String,
    /// Written before the child starts: `pid` is then paddock's own, and a paddock killed
    /// between starting the child and noting its pid leaves only this behind.
    #[serde(default)]
    starting: bool,
}

impl Children {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Run a command to completion (blocking), noted while it runs.
    pub fn exec_blocking(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        tracing::debug!(command = %cmd, "run");
        let mut argv = vec![cmd.program.display().to_string()];
        argv.extend(cmd.args.iter().cloned());
        let intent = self.note_starting(cmd, &argv);
        let started = start(cmd);
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                if let Some(p) = intent {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        let mut notes = Vec::new();
        if std::fs::create_dir_all(&self.dir).is_ok() {
            for pid in started.pids() {
                let note = Note {
                    pid,
                    argv: argv.clone(),
                    shown: cmd.to_string(),
                    starting: false,
                };
                let path = self.dir.join(pid.to_string());
                if let Ok(text) = serde_json::to_vec(&note)
                    && std::fs::write(&path, text).is_ok()
                {
                    notes.push(path);
                }
            }
        }
        if let Some(p) = intent {
            let _ = std::fs::remove_file(p);
        }
        let ended = started.wait(cmd);
        for n in notes {
            let _ = std::fs::remove_file(n);
        }
        finished(cmd, ended?)
    }

    /// Note, before the child starts, that this process is about to start `argv`.
    fn note_starting(&self, cmd: &Cmd, argv: &[String]) -> Option<PathBuf> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir).ok()?;
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self
            .dir
            .join(format!("starting-{}-{n}", std::process::id()));
        let note = Note {
            pid: std::process::id(),
            argv: argv.to_vec(),
            shown: cmd.to_string(),
            starting: true,
        };
        std::fs::write(&path, serde_json::to_vec(&note).ok()?).ok()?;
        Some(path)
    }

    /// Wait for the processes an earlier, killed run left working (their notes are still
    /// here and they still run), at most `timeout`; `said` hears about each one waited for.
    pub async fn wait_for_leftovers(
        &self,
        timeout: std::time::Duration,
        said: impl Fn(&str),
    ) -> Result<(), LeftoverError> {
        let deadline = std::time::Instant::now() + timeout;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let path = e.path();
            let note: Option<Note> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(mut note) = note else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if note.starting {
                // Its paddock still runs: not a leftover.
                if note.pid != std::process::id() && alive(note.pid) {
                    continue;
                }
                // Killed between starting the child and noting it: find the child by its
                // command line.
                match find_by_argv(&note.argv) {
                    Some(pid) => note.pid = pid,
                    None => {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                }
            }
            if running(&note) {
                said(&format!(
                    "`{}` (pid {}) from an interrupted run is still working; waiting for it to finish",
                    note.shown, note.pid
                ));
            }
            while running(&note) {
                if std::time::Instant::now() > deadline {
                    return Err(LeftoverError {
                        command: note.shown.clone(),
                        pid: note.pid,
                        waited: timeout,
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }
}

/// Is the noted process still running (the same program, not a process reusing its pid)?
/// Does process `pid` exist (and not as a zombie)?
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A running process whose command line is `argv` (Linux; elsewhere none is found).
fn find_by_argv(argv: &[String]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let note = Note {
            pid,
            argv: argv.to_vec(),
            shown: String::new(),
            starting: false,
        };
        running(&note).then_some(pid)
    })
}

fn running(note: &Note) -> bool {
    match std::fs::read(format!("/proc/{}/cmdline", note.pid)) {
        Ok(raw) => {
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", note.pid)).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            argv == note.argv && !zombie
        }
        // No procfs (macOS): ask ps for the command line.
        Err(_) if !std::path::Path::new("/proc/self").exists() => std::process::Command::new("ps")
            .args(["-o", "command=", "-p", &note.pid.to_string()])
            .output()
            .is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).trim() == note.argv.join(" ")
            }),
        Err(_) => false,
    }
}

/// Run a command off the async threads.
pub async fn exec(cmd: Cmd) -> Result<Output, ExecError> {
    let shown = cmd.to_string();
    tokio::task::spawn_blocking(move || exec_blocking(&cmd))
        .await
        .unwrap_or_else(|e| {
            Err(ExecError::Spawn {
                cmd: shown,
                source: std::io::Error::other(e.to_string()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_display_quoted() {
        let c = Cmd::new("helm")
            .args(["upgrade", "--install", "istiod-1-30-3", "istiod"])
            .args(["--set", "a=b c"])
            .stdin("x");
        assert_eq!(
            c.to_string(),
            "helm upgrade --install istiod-1-30-3 istiod --set 'a=b c' < (generated input)"
        );
    }

    #[test]
    fn failures_quote_command_status_and_stderr() {
        let err = exec_blocking(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .expect_err("fails");
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'echo boom >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.ends_with("boom"), "{msg}");
    }

    /// More than a pipe holds, on stdout and on stderr, with the stdin text echoed back.
    fn big_output() -> Cmd {
        Cmd::new("sh")
            .args([
                "-c",
                r"cat; head -c 200000 /dev/zero | tr '\0' o; head -c 150000 /dev/zero | tr '\0' e >&2",
            ])
            .stdin("values: {}\n")
    }

    fn assert_big_output(out: &Output) {
        assert!(out.stdout.starts_with("values: {}\n"), "stdin read back");
        assert_eq!(out.stdout.len(), "values: {}\n".len() + 200_000);
        assert_eq!(out.stderr.len(), 150_000);
        assert!(out.stderr.chars().all(|c| c == 'e'));
    }

    #[test]
    fn output_larger_than_a_pipe_holds_is_read_back_whole() {
        assert_big_output(&exec_blocking(&big_output()).expect("runs"));
    }

    /// A paddock killed after starting a child but before noting its pid leaves only its
    /// "starting" note: the next run finds the child by its command line and waits for it.
    #[tokio::test]
    async fn a_child_started_but_not_yet_noted_is_found_and_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("sleep")
            .arg("1.2")
            .spawn()
            .expect("sleep");
        let mut gone = std::process::Command::new("true").spawn().expect("true");
        let dead_parent = gone.id();
        gone.wait().expect("true ends");
        let note = Note {
            pid: dead_parent,
            argv: vec!["sleep".into(), "1.2".into()],
            shown: "sleep 1.2".into(),
            starting: true,
        };
        std::fs::write(
            dir.path().join(format!("starting-{dead_parent}-0")),
            serde_json::to_vec(&note).expect("json"),
        )
        .expect("note");
        let said = std::sync::Mutex::new(Vec::new());
        let t = std::time::Instant::now();
        Children::new(dir.path())
            .wait_for_leftovers(std::time::Duration::from_secs(10), |m| {
                said.lock().expect("said").push(m.to_string())
            })
            .await
            .expect("waited");
        let waited = t.elapsed();
        let _ = child.wait();
        assert!(
            waited >= std::time::Duration::from_millis(800),
            "{waited:?}"
        );
        assert!(
            said.lock()
                .expect("said")
                .iter()
                .any(|m| m.contains("`sleep 1.2`")),
            "{said:?}"
        );
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "note removed"
        );
    }

    #[test]
    fn noted_runs_read_their_output_back_whole_and_leave_no_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        let children = Children::new(dir.path().join("running"));
        assert_big_output(&children.exec_blocking(&big_output()).expect("runs"));
        let notes = std::fs::read_dir(dir.path().join("running")).expect("notes dir");
        assert_eq!(notes.count(), 0, "the note goes when the run ends");
        let err = children
            .exec_blocking(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .expect_err("fails");
        assert_eq!(err.stderr().trim(), "boom");
        assert!(err.to_string().contains("exit status 3"), "{err}");
    }

    #[test]
    fn missing_programs_are_spawn_errors() {
        let err = exec_blocking(&Cmd::new("/nonexistent/k3d")).expect_err("missing");
        assert!(matches!(err, ExecError::Spawn { .. }));
    }
}
