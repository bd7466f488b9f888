//! wrk, the HTTP load generator `bench --http` drives the guest with: its
//! command line, and what its `--latency` report says, parsed.
//!
//! The report's shape is wrk 4's (`src/wrk.c`, `print_stats_header`,
//! `print_stats`, `print_stats_latency`; units from `src/units.c`: times
//! in `us`, `ms`, `s`, `m`, `h`, counts with `k`, `M`, `G` suffixes).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::env::deps;

/// The Debian package that provides `wrk`.
pub(crate) const WRK_PACKAGE: &str = "wrk";
pub(crate) const WRK_BINARY: &str = "wrk";

/// wrk's own per-request timeout, passed explicitly so the JSON says what
/// a `timeout` error meant (wrk's default is the same 2 s).
pub(crate) const WRK_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// wrk threads: one per core of this machine's client side, never more
/// than connections (wrk refuses that).
const WRK_THREADS: usize = 2;

/// Makes sure `wrk` is on PATH, installing Debian's package as root.
pub(crate) fn ensure_wrk() -> Result<()> {
    deps::ensure_debian_binary(WRK_BINARY, WRK_PACKAGE)
}

/// `wrk --latency -t<T> -c<connections> -d<duration>s --timeout 2s http://<address><path>`.
pub(crate) fn command(
    address: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Command {
    let mut command = Command::new(Path::new(WRK_BINARY));
    command.args([
        "--latency".to_owned(),
        format!("-t{}", WRK_THREADS.min(connections).max(1)),
        format!("-c{connections}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--timeout".to_owned(),
        format!("{}s", WRK_REQUEST_TIMEOUT.as_secs()),
        format!("http://{address}{path}"),
    ]);
    command
}

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WrkReport {
    pub(crate) requests: u64,
    /// The run's length as wrk measured it.
    pub(crate) seconds: f64,
    pub(crate) requests_per_second: f64,
    /// Latency percentiles and maximum, microseconds (`None` when wrk had
    /// no completed request to report them from).
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) max_us: Option<f64>,
    pub(crate) errors: SocketErrors,
    /// Responses that were not 2xx or 3xx.
    pub(crate) non_success: u64,
}

/// wrk's `Socket errors:` line; all zero when it printed none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SocketErrors {
    pub(crate) connect: u64,
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) timeout: u64,
}

impl SocketErrors {
    pub(crate) fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// `1.83ms` → 1830.0 microseconds.
fn parse_time_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    value.is_finite().then_some(value * scale)
}

