//! The local APIC (x2APIC when the CPU has it, else xAPIC MMIO), the I/O
//! APICs, and a one-shot timer (TSC-deadline when present, else the LAPIC
//! timer in one-shot mode).
//!
//! Device interrupts are level-triggered (virtio-mmio on microvm, as the
//! DSDT says): the handler masks the pin and sends EOI; the driver acks the
//! device and unmasks, so a line still high fires again rather than storm.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use super::cpu;

/// Spurious-interrupt vector (SVR); needs no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The one-shot timer's vector.
pub const TIMER_VECTOR: u8 = 0xef;
/// Device interrupts: vector = base + GSI, for GSIs below 64.
pub const DEVICE_VECTOR_BASE: u8 = 0x40;
pub const MAX_GSI: u32 = 63;

/// IA32_APIC_BASE: enable and x2APIC mode bits.
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const MSR_TSC_DEADLINE: u32 = 0x6e0;
const X2APIC_MSR_BASE: u32 = 0x800;
/// CPUID.1: EDX APIC, ECX x2APIC and TSC-deadline.
const CPUID_APIC: u32 = 1 << 9;
const CPUID_X2APIC: u32 = 1 << 21;
const CPUID_TSC_DEADLINE: u32 = 1 << 24;

/// Local APIC register offsets (Intel SDM vol. 3 table 11-1).
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// Divide configuration for "divide by 1".
const TIMER_DIVIDE_BY_1: u32 = 0b1011;

/// The 8259 PICs' data ports: masked so nothing arrives through LINT0.
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xa1;

/// I/O APIC: index and data registers, version register, redirection table.
const IOAPIC_DATA: u64 = 0x10;
const IOAPIC_VERSION: u32 = 0x01;
const IOAPIC_REDIRECTION: u32 = 0x10;
const REDIRECTION_LEVEL: u32 = 1 << 15;
const REDIRECTION_MASKED: u32 = 1 << 16;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
/// LAPIC timer ticks per second (divide by 1); 0 until known.
static LAPIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// Set by the handlers; read and cleared by the main loop.
pub static PENDING_GSIS: AtomicU64 = AtomicU64::new(0);
pub static TIMER_FIRED: AtomicBool = AtomicBool::new(false);
pub static SPURIOUS: AtomicUsize = AtomicUsize::new(0);
pub static UNEXPECTED: AtomicUsize = AtomicUsize::new(0);
pub static LAST_UNEXPECTED_VECTOR: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    X2Apic,
    XApic,
}

/// Enables the local APIC, masks the PICs and LINT pins. `None` without an
/// APIC.
pub fn init() -> Option<Mode> {
    let features = cpu::cpuid(1, 0);
    if features.edx & CPUID_APIC == 0 {
        return None;
    }
    cpu::outb(PIC1_DATA, 0xff);
    cpu::outb(PIC2_DATA, 0xff);
    let base = cpu::rdmsr(MSR_APIC_BASE);
    let x2apic = features.ecx & CPUID_X2APIC != 0;
    if x2apic {
        cpu::wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        MODE.store(MODE_X2APIC, Ordering::Release);
    } else {
        cpu::wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE);
        XAPIC_BASE.store(base & 0xffff_f000, Ordering::Relaxed);
        MODE.store(MODE_XAPIC, Ordering::Release);
    }
    TSC_DEADLINE.store(features.ecx & CPUID_TSC_DEADLINE != 0, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    Some(if x2apic { Mode::X2Apic } else { Mode::XApic })
}

/// Uses the LAPIC timer frequency a hypervisor published (CPUID 0x40000010
/// EBX, kHz), so the one-shot timer needs no measuring.
pub fn set_timer_hz(hz: u64) {
    LAPIC_TIMER_HZ.store(hz, Ordering::Relaxed);
}

pub fn timer_kind() -> &'static str {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        "tsc-deadline"
    } else {
        "lapic-oneshot"
    }
}

fn write(register: u32, value: u32) {
    match MODE.load(Ordering::Acquire) {
        MODE_X2APIC => cpu::wrmsr(X2APIC_MSR_BASE + (register >> 4), u64::from(value)),
        MODE_XAPIC => {
            let address = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(register);
            // SAFETY: the xAPIC page is in the identity map (below 4 GiB) and
            // `register` is one of the architectural offsets above.
            unsafe { core::ptr::write_volatile(address as *mut u32, value) };
        }
        _ => {}
    }
}

fn read(register: u32) -> u32 {
    match MODE.load(Ordering::Acquire) {
        MODE_X2APIC => cpu::rdmsr(X2APIC_MSR_BASE + (register >> 4)) as u32,
        MODE_XAPIC => {
            let address = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(register);
            // SAFETY: as in `write`.
            unsafe { core::ptr::read_volatile(address as *const u32) }
        }
        _ => 0,
    }
}

