//! The HTTP/1.1 wire format, as far as the sim's ingress needs it: the load balancer's gateway
//! reads requests and writes responses with it (`lb`), and the traffic harness reads responses
//! with it (`traffic`). Only the message framing lives here (heads, `Content-Length`, chunked
//! bodies); what a message means is the caller's business.

/// The largest request or response head accepted, as Envoy's default (60 KiB) roughly is.
pub const MAX_HEAD: usize = 64 * 1024;

/// A parsed message head: the start line's three parts and the header fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Request: method, target, version. Response: version, status code, reason.
    pub start: [String; 3],
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header field (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does the `Connection` header carry this token (`close`, `keep-alive`)?
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Is the message HTTP/1.0 (whose connections close unless asked to stay open)?
    pub fn is_http10(&self, version_at: usize) -> bool {
        self.start[version_at].eq_ignore_ascii_case("HTTP/1.0")
    }
}

/// Where a head ends in `buf`: the index just past the blank line, once it has arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parse a head (including its final blank line).
pub fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    let mut parts = start_line.splitn(3, ' ');
    let start = [
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    ];
    if start.iter().take(2).any(String::is_empty) {
        return Err(format!("malformed start line {start_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        if name.is_empty() || name.ends_with(' ') {
            return Err(format!("malformed header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Head { start, headers })
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Length(usize),
    Chunked,
    /// A response without length: the body runs until the connection closes.
    UntilClose,
}

/// The framing of a request body (no length: no body).
pub fn request_body(head: &Head) -> Result<Body, String> {
    framing(head).map(|b| b.unwrap_or(Body::Length(0)))
}

/// The framing of a response body to a request with `method`.
pub fn response_body(head: &Head, method: &str) -> Result<Body, String> {
    let status: u16 = head.start[1].parse().unwrap_or(0);
    if method.eq_ignore_ascii_case("HEAD") || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(Body::Length(0));
    }
    framing(head).map(|b| b.unwrap_or(Body::UntilClose))
}

fn framing(head: &Head) -> Result<Option<Body>, String> {
    if let Some(te) = head.header("transfer-encoding") {
        return if te
            .rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
        {
            Ok(Some(Body::Chunked))
        } else {
            Err(format!("unsupported transfer-encoding {te:?}"))
        };
    }
    match head.header("content-length") {
        Some(v) => v
            .parse()
            .map(|n| Some(Body::Length(n)))
            .map_err(|_| format!("bad content-length {v:?}")),
        None => Ok(None),
    }
}

/// A chunked body at the start of `buf`: `Ok(Some((consumed, data)))` once all of it (with its
/// trailers) has arrived, `Ok(None)` while more is needed.
pub fn chunked(buf: &[u8]) -> Result<Option<(usize, Vec<u8>)>, String> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailer fields, then the blank line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((at, data)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        data.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The reason phrase Envoy writes for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Serialise a response: status line, the headers given, `content-length`, then the body
/// (left out for a `HEAD` request, whose length is still announced).
pub fn write_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_lowercased_names() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x:80\r\nX-Thing:  v \r\nConnection: keep-alive, close\r\n\r\nrest";
        let end = head_end(raw).expect("complete");
        assert_eq!(&raw[end..], b"rest");
        let h = parse_head(&raw[..end]).expect("parse");
        assert_eq!(h.start, ["GET", "/a?b=1", "HTTP/1.1"].map(String::from));
        assert_eq!(h.header("HOST"), Some("x:80"));
        assert_eq!(h.header("x-thing"), Some("v"));
        assert!(h.connection_has("close"));
        assert!(parse_head(b"GET\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_need_all_their_chunks() {
        let body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\nNEXT";
        assert_eq!(chunked(&body[..12]).expect("partial"), None);
        let (used, data) = chunked(body).expect("ok").expect("complete");
        assert_eq!(data, b"Wikipedia");
        assert_eq!(&body[used..], b"NEXT");
        assert!(chunked(b"zz\r\n").is_err());
    }

    #[test]
    fn response_framing_follows_method_and_status() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n").expect("parse");
        assert_eq!(response_body(&h, "GET"), Ok(Body::Length(3)));
        assert_eq!(response_body(&h, "HEAD"), Ok(Body::Length(0)));
        let h = parse_head(b"HTTP/1.1 200 OK\r\n\r\n").expect("parse");
        assert_eq!(response_body(&h, "GET"), Ok(Body::UntilClose));
        assert_eq!(request_body(&h), Ok(Body::Length(0)));
    }
}
