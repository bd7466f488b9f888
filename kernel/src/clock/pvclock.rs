//! pvclock, the clock KVM shares with its guests (kvmclock): the layout of
//! `pvclock_vcpu_time_info` and the arithmetic on it, after Linux
//! `arch/x86/include/asm/pvclock-abi.h` and `arch/x86/kernel/pvclock.c`
//! (docs/pvclock.md).
#![deny(unsafe_code)]

/// `struct pvclock_vcpu_time_info`, 32 bytes, written by the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PvclockTimeInfo {
    /// Odd while the host updates the rest; changes on every update.
    pub(crate) version: u32,
    pub(crate) pad0: u32,
    pub(crate) tsc_timestamp: u64,
    /// Nanoseconds at `tsc_timestamp`.
    pub(crate) system_time: u64,
    pub(crate) tsc_to_system_mul: u32,
    pub(crate) tsc_shift: i8,
    pub(crate) flags: u8,
    pub(crate) pad: [u8; 2],
}

const _: () = assert!(size_of::<PvclockTimeInfo>() == 32);

impl PvclockTimeInfo {
    /// Whether a copy taken between two reads of `version` (`before` and
    /// `after`) is consistent: unchanged, even, and written at least once.
    pub(crate) fn consistent(before: u32, after: u32) -> bool {
        before == after && before & 1 == 0 && before != 0
    }

    /// The TSC frequency: `ns = (delta << shift) * mul >> 32`, so
    /// `hz = (10^9 << 32) / mul`, shifted the other way (Linux
    /// `pvclock_tsc_khz`, in Hz rather than kHz).
    pub(crate) fn tsc_hz(&self) -> Option<u64> {
        if self.tsc_to_system_mul == 0 {
            return None;
        }
        let mut hz = (1_000_000_000u128 << 32) / u128::from(self.tsc_to_system_mul);
        let shift = u32::from(self.tsc_shift.unsigned_abs());
        if self.tsc_shift < 0 {
            hz <<= shift;
        } else {
            hz >>= shift;
        }
        u64::try_from(hz).ok().filter(|&hz| hz != 0)
    }

    /// The system time at `tsc` (Linux `pvclock_clocksource_read`):
    /// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`.
    pub(crate) fn nanos_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.saturating_sub(self.tsc_timestamp);
        let shift = u32::from(self.tsc_shift.unsigned_abs());
        if self.tsc_shift < 0 {
            delta >>= shift;
        } else {
            delta <<= shift;
        }
        let scaled = (u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32;
        self.system_time
            .saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mul: u32, shift: i8) -> PvclockTimeInfo {
        PvclockTimeInfo {
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            ..PvclockTimeInfo::default()
        }
    }

    /// Values seen under KVM with a 2.3 GHz TSC (docs/pvclock.md): mul
    /// 0xde9bd37a, shift -1 give 2 300 000 kHz, matching CPUID 0x40000010.
    #[test]
    fn frequency_matches_the_timing_leaf() {
        assert_eq!(info(0xde9b_d37a, -1).tsc_hz().unwrap() / 1000, 2_300_000);
        assert_eq!(info(0, 0).tsc_hz(), None);
        assert_eq!(info(0x8000_0000, 0).tsc_hz(), Some(2_000_000_000));
        assert_eq!(info(0x8000_0000, 1).tsc_hz(), Some(1_000_000_000));
    }

    #[test]
    fn system_time() {
        // 2.3 GHz: 2.3e9 cycles later is 1 s later.
        let clock = PvclockTimeInfo {
            tsc_timestamp: 1_000,
            system_time: 5_000,
            ..info(0xde9b_d37a, -1)
        };
        let ns = clock.nanos_at(1_000 + 2_300_000_000);
        assert!((ns - 5_000).abs_diff(1_000_000_000) < 10, "{ns}");
        let late = PvclockTimeInfo {
            tsc_timestamp: 20,
            system_time: 7,
            ..info(0xde9b_d37a, -1)
        };
        assert_eq!(late.nanos_at(10), 7, "TSC before the timestamp");
        assert_eq!(info(0x8000_0000, 0).nanos_at(2), 1);
    }

    #[test]
    fn version_protocol() {
        assert!(PvclockTimeInfo::consistent(2, 2));
        assert!(!PvclockTimeInfo::consistent(3, 3), "odd: being written");
        assert!(!PvclockTimeInfo::consistent(2, 4), "changed while read");
        assert!(!PvclockTimeInfo::consistent(0, 0), "never written");
    }
}
