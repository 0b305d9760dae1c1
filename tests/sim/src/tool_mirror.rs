//! A loopback mirror of k3d's and helm's release sites, for tests and for showing paddock on
//! a fresh machine: `/k3d/v5.9.0/k3d-OS-ARCH` (redirected, as GitHub does, to
//! `/k3d/assets/...`), `/k3d/v5.9.0/checksums.txt` (k3d's format: `HEX  _dist/k3d-OS-ARCH`),
//! `/helm/helm-v4.1.4-OS-ARCH.tar.gz` (holding `OS-ARCH/helm`) and its `.sha256sum`. The
//! served binary is the sim itself by default, so an installed `k3d` or `helm` is the sim's
//! fake one. Faults make it misbehave the ways a real download can.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const K3D_VERSION: &str = "5.9.0";
pub const HELM_VERSION: &str = "4.1.4";

/// How the mirror misbehaves when a binary or tarball is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The checksum files list a SHA-256 that is not the file's.
    BadChecksum,
    /// Half the body, then the connection closes (its Content-Length says the whole).
    Truncated,
    /// 404 for the binary and the tarball.
    NotFound,
    /// A few bytes, then nothing (the connection stays open).
    Stall,
    /// The whole body, in ten pieces 150 ms apart (a download that takes a while).
    Slow,
}

#[derive(Debug)]
struct Files {
    k3d: Vec<u8>,
    tarball: Vec<u8>,
    /// SHA-256 of `k3d` and of `tarball`.
    sums: (String, String),
    os_arch: String,
}

/// A running mirror; it stops when dropped.
#[derive(Debug)]
pub struct ToolMirror {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// This machine as release file names spell it (`linux-amd64`).
pub fn os_arch() -> String {
    let os = if cfg!(target_os = "macos") {
        "darwin"
    } else {
        "linux"
    };
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    format!("{os}-{arch}")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// helm's release tarball layout: `OS-ARCH/helm` (mode 0755) and a LICENSE, gzipped.
fn tarball(os_arch: &str, binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut tar = tar::Builder::new(gz);
    for (name, body, mode) in [
        (format!("{os_arch}/LICENSE"), &b"Apache-2.0\n"[..], 0o644),
        (format!("{os_arch}/helm"), binary, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, body)?;
    }
    tar.into_inner()?.finish()
}

impl ToolMirror {
    /// Serve `binary` on 127.0.0.1:`port` (0: any free port) from a thread of its own.
    pub fn start(binary: &Path, port: u16) -> std::io::Result<Self> {
        let k3d = std::fs::read(binary)?;
        let os_arch = os_arch();
        let tarball = tarball(&os_arch, &k3d)?;
        let files = Arc::new(Files {
            sums: (sha256(&k3d), sha256(&tarball)),
            k3d,
            tarball,
            os_arch,
        });
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(Mutex::new(Fault::None));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (f, r) = (fault.clone(), requests.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let accept = async {
                    while let Ok((socket, _)) = listener.accept().await {
                        let (files, f, r) = (files.clone(), f.clone(), r.clone());
                        tokio::spawn(async move {
                            let _ = answer(socket, &files, &f, &r).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Self {
            addr,
            fault,
            requests,
            _stop: stop,
        })
    }

    pub fn k3d_base(&self) -> String {
        format!("http://{}/k3d", self.addr)
    }

    pub fn helm_base(&self) -> String {
        format!("http://{}/helm", self.addr)
    }

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    /// The paths asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn answer(
    mut socket: tokio::net::TcpStream,
    files: &Files,
    fault: &Mutex<Fault>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await? {
            0 => return Ok(()),
            n => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    lock(requests).push(path.clone());
    let fault = *lock(fault);
    let oa = &files.os_arch;
    let k3d_asset = format!("k3d-{oa}");
    let helm_asset = format!("helm-v{HELM_VERSION}-{oa}.tar.gz");
    let sum = |real: &String| match fault {
        Fault::BadChecksum => sha256(b"not the file"),
        _ => real.clone(),
    };
    let (body, artifact): (Vec<u8>, bool) = match path.as_str() {
        p if p == format!("/k3d/v{K3D_VERSION}/{k3d_asset}") => {
            let to = format!("/k3d/assets/{k3d_asset}?sig=sim");
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            return socket.write_all(head.as_bytes()).await;
        }
        p if p == format!("/k3d/assets/{k3d_asset}?sig=sim") => (files.k3d.clone(), true),
        p if p == format!("/k3d/v{K3D_VERSION}/checksums.txt") => {
            let other = sha256(b"another platform");
            let lines = format!(
                "{other}  _dist/k3d-windows-amd64.exe\n{}  _dist/{k3d_asset}\n",
                sum(&files.sums.0)
            );
            (lines.into_bytes(), false)
        }
        p if p == format!("/helm/{helm_asset}") => (files.tarball.clone(), true),
        p if p == format!("/helm/{helm_asset}.sha256sum") => {
            let line = format!("{}  {helm_asset}\n", sum(&files.sums.1));
            (line.into_bytes(), false)
        }
        _ => return respond(&mut socket, "404 Not Found", b"no such file\n").await,
    };
    if !artifact {
        return respond(&mut socket, "200 OK", &body).await;
    }
    match fault {
        Fault::NotFound => respond(&mut socket, "404 Not Found", b"Not Found\n").await,
        Fault::Truncated | Fault::Stall => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            let part = if fault == Fault::Stall {
                16
            } else {
                body.len() / 2
            };
            socket.write_all(&body[..part]).await?;
            if fault == Fault::Stall {
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            socket.shutdown().await
        }
        Fault::Slow => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            for piece in body.chunks(body.len().div_ceil(10).max(1)) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                socket.write_all(piece).await?;
            }
            socket.shutdown().await
        }
        Fault::None | Fault::BadChecksum => respond(&mut socket, "200 OK", &body).await,
    }
}

async fn respond(
    socket: &mut tokio::net::TcpStream,
    status: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}
