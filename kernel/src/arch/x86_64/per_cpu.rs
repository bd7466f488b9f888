//! Per-CPU data reached through the GS base: each CPU points
//! `IA32_GS_BASE` at its own [`PerCpu`] once, first thing, and from then
//! on one `gs`-relative load tells code which CPU it runs on, with no
//! lock and no shared write. The `gs` selector is never reloaded (the GDT
//! code reloads CS, SS, DS and ES only), so the base stays.

use super::cpu::Msr;
use crate::smp::MAX_CPUS;

/// `IA32_GS_BASE` (Intel SDM vol. 4, table 2-2).
const MSR_GS_BASE: u32 = 0xc000_0101;

/// What a CPU keeps for itself. `cpu` is first: [`current_cpu`] reads it
/// at `gs:0`.
#[repr(C)]
pub(crate) struct PerCpu {
    /// 0 for the boot CPU, 1… for the others in firmware-table order.
    cpu: u32,
}

/// One per CPU, each read only by its own CPU (and never written).
static PER_CPU: [PerCpu; MAX_CPUS] = {
    let mut all = [const { PerCpu { cpu: 0 } }; MAX_CPUS];
    let mut cpu = 0u32;
    while (cpu as usize) < MAX_CPUS {
        all[cpu as usize].cpu = cpu;
        cpu += 1;
    }
    all
};

/// Points this CPU's GS base at the data of CPU `cpu` (below [`MAX_CPUS`];
/// a larger one is clamped to the last). Each CPU calls it once, before
/// anything calls [`current_cpu`]: the boot CPU first thing in Rust, the
/// others first thing after the trampoline.
pub(crate) fn init_this_cpu(cpu: usize) {
    let data: *const PerCpu = &PER_CPU[cpu.min(MAX_CPUS - 1)];
    // SAFETY: every x86-64 CPU has IA32_GS_BASE; the value is the address
    // of a static (canonical), and only `gs`-relative reads use it.
    unsafe { Msr::new(MSR_GS_BASE).write(data as u64) };
}

/// The CPU this runs on.
#[inline]
pub(crate) fn current_cpu() -> u32 {
    let cpu: u32;
    // SAFETY: every CPU set its GS base to its `PerCpu` (`init_this_cpu`)
    // before running code that gets here, and `cpu` is at offset 0 of it:
    // a 4-byte read of a static that is never written.
    unsafe {
        core::arch::asm!(
            "mov {cpu:e}, gs:[0]",
            cpu = out(reg) cpu,
            options(nostack, readonly, preserves_flags)
        );
    }
    cpu
}
