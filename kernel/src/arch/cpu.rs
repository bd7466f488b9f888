//! Small safe wrappers over CPU instructions: TSC, CPUID, port I/O, halt.

use core::arch::asm;

pub use crate::tslog::rdtsc;

/// The four CPUID output registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`. Leaves beyond the CPU's maximum
/// return junk on some models: callers check the range first.
#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    // CPUID is available on every x86_64 CPU and has no side effects.
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: result.eax,
        ebx: result.ebx,
        ecx: result.ecx,
        edx: result.edx,
    }
}

/// Writes a byte to an I/O port.
///
/// Port writes are only unsafe through the device they reach; every caller
/// names the device it targets.
#[inline]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O cannot break memory safety in this kernel: no device
    // is given DMA access through a port write made here.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
#[inline]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`: reading a port has no memory effect.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: callers pass only MSRs the CPU advertised (APIC, x2APIC).
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: callers pass only MSRs the CPU advertised, with values the
    // SDM defines for them.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags));
    }
}

/// Halts until the next interrupt, forever if interrupts are off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: HLT with interrupts disabled just stops this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Reads CR2, the address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Flushes the whole TLB by reloading CR3.
pub fn flush_tlb() {
    // SAFETY: writing CR3 with its current value only drops cached
    // translations.
    unsafe {
        asm!("mov {tmp}, cr3", "mov cr3, {tmp}", tmp = out(reg) _, options(nostack, preserves_flags));
    }
}
