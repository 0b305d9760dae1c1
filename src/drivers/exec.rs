//! Running external tools (`k3d`, `helm`): a command line is a value with `Display`, and one
//! [`exec`] turns a non-zero exit into an error that quotes the command, its exit status and
//! its stderr. Commands run off the async threads.

use std::fmt;
use std::path::PathBuf;

/// A command line to run: program, arguments, optional stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Text piped to stdin (k3d's `--config -`), not shown in `Display`.
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
}

impl ExecError {
    /// The tool's stderr, when it ran.
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            ExecError::Spawn { .. } => "",
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

/// The duct expression of a command: output captured, stdin given or closed.
fn expression(cmd: &Cmd) -> duct::Expression {
    // An OsString (not a Path) so a bare name is looked up on PATH.
    let program = cmd.program.clone().into_os_string();
    let expr = duct::cmd(program, &cmd.args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    match &cmd.stdin {
        Some(input) => expr.stdin_bytes(input.clone().into_bytes()),
        None => expr.stdin_null(),
    }
}

/// A finished run: its output, or the error quoting command, status and stderr.
fn finished(cmd: &Cmd, out: std::process::Output) -> Result<Output, ExecError> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    tracing::debug!(command = %cmd, status = ?out.status.code(), stderr = %stderr.trim(), "command finished");
    if out.status.success() {
        Ok(Output { stdout, stderr })
    } else {
        let status = match out.status.code() {
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
    let out = expression(cmd).run().map_err(|source| ExecError::Spawn {
        cmd: cmd.to_string(),
        source,
    })?;
    finished(cmd, out)
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
}

impl Children {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Run a command to completion (blocking), noted while it runs.
    pub fn exec_blocking(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        tracing::debug!(command = %cmd, "run");
        let spawn_err = |source| ExecError::Spawn {
            cmd: cmd.to_string(),
            source,
        };
        let handle = expression(cmd).start().map_err(spawn_err)?;
        let mut notes = Vec::new();
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let mut argv = vec![cmd.program.display().to_string()];
            argv.extend(cmd.args.iter().cloned());
            for pid in handle.pids() {
                let note = Note {
                    pid,
                    argv: argv.clone(),
                    shown: cmd.to_string(),
                };
                let path = self.dir.join(pid.to_string());
                if let Ok(text) = serde_json::to_vec(&note)
                    && std::fs::write(&path, text).is_ok()
                {
                    notes.push(path);
                }
            }
        }
        let out = handle.into_output().map_err(spawn_err);
        for n in notes {
            let _ = std::fs::remove_file(n);
        }
        finished(cmd, out?)
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
            let Some(note) = note else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
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

    #[test]
    fn missing_programs_are_spawn_errors() {
        let err = exec_blocking(&Cmd::new("/nonexistent/k3d")).expect_err("missing");
        assert!(matches!(err, ExecError::Spawn { .. }));
    }
}
