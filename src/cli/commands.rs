//! The commands that change a cluster or look at it: `up`, `down`, `status`, `doctor`.

#![allow(clippy::result_large_err)] // the operations' errors, made once per failure

use super::*;
pub(super) fn up(
    args: &Args,
    spec: &ClusterSpec,
    mut opts: crate::ops::up::UpOptions,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (origins, applied): (Vec<String>, Vec<Value>) =
        crate::ops::up::load_manifests_from(&args.dir, &spec.body.workloads)?
            .into_iter()
            .unzip();
    opts.origins = origins;
    let tools = toolchain(args);
    let rep = reporter(args);
    let events = rep.events();
    let rt = runtime()?;
    let upgrade_args = |to: Option<String>| UpgradeArgs {
        to,
        strategy: None,
        dry_run: false,
        pause_after: None,
        grace: None,
        max_concurrent: 4,
        timeout: 300,
    };
    // An interrupted upgrade is continued first.
    let journal = open_journal(args, &tools, &spec.name, &events)?;
    if spec.body.istio.is_some()
        && journal
            .unfinished()?
            .is_some_and(|(op, _)| op.starts_with("upgrade-"))
    {
        upgrade(args, spec, upgrade_args(None), out)?;
    }
    let converge = || {
        rt.block_on(async {
            let cancel = watch_interrupts(events.clone());
            crate::ops::up::up(spec, &applied, &tools, events.clone(), cancel, &opts).await
        })
    };
    let report = match converge() {
        // A changed `istio.version` is an upgrade by the spec's strategy, never a reinstall;
        // `up` learns it from the same observation it plans from.
        Err(crate::ops::up::Error::UpgradeDue(to)) => {
            upgrade(args, spec, upgrade_args(Some(to)), out)?;
            converge()
        }
        other => other,
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            rep.result(
                &format!("✗ {}", chain(&e)),
                json!({"ok": false, "cluster": spec.name, "error": chain(&e), "hint": e.what_to_do()}),
            );
            return Err(e.into());
        }
    };
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
    rep.result(
        &summary,
        json!({"ok": true, "cluster": report.cluster, "upToDate": report.up_to_date,
            "stepsRun": report.steps_run, "wallMs": s.wall.as_millis() as u64,
            "criticalPathMs": s.critical_path.as_millis() as u64, "sumMs": s.sum.as_millis() as u64,
            "steps": s.steps.iter().map(|(k, v)| (k.clone(), json!(v.as_millis() as u64))).collect::<serde_json::Map<String, Value>>(),
            "notes": report.notes}),
    );
    Ok(())
}

pub(super) fn down(
    args: &Args,
    cluster: Option<&str>,
    yes: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let rt = runtime()?;
    let confirm = |question: &str| {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "refusing to delete without confirmation on a non-interactive input; pass --yes"
            );
            return false;
        }
        eprint!("{question}");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    let result = rt.block_on(crate::ops::up::down(&name, &tools, yes, confirm))?;
    if args.output == Output::Json {
        let mut r = result;
        r["ok"] = json!(true);
        writeln!(out, "{r}")?;
    } else if !args.quiet {
        writeln!(out, "{}", result["message"].as_str().unwrap_or_default())?;
    }
    Ok(())
}

pub(super) fn status(
    args: &Args,
    cluster: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let s = runtime()?.block_on(crate::ops::status::collect(&name, &tools))?;
    if args.output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&s).unwrap_or_default()
        )?;
    } else {
        write!(out, "{}", crate::ops::status::text(&s))?;
    }
    Ok(())
}

pub(super) fn doctor(args: &Args, out: &mut dyn Write) -> Result<(), Failure> {
    let tools = toolchain(args);
    let mut claims = Vec::new();
    let mut clusters = 0;
    let loaded = spec::load(&args.dir);
    for name in loaded.repo.clusters.keys() {
        if let Ok(spec) = loaded.repo.resolve(name) {
            clusters += 1;
            for c in k3d::host_port_claims(&spec.body.k3d) {
                claims.push(crate::ops::doctor::PortClaim {
                    port: c.port,
                    cluster: spec.name.clone(),
                    field: format!("k3d.{}", c.field),
                });
            }
        }
    }
    let checks = runtime()?.block_on(crate::ops::doctor::run(&tools, &claims, clusters));
    let ok = checks.iter().all(|c| c.ok);
    if args.output == Output::Json {
        writeln!(out, "{}", json!({"ok": ok, "checks": checks}))?;
    } else {
        for c in &checks {
            let mark = if !c.ok {
                "✗"
            } else if c.warning {
                "!"
            } else {
                "✓"
            };
            writeln!(out, "{mark} {:<28} {}", c.name, c.detail)?;
            if let Some(fix) = c.fix.as_ref().filter(|_| !c.ok || c.warning) {
                writeln!(out, "  fix: {fix}")?;
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::Other(format!(
            "{} check(s) failed; see the fixes above",
            checks.iter().filter(|c| !c.ok).count()
        )))
    }
}
