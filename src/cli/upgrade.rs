//! The commands that run journaled operations: `upgrade`, `restart`, `history`.

use super::*;
use crate::ops::up::connect_owned;
pub(super) fn restart(
    args: &Args,
    cluster: Option<&str>,
    opts: crate::ops::restart::Options,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let rep = reporter(args);
    let events = rep.events();
    let journal = open_journal(args, &tools, &name, &events)?;
    let op = format!("restart-{}", jiff::Timestamp::now().as_millisecond());
    let result = runtime()?.block_on(async {
        let (_lock, c) = connect_owned(&tools, &name, "restart").await?;
        journal.record(
            &op,
            "op-started",
            None,
            json!({"namespaces": opts.namespaces, "staleOnly": opts.stale_only}),
        )?;
        Ok(crate::ops::restart::run(&c.kube, &opts, &events).await?)
    });
    match result {
        Ok(report) => {
            let _ = journal.record(
                &op,
                "op-done",
                None,
                serde_json::to_value(&report).unwrap_or_default(),
            );
            rep.result(
                &format!(
                    "restarted {} workload(s); {} already current; {} Job(s) left alone",
                    report.restarted.len(),
                    report.up_to_date.len(),
                    report.jobs_left_alone.len()
                ),
                json!({"ok": true, "cluster": name, "report": report}),
            );
            Ok(())
        }
        Err(e) => {
            let msg = match &e {
                Failure::Other(m) | Failure::RolledBack(m) => m.clone(),
                Failure::Op { message, .. } => message.clone(),
                Failure::BadInput(b) => b.to_string(),
            };
            let _ = journal.record(&op, "op-failed", None, json!({"error": msg}));
            Err(e)
        }
    }
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

pub(super) struct UpgradeArgs {
    pub(super) to: Option<String>,
    pub(super) strategy: Option<StrategyArg>,
    pub(super) dry_run: bool,
    pub(super) pause_after: Option<String>,
    pub(super) grace: Option<u64>,
    pub(super) max_concurrent: usize,
    pub(super) timeout: u64,
}

pub(super) fn upgrade(
    args: &Args,
    spec: &ClusterSpec,
    u: UpgradeArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use crate::plan::upgrade::{Params, Strategy, UpgradeStep};
    let tools = toolchain(args);
    let rep = reporter(args);
    let events = rep.events();
    let journal = open_journal(args, &tools, &spec.name, &events)?;
    let Some(istio_spec) = spec.body.istio.as_ref() else {
        return Err(Failure::Other(format!(
            "cluster {} has no Istio to upgrade",
            spec.name
        )));
    };
    let rt = runtime()?;
    rt.block_on(async {
        let (_lock, c) = connect_owned(&tools, &spec.name, "upgrade").await?;
        let helm = crate::drivers::helm::cli::Helm::detect(tools.need_helm().map_err(|e| failed(&e))?)
            .await
            .map_err(|e| Failure::Other(format!("failed to run helm: {e}")))?;
        let helm = tools
            .settle_children(&spec.name, helm, |m| events.note(m))
            .await
            .map_err(|e| failed(&e))?;
        let (op, params, resumed) = match journal.unfinished()?.filter(|(op, _)| op.starts_with("upgrade-")) {
            Some((op, detail)) => {
                let params: Params = serde_json::from_value(detail)
                    .map_err(|e| Failure::Other(format!("the journal's unfinished upgrade is unreadable: {e}")))?;
                if u.to.as_deref().is_some_and(|t| t != params.to) {
                    return Err(Failure::Other(format!(
                        "an upgrade of cluster {} to {} is unfinished; run `paddock upgrade {}` to continue it first",
                        spec.name, params.to, spec.name
                    )));
                }
                events.note(&format!("continuing the unfinished upgrade {op} ({} → {})", params.from, params.to));
                (op, params, true)
            }
            None => {
                let Some(to) = u.to.clone() else {
                    return Err(Failure::Other("say which version to upgrade to: --to VERSION".into()));
                };
                istio::parse_version(&to).map_err(|e| Failure::Other(format!("--to {to}: {e}")))?;
                let record = c.kube.record().await.map_err(|e| Failure::Other(e.to_string()))?.unwrap_or_default();
                let from = if record.istio_version.is_empty() { istio_spec.version.clone() } else { record.istio_version.clone() };
                let from_v = istio::parse_version(&from).map_err(|e| failed(&e))?;
                let from_rev = if record.istio_revision.is_empty() { istio::revision_for(&from_v) } else { record.istio_revision.clone() };
                let to_v = istio::parse_version(&to).map_err(|e| failed(&e))?;
                let jump = (to_v.minor as i64 - from_v.minor as i64).unsigned_abs();
                let spec_default = match istio_spec.upgrade.strategy {
                    crate::spec::types::Strategy::InPlace => Strategy::InPlace,
                    crate::spec::types::Strategy::Canary => Strategy::Canary,
                };
                let strategy = match u.strategy {
                    Some(StrategyArg::Canary) => Strategy::Canary,
                    Some(StrategyArg::InPlace) => Strategy::InPlace,
                    None if spec_default == Strategy::InPlace && jump > 1 => {
                        events.note(&format!("{from} → {to} is too big a jump in place; using a canary upgrade"));
                        Strategy::Canary
                    }
                    None => spec_default,
                };
                let to_rev = if strategy == Strategy::Canary { istio::revision_for(&to_v) } else { from_rev.clone() };
                let grace_secs = u.grace.unwrap_or_else(|| {
                    crate::spec::validate::parse_duration(&istio_spec.upgrade.grace_period)
                        .map(|d| d.as_secs().max(0) as u64)
                        .unwrap_or(120)
                });
                let op = format!("upgrade-{}", jiff::Timestamp::now().as_millisecond());
                (op, Params { strategy, from, to, from_rev, to_rev, grace_secs }, false)
            }
        };
        let ctx = crate::ops::upgrade::Ctx {
            cluster: &spec.name,
            spec,
            kube: &c.kube,
            helm: &helm,
            kubeconfig: &c.kubeconfig,
            reporter: &events,
            journal: &journal,
            params: params.clone(),
            step_timeout: std::time::Duration::from_secs(u.timeout),
            max_concurrent: u.max_concurrent,
        };
        let steps = crate::plan::upgrade::steps(params.strategy, !crate::plan::upgrade::canary_namespaces(spec).is_empty());
        if u.dry_run {
            let done = if resumed { journal.done_steps(&op)? } else { Vec::new() };
            let state = if resumed { format!(", unfinished operation {op}") } else { String::new() };
            writeln!(out, "upgrade of cluster {}: {} → {} ({:?}, revision {} → {}{state})", spec.name, params.from, params.to, params.strategy, params.from_rev, params.to_rev)?;
            for (i, s) in steps.iter().enumerate() {
                // A done step is re-checked when the operation continues, not blindly skipped.
                let mark = if done.iter().any(|d| d == s.name()) { " [done]" } else { "" };
                writeln!(out, "  {}. {s}{mark}: {}", i + 1, s.describe(&params))?;
            }
            return Ok(());
        }
        let pause_after = match &u.pause_after {
            Some(p) => match p.parse::<UpgradeStep>() {
                Ok(step) if steps.contains(&step) => Some(step),
                _ => {
                    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
                    return Err(Failure::Other(format!("--pause-after {p}: no such step; the steps are {}", names.join(", "))));
                }
            },
            None => None,
        };
        if resumed {
            crate::ops::upgrade::recover_pending(&ctx)
                .await
                .map_err(|e| failed(&e))?;
        }
        if !resumed {
            crate::ops::upgrade::preflight::check(&ctx)
                .await
                .map_err(|e| failed(&e))?;
            journal.record(&op, "op-started", None, serde_json::to_value(&params).unwrap_or_default())?;
        }
        match crate::ops::upgrade::run(&ctx, &op, pause_after).await {
            crate::ops::upgrade::Outcome::Done => {
                c.kube
                    .record_istio(&params.to, &params.to_rev, &istio::releases_for(spec, &params.to, &params.to_rev))
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?;
                if istio_spec.version != params.to {
                    events.note(&format!(
                        "the spec of cluster {} still says Istio {}: set `istio.version: {}` so the next `up` keeps it",
                        spec.name, istio_spec.version, params.to
                    ));
                }
                rep.result(
                    &format!("cluster {} upgraded: Istio {} → {} ({:?})", spec.name, params.from, params.to, params.strategy),
                    json!({"ok": true, "cluster": spec.name, "from": params.from, "to": params.to, "op": op}),
                );
                Ok(())
            }
            crate::ops::upgrade::Outcome::Paused(step) => {
                rep.result(
                    &format!("paused after step {step}; check the cluster, then run `paddock upgrade {}` to continue", spec.name),
                    json!({"ok": true, "cluster": spec.name, "paused": step, "op": op}),
                );
                Ok(())
            }
            crate::ops::upgrade::Outcome::RolledBack { step, error, undone } => {
                let error = chain(&error);
                let msg = format!(
                    "step {step} failed: {error}\nrolled back: undid {}; the cluster is on Istio {} again",
                    if undone.is_empty() { "nothing (nothing had changed)".to_string() } else { undone.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ") },
                    params.from
                );
                rep.result(&format!("✗ {msg}"), json!({"ok": false, "rolledBack": true, "cluster": spec.name, "step": step, "error": error, "undone": undone}));
                Err(Failure::RolledBack(msg))
            }
            crate::ops::upgrade::Outcome::Failed { at, error } => Err(Failure::Other(format!("step {at} failed: {}", chain(&error)))),
        }
    })
}
