//! The real kubectl 1.35 and helm 4 read the sim's OpenAPI documents and leave field
//! validation to its API server: create, client-side apply (strategic merge patches computed
//! from the published schemas), server-side apply, label, delete, rollout restart and status,
//! explain, and the server's strict errors for unknown fields; helm renders and installs a
//! chart past its OpenAPI download. The documents themselves: hashed URLs, caching headers,
//! CRDs' documents changing with their CRDs. Skipped when the tools are missing, unless
//! PADDOCK_REQUIRE_TOOLS=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use paddock_sim::Cluster;
use paddock_sim::store::{Store, res};
use serde_json::{Value, json};

const NS: &str = "shop";

/// The real kubectl against one cluster, with its own kubeconfig and cache.
struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(bin: PathBuf, cluster: &Cluster) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kubeconfig"), cluster.kubeconfig()).expect("kubeconfig");
        Self { bin, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `text` as the file `name` in this kubectl's directory.
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("manifest");
        p.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.path().join("cache"))
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Run and expect success: stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and expect failure: stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Run blocking kubectl calls off the runtime the cluster's API server runs on.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("kubectl task")
}

async fn cluster(name: &str) -> Cluster {
    let cluster = Cluster::start(name).await.expect("sim starts");
    cluster.with_store(|s| {
        s.create(&res("namespaces"), "", json!({"metadata": {"name": NS}}))
            .expect("namespace");
    });
    cluster
}

/// A Deployment (two env vars, two labels), a Service and a ConfigMap.
fn manifests(env: &[(&str, &str)], labels: &[(&str, &str)]) -> String {
    let env: Vec<String> = env
        .iter()
        .map(|(n, v)| format!("        - {{name: {n}, value: \"{v}\"}}"))
        .collect();
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}"))
        .collect();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
  labels:
{labels}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{{containerPort: 80}}]
        env:
{env}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
  namespace: {NS}
data:
  greeting: hello
",
        labels = labels.join("\n"),
        env = env.join("\n"),
    )
}

fn deployment(s: &Store) -> Option<Value> {
    s.get(&res("deployments"), NS, "web").ok()
}

