//! The commands that change a cluster or look at it: `up`, `down`, `status`, `doctor`.

#![allow(clippy::result_large_err)] // the operations' errors, made once per failure

use super::*;
pub(super) fn up(
    args: &Args,
    spec: &ClusterSpec,
    mut opts: crate::ops::up::UpOptions,
) -> Result<(), Failure> {
    let (origins, applied): (Vec<String>, Vec<Value>) =
        crate::ops::up::load_manifests_from(&args.dir, &spec.body.workloads)?
            .into_iter()
            .unzip();
    opts.origins = origins;
    let rt = runtime()?;
    // The daemon runs with its own timeouts: a run that asks for others runs here.
    if opts.verify_timeout == crate::ops::up::UpOptions::default().verify_timeout
        && let Some(daemon) = remote::daemon(args, &rt)
    {
        let mut req = crate::daemon::model::OperationRequest::new(
            &spec.name,
            crate::daemon::model::OperationKind::Up,
        );
        req.adopt = opts.adopt;
        return remote::run(args, &rt, &daemon, req);
    }
    let rep = reporter(args);
    let mut cx = context(args, rep.events());
    provision(args, &rt, &mut cx.tools, &rep.events())?;
    let result = rt.block_on(async {
        watch_interrupts(&cx);
        crate::ops::up::converge(&cx, spec, &applied, &opts).await
    });
    finish(&rep, crate::ops::outcome::of_up(&spec.name, &result))
}

pub(super) fn down(
    args: &Args,
    cluster: Option<&str>,
    yes: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let name = cluster_name(args, cluster)?;
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
    let mut cx = context(args, crate::engine::events::Events::discard());
    provision(args, &rt, &mut cx.tools, &side_events(args))?;
    let result = rt.block_on(crate::ops::up::down(&cx, &name, yes, confirm))?;
    if args.output == Output::Json {
        let r = json!({"ok": true, "cluster": result.cluster, "deleted": result.deleted, "message": result.message()});
        writeln!(out, "{r}")?;
    } else if !args.quiet {
        writeln!(out, "{}", result.message())?;
    }
    Ok(())
}

/// `kubeconfig`: the YAML, an `export` line, or a merge into the default kubeconfig.
pub(super) fn kubeconfig(
    args: &Args,
    cluster: Option<&str>,
    export: bool,
    merge: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use crate::ops::access;
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let (path, text) = runtime()?
        .block_on(access::fetch(&tools, &name))
        .map_err(Failure::from)?;
    let context = access::context_name(&name);
    let merged = if merge {
        let target = access::default_kubeconfig().ok_or_else(|| {
            Failure::Other("no default kubeconfig: set KUBECONFIG or HOME".into())
        })?;
        let current = access::merge_into(&target, &text).map_err(|e| failed(&e))?;
        Some((target, current))
    } else {
        None
    };
    if args.output == Output::Json {
        let mut r = json!({"ok": true, "cluster": name, "kubeconfig": path, "context": context});
        if let Some((target, current)) = &merged {
            r["mergedInto"] = json!(target);
            r["currentContextSet"] = json!(current);
        }
        writeln!(out, "{r}")?;
    } else if export {
        writeln!(out, "{}", access::export_line(&path))?;
    } else if let Some((target, current)) = merged {
        let then = if current {
            "it is the current context now".to_string()
        } else {
            format!(
                "use it with `kubectl --context {context}` or `kubectl config use-context {context}`"
            )
        };
        writeln!(
            out,
            "merged context {context} into {}; {then}",
            target.display()
        )?;
    } else {
        write!(out, "{text}")?;
    }
    Ok(())
}

pub(super) fn status(
    args: &Args,
    cluster: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let rt = runtime()?;
    let mut cx = context(args, crate::engine::events::Events::discard());
    provision(args, &rt, &mut cx.tools, &side_events(args))?;
    let addons = spec::validate_repo(&args.dir)
        .ok()
        .and_then(|r| r.resolve(&name).ok())
        .map(|s| s.addons)
        .unwrap_or_default();
    let s = rt.block_on(crate::ops::status::collect(&cx, &name, &addons))?;
    if args.output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&s).unwrap_or_default()
        )?;
    } else {
        write!(out, "{}", crate::ops::status::text(&s))?;
        if let Some(live) = &s.live {
            write!(out, "{}", super::inspect::addons_text(&live.addons))?;
        }
    }
    Ok(())
}

pub(super) fn doctor(args: &Args, out: &mut dyn Write) -> Result<(), Failure> {
    let cx = context(args, crate::engine::events::Events::discard());
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
    let checks = runtime()?.block_on(crate::ops::doctor::run(&cx, &claims, clusters));
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
