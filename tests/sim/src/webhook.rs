//! Istio's sidecar injection as the API server applies it on pod creation: the injecting
//! revision is resolved from namespace/pod labels and the revision and tag webhooks that
//! exist (see `injection`), the chosen webhook must have a caBundle and a ready istiod
//! (`failurePolicy: Fail`), and the proxy image comes from that revision's injector ConfigMap.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::injection::{Decision, Injectors, resolve};
use crate::selector::labels_of;
use crate::store::{ApiError, Resource, Store, res};

fn mwc() -> Resource {
    res("mutatingwebhookconfigurations")
}

/// The injectors the cluster's webhook configurations describe.
pub fn injectors(store: &Store) -> Injectors {
    let mut out = Injectors::default();
    for hook in store.list(&mwc(), "", &Default::default(), &Default::default()) {
        let labels = labels_of(&hook);
        let name = hook
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let rev = labels.get("istio.io/rev").cloned().unwrap_or_default();
        if let Some(tag) = labels.get("istio.io/tag") {
            out.tags.insert(tag.clone(), rev);
        } else if name == "istio-sidecar-injector" {
            out.revisions.push(String::new());
        } else if let Some(r) = name.strip_prefix("istio-sidecar-injector-") {
            out.revisions.push(r.to_string());
        }
    }
    out
}

/// The proxy image a revision injects: ConfigMap `istio-sidecar-injector-<rev>` key `values`.
pub fn expected_image(store: &Store, revision: &str) -> Option<String> {
    let cm = res("configmaps");
    let name = if revision.is_empty() {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{revision}")
    };
    let obj = store.get(&cm, "istio-system", &name).ok()?;
    let values: Value = serde_json::from_str(obj.pointer("/data/values")?.as_str()?).ok()?;
    let image = values.pointer("/global/proxy/image")?.as_str()?;
    if image.contains('/') {
        return Some(image.to_string());
    }
    let hub = values.pointer("/global/hub")?.as_str()?;
    let tag = values.pointer("/global/tag")?.as_str()?;
    Some(format!("{hub}/{image}:{tag}"))
}

fn webhook_failure(webhook: &str, why: String) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!("Internal error occurred: failed calling webhook \"{webhook}\": {why}"),
    )
}

/// Mutate a pod being created, or refuse it as a `failurePolicy: Fail` webhook would.
pub fn admit_pod(store: &Store, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    let ns_res = res("namespaces");
    let ns_labels = store
        .get(&ns_res, "", namespace)
        .map(|n| labels_of(&n))
        .unwrap_or_default();
    let pod_labels: BTreeMap<String, String> = labels_of(pod);
    let Decision::Inject { revision, webhook } =
        resolve(&ns_labels, &pod_labels, &injectors(store))
    else {
        return Ok(());
    };
    let hook = store.get(&mwc(), "", &webhook)?;
    let ca = hook
        .pointer("/webhooks/0/clientConfig/caBundle")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ca.is_empty() {
        return Err(webhook_failure(
            &webhook,
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into(),
        ));
    }
    let service = if revision.is_empty() {
        "istiod".to_string()
    } else {
        format!("istiod-{revision}")
    };
    let deploy = res("deployments");
    let ready = store
        .get(&deploy, "istio-system", &service)
        .ok()
        .and_then(|d| d.pointer("/status/readyReplicas").and_then(Value::as_u64))
        .unwrap_or(0);
    if ready == 0 {
        return Err(webhook_failure(
            &webhook,
            format!(
                "failed to call webhook: Post \"https://{service}.istio-system.svc:443/inject\": no endpoints available for service \"{service}\""
            ),
        ));
    }
    let Some(image) = expected_image(store, &revision) else {
        return Err(webhook_failure(
            &webhook,
            format!("injector ConfigMap for revision \"{revision}\" has no proxy image"),
        ));
    };
    // The gateway template: the pod's own `istio-proxy` container (image `auto`) becomes the
    // proxy, rather than a sidecar being added.
    let existing = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
        .and_then(|cs| {
            cs.iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("istio-proxy"))
        });
    let gateway = existing.is_some();
    if let Some(c) = existing {
        c["image"] = json!(image);
    }
    let native = !gateway && native_sidecars(&image);
    let proxy = if native {
        json!({"name": "istio-proxy", "image": image, "restartPolicy": "Always"})
    } else {
        json!({"name": "istio-proxy", "image": image})
    };
    let list = if native {
        "initContainers"
    } else {
        "containers"
    };
    let spec = pod
        .as_object_mut()
        .and_then(|o| o.entry("spec").or_insert_with(|| json!({})).as_object_mut());
    if let Some(spec) = spec.filter(|_| !gateway) {
        let slot = spec.entry(list).or_insert_with(|| json!([]));
        if let Some(arr) = slot.as_array_mut() {
            if native {
                arr.insert(0, proxy);
            } else {
                arr.push(proxy);
            }
        }
    }
    let status = json!({
        "initContainers": if native { json!(["istio-validation", "istio-proxy"]) } else { json!(["istio-init"]) },
        "containers": if native { json!([]) } else { json!(["istio-proxy"]) },
        "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
        "imagePullSecrets": null,
        "revision": revision,
    });
    let meta = pod.as_object_mut().and_then(|o| {
        o.entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    });
    if let Some(meta) = meta {
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        ann["istio.io/rev"] = json!(revision);
        ann["sidecar.istio.io/status"] = json!(status.to_string());
    }
    Ok(())
}

