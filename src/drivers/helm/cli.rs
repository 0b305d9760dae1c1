//! The helm driver: `helm version` decides the flag set (Helm 3 or 4, K3D.md), releases install
//! with `upgrade --install` and values on stdin, and `list -o json` parses into typed rows.
//! paddock waits for readiness itself, so no command here passes `--wait`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Release;
use crate::drivers::exec::{Children, Cmd, ExecError, exec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("could not read the output of `{cmd}`: {message}")]
    Parse { cmd: String, message: String },
}

/// The `helm` executable paddock drives, and its major version.
#[derive(Debug, Clone)]
pub struct Helm {
    pub bin: PathBuf,
    pub major: u8,
    pub version: String,
    /// Where runs that change releases are noted while they work (see [`Children`]).
    pub children: Option<Children>,
}

/// One row of `helm list -o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub name: String,
    pub namespace: String,
    pub revision: String,
    #[serde(default)]
    pub updated: String,
    pub status: String,
    pub chart: String,
    #[serde(default)]
    pub app_version: String,
}

impl ReleaseInfo {
    /// The chart version from `chart` (`istiod-1.30.3` → `1.30.3`).
    pub fn chart_version(&self) -> &str {
        self.chart
            .rsplit_once('-')
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
}

impl Helm {
    /// Ask the binary its version: `v3.x` or `v4.x` decides the flags.
    pub async fn detect(bin: impl Into<PathBuf>) -> Result<Self, Error> {
        let bin = bin.into();
        let cmd = Cmd::new(&bin).args(["version", "--template", "{{.Version}}"]);
        let shown = cmd.to_string();
        let version = exec(cmd).await?.stdout.trim().to_string();
        let major = version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u8>().ok())
            .filter(|m| *m == 3 || *m == 4)
            .ok_or_else(|| Error::Parse {
                cmd: shown,
                message: format!("expected Helm 3 or 4, got {version:?}"),
            })?;
        Ok(Self {
            bin,
            major,
            version,
            children: None,
        })
    }

    /// Note every run in `children` while it works, so a run after a killed one can wait
    /// for it.
    pub fn noting(mut self, children: Children) -> Self {
        self.children = Some(children);
        self
    }

    fn cmd(&self, kubeconfig: &Path) -> Cmd {
        Cmd::new(&self.bin).args(["--kubeconfig".to_string(), kubeconfig.display().to_string()])
    }

    /// `helm upgrade --install` with the values on stdin; `--repo` keeps the user's repo list
    /// untouched; OCI repositories go in the chart reference.
    pub fn upgrade_install_cmd(&self, release: &Release, kubeconfig: &Path) -> Cmd {
        let (chart, repo) = if release.repo.starts_with("oci://") {
            (
                format!("{}/{}", release.repo.trim_end_matches('/'), release.chart),
                None,
            )
        } else {
            (release.chart.clone(), Some(release.repo.clone()))
        };
        let mut cmd = self
            .cmd(kubeconfig)
            .args(["upgrade", "--install", &release.name, &chart]);
        if let Some(repo) = repo {
            cmd = cmd.args(["--repo", &repo]);
        }
        cmd.args([
            "--version",
            &release.version,
            "-n",
            &release.namespace,
            "--create-namespace",
            "-f",
            "-",
        ])
        .stdin(release.values.to_string())
    }

    /// Every release in every namespace whatever its status. Helm 4 has no `--all` (Helm 3's
    /// shorthand for these filters), so the statuses are named: one command line for both.
    pub fn list_cmd(&self, kubeconfig: &Path) -> Cmd {
        self.cmd(kubeconfig).args([
            "list",
            "--all-namespaces",
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
            "-o",
            "json",
        ])
    }

    pub fn uninstall_cmd(&self, name: &str, namespace: &str, kubeconfig: &Path) -> Cmd {
        self.cmd(kubeconfig)
            .args(["uninstall", name, "-n", namespace])
    }

    pub fn rollback_cmd(&self, name: &str, namespace: &str, kubeconfig: &Path) -> Cmd {
        self.cmd(kubeconfig)
            .args(["rollback", name, "-n", namespace])
    }

    /// Every release in every namespace, whatever its status.
    pub async fn list(&self, kubeconfig: &Path) -> Result<Vec<ReleaseInfo>, Error> {
        let cmd = self.list_cmd(kubeconfig);
        let shown = cmd.to_string();
        let out = exec(cmd).await?;
        let text = out.stdout.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| Error::Parse {
            cmd: shown,
            message: e.to_string(),
        })
    }

    /// The values a release was installed with (`helm get values -o json`; `null` for none).
    pub async fn values(
        &self,
        name: &str,
        namespace: &str,
        kubeconfig: &Path,
    ) -> Result<serde_json::Value, Error> {
        let cmd = self
            .cmd(kubeconfig)
            .args(["get", "values", name, "-n", namespace, "-o", "json"]);
        let shown = cmd.to_string();
        let out = exec(cmd).await?;
        serde_json::from_str(out.stdout.trim()).map_err(|e| Error::Parse {
            cmd: shown,
            message: e.to_string(),
        })
    }

    pub async fn run(&self, cmd: Cmd) -> Result<String, Error> {
        let Some(children) = self.children.clone() else {
            return Ok(exec(cmd).await?.stdout);
        };
        let shown = cmd.to_string();
        let out = tokio::task::spawn_blocking(move || children.exec_blocking(&cmd))
            .await
            .unwrap_or_else(|e| {
                Err(ExecError::Spawn {
                    cmd: shown,
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        Ok(out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn helm(major: u8) -> Helm {
        Helm {
            bin: "helm".into(),
            major,
            version: format!("v{major}.0.0"),
            children: None,
        }
    }

    #[test]
    fn installs_pass_repo_version_namespace_and_values_on_stdin() {
        let r = Release::new(
            "istiod-1-30-3",
            "istio-system",
            "https://istio-release.storage.googleapis.com/charts",
            "istiod",
            "1.30.3",
            json!({"revision": "1-30-3"}),
        );
        let cmd = helm(4).upgrade_install_cmd(&r, Path::new("/tmp/kc"));
        assert_eq!(
            cmd.to_string(),
            "helm --kubeconfig /tmp/kc upgrade --install istiod-1-30-3 istiod --repo https://istio-release.storage.googleapis.com/charts --version 1.30.3 -n istio-system --create-namespace -f - < (generated input)"
        );
        assert_eq!(cmd.stdin.as_deref(), Some(r#"{"revision":"1-30-3"}"#));
    }

    #[test]
    fn oci_repositories_go_in_the_chart_reference() {
        let r = Release::new(
            "istio-base",
            "istio-system",
            "oci://registry.istio.io/release/charts/",
            "base",
            "1.30.3",
            json!({}),
        );
        let cmd = helm(3).upgrade_install_cmd(&r, Path::new("kc"));
        assert!(
            cmd.args
                .contains(&"oci://registry.istio.io/release/charts/base".to_string())
        );
        assert!(!cmd.args.contains(&"--repo".to_string()));
    }

    #[test]
    fn list_rows_parse() {
        let rows: Vec<ReleaseInfo> = serde_json::from_str(
            r#"[{"name":"istiod-1-30-3","namespace":"istio-system","revision":"2","updated":"x","status":"deployed","chart":"istiod-1.30.3","app_version":"1.30.3"}]"#,
        )
        .expect("parses");
        assert_eq!(rows[0].chart_version(), "1.30.3");
        assert_eq!(rows[0].revision, "2");
    }
}
