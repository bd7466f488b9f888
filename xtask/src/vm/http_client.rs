//! A small HTTP/1.1 client for talking to the guest through QEMU's port
//! forwarding or a tap: one request per connection, every connect, read and
//! write under a deadline, raw byte exchanges for malformed requests, and
//! the splitting of back-to-back responses on a persistent connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most a response may hold; the largest the guest sends (the tslog
/// dump) is tens of KiB.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A read timeout of zero means "block forever" to the OS; never ask for less.
const MIN_IO_TIMEOUT: Duration = Duration::from_millis(1);

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// In order, names as sent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why bytes are not (yet) a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResponseError {
    /// More bytes are needed (the header block or the body is cut short).
    Incomplete,
    /// The bytes are not an HTTP/1.x response.
    Malformed(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Incomplete => formatter.write_str("the response is cut short"),
            ResponseError::Malformed(reason) => write!(formatter, "malformed response: {reason}"),
        }
    }
}

/// Parses a whole response. `at_eof`: the server has closed, so a response
/// without `Content-Length` ends here, and a short one is malformed.
pub(crate) fn parse_response(bytes: &[u8], at_eof: bool) -> Result<Response, ResponseError> {
    let incomplete = |what: &str| {
        if at_eof {
            ResponseError::Malformed(format!("connection closed {what}"))
        } else {
            ResponseError::Incomplete
        }
    };
    let Some(header_end) = find(bytes, b"\r\n\r\n") else {
        return Err(incomplete("inside the header block"));
    };
    let head = std::str::from_utf8(&bytes[..header_end])
        .map_err(|_| ResponseError::Malformed("header block is not UTF-8".to_owned()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (status, reason) = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ResponseError::Malformed(format!("header line {line:?} has no colon"))
        })?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ResponseError::Malformed(format!(
                "bad header name in {line:?}"
            )));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|coding| !coding.eq_ignore_ascii_case("identity"))
    {
        return Err(ResponseError::Malformed(
            "Transfer-Encoding is not supported by this client".to_owned(),
        ));
    }
    let body = &bytes[header_end + 4..];
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    match response.header("content-length") {
        Some(length) => {
            let length: usize = length.parse().map_err(|_| {
                ResponseError::Malformed(format!("Content-Length {length:?} is not a number"))
            })?;
            if body.len() < length {
                return Err(incomplete(&format!(
                    "after {} of {length} body bytes",
                    body.len()
                )));
            }
            if body.len() > length {
                return Err(ResponseError::Malformed(format!(
                    "{} bytes after the {length}-byte body",
                    body.len() - length
                )));
            }
            response.body = body.to_vec();
        }
        None if no_body => response.body = body.to_vec(),
        None if at_eof => response.body = body.to_vec(),
        None => return Err(ResponseError::Incomplete),
    }
    Ok(response)
}

/// The first whole response at the front of `bytes`, and how many bytes it
/// took, on a connection that stays open (keep-alive, pipelining): it must
/// carry a `Content-Length`. `Ok(None)`: not all of it has arrived.
pub(crate) fn next_response(bytes: &[u8]) -> Result<Option<(Response, usize)>, ResponseError> {
    let Some(header_end) = find(bytes, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..header_end])
        .map_err(|_| ResponseError::Malformed("header block is not UTF-8".to_owned()))?;
    let length = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| {
            ResponseError::Malformed("a persistent response without Content-Length".to_owned())
        })?
        .1
        .trim()
        .parse::<usize>()
        .map_err(|_| ResponseError::Malformed("Content-Length is not a number".to_owned()))?;
    let end = header_end + 4 + length;
    if bytes.len() < end {
        return Ok(None);
    }
    parse_response(&bytes[..end], false).map(|response| Some((response, end)))
}

