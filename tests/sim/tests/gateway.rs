//! The ingress data path of an in-process cluster, through its load-balancer port: a gateway
//! pod listens only where a `Gateway` says; VirtualServices route by host, uri, headers and
//! method, split by weight and subset, or answer directly; Envoy answers itself when nothing
//! can serve (404 NR, 503 NC, `no healthy upstream`, connection failure and termination);
//! terminating gateways drain keep-alive connections and gone ones drop them. The traffic
//! harness counts no failure while pods keep serving and counts those a vanished pod causes;
//! on the sim's termination model, a pod deleted with its grace period loses nothing while the
//! Endpoints catch up, one deleted outright loses what they still send it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use paddock_sim::gateway::ready_endpoints;
use paddock_sim::http1;
use paddock_sim::knobs::Knobs;
use paddock_sim::lb::{CONNECTION_FAILURE, CONNECTION_TERMINATION, NO_HEALTHY_UPSTREAM};
use paddock_sim::store::{Store, res};
use paddock_sim::traffic::{Connections, Expect, Options as TrafficOptions, Traffic};
use paddock_sim::{Cluster, Options};
use serde_json::{Value, json};

const PROXY: &str = "docker.io/istio/proxyv2:1.29.6";
const REV: &str = "1-29-6";
const GW_NS: &str = "istio-ingress";
const APPS: &str = "apps";
const PROBE_HOST: &str = "paddock-probe.invalid";

/// A cluster with Istio's CRDs, the gateway chart's Service and namespaces for apps.
struct World {
    cluster: Cluster,
    /// Whether the gateway Service selects its pods (else the test writes its Endpoints).
    gateway_selector: bool,
    /// The load balancer's port on 127.0.0.1 (port 80 inside the cluster).
    port: u16,
    // Dropped after the cluster, whose tasks it runs.
    _rt: tokio::runtime::Runtime,
}

impl World {
    /// `gateway_selector`: whether the gateway Service selects its pods (Endpoints follow
    /// them) or has none (the test writes its Endpoints).
    fn new(gateway_selector: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cluster = rt
            .block_on(Cluster::start_with(
                "gw",
                Options {
                    lb_ports: vec![(0, 80)],
                    ..Options::default()
                },
            ))
            .expect("cluster");
        let port = cluster.lb_ports[0].0;
        let w = Self {
            cluster,
            gateway_selector,
            port,
            _rt: rt,
        };
        let objects = paddock_sim::render::render(
            "base",
            "1.29.6",
            "test",
            "istio-base",
            "istio-system",
            &json!({}),
        )
        .expect("base chart")
        .into_iter()
        .chain(
            paddock_sim::render::render(
                "gateway",
                "1.29.6",
                "test",
                "istio-ingress",
                GW_NS,
                &json!({}),
            )
            .expect("gateway chart"),
        );
        w.store(|s| {
            for ns in ["istio-system", GW_NS, APPS, "other"] {
                s.create(&res("namespaces"), "", json!({"metadata": {"name": ns}}))
                    .expect("namespace");
            }
            for obj in objects {
                match obj["kind"].as_str() {
                    Some("CustomResourceDefinition") => {
                        s.create(&res("customresourcedefinitions"), "", obj)
                            .expect("crd");
                    }
                    Some("Service") => {
                        let mut svc = obj;
                        if !gateway_selector {
                            svc["spec"].as_object_mut().map(|m| m.remove("selector"));
                        }
                        s.create(&res("services"), GW_NS, svc)
                            .expect("gateway service");
                    }
                    _ => {}
                }
            }
        });
        w
    }

