//! The command line: parse arguments, run the command, map the outcome to an exit code.

pub mod output;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::drivers::k3d;
use crate::mesh::istio;
use crate::plan::observed::ClusterState;
use crate::plan::{self, Action, Plan};
use crate::spec::{self, ClusterSpec, SpecErrors};

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const ROLLED_BACK: u8 = 3;
    pub const NOT_OWNED: u8 = 4;
}

#[derive(Debug, Parser)]
#[command(
    name = "paddock",
    version,
    about = "Local k3d clusters with an Istio mesh, from YAML in source control"
)]
pub struct Args {
    /// Repository holding profiles/, clusters/ and addons/.
    #[arg(
        long,
        short = 'C',
        global = true,
        env = "PADDOCK_DIR",
        default_value = "."
    )]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The k3d binary to drive (default: `tools.k3d` in paddock.yaml, then PATH).
    #[arg(long, global = true, env = "PADDOCK_K3D")]
    pub k3d: Option<PathBuf>,
    /// The helm binary to drive (default: `tools.helm` in paddock.yaml, then PATH).
    #[arg(long, global = true, env = "PADDOCK_HELM")]
    pub helm: Option<PathBuf>,
    /// Where paddock keeps locks and kubeconfigs.
    #[arg(long, global = true, env = "PADDOCK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Also print the commands paddock runs.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    Canary,
    InPlace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check profiles, clusters and addons; errors name file, line, column and field.
    Validate {
        /// Repository directories or spec files (default: the repository).
        paths: Vec<PathBuf>,
    },
    /// Show the steps `up` would run, without running them.
    Plan {
        cluster: Option<String>,
        /// Plan as if the cluster did not exist, without looking at it.
        #[arg(long)]
        offline: bool,
    },
    /// Print the generated k3d config and every Helm release's values.
    Render { cluster: Option<String> },
    /// Converge a cluster to its spec.
    Up {
        cluster: Option<String>,
        /// Manage a cluster paddock did not create.
        #[arg(long)]
        adopt: bool,
        /// How long the ingress may take to answer paddock's probe route, in seconds.
        #[arg(long, default_value_t = 120)]
        verify_timeout: u64,
    },
    /// Delete a cluster and everything paddock made for it.
    Down {
        cluster: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Show nodes, revisions, tags, workloads and addons of a cluster.
    Status { cluster: Option<String> },
    /// Check Docker, k3d, helm, kubectl, ports and host limits.
    Doctor,
    /// Upgrade Istio with verification and automatic rollback.
    Upgrade {
        cluster: Option<String>,
        /// Target Istio version (not needed to continue an interrupted or paused upgrade).
        #[arg(long)]
        to: Option<String>,
        /// Default: the spec's `istio.upgrade.strategy`; canary when an in-place jump is too big.
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Print the steps without running them.
        #[arg(long)]
        dry_run: bool,
        /// Stop after this step for a human check; a later `upgrade` continues.
        #[arg(long)]
        pause_after: Option<String>,
        /// Override the spec's grace period before the old revision is removed, in seconds.
        #[arg(long)]
        grace: Option<u64>,
        /// Workloads restarted at the same time.
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// How long one step may wait, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Restart workloads so their proxies match their control plane.
    Restart {
        cluster: Option<String>,
        /// Only these namespaces (repeatable).
        #[arg(long = "namespace", short = 'n')]
        namespaces: Vec<String>,
        /// Only workloads with a pod whose proxy is stale.
        #[arg(long)]
        stale_only: bool,
        /// Workloads restarted at the same time.
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// How long one workload may take, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Replace a cluster blue-green behind the front door.
    Switchover { cluster: Option<String> },
    /// List past operations on a cluster.
    History { cluster: Option<String> },
    /// Run the reconciling daemon.
    Serve,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    // Not locked for the whole run: step events are written from worker threads too.
    let mut out = std::io::stdout();
    let code = run(&args, &mut out);
    let _ = out.flush();
    ExitCode::from(code)
}

/// Run a parsed command, writing results to `out` and diagnostics to stderr.
pub fn run(args: &Args, out: &mut dyn Write) -> u8 {
    let result = match &args.command {
        Command::Validate { paths } => validate(args, paths, out),
        Command::Plan { cluster, offline } => with_spec(args, cluster.as_deref(), |spec| {
            print_plan(args, spec, *offline, out)
        }),
        Command::Render { cluster } => with_spec(args, cluster.as_deref(), |spec| {
            print_render(args, spec, out)
        }),
        Command::Up {
            cluster,
            adopt,
            verify_timeout,
        } => with_spec(args, cluster.as_deref(), |spec| {
            let opts = crate::ops::up::UpOptions {
                adopt: *adopt,
                verify_timeout: std::time::Duration::from_secs(*verify_timeout),
                ..Default::default()
            };
            up(args, spec, opts, out)
        }),
        Command::Down { cluster, yes } => down(args, cluster.as_deref(), *yes, out),
        Command::Status { cluster } => status(args, cluster.as_deref(), out),
        Command::Doctor => doctor(args, out),
        Command::Upgrade {
            cluster,
            to,
            strategy,
            dry_run,
            pause_after,
            grace,
            max_concurrent,
            timeout,
        } => with_spec(args, cluster.as_deref(), |spec| {
            upgrade(
                args,
                spec,
                UpgradeArgs {
                    to: to.clone(),
                    strategy: *strategy,
                    dry_run: *dry_run,
                    pause_after: pause_after.clone(),
                    grace: *grace,
                    max_concurrent: *max_concurrent,
                    timeout: *timeout,
                },
                out,
            )
        }),
        Command::Restart {
            cluster,
            namespaces,
            stale_only,
            max_concurrent,
            timeout,
        } => restart(
            args,
            cluster.as_deref(),
            crate::ops::restart::Options {
                namespaces: namespaces.clone(),
                stale_only: *stale_only,
                max_concurrent: *max_concurrent,
                timeout: std::time::Duration::from_secs(*timeout),
            },
        ),
        Command::History { cluster } => history(args, cluster.as_deref(), out),
        Command::Switchover { .. } => not_yet("switchover", "blue-green switchover"),
        Command::Serve => not_yet("serve", "the daemon"),
    };
    match result {
        Ok(()) => exit::OK,
        Err(Failure::BadInput(errors)) => {
            report_problems(args, &errors, out);
            exit::BAD_INPUT
        }
        Err(Failure::RolledBack(message)) => {
            eprintln!("error: {message}");
            exit::ROLLED_BACK
        }
        Err(Failure::NotOwned(message)) => {
            if args.output == Output::Json {
                let _ = writeln!(out, "{}", json!({ "ok": false, "error": message }));
            }
            eprintln!("error: {message}");
            exit::NOT_OWNED
        }
        Err(Failure::Other(message)) => {
            if args.output == Output::Json {
                let _ = writeln!(out, "{}", json!({ "ok": false, "error": message }));
            }
            eprintln!("error: {message}");
            exit::FAILED
        }
    }
}

enum Failure {
    BadInput(SpecErrors),
    Other(String),
    NotOwned(String),
    RolledBack(String),
}

impl From<crate::ops::up::Error> for Failure {
    fn from(e: crate::ops::up::Error) -> Self {
        match e {
            crate::ops::up::Error::NotOwned(m) => Failure::NotOwned(m),
            other => Failure::Other(other.to_string()),
        }
    }
}

impl From<crate::engine::journal::Error> for Failure {
    fn from(e: crate::engine::journal::Error) -> Self {
        Failure::Other(chain(&e))
    }
}

/// An error and its causes, as one line: "failed to x: because y: because z".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// Open a cluster's journal; a torn last record it removed is said.
fn open_journal(
    tools: &crate::drivers::toolchain::Toolchain,
    cluster: &str,
    rep: &crate::cli::output::Reporter,
) -> Result<crate::engine::journal::Journal, Failure> {
    let journal = crate::engine::journal::Journal::open(&tools.state_dir, cluster)?;
    if let Some(note) = journal.repaired() {
        rep.note(note);
    }
    Ok(journal)
}

impl From<SpecErrors> for Failure {
    fn from(e: SpecErrors) -> Self {
        Failure::BadInput(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(format!("failed to write output: {e}"))
    }
}

fn not_yet(command: &str, part: &str) -> Result<(), Failure> {
    Err(Failure::Other(format!(
        "`paddock {command}` is not yet available in this build ({part}); `validate`, `plan` and `render` are"
    )))
}

fn report_problems(args: &Args, errors: &SpecErrors, out: &mut dyn Write) {
    if args.output == Output::Json {
        let _ = writeln!(out, "{}", json!({ "ok": false, "problems": errors.0 }));
    }
    eprintln!("{errors}");
    let n = errors.0.len();
    eprintln!(
        "{n} problem{} found; nothing was changed",
        if n == 1 { "" } else { "s" }
    );
}

fn validate(args: &Args, paths: &[PathBuf], out: &mut dyn Write) -> Result<(), Failure> {
    let targets: Vec<(PathBuf, Option<PathBuf>)> = if paths.is_empty() {
        vec![(args.dir.clone(), None)]
    } else {
        paths.iter().map(|p| target_of(p)).collect()
    };
    let mut problems = Vec::new();
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
    match args.output {
        Output::Json => writeln!(out, "{}", json!({ "ok": true, "checked": counts }))?,
        Output::Text => writeln!(
            out,
            "ok: {} profiles, {} clusters, {} addons are valid",
            counts["profiles"], counts["clusters"], counts["addons"]
        )?,
    }
    Ok(())
}

/// A directory is a repository; a file is checked within the repository that holds it.
fn target_of(path: &Path) -> (PathBuf, Option<PathBuf>) {
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

fn with_spec(
    args: &Args,
    cluster: Option<&str>,
    f: impl FnOnce(&ClusterSpec) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let repo = spec::validate_repo(&args.dir)?;
    let name = repo.choose_cluster(cluster)?;
    let spec = repo.resolve(&name)?;
    f(&spec)
}

fn yaml(value: &impl serde::Serialize) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// What exists, when k3d and helm are here to tell; `None` means plan offline.
fn observe_for_plan(
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
    let rep = crate::cli::output::Reporter::new(
        crate::cli::output::Mode::Quiet,
        0,
        Box::new(std::io::sink()),
    );
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

fn print_plan(
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

fn indent(text: &str, by: &str) -> Vec<String> {
    text.lines().map(|l| format!("{by}{l}")).collect()
}

fn describe(cluster: &str, action: &Action) -> Vec<String> {
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

fn print_render(args: &Args, spec: &ClusterSpec, out: &mut dyn Write) -> Result<(), Failure> {
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

fn applied_objects(args: &Args, spec: &ClusterSpec) -> Result<Vec<Value>, Failure> {
    crate::ops::up::load_manifests(&args.dir, &spec.body.workloads).map_err(Failure::Other)
}

fn toolchain(args: &Args) -> crate::drivers::toolchain::Toolchain {
    let repo_tools = spec::load(&args.dir).repo.config.tools;
    crate::drivers::toolchain::Toolchain::resolve(
        args.k3d.as_deref(),
        args.helm.as_deref(),
        &repo_tools,
        args.state_dir.as_deref(),
    )
}

fn reporter(args: &Args) -> std::sync::Arc<crate::cli::output::Reporter> {
    let mode = match (args.output, args.quiet) {
        (Output::Json, _) => crate::cli::output::Mode::Json,
        (_, true) => crate::cli::output::Mode::Quiet,
        _ => crate::cli::output::Mode::Text,
    };
    std::sync::Arc::new(crate::cli::output::Reporter::new(
        mode,
        args.verbose,
        Box::new(std::io::stdout()),
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("failed to start the async runtime: {e}")))
}

/// Ctrl-C once: start no new step, let running ones finish. Twice: stop now.
fn watch_interrupts(
    reporter: std::sync::Arc<crate::cli::output::Reporter>,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            reporter.note(
                "interrupted: finishing the steps already running (Ctrl-C again to stop at once)",
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancel
}

fn up(
    args: &Args,
    spec: &ClusterSpec,
    mut opts: crate::ops::up::UpOptions,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (origins, applied): (Vec<String>, Vec<Value>) =
        crate::ops::up::load_manifests_from(&args.dir, &spec.body.workloads)
            .map_err(Failure::Other)?
            .into_iter()
            .unzip();
    opts.origins = origins;
    let tools = toolchain(args);
    let rep = reporter(args);
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
    let journal = open_journal(&tools, &spec.name, &rep)?;
    if spec.body.istio.is_some()
        && journal
            .unfinished()?
            .is_some_and(|(op, _)| op.starts_with("upgrade-"))
    {
        upgrade(args, spec, upgrade_args(None), out)?;
    }
    let converge = || {
        rt.block_on(async {
            let cancel = watch_interrupts(rep.clone());
            crate::ops::up::up(spec, &applied, &tools, rep.clone(), cancel, &opts).await
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
                &format!("✗ {e}"),
                json!({"ok": false, "cluster": spec.name, "error": e.to_string()}),
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

fn cluster_name(args: &Args, cluster: Option<&str>) -> Result<String, Failure> {
    if let Some(c) = cluster {
        return Ok(c.to_string());
    }
    let repo = spec::validate_repo(&args.dir)?;
    Ok(repo.choose_cluster(None)?)
}

fn down(args: &Args, cluster: Option<&str>, yes: bool, out: &mut dyn Write) -> Result<(), Failure> {
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

fn status(args: &Args, cluster: Option<&str>, out: &mut dyn Write) -> Result<(), Failure> {
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

fn doctor(args: &Args, out: &mut dyn Write) -> Result<(), Failure> {
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

/// Lock and connect to an existing cluster paddock owns.
async fn connect_owned(
    tools: &crate::drivers::toolchain::Toolchain,
    cluster: &str,
    command: &str,
) -> Result<(crate::engine::lock::ClusterLock, crate::ops::up::Connected), Failure> {
    let k3d = crate::drivers::k3d::cli::K3d::new(tools.need_k3d().map_err(Failure::Other)?);
    let lock = crate::engine::lock::acquire(&tools.state_dir, cluster, command)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let info = k3d
        .find(cluster)
        .await
        .map_err(|e| {
            Failure::Other(format!(
                "could not tell whether cluster {cluster} exists: {e}"
            ))
        })?
        .ok_or_else(|| {
            Failure::Other(format!(
                "cluster {cluster} does not exist; `paddock up {cluster}` creates it"
            ))
        })?;
    if !info.owned() {
        return Err(Failure::NotOwned(format!(
            "cluster {cluster} was not created by paddock; paddock leaves it alone"
        )));
    }
    let c = crate::ops::up::connect(&k3d, tools, info).await?;
    Ok((lock, c))
}

fn restart(
    args: &Args,
    cluster: Option<&str>,
    opts: crate::ops::restart::Options,
) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let rep = reporter(args);
    let journal = open_journal(&tools, &name, &rep)?;
    let op = format!("restart-{}", jiff::Timestamp::now().as_millisecond());
    let result = runtime()?.block_on(async {
        let (_lock, c) = connect_owned(&tools, &name, "restart").await?;
        journal.record(
            &op,
            "op-started",
            None,
            json!({"namespaces": opts.namespaces, "staleOnly": opts.stale_only}),
        )?;
        crate::ops::restart::run(&c.kube, &opts, &rep)
            .await
            .map_err(Failure::Other)
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
                Failure::Other(m) | Failure::NotOwned(m) | Failure::RolledBack(m) => m.clone(),
                Failure::BadInput(b) => b.to_string(),
            };
            let _ = journal.record(&op, "op-failed", None, json!({"error": msg}));
            Err(e)
        }
    }
}

fn history(args: &Args, cluster: Option<&str>, out: &mut dyn Write) -> Result<(), Failure> {
    let name = cluster_name(args, cluster)?;
    let tools = toolchain(args);
    let journal = open_journal(&tools, &name, &reporter(args))?;
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

struct UpgradeArgs {
    to: Option<String>,
    strategy: Option<StrategyArg>,
    dry_run: bool,
    pause_after: Option<String>,
    grace: Option<u64>,
    max_concurrent: usize,
    timeout: u64,
}

fn upgrade(
    args: &Args,
    spec: &ClusterSpec,
    u: UpgradeArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    use crate::plan::upgrade::{Params, Strategy, UpgradeStep};
    let tools = toolchain(args);
    let rep = reporter(args);
    let journal = open_journal(&tools, &spec.name, &rep)?;
    let Some(istio_spec) = spec.body.istio.as_ref() else {
        return Err(Failure::Other(format!(
            "cluster {} has no Istio to upgrade",
            spec.name
        )));
    };
    let rt = runtime()?;
    rt.block_on(async {
        let (_lock, c) = connect_owned(&tools, &spec.name, "upgrade").await?;
        let helm = crate::drivers::helm::cli::Helm::detect(tools.need_helm().map_err(Failure::Other)?)
            .await
            .map_err(|e| Failure::Other(format!("failed to run helm: {e}")))?;
        let helm = tools
            .settle_children(&spec.name, helm, |m| rep.note(m))
            .await
            .map_err(Failure::Other)?;
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
                rep.note(&format!("continuing the unfinished upgrade {op} ({} → {})", params.from, params.to));
                (op, params, true)
            }
            None => {
                let Some(to) = u.to.clone() else {
                    return Err(Failure::Other("say which version to upgrade to: --to VERSION".into()));
                };
                istio::parse_version(&to).map_err(|e| Failure::Other(format!("--to {to}: {e}")))?;
                let record = c.kube.record().await.map_err(|e| Failure::Other(e.to_string()))?.unwrap_or_default();
                let from = if record.istio_version.is_empty() { istio_spec.version.clone() } else { record.istio_version.clone() };
                let from_v = istio::parse_version(&from).map_err(Failure::Other)?;
                let from_rev = if record.istio_revision.is_empty() { istio::revision_for(&from_v) } else { record.istio_revision.clone() };
                let to_v = istio::parse_version(&to).map_err(Failure::Other)?;
                let jump = (to_v.minor as i64 - from_v.minor as i64).unsigned_abs();
                let spec_default = match istio_spec.upgrade.strategy {
                    crate::spec::types::Strategy::InPlace => Strategy::InPlace,
                    crate::spec::types::Strategy::Canary => Strategy::Canary,
                };
                let strategy = match u.strategy {
                    Some(StrategyArg::Canary) => Strategy::Canary,
                    Some(StrategyArg::InPlace) => Strategy::InPlace,
                    None if spec_default == Strategy::InPlace && jump > 1 => {
                        rep.note(&format!("{from} → {to} is too big a jump in place; using a canary upgrade"));
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
            reporter: &rep,
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
        if !resumed {
            crate::ops::upgrade::preflight::check(&ctx)
                .await
                .map_err(|e| Failure::Other(crate::engine::error_chain(&e)))?;
            journal.record(&op, "op-started", None, serde_json::to_value(&params).unwrap_or_default())?;
        }
        match crate::ops::upgrade::run(&ctx, &op, pause_after).await {
            crate::ops::upgrade::Outcome::Done => {
                c.kube
                    .record_istio(&params.to, &params.to_rev, &istio::releases_for(spec, &params.to, &params.to_rev))
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?;
                if istio_spec.version != params.to {
                    rep.note(&format!(
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
                let error = crate::engine::error_chain(&error);
                let msg = format!(
                    "step {step} failed: {error}\nrolled back: undid {}; the cluster is on Istio {} again",
                    if undone.is_empty() { "nothing (nothing had changed)".to_string() } else { undone.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ") },
                    params.from
                );
                rep.result(&format!("✗ {msg}"), json!({"ok": false, "rolledBack": true, "cluster": spec.name, "step": step, "error": error, "undone": undone}));
                Err(Failure::RolledBack(msg))
            }
            crate::ops::upgrade::Outcome::Failed { at, error } => Err(Failure::Other(format!("step {at} failed: {}", crate::engine::error_chain(&error)))),
        }
    })
}
