//! A mote boot that stays up and serves: HTTP on guest port 80 and UDP echo
//! on guest port 7, reached from the host through QEMU user networking
//! (slirp) forwards bound to 127.0.0.1 on free ports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::vm::http_client::{self, Response};
use crate::vm::process::{LineWait, LiveChild, TimedFinished};
use crate::vm::qemu::{Accel, HostForward, Machine, QemuCommand, Transport};

/// The guest's HTTP port (the kernel's contract).
pub const GUEST_HTTP_PORT: u16 = 80;
/// The guest's UDP echo port (RFC 862's echo service).
pub const GUEST_UDP_ECHO_PORT: u16 = 7;

/// Linux's `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>`
/// for QEMU's user network (docs/system/devices/net.rst): the guest is
/// 10.0.2.15, the host (gateway and the only address allowed to POST
/// /poweroff) 10.0.2.2.
pub const STATIC_IP_PARAMETER: &str = "ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:mote:eth0:off";
/// DHCP from slirp's built-in server (10.0.2.2), which hands out 10.0.2.15 first.
pub const DHCP_IP_PARAMETER: &str = "ip=dhcp";
/// The guest address under slirp either way, as the kernel reports it.
pub const EXPECTED_GUEST_ADDRESS: &str = "10.0.2.15/24";

/// The command line of a served boot, before any extra words. No
/// `mote.exit=ready`: with it the kernel powers off after its report.
pub fn served_cmdline(ip_parameter: &str) -> String {
    format!("console=ttyS0 {ip_parameter}")
}

/// The report line that says the services are up.
pub const LISTENING_LINE: &str = "mote: listening http 80 udp-echo 7";

/// Report lines that mean the kernel failed.
pub const FAILURE_PREFIXES: [&str; 3] = ["mote: PANIC", "mote: EXCEPTION", "mote: FATAL"];

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

/// The host ports forwarded to the guest's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPorts {
    pub http: u16,
    /// More host ports to the same guest port 80.
    pub extra_http: Vec<u16>,
    pub udp_echo: u16,
}

impl HostPorts {
    /// Two ports free right now on 127.0.0.1 (the OS picks; there is a small
    /// window before QEMU binds them, which [`ServedBoot::start`] retries).
    pub fn pick() -> Result<Self> {
        Self::pick_with_extra_http(0)
    }

    /// Like [`pick`](Self::pick), with `extra` more forwards to guest port
    /// 80 (for bursts of connections; see `EXTRA_HTTP_FORWARDS`).
    pub fn pick_with_extra_http(extra: usize) -> Result<Self> {
        // Hold every picked listener until all are picked, so no port is
        // handed out twice.
        let listeners = (0..=extra)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<std::io::Result<Vec<_>>>()
            .context("picking free TCP ports on 127.0.0.1")?;
        let mut http = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .collect::<std::io::Result<Vec<u16>>>()
            .context("reading picked TCP ports")?;
        let extra_http = http.split_off(1);
        Ok(Self {
            http: http[0],
            extra_http,
            udp_echo: pick_free_udp_port().context("picking a free UDP port on 127.0.0.1")?,
        })
    }

    pub fn forwards(&self) -> Vec<HostForward> {
        let mut forwards: Vec<HostForward> = std::iter::once(self.http)
            .chain(self.extra_http.iter().copied())
            .map(|host_port| HostForward {
                transport: Transport::Tcp,
                host_port,
                guest_port: GUEST_HTTP_PORT,
            })
            .collect();
        forwards.push(HostForward {
            transport: Transport::Udp,
            host_port: self.udp_echo,
            guest_port: GUEST_UDP_ECHO_PORT,
        });
        forwards
    }

    /// Every host address that reaches guest port 80.
    pub fn http_addresses(&self) -> Vec<SocketAddr> {
        std::iter::once(self.http)
            .chain(self.extra_http.iter().copied())
            .map(|port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
            .collect()
    }

    pub fn http_address(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.http))
    }

    pub fn udp_echo_address(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.udp_echo))
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.http_address())
    }
}

/// A TCP port nothing listens on now: bind port 0, read it, let it go.
#[cfg(test)]
pub fn pick_free_tcp_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The same for UDP.
pub fn pick_free_udp_port() -> std::io::Result<u16> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(socket.local_addr()?.port())
}

/// The `mote: net0 mac … ip …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetLine {
    pub mac: String,
    /// `a.b.c.d/prefix`.
    pub address: String,
}

static NET_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^mote: net0 mac ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) ip (\d{1,3}(?:\.\d{1,3}){3}/\d{1,2})$",
    )
    .unwrap()
});

