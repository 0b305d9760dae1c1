//! k3d and helm when the machine has none (or too old ones): pinned releases downloaded for
//! this OS and architecture, verified against the SHA-256 their release publishes, installed
//! into paddock's cache (`<cache>/tools/TOOL/VERSION/TOOL`) and used from there.
//!
//! The settings live here; `ops::tools` downloads and installs. What wins: a path given with `--k3d`/`--helm`, `PADDOCK_K3D`/`PADDOCK_HELM` or `tools.k3d`
//! / `tools.helm` (never replaced); then the tool on `PATH` when it is recent enough (k3d 5,
//! Helm 3); then the cached pinned release; then a download (unless downloads are off).

use std::path::PathBuf;
use std::time::Duration;

use crate::spec::types::ToolPaths;
use crate::spec::validate::tools as check;

/// The releases downloaded unless `tools.versions` or `PADDOCK_*_VERSION` say otherwise.
pub const K3D_VERSION: &str = "5.9.0";
pub const HELM_VERSION: &str = "4.1.4";
/// Where they come from unless `tools.mirrors` or `PADDOCK_*_MIRROR` say otherwise.
pub const K3D_MIRROR: &str = "https://github.com/k3d-io/k3d/releases/download";
pub const HELM_MIRROR: &str = "https://get.helm.sh";
/// A download with no bytes for this long fails (`PADDOCK_DOWNLOAD_STALL_TIMEOUT`).
pub const STALL: Duration = Duration::from_secs(30);
/// The largest file accepted (k3d is about 25 MB, helm's tarball about 20 MB).
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;
/// GitHub answers release downloads with redirects.
pub const REDIRECTS: usize = 5;

/// A tool paddock can download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    K3d,
    Helm,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::K3d, Tool::Helm];

    pub fn name(self) -> &'static str {
        match self {
            Tool::K3d => "k3d",
            Tool::Helm => "helm",
        }
    }
}

/// Which release of a tool, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub version: String,
    pub mirror: String,
}

/// Whether and what paddock downloads: `paddock.yaml` `tools:`, overridden by `PADDOCK_*`
/// variables, overridden by `--no-download`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Why downloads are off (`--no-download`, ...), or `None`: on.
    pub off_by: Option<&'static str>,
    pub cache_dir: PathBuf,
    pub k3d: Pin,
    pub helm: Pin,
    pub stall: Duration,
}

/// Where one tool's pinned release comes from and goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub tool: Tool,
    pub version: String,
    /// The file downloaded: the binary (k3d) or a tarball holding it (helm).
    pub url: String,
    /// The release's checksum file listing the SHA-256 of `asset`.
    pub checksum_url: String,
    pub asset: String,
    /// The binary's path inside the tarball (helm), `None` for a bare binary.
    pub member: Option<String>,
    /// Where the binary is installed.
    pub dest: PathBuf,
}

/// Download settings or a platform paddock cannot download for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{var}=`{value}` is not valid: {help}")]
    Setting {
        var: &'static str,
        value: String,
        help: String,
    },
    #[error(
        "paddock downloads k3d and helm for linux and darwin on amd64 and arm64, not {os}/{arch}"
    )]
    Platform { os: String, arch: String },
}

