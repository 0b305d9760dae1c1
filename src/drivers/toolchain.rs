//! Where the outside tools and paddock's state live, resolved once at the edge: flags and
//! environment first, then `paddock.yaml`'s `tools`, then `PATH`.

use std::path::{Path, PathBuf};

/// How long a tool process left working by a killed run may take before paddock gives up
/// waiting for it (helm's own default timeout).
const LEFTOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A tool paddock needs is not on this machine; the message says how to install it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{tool} was not found; {help}", tool = .0, help = install_help(.0))]
pub struct Missing(pub &'static str);

/// The binaries paddock drives and its state directory.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub k3d: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    pub kubectl: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// k3d was given with `--k3d`, `PADDOCK_K3D` or `tools.k3d`: never replaced by a download.
    pub k3d_explicit: bool,
    pub helm_explicit: bool,
    /// Whether and what to download when k3d or helm is missing or too old; `None` when
    /// nothing was said (planning, tests).
    pub downloads: Option<crate::drivers::provision::Settings>,
}

/// Exactly what to install when a tool is missing.
pub fn install_help(tool: &str) -> &'static str {
    match tool {
        "k3d" => {
            "install k3d 5.x: `curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash` (or `brew install k3d`), or point paddock at it with --k3d PATH or `tools.k3d` in paddock.yaml"
        }
        "helm" => {
            "install Helm 3 or 4: `curl https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash` (or `brew install helm`), or point paddock at it with --helm PATH or `tools.helm` in paddock.yaml"
        }
        _ => {
            "install kubectl: https://kubernetes.io/docs/tasks/tools/ (optional: paddock does not need it)"
        }
    }
}

/// Find an executable on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A configured tool path: absolute or relative paths must exist; bare names are looked up.
fn pick(configured: Option<&Path>, name: &str) -> Option<PathBuf> {
    match configured {
        Some(p) if p.components().count() > 1 => p.exists().then(|| p.to_path_buf()),
        Some(p) => on_path(&p.display().to_string()),
        None => on_path(name),
    }
}

/// paddock's state directory: `--state-dir`/`PADDOCK_STATE_DIR`, else
/// `$XDG_STATE_HOME/paddock`, else `~/.local/state/paddock`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("paddock");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/paddock"))
        .unwrap_or_else(|| std::env::temp_dir().join("paddock-state"))
}

impl Toolchain {
    pub fn resolve(
        k3d: Option<&Path>,
        helm: Option<&Path>,
        configured: &crate::spec::types::ToolPaths,
        state_dir: Option<&Path>,
    ) -> Self {
        let k3d = k3d.or(configured.k3d.as_deref());
        let helm = helm.or(configured.helm.as_deref());
        Self {
            k3d: pick(k3d, "k3d"),
            helm: pick(helm, "helm"),
            kubectl: on_path("kubectl"),
            state_dir: state_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(default_state_dir),
            k3d_explicit: k3d.is_some(),
            helm_explicit: helm.is_some(),
            downloads: None,
        }
    }

    /// With download settings; a tool neither given nor on `PATH` is taken from paddock's
    /// cache when its pinned release is there (nothing is downloaded here).
    pub fn with_downloads(mut self, settings: crate::drivers::provision::Settings) -> Self {
        use crate::drivers::provision::Tool;
        for tool in Tool::ALL {
            let cached = settings.dest(tool);
            if !self.explicit(tool) && self.path(tool).is_none() && is_executable(&cached) {
                self.set(tool, cached);
            }
        }
        self.downloads = Some(settings);
        self
    }

    pub fn explicit(&self, tool: crate::drivers::provision::Tool) -> bool {
        match tool {
            crate::drivers::provision::Tool::K3d => self.k3d_explicit,
            crate::drivers::provision::Tool::Helm => self.helm_explicit,
        }
    }

    pub fn path(&self, tool: crate::drivers::provision::Tool) -> Option<&Path> {
        match tool {
            crate::drivers::provision::Tool::K3d => self.k3d.as_deref(),
            crate::drivers::provision::Tool::Helm => self.helm.as_deref(),
        }
    }

    pub fn set(&mut self, tool: crate::drivers::provision::Tool, path: PathBuf) {
        match tool {
            crate::drivers::provision::Tool::K3d => self.k3d = Some(path),
            crate::drivers::provision::Tool::Helm => self.helm = Some(path),
        }
    }

    /// The k3d binary, or the error that says what to install.
    pub fn need_k3d(&self) -> Result<&Path, Missing> {
        self.k3d.as_deref().ok_or(Missing("k3d"))
    }

    pub fn need_helm(&self) -> Result<&Path, Missing> {
        self.helm.as_deref().ok_or(Missing("helm"))
    }

    /// Per-cluster files (kubeconfig) under the state directory.
    pub fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.state_dir.join("clusters").join(cluster)
    }

    /// The tool processes paddock runs for a cluster, noted while they work.
    pub fn children(&self, cluster: &str) -> crate::drivers::exec::Children {
        crate::drivers::exec::Children::new(self.cluster_dir(cluster).join("running"))
    }

    /// Wait for tool processes a killed run left working on a cluster (hold its lock first),
    /// saying so through `said`; then run helm noted the same way.
    pub async fn settle_children(
        &self,
        cluster: &str,
        helm: crate::drivers::helm::cli::Helm,
        said: impl Fn(&str),
    ) -> Result<crate::drivers::helm::cli::Helm, crate::drivers::exec::LeftoverError> {
        let children = self.children(cluster);
        children.wait_for_leftovers(LEFTOVER_TIMEOUT, said).await?;
        Ok(helm.noting(children))
    }
}
