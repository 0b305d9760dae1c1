//! Revision tags as paddock manages them: rendered from the istiod chart of a version
//! (`helm template ... -s templates/revision-tags-mwc.yaml`, plus `-svc.yaml` from 1.28, or
//! `templates/revision-tags.yaml` before), applied with server-side apply, and waited for
//! (label and caBundle). Tags are never part of an istiod release, so moving them between
//! revisions and uninstalling an old revision never deletes them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::drivers::exec::Cmd;
use crate::drivers::helm::cli::Helm;
use crate::drivers::kube::Kube;

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
) -> Result<(), String> {
    if tags.is_empty() {
        return Ok(());
    }
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
    let text = helm
        .run(Cmd::new(&helm.bin).args(args))
        .await
        .map_err(|e| format!("failed to render the revision tags: {e}"))?;
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| format!("helm template printed unparseable YAML: {e}"))?;
    let objects: Vec<Value> = objects.into_iter().filter(Value::is_object).collect();
    kube.apply(&objects, "istio-system")
        .await
        .map_err(|e| e.to_string())?;
    for t in tags {
        let hook = format!("istio-revision-tag-{t}");
        kube.wait_webhook_ca(&hook, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let h = kube
            .get_json(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                None,
                &hook,
            )
            .await
            .map_err(|e| e.to_string())?;
        let label = h
            .as_ref()
            .and_then(|h| h["metadata"]["labels"]["istio.io/rev"].as_str())
            .unwrap_or_default()
            .to_string();
        if label != rev {
            return Err(format!(
                "tag {t} points at {label:?} after the move, not {rev}"
            ));
        }
    }
    Ok(())
}

/// Tag → revision, as the cluster's tag webhooks say.
pub async fn observed(kube: &Kube) -> Result<BTreeMap<String, String>, String> {
    Ok(kube.injectors().await.map_err(|e| e.to_string())?.tags)
}
