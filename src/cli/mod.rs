//! The command line: parse arguments, run the command, map the outcome to an exit code.

mod commands;
mod inspect;
mod open;
pub mod output;
mod remote;
mod tools;
mod upgrade;

use commands::{doctor, down, kubeconfig, status, up};
pub use inspect::plan_text;
use inspect::{print_plan, print_render, validate};
use tools::{provision, side_events, toolchain};
use upgrade::{history, restart, upgrade};

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
    /// Never download k3d or helm (by default paddock downloads pinned releases into its cache
    /// when they are missing or too old).
    #[arg(long, global = true)]
    pub no_download: bool,
    /// Where paddock keeps locks and kubeconfigs.
    #[arg(long, global = true, env = "PADDOCK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Run `up`, `upgrade` and `restart` here even when a daemon serves the state directory.
    /// `PADDOCK_NO_DAEMON` takes 1/0, true/false, yes/no, on/off.
    #[arg(long, global = true, env = "PADDOCK_NO_DAEMON", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_daemon: bool,
    /// Also print the commands paddock runs; repeated, more diagnostics on stderr (-vv debug,
    /// -vvv trace). `RUST_LOG` overrides the diagnostics filter.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Format of the diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PADDOCK_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    Canary,
    InPlace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Print a running cluster's kubeconfig (as k3d writes it; kept under the state directory).
    Kubeconfig {
        cluster: Option<String>,
        /// Print `export KUBECONFIG=PATH` for the kept file instead (`eval "$(paddock kubeconfig --export)"`).
        #[arg(long, conflicts_with = "merge")]
        export: bool,
        /// Merge the cluster, user and context into the default kubeconfig (the first file in
        /// KUBECONFIG, else ~/.kube/config), replacing entries of the same names.
        #[arg(long)]
        merge: bool,
    },
    /// Show nodes, revisions, tags, workloads and addons of a cluster.
    Status { cluster: Option<String> },
    /// Check Docker, k3d, helm, kubectl, ports and host limits.
    Doctor,
    /// Reach an addon's web UI (kiali, grafana, jaeger, prometheus) on 127.0.0.1 through the
    /// API server, until Ctrl-C.
    #[command(override_usage = "paddock open [OPTIONS] [CLUSTER] <ADDON>")]
    Open {
        /// [CLUSTER] ADDON: the cluster (default: the repository's) and the addon.
        #[arg(value_name = "NAME", num_args = 1..=2, required = true)]
        names: Vec<String>,
        /// The local port (default: the addon's usual one, else a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Do not open a browser.
        #[arg(long, env = "PADDOCK_NO_BROWSER")]
        no_browser: bool,
    },
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
    /// Run the daemon: keep every cluster in line with its repository, run the schedules,
    /// answer the API on a unix socket. Settings: these flags, then `PADDOCK_*` variables,
    /// then paddock.yaml `serve:`.
    Serve {
        /// A git remote to follow instead of the repository folder.
        #[arg(long)]
        repo: Option<String>,
        /// The branch of --repo to follow [default: main].
        #[arg(long)]
        branch: Option<String>,
        /// How often --repo is fetched (`30s`, `5m`) [default: 60s].
        #[arg(long)]
        poll_interval: Option<String>,
        /// `apply` what `up` would change, or only `report` it as drift [default: apply].
        #[arg(long)]
        mode: Option<String>,
        /// The API's unix socket [default: paddock.sock in the state directory].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Also serve /metrics on this loopback address (`127.0.0.1:9464`).
        #[arg(long)]
        metrics_address: Option<String>,
    },
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    diagnostics(&args);
    // Not locked for the whole run: step events are written from worker threads too.
    let mut out = std::io::stdout();
    let code = run(&args, &mut out);
    let _ = out.flush();
    ExitCode::from(code)
}

/// Diagnostics through `tracing`, on stderr: warnings by default, more with each `-v` after
/// the first, or whatever `RUST_LOG` says; JSON lines with `--log-format json`.
fn diagnostics(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let level = match args.verbose {
        // The daemon logs what it does.
        0 | 1 if matches!(args.command, Command::Serve { .. }) => "paddock=info,warn",
        0 | 1 => "warn",
        2 => "paddock=debug,warn",
        _ => "paddock=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
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
            up(args, spec, opts)
        }),
        Command::Down { cluster, yes } => down(args, cluster.as_deref(), *yes, out),
        Command::Kubeconfig {
            cluster,
            export,
            merge,
        } => kubeconfig(args, cluster.as_deref(), *export, *merge, out),
        Command::Status { cluster } => status(args, cluster.as_deref(), out),
        Command::Doctor => doctor(args, out),
        Command::Open {
            names,
            port,
            no_browser,
        } => open::open(args, names, *port, *no_browser, out),
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
                crate::ops::upgrade::Request {
                    to: to.clone(),
                    strategy: strategy.map(|s| match s {
                        StrategyArg::Canary => crate::plan::upgrade::Strategy::Canary,
                        StrategyArg::InPlace => crate::plan::upgrade::Strategy::InPlace,
                    }),
                    dry_run: *dry_run,
                    pause_after: pause_after.clone(),
                    grace_secs: *grace,
                    max_concurrent: *max_concurrent,
                    step_timeout: std::time::Duration::from_secs(*timeout),
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
        Command::Serve {
            repo,
            branch,
            poll_interval,
            mode,
            socket,
            metrics_address,
        } => serve(
            args,
            crate::daemon::config::Layer {
                repo: repo.clone(),
                branch: branch.clone(),
                poll_interval: poll_interval.clone(),
                mode: mode.clone(),
                socket: socket.clone(),
                metrics_address: metrics_address.clone(),
            },
        ),
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
        Err(Failure::Other(message)) => {
            if args.output == Output::Json {
                let _ = writeln!(out, "{}", json!({ "ok": false, "error": message }));
            }
            eprintln!("error: {message}");
            exit::FAILED
        }
        Err(Failure::Op {
            message,
            hint,
            code,
        }) => {
            if args.output == Output::Json {
                let _ = writeln!(
                    out,
                    "{}",
                    json!({ "ok": false, "error": message, "hint": hint })
                );
            }
            eprintln!("error: {message}");
            if let Some(hint) = hint {
                eprintln!("  what to do: {hint}");
            }
            code
        }
    }
}

