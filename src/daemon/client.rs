//! The CLI's side of the daemon's API: find a daemon serving the state directory, submit an
//! operation, follow its events until it ends, cancel it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use super::model::{Health, OperationRequest, OperationView, Outcome, StreamEvent};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to reach the daemon at {}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {} broke off the exchange", socket.display())]
    Http {
        socket: PathBuf,
        #[source]
        source: hyper::Error,
    },
    #[error("the daemon refused the operation ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the daemon answered something paddock does not understand: {0}")]
    Garbled(String),
    #[error("the daemon's event stream ended before operation {0} did")]
    Cut(String),
}

/// A daemon that answered its health check on `socket`.
#[derive(Debug, Clone)]
pub struct Client {
    pub socket: PathBuf,
    pub health: Health,
}

impl Client {
    /// The daemon serving on `socket`, if one answers within a second. A socket file that
    /// nothing answers on (a daemon that was killed) is no daemon.
    pub async fn find(socket: &Path) -> Option<Client> {
        if !socket.exists() {
            return None;
        }
        let probe = async {
            let (status, body) = call(socket, Method::GET, "/v1/health", None).await.ok()?;
            if status != StatusCode::OK {
                return None;
            }
            serde_json::from_slice::<Health>(&body).ok()
        };
        let health = tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .ok()
            .flatten()?;
        Some(Client {
            socket: socket.to_path_buf(),
            health,
        })
    }

    /// The daemon's source: (`folder` or `git`, where), from its clusters; `None` when it has
    /// no valid specs (so no cluster) or does not say.
    pub async fn source(&self) -> Option<(String, String)> {
        let (status, body) = call(&self.socket, Method::GET, "/v1/clusters", None)
            .await
            .ok()?;
        if status != StatusCode::OK {
            return None;
        }
        let clusters: Vec<super::model::ClusterView> = serde_json::from_slice(&body).ok()?;
        let c = clusters.into_iter().next()?;
        Some((c.source.kind, c.source.location))
    }

    /// Queue an operation.
    pub async fn submit(&self, req: &OperationRequest) -> Result<OperationView, Error> {
        let body = serde_json::to_vec(req).map_err(|e| Error::Garbled(e.to_string()))?;
        let (status, body) = call(&self.socket, Method::POST, "/v1/operations", Some(body)).await?;
        if !status.is_success() {
            return Err(Error::Refused {
                status: status.as_u16(),
                message: error_text(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Garbled(e.to_string()))
    }

    /// Ask the daemon to cancel operation `id` (it starts no further step).
    pub async fn cancel(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/operations/{id}/cancel");
        call(&self.socket, Method::POST, &path, Some(Vec::new())).await?;
        Ok(())
    }

    /// Follow operation `id`: each event (in the NDJSON schema) to `seen`, until its `end`
    /// event, whose outcomes are returned.
    pub async fn follow(
        &self,
        id: &str,
        mut seen: impl FnMut(&Value),
    ) -> Result<Vec<Outcome>, Error> {
        let stream = connect(&self.socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| self.http(source))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/v1/operations/{id}/events"))
            .header("host", "paddock")
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Garbled(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| self.http(source))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Error::Refused {
                status,
                message: error_text(&body),
            });
        }
        let mut body = resp.into_body();
        // Bytes until a whole message is in: a character may be split across frames.
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| self.http(source))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = pending.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&message).lines() {
                    let Some(json) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let ev: StreamEvent = serde_json::from_str(json.trim())
                        .map_err(|e| Error::Garbled(format!("{e}: {json}")))?;
                    if ev.event["event"] == "end" {
                        return serde_json::from_value(ev.event["outcomes"].clone())
                            .map_err(|e| Error::Garbled(e.to_string()));
                    }
                    seen(&ev.event);
                }
            }
        }
        Err(Error::Cut(id.to_string()))
    }

    fn http(&self, source: hyper::Error) -> Error {
        Error::Http {
            socket: self.socket.clone(),
            source,
        }
    }
}

fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

async fn connect(socket: &Path) -> Result<UnixStream, Error> {
    UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            socket: socket.to_path_buf(),
            source,
        })
}

/// One request, its status and whole body.
async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), Error> {
    let http = |source| Error::Http {
        socket: socket.to_path_buf(),
        source,
    };
    let stream = connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "paddock");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| Error::Garbled(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(http)?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
    Ok((status, body))
}
