//! Server-side apply against the sim's API server over HTTPS, as kube-rs and kubectl send it:
//! field ownership in `metadata.managedFields`, removal of what an applier stops applying,
//! conflicts with Kubernetes' 409, force, updates taking ownership, list merge keys, and
//! idempotence. The last tests drive the real `kubectl` (skipped when it is missing, unless
//! PADDOCK_REQUIRE_TOOLS=1) and the fake helm's server-side apply.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use paddock_sim::Cluster;
use paddock_sim::store::res;
use serde_json::{Value, json};

const NS: &str = "apps";

/// One HTTP exchange with the sim.
struct Reply {
    code: u16,
    body: Value,
}

struct Api {
    client: paddock_sim::client::Client,
}

impl Api {
    fn call(&self, method: &str, path: &str, content_type: &str, body: &str, ua: &str) -> Reply {
        let r = self
            .client
            .request_as(method, path, content_type, body.as_bytes(), Some(ua))
            .expect("request");
        Reply {
            code: r.code,
            body: r.json(),
        }
    }

    /// Server-side apply as kube-rs sends it (`PatchParams::apply(manager)`, `.force()`).
    fn apply(&self, path: &str, manager: &str, force: bool, config: &Value) -> Reply {
        let force = if force { "&force=true" } else { "" };
        self.call(
            "PATCH",
            &format!("{path}?fieldManager={manager}{force}"),
            "application/apply-patch+yaml",
            &config.to_string(),
            "",
        )
    }

    fn get(&self, path: &str) -> Value {
        let r = self.call("GET", path, "application/json", "", "");
        assert_eq!(r.code, 200, "GET {path}: {}", r.body);
        r.body
    }
}

fn cm_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/configmaps/{name}")
}

fn deploy_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}

/// A ConfigMap configuration; empty labels or data are left out (applying `{}` would own
/// the empty map itself).
fn cm(name: &str, labels: Value, data: Value) -> Value {
    let mut c = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS}});
    if labels.as_object().is_some_and(|m| !m.is_empty()) {
        c["metadata"]["labels"] = labels;
    }
    if data.as_object().is_some_and(|m| !m.is_empty()) {
        c["data"] = data;
    }
    c
}

/// The fieldsV1 of `manager`'s entry (of the given operation), if it has one.
fn owned(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
}

