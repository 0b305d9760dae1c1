//! Revision tags as paddock manages them: rendered from the istiod chart of a version
//! (`helm template ... -s templates/revision-tags-mwc.yaml`, plus `-svc.yaml` from 1.28, or
//! `templates/revision-tags.yaml` before), applied with server-side apply, and waited for
//! (label and caBundle). Tags are never part of an istiod release, so moving them between
//! revisions and uninstalling an old revision never deletes them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::Value;

use crate::drivers::exec::Cmd;
use crate::drivers::helm::cli::{self as helm_cli, Helm};
use crate::drivers::kube::{self, Kube};

/// Why moving or reading revision tags failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to render the revision tags")]
    Render(#[source] helm_cli::Error),
    #[error("failed to read the revision tags helm template printed (unparseable YAML)")]
    Parse(#[source] serde_saphyr::Error),
    #[error("failed to apply the revision tags")]
    Apply(#[source] kube::Error),
    #[error("failed to wait for tag {tag} to be served")]
    Wait {
        tag: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read the webhook of tag {tag}")]
    Read {
        tag: String,
        #[source]
        source: kube::Error,
    },
    #[error("tag {tag} points at {label:?} after the move, not {rev}")]
    NotMoved {
        tag: String,
        label: String,
        rev: String,
    },
    #[error("failed to read which revisions the tags point at")]
    Observe(#[source] kube::Error),
}

/// Point `tags` at revision `rev` of `version`.
#[allow(clippy::too_many_arguments)]
pub async fn point(
    helm: &Helm,
    kubeconfig: &Path,
    kube: &Kube,
    repo: &str,
    version: &str,
    rev: &str,
    tags: &[String],
    timeout: Duration,
) -> Result<(), Error> {
    if tags.is_empty() {
        return Ok(());
    }
    let text = helm
        .run(render_cmd(helm, kubeconfig, repo, version, rev, tags))
        .await
        .map_err(Error::Render)?;
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(Error::Parse)?;
    let objects: Vec<Value> = objects.into_iter().filter(Value::is_object).collect();
    kube.apply(&objects, "istio-system")
        .await
        .map_err(Error::Apply)?;
    for t in tags {
        let hook = format!("istio-revision-tag-{t}");
        kube.wait_webhook_ca(&hook, timeout)
            .await
            .map_err(|source| Error::Wait {
                tag: t.clone(),
                source,
            })?;
        let h: Option<MutatingWebhookConfiguration> = kube
            .get_cluster_scoped(&hook)
            .await
            .map_err(|source| Error::Read {
                tag: t.clone(),
                source,
            })?;
        let label = h
            .and_then(|h| h.metadata.labels)
            .and_then(|mut l| l.remove("istio.io/rev"))
            .unwrap_or_default();
        if label != rev {
            return Err(Error::NotMoved {
                tag: t.clone(),
                label,
                rev: rev.to_string(),
            });
        }
    }
    Ok(())
}

/// `helm template` of the tag objects for `tags` on revision `rev`, from the istiod chart of
/// `version` (its templates were split in 1.28).
fn render_cmd(
    helm: &Helm,
    kubeconfig: &Path,
    repo: &str,
    version: &str,
    rev: &str,
    tags: &[String],
) -> Cmd {
    let minor = crate::mesh::istio::parse_version(version)
        .map(|v| v.minor)
        .unwrap_or(0);
    let mut args = vec![
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
        "template".into(),
        "istiod".into(),
        "istiod".into(),
        "--repo".into(),
        repo.into(),
        "--version".into(),
        version.into(),
        "-n".into(),
        "istio-system".into(),
        "--set".into(),
        format!("revision={rev}"),
        "--set".into(),
        format!("revisionTags={{{}}}", tags.join(",")),
    ];
    if minor >= 28 {
        args.extend([
            "-s".into(),
            "templates/revision-tags-mwc.yaml".into(),
            "-s".into(),
            "templates/revision-tags-svc.yaml".into(),
        ]);
    } else {
        args.extend(["-s".into(), "templates/revision-tags.yaml".into()]);
    }
    Cmd::new(&helm.bin).args(args)
}

/// Tag → revision, as the cluster's tag webhooks say.
pub async fn observed(kube: &Kube) -> Result<BTreeMap<String, String>, Error> {
    Ok(kube.injectors().await.map_err(Error::Observe)?.tags)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::render_cmd;
    use crate::drivers::helm::cli::Helm;

    fn helm() -> Helm {
        Helm {
            bin: PathBuf::from("helm"),
            major: 4,
            version: "v4.0.0".into(),
            children: None,
        }
    }

    fn argv(version: &str) -> String {
        let tags = ["canary".to_string(), "stable".to_string()];
        render_cmd(
            &helm(),
            Path::new("/k"),
            "https://charts",
            version,
            "1-30-3",
            &tags,
        )
        .to_string()
    }

    #[test]
    fn tags_render_from_the_split_templates_from_1_28() {
        let cmd = argv("1.30.3");
        assert!(
            cmd.contains("--set revision=1-30-3 --set 'revisionTags={canary,stable}'")
                || cmd.contains("--set revision=1-30-3 --set revisionTags={canary,stable}"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with(
                "-s templates/revision-tags-mwc.yaml -s templates/revision-tags-svc.yaml"
            ),
            "{cmd}"
        );
    }

    #[test]
    fn tags_render_from_one_template_before_1_28() {
        assert!(argv("1.27.1").ends_with("-s templates/revision-tags.yaml"));
    }
}
