//! Starting the application processors (docs/smp.md): the trampoline
//! (`trampoline.s`) copied to a free page below 1 MiB, a stack, a GDT and
//! a TSS made for each CPU, then INIT and two STARTUP IPIs sent to every
//! one of them before waiting for any (so they all come up at once), and
//! later (the boot CPU brings up its devices meanwhile) a bounded wait
//! for each to say it is online. Each then waits for work (`dispatch`).

extern crate alloc;

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

use arrayvec::ArrayVec;
use mote_boot::protocol::tslog::AP_TIMER_CHECK_US;
use spin::Once;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr4, Cr4Flags};
use x86_64::structures::gdt::DescriptorFlags;

use super::processors::MAX_CPUS;
use super::trampoline_page::{self, PAGE_SIZE};
use super::work::Workers;
use crate::arch::x86_64::apic::local::{self, LocalApic};
use crate::arch::x86_64::apic::registers::InterruptCommand;
use crate::arch::x86_64::apic::timer::OneShotTimer;
use crate::arch::x86_64::cpu::{self, Msr};
use crate::arch::x86_64::descriptors::{AP_DOUBLE_FAULT_STACK_SIZE, CpuDescriptors};
use crate::arch::x86_64::interrupts;
use crate::arch::x86_64::per_cpu;
use crate::clock::TscFrequency;
use crate::memory::FRAMES;
use crate::memory::frames::FRAME_SIZE;
use crate::trace;

/// Where in the trampoline page [`TrampolineData`] goes; the code before
/// it must be shorter (checked when it is copied).
const DATA_OFFSET: usize = 0x800;
/// Each application processor's stack.
const AP_STACK_SIZE: u64 = 64 * 1024;
/// `IA32_EFER` (Intel SDM vol. 4, table 2-2).
const MSR_EFER: u32 = 0xc000_0080;
/// The trampoline GDT's selectors: entries 1, 2 and 3.
const CODE32_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const CODE64_SELECTOR: u16 = 0x18;
/// How long every CPU gets to come online, from the first INIT: far more
/// than any VMM needs when the host is idle (a few ms under TCG with 8
/// vCPUs on 2 host cores), and enough when it is not (one boot on a 2-core
/// host at load 7 took 1.0 s for its last CPU), so only a CPU that will
/// not come is waited for this long.
const ONLINE_TIMEOUT_US: u64 = 5_000_000;
/// The INIT to STARTUP delay of the MultiProcessor Specification (§B.4),
/// which Linux's `smp_quirk_init_udelay` skips on modern CPUs; mote skips
/// it under a hypervisor (CPUID.1:ECX bit 31), whose vCPUs take INIT at
/// once.
const INIT_DELAY_US: u64 = 10_000;
/// Between the two STARTUP IPIs, as Linux waits on modern CPUs (10 µs)
/// and otherwise (300 µs).
const STARTUP_DELAY_US: u64 = 10;
const LEGACY_STARTUP_DELAY_US: u64 = 300;
/// xAPIC: reads of the ICR's delivery status before an IPI counts as lost.
const ICR_SPINS: u32 = 100_000;
/// The TSC rate assumed for timeouts when none is known: the fastest mote
/// believes (clock::frequency), so a wait is never shorter than meant.
const FALLBACK_TSC_HZ: u64 = 10_000_000_000;
/// CPUID.1:ECX bit 31: running under a hypervisor.
const CPUID_HYPERVISOR: u32 = 1 << 31;