/// `40000`, `4.00k`, `1.2M` → the count.
fn parse_count(text: &str) -> Option<f64> {
    let (number, scale) = match text.as_bytes().last()? {
        b'k' => (&text[..text.len() - 1], 1e3),
        b'M' => (&text[..text.len() - 1], 1e6),
        b'G' => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some(value * scale)
}

/// Parses wrk's report (stdout of a `--latency` run).
pub(crate) fn parse_report(text: &str) -> Result<WrkReport> {
    let mut requests = None;
    let mut seconds = None;
    let mut requests_per_second = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut max_us = None;
    let mut errors = SocketErrors::default();
    let mut non_success = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            // `Latency   1.83ms  1.20ms  30.00ms  90.00%` (thread stats).
            ["Latency", _average, _deviation, max, ..] => max_us = parse_time_us(max),
            ["50%", value] => p50_us = parse_time_us(value),
            ["99%", value] => p99_us = parse_time_us(value),
            // `40000 requests in 5.00s, 3.00MB read`
            [count, "requests", "in", took, ..] => {
                requests = parse_count(count).map(|count| count as u64);
                seconds = parse_time_us(took.trim_end_matches(',')).map(|us| us / 1e6);
            }
            ["Requests/sec:", value] => requests_per_second = value.parse::<f64>().ok(),
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                for pair in rest.join(" ").split(',') {
                    let mut fields = pair.split_whitespace();
                    let (Some(kind), Some(count)) = (fields.next(), fields.next()) else {
                        bail!("wrk: unreadable socket errors {line:?}");
                    };
                    let count: u64 = count
                        .parse()
                        .map_err(|_| anyhow::anyhow!("wrk: unreadable socket errors {line:?}"))?;
                    match kind {
                        "connect" => errors.connect = count,
                        "read" => errors.read = count,
                        "write" => errors.write = count,
                        "timeout" => errors.timeout = count,
                        _ => bail!("wrk: unknown socket error kind in {line:?}"),
                    }
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                non_success = count
                    .parse()
                    .map_err(|_| anyhow::anyhow!("wrk: unreadable {line:?}"))?;
            }
            _ => {}
        }
    }
    let (Some(requests), Some(seconds), Some(requests_per_second)) =
        (requests, seconds, requests_per_second)
    else {
        bail!("wrk printed no `N requests in T` and `Requests/sec:` lines");
    };
    // With no completed request wrk prints 0 latencies (its `requests`
    // then counts only timed-out ones); they are no figure.
    let none_completed = requests == 0 || max_us == Some(0.0);
    let measured = |value: Option<f64>| value.filter(|_| !none_completed);
    Ok(WrkReport {
        requests,
        seconds,
        requests_per_second,
        p50_us: measured(p50_us),
        p99_us: measured(p99_us),
        max_us: measured(max_us),
        errors,
        non_success,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as wrk 4.1 prints it (Debian bookworm's), with errors.
    const REPORT: &str = "\
Running 5s test @ http://10.0.2.15/health
  2 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   113.25ms   40.10ms    1.20s    91.02%
    Req/Sec     4.25k   512.33     5.10k    70.00%
  Latency Distribution
     50%  108.00ms
     75%  120.50ms
     90%  140.00ms
     99%  219.00ms
  42335 requests in 5.01s, 3.11MB read
  Socket errors: connect 3, read 1, write 0, timeout 39
  Non-2xx or 3xx responses: 7
Requests/sec:   8449.90
Transfer/sec:    635.21KB
";

    #[test]
    fn reads_every_figure_of_a_report() {
        let report = parse_report(REPORT).unwrap();
        assert_eq!(report.requests, 42335);
        assert!((report.seconds - 5.01).abs() < 1e-9);
        assert!((report.requests_per_second - 8449.90).abs() < 1e-9);
        assert_eq!(report.p50_us, Some(108_000.0));
        assert_eq!(report.p99_us, Some(219_000.0));
        assert_eq!(report.max_us, Some(1_200_000.0));
        assert_eq!(
            report.errors,
            SocketErrors {
                connect: 3,
                read: 1,
                write: 0,
                timeout: 39
            }
        );
        assert_eq!(report.errors.total(), 43);
        assert_eq!(report.non_success, 7);
    }

    #[test]
    fn a_clean_run_has_no_error_lines() {
        let clean = "\
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us  100.00us   2.50ms   80.00%
  Latency Distribution
     50%  600.00us
     99%    1.10ms
  8000 requests in 5.00s, 600.00KB read
Requests/sec:   1600.00
";
        let report = parse_report(clean).unwrap();
        assert_eq!(report.p50_us, Some(600.0));
        assert_eq!(report.p99_us, Some(1100.0));
        assert_eq!(report.max_us, Some(2500.0));
        assert_eq!(report.errors, SocketErrors::default());
        assert_eq!(report.non_success, 0);
    }

    #[test]
    fn no_completed_request_gives_no_latency() {
        let nothing = "\
    Latency     0.00us    0.00us   0.00us    -nan%
     50%    0.00us
     99%    0.00us
  0 requests in 5.00s, 0.00B read
  Socket errors: connect 0, read 0, write 65849, timeout 0
Requests/sec:      0.00
";
        let report = parse_report(nothing).unwrap();
        assert_eq!(report.requests, 0);
        let only_timeouts = nothing
            .replace("  0 requests in", "  30 requests in")
            .replace("write 65849, timeout 0", "write 0, timeout 30");
        let timed_out = parse_report(&only_timeouts).unwrap();
        assert_eq!((timed_out.requests, timed_out.errors.timeout), (30, 30));
        assert_eq!(timed_out.p99_us, None);
        assert_eq!(report.p50_us, None);
        assert_eq!(report.max_us, None);
        assert_eq!(report.errors.write, 65849);
    }

    #[test]
    fn units_and_garbage() {
        assert_eq!(parse_time_us("1.50s"), Some(1_500_000.0));
        assert_eq!(parse_time_us("2.00m"), Some(120e6));
        assert_eq!(parse_time_us("12.3"), None);
        assert_eq!(parse_time_us("3.0xs"), None);
        assert_eq!(parse_count("4.25k"), Some(4250.0));
        assert_eq!(parse_count("1.2M"), Some(1_200_000.0));
        assert!(parse_report("wrk: command not found").is_err());
        assert!(
            parse_report("  Socket errors: connect x\n1 requests in 1.00s\nRequests/sec: 1\n")
                .is_err()
        );
    }

    #[test]
    fn the_command_never_has_more_threads_than_connections() {
        let address: SocketAddr = "10.0.2.15:80".parse().unwrap();
        let arguments = |connections| {
            command(address, "/health", connections, Duration::from_secs(5))
                .get_args()
                .map(|argument| argument.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            arguments(1),
            [
                "--latency",
                "-t1",
                "-c1",
                "-d5s",
                "--timeout",
                "2s",
                "http://10.0.2.15:80/health"
            ]
        );
        assert_eq!(arguments(1000)[1..3], ["-t2", "-c1000"]);
    }
}
