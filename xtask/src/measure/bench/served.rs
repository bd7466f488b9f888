//! `cargo xtask run --measure N`: how long after QEMU is spawned the guest
//! first answers `GET /health` with 200, seen from the host, beside the null
//! guest's start → exit in the same QEMU configuration (QEMU's own floor).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::guest_output::report::{self, LISTENING_LINE};
use crate::measure::stats::{self, Summary};
use crate::vm::accel::Accel;
use crate::vm::http_client::{self, parse_response};
use crate::vm::network::HostPorts;
use crate::vm::power_off::{DEBUG_EXIT_SUCCESS, PowerOff};
use crate::vm::process::LiveChild;
use crate::vm::qemu::QemuCommand;
use crate::vm::served;

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
const POWER_OFF_WITHIN: Duration = Duration::from_secs(10);
/// Uncounted rounds first (cold page cache, first QEMU start).
pub(crate) const WARMUP_ROUNDS: usize = 1;

pub(crate) struct MeasureOptions {
    pub(crate) runs: usize,
    pub(crate) accel: Accel,
    pub(crate) kernel: PathBuf,
    pub(crate) null_guest: PathBuf,
    pub(crate) disk: PathBuf,
    pub(crate) cmdline: String,
    /// Each boot is killed after this long.
    pub(crate) timeout: Duration,
}

/// Every counted figure, in milliseconds, and the boots that failed.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Measurement {
    pub(crate) listening_line_ms: Vec<f64>,
    pub(crate) first_ok_ms: Vec<f64>,
    pub(crate) floor_ms: Vec<f64>,
    pub(crate) failures: Vec<String>,
}

/// One mote boot's figures.
struct MoteBoot {
    listening_line_ms: Option<f64>,
    first_ok_ms: f64,
}

/// Boots mote and the null guest `runs` times each, interleaved (mote
/// first in even rounds, the null guest in odd ones), and prints the table.
pub(crate) fn measure(options: &MeasureOptions) -> Result<bool> {
    if options.runs == 0 {
        bail!("--measure needs at least 1 run");
    }
    if options.timeout.is_zero() {
        bail!("--measure needs a per-boot --timeout above 0");
    }
    let example_ports = HostPorts::pick()?;
    println!(
        "measure: {} rounds (+{WARMUP_ROUNDS} warm-up) of mote and the null guest, interleaved, under {}; each boot killed after {} s",
        options.runs,
        options.accel,
        options.timeout.as_secs_f64()
    );
    for (name, kernel) in [("mote", &options.kernel), ("null", &options.null_guest)] {
        let command = command(options, kernel, &example_ports);
        println!("  {name}: {}", command.command_line());
    }
    println!(
        "  (fresh host ports each boot; mote is polled with GET /health every 1 ms, then POST /poweroff)"
    );

    let mut measurement = Measurement::default();
    let rounds = WARMUP_ROUNDS + options.runs;
    for round in 0..rounds {
        let warmup = round < WARMUP_ROUNDS;
        let label = if warmup {
            format!("warm-up {}/{WARMUP_ROUNDS}", round + 1)
        } else {
            format!("round {}/{}", round + 1 - WARMUP_ROUNDS, options.runs)
        };
        let mote_first = round % 2 == 0;
        let mut line = Vec::new();
        for mote in [mote_first, !mote_first] {
            if mote {
                match boot_mote(options) {
                    Ok(boot) => {
                        line.push(format!("mote first 200 at {:.1} ms", boot.first_ok_ms));
                        if !warmup {
                            measurement.first_ok_ms.push(boot.first_ok_ms);
                            measurement.listening_line_ms.extend(boot.listening_line_ms);
                        }
                    }
                    Err(reason) => {
                        line.push("mote FAILED".to_owned());
                        measurement
                            .failures
                            .push(format!("{label}, mote: {reason}"));
                    }
                }
            } else {
                match boot_null_guest(options) {
                    Ok(exit_ms) => {
                        line.push(format!("null exit at {exit_ms:.1} ms"));
                        if !warmup {
                            measurement.floor_ms.push(exit_ms);
                        }
                    }
                    Err(reason) => {
                        line.push("null FAILED".to_owned());
                        measurement
                            .failures
                            .push(format!("{label}, null guest: {reason}"));
                    }
                }
            }
        }
        println!("{label}: {}", line.join(", "));
    }
    print!("{}", table(&measurement));
    Ok(measurement.failures.is_empty())
}

