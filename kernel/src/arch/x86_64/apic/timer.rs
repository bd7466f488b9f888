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
use crate::arch::x86_64::{interrupts, per_cpu};
use crate::clock::TscFrequency;

/// LAPIC timer ticks per second at divide-by-1, shared by every CPU's
/// timer: the hypervisor's figure when it published one, else measured
/// once against the boot CPU's TSC frequency by the first timer that needs
/// it.
static TIMER_HZ: Once<u64> = Once::new();

/// The ticks [`OneShotTimer::measure_timer_hz`] times: 262 us at the 1 GHz
/// of QEMU's and KVM's emulated APICs, 10 ms at a 25 MHz bus.
const MEASURE_TICKS: u32 = 1 << 18;

/// How long the measurement waits for the timer's vector.
const MEASURE_LIMIT_MS: u64 = 100;

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

    /// Times [`MEASURE_TICKS`] of the LAPIC timer with the TSC (once, on
    /// one CPU). The count runs down with the vector unmasked and IF clear,
    /// and the end is when the vector shows up in the IRR (or, with IF set,
    /// its handler ran); the interrupt is then taken so that no stale
    /// "fired" wakes the CPU's next wait. The current-count register is
    /// read only if the vector never comes within [`MEASURE_LIMIT_MS`]:
    /// QEMU 10 under icount aborts on an x2APIC read of it ("Bad icount
    /// read": its RDMSR reads the virtual clock outside an I/O
    /// instruction).
    fn measure_timer_hz(&self) -> u64 {
        let cpu = per_cpu::current_cpu() as usize;
        let irr_bit = const {
            registers::irr7_bit(vectors::TIMER).expect("the timer's vector is in IRR word 7")
        };
        self.apic.set_timer(
            Lvt::empty().entry(vectors::TIMER),
            TIMER_DIVIDE_BY_1,
            MEASURE_TICKS,
        );
        let start = cpu::rdtsc();
        let limit = (self.tsc.hz() / 1000)
            .saturating_mul(MEASURE_LIMIT_MS)
            .max(1);
        loop {
            let cycles = cpu::rdtsc().wrapping_sub(start);
            if self.apic.read(LocalRegister::InterruptRequest7) & irr_bit != 0
                || interrupts::timer_fired(cpu)
            {
                interrupts::wait_for_timer(cpu);
                return registers::timer_hz(MEASURE_TICKS, cycles, self.tsc);
            }
            if cycles >= limit {
                let elapsed =
                    MEASURE_TICKS.saturating_sub(self.apic.read(LocalRegister::TimerCurrentCount));
                self.apic
                    .set_timer(Lvt::MASKED.entry(vectors::TIMER), TIMER_DIVIDE_BY_1, 0);
                return registers::timer_hz(elapsed, cycles, self.tsc);
            }
            core::hint::spin_loop();
        }
    }
}
