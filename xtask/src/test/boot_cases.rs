//! The boot tests: one [`BootCase`] per QEMU configuration, each with the
//! report content it must produce. To add a test, add an entry to [`boot_cases`].

use std::path::Path;
use std::time::Duration;

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{
    BarWidth, ConfigAccess, Crc32, Discovery, Disk as DiskLine, DiskName, Elapsed, Fact, Line,
    OnCpu, PREFIX, Panic, PciBar, PowerOff, Ramdisk, Ready, TscSource, VirtioMmio, VirtioPci,
    WriteRefused, Wrote,
};
use mote_boot::protocol::tslog::AP_TIMER_CHECK_US;

use super::boot_case::{BootCase, ExpectedExit};
use super::checks::Check;
use super::fixtures::{
    Fixtures, INITRD_SIZE, WRITE_LBA, WRITE_SECTORS, WRITE_SEED, q35_write_disk_path,
    write_base_path, write_disk_path,
};
use crate::env::images::MIB;
use crate::guest_output::report::{self, FAILURE_KEYWORDS};
use crate::guest_output::tslog::{self, Trace};
use crate::vm::accel::Accel;
use crate::vm::cmdline::READY_CMDLINE;
use crate::vm::vmm::qemu::{Disk, Machine};

const GIB: u64 = 1024 * MIB;

/// A TSC frequency no VMM here reports, so only the command line gives it.
const TSC_CMDLINE: &str = "console=ttyS0 mote.exit=ready tsc_early_khz=2500000";
/// 20 GHz: above the 10 GHz mote believes.
const TSC_ABSURD_CMDLINE: &str = "console=ttyS0 mote.exit=ready tsc_early_khz=20000000";

/// The page-fault exception's vector (Intel SDM vol. 3 §6.15, #PF).
const PAGE_FAULT_VECTOR: u8 = 14;

/// The complete report of a boot that got to `mote.exit=ready`.
pub(super) fn complete_report(cmdline: &str) -> Vec<Check> {
    report_checks(Check::cmdline_equals(cmdline))
}

/// [`complete_report`] for a command line the VMM appended `appended` to.
fn complete_report_appended(ours: &str, appended: &str) -> Vec<Check> {
    report_checks(Check::CmdlineEqualsAppended {
        ours: ours.to_owned(),
        appended: appended.to_owned(),
    })
}

fn report_checks(cmdline: Check) -> Vec<Check> {
    let mut checks = vec![cmdline];
    checks.extend(FAILURE_KEYWORDS.map(no_report_line_of));
    checks.extend([
        memory_reported(),
        Check::reports("`tsc <hz> Hz from <source>`", |fact| {
            matches!(fact, Fact::Tsc(_))
        }),
        Check::reports("`ready <microseconds> us after entry`", |fact| {
            matches!(fact, Fact::Ready(Ready::Micros(_)))
        }),
        powered_off(Status::Success),
    ]);
    checks
}

/// No line holds a report line of `keyword`, even cut into another line.
fn no_report_line_of(keyword: &str) -> Check {
    Check::not_contains(format!("{PREFIX}{keyword}"))
}

fn memory_reported() -> Check {
    Check::reports(
        "`memory <bytes> bytes usable in <regions> regions`",
        |fact| matches!(fact, Fact::Memory(_)),
    )
}

/// The last report line is `poweroff success|failure`.
pub(super) fn powered_off(status: Status) -> Check {
    Check::last_report_line(Line(PowerOff(status)))
}

/// The exact `start_info` line for `cmdline`, quoted as the kernel quotes it.
pub(super) fn start_info_line(cmdline: &str) -> Check {
    Check::StartInfoCmdline(cmdline.to_owned())
}

/// A kernel fault: reported, then a failure power-off, without waiting for the timeout.
fn crash_report() -> Vec<Check> {
    vec![powered_off(Status::Failure)]
}

/// The `virtio-mmio` line of a block device's transport.
pub(super) fn block_transport(base: u64, irq: u32, version: u32, found_by: Discovery) -> Check {
    Check::line_equals(Line(VirtioMmio {
        base,
        irq,
        kind: "block",
        version,
        found_by,
    }))
}

/// The `blk<index>` line of a virtio-blk disk.
pub(super) fn disk_line(index: usize, sectors: u64, read_only: bool) -> Check {
    Check::line_equals(Line(DiskLine {
        index,
        sectors,
        read_only,
    }))
}

/// The `crc32` line of `disk`, which must hold the bytes of `image`.
pub(super) fn crc_line(disk: DiskName, image: &Path) -> Check {
    Check::line_equals(Line(Crc32 {
        disk,
        crc: file_crc(image),
    }))
}

/// The `ramdisk0` line of the initrd `image`, detected as `kind`.
fn ramdisk_line(image: &Path, kind: &'static str) -> Check {
    Check::line_equals(Line(Ramdisk {
        index: 0,
        bytes: std::fs::metadata(image).map_or(0, |m| m.len()),
        kind,
    }))
}

