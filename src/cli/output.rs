//! Rendering the events operations emit ([`crate::engine::events`]) for a person or a program:
//!
//! - on a terminal: a live tree of the running steps, each with its elapsed time, and a
//!   progress bar where a step reports progress (restarts, waits); finished steps are printed
//!   above the tree as `✓ step (1.2s)` lines;
//! - otherwise (CI logs, pipes): one timestamped line per event;
//! - `--output json`: NDJSON, one object per event, in the stable schema the README documents;
//! - `--quiet`: nothing but the errors the CLI prints itself.
//!
//! `-v` adds the command lines paddock runs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::engine::events::{Event, Events, Sink};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
    Quiet,
}

/// The CLI's sink: renders each event as it arrives, from whichever step's task sends it.
pub struct Renderer {
    mode: Mode,
    verbose: u8,
    timestamps: bool,
    started: Instant,
    out: Mutex<Box<dyn Write + Send>>,
    /// On a terminal in text mode: the live tree of running steps.
    live: Option<Live>,
}

/// The running steps on a terminal, one line each under a header.
struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    /// Lines that only report progress (no step started them): gone once complete.
    progress_only: Mutex<std::collections::BTreeSet<String>>,
    done: Mutex<usize>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("mode", &self.mode)
            .finish()
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {prefix} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {prefix} [{bar:24}] {pos}/{len} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .progress_chars("=> ")
}

impl Live {
    fn new(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{msg} {elapsed:>4}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.set_message("⏳ 0 done · running:");
        Self {
            multi,
            header,
            bars: Mutex::new(BTreeMap::new()),
            progress_only: Mutex::new(Default::default()),
            done: Mutex::new(0),
        }
    }

    fn header(&self) {
        let done = *lock(&self.done);
        let running = lock(&self.bars).len();
        self.header
            .set_message(format!("⏳ {done} done · {running} running:"));
    }

    fn started(&self, step: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        lock(&self.bars).insert(step.to_string(), bar);
        self.header();
    }

    /// Progress of a step; one not in the tree yet (an operation's overall progress, such as
    /// a restart's workloads) gets its own line, gone when it is complete.
    fn progress(&self, step: &str, done: u64, total: u64) {
        if !lock(&self.bars).contains_key(step) {
            self.started(step);
            lock(&self.progress_only).insert(step.to_string());
        }
        let complete = {
            let bars = lock(&self.bars);
            let Some(bar) = bars.get(step) else { return };
            if bar.length() != Some(total) {
                bar.set_style(bar_style());
                bar.set_length(total);
            }
            bar.set_position(done);
            done >= total
        };
        if complete && lock(&self.progress_only).remove(step) {
            if let Some(bar) = lock(&self.bars).remove(step) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            self.header();
        }
    }