fn env_names(d: &Value) -> Vec<String> {
    d.pointer("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_then_client_side_apply_removes_what_the_manifest_dropped() {
    let Some(bin) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = cluster("oa-apply").await;
    let k = Kubectl::new(bin, &cluster);
    let full = manifests(
        &[("A", "1"), ("B", "2")],
        &[("app", "web"), ("tier", "front")],
    );
    let fewer = manifests(&[("A", "1")], &[("app", "web")]);
    let (full, fewer) = (k.file("full.yaml", &full), k.file("fewer.yaml", &fewer));
    let manifest = full.clone();
    let k = blocking(move || {
        let created = k.ok(&["create", "-f", &manifest]);
        assert!(created.contains("deployment.apps/web created"), "{created}");
        k
    })
    .await;
    cluster.with_store(|s| {
        let d = deployment(s).expect("deployment");
        assert_eq!(env_names(&d), ["A", "B"]);
        assert!(s.get(&res("services"), NS, "web").is_ok());
        assert_eq!(
            s.get(&res("configmaps"), NS, "web").expect("configmap")["data"],
            json!({"greeting": "hello"})
        );
        // Remove them again so the applies below start from nothing.
        for r in ["deployments", "services", "configmaps"] {
            s.delete(&res(r), NS, "web").expect("delete");
        }
    });

    let k = blocking(move || {
        let first = k.ok(&["apply", "-f", &full]);
        assert!(first.contains("deployment.apps/web created"), "{first}");
        k
    })
    .await;
    // What someone else added to the live object: a merge by key keeps it, where replacing
    // the lists (a schema without patch merge keys) would drop it.
    cluster.with_store(|s| {
        let mut d = deployment(s).expect("deployment");
        let spec = &mut d["spec"]["template"]["spec"];
        spec["containers"][0]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!({"name": "INJECTED", "value": "x"}));
        spec["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "sidecar", "image": "proxy:1"}));
        s.update(&res("deployments"), NS, "web", d).expect("update");
    });
    let k = blocking(move || {
        let second = k.ok(&["apply", "-f", &fewer]);
        assert!(
            second.contains("deployment.apps/web configured"),
            "{second}"
        );
        assert!(second.contains("service/web unchanged"), "{second}");
        k
    })
    .await;
    cluster.with_store(|s| {
        let d = deployment(s).expect("deployment");
        assert_eq!(
            env_names(&d),
            ["A", "INJECTED"],
            "the strategic merge patch removed env B and kept what it never applied"
        );
        let containers: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(containers, ["web", "sidecar"]);
        assert_eq!(
            d["metadata"]["labels"],
            json!({"app": "web"}),
            "label tier removed"
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/ports"),
            Some(&json!([{"containerPort": 80}]))
        );
        let last = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("last-applied");
        assert!(!last.contains("tier"), "{last}");
    });
    drop(k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_server_side_labels_restarts_rolls_out_and_deletes() {
    let Some(bin) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = cluster("oa-verbs").await;
    let k = Kubectl::new(bin, &cluster);
    let manifest = k.file("m.yaml", &manifests(&[("A", "1")], &[("app", "web")]));
    let k = blocking(move || {
        let applied = k.ok(&["apply", "--server-side", "-f", &manifest]);
        assert!(
            applied.contains("deployment.apps/web serverside-applied"),
            "{applied}"
        );
        k.ok(&["label", "deployment/web", "-n", NS, "team=payments"]);
        k.ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            NS,
            "--timeout=30s",
        ]);
        k
    })
    .await;
    let first_rs = cluster.with_store(|s| {
        let d = deployment(s).expect("deployment");
        assert_eq!(d["metadata"]["labels"]["team"], "payments");
        let managers: Vec<&str> = d["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(managers.contains(&"kubectl"), "{managers:?}");
        s.all(&res("replicasets"), NS).len()
    });
    assert_eq!(first_rs, 1);

    let k = blocking(move || {
        let restarted = k.ok(&["rollout", "restart", "deployment/web", "-n", NS]);
        assert!(
            restarted.contains("deployment.apps/web restarted"),
            "{restarted}"
        );
        let status = k.ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            NS,
            "--timeout=30s",
        ]);
        assert!(status.contains("successfully rolled out"), "{status}");
        k
    })
    .await;
    cluster.with_store(|s| {
        let d = deployment(s).expect("deployment");
        assert!(
            d.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
                .is_some(),
            "{d}"
        );
        assert_eq!(d["status"]["updatedReplicas"], 2);
        assert_eq!(d["status"]["availableReplicas"], 2);
        assert_eq!(s.all(&res("replicasets"), NS).len(), 2, "a new ReplicaSet");
    });

    let k = blocking(move || {
        let deleted = k.ok(&[
            "delete",
            "deployment/web",
            "configmap/web",
            "-n",
            NS,
            "--wait=false",
        ]);
        assert!(
            deleted.contains("deployment.apps \"web\" deleted"),
            "{deleted}"
        );
        k
    })
    .await;
    assert!(
        cluster
            .holds_within(Duration::from_secs(5), |s| deployment(s).is_none()
                && s.get(&res("configmaps"), NS, "web").is_err())
            .await
    );
    drop(k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_fail_with_the_servers_strict_errors_and_store_nothing() {
    let Some(bin) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = cluster("oa-strict").await;
    let k = Kubectl::new(bin, &cluster);
    let good = manifests(&[("A", "1")], &[("app", "web")]);
    let bad = good.replace(
        "        image: nginx:1.27\n",
        "        image: nginx:1.27\n        imagePullPolicyy: Always\n",
    );
    let bad_meta = good.replace(
        "  name: web\n  namespace",
        "  name: web\n  colour: red\n  namespace",
    );
    let (good, bad, bad_meta) = (
        k.file("good.yaml", &good),
        k.file("bad.yaml", &bad),
        k.file("bad-meta.yaml", &bad_meta),
    );
    let k = blocking(move || {
        let create = k.fails(&["apply", "-f", &bad]);
        assert!(
            create.contains(
                "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
            ),
            "{create}"
        );
        let server_side = k.fails(&["apply", "--server-side", "-f", &bad]);
        assert!(
            server_side.contains(&format!(
                "failed to create typed patch object ({NS}/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"web\"].imagePullPolicyy: field not declared in schema"
            )),
            "{server_side}"
        );
        k
    })
    .await;
    cluster.with_store(|s| assert!(deployment(s).is_none(), "nothing stored"));

    let k = blocking(move || {
        k.ok(&["apply", "-f", &good]);
        let patch = k.fails(&["apply", "-f", &bad_meta]);
        assert!(
            patch.contains("strict decoding error: unknown field \"metadata.colour\""),
            "{patch}"
        );
        let warned = k.run(&["apply", "--validate=warn", "-f", &bad_meta]);
        assert!(warned.status.success());
        let stderr = String::from_utf8_lossy(&warned.stderr);
        assert!(
            stderr.contains("Warning: unknown field \"metadata.colour\""),
            "{stderr}"
        );
        k
    })
    .await;
    cluster.with_store(|s| {
        let d = deployment(s).expect("deployment");
        assert!(
            d["metadata"].get("colour").is_none(),
            "dropped, not stored: {d}"
        );
    });
    drop(k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_reads_the_published_schemas() {
    let Some(bin) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = Cluster::start("oa-explain").await.expect("sim starts");
    let k = Kubectl::new(bin, &cluster);
    let (spec, port) = blocking(move || {
        (
            k.ok(&["explain", "deployment.spec"]),
            k.ok(&[
                "explain",
                "deployment.spec.template.spec.containers.ports.protocol",
            ]),
        )
    })
    .await;
    assert!(spec.contains("KIND:       Deployment"), "{spec}");
    assert!(spec.contains("FIELD: spec <DeploymentSpec>"), "{spec}");
    assert!(spec.contains("replicas\t<integer>"), "{spec}");
    assert!(spec.contains("template\t<PodTemplateSpec>"), "{spec}");
    assert!(port.contains("FIELD: protocol <string>"), "{port}");
}

const WIDGETS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              size: {type: integer, description: How big.}
              extras: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_kinds_are_documented_and_validated_from_their_crd() {
    let Some(bin) = paddock_sim::real_tools::kubectl() else {
        return;
    };
    let cluster = cluster("oa-crd").await;
    let k = Kubectl::new(bin, &cluster);
    let crd = k.file("crd.yaml", WIDGETS);
    let widget = |spec: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w, namespace: {NS}}}\nspec: {spec}\n"
        )
    };
    let good = k.file(
        "w.yaml",
        &widget("{size: 3, extras: {anything: {goes: 1}}}"),
    );
    let bad = k.file("w-bad.yaml", &widget("{size: 4, colour: red}"));
    let (explain, create, patch) = blocking(move || {
        k.ok(&["apply", "-f", &crd]);
        let explain = k.ok(&["explain", "widget.spec"]);
        let create = k.fails(&["create", "-f", &bad]);
        k.ok(&["apply", "-f", &good]);
        let patch = k.fails(&["apply", "-f", &bad]);
        (explain, create, patch)
    })
    .await;
    assert!(explain.contains("What the widget should be."), "{explain}");
    assert!(explain.contains("size\t<integer>"), "{explain}");
    assert!(
        create.contains("Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.colour\""),
        "{create}"
    );
    // A custom kind takes a JSON merge patch: kubectl chose it from the published PATCH body
    // types, and the server refused the result's unknown field.
    assert!(
        patch.contains("strict decoding error: unknown field \"spec.colour\""),
        "{patch}"
    );
    let widgets = widgets(&cluster);
    cluster.with_store(|s| {
        let w = s.get(&widgets, NS, "w").expect("widget");
        assert_eq!(
            w["spec"],
            json!({"size": 3, "extras": {"anything": {"goes": 1}}})
        );
    });
}