/// `prefix` followed by `pad=xxx…`, exactly `length` bytes in all (no NUL counted).
fn cmdline_of_length(prefix: &str, length: usize) -> String {
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
pub(super) fn tslog_dump_accounts_for_boot(
    output: &[String],
    report: &report::BootReport,
) -> Result<(), String> {
    let text = output.join("\n");
    let dump = tslog::parse_dump(&text).map_err(|error| format!("{error:#}"))?;
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
    // A PIT calibration is off the path to ready: it ends in its own span
    // after the ready stamp (these boots do not serve, so nothing needs
    // the frequency before it).
    let calibration = dump.records.iter().position(|record| {
        record.function == "tsc_calibration"
            && record.kind == mote_boot::protocol::tslog::Kind::Enter
    });
    let ready_at = dump
        .records
        .iter()
        .position(|record| record.function == "ready");
    let calibrated = report
        .tsc
        .is_some_and(|tsc| tsc.source == TscSource::Calibrated);
    match (calibrated, calibration, ready_at) {
        (true, None, _) => return Err("calibrated, but no tsc_calibration span".to_owned()),
        (_, Some(calibration), Some(ready)) if calibration < ready => {
            return Err("tsc_calibration ran before ready".to_owned());
        }
        _ => {}
    }
    // Every kernel record carries exit counts, and each RDTSC that stamped
    // one was counted: at least one per distinct stamp of the boot CPU up
    // to ready (a span handed over with `then` stamps its EXIT and the
    // next ENTER with one reading; the APs count on their own CPUs).
    let kernel_records = || {
        dump.records
            .iter()
            .filter(|record| record.thread != mote_boot::protocol::tslog::STUB_THREAD)
    };
    if let Some(record) = kernel_records().find(|record| record.exits.is_none()) {
        return Err(format!("kernel record without exit counts: {record}"));
    }
    let mut stamps: Vec<u64> = kernel_records()
        .take_while(|record| record.function != "ready")
        .filter(|record| record.thread == mote_boot::protocol::tslog::kernel_thread(0))
        .map(|record| record.tsc)
        .collect();
    stamps.dedup();
    // `rust_entry` opens at the stub's last reading, which is not the kernel's.
    let stub_stamps: Vec<u64> = dump
        .records
        .iter()
        .filter(|record| record.thread == mote_boot::protocol::tslog::STUB_THREAD)
        .map(|record| record.tsc)
        .collect();
    stamps.retain(|tsc| !stub_stamps.contains(tsc));
    let stamped = stamps.len();
    let rdtsc = trace
        .exits
        .map(|exits| exits.get(mote_boot::protocol::tslog::ExitKind::Rdtsc));
    if rdtsc.is_none_or(|count| (count as usize) < stamped) {
        return Err(format!(
            "{stamped} distinct boot-CPU stamps before ready, but the counts say {rdtsc:?} RDTSCs"
        ));
    }
    let coverage = trace.covered() as f64 / trace.total().max(1) as f64;
    if coverage < 0.95 {
        return Err(format!(
            "top-level spans cover {:.1} % of entry -> ready",
            coverage * 100.0
        ));
    }
    let traced_us = trace.total() as f64 * 1e6 / hz as f64;
    match report.ready_microseconds() {
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

/// `Ok` if the report's TSC line says exactly `hz` from `source`.
fn tsc_exactly(report: &report::BootReport, source: TscSource, hz: u64) -> Result<(), String> {
    match report.tsc {
        Some(tsc) if tsc.source == source && tsc.hz == hz => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn tsc_check(report: &report::BootReport, source: TscSource, tolerance: f64) -> Result<(), String> {
    let tsc = report.tsc.ok_or("no tsc line")?;
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

/// The zlib CRC-32 of a file.
fn file_crc(path: &Path) -> u32 {
    crc32fast::hash(&std::fs::read(path).unwrap_or_default())
}

/// After the guest wrote the pattern: the range holds exactly the pattern
/// (the same function the kernel uses), nothing else changed, and the CRC
/// the guest printed is the pattern's.
fn written_region_is_exactly_the_pattern(
    _: &[String],
    report: &report::BootReport,
) -> Result<(), String> {
    pattern_written_into(&write_disk_path(), report)
}

/// As [`written_region_is_exactly_the_pattern`], for the q35 case's copy.
fn q35_written_region_is_exactly_the_pattern(
    _: &[String],
    report: &report::BootReport,
) -> Result<(), String> {
    pattern_written_into(&q35_write_disk_path(), report)
}

fn pattern_written_into(image: &Path, report: &report::BootReport) -> Result<(), String> {
    let base = std::fs::read(write_base_path()).map_err(|e| e.to_string())?;
    let written = std::fs::read(image).map_err(|e| e.to_string())?;
    if base.len() != written.len() {
        return Err(format!(
            "image size changed: {} -> {}",
            base.len(),
            written.len()
        ));
    }
    let sector = mote_boot::protocol::disk_pattern::SECTOR_SIZE;
    let range = WRITE_LBA as usize * sector..(WRITE_LBA + WRITE_SECTORS) as usize * sector;
    let mut pattern = vec![0u8; range.len()];
    mote_boot::protocol::disk_pattern::fill(WRITE_SEED, WRITE_LBA, &mut pattern);
    if written[range.clone()] != pattern[..] {
        return Err("the written range does not hold the pattern".to_owned());
    }
    if written[..range.start] != base[..range.start] || written[range.end..] != base[range.end..] {
        return Err("bytes outside the written range changed".to_owned());
    }
    let expected = Line(Wrote {
        index: 0,
        sectors: WRITE_SECTORS,
        lba: WRITE_LBA,
        crc: crc32fast::hash(&pattern),
    })
    .to_string();
    if report.lines.contains(&expected) {
        Ok(())
    } else {
        Err(format!("no line {expected:?}"))
    }
}

/// The request sizes `mote.blk=bench` reads with, at this queue depth; the
/// smallest moves this many MiB.
const BENCH_REQUESTS: [usize; 3] = [4096, 65536, 262_144];
const BENCH_DEPTH: usize = 8;
const BENCH_SMALL_MIB: f64 = 8.0;

/// A `blk0 bench read` line for every request size, each exactly as the
/// protocol formats the figures it carries.
fn bench_reads_reported(output: &[String], _: &report::BootReport) -> Result<(), String> {
    for request in BENCH_REQUESTS {
        let reported = output.iter().any(|line| match Fact::parse_line(line) {
            Some(Ok(Fact::BenchRead(read))) => {
                read.index == 0
                    && read.request == request
                    && read.depth == BENCH_DEPTH
                    && (request != BENCH_REQUESTS[0] || read.mib == BENCH_SMALL_MIB)
                    && Line(read).to_string() == *line
            }
            _ => false,
        });
        if !reported {
            return Err(format!(
                "no `blk0 bench read {request} bytes qd {BENCH_DEPTH}: …` line"
            ));
        }
    }
    Ok(())
}

/// A write to a read-only disk is refused, reported, and fails the boot
/// without a panic (every VMM with a block device).
pub(super) fn readonly_refuses_write(fixtures: &Fixtures) -> BootCase {
    BootCase::new(
        "blk-readonly-refuses-write",
        format!("{READY_CMDLINE} mote.blk.write=16+8"),
    )
    .disk(Disk::read_only(&fixtures.readonly_disk))
    .expect_exit(ExpectedExit::Failure)
    .check(disk_line(0, 4096, true))
    .check(Check::line_equals(Line(WriteRefused {
        index: 0,
        error: "the device is read-only",
    })))
    .check(no_report_line_of(Panic::<&str>::SHAPE.keyword))
    .check(powered_off(Status::Failure))
}

/// The guest writes the pattern into a fresh copy of the write image, and
/// the host finds exactly it there (every VMM with a block device).
pub(super) fn write_pattern(fixtures: &Fixtures) -> BootCase {
    BootCase::new(
        "blk-write-pattern",
        format!("{READY_CMDLINE} mote.blk.write={WRITE_LBA}+{WRITE_SECTORS} mote.blk.seed={WRITE_SEED:#x}"),
    )
    .disk(Disk::writable(&fixtures.write_disk))
    .fresh_copy(write_base_path(), fixtures.write_disk.clone())
    .check(powered_off(Status::Success))
    .check(Check::Custom {
        description: "the image holds exactly the pattern in the range, and nothing else changed",
        check: written_region_is_exactly_the_pattern,
    })
}

/// Every boot test, in the order they start.
pub(crate) fn boot_cases(fixtures: &Fixtures) -> Vec<BootCase> {
    let cmdline_2k = cmdline_of_length(&format!("{READY_CMDLINE} "), 2048);
    let mut cases = vec![
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
            .initrd(&fixtures.initrd)
            .checks(complete_report(READY_CMDLINE))
            .check(Check::ModuleSize {
                index: 0,
                size: INITRD_SIZE,
            }),
        // ACPI on: QEMU 7.2's qboot keeps the initrd whole; QEMU 10 boots
        // SeaBIOS, which reserves the top of RAM where QEMU put the initrd,
        // and mote must skip the module and go on, not die of it.
        BootCase::new("initrd-acpi-on", "console=ttyS0 mote.exit=ready")
            .machine(Machine::MicrovmDefaults)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .initrd(&fixtures.initrd)
            .check(powered_off(Status::Success))
            .check(Check::Custom {
                description: "module 0 kept whole (with its ramdisk) or reported unusable (without one)",
                check: |_, report| {
                    let line = |start: &str| report.lines.iter().any(|line| line.starts_with(start));
                    let kept = report.modules.first().is_some_and(|module| module.size == INITRD_SIZE);
                    let unusable = line("mote: module 0 unusable: ");
                    match (kept, unusable, line("mote: ramdisk0 ")) {
                        (true, false, true) | (false, true, false) => Ok(()),
                        (kept, unusable, ramdisk) => Err(format!(
                            "module 0 kept {kept}, reported unusable {unusable}, ramdisk0 line {ramdisk}"
                        )),
                    }
                },
            }),
        BootCase::new("cmdline-2k", cmdline_2k.clone())
            .check(start_info_line(&cmdline_2k))
            .checks(complete_report(&cmdline_2k)),
        // With acpi=off, QEMU appends the virtio-mmio transport of each device
        // to the command line; the first device takes the highest slot (7).
        BootCase::new("acpi-off-virtio-cmdline", READY_CMDLINE)
            .disk(Disk::writable(&fixtures.small_disk))
            .check(Check::cmdline_contains(
                "virtio_mmio.device=512@0xfeb00e00:12",
            ))
            .checks(complete_report_appended(
                READY_CMDLINE,
                "virtio_mmio.device=512@0xfeb00e00:12",
            )),
        // A user who names the transport too (as for Firecracker): QEMU
        // appends it again, and the one device is driven once.
        BootCase::new(
            "virtio-cmdline-named-twice",
            format!("{READY_CMDLINE} virtio_mmio.device=512@0xfeb00e00:12"),
        )
        .disk(Disk::read_only(&fixtures.twice_disk))
        .check(disk_line(0, 4096, true))
        .check(Check::Custom {
            description: "one `virtio-mmio` line and no `blk1` for a transport named twice",
            check: |_, report| {
                let count = |start: &str| {
                    report
                        .lines
                        .iter()
                        .filter(|line| line.starts_with(start))
                        .count()
                };
                match (count("mote: virtio-mmio "), count("mote: blk1 ")) {
                    (1, 0) => Ok(()),
                    (transports, second) => Err(format!(
                        "{transports} virtio-mmio lines and {second} blk1 lines"
                    )),
                }
            },
        })
        .check(powered_off(Status::Success)),
        // The command a user types: ACPI on, no isa-debug-exit, no mote.exit.
        BootCase::new("acpi-on-plain", "console=ttyS0 hello")
            .machine(Machine::MicrovmDefaults)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .check(Check::cmdline_equals("console=ttyS0 hello"))
            .check(memory_reported())
            .check(powered_off(Status::Success)),
        BootCase::new("page-fault", "console=ttyS0 mote.crash=page-fault")
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::reports("`EXCEPTION <name> (vector 14) in phase <phase>`", |fact| {
                matches!(fact, Fact::Exception(exception) if exception.vector == PAGE_FAULT_VECTOR)
            }))
            .check(Check::reports("`  page fault at CR2 <hex>, …`", |fact| {
                matches!(fact, Fact::PageFault(_))
            }))
            .check(Check::reports("`  RIP <hex> CS <hex> …`", |fact| {
                matches!(fact, Fact::ControlRegisters(_))
            }))
            .checks(crash_report()),
        BootCase::new("panic", "console=ttyS0 mote.crash=panic")
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::reports("`PANIC in phase <phase> at <…src/…>:<line>:<column>: …`", |fact| {
                matches!(fact, Fact::Panic(panic) if !panic.phase.is_empty()
                    && panic.location.is_some_and(|location| location.file.contains("src/")))
            }))
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
                check: |_, report| tsc_check(report, TscSource::Calibrated, 0.01),
            }),
        // Linux's tsc_early_khz= comes before every other source, under
        // any accelerator (TCG here: icount passes its own).
        BootCase::new("tsc-cmdline", TSC_CMDLINE)
            .only_under(Accel::Tcg)
            .checks(complete_report(TSC_CMDLINE))
            .check(Check::Custom {
                description: "TSC 2 500 000 000 Hz from cmdline",
                check: |_, report| tsc_exactly(report, TscSource::Cmdline, 2_500_000_000),
            }),
        // An absurd value is reported and ignored: the PIT calibrates.
        BootCase::new("tsc-cmdline-absurd", TSC_ABSURD_CMDLINE)
            .only_under(Accel::Tcg)
            .checks(complete_report(TSC_ABSURD_CMDLINE))
            .check(Check::line_matches(
                r#"^\[WARN .*tsc_early_khz="20000000" ignored: above 10 GHz"#,
            ))
            .check(Check::Custom {
                description: "calibrated TSC within 1 % of the host's",
                check: |_, report| tsc_check(report, TscSource::Calibrated, 0.01),
            }),
        // icount: the TSC is the instruction count, 1 GHz by construction.
        BootCase::new("tsc-icount", READY_CMDLINE)
            .only_under(Accel::Icount)
            .checks(complete_report(READY_CMDLINE))
            .check(Check::Custom {
                description: "TSC 1 000 000 000 Hz from cmdline",
                check: |_, report| tsc_exactly(report, TscSource::Cmdline, 1_000_000_000),
            }),
        // The budgets of xtask/budgets.txt: disk and NIC, ACPI off, the
        // trace's markers on and QEMU's memory-region trace.
        BootCase::new("budget-boot", format!("{READY_CMDLINE} mote.tslog=markers"))
            .only_under(Accel::Icount)
            .disk(Disk::read_only(&fixtures.budget_disk))
            .qemu_args([
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-device,netdev=net0",
            ])
            .qemu_args(super::budgets::trace_arguments("budget-boot"))
            .check(Check::Custom {
                description: "instructions and exits per phase within xtask/budgets.txt",
                check: |output, _| super::budgets::check("budget-boot", output),
            }),
        // The DSDT's cost at its largest: QEMU's default microvm (ACPI on)
        // with all 24 transports taken, each by a disk.
        (0..24).fold(
            BootCase::new("budget-acpi", format!("{READY_CMDLINE} mote.tslog=markers"))
                .only_under(Accel::Icount)
                .machine(Machine::MicrovmDefaults)
                // Its ACPI power-off ends QEMU with status 0.
                .expect_exit(ExpectedExit::QemuExitCode(0))
                .qemu_args(super::budgets::trace_arguments("budget-acpi"))
                .check(Check::Custom {
                    description: "instructions and exits per phase within xtask/budgets.txt",
                    check: |output, _| super::budgets::check("budget-acpi", output),
                }),
            |case, _| case.disk(Disk::read_only(&fixtures.budget_disk)),
        ),
        // KVM with +invtsc: CPUID 0x40000010 (EAX kHz x 1000).
        BootCase::new("tsc-cpuid-leaf", READY_CMDLINE)
            .only_under(Accel::Kvm)
            .checks(complete_report(READY_CMDLINE))
            .check(Check::Custom {
                description: "TSC from CPUID 0x40000010, a whole kHz, within 0.1 % of the host's",
                check: |_, report| {
                    tsc_check(report, TscSource::Cpuid40000010, 0.001)?;
                    match report.tsc {
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
                check: |_, report| tsc_check(report, TscSource::Kvmclock, 0.001),
            }),
        // One disk named on the command line (acpi=off), legacy transport:
        // the guest's CRC of all 64 MiB equals zlib's on the host.
        BootCase::new("blk-verify-cmdline", format!("{READY_CMDLINE} mote.blk=verify"))
            .disk(Disk::writable(&fixtures.random_disk))
            .timeout(Duration::from_secs(60))
            .check(block_transport(0xfeb0_0e00, 12, 1, Discovery::Cmdline))
            .check(disk_line(0, 131_072, false))
            .check(crc_line(DiskName::Blk(0), &fixtures.random_disk))
            .check(powered_off(Status::Success)),
        // QEMU's default microvm: ACPI on, nothing on the command line,
        // three disks found in the DSDT on the second IOAPIC's GSIs.
        BootCase::new("blk-acpi-three-disks", "console=ttyS0 mote.blk=verify")
            .machine(Machine::MicrovmDefaults)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .disk(Disk::writable(&fixtures.three_disks[0]))
            .disk(Disk::writable(&fixtures.three_disks[1]))
            .disk(Disk::writable(&fixtures.three_disks[2]))
            .check(block_transport(0xfeb0_2e00, 47, 1, Discovery::Acpi))
            .check(block_transport(0xfeb0_2c00, 46, 1, Discovery::Acpi))
            .check(block_transport(0xfeb0_2a00, 45, 1, Discovery::Acpi))
            .check(disk_line(0, 16384, false))
            .check(disk_line(1, 8192, false))
            .check(disk_line(2, 4096, false))
            .check(crc_line(DiskName::Blk(0), &fixtures.three_disks[0]))
            .check(crc_line(DiskName::Blk(1), &fixtures.three_disks[1]))
            .check(crc_line(DiskName::Blk(2), &fixtures.three_disks[2]))
            .check(powered_off(Status::Success)),
        BootCase::new("blk-modern-transport", format!("{READY_CMDLINE} mote.blk=verify"))
            .qemu_args(["-global", "virtio-mmio.force-legacy=false"])
            .disk(Disk::writable(&fixtures.modern_disk))
            .check(block_transport(0xfeb0_0e00, 12, 2, Discovery::Cmdline))
            .check(crc_line(DiskName::Blk(0), &fixtures.modern_disk))
            .check(powered_off(Status::Success)),
        readonly_refuses_write(fixtures),
        write_pattern(fixtures),
        BootCase::new("blk-bench", format!("{READY_CMDLINE} mote.blk=bench"))
            .disk(Disk::writable(&fixtures.bench_disk))
            .timeout(Duration::from_secs(60))
            .check(Check::Custom {
                description: "a blk0 bench read line for 4 KiB (8 MiB), 64 KiB and 256 KiB at qd 8",
                check: bench_reads_reported,
            })
            .check(powered_off(Status::Success)),
        BootCase::new("initrd-gzip", format!("{READY_CMDLINE} mote.blk=verify"))
            .initrd(&fixtures.gzip_initrd)
            .check(ramdisk_line(&fixtures.gzip_initrd, "gzip"))
            .check(crc_line(DiskName::Ramdisk(0), &fixtures.gzip_initrd))
            .check(powered_off(Status::Success)),
        BootCase::new("initrd-png", READY_CMDLINE)
            .initrd(&fixtures.png_initrd)
            .check(ramdisk_line(&fixtures.png_initrd, "png"))
            .check(powered_off(Status::Success)),
        BootCase::new("loglevel-debug", "console=ttyS0 loglevel=8 mote.exit=ready")
            .check(Check::line_matches(r"^\[DEBUG\]"))
            .checks(complete_report("console=ttyS0 loglevel=8 mote.exit=ready")),
    ];
    cases.extend(pci_cases(fixtures));
    cases.extend(smp_cases());
    let [smp1_disk, smp4_disk] = &fixtures.smp_disks;
    cases.push(smp_verify(
        "blk-verify-smp-1",
        1,
        smp1_disk,
        &fixtures.initrd,
    ));
    cases.push(smp_verify(
        "blk-verify-smp-4",
        4,
        smp4_disk,
        &fixtures.initrd,
    ));
    // Linux's maxcpus= counts the boot CPU; mote.smp=off starts none. The
    // `cpus` line still counts every CPU found.
    let maxcpus = format!("{READY_CMDLINE} maxcpus=2");
    let smp_off = format!("{READY_CMDLINE} mote.smp=off");
    cases.push(
        BootCase::new("smp-4-maxcpus-2", maxcpus.clone())
            .vcpus(4)
            .check(cpus_online(2, 4))
            .checks(complete_report(&maxcpus)),
    );
    cases.push(
        BootCase::new("smp-4-smp-off", smp_off.clone())
            .vcpus(4)
            .check(cpus_online(1, 4))
            .checks(complete_report(&smp_off)),
    );
    // Four CPUs tracing: each AP's spans on its own thread, and the boot
    // CPU's still account for entry -> ready.
    let tslog_cmdline = format!("{READY_CMDLINE} mote.tslog=1");
    cases.push(
        BootCase::new("tslog-dump-smp-4", tslog_cmdline.clone())
            .vcpus(4)
            .check(every_cpu_online(4))
            .checks(complete_report(&tslog_cmdline))
            .check(Check::Custom {
                description: "the tslog dump accounts for entry -> ready",
                check: tslog_dump_accounts_for_boot,
            })
            .check(Check::line_matches(r"^0x1003 \d+ EXIT ap_online"))
            .check(Check::Custom {
                description: "every AP's timer, set from the boot CPU's frequency, fired",
                check: every_ap_timer_fired,
            }),
    );
    // The same with the TSC frequency known before the APs start. Each AP
    // checks its timer inside `ap_online` when arming it is cheap (KVM's
    // TSC-deadline mode); under TCG, which has neither that mode nor a
    // published bus frequency, the LAPIC timer is measured once after
    // ready and the APs check theirs in a job. Firecracker's and Cloud
    // Hypervisor's cases assert the `ap_online` placement.
    let timer_cmdline = format!("{READY_CMDLINE} mote.tslog=1 tsc_early_khz=1000000");
    cases.push(
        BootCase::new("smp-4-ap-timers-cmdline-tsc", timer_cmdline.clone())
            .vcpus(4)
            .check(every_cpu_online(4))
            .checks(complete_report(&timer_cmdline))
            .check(Check::Custom {
                description: "every AP armed its timer and it fired",
                check: every_ap_timer_fired,
            }),
    );
    // A page fault on an application processor: reported with its CPU,
    // and a failure power-off, not a hang.
    cases.push(
        BootCase::new("ap-page-fault", "console=ttyS0 mote.crash=ap-page-fault")
            .vcpus(2)
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::reports(
                "`EXCEPTION <name> (vector 14) in phase <phase>`",
                |fact| {
                    matches!(fact, Fact::Exception(exception) if exception.vector == PAGE_FAULT_VECTOR)
                },
            ))
            .check(Check::line_equals(Line(OnCpu(1))))
            .checks(crash_report()),
    );
    cases
}

/// virtio over PCI (docs/virtio-pci.md): QEMU q35, whose SeaBIOS assigns
/// the BARs; ECAM from its MCFG; devices in slots from 1 in `-device`
/// order, each with one MSI-X vector per queue and one for configuration
/// changes (QEMU 7.2 hw/virtio/virtio-blk-pci.c: one queue per vCPU).
///
/// QEMU `microvm,pcie=on`: no MCFG (ECAM from the host bridge's `_CBA`),
/// and QEMU 7.2's qboot assigns no BAR: mote assigns them from the host
/// bridge's `_CRS` windows and reports each. With a virtio-mmio disk
/// beside it, both transports serve one boot.
fn pci_cases(fixtures: &Fixtures) -> Vec<BootCase> {
    let verify = format!("{READY_CMDLINE} mote.blk=verify");
    vec![
        BootCase::new("q35-blk-verify", verify.clone())
            .machine(Machine::Q35)
            .disk(Disk::writable(&fixtures.pci_disk))
            .check(pci_function(0, 1, "block", 2, ConfigAccess::Ecam))
            .check(disk_line(0, 16_384, false))
            .check(crc_line(DiskName::Blk(0), &fixtures.pci_disk))
            .check(powered_off(Status::Success)),
        BootCase::new(
            "q35-blk-write-pattern",
            format!("{READY_CMDLINE} mote.blk.write={WRITE_LBA}+{WRITE_SECTORS} mote.blk.seed={WRITE_SEED:#x}"),
        )
        .machine(Machine::Q35)
        .disk(Disk::writable(&q35_write_disk_path()))
        .fresh_copy(write_base_path(), q35_write_disk_path())
        .check(pci_function(0, 1, "block", 2, ConfigAccess::Ecam))
        .check(powered_off(Status::Success))
        .check(Check::Custom {
            description: "the image holds exactly the pattern in the range, and nothing else changed",
            check: q35_written_region_is_exactly_the_pattern,
        }),
        BootCase::new("microvm-pcie-blk-verify", verify.clone())
            .machine(Machine::MicrovmPcie)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .disk(Disk::writable(&fixtures.pcie_disks[0]))
            .check(pci_function(0, 1, "block", 2, ConfigAccess::Ecam))
            .check(bars_assigned_in_windows())
            .check(disk_line(0, 16_384, false))
            .check(crc_line(DiskName::Blk(0), &fixtures.pcie_disks[0]))
            .check(powered_off(Status::Success)),
        BootCase::new("microvm-pcie-both-transports", verify)
            .machine(Machine::MicrovmPcie)
            .expect_exit(ExpectedExit::QemuExitCode(0))
            .disk(Disk::writable(&fixtures.pcie_disks[1]))
            .qemu_args([
                "-drive".to_owned(),
                format!(
                    "file={},format=raw,if=none,id=mmio0,readonly=on",
                    fixtures.pcie_mmio_disk.display()
                ),
                "-device".to_owned(),
                "virtio-blk-device,drive=mmio0".to_owned(),
            ])
            .check(pci_function(0, 1, "block", 2, ConfigAccess::Ecam))
            .check(bars_assigned_in_windows())
            .check(Check::reports(
                "a `virtio-mmio … block v2 acpi` line (the disk on the microvm's own transport)",
                |fact| matches!(fact, Fact::VirtioMmio(line) if line.kind == "block" && line.found_by == Discovery::Acpi),
            ))
            .check(crc_line(DiskName::Blk(0), &fixtures.pcie_disks[1]))
            .check(crc_line(DiskName::Blk(1), &fixtures.pcie_mmio_disk))
            .check(powered_off(Status::Success)),
    ]
}

/// QEMU 7.2 `microvm,pcie=on`'s host bridge windows (its DSDT's
/// `PCI0._CRS`, kernel/tests/fixtures/acpi/qemu-7.2-microvm-pcie.dump).
const MICROVM_PCIE_MEM32: std::ops::Range<u64> = 0xc000_0000..0xe000_0000;
const MICROVM_PCIE_MEM64: std::ops::Range<u64> = 0xc0_0000_0000..0x100_0000_0000;

/// Each `pci-bar` line (a BAR mote assigned) naturally aligned inside
/// the window of its width, and one for each of the disk's two memory
/// BARs: neither QEMU 7.2's qboot nor QEMU 10's SeaBIOS assigns BARs on
/// `microvm,pcie=on`.
fn bars_assigned_in_windows() -> Check {
    Check::Custom {
        description: "each `pci-bar` line naturally aligned inside the host bridge's window of its width, and one for both BARs of 00:01.0 (MSI-X bar1, virtio bar4)",
        check: |_, report| {
            let bars: Vec<PciBar> = report
                .lines
                .iter()
                .filter_map(|line| match Fact::parse_line(line) {
                    Some(Ok(Fact::PciBar(bar))) => Some(bar),
                    _ => None,
                })
                .collect();
            for bar in &bars {
                let window = match bar.width {
                    BarWidth::Mem32 => MICROVM_PCIE_MEM32,
                    BarWidth::Mem64 => MICROVM_PCIE_MEM64,
                };
                let fits = bar.size.is_power_of_two()
                    && bar.address.is_multiple_of(bar.size)
                    && window.start <= bar.address
                    && bar.address + bar.size <= window.end;
                if !fits {
                    return Err(format!("{bar:?} is not aligned inside {window:#x?}"));
                }
            }
            let of_disk: Vec<u8> = bars
                .iter()
                .filter(|bar| (bar.bus, bar.device, bar.function) == (0, 1, 0))
                .map(|bar| bar.index)
                .collect();
            if of_disk == [1, 4] {
                Ok(())
            } else {
                Err(format!(
                    "00:01.0 has `pci-bar` lines for BARs {of_disk:?}, not [1, 4]"
                ))
            }
        },
    }
}

/// The `virtio-pci` line of the function at `bus:device.0`.
pub(super) fn pci_function(
    bus: u8,
    device: u8,
    kind: &'static str,
    vectors: u16,
    access: ConfigAccess,
) -> Check {
    Check::line_equals(Line(VirtioPci {
        bus,
        device,
        function: 0,
        kind,
        vectors,
        access,
    }))
}

/// `-smp 1, 2, 4, 8` with ACPI off (the MP table names the CPUs) and on
/// (the MADT does): every vCPU QEMU made is found and comes online.
fn smp_cases() -> Vec<BootCase> {
    const CASES: [(&str, u32, Machine); 8] = [
        ("smp-1-acpi-off", 1, Machine::MicrovmNoAcpi),
        ("smp-2-acpi-off", 2, Machine::MicrovmNoAcpi),
        ("smp-4-acpi-off", 4, Machine::MicrovmNoAcpi),
        ("smp-8-acpi-off", 8, Machine::MicrovmNoAcpi),
        ("smp-1-acpi-on", 1, Machine::MicrovmDefaults),
        ("smp-2-acpi-on", 2, Machine::MicrovmDefaults),
        ("smp-4-acpi-on", 4, Machine::MicrovmDefaults),
        ("smp-8-acpi-on", 8, Machine::MicrovmDefaults),
    ];
    CASES
        .into_iter()
        .map(|(name, cpus, machine)| {
            let case = BootCase::new(name, READY_CMDLINE)
                .machine(machine)
                .vcpus(cpus)
                .check(every_cpu_online(cpus))
                .check(powered_off(Status::Success));
            match machine {
                Machine::MicrovmNoAcpi => case.checks(complete_report(READY_CMDLINE)),
                Machine::MicrovmDefaults => case.expect_exit(ExpectedExit::QemuExitCode(0)),
                Machine::Q35 | Machine::MicrovmPcie => case,
            }
        })
        .collect()
}

/// `mote.blk=verify` of a disk and an initrd with `cpus` vCPUs: the CRCs,
/// computed by every CPU at once, equal zlib's on the host, and the rate
/// line names that many CPUs.
fn smp_verify(name: &'static str, cpus: u32, disk: &Path, initrd: &Path) -> BootCase {
    BootCase::new(name, format!("{READY_CMDLINE} mote.blk=verify"))
        .vcpus(cpus)
        .disk(Disk::read_only(disk))
        .initrd(initrd)
        .timeout(Duration::from_secs(60))
        .check(every_cpu_online(cpus))
        .check(disk_line(0, 16384, true))
        .check(crc_line(DiskName::Blk(0), disk))
        .check(crc_line(DiskName::Ramdisk(0), initrd))
        .check(Check::reports(
            "`blk0 verify 8.0 MiB on <vCPUs> cpus: …`",
            move |fact| {
                matches!(fact, Fact::Verified(line) if line.disk == DiskName::Blk(0)
                && line.mib == 8.0 && line.cpus == cpus as usize)
            },
        ))
        .check(Check::reports(
            "`ramdisk0 verify … on <vCPUs> cpus: …`",
            move |fact| {
                matches!(fact, Fact::Verified(line) if line.disk == DiskName::Ramdisk(0)
                && line.cpus == cpus as usize)
            },
        ))
        .check(powered_off(Status::Success))
}

/// The `cpus` line says `online` of `found` CPUs are online.
fn cpus_online(online: u32, found: u32) -> Check {
    Check::reports(
        "`cpus <online>/<found> online in …` with the CPUs allowed online",
        move |fact| matches!(fact, Fact::Cpus(cpus) if cpus.found == found && cpus.online == online),
    )
}

/// Every AP of the dump (a thread with `ap_startup`) has one `ap_timer`
/// span at least half the time it armed its timer for: a timer set from a
/// frequency off by 2x or more, or one that fired at once, fails.
fn every_ap_timer_fired(output: &[String], _: &report::BootReport) -> Result<(), String> {
    ap_timers(output).map(|_| ())
}

/// As [`every_ap_timer_fired`], and each `ap_timer` lies inside its CPU's
/// `ap_online`.
pub(super) fn every_ap_timer_fired_in_ap_online(
    output: &[String],
    _: &report::BootReport,
) -> Result<(), String> {
    let (trace, timers) = ap_timers(output)?;
    for timer in timers {
        let inside = trace.spans.iter().any(|span| {
            span.name == "ap_online"
                && span.thread == timer.thread
                && span.start <= timer.start
                && timer.end <= span.end
        });
        if !inside {
            return Err(format!("{:#x}: ap_timer outside ap_online", timer.thread));
        }
    }
    Ok(())
}

/// The `ap_timer` spans of the dump, checked: every AP has one, none shorter
/// than half of [`AP_TIMER_CHECK_US`].
fn ap_timers(output: &[String]) -> Result<(Trace, Vec<tslog::Span>), String> {
    let text = output.join("\n");
    let dump = tslog::parse_dump(&text).map_err(|error| format!("{error:#}"))?;
    let hz = dump.tsc_hz.ok_or("no tsc_hz in the frame")?;
    let trace = Trace::build(&dump.records);
    let threads_with = |name: &str| {
        let mut threads: Vec<u64> = trace
            .spans
            .iter()
            .filter(|span| span.name == name && !span.unclosed)
            .map(|span| span.thread)
            .collect();
        threads.sort_unstable();
        threads
    };
    let aps = threads_with("ap_startup");
    if aps.is_empty() {
        return Err("no AP in the dump".to_owned());
    }
    let timed = threads_with("ap_timer");
    if timed != aps {
        return Err(format!(
            "APs {aps:#x?}, ap_timer spans on threads {timed:#x?}"
        ));
    }
    let least = hz * AP_TIMER_CHECK_US / 1_000_000 / 2;
    let timers: Vec<tslog::Span> = trace
        .spans
        .iter()
        .filter(|span| span.name == "ap_timer")
        .cloned()
        .collect();
    if let Some(short) = timers.iter().find(|span| span.end - span.start < least) {
        return Err(format!(
            "{:#x}: its timer fired {} TSC cycles after arming, under half of {AP_TIMER_CHECK_US} us ({least} cycles at {hz} Hz)",
            short.thread,
            short.end - short.start
        ));
    }
    Ok((trace, timers))
}

/// The `cpus` line says all of `count` CPUs were found and are online.
pub(super) fn every_cpu_online(count: u32) -> Check {
    Check::reports(
        "`cpus <n>/<n> online in <microseconds> us`, n the vCPUs given",
        move |fact| {
            matches!(fact, Fact::Cpus(cpus) if cpus.found == count && cpus.online == count
                && matches!(cpus.elapsed, Elapsed::Micros(_)))
        },
    )
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use super::*;

    pub(in crate::test) fn fixtures() -> Fixtures {
        let test = PathBuf::from("target/test");
        Fixtures {
            initrd: test.join("initrd.bin"),
            small_disk: test.join("small-disk.img"),
            budget_disk: test.join("budget-disk.img"),
            random_disk: test.join("random-64M.img"),
            three_disks: ["8", "4", "2"].map(|mib| test.join(format!("random-{mib}M.img"))),
            write_disk: test.join("write.img"),
            modern_disk: test.join("modern-2M.img"),
            readonly_disk: test.join("readonly-2M.img"),
            bench_disk: test.join("bench-8M.img"),
            pci_disk: test.join("pci-8M.img"),
            smp_disks: ["smp1", "smp4"].map(|name| test.join(format!("{name}-8M.img"))),
            pcie_disks: ["pcie1", "pcie2"].map(|name| test.join(format!("{name}-8M.img"))),
            pcie_mmio_disk: test.join("pcie-mmio-2M.img"),
            twice_disk: test.join("twice-2M.img"),
            gzip_initrd: test.join("initrd.gz"),
            png_initrd: test.join("initrd.png"),
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
        // Cases run in parallel and QEMU locks a writable image: no two
        // share one. Read-only images take a shared lock.
        let mut images: Vec<&Path> = cases
            .iter()
            .flat_map(|case| case.disks.iter())
            .filter(|disk| !disk.read_only)
            .map(|disk| disk.image.as_path())
            .collect();
        let count = images.len();
        images.sort();
        images.dedup();
        assert_eq!(
            images.len(),
            count,
            "a writable image is shared between cases"
        );
        for case in &cases {
            assert!(!case.checks.is_empty(), "{} checks nothing", case.name);
            assert!(case.append.len() <= 2048, "{}", case.name);
        }
    }
}
