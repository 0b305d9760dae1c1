//! A traffic harness for scenario tests: client threads that send HTTP requests through a
//! cluster's load balancer while a scenario runs (a paddock upgrade, a restart) and count what
//! clients saw — every failure with when and why, and which pods, revisions and proxy versions
//! answered. It talks plain sockets to `127.0.0.1`, so it works the same against an in-process
//! cluster and against one behind the fake `k3d`'s containers.
//!
//! Clients behave as common HTTP clients do (Go's `net/http`, curl): on a keep-alive
//! connection that was already used, a request that sees the connection closed or reset before
//! any byte of a response is retried once on a new connection (the server may have closed an
//! idle connection just as the request went out). Any other failure counts.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http1::{self, Body, Head};

/// How clients use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// Every client keeps its connection open across requests.
    KeepAlive,
    /// Every request on a new connection (`Connection: close`).
    PerRequest,
    /// Even-numbered clients keep connections open, odd-numbered ones open one per request.
    Mixed,
}

/// What counts as a successful request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A `2xx` answered by an application pod (it names itself in `x-paddock-pod`).
    App,
    /// Exactly this status, e.g. a `directResponse` probe route.
    Status(u16),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Port of 127.0.0.1 (a cluster's published load-balancer port).
    pub port: u16,
    pub host_header: String,
    pub path: String,
    /// Client threads sending requests concurrently.
    pub clients: usize,
    pub connections: Connections,
    /// Each client waits this long between requests. Each request costs about a millisecond of
    /// CPU in a debug build (client and load balancer together): four clients pausing 50 ms
    /// use about a tenth of a core.
    pub pause: Duration,
    pub expect: Expect,
    /// A request with no complete response after this long fails.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 80,
            host_header: "localhost".into(),
            path: "/".into(),
            clients: 4,
            connections: Connections::Mixed,
            pause: Duration::from_millis(50),
            expect: Expect::App,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the clients saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub total: usize,
    pub failed: usize,
    /// Each failure: time since the start, and what happened.
    pub failures: Vec<(Duration, String)>,
    /// Requests retried on a new connection after a reused one closed before responding.
    pub retried: usize,
    pub by_status: BTreeMap<u16, usize>,
    /// Successful requests per answering pod (`x-paddock-pod`), its revision and proxy version.
    pub by_pod: BTreeMap<String, usize>,
    pub by_revision: BTreeMap<String, usize>,
    pub by_proxy_version: BTreeMap<String, usize>,
    /// Successful requests per gateway pod, its revision and proxy version.
    pub by_gateway: BTreeMap<String, usize>,
    pub by_gateway_revision: BTreeMap<String, usize>,
    pub by_gateway_proxy_version: BTreeMap<String, usize>,
    /// How long the traffic ran.
    pub elapsed: Duration,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.total += other.total;
        self.failed += other.failed;
        self.failures.extend(other.failures);
        self.retried += other.retried;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (mine, theirs) in [
            (&mut self.by_pod, other.by_pod),
            (&mut self.by_revision, other.by_revision),
            (&mut self.by_proxy_version, other.by_proxy_version),
            (&mut self.by_gateway, other.by_gateway),
            (&mut self.by_gateway_revision, other.by_gateway_revision),
            (
                &mut self.by_gateway_proxy_version,
                other.by_gateway_proxy_version,
            ),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }

    fn success(&mut self, resp: &Response) {
        let count = |map: &mut BTreeMap<String, usize>, header: &str| {
            if let Some(v) = resp.head.header(header) {
                *map.entry(v.to_string()).or_default() += 1;
            }
        };
        count(&mut self.by_pod, "x-paddock-pod");
        count(&mut self.by_revision, "x-paddock-revision");
        count(&mut self.by_proxy_version, "x-paddock-proxy-version");
        count(&mut self.by_gateway, "x-paddock-gateway");
        count(&mut self.by_gateway_revision, "x-paddock-gateway-revision");
        count(
            &mut self.by_gateway_proxy_version,
            "x-paddock-gateway-proxy-version",
        );
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.1?}, {} failed, {} retried; statuses {:?}; revisions {:?}; proxies {:?}; gateways {:?}",
            self.total,
            self.elapsed,
            self.failed,
            self.retried,
            self.by_status,
            self.by_revision,
            self.by_proxy_version,
            self.by_gateway_proxy_version
        )?;
        for (at, what) in self.failures.iter().take(10) {
            write!(f, "\n  at {at:.3?}: {what}")?;
        }
        if self.failures.len() > 10 {
            write!(f, "\n  … and {} more", self.failures.len() - 10)?;
        }
        Ok(())
    }
}

/// Running client threads; `finish` stops them and collects the report.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    started: Instant,
    clients: Vec<JoinHandle<Report>>,
}

impl Traffic {
    pub fn start(opts: Options) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let clients = (0..opts.clients.max(1))
            .map(|i| {
                let keep_alive = match opts.connections {
                    Connections::KeepAlive => true,
                    Connections::PerRequest => false,
                    Connections::Mixed => i % 2 == 0,
                };
                let (opts, stop) = (opts.clone(), stop.clone());
                std::thread::spawn(move || client(&opts, keep_alive, &stop, started))
            })
            .collect();
        Self {
            stop,
            started,
            clients,
        }
    }

    /// Stop the clients (each finishes the request it is sending) and report. Blocks: from an
    /// async test, call it inside `tokio::task::block_in_place` or `spawn_blocking`.
    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for c in self.clients {
            match c.join() {
                Ok(r) => report.merge(r),
                Err(_) => {
                    report.failed += 1;
                    report
                        .failures
                        .push((self.started.elapsed(), "client thread panicked".into()));
                }
            }
        }
        report.failures.sort_by_key(|(at, _)| *at);
        report.elapsed = self.started.elapsed();
        report
    }
}

