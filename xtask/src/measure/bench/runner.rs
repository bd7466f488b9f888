//! Booting every configuration, interleaved, and turning each boot's output
//! and timings into a [`Sample`].

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Discovery, DiskName, Elapsed, Fact, VirtioMmio};

use regex::Regex;

use super::configuration::{Configuration, Guest};
use super::results::{PhaseTime, Sample};
use super::served::{self, ServedRun};
use crate::guest_output::report::{self, BootReport};
use crate::guest_output::tslog::{self, Trace};
use crate::vm::cmdline::{self, STATIC_IP_PARAMETER};
use crate::vm::http_client::Response;
use crate::vm::network::{HostForward, HostPorts, LISTENING_LINE};
use crate::vm::power_off::PowerOff;
use crate::vm::process::{self, Finished, Output};
use crate::vm::vmm::qemu::{self, Disk, Machine, QemuCommand};
use crate::vm::vmm::{Invocation, VmSpec, Vmm, VmmKind, firecracker};

/// What the configurations boot, and the VMMs they boot on.
pub(crate) struct Images {
    pub(crate) mote: PathBuf,
    pub(crate) null: PathBuf,
    pub(crate) disk: PathBuf,
    /// One binary per VMM kind the configurations use.
    pub(crate) vmms: Vec<Vmm>,
}

impl Images {
    /// The VMM `configuration` boots on; `None` for QEMU means the system one.
    fn vmm(&self, kind: VmmKind) -> Option<&Vmm> {
        self.vmms.iter().find(|vmm| vmm.kind == kind)
    }
}

/// The kernel and command line `configuration` boots.
fn guest_of<'images>(
    configuration: &'images Configuration,
    images: &'images Images,
) -> (&'images Path, String) {
    let join = |base: &str, extra: &str| cmdline::with_append(base, Some(extra));
    match &configuration.guest {
        Guest::Mote if configuration.served => (
            &images.mote,
            join(
                &cmdline::served_cmdline(STATIC_IP_PARAMETER),
                &configuration.kernel_args,
            ),
        ),
        Guest::Mote => (
            &images.mote,
            join(&cmdline::traced_cmdline(), &configuration.kernel_args),
        ),
        Guest::Null => (
            &images.null,
            join(&cmdline::traced_cmdline(), &configuration.kernel_args),
        ),
        Guest::External { kernel, .. } if configuration.served => (
            kernel,
            join(
                &cmdline::served_cmdline(STATIC_IP_PARAMETER),
                &configuration.kernel_args,
            ),
        ),
        Guest::External { kernel, .. } => {
            (kernel, join("console=ttyS0", &configuration.kernel_args))
        }
    }
}

/// QEMU's `-m` syntax (`256M`, `1G`, a bare number of MiB) in MiB, for the other VMMs.
fn memory_mib(size: &str) -> Result<u64> {
    let (digits, factor) = match size.char_indices().last() {
        Some((index, 'M' | 'm')) => (&size[..index], 1),
        Some((index, 'G' | 'g')) => (&size[..index], 1024),
        _ => (size, 1),
    };
    digits
        .parse::<u64>()
        .map(|count| count * factor)
        .map_err(|_| anyhow::anyhow!("memory size {size:?} is not <N>M or <N>G"))
}

/// The invocation of a Firecracker or Cloud Hypervisor configuration (a
/// fresh one per boot: its scratch files go with it).
fn other_invocation(configuration: &Configuration, images: &Images) -> Result<Invocation> {
    let Some(vmm) = images.vmm(configuration.vmm) else {
        bail!(
            "{}: no {} binary was located",
            configuration.name,
            configuration.vmm
        );
    };
    let (kernel, cmdline) = guest_of(configuration, images);
    let mut spec = VmSpec::new(kernel, &cmdline);
    spec.memory_mib = memory_mib(&configuration.memory)?;
    spec.vcpus = configuration.cpus;
    if configuration.blk {
        spec.disks.push(Disk::writable(&images.disk));
    }
    vmm.invocation(&spec)
}

