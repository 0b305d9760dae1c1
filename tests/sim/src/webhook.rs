//! Mutating admission of pods as the API server does it (KUBERNETES.md, "Admission"): every
//! MutatingWebhookConfiguration in the store, in name order, each webhook in order, is called
//! when its `rules` cover pod creation, its `namespaceSelector` matches the namespace's labels
//! and its `objectSelector` the pod's. A call goes to `clientConfig.service`: it needs a
//! caBundle and a ready endpoint of that Service, and the istiod pod behind the endpoint
//! answers with its own revision's proxy (image from ConfigMap
//! `istio-sidecar-injector-<rev>`). A failed call refuses the pod under `failurePolicy: Fail`
//! and is skipped under `Ignore`. A pod that is already injected is left as it is by later
//! injectors, as Istio's injector does.
//!
//! Nothing here knows Istio's rules for namespaces and tags: they follow from the webhook
//! objects paddock and the charts apply. `injection` keeps ISTIO.md's rule table as the oracle
//! tests compare this with.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::selector::{Selector, labels_of};
use crate::store::{ApiError, Store, res};

/// The proxy image a revision injects: ConfigMap `istio-sidecar-injector-<rev>` key `values`.
pub fn expected_image(store: &Store, revision: &str) -> Option<String> {
    let name = if revision.is_empty() || revision == "default" {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{revision}")
    };
    let obj = store.get(&res("configmaps"), "istio-system", &name).ok()?;
    let values: Value = serde_json::from_str(obj.pointer("/data/values")?.as_str()?).ok()?;
    let image = values.pointer("/global/proxy/image")?.as_str()?;
    if image.contains('/') {
        return Some(image.to_string());
    }
    let hub = values.pointer("/global/hub")?.as_str()?;
    let tag = values.pointer("/global/tag")?.as_str()?;
    Some(format!("{hub}/{image}:{tag}"))
}

/// Who injected a pod, as a test reads it: (revision annotation, proxy image).
pub fn injected(pod: &Value) -> Option<(String, String)> {
    let rev = pod
        .pointer("/metadata/annotations/istio.io~1rev")?
        .as_str()?;
    let image = crate::controllers::containers(pod)
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str())?;
    Some((rev.to_string(), image.to_string()))
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Do a webhook's `rules` cover creating a core/v1 pod? (No rules: it is never called.)
fn covers_pod_create(webhook: &Value) -> bool {
    let has = |rule: &Value, key: &str, want: &str| {
        rule[key]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v == want || v == "*"))
    };
    webhook["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            has(r, "operations", "CREATE")
                && has(r, "apiGroups", "")
                && has(r, "apiVersions", "v1")
                && has(r, "resources", "pods")
        })
    })
}

fn failure(webhook: &str, why: String) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!("Internal error occurred: failed calling webhook \"{webhook}\": {why}"),
    )
}