enum Failure {
    BadInput(SpecErrors),
    Other(String),
    /// An operation's typed error: its chain, what to do, and the exit code it maps to.
    Op {
        message: String,
        hint: Option<String>,
        code: u8,
    },
    RolledBack(String),
}

impl From<crate::ops::up::Error> for Failure {
    fn from(e: crate::ops::up::Error) -> Self {
        let code = match e {
            crate::ops::up::Error::NotOwned { .. } => exit::NOT_OWNED,
            _ => exit::FAILED,
        };
        Failure::Op {
            message: chain(&e),
            hint: e.what_to_do(),
            code,
        }
    }
}

/// Any other error: its chain, exit code 1.
fn failed(e: &(dyn std::error::Error + 'static)) -> Failure {
    Failure::Other(chain(e))
}

impl From<crate::ops::status::Error> for Failure {
    fn from(e: crate::ops::status::Error) -> Self {
        failed(&e)
    }
}

impl From<crate::ops::restart::Error> for Failure {
    fn from(e: crate::ops::restart::Error) -> Self {
        match e {
            crate::ops::restart::Error::Connect(e) => (*e).into(),
            e => failed(&e),
        }
    }
}

impl From<crate::engine::journal::Error> for Failure {
    fn from(e: crate::engine::journal::Error) -> Self {
        failed(&e)
    }
}

use crate::engine::chain;

/// `paddock serve`: run the daemon until SIGTERM or SIGINT.
fn serve(args: &Args, flags: crate::daemon::config::Layer) -> Result<(), Failure> {
    let loaded = spec::load(&args.dir);
    let mut tools = toolchain(args);
    let rt = runtime()?;
    provision(args, &rt, &mut tools, &side_events(args))?;
    let config = crate::daemon::config::load(&loaded.repo.config.serve, &flags, &tools.state_dir)
        .map_err(|e| failed(&e))?;
    let start = crate::daemon::serve::Start {
        dir: std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone()),
        state_dir: tools.state_dir.clone(),
        k3d: args.k3d.clone(),
        helm: args.helm.clone(),
        no_download: args.no_download,
        config,
    };
    let clock = std::sync::Arc::new(crate::engine::clock::SystemClock);
    rt.block_on(crate::daemon::serve::run(start, clock))
        .map_err(|e| failed(&e))
}

/// Print how an operation ended (its result lines) and turn its error into the CLI's.
fn finish(
    rep: &output::Renderer,
    outcomes: Vec<crate::ops::outcome::Outcome>,
) -> Result<(), Failure> {
    use crate::ops::outcome::Exit;
    for o in outcomes {
        if let (Some(text), Some(result)) = (o.summary, o.result) {
            rep.result(&text, result);
        }
        if let Some(e) = o.error {
            return Err(match e.exit {
                Exit::RolledBack => Failure::RolledBack(e.message),
                exit => Failure::Op {
                    message: e.message,
                    hint: e.hint,
                    code: exit.code(),
                },
            });
        }
    }
    Ok(())
}

/// The context operations run in: the tools, the events, the system clock, and the spec
/// repository as the source of the operations they start.
fn context(args: &Args, events: crate::engine::events::Events) -> crate::ops::Context {
    let source = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    crate::ops::Context::new(toolchain(args), events).with_source(source.display().to_string())
}

fn say_opened(journal: &crate::engine::journal::Journal, rep: &crate::engine::events::Events) {
    for note in [journal.migrated(), journal.repaired()]
        .into_iter()
        .flatten()
    {
        rep.note(note);
    }
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

fn with_spec(
    args: &Args,
    cluster: Option<&str>,
    f: impl FnOnce(&ClusterSpec) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let repo = spec::validate_repo(&args.dir)?;
    let name = repo.choose_cluster(cluster)?;
    let spec = repo.resolve(&name)?;
    if !args.quiet {
        print_warnings(&spec.warnings);
    }
    f(&spec)
}

/// Warnings go to stderr, one `warning: FILE:LINE:COL: FIELD: …` each, whatever the output.
fn print_warnings(warnings: &[spec::Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn yaml(value: &impl serde::Serialize) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

fn reporter(args: &Args) -> std::sync::Arc<output::Renderer> {
    let mode = match (args.output, args.quiet) {
        (Output::Json, _) => output::Mode::Json,
        (_, true) => output::Mode::Quiet,
        _ => output::Mode::Text,
    };
    output::Renderer::new(mode, args.verbose, Box::new(std::io::stdout()))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("failed to start the async runtime: {e}")))
}

/// Ctrl-C once: cancel the operation (start no new step, let running ones finish). Twice:
/// stop now. Call inside the runtime.
fn watch_interrupts(cx: &crate::ops::Context) {
    let (cancel, events) = (cx.cancel.clone(), cx.events.clone());
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
            events.note(
                "interrupted: finishing the steps already running (Ctrl-C again to stop at once)",
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

fn cluster_name(args: &Args, cluster: Option<&str>) -> Result<String, Failure> {
    if let Some(c) = cluster {
        return Ok(c.to_string());
    }
    let repo = spec::validate_repo(&args.dir)?;
    Ok(repo.choose_cluster(None)?)
}
