//! The boot sequence: from the PVH stub's call into Rust to the ready mark,
//! the boot report and power-off. Each phase is named so a crash can say
//! where it happened.

extern crate alloc;

use core::fmt::Write;

use arrayvec::ArrayString;
use mote_boot::{BootInfo, MemoryKind, PhysicalMemory};
use spin::Once;

use crate::arch::{
    apic, console, cpu, heap, interrupts, paging, physical::IdentityMapped, poweroff, tsc,
};
use crate::memory::FRAMES;
use crate::memory::frames::{FRAME_SIZE, FrameAllocator};
use crate::options::{Crash, ExitPolicy, Options};
use crate::report::{Quoted, tsc_delta_micros};
use crate::{acpi, console_println, devices, phase, services, tslog};

/// Low memory holds the loader's structures (qboot's stack, start_info,
/// command line, MP table, EBDA): never hand it out.
const LOW_MEMORY_END: u64 = 0x10_0000;
/// Heap size: an eighth of free RAM, between these bounds.
const HEAP_MIN: u64 = 256 * 1024;
const HEAP_MAX: u64 = 64 * 1024 * 1024;
/// microvm's (and Firecracker's) I/O APIC with ACPI off: QEMU
/// `IO_APIC_DEFAULT_ADDRESS` (include/hw/i386/ioapic.h), GSIs from 0.
const DEFAULT_IO_APIC: u64 = 0xfec0_0000;
/// An address no page table maps (PML4 entry 128), for `mote.crash=page-fault`.
const UNMAPPED_ADDRESS: u64 = 0x0000_4000_0000_0000;

static BOOT_INFO: Once<BootInfo> = Once::new();

/// Facts gathered during boot, printed after the ready mark.
struct Facts {
    memory_end: u64,
    heap_bytes: usize,
    acpi: Option<Result<acpi::SleepControl, acpi::AcpiError>>,
    tsc: Option<tsc::TscFrequency>,
    clock_at_ready: (u64, tsc::ClockSource),
}

/// Called by the PVH stub (`boot/src/pvh.s`) on the boot stack.
pub fn start(start_info_paddr: u32, entry_tsc: u64) -> ! {
    let rust_tsc = record_entry_stub(entry_tsc);

    // Top-level phases hand over with `then`: no untraced time between them.
    let phase = tslog::span_from("interrupts_init", rust_tsc);
    interrupts::init();

    let phase = phase.then("start_info");
    let boot = match BootInfo::from_start_info(&IdentityMapped::boot(), u64::from(start_info_paddr))
    {
        Ok(info) => BOOT_INFO.call_once(|| info),
        Err(error) => fatal(format_args!(
            "bad start_info at {start_info_paddr:#x}: {error}"
        )),
    };

    let phase = phase.then("console_init");
    let options = Options::parse(boot.cmdline());
    console::init(options.max_log_level());
    for unknown in &options.unrecognised {
        log::warn!("unrecognised option {:?} ignored", unknown.option);
    }
    let cleanup = boot.memory_map.cleanup;
    if cleanup != Default::default() {
        log::debug!("memory map cleanup: {cleanup:?}");
    }

    let phase = phase.then("memory_init");
    let (memory_end, heap_bytes) = init_memory(boot);

    let phase = phase.then("acpi_init");
    let acpi = boot.rsdp.map(|rsdp| {
        let found = acpi::find_sleep_control(&IdentityMapped::boot(), rsdp);
        match &found {
            Ok(sleep) => poweroff::set_acpi_sleep(*sleep),
            Err(error) => log::warn!("ACPI power-off unavailable: {error}"),
        }
        found
    });

    let phase = phase.then("tsc_frequency");
    let tsc = tsc::detect();
    if tsc.is_none() {
        log::error!("TSC frequency unknown: no hypervisor leaf, kvmclock, CPUID 0x15 or PIT");
    }

    let phase = phase.then("devices_init");
    // With mote.exit=ready nothing is served: the NIC is not started.
    let mut devices = devices::init(boot, memory_end, options.exit != ExitPolicy::Ready);

    let phase = phase.then("net_init");
    let mut network = devices.net.take().and_then(|(device, transport)| {
        start_network(
            boot,
            device,
            transport,
            &options,
            tsc.map_or(0, |tsc| tsc.hz),
        )
    });

    if let Some(crash) = options.crash {
        let _phase = phase.then("crash_test");
        crash_on_purpose(crash);
        unreachable!("crash_on_purpose returned");
    }
    drop(phase);

    let ready_tsc = cpu::rdtsc();
    tslog::event_at(ready_tsc, "ready", None);
    // The host times this line: it goes out first, before the boot log.
    match tsc {
        Some(tsc) => console::print_now(format_args!(
            "mote: ready {} us after entry\n",
            tsc_delta_micros(entry_tsc, ready_tsc, tsc.hz)
        )),
        None => console::print_now(format_args!(
            "mote: ready {} cycles after entry (TSC frequency unknown)\n",
            ready_tsc.wrapping_sub(entry_tsc)
        )),
    }
    let clock_at_ready = tsc::monotonic_ns(tsc.map_or(0, |tsc| tsc.hz));
    phase::set("report");
    console::go_live();
    report(
        boot,
        &Facts {
            memory_end,
            heap_bytes,
            acpi,
            tsc,
            clock_at_ready,
        },
    );
    devices::report(&devices);
    if let Some(network) = &network {
        network.report();
    }
    let workloads_ok = devices::run_workloads(&mut devices, &options, tsc.map_or(0, |tsc| tsc.hz));
    if options.tslog {
        dump_tslog(tsc.map_or(0, |tsc| tsc.hz));
    }
    if let Some(network) = network.as_mut() {
        let pages = services::StatusPages {
            facts: status_facts(boot, &devices, tsc, entry_tsc, ready_tsc),
            tsc_hz: tsc.map_or(0, |tsc| tsc.hz),
        };
        network.serve(&pages);
        log::info!("powered off over HTTP");
    }
    let status = if workloads_ok {
        poweroff::Status::Success
    } else {
        poweroff::Status::Failure
    };

    match options.exit {
        // Nothing keeps the VM alive yet (no network service).
        ExitPolicy::Ready | ExitPolicy::WhenIdle => poweroff::poweroff(status),
        ExitPolicy::Never => {
            log::info!("mote.exit=never: halting; stop the VM from the host");
            cpu::halt_forever()
        }
    }
}

