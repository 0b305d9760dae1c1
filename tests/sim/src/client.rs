//! The sim's own HTTPS client for a cluster's API server, reaching it as helm or kubectl would:
//! a kubeconfig context's `server`, `certificate-authority-data`, `client-certificate-data` and
//! `client-key-data`, one HTTP/1.1 request per connection. The fake `helm` talks to the API
//! through it, and so do tests and benchmarks that need a raw request. Blocking: the fake tools
//! have no runtime, and async callers use `spawn_blocking`.

use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::Value;

/// A connection recipe for one API server.
#[derive(Clone)]
pub struct Client {
    /// `https://host:port`, as the kubeconfig says.
    pub server: String,
    hostport: String,
    name: ServerName<'static>,
    tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// An answer: status code, headers (names lower-case, in order) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Every value of the header `name` (lower-case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of the header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

fn named<'a>(cfg: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    cfg[list]
        .as_array()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

fn data(entry: &Value, key: &str) -> Result<Option<String>, String> {
    let Some(b64) = entry[key].as_str() else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("{key}: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("{key}: {e}"))
}

impl Client {
    /// From a kubeconfig's text, with `context` or else its `current-context`.
    pub fn from_kubeconfig(text: &str, context: Option<&str>) -> Result<Self, String> {
        let cfg: Value =
            serde_saphyr::from_str(text).map_err(|e| format!("invalid kubeconfig: {e}"))?;
        let ctx = context
            .map(str::to_string)
            .or_else(|| cfg["current-context"].as_str().map(str::to_string))
            .unwrap_or_default();
        let context =
            named(&cfg, "contexts", &ctx).ok_or(format!("context \"{ctx}\" does not exist"))?;
        let cluster_name = context["context"]["cluster"].as_str().unwrap_or_default();
        let cluster = named(&cfg, "clusters", cluster_name)
            .ok_or(format!("cluster \"{cluster_name}\" does not exist"))?;
        let user_name = context["context"]["user"].as_str().unwrap_or_default();
        let user = named(&cfg, "users", user_name)
            .map(|u| u["user"].clone())
            .unwrap_or(Value::Null);
        let server = cluster["cluster"]["server"]
            .as_str()
            .ok_or(format!("cluster \"{cluster_name}\" has no server"))?;
        let ca = data(&cluster["cluster"], "certificate-authority-data")?.ok_or(format!(
            "cluster \"{cluster_name}\" has no certificate-authority-data"
        ))?;
        let identity = match (
            data(&user, "client-certificate-data")?,
            data(&user, "client-key-data")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        Self::new(
            server,
            &ca,
            identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        )
    }

    /// For `server` (`https://host:port`), trusting `ca_pem`, presenting `identity` (certificate
    /// chain and key, PEM) when given.
    pub fn new(server: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Self, String> {
        let hostport = server
            .strip_prefix("https://")
            .ok_or(format!("unsupported server URL {server}: want https://"))?
            .trim_end_matches('/')
            .to_string();
        let host = hostport
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&hostport)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("bad server name {host}: {e}"))?;
        let builder = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(crate::tls::roots(ca_pem)?);
        let mut tls = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(crate::tls::certs(cert)?, crate::tls::key(key)?)
                .map_err(|e| format!("bad client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            hostport,
            name,
            tls: Arc::new(tls),
        })
    }

    /// One request; `content_type` is sent with a body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Response, String> {
        self.request_as(method, path, content_type, body, None)
    }

    /// One request sent with a `User-Agent` (the API server names an update's field manager
    /// after its first token when no `fieldManager` is given).
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        user_agent: Option<&str>,
    ) -> Result<Response, String> {
        let ua: Vec<(&str, &str)> = user_agent.map(|u| ("User-Agent", u)).into_iter().collect();
        self.request_with(method, path, &ua, content_type, body)
    }

    /// One request with extra headers (an `Accept` among them replaces the default
    /// `application/json`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> Result<Response, String> {
        let tcp = std::net::TcpStream::connect(&self.hostport)
            .map_err(|e| format!("dial tcp {}: connect: {e}", self.hostport))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), self.name.clone())
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.hostport
        );
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            head.push_str("Accept: application/json\r\n");
        }
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .and_then(|()| stream.flush())
            .map_err(|e| format!("{method} {}{path}: {e}", self.server))?;
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            // A server that closes without close_notify still sent a whole answer.
            if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() {
                return Err(format!("{method} {}{path}: {e}", self.server));
            }
        }
        parse(&raw)
    }

    pub fn get(&self, path: &str) -> Result<Response, String> {
        self.request("GET", path, "", b"")
    }

    pub fn post_json(&self, path: &str, body: &str) -> Result<Response, String> {
        self.request("POST", path, "application/json", body.as_bytes())
    }
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        code,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
