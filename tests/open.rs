//! `paddock open CLUSTER ADDON` against the sim: the URL it prints answers from the addon's
//! pod (as the sim's store names it), through the API server's `pods/portforward`; a pod
//! replaced meanwhile is found anew; Ctrl-C ends it with exit 0 and closes the port; an addon
//! the spec does not enable, or a cluster that does not exist, is a clear error. And the sim's
//! `pods/portforward` itself, through kube-rs: 404 for a missing pod, 400 for one not running,
//! the kubelet's message on the error channel for a port nothing listens on.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{World, api, request, stderr, up_ok};

/// A cluster with only what `open kiali` needs: plain k3s with Prometheus and Kiali.
fn observability_world() -> World {
    let w = World::new(false);
    std::fs::write(
        w.repo.path().join("clusters/obs.yaml"),
        "name: obs\nprofile: minimal\naddons: [prometheus, kiali]\n",
    )
    .expect("write clusters/obs.yaml");
    up_ok(&w, "obs");
    w
}

/// The names of the kiali pods the sim runs: Ready and not terminating.
fn kiali_pods(w: &World) -> Vec<String> {
    let (code, pods) = api(
        w,
        "obs",
        "GET",
        "/api/v1/namespaces/istio-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dkiali",
        None,
    );
    assert_eq!(code, 200, "{pods}");
    let ready = |p: &Value| {
        p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| ready(p))
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// `paddock open obs ADDON`, which must fail with exit `code`: its stderr.
fn open_fails(w: &World, addon: &str, code: i32) -> String {
    let out = w.paddock(&["open", "obs", addon, "--no-browser"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// A running `paddock open`, and the lines it printed on stdout.
struct Open {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Open {
    fn start(w: &World, args: &[&str]) -> Self {
        let mut child = w.spawn_paddock(args);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// The first line of stdout that has `needle`.
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("paddock open printed no line with {needle:?}");
    }

    /// The loopback URL the text output prints.
    fn url(&self) -> String {
        self.line_with("http://")
            .split_whitespace()
            .find(|t| t.starts_with("http://127.0.0.1:"))
            .expect("a loopback URL")
            .to_string()
    }

    /// SIGINT (what Ctrl-C sends), then its exit code and stderr.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let st = std::process::Command::new("kill")
            .args(["-s", "INT", &pid])
            .status()
            .expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return (st.code(), err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("paddock open did not stop on SIGINT");
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://127.0.0.1:PORT/PATH` → (PORT, /PATH).
fn split_url(url: &str) -> (u16, String) {
    let rest = url.trim_start_matches("http://127.0.0.1:");
    let (port, path) = rest.split_once('/').expect("url with a path");
    (port.parse().expect("port"), format!("/{path}"))
}

/// The pod that answered a GET of `url`, from its `x-paddock-pod` header.
fn answering_pod(url: &str) -> String {
    let (port, path) = split_url(url);
    let (code, head) = request(port, "127.0.0.1", &path).expect("an answer through the forward");
    assert_eq!(code, 200, "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("x-paddock-pod: "))
        .expect("x-paddock-pod")
        .trim()
        .to_string()
}

#[test]
fn open_forwards_to_the_addons_pod_until_ctrl_c_and_finds_a_replaced_pod() {
    let w = observability_world();
    // A decoy beside kiali that sorts first and listens on kiali's port: the Service's
    // selector, not the namespace, picks the pod.
    let decoy = json!({"metadata": {"name": "aaa-decoy", "labels": {"app": "decoy"}},
        "spec": {"containers": [{"name": "decoy", "image": "example/decoy:1",
            "ports": [{"containerPort": 20001}]}]}});
    let (code, body) = api(
        &w,
        "obs",
        "POST",
        "/api/v1/namespaces/istio-system/pods",
        Some(&decoy),
    );
    assert_eq!(code, 201, "{body}");
    let pods = kiali_pods(&w);
    assert_eq!(pods.len(), 1, "{pods:?}");
    let open = Open::start(&w, &["open", "obs", "kiali", "--no-browser"]);
    let url = open.url();
    assert!(url.ends_with("/kiali/"), "kiali's web root: {url}");
    assert_eq!(answering_pod(&url), pods[0], "the kiali pod answers");

    let old = pods[0].clone();
    let (code, body) = api(
        &w,
        "obs",
        "DELETE",
        &format!("/api/v1/namespaces/istio-system/pods/{old}"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let now = kiali_pods(&w);
        if let Some(p) = now.iter().find(|p| **p != old) {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no new kiali pod: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answering_pod(&url), new, "the replacement answers");

    let (port, _) = split_url(&url);
    let (code, err) = open.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} closed after Ctrl-C"
    );
}

/// A JSON patch (RFC 6902) through the API: its status code.
fn json_patch(w: &World, path: &str, patch: &Value) -> u16 {
    let r = support::api_client(w, "obs")
        .request(
            "PATCH",
            path,
            "application/json-patch+json",
            patch.to_string().as_bytes(),
        )
        .expect("patch");
    r.code
}

#[test]
fn open_forwards_to_the_services_target_port_by_name() {
    let w = observability_world();
    let old = kiali_pods(&w);
    // Kiali's UI moves to container port 8080, named `ui`; the Service's port 20001 leads
    // there. Nothing listens on 20001 any more.
    let deployment = "/apis/apps/v1/namespaces/istio-system/deployments/kiali";
    let ports = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/ports",
        "value": [{"name": "ui", "containerPort": 8080}]}]);
    assert_eq!(json_patch(&w, deployment, &ports), 200);
    let service = "/api/v1/namespaces/istio-system/services/kiali";
    let target = json!([{"op": "add", "path": "/spec/ports/0/targetPort", "value": "ui"}]);
    assert_eq!(json_patch(&w, service, &target), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let now = kiali_pods(&w);
        if now.len() == 1 && !old.contains(&now[0]) {
            break now[0].clone();
        }
        assert!(Instant::now() < deadline, "kiali never rolled out: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let open = Open::start(&w, &["open", "obs", "kiali", "--no-browser", "--port", "0"]);
    let url = open.url();
    assert_eq!(answering_pod(&url), new);
    let (code, err) = open.interrupt();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn open_prints_one_json_object_naming_the_pod_and_says_when_the_usual_port_is_taken() {
    let w = observability_world();
    let pods = kiali_pods(&w);
    // Kiali's usual port taken (by this test, or by another one's forward): a free one.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", 20001));
    let open = Open::start(&w, &["open", "obs", "kiali", "-o", "json"]);
    let v: Value = serde_json::from_str(&open.line_with("{")).expect("one JSON object");
    assert_eq!(v["addon"], "kiali");
    assert_eq!(v["cluster"], "obs");
    assert_eq!(json!([v["pod"]]), json!(pods));
    let url = v["url"].as_str().expect("url");
    assert_eq!(answering_pod(url), pods[0]);
    assert_ne!(split_url(url).0, 20001);
    let (code, err) = open.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "note: port 20001 on 127.0.0.1 is taken; kiali listens on a free port instead"
        ),
        "{err}"
    );
}

#[test]
fn an_addon_the_spec_does_not_enable_is_refused_naming_those_it_does() {
    let w = World::new(false);
    std::fs::write(
        w.repo.path().join("clusters/obs.yaml"),
        "name: obs\nprofile: minimal\naddons: [prometheus, kiali]\n",
    )
    .expect("write");
    let err = open_fails(&w, "grafana", 2);
    assert!(
        err.contains(
            "addon grafana is not enabled in cluster obs's spec (enabled: prometheus, kiali)"
        ),
        "{err}"
    );
    let err = open_fails(&w, "kiali", 1);
    assert!(
        err.contains("cluster obs does not exist; `paddock up obs` creates it"),
        "{err}"
    );
    // One name is the addon, of the repository's default cluster (`dev`, which enables jaeger).
    let out = w.paddock(&["open", "jaeger", "--no-browser"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cluster dev does not exist"), "{err}");
}

#[test]
fn status_lists_the_addons_whether_ready_and_how_to_open_them() {
    let w = observability_world();
    let status = |w: &World| {
        let out = w.paddock(&["status", "obs", "-o", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).expect("status json")["addons"].clone()
    };
    assert_eq!(
        status(&w),
        json!([
            {"name": "prometheus", "namespace": "istio-system", "state": "ready", "ready": true,
                "open": "paddock open obs prometheus"},
            {"name": "kiali", "namespace": "istio-system", "state": "ready", "ready": true,
                "open": "paddock open obs kiali"}
        ])
    );
    let text = support::stdout(&w.paddock(&["status", "obs"]));
    assert!(
        text.contains("\naddons\n  prometheus   ready          paddock open obs prometheus\n  kiali        ready          paddock open obs kiali\n"),
        "{text}"
    );
    let (code, body) = api(
        &w,
        "obs",
        "PATCH",
        "/apis/apps/v1/namespaces/istio-system/deployments/kiali",
        Some(&json!({"spec": {"replicas": 0}})),
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&w)[1]["state"] != "not ready" {
        assert!(Instant::now() < deadline, "kiali never turned not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = open_fails(&w, "kiali", 1);
    assert!(
        err.contains("addon kiali has no ready pod in cluster obs"),
        "{err}"
    );
    assert!(err.contains("`paddock status obs`"), "{err}");
    let (code, body) = api(
        &w,
        "obs",
        "DELETE",
        "/api/v1/namespaces/istio-system/services/kiali",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let err = open_fails(&w, "kiali", 1);
    assert!(
        err.contains("addon kiali is not installed in cluster obs: no Service istio-system/kiali")
            && err.contains("`paddock up obs` installs it"),
        "{err}"
    );
}

/// The sim's `pods/portforward`, as kube-rs uses it.
mod sim_portforward {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use paddock_sim::Cluster;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn client(c: &Cluster) -> kube::Client {
        let kc = kube::config::Kubeconfig::from_yaml(&c.kubeconfig()).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    async fn running_pod(c: &Cluster, pods: &Api<Pod>) {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "example/web:1",
                "ports": [{"containerPort": 8080}]}]}});
        pods.create(
            &Default::default(),
            &serde_json::from_value(pod).expect("pod"),
        )
        .await
        .expect("create");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = pods.get("web").await.expect("get");
            if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                return;
            }
            assert!(Instant::now() < deadline, "{} never ran", c.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Status of a refused port forward: "CODE message".
    fn refused(r: Result<kube::api::Portforwarder, kube::Error>) -> String {
        match r {
            Ok(_) => "forwarded".to_string(),
            Err(kube::Error::Api(s)) => format!("{} {}", s.code, s.message),
            Err(e) => format!("not a Status: {e}"),
        }
    }

    #[tokio::test]
    async fn a_declared_port_answers_as_the_pod_and_others_get_the_kubelets_error() {
        let c = Cluster::start("pf").await.expect("sim");
        let pods: Api<Pod> = Api::namespaced(client(&c).await, "default");
        running_pod(&c, &pods).await;

        let mut pf = pods.portforward("web", &[8080]).await.expect("forward");
        let mut s = pf.take_stream(8080).expect("stream");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("x-paddock-pod: web\r\n"), "{answer}");
        assert!(answer.contains(r#""pod":"web""#), "{answer}");

        let mut pf = pods.portforward("web", &[9999]).await.expect("forward");
        let error = pf.take_error(9999).expect("error channel");
        let error = tokio::time::timeout(Duration::from_secs(10), error)
            .await
            .expect("the error channel answers at once");
        let error = error.expect("an error on the error channel");
        assert!(
            error.starts_with("error forwarding port 9999 to pod "),
            "{error}"
        );
        assert!(
            error.contains("failed to connect to localhost:9999 inside namespace \"",)
                && error.contains("dial tcp4 127.0.0.1:9999: connect: connection refused"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_missing_pod_is_404_and_one_not_running_400() {
        let c = Cluster::start("pf2").await.expect("sim");
        let pods: Api<Pod> = Api::namespaced(client(&c).await, "default");
        let e = pods.portforward("nope", &[80]).await;
        assert_eq!(refused(e), "404 pods \"nope\" not found");
        c.set_knobs(paddock_sim::knobs::Knobs {
            pod_start_ms: 600_000,
            ..Default::default()
        });
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
            "spec": {"nodeName": "k3d-pf2-server-0", "containers": [{"name": "app", "image": "example/web:1"}]}});
        pods.create(
            &Default::default(),
            &serde_json::from_value(pod).expect("pod"),
        )
        .await
        .expect("create");
        let e = pods.portforward("slow", &[80]).await;
        assert_eq!(
            refused(e),
            "400 unable to forward port because pod is not running. Current status=Pending"
        );
    }
}
