//! The commands that read without changing anything: `validate`, `plan`, `render`.

use super::*;
pub(super) fn validate(args: &Args, paths: &[PathBuf], out: &mut dyn Write) -> Result<(), Failure> {
    let targets: Vec<(PathBuf, Option<PathBuf>)> = if paths.is_empty() {
        vec![(args.dir.clone(), None)]
    } else {
        paths.iter().map(|p| target_of(p)).collect()
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut counts = json!({ "profiles": 0, "clusters": 0, "addons": 0 });
    for (root, only) in &targets {
        if !root.exists() {
            problems.push(
                spec::Diagnostic::file(&root.display().to_string(), "no such file or directory")
                    .with_help("pass a repository directory or a spec file"),
            );
            continue;
        }
        match spec::validate_repo(root) {
            Ok(repo) => {
                warnings.extend(repo.warnings.iter().cloned());
                for (key, n) in [
                    ("profiles", repo.profiles.len()),
                    ("clusters", repo.clusters.len()),
                    ("addons", repo.addons.len()),
                ] {
                    counts[key] = json!(counts[key].as_u64().unwrap_or(0) + n as u64);
                }
            }
            Err(e) => {
                let file_filter = only.as_ref().map(|f| spec::load::display_path(root, f));
                problems.extend(
                    e.0.into_iter()
                        .filter(|d| file_filter.as_ref().is_none_or(|f| &d.file == f)),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(SpecErrors(problems).into());
    }
    if !args.quiet || args.output == Output::Json {
        print_warnings(&warnings);
    }
    match args.output {
        Output::Json => writeln!(
            out,
            "{}",
            json!({ "ok": true, "checked": counts, "warnings": warnings })
        )?,
        Output::Text => writeln!(
            out,
            "ok: {} profiles, {} clusters, {} addons are valid",
            counts["profiles"], counts["clusters"], counts["addons"]
        )?,
    }
    Ok(())
}

/// A directory is a repository; a file is checked within the repository that holds it.
pub(super) fn target_of(path: &Path) -> (PathBuf, Option<PathBuf>) {
    if path.is_dir() {
        return (path.to_path_buf(), None);
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let in_kind_dir = parent
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| matches!(n, "profiles" | "clusters" | "addons"));
    let root = if in_kind_dir {
        parent
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    } else {
        parent.to_path_buf()
    };
    (root, Some(path.to_path_buf()))
}

/// What exists, when k3d and helm are here to tell; `None` means plan offline.
pub(super) fn observe_for_plan(
    args: &Args,
    spec: &ClusterSpec,
) -> Result<Option<(ClusterState, Vec<String>)>, Failure> {
    let tools = toolchain(args);
    let (Some(k3d), Some(helm)) = (tools.k3d.clone(), tools.helm.clone()) else {
        eprintln!(
            "note: k3d or helm not found: planning as if cluster {} did not exist",
            spec.name
        );
        return Ok(None);
    };
    let rep = crate::engine::events::Events::discard();
    runtime()?.block_on(async {
        let helm = crate::drivers::helm::cli::Helm::detect(&helm)
            .await
            .map_err(|e| Failure::Other(format!("failed to run helm: {e}")))?;
        let k3d = crate::drivers::k3d::cli::K3d::new(k3d);
        let (state, registries, _) =
            crate::ops::up::observe(spec, &k3d, &helm, &tools, &rep, false, false).await?;
        Ok(Some((state, registries)))
    })
}

pub(super) fn print_plan(
    args: &Args,
    spec: &ClusterSpec,
    offline: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let observed = if offline {
        None
    } else {
        observe_for_plan(args, spec)?
    };
    let (state, registries) = observed.unwrap_or((ClusterState::Absent, Vec::new()));
    let plan = plan::up(spec, &state, &applied_objects(args, spec)?, &registries);
    if args.output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        )?;
        return Ok(());
    }
    write!(out, "{}", plan_text(&plan))?;
    Ok(())
}

/// The human-readable plan.
pub fn plan_text(plan: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Plan for cluster `{}` (profile `{}`): the cluster {}; `up` would run {} steps in {} groups.\n",
        plan.cluster,
        plan.profile,
        plan.observed.describe(),
        plan.steps.len(),
        plan.groups.len()
    ));
    s.push_str(&format!("Spec hash: {}\n", plan.spec_hash));
    for (i, group) in plan.groups.iter().enumerate() {
        let parallel = if group.len() > 1 {
            " (in parallel)"
        } else {
            ""
        };
        s.push_str(&format!("\nGroup {}{parallel}\n", i + 1));
        for id in group {
            let Some(step) = plan.steps.iter().find(|st| &st.id == id) else {
                continue;
            };
            s.push_str(&format!("  {}\n", step.id));
            if !step.needs.is_empty() {
                s.push_str(&format!("    after: {}\n", step.needs.join(", ")));
            }
            for line in describe(&plan.cluster, &step.action) {
                s.push_str(&format!("    {line}\n"));
            }
        }
    }
    if !plan.addon_groups.is_empty() {
        let order: Vec<String> = plan
            .addon_groups
            .iter()
            .map(|g| {
                if g.len() > 1 {
                    format!("[{}]", g.join(", "))
                } else {
                    g.join("")
                }
            })
            .collect();
        s.push_str(&format!("\nAddon order: {}\n", order.join(" → ")));
    }
    for note in &plan.notes {
        s.push_str(&format!("note: {note}\n"));
    }
    s
}