    fn store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        self.cluster.with_store(f)
    }

    fn until(&self, what: &str, mut f: impl FnMut(&mut Store) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.store(&mut f) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn knobs(&self, k: Knobs) {
        self.cluster.set_knobs(k);
    }

    /// Create an Istio object (`networking.istio.io/<version>`) from its kind, name and spec.
    fn istio(&self, version: &str, kind: &str, ns: &str, name: &str, spec: Value) {
        let plural = format!("{}s", kind.to_lowercase());
        self.store(|s| {
            let r = s
                .resource("networking.istio.io", version, &plural)
                .expect("the base chart's CRDs serve this version");
            s.create(&r, ns, json!({"metadata": {"name": name}, "spec": spec}))
                .expect("istio object");
        });
    }

    fn gateway(&self, name: &str, selector: Value, port: u16, hosts: Value) {
        self.istio(
            "v1",
            "Gateway",
            GW_NS,
            name,
            json!({"selector": selector, "servers": [
                {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}),
        );
    }

    /// The gateway `public` on port 80 for every host, selecting the chart's gateway pods.
    fn public_gateway(&self) {
        self.gateway("public", json!({"istio": "ingress"}), 80, json!(["*"]));
    }

    fn virtual_service(
        &self,
        ns: &str,
        name: &str,
        hosts: &[&str],
        gateways: &[&str],
        http: Value,
    ) {
        self.istio(
            "v1",
            "VirtualService",
            ns,
            name,
            json!({"hosts": hosts, "gateways": gateways, "http": http}),
        );
    }

    /// A gateway pod as the gateway chart and injection make it, ready and in the Endpoints.
    fn gateway_pod(&self, name: &str) {
        self.store(|s| {
            s.create(
                &res("pods"),
                GW_NS,
                json!({"metadata": {"name": name,
                        "labels": {"app": "istio-ingress", "istio": "ingress", "sidecar.istio.io/inject": "true"},
                        "annotations": {"istio.io/rev": REV, "inject.istio.io/templates": "gateway"}},
                    "spec": {"containers": [{"name": "istio-proxy", "image": PROXY, "ports": [
                        {"containerPort": 15021, "name": "status-port"},
                        {"containerPort": 80, "name": "http2"},
                        {"containerPort": 443, "name": "https"}]}]}}),
            )
            .expect("gateway pod");
        });
        self.until_running(GW_NS, name);
        if self.gateway_selector {
            self.until(&format!("{name} in the gateway's Endpoints"), |s| {
                ready_endpoints(s, GW_NS, "istio-ingress")
                    .iter()
                    .any(|p| p.name == name)
            });
        }
    }

    /// An injected application pod (native sidecar), running.
    fn app_pod(&self, name: &str, labels: Value) {
        self.store(|s| {
            s.create(
                &res("pods"),
                APPS,
                json!({"metadata": {"name": name, "labels": labels, "annotations": {"istio.io/rev": REV}},
                    "spec": {"initContainers": [{"name": "istio-proxy", "image": PROXY, "restartPolicy": "Always"}],
                        "containers": [{"name": "app", "image": "ghcr.io/example/web:1",
                            "ports": [{"containerPort": 8080, "name": "http"}]}]}}),
            )
            .expect("app pod");
        });
        self.until_running(APPS, name);
    }

    fn until_running(&self, ns: &str, name: &str) {
        self.until(&format!("pod {ns}/{name} running"), |s| {
            s.get(&res("pods"), ns, name)
                .is_ok_and(|p| paddock_sim::controllers::pod_ready(&p))
        });
    }

    /// A Service on port 80 → 8080; without a selector its Endpoints are the test's to write.
    fn service(&self, name: &str, selector: Option<Value>) {
        let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
        if let Some(sel) = selector {
            spec["selector"] = sel;
        }
        self.store(|s| {
            s.create(
                &res("services"),
                APPS,
                json!({"metadata": {"name": name}, "spec": spec}),
            )
            .expect("service");
        });
    }

    /// Wait until a Service's Endpoints list exactly `n` ready pods.
    fn until_endpoints(&self, ns: &str, svc: &str, n: usize) {
        self.until(&format!("{n} ready endpoints of {ns}/{svc}"), |s| {
            ready_endpoints(s, ns, svc).len() == n
        });
    }

    /// A Gateway and a VirtualService answering `PROBE_HOST` with `200 ok`, as paddock's probe.
    fn probe_route(&self) {
        self.gateway(
            "paddock-probe",
            json!({"istio": "ingress"}),
            80,
            json!([PROBE_HOST]),
        );
        self.virtual_service(
            GW_NS,
            "paddock-probe",
            &[PROBE_HOST],
            &["paddock-probe"],
            json!([{"directResponse": {"status": 200, "body": {"string": "ok"}}}]),
        );
    }

    fn get(&self, host: &str, path: &str) -> Result<Resp, String> {
        request(self.port, "GET", host, path, &[])
    }
}

/// Write Endpoints for a selector-less Service: these pods, ready.
fn set_endpoints(s: &mut Store, ns: &str, svc: &str, pods: &[&str]) {
    let addresses: Vec<Value> = pods
        .iter()
        .map(|name| {
            let pod = s.get(&res("pods"), ns, name).expect("endpoint pod");
            json!({"ip": pod["status"]["podIP"], "targetRef": {"kind": "Pod", "namespace": ns,
                "name": name, "uid": pod["metadata"]["uid"]}})
        })
        .collect();
    let subsets = if addresses.is_empty() {
        json!([])
    } else {
        json!([{"addresses": addresses, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}])
    };
    let ep = json!({"metadata": {"name": svc}, "subsets": subsets});
    match s.get(&res("endpoints"), ns, svc) {
        Ok(_) => {
            s.update(&res("endpoints"), ns, svc, ep)
                .expect("update endpoints");
        }
        Err(_) => {
            s.create(&res("endpoints"), ns, ep)
                .expect("create endpoints");
        }
    }
}

/// The pod is deleted outright (grace period 0): its object leaves the store at once, as a
/// pod whose proxy exits without draining.
fn vanish(s: &mut Store, ns: &str, name: &str) {
    s.delete_with(&res("pods"), ns, name, Some(0))
        .expect("delete pod now");
}

/// The pod is deleted with its grace period: `deletionTimestamp` set, the object stays until
/// the kubelet has stopped it (`terminationMs`/`terminationDrainMs`).
fn terminate(s: &mut Store, ns: &str, name: &str) {
    s.delete(&res("pods"), ns, name).expect("delete pod");
    let pod = s.get(&res("pods"), ns, name).expect("still there");
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
}

/// Knobs under which a terminating pod stays until the test removes it (its grace period,
/// 30 s, is longer than any test).
fn slow_termination() -> Knobs {
    Knobs {
        termination_ms: 60_000,
        termination_drain_ms: 60_000,
        ..Knobs::default()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: http1::Head,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The application pod that answered.
    fn pod(&self) -> &str {
        self.header("x-paddock-pod").unwrap_or("")
    }
}

/// Read one response; `Err` says how the connection ended when none came.
fn read_response(stream: &mut TcpStream) -> Result<Resp, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = http1::head_end(&buf) {
            let head = http1::parse_head(&buf[..end]).map_err(|e| e.to_string())?;
            let len: usize = head
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .expect("the gateway always sends content-length");
            if buf.len() >= end + len {
                return Ok(Resp {
                    status: head.start[1].parse().expect("status"),
                    body: String::from_utf8_lossy(&buf[end..end + len]).into_owned(),
                    head,
                });
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err("closed without a response".into()),
            Ok(0) => return Err("closed mid-response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && buf.is_empty() => {
                return Err("reset without a response".into());
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn send(
    stream: &mut TcpStream,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send request");
}

/// One request on a new connection.
fn request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    send(&mut stream, method, host, path, headers, true);
    read_response(&mut stream)
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

/// Does the peer close `stream` (EOF) without sending anything?
fn sees_eof(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    matches!(stream.read(&mut [0u8; 64]), Ok(0))
}

fn assert_envoy_reply(r: &Resp, status: u16, body: &str) {
    assert_eq!((r.status, r.body.as_str()), (status, body), "{r:?}");
    assert_eq!(r.header("server"), Some("istio-envoy"), "{r:?}");
    assert_eq!(r.header("x-paddock-cluster"), Some("gw"), "{r:?}");
    assert!(
        r.header("x-paddock-gateway").is_some_and(|g| !g.is_empty()),
        "{r:?}"
    );
    assert_eq!(r.header("x-paddock-gateway-revision"), Some(REV), "{r:?}");
    assert_eq!(
        r.header("x-paddock-gateway-proxy-version"),
        Some("1.29.6"),
        "{r:?}"
    );
    assert_eq!(
        r.header("x-paddock-pod"),
        None,
        "Envoy answered, not an app: {r:?}"
    );
}

#[test]
fn gateway_pods_listen_only_on_ports_a_gateway_declares() {
    let w = World::new(true);
    // No gateway pod behind the Service: k3d's load balancer accepts, then closes.
    assert_eq!(
        w.get(PROBE_HOST, "/").unwrap_err(),
        "closed without a response"
    );

    w.gateway_pod("gw-a");
    assert_eq!(
        w.get(PROBE_HOST, "/").unwrap_err(),
        "closed without a response",
        "a gateway pod without a Gateway has no listener"
    );
    w.gateway(
        "east-west",
        json!({"istio": "eastwestgateway"}),
        80,
        json!(["*"]),
    );
    w.gateway(
        "other-port",
        json!({"istio": "ingress"}),
        8080,
        json!(["*"]),
    );
    assert_eq!(
        w.get(PROBE_HOST, "/").unwrap_err(),
        "closed without a response",
        "Gateways for other pods or other ports open no listener on 80"
    );

    // v1beta1 and v1alpha3 objects count as v1 ones do.
    w.istio(
        "v1beta1",
        "Gateway",
        GW_NS,
        "paddock-probe",
        json!({"selector": {"istio": "ingress"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [PROBE_HOST]}]}),
    );
    w.istio(
        "v1alpha3",
        "VirtualService",
        GW_NS,
        "paddock-probe",
        json!({"hosts": [PROBE_HOST], "gateways": ["paddock-probe"],
            "http": [{"directResponse": {"status": 200, "body": {"string": "paddock probe"}}}]}),
    );
    let r = w.get(PROBE_HOST, "/").expect("the probe route answers");
    assert_envoy_reply(&r, 200, "paddock probe");
    assert_eq!(r.header("x-paddock-gateway"), Some("gw-a"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        w.get(&format!("{PROBE_HOST}:8080"), "/x")
            .expect("port ignored")
            .body,
        "paddock probe"
    );
    // With a listener, another host is Envoy's 404 (NR), not a closed connection.
    assert_envoy_reply(&w.get("other.invalid", "/").expect("404"), 404, "");
}

#[test]
fn requests_route_by_host_uri_headers_and_method() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    for app in ["exact", "api", "regex", "canary", "web"] {
        w.app_pod(&format!("{app}-1"), json!({"app": app}));
        w.service(app, Some(json!({"app": app})));
        w.until_endpoints(APPS, app, 1);
    }
    w.public_gateway();
    let to = |host: &str| json!([{"destination": {"host": host}}]);
    w.virtual_service(
        APPS,
        "shop",
        &["shop.example.com"],
        &["istio-ingress/public"],
        json!([
            {"match": [{"uri": {"exact": "/exact"}}], "route": to("exact")},
            {"match": [{"uri": {"prefix": "/api"}}], "route": to("api")},
            {"match": [{"uri": {"regex": "/v[0-9]+/items"}}],
                "route": [{"destination": {"host": "regex.apps.svc.cluster.local", "port": {"number": 80}}}]},
            {"match": [{"headers": {"x-canary": {"exact": "yes"}}},
                       {"headers": {"cookie": {"regex": ".*canary=1.*"}}}], "route": to("canary")},
            {"match": [{"method": {"exact": "POST"}}],
                "directResponse": {"status": 403, "body": {"string": "read only"}}},
            {"route": to("web")},
        ]),
    );
    w.virtual_service(
        APPS,
        "wildcard",
        &["*.example.com"],
        &["istio-ingress/public"],
        json!([{"directResponse": {"status": 200, "body": {"string": "wildcard"}}}]),
    );
    let pod = |host: &str, path: &str, headers: &[(&str, &str)]| {
        let r = request(w.port, "GET", host, path, headers).expect("answered");
        assert_eq!(r.status, 200, "{host}{path}: {r:?}");
        r.pod().to_string()
    };
    assert_eq!(pod("shop.example.com", "/exact", &[]), "exact-1");
    assert_eq!(pod("shop.example.com", "/exact/more", &[]), "web-1");
    assert_eq!(pod("shop.example.com", "/api/v1/things?x=1", &[]), "api-1");
    assert_eq!(pod("SHOP.example.com:8080", "/api", &[]), "api-1");
    assert_eq!(pod("shop.example.com", "/v12/items", &[]), "regex-1");
    assert_eq!(
        pod("shop.example.com", "/v12/items/3", &[]),
        "web-1",
        "a regex matches the whole path"
    );
    assert_eq!(
        pod("shop.example.com", "/", &[("x-canary", "yes")]),
        "canary-1"
    );
    assert_eq!(pod("shop.example.com", "/", &[("x-canary", "no")]), "web-1");
    assert_eq!(
        pod("shop.example.com", "/", &[("cookie", "a=b; canary=1")]),
        "canary-1"
    );
    let post = request(
        w.port,
        "POST",
        "shop.example.com",
        "/",
        &[("content-length", "0")],
    )
    .expect("post");
    assert_envoy_reply(&post, 403, "read only");
    let wild = w.get("cart.example.com", "/api").expect("wildcard host");
    assert_envoy_reply(&wild, 200, "wildcard");
    assert_envoy_reply(&w.get("example.com", "/").expect("no vhost"), 404, "");

    // What an application pod answers, as the gateway forwards it.
    let r = w.get("shop.example.com", "/api").expect("app answer");
    assert_eq!(
        r.json(),
        json!({"cluster": "gw", "namespace": "apps", "pod": "api-1", "revision": REV, "proxyVersion": "1.29.6"})
    );
    for (k, v) in [
        ("server", "istio-envoy"),
        ("content-type", "application/json"),
        ("x-paddock-cluster", "gw"),
        ("x-paddock-pod", "api-1"),
        ("x-paddock-revision", REV),
        ("x-paddock-proxy-version", "1.29.6"),
        ("x-paddock-gateway", "gw-a"),
        ("x-paddock-gateway-revision", REV),
        ("x-paddock-gateway-proxy-version", "1.29.6"),
    ] {
        assert_eq!(r.header(k), Some(v), "{k}: {r:?}");
    }
    assert!(
        r.header("x-envoy-upstream-service-time")
            .is_some_and(|t| t.parse::<u64>().is_ok()),
        "{r:?}"
    );
}

/// Share of `n` requests on one keep-alive connection answered by pods whose name starts with
/// `prefix`.
fn share(w: &World, host: &str, n: usize, prefix: &str) -> f64 {
    let mut stream = connect(w.port);
    let mut hits = 0;
    for _ in 0..n {
        send(&mut stream, "GET", host, "/", &[], false);
        let r = read_response(&mut stream).expect("answered");
        assert_eq!(r.status, 200, "{r:?}");
        if r.pod().starts_with(prefix) {
            hits += 1;
        }
    }
    hits as f64 / n as f64
}

#[test]
fn weights_split_traffic_in_proportion_to_their_sum() {
    let w = World::new(true);
    w.knobs(Knobs {
        app_latency_ms: 0,
        ..Knobs::default()
    });
    w.gateway_pod("gw-a");
    for v in ["v1", "v2"] {
        w.app_pod(&format!("web-{v}"), json!({"app": "web", "version": v}));
        w.service(&format!("web-{v}"), Some(json!({"version": v})));
        w.until_endpoints(APPS, &format!("web-{v}"), 1);
    }
    w.public_gateway();
    let split = |a: u64, b: u64| {
        json!([{"route": [{"destination": {"host": "web-v1"}, "weight": a},
                          {"destination": {"host": "web-v2"}, "weight": b}]}])
    };
    w.virtual_service(
        APPS,
        "split",
        &["split.test"],
        &["istio-ingress/public"],
        split(90, 10),
    );
    w.virtual_service(
        APPS,
        "ratio",
        &["ratio.test"],
        &["istio-ingress/public"],
        split(3, 1),
    );
    w.virtual_service(
        APPS,
        "zero",
        &["zero.test"],
        &["istio-ingress/public"],
        split(0, 5),
    );
    let v2 = share(&w, "split.test", 2000, "web-v2");
    assert!((v2 - 0.10).abs() < 0.03, "90/10 split gave v2 {v2:.3}");
    let v2 = share(&w, "ratio.test", 2000, "web-v2");
    assert!(
        (v2 - 0.25).abs() < 0.04,
        "weights 3 and 1 (sum 4) gave v2 {v2:.3}"
    );
    assert_eq!(
        share(&w, "zero.test", 200, "web-v2"),
        1.0,
        "a zero weight takes nothing"
    );
}

#[test]
fn subsets_select_pods_by_destination_rule_labels() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    for (name, v) in [("web-v1-a", "v1"), ("web-v1-b", "v1"), ("web-v2-a", "v2")] {
        w.app_pod(name, json!({"app": "web", "version": v}));
    }
    w.service("web", Some(json!({"app": "web"})));
    w.until_endpoints(APPS, "web", 3);
    w.public_gateway();
    w.istio(
        "v1",
        "DestinationRule",
        APPS,
        "web",
        json!({"host": "web", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}}]}),
    );
    // Not visible to the gateway: neither its namespace, the Service's nor the root namespace.
    w.istio(
        "v1",
        "DestinationRule",
        "other",
        "web-elsewhere",
        json!({"host": "web.apps.svc.cluster.local", "subsets": [{"name": "v3", "labels": {"version": "v1"}}]}),
    );
    let subset = |name: &str| json!([{"destination": {"host": "web", "subset": name}}]);
    w.virtual_service(
        APPS,
        "web",
        &["web.example.com"],
        &["istio-ingress/public"],
        json!([
            {"match": [{"headers": {"x-version": {"exact": "v2"}}}], "route": subset("v2")},
            {"match": [{"headers": {"x-version": {"exact": "v3"}}}], "route": subset("v3")},
            {"route": subset("v1")},
        ]),
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = w.get("web.example.com", "/").expect("v1");
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.pod().to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["web-v1-a", "web-v1-b"],
        "subset v1 is both v1 pods and only them"
    );
    let r = request(
        w.port,
        "GET",
        "web.example.com",
        "/",
        &[("x-version", "v2")],
    )
    .expect("v2");
    assert_eq!(r.pod(), "web-v2-a");
    let r = request(
        w.port,
        "GET",
        "web.example.com",
        "/",
        &[("x-version", "v3")],
    )
    .expect("v3");
    assert_envoy_reply(&r, 503, "");
}

#[test]
fn envoy_answers_itself_when_nothing_can_serve() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    w.app_pod("web-1", json!({"app": "web"}));
    w.service("web", Some(json!({"app": "web"})));
    w.service("nobody", Some(json!({"app": "nobody"})));
    w.until_endpoints(APPS, "web", 1);
    w.public_gateway();
    let gws = ["istio-ingress/public"];
    w.virtual_service(
        APPS,
        "only",
        &["a.example.com"],
        &gws,
        json!([{"match": [{"uri": {"prefix": "/only"}}], "route": [{"destination": {"host": "web"}}]}]),
    );
    w.virtual_service(
        APPS,
        "empty",
        &["empty.example.com"],
        &gws,
        json!([{"route": [{"destination": {"host": "nobody"}}]}]),
    );
    w.virtual_service(
        APPS,
        "ghost",
        &["ghost.example.com"],
        &gws,
        json!([{"route": [{"destination": {"host": "ghost"}}]}]),
    );
    w.virtual_service(
        APPS,
        "bad-port",
        &["port.example.com"],
        &gws,
        json!([{"route": [{"destination": {"host": "web", "port": {"number": 9090}}}]}]),
    );
    assert_eq!(
        w.get("a.example.com", "/only/x").expect("routed").pod(),
        "web-1"
    );
    assert_envoy_reply(&w.get("a.example.com", "/other").expect("NR"), 404, "");
    assert_envoy_reply(
        &w.get("empty.example.com", "/").expect("UH"),
        503,
        NO_HEALTHY_UPSTREAM,
    );
    assert_envoy_reply(&w.get("ghost.example.com", "/").expect("NC"), 503, "");
    assert_envoy_reply(&w.get("port.example.com", "/").expect("NC"), 503, "");
}

