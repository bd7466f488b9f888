//! The TSC frequency as a value, and the arithmetic that finds it from
//! each source mote trusts (docs/pvclock.md has the sources and formulas).
#![deny(unsafe_code)]

use core::num::NonZeroU64;

use mote_boot::protocol::report::TscSource;

/// How fast the TSC ticks, and who said so. Only a known, non-zero
/// frequency is a `TscFrequency`: there is no "0 means unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TscFrequency {
    hz: NonZeroU64,
    source: TscSource,
}

impl TscFrequency {
    pub(crate) fn new(hz: u64, source: TscSource) -> Option<Self> {
        Some(Self {
            hz: NonZeroU64::new(hz)?,
            source,
        })
    }

    pub(crate) fn hz(self) -> u64 {
        self.hz.get()
    }

    pub(crate) fn source(self) -> TscSource {
        self.source
    }

    /// Nanoseconds for `cycles` TSC ticks (saturating).
    pub(crate) fn nanos(self, cycles: u64) -> u64 {
        scale(cycles, 1_000_000_000, self.hz())
    }

    /// Microseconds from TSC reading `from` to `to`; 0 if the TSC went back.
    pub(crate) fn micros_between(self, from: u64, to: u64) -> u64 {
        scale(to.saturating_sub(from), 1_000_000, self.hz())
    }

    /// TSC cycles in `micros` microseconds (saturating).
    pub(crate) fn cycles_for_micros(self, micros: u64) -> u64 {
        scale(micros, self.hz(), 1_000_000)
    }
}