/// What the boot CPU leaves in the trampoline page for the others; its
/// layout is the assembly's (`const` operands below). Little-endian
/// `u64`s; `gdt_pointer` and `far32` are the 6-byte operands of `lgdt` and
/// `ljmp` in their low bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct TrampolineData {
    /// Null, 32-bit code, data, 64-bit code.
    gdt: [u64; 4],
    /// Limit in bits 0-15, base in bits 16-47.
    gdt_pointer: u64,
    /// Address of `ap_trampoline32` in bits 0-31, selector in bits 32-47.
    far32: u64,
    /// The same for `ap_trampoline64`.
    far64: u64,
    cr3: u64,
    efer: u64,
    cr0: u64,
    cr4: u64,
    /// [`ap_entry`].
    entry: u64,
    /// How many `stack_tops` there are (low 32 bits).
    slot_count: u64,
    /// Slots claimed so far (low 32 bits, `lock xadd`).
    slots: u64,
    /// CPUs that ran the first instructions (low 32 bits, `lock inc`).
    started: u64,
    stack_tops: [u64; MAX_CPUS],
}

const _: () = assert!((DATA_OFFSET + size_of::<TrampolineData>()) as u64 <= PAGE_SIZE);

global_asm!(
    include_str!("trampoline.s"),
    data = const DATA_OFFSET,
    started = const offset_of!(TrampolineData, started),
    gdt_pointer = const offset_of!(TrampolineData, gdt_pointer),
    far32 = const offset_of!(TrampolineData, far32),
    far64 = const offset_of!(TrampolineData, far64),
    cr3 = const offset_of!(TrampolineData, cr3),
    efer = const offset_of!(TrampolineData, efer),
    cr0 = const offset_of!(TrampolineData, cr0),
    cr4 = const offset_of!(TrampolineData, cr4),
    entry = const offset_of!(TrampolineData, entry),
    slot_count = const offset_of!(TrampolineData, slot_count),
    slots = const offset_of!(TrampolineData, slots),
    stack_tops = const offset_of!(TrampolineData, stack_tops),
    cr0_pe = const Cr0Flags::PROTECTED_MODE_ENABLE.bits(),
    cr4_pae = const Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits(),
    msr_efer = const MSR_EFER,
    data_selector = const DATA_SELECTOR,
    options(att_syntax)
);

unsafe extern "C" {
    /// The trampoline's bounds and its 32- and 64-bit entries
    /// (`trampoline.s`); only their addresses are used.
    static ap_trampoline_start: u8;
    static ap_trampoline32: u8;
    static ap_trampoline64: u8;
    static ap_trampoline_end: u8;
}

/// One CPU the boot CPU starts: its APIC id, and the descriptor tables of
/// the slot with the same index (a CPU takes the slot it claims in the
/// trampoline, its stack's, before it knows which CPU it is).
struct Cpu {
    apic_id: u32,
    descriptors: CpuDescriptors,
    online: AtomicBool,
    /// Its TSC as it came online.
    online_tsc: AtomicU64,
    /// It armed its timer (so a CPU that never comes online after that
    /// is one whose timer did not fire).
    timer_armed: AtomicBool,
}

/// The CPUs being started, in the order of the firmware table; filled by
/// the boot CPU before the first IPI, only read after.
static CPUS: Once<ArrayVec<Cpu, MAX_CPUS>> = Once::new();
/// How many of [`CPUS`] are online.
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// The boot CPU's TSC frequency and the LAPIC timer frequency the
/// hypervisor published, for each application processor's timer; set
/// before the first IPI when the TSC frequency is known.
static AP_CLOCK: Once<(TscFrequency, Option<u64>)> = Once::new();
/// The boot CPU's TSC as it sent the first STARTUP IPI: where each
/// CPU's `ap_startup` span begins.
static STARTUP_TSC: AtomicU64 = AtomicU64::new(0);
/// Run by the first application processor before it says it is online
/// (`mote.crash=ap-page-fault`).
static FIRST_AP_HOOK: Once<fn()> = Once::new();

/// Why no application processor was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BringUpError {
    #[error("no local APIC")]
    NoLocalApic,
    #[error("no free 4 KiB page of RAM below 640 KiB for the trampoline")]
    NoTrampolinePage,
    #[error("no memory for the CPUs' stacks")]
    NoStackMemory,
    #[error("the trampoline is larger than {DATA_OFFSET} bytes")]
    TrampolineTooLarge,
    #[error("application processors were already started")]
    AlreadyStarted,
}

