//! Work for the application processors (docs/smp.md): one mailbox per
//! CPU. The boot CPU puts a job's address in the mailbox of every online
//! CPU and sends each an IPI ([`vectors::WORK`]); each runs the job and
//! empties its mailbox, which tells the boot CPU it is done with it; an
//! idle CPU halts (`sti; hlt`) until the next IPI.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::MAX_CPUS;
use super::bring_up;
use super::work::Workers;
use crate::arch::x86_64::apic::local;
use crate::arch::x86_64::apic::registers::InterruptCommand;
use crate::arch::x86_64::apic::vectors;
use crate::arch::x86_64::cpu;
use crate::clock::TscFrequency;

/// xAPIC: reads of the ICR's delivery status before an IPI counts as lost.
const ICR_SPINS: u32 = 100_000;
/// How long a CPU may take over its share of one job before the boot CPU
/// gives up on it (a panic: the job lives on the boot CPU's stack, so it
/// cannot go on while another CPU may still read it). A share is a few
/// MiB of CRC, milliseconds even under TCG.
const JOB_TIMEOUT_US: u64 = 30_000_000;
/// The TSC rate assumed when none is known (as `bring_up` does).
const FALLBACK_TSC_HZ: u64 = 10_000_000_000;

/// What a mailbox points to: the closure of [`Workers::run`].
struct Job<'a> {
    work: &'a (dyn Fn() + Sync),
}

/// One per CPU number (CPU 0, the boot CPU, has none): null when idle,
/// else the job to run. Written by the boot CPU when null, by the CPU it
/// belongs to when not.
static MAILBOXES: [AtomicPtr<Job<'static>>; MAX_CPUS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CPUS];

/// An application processor's life after it is online: run what its
/// mailbox holds, else halt until the next IPI. Interrupts are off except
/// in `sti; hlt` (whose STI shadow makes the check and the halt one step:
/// an IPI sent after the check wakes the halt).
pub(crate) fn serve(cpu: usize) -> ! {
    let Some(mailbox) = MAILBOXES.get(cpu) else {
        cpu::halt_forever()
    };
    loop {
        x86_64::instructions::interrupts::disable();
        let job = mailbox.load(Ordering::Acquire);
        if job.is_null() {
            cpu::enable_interrupts_and_halt();
            continue;
        }
        // SAFETY: a non-null mailbox holds the address of a `Job` on the
        // boot CPU's stack that stays alive until this mailbox is null
        // again (`OnlineCpus::run` waits for that); nothing here uses it
        // after the store below.
        let work = unsafe { (*job).work };
        work();
        mailbox.store(ptr::null_mut(), Ordering::Release);
    }
}

/// The boot CPU and every application processor online when made.
pub(crate) struct OnlineCpus {
    /// CPU number and APIC id of each application processor.
    others: arrayvec::ArrayVec<(usize, u32), MAX_CPUS>,
    timeout_cycles: u64,
}

impl OnlineCpus {
    /// The CPUs online now (call after the bring-up's wait).
    pub(crate) fn now(tsc: Option<TscFrequency>) -> Self {
        let hz = tsc.map_or(FALLBACK_TSC_HZ, TscFrequency::hz);
        Self {
            others: bring_up::online().collect(),
            timeout_cycles: JOB_TIMEOUT_US.saturating_mul(hz) / 1_000_000,
        }
    }
}

impl Workers for OnlineCpus {
    fn cpus(&self) -> usize {
        1 + self.others.len()
    }

    fn run(&self, work: &(dyn Fn() + Sync)) {
        let Some(apic) = local::init().filter(|_| !self.others.is_empty()) else {
            work();
            return;
        };
        let job = Job { work };
        // The mailboxes hold it only until `run` returns: every CPU given
        // it empties its mailbox before that (waited for below).
        let address = (&raw const job).cast::<Job<'static>>().cast_mut();
        for &(cpu, apic_id) in &self.others {
            MAILBOXES[cpu].store(address, Ordering::Release);
            apic.send_ipi(apic_id, InterruptCommand::fixed(vectors::WORK), ICR_SPINS);
        }
        work();
        let deadline = cpu::rdtsc().saturating_add(self.timeout_cycles);
        for &(cpu, _) in &self.others {
            while !MAILBOXES[cpu].load(Ordering::Acquire).is_null() {
                assert!(
                    cpu::rdtsc() < deadline,
                    "cpu {cpu} did not finish its share of a job"
                );
                core::hint::spin_loop();
            }
        }
    }
}
