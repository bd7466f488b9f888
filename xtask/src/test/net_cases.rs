//! The network boot tests: served boots talked to over HTTP and UDP, through
//! QEMU's forwarded loopback ports or a tap in a namespace of their own
//! (Firecracker always; QEMU for the load case, where slirp's listen
//! backlog of one would cap it). Each case boots, waits for
//! `mote: listening`, runs its traffic, then ends the VM with
//! `POST /poweroff` and requires a success power-off and a clean report.

use crate::env::images::{self, MIB};
use crate::env::workspace;
use crate::vm::accel::Accel;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mote_boot::protocol::report::{Discovery, Line, VirtioMmio};

use super::net_load;
use crate::guest_output::report::BootReport;
use crate::guest_output::tslog::{self, Trace};
use crate::test::boot_runner::{CaseResult, Target};
use crate::test::proc_stat;
use crate::vm::cmdline::{self, DHCP_IP_PARAMETER, STATIC_IP_PARAMETER};
use crate::vm::http_client::{self, Response};
use crate::vm::served::{self, ServedBoot, ServedNetwork, ServedVm};
use crate::vm::tap_namespace;
use crate::vm::vmm::VmmKind;
use crate::vm::vmm::qemu::Machine;

/// How many lines of output a failure shows.
const FAILURE_TAIL_LINES: usize = 30;

/// From QEMU's start to `mote: listening` (about a second under TCG).
const LISTEN_WITHIN: Duration = Duration::from_secs(30);

/// One request, connect to last byte; generous for TCG on a loaded machine.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// From the 202 of POST /poweroff to QEMU's exit.
const POWER_OFF_WITHIN: Duration = Duration::from_secs(10);

/// Each UDP echo is tried this many times, waiting this long for the reply.
const UDP_ATTEMPTS: usize = 3;
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
const UDP_SIZES: [usize; 3] = [1, 100, 1400];

/// The header block limit of the kernel is 8 KiB; this is past it.
const OVERSIZED_HEADER_BYTES: usize = 9 * 1024;

/// Wall time over which the idle VMM's CPU use is measured, after a settling pause.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// Percent of one core an idle served VM may use.
const IDLE_CPU_LIMIT_PERCENT: f64 = 2.0;

/// What a case's traffic found: failures (empty if it passed) and figures to print.
#[derive(Default)]
pub(super) struct Findings {
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    pub(super) fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }

    pub(super) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// One served boot and the traffic it must survive.
pub(crate) struct NetCase {
    pub(crate) name: &'static str,
    /// The `ip=` word of the command line.
    ip_parameter: &'static str,
    machine: Machine,
    /// How QEMU's guest is reached (other VMMs always use a tap).
    qemu_network: ServedNetwork,
    /// The VMMs it applies to.
    pub(crate) vmms: &'static [VmmKind],
    /// The VMM is killed after this long, whatever happens.
    timeout: Duration,
    traffic: fn(&mut ServedBoot, &mut Findings),
    /// Its verdict rests on the guest's clock keeping the host's pace
    /// (idle timeouts under load, CPU use while idle): not under icount.
    needs_real_time: bool,
    /// A budget case of xtask/budgets.txt (named as the case): QEMU under
    /// icount only, with the trace's markers and QEMU's memory-region trace.
    budget: bool,
    /// Firecracker with `--enable-pci`.
    pci: bool,
    /// Words added to the served command line.
    append: &'static str,
}

/// Why a [`NetCase::budget`] case runs under icount only.
const BUDGET_ICOUNT: &str =
    "a budget case: its instruction and exit counts are exact under --accel icount only";

/// Why a [`NetCase::needs_real_time`] case cannot run under icount.
const ICOUNT_CLOCK: &str = "needs --accel tcg or kvm: under --accel icount (sleep=off) the guest's clock \
    jumps ahead whenever it idles, so its 5 s idle timeout closes connections the host still uses, \
    and QEMU never sleeps";

