//! The cluster's ingress data path, from a published port to an application pod: k3d's
//! `serverlb`, k3s's ServiceLB and kube-proxy, the ingress gateway's Envoy and the application
//! pods behind it. `gateway` decides where requests go; this module carries connections and
//! times answers.
//!
//! - A TCP connection to a load-balancer port reaches the LoadBalancer Service exposing that
//!   port (the oldest, when several claim it: ServiceLB binds a host port once) and one of the
//!   ready addresses of its `Endpoints` object, chosen at random as kube-proxy's iptables rules
//!   do, and pinned for the connection's life (conntrack). The Endpoints object is read as it
//!   is, lag included.
//! - k3d's load balancer (nginx, TCP stream proxy) accepts every connection, then closes it
//!   without a byte when the node side refuses: no Service on the port (no ServiceLB pod binds
//!   it), no ready endpoint (kube-proxy's REJECT rule refuses), an endpoint whose pod is gone,
//!   or a gateway pod with no listener on the Service's `targetPort` (no `Gateway` selects it
//!   for that port, or only non-HTTP servers do). nginx tries each node, then closes the
//!   client's connection: `curl` says "Empty reply from server". The close reads what the
//!   client sent first, so the client sees EOF rather than a reset.
//! - Each HTTP/1.1 request is routed when it arrives (`gateway::route`) with the Gateways,
//!   VirtualServices and DestinationRules of that moment. Envoy's own answers: `404` (no route),
//!   `503` (cluster not found, `no healthy upstream`, connection failure/termination), direct
//!   responses and redirects. Upstream endpoints are chosen as Envoy's default least-request
//!   balancer does (power of two random choices). No retries.
//! - An application pod answers after the `appLatencyMs` knob with `200` and JSON naming
//!   itself. A pod serves while its object exists, terminating included; one gone before it is
//!   reached fails the request with a connection failure, one gone while answering with a
//!   connection termination.
//! - A gateway pod that is terminating answers with `connection: close` and closes the
//!   connection after the response (Envoy's HTTP/1.1 drain). When it is gone, its idle
//!   connections are closed and a request in flight sees the connection reset.
//!
//! Every response carries `server: istio-envoy`, `x-paddock-cluster`, `x-paddock-gateway`,
//! `x-paddock-gateway-revision` and `x-paddock-gateway-proxy-version`; an application's answer
//! also `x-envoy-upstream-service-time`, `x-paddock-pod`, `x-paddock-revision` and
//! `x-paddock-proxy-version`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::api::{Shared, SharedKnobs};
use crate::gateway::{self, Decision, Identity, Listener, PodRef};
use crate::http1::{self, Body, Head};
use crate::store::{Store, res};

/// Envoy's body for a request whose upstream connection could not be made.
pub const CONNECTION_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
/// Envoy's body for a request whose upstream connection closed before the response headers.
pub const CONNECTION_TERMINATION: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
/// Envoy's body when the destination has no healthy endpoint.
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";

/// One load-balancer port and what its connections share.
struct Ingress {
    cluster: String,
    port: u16,
    store: Shared,
    knobs: SharedKnobs,
    /// Bumped whenever a pod (or a namespace) disappears, so connections re-check their pods.
    gone: watch::Sender<u64>,
    /// Requests in flight per upstream pod, for least-request balancing.
    active: Mutex<HashMap<PodRef, usize>>,
}

impl Ingress {
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        match self.store.lock() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    fn app_latency(&self) -> Duration {
        let ms = match self.knobs.read() {
            Ok(k) => k.app_latency_ms,
            Err(p) => p.into_inner().app_latency_ms,
        };
        Duration::from_millis(ms)
    }

    /// The gateway pod a new connection is pinned to, and the container port it reaches.
    fn pick_gateway(&self) -> Option<(PodRef, u16)> {
        self.with_store(|s| {
            let svc = s
                .all(&res("services"), "")
                .into_iter()
                .filter(|svc| svc.pointer("/spec/type") == Some(&json!("LoadBalancer")))
                .filter(|svc| service_port(svc, self.port).is_some())
                .min_by_key(|svc| {
                    (
                        at(svc, "/metadata/creationTimestamp").to_string(),
                        at(svc, "/metadata/namespace").to_string(),
                        at(svc, "/metadata/name").to_string(),
                    )
                })?;
            let endpoints = gateway::ready_endpoints(
                s,
                at(&svc, "/metadata/namespace"),
                at(&svc, "/metadata/name"),
            );
            if endpoints.is_empty() {
                return None;
            }
            let chosen = endpoints[fastrand::usize(..endpoints.len())].clone();
            let pod = chosen.get(s)?;
            let target = gateway::target_port(service_port(&svc, self.port)?, &pod)?;
            Some((chosen, target))
        })
    }

