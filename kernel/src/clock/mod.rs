//! Time: the TSC frequency (found once, from the VMM when it will tell),
//! kvmclock, and the monotonic clock built on them. [`TscFrequency`] and
//! the pvclock arithmetic are host-tested logic; detection, kvmclock and
//! PIT calibration touch the hardware.

pub(crate) mod frequency;
pub(crate) mod pvclock;

#[cfg(target_os = "none")]
mod detect;
#[cfg(target_os = "none")]
mod kvmclock;
#[cfg(target_os = "none")]
mod pit;

pub(crate) use frequency::TscFrequency;

#[cfg(target_os = "none")]
pub(crate) use machine::{Clock, init, known_tsc};

#[cfg(target_os = "none")]
mod machine {
    use mote_boot::protocol::report::ClockSource;
    use spin::{Mutex, Once};

    use super::kvmclock::Kvmclock;
    use super::{TscFrequency, detect, pit};
    use crate::arch::x86_64::cpu;
    use crate::trace;

    /// The machine's clocks, found once at boot by [`init`].
    pub(crate) struct Clock {
        /// Known at `init`, or when a PIT calibration is finished.
        tsc: Once<Option<TscFrequency>>,
        /// The PIT calibration running since `init`, until then.
        calibrating: Mutex<Option<pit::Overlapped>>,
        bus_hz: Option<u64>,
        kvmclock_offered: bool,
        /// Registered by detection when it was the frequency source, else
        /// on the first monotonic reading.
        kvmclock: Once<Option<Kvmclock>>,
    }

    static CLOCK: Once<Clock> = Once::new();

    /// Finds the TSC frequency and the clocks (`cmdline_hz` from
    /// `tsc_early_khz=` first, then CPUID leaves, kvmclock, the PIT as a
    /// last resort). Later calls return the first result.
    pub(crate) fn init(cmdline_hz: Option<u64>) -> &'static Clock {
        CLOCK.call_once(|| {
            let detected = detect::detect(cmdline_hz);
            let kvmclock = Once::new();
            if let Some(registered) = detected.kvmclock {
                kvmclock.call_once(|| Some(registered));
            }
            let tsc = Once::new();
            if detected.calibrating.is_none() {
                tsc.call_once(|| detected.tsc);
            }
            Clock {
                tsc,
                calibrating: Mutex::new(detected.calibrating),
                bus_hz: detected.bus_hz,
                kvmclock_offered: detected.kvmclock_offered,
                kvmclock,
            }
        })
    }

    /// The TSC frequency, if [`init`] has run and found one (the power-off
    /// path, which may run before it).
    pub(crate) fn known_tsc() -> Option<TscFrequency> {
        CLOCK.get().and_then(Clock::tsc)
    }

    impl Clock {
        /// The TSC frequency; `None` only without any source (no VMM leaf,
        /// no kvmclock, no PIT). A PIT calibration still running is
        /// finished here, on first use: traced as `tsc_calibration`.
        pub(crate) fn tsc(&self) -> Option<TscFrequency> {
            *self.tsc.call_once(|| {
                let calibrating = self.calibrating.lock().take()?;
                let _span = trace::span("tsc_calibration");
                detect::finish_calibration(calibrating)
            })
        }

        /// The TSC frequency if it is known without finishing a
        /// calibration (for waits that have a safe fallback).
        pub(crate) fn tsc_if_known(&self) -> Option<TscFrequency> {
            self.tsc.get().copied().flatten()
        }

        /// The LAPIC timer frequency, when the hypervisor published it.
        pub(crate) fn bus_hz(&self) -> Option<u64> {
            self.bus_hz
        }

        fn kvmclock(&self) -> Option<Kvmclock> {
            if !self.kvmclock_offered {
                return None;
            }
            *self.kvmclock.call_once(Kvmclock::register)
        }

        /// Nanoseconds on the monotonic clock: kvmclock when offered, else
        /// the TSC scaled by its frequency. `None` without either.
        pub(crate) fn monotonic_ns(&self) -> Option<(u64, ClockSource)> {
            if let Some(ns) = self.kvmclock().and_then(Kvmclock::now_ns) {
                return Some((ns, ClockSource::Kvmclock));
            }
            let tsc = self.tsc()?;
            Some((tsc.nanos(cpu::rdtsc()), ClockSource::Tsc))
        }
    }
}