/// Every VMM (Cloud Hypervisor's NIC is virtio-pci).
const EVERY_VMM: &[VmmKind] = &[
    VmmKind::Qemu,
    VmmKind::Firecracker,
    VmmKind::CloudHypervisor,
];
const QEMU_ONLY: &[VmmKind] = &[VmmKind::Qemu];

pub(crate) fn net_cases() -> Vec<NetCase> {
    let case = |name, traffic, timeout_seconds| NetCase {
        name,
        ip_parameter: STATIC_IP_PARAMETER,
        machine: Machine::MicrovmNoAcpi,
        qemu_network: ServedNetwork::Slirp,
        vmms: QEMU_ONLY,
        timeout: Duration::from_secs(timeout_seconds),
        traffic,
        needs_real_time: false,
        budget: false,
        pci: false,
        append: "",
    };
    vec![
        NetCase {
            vmms: EVERY_VMM,
            ..case("net-http", http_endpoints as fn(&mut _, &mut _), 90)
        },
        NetCase {
            vmms: EVERY_VMM,
            ..case("net-udp-echo", udp_echo, 60)
        },
        // An interrupt on a vector nothing routed (its IDT gate closed) is
        // counted, reported and survived.
        NetCase {
            vmms: EVERY_VMM,
            append: "mote.inject=stray-interrupt",
            ..case("net-stray-interrupt", stray_interrupt, 60)
        },
        NetCase {
            vmms: EVERY_VMM,
            qemu_network: ServedNetwork::Tap,
            needs_real_time: true,
            ..case("net-load", net_load::load, 300)
        },
        // QEMU (TCG) only: Firecracker needs KVM, which here emulates every
        // instruction; see `net_load::LOAD_CONNECTIONS`.
        NetCase {
            qemu_network: ServedNetwork::Tap,
            needs_real_time: true,
            ..case("net-burst", net_load::burst, 180)
        },
        NetCase {
            needs_real_time: true,
            ..case("net-idle-cpu", idle_cpu, 60)
        },
        NetCase {
            ip_parameter: DHCP_IP_PARAMETER,
            ..case("net-dhcp", dhcp, 60)
        },
        // QEMU's default microvm: the NIC found in the DSDT, its GSI (47) on
        // the second I/O APIC found in the MADT.
        NetCase {
            machine: Machine::MicrovmDefaults,
            ..case("net-acpi", acpi, 60)
        },
        // The served boot's budgets (xtask/budgets.txt): a 1 MiB disk and
        // the NIC, static ip=, the dump read with GET /tslog while it
        // serves and kept in target/test/budget-served.tslog.
        NetCase {
            budget: true,
            ..case("budget-served", served_budget, 90)
        },
        // Firecracker --enable-pci: the NIC on virtio-pci with MSI-X, its
        // BAR at 256 GiB.
        NetCase {
            vmms: &[VmmKind::Firecracker],
            pci: true,
            ..case("net-http-pci", http_endpoints as fn(&mut _, &mut _), 90)
        },
        // QEMU q35: the NIC is a virtio-net-pci function, served on its
        // MSI-X interrupts (one entry per queue of the four it has).
        NetCase {
            machine: Machine::Q35,
            ..case("net-http-q35", http_endpoints_over_msix, 90)
        },
        // QEMU microvm,pcie=on: the NIC's BARs assigned by mote from the
        // host bridge's windows, ECAM from its _CBA, MSI-X as on q35.
        NetCase {
            machine: Machine::MicrovmPcie,
            ..case("net-http-microvm-pcie", http_endpoints_over_msix, 90)
        },
        // The same NIC idle: nothing polls it, so the VMM sleeps. The
        // idle case's limit holds for Cloud Hypervisor's MSI-X NIC too.
        NetCase {
            machine: Machine::Q35,
            vmms: &[VmmKind::Qemu, VmmKind::CloudHypervisor],
            needs_real_time: true,
            ..case("net-idle-cpu-pci", idle_cpu, 60)
        },
    ]
}

/// The cases whose name contains `filter` (all without one).
#[cfg(test)]
fn selected(filter: Option<&str>) -> Vec<NetCase> {
    net_cases()
        .into_iter()
        .filter(|case| filter.is_none_or(|filter| case.name.contains(filter)))
        .collect()
}

