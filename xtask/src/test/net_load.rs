//! net-load: a served VM under many sequential requests, then a concurrent
//! burst beside clients that misbehave (malformed, slow, silent); the
//! server must answer everyone and stay healthy.

use std::net::SocketAddr;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::net_cases::{Findings, REQUEST_TIMEOUT, expect_rejection, expect_status};
use crate::guest_output::report;
use crate::measure::stats;
use crate::vm::http_client::{self, Response};
use crate::vm::served::ServedBoot;

const SEQUENTIAL_REQUESTS: usize = 1000;
const CONCURRENT_CONNECTIONS: usize = 50;
/// Per request of the concurrent burst. QEMU's user networking accepts
/// forwarded connections from a listen(2) backlog of 1 (`ss -ltn` shows
/// Send-Q 1 on the hostfwd port), one per main-loop turn; under the burst
/// the host kernel drops SYNs (`nstat` TcpExtListenOverflows counted 2022 in
/// one run) and the client retransmits them after 1, 3, 7, 15 and 31 s. A
/// connection that needs four retransmissions is slow, not lost: the burst
/// gets room for five.
const CONCURRENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// The sequential phase stops after this many failures instead of timing
/// out on each of the remaining requests.
const SEQUENTIAL_FAILURES_TO_STOP: usize = 10;
/// The slow client sends one byte this often; the kernel closes a
/// connection only after 5 s without any.
const SLOW_CLIENT_BYTE_INTERVAL: Duration = Duration::from_millis(200);
const SLOW_CLIENT_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: mote\r\n\r\n";
/// The kernel closes a connection idle this long mid-request.
const KERNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The idle client's wait for that close, and the earliest it may come.
const IDLE_CLOSE_WITHIN: Duration = Duration::from_secs(12);
const IDLE_CLOSE_NOT_BEFORE: Duration = Duration::from_secs(4);
/// Requests the malformed client sends, in turn, while the load runs.
const MALFORMED_REQUESTS: [&[u8]; 2] = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
];
/// The malformed client's pause between requests. Unpaced, its tight loop
/// took QEMU's one-slot accept queue (see `CONCURRENT_REQUEST_TIMEOUT`)
/// nearly every time it freed, and concurrent clients backing off their
/// SYN retransmissions starved for 45 s: a test of QEMU's port forwarding,
/// not of mote, which serves ~2 500 requests/s. 200 bad requests per second
/// still run through the whole concurrent phase.
const MALFORMED_PACE: Duration = Duration::from_millis(5);
/// An upper bound on the malformed client's rounds, whatever the timing.
const MALFORMED_MAX_ROUNDS: usize = 20_000;
/// How one client thread of the load fared.
struct ClientOutcome {
    summary: String,
    failures: Vec<String>,
}

/// Keeps only the first few failure messages, counting the rest.
fn push_limited(failures: &mut Vec<String>, total: &mut usize, failure: String) {
    const KEPT: usize = 5;
    *total += 1;
    if failures.len() < KEPT {
        failures.push(failure);
    }
}

/// Sends garbage until `stop`, requiring a 400 and a close each time.
fn malformed_client(address: SocketAddr, stop: &AtomicBool) -> ClientOutcome {
    let mut rejected = 0;
    let mut failed = 0;
    let mut failures = Vec::new();
    let mut rounds = 0;
    while rounds < MALFORMED_MAX_ROUNDS && (rounds == 0 || !stop.load(Ordering::Relaxed)) {
        let request = MALFORMED_REQUESTS[rounds % MALFORMED_REQUESTS.len()];
        match expect_rejection(address, "malformed client", request, &[400]) {
            Ok(_) => rejected += 1,
            Err(reason) => push_limited(&mut failures, &mut failed, reason),
        }
        rounds += 1;
        thread::sleep(MALFORMED_PACE);
    }
    ClientOutcome {
        summary: format!("malformed client {rejected}/{rounds} x 400 and close"),
        failures,
    }
}

