use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMITS: Limits = Limits {
    stall: Duration::from_millis(300),
    max_bytes: 1024,
    redirects: 5,
};

/// Read a request's head (what tests' loopback servers answer).
pub(crate) async fn read_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    request
}

/// Answer connection i with `responses[i]` (raw HTTP); a response with `hold` keeps the
/// connection open afterwards without sending more (a stalled server). Returns the base URL.
async fn serve(responses: Vec<(String, bool)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for (response, hold) in responses {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            read_request(&mut socket).await;
            let _ = socket.write_all(response.as_bytes()).await;
            if hold {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(socket);
                });
            }
        }
    });
    format!("http://{addr}")
}

fn ok(body: &str) -> (String, bool) {
    (
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
        false,
    )
}

fn moved(to: &str) -> (String, bool) {
    (
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        false,
    )
}

#[tokio::test]
async fn redirects_are_followed_to_the_body() {
    let base = serve(vec![moved("/b"), moved("c"), ok("hello")]).await;
    let body = get_bytes(&format!("{base}/dir/a"), &LIMITS)
        .await
        .expect("body");
    assert_eq!(body, b"hello");
}

#[tokio::test]
async fn too_many_redirects_are_refused() {
    let base = serve((0..3).map(|_| moved("/again")).collect()).await;
    let limits = Limits {
        redirects: 2,
        ..LIMITS
    };
    let err = get_bytes(&format!("{base}/a"), &limits)
        .await
        .expect_err("loop");
    assert!(matches!(err, Error::Redirects { max: 2, .. }), "{err}");
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_truncated() {
    let base = serve(vec![(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly this".into(),
        false,
    )])
    .await;
    let err = get_bytes(&format!("{base}/f"), &LIMITS)
        .await
        .expect_err("short");
    assert_eq!(
        err.to_string(),
        format!("failed to fetch {base}/f: truncated: received 9 of 100 bytes")
    );
}

#[tokio::test]
async fn a_server_that_stops_sending_stalls() {
    let base = serve(vec![(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome".into(),
        true,
    )])
    .await;
    let started = std::time::Instant::now();
    let err = get_bytes(&format!("{base}/f"), &LIMITS)
        .await
        .expect_err("stall");
    assert!(matches!(err, Error::Stalled { received: 4, .. }), "{err}");
    assert!(err.to_string().contains("stalled for 0.3s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let big = "x".repeat(2000);
    let base = serve(vec![ok(&big)]).await;
    let err = get_bytes(&format!("{base}/f"), &LIMITS)
        .await
        .expect_err("big");
    assert!(matches!(err, Error::TooLarge { max: 1024, .. }), "{err}");
}

#[test]
fn relative_locations_resolve_against_the_request() {
    let from: Uri = "https://h.test/a/b/c".parse().expect("uri");
    assert_eq!(redirect(&from, "/x"), "https://h.test/x");
    assert_eq!(redirect(&from, "d"), "https://h.test/a/b/d");
    assert_eq!(redirect(&from, "http://o.test/y"), "http://o.test/y");
}
