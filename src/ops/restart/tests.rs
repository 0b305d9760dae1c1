//! Restart's pure decisions, each shown by a test.

use k8s_openapi::api::core::v1::Volume;

use super::*;
use crate::mesh::fixtures::{PodFixture, container, labels, pod};

const NEW: &str = "docker.io/istio/proxyv2:1.30.3";
const OLD: &str = "docker.io/istio/proxyv2:1.29.6";

/// Revisions 1-29-6 and 1-30-3 with their images; namespace `apps` selects 1-30-3.
fn mesh() -> Mesh {
    Mesh {
        injectors: Injectors {
            revisions: vec!["1-29-6".into(), "1-30-3".into()],
            tags: BTreeMap::new(),
        },
        images: [
            ("1-29-6".to_string(), OLD.to_string()),
            ("1-30-3".to_string(), NEW.to_string()),
        ]
        .into(),
        namespaces: [
            ("apps".to_string(), labels(&[("istio.io/rev", "1-30-3")])),
            ("plain".to_string(), BTreeMap::new()),
        ]
        .into(),
    }
}

#[test]
fn pods_belong_to_the_workload_that_owns_them() {
    let cases = [
        (
            pod("apps", "web-5d9c-x").owned_by("ReplicaSet", "web-5d9c"),
            ("Deployment", "web"),
        ),
        (
            pod("apps", "my-api-7f-x").owned_by("ReplicaSet", "my-api-7f"),
            ("Deployment", "my-api"),
        ),
        (
            pod("apps", "db-0").owned_by("StatefulSet", "db"),
            ("StatefulSet", "db"),
        ),
        (
            pod("apps", "log-x").owned_by("DaemonSet", "log"),
            ("DaemonSet", "log"),
        ),
        (
            pod("apps", "once-x").owned_by("Job", "once"),
            ("Job", "once"),
        ),
        (pod("apps", "bare"), ("Pod", "bare")),
        (
            pod("apps", "odd").owned_by("SomethingElse", "x"),
            ("Pod", "odd"),
        ),
    ];
    for (p, (kind, name)) in cases {
        assert_eq!(
            workload_of(&p),
            (kind.to_string(), name.to_string()),
            "{:?}",
            p.metadata.name
        );
    }
}

#[test]
fn a_pod_needs_a_restart_when_its_proxy_is_not_what_its_namespace_selects() {
    let m = mesh();
    assert_eq!(
        m.restart_reason(&pod("apps", "web").injected("1-30-3", NEW)),
        None
    );
    assert!(
        m.restart_reason(&pod("apps", "web").injected("1-29-6", OLD))
            .is_some_and(|r| r.contains("injected by revision 1-29-6"))
    );
    assert!(
        m.restart_reason(&pod("apps", "web").injected("1-30-3", OLD))
            .is_some_and(|r| r.contains("differs")),
        "same revision, old image"
    );
    assert!(
        m.restart_reason(&pod("apps", "web"))
            .is_some_and(|r| r.contains("no proxy"))
    );
    assert_eq!(m.restart_reason(&pod("plain", "web")), None);
    assert_eq!(
        m.expected_revision(&pod("plain", "web").labelled("istio.io/rev", "1-29-6"))
            .as_deref(),
        Some("1-29-6"),
        "the pod's own label counts where the namespace has none"
    );
    assert_eq!(
        m.expected_revision(&pod("gone", "web")),
        None,
        "an unknown namespace has no labels"
    );
}

#[test]
fn injector_config_maps_give_each_revision_its_image() {
    let cm = |name: &str, values: Option<&str>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: values.map(|v| [("values".to_string(), v.to_string())].into()),
        ..ConfigMap::default()
    };
    let values = |tag: &str| {
        format!(
            r#"{{"global":{{"hub":"docker.io/istio","tag":"{tag}","proxy":{{"image":"proxyv2"}}}}}}"#
        )
    };
    let images = injected_images(&[
        cm("istio-sidecar-injector", Some(&values("1.29.6"))),
        cm("istio-sidecar-injector-1-30-3", Some(&values("1.30.3"))),
        cm("istio-sidecar-injector-broken", Some("not json")),
        cm("istio-sidecar-injector-empty", None),
        cm("istio", Some(&values("9.9.9"))),
    ]);
    assert_eq!(
        images,
        [
            (String::new(), OLD.to_string()),
            ("1-30-3".to_string(), NEW.to_string()),
        ]
        .into()
    );
}

#[test]
fn a_fresh_copy_drops_what_injection_added() {
    let mut p = pod("apps", "bare")
        .labelled("app", "bare")
        .injected("1-29-6", OLD);
    let volume = |name: &str| Volume {
        name: name.into(),
        ..Volume::default()
    };
    if let Some(spec) = &mut p.spec {
        spec.init_containers = Some(vec![
            container("istio-init", OLD),
            container("migrate", "example/migrate:1"),
        ]);
        spec.volumes = Some(vec![volume("istio-envoy"), volume("data")]);
        spec.node_name = Some("node-1".into());
    }
    let annotations = p.metadata.annotations.get_or_insert_default();
    annotations.insert("sidecar.istio.io/status".into(), "{}".into());
    annotations.insert("team".into(), "web".into());
    p.metadata.resource_version = Some("42".into());

    let copy = fresh_copy(&p);
    let spec = copy.spec.expect("spec");
    let names = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<String> {
        cs.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(names(&spec.containers), ["app"]);
    assert_eq!(
        names(spec.init_containers.as_deref().unwrap_or_default()),
        ["migrate"]
    );
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["data"]);
    assert_eq!(spec.node_name, None, "the scheduler places it anew");
    assert_eq!(copy.metadata.name.as_deref(), Some("bare"));
    assert_eq!(copy.metadata.namespace.as_deref(), Some("apps"));
    assert_eq!(copy.metadata.labels, Some(labels(&[("app", "bare")])));
    assert_eq!(
        copy.metadata.annotations,
        Some(labels(&[("team", "web")])),
        "the revision and injection status go"
    );
    assert_eq!(copy.metadata.resource_version, None);
    assert_eq!(copy.metadata.uid, None);
}
