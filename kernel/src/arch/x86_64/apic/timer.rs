//! A one-shot timer on [`TIMER`](super::vectors::TIMER): the TSC-deadline
//! mode of the LAPIC timer when the CPU has it, else the LAPIC timer
//! counting down at the bus frequency (published by the hypervisor, or
//! measured against the TSC once).

use super::local::LocalApic;
use super::registers::{self, LocalRegister, Lvt, MSR_TSC_DEADLINE, TIMER_DIVIDE_BY_1};
use super::vectors;
use crate::arch::x86_64::cpu::{self, Msr};
use crate::clock::TscFrequency;

/// The timer, owned by the one loop that sleeps on it.
pub(crate) struct OneShotTimer {
    apic: &'static LocalApic,
    tsc: TscFrequency,
    /// LAPIC timer ticks per second at divide-by-1; measured on first use
    /// when the hypervisor did not say.
    timer_hz: Option<u64>,
}

impl OneShotTimer {
    /// `bus_hz`: the LAPIC timer frequency if the hypervisor published it
    /// (CPUID 0x40000010 EBX).
    pub(crate) fn new(apic: &'static LocalApic, tsc: TscFrequency, bus_hz: Option<u64>) -> Self {
        Self {
            apic,
            tsc,
            timer_hz: bus_hz,
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
        let timer_hz = match self.timer_hz {
            Some(hz) => hz,
            None => *self.timer_hz.insert(self.measure_timer_hz()),
        };
        self.apic.set_timer(
            Lvt::empty().entry(vectors::TIMER),
            TIMER_DIVIDE_BY_1,
            registers::timer_ticks(cycles, timer_hz, self.tsc),
        );
    }

    /// Counts LAPIC timer ticks over ~200 us of TSC (once, after boot).
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