/// CPUs sent their IPIs, not yet waited for ([`wait`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Starting {
    /// How many CPUs were started.
    started: usize,
    /// TSC at the first INIT, and the latest the wait may end.
    pub(crate) began: u64,
    deadline: u64,
    pub(crate) trampoline: u64,
}

/// How the bring-up went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BroughtUp {
    /// How many CPUs were started.
    pub(crate) started: usize,
    /// Those that did not come online in time: APIC id, and whether it
    /// had armed its timer (which then never fired).
    pub(crate) missing: ArrayVec<(u32, bool), MAX_CPUS>,
    /// TSC at the first INIT, and when the last CPU came online (or the
    /// wait ended, when one did not).
    pub(crate) began: u64,
    pub(crate) ended: u64,
    pub(crate) trampoline: u64,
}

/// Starts every CPU of `apic_ids` but the one this runs on (the first
/// `limit` of them), with the trampoline in a page of `usable` RAM that
/// overlaps none of `occupied`, and returns without waiting: [`wait`]
/// waits. Each sets its timer from `tsc` and `bus_hz` (the LAPIC timer
/// frequency the hypervisor published). `first_ap_hook`, when given, runs
/// on the first of them (CPU 1) before it says it is online.
pub(crate) fn start(
    apic_ids: &[u32],
    usable: &[(u64, u64)],
    occupied: &[(u64, u64)],
    tsc: Option<TscFrequency>,
    bus_hz: Option<u64>,
    limit: usize,
    first_ap_hook: Option<fn()>,
) -> Result<Starting, BringUpError> {
    if let Some(hook) = first_ap_hook {
        FIRST_AP_HOOK.call_once(|| hook);
    }
    let apic = local::init().ok_or(BringUpError::NoLocalApic)?;
    let own_id = apic.id();
    if CPUS.is_completed() {
        return Err(BringUpError::AlreadyStarted);
    }
    let page = trampoline_page::choose(usable, occupied).ok_or(BringUpError::NoTrampolinePage)?;
    let vector = trampoline_page::startup_vector(page).ok_or(BringUpError::NoTrampolinePage)?;
    let targets: ArrayVec<u32, MAX_CPUS> = apic_ids
        .iter()
        .copied()
        .filter(|&id| id != own_id)
        .take(limit)
        .collect();

    let mut data = trampoline_data(page);
    let mut cpus = ArrayVec::new();
    for (slot, &apic_id) in targets.iter().enumerate() {
        let frames = (AP_STACK_SIZE + AP_DOUBLE_FAULT_STACK_SIZE) / FRAME_SIZE;
        let base = FRAMES
            .lock()
            .allocate(frames, 1)
            .map_err(|_| BringUpError::NoStackMemory)?;
        // The stack first, the double-fault stack above it.
        data.stack_tops[slot] = base + AP_STACK_SIZE;
        let descriptors = CpuDescriptors::new(base + AP_STACK_SIZE + AP_DOUBLE_FAULT_STACK_SIZE);
        cpus.push(Cpu {
            apic_id,
            descriptors,
            online: AtomicBool::new(false),
            online_tsc: AtomicU64::new(0),
            timer_armed: AtomicBool::new(false),
        });
    }
    data.slot_count = targets.len() as u64;
    // Only this function fills CPUS, and it returned above if it had.
    CPUS.call_once(|| cpus);
    // Only when arming is cheap: a timer that must first measure the bus
    // frequency (2^18 ticks, 262 us at 1 GHz) would hold its CPU, and the
    // boot CPU's wait, that long; it is checked after ready instead.
    if let Some(tsc) = tsc.filter(|_| apic.has_tsc_deadline() || bus_hz.is_some()) {
        AP_CLOCK.call_once(|| (tsc, bus_hz));
    }
    copy_trampoline(page, &data)?;
    // The page and the CPUs' tables must be visible before the IPIs
    // (x2APIC ICR writes are not serialising: SDM vol. 3 §11.12.3).
    fence(Ordering::SeqCst);

    let hz = tsc.map_or(FALLBACK_TSC_HZ, TscFrequency::hz);
    let cycles = |micros: u64| micros.saturating_mul(hz) / 1_000_000;
    let legacy = cpu::cpuid(1, 0).ecx & CPUID_HYPERVISOR == 0;
    let began = cpu::rdtsc();
    for &id in &targets {
        apic.send_ipi(id, InterruptCommand::INIT_ASSERT.bits(), ICR_SPINS);
    }
    if legacy {
        wait_cycles(cycles(INIT_DELAY_US));
    }
    if !apic.is_x2apic() {
        // x2APIC mode has no INIT level de-assert (SDM vol. 3 §11.12.9).
        for &id in &targets {
            apic.send_ipi(id, InterruptCommand::INIT_DEASSERT.bits(), ICR_SPINS);
        }
    }
    STARTUP_TSC.store(cpu::rdtsc(), Ordering::Release);
    for round in 0..2 {
        for &id in &targets {
            apic.send_ipi(id, InterruptCommand::startup(vector), ICR_SPINS);
        }
        if round == 0 {
            let delay = if legacy {
                LEGACY_STARTUP_DELAY_US
            } else {
                STARTUP_DELAY_US
            };
            wait_cycles(cycles(delay));
        }
    }
    Ok(Starting {
        started: targets.len(),
        began,
        deadline: began.saturating_add(cycles(ONLINE_TIMEOUT_US)),
        trampoline: page,
    })
}

