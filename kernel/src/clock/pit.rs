//! TSC calibration against the 8254 PIT, the last resort when no VMM leaf
//! or clock gives the frequency. microvm has a PIT but no port 0x61
//! (speaker gate), so channel 2 cannot be used: channel 0 (gate tied high)
//! is read back instead (docs/qemu-microvm.md).

use super::frequency;
use crate::arch::x86_64::cpu::{self, Port};

/// PIT ports (Intel 8254 datasheet; IBM PC/AT layout).
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
const CHANNEL0_MODE2: u8 = 0b0011_0100;
/// Channel 0 counter latch command.
const LATCH_CHANNEL0: u8 = 0b0000_0000;
/// 0.5 ms of PIT ticks per window. With (TSC, count) pairs sampled by one
/// loop body the error is about one PIT tick (0.17 %); a single window can
/// be thrown off by host preemption (seen once in 20 TCG boots, 1.85 %),
/// hence two that must agree. Over 30 TCG boots: 0.042 % median error,
/// 0.093 % max, 1.3 ms median for the whole span (1 ms windows: 2.2 ms).
const CALIBRATION_PIT_TICKS: u16 = 597;
/// Give up after this many TSC cycles (> 1 s below 4 GHz): no PIT (`pit=off`).
const GIVE_UP_CYCLES: u64 = 1 << 32;

/// PIT channel 0, driven by calibration alone.
struct Pit {
    channel0: Port<u8>,
    command: Port<u8>,
}

impl Pit {
    /// # Safety
    /// Nothing else may use the PIT while this value lives (the kernel
    /// uses it for calibration only, before interrupts are on).
    unsafe fn new() -> Self {
        Self {
            channel0: Port::new(PIT_CHANNEL0),
            command: Port::new(PIT_COMMAND),
        }
    }

    /// Loads channel 0 with the full count in mode 2.
    fn start(&mut self) {
        // SAFETY: the PIT is this value's alone (`new`); programming its
        // channel 0 touches no memory and no interrupt is routed from it.
        unsafe {
            self.command.write(CHANNEL0_MODE2);
            self.channel0.write(0xff);
            self.channel0.write(0xff);
        }
    }

    /// Latches and reads channel 0's count.
    fn count(&mut self) -> u16 {
        // SAFETY: as in `start`; latch then two reads is the 8254's protocol.
        let (low, high) = unsafe {
            self.command.write(LATCH_CHANNEL0);
            (self.channel0.read(), self.channel0.read())
        };
        u16::from_le_bytes([low, high])
    }
}

/// Two 0.5 ms PIT windows, a third when they disagree (see
/// [`frequency::combine_calibrations`]). `None` without a PIT.
pub(super) fn calibrate() -> Option<u64> {
    // SAFETY: calibration is the PIT's only user, and runs once at boot.
    let mut pit = unsafe { Pit::new() };
    let mut windows = arrayvec::ArrayVec::<u64, 3>::new();
    while !windows.is_full() {
        windows.push(window(&mut pit)?);
        if let Some(hz) = frequency::combine_calibrations(&windows) {
            return Some(hz);
        }
    }
    None
}

/// Counts TSC cycles while PIT channel 0 counts down one window.
///
/// Every sample is a (TSC, count) pair read back to back by the same loop
/// body, so the start and end marks cost the same: under TCG, code run for
/// the first time is translated first (~25 us), which skewed a separate
/// start-of-window read by 0.5 %.
fn window(pit: &mut Pit) -> Option<u64> {
    pit.start();
    let give_up = cpu::rdtsc().wrapping_add(GIVE_UP_CYCLES);
    let initial = pit.count();
    // The window opens on the first tick edge after the count was loaded.
    let mut start: Option<(u64, u16)> = None;
    loop {
        let tsc = cpu::rdtsc();
        let count = pit.count();
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
                    return frequency::from_pit(tsc - start_tsc, u64::from(elapsed));
                }
            }
        }
    }
}
