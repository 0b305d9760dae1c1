//! k3d and helm for the commands: found (flags, `PADDOCK_K3D`/`PADDOCK_HELM`, `tools:`,
//! `PATH`, paddock's cache) for every command, downloaded first for those that drive them.

use super::*;
use crate::drivers::provision::{self, Settings};
use crate::drivers::toolchain::Toolchain;

/// Download settings: `tools:` in paddock.yaml, the `PADDOCK_*` variables, `--no-download`.
fn settings(
    args: &Args,
    config: &crate::spec::types::ToolPaths,
) -> Result<Settings, provision::Error> {
    Settings::resolve(config, args.no_download, &provision::process_env)
}

/// The tools as found, cached releases included; nothing is downloaded.
pub(super) fn toolchain(args: &Args) -> Toolchain {
    let repo_tools = spec::load(&args.dir).repo.config.tools;
    let tools = Toolchain::resolve(
        args.k3d.as_deref(),
        args.helm.as_deref(),
        &repo_tools,
        args.state_dir.as_deref(),
    );
    match settings(args, &repo_tools) {
        Ok(s) => tools.with_downloads(s),
        Err(_) => tools,
    }
}

/// Before a command that drives k3d and helm: make both usable, downloading them when
/// missing or too old (and downloads are on), saying so through `events`.
pub(super) fn provision(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    tools: &mut Toolchain,
    events: &crate::engine::events::Events,
) -> Result<(), Failure> {
    let op = |message: String, hint: String| Failure::Op {
        message,
        hint: Some(hint),
        code: exit::FAILED,
    };
    if tools.downloads.is_none() {
        let config = spec::load(&args.dir).repo.config.tools;
        let s = settings(args, &config).map_err(|e| {
            let e = crate::ops::tools::Error::from(e);
            op(e.to_string(), e.what_to_do())
        })?;
        tools.downloads = Some(s);
    }
    rt.block_on(crate::ops::tools::prepare(tools, events))
        .map_err(|e| op(chain(&e), e.what_to_do()))
}

/// Where commands whose output is a document (`status`, `down`) report a download: stderr,
/// as text or (with `--output json`) NDJSON events.
pub(super) fn side_events(args: &Args) -> crate::engine::events::Events {
    let mode = match (args.output, args.quiet) {
        (Output::Json, _) => output::Mode::Json,
        (_, true) => output::Mode::Quiet,
        _ => output::Mode::Text,
    };
    output::Renderer::new(mode, args.verbose, Box::new(std::io::stderr())).events()
}