fn command(options: &MeasureOptions, kernel: &Path, ports: &HostPorts) -> QemuCommand {
    served::served_command(
        crate::vm::qemu::Machine::MicrovmNoAcpi,
        kernel,
        options.accel,
        &options.cmdline,
        ports,
        Some(&options.disk),
    )
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// One served boot: spawn, poll until the first 200, power off.
fn boot_mote(options: &MeasureOptions) -> Result<MoteBoot, String> {
    let ports = HostPorts::pick().map_err(|error| format!("{error:#}"))?;
    let command = command(options, &options.kernel, &ports);
    let mut child = LiveChild::spawn(&mut command.command(), Some(options.timeout), false)
        .map_err(|error| format!("{error:#}"))?;
    let deadline = child.started() + options.timeout;
    let first_ok = first_health_ok(ports.http_address(), &mut child, deadline);
    let power_off = http_client::request(
        ports.http_address(),
        "POST",
        "/poweroff",
        b"",
        REQUEST_TIMEOUT,
    );
    let finished = child
        .finish(Some(POWER_OFF_WITHIN))
        .map_err(|error| format!("{error:#}"))?;
    let first_ok = first_ok?;
    let problems = served::judge_power_off(&power_off, &finished, POWER_OFF_WITHIN);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let listening_line_ms = finished
        .stdout
        .iter()
        .position(|line| line == LISTENING_LINE)
        .and_then(|index| finished.stdout_arrivals.get(index))
        .map(|&arrival| milliseconds(arrival));
    Ok(MoteBoot {
        listening_line_ms,
        first_ok_ms: milliseconds(first_ok),
    })
}

/// The null guest in the same configuration: start → exit.
fn boot_null_guest(options: &MeasureOptions) -> Result<f64, String> {
    let ports = HostPorts::pick().map_err(|error| format!("{error:#}"))?;
    let timed = command(options, &options.null_guest, &ports)
        .run(options.timeout, false)
        .map_err(|error| format!("{error:#}"))?;
    if timed.exit_code != Some(DEBUG_EXIT_SUCCESS) {
        return Err(PowerOff::from_exit(&timed, options.timeout).to_string());
    }
    let exit = timed.exit_time();
    Ok(milliseconds(exit))
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

/// Median of `numerator` over median of `denominator`; `None` without data.
pub(crate) fn ratio_of_medians(numerator: &[f64], denominator: &[f64]) -> Option<f64> {
    if numerator.is_empty() || denominator.is_empty() {
        return None;
    }
    let floor = stats::median(denominator);
    (floor > 0.0).then(|| stats::median(numerator) / floor)
}

/// The summary table, the ratio and the failures, one line each.
pub(crate) fn table(measurement: &Measurement) -> String {
    let mut text = format!(
        "{:<44} {:>3} {:>9} {:>9} {:>9} {:>9}\n",
        "figure (ms)", "n", "min", "median", "p90", "max"
    );
    let row = |text: &mut String, name: &str, values: &[f64]| match stats::summarize(values) {
        Some(Summary {
            count,
            min,
            median,
            p90,
            max,
            ..
        }) => text.push_str(&format!(
            "{name:<44} {count:>3} {min:>9.1} {median:>9.1} {p90:>9.1} {max:>9.1}\n"
        )),
        None => text.push_str(&format!("{name:<44} {:>3} (no data)\n", 0)),
    };
    row(
        &mut text,
        "mote: start -> `mote: listening` line",
        &measurement.listening_line_ms,
    );
    row(
        &mut text,
        "mote: start -> first GET /health 200",
        &measurement.first_ok_ms,
    );
    row(
        &mut text,
        "null guest: start -> exit (QEMU's floor)",
        &measurement.floor_ms,
    );
    match ratio_of_medians(&measurement.first_ok_ms, &measurement.floor_ms) {
        Some(ratio) => text.push_str(&format!(
            "ratio of medians, first 200 / null guest exit: {ratio:.2}x\n"
        )),
        None => text.push_str("ratio of medians: no data\n"),
    }
    if !measurement.failures.is_empty() {
        text.push_str(&format!(
            "{} failed boots (not counted):\n",
            measurement.failures.len()
        ));
        for failure in &measurement.failures {
            text.push_str(&format!("  {failure}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_medians_on_known_data() {
        let ratio = ratio_of_medians(&[50.0, 40.0, 60.0], &[20.0, 30.0, 25.0]).unwrap();
        assert!((ratio - 2.0).abs() < 1e-12);
        assert_eq!(ratio_of_medians(&[], &[1.0]), None);
        assert_eq!(ratio_of_medians(&[1.0], &[]), None);
        assert_eq!(ratio_of_medians(&[1.0], &[0.0]), None);
    }

    #[test]
    fn table_lists_every_figure_the_ratio_and_failures() {
        let measurement = Measurement {
            listening_line_ms: vec![30.0, 32.0, 34.0],
            first_ok_ms: vec![40.0, 44.0, 42.0],
            floor_ms: vec![20.0, 21.0, 22.0],
            failures: vec!["round 2/3, mote: no 200".to_owned()],
        };
        let text = table(&measurement);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("figure (ms)"), "{text}");
        assert!(lines[1].starts_with("mote: start -> `mote: listening` line"));
        assert!(
            lines[1].ends_with("  3      30.0      32.0      33.6      34.0"),
            "{text}"
        );
        assert!(lines[2].contains("     42.0 "), "{text}");
        assert!(lines[3].starts_with("null guest"));
        assert_eq!(
            lines[4],
            "ratio of medians, first 200 / null guest exit: 2.00x"
        );
        assert_eq!(lines[5], "1 failed boots (not counted):");
        assert_eq!(lines[6], "  round 2/3, mote: no 200");
        let empty = table(&Measurement::default());
        assert!(empty.contains("(no data)") && empty.contains("ratio of medians: no data"));
    }

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