    /// Least request with two random choices, as Envoy balances by default.
    fn pick_endpoint(&self, endpoints: &[PodRef]) -> PodRef {
        let a = &endpoints[fastrand::usize(..endpoints.len())];
        let b = &endpoints[fastrand::usize(..endpoints.len())];
        let active = match self.active.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let load = |p: &PodRef| active.get(p).copied().unwrap_or(0);
        if load(b) < load(a) {
            b.clone()
        } else {
            a.clone()
        }
    }
}

fn at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn service_port(svc: &Value, port: u16) -> Option<&Value> {
    svc.pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
}

/// Counts a request in flight to an upstream pod until dropped.
struct InFlight<'a> {
    ingress: &'a Ingress,
    pod: PodRef,
}

impl<'a> InFlight<'a> {
    fn new(ingress: &'a Ingress, pod: PodRef) -> Self {
        if let Ok(mut m) = ingress.active.lock() {
            *m.entry(pod.clone()).or_default() += 1;
        }
        Self { ingress, pod }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.ingress.active.lock()
            && let Some(n) = m.get_mut(&self.pod)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.pod);
            }
        }
    }
}

/// Serve one load-balancer port (`port` is the port inside the cluster's nodes) until the task
/// is dropped, which also ends its connections.
pub async fn serve(
    listener: TcpListener,
    cluster: String,
    port: u16,
    store: Shared,
    knobs: SharedKnobs,
) {
    let mut events = match store.lock() {
        Ok(s) => s.events.subscribe(),
        Err(p) => p.into_inner().events.subscribe(),
    };
    let ingress = Arc::new(Ingress {
        cluster,
        port,
        store,
        knobs,
        gone: watch::channel(0).0,
        active: Mutex::new(HashMap::new()),
    });
    let mut connections = JoinSet::new();
    let mut watching = true;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(ingress.clone(), stream));
                }
                // Out of descriptors and the like: let other work finish first.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            event = events.recv(), if watching => match event {
                Ok(e) if e.kind == "DELETED" && e.group.is_empty()
                    && (e.plural == "pods" || e.plural == "namespaces") => {
                    ingress.gone.send_modify(|n| *n += 1);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => ingress.gone.send_modify(|n| *n += 1),
                Err(broadcast::error::RecvError::Closed) => watching = false,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a request on a pinned connection ends.
enum Outcome {
    /// Write this response; close the connection afterwards when `close`.
    Respond { bytes: Vec<u8>, close: bool },
    /// The gateway pod is gone: reset the connection without a response.
    Reset,
}

enum Read {
    Request(Head),
    /// The client closed, or the gateway pod went away while the connection was idle.
    Closed,
    /// The gateway pod went away in the middle of a request.
    Reset,
    /// Unparseable: Envoy answers `400` and closes.
    Bad,
}

async fn connection(ingress: Arc<Ingress>, mut stream: TcpStream) {
    // Dropping the stream without a byte is what a client of k3d's load balancer sees when the
    // node side refuses.
    let Some((gw, port)) = ingress.pick_gateway() else {
        return close_gracefully(stream).await;
    };
    let listening = ingress.with_store(|s| gw.get(s).map(|pod| gateway::listener(s, &pod, port)));
    if listening != Some(Listener::Http) {
        return close_gracefully(stream).await;
    }
    let mut gone = ingress.gone.subscribe();
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&ingress, &gw, &mut stream, &mut buf, &mut gone).await {
            Read::Request(r) => r,
            Read::Closed => return close_gracefully(stream).await,
            Read::Reset => return reset(stream),
            Read::Bad => {
                let id = ingress
                    .with_store(|s| gw.get(s).map(|p| gateway::identity(&p)))
                    .unwrap_or_default();
                let mut headers = envoy_headers(&ingress.cluster, &id);
                headers.push(("connection".into(), "close".into()));
                let bytes = http1::write_response(400, &headers, b"", false);
                let _ = stream.write_all(&bytes).await;
                return close_gracefully(stream).await;
            }
        };
        match handle(&ingress, &gw, port, &req, &mut gone).await {
            Outcome::Respond { bytes, close } => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                if close {
                    return close_gracefully(stream).await;
                }
            }
            Outcome::Reset => return reset(stream),
        }
    }
}

