//! Finding the TSC frequency without calibrating whenever the VMM will tell:
//! CPUID 0x40000010, then kvmclock, then CPUID 0x15/0x16, and only then a
//! short PIT measurement.

use core::sync::atomic::{AtomicBool, Ordering, fence};

use super::cpu;
use crate::tsc_frequency::{self, Source};

/// KVM's signature in CPUID 0x40000000 EBX/ECX/EDX.
const KVM_SIGNATURE: [u8; 12] = *b"KVMKVMKVM\0\0\0";
/// `KVM_FEATURE_CLOCKSOURCE2` in CPUID 0x40000001 EAX.
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
/// `MSR_KVM_SYSTEM_TIME_NEW`: physical address of a pvclock area | enable.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

/// PIT ports (8254). microvm has a PIT but no port 0x61 (speaker gate), so
/// channel 2 cannot be used: channel 0 (gate tied high) is read back instead.
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
const PIT_CHANNEL0_MODE2: u8 = 0b0011_0100;
/// Channel 0 counter latch command.
const PIT_LATCH_CHANNEL0: u8 = 0b0000_0000;
/// 0.5 ms of PIT ticks per window. With (TSC, count) pairs sampled by one
/// loop body the error is about one PIT tick (0.17 %); a single window can
/// be thrown off by host preemption (1.85 % once in 20 TCG boots here),
/// hence two that must agree. Over 30 TCG boots: 0.042 % median error,
/// 0.093 % max, 1.3 ms median for the whole span (1 ms windows: 2.2 ms).
const CALIBRATION_PIT_TICKS: u16 = 597;
/// Give up after this many TSC cycles (> 1 s below 4 GHz): no PIT (`pit=off`).
const CALIBRATION_GIVE_UP_CYCLES: u64 = 1 << 32;

/// pvclock_vcpu_time_info (reference §4), 32 bytes, written by the host.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct PvclockTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad: [u8; 2],
}

static mut PVCLOCK: PvclockTimeInfo = PvclockTimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};

/// Set when the hypervisor offers kvmclock (`KVM_FEATURE_CLOCKSOURCE2`).
static KVMCLOCK_OFFERED: AtomicBool = AtomicBool::new(false);
/// Set once kvmclock is registered and readable.
static KVMCLOCK: AtomicBool = AtomicBool::new(false);

/// The frequency and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct TscFrequency {
    pub hz: u64,
    pub source: Source,
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
    let first = read(0x4000_0000);
    if !first.kvm && first.max_leaf >= 0x4000_0100 {
        let shifted = read(0x4000_0100);
        if shifted.kvm {
            return Some(shifted);
        }
    }
    // A max leaf outside the base's own 256-leaf block is junk.
    (first.max_leaf >= first.base && first.max_leaf <= first.base + 0xff).then_some(first)
}

/// Finds the TSC frequency, trying CPUID 0x40000010, kvmclock, CPUID
/// 0x15/0x16, then the PIT. `None` only without any of them.
///
/// kvmclock is registered here only when it is the frequency source (an MSR
/// write is a VM exit); otherwise [`monotonic_ns`] registers it on first use.
pub fn detect() -> Option<TscFrequency> {
    let hypervisor = hypervisor();
    let kvmclock_offered = hypervisor.as_ref().is_some_and(|hv| {
        hv.kvm
            && hv.max_leaf > hv.base
            && cpu::cpuid(hv.base + 1, 0).eax & KVM_FEATURE_CLOCKSOURCE2 != 0
    });
    KVMCLOCK_OFFERED.store(kvmclock_offered, Ordering::Release);
    let timing = hypervisor
        .as_ref()
        .filter(|hv| hv.max_leaf >= hv.base + 0x10)
        .map(|hv| cpu::cpuid(hv.base + 0x10, 0));
    if let Some(leaf) = timing
        && let Some(hz) = tsc_frequency::from_timing_leaf(leaf.eax)
    {
        // EBX is the LAPIC timer (bus) frequency in kHz: the one-shot timer
        // then needs no measuring.
        if leaf.ebx != 0 {
            super::apic::set_timer_hz(u64::from(leaf.ebx) * 1000);
        }
        return Some(TscFrequency {
            hz,
            source: Source::Cpuid40000010,
        });
    }
    if kvmclock_offered && let Some(hz) = kvmclock_hz() {
        return Some(TscFrequency {
            hz,
            source: Source::Kvmclock,
        });
    }
    let max_basic = cpu::cpuid(0, 0).eax;
    if max_basic >= 0x15 {
        let leaf = cpu::cpuid(0x15, 0);
        let hz = tsc_frequency::from_leaf_15(leaf.eax, leaf.ebx, leaf.ecx).or_else(|| {
            (max_basic >= 0x16)
                .then(|| tsc_frequency::from_leaf_16(cpu::cpuid(0x16, 0).eax))
                .flatten()
        });
        if let Some(hz) = hz {
            return Some(TscFrequency {
                hz,
                source: Source::Cpuid15,
            });
        }
    }
    calibrate().map(|hz| TscFrequency {
        hz,
        source: Source::Calibrated,
    })
}

