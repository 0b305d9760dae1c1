//! A `paddock serve` under test: started against a [`World`], asked through its unix socket
//! with plain HTTP/1.1, stopped with SIGTERM or killed with SIGKILL.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::World;

pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub pid: u32,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// One request over the socket: (status, JSON body; `Null` when there is none or it is not
/// JSON). `None` when nothing answers.
pub fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: paddock\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl Daemon {
    /// Start `paddock serve` with `args` and wait until its API answers.
    pub fn start(w: &World, args: &[&str]) -> Daemon {
        let mut cmd = w.paddock_cmd(&[&["serve"], args].concat());
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("paddock serve starts");
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let pid = child.id();
        let mut d = Daemon {
            child: Some(child),
            socket: w.state.path().join("paddock.sock"),
            pid,
            out: Some(out),
            err: Some(err),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.get("/v1/health").is_none() {
            let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let (status, log) = d.stop();
                panic!("paddock serve did not answer ({status:?}): {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn get(&self, path: &str) -> Option<(u16, Value)> {
        request(&self.socket, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        request(&self.socket, "POST", path, Some(body))
    }

    /// The cluster `name` as `/v1/clusters` shows it.
    pub fn cluster(&self, name: &str) -> Value {
        let (_, v) = self.get("/v1/clusters").expect("clusters");
        v.as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn operations(&self) -> Vec<Value> {
        self.get("/v1/operations")
            .and_then(|(_, v)| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Wait until `f` holds (checked every 100 ms), or panic after `timeout` saying `what`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, f: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() > deadline {
                let ops = serde_json::to_string_pretty(&self.operations()).unwrap_or_default();
                let (_, log) = self.stop();
                panic!("timed out waiting for {what}\noperations: {ops}\nlog: {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .status();
    }

    fn collect(&mut self) -> (Option<ExitStatus>, String) {
        let status = self.child.take().and_then(|mut c| c.wait().ok());
        let out = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status, format!("{out}{err}"))
    }

    /// SIGTERM, then wait for the exit: (status, everything it printed).
    pub fn stop(&mut self) -> (Option<ExitStatus>, String) {
        self.signal("TERM");
        self.collect()
    }

    /// SIGKILL the daemon alone (its tool children live on).
    pub fn kill9(&mut self) -> String {
        self.signal("KILL");
        self.collect().1
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("KILL");
            let _ = self.collect();
        }
    }
}