/// `value * numerator / denominator` without overflow, saturating.
fn scale(value: u64, numerator: u64, denominator: u64) -> u64 {
    let scaled = u128::from(value) * u128::from(numerator) / u128::from(denominator.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// CPUID 0x40000010 EAX is the TSC frequency in kHz; 0 means unknown.
pub(crate) fn from_timing_leaf(eax: u32) -> Option<u64> {
    (eax != 0).then(|| u64::from(eax) * 1000)
}

/// CPUID 0x15: TSC = crystal (ECX Hz) × EBX / EAX; all three must be known.
pub(crate) fn from_leaf_15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    Some(u64::from(ecx) * u64::from(ebx) / u64::from(eax))
}

/// CPUID 0x16 EAX: processor base frequency in MHz (an approximation of
/// the TSC on CPUs that have no 0x15 crystal value).
pub(crate) fn from_leaf_16(eax: u32) -> Option<u64> {
    let mhz = eax & 0xffff;
    (mhz != 0).then(|| u64::from(mhz) * 1_000_000)
}

/// The 8254 PIT input clock (Hz).
pub(crate) const PIT_HZ: u64 = 1_193_182;

/// Frequency from `cycles` TSC ticks measured over `pit_ticks` PIT ticks.
pub(crate) fn from_pit(cycles: u64, pit_ticks: u64) -> Option<u64> {
    if pit_ticks == 0 || cycles == 0 {
        return None;
    }
    u64::try_from(u128::from(cycles) * u128::from(PIT_HZ) / u128::from(pit_ticks)).ok()
}

/// The PIT ticks of a window whose counter, with period `period`, moved
/// `modulo` ticks (mod `period`), given a rough `estimate` of them: the
/// count with that remainder nearest the estimate.
pub(crate) fn unwrap_pit_ticks(modulo: u64, period: u64, estimate: u64) -> u64 {
    let periods = (estimate + period / 2).saturating_sub(modulo) / period;
    modulo + periods * period
}

/// How close two calibration windows must agree to be trusted: a little
/// more than one PIT tick of a 0.5 ms window (0.17 %).
pub(crate) const CALIBRATION_AGREEMENT_PPM: u64 = 2500;

/// Combines calibration windows: two that agree within
/// [`CALIBRATION_AGREEMENT_PPM`] give their mean; otherwise a third window
/// is needed (`None`), and with three the median wins, so one window
/// disturbed by the host (a preempted vCPU) cannot skew the result.
pub(crate) fn combine_calibrations(windows: &[u64]) -> Option<u64> {
    match *windows {
        [a, b] => {
            let agree = u128::from(a.abs_diff(b)) * 1_000_000
                <= u128::from(a.max(b)) * u128::from(CALIBRATION_AGREEMENT_PPM);
            agree.then(|| a / 2 + b / 2 + (a % 2 + b % 2) / 2)
        }
        [a, b, c] => {
            let mut sorted = [a, b, c];
            sorted.sort_unstable();
            Some(sorted[1])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_ticks_are_unwrapped_to_the_nearest_period() {
        let period = 0xffff;
        // Within the first period the estimate only confirms.
        assert_eq!(unwrap_pit_ticks(2500, period, 2600), 2500);
        assert_eq!(unwrap_pit_ticks(2500, period, 0), 2500);
        // 200 000 ticks: 3 periods and 3 395, estimated 2 % low or high.
        let true_ticks = 200_000;
        let modulo = true_ticks % period;
        assert_eq!(unwrap_pit_ticks(modulo, period, 196_000), true_ticks);
        assert_eq!(unwrap_pit_ticks(modulo, period, 204_000), true_ticks);
        // Just past a wrap: the remainder is small, the estimate large.
        assert_eq!(unwrap_pit_ticks(10, period, period + 400), period + 10);
        assert_eq!(
            unwrap_pit_ticks(period - 10, period, period + 30),
            period - 10
        );
    }

    #[test]
    fn timing_leaf() {
        assert_eq!(from_timing_leaf(2_300_000), Some(2_300_000_000));
        assert_eq!(from_timing_leaf(0), None);
    }

    #[test]
    fn leaf_15_and_16() {
        // A 24 MHz crystal with ratio 188/2 gives 2.256 GHz.
        assert_eq!(from_leaf_15(2, 188, 24_000_000), Some(2_256_000_000));
        assert_eq!(from_leaf_15(2, 188, 0), None, "crystal unknown");
        assert_eq!(from_leaf_15(0, 188, 24_000_000), None);
        assert_eq!(from_leaf_16(2300), Some(2_300_000_000));
        assert_eq!(from_leaf_16(0), None);
    }

    #[test]
    fn pit_calibration() {
        assert_eq!(from_pit(2_300_000_000, PIT_HZ), Some(2_300_000_000));
        // The 5 ms window: 5966 PIT ticks and the cycles of a 2.3 GHz TSC.
        let hz = from_pit(11_500_173, 5966).unwrap();
        assert!(hz.abs_diff(2_300_000_000) < 1000, "{hz}");
        assert_eq!(from_pit(10, 0), None);
    }

    #[test]
    fn conversions_from_a_known_frequency() {
        let tsc = TscFrequency::new(2_300_000_000, TscSource::Cpuid40000010).unwrap();
        assert_eq!(tsc.nanos(2_300_000), 1_000_000);
        assert_eq!(tsc.cycles_for_micros(1000), 2_300_000);
        assert_eq!(tsc.micros_between(1000, 2_301_000), 1000);
        assert_eq!(
            tsc.micros_between(5, 1),
            0,
            "a backwards TSC is 0, not a wrap"
        );
        let slow = TscFrequency::new(1, TscSource::Calibrated).unwrap();
        assert_eq!(slow.micros_between(0, u64::MAX), u64::MAX);
        assert_eq!(slow.cycles_for_micros(u64::MAX), u64::MAX / 1_000_000);
        assert_eq!(TscFrequency::new(0, TscSource::Calibrated), None, "no 0 Hz");
    }

    #[test]
    fn calibration_windows() {
        assert_eq!(
            combine_calibrations(&[2_596_000_000, 2_596_100_000]),
            Some(2_596_050_000)
        );
        assert_eq!(
            combine_calibrations(&[2_596_000_000, 2_644_000_000]),
            None,
            "1.8 % apart"
        );
        assert_eq!(
            combine_calibrations(&[2_596_000_000, 2_644_000_000, 2_596_200_000]),
            Some(2_596_200_000),
            "the disturbed window is outvoted"
        );
        assert_eq!(combine_calibrations(&[1]), None);
    }
}
