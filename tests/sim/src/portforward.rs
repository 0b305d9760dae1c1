//! `pods/portforward` as the API server and the kubelet serve it to WebSocket clients (kube-rs'
//! `Api::portforward`; kubectl's SPDY tunnelled over WebSockets is not served): `GET /api/v1/namespaces/NS/pods/NAME/portforward
//! ?ports=P[&ports=Q]` with `Upgrade: websocket` and the subprotocol `v4.channel.k8s.io` (or
//! none). Each port has two channels, data `2i` and error `2i+1`; every WebSocket message is
//! binary, its first byte the channel. Each channel first carries the port as two bytes,
//! little-endian (the kubelet's `portforward/websocket.go`). Then the kubelet dials the port in
//! the pod's network namespace: a port no container declares refuses, and the error channel
//! gets containerd's message, after which the connection closes; a declared port answers HTTP
//! as the sim's application pods do (`lb`): `200` JSON `{cluster, namespace, pod, revision,
//! proxyVersion}` with `x-paddock-pod`. A pod that is gone by the time a request arrives closes
//! the connection.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::Shared;
use crate::gateway;
use crate::http1::{self, Body};
use crate::store::{ApiError, res};

/// The binary channel protocol the kubelet's port forwarding speaks over WebSockets.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// Where a forwarding session runs: the cluster (for the app's answer) and the store.
#[derive(Clone)]
pub struct Target {
    pub cluster: String,
    pub store: Shared,
}

/// The handler of `pods/portforward`.
pub async fn handle(
    State(target): State<Target>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let pod = {
        let store = match target.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        store.get(&res("pods"), &ns, &name)
    };
    let pod = match pod {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    if let Err(e) = running(&pod, &name) {
        return error(&e);
    }
    let ports = match ports(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let (key, protocol) = match handshake(req.headers()) {
        Ok(h) => h,
        Err(e) => return error(&e),
    };
    let upgrade = hyper::upgrade::on(req);
    let session = Session {
        target,
        ns,
        name,
        uid: pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        listening: listening(&pod),
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let io = hyper_util::rt::TokioIo::new(upgraded);
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            session.run(ws, &ports).await;
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    response
}

fn error(e: &ApiError) -> Response {
    (
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        e.status().to_string(),
    )
        .into_response()
}

/// A pod forwards only while it runs: the API server refuses one without a node, the kubelet
/// one whose sandbox is not running (the message is kubectl's for the same check).
fn running(pod: &Value, name: &str) -> Result<(), ApiError> {
    if pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!("pod {name} does not have a host assigned"),
        ));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!("unable to forward port because pod is not running. Current status={phase}"),
        ));
    }
    Ok(())
}

/// The `ports` query parameters (repeated, or comma-separated), as the kubelet reads them.
fn ports(query: &str) -> Result<Vec<u16>, ApiError> {
    let bad = |m: String| ApiError::new(400, "BadRequest", m);
    let mut out = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k != "ports" {
            continue;
        }
        for p in v.split("%2C").flat_map(|s| s.split(',')) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => {
                    return Err(bad(format!(
                        "unable to parse \"{p}\" as a port: invalid port"
                    )));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(bad("query parameter \"port\" is required".into()));
    }
    Ok(out)
}

/// The WebSocket upgrade's key and the subprotocol chosen (`None`: the client offered none).
fn handshake(headers: &HeaderMap) -> Result<(String, Option<&'static str>), ApiError> {
    let bad = |m: &str| ApiError::new(400, "BadRequest", m);
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err(bad(
            "Upgrade request required: this sim serves port forwarding over WebSockets only",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("missing Sec-WebSocket-Key"))?
        .to_string();
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok((key, None));
    }
    if offered.contains(&PROTOCOL) {
        return Ok((key, Some(PROTOCOL)));
    }
    Err(bad(&format!(
        "requested protocol(s) are not supported: {offered:?}; supports [\"\" \"{PROTOCOL}\" \"v4.base64.channel.k8s.io\"]"
    )))
}