/// The `mote: net0` line in `output`, if any; `Err` for one with the wrong shape.
pub fn find_net_line<S: AsRef<str>>(output: &[S]) -> Option<Result<NetLine, String>> {
    let line = output
        .iter()
        .map(AsRef::as_ref)
        .find(|line| line.starts_with("mote: net0 "))?;
    Some(match NET_LINE.captures(line) {
        Some(captures) => Ok(NetLine {
            mac: captures[1].to_owned(),
            address: captures[2].to_owned(),
        }),
        None => Err(format!("{line:?} does not match {}", NET_LINE.as_str())),
    })
}

/// The kernel's failure lines in `output`.
pub fn failure_lines<S: AsRef<str>>(output: &[S]) -> Vec<String> {
    output
        .iter()
        .map(AsRef::as_ref)
        .filter(|line| {
            FAILURE_PREFIXES
                .iter()
                .any(|prefix| line.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

/// The QEMU command of a served boot: `run`'s machine, the forwards, and
/// optionally `run`'s disk.
pub fn served_command(
    machine: Machine,
    kernel: &Path,
    accel: Accel,
    cmdline: &str,
    ports: &HostPorts,
    disk: Option<&Path>,
) -> QemuCommand {
    let mut command = QemuCommand::new(machine, accel, kernel).append(cmdline);
    if machine == Machine::MicrovmDefaults {
        // ACPI on, but keep the verdict: mote tries isa-debug-exit first.
        command = command.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
    }
    if let Some(disk) = disk {
        command = command.virtio_blk(disk, "disk0");
    }
    command.virtio_net_user_forwarded("net0", &ports.forwards())
}

/// A running served boot.
pub struct ServedBoot {
    child: LiveChild,
    pub ports: HostPorts,
    pub command_line: String,
}

/// How a served boot failed to come up: the reason and the output so far.
pub struct StartFailure {
    pub reason: String,
    pub command_line: String,
    pub output: Vec<String>,
}

impl ServedBoot {
    /// Boots and waits up to `listen_within` for [`LISTENING_LINE`]; QEMU is
    /// killed after `timeout` whatever happens. `extra_args` go after the
    /// machine's own (e.g. a disk is added by the caller through `disk`).
    pub fn start(
        machine: Machine,
        kernel: &Path,
        accel: Accel,
        cmdline: &str,
        disk: Option<&Path>,
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
            let command = served_command(machine, kernel, accel, cmdline, &ports, disk);
            let command_line = command.command_line();
            let failure = |reason: String, output: Vec<String>| StartFailure {
                reason,
                command_line: command_line.clone(),
                output,
            };
            let mut child = LiveChild::spawn(&mut command.command(), Some(timeout), false)
                .map_err(|error| failure(format!("{error:#}"), Vec::new()))?;
            let waited = child
                .wait_for_stdout(|line| line == LISTENING_LINE, listen_within)
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
                    let failures = failure_lines(&output);
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
                        .map(|timed| timed.finished.describe_end(timeout))
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

    pub fn http_address(&self) -> SocketAddr {
        self.ports.http_address()
    }

    pub fn http_addresses(&self) -> Vec<SocketAddr> {
        self.ports.http_addresses()
    }

    pub fn udp_echo_address(&self) -> SocketAddr {
        self.ports.udp_echo_address()
    }

    /// QEMU's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Serial output so far (collects what has arrived first).
    pub fn stdout(&mut self) -> &[String] {
        let _ = self.child.poll();
        self.child.stdout()
    }

    /// `POST /poweroff` (from the host, which the guest sees as 10.0.2.2)
    /// and waits up to `exit_within` for QEMU to exit; QEMU is killed if it
    /// does not.
    pub fn power_off(
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
pub struct PowerOffRun {
    /// The response, or why there was none.
    pub response: Result<Response, String>,
    /// From sending the request to the server closing the connection.
    pub answered_after: Duration,
    /// From sending the request to QEMU's exit being noticed.
    pub exited_after: Duration,
    pub finished: TimedFinished,
}

/// Checks that a run ended the way a served boot must after POST /poweroff:
/// 202, QEMU exit 33 within the limit, `mote: poweroff success` last, and
/// no failure lines. Returns every problem.
pub fn judge_power_off(
    response: &Result<Response, String>,
    finished: &TimedFinished,
    exit_within: Duration,
) -> Vec<String> {
    use crate::guest_output::report::BootReport;
    use crate::vm::qemu::PowerOff;
    let mut problems = Vec::new();
    match response {
        Ok(response) if response.status == 202 => {}
        Ok(response) => problems.push(format!(
            "POST /poweroff answered {} {}, not 202",
            response.status, response.reason
        )),
        Err(reason) => problems.push(reason.clone()),
    }
    let power_off = PowerOff::from_exit(&finished.finished, exit_within);
    if !power_off.is_success() {
        problems.push(format!("after POST /poweroff: {power_off}"));
    }
    let report = BootReport::parse(&finished.finished.stdout);
    problems.extend(
        report
            .problems
            .iter()
            .map(|problem| format!("malformed report line {problem}")),
    );
    problems.extend(failure_lines(&finished.finished.stdout));
    if report.poweroff_success != Some(true) {
        problems.push(format!(
            "the last report line is {:?}, not `mote: poweroff success`",
            report.last_line().unwrap_or("(none)")
        ));
    }
    problems
}

/// The line `run` prints before booting: where the guest's services are reachable.
pub fn describe_ports(ports: &HostPorts) -> String {
    format!(
        "xtask: guest http {GUEST_HTTP_PORT} at {}, guest udp echo {GUEST_UDP_ECHO_PORT} at {}",
        ports.url(),
        ports.udp_echo_address()
    )
}

/// Reads `mote: net0 …` and requires the slirp address.
pub fn check_net_line<S: AsRef<str>>(output: &[S]) -> Result<NetLine> {
    match find_net_line(output) {
        None => bail!("no `mote: net0 mac … ip …` line"),
        Some(Err(reason)) => bail!("{reason}"),
        Some(Ok(line)) if line.address != EXPECTED_GUEST_ADDRESS => bail!(
            "net0 has address {}, expected {EXPECTED_GUEST_ADDRESS}",
            line.address
        ),
        Some(Ok(line)) => Ok(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_ports_that_can_be_bound_again() {
        let ports = HostPorts::pick_with_extra_http(EXTRA_HTTP_FORWARDS).unwrap();
        assert_ne!(ports.http, 0);
        assert_ne!(ports.udp_echo, 0);
        TcpListener::bind(ports.http_address()).unwrap();
        UdpSocket::bind(ports.udp_echo_address()).unwrap();
        assert_eq!(ports.url(), format!("http://127.0.0.1:{}/", ports.http));
        let forwards = ports.forwards();
        assert_eq!(forwards.len(), 1 + EXTRA_HTTP_FORWARDS + 1);
        assert_eq!(
            forwards[0].to_string(),
            format!("tcp:127.0.0.1:{}-:80", ports.http)
        );
        assert_eq!(
            forwards.last().unwrap().to_string(),
            format!("udp:127.0.0.1:{}-:7", ports.udp_echo)
        );
        let mut http_ports: Vec<u16> = ports.http_addresses().iter().map(|a| a.port()).collect();
        assert_eq!(http_ports.len(), 1 + EXTRA_HTTP_FORWARDS);
        http_ports.sort_unstable();
        http_ports.dedup();
        assert_eq!(
            http_ports.len(),
            1 + EXTRA_HTTP_FORWARDS,
            "no port picked twice"
        );
        assert!(
            forwards[1..=EXTRA_HTTP_FORWARDS]
                .iter()
                .all(|f| f.guest_port == 80)
        );
    }

    #[test]
    fn reads_the_net_line() {
        let output = [
            "mote: ready 5000 us after entry",
            "mote: net0 mac 52:54:00:12:34:56 ip 10.0.2.15/24",
            LISTENING_LINE,
        ];
        assert_eq!(
            find_net_line(&output),
            Some(Ok(NetLine {
                mac: "52:54:00:12:34:56".to_owned(),
                address: "10.0.2.15/24".to_owned()
            }))
        );
        assert!(check_net_line(&output).is_ok());
        assert!(find_net_line(&["mote: ready 1 us after entry"]).is_none());
        assert!(matches!(
            find_net_line(&["mote: net0 mac 52:54:00:12:34 ip 10.0.2.15/24"]),
            Some(Err(_))
        ));
        let elsewhere = ["mote: net0 mac 52:54:00:12:34:56 ip 192.168.1.2/24"];
        let error = check_net_line(&elsewhere).unwrap_err().to_string();
        assert!(error.contains("192.168.1.2/24"), "{error}");
    }

    #[test]
    fn finds_failure_lines() {
        let output = [
            "mote: ready 1 us after entry",
            "mote: PANIC at kernel/src/net.rs:10: oops",
            "[INFO ] mote: EXCEPTION in a log line does not count",
            "mote: EXCEPTION page fault",
        ];
        assert_eq!(
            failure_lines(&output),
            [
                "mote: PANIC at kernel/src/net.rs:10: oops",
                "mote: EXCEPTION page fault"
            ]
        );
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
            None,
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
        assert!(line.contains("isa-debug-exit"), "{line}");
    }
}
