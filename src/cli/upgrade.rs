//! The commands that run journaled operations: `upgrade`, `restart`, `history`.

use super::*;
use crate::ops::upgrade::Report;
pub(super) fn restart(
    args: &Args,
    cluster: Option<&str>,
    opts: crate::ops::restart::Options,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let rt = runtime()?;
    // The daemon runs with its own limits: a run that asks for others runs here.
    if opts.max_concurrent == remote::MAX_CONCURRENT
        && opts.timeout.as_secs() == remote::TIMEOUT_SECS
        && let Some(daemon) = remote::daemon(args, &rt)
    {
        let mut req = crate::daemon::model::OperationRequest::new(
            &name,
            crate::daemon::model::OperationKind::Restart,
        );
        req.namespaces.clone_from(&opts.namespaces);
        req.stale_only = opts.stale_only;
        return remote::run(args, &rt, &daemon, req);
    }
    let rep = reporter(args);
    let mut cx = context(args, rep.events());
    provision(args, &rt, &mut cx.tools, &rep.events())?;
    let result = rt.block_on(async {
        watch_interrupts(&cx);
        crate::ops::restart::execute(&cx, &name, &opts).await
    });
    finish(&rep, vec![crate::ops::outcome::of_restart(&name, &result)])
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
    let sources = journal.sources()?;
    if args.output == Output::Json {
        let v: Vec<Value> = ops
            .iter()
            .map(|(id, entries)| json!({"op": id, "source": sources.get(id), "entries": entries}))
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
        if let Some(source) = sources.get(&id) {
            writeln!(out, "  source {source}")?;
        }
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
    let rt = runtime()?;
    if !req.dry_run
        && req.max_concurrent == remote::MAX_CONCURRENT
        && req.step_timeout.as_secs() == remote::TIMEOUT_SECS
        && let Some(daemon) = remote::daemon(args, &rt)
    {
        let mut r = crate::daemon::model::OperationRequest::new(
            &spec.name,
            crate::daemon::model::OperationKind::Upgrade,
        );
        r.to.clone_from(&req.to);
        r.strategy = req.strategy.map(|s| match s {
            crate::plan::upgrade::Strategy::Canary => "canary".to_string(),
            crate::plan::upgrade::Strategy::InPlace => "in-place".to_string(),
        });
        r.pause_after.clone_from(&req.pause_after);
        r.grace_secs = req.grace_secs;
        return remote::run(args, &rt, &daemon, r);
    }
    let rep = reporter(args);
    let mut cx = context(args, rep.events());
    if !req.dry_run {
        provision(args, &rt, &mut cx.tools, &rep.events())?;
    }
    let result = rt.block_on(async {
        watch_interrupts(&cx);
        crate::ops::upgrade::execute(&cx, spec, &req).await
    });
    match result {
        Ok(Report::Preview(p)) => print_preview(args, spec, &p, out),
        other => finish(
            &rep,
            vec![crate::ops::outcome::of_upgrade(&spec.name, &other)],
        ),
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
