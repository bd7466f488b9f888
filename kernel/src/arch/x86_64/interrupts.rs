//! Interrupt entry: a 16-byte assembly stub per vector (stable Rust has no
//! `x86-interrupt` ABI) pushes a uniform frame and calls [`dispatch`], which
//! hands exceptions to the fatal report and records external interrupts
//! (I/O APIC pins and MSI-X messages) in [`EVENTS`] for the main loop.
//!
//! Handlers run only inside [`wait_for_interrupt`]'s `sti; hlt`, and they
//! touch only atomics and interrupt-controller registers: no lock, so a
//! handler can never wait for code it interrupted.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::VirtAddr;

use super::apic::{self, vectors};
use super::exceptions;
use crate::smp::MAX_CPUS;

/// Vectors that push an error code (Intel SDM vol. 3 table 6-1):
/// 8, 10-14, 17, 21, 29, 30.
const ERROR_CODE_VECTORS: u32 = 0x6022_7d00;
const STUB_SIZE: usize = 16;
/// Vectors 0-31 are exceptions.
const FIRST_EXTERNAL_VECTOR: u64 = 32;

global_asm!(
    r#"
    .pushsection .text.exception_stubs, "ax"
    .balign {stub_size}
    .global exception_stubs
exception_stubs:
    .set vector, 0
    .rept 256
    .balign {stub_size}
    .if ((({error_vectors} >> vector) & 1) == 0) || (vector > 31)
    push $0                         # uniform frame: fake error code
    .endif
    push $vector
    jmp exception_common
    .set vector, vector + 1
    .endr

exception_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi                  # &mut InterruptFrame
    mov %rsp, %rbx                  # callee-saved: the unaligned stack
    and $-16, %rsp
    cld
    call {dispatch}
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp                   # vector and error code
    iretq
    .popsection
    "#,
    stub_size = const STUB_SIZE,
    error_vectors = const ERROR_CODE_VECTORS,
    dispatch = sym dispatch,
    options(att_syntax)
);

unsafe extern "C" {
    static exception_stubs: u8;
}

/// The entry stub of `vector`.
pub(super) fn stub_address(vector: u8) -> VirtAddr {
    VirtAddr::new(stubs_base() + u64::from(vector) * STUB_BYTES)
}

/// Where vector 0's stub is; vector `n`'s is `n` × [`STUB_BYTES`] further.
pub(super) fn stubs_base() -> u64 {
    // Only the address of the stubs' label is taken.
    &raw const exception_stubs as u64
}

/// The size of one entry stub.
pub(super) const STUB_BYTES: u64 = STUB_SIZE as u64;

/// What the stubs push, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub(super) struct InterruptFrame {
    pub(super) r15: u64,
    pub(super) r14: u64,
    pub(super) r13: u64,
    pub(super) r12: u64,
    pub(super) r11: u64,
    pub(super) r10: u64,
    pub(super) r9: u64,
    pub(super) r8: u64,
    pub(super) rbp: u64,
    pub(super) rdi: u64,
    pub(super) rsi: u64,
    pub(super) rdx: u64,
    pub(super) rcx: u64,
    pub(super) rbx: u64,
    pub(super) rax: u64,
    pub(super) vector: u64,
    pub(super) error_code: u64,
    pub(super) rip: u64,
    pub(super) cs: u64,
    pub(super) rflags: u64,
    pub(super) rsp: u64,
    pub(super) ss: u64,
}

extern "C" fn dispatch(frame: &mut InterruptFrame) {
    match u8::try_from(frame.vector) {
        Ok(vector) if frame.vector >= FIRST_EXTERNAL_VECTOR => external_interrupt(vector),
        _ => match closed_gate(frame) {
            Some(vector) => unexpected_interrupt(vector),
            None => exceptions::report(frame),
        },
    }
}

/// The segment-not-present fault (vector 11).
const SEGMENT_NOT_PRESENT: u64 = 11;
/// Its error code's IDT bit: the fault names an IDT gate (Intel SDM vol. 3
/// §6.13, Figure 6-6).
const ERROR_CODE_IDT: u64 = 1 << 1;

