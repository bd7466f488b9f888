//! A mote boot that stays up and serves: HTTP on guest port 80 and UDP echo
//! on guest port 7, reached from the host through QEMU user networking
//! (slirp) forwards bound to 127.0.0.1 on free ports, or, on any VMM,
//! through a tap device in a network namespace of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Line, Net, PowerOff as PowerOffLine};

use super::accel::Accel;
use super::http_client::{self, Response};
use super::network::{
    EXPECTED_GUEST_ADDRESS, GUEST_HTTP_PORT, GUEST_UDP_ECHO_PORT, HostPorts, LISTENING_LINE,
};
use super::power_off::PowerOff;
use super::process::{Finished, LineWait, LiveChild};
use super::tap_namespace::{TAP_NAME, TapNamespace};
use super::vmm::qemu::{self, Machine, QemuCommand};
use super::vmm::{Invocation, VmSpec, Vmm, VmmKind};
use crate::guest_output::report::{self, BootReport};

/// What QEMU prints when a `hostfwd` port is taken (net/slirp.c).
const HOSTFWD_CONFLICT: &str = "host forwarding rule";

/// Boots tried with fresh ports when one was taken between picking and QEMU binding it.
const PORT_CONFLICT_ATTEMPTS: usize = 3;

/// Host ports forwarded to guest port 80 besides `http` in served test
/// boots (`cargo xtask run` forwards one). QEMU's user
/// networking accepts each forward's connections from a listen(2) backlog
/// of one, so a burst of clients needs several forwards to get in (the
/// load case therefore runs over a tap); the guest sees them all on 80.
const EXTRA_HTTP_FORWARDS: usize = 7;

/// The QEMU command of a served boot: the machine and the forwards.
fn served_command(
    machine: Machine,
    kernel: &Path,
    accel: Accel,
    cmdline: &str,
    ports: &HostPorts,
) -> QemuCommand {
    served_qemu(machine, kernel, accel, cmdline)
        .virtio_net_user_forwarded("net0", &ports.forwards())
}

/// QEMU with the machine's exit device, before its NIC is added.
fn served_qemu(machine: Machine, kernel: &Path, accel: Accel, cmdline: &str) -> QemuCommand {
    let mut command = QemuCommand::new(machine, accel, kernel).append(cmdline);
    if matches!(machine, Machine::MicrovmDefaults | Machine::MicrovmPcie) {
        command = command.debug_exit_device();
    }
    command
}

/// How the host reaches a served guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServedNetwork {
    /// QEMU user networking, host ports on 127.0.0.1 forwarded to the guest (QEMU only).
    Slirp,
    /// A tap device in a network namespace xtask makes (root); the guest at
    /// its own address, [`TAP_GUEST_ADDRESS`].
    Tap,
}

/// The guest's address on a tap network (the `ip=` of `cmdline::STATIC_IP_PARAMETER`).
const TAP_GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// What a served boot runs on: the VMM, and for QEMU its machine and accelerator.
#[derive(Debug, Clone)]
pub(crate) struct ServedVm {
    pub(crate) vmm: Vmm,
    pub(crate) machine: Machine,
    pub(crate) accel: Accel,
    pub(crate) network: ServedNetwork,
    /// Another kernel than mote, serving HTTP on port 80 (QEMU over a tap only).
    pub(crate) peer: Option<PeerGuest>,
    /// More QEMU arguments (QEMU only; the budget case's memory-region trace).
    pub(crate) qemu_args: Vec<String>,
    /// Firecracker's `--enable-pci` (`VmSpec::pci`).
    pub(crate) pci: bool,
}

/// A kernel other than mote booted as a served guest: the Linux peer
/// (`cargo xtask peer linux`), compared with mote under the same load.
#[derive(Debug, Clone)]
pub(crate) struct PeerGuest {
    pub(crate) initrd: PathBuf,
    /// The whole line it prints once it serves (mote's is [`LISTENING_LINE`]).
    pub(crate) ready_line: String,
    /// Whether its microvm needs ACPI (the Debian kernel finds its
    /// virtio-mmio devices only in the DSDT).
    pub(crate) acpi: bool,
    /// The request that powers it off (method, path); it may close the
    /// connection unanswered while it goes down.
    pub(crate) power_off: (String, String),
}

/// Where the host reaches the guest's services.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addresses {
    http: Vec<SocketAddr>,
    udp_echo: SocketAddr,
}

/// A running served boot.
pub(crate) struct ServedBoot {
    // Fields drop in this order: the VMM is killed before its files and
    // its namespace go.
    child: LiveChild,
    invocation: Option<Invocation>,
    namespace: Option<TapNamespace>,
    addresses: Addresses,
    vmm: Vmm,
    pub(crate) command_line: String,
}

/// How a served boot failed to come up: the reason and the output so far.
pub(crate) struct StartFailure {
    pub(crate) reason: String,
    pub(crate) command_line: String,
    pub(crate) output: Vec<String>,
}

