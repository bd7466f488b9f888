//! Finding the TSC frequency without calibrating whenever someone will tell:
//! the command line's `tsc_early_khz=`, CPUID 0x40000010, then kvmclock,
//! then CPUID 0x15/0x16, and only then the PIT, measured over the time
//! until the frequency is first needed (docs/pvclock.md).
#![deny(unsafe_code)]

use mote_boot::protocol::report::TscSource;

use super::frequency::{self, TscFrequency};
use super::kvmclock::Kvmclock;
use super::pit;
use crate::arch::x86_64::cpu;

/// KVM's signature in CPUID 0x40000000 EBX/ECX/EDX.
const KVM_SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";
/// `KVM_FEATURE_CLOCKSOURCE2` in CPUID 0x40000001 EAX (Linux
/// `arch/x86/include/uapi/asm/kvm_para.h`).
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
/// Where a hypervisor's CPUID leaves start, and where KVM's sit when it
/// also emulates Hyper-V.
const HYPERVISOR_BASE: u32 = 0x4000_0000;
const SHIFTED_HYPERVISOR_BASE: u32 = 0x4000_0100;
/// The hypervisor timing leaf, relative to the base (`KVM_CPUID_TIMING_INFO`).
const TIMING_LEAF: u32 = 0x10;

/// What detection found.
pub(super) struct Detected {
    pub(super) tsc: Option<TscFrequency>,
    /// The LAPIC timer frequency, when the timing leaf gave it.
    pub(super) bus_hz: Option<u64>,
    /// The hypervisor offers kvmclock.
    pub(super) kvmclock_offered: bool,
    /// kvmclock, if detection registered it (it was the frequency source).
    pub(super) kvmclock: Option<Kvmclock>,
    /// The PIT calibration left running when nothing else told the
    /// frequency (`tsc` is then `None` until it is finished).
    pub(super) calibrating: Option<pit::Overlapped>,
}

/// The hypervisor's CPUID base leaf and its maximum leaf, if there is one.
struct Hypervisor {
    base: u32,
    max_leaf: u32,
    kvm: bool,
}

fn hypervisor() -> Option<Hypervisor> {
    // No CPUID.1 hypervisor-bit check: each CPUID is a VM exit, and the
    // signature and max-leaf checks below reject bare metal's junk anyway.
    // KVM sits at 0x40000000, or at 0x40000100 when it also emulates
    // Hyper-V (Linux `hypervisor_cpuid_base` scans further, but each CPUID
    // is a VM exit and no VMM mote targets goes beyond these two).
    let read = |base: u32| {
        let leaf = cpu::cpuid(base, 0);
        let mut signature = [0u8; 12];
        signature[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
        signature[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
        Hypervisor {
            base,
            max_leaf: leaf.eax,
            kvm: signature == KVM_SIGNATURE,
        }
    };
    let first = read(HYPERVISOR_BASE);
    if !first.kvm && first.max_leaf >= SHIFTED_HYPERVISOR_BASE {
        let shifted = read(SHIFTED_HYPERVISOR_BASE);
        if shifted.kvm {
            return Some(shifted);
        }
    }
    // A max leaf outside the base's own 256-leaf block is junk.
    (first.max_leaf >= first.base && first.max_leaf <= first.base + 0xff).then_some(first)
}

/// Takes `cmdline_hz` (Linux's `tsc_early_khz=`) when given, else tries
/// CPUID 0x40000010, kvmclock, CPUID 0x15/0x16, then the PIT.
///
/// kvmclock is registered here only when it is the frequency source (an MSR
/// write is a VM exit); otherwise [`super::Clock`] registers it on first use.
pub(super) fn detect(cmdline_hz: Option<u64>) -> Detected {
    let hypervisor = hypervisor();
    let kvmclock_offered = hypervisor.as_ref().is_some_and(|hv| {
        hv.kvm
            && hv.max_leaf > hv.base
            && cpu::cpuid(hv.base + 1, 0).eax & KVM_FEATURE_CLOCKSOURCE2 != 0
    });
    let found = |tsc, bus_hz, kvmclock| Detected {
        tsc,
        bus_hz,
        kvmclock_offered,
        kvmclock,
        calibrating: None,
    };
    let timing = hypervisor
        .as_ref()
        .filter(|hv| hv.max_leaf >= hv.base + TIMING_LEAF)
        .map(|hv| cpu::cpuid(hv.base + TIMING_LEAF, 0));
    if let Some(tsc) = cmdline_hz.and_then(|hz| TscFrequency::new(hz, TscSource::Cmdline)) {
        // The timing leaf's bus frequency still spares the LAPIC timer a
        // measurement; the leaf was read for it anyway.
        let bus_hz = timing
            .filter(|leaf| leaf.eax != 0 && leaf.ebx != 0)
            .map(|leaf| u64::from(leaf.ebx) * 1000);
        return found(Some(tsc), bus_hz, None);
    }
    if let Some(leaf) = timing
        && let Some(hz) = frequency::from_timing_leaf(leaf.eax)
    {
        // EBX is the LAPIC timer (bus) frequency in kHz: the one-shot timer
        // then needs no measuring.
        let bus_hz = (leaf.ebx != 0).then(|| u64::from(leaf.ebx) * 1000);
        return found(
            TscFrequency::new(hz, TscSource::Cpuid40000010),
            bus_hz,
            None,
        );
    }
    if kvmclock_offered
        && let Some(kvmclock) = Kvmclock::register()
        && let Some(hz) = kvmclock.tsc_hz()
    {
        return found(
            TscFrequency::new(hz, TscSource::Kvmclock),
            None,
            Some(kvmclock),
        );
    }
    let max_basic = cpu::cpuid(0, 0).eax;
    if max_basic >= 0x15 {
        let leaf = cpu::cpuid(0x15, 0);
        let hz = frequency::from_leaf_15(leaf.eax, leaf.ebx, leaf.ecx).or_else(|| {
            (max_basic >= 0x16)
                .then(|| frequency::from_leaf_16(cpu::cpuid(0x16, 0).eax))
                .flatten()
        });
        if let Some(hz) = hz {
            return found(TscFrequency::new(hz, TscSource::Cpuid15), None, None);
        }
    }
    Detected {
        calibrating: pit::begin(),
        ..found(None, None, None)
    }
}

/// Ends the calibration [`detect`] began: over the whole time since, or,
/// when that ran too long to count its PIT periods, over fresh windows.
pub(super) fn finish_calibration(calibrating: pit::Overlapped) -> Option<TscFrequency> {
    pit::finish(calibrating)
        .or_else(pit::calibrate)
        .and_then(|hz| TscFrequency::new(hz, TscSource::Calibrated))
}
