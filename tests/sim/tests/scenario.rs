//! A whole cluster driven by hand through the fake `k3d` and `helm` and the real `kubectl`
//! (no paddock code): Istio 1.29 with tags `stable` and `default`, a namespace on `stable`, a
//! workload whose pods carry the 1.29 proxy and answer through the ingress gateway once a
//! Gateway and VirtualService route to them; the tag moved to a 1.30 revision and a restart
//! gives 1.30 proxies; with istiod gone, new pods cannot be created. Also checks the fake
//! tools' documented output shapes and errors (K3D.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ISTIO: &str = "https://istio-release.storage.googleapis.com/charts";

struct World {
    /// Nodes are Docker containers (else local processes).
    docker: bool,
    home: tempfile::TempDir,
    /// Held while the world lives: its Docker objects are not another run's leftovers.
    _claim: std::fs::File,
    bin: PathBuf,
    kubeconfig: PathBuf,
    kubectl: Option<PathBuf>,
}

impl World {
    /// A world whose clusters are Docker containers (when `docker` and an engine answers) or
    /// local processes.
    fn new(docker: bool) -> Option<Self> {
        if docker {
            if paddock_sim::docker::available() {
                paddock_sim::docker::cleanup_stale();
            } else if std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                panic!("a Docker engine is required (PADDOCK_REQUIRE_TOOLS=1) but does not answer");
            } else {
                eprintln!("skipping: no Docker engine answers");
                return None;
            }
        }
        let home = tempfile::tempdir().expect("tempdir");
        let _claim = paddock_sim::docker::claim(home.path()).expect("claim the home");
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let st = Command::new(env!("CARGO_BIN_EXE_paddock-sim"))
            .arg("link")
            .arg(&bin)
            .status()
            .expect("link");
        assert!(st.success());
        let kubeconfig = home.path().join("kubeconfig");
        Some(Self {
            docker,
            home,
            _claim,
            bin,
            kubeconfig,
            kubectl: paddock_sim::real_tools::kubectl(),
        })
    }

    fn cmd(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(program);
        c.args(args)
            .env("PADDOCK_SIM_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PADDOCK_SIM_DOCKER", if self.docker { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    }

    fn k3d(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.cmd(&self.bin.join("k3d"), args, stdin)
    }

    fn helm(&self, args: &[&str]) -> Output {
        self.cmd(&self.bin.join("helm"), args, None)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let k = self.kubectl.clone().expect("kubectl");
        self.cmd(&k, args, stdin)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Stop every cluster process this test started, even when it failed.
        let _ = self.k3d(&["cluster", "delete", "--all"], None);
        paddock_sim::docker::cleanup(self.home.path());
    }
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// GET / with a Host header through the load balancer: (status, lowercased head), or None
/// when the connection closed (or failed) without a response.
fn get(port: u16, host: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, raw.split("\r\n\r\n").next()?.to_ascii_lowercase()))
}