/// Dribbles a whole request one byte at a time; it must still be served.
fn slow_client(address: SocketAddr) -> ClientOutcome {
    let start = Instant::now();
    let outcome = (|| -> Result<Response, String> {
        let mut stream = http_client::connect(address, REQUEST_TIMEOUT)
            .map_err(|error| format!("connect: {error}"))?;
        for byte in SLOW_CLIENT_REQUEST {
            http_client::write_all_until(
                &mut stream,
                std::slice::from_ref(byte),
                Instant::now() + REQUEST_TIMEOUT,
            )
            .map_err(|error| {
                format!(
                    "write failed after {:.1} s: {error}",
                    start.elapsed().as_secs_f64()
                )
            })?;
            thread::sleep(SLOW_CLIENT_BYTE_INTERVAL);
        }
        let exchange =
            http_client::read_until_closed(stream, start, Instant::now() + REQUEST_TIMEOUT, None);
        exchange.response.map_err(|error| error.to_string())
    })();
    match outcome {
        Ok(response) if response.status == 200 => ClientOutcome {
            summary: format!(
                "slow client ({} bytes, one per {} ms) 200 after {:.1} s",
                SLOW_CLIENT_REQUEST.len(),
                SLOW_CLIENT_BYTE_INTERVAL.as_millis(),
                start.elapsed().as_secs_f64()
            ),
            failures: Vec::new(),
        },
        Ok(response) => ClientOutcome {
            summary: "slow client failed".to_owned(),
            failures: vec![format!(
                "slow client: {} {}, expected 200",
                response.status, response.reason
            )],
        },
        Err(reason) => ClientOutcome {
            summary: "slow client failed".to_owned(),
            failures: vec![format!("slow client: {reason}")],
        },
    }
}

/// Sends half a request and goes quiet: the kernel must close the
/// connection after its idle timeout (with or without a 408/400 first).
fn idle_client(address: SocketAddr) -> ClientOutcome {
    let failed = |reason: String| ClientOutcome {
        summary: "idle client failed".to_owned(),
        failures: vec![format!("idle client: {reason}")],
    };
    let mut stream = match http_client::connect(address, REQUEST_TIMEOUT) {
        Ok(stream) => stream,
        Err(error) => return failed(format!("connect: {error}")),
    };
    let start = Instant::now();
    if let Err(error) =
        http_client::write_all_until(&mut stream, b"GET / HTTP/1.1\r\n", start + REQUEST_TIMEOUT)
    {
        return failed(format!("write: {error}"));
    }
    let exchange = http_client::read_until_closed(stream, start, start + IDLE_CLOSE_WITHIN, None);
    let waited = exchange.elapsed;
    if !exchange.closed {
        return failed(format!(
            "still open after {:.1} s (the kernel closes idle connections after {} s)",
            waited.as_secs_f64(),
            KERNEL_IDLE_TIMEOUT.as_secs()
        ));
    }
    if waited < IDLE_CLOSE_NOT_BEFORE {
        return failed(format!(
            "closed after only {:.1} s, before the {} s idle timeout",
            waited.as_secs_f64(),
            KERNEL_IDLE_TIMEOUT.as_secs()
        ));
    }
    if !exchange.received.is_empty()
        && !matches!(&exchange.response, Ok(response) if matches!(response.status, 400 | 408))
    {
        return failed(format!(
            "got {:?} before the close, expected nothing or a 408/400",
            String::from_utf8_lossy(&exchange.received[..exchange.received.len().min(80)])
        ));
    }
    ClientOutcome {
        summary: format!("idle client closed after {:.1} s", waited.as_secs_f64()),
        failures: Vec::new(),
    }
}