/// Runs `cases` one after another (the load and CPU figures need the
/// machine to themselves), printing each result as it arrives.
pub(crate) fn run_cases(cases: &[NetCase], target: &Target, kernel: &Path) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|case| {
            let (result, notes) = run_case(case, target, kernel);
            result.print();
            for note in notes {
                println!("     {note}");
            }
            result
        })
        .collect()
}

/// Whether `case` can run on `target` here: a tap needs root.
pub(crate) fn unavailable(case: &NetCase, target: &Target) -> Option<String> {
    if case.needs_real_time && target.accel == Accel::Icount {
        return Some(ICOUNT_CLOCK.to_owned());
    }
    if case.budget && target.accel != Accel::Icount {
        return Some(BUDGET_ICOUNT.to_owned());
    }
    let network = network_on(case, target);
    if network == ServedNetwork::Tap {
        return tap_namespace::available().err();
    }
    None
}

fn network_on(case: &NetCase, target: &Target) -> ServedNetwork {
    match target.vmm.kind {
        VmmKind::Qemu => case.qemu_network,
        _ => ServedNetwork::Tap,
    }
}

fn run_case(case: &NetCase, target: &Target, kernel: &Path) -> (CaseResult, Vec<String>) {
    let start = Instant::now();
    let name = target.case_name(case.name);
    let mut cmdline = cmdline::served_cmdline(case.ip_parameter);
    if !case.append.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(case.append);
    }
    let mut qemu_args = Vec::new();
    if case.budget {
        cmdline.push_str(" mote.tslog=markers");
        qemu_args = super::budgets::trace_arguments(case.name);
        // Issue #12's served boot is disk + NIC: a read-only 1 MiB disk
        // beside the NIC, as in budget-boot.
        let disk = workspace::test_fixture_dir().join("budget-disk.img");
        if let Err(error) = images::ensure_disk_image(&disk, MIB) {
            let result = CaseResult {
                name,
                elapsed: start.elapsed(),
                failures: vec![format!("{error:#}")],
                command_line: String::new(),
                tail: Vec::new(),
            };
            return (result, Vec::new());
        }
        qemu_args.extend([
            "-drive".to_owned(),
            format!(
                "file={},format=raw,if=none,id=disk0,readonly=on",
                disk.display()
            ),
            "-device".to_owned(),
            "virtio-blk-device,drive=disk0".to_owned(),
        ]);
    }
    let vm = ServedVm {
        vmm: target.vmm.clone(),
        machine: case.machine,
        accel: target.accel,
        network: network_on(case, target),
        peer: None,
        qemu_args,
        pci: case.pci,
    };
    let mut boot = match ServedBoot::start(&vm, kernel, &cmdline, case.timeout, LISTEN_WITHIN) {
        Ok(boot) => boot,
        Err(failure) => {
            let tail =
                failure.output[failure.output.len().saturating_sub(FAILURE_TAIL_LINES)..].to_vec();
            let result = CaseResult {
                name,
                elapsed: start.elapsed(),
                failures: vec![failure.reason],
                command_line: failure.command_line,
                tail,
            };
            return (result, Vec::new());
        }
    };
    let command_line = boot.command_line.clone();
    let mut findings = Findings::default();
    if let Err(error) = served::check_net_line(boot.stdout()) {
        findings.fail(format!("{error:#}"));
    }
    let traffic = case.traffic;
    if let Err(error) = boot.reachable(|boot| traffic(boot, &mut findings)) {
        findings.fail(format!("{error:#}"));
    }

    let (failures, tail) = match boot.power_off(REQUEST_TIMEOUT, POWER_OFF_WITHIN) {
        Ok(run) => {
            let mut failures = findings.failures;
            failures.extend(served::judge_power_off(
                &run.response,
                &run.finished,
                &run.ending,
            ));
            if !run.log_problems.is_empty() {
                failures.push(format!(
                    "{} logged {} error line(s): {}",
                    target.vmm.kind,
                    run.log_problems.len(),
                    run.log_problems[..run.log_problems.len().min(10)].join(" | ")
                ));
            }
            if failures.is_empty() {
                findings.notes.push(format!(
                    "POST /poweroff: 202 after {:.1} ms, {} after {:.1} ms",
                    run.answered_after.as_secs_f64() * 1e3,
                    run.ending,
                    run.exited_after.as_secs_f64() * 1e3
                ));
            }
            let mut tail = run.finished.tail(FAILURE_TAIL_LINES);
            tail.extend(
                run.log[run.log.len().saturating_sub(FAILURE_TAIL_LINES)..]
                    .iter()
                    .map(|line| format!("log: {line}")),
            );
            (failures, tail)
        }
        Err(error) => {
            let mut failures = findings.failures;
            failures.push(format!("{error:#}"));
            (failures, Vec::new())
        }
    };
    let result = CaseResult {
        name,
        elapsed: start.elapsed(),
        failures,
        command_line,
        tail,
    };
    (result, findings.notes)
}

