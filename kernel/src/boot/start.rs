//! The boot sequence: from the PVH stub's call into Rust to the ready mark,
//! the boot report and power-off. Each phase is a tslog span whose name a
//! crash reports.
#![deny(unsafe_code)]

use arrayvec::ArrayVec;
use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Cpus, Elapsed, Line};
use mote_boot::start_info::BootInfo;
use mote_boot::start_info::memory_map::MAX_REGIONS;

extern crate alloc;
use alloc::vec::Vec;

use super::slot::{Slot, Storage};
use super::{crash, devices, platform, poweroff, report};
use crate::arch::x86_64::apic::local::{self, LocalApic};
use crate::arch::x86_64::{cpu, descriptors, per_cpu};
use crate::cmdline::{Crash, ExitPolicy, MAX_TSC_EARLY_KHZ, Options, TscEarlyKhz};
use crate::memory::physical::IdentityMapped;
use crate::net::service;
use crate::{clock, console, memory, smp, trace};

// Out of the zeroed .bss (974 `rep stosq` steps under icount): the slot
// writes the value before handing it out.
#[allow(
    unsafe_code,
    reason = "a link section for a value no byte of which is read unwritten"
)]
#[unsafe(link_section = ".bss.noinit.boot_info")]
static BOOT_INFO_STORAGE: Storage<BootInfo> = Storage::uninit();
static BOOT_INFO: Slot<BootInfo> = Slot::new(&BOOT_INFO_STORAGE);