/// Interrupts (LAPIC, the I/O APICs from the MADT or microvm's fixed one,
/// the device's GSI, level-triggered) and the network interface.
fn start_network(
    boot: &BootInfo,
    device: crate::drivers::virtio_net::VirtioNetDevice,
    transport: crate::virtio::MmioDevice,
    options: &Options<'_>,
    tsc_hz: u64,
) -> Option<services::Network> {
    let gsi = match apic::init() {
        Some(_) => {
            let mut io_apics = 0;
            if let Some(rsdp) = boot.rsdp {
                match acpi::find_io_apics(&IdentityMapped::boot(), rsdp) {
                    Ok((found, _overrides)) => {
                        for io_apic in &found {
                            apic::add_io_apic(io_apic.address, io_apic.gsi_base);
                        }
                        io_apics = found.len();
                    }
                    Err(error) => {
                        log::warn!("MADT unusable ({error}); assuming microvm's I/O APIC")
                    }
                }
            }
            if io_apics == 0 {
                apic::add_io_apic(DEFAULT_IO_APIC, 0);
            }
            if apic::route_level_gsi(transport.irq) {
                Some(transport.irq)
            } else {
                log::warn!(
                    "no I/O APIC serves GSI {}: polling net0 every 1 ms",
                    transport.irq
                );
                None
            }
        }
        None => {
            log::warn!("no local APIC: polling net0 every 1 ms");
            None
        }
    };
    match services::Network::new(device, gsi, options.ip, tsc_hz) {
        Ok(network) => Some(network),
        Err(error) => {
            log::error!(
                "ip={:?}: {error}; network not started",
                options.ip.unwrap_or("")
            );
            None
        }
    }
}

