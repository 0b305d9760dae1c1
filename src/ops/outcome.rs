//! How an operation ended, as a user reads it: the result line (a one-line summary and its
//! JSON) and the error it ends with, with what to do and the exit code. The CLI prints it;
//! the daemon sends it to its clients, which print it the same way — so an operation reads
//! the same whether it ran here or in the daemon.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::chain;
use crate::ops::restart;
use crate::ops::up::{self, Converged};
use crate::ops::upgrade::{self, Report};

/// How a command ends, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    Ok,
    Failed,
    BadInput,
    RolledBack,
    NotOwned,
}

impl Exit {
    /// The documented exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::RolledBack => 3,
            Exit::NotOwned => 4,
        }
    }
}

/// The error an operation ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ending {
    /// The error and its causes, one line (a rollback adds what was undone on a second).
    pub message: String,
    pub hint: Option<String>,
    pub exit: Exit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The result line's text, if the operation prints one.
    pub summary: Option<String>,
    /// The result line as JSON (`--output json`).
    pub result: Option<Value>,
    /// `None`: it succeeded.
    pub error: Option<Ending>,
}

impl Outcome {
    fn line(summary: String, result: Value) -> Self {
        Self {
            summary: Some(summary),
            result: Some(result),
            error: None,
        }
    }

    fn failed(message: String, hint: Option<String>, exit: Exit) -> Self {
        Self {
            summary: None,
            result: None,
            error: Some(Ending {
                message,
                hint,
                exit,
            }),
        }
    }

    fn and_failed(mut self, message: String, hint: Option<String>, exit: Exit) -> Self {
        self.error = Self::failed(message, hint, exit).error;
        self
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn exit(&self) -> Exit {
        self.error.as_ref().map_or(Exit::Ok, |e| e.exit)
    }
}

/// `up`: the upgrade it ran first (if any) and the convergence, or why it failed.
pub fn of_up(cluster: &str, r: &Result<Converged, up::Error>) -> Vec<Outcome> {
    match r {
        Ok(c) => {
            let mut v: Vec<Outcome> = c
                .upgrade
                .iter()
                .map(|u| of_upgrade_report(cluster, u))
                .collect();
            v.push(converged(&c.up));
            v
        }
        Err(up::Error::Upgrade(e)) => vec![of_upgrade_error(cluster, e)],
        Err(e) => {
            let exit = match e {
                up::Error::NotOwned { .. } => Exit::NotOwned,
                _ => Exit::Failed,
            };
            vec![
                Outcome::line(
                    format!("✗ {}", chain(e)),
                    json!({"ok": false, "cluster": cluster, "error": chain(e), "hint": e.what_to_do()}),
                )
                .and_failed(chain(e), e.what_to_do(), exit),
            ]
        }
    }
}

fn converged(report: &up::UpReport) -> Outcome {
    let s = &report.summary;
    let summary = if report.up_to_date {
        format!(
            "cluster {} is up to date with its spec; nothing to do",
            report.cluster
        )
    } else {
        format!(
            "cluster {} converged: {} steps in {:.1}s (critical path {:.1}s, {:.1}s if run one by one)",
            report.cluster,
            report.steps_run,
            s.wall.as_secs_f64(),
            s.critical_path.as_secs_f64(),
            s.sum.as_secs_f64()
        )
    };
    let steps: serde_json::Map<String, Value> = s
        .steps
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.as_millis() as u64)))
        .collect();
    let a = &report.access;
    let text = std::iter::once(summary)
        .chain(a.lines())
        .collect::<Vec<_>>()
        .join("\n");
    Outcome::line(
        text,
        json!({"ok": true, "cluster": report.cluster, "upToDate": report.up_to_date,
            "stepsRun": report.steps_run, "wallMs": s.wall.as_millis() as u64,
            "criticalPathMs": s.critical_path.as_millis() as u64, "sumMs": s.sum.as_millis() as u64,
            "steps": steps, "notes": report.notes,
            "kubeconfig": a.kubeconfig, "context": a.context, "urls": a.urls,
            "versions": a.versions}),
    )
}