#[test]
fn virtual_services_bind_only_to_the_gateways_they_name() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    w.public_gateway();
    w.gateway("internal", json!({"istio": "internal"}), 80, json!(["*"]));
    w.gateway(
        "scoped",
        json!({"istio": "ingress"}),
        80,
        json!(["apps/*.scoped.test"]),
    );
    let answer =
        |text: &str| json!([{"directResponse": {"status": 200, "body": {"string": text}}}]);
    w.virtual_service(
        APPS,
        "to-internal",
        &["internal.test"],
        &["istio-ingress/internal"],
        answer("internal"),
    );
    w.virtual_service(APPS, "mesh-only", &["mesh.test"], &[], answer("mesh"));
    w.virtual_service(
        APPS,
        "mesh-explicit",
        &["mesh2.test"],
        &["mesh"],
        answer("mesh2"),
    );
    w.virtual_service(
        APPS,
        "short-name",
        &["short.test"],
        &["public"],
        answer("short"),
    );
    w.virtual_service(
        APPS,
        "fqdn",
        &["fqdn.test"],
        &["public.istio-ingress.svc.cluster.local"],
        answer("fqdn"),
    );
    w.virtual_service(
        GW_NS,
        "local",
        &["local.test"],
        &["public"],
        answer("local"),
    );
    w.virtual_service(
        APPS,
        "scoped-ok",
        &["a.scoped.test"],
        &["istio-ingress/scoped"],
        answer("scoped"),
    );
    w.virtual_service(
        "other",
        "scoped-other",
        &["b.scoped.test"],
        &["istio-ingress/scoped"],
        answer("other"),
    );
    for (host, want) in [
        ("internal.test", None),
        ("mesh.test", None),
        ("mesh2.test", None),
        ("short.test", None),
        ("fqdn.test", Some("fqdn")),
        ("local.test", Some("local")),
        ("a.scoped.test", Some("scoped")),
        ("b.scoped.test", None),
    ] {
        let r = w.get(host, "/").expect("the listener answers");
        match want {
            Some(body) => assert_envoy_reply(&r, 200, body),
            None => assert_envoy_reply(&r, 404, ""),
        }
    }
}

