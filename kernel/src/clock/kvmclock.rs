//! kvmclock: the pvclock area KVM keeps up to date once its address is
//! written to `MSR_KVM_SYSTEM_TIME_NEW` (Linux
//! `arch/x86/include/uapi/asm/kvm_para.h`; docs/pvclock.md).

use core::cell::UnsafeCell;

use spin::Once;

use super::pvclock::PvclockTimeInfo;
use crate::arch::x86_64::cpu::{self, Msr};

/// `MSR_KVM_SYSTEM_TIME_NEW`: physical address of a pvclock area | enable.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const ENABLE: u64 = 1;
/// Copies tried before the area is called unreadable.
const READ_ATTEMPTS: usize = 1000;

/// This CPU's pvclock area; it must not cross a page (Linux aligns it to a
/// cache line, as here).
#[repr(C, align(64))]
struct PvclockArea(UnsafeCell<PvclockTimeInfo>);

// SAFETY: the guest never writes the area: the hypervisor does, and
// [`Kvmclock::read`] copies it with volatile reads and checks the copy by
// the version protocol. (With SMP every CPU needs its own area.)
unsafe impl Sync for PvclockArea {}

/// The area; only [`Kvmclock`] reaches it.
static AREA: PvclockArea = PvclockArea(UnsafeCell::new(PvclockTimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
}));
static REGISTERED: Once<Option<Kvmclock>> = Once::new();

/// Proof that the area is registered and has been written by the host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kvmclock(());

impl Kvmclock {
    /// Registers the area (once; later calls return the first result).
    /// Call only when the hypervisor offers `KVM_FEATURE_CLOCKSOURCE2`.
    pub(crate) fn register() -> Option<Self> {
        *REGISTERED.call_once(|| {
            let address = AREA.0.get() as u64;
            // SAFETY: the caller saw KVM_FEATURE_CLOCKSOURCE2, so the MSR
            // exists; the area is a 'static the host may write, identity
            // mapped, so its address is its physical address.
            unsafe { Msr::new(MSR_KVM_SYSTEM_TIME_NEW).write(address | ENABLE) };
            let clock = Self(());
            clock.read(false).map(|_| clock)
        })
    }

    /// A consistent copy of the area and, with `with_tsc`, a TSC reading
    /// taken inside it.
    pub(crate) fn read(self, with_tsc: bool) -> Option<(PvclockTimeInfo, u64)> {
        let area = AREA.0.get();
        for _ in 0..READ_ATTEMPTS {
            // SAFETY: the area is a static only the host writes; volatile
            // reads see its updates, the fences order them, and a torn copy
            // is refused by the version check below.
            let (before, copy, tsc, after) = unsafe {
                let before = core::ptr::read_volatile(&raw const (*area).version);
                core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
                let tsc = if with_tsc { cpu::rdtsc() } else { 0 };
                let copy = core::ptr::read_volatile(area);
                core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
                let after = core::ptr::read_volatile(&raw const (*area).version);
                (before, copy, tsc, after)
            };
            if PvclockTimeInfo::consistent(before, after) {
                return Some((copy, tsc));
            }
        }
        None
    }

    /// The TSC frequency the host scales the clock with. Only mul/shift are
    /// read: no RDTSC, which some nested KVMs trap.
    pub(crate) fn tsc_hz(self) -> Option<u64> {
        self.read(false)?.0.tsc_hz()
    }

    /// Nanoseconds of system time (since KVM created the VM).
    pub(crate) fn now_ns(self) -> Option<u64> {
        let (info, tsc) = self.read(true)?;
        Some(info.nanos_at(tsc))
    }
}
