//! CPU instructions that leave the guest under a hypervisor: CPUID, the
//! TSC, halting, port I/O and MSRs. Every one goes through a wrapper here
//! that counts it by kind ([`crate::trace::exits`]), so each tslog span
//! says how many exits mote caused in it; nothing else in the kernel
//! executes these instructions.

use mote_boot::protocol::tslog::ExitKind;
use x86_64::instructions::port::{PortRead, PortWrite};

use crate::trace::exits::count;

/// The four CPUID output registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuidResult {
    pub(crate) eax: u32,
    pub(crate) ebx: u32,
    pub(crate) ecx: u32,
    pub(crate) edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`. Leaves beyond the CPU's maximum
/// return junk on some models: callers check the range first.
#[inline]
pub(crate) fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    count(ExitKind::Cpuid);
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: result.eax,
        ebx: result.ebx,
        ecx: result.ecx,
        edx: result.edx,
    }
}

/// Reads the time-stamp counter.
#[inline]
pub(crate) fn rdtsc() -> u64 {
    count(ExitKind::Rdtsc);
    // SAFETY: RDTSC reads a counter; every x86-64 CPU has it and mote never
    // sets CR4.TSD, so it cannot fault.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Enables interrupts and halts until one arrives, as one step (`sti; hlt`:
/// the STI shadow covers the HLT). Interrupts are on when it returns.
pub(crate) fn enable_interrupts_and_halt() {
    count(ExitKind::Hlt);
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Stops this CPU for good: interrupts off, then halt.
pub(crate) fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        count(ExitKind::Hlt);
        x86_64::instructions::hlt();
    }
}

/// The I/O port `mote.tslog=markers` writes record indexes to: POST code
/// port 0x80, which Cloud Hypervisor logs with a timestamp and which QEMU
/// microvm leaves unassigned (its memory-region trace names the access
/// `io`, the I/O address space's own region).
const TSLOG_MARKER_PORT: u16 = 0x80;

/// Writes a tslog marker. This one port write is not counted: the counts
/// are the same with markers on and off.
pub(crate) fn tslog_marker(value: u16) {
    // SAFETY: a write to the POST-code port has no effect on the guest's
    // memory (unassigned on QEMU microvm, logged by Cloud Hypervisor).
    unsafe { x86_64::instructions::port::Port::<u16>::new(TSLOG_MARKER_PORT).write(value) };
}

/// An I/O port of width `T` (`u8`, `u16`, `u32`).
pub(crate) struct Port<T>(x86_64::instructions::port::Port<T>);

impl<T: PortRead + PortWrite> Port<T> {
    pub(crate) const fn new(port: u16) -> Self {
        Self(x86_64::instructions::port::Port::new(port))
    }

    /// Reads the port (`in`).
    ///
    /// # Safety
    /// As `x86_64`'s `Port::read`: the read may have side effects on the
    /// device, which the caller must own.
    pub(crate) unsafe fn read(&mut self) -> T {
        count(ExitKind::PortIn);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.0.read() }
    }

    /// Writes the port (`out`).
    ///
    /// # Safety
    /// As `x86_64`'s `Port::write`: the caller owns the device and knows
    /// what the write does.
    pub(crate) unsafe fn write(&mut self, value: T) {
        count(ExitKind::PortOut);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.0.write(value) }
    }
}

/// A model-specific register.
pub(crate) struct Msr(x86_64::registers::model_specific::Msr);

impl Msr {
    pub(crate) const fn new(register: u32) -> Self {
        Self(x86_64::registers::model_specific::Msr::new(register))
    }

    /// RDMSR.
    ///
    /// # Safety
    /// The MSR must exist (else #GP) and reading it must have no effect the
    /// caller has not accounted for.
    pub(crate) unsafe fn read(&self) -> u64 {
        count(ExitKind::Rdmsr);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.0.read() }
    }

    /// WRMSR.
    ///
    /// # Safety
    /// The MSR must exist and accept `value`, and what it changes must not
    /// break memory safety.
    pub(crate) unsafe fn write(&mut self, value: u64) {
        count(ExitKind::Wrmsr);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.0.write(value) }
    }
}