/// Close gracefully: FIN, then read what the client still sends until it closes too, so that
/// unread bytes do not turn the close into a reset (nginx's lingering close does the same).
async fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let linger = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            n = stream.read(&mut sink) => if !matches!(n, Ok(n) if n > 0) { return },
            () = &mut linger => return,
        }
    }
}

/// Close with RST: what a client sees when the proxy holding its connection dies.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn gateway_alive(ingress: &Ingress, gw: &PodRef) -> bool {
    ingress.with_store(|s| gw.get(s).is_some())
}

async fn read_request(
    ingress: &Ingress,
    gw: &PodRef,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    gone: &mut watch::Receiver<u64>,
) -> Read {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = http1::head_end(buf) {
            let Ok(head) = http1::parse_head(&buf[..end]) else {
                return Read::Bad;
            };
            match http1::request_body(&head) {
                Ok(Body::Length(n)) if buf.len() >= end + n => {
                    buf.drain(..end + n);
                    return Read::Request(head);
                }
                Ok(Body::Chunked) => match http1::chunked(&buf[end..]) {
                    Ok(Some((used, _))) => {
                        buf.drain(..end + used);
                        return Read::Request(head);
                    }
                    Ok(None) => {}
                    Err(_) => return Read::Bad,
                },
                Ok(_) => {}
                Err(_) => return Read::Bad,
            }
        } else if buf.len() > http1::MAX_HEAD {
            return Read::Bad;
        }
        tokio::select! {
            n = stream.read(&mut chunk) => match n {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            changed = gone.changed() => {
                if changed.is_err() || !gateway_alive(ingress, gw) {
                    return if buf.is_empty() { Read::Closed } else { Read::Reset };
                }
            }
        }
    }
}

/// The gateway pod as it is when it answers.
struct GatewayState {
    id: Identity,
    /// Terminating (`deletionTimestamp` set): Envoy is draining.
    draining: bool,
}

fn gateway_state(pod: &Value) -> GatewayState {
    GatewayState {
        id: gateway::identity(pod),
        draining: pod.pointer("/metadata/deletionTimestamp").is_some(),
    }
}

