//! The boot report, printed after the ready mark: one fact per line, in the
//! shapes of `mote_boot::protocol::report` (the README lists them), and the
//! same facts for the status page.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use mote_boot::protocol::report::{
    AcpiNone, AcpiSleepRegister, AcpiUnusable, BarWidth, BootTimerWritten, Clock as ClockLine,
    ClockSource, Cmdline, ConfigAccess, Cpus, Disk, Line, Memory as MemoryLine, MemoryMapped,
    Module, ModuleUnusable, PREFIX, PciBar, Ramdisk as RamdiskLine, Ready, StartInfo, Tsc,
    VirtioMmio, VirtioPci,
};
use mote_boot::start_info::BootInfo;

use super::devices::{Devices, TransportFact};
use crate::acpi::{AcpiError, SleepControl};
use crate::block::{self, BlockDevice};
use crate::clock::Clock;
use crate::memory::{FRAMES, Memory};
use crate::net::http::Pages;
use crate::pci::bar::BarKind;
use crate::pci::host::Mechanism;
use crate::trace;

/// Facts gathered during boot, printed after the ready mark.
pub(super) struct Facts {
    pub(super) memory: Memory,
    /// The RSDP and what it gave for power-off.
    pub(super) acpi: Option<(u64, Result<SleepControl, AcpiError>)>,
    pub(super) clock: &'static Clock,
    pub(super) clock_at_ready: Option<(u64, ClockSource)>,
    /// Where the boot-timer byte was written at the ready mark.
    pub(super) boot_timer: Option<u64>,
    /// The CPUs found and brought online.
    pub(super) cpus: Cpus,
}

/// The ready mark's line: microseconds from the entry stub's first
/// instruction, or cycles when the TSC frequency is unknown.
pub(super) fn ready(clock: &Clock, entry_tsc: u64, ready_tsc: u64) -> Ready {
    match clock.tsc() {
        Some(tsc) => Ready::Micros(tsc.micros_between(entry_tsc, ready_tsc)),
        None => Ready::Cycles(ready_tsc.wrapping_sub(entry_tsc)),
    }
}

/// The boot facts, one report line each.
pub(super) fn write_boot_facts(out: &mut dyn Write, boot: &BootInfo, facts: &Facts) -> fmt::Result {
    let start_info = StartInfo {
        version: boot.version,
        cmdline: Cmdline::Bytes(boot.cmdline_bytes()),
    };
    writeln!(out, "{}", Line(start_info))?;
    let map = &boot.memory_map;
    let memory = MemoryLine {
        usable_bytes: map.usable_bytes(),
        regions: map.usable().count(),
    };
    writeln!(out, "{}", Line(memory))?;
    for region in map.regions() {
        log::debug!(
            "memory map: {:#014x}-{:#014x} {}",
            region.start,
            region.end,
            region.kind.name()
        );
    }
    let mapped = MemoryMapped {
        end: facts.memory.mapped.end(),
        heap_bytes: facts.memory.heap_bytes as u64,
        free_bytes: FRAMES.lock().free_bytes(),
    };
    writeln!(out, "{}", Line(mapped))?;
    for module in &boot.modules {
        if let Some(error) = &module.cmdline_ignored {
            log::warn!("module {}: command line ignored: {error}", module.index);
        }
        let line = Module {
            index: module.index,
            address: module.paddr,
            size: module.size,
        };
        writeln!(out, "{}", Line(line))?;
    }
    for unusable in &boot.unusable_modules {
        let line = ModuleUnusable {
            index: unusable.index,
            reason: unusable.problem,
        };
        writeln!(out, "{}", Line(line))?;
    }
    match &facts.acpi {
        Some((rsdp, Ok(sleep))) => writeln!(
            out,
            "{}",
            Line(AcpiSleepRegister {
                rsdp: *rsdp,
                register: sleep.address
            })
        )?,
        Some((rsdp, Err(reason))) => writeln!(
            out,
            "{}",
            Line(AcpiUnusable {
                rsdp: *rsdp,
                reason
            })
        )?,
        None => writeln!(out, "{}", Line(AcpiNone))?,
    }
    if let Some(tsc) = facts.clock.tsc() {
        writeln!(
            out,
            "{}",
            Line(Tsc {
                hz: tsc.hz(),
                source: tsc.source()
            })
        )?;
    }
    if let Some((ns, source)) = facts.clock_at_ready {
        writeln!(out, "{}", Line(ClockLine { source, ns }))?;
    }
    writeln!(out, "{}", Line(facts.cpus))?;
    if let Some(address) = facts.boot_timer {
        writeln!(out, "{}", Line(BootTimerWritten { address }))?;
    }
    Ok(())
}

