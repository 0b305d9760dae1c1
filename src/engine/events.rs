//! What operations report while they run: one typed [`Event`] enum, sent to a [`Sink`].
//!
//! Operations never print. They hold an [`Events`] handle and say what happens — a step
//! started, finished or failed, a command line run, a note for the user, progress of a long
//! wait — and whoever started the operation decides what to do with it: the CLI renders it
//! (a live tree on a terminal, timestamped lines in a log, NDJSON with `--output json`), the
//! daemon streams it to its API clients. Every event is also a `tracing` event (target
//! `paddock::events`), so `RUST_LOG=paddock=debug` shows them in diagnostics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something an operation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step began.
    StepStarted { step: String },
    /// A step finished.
    StepDone { step: String, took: Duration },
    /// A step failed; `error` is the whole chain, one line.
    StepFailed {
        step: String,
        took: Duration,
        error: String,
    },
    /// How far a long step is: `done` of `total` (workloads restarted; replicas rolled out,
    /// summed over the workloads a wait has reached so far — its `total` grows as it moves on
    /// to the next one).
    Progress { step: String, done: u64, total: u64 },
    /// Something the user should know (a repair, a decision, an interruption).
    Note { message: String },
    /// A command line paddock runs (helm, k3d, kubectl), shown with `-v`.
    Command { command: String },
}

impl Event {
    /// The event in the NDJSON schema (README, "Output"), `at_ms` after the operation began.
    pub fn to_json(&self, at_ms: u64) -> serde_json::Value {
        use serde_json::json;
        match self {
            Event::StepStarted { step } => {
                json!({"event": "step", "step": step, "status": "started", "at_ms": at_ms})
            }
            Event::StepDone { step, took } => json!({"event": "step", "step": step,
                "status": "done", "ms": took.as_millis() as u64, "at_ms": at_ms}),
            Event::StepFailed { step, took, error } => json!({"event": "step", "step": step,
                "status": "failed", "ms": took.as_millis() as u64, "error": error, "at_ms": at_ms}),
            Event::Progress { step, done, total } => json!({"event": "progress", "step": step,
                "done": done, "total": total, "at_ms": at_ms}),
            Event::Note { message } => json!({"event": "note", "message": message, "at_ms": at_ms}),
            Event::Command { command } => {
                json!({"event": "command", "command": command, "at_ms": at_ms})
            }
        }
    }

    /// An event read back from [`Event::to_json`]'s form (a daemon's stream); `None` for what
    /// is not an event.
    pub fn from_json(v: &serde_json::Value) -> Option<Event> {
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let took = || Duration::from_millis(v["ms"].as_u64().unwrap_or(0));
        Some(match v["event"].as_str()? {
            "step" => {
                let step = text("step")?;
                match v["status"].as_str()? {
                    "started" => Event::StepStarted { step },
                    "done" => Event::StepDone { step, took: took() },
                    "failed" => Event::StepFailed {
                        step,
                        took: took(),
                        error: text("error").unwrap_or_default(),
                    },
                    _ => return None,
                }
            }
            "progress" => Event::Progress {
                step: text("step")?,
                done: v["done"].as_u64()?,
                total: v["total"].as_u64()?,
            },
            "note" => Event::Note {
                message: text("message")?,
            },
            "command" => Event::Command {
                command: text("command")?,
            },
            _ => return None,
        })
    }

    /// The step the event belongs to, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step }
            | Event::StepDone { step, .. }
            | Event::StepFailed { step, .. }
            | Event::Progress { step, .. } => Some(step),
            Event::Note { .. } | Event::Command { .. } => None,
        }
    }
}

/// Where events go.
pub trait Sink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// A sink that keeps nothing (planning runs, tests that do not look).
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn emit(&self, _: &Event) {}
}

/// A sink that keeps every event, for tests and for replaying to late subscribers.
#[derive(Debug, Default)]
pub struct Recorder {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl Sink for Recorder {
    fn emit(&self, event: &Event) {
        match self.events.lock() {
            Ok(mut e) => e.push(event.clone()),
            Err(p) => p.into_inner().push(event.clone()),
        }
    }
}

/// The handle operations hold: cheap to clone, shared by concurrent steps.
#[derive(Clone)]
pub struct Events {
    sink: Arc<dyn Sink>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    pub fn new(sink: Arc<dyn Sink>) -> Self {
        Self { sink }
    }

    /// Events nobody looks at.
    pub fn discard() -> Self {
        Self::new(Arc::new(Discard))
    }

    pub fn emit(&self, event: Event) {
        match &event {
            Event::StepFailed { step, error, .. } => {
                tracing::info!(target: "paddock::events", step = %step, error = %error, "step failed")
            }
            Event::Command { command } => {
                tracing::debug!(target: "paddock::events", command = %command, "run")
            }
            other => tracing::debug!(target: "paddock::events", event = ?other),
        }
        self.sink.emit(&event);
    }

