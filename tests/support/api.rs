//! Talking to the daemon's API in tests: an HTTP/1.1 client over its unix socket (hyper), raw
//! connections for what no client would send, event streams read message by message, and the
//! check of every answer against `docs/api/openapi.yaml`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// An answer, read to its end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Send one request on a fresh connection and read the answer's head; the body is left to read.
pub async fn send(
    socket: &Path,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> hyper::Response<Incoming> {
    let stream = UnixStream::connect(socket)
        .await
        .expect("connect to the API");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri)
        .header("host", "paddock");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    sender.send_request(req).await.expect("send the request")
}

/// Send one request and read the whole answer (within 10 s).
pub async fn call(
    socket: &Path,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let read = async {
        let resp = send(socket, method, uri, headers, body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("{method} {uri}: no answer within 10 s"))
}

pub async fn get(socket: &Path, uri: &str) -> Reply {
    call(socket, "GET", uri, &[], Vec::new()).await
}

pub async fn post_json(socket: &Path, uri: &str, body: &Value) -> Reply {
    call(
        socket,
        "POST",
        uri,
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    /// The `event:` field (`None`: a plain message).
    pub event: Option<String>,
    pub data: String,
}

/// Reads an event stream's body message by message.
pub struct SseReader {
    body: Incoming,
    buf: String,
}

impl SseReader {
    pub fn new(body: Incoming) -> Self {
        SseReader {
            body,
            buf: String::new(),
        }
    }

    /// The next message with data (comments skipped), or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseMessage> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if !data.is_empty() {
                    return Some(SseMessage {
                        event,
                        data: data.join("\n"),
                    });
                }
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(chunk) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    }

    /// Every message up to the end of the stream (within `limit`).
    pub async fn all(&mut self, limit: Duration) -> Vec<SseMessage> {
        let mut out = Vec::new();
        let read = async {
            while let Some(m) = self.next().await {
                out.push(m);
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .expect("the event stream ends");
        out
    }
}

/// How a raw connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// The daemon answered (what it sent, up to where the connection ended).
    Answered(Vec<u8>),
    /// The daemon closed the connection without a byte.
    Closed,
    /// The daemon answered and still sends or waits at the deadline (an event stream).
    Streaming(Vec<u8>),
    /// Neither a byte nor a close within the deadline.
    Stuck,
}

impl Raw {
    /// The status of an answer.
    pub fn status(&self) -> Option<u16> {
        let (Raw::Answered(bytes) | Raw::Streaming(bytes)) = self else {
            return None;
        };
        let head = String::from_utf8_lossy(bytes);
        head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Write `bytes` on a fresh connection (errors ignored: the daemon may close first), optionally
/// shut the write half, and read until the daemon closes, or `deadline` passes.
pub async fn raw(socket: &Path, bytes: &[u8], shut_write: bool, deadline: Duration) -> Raw {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return Raw::Closed;
    };
    let (mut rd, mut wr) = stream.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        if shut_write {
            let _ = wr.shutdown().await;
        }
        // Keep the write half open (dropping it would shut it) until the read ends.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ended = tokio::time::timeout(deadline, read).await.is_ok();
    writer.abort();
    match (ended, got.is_empty()) {
        (false, true) => Raw::Stuck,
        (false, false) => Raw::Streaming(got),
        (true, true) => Raw::Closed,
        (true, false) => Raw::Answered(got),
    }
}

/// `docs/api/openapi.yaml`, to check answers against.
pub struct OpenApi {
    doc: Value,
}

pub fn openapi() -> &'static OpenApi {
    static SPEC: OnceLock<OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api/openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("read docs/api/openapi.yaml");
        let doc: Value = serde_saphyr::from_str(&text).expect("docs/api/openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0", "OpenAPI 3.1");
        OpenApi { doc }
    })
}

impl OpenApi {
    /// A validator for `schema`, whose `#/components/...` references resolve in the document.
    pub fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = match schema {
            Value::Object(m) => m.clone(),
            other => panic!("a schema is an object, not {other}"),
        };
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("components".into(), self.doc["components"].clone());
        jsonschema::options()
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|e| panic!("schema {schema} compiles: {e}"))
    }

    /// The validator of `#/components/schemas/NAME`.
    pub fn schema(&self, name: &str) -> jsonschema::Validator {
        assert!(
            self.doc["components"]["schemas"].get(name).is_some(),
            "no schema {name}"
        );
        self.validator(&json!({ "$ref": format!("#/components/schemas/{name}") }))
    }

    /// Every (path, method) the document describes.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method != "parameters" {
                    out.push((path.clone(), method.to_uppercase()));
                }
            }
        }
        out
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolved {r}")),
            None => v,
        }
    }

    /// The media type object of the answer documented for `template` + `method` + `status`
    /// with the reply's content type.
    fn media(&self, template: &str, method: &str, status: u16, content_type: &str) -> &Value {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        let response = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
        let response = self.resolve(response);
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        response["content"].get(media_type).unwrap_or_else(|| {
            panic!("{method} {template} {status}: content type {content_type} is not documented")
        })
    }

    fn validate(&self, v: &jsonschema::Validator, instance: &Value, what: &str) {
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path().as_str()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match the OpenAPI document:\n{}\n{instance:#}",
            errors.join("\n")
        );
    }

    /// The reply is documented for `template` (the path as the document spells it) and
    /// `method`: its status, its content type and, for JSON, its body's schema.
    pub fn check(&self, template: &str, method: &str, reply: &Reply) {
        let content_type = reply.header("content-type").unwrap_or("");
        let media = self.media(template, method, reply.status, content_type);
        if content_type.starts_with("application/json") {
            let v = self.validator(&media["schema"]);
            self.validate(
                &v,
                &reply.json(),
                &format!("{method} {template} {}", reply.status),
            );
        }
    }

    /// An event stream's message is documented for `template`: its data matches the
    /// stream's `x-sse-data` schema.
    pub fn check_sse(&self, template: &str, message: &SseMessage) {
        let media = self.media(template, "GET", 200, "text/event-stream");
        let v = self.validator(&media["x-sse-data"]);
        let data: Value = serde_json::from_str(&message.data).expect("event data is JSON");
        self.validate(&v, &data, &format!("an event of GET {template}"));
    }

    /// An error answer of a path or method the API does not have: 404 or 405 with an
    /// [`ApiError`](paddock::daemon::model::ApiError) body.
    pub fn check_unrouted(&self, reply: &Reply) {
        assert!(
            [404, 405].contains(&reply.status),
            "status {}",
            reply.status
        );
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{reply:?}"
        );
        self.validate(
            &self.schema("ApiError"),
            &reply.json(),
            "an unrouted answer",
        );
    }
}
