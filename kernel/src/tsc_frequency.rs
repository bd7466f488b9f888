//! TSC frequency arithmetic for each source mote trusts, host-tested.
//! Sources and formulas: `../shared/reference/pvh-microvm-facts.md` §4-5.

use core::fmt;

/// Where the TSC frequency came from, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// CPUID 0x40000010 EAX (kHz), the VMware/KVM timing leaf.
    Cpuid40000010,
    /// kvmclock's `tsc_to_system_mul`/`tsc_shift`.
    Kvmclock,
    /// CPUID 0x15 (crystal ratio) or 0x16 (base MHz).
    Cpuid15,
    /// Measured against the PIT.
    Calibrated,
}

impl Source {
    /// The word used in the boot report (`mote: tsc <hz> Hz from <word>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpuid40000010 => "cpuid-0x40000010",
            Self::Kvmclock => "kvmclock",
            Self::Cpuid15 => "cpuid-0x15",
            Self::Calibrated => "calibrated",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// CPUID 0x40000010 EAX is the TSC frequency in kHz; 0 means unknown.
pub fn from_timing_leaf(eax: u32) -> Option<u64> {
    (eax != 0).then(|| u64::from(eax) * 1000)
}

/// pvclock: `ns = (tsc_delta << shift) * mul >> 32`, so
/// `hz = (10^9 << 32) / mul`, shifted the other way (Linux `pvclock_tsc_khz`).
pub fn from_pvclock(mul: u32, shift: i8) -> Option<u64> {
    if mul == 0 {
        return None;
    }
    let mut hz = (1_000_000_000u128 << 32) / u128::from(mul);
    if shift < 0 {
        hz <<= u32::from(shift.unsigned_abs());
    } else {
        hz >>= u32::from(shift.unsigned_abs());
    }
    u64::try_from(hz).ok().filter(|&hz| hz != 0)
}

/// CPUID 0x15: TSC = crystal (ECX Hz) × EBX / EAX; all three must be known.
pub fn from_leaf_15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    Some(u64::from(ecx) * u64::from(ebx) / u64::from(eax))
}

/// CPUID 0x16 EAX: processor base frequency in MHz (an approximation of
/// the TSC on CPUs that have no 0x15 crystal value).
pub fn from_leaf_16(eax: u32) -> Option<u64> {
    let mhz = eax & 0xffff;
    (mhz != 0).then(|| u64::from(mhz) * 1_000_000)
}

/// The 8254 PIT input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;

/// Frequency from `cycles` TSC ticks measured over `pit_ticks` PIT ticks.
pub fn from_pit(cycles: u64, pit_ticks: u64) -> Option<u64> {
    if pit_ticks == 0 || cycles == 0 {
        return None;
    }
    u64::try_from(u128::from(cycles) * u128::from(PIT_HZ) / u128::from(pit_ticks)).ok()
}

/// pvclock's system time at `tsc` (Linux `pvclock_clocksource_read`):
/// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
pub fn pvclock_ns(tsc: u64, tsc_timestamp: u64, system_time: u64, mul: u32, shift: i8) -> u64 {
    let mut delta = tsc.saturating_sub(tsc_timestamp);
    if shift < 0 {
        delta >>= u32::from(shift.unsigned_abs());
    } else {
        delta <<= u32::from(shift.unsigned_abs());
    }
    let scaled = (u128::from(delta) * u128::from(mul)) >> 32;
    system_time.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
}

/// Nanoseconds for `cycles` TSC ticks at `hz`.
pub fn cycles_to_ns(cycles: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    u64::try_from(u128::from(cycles) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX)
}

/// TSC cycles in `micros` microseconds at `hz` (saturating).
pub fn cycles_for_micros(micros: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(micros) * u128::from(hz) / 1_000_000).unwrap_or(u64::MAX)
}

/// How close two calibration windows must agree to be trusted: a little
/// more than one PIT tick of a 0.5 ms window (0.17 %).
pub const CALIBRATION_AGREEMENT_PPM: u64 = 2500;

/// Combines calibration windows: two that agree within
/// [`CALIBRATION_AGREEMENT_PPM`] give their mean; otherwise a third window
/// is needed (`None`), and with three the median wins, so one window
/// disturbed by the host (a preempted vCPU) cannot skew the result.
pub fn combine_calibrations(windows: &[u64]) -> Option<u64> {
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
    fn timing_leaf() {
        assert_eq!(from_timing_leaf(2_300_000), Some(2_300_000_000));
        assert_eq!(from_timing_leaf(0), None);
    }

    /// Measured on this machine (reference §4): mul 0xde9bd37a, shift -1
    /// gives 2 300 000 kHz, matching CPUID 0x40000010.
    #[test]
    fn pvclock_matches_the_timing_leaf() {
        let hz = from_pvclock(0xde9b_d37a, -1).unwrap();
        assert_eq!(hz / 1000, 2_300_000);
        assert_eq!(from_pvclock(0, 0), None);
        assert_eq!(from_pvclock(0x8000_0000, 0), Some(2_000_000_000));
        assert_eq!(from_pvclock(0x8000_0000, 1), Some(1_000_000_000));
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
    fn pvclock_time() {
        // 2.3 GHz (mul 0xde9bd37a, shift -1): 2.3e9 cycles later is 1 s later.
        let ns = pvclock_ns(1_000 + 2_300_000_000, 1_000, 5_000, 0xde9b_d37a, -1);
        assert!((ns - 5_000).abs_diff(1_000_000_000) < 10, "{ns}");
        assert_eq!(
            pvclock_ns(10, 20, 7, 0xde9b_d37a, -1),
            7,
            "TSC before the timestamp"
        );
        assert_eq!(pvclock_ns(2, 0, 0, 0x8000_0000, 0), 1);
        assert_eq!(cycles_to_ns(2_300_000, 2_300_000_000), 1_000_000);
        assert_eq!(cycles_to_ns(1, 0), 0);
        assert_eq!(cycles_for_micros(1000, 2_300_000_000), 2_300_000);
        assert_eq!(cycles_for_micros(u64::MAX, u64::MAX), u64::MAX);
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

    #[test]
    fn report_words() {
        assert_eq!(Source::Cpuid40000010.to_string(), "cpuid-0x40000010");
        assert_eq!(Source::Calibrated.name(), "calibrated");
    }
}