/// `GET path` must answer `status`; returns the response if it did.
/// `budget-served`: the dump of the boot, read while it serves, and
/// QEMU's memory-region trace so far, against the case's budgets.
fn served_budget(boot: &mut ServedBoot, findings: &mut Findings) {
    let Some(dump) = expect_status(boot.http_address(), "/tslog", 200, findings) else {
        return;
    };
    let text = dump.body_text();
    let path = super::budgets::dump_path("budget-served");
    if let Err(error) = std::fs::write(&path, &text) {
        findings.fail(format!("writing {}: {error}", path.display()));
    }
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match super::budgets::check_with_figures("budget-served", &lines) {
        Ok(figures) => findings.note(format!(
            "within the budget-served rows of xtask/budgets.txt: {figures}"
        )),
        Err(error) => findings.fail(error),
    }
}

pub(super) fn expect_status(
    address: SocketAddr,
    path: &str,
    status: u16,
    findings: &mut Findings,
) -> Option<Response> {
    match http_client::get(address, path, REQUEST_TIMEOUT) {
        Ok(response) if response.status == status => {
            if !response
                .header("connection")
                .is_some_and(|value| value.eq_ignore_ascii_case("close"))
            {
                findings.fail(format!("GET {path}: no `Connection: close` header"));
            }
            Some(response)
        }
        Ok(response) => {
            findings.fail(format!(
                "GET {path}: {} {}, expected {status}",
                response.status, response.reason
            ));
            None
        }
        Err(reason) => {
            findings.fail(reason);
            None
        }
    }
}

fn is_text_plain(response: &Response) -> bool {
    response
        .header("content-type")
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("text/plain"))
}

/// Raw `request` must be answered with one of `statuses` and a close.
pub(super) fn expect_rejection(
    address: SocketAddr,
    what: &str,
    request: &[u8],
    statuses: &[u16],
) -> Result<u16, String> {
    let exchange = http_client::exchange(address, request, REQUEST_TIMEOUT)
        .map_err(|error| format!("{what}: connect: {error}"))?;
    let expected = statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    match &exchange.response {
        Ok(response) if statuses.contains(&response.status) && exchange.closed => {
            Ok(response.status)
        }
        Ok(response) if statuses.contains(&response.status) => Err(format!(
            "{what}: {} but the connection stayed open for {:.1} s",
            response.status,
            REQUEST_TIMEOUT.as_secs_f64()
        )),
        Ok(response) => Err(format!(
            "{what}: {} {}, expected {expected}",
            response.status, response.reason
        )),
        Err(error) => Err(format!(
            "{what}: expected {expected}, got {error} ({} bytes{})",
            exchange.received.len(),
            exchange
                .write_error
                .as_deref()
                .map(|error| format!(", write failed: {error}"))
                .unwrap_or_default()
        )),
    }
}

/// net-http: every endpoint once.
/// The log line of a virtio-pci NIC whose two queues each got an MSI-X
/// entry (kernel/src/virtio/pci.rs, `MsixPlace::program`).
const MSIX_PER_QUEUE: &str = "MSI-X 2 of 4 entries (one per queue)";