/// net-load: many sequential requests, then concurrent ones beside
/// misbehaving clients; the server must answer everyone and stay healthy.
pub(super) fn load(boot: &mut ServedBoot, findings: &mut Findings) {
    let address = boot.http_address();

    // Sequential.
    let start = Instant::now();
    let mut latencies_ms = Vec::with_capacity(SEQUENTIAL_REQUESTS);
    let mut failed = 0;
    let mut failures = Vec::new();
    for index in 0..SEQUENTIAL_REQUESTS {
        let one = Instant::now();
        match http_client::get(address, "/health", REQUEST_TIMEOUT) {
            Ok(response) if response.status == 200 && response.body == b"ok\n" => {
                latencies_ms.push(one.elapsed().as_secs_f64() * 1e3);
            }
            Ok(response) => push_limited(
                &mut failures,
                &mut failed,
                format!(
                    "sequential request {index}: {} {:?}",
                    response.status,
                    response.body_text()
                ),
            ),
            Err(reason) => push_limited(
                &mut failures,
                &mut failed,
                format!("sequential request {index}: {reason}"),
            ),
        }
        if failed >= SEQUENTIAL_FAILURES_TO_STOP {
            failures.push(format!(
                "stopped after {failed} failures in {} requests",
                index + 1
            ));
            break;
        }
    }
    let sequential = start.elapsed();
    if failed > 0 {
        findings.fail(format!(
            "{failed} of {SEQUENTIAL_REQUESTS} sequential GET /health failed: {}",
            failures.join("; ")
        ));
    }
    if let Some(summary) = stats::summarize(&latencies_ms) {
        findings.note(format!(
            "sequential: {} x GET /health 200 in {:.2} s ({:.0}/s; per request median {:.2} ms, p90 {:.2} ms, max {:.2} ms)",
            latencies_ms.len(),
            sequential.as_secs_f64(),
            latencies_ms.len() as f64 / sequential.as_secs_f64(),
            summary.median,
            summary.p90,
            summary.max
        ));
    }

    // Concurrent, beside the malformed, slow and idle clients.
    let forwards = boot.http_addresses();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(CONCURRENT_CONNECTIONS);
    let concurrent_start = Instant::now();
    let (results, concurrent_elapsed, others) = thread::scope(|scope| {
        let malformed = scope.spawn(|| malformed_client(address, &stop));
        let slow = scope.spawn(|| slow_client(address));
        let idle = scope.spawn(|| idle_client(address));
        // Spread over every forward to guest port 80 (QEMU accepts each
        // from a backlog of one); the guest still sees 50 at once.
        let workers: Vec<_> = (0..CONCURRENT_CONNECTIONS)
            .map(|index| {
                let address = forwards[index % forwards.len()];
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let one = Instant::now();
                    (
                        http_client::get(address, "/", CONCURRENT_REQUEST_TIMEOUT),
                        one.elapsed(),
                    )
                })
            })
            .collect();
        let results: Vec<_> = workers.into_iter().map(join).collect();
        let concurrent_elapsed = concurrent_start.elapsed();
        // The slow and idle clients end by themselves; the malformed one
        // keeps going until they have.
        let slow = join(slow);
        let idle = join(idle);
        stop.store(true, Ordering::Relaxed);
        (results, concurrent_elapsed, [join(malformed), slow, idle])
    });
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    let mut failed = 0;
    let mut failures = Vec::new();
    for (result, took) in results {
        slowest = slowest.max(took);
        match result {
            Ok(response) if response.status == 200 => served += 1,
            Ok(response) => push_limited(
                &mut failures,
                &mut failed,
                format!("{} {}", response.status, response.reason),
            ),
            Err(reason) => push_limited(&mut failures, &mut failed, reason),
        }
    }
    if failed > 0 {
        findings.fail(format!(
            "{failed} of {CONCURRENT_CONNECTIONS} concurrent GET / failed: {}",
            failures.join("; ")
        ));
    }
    let mut summaries = Vec::new();
    for outcome in others {
        summaries.push(outcome.summary);
        for failure in outcome.failures {
            findings.fail(failure);
        }
    }
    findings.note(format!(
        "concurrent: {served}/{CONCURRENT_CONNECTIONS} x GET / 200 in {:.2} s (slowest {:.2} s)",
        concurrent_elapsed.as_secs_f64(),
        slowest.as_secs_f64()
    ));
    findings.note(format!("alongside: {}", summaries.join("; ")));

    // Still healthy.
    if expect_status(address, "/health", 200, findings).is_some() {
        findings.note("afterwards: GET /health 200");
    }
    let failure_lines = report::failure_lines(boot.stdout());
    if !failure_lines.is_empty() {
        findings.fail(format!("after the load: {}", failure_lines.join("; ")));
    }
}

/// A client thread's result; a panic in the client goes on in this thread.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_failures_and_counts_all() {
        let mut failures = Vec::new();
        let mut total = 0;
        for index in 0..8 {
            push_limited(&mut failures, &mut total, index.to_string());
        }
        assert_eq!(total, 8);
        assert_eq!(failures, ["0", "1", "2", "3", "4"]);
    }
}