/// The command line of one configuration's boot, as printed and recorded.
pub(crate) fn command_line(
    configuration: &Configuration,
    images: &Images,
    forwards: &[HostForward],
) -> Result<String> {
    if configuration.vmm == VmmKind::Qemu {
        Ok(qemu_command(configuration, images, forwards).command_line())
    } else {
        Ok(other_invocation(configuration, images)?
            .command_line
            .clone())
    }
}

/// The QEMU invocation for one configuration; a served one's NIC forwards
/// `forwards` (fresh ports each boot).
pub(crate) fn qemu_command(
    configuration: &Configuration,
    images: &Images,
    forwards: &[HostForward],
) -> QemuCommand {
    let (kernel, cmdline) = guest_of(configuration, images);
    let mut command = QemuCommand::new(Machine::MicrovmNoAcpi, configuration.accel, kernel)
        .machine_options(qemu::microvm_options(configuration.acpi))
        .cpu(configuration.cpu_model())
        .memory(&configuration.memory)
        .append(&cmdline);
    if configuration.cpus != 1 {
        command = command.args(["-smp".to_owned(), configuration.cpus.to_string()]);
    }
    if let Some(vmm) = images.vmm(VmmKind::Qemu) {
        command = command.vmm(vmm);
    }
    if configuration.modern_virtio {
        command = command.args(["-global", "virtio-mmio.force-legacy=false"]);
    }
    if configuration.blk {
        command = command.virtio_blk(&Disk::writable(&images.disk), "disk0");
    }
    if configuration.net {
        command = command.virtio_net_user_forwarded("net0", forwards);
    }
    if let Guest::External {
        initrd: Some(initrd),
        ..
    } = &configuration.guest
    {
        command = command.initrd(initrd);
    }
    command.args(&configuration.qemu_args)
}

/// The order of round `round`: every configuration once, starting one later
/// each round (A B C, B C A, C A B, …) so no configuration always follows
/// the same one.
fn round_order(configurations: usize, round: usize) -> Vec<usize> {
    (0..configurations)
        .map(|position| (position + round) % configurations.max(1))
        .collect()
}

/// Boots `warmups + runs` rounds and returns every sample in boot order.
pub(crate) fn run_rounds(
    configurations: &[Configuration],
    images: &Images,
    runs: usize,
    warmups: usize,
    timeout: Duration,
) -> Result<Vec<Sample>> {
    let rounds = warmups + runs;
    let total = rounds * configurations.len();
    let mut progress = Progress::new(total);
    let mut samples = Vec::with_capacity(total);
    for round in 0..rounds {
        for index in round_order(configurations.len(), round) {
            let configuration = &configurations[index];
            let sample = boot(configuration, images, timeout)?.sample(
                configuration,
                images,
                round,
                round < warmups,
                timeout,
            );
            progress.update(round, rounds, warmups, &sample);
            samples.push(sample);
        }
    }
    progress.finish();
    Ok(samples)
}

/// What one boot gave: its output, and for a served mote boot what the
/// host saw over HTTP.
enum Boot {
    Plain(Finished),
    /// Firecracker or Cloud Hypervisor: the output and the VMM's own log.
    Other {
        finished: Finished,
        log: Vec<String>,
    },
    Served(ServedRun),
}

/// Boots `configuration` once; a served one gets fresh forwarded ports.
fn boot(configuration: &Configuration, images: &Images, timeout: Duration) -> Result<Boot> {
    if configuration.vmm != VmmKind::Qemu {
        let mut invocation = other_invocation(configuration, images)?;
        let finished = process::run(
            &mut invocation.command,
            timeout,
            Output::Capture { echo: false },
        )?;
        let log = invocation.log_lines();
        return Ok(Boot::Other { finished, log });
    }
    if !configuration.served {
        let command = qemu_command(configuration, images, &[]);
        return Ok(Boot::Plain(command.run(timeout, false)?));
    }
    let ports = HostPorts::pick()?;
    let command = qemu_command(configuration, images, &ports.forwards());
    Ok(match &configuration.guest {
        Guest::Mote => Boot::Served(served::boot(&command, &ports, timeout, MOTE_POWER_OFF)?),
        Guest::External {
            power_off: Some(power_off),
            ..
        } => Boot::Served(served::boot(
            &command,
            &ports,
            timeout,
            (&power_off.method, &power_off.path),
        )?),
        Guest::Null | Guest::External { .. } => Boot::Plain(command.run(timeout, false)?),
    })
}