/// End of interrupt, for every vector except the spurious one.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Fires `TIMER_VECTOR` once, `cycles` TSC ticks from now.
pub fn arm_timer(cycles: u64, tsc_hz: u64) {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        write(
            REG_LVT_TIMER,
            u32::from(TIMER_VECTOR) | LVT_TIMER_TSC_DEADLINE,
        );
        cpu::wrmsr(MSR_TSC_DEADLINE, cpu::rdtsc().saturating_add(cycles.max(1)));
        return;
    }
    let hz = match LAPIC_TIMER_HZ.load(Ordering::Relaxed) {
        0 => measure_timer_hz(tsc_hz),
        hz => hz,
    };
    let ticks = u128::from(cycles) * u128::from(hz) / u128::from(tsc_hz.max(1));
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    write(
        REG_TIMER_INITIAL,
        u32::try_from(ticks).unwrap_or(u32::MAX).max(1),
    );
}

/// Counts LAPIC timer ticks over ~200 us of TSC (once, after boot).
fn measure_timer_hz(tsc_hz: u64) -> u64 {
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write(REG_TIMER_INITIAL, u32::MAX);
    let start = cpu::rdtsc();
    let window = (tsc_hz / 5000).max(1);
    while cpu::rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let elapsed = u64::from(u32::MAX - read(REG_TIMER_CURRENT));
    let cycles = cpu::rdtsc() - start;
    let hz = (u128::from(elapsed) * u128::from(tsc_hz) / u128::from(cycles.max(1))) as u64;
    let hz = hz.max(1);
    LAPIC_TIMER_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// One I/O APIC and the GSIs it serves.
#[derive(Clone, Copy)]
struct IoApic {
    address: u64,
    gsi_base: u32,
    pins: u32,
}

static IO_APICS: Mutex<arrayvec::ArrayVec<IoApic, { crate::acpi::MAX_IO_APICS }>> =
    Mutex::new(arrayvec::ArrayVec::new_const());
/// The redirection entries' low words, so mask/unmask is one MMIO write.
static REDIRECTION_LOW: [AtomicU32; (MAX_GSI + 1) as usize] =
    [const { AtomicU32::new(REDIRECTION_MASKED) }; (MAX_GSI + 1) as usize];

fn io_apic_write(address: u64, register: u32, value: u32) {
    // SAFETY: `address` is an I/O APIC from the MADT or microvm's fixed one,
    // inside the identity-mapped MMIO window; index then data is its protocol.
    unsafe {
        core::ptr::write_volatile(address as *mut u32, register);
        core::ptr::write_volatile((address + IOAPIC_DATA) as *mut u32, value);
    }
}

fn io_apic_read(address: u64, register: u32) -> u32 {
    // SAFETY: as in `io_apic_write`.
    unsafe {
        core::ptr::write_volatile(address as *mut u32, register);
        core::ptr::read_volatile((address + IOAPIC_DATA) as *const u32)
    }
}

/// Registers an I/O APIC at `address` serving GSIs from `gsi_base`.
pub fn add_io_apic(address: u64, gsi_base: u32) {
    let version = io_apic_read(address, IOAPIC_VERSION);
    let pins = ((version >> 16) & 0xff) + 1;
    let _ = IO_APICS.lock().try_push(IoApic {
        address,
        gsi_base,
        pins,
    });
}

fn locate(gsi: u32) -> Option<(u64, u32)> {
    IO_APICS
        .lock()
        .iter()
        .find(|apic| (apic.gsi_base..apic.gsi_base + apic.pins).contains(&gsi))
        .map(|apic| (apic.address, gsi - apic.gsi_base))
}

/// Routes `gsi` to CPU 0 as a level-triggered, active-high interrupt on
/// `DEVICE_VECTOR_BASE + gsi`, unmasked. False if no I/O APIC serves it.
pub fn route_level_gsi(gsi: u32) -> bool {
    let Some((address, pin)) = locate(gsi).filter(|_| gsi <= MAX_GSI) else {
        return false;
    };
    let low = (u32::from(DEVICE_VECTOR_BASE) + gsi) | REDIRECTION_LEVEL;
    io_apic_write(address, IOAPIC_REDIRECTION + 2 * pin + 1, 0);
    io_apic_write(address, IOAPIC_REDIRECTION + 2 * pin, low);
    REDIRECTION_LOW[gsi as usize].store(low, Ordering::Relaxed);
    true
}

fn set_masked(gsi: u32, masked: bool) {
    let Some((address, pin)) = locate(gsi) else {
        return;
    };
    let Some(shadow) = REDIRECTION_LOW.get(gsi as usize) else {
        return;
    };
    let low = shadow.load(Ordering::Relaxed);
    let low = if masked {
        low | REDIRECTION_MASKED
    } else {
        low & !REDIRECTION_MASKED
    };
    shadow.store(low, Ordering::Relaxed);
    io_apic_write(address, IOAPIC_REDIRECTION + 2 * pin, low);
}

/// Called from the interrupt handler: mask the level-triggered line until
/// the driver has acknowledged its device.
pub fn mask_gsi(gsi: u32) {
    set_masked(gsi, true);
}

pub fn unmask_gsi(gsi: u32) {
    set_masked(gsi, false);
}

/// Halts until an interrupt arrives, unless one is already pending. IF is
/// set only inside `sti; hlt` (the STI shadow makes the check and the halt
/// one atomic step), so handlers never run while the kernel holds a lock.
pub fn wait_for_interrupt() {
    if PENDING_GSIS.load(Ordering::Acquire) != 0 || TIMER_FIRED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: enables interrupts for exactly the halt; handlers only touch
    // atomics and APIC registers.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