struct Response {
    head: Head,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head.start[1].parse().unwrap_or(0)
    }
}

/// Why a request got no response.
enum Failure {
    /// The connection closed or reset before a single byte of a response.
    Silent(String),
    Other(String),
}

fn client(opts: &Options, keep_alive: bool, stop: &AtomicBool, started: Instant) -> Report {
    let mut report = Report::default();
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let at = started.elapsed();
        let reused = conn.is_some();
        let mut result = exchange(opts, keep_alive, &mut conn);
        if reused && matches!(result, Err(Failure::Silent(_))) {
            report.retried += 1;
            result = exchange(opts, keep_alive, &mut conn);
        }
        report.total += 1;
        let failure = match result {
            Ok(resp) => {
                *report.by_status.entry(resp.status()).or_default() += 1;
                match judge(opts.expect, &resp) {
                    Ok(()) => {
                        report.success(&resp);
                        None
                    }
                    Err(what) => Some(what),
                }
            }
            Err(Failure::Silent(what) | Failure::Other(what)) => Some(what),
        };
        if let Some(what) = failure {
            report.failed += 1;
            report.failures.push((at, what));
        }
        std::thread::sleep(opts.pause);
    }
    report
}

fn judge(expect: Expect, resp: &Response) -> Result<(), String> {
    let status = resp.status();
    let describe = || {
        let body = String::from_utf8_lossy(&resp.body);
        let body: String = body.chars().take(120).collect();
        format!("status {status}: {body:?}")
    };
    match expect {
        Expect::Status(want) if status == want => Ok(()),
        Expect::Status(_) => Err(describe()),
        Expect::App if status / 100 != 2 => Err(describe()),
        Expect::App if resp.head.header("x-paddock-pod").is_none_or(str::is_empty) => Err(format!(
            "{} without x-paddock-pod: not from an application pod",
            describe()
        )),
        Expect::App => Ok(()),
    }
}

/// One request and its response, on `conn` when open (else a new connection). Leaves `conn`
/// open only when both sides keep it alive.
fn exchange(
    opts: &Options,
    keep_alive: bool,
    conn: &mut Option<TcpStream>,
) -> Result<Response, Failure> {
    let mut stream = match conn.take() {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(("127.0.0.1", opts.port))
                .map_err(|e| Failure::Other(format!("connect: {e}")))?;
            s.set_read_timeout(Some(opts.timeout))
                .and_then(|()| s.set_write_timeout(Some(opts.timeout)))
                .and_then(|()| s.set_nodelay(true))
                .map_err(|e| Failure::Other(format!("socket options: {e}")))?;
            s
        }
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: paddock-sim-traffic\r\n{}\r\n",
        opts.path,
        opts.host_header,
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| Failure::Silent(format!("sending the request: {e}")))?;
    let resp = read_response(&mut stream)?;
    if keep_alive && !resp.head.connection_has("close") {
        *conn = Some(stream);
    }
    Ok(resp)
}

fn read_response(stream: &mut TcpStream) -> Result<Response, Failure> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut read = |buf: &mut Vec<u8>| -> Result<usize, Failure> {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Failure::Other("timed out waiting for the response".into()))
            }
            Err(e) if buf.is_empty() => Err(Failure::Silent(format!(
                "connection {} before any response byte",
                describe_error(&e)
            ))),
            Err(e) => Err(Failure::Other(format!(
                "connection {} in the middle of the response",
                describe_error(&e)
            ))),
        }
    };
    let end = loop {
        if let Some(end) = http1::head_end(&buf) {
            break end;
        }
        if buf.len() > http1::MAX_HEAD {
            return Err(Failure::Other("response head too large".into()));
        }
        if read(&mut buf)? == 0 {
            return Err(if buf.is_empty() {
                Failure::Silent("connection closed before any response byte".into())
            } else {
                Failure::Other("connection closed in the middle of the response head".into())
            });
        }
    };
    let head = http1::parse_head(&buf[..end])
        .map_err(|e| Failure::Other(format!("malformed response: {e}")))?;
    let framing = http1::response_body(&head, "GET")
        .map_err(|e| Failure::Other(format!("malformed response: {e}")))?;
    let mut rest = buf.split_off(end);
    let body = loop {
        match framing {
            Body::Length(n) if rest.len() >= n => {
                rest.truncate(n);
                break rest;
            }
            Body::Chunked => {
                if let Some((_, data)) = http1::chunked(&rest)
                    .map_err(|e| Failure::Other(format!("malformed response: {e}")))?
                {
                    break data;
                }
            }
            _ => {}
        }
        if read(&mut rest)? == 0 {
            if framing == Body::UntilClose {
                break rest;
            }
            return Err(Failure::Other(
                "connection closed in the middle of the response body".into(),
            ));
        }
    };
    Ok(Response { head, body })
}

fn describe_error(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionReset => "reset".into(),
        ErrorKind::ConnectionAborted => "aborted".into(),
        ErrorKind::BrokenPipe => "broken".into(),
        _ => format!("failed ({e})"),
    }
}