/// Mutate a pod being created, or refuse it as a `failurePolicy: Fail` webhook would.
pub fn admit_pod(store: &Store, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    let ns_labels = store
        .get(&res("namespaces"), "", namespace)
        .map(|n| labels_of(&n))
        .unwrap_or_default();
    // The store keeps cluster-scoped objects in name order: the order the API server calls
    // configurations in.
    for config in store.all(&res("mutatingwebhookconfigurations"), "") {
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            if !covers_pod_create(webhook)
                || !Selector::from_object(&webhook["namespaceSelector"]).matches(&ns_labels)
                || !Selector::from_object(&webhook["objectSelector"]).matches(&labels_of(pod))
            {
                continue;
            }
            let name = s(webhook, "/name");
            match call(store, name, webhook, pod) {
                Ok(()) => {}
                Err(_) if s(webhook, "/failurePolicy") == "Ignore" => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Call a webhook's Service: the istiod behind its first ready endpoint injects the pod.
fn call(store: &Store, webhook: &str, config: &Value, pod: &mut Value) -> Result<(), ApiError> {
    let svc_ns = s(config, "/clientConfig/service/namespace");
    let svc = s(config, "/clientConfig/service/name");
    let path = config
        .pointer("/clientConfig/service/path")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let port = config
        .pointer("/clientConfig/service/port")
        .and_then(Value::as_u64)
        .unwrap_or(443);
    let url = format!("https://{svc}.{svc_ns}.svc:{port}{path}?timeout=10s");
    if svc.is_empty() {
        return Err(failure(
            webhook,
            "the sim calls webhooks through clientConfig.service only".into(),
        ));
    }
    if s(config, "/clientConfig/caBundle").is_empty() {
        return Err(failure(
            webhook,
            format!(
                "failed to call webhook: Post \"{url}\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
            ),
        ));
    }
    if store.get(&res("services"), svc_ns, svc).is_err() {
        return Err(failure(
            webhook,
            format!("failed to call webhook: service \"{svc}\" not found"),
        ));
    }
    let endpoints = store.get(&res("endpoints"), svc_ns, svc).ok();
    let address = endpoints
        .as_ref()
        .and_then(|e| e.pointer("/subsets/0/addresses/0"))
        .cloned();
    let Some(address) = address else {
        return Err(failure(
            webhook,
            format!(
                "failed to call webhook: Post \"{url}\": no endpoints available for service \"{svc}\""
            ),
        ));
    };
    // The endpoint may still list a pod that is gone (endpoints lag behind pods).
    let istiod = store
        .get(
            &res("pods"),
            s(&address, "/targetRef/namespace"),
            s(&address, "/targetRef/name"),
        )
        .map_err(|_| {
            failure(
                webhook,
                format!(
                    "failed to call webhook: Post \"{url}\": dial tcp {}:15017: connect: connection refused",
                    s(&address, "/ip")
                ),
            )
        })?;
    if pod
        .pointer("/metadata/annotations/sidecar.istio.io~1status")
        .is_some()
    {
        return Ok(());
    }
    let revision = labels_of(&istiod)
        .get("istio.io/rev")
        .cloned()
        .unwrap_or_else(|| "default".into());
    let Some(image) = expected_image(store, &revision) else {
        return Err(failure(
            webhook,
            format!(
                "admission webhook \"{webhook}\" denied the request: injector ConfigMap of revision \"{revision}\" has no proxy image"
            ),
        ));
    };
    inject(pod, &revision, &image);
    Ok(())
}

/// What Istio's injector adds: the proxy (a native sidecar from Istio 1.27, or the gateway
/// template's own `istio-proxy` container), and the `istio.io/rev` and
/// `sidecar.istio.io/status` annotations.
fn inject(pod: &mut Value, revision: &str, image: &str) {
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
    let native = !gateway && native_sidecars(image);
    if !gateway {
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
        if !pod["spec"][list].is_array() {
            pod["spec"][list] = json!([]);
        }
        if let Some(arr) = pod["spec"][list].as_array_mut() {
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
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    pod["metadata"]["annotations"]["istio.io/rev"] = json!(revision);
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json!(status.to_string());
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

/// Labels as a map, for tests building label sets.
pub fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Value {
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}])
    }

    /// istiod 1.29.6 serving, with its revision webhook and tag `stable` (as the chart renders
    /// their selectors), `ca` as caBundle, and `ready` ready istiod endpoints.
    fn world(ca: &str, ready: bool) -> Store {
        let mut s = Store::new();
        for (ns, labels) in [
            ("istio-system", json!({})),
            ("apps", json!({"istio.io/rev": "stable"})),
        ] {
            s.create(
                &res("namespaces"),
                "",
                json!({"metadata": {"name": ns, "labels": labels}}),
            )
            .expect("ns");
        }
        let values = json!({"global": {"hub": "docker.io/istio", "tag": "1.29.6", "proxy": {"image": "proxyv2"}}});
        s.create(&res("configmaps"), "istio-system", json!({"metadata": {"name": "istio-sidecar-injector-1-29-6"}, "data": {"values": values.to_string()}})).expect("cm");
        s.create(
            &res("pods"),
            "istio-system",
            json!({"metadata": {"name": "istiod-1-29-6-x", "labels": {"app": "istiod", "istio.io/rev": "1-29-6"}}}),
        )
        .expect("istiod pod");
        s.create(&res("services"), "istio-system", json!({"metadata": {"name": "istiod-1-29-6"}, "spec": {"selector": {"app": "istiod", "istio.io/rev": "1-29-6"}}})).expect("svc");
        let addresses = if ready {
            json!([{"ip": "10.42.0.9", "targetRef": {"kind": "Pod", "namespace": "istio-system", "name": "istiod-1-29-6-x"}}])
        } else {
            json!([])
        };
        s.create(
            &res("endpoints"),
            "istio-system",
            json!({"metadata": {"name": "istiod-1-29-6"}, "subsets": [{"addresses": addresses}]}),
        )
        .expect("ep");
        let hook = |name: &str, labels: Value, value: &str| {
            json!({"metadata": {"name": name, "labels": labels}, "webhooks": [{
                "name": "rev.namespace.sidecar-injector.istio.io",
                "clientConfig": {"caBundle": ca, "service": {"name": "istiod-1-29-6", "namespace": "istio-system", "path": "/inject", "port": 443}},
                "rules": rules(), "failurePolicy": "Fail",
                "namespaceSelector": {"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [value]}, {"key": "istio-injection", "operator": "DoesNotExist"}]},
                "objectSelector": {"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]},
            }]})
        };
        s.create(
            &res("mutatingwebhookconfigurations"),
            "",
            hook(
                "istio-sidecar-injector-1-29-6",
                json!({"istio.io/rev": "1-29-6"}),
                "1-29-6",
            ),
        )
        .expect("rev hook");
        s.create(
            &res("mutatingwebhookconfigurations"),
            "",
            hook(
                "istio-revision-tag-stable",
                json!({"istio.io/tag": "stable", "istio.io/rev": "1-29-6"}),
                "stable",
            ),
        )
        .expect("tag hook");
        s
    }

    #[test]
    fn pods_on_a_tag_get_the_proxy_of_the_istiod_behind_its_service() {
        let s = world("Y2E=", true);
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app"}]}});
        admit_pod(&s, "apps", &mut pod).expect("admitted");
        assert_eq!(
            injected(&pod),
            Some(("1-29-6".into(), "docker.io/istio/proxyv2:1.29.6".into()))
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
    fn an_empty_ca_bundle_or_no_ready_endpoint_refuses_the_pod() {
        let mut pod = json!({"metadata": {"name": "p"}});
        let e = admit_pod(&world("", true), "apps", &mut pod).expect_err("no caBundle");
        assert!(
            e.message.contains(
                "failed calling webhook \"rev.namespace.sidecar-injector.istio.io\": failed to call webhook: Post \"https://istiod-1-29-6.istio-system.svc:443/inject?timeout=10s\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
            ),
            "{}",
            e.message
        );
        let e = admit_pod(&world("Y2E=", false), "apps", &mut pod).expect_err("istiod down");
        assert!(
            e.message
                .contains("no endpoints available for service \"istiod-1-29-6\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_stale_endpoint_of_a_gone_istiod_refuses_the_connection() {
        let mut s = world("Y2E=", true);
        s.remove(&res("pods"), "istio-system", "istiod-1-29-6-x")
            .expect("istiod gone");
        let e =
            admit_pod(&s, "apps", &mut json!({"metadata": {"name": "p"}})).expect_err("refused");
        assert!(
            e.message.contains("connect: connection refused"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ignore_policy_lets_the_pod_through_uninjected() {
        let mut s = world("", true);
        let mwc = res("mutatingwebhookconfigurations");
        for name in ["istio-sidecar-injector-1-29-6", "istio-revision-tag-stable"] {
            let mut hook = s.get(&mwc, "", name).expect("hook");
            hook["webhooks"][0]["failurePolicy"] = json!("Ignore");
            s.update(&mwc, "", name, hook).expect("update");
        }
        let mut pod = json!({"metadata": {"name": "p"}});
        admit_pod(&s, "apps", &mut pod).expect("admitted");
        assert_eq!(injected(&pod), None);
    }

    #[test]
    fn the_selectors_of_the_objects_decide_not_the_tag_name() {
        // A tag object whose selector names another tag injects nothing into `stable`.
        let mut s = world("Y2E=", true);
        let mwc = res("mutatingwebhookconfigurations");
        let mut hook = s.get(&mwc, "", "istio-revision-tag-stable").expect("hook");
        hook["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"] =
            json!(["stabel"]);
        s.update(&mwc, "", "istio-revision-tag-stable", hook)
            .expect("update");
        let mut pod = json!({"metadata": {"name": "p"}});
        admit_pod(&s, "apps", &mut pod).expect("admitted");
        assert_eq!(injected(&pod), None);
    }

    #[test]
    fn the_store_admits_pods_through_the_webhooks() {
        let mut s = world("Y2E=", true);
        let pods = res("pods");
        let created = s
            .create(&pods, "apps", json!({"metadata": {"name": "p"}}))
            .expect("created");
        assert_eq!(created["metadata"]["annotations"]["istio.io/rev"], "1-29-6");
        let mut down = world("Y2E=", false);
        assert_eq!(
            down.create(&pods, "apps", json!({"metadata": {"name": "p"}}))
                .expect_err("istiod down")
                .code,
            500
        );
        assert!(down.all(&pods, "apps").is_empty());
    }

    #[test]
    fn pods_outside_the_mesh_are_untouched() {
        let s = world("", false);
        let mut pod = json!({"metadata": {"name": "p"}});
        admit_pod(&s, "istio-system", &mut pod).expect("no injection asked");
        assert!(pod["metadata"].get("annotations").is_none());
    }
}
