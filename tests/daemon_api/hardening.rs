//! Who may connect, and what bad, big, slow, many and random requests do: an answer or a
//! closed connection, in bounded time, and a daemon that answers afterwards.

use std::os::unix::fs::FileTypeExt;
use std::process::Command;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::*;
use api_support::send;

const HEALTH: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_replaces_only_a_dead_one() {
    let d = Daemon::start();
    let meta = std::fs::metadata(&d.socket).expect("stat the socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(d.dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["api.sock"], "nothing left of the staging directory");

    let e = api::bind(&d.socket).expect_err("a live socket is not taken over");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    assert!(
        e.to_string()
            .contains("api.sock; is a daemon already running"),
        "{e}"
    );
    d.assert_healthy().await;

    let stale = d.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let listener = api::bind(&stale).expect("a dead daemon's socket is replaced");
    assert_eq!(
        std::fs::metadata(&stale)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    drop(listener);

    let file = d.dir.path().join("file.sock");
    std::fs::write(&file, "keep me").expect("write");
    let e = api::bind(&file).expect_err("a file is not a socket");
    assert!(e.to_string().contains("exists and is not a socket"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        "keep me"
    );
    d.stop().await;
}

/// Logs of this test binary, to see the daemon's warnings.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_writer(move || LogWriter(sink.clone()))
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The environment variable that makes [`peer_probe`] probe a socket.
const PROBE: &str = "PADDOCK_TEST_PROBE_SOCKET";

/// Run as another user by [`a_client_of_another_user_is_refused`] (this test binary, run
/// again): connect to the socket in `PADDOCK_TEST_PROBE_SOCKET`, ask for its health, and say
/// what happened on a `probe:` line.
#[test]
#[ignore = "a helper other tests run as another user"]
fn peer_probe() {
    use std::io::{Read, Write};
    let Some(socket) = std::env::var_os(PROBE) else {
        return;
    };
    let outcome = match std::os::unix::net::UnixStream::connect(&socket) {
        Err(e) => format!("connect failed: {:?}", e.kind()),
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(HEALTH);
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            if got.is_empty() {
                "closed unanswered".to_string()
            } else {
                format!("answered: {}", String::from_utf8_lossy(&got))
            }
        }
    };
    println!("probe: {outcome}");
}

/// [`peer_probe`] of `socket` as uid and gid `uid`: its `probe:` line, or `None` when this
/// test binary cannot be run as that user (its path is not open to others).
fn probe_as(uid: u32, socket: &std::path::Path) -> Option<String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("this test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "hardening::peer_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, socket)
        .uid(uid)
        .gid(uid)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("run the probe as uid {uid}: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.split_once("probe: ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "no probe line: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Some(line.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_user_is_refused() {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        eprintln!(
            "skipping: running a client as another user (nobody, 65534) needs root; this test runs as uid {euid}"
        );
        return;
    }
    let logs = logs();
    let d = Daemon::start();
    let socket = d.socket.clone();
    let probe = move || {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || probe_as(65534, &socket))
    };
    // As created: the 0600 socket in a 0700 directory keeps others out at the filesystem.
    let Some(outcome) = probe().await.expect("probe") else {
        eprintln!(
            "skipping: this test binary cannot be run by nobody (65534): its path is not open to others"
        );
        return;
    };
    assert_eq!(outcome, "connect failed: PermissionDenied");

    // Opened to everyone, only the peer uid check stands: the connection closes unanswered.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    assert_eq!(
        probe().await.expect("probe").as_deref(),
        Some("closed unanswered")
    );
    let logged = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logged.contains("refused an API connection from uid 65534: only uid 0 may use the daemon"),
        "{logged}"
    );

    // The same probe as the daemon's own user is served.
    let socket = d.socket.clone();
    let own = tokio::task::spawn_blocking(move || probe_as(0, &socket))
        .await
        .expect("probe");
    assert!(
        own.is_some_and(|o| o.starts_with("answered: HTTP/1.1 200")),
        "the daemon's own user is served"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_body_gets_413_a_huge_head_431_and_the_daemon_carries_on() {
    let d = Daemon::start();
    let big = vec![b'a'; 10 * 1024 * 1024];
    let mut declared = format!("POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
    declared.extend_from_slice(&big);
    let mut chunked = b"POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in big.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for (what, request) in [("declared", declared), ("chunked", chunked)] {
        let t = Instant::now();
        let answer = raw(&d.socket, &request, false, Duration::from_secs(5)).await;
        assert_eq!(answer.status(), Some(413), "{what}: {answer:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{what}");
        let Raw::Answered(bytes) = answer else {
            unreachable!()
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(
                r#"{"error":"the request body is larger than the limit of 65536 bytes"}"#
            ),
            "{text}"
        );
    }
    // A route that reads no body answers, and the connection closes: the body is not read.
    let mut ignored = format!(
        "POST /v1/operations/op-1/cancel HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    ignored.extend_from_slice(&big);
    let answer = raw(&d.socket, &ignored, false, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), Some(409), "{answer:?}");
    // A head over 64 KiB.
    let head = format!(
        "GET /v1/health HTTP/1.1\r\nHost: d\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100 * 1024)
    );
    let answer = raw(&d.socket, head.as_bytes(), false, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), Some(431), "{answer:?}");
    d.assert_healthy().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_is_cut_off_in_time() {
    let d = Daemon::start();
    let t = Instant::now();
    let deadline = Duration::from_secs(15);
    let head = raw(
        &d.socket,
        b"GET /v1/health HTTP/1.1\r\nHost: d\r\n",
        false,
        deadline,
    );
    let body = raw(&d.socket, b"POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"cluster\":", false, deadline);
    let idle = raw(&d.socket, b"", false, deadline);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        d.assert_healthy().await;
        t.elapsed()
    };
    let (head, body, idle, healthy_in) = tokio::join!(head, body, idle, meanwhile);
    let took = t.elapsed();
    assert!(
        healthy_in < Duration::from_secs(1),
        "the daemon answers others meanwhile"
    );
    assert_eq!(head, Raw::Closed, "a head that never ends: closed");
    assert_eq!(idle, Raw::Closed, "an idle connection: closed");
    assert_eq!(body.status(), Some(408), "a body that never ends: {body:?}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "cut off after about 10 s, not {took:?}"
    );
    d.assert_healthy().await;
    d.stop().await;
}