pub(super) fn indent(text: &str, by: &str) -> Vec<String> {
    text.lines().map(|l| format!("{by}{l}")).collect()
}

pub(super) fn describe(cluster: &str, action: &Action) -> Vec<String> {
    match action {
        Action::CreateCluster { config } => {
            let mut v = vec![format!(
                "k3d cluster create {cluster} --config -   with config:"
            )];
            v.extend(indent(&yaml(config), "  "));
            v
        }
        Action::EnsureRegistry { registry } => vec![format!(
            "k3d registry create {} -p 127.0.0.1:{} --proxy-remote-url {}   (pull-through cache for {}, kept across clusters)",
            registry.name, registry.port, registry.remote, registry.host
        )],
        Action::ImportImages { images } => {
            vec![format!(
                "k3d image import {} -c {cluster}",
                images.join(" ")
            )]
        }
        Action::ApplyTags {
            version,
            revision,
            tags,
            ..
        } => vec![
            format!(
                "point tags {} at revision {revision}: helm template istio/istiod {version} (revision tags) | server-side apply",
                tags.join(", ")
            ),
            "wait until each tag webhook has a caBundle".into(),
        ],
        Action::WaitNodesReady => vec!["wait until every Node is Ready".into()],
        Action::WaitCoreDns => {
            vec!["wait until Deployment kube-system/coredns is available".into()]
        }
        Action::HelmInstall { release } => {
            let mut v = vec![format!(
                "helm upgrade --install {} {} --repo {} --version {} -n {} --create-namespace",
                release.name, release.chart, release.repo, release.version, release.namespace
            )];
            if release.values.as_object().is_some_and(|m| m.is_empty()) {
                v.push("values: {}".into());
            } else {
                v.push("values:".into());
                v.extend(indent(&yaml(&release.values), "  "));
            }
            v
        }
        Action::WaitReady {
            namespace,
            workloads,
            checks,
            ..
        } => {
            let mut v: Vec<String> = workloads
                .iter()
                .map(|w| format!("wait for {:?} {namespace}/{} to roll out", w.kind, w.name))
                .collect();
            v.extend(checks.iter().map(|c| format!("check: {c}")));
            if v.is_empty() {
                v.push(format!("wait for the release's workloads in {namespace}"));
            }
            v
        }
        Action::Namespace { name, labels } => {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![format!(
                "namespace {name} labels: {}",
                if labels.is_empty() {
                    "(none)".into()
                } else {
                    labels.join(", ")
                }
            )]
        }
        Action::Apply {
            source, objects, ..
        } => {
            let mut v = vec![format!(
                "server-side apply (field manager paddock) of {source}"
            )];
            for o in objects {
                let kind = o.get("kind").and_then(Value::as_str).unwrap_or("?");
                let name = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let ns = o
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                v.push(format!("  {kind} {ns}{name}"));
            }
            v
        }
        Action::VerifyIngress { url, host } => {
            vec![format!(
                "GET {url} with Host: {host} is answered 200 by paddock's probe route"
            )]
        }
        Action::RecordSpec { record } => vec![format!(
            "record spec hash {} in ConfigMap {}/{}",
            record.spec_hash,
            plan::SYSTEM_NAMESPACE,
            crate::drivers::kube::RECORD_NAME
        )],
    }
}

pub(super) fn print_render(
    args: &Args,
    spec: &ClusterSpec,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let config = k3d::config(spec);
    let mut releases = istio::releases(spec);
    releases.extend(spec.addons.iter().map(crate::drivers::helm::addon_release));
    if args.output == Output::Json {
        let doc = json!({ "cluster": spec.name, "k3dConfig": config, "releases": releases });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "# k3d config: k3d cluster create {} --config -",
        spec.name
    )?;
    write!(out, "---\n{}", yaml(&config))?;
    for r in releases {
        writeln!(
            out,
            "# values of release {} ({} {} from {}, namespace {})",
            r.name, r.chart, r.version, r.repo, r.namespace
        )?;
        write!(out, "---\n{}", yaml(&r.values))?;
    }
    Ok(())
}

pub(super) fn applied_objects(args: &Args, spec: &ClusterSpec) -> Result<Vec<Value>, Failure> {
    Ok(crate::ops::up::load_manifests(
        &args.dir,
        &spec.body.workloads,
    )?)
}

/// `status`'s addons: a line each, whether it is ready and the command that opens it.
pub(super) fn addons_text(rows: &[crate::ops::status::AddonRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("\naddons\n");
    for a in rows {
        let open = a.open.as_deref().unwrap_or("(no web UI paddock knows)");
        out.push_str(&format!("  {:<12} {:<14} {open}\n", a.name, a.state));
    }
    out
}