/// Waits until every CPU [`start`] started is online, or its deadline
/// ([`ONLINE_TIMEOUT_US`] after the first INIT) has passed.
pub(crate) fn wait(starting: Starting) -> BroughtUp {
    let want = u32::try_from(starting.started).unwrap_or(u32::MAX);
    while ONLINE.load(Ordering::Acquire) < want && cpu::rdtsc() < starting.deadline {
        core::hint::spin_loop();
    }
    let waited = cpu::rdtsc();
    let cpus = CPUS.get().map_or(&[][..], |cpus| cpus.as_slice());
    let missing: ArrayVec<(u32, bool), MAX_CPUS> = cpus
        .iter()
        .filter(|cpu| !cpu.online.load(Ordering::Acquire))
        .map(|cpu| (cpu.apic_id, cpu.timer_armed.load(Ordering::Acquire)))
        .collect();
    let ended = if missing.is_empty() {
        cpus.iter()
            .map(|cpu| cpu.online_tsc.load(Ordering::Acquire))
            .max()
            .unwrap_or(waited)
    } else {
        waited
    };
    BroughtUp {
        started: starting.started,
        missing,
        began: starting.began,
        ended,
        trampoline: starting.trampoline,
    }
}

/// The trampoline data for `page`, stacks not yet filled in.
fn trampoline_data(page: u64) -> TrampolineData {
    let start = &raw const ap_trampoline_start as u64;
    let code32 = (&raw const ap_trampoline32 as u64) - start;
    let code64 = (&raw const ap_trampoline64 as u64) - start;
    let gdt_base = page + (DATA_OFFSET + offset_of!(TrampolineData, gdt)) as u64;
    let gdt_limit = (size_of::<[u64; 4]>() - 1) as u64;
    // SAFETY: reading EFER, which every x86-64 CPU has.
    let efer = unsafe { Msr::new(MSR_EFER).read() };
    TrampolineData {
        gdt: [
            0,
            DescriptorFlags::KERNEL_CODE32.bits(),
            DescriptorFlags::KERNEL_DATA.bits(),
            DescriptorFlags::KERNEL_CODE64.bits(),
        ],
        gdt_pointer: gdt_limit | (gdt_base << 16),
        far32: (page + code32) | (u64::from(CODE32_SELECTOR) << 32),
        far64: (page + code64) | (u64::from(CODE64_SELECTOR) << 32),
        cr3: Cr3::read().0.start_address().as_u64(),
        efer,
        cr0: Cr0::read_raw(),
        cr4: Cr4::read_raw(),
        entry: ap_entry as *const () as u64,
        slot_count: 0,
        slots: 0,
        started: 0,
        stack_tops: [0; MAX_CPUS],
    }
}

