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

/// What a successful run printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Run a command to completion (blocking).
pub fn exec_blocking(cmd: &Cmd) -> Result<Output, ExecError> {
    // An OsString (not a Path) so a bare name is looked up on PATH.
    let program = cmd.program.clone().into_os_string();
    let mut expr = duct::cmd(program, &cmd.args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    if let Some(input) = &cmd.stdin {
        expr = expr.stdin_bytes(input.clone().into_bytes());
    } else {
        expr = expr.stdin_null();
    }
    let out = expr.run().map_err(|source| ExecError::Spawn {
        cmd: cmd.to_string(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
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