/// Raise the open-files limit where it is lower than a thousand connections on both ends need.
fn enough_open_files() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < 4096) {
        limit.current = limit.maximum.map(|m| m.min(4096));
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_are_answered_or_refused() {
    enough_open_files();
    let d = Daemon::start();
    let t = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let socket = d.socket.clone();
            tokio::spawn(async move { raw(&socket, HEALTH, false, Duration::from_secs(20)).await })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("client task") {
            r @ Raw::Answered(_) => {
                assert!(matches!(r.status(), Some(200 | 503)), "{r:?}");
                answered += 1;
            }
            Raw::Closed => refused += 1,
            other => panic!("a request got neither an answer nor a close within 20 s: {other:?}"),
        }
    }
    eprintln!(
        "1000 concurrent requests: {answered} answered, {refused} refused, in {:?}",
        t.elapsed()
    );
    assert!(
        answered >= 256,
        "at least as many as the daemon serves at once are answered"
    );
    d.assert_healthy().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_their_turn() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let d = Daemon::start_with(limits, TestBackend::new(8));
    let first = UnixStream::connect(&d.socket).await.expect("connect");
    let second = UnixStream::connect(&d.socket).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let socket = d.socket.clone();
    let third =
        tokio::spawn(async move { raw(&socket, HEALTH, false, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let answer = third.await.expect("task");
    assert_eq!(
        answer.status(),
        Some(200),
        "served once a slot frees: {answer:?}"
    );
    drop(second);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_finishes_requests_and_cuts_what_outlasts_the_grace() {
    let limits = Limits {
        shutdown_grace: Duration::from_secs(2),
        ..Limits::default()
    };
    let d = Daemon::start_with(limits, TestBackend::new(8));
    let all = SseReader::new(
        send(&d.socket, "GET", "/v1/events", &[], vec![])
            .await
            .into_body(),
    );
    let one = SseReader::new(
        send(&d.socket, "GET", "/v1/operations/op-2/events", &[], vec![])
            .await
            .into_body(),
    );
    let body = br#"{"cluster":"dev","kind":"up"}"#;
    let head = format!(
        "POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut half = UnixStream::connect(&d.socket).await.expect("connect");
    half.write_all(head.as_bytes()).await.expect("write");
    half.write_all(&body[..10]).await.expect("write");
    let stalled = tokio::spawn({
        let socket = d.socket.clone();
        async move { raw(&socket, head.as_bytes(), false, Duration::from_secs(8)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    d.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    half.write_all(&body[10..])
        .await
        .expect("the request in flight goes on");
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut half, &mut answer)
        .await
        .expect("read");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 202"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    for mut stream in [all, one] {
        stream.all(Duration::from_secs(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(4), d.task)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("ok");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "waited the grace for the stalled request: {took:?}"
    );
    assert_eq!(
        stalled.await.expect("task"),
        Raw::Closed,
        "the stalled request is cut"
    );
    assert!(
        UnixStream::connect(&d.socket).await.is_err(),
        "nothing accepts any more"
    );
}

/// Requests a client could send, to mangle.
const TEMPLATES: &[&[u8]] = &[
    HEALTH,
    b"POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{\"cluster\":\"dev\",\"kind\":\"up\"}",
    b"POST /v1/operations HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\n{\"cluster\":\"dev\",\"kind\":\"up\"}\r\n0\r\n\r\n",
    b"POST /v1/operations/op-2/cancel HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n",
    b"GET /v1/operations/op-1/events HTTP/1.1\r\nHost: d\r\n\r\n",
    b"GET /v1/events HTTP/1.1\r\nHost: d\r\n\r\n",
    b"GET /v1/clusters/ci HTTP/1.1\r\nHost: d\r\n\r\nGET /metrics HTTP/1.1\r\nHost: d\r\n\r\n",
];

fn mangled() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        0u8..5,
        any::<prop::sample::Index>(),
        any::<u8>(),
        1usize..64,
    );
    (0..TEMPLATES.len(), prop::collection::vec(edit, 1..6)).prop_map(|(t, edits)| {
        let mut b = TEMPLATES[t].to_vec();
        for (kind, at, byte, len) in edits {
            let i = if b.is_empty() { 0 } else { at.index(b.len()) };
            let j = (i + len).min(b.len());
            match kind {
                0 if !b.is_empty() => b[i] = byte,
                1 => b.insert(i, byte),
                2 => drop(b.drain(i..j)),
                3 => {
                    let piece = b[i..j].to_vec();
                    b.splice(i..i, piece);
                }
                _ => b.truncate(i),
            }
        }
        b
    })
}

#[test]
fn random_and_mangled_requests_never_crash_or_stall_the_daemon() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let d = rt.block_on(async { Daemon::start() });
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        mangled(),
        mangled()
    ];
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let (answered, closed) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let t = Instant::now();
    runner
        .run(&input, |bytes| {
            // The write half is shut after the bytes: nothing more is coming.
            match rt.block_on(raw(&d.socket, &bytes, true, Duration::from_secs(3))) {
                Raw::Answered(_) => *answered.lock().expect("count") += 1,
                Raw::Closed => *closed.lock().expect("count") += 1,
                Raw::Streaming(b)
                    if String::from_utf8_lossy(&b).contains("content-type: text/event-stream") =>
                {
                    *answered.lock().expect("count") += 1
                }
                Raw::Streaming(_) | Raw::Stuck => {
                    return Err(TestCaseError::fail(format!(
                        "no answer nor close within 3 s for {:?}",
                        String::from_utf8_lossy(&bytes)
                    )));
                }
            }
            Ok(())
        })
        .expect("every connection ends");
    eprintln!(
        "fuzzing: {} answered, {} closed, in {:?}",
        answered.lock().expect("count"),
        closed.lock().expect("count"),
        t.elapsed()
    );
    rt.block_on(async {
        d.assert_healthy().await;
        d.stop().await;
    });
}