/// An environment lookup (the process environment, or a test's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// The settings from `paddock.yaml`'s `tools:`, the environment and `--no-download`.
    pub fn resolve(config: &ToolPaths, no_download: bool, env: Env) -> Result<Self, Error> {
        let setting = |var: &'static str, value: &str, help: String| Error::Setting {
            var,
            value: value.to_string(),
            help,
        };
        let off_by = match env("PADDOCK_TOOLS_DOWNLOAD") {
            _ if no_download => Some("--no-download"),
            Some(v) => match check::switch(&v) {
                Ok(true) => None,
                Ok(false) => Some("PADDOCK_TOOLS_DOWNLOAD=0"),
                Err(h) => return Err(setting("PADDOCK_TOOLS_DOWNLOAD", &v, h.into())),
            },
            None if config.download == Some(false) => {
                Some("`tools.download: false` in paddock.yaml")
            }
            None => None,
        };
        let pin = |tool: &'static str, version: &Option<String>, mirror: &Option<String>| {
            let (vvar, mvar) = match tool {
                "k3d" => ("PADDOCK_K3D_VERSION", "PADDOCK_K3D_MIRROR"),
                _ => ("PADDOCK_HELM_VERSION", "PADDOCK_HELM_MIRROR"),
            };
            let (dv, dm) = match tool {
                "k3d" => (K3D_VERSION, K3D_MIRROR),
                _ => (HELM_VERSION, HELM_MIRROR),
            };
            let version = match env(vvar) {
                Some(v) => check::version(tool, &v).map_err(|h| setting(vvar, &v, h))?,
                None => check::version(tool, version.as_deref().unwrap_or(dv))
                    .map_err(|h| setting("tools.versions", version.as_deref().unwrap_or(dv), h))?,
            };
            let mirror = match env(mvar) {
                Some(m) => {
                    check::mirror(&m).map_err(|h| setting(mvar, &m, h.into()))?;
                    m
                }
                None => mirror.clone().unwrap_or_else(|| dm.to_string()),
            };
            Ok::<_, Error>(Pin {
                version: version.to_string(),
                mirror: mirror.trim_end_matches('/').to_string(),
            })
        };
        let stall = match env("PADDOCK_DOWNLOAD_STALL_TIMEOUT") {
            Some(v) => crate::spec::validate::parse_duration(&v)
                .ok()
                .and_then(|d| Duration::try_from(d).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    setting(
                        "PADDOCK_DOWNLOAD_STALL_TIMEOUT",
                        &v,
                        "use a duration such as `30s`".into(),
                    )
                })?,
            None => STALL,
        };
        Ok(Self {
            off_by,
            cache_dir: cache_dir(env),
            k3d: pin("k3d", &config.versions.k3d, &config.mirrors.k3d)?,
            helm: pin("helm", &config.versions.helm, &config.mirrors.helm)?,
            stall,
        })
    }

    pub fn pin(&self, tool: Tool) -> &Pin {
        match tool {
            Tool::K3d => &self.k3d,
            Tool::Helm => &self.helm,
        }
    }

    /// Where `tool`'s pinned release is installed.
    pub fn dest(&self, tool: Tool) -> PathBuf {
        let name = tool.name();
        self.cache_dir
            .join("tools")
            .join(name)
            .join(&self.pin(tool).version)
            .join(name)
    }

    /// Where `tool`'s pinned release comes from for this machine.
    pub fn source(&self, tool: Tool) -> Result<Source, Error> {
        let (os, arch) = platform()?;
        let Pin { version, mirror } = self.pin(tool);
        let (asset, url, checksum_url, member) = match tool {
            Tool::K3d => {
                let asset = format!("k3d-{os}-{arch}");
                let url = format!("{mirror}/v{version}/{asset}");
                (
                    asset,
                    url,
                    format!("{mirror}/v{version}/checksums.txt"),
                    None,
                )
            }
            Tool::Helm => {
                let asset = format!("helm-v{version}-{os}-{arch}.tar.gz");
                let url = format!("{mirror}/{asset}");
                let sums = format!("{url}.sha256sum");
                (asset, url, sums, Some(format!("{os}-{arch}/helm")))
            }
        };
        Ok(Source {
            tool,
            version: version.clone(),
            url,
            checksum_url,
            asset,
            member,
            dest: self.dest(tool),
        })
    }

    pub fn limits(&self) -> crate::drivers::http::Limits {
        crate::drivers::http::Limits {
            stall: self.stall,
            max_bytes: MAX_BYTES,
            redirects: REDIRECTS,
        }
    }
}

/// paddock's cache: `PADDOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/paddock`, else
/// `~/.cache/paddock`.
pub fn cache_dir(env: Env) -> PathBuf {
    if let Some(d) = env("PADDOCK_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(x) = env("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("paddock");
    }
    env("HOME")
        .map(|h| PathBuf::from(h).join(".cache/paddock"))
        .unwrap_or_else(|| std::env::temp_dir().join("paddock-cache"))
}

/// This machine as release file names spell it: (`linux`|`darwin`, `amd64`|`arm64`).
pub fn platform() -> Result<(&'static str, &'static str), Error> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        _ => "",
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => "",
    };
    if os.is_empty() || arch.is_empty() {
        return Err(Error::Platform {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        });
    }
    Ok((os, arch))
}

#[cfg(test)]
mod tests;
