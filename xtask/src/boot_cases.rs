//! The boot tests: one [`BootCase`] per QEMU configuration, each with the
//! report content it must produce. To add a test, add an entry to [`boot_cases`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::checks::Check;
use crate::images::{self, MIB};
use crate::qemu::{Accel, Machine};
use crate::report;
use crate::tslog::{self, Trace};
use crate::workspace;

const GIB: u64 = 1024 * MIB;

/// The default time a case may run before QEMU is killed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line most cases boot with: report, then power off.
const READY_CMDLINE: &str = "console=ttyS0 mote.exit=ready";

/// The initrd's size: odd, so that it is not page-aligned.
const INITRD_SIZE: u64 = 123_457;

/// Sources of timekeeping the kernel may report (`mote: tsc <hz> Hz from <source>`).
const TSC_LINE: &str = r"^mote: tsc \d+ Hz from (cpuid-0x40000010|kvmclock|cpuid-0x15|calibrated)$";
const MEMORY_LINE: &str = r"^mote: memory (\d+) bytes usable in (\d+) regions$";
const READY_LINE: &str = r"^mote: ready \d+ us after entry$";

/// How QEMU must exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedExit {
    /// The kernel powered off through isa-debug-exit with success (QEMU exit 33).
    Success,
    /// The kernel powered off through isa-debug-exit with failure (QEMU exit 35).
    Failure,
    /// QEMU itself exits with this code (e.g. 0 after an ACPI power-off).
    QemuExitCode(i32),
}

/// One boot of the kernel under QEMU and what it must print.
#[derive(Clone)]
pub struct BootCase {
    pub name: &'static str,
    pub machine: Machine,
    /// `-m` size; `None` keeps the machine's default.
    pub memory: Option<&'static str>,
    /// Extra QEMU arguments after the machine's own.
    pub qemu_args: Vec<String>,
    /// The whole kernel command line.
    pub append: String,
    pub expected_exit: ExpectedExit,
    /// QEMU is killed after this long, and the case fails.
    pub timeout: Duration,
    /// The case fails if QEMU ran longer than this (a fault must not wait for a timeout).
    pub must_finish_within: Option<Duration>,
    pub checks: Vec<Check>,
    /// Run only under this accelerator; skipped (and said so) otherwise.
    pub only_under: Option<Accel>,
}

impl BootCase {
    /// A case on the base microvm line that must power off with success.
    pub fn new(name: &'static str, append: impl Into<String>) -> Self {
        Self {
            name,
            machine: Machine::MicrovmNoAcpi,
            memory: None,
            qemu_args: Vec::new(),
            append: append.into(),
            expected_exit: ExpectedExit::Success,
            timeout: DEFAULT_TIMEOUT,
            must_finish_within: None,
            checks: Vec::new(),
            only_under: None,
        }
    }

    pub fn only_under(mut self, accel: Accel) -> Self {
        self.only_under = Some(accel);
        self
    }

    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }

    pub fn memory(mut self, size: &'static str) -> Self {
        self.memory = Some(size);
        self
    }

    pub fn qemu_args<S: Into<String>>(mut self, arguments: impl IntoIterator<Item = S>) -> Self {
        self.qemu_args.extend(arguments.into_iter().map(Into::into));
        self
    }

    pub fn expect_exit(mut self, expected: ExpectedExit) -> Self {
        self.expected_exit = expected;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn must_finish_within(mut self, limit: Duration) -> Self {
        self.must_finish_within = Some(limit);
        self
    }

    pub fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    pub fn checks(mut self, checks: impl IntoIterator<Item = Check>) -> Self {
        self.checks.extend(checks);
        self
    }
}

/// Files the cases hand to QEMU, created under `target/test/` before the run.
pub struct Fixtures {
    pub initrd: PathBuf,
    pub small_disk: PathBuf,
}

impl Fixtures {
    pub fn create() -> Result<Self> {
        let directory = workspace::test_fixture_dir();
        let initrd = directory.join("initrd.bin");
        images::write_if_changed(
            &initrd,
            &images::pseudo_random_bytes(INITRD_SIZE, 0x6d6f_7465),
        )?;
        let small_disk = directory.join("small-disk.img");
        images::ensure_disk_image(&small_disk, MIB)?;
        Ok(Self { initrd, small_disk })
    }
}

