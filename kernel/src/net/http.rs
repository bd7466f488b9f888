//! A deliberately small HTTP/1.1 server core: parse the first request in
//! the bytes received so far (bounded), route it, and build a response that
//! says whether the connection stays open (RFC 9112 §9.3: HTTP/1.1 persists
//! unless `Connection: close`; HTTP/1.0 closes unless `Connection:
//! keep-alive`).
//! Hand-written: the server needs no more than this, and an HTTP crate
//! would bring an allocator-heavy parser into a `no_std` kernel.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::borrow::Cow;
use alloc::vec::Vec;

/// Largest request head accepted (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse<'a> {
    /// No blank line yet, and still under the limit.
    Incomplete,
    Request {
        method: Method,
        path: &'a str,
        /// The request declared a body (we take none; it is not read, so
        /// the connection closes after the answer).
        has_body: bool,
        /// The client wants the connection kept open after the answer.
        keep_alive: bool,
        /// Bytes of the head, blank line included: where a pipelined next
        /// request starts.
        head_length: usize,
    },
    /// Answer with this status and close.
    Reject(u16),
}

/// Parses the request head in `bytes` (everything received so far).
pub(crate) fn parse_request(bytes: &[u8]) -> Parse<'_> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        // A bare-LF client or garbage: answer once it is clearly not HTTP.
        if bytes.len() >= MAX_HEAD {
            return Parse::Reject(431);
        }
        if let Some(line_end) = bytes.iter().position(|&b| b == b'\n')
            && request_line(&bytes[..line_end]).is_none()
        {
            return Parse::Reject(400);
        }
        return Parse::Incomplete;
    };
    if end + 4 > MAX_HEAD {
        return Parse::Reject(431);
    }
    let head = &bytes[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let Some((method, path, version)) = lines.next().and_then(request_line) else {
        return Parse::Reject(400);
    };
    let mut has_body = false;
    let mut keep_alive = version == Version::Http11;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parse::Reject(400);
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|b| !b.is_ascii_graphic()) {
            return Parse::Reject(400);
        }
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            has_body = value != b"0";
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_body = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            // A comma-separated list of options (RFC 9110 §7.6.1).
            for option in value.split(|&b| b == b',').map(trim) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && version == Version::Http10 {
                    keep_alive = true;
                }
            }
        }
    }
    Parse::Request {
        method,
        path,
        has_body,
        keep_alive,
        head_length: end + 4,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Http10,
    Http11,
}

/// `METHOD SP path SP HTTP/1.x`; `None` if it is not that.
fn request_line(line: &[u8]) -> Option<(Method, &str, Version)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = core::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let method = match parts.next()? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => return None,
    };
    let path = parts.next()?;
    let version = parts.next()?;
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        _ => return None,
    };
    if parts.next().is_some() || !path.starts_with('/') {
        return None;
    }
    Some((method, path, version))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// What the server does besides answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    None,
    PowerOff,
}

/// The routes: `/`, `/health`, `/tslog`, `POST /poweroff`. `pages` gives
/// the bodies of `/` and `/tslog`; `from_admin` says whether the peer is
/// the host allowed to power off.
pub(crate) fn route(
    method: Method,
    path: &str,
    from_admin: bool,
    pages: &dyn Pages,
) -> (u16, Cow<'static, [u8]>, Action) {
    let path = path.split('?').next().unwrap_or(path);
    let fixed = |status, body: &'static [u8]| (status, Cow::Borrowed(body), Action::None);
    match (method, path) {
        (Method::Get | Method::Head, "/") => (200, Cow::Owned(pages.status()), Action::None),
        (Method::Get | Method::Head, "/health") => fixed(200, b"ok\n"),
        (Method::Get | Method::Head, "/tslog") => (200, Cow::Owned(pages.tslog()), Action::None),
        (Method::Post, "/poweroff") if from_admin => (
            202,
            Cow::Borrowed(b"powering off\n".as_slice()),
            Action::PowerOff,
        ),
        (Method::Post, "/poweroff") => fixed(403, b"only the configured host may power off\n"),
        (_, "/" | "/health" | "/tslog" | "/poweroff") => fixed(405, b"method not allowed\n"),
        _ => fixed(404, b"not found\n"),
    }
}

/// The dynamic pages.
pub(crate) trait Pages {
    fn status(&self) -> Vec<u8>;
    fn tslog(&self) -> Vec<u8>;
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response; `HEAD` gets the headers only. `keep_alive` says
/// whether the connection stays open after it.
#[cfg(any(test, not(target_os = "none")))]
pub(crate) fn response(status: u16, body: &[u8], head_only: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, status, body, head_only, keep_alive);
    out
}

/// Appends a whole response to `out`, which a connection keeps: no
/// allocation once it has grown to a response's size, and no `fmt` (a
/// `format!` here was 900 instructions a request, and under 1 000 open
/// connections each allocation walks a fragmented heap).
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) {
    write_head(out, status, body.len(), keep_alive);
    if !head_only {
        out.extend_from_slice(body);
    }
}

fn write_head(out: &mut Vec<u8>, status: u16, length: usize, keep_alive: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\nServer: mote\r\n\r\n".as_slice()
    } else {
        b"\r\nConnection: close\r\nServer: mote\r\n\r\n"
    });
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut value: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789"[value % 10];
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// A rejection with a one-line body; the connection closes after it.
#[cfg(any(test, not(target_os = "none")))]
pub(crate) fn error_response(status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    write_error_response(&mut out, status);
    out
}