/// `HTTP/1.1 200 OK` → (200, "OK").
fn parse_status_line(line: &str) -> Result<(u16, String), ResponseError> {
    let malformed = || ResponseError::Malformed(format!("status line {line:?}"));
    let mut fields = line.splitn(3, ' ');
    let version = fields.next().ok_or_else(malformed)?;
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(malformed());
    }
    let code = fields.next().ok_or_else(malformed)?;
    if code.len() != 3 {
        return Err(malformed());
    }
    let status: u16 = code.parse().map_err(|_| malformed())?;
    if !(100..600).contains(&status) {
        return Err(malformed());
    }
    Ok((status, fields.next().unwrap_or_default().to_owned()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The bytes of a well-formed request: `Host`, `Connection: close`, and a
/// `Content-Length` whenever there is a body or the method usually has one.
pub(crate) fn request_bytes(method: &str, path: &str, host: SocketAddr, body: &[u8]) -> Vec<u8> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// What came back for raw bytes sent: the parsed response (or why not), the
/// bytes, and whether the server closed the connection within the deadline.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) response: Result<Response, ResponseError>,
    pub(crate) received: Vec<u8>,
    /// End-of-file or a reset was seen (the server closed).
    pub(crate) closed: bool,
    /// Writing failed part-way (the server closed before reading everything).
    pub(crate) write_error: Option<String>,
    pub(crate) elapsed: Duration,
}

/// Opens a connection with `timeout` for the connect itself.
pub(crate) fn connect(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, timeout.max(MIN_IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `request` and reads until the server closes or `timeout` (from the
/// connect on) passes; never returns later than that. An `Err` means the
/// connection could not be made at all.
pub(crate) fn exchange(
    address: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> io::Result<Exchange> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut stream = connect(address, timeout)?;
    let write_error = write_all_until(&mut stream, request, deadline)
        .err()
        .map(|error| error.to_string());
    Ok(read_until_closed(stream, start, deadline, write_error))
}

/// Reads from `stream` until end-of-file, a reset or `deadline`.
pub(crate) fn read_until_closed(
    mut stream: TcpStream,
    start: Instant,
    deadline: Instant,
    write_error: Option<String>,
) -> Exchange {
    let mut received = Vec::new();
    let mut closed = false;
    let mut buffer = [0u8; 16 * 1024];
    while received.len() < MAX_RESPONSE_BYTES {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if stream
            .set_read_timeout(Some((deadline - now).max(MIN_IO_TIMEOUT)))
            .is_err()
        {
            break;
        }
        match stream.read(&mut buffer) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                // A reset: the server is gone.
                closed = true;
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    Exchange {
        response: parse_response(&received, closed),
        received,
        closed,
        write_error,
        elapsed: start.elapsed(),
    }
}

/// Writes all of `bytes` unless `deadline` passes or the peer goes away.
pub(crate) fn write_all_until(
    stream: &mut TcpStream,
    bytes: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write deadline passed",
            ));
        }
        stream.set_write_timeout(Some((deadline - now).max(MIN_IO_TIMEOUT)))?;
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// One well-formed request; the response must arrive complete before `timeout`.
pub(crate) fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let bytes = request_bytes(method, path, address, body);
    let exchange = exchange(address, &bytes, timeout)
        .map_err(|error| format!("{method} {path}: connect to {address}: {error}"))?;
    exchange.response.map_err(|error| match error {
        ResponseError::Incomplete => format!(
            "{method} {path}: no complete response within {:.1} s ({} bytes received)",
            timeout.as_secs_f64(),
            exchange.received.len()
        ),
        ResponseError::Malformed(reason) => format!("{method} {path}: {reason}"),
    })
}

pub(crate) fn get(address: SocketAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    request(address, "GET", path, b"", timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_back_to_back_responses() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\nHTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        let (first, used) = next_response(two).unwrap().unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"ok\n"[..]));
        let (second, rest) = next_response(&two[used..]).unwrap().unwrap();
        assert_eq!(second.status, 404);
        assert_eq!(second.header("connection"), Some("close"));
        assert_eq!(used + rest, two.len());
        assert_eq!(next_response(&two[..used - 1]).unwrap(), None);
        assert_eq!(next_response(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(next_response(b"HTTP/1.1 200 OK\r\n\r\nok").is_err());
    }
    use std::net::TcpListener;
    use std::thread;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

    #[test]
    fn parses_a_response_with_a_length() {
        let response = parse_response(OK, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.reason, "OK");
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.header("CONNECTION"), Some("close"));
        assert_eq!(response.body, b"ok\n");
        assert_eq!(parse_response(OK, true).unwrap(), response);
    }

    #[test]
    fn waits_for_the_rest_of_a_cut_response() {
        for cut in [0, 10, OK.len() - 5, OK.len() - 1] {
            assert_eq!(
                parse_response(&OK[..cut], false),
                Err(ResponseError::Incomplete),
                "cut at {cut}"
            );
            assert!(
                matches!(
                    parse_response(&OK[..cut], true),
                    Err(ResponseError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_body_without_a_length_ends_at_eof() {
        let bytes = b"HTTP/1.0 404 Not Found\r\n\r\nno such page";
        assert_eq!(parse_response(bytes, false), Err(ResponseError::Incomplete));
        let response = parse_response(bytes, true).unwrap();
        assert_eq!(
            (response.status, response.reason.as_str()),
            (404, "Not Found")
        );
        assert_eq!(response.body, b"no such page");
        let accepted = parse_response(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!(accepted.unwrap().status, 202);
        let no_reason = parse_response(b"HTTP/1.1 204\r\n\r\n", false).unwrap();
        assert_eq!((no_reason.status, no_reason.reason.as_str()), (204, ""));
    }

    #[test]
    fn rejects_what_is_not_a_response() {
        for bytes in [
            &b"GARBAGE\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 999 Nope\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(bytes, true),
                    Err(ResponseError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn builds_requests() {
        let host: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            request_bytes("GET", "/health", host, b""),
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            request_bytes("POST", "/poweroff", host, b""),
            b"POST /poweroff HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    /// A one-shot server on loopback that answers with `reply` after reading the request head.
    fn serve_once(reply: &'static [u8], close: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            stream.write_all(reply).unwrap();
            if !close {
                thread::sleep(Duration::from_secs(3));
            }
        });
        address
    }

    #[test]
    fn talks_to_a_server() {
        let address = serve_once(OK, true);
        let response = get(address, "/health", Duration::from_secs(5)).unwrap();
        assert_eq!(
            (response.status, response.body_text().as_str()),
            (200, "ok\n")
        );
    }

    #[test]
    fn gives_up_at_the_deadline_when_the_server_keeps_the_connection() {
        let address = serve_once(b"HTTP/1.1 200 OK\r\n\r\npartial", false);
        let start = Instant::now();
        let exchange = exchange(
            address,
            b"GET / HTTP/1.1\r\n\r\n",
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!exchange.closed);
        assert_eq!(exchange.response, Err(ResponseError::Incomplete));
        assert_eq!(exchange.received, b"HTTP/1.1 200 OK\r\n\r\npartial");
    }

    #[test]
    fn a_refused_connection_is_an_error() {
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is gone: nothing accepts on that port any more.
        assert!(get(address, "/", Duration::from_secs(2)).is_err());
    }
}