/// The complete report of a boot that got to `mote.exit=ready`.
fn complete_report(cmdline: &str) -> Vec<Check> {
    vec![
        Check::cmdline_equals(cmdline),
        Check::not_contains("mote: PANIC"),
        Check::not_contains("mote: EXCEPTION"),
        Check::line_matches(MEMORY_LINE),
        Check::line_matches(TSC_LINE),
        Check::line_matches(READY_LINE),
        Check::last_report_line("mote: poweroff success"),
    ]
}

/// The exact `start_info` line for `cmdline`, quoted as the kernel quotes it.
fn start_info_line(cmdline: &str) -> Check {
    Check::line_equals(format!(
        "mote: start_info v1 cmdline \"{}\"",
        report::escape_cmdline(cmdline.as_bytes())
    ))
}

/// A kernel fault: reported, then a failure power-off, without waiting for the timeout.
fn crash_report() -> Vec<Check> {
    vec![Check::last_report_line("mote: poweroff failure")]
}

/// `prefix` followed by `pad=xxx…`, exactly `length` bytes in all (no NUL counted).
pub fn cmdline_of_length(prefix: &str, length: usize) -> String {
    let mut cmdline = format!("{prefix}pad=");
    assert!(
        cmdline.len() <= length,
        "{prefix:?} is longer than {length}"
    );
    cmdline.extend(std::iter::repeat_n('x', length - cmdline.len()));
    cmdline
}

/// The dump is whole, nests cleanly, starts at the entry stub, ends at
/// `ready`, and its top-level spans account for >= 95 % of entry -> ready,
/// which also matches the report's `ready` figure.
fn tslog_dump_accounts_for_boot(
    output: &[String],
    report: &report::BootReport,
) -> Result<(), String> {
    let dump = tslog::parse_dump(&output.join("\n")).map_err(|error| format!("{error:#}"))?;
    if !dump.complete || dump.dropped > 0 || !dump.garbage.is_empty() {
        return Err(format!(
            "complete {}, dropped {}, garbage {:?}",
            dump.complete, dump.dropped, dump.garbage
        ));
    }
    if dump.announced != Some(dump.records.len()) {
        return Err(format!(
            "announced {:?}, read {}",
            dump.announced,
            dump.records.len()
        ));
    }
    let hz = dump.tsc_hz.ok_or("no tsc_hz in the frame")?;
    let trace = Trace::build(&dump.records);
    if !trace.problems.is_empty() || !trace.ready_seen {
        return Err(format!("trace problems: {:?}", trace.problems));
    }
    let first = trace
        .roots
        .first()
        .map(|&root| trace.spans[root].name.as_str());
    if first != Some("pvh_entry") {
        return Err(format!("first span is {first:?}, not pvh_entry"));
    }
    for needed in [
        "interrupts_init",
        "start_info",
        "memory_init",
        "tsc_frequency",
    ] {
        if !trace.spans.iter().any(|span| span.name == needed) {
            return Err(format!("no {needed} span"));
        }
    }
    let coverage = trace.covered() as f64 / trace.total().max(1) as f64;
    if coverage < 0.95 {
        return Err(format!(
            "top-level spans cover {:.1} % of entry -> ready",
            coverage * 100.0
        ));
    }
    let traced_us = trace.total() as f64 * 1e6 / hz as f64;
    match report.ready_microseconds {
        Some(ready) if (ready as f64 - traced_us).abs() <= 1.0 => Ok(()),
        other => Err(format!(
            "report says ready {other:?} us, trace {traced_us:.1} us"
        )),
    }
}

/// The host's TSC rate, measured against the monotonic clock over 200 ms.
/// Under TCG the guest reads the host's TSC; under KVM it runs at the same
/// rate unless scaled, which QEMU does not do by default.
fn host_tsc_hz() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        let start = std::time::Instant::now();
        // SAFETY: RDTSC has no side effects.
        let tsc_start = unsafe { std::arch::x86_64::_rdtsc() };
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        let tsc_end = unsafe { std::arch::x86_64::_rdtsc() };
        (tsc_end - tsc_start) as f64 / start.elapsed().as_secs_f64()
    })
}

