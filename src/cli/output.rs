//! What a running command tells the user: one line per step event, timestamped when the output
//! is not a terminal (CI logs); NDJSON events with `--output json`; nothing but errors with
//! `--quiet`. `-v` adds the command lines paddock runs.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
    Quiet,
}

/// Shared by every step of an operation.
pub struct Reporter {
    mode: Mode,
    verbose: u8,
    timestamps: bool,
    /// On a terminal: keep a live status line of running steps under the event lines.
    live: bool,
    started: Instant,
    out: Mutex<Box<dyn Write + Send>>,
    progress: Mutex<Progress>,
}

/// What the live status line shows.
#[derive(Debug, Default)]
struct Progress {
    running: Vec<String>,
    done: usize,
}

impl Progress {
    /// `⏳ 3 done · running: a, b` (empty when nothing runs).
    fn line(&self) -> String {
        if self.running.is_empty() {
            return String::new();
        }
        let mut names = self.running.join(", ");
        if names.chars().count() > 100 {
            names = names.chars().take(97).collect::<String>() + "...";
        }
        format!("⏳ {} done · running: {names}", self.done)
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Reporter {
    pub fn new(mode: Mode, verbose: u8, out: Box<dyn Write + Send>) -> Self {
        let terminal = std::io::stdout().is_terminal() && std::env::var_os("CI").is_none();
        Self {
            mode,
            verbose,
            timestamps: !terminal,
            live: terminal && mode == Mode::Text,
            started: Instant::now(),
            out: Mutex::new(out),
            progress: Mutex::new(Progress::default()),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn write_line(&self, line: &str) {
        let mut out = match self.out.lock() {
            Ok(o) => o,
            Err(p) => p.into_inner(),
        };
        if self.live {
            // Clear the status line, print the event, redraw the status line under it.
            let status = match self.progress.lock() {
                Ok(p) => p.line(),
                Err(p) => p.into_inner().line(),
            };
            let _ = write!(out, "\r\x1b[K{line}\n{status}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    fn track(&self, id: &str, running: bool) {
        if !self.live {
            return;
        }
        let mut p = match self.progress.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        if running {
            p.running.push(id.to_string());
        } else {
            p.running.retain(|r| r != id);
            p.done += 1;
        }
    }

    fn text(&self, line: &str) {
        if self.mode != Mode::Text {
            return;
        }
        if self.timestamps {
            let ts = jiff::Zoned::now().strftime("%H:%M:%S%.3f").to_string();
            self.write_line(&format!("{ts} {line}"));
        } else {
            self.write_line(line);
        }
    }

    fn json(&self, v: Value) {
        if self.mode == Mode::Json {
            self.write_line(&v.to_string());
        }
    }

    pub fn step_started(&self, id: &str) {
        self.track(id, true);
        self.text(&format!("▶ {id}"));
        self.json(json!({"event": "step", "step": id, "status": "started",
            "at_ms": self.started.elapsed().as_millis() as u64}));
    }

    pub fn step_done(&self, id: &str, took: Duration) {
        self.track(id, false);
        self.text(&format!("✓ {id} ({:.1}s)", took.as_secs_f64()));
        self.json(json!({"event": "step", "step": id, "status": "done",
            "ms": took.as_millis() as u64, "at_ms": self.started.elapsed().as_millis() as u64}));
    }

    pub fn step_failed(&self, id: &str, took: Duration, error: &str) {
        self.track(id, false);
        self.text(&format!("✗ {id} ({:.1}s): {error}", took.as_secs_f64()));
        self.json(json!({"event": "step", "step": id, "status": "failed",
            "ms": took.as_millis() as u64, "error": error}));
    }

    /// Something the user should know.
    pub fn note(&self, message: &str) {
        self.text(&format!("• {message}"));
        self.json(json!({"event": "note", "message": message}));
    }

    /// A command line being run (`-v`).
    pub fn command(&self, cmd: &str) {
        if self.verbose > 0 {
            self.text(&format!("  $ {cmd}"));
            self.json(json!({"event": "command", "command": cmd}));
        }
    }

    /// The final result: a line in text mode, one JSON object in JSON mode.
    pub fn result(&self, summary: &str, result: Value) {
        match self.mode {
            Mode::Text => self.write_line(summary),
            Mode::Json => {
                let mut r = result;
                r["event"] = json!("result");
                self.write_line(&r.to_string());
            }
            Mode::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_names_running_steps() {
        let mut p = Progress::default();
        assert_eq!(p.line(), "", "nothing running, nothing shown");
        p.running = vec![
            "helm.install/prometheus".into(),
            "helm.install/jaeger".into(),
        ];
        p.done = 7;
        assert_eq!(
            p.line(),
            "⏳ 7 done · running: helm.install/prometheus, helm.install/jaeger"
        );
        p.running = (0..20).map(|i| format!("step-{i}")).collect();
        assert!(p.line().ends_with("..."));
    }
}