/// Appends [`error_response`] to `out`.
pub(crate) fn write_error_response(out: &mut Vec<u8>, status: u16) {
    let reason = reason(status);
    write_head(out, status, reason.len() + 1, false);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Pages with fixed bodies, for tests.
#[cfg(test)]
pub(crate) struct TestPages;

#[cfg(test)]
impl Pages for TestPages {
    fn status(&self) -> Vec<u8> {
        b"status".to_vec()
    }
    fn tslog(&self) -> Vec<u8> {
        b"dump".to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    #[test]
    fn parses_requests() {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: curl\r\n\r\n";
        assert_eq!(
            parse_request(head),
            Parse::Request {
                method: Method::Get,
                path: "/health",
                has_body: false,
                keep_alive: true,
                head_length: head.len(),
            }
        );
        assert_eq!(
            parse_request(b"POST /poweroff HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
            Parse::Request {
                method: Method::Post,
                path: "/poweroff",
                has_body: false,
                keep_alive: false,
                head_length: 46,
            }
        );
        assert_eq!(
            parse_request(b"POST /x HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"),
            Parse::Request {
                method: Method::Post,
                path: "/x",
                has_body: true,
                keep_alive: true,
                head_length: 39,
            }
        );
    }

    fn keep_alive(head: &[u8]) -> bool {
        match parse_request(head) {
            Parse::Request { keep_alive, .. } => keep_alive,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn persistence_follows_the_version_and_the_connection_header() {
        assert!(keep_alive(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep_alive(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn pipelined_requests_are_taken_one_head_at_a_time() {
        let first = b"GET /a HTTP/1.1\r\n\r\n";
        let mut bytes = first.to_vec();
        bytes.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\nGET /c HT");
        let Parse::Request {
            path, head_length, ..
        } = parse_request(&bytes)
        else {
            panic!("first request");
        };
        assert_eq!((path, head_length), ("/a", first.len()));
        let rest = &bytes[head_length..];
        let Parse::Request {
            path, head_length, ..
        } = parse_request(rest)
        else {
            panic!("second request");
        };
        assert_eq!(path, "/b");
        assert_eq!(parse_request(&rest[head_length..]), Parse::Incomplete);
    }

    #[test]
    fn incomplete_until_the_blank_line() {
        assert_eq!(parse_request(b""), Parse::Incomplete);
        assert_eq!(parse_request(b"G"), Parse::Incomplete);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Parse::Incomplete);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Parse::Incomplete
        );
    }

    #[test]
    fn rejects_garbage_and_oversized_heads() {
        assert_eq!(parse_request(b"GARBAGE\r\n\r\n"), Parse::Reject(400));
        assert_eq!(
            parse_request(b"GARBAGE\r\n"),
            Parse::Reject(400),
            "known bad at the first line"
        );
        assert_eq!(parse_request(b"GET / HTTP/2\r\n\r\n"), Parse::Reject(400));
        assert_eq!(
            parse_request(b"GET noslash HTTP/1.1\r\n\r\n"),
            Parse::Reject(400)
        );
        assert_eq!(
            parse_request(b"DELETE / HTTP/1.1\r\n\r\n"),
            Parse::Reject(400)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1 extra\r\n\r\n"),
            Parse::Reject(400)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Parse::Reject(400)
        );
        assert_eq!(parse_request(b"\xff\xfe\r\n\r\n"), Parse::Reject(400));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request(&huge), Parse::Reject(431));
        huge.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&huge), Parse::Reject(431));
    }

    #[test]
    fn routes() {
        let pages = TestPages;
        assert_eq!(
            route(Method::Get, "/", false, &pages),
            (200, Cow::Owned(b"status".to_vec()), Action::None)
        );
        assert_eq!(route(Method::Get, "/health?x=1", false, &pages).0, 200);
        assert_eq!(&*route(Method::Get, "/tslog", false, &pages).1, b"dump");
        assert_eq!(route(Method::Get, "/nope", false, &pages).0, 404);
        assert_eq!(route(Method::Post, "/poweroff", false, &pages).0, 403);
        assert_eq!(
            route(Method::Post, "/poweroff", true, &pages).2,
            Action::PowerOff
        );
        assert_eq!(
            route(Method::Get, "/poweroff", true, &pages),
            (
                405,
                Cow::Borrowed(b"method not allowed\n".as_slice()),
                Action::None
            )
        );
    }

    #[test]
    fn responses() {
        let text = String::from_utf8(response(200, b"ok\n", false, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
        let kept = String::from_utf8(response(200, b"ok\n", false, true)).unwrap();
        assert!(kept.contains("Connection: keep-alive\r\n"));
        assert!(
            String::from_utf8(response(200, b"ok\n", true, true))
                .unwrap()
                .ends_with("\r\n\r\n")
        );
        assert!(
            String::from_utf8(error_response(431))
                .unwrap()
                .starts_with("HTTP/1.1 431 Request Header Fields Too Large")
        );
    }

    #[test]
    fn responses_are_what_format_would_write() {
        for (status, body, head_only, keep_alive) in [
            (200, b"ok\n".as_slice(), false, true),
            (404, b"not found\n", true, false),
            (202, &[b'x'; 12_345], false, false),
            (200, b"", false, true),
        ] {
            let connection = if keep_alive { "keep-alive" } else { "close" };
            let mut expected = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {connection}\r\nServer: mote\r\n\r\n",
                reason(status),
                body.len()
            )
            .into_bytes();
            if !head_only {
                expected.extend_from_slice(body);
            }
            assert_eq!(response(status, body, head_only, keep_alive), expected);
        }
        assert!(error_response(408).ends_with(
            b"Content-Length: 16\r\nConnection: close\r\nServer: mote\r\n\r\nRequest Timeout\n"
        ));
        for value in [0, 7, 10, 99, 100, 65_535, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, value);
            assert_eq!(out, format!("{value}").into_bytes());
        }
    }
}