/// The headers on every response the gateway sends: Envoy's and the sim's gateway identity.
fn envoy_headers(cluster: &str, gw: &Identity) -> Vec<(String, String)> {
    vec![
        (
            "date".to_string(),
            httpdate::fmt_http_date(SystemTime::now()),
        ),
        ("server".to_string(), "istio-envoy".to_string()),
        ("x-paddock-cluster".to_string(), cluster.to_string()),
        ("x-paddock-gateway".to_string(), gw.name.clone()),
        (
            "x-paddock-gateway-revision".to_string(),
            gw.revision.clone(),
        ),
        (
            "x-paddock-gateway-proxy-version".to_string(),
            gw.proxy_version.clone(),
        ),
    ]
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A response Envoy makes itself.
fn local_reply(cluster: &str, gw: &Identity, status: u16, body: &[u8]) -> Reply {
    let mut headers = envoy_headers(cluster, gw);
    if !body.is_empty() {
        headers.push(("content-type".into(), "text/plain".into()));
    }
    Reply {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// Route one request and produce its answer.
async fn handle(
    ingress: &Ingress,
    gw: &PodRef,
    port: u16,
    head: &Head,
    gone: &mut watch::Receiver<u64>,
) -> Outcome {
    let request = gateway::Request {
        method: &head.start[0],
        target: &head.start[1],
        headers: &head.headers,
    };
    let routed = ingress.with_store(|s| {
        let pod = gw.get(s)?;
        let decision = gateway::route(s, &pod, port, &request, &mut fastrand::Rng::new());
        Some((decision, gateway_state(&pod)))
    });
    let Some((decision, mut state)) = routed else {
        return Outcome::Reset;
    };
    let cluster = ingress.cluster.as_str();
    let reply = match decision {
        Decision::NoRoute => local_reply(cluster, &state.id, 404, b""),
        Decision::ClusterNotFound => local_reply(cluster, &state.id, 503, b""),
        Decision::Direct { status, body } => local_reply(cluster, &state.id, status, &body),
        Decision::Redirect { status, location } => {
            let mut r = local_reply(cluster, &state.id, status, b"");
            r.headers.push(("location".into(), location));
            r
        }
        Decision::Forward(endpoints) if endpoints.is_empty() => {
            local_reply(cluster, &state.id, 503, NO_HEALTHY_UPSTREAM.as_bytes())
        }
        Decision::Forward(endpoints) => {
            let upstream = ingress.pick_endpoint(&endpoints);
            match forward(ingress, gw, &upstream, gone).await {
                Ok(Answer { app, gateway, took }) => {
                    state = gateway;
                    let mut headers = envoy_headers(cluster, &state.id);
                    headers.extend(app_headers(&app));
                    headers.push((
                        "x-envoy-upstream-service-time".into(),
                        took.as_millis().to_string(),
                    ));
                    Reply {
                        status: 200,
                        headers,
                        body: app_body(cluster, &app),
                    }
                }
                Err(Unanswered::Refused) => {
                    local_reply(cluster, &state.id, 503, CONNECTION_FAILURE.as_bytes())
                }
                Err(Unanswered::Terminated) => {
                    local_reply(cluster, &state.id, 503, CONNECTION_TERMINATION.as_bytes())
                }
                Err(Unanswered::GatewayGone) => return Outcome::Reset,
            }
        }
    };
    // The gateway's state when it answers decides whether the connection stays open.
    let close = state.draining
        || head.connection_has("close")
        || (head.is_http10(2) && !head.connection_has("keep-alive"));
    let mut headers = reply.headers;
    if close {
        headers.push(("connection".into(), "close".into()));
    }
    let head_only = head.start[0].eq_ignore_ascii_case("HEAD");
    Outcome::Respond {
        bytes: http1::write_response(reply.status, &headers, &reply.body, head_only),
        close,
    }
}

/// An application pod's answer (who it is), with the gateway's state at that moment.
struct Answer {
    app: Identity,
    gateway: GatewayState,
    took: Duration,
}

/// Why an application pod did not answer.
enum Unanswered {
    /// The endpoint's pod no longer exists: nothing accepts the connection.
    Refused,
    /// The pod disappeared before it answered.
    Terminated,
    /// The gateway pod itself disappeared meanwhile.
    GatewayGone,
}

/// Send a request to an application pod and wait for its answer.
async fn forward(
    ingress: &Ingress,
    gw: &PodRef,
    upstream: &PodRef,
    gone: &mut watch::Receiver<u64>,
) -> Result<Answer, Unanswered> {
    let started = Instant::now();
    if ingress.with_store(|s| upstream.get(s)).is_none() {
        return Err(Unanswered::Refused);
    }
    let _in_flight = InFlight::new(ingress, upstream.clone());
    let latency = ingress.app_latency();
    let answer = tokio::time::sleep(latency);
    tokio::pin!(answer);
    // Tokio's timer ticks in milliseconds: an instant app must not wait for the next tick.
    while !latency.is_zero() {
        tokio::select! {
            () = &mut answer => break,
            changed = gone.changed() => {
                let (gw_alive, up_alive) = ingress.with_store(|s| (gw.get(s).is_some(), upstream.get(s).is_some()));
                if changed.is_err() || !gw_alive {
                    return Err(Unanswered::GatewayGone);
                }
                if !up_alive {
                    return Err(Unanswered::Terminated);
                }
            }
        }
    }
    let (gateway, app) = ingress.with_store(|s| {
        (
            gw.get(s).map(|p| gateway_state(&p)),
            upstream.get(s).map(|p| gateway::identity(&p)),
        )
    });
    match (gateway, app) {
        (None, _) => Err(Unanswered::GatewayGone),
        (Some(_), None) => Err(Unanswered::Terminated),
        (Some(gateway), Some(app)) => Ok(Answer {
            app,
            gateway,
            took: started.elapsed(),
        }),
    }
}

/// The headers an application pod answers with.
pub(crate) fn app_headers(id: &Identity) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-paddock-pod".into(), id.name.clone()),
        ("x-paddock-revision".into(), id.revision.clone()),
        ("x-paddock-proxy-version".into(), id.proxy_version.clone()),
    ]
}

/// The body an application pod answers with: who it is.
pub(crate) fn app_body(cluster: &str, id: &Identity) -> Vec<u8> {
    json!({"cluster": cluster, "namespace": id.namespace, "pod": id.name,
        "revision": id.revision, "proxyVersion": id.proxy_version})
    .to_string()
    .into_bytes()
}
