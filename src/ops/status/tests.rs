use super::*;
use crate::mesh::Injectors;
use crate::mesh::fixtures::{PodFixture, labels, pod};

const NEW: &str = "docker.io/istio/proxyv2:1.30.3";
const OLD: &str = "docker.io/istio/proxyv2:1.29.6";

fn mesh() -> Mesh {
    Mesh {
        injectors: Injectors {
            revisions: vec!["1-29-6".into(), "1-30-3".into()],
            tags: [("stable".to_string(), "1-30-3".to_string())].into(),
        },
        images: [
            ("1-29-6".to_string(), OLD.to_string()),
            ("1-30-3".to_string(), NEW.to_string()),
        ]
        .into(),
        namespaces: [
            ("apps".to_string(), labels(&[("istio.io/rev", "stable")])),
            ("kube-system".to_string(), BTreeMap::new()),
            ("on".to_string(), labels(&[("istio-injection", "enabled")])),
            ("plain".to_string(), BTreeMap::new()),
        ]
        .into(),
    }
}

#[test]
fn workload_rows_count_pods_and_collect_revisions_versions_and_reasons() {
    let web = |n: &str| pod("apps", n).owned_by("ReplicaSet", "web-5d9c");
    let pods = vec![
        web("web-1").injected("1-30-3", NEW),
        web("web-2").injected("1-29-6", OLD),
        web("web-3").injected("1-29-6", OLD),
        web("web-4").injected("1-29-6", OLD).terminating(),
        pod("apps", "batch-x")
            .owned_by("Job", "batch")
            .injected("1-29-6", OLD),
        pod("plain", "solo"),
        pod("kube-system", "coredns-1").owned_by("ReplicaSet", "coredns-7"),
    ];
    let rows = workload_rows(&pods, &mesh());
    let ids: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.namespace.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(
        ids,
        [("apps", "web"), ("apps", "batch"), ("plain", "solo")],
        "sorted by namespace, kind, name; system namespaces left out"
    );
    let web = &rows[0];
    assert_eq!(
        (web.kind.as_str(), web.pods, web.terminating),
        ("Deployment", 3, 1)
    );
    assert_eq!(
        web.revisions,
        [Some("1-30-3".to_string()), Some("1-29-6".to_string())]
    );
    assert_eq!(
        web.proxy_versions,
        [Some("1.30.3".to_string()), Some("1.29.6".to_string())]
    );
    assert_eq!(web.expected_revision.as_deref(), Some("1-30-3"));
    assert!(web.needs_restart);
    assert_eq!(
        web.reasons.len(),
        1,
        "the same reason once: {:?}",
        web.reasons
    );
    let batch = &rows[1];
    assert!(!batch.needs_restart, "Jobs are not restarted");
    let solo = &rows[2];
    assert_eq!(solo.kind, "Pod");
    assert_eq!(solo.revisions, [None]);
    assert_eq!(solo.proxy_versions, [None]);
    assert_eq!(solo.expected_revision, None);
    assert!(!solo.needs_restart);
}

#[test]
fn namespace_rows_say_which_label_selects_and_what_it_resolves_to() {
    let rows = namespace_rows(&mesh());
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| (r.selects.as_str(), r.revision.as_deref()))
    };
    assert_eq!(row("apps"), Some(("istio.io/rev=stable", Some("1-30-3"))));
    assert_eq!(
        row("on"),
        Some(("istio-injection=enabled", None)),
        "no default tag"
    );
    assert_eq!(row("plain"), Some(("no injection label", None)));
    assert_eq!(row("kube-system"), None);
}

#[test]
fn a_stopped_cluster_reports_only_what_k3d_knows() {
    let s = Status {
        cluster: "ci".into(),
        running: false,
        owned: true,
        live: None,
        urls: Urls {
            ingress: Some("http://127.0.0.1:8080/".into()),
            ingress_tls: None,
        },
    };
    assert_eq!(
        serde_json::to_string(&s).expect("json"),
        r#"{"cluster":"ci","running":false,"owned":true,"urls":{"ingress":"http://127.0.0.1:8080/"}}"#
    );
    assert_eq!(text(&s), "cluster ci: stopped\n");
}

#[test]
fn a_running_clusters_status_keeps_its_json_shape_and_text() {
    let view = mesh();
    let pods = vec![
        pod("apps", "web-1")
            .owned_by("ReplicaSet", "web-5d9c")
            .injected("1-29-6", OLD),
    ];
    let s = Status {
        cluster: "ci".into(),
        running: true,
        owned: false,
        live: Some(Live {
            spec_hash: Some("abc".into()),
            nodes: vec![NodeRow {
                name: "k3d-ci-server-0".into(),
                ready: true,
                role: "server".into(),
            }],
            revisions: revision_rows(&view, &[]),
            tags: view.injectors.tags.clone(),
            namespaces: namespace_rows(&view),
            workloads: workload_rows(&pods, &view),
            releases: vec![ReleaseRow {
                name: "istiod-1-30-3".into(),
                namespace: "istio-system".into(),
                chart: "istiod-1.30.3".into(),
                status: "deployed".into(),
            }],
            addons: vec![AddonRow {
                name: "kiali".into(),
                namespace: "istio-system".into(),
                state: "ready".into(),
                ready: true,
                open: Some("paddock open ci kiali".into()),
            }],
        }),
        urls: Urls::default(),
    };
    let json = serde_json::to_value(&s).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "cluster",
            "running",
            "owned",
            "specHash",
            "nodes",
            "revisions",
            "tags",
            "namespaces",
            "workloads",
            "releases",
            "addons",
            "urls"
        ]
    );
    assert_eq!(
        json["revisions"][1],
        serde_json::json!({"revision": "1-30-3", "version": "1.30.3", "istiod": "istiod-1-30-3",
            "ready": false, "proxyImage": NEW})
    );
    assert_eq!(
        json["workloads"][0],
        serde_json::json!({"namespace": "apps", "kind": "Deployment", "name": "web",
            "pods": 1, "terminating": 0, "revisions": ["1-29-6"], "proxyVersions": ["1.29.6"],
            "expectedRevision": "1-30-3", "needsRestart": true,
            "reasons": ["injected by revision 1-29-6 but its labels now resolve to 1-30-3"]})
    );
    assert_eq!(
        json["addons"],
        serde_json::json!([{"name": "kiali", "namespace": "istio-system", "state": "ready",
            "ready": true, "open": "paddock open ci kiali"}])
    );
    let t = text(&s);
    for line in [
        "cluster ci: running (not created by paddock)\n",
        "  1-30-3       1.30.3     NOT READY\n",
        "  stable       → 1-30-3\n",
        "  apps/web Deployment (1 pods): revision 1-29-6, proxy 1.29.6, NEEDS RESTART\n",
        "      injected by revision 1-29-6 but its labels now resolve to 1-30-3\n",
    ] {
        assert!(t.contains(line), "{line:?} in\n{t}");
    }
}