/// The device lines, each after `prefix` (the report's, or the status
/// page's indent).
pub(super) fn write_device_lines(
    out: &mut dyn Write,
    devices: &Devices,
    prefix: &str,
) -> fmt::Result {
    for assigned in &devices.assigned_bars {
        let bar = PciBar {
            bus: assigned.bdf.bus,
            device: assigned.bdf.device,
            function: assigned.bdf.function,
            index: assigned.bar.index,
            address: assigned.bar.address,
            size: assigned.bar.size,
            width: if assigned.bar.kind == BarKind::Memory64 {
                BarWidth::Mem64
            } else {
                BarWidth::Mem32
            },
        };
        writeln!(out, "{prefix}{bar}")?;
    }
    for fact in &devices.transports {
        match *fact {
            TransportFact::Mmio {
                device,
                kind,
                version,
            } => {
                let transport = VirtioMmio {
                    base: device.base,
                    irq: device.irq,
                    kind,
                    version,
                    found_by: device.found_by,
                };
                writeln!(out, "{prefix}{transport}")?;
            }
            TransportFact::Pci {
                bdf,
                kind,
                vectors,
                access,
            } => {
                let function = VirtioPci {
                    bus: bdf.bus,
                    device: bdf.device,
                    function: bdf.function,
                    kind,
                    vectors,
                    access: match access {
                        Mechanism::Ecam => ConfigAccess::Ecam,
                        Mechanism::Ports => ConfigAccess::Ports,
                    },
                };
                writeln!(out, "{prefix}{function}")?;
            }
        }
    }
    for (index, disk) in devices.disks.iter().enumerate() {
        let disk = Disk {
            index,
            sectors: disk.sectors(),
            read_only: disk.read_only(),
        };
        writeln!(out, "{prefix}{disk}")?;
    }
    for (index, ramdisk) in devices.ramdisks.iter().enumerate() {
        let ramdisk = RamdiskLine {
            index,
            bytes: ramdisk.bytes().len() as u64,
            kind: block::probe_kind(ramdisk.bytes()),
        };
        writeln!(out, "{prefix}{ramdisk}")?;
    }
    Ok(())
}

/// The device lines of the boot report.
pub(super) fn write_devices(out: &mut dyn Write, devices: &Devices) -> fmt::Result {
    write_device_lines(out, devices, PREFIX)
}

/// What `/` and `/tslog` show.
pub(super) struct StatusPages {
    /// Facts fixed at the ready mark (TSC source, devices, phase table).
    facts: String,
    clock: &'static Clock,
}

impl StatusPages {
    /// The facts the status page shows besides the uptime.
    pub(super) fn new(
        boot: &BootInfo,
        devices: &Devices,
        clock: &'static Clock,
        ready: Ready,
        timer: &str,
    ) -> Self {
        let mut facts = String::new();
        let _ = write_status_facts(&mut facts, boot, devices, clock, ready, timer);
        Self { facts, clock }
    }
}

fn write_status_facts(
    out: &mut String,
    boot: &BootInfo,
    devices: &Devices,
    clock: &Clock,
    ready: Ready,
    timer: &str,
) -> fmt::Result {
    if let Some(tsc) = clock.tsc() {
        writeln!(
            out,
            "{}",
            Tsc {
                hz: tsc.hz(),
                source: tsc.source()
            }
        )?;
    }
    writeln!(out, "{ready}")?;
    writeln!(out, "cmdline {}", Cmdline::Bytes(boot.cmdline_bytes()))?;
    writeln!(out, "timer {timer}\ndevices:")?;
    write_device_lines(out, devices, "  ")?;
    writeln!(out, "boot phases (entry -> ready):")?;
    match clock.tsc() {
        Some(tsc) => trace::write_phase_table(out, trace::TSLOG.records(), tsc),
        None => writeln!(out, "(TSC frequency unknown)"),
    }
}

impl Pages for StatusPages {
    fn status(&self) -> Vec<u8> {
        let mut page = String::new();
        let _ = match self.clock.monotonic_ns() {
            Some((ns, source)) => writeln!(page, "mote\nuptime {} ms ({source})", ns / 1_000_000),
            None => writeln!(page, "mote\nuptime unknown"),
        };
        page.push_str(&self.facts);
        page.into_bytes()
    }

    fn tslog(&self) -> Vec<u8> {
        let mut dump = String::new();
        let _ = trace::write_dump(&mut dump, self.clock.tsc());
        dump.into_bytes()
    }
}