fn widgets(cluster: &Cluster) -> paddock_sim::store::Resource {
    cluster.with_store(|s| s.resource("example.com", "v1", "widgets").expect("served"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_cached_by_hash_and_change_when_a_crd_does() {
    let cluster = Cluster::start("oa-docs").await.expect("sim starts");
    let client = cluster.client().expect("client");
    let (root, apps, stale, again, v2, v2_proto, with_crd, changed) = blocking(move || {
        let get = |path: &str, headers: &[(&str, &str)]| {
            client
                .request_with("GET", path, headers, "", b"")
                .expect("request")
        };
        let root = get("/openapi/v3", &[]).json();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("apps url")
            .to_string();
        let apps = get(&url, &[]);
        let stale = get("/openapi/v3/apis/apps/v1?hash=0123", &[]);
        let etag = apps.header("etag").unwrap_or_default().to_string();
        let again = get(&url, &[("If-None-Match", &etag)]);
        let v2 = get("/openapi/v2", &[("Accept", "application/json")]);
        let v2_proto = get(
            "/openapi/v2",
            &[("Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")],
        );
        let crd = |size_type: &str| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets"},
                    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": size_type}}}}}}}]}})
        };
        let created = client
            .post_json(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                &crd("integer").to_string(),
            )
            .expect("crd");
        assert_eq!(created.code, 201, "{}", created.body);
        let with_crd = get("/openapi/v3", &[]).json();
        let mut update = crd("string");
        update["metadata"]["resourceVersion"] = created.json()["metadata"]["resourceVersion"].clone();
        let replaced = client
            .request(
                "PUT",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
                "application/json",
                update.to_string().as_bytes(),
            )
            .expect("update");
        assert_eq!(replaced.code, 200, "{}", replaced.body);
        let changed = get("/openapi/v3", &[]).json();
        (root, apps, stale, again, v2, v2_proto, with_crd, changed)
    })
    .await;

    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/apiextensions.k8s.io/v1",
        "apis/autoscaling/v2",
    ] {
        assert!(
            root["paths"][gv]["serverRelativeURL"].is_string(),
            "{gv} in {root}"
        );
    }
    assert_eq!(apps.code, 200);
    assert_eq!(apps.header("cache-control"), Some("public, immutable"));
    assert_eq!(apps.header("content-type"), Some("application/json"));
    let doc = apps.json();
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
    assert_eq!(stale.code, 301);
    assert!(
        stale
            .header("location")
            .is_some_and(|l| l.starts_with("/openapi/v3/apis/apps/v1?hash=")),
        "{:?}",
        stale.headers
    );
    assert_eq!(again.code, 304);
    assert_eq!(v2.code, 200);
    assert_eq!(v2.json()["swagger"], "2.0");
    assert!(v2.json()["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
    assert_eq!(
        v2_proto.code, 406,
        "no protobuf form: what the server answers an Accept it cannot serve"
    );

    let url = |root: &Value| root["paths"]["apis/example.com/v1"]["serverRelativeURL"].clone();
    assert!(root["paths"]["apis/example.com/v1"].is_null());
    assert!(url(&with_crd).is_string(), "{with_crd}");
    assert_ne!(
        url(&with_crd),
        url(&changed),
        "a changed CRD changes its document's hash"
    );
    assert_eq!(
        with_crd["paths"]["apis/apps/v1"], changed["paths"]["apis/apps/v1"],
        "built-in documents stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_renders_and_installs_a_chart_through_its_openapi_download() {
    let Some(helm) = paddock_sim::real_tools::helm() else {
        return;
    };
    let cluster = cluster("oa-helm").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("tiny");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  greeting: hello\n",
    )
    .expect("template");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).expect("kubeconfig");
    let home = dir.path().to_path_buf();
    let (template, install) = blocking(move || {
        let helm = |args: &[&str]| {
            Command::new(&helm)
                .args(args)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env("HELM_CACHE_HOME", home.join("cache"))
                .env("HELM_CONFIG_HOME", home.join("config"))
                .env("HELM_DATA_HOME", home.join("data"))
                .output()
                .expect("helm runs")
        };
        let chart = chart.display().to_string();
        (
            helm(&["template", "demo", &chart, "-n", NS]),
            helm(&["install", "demo", &chart, "-n", NS]),
        )
    })
    .await;
    let rendered = String::from_utf8_lossy(&template.stdout);
    assert!(
        template.status.success(),
        "{}",
        String::from_utf8_lossy(&template.stderr)
    );
    assert!(rendered.contains("name: demo-settings"), "{rendered}");

    let stderr = String::from_utf8_lossy(&install.stderr);
    assert!(
        !stderr.contains("openapi"),
        "helm install failed on openapi: {stderr}"
    );
    let fetched: Vec<String> = cluster.with_store(|s| {
        s.requests
            .iter()
            .filter(|r| r.path.starts_with("/openapi/"))
            .map(|r| r.path.clone())
            .collect()
    });
    assert!(fetched.iter().any(|p| p == "/openapi/v3"), "{fetched:?}");
    assert!(
        fetched.iter().all(|p| p != "/openapi/v2"),
        "no fallback to the v2 document: {fetched:?}"
    );
    // Past its OpenAPI download, the install completes: the release Secret goes in as
    // protobuf, the chart's objects are applied.
    assert!(install.status.success(), "{stderr}");
    cluster.with_store(|s| {
        let cm = s
            .get(&res("configmaps"), NS, "demo-settings")
            .expect("installed");
        assert_eq!(cm["data"], json!({"greeting": "hello"}));
    });
}