/// Copies the trampoline's code to `page` and `data` after it.
fn copy_trampoline(page: u64, data: &TrampolineData) -> Result<(), BringUpError> {
    let start = &raw const ap_trampoline_start;
    let length = (&raw const ap_trampoline_end as usize) - (start as usize);
    if length > DATA_OFFSET {
        return Err(BringUpError::TrampolineTooLarge);
    }
    let page = usize::try_from(page).map_err(|_| BringUpError::NoTrampolinePage)? as *mut u8;
    // SAFETY: `page` is a whole 4 KiB page of RAM below 640 KiB (identity
    // mapped by the boot map), which the frame allocator never hands out
    // (it keeps all of low memory) and no loader structure, module or
    // firmware table overlaps (`trampoline_page::choose`); nothing else
    // runs in it. The code is `length` bytes of this image, ending before
    // the data, which fits the page (the assertion on DATA_OFFSET).
    unsafe {
        core::ptr::copy_nonoverlapping(start, page, length);
        core::ptr::write_volatile(page.add(DATA_OFFSET).cast::<TrampolineData>(), *data);
    }
    Ok(())
}

/// Busy-waits `cycles` TSC cycles.
fn wait_cycles(cycles: u64) {
    let until = cpu::rdtsc().saturating_add(cycles);
    while cpu::rdtsc() < until {
        core::hint::spin_loop();
    }
}