/// Poll `host` until it answers with `want` in its head (10 s at most); the last head.
fn eventually(port: u16, host: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head = get(port, host).map(|(_, h)| h).unwrap_or_default();
        if head.contains(want) || Instant::now() > deadline {
            return head;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pods_json(w: &World, ns: &str) -> Vec<Value> {
    let out = ok(
        w.kubectl(&["get", "pods", "-n", ns, "-o", "json"], None),
        "get pods",
    );
    let v: Value = serde_json::from_str(&out).expect("pods json");
    v["items"].as_array().cloned().unwrap_or_default()
}

fn proxy_image(pod: &Value) -> String {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default()
        .to_string()
}

const WORKLOAD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: apps
  labels:
    istio.io/rev: stable
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ghcr.io/example/web:1
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#;

/// paddock's probe route (ISTIO.md, "Proving the ingress works") next to a user's Gateway on
/// the same port, routing `web.example.com` to the workload.
const INGRESS_ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: paddock-probe
  namespace: istio-ingress
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [paddock-probe.invalid]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: paddock-probe
  namespace: istio-ingress
spec:
  hosts: [paddock-probe.invalid]
  gateways: [paddock-probe]
  http:
  - directResponse:
      status: 200
      body: {string: paddock probe}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: web
  namespace: apps
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [web.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: apps
spec:
  hosts: [web.example.com]
  gateways: [web]
  http:
  - route:
    - destination: {host: web}
"#;

#[test]
fn hand_driven_docker_cluster_moves_from_istio_1_29_to_1_30() {
    if let Some(w) = World::new(true) {
        scenario(&w);
    }
}

#[test]
fn hand_driven_process_cluster_moves_from_istio_1_29_to_1_30() {
    if let Some(w) = World::new(false) {
        scenario(&w);
    }
}

fn scenario(w: &World) {
    if w.kubectl.is_none() {
        return;
    }
    let lb = free_port();
    let config = format!(
        "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: demo\nservers: 1\nagents: 1\nimage: rancher/k3s:v1.33.4-k3s1\nports:\n  - port: {lb}:80\n    nodeFilters: [loadbalancer]\noptions:\n  k3s:\n    extraArgs:\n      - arg: --disable=traefik\n        nodeFilters: ['server:*']\n  kubeconfig:\n    updateDefaultKubeconfig: false\n  runtime:\n    labels:\n      - label: dev.paddock.managed=true\n        nodeFilters: [all]\n"
    );
    let started = Instant::now();
    ok(
        w.k3d(
            &["cluster", "create", "demo", "--config", "-"],
            Some(&config),
        ),
        "k3d cluster create",
    );
    let create_time = started.elapsed();

    // k3d's documented shapes and errors.
    let again = w.k3d(
        &["cluster", "create", "demo", "--config", "-"],
        Some(&config),
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains(
        "Failed to create cluster 'demo' because a cluster with that name already exists"
    ));
    let bad = w.k3d(
        &["cluster", "create", "bad", "--config", "-"],
        Some("apiVersion: k3d.io/v1alpha5\nkind: Simple\nservrs: 1\n"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("servrs"),
        "schema error names the key"
    );
    assert_eq!(
        w.k3d(&["cluster", "list", "nope"], None).status.code(),
        Some(1)
    );
    let list: Value =
        serde_json::from_str(&ok(w.k3d(&["cluster", "list", "-o", "json"], None), "list"))
            .expect("json");
    let c = &list[0];
    assert_eq!(c["name"], "demo");
    assert_eq!(c["network"]["name"], "k3d-demo");
    assert_eq!(
        (c["serversRunning"].as_u64(), c["serversCount"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (c["agentsRunning"].as_u64(), c["agentsCount"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(c["hasLoadbalancer"], true);
    let nodes = c["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(
        names,
        ["k3d-demo-server-0", "k3d-demo-agent-0", "k3d-demo-serverlb"]
    );
    for n in nodes {
        assert_eq!(n["State"]["Running"], true);
        assert_eq!(n["runtimeLabels"]["k3d.cluster"], "demo");
        assert_eq!(n["runtimeLabels"]["dev.paddock.managed"], "true");
    }
    assert_eq!(
        nodes[2]["portMappings"]["80/tcp"][0]["HostPort"],
        lb.to_string()
    );
    let kc = ok(
        w.k3d(&["kubeconfig", "get", "demo"], None),
        "kubeconfig get",
    );
    assert!(kc.contains("current-context: k3d-demo") && kc.contains("admin@k3d-demo"));
    std::fs::write(&w.kubeconfig, kc).expect("kubeconfig");
    assert!(
        ok(w.k3d(&["version"], None), "version").contains("k3s version v1.33.4-k3s1 (default)")
    );

    // Wait for nodes Ready and CoreDNS, as k3d's --wait does not.
    ok(
        w.kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                "nodes",
                "--all",
                "--timeout=20s",
            ],
            None,
        ),
        "nodes ready",
    );
    ok(
        w.kubectl(
            &[
                "rollout",
                "status",
                "deployment/coredns",
                "-n",
                "kube-system",
                "--timeout=20s",
            ],
            None,
        ),
        "coredns",
    );

    // Istio 1.29: base → istiod with tags → gateway.
    let v129 = ["--repo", ISTIO, "--version", "1.29.6"];
    let helm = |extra: &[&str], what: &str| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(v129);
        ok(w.helm(&args), what)
    };
    let out = helm(
        &[
            "upgrade",
            "--install",
            "istio-base",
            "base",
            "-n",
            "istio-system",
            "--create-namespace",
            "--set",
            "defaultRevision=1-29-6",
        ],
        "base",
    );
    assert!(
        out.contains("Release \"istio-base\" does not exist. Installing it now."),
        "{out}"
    );
    helm(
        &[
            "upgrade",
            "--install",
            "istiod-1-29-6",
            "istiod",
            "-n",
            "istio-system",
            "--set",
            "revision=1-29-6",
            "--set",
            "revisionTags={stable,default}",
            "--wait",
            "--timeout",
            "30s",
        ],
        "istiod",
    );
    helm(
        &[
            "upgrade",
            "--install",
            "istio-ingress",
            "gateway",
            "-n",
            "istio-ingress",
            "--create-namespace",
            "--wait",
            "--timeout",
            "30s",
        ],
        "gateway",
    );

    // Helm's documented shapes.
    let list: Value = serde_json::from_str(&ok(
        w.helm(&["list", "-n", "istio-system", "-o", "json"]),
        "helm list",
    ))
    .expect("json");
    let istiod = list
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == "istiod-1-29-6")
        .expect("istiod listed");
    assert_eq!(istiod["status"], "deployed");
    assert_eq!(istiod["chart"], "istiod-1.29.6");
    assert_eq!(istiod["revision"], "1");
    assert_eq!(istiod["app_version"], "1.29.6");
    let secret: Value = serde_json::from_str(&ok(
        w.kubectl(
            &[
                "get",
                "secret",
                "sh.helm.release.v1.istiod-1-29-6.v1",
                "-n",
                "istio-system",
                "-o",
                "json",
            ],
            None,
        ),
        "release secret",
    ))
    .expect("json");
    assert_eq!(secret["metadata"]["labels"]["owner"], "helm");
    assert_eq!(secret["metadata"]["labels"]["status"], "deployed");
    assert_eq!(secret["metadata"]["labels"]["version"], "1");
    let values: Value = serde_json::from_str(&ok(
        w.helm(&[
            "get",
            "values",
            "istiod-1-29-6",
            "-n",
            "istio-system",
            "-o",
            "json",
        ]),
        "get values",
    ))
    .expect("json");
    assert_eq!(values["revision"], "1-29-6");
    let missing = w.helm(&["status", "nope", "-n", "istio-system", "-o", "json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "Error: release: not found\n"
    );

    // A workload on tag `stable` gets the 1.29 proxy.
    ok(
        w.kubectl(&["create", "-f", "-"], Some(WORKLOAD)),
        "workload",
    );
    ok(
        w.kubectl(
            &[
                "rollout",
                "status",
                "deployment/web",
                "-n",
                "apps",
                "--timeout=20s",
            ],
            None,
        ),
        "web rollout",
    );
    let pods = pods_json(w, "apps");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["metadata"]["annotations"]["istio.io/rev"], "1-29-6");
        // The hub is the chart archive's own (the vendored 1.28 and 1.29 keep the sources').
        assert!(
            proxy_image(p).ends_with("/proxyv2:1.29.6"),
            "{}",
            proxy_image(p)
        );
    }
    // A gateway no Gateway selects has no listener: the load balancer closes the connection.
    assert_eq!(get(lb, "paddock-probe.invalid"), None);
    ok(
        w.kubectl(&["apply", "-f", "-"], Some(INGRESS_ROUTES)),
        "ingress routes",
    );
    let (code, headers) = get(lb, "paddock-probe.invalid").expect("the probe route answers");
    assert_eq!(code, 200, "{headers}");
    assert!(headers.contains("server: istio-envoy"), "{headers}");
    assert!(headers.contains("x-paddock-cluster: demo"), "{headers}");
    assert!(
        headers.contains("x-paddock-gateway-proxy-version: 1.29.6"),
        "{headers}"
    );
    let headers = eventually(lb, "web.example.com", "x-paddock-proxy-version: 1.29.6");
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(
        headers.contains("x-paddock-proxy-version: 1.29.6")
            && headers.contains("x-paddock-revision: 1-29-6"),
        "an app pod on 1.29 answers: {headers}"
    );

    // 1.30 revision, then tag `stable` moved to it and the workload restarted.
    let v130 = ["--repo", ISTIO, "--version", "1.30.3"];
    let mut args = vec![
        "upgrade",
        "--install",
        "istiod-1-30-3",
        "istiod",
        "-n",
        "istio-system",
        "--set",
        "revision=1-30-3",
        "--wait",
        "--timeout",
        "30s",
    ];
    args.extend(v130);
    ok(w.helm(&args), "istiod 1.30");
    let mut args = vec![
        "template",
        "istiod",
        "istiod",
        "-n",
        "istio-system",
        "--set",
        "revision=1-30-3",
        "--set",
        "revisionTags={stable}",
        "-s",
        "templates/revision-tags-mwc.yaml",
        "-s",
        "templates/revision-tags-svc.yaml",
    ];
    args.extend(v130);
    let tags = ok(w.helm(&args), "helm template tags");
    assert!(
        tags.contains("# Source: istiod/templates/revision-tags-mwc.yaml"),
        "{tags}"
    );
    ok(
        w.kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "paddock",
                "-f",
                "-",
            ],
            Some(&tags),
        ),
        "apply tag",
    );
    let hook: Value = serde_json::from_str(&ok(
        w.kubectl(
            &[
                "get",
                "mutatingwebhookconfiguration",
                "istio-revision-tag-stable",
                "-o",
                "json",
            ],
            None,
        ),
        "tag",
    ))
    .expect("json");
    assert_eq!(hook["metadata"]["labels"]["istio.io/rev"], "1-30-3");
    ok(
        w.kubectl(
            &["rollout", "restart", "deployment/web", "-n", "apps"],
            None,
        ),
        "restart",
    );
    ok(
        w.kubectl(
            &[
                "rollout",
                "status",
                "deployment/web",
                "-n",
                "apps",
                "--timeout=20s",
            ],
            None,
        ),
        "web rollout 1.30",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let pods = loop {
        let pods = pods_json(w, "apps");
        if pods.len() == 2 || Instant::now() > deadline {
            break pods;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["metadata"]["annotations"]["istio.io/rev"], "1-30-3");
        // The hub is the chart archive's own (the vendored 1.28 and 1.29 keep the sources').
        assert!(
            proxy_image(p).ends_with("/proxyv2:1.30.3"),
            "{}",
            proxy_image(p)
        );
    }
    let headers = eventually(lb, "web.example.com", "x-paddock-proxy-version: 1.30.3");
    assert!(
        headers.contains("x-paddock-revision: 1-30-3"),
        "the restarted workload answers through the gateway: {headers}"
    );

    // With the 1.30 istiod gone, the tag's webhook cannot be called: pod creation fails.
    ok(
        w.kubectl(
            &[
                "delete",
                "deployment",
                "istiod-1-30-3",
                "-n",
                "istio-system",
            ],
            None,
        ),
        "delete istiod",
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\n  namespace: apps\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let refused = w.kubectl(&["create", "-f", "-"], Some(pod));
    assert!(!refused.status.success(), "pod creation must fail");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("failed calling webhook") && err.contains("istiod-1-30-3"),
        "{err}"
    );
    eprintln!("k3d cluster create took {create_time:?}");
}
