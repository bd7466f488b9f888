//! The exits mote causes itself, counted as it causes them: the wrappers in
//! `arch::x86_64::cpu` (CPUID, RDTSC, HLT, port I/O, MSRs) bump one counter
//! per kind, and every kernel tslog record carries the counts at the time
//! it was written ([`mote_boot::protocol::tslog::Exits`]). A counter is a
//! relaxed atomic add in guest memory: it never leaves the guest itself.
//!
//! What is not counted: the entry stub's instructions (before the kernel),
//! and device registers reached by memory access (virtio-mmio, the xAPIC
//! page, the I/O APIC), which `cargo xtask trace --exits` counts on the host.
//! The counters are the machine's, not a CPU's: with more than one vCPU,
//! the application processors' exits through these wrappers (their HLT)
//! are counted too; their trampoline's own instructions are not.

use core::sync::atomic::{AtomicU32, Ordering};

use mote_boot::protocol::tslog::{ExitKind, Exits};

static COUNTS: [AtomicU32; ExitKind::ALL.len()] =
    [const { AtomicU32::new(0) }; ExitKind::ALL.len()];

/// Counts one exit of `kind`.
#[inline]
pub(crate) fn count(kind: ExitKind) {
    COUNTS[kind.index()].fetch_add(1, Ordering::Relaxed);
}

/// The counts so far.
pub(crate) fn snapshot() -> Exits {
    let mut counts = [0; ExitKind::ALL.len()];
    for (count, counter) in counts.iter_mut().zip(&COUNTS) {
        *count = counter.load(Ordering::Relaxed);
    }
    Exits(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let before = snapshot();
        count(ExitKind::PortOut);
        count(ExitKind::PortOut);
        count(ExitKind::Cpuid);
        let delta = snapshot().since(&before);
        // Other tests may count concurrently; these three are ours.
        assert!(delta.get(ExitKind::PortOut) >= 2);
        assert!(delta.get(ExitKind::Cpuid) >= 1);
    }
}