/// A selector-less Service `web` whose Endpoints list `web-1`, routed from `web.example.com`.
fn manual_endpoints_world() -> World {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    w.app_pod("web-1", json!({"app": "web"}));
    w.service("web", None);
    w.store(|s| set_endpoints(s, APPS, "web", &["web-1"]));
    w.public_gateway();
    w.virtual_service(
        APPS,
        "web",
        &["web.example.com"],
        &["istio-ingress/public"],
        json!([{"route": [{"destination": {"host": "web"}}]}]),
    );
    w
}

#[test]
fn a_pod_gone_while_its_endpoint_is_still_listed_fails_with_a_connection_failure() {
    let w = manual_endpoints_world();
    assert_eq!(
        w.get("web.example.com", "/").expect("served").pod(),
        "web-1"
    );
    // The pod stopped without draining; the Endpoints have not caught up (left as they were).
    w.store(|s| vanish(s, APPS, "web-1"));
    assert_envoy_reply(
        &w.get("web.example.com", "/").expect("503"),
        503,
        CONNECTION_FAILURE,
    );
    w.store(|s| set_endpoints(s, APPS, "web", &[]));
    assert_envoy_reply(
        &w.get("web.example.com", "/").expect("503"),
        503,
        NO_HEALTHY_UPSTREAM,
    );
}