    pub fn step_started(&self, step: &str) {
        self.emit(Event::StepStarted { step: step.into() });
    }

    pub fn step_done(&self, step: &str, took: Duration) {
        self.emit(Event::StepDone {
            step: step.into(),
            took,
        });
    }

    pub fn step_failed(&self, step: &str, took: Duration, error: &str) {
        self.emit(Event::StepFailed {
            step: step.into(),
            took,
            error: error.into(),
        });
    }

    pub fn progress(&self, step: &str, done: u64, total: u64) {
        self.emit(Event::Progress {
            step: step.into(),
            done,
            total,
        });
    }

    /// Progress of `step` reported in parts, emitted as their sum and only when it changes.
    pub fn step_progress(&self, step: &str) -> StepProgress {
        StepProgress {
            events: self.clone(),
            step: step.into(),
            state: Mutex::new(PartsState::default()),
        }
    }

    pub fn note(&self, message: &str) {
        self.emit(Event::Note {
            message: message.into(),
        });
    }

    pub fn command(&self, command: &str) {
        self.emit(Event::Command {
            command: command.into(),
        });
    }
}

/// One step's progress made of parts (the workloads a wait goes through one after another,
/// each `done` of `total`), emitted as a [`Event::Progress`] of their sums. Only a change of
/// the sums is emitted, and nothing while the total is 0: waits re-check on every watch
/// event, and most events change nothing a user would see. A part not reported yet counts
/// 0 of 0, so the total grows as the step reaches its later parts.
#[derive(Debug)]
pub struct StepProgress {
    events: Events,
    step: String,
    state: Mutex<PartsState>,
}

#[derive(Debug, Default)]
struct PartsState {
    parts: Vec<(u64, u64)>,
    emitted: Option<(u64, u64)>,
}

impl StepProgress {
    /// Part `part` (counted from 0) is `done` of `total`.
    pub fn report(&self, part: usize, done: u64, total: u64) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if state.parts.len() <= part {
            state.parts.resize(part + 1, (0, 0));
        }
        state.parts[part] = (done, total);
        let sum = state
            .parts
            .iter()
            .fold((0, 0), |(d, t), (pd, pt)| (d + pd, t + pt));
        if sum.1 == 0 || state.emitted == Some(sum) {
            return;
        }
        state.emitted = Some(sum);
        // Emitted under the lock: concurrent reports reach the sink in the order of their sums.
        self.events.progress(&self.step, sum.0, sum.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reaches_the_sink_in_order() {
        let rec = Arc::new(Recorder::default());
        let ev = Events::new(rec.clone());
        ev.step_started("a");
        ev.progress("a", 1, 2);
        ev.step_done("a", Duration::from_millis(5));
        ev.note("n");
        assert_eq!(
            rec.events(),
            vec![
                Event::StepStarted { step: "a".into() },
                Event::Progress {
                    step: "a".into(),
                    done: 1,
                    total: 2
                },
                Event::StepDone {
                    step: "a".into(),
                    took: Duration::from_millis(5)
                },
                Event::Note {
                    message: "n".into()
                },
            ]
        );
        assert_eq!(rec.events()[1].step(), Some("a"));
        assert_eq!(rec.events()[3].step(), None);
    }

    fn progress(done: u64, total: u64) -> Event {
        Event::Progress {
            step: "kube.wait/web".into(),
            done,
            total,
        }
    }

    #[test]
    fn step_progress_sums_its_parts_and_emits_only_changes() {
        let rec = Arc::new(Recorder::default());
        let p = Events::new(rec.clone()).step_progress("kube.wait/web");
        p.report(0, 0, 0);
        p.report(0, 0, 2);
        p.report(0, 0, 2);
        p.report(0, 1, 2);
        p.report(0, 2, 2);
        p.report(1, 0, 0);
        p.report(1, 0, 1);
        p.report(1, 1, 1);
        p.report(1, 1, 1);
        assert_eq!(
            rec.events(),
            vec![
                progress(0, 2),
                progress(1, 2),
                progress(2, 2),
                progress(2, 3),
                progress(3, 3),
            ]
        );
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn every_event_reads_back_from_its_json() {
        let all = [
            Event::StepStarted { step: "a".into() },
            Event::StepDone {
                step: "a".into(),
                took: Duration::from_millis(1500),
            },
            Event::StepFailed {
                step: "a".into(),
                took: Duration::from_millis(2),
                error: "boom".into(),
            },
            Event::Progress {
                step: "restart".into(),
                done: 1,
                total: 3,
            },
            Event::Note {
                message: "n".into(),
            },
            Event::Command {
                command: "helm list".into(),
            },
        ];
        for e in all {
            assert_eq!(Event::from_json(&e.to_json(7)), Some(e.clone()), "{e:?}");
        }
        assert_eq!(Event::from_json(&serde_json::json!({"event": "end"})), None);
    }
}
