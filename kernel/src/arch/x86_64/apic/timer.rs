//! A one-shot timer on [`TIMER`](super::vectors::TIMER): the TSC-deadline
//! mode of the LAPIC timer when the CPU has it, else the LAPIC timer
//! counting down at the bus frequency (published by the hypervisor, or
//! measured against the TSC once, by the first CPU that needs it, for
//! every CPU: each CPU's APIC counts at the same bus frequency).

use spin::Once;

use super::local::LocalApic;
use super::registers::{self, LocalRegister, Lvt, MSR_TSC_DEADLINE, TIMER_DIVIDE_BY_1};
use super::vectors;
use crate::arch::x86_64::cpu::{self, Msr};
use crate::clock::TscFrequency;

/// LAPIC timer ticks per second at divide-by-1, shared by every CPU's
/// timer: the hypervisor's figure when it published one, else measured
/// once against the boot CPU's TSC frequency by the first timer that needs
/// it.
static TIMER_HZ: Once<u64> = Once::new();

/// A CPU's timer, owned by the one loop on that CPU that sleeps on it (it
/// programs the APIC of the CPU it runs on).
pub(crate) struct OneShotTimer {
    apic: &'static LocalApic,
    tsc: TscFrequency,
}

impl OneShotTimer {
    /// `bus_hz`: the LAPIC timer frequency if the hypervisor published it
    /// (CPUID 0x40000010 EBX).
    pub(crate) fn new(apic: &'static LocalApic, tsc: TscFrequency, bus_hz: Option<u64>) -> Self {
        if let Some(hz) = bus_hz {
            TIMER_HZ.call_once(|| hz);
        }
        Self { apic, tsc }
    }

    /// Does now what the first [`arm`](Self::arm) would otherwise do
    /// first: measure the LAPIC timer's frequency, when the timer needs it
    /// and nobody knows it yet.
    pub(crate) fn prepare(&self) {
        if !self.apic.has_tsc_deadline() {
            TIMER_HZ.call_once(|| self.measure_timer_hz());
        }
    }

    /// Fires [`vectors::TIMER`] once, `cycles` TSC ticks from now.
    pub(crate) fn arm(&mut self, cycles: u64) {
        if self.apic.has_tsc_deadline() {
            self.apic.write(
                LocalRegister::LvtTimer,
                Lvt::TIMER_TSC_DEADLINE.entry(vectors::TIMER),
            );
            let deadline = cpu::rdtsc().saturating_add(cycles.max(1));
            // SAFETY: CPUID said the TSC-deadline MSR exists and the LVT is in
            // TSC-deadline mode; the value is a TSC reading.
            unsafe { Msr::new(MSR_TSC_DEADLINE).write(deadline) };
            return;
        }
        let timer_hz = *TIMER_HZ.call_once(|| self.measure_timer_hz());
        self.apic.set_timer(
            Lvt::empty().entry(vectors::TIMER),
            TIMER_DIVIDE_BY_1,
            registers::timer_ticks(cycles, timer_hz, self.tsc),
        );
    }

    /// Counts LAPIC timer ticks over ~200 us of TSC (once, on one CPU).
    fn measure_timer_hz(&self) -> u64 {
        self.apic.set_timer(
            Lvt::MASKED.entry(vectors::TIMER),
            TIMER_DIVIDE_BY_1,
            u32::MAX,
        );
        let start = cpu::rdtsc();
        let window = (self.tsc.hz() / 5000).max(1);
        while cpu::rdtsc().wrapping_sub(start) < window {
            core::hint::spin_loop();
        }
        let elapsed = u32::MAX - self.apic.read(LocalRegister::TimerCurrentCount);
        let cycles = cpu::rdtsc().wrapping_sub(start);
        registers::timer_hz(elapsed, cycles, self.tsc)
    }
}