/// Called by the PVH stub (`boot/src/pvh/pvh.s`) on the boot stack.
pub fn start(start_info_paddr: u32, entry_tsc: u64) -> ! {
    // Before the first trace record: records name the CPU through GS.
    per_cpu::init_this_cpu(0);
    let rust_tsc = record_entry_stub(entry_tsc);

    // Top-level phases hand over with `then`: no untraced time between them.
    let phase = trace::span_from("interrupts_init", rust_tsc);
    descriptors::init();

    let phase = phase.then("start_info");
    // Read where it stays: a `BootInfo` is 7.8 KiB, and each move of it is
    // a copy (the ones into a `spin::Once` cost 2 700 instructions).
    let Some(slot) = BOOT_INFO.take(|storage| storage.write(BootInfo::empty())) else {
        super::fatal(format_args!("the boot entered twice"))
    };
    if let Err(error) = slot.read_start_info(&IdentityMapped::boot(), u64::from(start_info_paddr)) {
        super::fatal(format_args!(
            "bad start_info at {start_info_paddr:#x}: {error}"
        ))
    }
    let boot: &'static BootInfo = slot;

    let phase = phase.then("console_init");
    let options = Options::parse(boot.cmdline());
    if options.tslog_markers {
        trace::TSLOG.enable_markers();
    }
    console::init(options.max_log_level());
    for unknown in &options.unrecognised {
        log::warn!("unrecognised option {:?} ignored", unknown.option);
    }
    let cleanup = boot.memory_map.cleanup;
    if cleanup != Default::default() {
        log::debug!("memory map cleanup: {cleanup:?}");
    }

    let phase = phase.then("memory_init");
    let memory = memory::init(boot);

    let phase = phase.then("acpi_init");
    let platform = platform::init(boot);

    let phase = phase.then("tsc_frequency");
    if let Some(TscEarlyKhz::Rejected { value, reason }) = options.tsc_early_khz {
        log::warn!("tsc_early_khz={value:?} ignored: {reason} (1 to {MAX_TSC_EARLY_KHZ} kHz)");
    }
    // A PIT calibration, the last resort, goes on until the frequency is
    // first needed (net_init when serving, else after ready).
    let clock = clock::init(options.tsc_early_khz.and_then(TscEarlyKhz::hz));

    // The other CPUs come up while this one brings up the devices.
    let phase = phase.then("smp_init");
    let ap_hook = (options.crash == Some(Crash::ApPageFault)).then_some(crash::page_fault as fn());
    let smp = smp_init(boot, &platform, clock, &options, ap_hook);

    let phase = phase.then("devices_init");
    // With mote.exit=ready nothing is served: the NIC is not started.
    let serve = options.exit != ExitPolicy::Ready;
    let mut devices = devices::init(
        boot,
        options.virtio_mmio_words,
        &platform,
        memory.mapped,
        serve,
    );

    let phase = phase.then("net_init");
    let mut network = devices.net.take().and_then(|(device, _, interrupt)| {
        service::start(device, interrupt, platform.tables, options.ip, clock)
            .inspect_err(|error| log::error!("{error}"))
            .ok()
    });

    let phase = phase.then("smp_wait");
    let cpus = smp.wait(clock);

    if let Some(crash) = options.crash {
        let _phase = phase.then("crash_test");
        crash::crash_on_purpose(crash);
        unreachable!("crash_on_purpose returned");
    }
    drop(phase);

    let ready_tsc = cpu::rdtsc();
    trace::event_at(ready_tsc, "ready", None);
    let boot_timer = platform::signal_boot_timer(options.boot_timer, platform.vmm);
    // The host times this line: it goes out first, before the boot log.
    if clock.tsc().is_none() {
        log::error!("TSC frequency unknown: no hypervisor leaf, kvmclock, CPUID 0x15 or PIT");
    }
    let ready = report::ready(clock, entry_tsc, ready_tsc);
    console::print_now(format_args!("{}\n", Line(ready)));
    let clock_at_ready = clock.monotonic_ns();
    trace::phase::set("report");
    console::go_live();
    let facts = report::Facts {
        memory,
        acpi: platform.report(),
        clock,
        clock_at_ready,
        boot_timer,
        cpus: in_micros(cpus, clock),
    };
    let mut out = console::Writer;
    let _ = report::write_boot_facts(&mut out, boot, &facts);
    if options.acpi_dump {
        platform.dump(&mut out);
    }
    let _ = report::write_devices(&mut out, &devices);
    if let Some(network) = &network {
        let _ = network.write_report(&mut out);
    }
    // Every CPU online computes the CRCs of mote.blk=verify.
    let workers = smp::dispatch::OnlineCpus::now(clock.tsc());
    if let Some(tsc) = clock.tsc() {
        let silent = smp::bring_up::set_timers_late(&workers, tsc, clock.bus_hz());
        if silent > 0 {
            log::warn!(
                "the timers of {silent} CPUs, armed after ready, did not fire within {} us",
                smp::bring_up::AP_TIMER_LATE_LIMIT_US
            );
        }
    }
    let workloads_ok = crate::block::workloads::run(
        &mut devices.disks,
        &devices.ramdisks,
        &options,
        clock.tsc(),
        &workers,
        cpu::rdtsc,
        &mut out,
    )
    .unwrap_or(false);
    if options.exit_cost {
        let _ = super::exit_cost::run(&devices.transports, clock.tsc(), &mut out);
    }
    if options.tslog {
        let _ = trace::write_dump(&mut out, clock.tsc());
    }
    if let Some(network) = network.as_mut() {
        let timer = local::init().map_or("lapic-oneshot", LocalApic::timer_kind);
        let pages = report::StatusPages::new(boot, &devices, clock, ready, timer);
        if options.stray_interrupt {
            crash::stray_interrupt();
        }
        network.serve(&pages);
        log::info!("powered off over HTTP");
    }
    let status = if workloads_ok {
        Status::Success
    } else {
        Status::Failure
    };

    match options.exit {
        // Nothing keeps the VM alive any more.
        ExitPolicy::Ready | ExitPolicy::WhenIdle => poweroff::poweroff(status),
        ExitPolicy::Never => {
            log::info!("mote.exit=never: halting; stop the VM from the host");
            cpu::halt_forever()
        }
    }
}

/// The other CPUs: all accounted for, or started and not yet waited for.
enum Smp {
    Done(Cpus),
    Starting {
        found: u32,
        starting: smp::bring_up::Starting,
    },
}

/// `cpus` with its bring-up time in microseconds once the frequency is
/// known (it was taken in cycles if a calibration was still running).
fn in_micros(cpus: Cpus, clock: &clock::Clock) -> Cpus {
    match (cpus.elapsed, clock.tsc()) {
        (Elapsed::Cycles(cycles), Some(tsc)) => Cpus {
            elapsed: Elapsed::Micros(tsc.micros_between(0, cycles)),
            ..cpus
        },
        _ => cpus,
    }
}

