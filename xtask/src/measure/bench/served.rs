//! Served boots in the bench (`--served`): how long after QEMU is spawned
//! the guest (mote, or the Linux peer) first answers `GET /health` with
//! 200, seen from the host. The VM is then powered off over HTTP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::guest_output::report;
use crate::vm::http_client::{self, Response, parse_response};
use crate::vm::network::HostPorts;
use crate::vm::process::{Finished, LiveChild};
use crate::vm::vmm::qemu::QemuCommand;

/// A new connection is tried this often until one is answered.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// QEMU's forwarding socket is on loopback: a refusal or an accept is immediate.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(20);
/// Attempts open at once. A request sent before the guest listens may sit
/// in slirp until its 3 s SYN retransmit, so attempts overlap instead of
/// waiting each other out; the cap keeps slirp's queue (and the burst the
/// guest sees when its NIC comes up) small.
const MAX_IN_FLIGHT: usize = 8;
/// An attempt not answered by then is dropped and replaced.
const ATTEMPT_LIFETIME: Duration = Duration::from_millis(250);
/// POST /poweroff, and QEMU's exit after it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A loaded host can starve a TCG guest for seconds: the Linux peer's
/// power-off (sync, device shutdown, the ACPI sleep register) gets room.
pub(super) const POWER_OFF_WITHIN: Duration = Duration::from_secs(20);

/// One served boot, seen from the host.
pub(super) struct ServedRun {
    pub(super) finished: Finished,
    /// From just before QEMU was spawned to the first 200, or why there was none.
    pub(super) first_ok: Result<Duration, String>,
    /// The answer to the power-off request, or why there was none.
    pub(super) power_off: Result<Response, String>,
    /// The answer to the `GET` asked for between the first 200 and the
    /// power-off (see [`boot_fetching`]), if one was.
    pub(super) fetched: Option<Result<Response, String>>,
}

/// Spawns `command` (whose NIC forwards `ports`), polls `GET /health`
/// until the first 200, then sends `power_off` (method, path) and waits for
/// the VMM's exit; QEMU is killed after `timeout` whatever happens. The
/// caller judges the end: mote's and another kernel's differ.
pub(super) fn boot(
    command: &QemuCommand,
    ports: &HostPorts,
    timeout: Duration,
    power_off: (&str, &str),
) -> Result<ServedRun> {
    boot_fetching(command, ports, timeout, None, power_off)
}

/// [`boot`], with `GET fetch` sent once `/health` has answered (mote's
/// `/tslog`, for the exact counts of `exact.rs`).
pub(super) fn boot_fetching(
    command: &QemuCommand,
    ports: &HostPorts,
    timeout: Duration,
    fetch: Option<&str>,
    (method, path): (&str, &str),
) -> Result<ServedRun> {
    let mut child = LiveChild::spawn(&mut command.command(), Some(timeout), false)?;
    let deadline = child.started() + timeout;
    let first_ok = first_health_ok(ports.http_address(), &mut child, deadline);
    let fetched = fetch.map(|fetch| {
        first_ok
            .clone()
            .and_then(|_| http_client::get(ports.http_address(), fetch, REQUEST_TIMEOUT))
    });
    let power_off = http_client::request(ports.http_address(), method, path, b"", REQUEST_TIMEOUT);
    let finished = child.finish(Some(POWER_OFF_WITHIN))?;
    Ok(ServedRun {
        finished,
        first_ok,
        power_off,
        fetched,
    })
}

/// One in-flight `GET /health`.
struct Attempt {
    stream: TcpStream,
    opened: Instant,
    received: Vec<u8>,
}

/// What reading an attempt found.
enum AttemptState {
    Pending,
    Answered200,
    /// Closed, reset, or answered something else: drop it.
    Dead,
}

impl Attempt {
    fn open(address: SocketAddr, request: &[u8]) -> io::Result<Self> {
        let mut stream = http_client::connect(address, CONNECT_TIMEOUT)?;
        stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        // A few dozen bytes: a fresh socket's send buffer takes them at once.
        stream.write_all(request)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            opened: Instant::now(),
            received: Vec::new(),
        })
    }

    /// Reads whatever has arrived, without blocking.
    fn read(&mut self) -> AttemptState {
        let mut buffer = [0u8; 4096];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => {
                    return match parse_response(&self.received, true) {
                        Ok(response) if response.status == 200 => AttemptState::Answered200,
                        _ => AttemptState::Dead,
                    };
                }
                Ok(count) => {
                    self.received.extend_from_slice(&buffer[..count]);
                    match parse_response(&self.received, false) {
                        Ok(response) if response.status == 200 => {
                            return AttemptState::Answered200;
                        }
                        Ok(_) => return AttemptState::Dead,
                        Err(_) => {}
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return AttemptState::Pending;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return AttemptState::Dead,
            }
        }
    }
}

/// Tries `GET /health` every [`POLL_INTERVAL`] (at most [`MAX_IN_FLIGHT`]
/// at once) until one is answered 200; returns when that answer was read,
/// from just before QEMU was spawned.
fn first_health_ok(
    address: SocketAddr,
    child: &mut LiveChild,
    deadline: Instant,
) -> Result<Duration, String> {
    let request = http_client::request_bytes("GET", "/health", address, b"");
    let mut attempts: Vec<Attempt> = Vec::with_capacity(MAX_IN_FLIGHT);
    let mut next_open = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "no 200 for GET /health within {:.0} s",
                deadline.duration_since(child.started()).as_secs_f64()
            ));
        }
        child.poll().map_err(|error| format!("{error:#}"))?;
        if child.has_exited() {
            let failures = report::failure_lines(child.stdout());
            return Err(format!(
                "QEMU exited before answering GET /health{}",
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(": {}", failures.join("; "))
                }
            ));
        }
        attempts.retain(|attempt| now.duration_since(attempt.opened) < ATTEMPT_LIFETIME);
        if attempts.len() < MAX_IN_FLIGHT && now >= next_open {
            next_open = now + POLL_INTERVAL;
            // Refused (QEMU not listening yet) or reset: the next tick tries again.
            if let Ok(attempt) = Attempt::open(address, &request) {
                attempts.push(attempt);
            }
        }
        let mut answered = false;
        attempts.retain_mut(|attempt| match attempt.read() {
            AttemptState::Pending => true,
            AttemptState::Answered200 => {
                answered = true;
                false
            }
            AttemptState::Dead => false,
        });
        if answered {
            return Ok(child.started().elapsed());
        }
        let wake = next_open.min(Instant::now() + POLL_INTERVAL);
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_finds_a_server_that_starts_late() {
        use std::net::TcpListener;
        // The port is known before anything listens, as with QEMU starting up.
        let port = crate::vm::network::pick_free_tcp_port().unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = LiveChild::spawn(
            std::process::Command::new("sleep").arg("10"),
            Some(Duration::from_secs(20)),
            false,
        )
        .unwrap();
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            let listener = TcpListener::bind(address).unwrap();
            // The first connection is dropped unanswered; the second is served.
            drop(listener.accept().unwrap());
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = first_health_ok(address, &mut child, deadline).unwrap();
        assert!(first >= Duration::from_millis(150), "{first:?}");
        assert!(first < Duration::from_secs(5), "{first:?}");
        server.join().unwrap();
    }
}