#[test]
fn a_pod_gone_while_answering_fails_with_a_connection_termination() {
    let w = manual_endpoints_world();
    w.knobs(Knobs {
        app_latency_ms: 600,
        ..Knobs::default()
    });
    let port = w.port;
    let started = Instant::now();
    let in_flight = std::thread::spawn(move || request(port, "GET", "web.example.com", "/", &[]));
    std::thread::sleep(Duration::from_millis(150));
    w.store(|s| vanish(s, APPS, "web-1"));
    let r = in_flight.join().expect("thread").expect("503");
    assert_envoy_reply(&r, 503, CONNECTION_TERMINATION);
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "fails when the pod goes, not when it would have answered"
    );
}

#[test]
fn terminating_gateways_drain_keep_alive_connections_and_gone_ones_drop_them() {
    let w = manual_endpoints_world();
    w.knobs(slow_termination());
    w.probe_route();
    let probe = |stream: &mut TcpStream| {
        send(stream, "GET", PROBE_HOST, "/", &[], false);
        read_response(stream)
    };
    let (mut drained, mut idle, mut busy) = (connect(w.port), connect(w.port), connect(w.port));
    for c in [&mut drained, &mut idle, &mut busy] {
        let r = probe(c).expect("answered");
        assert_eq!(
            (r.status, r.header("connection")),
            (200, None),
            "kept open: {r:?}"
        );
    }
    let r = probe(&mut drained).expect("a kept-alive connection serves again");
    assert_eq!(r.status, 200);

    w.store(|s| terminate(s, GW_NS, "gw-a"));
    let r = probe(&mut drained).expect("a terminating gateway still answers");
    assert_eq!(
        (r.status, r.header("connection")),
        (200, Some("close")),
        "{r:?}"
    );
    assert!(
        sees_eof(&mut drained),
        "and closes the connection after the response"
    );

    w.knobs(Knobs {
        app_latency_ms: 1_000,
        ..slow_termination()
    });
    send(&mut busy, "GET", "web.example.com", "/", &[], false);
    std::thread::sleep(Duration::from_millis(100));
    w.store(|s| vanish(s, GW_NS, "gw-a"));
    assert!(
        sees_eof(&mut idle),
        "an idle keep-alive connection sees EOF"
    );
    assert_eq!(
        read_response(&mut busy).unwrap_err(),
        "reset without a response",
        "a request in flight loses its connection"
    );
}