impl Boot {
    fn sample(
        &self,
        configuration: &Configuration,
        images: &Images,
        round: usize,
        warmup: bool,
        timeout: Duration,
    ) -> Sample {
        let finished = match self {
            Boot::Plain(finished) | Boot::Other { finished, .. } => finished,
            Boot::Served(served) => &served.finished,
        };
        let ending = match images.vmm(configuration.vmm) {
            Some(vmm) => vmm.ending(finished, timeout),
            None => PowerOff::from_exit(finished, timeout),
        };
        let mut sample = sample_from_boot(configuration, round, warmup, finished, &ending, timeout);
        match self {
            Boot::Plain(_) => {}
            Boot::Other { log, .. } => {
                sample.vmm_boot_time_us = firecracker::guest_boot_time_us(log).map(|us| us as f64);
            }
            Boot::Served(served) => {
                if finished.timed_out && served.first_ok.is_ok() {
                    // Killed while waiting for the exit after the power-off request.
                    sample.failure = Some(with_console_tail(
                        format!(
                            "the VM did not exit within {} s of the power-off request and was killed",
                            served::POWER_OFF_WITHIN.as_secs()
                        ),
                        finished,
                    ));
                }
                sample.start_to_listening_line_us = finished
                    .stdout
                    .iter()
                    .position(|line| report::is_line(line, &LISTENING_LINE))
                    .and_then(|index| finished.stdout_arrivals.get(index))
                    .map(|&arrival| micros(arrival));
                match &served.first_ok {
                    Ok(first_ok) => sample.start_to_first_ok_us = Some(micros(*first_ok)),
                    Err(reason) => {
                        sample.failure = Some(with_console_tail(reason.clone(), finished));
                    }
                }
                if sample.failure.is_none() && served.first_ok.is_ok() {
                    let problems = match configuration.guest {
                        Guest::Mote => crate::vm::served::judge_power_off(
                            &served.power_off,
                            finished,
                            &PowerOff::from_exit(finished, timeout),
                        ),
                        _ => judge_external_power_off(&served.power_off, finished, timeout),
                    };
                    if !problems.is_empty() {
                        sample.failure = Some(with_console_tail(problems.join("; "), finished));
                    }
                }
            }
        }
        sample
    }
}

/// The request that powers a served mote off (docs/services.md).
pub(super) const MOTE_POWER_OFF: (&str, &str) = ("POST", "/poweroff");

/// Lines of the console shown with a failed boot of another kernel.
const CONSOLE_TAIL_LINES: usize = 12;

/// `reason`, then the last lines the guest printed (and QEMU's stderr).
fn with_console_tail(reason: String, finished: &Finished) -> String {
    let tail = finished.tail(CONSOLE_TAIL_LINES);
    if tail.is_empty() {
        return format!("{reason}; the console stayed empty");
    }
    format!("{reason}; console tail:\n      {}", tail.join("\n      "))
}

/// How a served external kernel's power-off fell short: the request must
/// get a 2xx answer and QEMU must exit 0 (an ACPI power-off) in time.
fn judge_external_power_off(
    response: &Result<Response, String>,
    finished: &Finished,
    timeout: Duration,
) -> Vec<String> {
    let mut problems = Vec::new();
    match response {
        Ok(response) if (200..300).contains(&response.status) => {}
        Ok(response) => problems.push(format!(
            "the power-off request was answered {} {}",
            response.status, response.reason
        )),
        Err(reason) => problems.push(format!("the power-off request: {reason}")),
    }
    if finished.exit_code != Some(0) {
        problems.push(format!(
            "after the power-off request QEMU {}, not exit code 0",
            finished.describe_end(timeout)
        ));
    }
    problems
}

/// The transports a boot found in the DSDT: its `virtio-mmio … acpi` lines.
fn acpi_transports(stdout: &[String]) -> usize {
    stdout
        .iter()
        .filter(|line| {
            matches!(
                Fact::parse_line(line),
                Some(Ok(Fact::VirtioMmio(VirtioMmio {
                    found_by: Discovery::Acpi,
                    ..
                })))
            )
        })
        .count()
}