/// Two 0.5 ms PIT windows, a third when they disagree (see
/// [`tsc_frequency::combine_calibrations`]).
fn calibrate() -> Option<u64> {
    let mut windows = arrayvec::ArrayVec::<u64, 3>::new();
    while !windows.is_full() {
        windows.push(calibrate_with_pit()?);
        if let Some(hz) = tsc_frequency::combine_calibrations(&windows) {
            return Some(hz);
        }
    }
    None
}

/// Registers the pvclock area, making kvmclock the monotonic clock, and
/// derives the TSC frequency from it.
fn kvmclock_hz() -> Option<u64> {
    let area = &raw mut PVCLOCK;
    cpu::wrmsr(MSR_KVM_SYSTEM_TIME_NEW, area as u64 | 1);
    // Only mul/shift are needed: no RDTSC, which some nested KVMs trap
    // (~12 us each on this workplace's).
    let (snapshot, _) = read_pvclock(false)?;
    KVMCLOCK.store(true, Ordering::Release);
    tsc_frequency::from_pvclock(snapshot.tsc_to_system_mul, snapshot.tsc_shift)
}

/// A consistent copy of the pvclock area and, with `with_tsc`, a TSC read
/// inside it, by the version protocol (odd: the host is writing; changed:
/// retry).
fn read_pvclock(with_tsc: bool) -> Option<(PvclockTimeInfo, u64)> {
    let area = &raw const PVCLOCK;
    for _ in 0..1000 {
        // SAFETY: the area is a static the host writes after the MSR write;
        // volatile reads see its updates, fences order them.
        let (before, copy, tsc, after) = unsafe {
            let before = core::ptr::read_volatile(&raw const (*area).version);
            fence(Ordering::Acquire);
            let tsc = if with_tsc { cpu::rdtsc() } else { 0 };
            let copy = core::ptr::read_volatile(area);
            fence(Ordering::Acquire);
            let after = core::ptr::read_volatile(&raw const (*area).version);
            (before, copy, tsc, after)
        };
        if before == after && before & 1 == 0 && before != 0 {
            return Some((copy, tsc));
        }
    }
    None
}

/// Which clock [`monotonic_ns`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// kvmclock's system time, which KVM starts at 0 when the VM is created.
    Kvmclock,
    /// The TSC scaled by its frequency: time since the TSC's origin.
    Tsc,
}

impl ClockSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvmclock => "kvmclock",
            Self::Tsc => "tsc",
        }
    }
}

/// Nanoseconds on the monotonic clock: kvmclock when registered, else the
/// TSC scaled by `tsc_hz`.
pub fn monotonic_ns(tsc_hz: u64) -> (u64, ClockSource) {
    if KVMCLOCK_OFFERED.load(Ordering::Acquire) && !KVMCLOCK.load(Ordering::Acquire) {
        let _ = kvmclock_hz();
    }
    if KVMCLOCK.load(Ordering::Acquire)
        && let Some((info, tsc)) = read_pvclock(true)
    {
        let ns = tsc_frequency::pvclock_ns(
            tsc,
            info.tsc_timestamp,
            info.system_time,
            info.tsc_to_system_mul,
            info.tsc_shift,
        );
        return (ns, ClockSource::Kvmclock);
    }
    (
        tsc_frequency::cycles_to_ns(cpu::rdtsc(), tsc_hz),
        ClockSource::Tsc,
    )
}

/// Counts TSC cycles while PIT channel 0 counts down one window.
///
/// Every sample is a (TSC, count) pair read back to back by the same loop
/// body, so the start and end marks cost the same: under TCG, code run for
/// the first time is translated first (~25 us), which skewed a separate
/// start-of-window read by 0.5 %.
fn calibrate_with_pit() -> Option<u64> {
    cpu::outb(PIT_COMMAND, PIT_CHANNEL0_MODE2);
    cpu::outb(PIT_CHANNEL0, 0xff);
    cpu::outb(PIT_CHANNEL0, 0xff);
    let give_up = cpu::rdtsc().wrapping_add(CALIBRATION_GIVE_UP_CYCLES);
    let initial = read_pit_channel0();
    // The window opens on the first tick edge after the count was loaded.
    let mut start: Option<(u64, u16)> = None;
    loop {
        let tsc = cpu::rdtsc();
        let count = read_pit_channel0();
        if tsc > give_up {
            return None;
        }
        match start {
            None if count != initial => start = Some((tsc, count)),
            None => {}
            Some((start_tsc, start_count)) => {
                let elapsed = start_count.wrapping_sub(count);
                // Mode 2 reloads at 1; a reload shows as a huge `elapsed`.
                if (CALIBRATION_PIT_TICKS..0x8000).contains(&elapsed) {
                    return tsc_frequency::from_pit(tsc - start_tsc, u64::from(elapsed));
                }
            }
        }
    }
}

fn read_pit_channel0() -> u16 {
    cpu::outb(PIT_COMMAND, PIT_LATCH_CHANNEL0);
    let low = cpu::inb(PIT_CHANNEL0);
    let high = cpu::inb(PIT_CHANNEL0);
    u16::from_le_bytes([low, high])
}