impl StartFailure {
    fn bare(error: anyhow::Error) -> Self {
        Self {
            reason: format!("{error:#}"),
            command_line: String::new(),
            output: Vec::new(),
        }
    }
}

/// A served VM's command before it starts, and what it needs kept alive.
struct Prepared {
    command: Command,
    command_line: String,
    invocation: Option<Invocation>,
    namespace: Option<TapNamespace>,
    addresses: Addresses,
}

fn prepare(vm: &ServedVm, kernel: &Path, cmdline: &str) -> Result<Prepared> {
    if vm.network == ServedNetwork::Slirp {
        if vm.vmm.kind != VmmKind::Qemu {
            bail!(
                "{} has no user networking; served boots on it use a tap",
                vm.vmm.kind
            );
        }
        let ports = HostPorts::pick_with_extra_http(EXTRA_HTTP_FORWARDS)?;
        let qemu = served_command(vm.machine, kernel, vm.accel, cmdline, &ports)
            .vmm(&vm.vmm)
            .args(&vm.qemu_args);
        return Ok(Prepared {
            command: qemu.command(),
            command_line: qemu.command_line(),
            invocation: None,
            namespace: None,
            addresses: Addresses {
                http: ports.http_addresses(),
                udp_echo: ports.udp_echo_address(),
            },
        });
    }
    if vm.peer.is_some() && vm.vmm.kind != VmmKind::Qemu {
        bail!(
            "the Linux peer is served on QEMU only: Debian's kernel reads no virtio_mmio.device= \
             (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is off), which is how {} describes its devices",
            vm.vmm.kind
        );
    }
    if !vm.qemu_args.is_empty() && vm.vmm.kind != VmmKind::Qemu {
        bail!("QEMU arguments given for a served boot on {}", vm.vmm.kind);
    }
    let namespace = TapNamespace::create()?;
    let (inner, command_line, invocation) = if vm.vmm.kind == VmmKind::Qemu {
        let mut qemu = served_qemu(vm.machine, kernel, vm.accel, cmdline).vmm(&vm.vmm);
        if let Some(peer) = &vm.peer {
            qemu = qemu
                .machine_options(qemu::microvm_options(peer.acpi))
                .initrd(&peer.initrd);
        }
        let qemu = qemu.virtio_net_tap("net0", TAP_NAME).args(&vm.qemu_args);
        (qemu.command(), qemu.command_line(), None)
    } else {
        let mut spec = VmSpec::new(kernel, cmdline);
        spec.taps.push(TAP_NAME.to_owned());
        spec.pci = vm.pci;
        let mut invocation = vm.vmm.invocation(&spec)?;
        let command = std::mem::replace(&mut invocation.command, Command::new("true"));
        let line = invocation.command_line.clone();
        (command, line, Some(invocation))
    };
    Ok(Prepared {
        command: namespace.wrap(&inner),
        command_line: format!("ip netns exec {} {command_line}", namespace.name()),
        invocation,
        namespace: Some(namespace),
        addresses: Addresses {
            http: vec![SocketAddr::from((TAP_GUEST_ADDRESS, GUEST_HTTP_PORT))],
            udp_echo: SocketAddr::from((TAP_GUEST_ADDRESS, GUEST_UDP_ECHO_PORT)),
        },
    })
}

impl ServedBoot {
    /// Boots and waits up to `listen_within` for [`LISTENING_LINE`]; the VMM
    /// is killed after `timeout` whatever happens.
    pub(crate) fn start(
        vm: &ServedVm,
        kernel: &Path,
        cmdline: &str,
        timeout: Duration,
        listen_within: Duration,
    ) -> Result<Self, StartFailure> {
        let mut last_failure = None;
        for _ in 0..PORT_CONFLICT_ATTEMPTS {
            let mut prepared = prepare(vm, kernel, cmdline).map_err(StartFailure::bare)?;
            let command_line = prepared.command_line.clone();
            let failure = |reason: String, output: Vec<String>| StartFailure {
                reason,
                command_line: command_line.clone(),
                output,
            };
            let mut child = LiveChild::spawn(&mut prepared.command, Some(timeout), false)
                .map_err(|error| failure(format!("{error:#}"), Vec::new()))?;
            if let Some(namespace) = &prepared.namespace {
                namespace.adopt(child.id());
            }
            let ready_line = vm.peer.as_ref().map_or_else(
                || LISTENING_LINE.to_string(),
                |peer| peer.ready_line.clone(),
            );
            let is_ready = |line: &str| match &vm.peer {
                None => report::is_line(line, &LISTENING_LINE),
                Some(peer) => line.trim_end() == peer.ready_line,
            };
            let waited = child
                .wait_for_stdout(is_ready, listen_within)
                .map_err(|error| failure(format!("{error:#}"), Vec::new()));
            let output = |child: &LiveChild| {
                let mut lines = child.stdout().to_vec();
                lines.extend(child.stderr().iter().map(|line| format!("stderr: {line}")));
                if let Some(invocation) = &prepared.invocation {
                    lines.extend(
                        invocation
                            .log_lines()
                            .into_iter()
                            .map(|line| format!("log: {line}")),
                    );
                }
                lines
            };
            match waited? {
                Ok(_) => {
                    return Ok(Self {
                        child,
                        invocation: prepared.invocation,
                        namespace: prepared.namespace,
                        addresses: prepared.addresses,
                        vmm: vm.vmm.clone(),
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
                        output(&child),
                    ));
                }
                Err(LineWait::Exited) => {
                    let lines = output(&child);
                    let failures = report::failure_lines(&lines);
                    let reason = if failures.is_empty() {
                        format!("{} exited before `{ready_line}`", vm.vmm.kind)
                    } else {
                        format!(
                            "{} exited before `{ready_line}`: {}",
                            vm.vmm.kind,
                            failures.join("; ")
                        )
                    };
                    let finished = child.finish(Some(Duration::ZERO)).ok();
                    let end = finished
                        .map(|finished| finished.describe_end(timeout))
                        .unwrap_or_default();
                    return Err(failure(format!("{reason} ({end})"), lines));
                }
                Err(LineWait::TimedOut) => {
                    let lines = output(&child);
                    return Err(failure(
                        format!(
                            "no `{ready_line}` within {:.0} s",
                            listen_within.as_secs_f64()
                        ),
                        lines,
                    ));
                }
            }
        }
        Err(last_failure.expect("at least one attempt ran"))
    }