/// The `ready …` report line, whichever unit it counts in.
fn is_ready_line(line: &str) -> bool {
    matches!(Fact::parse_line(line), Some(Ok(Fact::Ready(_))))
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Reads one boot that ended as `ending`: host timings from the arrival
/// stamps, guest ones from the report and (unless served) the tslog dump;
/// says why the boot does not count, if so.
fn sample_from_boot(
    configuration: &Configuration,
    round: usize,
    warmup: bool,
    finished: &Finished,
    ending: &PowerOff,
    timeout: Duration,
) -> Sample {
    let stdout = &finished.stdout;
    let ready_line = stdout.iter().position(|line| is_ready_line(line));
    let mut sample = Sample {
        configuration: configuration.name.clone(),
        round,
        warmup,
        failure: None,
        exit_code: finished.exit_code,
        // The first line's first byte: the first serial byte, to within one
        // pipe read.
        start_to_first_byte_us: finished.stdout_arrivals.first().copied().map(micros),
        start_to_ready_line_us: ready_line
            .and_then(|index| finished.stdout_arrivals.get(index).copied())
            .map(micros),
        start_to_listening_line_us: None,
        start_to_first_ok_us: None,
        start_to_exit_us: micros(finished.exit_time()),
        entry_to_ready_us: None,
        vmm_boot_time_us: None,
        tsc_hz: None,
        phases: Vec::new(),
        exits_to_ready: None,
        ap_bring_up_us: None,
        verify_mib_per_second: None,
        verify_crc_mib_per_second: None,
        acpi_transports: None,
    };
    if finished.timed_out {
        let reason = format!("timed out after {} s and was killed", timeout.as_secs_f64());
        sample.failure = Some(match configuration.guest {
            Guest::External { .. } => with_console_tail(reason, finished),
            _ => reason,
        });
        return sample;
    }
    match &configuration.guest {
        Guest::External { ready_line, .. } => {
            let Some(pattern) = ready_line else {
                return sample;
            };
            // Checked when the configuration was made; a saved run may hold anything.
            let matched = match Regex::new(pattern) {
                Ok(regex) => stdout.iter().position(|line| regex.is_match(line)),
                Err(error) => {
                    sample.failure = Some(format!("--ready-line {pattern:?}: {error}"));
                    return sample;
                }
            };
            sample.start_to_ready_line_us = matched
                .and_then(|index| finished.stdout_arrivals.get(index).copied())
                .map(micros);
            if matched.is_none() {
                sample.failure = Some(with_console_tail(
                    format!(
                        "no line matching /{pattern}/ ({})",
                        finished.describe_end(timeout)
                    ),
                    finished,
                ));
            } else if !configuration.served && finished.exit_code != Some(0) {
                sample.failure = Some(with_console_tail(
                    format!("QEMU {}, not exit code 0", finished.describe_end(timeout)),
                    finished,
                ));
            }
        }
        // Only QEMU carries the null guest's status; elsewhere it must end
        // the VM by itself, and the VMM exit 0.
        Guest::Null if configuration.vmm == VmmKind::Qemu => {
            if finished.exit_code != Some(Status::Success.qemu_exit_code()) {
                sample.failure = Some(ending.to_string());
            }
        }
        Guest::Null => {
            if finished.exit_code != Some(0) {
                sample.failure = Some(format!(
                    "{} {}",
                    configuration.vmm,
                    finished.describe_end(timeout)
                ));
            }
        }
        Guest::Mote => {
            let power_off = ending;
            let report = BootReport::parse(stdout);
            sample.entry_to_ready_us = report.ready_microseconds().map(|us| us as f64);
            sample.acpi_transports = Some(acpi_transports(stdout));
            read_smp_figures(&mut sample, stdout);
            // A served boot has no tslog dump: its serial bytes would delay the services.
            if !configuration.served {
                match guest_phases(&stdout.join("\n")) {
                    Ok(GuestPhases {
                        tsc_hz,
                        phases,
                        exits_to_ready,
                    }) => {
                        sample.tsc_hz = Some(tsc_hz);
                        sample.phases = phases;
                        sample.exits_to_ready = exits_to_ready.map(|exits| exits as f64);
                    }
                    Err(reason) => sample.failure = Some(reason),
                }
            }
            if !power_off.is_success() {
                sample.failure = Some(power_off.to_string());
            } else if ready_line.is_none() || sample.entry_to_ready_us.is_none() {
                sample.failure = Some("no `mote: ready` line".to_owned());
            }
        }
    }
    sample
}

/// The `cpus` line's bring-up time (with more than one CPU online) and
/// blk0's verify rates, when the boot printed them.
fn read_smp_figures(sample: &mut Sample, stdout: &[String]) {
    for line in stdout {
        match Fact::parse_line(line) {
            Some(Ok(Fact::Cpus(cpus))) if cpus.online > 1 => {
                if let Elapsed::Micros(us) = cpus.elapsed {
                    sample.ap_bring_up_us = Some(us as f64);
                }
            }
            // The rates again from the times, which keep their precision on
            // a slow host (the line's rates have one decimal).
            Some(Ok(Fact::Verified(verified))) if verified.disk == DiskName::Blk(0) => {
                let rate = |ms: f64| (ms > 0.0).then(|| verified.mib * 1e3 / ms);
                sample.verify_mib_per_second = rate(verified.milliseconds);
                sample.verify_crc_mib_per_second = rate(verified.crc_milliseconds);
            }
            _ => {}
        }
    }
}

/// What a boot's tslog dump gives the bench.
#[derive(Debug)]
struct GuestPhases {
    tsc_hz: u64,
    phases: Vec<PhaseTime>,
    /// The exits mote counted (every CPU's) from its first record to ready.
    exits_to_ready: Option<u64>,
}

/// The tslog spans inside entry → ready: their duration in microseconds
/// (clipped to the window; repeats of a path summed), in trace order.
fn guest_phases(output: &str) -> Result<GuestPhases, String> {
    let dump = tslog::parse_dump(output).map_err(|error| format!("tslog: {error:#}"))?;
    let Some(tsc_hz) = dump.tsc_hz else {
        return Err("tslog: the dump gives no TSC frequency".to_owned());
    };
    if !dump.complete {
        return Err("tslog: the dump was cut short".to_owned());
    }
    let trace = Trace::build(&dump.records);
    if !trace.ready_seen {
        return Err("tslog: no `ready` event".to_owned());
    }
    let mut phases: Vec<PhaseTime> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    let mut stack: Vec<(usize, String)> = trace
        .roots
        .iter()
        .rev()
        .map(|&root| (root, String::new()))
        .collect();
    while let Some((index, parent)) = stack.pop() {
        let span = &trace.spans[index];
        if span.start >= trace.end {
            continue; // after ready: the report and the dump
        }
        let path = if parent.is_empty() {
            span.name.clone()
        } else {
            format!("{parent};{}", span.name)
        };
        let start = span.start.clamp(trace.start, trace.end);
        let end = span.end.clamp(trace.start, trace.end);
        let us = (end - start) as f64 * 1e6 / tsc_hz as f64;
        match positions.get(&path) {
            Some(&position) => phases[position].us += us,
            None => {
                positions.insert(path.clone(), phases.len());
                phases.push(PhaseTime {
                    path: path.clone(),
                    us,
                });
            }
        }
        for &child in span.children.iter().rev() {
            stack.push((child, path.clone()));
        }
    }
    Ok(GuestPhases {
        tsc_hz,
        phases,
        exits_to_ready: trace.exits.map(|exits| exits.total()),
    })
}

/// One status line on a terminal (rewritten in place), a line per round otherwise.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    terminal: bool,
    failures: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            failures: 0,
        }
    }

    fn update(&mut self, round: usize, rounds: usize, warmups: usize, sample: &Sample) {
        self.done += 1;
        if sample.failure.is_some() {
            self.failures += 1;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let remaining = elapsed / self.done as f64 * (self.total - self.done) as f64;
        let phase = if round < warmups { " warm-up" } else { "" };
        let line = format!(
            "bench: {}/{} boots, round {}/{rounds}{phase}, {} failed, {:.0} s left; {} {:.1} ms{}",
            self.done,
            self.total,
            round + 1,
            self.failures,
            remaining,
            sample.configuration,
            sample.start_to_exit_us / 1000.0,
            sample
                .failure
                .as_deref()
                .map(|failure| format!(" FAILED: {failure}"))
                .unwrap_or_default()
        );
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else if sample.failure.is_some() || self.done.is_multiple_of(rounds.max(1)) {
            let _ = writeln!(stderr, "{line}");
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::bench::configuration;
    use crate::vm::accel::Accel;

    use crate::guest_output::tslog::TCG_DUMP;

    #[test]
    fn rounds_rotate_their_starting_configuration() {
        assert_eq!(round_order(3, 0), [0, 1, 2]);
        assert_eq!(round_order(3, 1), [1, 2, 0]);
        assert_eq!(round_order(3, 5), [2, 0, 1]);
        assert!(round_order(0, 4).is_empty());
    }

    #[test]
    fn phases_cover_the_traced_boot_in_order() {
        let GuestPhases {
            tsc_hz,
            phases,
            exits_to_ready,
        } = guest_phases(TCG_DUMP).unwrap();
        // A dump from before the records carried `exits=`: no count.
        assert_eq!(exits_to_ready, None);
        let counted = [
            "mote: tslog begin tsc_hz=1000000000 records=4 dropped=0",
            "0x1000 10 ENTER a exits=3,0,0,0,0,0,1",
            "0x1001 20 ENTER ap_online exits=4,1,0,0,0,0,2",
            "0x1001 30 EXIT ap_online exits=5,1,2,0,0,0,3",
            "0x1000 40 EXIT a exits=5,1,2,0,1,0,4",
            "0x1000 50 EVENT ready exits=5,1,2,0,1,0,5",
            "mote: tslog end",
        ]
        .join("\n");
        let counted = guest_phases(&counted).unwrap();
        // Every CPU's exits from the first record (4) to ready (14).
        assert_eq!(counted.exits_to_ready, Some(10));
        assert_eq!(tsc_hz, 2_596_102_435);
        assert_eq!(phases[0].path, "pvh_entry");
        assert!(phases[1].path.starts_with("pvh_entry;"), "{phases:?}");
        let top: f64 = phases
            .iter()
            .filter(|phase| !phase.path.contains(';'))
            .map(|phase| phase.us)
            .sum();
        let trace = Trace::build(&tslog::parse_dump(TCG_DUMP).unwrap().records);
        let window = trace.total() as f64 * 1e6 / tsc_hz as f64;
        assert!(
            top <= window + 1e-6 && top >= 0.95 * window,
            "{top} {window}"
        );
        assert!(guest_phases("no dump here").is_err());
    }

    fn configuration(guest: Guest) -> Configuration {
        let mut configuration =
            configuration::expand_matrix(&configuration::test_matrix(), &[Accel::Tcg]).remove(0);
        configuration.guest = guest;
        configuration
    }

    #[test]
    fn reads_a_mote_boot() {
        let stdout: Vec<String> = TCG_DUMP.lines().map(str::to_owned).collect();
        let ready_index = stdout.iter().position(|line| is_ready_line(line)).unwrap() as u64;
        let arrivals = (0..stdout.len())
            .map(|line| Duration::from_millis(40 + line as u64))
            .collect();
        let finished = Finished {
            stdout,
            exit_code: Some(Status::Success.qemu_exit_code()),
            elapsed: Duration::from_millis(200),
            stdout_arrivals: arrivals,
            stdout_closed: Some(Duration::from_millis(190)),
            ..Finished::default()
        };
        let timeout = Duration::from_secs(5);
        let sample = sample_from_boot(
            &configuration(Guest::Mote),
            3,
            false,
            &finished,
            &PowerOff::from_exit(&finished, timeout),
            timeout,
        );
        assert_eq!(sample.failure, None, "{sample:?}");
        assert_eq!(sample.start_to_first_byte_us, Some(40_000.0));
        assert_eq!(
            sample.start_to_ready_line_us,
            Some(40_000.0 + 1000.0 * ready_index as f64)
        );
        assert_eq!(sample.start_to_exit_us, 190_000.0);
        // The dump's own report line: `mote: ready 9936 us after entry`.
        assert_eq!(sample.entry_to_ready_us, Some(9936.0));
        assert!(!sample.phases.is_empty());

        let mut failed = finished.clone();
        failed.exit_code = Some(Status::Failure.qemu_exit_code());
        let sample = sample_from_boot(
            &configuration(Guest::Mote),
            0,
            false,
            &failed,
            &PowerOff::from_exit(&failed, timeout),
            timeout,
        );
        assert!(sample.failure.unwrap().contains("failure"));

        let null = Finished {
            exit_code: Some(Status::Success.qemu_exit_code()),
            elapsed: Duration::from_millis(45),
            ..Finished::default()
        };
        let sample = sample_from_boot(
            &configuration(Guest::Null),
            0,
            true,
            &null,
            &PowerOff::from_exit(&null, timeout),
            timeout,
        );
        assert_eq!(sample.failure, None);
        assert_eq!(sample.start_to_first_byte_us, None);
        assert_eq!(sample.start_to_exit_us, 45_000.0);
    }

    #[test]
    fn reads_the_cpus_and_verify_lines() {
        let mut sample = bare_sample();
        let lines = [
            "mote: cpus 4/4 online in 2381 us",
            "mote: ramdisk0 verify 0.1 MiB on 4 cpus in 4.310 ms: 23.2 MiB/s, crc32 in 4.310 ms: 23.2 MiB/s",
            "mote: blk0 verify 16.0 MiB on 4 cpus in 80000.000 ms: 0.2 MiB/s, crc32 in 64000.000 ms: 0.3 MiB/s",
        ]
        .map(str::to_owned);
        read_smp_figures(&mut sample, &lines);
        assert_eq!(sample.ap_bring_up_us, Some(2381.0));
        // From the times: 16 MiB in 80 s and 64 s.
        assert_eq!(sample.verify_mib_per_second, Some(0.2));
        assert_eq!(sample.verify_crc_mib_per_second, Some(0.25));
        // One CPU: no bring-up to report, whatever the line says.
        let mut sample = bare_sample();
        read_smp_figures(&mut sample, &["mote: cpus 1/4 online in 0 us".to_owned()]);
        assert_eq!(sample.ap_bring_up_us, None);
        assert_eq!(sample.verify_mib_per_second, None);
    }

    fn bare_sample() -> Sample {
        Sample {
            configuration: "mote-tcg-blk-smp4".to_owned(),
            round: 0,
            warmup: false,
            failure: None,
            exit_code: Some(0),
            start_to_first_byte_us: None,
            start_to_ready_line_us: None,
            start_to_listening_line_us: None,
            start_to_first_ok_us: None,
            start_to_exit_us: 0.0,
            entry_to_ready_us: None,
            vmm_boot_time_us: None,
            tsc_hz: None,
            phases: Vec::new(),
            exits_to_ready: None,
            ap_bring_up_us: None,
            verify_mib_per_second: None,
            verify_crc_mib_per_second: None,
            acpi_transports: None,
        }
    }

    #[test]
    fn reads_another_kernels_ready_line_and_shows_the_console_of_a_failed_boot() {
        let peer = configuration(Guest::External {
            kernel: "/k/vmlinux".into(),
            initrd: None,
            ready_line: Some("^peer: ready$".to_owned()),
            power_off: None,
        });
        let lines = [
            "[    0.000000] Linux version 6.1",
            "peer: ready",
            "peer: poweroff",
        ];
        let finished = Finished {
            stdout: lines.iter().map(|line| (*line).to_owned()).collect(),
            stdout_arrivals: (0..3)
                .map(|line| Duration::from_millis(100 * (line + 1)))
                .collect(),
            exit_code: Some(0),
            elapsed: Duration::from_millis(400),
            ..Finished::default()
        };
        let timeout = Duration::from_secs(5);
        let ending = PowerOff::from_exit(&finished, timeout);
        let sample = sample_from_boot(&peer, 0, false, &finished, &ending, timeout);
        assert_eq!(sample.failure, None);
        assert_eq!(sample.start_to_ready_line_us, Some(200_000.0));
        assert_eq!(sample.start_to_first_byte_us, Some(100_000.0));

        // No ready line: the failure names the pattern and ends with the console.
        let mut failed = finished.clone();
        failed.stdout[1] = "peer: failed: insmod virtio_net".to_owned();
        let sample = sample_from_boot(&peer, 0, false, &failed, &ending, timeout);
        let failure = sample.failure.unwrap();
        assert!(
            failure.contains("no line matching /^peer: ready$/"),
            "{failure}"
        );
        assert!(
            failure.contains("console tail:\n      [    0.000000] Linux"),
            "{failure}"
        );
        assert!(
            failure.contains("peer: failed: insmod virtio_net"),
            "{failure}"
        );

        // A ready line, then a crash: QEMU's exit status counts.
        let mut crashed = finished.clone();
        crashed.exit_code = Some(1);
        let sample = sample_from_boot(&peer, 0, false, &crashed, &ending, timeout);
        assert!(sample.failure.unwrap().contains("exit code 1"));

        // A timeout shows the console too; an empty console says so.
        let mut silent = Finished {
            timed_out: true,
            ..Finished::default()
        };
        let sample = sample_from_boot(&peer, 0, false, &silent, &ending, timeout);
        assert!(sample.failure.unwrap().contains("the console stayed empty"));
        silent.timed_out = false;
        silent.exit_code = Some(0);
        assert!(
            sample_from_boot(&peer, 0, false, &silent, &ending, timeout)
                .failure
                .unwrap()
                .contains("no line matching")
        );
    }

    #[test]
    fn a_served_peer_must_answer_its_power_off_and_exit_0() {
        let finished = Finished {
            exit_code: Some(0),
            ..Finished::default()
        };
        let accepted = Ok(Response {
            status: 202,
            reason: "Accepted".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        });
        let timeout = Duration::from_secs(5);
        assert!(judge_external_power_off(&accepted, &finished, timeout).is_empty());
        let missing = Ok(Response {
            status: 404,
            reason: "Not Found".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        });
        let problems = judge_external_power_off(&missing, &finished, timeout);
        assert!(problems[0].contains("404"), "{problems:?}");
        let killed = Finished {
            timed_out: true,
            ..Finished::default()
        };
        let problems = judge_external_power_off(&Err("refused".to_owned()), &killed, timeout);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn builds_the_qemu_command_of_a_configuration() {
        let images = Images {
            vmms: Vec::new(),
            mote: "target/kernel".into(),
            null: "target/null-guest".into(),
            disk: "target/disk.img".into(),
        };
        let mut mote = configuration(Guest::Mote);
        mote.acpi = true;
        mote.modern_virtio = true;
        mote.invtsc = false;
        mote.kernel_args = "quiet".into();
        let line = qemu_command(&mote, &images, &[]).command_line();
        assert!(
            line.starts_with(
                "qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,pic=off -accel tcg -cpu max,-invtsc -m 256M"
            ),
            "{line}"
        );
        assert!(
            line.contains(
                "-kernel target/kernel -append 'console=ttyS0 mote.exit=ready mote.tslog=1 quiet'"
            ),
            "{line}"
        );
        assert!(line.contains("-global virtio-mmio.force-legacy=false"));
        assert!(line.contains("virtio-blk-device") && line.contains("virtio-net-device"));
        assert!(!line.contains("-smp"), "{line}");
        mote.cpus = 4;
        let line = qemu_command(&mote, &images, &[]).command_line();
        assert!(line.contains(" -smp 4 "), "{line}");
        let mut null = configuration(Guest::Null);
        null.blk = false;
        let line = qemu_command(&null, &images, &[]).command_line();
        assert!(line.contains("-kernel target/null-guest"));
        assert!(!line.contains("virtio-blk-device"));
        let external = configuration(Guest::External {
            kernel: "/k/vmlinux".into(),
            initrd: Some("/k/initrd".into()),
            ready_line: None,
            power_off: None,
        });
        let line = qemu_command(&external, &images, &[]).command_line();
        assert!(
            line.contains("-kernel /k/vmlinux -append console=ttyS0"),
            "{line}"
        );
        assert!(line.ends_with("-initrd /k/initrd"), "{line}");
    }
}