/// [`http_endpoints`] on a virtio-pci NIC that must be on MSI-X: once its
/// entries are unmasked nothing polls it, so the requests answered are
/// the proof the messages arrive; the log line says what was programmed.
/// What the guest logs for `mote.inject=stray-interrupt`'s interrupt.
const STRAY_INTERRUPT_LINE: &str = "1 unexpected interrupt(s), last vector 0x30";

/// `net-stray-interrupt`: the guest still serves, and said what it got.
/// The guest takes it at its serving loop's first halt, which may come
/// after the first requests: the log line is waited for this long.
const STRAY_INTERRUPT_WITHIN: Duration = Duration::from_secs(5);

fn stray_interrupt(boot: &mut ServedBoot, findings: &mut Findings) {
    let _ = expect_status(boot.http_address(), "/health", 200, findings);
    let start = Instant::now();
    let logged = loop {
        let logged = boot
            .stdout()
            .iter()
            .any(|line| line.contains(STRAY_INTERRUPT_LINE));
        if logged || start.elapsed() > STRAY_INTERRUPT_WITHIN {
            break logged;
        }
        thread::sleep(Duration::from_millis(50));
    };
    if logged {
        findings.note(format!("the guest logged `{STRAY_INTERRUPT_LINE}`"));
    } else {
        findings.fail(format!(
            "no `{STRAY_INTERRUPT_LINE}` log line: the stray interrupt was not counted"
        ));
    }
}

fn http_endpoints_over_msix(boot: &mut ServedBoot, findings: &mut Findings) {
    http_endpoints(boot, findings);
    if !boot
        .stdout()
        .iter()
        .any(|line| line.contains(MSIX_PER_QUEUE))
    {
        findings.fail(format!(
            "no `{MSIX_PER_QUEUE}` log line: the NIC's MSI-X was not programmed"
        ));
    }
}

fn http_endpoints(boot: &mut ServedBoot, findings: &mut Findings) {
    let address = boot.http_address();
    let tsc_source = BootReport::parse(boot.stdout()).tsc.map(|tsc| tsc.source);

    if let Some(status) = expect_status(address, "/", 200, findings) {
        let body = status.body_text();
        if !is_text_plain(&status) {
            findings.fail("GET /: Content-Type is not text/plain");
        }
        match &tsc_source {
            Some(source) if body.contains(source.word()) => {}
            Some(source) => findings.fail(format!(
                "GET /: the status page does not mention the TSC source {source:?}"
            )),
            None => findings.fail("no `mote: tsc` report line to compare the status page with"),
        }
        if !body.contains("memory_init") {
            findings.fail("GET /: the status page has no `memory_init` phase");
        }
        findings.note(format!("GET /: 200, {} bytes", status.body.len()));
    }

    if let Some(health) = expect_status(address, "/health", 200, findings)
        && health.body != b"ok\n"
    {
        findings.fail(format!(
            "GET /health: body {:?}, expected \"ok\\n\"",
            health.body_text()
        ));
    }

    if let Some(dump) = expect_status(address, "/tslog", 200, findings) {
        if !is_text_plain(&dump) {
            findings.fail("GET /tslog: Content-Type is not text/plain");
        }
        match tslog::parse_dump(&dump.body_text()) {
            Ok(parsed) => {
                let trace = Trace::build(&parsed.records);
                if !parsed.complete {
                    findings.fail("GET /tslog: no `mote: tslog end` line");
                }
                if parsed.tsc_hz.is_none() {
                    findings.fail("GET /tslog: no `mote: tslog begin tsc_hz=…` frame");
                }
                if !parsed.garbage.is_empty() {
                    findings.fail(format!(
                        "GET /tslog: {} lines that are not records, first {:?}",
                        parsed.garbage.len(),
                        parsed.garbage[0]
                    ));
                }
                if !trace.ready_seen {
                    findings.fail("GET /tslog: the trace has no `ready` event");
                }
                findings.note(format!(
                    "GET /tslog: 200, {} records, {} spans",
                    parsed.records.len(),
                    trace.spans.len()
                ));
            }
            Err(error) => findings.fail(format!("GET /tslog: {error:#}")),
        }
    }

    expect_status(address, "/nope", 404, findings);

    match expect_rejection(address, "GARBAGE", b"GARBAGE\r\n\r\n", &[400]) {
        Ok(_) => {}
        Err(reason) => findings.fail(reason),
    }
    let mut oversized = b"GET / HTTP/1.1\r\nHost: mote\r\nX-Filler: ".to_vec();
    oversized.resize(oversized.len() + OVERSIZED_HEADER_BYTES, b'a');
    oversized.extend_from_slice(b"\r\n\r\n");
    match expect_rejection(address, "9 KiB header", &oversized, &[431, 400]) {
        Ok(status) => findings.note(format!("9 KiB header: {status} and close")),
        Err(reason) => findings.fail(reason),
    }
}