fn traffic_options(w: &World, connections: Connections) -> TrafficOptions {
    TrafficOptions {
        port: w.port,
        host_header: "web.example.com".into(),
        path: "/".into(),
        clients: 4,
        connections,
        pause: Duration::from_millis(5),
        expect: Expect::App,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn traffic_counts_no_failures_while_pods_keep_serving() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    w.app_pod("web-1", json!({"app": "web"}));
    w.app_pod("web-2", json!({"app": "web"}));
    w.service("web", Some(json!({"app": "web"})));
    w.until_endpoints(APPS, "web", 2);
    w.public_gateway();
    w.virtual_service(
        APPS,
        "web",
        &["web.example.com"],
        &["istio-ingress/public"],
        json!([{"route": [{"destination": {"host": "web"}}]}]),
    );
    let traffic = Traffic::start(traffic_options(&w, Connections::Mixed));
    std::thread::sleep(Duration::from_secs(1));
    let report = traffic.finish();
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.total > 100, "{report}");
    assert_eq!(
        report.by_pod.keys().collect::<Vec<_>>(),
        ["web-1", "web-2"],
        "{report}"
    );
    assert_eq!(report.by_revision.get(REV), Some(&report.total), "{report}");
    assert_eq!(
        report.by_proxy_version.get("1.29.6"),
        Some(&report.total),
        "{report}"
    );
    assert_eq!(
        report.by_gateway.get("gw-a"),
        Some(&report.total),
        "{report}"
    );
}

