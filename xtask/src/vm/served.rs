//! A mote boot that stays up and serves: HTTP on guest port 80 and UDP echo
//! on guest port 7, reached from the host through QEMU user networking
//! (slirp) forwards bound to 127.0.0.1 on free ports.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Line, Net, PowerOff as PowerOffLine};

use super::accel::Accel;
use super::http_client::{self, Response};
use super::network::{EXPECTED_GUEST_ADDRESS, HostPorts, LISTENING_LINE};
use super::power_off::PowerOff;
use super::process::{Finished, LineWait, LiveChild};
use super::qemu::{Machine, QemuCommand};
use crate::guest_output::report::{self, BootReport};

/// What QEMU prints when a `hostfwd` port is taken (net/slirp.c).
const HOSTFWD_CONFLICT: &str = "host forwarding rule";

/// Boots tried with fresh ports when one was taken between picking and QEMU binding it.
const PORT_CONFLICT_ATTEMPTS: usize = 3;

/// Host ports forwarded to guest port 80 besides `http` in served test
/// boots (`cargo xtask run` forwards one). QEMU's user
/// networking accepts each forward's connections from a listen(2) backlog
/// of one, so a burst of clients needs several forwards to get in (see
/// `net_cases::CONCURRENT_REQUEST_TIMEOUT`); the guest sees them all on 80.
const EXTRA_HTTP_FORWARDS: usize = 7;

/// The QEMU command of a served boot: the machine and the forwards.
fn served_command(
    machine: Machine,
    kernel: &Path,
    accel: Accel,
    cmdline: &str,
    ports: &HostPorts,
) -> QemuCommand {
    let mut command = QemuCommand::new(machine, accel, kernel).append(cmdline);
    if machine == Machine::MicrovmDefaults {
        command = command.debug_exit_device();
    }
    command.virtio_net_user_forwarded("net0", &ports.forwards())
}

/// A running served boot.
pub(crate) struct ServedBoot {
    child: LiveChild,
    pub(crate) ports: HostPorts,
    pub(crate) command_line: String,
}

/// How a served boot failed to come up: the reason and the output so far.
pub(crate) struct StartFailure {
    pub(crate) reason: String,
    pub(crate) command_line: String,
    pub(crate) output: Vec<String>,
}

impl ServedBoot {
    /// Boots and waits up to `listen_within` for [`LISTENING_LINE`]; QEMU is
    /// killed after `timeout` whatever happens.
    pub(crate) fn start(
        machine: Machine,
        kernel: &Path,
        accel: Accel,
        cmdline: &str,
        timeout: Duration,
        listen_within: Duration,
    ) -> Result<Self, StartFailure> {
        let mut last_failure = None;
        for _ in 0..PORT_CONFLICT_ATTEMPTS {
            let ports = HostPorts::pick_with_extra_http(EXTRA_HTTP_FORWARDS).map_err(|error| {
                StartFailure {
                    reason: format!("{error:#}"),
                    command_line: String::new(),
                    output: Vec::new(),
                }
            })?;
            let command = served_command(machine, kernel, accel, cmdline, &ports);
            let command_line = command.command_line();
            let failure = |reason: String, output: Vec<String>| StartFailure {
                reason,
                command_line: command_line.clone(),
                output,
            };
            let mut child = LiveChild::spawn(&mut command.command(), Some(timeout), false)
                .map_err(|error| failure(format!("{error:#}"), Vec::new()))?;
            let waited = child
                .wait_for_stdout(|line| report::is_line(line, &LISTENING_LINE), listen_within)
                .map_err(|error| failure(format!("{error:#}"), Vec::new()));
            let output = || {
                let mut lines = child.stdout().to_vec();
                lines.extend(child.stderr().iter().map(|line| format!("stderr: {line}")));
                lines
            };
            match waited? {
                Ok(_) => {
                    return Ok(Self {
                        child,
                        ports,
                        command_line,
                    });
                }
                Err(LineWait::Exited)
                    if child
                        .stderr()
                        .iter()
                        .any(|line| line.contains(HOSTFWD_CONFLICT)) =>
                {
                    last_failure = Some(failure(
                        "a forwarded port was taken before QEMU bound it".to_owned(),
                        output(),
                    ));
                }
                Err(LineWait::Exited) => {
                    let output = output();
                    let failures = report::failure_lines(&output);
                    let reason = if failures.is_empty() {
                        format!("QEMU exited before `{LISTENING_LINE}`")
                    } else {
                        format!(
                            "QEMU exited before `{LISTENING_LINE}`: {}",
                            failures.join("; ")
                        )
                    };
                    let finished = child.finish(Some(Duration::ZERO)).ok();
                    let end = finished
                        .map(|finished| finished.describe_end(timeout))
                        .unwrap_or_default();
                    return Err(failure(format!("{reason} ({end})"), output));
                }
                Err(LineWait::TimedOut) => {
                    return Err(failure(
                        format!(
                            "no `{LISTENING_LINE}` within {:.0} s",
                            listen_within.as_secs_f64()
                        ),
                        output(),
                    ));
                }
            }
        }
        Err(last_failure.expect("at least one attempt ran"))
    }

    pub(crate) fn http_address(&self) -> SocketAddr {
        self.ports.http_address()
    }