impl Smp {
    /// Waits for the CPUs started (bounded) and says how many are online.
    fn wait(self, clock: &clock::Clock) -> Cpus {
        let (found, starting) = match self {
            Self::Done(cpus) => return cpus,
            Self::Starting { found, starting } => (found, starting),
        };
        let brought_up = smp::bring_up::wait(starting);
        for &(apic_id, timer_armed) in &brought_up.missing {
            let why = if timer_armed {
                " (its timer, armed, never fired)"
            } else {
                ""
            };
            log::warn!("CPU with APIC id {apic_id} did not come online{why}; going on without it");
        }
        log::debug!("AP trampoline at {:#x}", brought_up.trampoline);
        let online = brought_up.started - brought_up.missing.len();
        Cpus {
            online: u32::try_from(1 + online).unwrap_or(u32::MAX),
            found,
            // Not finishing a calibration before ready: the cycles are
            // converted in the report (`Cpus::in_micros`).
            elapsed: match clock.tsc_if_known() {
                Some(tsc) => {
                    Elapsed::Micros(tsc.micros_between(brought_up.began, brought_up.ended))
                }
                None => Elapsed::Cycles(brought_up.ended.wrapping_sub(brought_up.began)),
            },
        }
    }
}

/// Finds the processors the firmware tables list and starts those the
/// command line allows (`mote.smp=`, `maxcpus=`), without waiting.
fn smp_init(
    boot: &BootInfo,
    platform: &platform::Platform,
    clock: &clock::Clock,
    options: &Options<'_>,
    first_ap_hook: Option<fn()>,
) -> Smp {
    let boot_cpu_only = |found| {
        Smp::Done(Cpus {
            online: 1,
            found,
            elapsed: Elapsed::Micros(0),
        })
    };
    let processors = match smp::discovery::processors(platform.tables, &IdentityMapped::boot()) {
        Ok(processors) => processors,
        Err(error) => {
            log::warn!("{error}: the boot CPU only");
            return boot_cpu_only(1);
        }
    };
    if processors.duplicates > 0 || processors.truncated || processors.beyond_limit > 0 {
        log::warn!(
            "{:?} processors: {} duplicate APIC ids, {} beyond {} CPUs, entries cut short: {}",
            processors.source,
            processors.duplicates,
            processors.beyond_limit,
            smp::MAX_CPUS,
            processors.truncated
        );
    }
    log::debug!(
        "{:?} lists APIC ids {:?}",
        processors.source,
        processors.apic_ids()
    );
    let found = u32::try_from(processors.count().max(1)).unwrap_or(u32::MAX);
    // Linux's maxcpus= counts the boot CPU; 0 means it alone, like 1.
    let others = match (options.smp, options.max_cpus) {
        (false, _) => 0,
        (true, Some(max)) => usize::try_from(max.saturating_sub(1)).unwrap_or(usize::MAX),
        (true, None) => usize::MAX,
    };
    if processors.count() <= 1 || others == 0 {
        return boot_cpu_only(found);
    }
    let usable: ArrayVec<(u64, u64), MAX_REGIONS> = boot
        .memory_map
        .usable()
        .map(|region| (region.start, region.end))
        .collect();
    let mut occupied: Vec<(u64, u64)> = boot.loader_ranges.to_vec();
    occupied.extend(
        boot.modules
            .iter()
            .map(|module| (module.paddr, module.paddr.saturating_add(module.size))),
    );
    if let Some(tables) = platform.tables {
        occupied.extend(tables.tables.iter().map(|table| {
            (
                table.paddr,
                table.paddr.saturating_add(table.bytes.len() as u64),
            )
        }));
    }
    let started = smp::bring_up::start(
        processors.apic_ids(),
        &usable,
        &occupied,
        // Its delays and deadline have a safe fallback frequency.
        clock.tsc_if_known(),
        clock.bus_hz(),
        others,
        first_ap_hook,
    );
    match started {
        Ok(starting) => Smp::Starting { found, starting },
        Err(error) => {
            log::warn!("application processors not started: {error}");
            boot_cpu_only(found)
        }
    }
}

/// The stub's own phases, from the TSC stamps it left (`pvh.s`), then the
/// call into Rust and the writing of these records as a span of its own, so
/// no time goes unaccounted before the first Rust phase. Returns the TSC at
/// which that span ends.
fn record_entry_stub(entry_tsc: u64) -> u64 {
    let [_, tables, long_mode, bss] = mote_boot::pvh::stub_stamps();
    let stub = trace::Writer::EntryStub;
    trace::enter_at(stub, "pvh_entry", entry_tsc);
    trace::span_at(stub, "load_descriptor_tables", entry_tsc, tables);
    trace::span_at(stub, "enable_long_mode", tables, long_mode);
    trace::span_at(stub, "zero_bss", long_mode, bss);
    trace::exit_at(stub, "pvh_entry", bss);
    let now = cpu::rdtsc();
    trace::span_at(trace::Writer::Kernel, "rust_entry", bss, now);
    now
}