/// The external vector whose gate was closed, when `frame` is the fault
/// its delivery raised: only routed vectors have open gates
/// (`descriptors::open_gate`), so it is an interrupt nobody asked for.
/// The vector is the one the local APIC has in service, not the error
/// code's gate index: QEMU 7.2's emulator puts twice the vector there in
/// long mode (`do_interrupt64`, `intno * 16 + 2`; the SDM says the
/// vector). An `int n` on a closed gate puts nothing in service; it
/// faults on the instruction itself, so returning would run it again: it
/// is reported as the fault it is.
fn closed_gate(frame: &InterruptFrame) -> Option<u8> {
    if frame.vector != SEGMENT_NOT_PRESENT || frame.error_code & ERROR_CODE_IDT == 0 {
        return None;
    }
    apic::local::in_service_from_handler()
        .filter(|&vector| u64::from(vector) >= FIRST_EXTERNAL_VECTOR)
}

/// What the handlers saw, for the main loop: written by handlers, read and
/// cleared by the one loop that serves devices.
pub(crate) struct Events {
    /// Bit `n`: GSI `n` fired and is masked until its driver acknowledges.
    pending_gsis: AtomicU64,
    /// Bit `n`: MSI slot `n` fired (edge-triggered: nothing is masked).
    pending_msis: AtomicU64,
    timer_fired: AtomicBool,
    spurious: AtomicUsize,
    unexpected: AtomicUsize,
    last_unexpected_vector: AtomicU32,
}

/// The only `Events`: the handlers below are its writers.
pub(crate) static EVENTS: Events = Events {
    pending_gsis: AtomicU64::new(0),
    pending_msis: AtomicU64::new(0),
    timer_fired: AtomicBool::new(false),
    spurious: AtomicUsize::new(0),
    unexpected: AtomicUsize::new(0),
    last_unexpected_vector: AtomicU32::new(0),
};

impl Events {
    /// The GSIs (bit `n` for GSI `n`) and MSI slots (bit `n` for slot
    /// `n`) that fired since the last call, and whether the one-shot timer
    /// did; all are cleared.
    pub(crate) fn take(&self) -> (u64, u64, bool) {
        (
            self.pending_gsis.swap(0, Ordering::AcqRel),
            self.pending_msis.swap(0, Ordering::AcqRel),
            self.timer_fired.swap(false, Ordering::AcqRel),
        )
    }

    /// Interrupts nobody asked for since the last call: spurious ones, and
    /// unexpected vectors with the last one seen.
    pub(crate) fn take_odd(&self) -> (usize, usize, u32) {
        (
            self.spurious.swap(0, Ordering::Relaxed),
            self.unexpected.swap(0, Ordering::Relaxed),
            self.last_unexpected_vector.load(Ordering::Relaxed),
        )
    }

    fn pending(&self) -> bool {
        self.pending_gsis.load(Ordering::Acquire) != 0
            || self.pending_msis.load(Ordering::Acquire) != 0
            || self.timer_fired.load(Ordering::Acquire)
    }
}

/// One flag per application processor (index: its CPU number): its own
/// one-shot timer fired. The boot CPU's is [`Events`]'s.
static OTHER_CPU_TIMER_FIRED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The flag the timer's handler sets on CPU `cpu`.
fn timer_fired_flag(cpu: usize) -> Option<&'static AtomicBool> {
    match cpu {
        0 => Some(&EVENTS.timer_fired),
        _ => OTHER_CPU_TIMER_FIRED.get(cpu),
    }
}

/// Whether CPU `cpu`'s one-shot timer fired and was not waited for yet.
pub(crate) fn timer_fired(cpu: usize) -> bool {
    timer_fired_flag(cpu).is_some_and(|fired| fired.load(Ordering::Acquire))
}

/// Halts until CPU `cpu`'s own timer has fired, then clears its flag.
/// Like [`wait_for_interrupt`], IF is set only inside `sti; hlt`, so a
/// timer that fires between the check and the halt still wakes it.
pub(crate) fn wait_for_timer(cpu: usize) {
    let Some(fired) = timer_fired_flag(cpu) else {
        return;
    };
    x86_64::instructions::interrupts::disable();
    while !fired.swap(false, Ordering::AcqRel) {
        halt_until_interrupt();
    }
}