    pub(crate) fn http_address(&self) -> SocketAddr {
        self.addresses.http[0]
    }

    pub(crate) fn udp_echo_address(&self) -> SocketAddr {
        self.addresses.udp_echo
    }

    /// The VMM's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Serial output so far (collects what has arrived first).
    pub(crate) fn stdout(&mut self) -> &[String] {
        let _ = self.child.poll();
        self.child.stdout()
    }

    /// Runs `work` where the guest is reachable: on this thread under
    /// slirp, on a thread inside the tap's namespace otherwise.
    pub(crate) fn reachable<T: Send>(
        &mut self,
        work: impl FnOnce(&mut Self) -> T + Send,
    ) -> Result<T> {
        match self.namespace.take() {
            None => Ok(work(self)),
            Some(namespace) => {
                let result = namespace.run_inside(|| work(&mut *self));
                self.namespace = Some(namespace);
                result
            }
        }
    }

    /// `command` as it must run to reach the guest: inside the tap's
    /// namespace (`ip netns exec`), or as it is under slirp.
    pub(crate) fn where_reachable(&self, command: &Command) -> Command {
        match &self.namespace {
            Some(namespace) => namespace.wrap(command),
            None => {
                let mut copy = Command::new(command.get_program());
                copy.args(command.get_args());
                copy
            }
        }
    }

    /// `POST /poweroff` (from the host, which the guest sees as 10.0.2.2)
    /// and waits up to `exit_within` for the VMM to exit; it is killed if it
    /// does not. Reaches the guest where it is (see [`Self::reachable`]).
    pub(crate) fn power_off(
        self,
        request_timeout: Duration,
        exit_within: Duration,
    ) -> Result<PowerOffRun> {
        self.power_off_with(("POST", "/poweroff"), request_timeout, exit_within)
    }

    /// [`Self::power_off`] with another request (a peer's).
    pub(crate) fn power_off_with(
        mut self,
        (method, path): (&str, &str),
        request_timeout: Duration,
        exit_within: Duration,
    ) -> Result<PowerOffRun> {
        let start = Instant::now();
        let address = self.http_address();
        let response =
            self.reachable(|_| http_client::request(address, method, path, b"", request_timeout))?;
        let answered_after = start.elapsed();
        let finished = self.child.finish(Some(exit_within))?;
        let ending = self.vmm.ending(&finished, exit_within);
        let log_problems = self
            .invocation
            .as_ref()
            .map(|invocation| invocation.log_problems(self.vmm.kind, &finished))
            .unwrap_or_default();
        let log = self
            .invocation
            .as_ref()
            .map(Invocation::log_lines)
            .unwrap_or_default();
        Ok(PowerOffRun {
            response,
            answered_after,
            exited_after: start.elapsed(),
            finished,
            ending,
            log_problems,
            log,
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
    /// How the VMM's end reads (see [`Vmm::ending`]).
    pub(crate) ending: PowerOff,
    /// Error lines of the VMM's log (see [`Invocation::log_problems`]).
    pub(crate) log_problems: Vec<String>,
    /// The VMM's log file, if it has one apart from its output.
    pub(crate) log: Vec<String>,
}

/// Checks that a run ended the way a served boot must after POST /poweroff:
/// 202, a success `ending` within the limit, `mote: poweroff success` last, and
/// no failure lines. Returns every problem.
pub(crate) fn judge_power_off(
    response: &Result<Response, String>,
    finished: &Finished,
    ending: &PowerOff,
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
    if !ending.is_success() {
        problems.push(format!("after POST /poweroff: {ending}"));
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