/// `upgrade`: how it ended (a dry run is printed by the CLI, not summarised here).
pub fn of_upgrade(cluster: &str, r: &Result<Report, upgrade::Error>) -> Outcome {
    match r {
        Ok(report) => of_upgrade_report(cluster, report),
        Err(e) => of_upgrade_error(cluster, e),
    }
}

fn of_upgrade_report(cluster: &str, report: &Report) -> Outcome {
    match report {
        Report::Done { op, params } => Outcome::line(
            format!(
                "cluster {cluster} upgraded: Istio {} → {} ({:?})",
                params.from, params.to, params.strategy
            ),
            json!({"ok": true, "cluster": cluster, "from": params.from, "to": params.to, "op": op}),
        ),
        Report::Paused { op, after, .. } => Outcome::line(
            format!(
                "paused after step {after}; check the cluster, then run `paddock upgrade {cluster}` to continue"
            ),
            json!({"ok": true, "cluster": cluster, "paused": after, "op": op}),
        ),
        Report::Interrupted { op, next, .. } => Outcome::failed(
            format!(
                "upgrade of cluster {cluster} interrupted before step {next}; the steps done stay done (operation {op})"
            ),
            Some(format!("run `paddock upgrade {cluster}` to continue")),
            Exit::Failed,
        ),
        Report::Preview(p) => Outcome::line(
            format!(
                "upgrade of cluster {cluster}: {} → {} ({} steps)",
                p.params.from,
                p.params.to,
                p.steps.len()
            ),
            json!({"ok": true, "cluster": cluster, "dryRun": p}),
        ),
    }
}

fn of_upgrade_error(cluster: &str, e: &upgrade::Error) -> Outcome {
    match e {
        upgrade::Error::RolledBack {
            step,
            undone,
            from,
            source,
        } => {
            let error = chain(&**source);
            let undid = if undone.is_empty() {
                "nothing (nothing had changed)".to_string()
            } else {
                undone
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let msg = format!(
                "step {step} failed: {error}\nrolled back: undid {undid}; the cluster is on Istio {from} again"
            );
            Outcome::line(
                format!("✗ {msg}"),
                json!({"ok": false, "rolledBack": true, "cluster": cluster, "step": step, "error": error, "undone": undone}),
            )
            .and_failed(msg, None, Exit::RolledBack)
        }
        upgrade::Error::Connect(e) => connect_failed(e),
        e => Outcome::failed(chain(e), None, Exit::Failed),
    }
}

fn connect_failed(e: &up::Error) -> Outcome {
    let exit = match e {
        up::Error::NotOwned { .. } => Exit::NotOwned,
        _ => Exit::Failed,
    };
    Outcome::failed(chain(e), e.what_to_do(), exit)
}

/// `restart`: what it restarted, or why it failed; an interrupted restart says what is left.
pub fn of_restart(cluster: &str, r: &Result<restart::Report, restart::Error>) -> Outcome {
    let report = match r {
        Ok(report) => report,
        Err(restart::Error::Connect(e)) => return connect_failed(e),
        Err(e) => return Outcome::failed(chain(e), None, Exit::Failed),
    };
    let mut text = format!(
        "restarted {} workload(s); {} already current; {} Job(s) left alone",
        report.restarted.len(),
        report.up_to_date.len(),
        report.jobs_left_alone.len()
    );
    if !report.not_started.is_empty() {
        text.push_str(&format!(
            "; interrupted before {} more: {}",
            report.not_started.len(),
            report.not_started.join(", ")
        ));
    }
    let ok = report.not_started.is_empty();
    let line = Outcome::line(
        text,
        json!({"ok": ok, "cluster": cluster, "report": report}),
    );
    if ok {
        return line;
    }
    line.and_failed(
        format!("restart of cluster {cluster} interrupted"),
        Some(format!(
            "run `paddock restart {cluster} --stale-only` to restart what is left"
        )),
        Exit::Failed,
    )
}