/// What the status page shows besides the uptime.
fn status_facts(
    boot: &BootInfo,
    devices: &devices::Devices,
    tsc: Option<tsc::TscFrequency>,
    entry_tsc: u64,
    ready_tsc: u64,
) -> alloc::string::String {
    let mut facts = alloc::string::String::new();
    let hz = tsc.map_or(0, |tsc| tsc.hz);
    if let Some(tsc) = tsc {
        let _ = writeln!(facts, "tsc {} Hz from {}", tsc.hz, tsc.source);
    }
    let _ = writeln!(
        facts,
        "ready {} us after entry",
        tsc_delta_micros(entry_tsc, ready_tsc, hz)
    );
    let _ = writeln!(facts, "cmdline {}", Quoted(boot.cmdline_bytes()));
    let _ = writeln!(facts, "timer {}\ndevices:", apic::timer_kind());
    let _ = devices::write_lines(devices, &mut facts, "  ");
    let _ = writeln!(facts, "boot phases (entry -> ready):");
    let _ = tslog::write_phase_table(&mut facts, tslog::TSLOG.records(), hz);
    facts
}

/// The stub's own phases, from the TSC stamps it left (`pvh.s`), then the
/// call into Rust and the writing of these records as a span of its own, so
/// no time goes unaccounted before the first Rust phase. Returns the TSC at
/// which that span ends.
fn record_entry_stub(entry_tsc: u64) -> u64 {
    let [_, tables, long_mode, bss] = mote_boot::pvh::stub_stamps();
    tslog::enter_at("pvh_entry", entry_tsc);
    tslog::span_at("load_descriptor_tables", entry_tsc, tables);
    tslog::span_at("enable_long_mode", tables, long_mode);
    tslog::span_at("zero_bss", long_mode, bss);
    tslog::exit_at("pvh_entry", bss);
    let now = cpu::rdtsc();
    tslog::span_at("rust_entry", bss, now);
    now
}

/// Prints the trace in FreeBSD's `debug.tslog` format between two frame
/// lines; the first carries what the host needs to convert TSC ticks.
fn dump_tslog(tsc_hz: u64) {
    console::with_writer(|out| {
        let _ = tslog::write_dump(out, tsc_hz);
    });
}

/// Maps all RAM, builds the frame allocator, gives the heap its frames.
/// Returns the end of the identity map and the heap size.
fn init_memory(boot: &BootInfo) -> (u64, usize) {
    let map = &boot.memory_map;
    if map.usable_bytes() == 0 {
        fatal(format_args!(
            "no usable RAM: start_info v{} gave {} memory map entries",
            boot.version, boot.memory_map_entries
        ));
    }
    let (kernel_start, kernel_end) = mote_boot::pvh::kernel_image();
    let mut reserved: arrayvec::ArrayVec<(u64, u64), 20> = arrayvec::ArrayVec::new();
    reserved.push((0, LOW_MEMORY_END));
    reserved.push((kernel_start, kernel_end));
    for module in &boot.modules {
        let _ = reserved.try_push((module.paddr, module.paddr + module.size));
    }
    let mut usable: arrayvec::ArrayVec<(u64, u64), { mote_boot::memory_map::MAX_REGIONS }> =
        arrayvec::ArrayVec::new();
    for region in map.usable() {
        usable.push((region.start, region.end));
    }
    let mut frames = {
        let _span = tslog::span("frame_allocator");
        FrameAllocator::new(&usable, &reserved)
    };

    let memory_end = {
        let _span = tslog::span("identity_map");
        match paging::identity_map_up_to(map.ram_end(), &mut frames) {
            Ok(end) => end,
            Err(error) => fatal(format_args!("cannot map RAM above 4 GiB: {error:?}")),
        }
    };
    if map.ram_end() > memory_end {
        log::warn!(
            "RAM above {memory_end:#x} is not mapped (identity map limit); {} bytes unused",
            map.ram_end() - memory_end
        );
        frames = FrameAllocator::new(
            &usable
                .iter()
                .map(|&(start, end)| (start, end.min(memory_end)))
                .collect::<arrayvec::ArrayVec<_, { mote_boot::memory_map::MAX_REGIONS }>>(),
            &reserved,
        );
    }

    let _span = tslog::span("heap_init");
    let heap_bytes = (frames.free_bytes() / 8).clamp(HEAP_MIN, HEAP_MAX) & !(FRAME_SIZE - 1);
    let heap_start = match frames.allocate(heap_bytes / FRAME_SIZE, 1) {
        Ok(start) => start,
        Err(error) => fatal(format_args!(
            "no room for a {heap_bytes}-byte heap: {error:?}"
        )),
    };
    // SAFETY: the frames were just taken from the allocator, are identity
    // mapped, and are given to the heap once.
    unsafe { heap::init(heap_start, heap_bytes as usize) };
    let probe = alloc::boxed::Box::new(0x6d6f_7465_u32);
    if *probe != 0x6d6f_7465 {
        fatal(format_args!("heap self-test failed"));
    }
    drop(probe);

    // Prove the highest RAM frame is really mapped and backed.
    if let Some(top) = map.usable().map(|r| r.end.min(memory_end)).max() {
        let last = (top - FRAME_SIZE) & !(FRAME_SIZE - 1);
        let reachable = IdentityMapped { end: memory_end };
        let mut byte = [0u8; 1];
        if reachable.read(last, &mut byte).is_err() {
            fatal(format_args!("top of RAM {last:#x} is not reachable"));
        }
    }

    *FRAMES.lock() = frames;
    (memory_end, heap_size())
}