    fn finished(&self, step: &str) {
        if let Some(bar) = lock(&self.bars).remove(step) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        *lock(&self.done) += 1;
        self.header();
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    fn clear(&self) {
        for (_, bar) in std::mem::take(&mut *lock(&self.bars)) {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Renderer {
    pub fn new(mode: Mode, verbose: u8, out: Box<dyn Write + Send>) -> Arc<Self> {
        let terminal = std::io::stdout().is_terminal() && std::env::var_os("CI").is_none();
        let live =
            (terminal && mode == Mode::Text).then(|| Live::new(ProgressDrawTarget::stdout()));
        Arc::new(Self {
            mode,
            verbose,
            timestamps: !terminal,
            started: Instant::now(),
            out: Mutex::new(out),
            live,
        })
    }

    /// A renderer drawing its live tree on `target` (tests use an in-memory terminal).
    pub fn live_on(
        verbose: u8,
        target: ProgressDrawTarget,
        out: Box<dyn Write + Send>,
    ) -> Arc<Self> {
        Arc::new(Self {
            mode: Mode::Text,
            verbose,
            timestamps: false,
            started: Instant::now(),
            out: Mutex::new(out),
            live: Some(Live::new(target)),
        })
    }

    /// The handle operations send their events through.
    pub fn events(self: &Arc<Self>) -> Events {
        Events::new(self.clone())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn write_line(&self, line: &str) {
        if let Some(live) = &self.live {
            live.println(line);
            return;
        }
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
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

    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The final result: a line in text mode, one JSON object in JSON mode.
    pub fn result(&self, summary: &str, result: Value) {
        if let Some(live) = &self.live {
            live.clear();
        }
        match self.mode {
            Mode::Text => {
                let mut out = lock(&self.out);
                let _ = writeln!(out, "{summary}");
                let _ = out.flush();
            }
            Mode::Json => {
                let mut r = result;
                r["event"] = json!("result");
                self.write_line(&r.to_string());
            }
            Mode::Quiet => {}
        }
    }
}

/// The NDJSON form of an event (README: "Events as NDJSON"), or `None` for events JSON output
/// leaves out (commands without `-v`).
pub fn ndjson(event: &Event, at_ms: u64, verbose: u8) -> Option<Value> {
    match event {
        Event::Command { .. } if verbose == 0 => None,
        e => Some(e.to_json(at_ms)),
    }
}

impl Sink for Renderer {
    fn emit(&self, event: &Event) {
        if self.mode == Mode::Json {
            if let Some(v) = ndjson(event, self.at_ms(), self.verbose) {
                self.json(v);
            }
            return;
        }
        match event {
            Event::StepStarted { step } => match &self.live {
                Some(live) => live.started(step),
                None => self.text(&format!("▶ {step}")),
            },
            Event::StepDone { step, took } => {
                if let Some(live) = &self.live {
                    live.finished(step);
                }
                self.text(&format!("✓ {step} ({:.1}s)", took.as_secs_f64()));
            }
            Event::StepFailed { step, took, error } => {
                if let Some(live) = &self.live {
                    live.finished(step);
                }
                self.text(&format!("✗ {step} ({:.1}s): {error}", took.as_secs_f64()));
            }
            Event::Progress { step, done, total } => match &self.live {
                Some(live) => live.progress(step, *done, *total),
                None => self.text(&format!("… {step}: {done}/{total}")),
            },
            Event::Note { message } => self.text(&format!("• {message}")),
            Event::Command { command } if self.verbose > 0 => self.text(&format!("  $ {command}")),
            Event::Command { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    #[test]
    fn the_live_tree_shows_running_steps_with_progress_and_prints_finished_ones_above() {
        let term = InMemoryTerm::new(20, 100);
        let r = Renderer::live_on(
            0,
            ProgressDrawTarget::term_like(Box::new(term.clone())),
            Box::new(std::io::sink()),
        );
        let ev = r.events();
        ev.step_started("helm.install/istiod");
        ev.step_started("restart/workloads");
        ev.progress("restart/workloads", 3, 12);
        std::thread::sleep(Duration::from_millis(300));
        let screen = term.contents();
        assert!(screen.contains("2 running"), "{screen}");
        assert!(screen.contains("helm.install/istiod"), "{screen}");
        assert!(screen.contains("3/12"), "{screen}");
        ev.step_done("helm.install/istiod", Duration::from_millis(1500));
        std::thread::sleep(Duration::from_millis(300));
        let screen = term.contents();
        assert!(screen.contains("✓ helm.install/istiod (1.5s)"), "{screen}");
        assert!(screen.contains("1 done · 1 running"), "{screen}");
        let running: Vec<&str> = screen
            .lines()
            .filter(|l| l.contains("helm.install/istiod"))
            .collect();
        assert_eq!(
            running.len(),
            1,
            "a finished step leaves the tree: {screen}"
        );
    }

    #[test]
    fn json_events_keep_their_schema() {
        let took = Duration::from_millis(1234);
        let cases = [
            (
                Event::StepStarted { step: "s".into() },
                json!({"event": "step", "step": "s", "status": "started", "at_ms": 7}),
            ),
            (
                Event::StepDone {
                    step: "s".into(),
                    took,
                },
                json!({"event": "step", "step": "s", "status": "done", "ms": 1234, "at_ms": 7}),
            ),
            (
                Event::StepFailed {
                    step: "s".into(),
                    took,
                    error: "e".into(),
                },
                json!({"event": "step", "step": "s", "status": "failed", "ms": 1234, "error": "e", "at_ms": 7}),
            ),
            (
                Event::Progress {
                    step: "s".into(),
                    done: 1,
                    total: 2,
                },
                json!({"event": "progress", "step": "s", "done": 1, "total": 2, "at_ms": 7}),
            ),
            (
                Event::Note {
                    message: "m".into(),
                },
                json!({"event": "note", "message": "m", "at_ms": 7}),
            ),
            (
                Event::Command {
                    command: "c".into(),
                },
                json!({"event": "command", "command": "c", "at_ms": 7}),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(ndjson(&event, 7, 1), Some(want));
        }
        assert_eq!(
            ndjson(
                &Event::Command {
                    command: "c".into()
                },
                7,
                0
            ),
            None,
            "commands only with -v"
        );
    }
}