#[test]
fn traffic_counts_the_requests_a_vanished_pod_drops() {
    let w = World::new(true);
    w.gateway_pod("gw-a");
    w.app_pod("web-1", json!({"app": "web"}));
    w.service("web", Some(json!({"app": "web"})));
    w.until_endpoints(APPS, "web", 1);
    w.public_gateway();
    w.virtual_service(
        APPS,
        "web",
        &["web.example.com"],
        &["istio-ingress/public"],
        json!([{"route": [{"destination": {"host": "web"}}]}]),
    );
    let traffic = Traffic::start(traffic_options(&w, Connections::Mixed));
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let deleted_at = started.elapsed();
    w.store(|s| vanish(s, APPS, "web-1"));
    std::thread::sleep(Duration::from_millis(300));
    let report = traffic.finish();
    assert!(report.failed > 10, "{report}");
    assert!(
        report.total - report.failed > 10,
        "served before the deletion: {report}"
    );
    for (at, what) in &report.failures {
        assert!(
            *at + Duration::from_millis(50) >= deleted_at,
            "failure before the deletion at {at:?}: {what}"
        );
        assert!(what.starts_with("status 503"), "{what}");
    }
}

#[test]
fn keep_alive_clients_ride_out_a_drained_gateway_and_retry_after_a_vanished_one() {
    let w = World::new(false);
    // Gateways drain for 300 ms once deleted, then the kubelet removes them.
    w.knobs(Knobs {
        termination_ms: 300,
        termination_drain_ms: 300,
        ..Knobs::default()
    });
    for gw in ["gw-a", "gw-b", "gw-c"] {
        w.gateway_pod(gw);
    }
    w.store(|s| set_endpoints(s, GW_NS, "istio-ingress", &["gw-a"]));
    w.probe_route();
    let opts = TrafficOptions {
        host_header: PROBE_HOST.into(),
        expect: Expect::Status(200),
        pause: Duration::from_millis(10),
        ..traffic_options(&w, Connections::KeepAlive)
    };

    // Drained: told `connection: close`, clients reconnect to the remaining gateway.
    let traffic = Traffic::start(opts.clone());
    std::thread::sleep(Duration::from_millis(300));
    w.store(|s| {
        set_endpoints(s, GW_NS, "istio-ingress", &["gw-b"]);
        terminate(s, GW_NS, "gw-a");
    });
    w.until("gw-a gone after draining", |s| {
        s.get(&res("pods"), GW_NS, "gw-a").is_err()
    });
    std::thread::sleep(Duration::from_millis(200));
    let report = traffic.finish();
    assert_eq!((report.failed, report.retried), (0, 0), "{report}");
    assert_eq!(
        report.by_gateway.keys().collect::<Vec<_>>(),
        ["gw-a", "gw-b"],
        "{report}"
    );

    // Vanished without draining: every client's next request meets a closed connection and is
    // retried once on a new one.
    let traffic = Traffic::start(opts);
    std::thread::sleep(Duration::from_millis(300));
    w.store(|s| {
        set_endpoints(s, GW_NS, "istio-ingress", &["gw-c"]);
        vanish(s, GW_NS, "gw-b");
    });
    std::thread::sleep(Duration::from_millis(300));
    let report = traffic.finish();
    assert_eq!((report.failed, report.retried), (0, 4), "{report}");
    assert_eq!(
        report.by_gateway.keys().collect::<Vec<_>>(),
        ["gw-b", "gw-c"],
        "{report}"
    );
}