/// As [`wait_for_timer`], but spinning with IF set for at most `cycles`
/// of the TSC instead of halting (so a timer that never fires cannot hold
/// the CPU): whether it fired. Only for a CPU that holds no lock the
/// handlers take, as they run at any point of the spin.
pub(crate) fn wait_for_timer_within(cpu: usize, cycles: u64) -> bool {
    let Some(fired) = timer_fired_flag(cpu) else {
        return false;
    };
    let start = super::cpu::rdtsc();
    x86_64::instructions::interrupts::enable();
    let came = loop {
        if fired.swap(false, Ordering::AcqRel) {
            break true;
        }
        if super::cpu::rdtsc().wrapping_sub(start) >= cycles {
            break false;
        }
        core::hint::spin_loop();
    };
    x86_64::instructions::interrupts::disable();
    came
}

/// An external interrupt: record it for the main loop, which does the work.
fn external_interrupt(vector: u8) {
    match vector {
        vectors::SPURIOUS => {
            EVENTS.spurious.fetch_add(1, Ordering::Relaxed);
            return; // no EOI for the spurious vector
        }
        vectors::TIMER => {
            let cpu = usize::try_from(super::per_cpu::current_cpu()).unwrap_or(0);
            if let Some(fired) = timer_fired_flag(cpu) {
                fired.store(true, Ordering::Release);
            }
        }
        // It only wakes an application processor from `sti; hlt`: the work
        // is in its mailbox (`smp::dispatch`).
        vectors::WORK => {}
        vector => match (vectors::gsi_of(vector), vectors::msi_slot_of(vector)) {
            (Some(gsi), _) => {
                // Level-triggered: masked until the driver has acknowledged
                // its device, so a line still high fires again rather than storm.
                apic::io::mask_from_handler(gsi);
                EVENTS.pending_gsis.fetch_or(1 << gsi, Ordering::AcqRel);
            }
            (None, Some(slot)) => {
                // Edge-triggered: recorded, and the EOI below lets the next
                // one in; the device needs no acknowledgement.
                EVENTS.pending_msis.fetch_or(1 << slot, Ordering::AcqRel);
            }
            (None, None) => return unexpected_interrupt(vector),
        },
    }
    apic::local::eoi_from_handler();
}

/// An interrupt on a vector mote never routed: counted for the main loop,
/// which reports it, and acknowledged (the local APIC took it in service).
fn unexpected_interrupt(vector: u8) {
    EVENTS.unexpected.fetch_add(1, Ordering::Relaxed);
    EVENTS
        .last_unexpected_vector
        .store(u32::from(vector), Ordering::Relaxed);
    apic::local::eoi_from_handler();
}

/// MSI slots handed out so far (boot hands them out, once per device).
static MSI_SLOTS_USED: AtomicU8 = AtomicU8::new(0);

/// Slots still free for [`allocate_msi`].
pub(crate) fn free_msi_slots() -> usize {
    usize::from(vectors::MSI_SLOTS.saturating_sub(MSI_SLOTS_USED.load(Ordering::Relaxed)))
}

/// Hands out `count` consecutive MSI slots: the first one's number; its
/// vector is `vectors::MSI_BASE + slot`. `None` when too few are left.
/// Their vectors' gates are opened.
pub(crate) fn allocate_msi(count: u8) -> Option<u8> {
    let first = MSI_SLOTS_USED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(count)
                .filter(|&end| end <= vectors::MSI_SLOTS)
        })
        .ok()?;
    for slot in first..first + count {
        super::descriptors::open_gate(vectors::MSI_BASE + slot);
    }
    Some(first)
}

/// Halts until an interrupt arrives, unless one is already pending. IF is
/// set only inside `sti; hlt` (the STI shadow makes the check and the halt
/// one atomic step), so handlers never run while the kernel holds a lock.
pub(crate) fn wait_for_interrupt() {
    if !EVENTS.pending() {
        halt_until_interrupt();
    }
}

/// `sti; hlt`, then IF clear again: handlers run only here.
fn halt_until_interrupt() {
    super::cpu::enable_interrupts_and_halt();
    x86_64::instructions::interrupts::disable();
}
