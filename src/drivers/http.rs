//! Plain HTTP/1.1 GETs over hyper: `http://` or `https://` (the system's root certificates),
//! redirects followed up to a limit (never from https down to http), a stall timeout (no bytes
//! for that long), a size cap, and a body shorter than its `Content-Length` refused. Used for
//! chart repository indexes and for the tools paddock downloads.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

/// How long a GET may wait for bytes, how many it may receive, how many redirects it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub stall: Duration,
    pub max_bytes: u64,
    pub redirects: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{url}` is not an http:// or https:// URL")]
    Url { url: String },
    #[error("failed to load the system's root certificates to fetch {url}")]
    Certificates {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to fetch {url}")]
    Request {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to fetch {url}: the server answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("failed to fetch {url}: stalled for {}s (no bytes) after {received} bytes", stall.as_secs_f64())]
    Stalled {
        url: String,
        stall: Duration,
        received: u64,
    },
    #[error("failed to fetch {url}: larger than the {max} bytes paddock accepts")]
    TooLarge { url: String, max: u64 },
    #[error("failed to fetch {url}: truncated: received {received} of {expected} bytes")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },
    #[error("failed to fetch {url}: more than {max} redirects")]
    Redirects { url: String, max: usize },
    #[error("failed to fetch {url}: it redirects from https to plain http ({to}); refused")]
    Downgrade { url: String, to: String },
    #[error("failed to store what {url} sent")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The URL the failure is about (after redirects).
    pub fn url(&self) -> &str {
        match self {
            Error::Url { url }
            | Error::Certificates { url, .. }
            | Error::Request { url, .. }
            | Error::Status { url, .. }
            | Error::Stalled { url, .. }
            | Error::TooLarge { url, .. }
            | Error::Truncated { url, .. }
            | Error::Redirects { url, .. }
            | Error::Downgrade { url, .. }
            | Error::Write { url, .. } => url,
        }
    }
}

/// GET `url` whole into memory.
pub async fn get_bytes(url: &str, limits: &Limits) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    get(url, limits, |chunk, _, _| {
        body.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    Ok(body)
}

/// GET `url`, handing each chunk of the body to `on_chunk` with the bytes received so far
/// and the `Content-Length`, if the server sent one. Returns the body's length.
pub async fn get(
    url: &str,
    limits: &Limits,
    mut on_chunk: impl FnMut(&[u8], u64, Option<u64>) -> std::io::Result<()>,
) -> Result<u64, Error> {
    let mut current = url.to_string();
    for _ in 0..=limits.redirects {
        let uri = parse(&current)?;
        let response = send(&current, uri.clone(), limits.stall).await?;
        let status = response.status();
        if status.is_redirection()
            && let Some(to) = response.headers().get(hyper::header::LOCATION)
        {
            let next = redirect(&uri, &String::from_utf8_lossy(to.as_bytes()));
            if uri.scheme_str() == Some("https") && !next.starts_with("https://") {
                return Err(Error::Downgrade {
                    url: current,
                    to: next,
                });
            }
            current = next;
            continue;
        }
        if !status.is_success() {
            return Err(Error::Status {
                url: current,
                status,
            });
        }
        return body(response, &current, limits, &mut on_chunk).await;
    }
    Err(Error::Redirects {
        url: url.to_string(),
        max: limits.redirects,
    })
}

fn parse(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url.parse().map_err(|_| Error::Url {
        url: url.to_string(),
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(Error::Url {
            url: url.to_string(),
        }),
    }
}

/// Where a `Location` header points: absolute, or a path on the same server.
fn redirect(from: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = from.scheme_str().unwrap_or("http");
    let authority = from.authority().map(|a| a.as_str()).unwrap_or_default();
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = from.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

async fn send(url: &str, uri: Uri, stall: Duration) -> Result<Response<Incoming>, Error> {
    if uri.scheme_str() == Some("http") {
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        return request(client, uri, url, stall).await;
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|source| Error::Certificates {
            url: url.to_string(),
            source,
        })?
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    request(client, uri, url, stall).await
}

async fn request<C>(
    client: Client<C, Empty<Bytes>>,
    uri: Uri,
    url: &str,
    stall: Duration,
) -> Result<Response<Incoming>, Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let request_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Request {
        url: url.to_string(),
        source,
    };
    let request = Request::get(uri)
        .header(
            hyper::header::USER_AGENT,
            concat!("paddock/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| request_error(Box::new(e)))?;
    match tokio::time::timeout(stall, client.request(request)).await {
        Ok(r) => r.map_err(|e| request_error(Box::new(e))),
        Err(_) => Err(Error::Stalled {
            url: url.to_string(),
            stall,
            received: 0,
        }),
    }
}

async fn body(
    response: Response<Incoming>,
    url: &str,
    limits: &Limits,
    on_chunk: &mut impl FnMut(&[u8], u64, Option<u64>) -> std::io::Result<()>,
) -> Result<u64, Error> {
    let expected = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || Error::TooLarge {
        url: url.to_string(),
        max: limits.max_bytes,
    };
    if expected.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large());
    }
    let truncated = |received| Error::Truncated {
        url: url.to_string(),
        received,
        expected: expected.unwrap_or_default(),
    };
    let mut body = response.into_body();
    let mut done = 0u64;
    loop {
        let frame = match tokio::time::timeout(limits.stall, body.frame()).await {
            Err(_) => {
                return Err(Error::Stalled {
                    url: url.to_string(),
                    stall: limits.stall,
                    received: done,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(_))) if expected.is_some() => return Err(truncated(done)),
            Ok(Some(Err(e))) => {
                return Err(Error::Request {
                    url: url.to_string(),
                    source: Box::new(e),
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        done += data.len() as u64;
        if done > limits.max_bytes {
            return Err(too_large());
        }
        on_chunk(&data, done, expected).map_err(|source| Error::Write {
            url: url.to_string(),
            source,
        })?;
    }
    match expected {
        Some(n) if n != done => Err(truncated(done)),
        _ => Ok(done),
    }
}

#[cfg(test)]
pub(crate) mod tests;