/// Native sidecars (`initContainers` with `restartPolicy: Always`) are the default from Istio
/// 1.27 on Kubernetes 1.33, which the sim reports.
fn native_sidecars(image: &str) -> bool {
    let tag = image.rsplit(':').next().unwrap_or("");
    let mut parts = tag.split('.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u64>().ok());
    matches!((major, minor), (Some(1), Some(m)) if m >= 27)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(ca: &str, ready: u64) -> Store {
        let mut s = Store::new();
        let ns = res("namespaces");
        let cm = res("configmaps");
        let deploy = res("deployments");
        s.create(&ns, "", json!({"metadata": {"name": "istio-system"}}))
            .expect("ns");
        s.create(
            &ns,
            "",
            json!({"metadata": {"name": "apps", "labels": {"istio.io/rev": "stable"}}}),
        )
        .expect("ns");
        let values = json!({"global": {"hub": "docker.io/istio", "tag": "1.29.6", "proxy": {"image": "proxyv2"}}});
        s.create(&cm, "istio-system", json!({"metadata": {"name": "istio-sidecar-injector-1-29-6"}, "data": {"values": values.to_string()}})).expect("cm");
        s.create(
            &deploy,
            "istio-system",
            json!({"metadata": {"name": "istiod-1-29-6"}, "status": {"readyReplicas": ready}}),
        )
        .expect("istiod");
        s.create(&mwc(), "", json!({"metadata": {"name": "istio-sidecar-injector-1-29-6", "labels": {"istio.io/rev": "1-29-6", "app": "sidecar-injector"}}, "webhooks": [{"clientConfig": {"caBundle": ca}}]})).expect("rev hook");
        s.create(&mwc(), "", json!({"metadata": {"name": "istio-revision-tag-stable", "labels": {"istio.io/tag": "stable", "istio.io/rev": "1-29-6"}}, "webhooks": [{"clientConfig": {"caBundle": ca}}]})).expect("tag hook");
        s
    }

    #[test]
    fn pods_on_a_tag_get_that_revisions_proxy() {
        let s = world("Y2E=", 1);
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app"}]}});
        admit_pod(&s, "apps", &mut pod).expect("admitted");
        assert_eq!(pod["metadata"]["annotations"]["istio.io/rev"], "1-29-6");
        assert_eq!(
            pod["spec"]["initContainers"][0]["image"],
            "docker.io/istio/proxyv2:1.29.6"
        );
        assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
        let status: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["sidecar.istio.io/status"]
                .as_str()
                .expect("status"),
        )
        .expect("json");
        assert_eq!(status["revision"], "1-29-6");
        assert!(
            pod["metadata"]["labels"].get("istio.io/rev").is_none(),
            "injection adds no istio.io/rev label"
        );
    }

    #[test]
    fn empty_ca_bundle_or_unready_istiod_fails_pod_creation() {
        let mut pod = json!({"metadata": {"name": "p"}});
        let e = admit_pod(&world("", 1), "apps", &mut pod).expect_err("no caBundle");
        assert!(
            e.message.contains("istio-revision-tag-stable"),
            "{}",
            e.message
        );
        let e = admit_pod(&world("Y2E=", 0), "apps", &mut pod).expect_err("istiod down");
        assert!(
            e.message
                .contains("no endpoints available for service \"istiod-1-29-6\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_store_admits_pods_through_the_webhook() {
        let mut s = world("Y2E=", 1);
        let pods = res("pods");
        let created = s
            .create(&pods, "apps", json!({"metadata": {"name": "p"}}))
            .expect("created");
        assert_eq!(created["metadata"]["annotations"]["istio.io/rev"], "1-29-6");
        let mut down = world("Y2E=", 0);
        assert_eq!(
            down.create(&pods, "apps", json!({"metadata": {"name": "p"}}))
                .expect_err("istiod down")
                .code,
            500
        );
        assert!(
            down.list(&pods, "apps", &Default::default(), &Default::default())
                .is_empty()
        );
    }

    #[test]
    fn pods_outside_the_mesh_are_untouched() {
        let s = world("", 0);
        let mut pod = json!({"metadata": {"name": "p"}});
        admit_pod(&s, "istio-system", &mut pod).expect("no injection asked");
        assert!(pod["metadata"].get("annotations").is_none());
    }
}