fn tsc_check(report: &report::BootReport, source: &str, tolerance: f64) -> Result<(), String> {
    let tsc = report.tsc.as_ref().ok_or("no tsc line")?;
    if tsc.source != source {
        return Err(format!("source {}, expected {source}", tsc.source));
    }
    let host = host_tsc_hz();
    let error = (tsc.hz as f64 - host).abs() / host;
    if error > tolerance {
        return Err(format!(
            "{} Hz is {:.3} % from the host's {host:.0} Hz (allowed {:.2} %)",
            tsc.hz,
            error * 100.0,
            tolerance * 100.0
        ));
    }
    Ok(())
}

/// Every boot test, in the order they start.
pub fn boot_cases(fixtures: &Fixtures) -> Vec<BootCase> {
    let cmdline_2k = cmdline_of_length(&format!("{READY_CMDLINE} "), 2048);
    let path = |path: &PathBuf| workspace::relative_to_root(path).display().to_string();
    vec![
        BootCase::new("default-report", READY_CMDLINE)
            .check(start_info_line(READY_CMDLINE))
            .checks(complete_report(READY_CMDLINE))
            .check(Check::UsableMemoryBetween {
                min: 200 * MIB,
                max: 256 * MIB,
            }),
        BootCase::new("memory-16M", READY_CMDLINE)
            .memory("16M")
            .checks(complete_report(READY_CMDLINE))
            .check(Check::UsableMemoryBetween {
                min: 12 * MIB,
                max: 16 * MIB,
            }),
        // Above 3 GiB, microvm maps RAM at 4 GiB: this proves that part is counted.
        BootCase::new("memory-6G", READY_CMDLINE)
            .memory("6G")
            .timeout(Duration::from_secs(60))
            .checks(complete_report(READY_CMDLINE))
            .check(Check::UsableMemoryBetween {
                min: 5 * GIB + GIB / 2 + 1,
                max: 6 * GIB,
            })
            .check(Check::Custom {
                description: "RAM below and above the 4 GiB hole as separate regions",
                check: |_, report| match report.memory {
                    Some(memory) if memory.regions >= 2 => Ok(()),
                    Some(memory) => Err(format!("{} region(s)", memory.regions)),
                    None => Err("no memory line".to_owned()),
                },
            }),
        BootCase::new("initrd", READY_CMDLINE)
            .qemu_args(["-initrd".to_owned(), path(&fixtures.initrd)])
            .checks(complete_report(READY_CMDLINE))
            .check(Check::line_matches(&format!(
                r"^mote: module 0 at 0x[0-9a-f]+ size {INITRD_SIZE}$"
            )))
            .check(Check::ModuleSize {
                index: 0,
                size: INITRD_SIZE,
            }),
        BootCase::new("cmdline-2k", cmdline_2k.clone())
            .check(start_info_line(&cmdline_2k))
            .checks(complete_report(&cmdline_2k)),
        // With acpi=off, QEMU appends the virtio-mmio transport of each device
        // to the command line; the first device takes the highest slot (7).
        BootCase::new("acpi-off-virtio-cmdline", READY_CMDLINE)
            .qemu_args([
                "-drive".to_owned(),
                format!(
                    "file={},format=raw,if=none,id=disk0",
                    path(&fixtures.small_disk)
                ),
                "-device".to_owned(),
                "virtio-blk-device,drive=disk0".to_owned(),
            ])
            .check(Check::cmdline_contains(
                "virtio_mmio.device=512@0xfeb00e00:12",
            ))
            .checks(complete_report(&format!(
                "{READY_CMDLINE} virtio_mmio.device=512@0xfeb00e00:12"
            ))),
        // The command a user types: ACPI on, no isa-debug-exit, no mote.exit.
        BootCase::new("acpi-on-plain", "console=ttyS0 hello")
            .machine(Machine::MicrovmDefaults)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .check(Check::cmdline_equals("console=ttyS0 hello"))
            .check(Check::line_matches(MEMORY_LINE))
            .check(Check::last_report_line("mote: poweroff success")),
        BootCase::new("page-fault", "console=ttyS0 mote.crash=page-fault")
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::line_matches("(?i)page fault"))
            .check(Check::contains("CR2"))
            .check(Check::contains("RIP"))
            .checks(crash_report()),
        BootCase::new("panic", "console=ttyS0 mote.crash=panic")
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::line_matches("^mote: PANIC"))
            .check(Check::contains("src/"))
            .check(Check::contains("phase"))
            .checks(crash_report()),
        BootCase::new("quiet", "console=ttyS0 quiet mote.exit=ready")
            .check(Check::no_line_matches(r"^\[INFO "))
            .checks(complete_report("console=ttyS0 quiet mote.exit=ready")),
        BootCase::new("tslog-dump", format!("{READY_CMDLINE} mote.tslog=1"))
            .checks(complete_report(&format!("{READY_CMDLINE} mote.tslog=1")))
            .check(Check::Custom {
                description: "the tslog dump accounts for entry -> ready",
                check: tslog_dump_accounts_for_boot,
            }),
        // TCG without a timing leaf: calibration against the PIT, within 1 %.
        BootCase::new("tsc-calibrated", READY_CMDLINE)
            .only_under(Accel::Tcg)
            .checks(complete_report(READY_CMDLINE))
            .check(Check::Custom {
                description: "calibrated TSC within 1 % of the host's",
                check: |_, report| tsc_check(report, "calibrated", 0.01),
            }),
        // KVM with +invtsc: CPUID 0x40000010 (EAX kHz x 1000).
        BootCase::new("tsc-cpuid-leaf", READY_CMDLINE)
            .only_under(Accel::Kvm)
            .checks(complete_report(READY_CMDLINE))
            .check(Check::Custom {
                description: "TSC from CPUID 0x40000010, a whole kHz, within 0.1 % of the host's",
                check: |_, report| {
                    tsc_check(report, "cpuid-0x40000010", 0.001)?;
                    match report.tsc.as_ref() {
                        Some(tsc) if tsc.hz % 1000 == 0 => Ok(()),
                        other => Err(format!("{other:?} is not EAX (kHz) x 1000")),
                    }
                },
            }),
        // KVM without invtsc: QEMU hides the timing leaf, kvmclock remains.
        BootCase::new("tsc-kvmclock", READY_CMDLINE)
            .only_under(Accel::Kvm)
            .qemu_args(["-cpu", "host,-arch-capabilities"])
            .checks(complete_report(READY_CMDLINE))
            .check(Check::Custom {
                description: "TSC from kvmclock within 0.1 % of the host's",
                check: |_, report| tsc_check(report, "kvmclock", 0.001),
            }),
        BootCase::new("loglevel-debug", "console=ttyS0 loglevel=8 mote.exit=ready")
            .check(Check::line_matches(r"^\[DEBUG\]"))
            .checks(complete_report("console=ttyS0 loglevel=8 mote.exit=ready")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Fixtures {
        Fixtures {
            initrd: PathBuf::from("target/test/initrd.bin"),
            small_disk: PathBuf::from("target/test/small-disk.img"),
        }
    }

    #[test]
    fn cmdline_2k_is_exactly_2048_bytes() {
        let cmdline = cmdline_of_length("console=ttyS0 mote.exit=ready ", 2048);
        assert_eq!(cmdline.len(), 2048);
        assert!(cmdline.starts_with("console=ttyS0 mote.exit=ready pad=xxx"));
        assert!(cmdline.ends_with('x'));
        let case = boot_cases(&fixtures())
            .into_iter()
            .find(|case| case.name == "cmdline-2k")
            .unwrap();
        assert_eq!(case.append, cmdline);
    }

    #[test]
    fn table_is_well_formed() {
        let cases = boot_cases(&fixtures());
        let mut names: Vec<_> = cases.iter().map(|case| case.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "case names must be unique");
        for case in &cases {
            assert!(!case.checks.is_empty(), "{} checks nothing", case.name);
            assert!(case.append.len() <= 2048, "{}", case.name);
        }
    }
}