/// A payload that differs in every byte position and from size to size.
fn udp_payload(size: usize) -> Vec<u8> {
    (0..size)
        .map(|index| (index.wrapping_mul(31).wrapping_add(size)) as u8)
        .collect()
}

/// Sends `payload` until it comes back, at most [`UDP_ATTEMPTS`] times;
/// returns how many sends it took.
fn udp_round_trip(socket: &UdpSocket, payload: &[u8]) -> Result<usize, String> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut last_problem = String::new();
    for attempt in 1..=UDP_ATTEMPTS {
        socket
            .send(payload)
            .map_err(|error| format!("send of {} bytes: {error}", payload.len()))?;
        let deadline = Instant::now() + UDP_REPLY_TIMEOUT;
        let mut problem = None;
        // Late replies to an earlier attempt carry the same payload; anything
        // else is read and discarded until the deadline.
        while let Some(left) = deadline.checked_duration_since(Instant::now())
            && !left.is_zero()
        {
            if let Err(error) = socket.set_read_timeout(Some(left)) {
                return Err(error.to_string());
            }
            match socket.recv(&mut buffer) {
                Ok(count) if &buffer[..count] == payload => return Ok(attempt),
                Ok(count) => {
                    problem = Some(format!(
                        "a {count}-byte reply that is not the {}-byte payload",
                        payload.len()
                    ));
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => {
                    problem = Some(error.to_string());
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        last_problem =
            problem.unwrap_or_else(|| format!("no reply within {} s", UDP_REPLY_TIMEOUT.as_secs()));
    }
    Err(format!(
        "{} bytes: not echoed after {UDP_ATTEMPTS} tries ({last_problem})",
        payload.len()
    ))
}

/// net-udp-echo: datagrams of several sizes come back unchanged.
fn udp_echo(boot: &mut ServedBoot, findings: &mut Findings) {
    let socket = match UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect(boot.udp_echo_address()).map(|()| socket))
    {
        Ok(socket) => socket,
        Err(error) => {
            findings.fail(format!("UDP socket: {error}"));
            return;
        }
    };
    let mut echoed = Vec::new();
    for size in UDP_SIZES {
        let start = Instant::now();
        match udp_round_trip(&socket, &udp_payload(size)) {
            Ok(attempts) => echoed.push(format!(
                "{size} B in {:.1} ms{}",
                start.elapsed().as_secs_f64() * 1e3,
                if attempts > 1 {
                    format!(" ({attempts} tries)")
                } else {
                    String::new()
                }
            )),
            Err(reason) => findings.fail(format!("UDP echo: {reason}")),
        }
    }
    if !echoed.is_empty() {
        findings.note(format!("UDP echo: {}", echoed.join(", ")));
    }
}

/// net-acpi: the device line says `acpi` and GSI 47, and the services
/// answer (so the interrupt from the second I/O APIC arrives).
fn acpi(boot: &mut ServedBoot, findings: &mut Findings) {
    let expected = Line(VirtioMmio {
        base: 0xfeb0_2e00,
        irq: 47,
        kind: "network",
        version: 1,
        found_by: Discovery::Acpi,
    })
    .to_string();
    if !boot.stdout().contains(&expected) {
        findings.fail(format!("no line {expected:?}"));
    }
    for _ in 0..20 {
        if expect_status(boot.http_address(), "/health", 200, findings).is_none() {
            break;
        }
    }
    udp_echo(boot, findings);
}

/// net-dhcp: the address came from slirp's DHCP server (checked by the
/// runner from the `mote: net0` line) and HTTP works on it.
fn dhcp(boot: &mut ServedBoot, findings: &mut Findings) {
    if let Some(health) = expect_status(boot.http_address(), "/health", 200, findings)
        && health.body != b"ok\n"
    {
        findings.fail(format!("GET /health: body {:?}", health.body_text()));
    }
}

/// net-idle-cpu: a served VM with nothing to do must leave the host idle.
fn idle_cpu(boot: &mut ServedBoot, findings: &mut Findings) {
    thread::sleep(IDLE_SETTLE);
    let pid = boot.pid();
    let ticks_per_second = proc_stat::clock_ticks_per_second();
    let measured = (|| -> anyhow::Result<(f64, u64, Duration)> {
        let before = proc_stat::cpu_ticks(pid)?;
        let start = Instant::now();
        thread::sleep(IDLE_WINDOW);
        let after = proc_stat::cpu_ticks(pid)?;
        let wall = start.elapsed();
        let ticks = after.saturating_sub(before);
        Ok((
            proc_stat::percent_of_one_core(ticks, ticks_per_second, wall)?,
            ticks,
            wall,
        ))
    })();
    match measured {
        Ok((percent, ticks, wall)) => {
            let figure = format!(
                "idle VMM used {percent:.2} % of one core ({ticks} ticks at {ticks_per_second} Hz over {:.2} s)",
                wall.as_secs_f64()
            );
            if percent >= IDLE_CPU_LIMIT_PERCENT {
                findings.fail(format!("{figure}, limit {IDLE_CPU_LIMIT_PERCENT} %"));
            }
            findings.note(figure);
        }
        Err(error) => findings.fail(format!("reading the VMM's CPU time: {error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_unique_and_filterable() {
        let names: Vec<_> = net_cases().iter().map(|case| case.name).collect();
        assert_eq!(
            names,
            [
                "net-http",
                "net-udp-echo",
                "net-stray-interrupt",
                "net-load",
                "net-burst",
                "net-idle-cpu",
                "net-dhcp",
                "net-acpi",
                "budget-served",
                "net-http-pci",
                "net-http-q35",
                "net-http-microvm-pcie",
                "net-idle-cpu-pci"
            ]
        );
        assert_eq!(selected(Some("dhcp")).len(), 1);
        assert_eq!(selected(Some("net-")).len(), 12);
        assert!(selected(Some("default-report")).is_empty());
        assert_eq!(selected(None).len(), 13);
        assert_eq!(selected(Some("pcie"))[0].machine, Machine::MicrovmPcie);
        assert_eq!(selected(Some("q35"))[0].machine, Machine::Q35);
        assert_eq!(selected(Some("acpi"))[0].machine, Machine::MicrovmDefaults);
        let dhcp = &selected(Some("dhcp"))[0];
        assert_eq!(dhcp.ip_parameter, "ip=dhcp");
    }

    #[test]
    fn udp_payloads_differ_by_size_and_position() {
        assert_eq!(udp_payload(1).len(), 1);
        let large = udp_payload(1400);
        assert_eq!(large.len(), 1400);
        assert_ne!(large[..100], udp_payload(100)[..]);
        assert!(large.windows(2).all(|pair| pair[0] != pair[1]));
    }

    #[test]
    fn a_udp_echo_server_on_loopback_passes_the_round_trip() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_address = server.local_addr().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            // Drops the first datagram, echoes the rest: a retry must recover.
            let mut first = true;
            while let Ok((count, from)) = server.recv_from(&mut buffer) {
                if !std::mem::take(&mut first) {
                    let _ = server.send_to(&buffer[..count], from);
                }
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server_address).unwrap();
        assert_eq!(udp_round_trip(&client, &udp_payload(100)), Ok(2));
        assert_eq!(udp_round_trip(&client, &udp_payload(1400)), Ok(1));
    }
}