    pub(crate) fn http_addresses(&self) -> Vec<SocketAddr> {
        self.ports.http_addresses()
    }

    pub(crate) fn udp_echo_address(&self) -> SocketAddr {
        self.ports.udp_echo_address()
    }

    /// QEMU's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Serial output so far (collects what has arrived first).
    pub(crate) fn stdout(&mut self) -> &[String] {
        let _ = self.child.poll();
        self.child.stdout()
    }

    /// `POST /poweroff` (from the host, which the guest sees as 10.0.2.2)
    /// and waits up to `exit_within` for QEMU to exit; QEMU is killed if it
    /// does not.
    pub(crate) fn power_off(
        self,
        request_timeout: Duration,
        exit_within: Duration,
    ) -> Result<PowerOffRun> {
        let start = Instant::now();
        let response = http_client::request(
            self.http_address(),
            "POST",
            "/poweroff",
            b"",
            request_timeout,
        );
        let answered_after = start.elapsed();
        let finished = self.child.finish(Some(exit_within))?;
        Ok(PowerOffRun {
            response,
            answered_after,
            exited_after: start.elapsed(),
            finished,
        })
    }
}

/// What `POST /poweroff` did.
pub(crate) struct PowerOffRun {
    /// The response, or why there was none.
    pub(crate) response: Result<Response, String>,
    /// From sending the request to the server closing the connection.
    pub(crate) answered_after: Duration,
    /// From sending the request to QEMU's exit being noticed.
    pub(crate) exited_after: Duration,
    pub(crate) finished: Finished,
}

/// Checks that a run ended the way a served boot must after POST /poweroff:
/// 202, QEMU's success exit within the limit, `mote: poweroff success` last, and
/// no failure lines. Returns every problem.
pub(crate) fn judge_power_off(
    response: &Result<Response, String>,
    finished: &Finished,
    exit_within: Duration,
) -> Vec<String> {
    let mut problems = Vec::new();
    match response {
        Ok(response) if response.status == 202 => {}
        Ok(response) => problems.push(format!(
            "POST /poweroff answered {} {}, not 202",
            response.status, response.reason
        )),
        Err(reason) => problems.push(reason.clone()),
    }
    let power_off = PowerOff::from_exit(finished, exit_within);
    if !power_off.is_success() {
        problems.push(format!("after POST /poweroff: {power_off}"));
    }
    let report = BootReport::parse(&finished.stdout);
    problems.extend(report.malformed_lines());
    problems.extend(report::failure_lines(&finished.stdout));
    if report.power_off != Some(Status::Success) {
        problems.push(format!(
            "the last report line is {:?}, not `{}`",
            report.last_line().unwrap_or("(none)"),
            Line(PowerOffLine(Status::Success))
        ));
    }
    problems
}

/// Reads `mote: net0 …` and requires the slirp address.
pub(crate) fn check_net_line<S: AsRef<str>>(output: &[S]) -> Result<Net> {
    match report::find_net_line(output) {
        None => bail!("no `mote: net0 mac … ip …` line"),
        Some(Err(reason)) => bail!("{reason}"),
        Some(Ok(net)) if net.address.to_string() != EXPECTED_GUEST_ADDRESS => bail!(
            "net0 has address {}, expected {EXPECTED_GUEST_ADDRESS}",
            net.address
        ),
        Some(Ok(net)) => Ok(net),
    }
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::exit::DEBUG_EXIT_DEVICE;

    use super::*;
    use crate::vm::cmdline::{STATIC_IP_PARAMETER, served_cmdline};

    #[test]
    fn the_net_line_must_carry_the_slirp_address() {
        let output = [
            "mote: ready 5000 us after entry".to_owned(),
            "mote: net0 mac 52:54:00:12:34:56 ip 10.0.2.15/24".to_owned(),
            LISTENING_LINE.to_string(),
        ];
        assert!(check_net_line(&output).is_ok());
        let elsewhere = ["mote: net0 mac 52:54:00:12:34:56 ip 192.168.1.2/24"];
        let error = check_net_line(&elsewhere).unwrap_err().to_string();
        assert!(error.contains("192.168.1.2/24"), "{error}");
        assert!(check_net_line(&["mote: ready 1 us after entry"]).is_err());
    }

    #[test]
    fn served_command_line_has_no_exit_option_and_forwards_both_ports() {
        let ports = HostPorts {
            http: 40080,
            extra_http: Vec::new(),
            udp_echo: 40007,
        };
        let cmdline = served_cmdline(STATIC_IP_PARAMETER);
        assert_eq!(
            cmdline,
            "console=ttyS0 ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:mote:eth0:off"
        );
        let line = served_command(
            Machine::MicrovmNoAcpi,
            Path::new("target/kernel"),
            Accel::Tcg,
            &cmdline,
            &ports,
        )
        .command_line();
        assert!(!line.contains("mote.exit"), "{line}");
        assert!(
            line.contains(
                "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:40080-:80,hostfwd=udp:127.0.0.1:40007-:7 \
                 -device virtio-net-device,netdev=net0"
            ),
            "{line}"
        );
        assert!(line.contains(DEBUG_EXIT_DEVICE), "{line}");
    }
}
