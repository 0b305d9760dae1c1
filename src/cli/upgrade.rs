//! The commands that run journaled operations: `upgrade`, `restart`, `history`.

use super::*;
use crate::ops::upgrade::Report;
pub(super) fn restart(
    args: &Args,
    cluster: Option<&str>,
    opts: crate::ops::restart::Options,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let rep = reporter(args);
    let cx = context(args, rep.events());
    let report = runtime()?.block_on(async {
        watch_interrupts(&cx);
        crate::ops::restart::execute(&cx, &name, &opts).await
    })?;
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
    rep.result(&text, json!({"ok": ok, "cluster": name, "report": report}));
    if !ok {
        return Err(Failure::Op {
            message: format!("restart of cluster {name} interrupted"),
            hint: Some(format!(
                "run `paddock restart {name} --stale-only` to restart what is left"
            )),
            code: exit::FAILED,
        });
    }
    Ok(())
}

pub(super) fn history(
    args: &Args,
    cluster: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    // Read-only: works while an operation records.
    let journal = crate::engine::journal::Journal::open_read_only(&tools.state_dir, &name)?;
    say_opened(&journal, &reporter(args).events());
    let ops = journal.operations()?;
    if args.output == Output::Json {
        let v: Vec<Value> = ops
            .iter()
            .map(|(id, entries)| json!({"op": id, "entries": entries}))
            .collect();
        writeln!(out, "{}", json!({"cluster": name, "operations": v}))?;
        return Ok(());
    }
    if ops.is_empty() {
        writeln!(out, "no operations recorded for cluster {name}")?;
    }
    for (id, entries) in ops {
        let outcome = entries
            .iter()
            .rev()
            .find(|e| e.step.is_none() && e.event != "op-started")
            .map(|e| e.event.trim_start_matches("op-").to_string())
            .unwrap_or_else(|| "unfinished".into());
        let started = entries.first().map(|e| e.at.clone()).unwrap_or_default();
        writeln!(out, "{id}  {started}  {outcome}")?;
        for e in entries
            .iter()
            .filter(|e| e.step.is_some() && e.event != "step-started")
        {
            writeln!(
                out,
                "  {} {:<28} {}",
                e.at,
                e.step.as_deref().unwrap_or_default(),
                e.event.trim_start_matches("step-")
            )?;
        }
    }
    Ok(())
}

pub(super) fn upgrade(
    args: &Args,
    spec: &ClusterSpec,
    req: crate::ops::upgrade::Request,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let rep = reporter(args);
    let cx = context(args, rep.events());
    let result = runtime()?.block_on(async {
        watch_interrupts(&cx);
        crate::ops::upgrade::execute(&cx, spec, &req).await
    });
    match result {
        Ok(Report::Preview(p)) => print_preview(args, spec, &p, out),
        Ok(report) => upgrade_result(&rep, spec, &report),
        Err(e) => Err(upgrade_failure(&rep, spec, e)),
    }
}

/// Say how an upgrade ended; an interrupted one is a failure that says how to continue.
pub(super) fn upgrade_result(
    rep: &output::Renderer,
    spec: &ClusterSpec,
    report: &Report,
) -> Result<(), Failure> {
    match report {
        Report::Done { op, params } => rep.result(
            &format!(
                "cluster {} upgraded: Istio {} → {} ({:?})",
                spec.name, params.from, params.to, params.strategy
            ),
            json!({"ok": true, "cluster": spec.name, "from": params.from, "to": params.to, "op": op}),
        ),
        Report::Paused { op, after, .. } => rep.result(
            &format!(
                "paused after step {after}; check the cluster, then run `paddock upgrade {}` to continue",
                spec.name
            ),
            json!({"ok": true, "cluster": spec.name, "paused": after, "op": op}),
        ),
        Report::Interrupted { op, next, .. } => {
            return Err(Failure::Op {
                message: format!(
                    "upgrade of cluster {} interrupted before step {next}; the steps done stay done (operation {op})",
                    spec.name
                ),
                hint: Some(format!("run `paddock upgrade {}` to continue", spec.name)),
                code: exit::FAILED,
            });
        }
        Report::Preview(_) => {}
    }
    Ok(())
}

/// An upgrade's error as the CLI reports it: a rollback says what was undone and exits with
/// its own code.
pub(super) fn upgrade_failure(
    rep: &output::Renderer,
    spec: &ClusterSpec,
    e: crate::ops::upgrade::Error,
) -> Failure {
    use crate::ops::upgrade::Error;
    match e {
        Error::RolledBack {
            step,
            undone,
            from,
            source,
        } => {
            let error = chain(&*source);
            let msg = format!(
                "step {step} failed: {error}\nrolled back: undid {}; the cluster is on Istio {from} again",
                if undone.is_empty() {
                    "nothing (nothing had changed)".to_string()
                } else {
                    undone
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            rep.result(
                &format!("✗ {msg}"),
                json!({"ok": false, "rolledBack": true, "cluster": spec.name, "step": step, "error": error, "undone": undone}),
            );
            Failure::RolledBack(msg)
        }
        Error::Connect(e) => (*e).into(),
        e => failed(&e),
    }
}

fn print_preview(
    args: &Args,
    spec: &ClusterSpec,
    p: &crate::ops::upgrade::Preview,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if args.output == Output::Json {
        writeln!(
            out,
            "{}",
            json!({"ok": true, "cluster": spec.name, "dryRun": p})
        )?;
        return Ok(());
    }
    let params = &p.params;
    let state = match &p.continues {
        Some(op) => format!(", unfinished operation {op}"),
        None => String::new(),
    };
    writeln!(
        out,
        "upgrade of cluster {}: {} → {} ({:?}, revision {} → {}{state})",
        spec.name, params.from, params.to, params.strategy, params.from_rev, params.to_rev
    )?;
    for (i, s) in p.steps.iter().enumerate() {
        // A done step is re-checked when the operation continues, not blindly skipped.
        let mark = if s.done { " [done]" } else { "" };
        writeln!(out, "  {}. {}{mark}: {}", i + 1, s.step, s.describe)?;
    }
    Ok(())
}
