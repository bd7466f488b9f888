//! CPU instructions that are not device I/O: CPUID, the TSC, halting.

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
    // SAFETY: RDTSC reads a counter; every x86-64 CPU has it and mote never
    // sets CR4.TSD, so it cannot fault.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good: interrupts off, then halt.
pub(crate) fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