/// The TCP ports the pod's containers declare: what listens in its network namespace.
fn listening(pod: &Value) -> Vec<u16> {
    crate::controllers::containers(pod)
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| p["containerPort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

/// One forwarding connection.
struct Session {
    target: Target,
    ns: String,
    name: String,
    uid: String,
    listening: Vec<u16>,
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

impl Session {
    async fn run(self, mut ws: Ws, ports: &[u16]) {
        for (i, port) in ports.iter().enumerate() {
            for ch in [2 * i, 2 * i + 1] {
                let mut frame = vec![ch as u8];
                frame.extend_from_slice(&port.to_le_bytes());
                if ws.send(Message::binary(frame)).await.is_err() {
                    return;
                }
            }
        }
        // The kubelet dials every port at once; one that refuses ends the connection.
        for (i, port) in ports.iter().enumerate() {
            if !self.listening.contains(port) {
                let mut frame = vec![(2 * i + 1) as u8];
                frame.extend_from_slice(self.refused(*port).as_bytes());
                let _ = ws.send(Message::binary(frame)).await;
                let _ = ws.close(None).await;
                return;
            }
        }
        let mut buffers: HashMap<u8, Vec<u8>> = HashMap::new();
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(bytes) = msg else {
                if msg.is_close() {
                    break;
                }
                continue;
            };
            let Some((&ch, data)) = bytes.split_first() else {
                continue;
            };
            if ch % 2 == 1 || usize::from(ch / 2) >= ports.len() {
                continue;
            }
            let buf = buffers.entry(ch).or_default();
            buf.extend_from_slice(data);
            if !self.answer(&mut ws, ch, buf).await {
                break;
            }
        }
        let _ = ws.close(None).await;
    }

    /// Answer every complete request in `buf`; false when the connection must close.
    async fn answer(&self, ws: &mut Ws, ch: u8, buf: &mut Vec<u8>) -> bool {
        while let Some(end) = http1::head_end(buf) {
            let Ok(head) = http1::parse_head(&buf[..end]) else {
                return false;
            };
            let used = match http1::request_body(&head) {
                Ok(Body::Length(n)) if buf.len() >= end + n => end + n,
                Ok(Body::Chunked) => match http1::chunked(&buf[end..]) {
                    Ok(Some((n, _))) => end + n,
                    Ok(None) => return true,
                    Err(_) => return false,
                },
                Ok(Body::Length(_)) => return true,
                _ => return false,
            };
            buf.drain(..used);
            let Some(pod) = self.pod() else {
                return false;
            };
            let id = gateway::identity(&pod);
            let mut headers = crate::lb::app_headers(&id);
            headers.push(("x-paddock-cluster".into(), self.target.cluster.clone()));
            let body = crate::lb::app_body(&self.target.cluster, &id);
            let mut frame = vec![ch];
            frame.extend(http1::write_response(
                200,
                &headers,
                &body,
                head.start[0] == "HEAD",
            ));
            if ws.send(Message::binary(frame)).await.is_err() || head.connection_has("close") {
                return false;
            }
        }
        true
    }

    /// The pod as it is now, if it is still the one forwarded to.
    fn pod(&self) -> Option<Value> {
        let store = match self.target.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        store
            .get(&res("pods"), &self.ns, &self.name)
            .ok()
            .filter(|p| p["metadata"]["uid"].as_str() == Some(self.uid.as_str()))
    }

    /// What containerd's port forwarding reports for a port nothing listens on, as the kubelet
    /// writes it to the error channel (the pod is named by its sandbox id, the uid left empty).
    fn refused(&self, port: u16) -> String {
        let sandbox = hex(&Sha256::digest(format!("sandbox/{}", self.uid)));
        let netns = hex(&Sha256::digest(format!("netns/{}", self.uid)));
        let netns = format!(
            "cni-{}-{}-{}-{}-{}",
            &netns[..8],
            &netns[8..12],
            &netns[12..16],
            &netns[16..20],
            &netns[20..32]
        );
        format!(
            "error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace \"/var/run/netns/{netns}\": failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6: address localhost: no suitable address found "
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_are_read_repeated_or_comma_separated() {
        assert_eq!(ports("ports=80&ports=9090").expect("ports"), [80, 9090]);
        assert_eq!(ports("ports=80%2C81").expect("ports"), [80, 81]);
        assert_eq!(ports("x=1").expect_err("none").code, 400);
        assert_eq!(ports("ports=http").expect_err("name").code, 400);
    }

    #[test]
    fn a_pod_listens_on_its_declared_tcp_ports() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 3000}, {"containerPort": 9094, "protocol": "UDP"}]},
            {"name": "b", "ports": [{"containerPort": 6060, "protocol": "TCP"}]}]}});
        assert_eq!(listening(&pod), [3000, 6060]);
    }
}
