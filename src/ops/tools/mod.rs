//! k3d and helm for the commands that drive them: the tool given explicitly, else a recent
//! enough one on `PATH`, else paddock's cached pinned release, downloaded, verified and
//! installed first when missing (`drivers::provision` holds the settings and sources).

pub mod install;

use std::path::Path;

use crate::drivers::provision::{self, Settings, Tool};
use crate::drivers::toolchain::{Toolchain, install_help};
use crate::engine::events::Events;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Settings(#[from] provision::Error),
    #[error(
        "{tool} was not found and downloads are off ({off_by}), so paddock did not fetch {tool} {version} from {url}"
    )]
    Off {
        tool: &'static str,
        version: String,
        url: String,
        off_by: &'static str,
    },
    #[error("failed to download {tool} {version}")]
    Download {
        tool: &'static str,
        version: String,
        #[source]
        source: install::Error,
    },
}

impl Error {
    /// What the user can do about it.
    pub fn what_to_do(&self) -> String {
        match self {
            Error::Settings(provision::Error::Setting { .. }) => {
                "correct or unset the variable".to_string()
            }
            Error::Settings(provision::Error::Platform { .. }) => {
                "install k3d and helm by hand and point paddock at them (`tools.k3d`, `tools.helm`)"
                    .to_string()
            }
            Error::Off { tool, .. } => install_help(tool).to_string(),
            Error::Download { tool, source, .. } => format!(
                "{}; or set `tools.{tool}` in paddock.yaml to a {tool} you installed, or turn downloads off (`tools.download: false`) and {}",
                source.what_to_do(),
                install_help(tool)
            ),
        }
    }
}

/// Make `need`'s tools usable in `tools`: a tool given explicitly is kept as it is; one from
/// `PATH` is kept when recent enough; otherwise the cached pinned release is used, downloaded
/// first when missing (and downloads are on).
pub async fn provision(
    tools: &mut Toolchain,
    settings: &Settings,
    need: &[Tool],
    events: &Events,
) -> Result<(), Error> {
    // A tool given explicitly but absent fails the command as it is; nothing else is
    // downloaded for a run that cannot go ahead.
    if need
        .iter()
        .any(|&t| tools.explicit(t) && tools.path(t).is_none())
    {
        return Ok(());
    }
    for &tool in need {
        if tools.explicit(tool) {
            continue;
        }
        if let Some(found) = tools.path(tool).map(Path::to_path_buf) {
            match too_old(tool, &found).await {
                None => continue,
                Some(why) => events.note(&format!(
                    "{why}; using {} {} from paddock's cache instead",
                    tool.name(),
                    settings.pin(tool).version
                )),
            }
        }
        let dest = settings.dest(tool);
        if !crate::drivers::toolchain::is_executable(&dest) {
            fetch(settings, tool, events).await?;
        }
        tools.set(tool, dest);
    }
    Ok(())
}

async fn fetch(settings: &Settings, tool: Tool, events: &Events) -> Result<(), Error> {
    let source = settings.source(tool)?;
    if let Some(off_by) = settings.off_by {
        return Err(Error::Off {
            tool: tool.name(),
            version: source.version,
            url: source.url,
            off_by,
        });
    }
    install::install(&source, settings, events)
        .await
        .map_err(|e| Error::Download {
            tool: tool.name(),
            version: source.version.clone(),
            source: e,
        })
}

/// Why the tool at `bin` cannot be used (older than k3d 5 / Helm 3, or it does not run), or
/// `None` when it can.
async fn too_old(tool: Tool, bin: &Path) -> Option<String> {
    use crate::drivers::exec::{Cmd, exec};
    let (args, min): (&[&str], u64) = match tool {
        Tool::K3d => (&["version"], 5),
        Tool::Helm => (&["version", "--template", "{{.Version}}"], 3),
    };
    let shown = bin.display();
    let out = match exec(Cmd::new(bin).args(args.iter().copied())).await {
        Ok(out) => out.stdout,
        Err(e) => return Some(format!("{} at {shown} does not run ({e})", tool.name())),
    };
    let version = out
        .split_whitespace()
        .find_map(|w| semver::Version::parse(w.trim_start_matches('v')).ok())?;
    (version.major < min).then(|| {
        format!(
            "{} {version} at {shown} is older than {} {min}",
            tool.name(),
            tool.name()
        )
    })
}

/// [`provision`] with the settings the toolchain carries (none: nothing is downloaded and a
/// missing tool stays missing, for the command to report).
pub async fn prepare(tools: &mut Toolchain, events: &Events) -> Result<(), Error> {
    let Some(settings) = tools.downloads.clone() else {
        return Ok(());
    };
    provision(tools, &settings, &Tool::ALL, events).await
}

/// [`prepare`] with these download settings (the daemon's, read for each operation): a bad
/// setting fails here, naming it.
pub async fn prepare_with(
    tools: &mut Toolchain,
    settings: Result<Settings, provision::Error>,
    events: &Events,
) -> Result<(), Error> {
    *tools = tools.clone().with_downloads(settings?);
    prepare(tools, events).await
}