fn heap_size() -> usize {
    heap::size()
}

fn report(boot: &BootInfo, facts: &Facts) {
    console_println!(
        "mote: start_info v{} cmdline {}",
        boot.version,
        Quoted(boot.cmdline_bytes())
    );
    let map = &boot.memory_map;
    console_println!(
        "mote: memory {} bytes usable in {} regions",
        map.usable_bytes(),
        map.usable().count()
    );
    for region in map.regions() {
        log::debug!(
            "memory map: {:#014x}-{:#014x} {}",
            region.start,
            region.end,
            region.kind.name()
        );
    }
    let _ = MemoryKind::Ram;
    console_println!(
        "mote: memory mapped up to {:#x}, heap {} bytes, {} bytes free",
        facts.memory_end,
        facts.heap_bytes,
        FRAMES.lock().free_bytes()
    );
    for (index, module) in boot.modules.iter().enumerate() {
        console_println!(
            "mote: module {index} at {:#x} size {}",
            module.paddr,
            module.size
        );
    }
    match &facts.acpi {
        Some(Ok(sleep)) => console_println!(
            "mote: acpi rsdp {:#x} sleep register {:#x}",
            boot.rsdp.unwrap_or(0),
            sleep.address
        ),
        Some(Err(error)) => console_println!(
            "mote: acpi rsdp {:#x} unusable: {error}",
            boot.rsdp.unwrap_or(0)
        ),
        None => console_println!("mote: acpi none"),
    }
    if let Some(tsc) = facts.tsc {
        console_println!("mote: tsc {} Hz from {}", tsc.hz, tsc.source);
    }
    let (clock_ns, clock) = facts.clock_at_ready;
    console_println!("mote: clock {} {clock_ns} ns at ready", clock.name());
}

fn crash_on_purpose(crash: Crash) {
    log::info!("mote.crash={crash:?}: failing on purpose");
    match crash {
        Crash::PageFault => {
            // SAFETY: deliberately not safe: the address is unmapped and the
            // read raises #PF, which powers the VM off.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
            log::error!("read {value:#x} from an unmapped address?");
        }
        Crash::Panic => panic!("mote.crash=panic asked for a panic"),
        Crash::DivideError => {
            // SAFETY: raises #DE on purpose; the handler powers off.
            unsafe {
                core::arch::asm!("xor edx, edx", "xor eax, eax", "div eax", out("eax") _, out("edx") _)
            };
        }
    }
}

/// Prints a boot failure and powers off with the failure status.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    console::recover_for_crash();
    let mut phase_name = ArrayString::<32>::new();
    let _ = write!(phase_name, "{}", phase::current());
    console_println!("mote: FATAL in phase {phase_name}: {args}");
    poweroff::poweroff(poweroff::Status::Failure)
}

/// The panic path: message, location and boot phase, then power off.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::recover_for_crash();
    match info.location() {
        Some(location) => console_println!(
            "mote: PANIC in phase {} at {}:{}:{}: {}",
            phase::current(),
            location.file(),
            location.line(),
            location.column(),
            info.message()
        ),
        None => console_println!(
            "mote: PANIC in phase {}: {}",
            phase::current(),
            info.message()
        ),
    }
    poweroff::poweroff(poweroff::Status::Failure)
}