#[test]
fn draining_pods_lose_nothing_while_endpoints_catch_up_and_vanished_ones_do() {
    let w = World::new(true);
    let lag = Duration::from_millis(200);
    w.knobs(Knobs {
        endpoint_lag_ms: 200,
        termination_ms: 500,
        termination_drain_ms: 500,
        ..Knobs::default()
    });
    w.gateway_pod("gw-a");
    for pod in ["web-1", "web-2", "web-3"] {
        w.app_pod(pod, json!({"app": "web"}));
    }
    w.service("web", Some(json!({"app": "web"})));
    w.until_endpoints(APPS, "web", 3);
    w.public_gateway();
    w.virtual_service(
        APPS,
        "web",
        &["web.example.com"],
        &["istio-ingress/public"],
        json!([{"route": [{"destination": {"host": "web"}}]}]),
    );

    // Deleted with its grace period: it keeps answering while the Endpoints catch up.
    let traffic = Traffic::start(traffic_options(&w, Connections::Mixed));
    std::thread::sleep(Duration::from_millis(300));
    w.store(|s| terminate(s, APPS, "web-1"));
    std::thread::sleep(Duration::from_millis(900));
    let report = traffic.finish();
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.by_pod.contains_key("web-1"), "{report}");
    w.until("web-1 gone", |s| {
        s.get(&res("pods"), APPS, "web-1").is_err()
    });

    // Deleted outright: what the lagging Endpoints still send it fails, then nothing does.
    let traffic = Traffic::start(traffic_options(&w, Connections::Mixed));
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let deleted_at = started.elapsed();
    w.store(|s| vanish(s, APPS, "web-2"));
    std::thread::sleep(Duration::from_millis(600));
    let report = traffic.finish();
    assert!(report.failed > 0, "{report}");
    for (at, what) in &report.failures {
        assert!(
            *at + Duration::from_millis(50) >= deleted_at
                && *at <= deleted_at + lag + Duration::from_millis(100),
            "failure outside the endpoint lag after the deletion at {deleted_at:?}: {at:?} {what}"
        );
        assert!(
            what.contains(CONNECTION_FAILURE) || what.contains("connection termination"),
            "{what}"
        );
    }
}
