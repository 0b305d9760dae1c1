//! What a chart creates, as the real helm renders it: the fake helm installs, upgrades and
//! templates the real charts (the folders `chart_repo` serves) through `helm template` of the
//! real binary, so the objects in the sim are the real ones whichever helm put them there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::chart_repo;

/// The Kubernetes version the sim reports, for the charts' `.Capabilities.KubeVersion`.
pub const KUBE_VERSION: &str = "v1.33.4";

/// The real helm (the repository's `.tools/bin/helm`; `real_tools::find` never takes a helm
/// from `PATH`, which may be this binary under helm's name).
pub fn real_helm() -> Result<PathBuf, String> {
    crate::real_tools::find("helm").ok_or_else(|| {
        "the sim renders charts with the real helm, which is not installed (run scripts/install-tools)".to_string()
    })
}

/// The archive of `chart` at `version` in the chart folders, or helm's error for a chart
/// version its repository does not have.
pub fn archive(chart: &str, version: &str, repo: &str) -> Result<PathBuf, String> {
    let dir = chart_repo::charts_dir()?;
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    for folder in ["istio", "addons"] {
        let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name
                .strip_suffix(".tgz")
                .and_then(|n| n.strip_prefix(chart))
                .and_then(|n| n.strip_prefix('-'))
            else {
                continue;
            };
            let Some(parsed) = v
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
            else {
                continue;
            };
            // No version asked: the newest, as helm picks it from the index.
            if version.is_empty() || v == version {
                found.push((parsed, e.path()));
            }
        }
    }
    found.into_iter().max().map(|(_, p)| p).ok_or_else(|| {
        format!("chart \"{chart}\" version \"{version}\" not found in {repo} repository")
    })
}

/// `helm template RELEASE ARCHIVE -n NS -f VALUES` (CRDs included; `show_only` as `-s`): the
/// YAML, or helm's error without its `Error: ` prefix.
pub fn template(
    release: &str,
    archive: &Path,
    namespace: &str,
    values: &Value,
    show_only: &[String],
) -> Result<String, String> {
    let helm = real_helm()?;
    let mut cmd = Command::new(helm);
    cmd.arg("template")
        .arg(release)
        .arg(archive)
        .args([
            "-n",
            namespace,
            "--include-crds",
            "--kube-version",
            KUBE_VERSION,
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for s in show_only {
        cmd.args(["-s", s]);
    }
    let mut child = cmd.spawn().map_err(|e| format!("helm template: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(values.to_string().as_bytes())
            .map_err(|e| format!("helm template: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("helm template: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(err.strip_prefix("Error: ").unwrap_or(err).to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The objects `chart` at `version` creates for `release` in `namespace` with `values`.
pub fn render(
    chart: &str,
    version: &str,
    repo: &str,
    release: &str,
    namespace: &str,
    values: &Value,
) -> Result<Vec<Value>, String> {
    let archive = archive(chart, version, repo)?;
    let text = template(release, &archive, namespace, values, &[])?;
    parse(&text)
}

/// The objects of a multi-document YAML text (empty documents dropped).
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(Value::is_object).collect())
}
