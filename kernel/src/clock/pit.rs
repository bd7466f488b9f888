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

/// A (TSC, count) pair: the TSC read just before the count was latched.
#[derive(Clone, Copy)]
struct Sample {
    tsc: u64,
    count: u16,
}

/// Spans a sampler must have seen before it calls one steady.
const STEADY_AFTER: u32 = 3;
/// A span longer than this many times the shortest seen was stretched.
const STEADY_FACTOR: u64 = 2;

/// Reads (TSC, count) pairs and says which were taken in a steady loop:
/// a tick edge fell somewhere between the previous latch and this one, so
/// its TSC is known only to that span, from the previous pair's TSC to
/// the TSC after this latch. A span stretched past [`STEADY_FACTOR`] times
/// the shortest (the host preempted the vCPU, seen once in ~40 parallel
/// TCG boots as a 2.6 % error) is not used as an edge.
struct Sampler {
    previous: Sample,
    shortest: u64,
    spans: u32,
}

impl Sampler {
    fn new(pit: &mut Pit) -> Self {
        Self {
            previous: Sample {
                tsc: cpu::rdtsc(),
                count: pit.count(),
            },
            shortest: u64::MAX,
            spans: 0,
        }
    }

    /// The next pair, the previous one, and whether the span between them
    /// was steady.
    fn next(&mut self, pit: &mut Pit) -> (Sample, Sample, bool) {
        let tsc = cpu::rdtsc();
        let count = pit.count();
        let after = cpu::rdtsc();
        let span = after.wrapping_sub(self.previous.tsc);
        self.shortest = self.shortest.min(span);
        self.spans = self.spans.saturating_add(1);
        let steady =
            self.spans >= STEADY_AFTER && span <= self.shortest.saturating_mul(STEADY_FACTOR);
        let previous = core::mem::replace(&mut self.previous, Sample { tsc, count });
        (self.previous, previous, steady)
    }
}

/// The period of channel 0 loaded with the full count in mode 2: it counts
/// 0xffff down to 1 and reloads (8254 datasheet, mode 2), 54.9 ms.
const PERIOD: u32 = 0xffff;
/// The shortest window an overlapped calibration accepts: 2 ms, so one
/// PIT tick at each end is under 0.05 %.
const OVERLAPPED_MIN_TICKS: u32 = 2386;
/// The rough measurement that tells how many periods have passed: 0.1 ms,
/// within 2 % (one tick at each end and the loop's sampling).
const ROUGH_TICKS: u32 = 120;
/// The longest an overlapped calibration may have run: at 2 % a period's
/// count (32 767 ticks of doubt) is unambiguous below 1.6 M ticks; 1 s.
const OVERLAPPED_MAX_TICKS: u64 = frequency::PIT_HZ;

/// A calibration that runs while the boot goes on: [`begin`] loads the
/// PIT and notes a (TSC, count) pair on a tick edge, [`finish`] reads
/// another when the frequency is first needed, however long after. Only
/// the two edges are sampled, so the window's length costs nothing: the
/// boot does not wait 1 ms for it (docs/pvclock.md).
pub(super) struct Overlapped {
    pit: Pit,
    start_tsc: u64,
    start_count: u16,
}

/// Loads channel 0 and waits for a tick edge seen by a steady loop
/// ([`Sampler`]; a few PIT ticks). `None` without a PIT (its count never
/// moves).
pub(super) fn begin() -> Option<Overlapped> {
    // SAFETY: calibration is the PIT's only user, and runs once at boot;
    // the value returned keeps it until `finish`.
    let mut pit = unsafe { Pit::new() };
    pit.start();
    let give_up = cpu::rdtsc().wrapping_add(GIVE_UP_CYCLES);
    let mut sampler = Sampler::new(&mut pit);
    loop {
        let (sample, previous, steady) = sampler.next(&mut pit);
        if sample.tsc > give_up {
            return None;
        }
        if sample.count != previous.count && steady {
            return Some(Overlapped {
                pit,
                start_tsc: sample.tsc,
                start_count: sample.count,
            });
        }
    }
}

/// PIT ticks from count `from` to count `to`, modulo the period.
fn ticks_between(from: u16, to: u16) -> u32 {
    (u32::from(from) + PERIOD - u32::from(to)) % PERIOD
}

/// The frequency over the window [`begin`] opened: from its start edge to a
/// tick edge now (or once it spans [`OVERLAPPED_MIN_TICKS`]). The periods
/// that passed are counted with a rough frequency measured here over
/// [`ROUGH_TICKS`]. `None` when the window ran past
/// [`OVERLAPPED_MAX_TICKS`] or the PIT stopped; then calibrate afresh.
pub(super) fn finish(overlapped: Overlapped) -> Option<u64> {
    let Overlapped {
        mut pit,
        start_tsc,
        start_count,
    } = overlapped;
    let give_up = cpu::rdtsc().wrapping_add(GIVE_UP_CYCLES);
    // Every sample is a (TSC, count) pair read by this one loop body, as
    // in `window`; the rough window starts and ends on steady ones (the
    // first, whose code may just have been translated under TCG, never
    // is), since a stretched end would miscount the periods.
    let mut sampler = Sampler::new(&mut pit);
    let mut rough_start: Option<Sample> = None;
    let mut rough: Option<u64> = None;
    loop {
        let (sample, previous, steady) = sampler.next(&mut pit);
        let Sample { tsc, count } = sample;
        if tsc > give_up {
            return None;
        }
        let edge = count != previous.count && steady;
        let hz = match (rough, rough_start) {
            (Some(hz), _) => hz,
            (None, None) => {
                if steady {
                    rough_start = Some(sample);
                }
                continue;
            }
            (None, Some(first)) => {
                let ticks = ticks_between(first.count, count);
                if !steady || !(ROUGH_TICKS..PERIOD / 2).contains(&ticks) {
                    continue;
                }
                let hz = frequency::from_pit(tsc - first.tsc, u64::from(ticks))?;
                rough = Some(hz);
                hz
            }
        };
        if !edge {
            continue;
        }
        let cycles = tsc.wrapping_sub(start_tsc);
        let estimate =
            u64::try_from(u128::from(cycles) * u128::from(frequency::PIT_HZ) / u128::from(hz))
                .ok()?;
        if estimate > OVERLAPPED_MAX_TICKS {
            return None;
        }
        if estimate < u64::from(OVERLAPPED_MIN_TICKS) {
            continue;
        }
        let ticks = frequency::unwrap_pit_ticks(
            u64::from(ticks_between(start_count, count)),
            u64::from(PERIOD),
            estimate,
        );
        // The window's answer must agree with the rough one it was
        // unwrapped by (2 %, with room): otherwise a period was
        // miscounted or an edge stretched, and the caller calibrates anew.
        return frequency::from_pit(cycles, ticks)
            .filter(|&found| found.abs_diff(hz) <= hz / ROUGH_AGREEMENT);
    }
}

/// The overlapped answer and the rough one agree within 1/20 (5 %).
const ROUGH_AGREEMENT: u64 = 20;

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