/// A cluster with namespace `apps`, and a blocking test body run against its API.
async fn with_api(name: &str, test: impl FnOnce(Api, &Cluster) + Send + 'static) {
    let cluster = Cluster::start(name).await.expect("sim starts");
    cluster.with_store(|s| {
        s.create(&res("namespaces"), "", json!({"metadata": {"name": NS}}))
            .expect("namespace")
    });
    let api = Api {
        client: cluster.client().expect("client"),
    };
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || test(api, &c))
        .await
        .expect("test body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_a_missing_object_but_not_in_a_missing_namespace() {
    with_api("ssa-create", |api, _| {
        // A YAML body, as kubectl sends it.
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\n  namespace: {NS}\n  labels:\n    team: a\ndata:\n  k: v\n"
        );
        let r = api.call(
            "PATCH",
            &format!("{}?fieldManager=a", cm_path("made")),
            "application/apply-patch+yaml",
            &yaml,
            "",
        );
        assert_eq!(r.code, 201, "{}", r.body);
        let entries = r.body["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields");
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = &entries[0];
        assert_eq!(
            (&e["manager"], &e["operation"], &e["apiVersion"], &e["fieldsType"]),
            (&json!("a"), &json!("Apply"), &json!("v1"), &json!("FieldsV1"))
        );
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            e["fieldsV1"],
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:team": {}}}})
        );

        let r = api.apply(
            "/api/v1/namespaces/nope/configmaps/c",
            "a",
            false,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        );
        assert_eq!(r.code, 404, "{}", r.body);
        assert_eq!(r.body["message"], "namespaces \"nope\" not found");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_applier_stops_applying_is_removed() {
    with_api("ssa-prune", |api, _| {
        let path = cm_path("c");
        let first = api.apply(
            &path,
            "paddock",
            true,
            &cm(
                "c",
                json!({"team": "a", "tier": "web"}),
                json!({"k": "v", "old": "x"}),
            ),
        );
        assert_eq!(first.code, 201, "{}", first.body);
        let second = api.apply(
            &path,
            "paddock",
            true,
            &cm("c", json!({"team": "a"}), json!({"k": "v"})),
        );
        assert_eq!(second.code, 200, "{}", second.body);
        let obj = api.get(&path);
        assert_eq!(obj["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(obj["data"], json!({"k": "v"}));
        assert_eq!(
            owned(&obj, "paddock", "Apply"),
            Some(json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:team": {}}}}))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_two_managers_apply_stays_until_both_stop() {
    with_api("ssa-shared", |api, _| {
        let path = cm_path("c");
        let with_x = cm("c", json!({"x": "1"}), json!({"k": "v"}));
        let without_x = cm("c", json!({}), json!({"k": "v"}));
        assert_eq!(api.apply(&path, "a", false, &with_x).code, 201);
        // The same value: no conflict, the field is shared.
        assert_eq!(api.apply(&path, "b", false, &with_x).code, 200);
        assert_eq!(api.apply(&path, "a", false, &without_x).code, 200);
        let obj = api.get(&path);
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"x": "1"}),
            "b still owns x"
        );
        assert_eq!(api.apply(&path, "b", false, &without_x).code, 200);
        let obj = api.get(&path);
        assert_eq!(obj["metadata"].get("labels"), None, "nobody owns x: {obj}");
        assert_eq!(obj["data"], json!({"k": "v"}), "both still apply k");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_another_managers_field_is_a_409_until_forced() {
    with_api("ssa-conflict", |api, _| {
        let path = cm_path("c");
        api.apply(&path, "a", false, &cm("c", json!({"team": "a"}), json!({"k": "1"})));

        let r = api.apply(&path, "b", false, &cm("c", json!({"team": "b"}), json!({"k": "1"})));
        assert_eq!(r.code, 409, "{}", r.body);
        assert_eq!(
            r.body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Apply failed with 1 conflict: conflict with \"a\": .metadata.labels.team",
                "reason": "Conflict", "code": 409,
                "details": {"causes": [{"reason": "FieldManagerConflict",
                    "message": "conflict with \"a\"", "field": ".metadata.labels.team"}]}})
        );
        let r = api.apply(&path, "b", false, &cm("c", json!({"team": "b"}), json!({"k": "2"})));
        assert_eq!(r.code, 409);
        assert_eq!(
            r.body["message"],
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.k\n- .metadata.labels.team"
        );
        assert_eq!(r.body["details"]["causes"].as_array().map(Vec::len), Some(2));
        let untouched = api.get(&path);
        assert_eq!(untouched["metadata"]["labels"]["team"], "a");

        let r = api.apply(&path, "b", true, &cm("c", json!({"team": "b"}), json!({"k": "1"})));
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(r.body["metadata"]["labels"]["team"], "b");
        assert_eq!(
            owned(&r.body, "a", "Apply"),
            Some(json!({"f:data": {"f:k": {}}})),
            "a lost team, kept k"
        );
        assert_eq!(
            owned(&r.body, "b", "Apply"),
            Some(json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:team": {}}}}))
        );
        // a now conflicts with b.
        let r = api.apply(&path, "a", false, &cm("c", json!({"team": "a"}), json!({"k": "1"})));
        assert_eq!(
            r.body["message"],
            "Apply failed with 1 conflict: conflict with \"b\": .metadata.labels.team"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_take_ownership_of_what_they_change() {
    with_api("ssa-update", |api, _| {
        let path = cm_path("c");
        api.apply(&path, "a", false, &cm("c", json!({}), json!({"k": "1"})));
        // kubectl label: a merge patch with its own field manager.
        let r = api.call(
            "PATCH",
            &format!("{path}?fieldManager=kubectl-label"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"team":"x"}}}"#,
            "kubectl/v1.35.2 (linux/amd64) kubernetes/fdc9d74",
        );
        assert_eq!(r.code, 200, "{}", r.body);
        let r = api.apply(&path, "b", false, &cm("c", json!({"team": "y"}), json!({})));
        assert_eq!(r.code, 409);
        assert_eq!(
            r.body["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl-label\" using v1: .metadata.labels.team"
        );
        assert_eq!(
            r.body["details"]["causes"][0]["message"],
            "conflict with \"kubectl-label\" using v1"
        );

        // Without fieldManager the User-Agent names the manager; the changed field leaves a.
        let r = api.call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            r#"{"data":{"k":"2"}}"#,
            "kubectl/v1.35.2 (linux/amd64) kubernetes/fdc9d74",
        );
        assert_eq!(r.code, 200);
        assert_eq!(owned(&r.body, "kubectl", "Update"), Some(json!({"f:data": {"f:k": {}}})));
        assert_eq!(owned(&r.body, "a", "Apply"), None, "a owned only k");
        let entries = |o: &Value| o["metadata"]["managedFields"].as_array().map(Vec::len);
        assert_eq!(entries(&r.body), Some(2), "{}", r.body);

        // PUT and POST are updates too.
        let mut whole = api.get(&path);
        whole["data"]["j"] = json!("3");
        let r = api.call(
            "PUT",
            &format!("{path}?fieldManager=kubectl-replace"),
            "application/json",
            &whole.to_string(),
            "",
        );
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(
            owned(&r.body, "kubectl-replace", "Update"),
            Some(json!({"f:data": {"f:j": {}}}))
        );
        let r = api.call(
            "POST",
            &format!("/api/v1/namespaces/{NS}/configmaps?fieldManager=kubectl-create"),
            "application/json",
            r#"{"metadata":{"name":"made","labels":{"a":"b"}},"data":{"k":"v"}}"#,
            "",
        );
        assert_eq!(r.code, 201);
        assert_eq!(
            owned(&r.body, "kubectl-create", "Update"),
            Some(json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}))
        );
    })
    .await;
}

fn deployment(name: &str, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": containers}}}})
}

fn container_names(d: &Value) -> Vec<String> {
    d.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_merge_by_name_each_manager_owning_its_own() {
    with_api("ssa-containers", |api, _| {
        let path = deploy_path("web");
        let r = api.apply(
            &path,
            "a",
            false,
            &deployment("web", json!([{"name": "app", "image": "app:1"}])),
        );
        assert_eq!(r.code, 201, "{}", r.body);
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:1"}]}}}});
        let r = api.apply(&path, "b", false, &sidecar);
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(container_names(&r.body), ["app", "sidecar"]);
        let b = owned(&r.body, "b", "Apply").expect("b owns something");
        assert_eq!(
            b,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        let a = owned(&r.body, "a", "Apply").expect("a owns something");
        assert!(
            a.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"app\"}")
                .is_some(),
            "{a}"
        );
        // a changes its image without touching b's container.
        let r = api.apply(
            &path,
            "a",
            false,
            &deployment("web", json!([{"name": "app", "image": "app:2"}])),
        );
        assert_eq!(container_names(&r.body), ["app", "sidecar"]);
        // b stops applying its container: it goes; a's stays.
        let r = api.apply(
            &path,
            "b",
            false,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                "annotations": {"b": "here"}}}),
        );
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(container_names(&r.body), ["app"]);
        assert_eq!(
            r.body["spec"]["template"]["spec"]["containers"][0]["image"],
            "app:2"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_lists_are_owned_and_replaced_whole() {
    with_api("ssa-atomic", |api, _| {
        let path = deploy_path("web");
        let mut d = deployment(
            "web",
            json!([{"name": "app", "image": "app:1", "args": ["--a", "--b"]}]),
        );
        d["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "x"}, {"key": "y"}]);
        api.apply(&path, "a", false, &d);
        let mut other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"tolerations": [{"key": "z"}]}}}});
        let r = api.apply(&path, "b", false, &other);
        assert_eq!(r.code, 409);
        assert_eq!(
            r.body["message"],
            "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.tolerations"
        );
        let r = api.apply(&path, "b", true, &other);
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(
            r.body["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "z"}])
        );
        // A list of scalars is atomic too: args are replaced, not merged.
        other = deployment(
            "web",
            json!([{"name": "app", "image": "app:1", "args": ["--c"]}]),
        );
        let r = api.apply(&path, "a", false, &other);
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(
            r.body["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["--c"])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_same_configuration_again_writes_nothing() {
    with_api("ssa-idempotent", |api, cluster| {
        let path = deploy_path("web");
        let d = deployment("web", json!([{"name": "app", "image": "app:1"}]));
        let first = api.apply(&path, "paddock", true, &d);
        assert_eq!(first.code, 201);
        // Let the controllers settle the Deployment's status first.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let rv = api.get(&path)["metadata"]["resourceVersion"].clone();
        let revision = cluster.with_store(|s| s.revision());
        let again = api.apply(&path, "paddock", true, &d);
        assert_eq!(again.code, 200);
        assert_eq!(again.body["metadata"]["resourceVersion"], rv);
        let seen = cluster.with_store(|s| {
            s.history
                .iter()
                .filter(|e| e.revision > revision && e.plural == "deployments")
                .count()
        });
        assert_eq!(seen, 0, "no watch event for a no-op apply");
        let merge = api.call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":1}}"#,
            "",
        );
        assert_eq!(
            merge.body["metadata"]["resourceVersion"], rv,
            "a patch that changes nothing writes nothing"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_patches_merge_containers_by_name() {
    with_api("ssa-smp", |api, _| {
        let path = deploy_path("web");
        api.apply(
            &path,
            "a",
            false,
            &deployment(
                "web",
                json!([{"name": "app", "image": "app:1"}, {"name": "side", "image": "s:1"}]),
            ),
        );
        let body = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"side"}],"containers":[{"name":"side","image":"s:2"}]}}}}"#;
        let r = api.call(
            "PATCH",
            &format!("{path}?fieldManager=kubectl-client-side-apply"),
            "application/strategic-merge-patch+json",
            body,
            "",
        );
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(
            r.body["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "app:1"}, {"name": "side", "image": "s:2"}])
        );
        // The same body as a JSON merge patch replaces the list (and has no directives).
        let r = api.call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"s:3"}]}}}}"#,
            "",
        );
        assert_eq!(container_names(&r.body), ["side"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_are_owned_under_the_status_subresource() {
    with_api("ssa-status", |api, _| {
        let path = deploy_path("web");
        api.apply(
            &path,
            "a",
            false,
            &deployment("web", json!([{"name": "app", "image": "app:1"}])),
        );
        let r = api.call(
            "PATCH",
            &format!("{path}/status?fieldManager=ctl"),
            "application/merge-patch+json",
            r#"{"status":{"observedGeneration":99}}"#,
            "",
        );
        assert_eq!(r.code, 200, "{}", r.body);
        let entry = r.body["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["manager"] == "ctl")
            .cloned()
            .expect("ctl entry");
        assert_eq!(entry["subresource"], "status");
        assert_eq!(entry["operation"], "Update");
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:status": {"f:observedGeneration": {}}})
        );
    })
    .await;
}

// ------------------------------------------------------------- the fake helm

/// One helm operation, both halves: the release pending and the objects applied, then the
/// outcome recorded.
fn helm(s: &mut paddock_sim::store::Store, req: Value) -> Value {
    let req = paddock_sim::helm::rendered(&req).expect("the real helm renders the chart");
    let first = paddock_sim::helm::serve(s, &req);
    match first.get("finish").filter(|f| !f.is_null()) {
        Some(finish) => {
            let done = paddock_sim::helm::serve(s, &json!({"op": "finish", "finish": finish}));
            assert_eq!(done["code"], 0, "{done}");
            first
        }
        None => first,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_4_applies_server_side_and_conflicts_with_a_forced_owner() {
    // The fake helm applies what the real helm renders.
    if paddock_sim::real_tools::helm().is_none() {
        return;
    }
    let cluster = Cluster::start("ssa-helm").await.expect("sim starts");
    let install = |tier: Option<&str>, force: bool| {
        let values = match tier {
            Some(t) => json!({"podLabels": {"tier": t}}),
            None => json!({}),
        };
        json!({"op": "upgrade", "install": true, "release": "grafana", "chart": "grafana",
            "version": "9.4.5", "namespace": "mon", "create_namespace": true,
            "values": values, "server_side": "auto", "force_conflicts": force})
    };
    let deploy = res("deployments");
    cluster.with_store(|s| {
        let out = helm(s, install(Some("a"), false));
        assert_eq!(out["code"], 0, "{out}");
        let d = s.get(&deploy, "mon", "grafana").expect("deployment");
        let helm_owns = owned(&d, "helm", "Apply").expect("helm applied");
        assert!(
            helm_owns
                .pointer("/f:spec/f:template/f:metadata/f:labels/f:tier")
                .is_some(),
            "{helm_owns}"
        );
        let ns = s.get(&res("namespaces"), "", "mon").expect("namespace");
        assert_eq!(ns["metadata"]["labels"]["name"], "mon");

        // Someone forces the label to another value: helm no longer owns it.
        let target = paddock_sim::ssa::Target {
            res: &deploy,
            namespace: "mon",
            name: "grafana",
            subresource: None,
        };
        paddock_sim::ssa::apply(
            s,
            &target,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "grafana"},
                "spec": {"template": {"metadata": {"labels": {"tier": "b"}}}}}),
            "paddock",
            true,
        )
        .expect("forced apply");

        let out = helm(s, install(Some("a"), false));
        assert_eq!(out["code"], 1);
        assert_eq!(
            out["stderr"],
            "Error: UPGRADE FAILED: conflict occurred while applying object mon/grafana apps/v1, Kind=Deployment: Apply failed with 1 conflict: conflict with \"paddock\": .spec.template.metadata.labels.tier\n"
        );
        let out = helm(s, install(Some("a"), true));
        assert_eq!(out["code"], 0, "{out}");
        let d = s.get(&deploy, "mon", "grafana").expect("deployment");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["tier"], "a");

        // helm stops rendering the label: it owns it alone now, so it goes.
        let out = helm(s, install(None, false));
        assert_eq!(out["code"], 0, "{out}");
        let d = s.get(&deploy, "mon", "grafana").expect("deployment");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"].get("tier"), None);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_3_updates_and_keeps_others_fields_out_of_its_ownership() {
    // The fake helm applies what the real helm renders.
    if paddock_sim::real_tools::helm().is_none() {
        return;
    }
    let cluster = Cluster::start("ssa-helm3").await.expect("sim starts");
    cluster.with_store(|s| {
        let out = helm(
            s,
            json!({"op": "upgrade", "install": true, "release": "grafana", "chart": "grafana",
                "version": "9.4.5", "namespace": "mon", "create_namespace": true}),
        );
        assert_eq!(out["code"], 0, "{out}");
        let d = s
            .get(&res("deployments"), "mon", "grafana")
            .expect("deployment");
        assert!(owned(&d, "helm", "Update").is_some(), "{d}");
        assert_eq!(owned(&d, "helm", "Apply"), None);
    });
}

// ------------------------------------------------------------- real kubectl

/// kubectl apply with a manifest on stdin (fields validated by the server: `fieldValidation=Strict`).
fn kubectl_apply(
    kubectl: &Path,
    kubeconfig: &Path,
    extra: &[&str],
    manifest: &str,
) -> (bool, String) {
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "-f", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("manifest");
    let out = child.wait_with_output().expect("kubectl finishes");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_applies_server_side_prunes_and_reports_conflicts() {
    let Some(kubectl) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("ssa-kubectl").await.expect("sim starts");
    cluster.with_store(|s| {
        s.create(&res("namespaces"), "", json!({"metadata": {"name": NS}}))
            .expect("namespace")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    let api = Api {
        client: cluster.client().expect("client"),
    };
    tokio::task::spawn_blocking(move || {
        let manifest = |labels: &str| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {NS}\n  labels:\n{labels}data:\n  k: v\n")
        };
        let a = ["--field-manager", "a"];
        let (ok, out) = kubectl_apply(&kubectl, &kubeconfig, &a, &manifest("    team: a\n    tier: web\n"));
        assert!(ok, "{out}");
        assert_eq!(out.trim(), "configmap/c serverside-applied");
        let obj = api.get(&cm_path("c"));
        assert_eq!(obj["metadata"]["labels"], json!({"team": "a", "tier": "web"}));
        assert!(owned(&obj, "a", "Apply").is_some(), "{obj}");

        let (ok, out) = kubectl_apply(&kubectl, &kubeconfig, &a, &manifest("    team: a\n"));
        assert!(ok, "{out}");
        let obj = api.get(&cm_path("c"));
        assert_eq!(obj["metadata"]["labels"], json!({"team": "a"}), "tier removed");

        let (ok, out) = kubectl_apply(
            &kubectl,
            &kubeconfig,
            &["--field-manager", "b"],
            &manifest("    team: b\n"),
        );
        assert!(!ok, "{out}");
        assert!(
            out.starts_with("error: Apply failed with 1 conflict: conflict with \"a\": .metadata.labels.team\nPlease review the fields above--they currently have other managers."),
            "{out}"
        );
        let (ok, out) = kubectl_apply(
            &kubectl,
            &kubeconfig,
            &["--field-manager", "b", "--force-conflicts"],
            &manifest("    team: b\n"),
        );
        assert!(ok, "{out}");
        let obj = api.get(&cm_path("c"));
        assert_eq!(obj["metadata"]["labels"]["team"], "b");

        // Without --field-manager, kubectl applies as `kubectl`.
        let (ok, out) = kubectl_apply(&kubectl, &kubeconfig, &[], &manifest("    team: b\n    owner: k\n"));
        assert!(ok, "{out}");
        let obj = api.get(&cm_path("c"));
        assert_eq!(
            owned(&obj, "kubectl", "Apply"),
            Some(json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:owner": {}, "f:team": {}}}}))
        );

        // kubectl shows the owners.
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "configmap", "c", "-n", NS, "-o", "yaml", "--show-managed-fields"])
            .output()
            .expect("kubectl get");
        let yaml = String::from_utf8_lossy(&out.stdout);
        assert!(yaml.contains("manager: b\n    operation: Apply"), "{yaml}");
        assert!(yaml.contains("f:team: {}"), "{yaml}");
    })
    .await
    .expect("kubectl steps");
}