/// Where every application processor arrives from the trampoline, on the
/// stack of `slot`, interrupts off, with the TSC it read at its first
/// instruction and in long mode: the slot's GDT and TSS and the shared
/// IDT, its local APIC, its per-CPU data; then it records its spans, says
/// it is online and waits for work (`dispatch::serve`).
extern "C" fn ap_entry(slot: u32, first_tsc: u64, long_mode_tsc: u64) -> ! {
    let Some(cpus) = CPUS.get() else {
        cpu::halt_forever()
    };
    // The tables of this CPU's slot (any started CPU's would do) before
    // anything that can fault, so a fault is reported rather than a
    // triple fault; the slot's number until the APIC id gives the real one.
    let Some(tables) = usize::try_from(slot).ok().and_then(|slot| cpus.get(slot)) else {
        cpu::halt_forever()
    };
    per_cpu::init_this_cpu(usize::try_from(slot).unwrap_or(0) + 1);
    tables.descriptors.load();
    let enabled = local::init_this_cpu();
    let apic_id = local::init().map(LocalApic::id);
    let found = apic_id.and_then(|id| cpus.iter().position(|cpu| cpu.apic_id == id));
    let (Some(index), true) = (found, enabled) else {
        // Not a CPU the boot CPU started (or one without an APIC): it
        // cannot be named, so it stops here and is reported missing.
        cpu::halt_forever()
    };
    // CPU 0 is the boot CPU.
    let number = index + 1;
    per_cpu::init_this_cpu(number);
    let cpu = &cpus[index];
    let kernel = trace::Writer::Kernel;
    trace::span_at(
        kernel,
        "ap_startup",
        STARTUP_TSC.load(Ordering::Acquire),
        first_tsc,
    );
    trace::span_at(kernel, "ap_long_mode", first_tsc, long_mode_tsc);
    if number == 1
        && let Some(hook) = FIRST_AP_HOOK.get()
    {
        hook();
    }
    trace::enter_at(kernel, "ap_online", long_mode_tsc);
    if let Some((armed, Some(fired))) = check_timer(number, cpu, None) {
        trace::span_at(kernel, "ap_timer", armed, fired);
    }
    let online = cpu::rdtsc();
    trace::exit_at(kernel, "ap_online", online);
    cpu.online_tsc.store(online, Ordering::Release);
    cpu.online.store(true, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    super::dispatch::serve(number)
}

/// How long an application processor checking its timer after ready
/// waits for it before it gives up (and the boot CPU warns).
pub(crate) const AP_TIMER_LATE_LIMIT_US: u64 = 1_000_000;

/// Sets this CPU's one-shot timer from the boot CPU's frequencies, arms
/// it [`AP_TIMER_CHECK_US`] ahead and waits until it fires: the TSC when
/// it was armed and when the interrupt came (`None` if `limit_us` passed
/// first). Without a limit it halts for it; a timer that never fires then
/// keeps the CPU from coming online, and the boot CPU's warning says so.
/// `None` (no check) when the boot CPU has not handed out its frequencies
/// yet.
fn check_timer(number: usize, cpu: &Cpu, limit_us: Option<u64>) -> Option<(u64, Option<u64>)> {
    let &(tsc, bus_hz) = AP_CLOCK.get()?;
    let mut timer = OneShotTimer::new(local::init()?, tsc, bus_hz);
    timer.prepare();
    cpu.timer_armed.store(true, Ordering::Release);
    let armed = cpu::rdtsc();
    timer.arm(tsc.cycles_for_micros(AP_TIMER_CHECK_US));
    let fired = match limit_us {
        Some(limit) => interrupts::wait_for_timer_within(number, tsc.cycles_for_micros(limit)),
        None => {
            interrupts::wait_for_timer(number);
            true
        }
    };
    Some((armed, fired.then(cpu::rdtsc)))
}

/// Hands the TSC frequency to CPUs that came online without their timer
/// (a PIT calibration was still running at `smp_init`, or the timer had to
/// measure the bus frequency first): each sets and checks its timer as a
/// job, which records `ap_timer` in its lane, waiting for it at most
/// [`AP_TIMER_LATE_LIMIT_US`]. Nothing to do when they had it as they
/// started. Returns how many timers did not fire in time.
pub(crate) fn set_timers_late(
    workers: &impl Workers,
    tsc: TscFrequency,
    bus_hz: Option<u64>,
) -> usize {
    let mut late = false;
    AP_CLOCK.call_once(|| {
        late = true;
        (tsc, bus_hz)
    });
    let Some(cpus) = CPUS.get().filter(|_| late && workers.cpus() > 1) else {
        return 0;
    };
    let silent = AtomicU32::new(0);
    workers.run(&|| {
        let number = per_cpu::current_cpu() as usize;
        // The boot CPU runs every job too; its own timer is the service's.
        let Some(cpu) = number.checked_sub(1).and_then(|index| cpus.get(index)) else {
            return;
        };
        match check_timer(number, cpu, Some(AP_TIMER_LATE_LIMIT_US)) {
            Some((armed, Some(fired))) => {
                trace::span_at(trace::Writer::Kernel, "ap_timer", armed, fired);
            }
            Some((_, None)) => {
                silent.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    });
    silent.load(Ordering::Relaxed) as usize
}

/// The CPU number and APIC id of every application processor online now.
pub(crate) fn online() -> impl Iterator<Item = (usize, u32)> {
    CPUS.get()
        .map_or(&[][..], |cpus| cpus.as_slice())
        .iter()
        .enumerate()
        .filter(|(_, cpu)| cpu.online.load(Ordering::Acquire))
        .map(|(index, cpu)| (index + 1, cpu.apic_id))
        .filter(|&(number, _)| number < MAX_CPUS)
}
