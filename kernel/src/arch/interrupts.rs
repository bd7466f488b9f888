//! GDT with a TSS (for the double-fault IST stack), a 256-entry IDT whose
//! gates all lead to one assembly entry path, and the fatal-exception report.
//!
//! Stable Rust has no `x86-interrupt` ABI, so each vector has a 16-byte
//! stub (`exception_stubs`) that pushes a uniform frame and calls
//! [`interrupt_dispatch`].

use core::arch::{asm, global_asm};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{DescriptorTablePointer, lidt, load_tss};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::{apic, console, cpu, poweroff};
use crate::phase;

/// Vectors that push an error code (Intel SDM vol. 3 table 6-1):
/// 8, 10-14, 17, 21, 29, 30.
const ERROR_CODE_VECTORS: u32 = 0x6022_7d00;
const STUB_SIZE: usize = 16;
const DOUBLE_FAULT_VECTOR: usize = 8;
const DOUBLE_FAULT_IST: u16 = 1;
const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;

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
    dispatch = sym interrupt_dispatch,
    options(att_syntax)
);

unsafe extern "C" {
    static exception_stubs: u8;
}

/// What the stubs push, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One 16-byte long-mode interrupt gate (Intel SDM vol. 3 §6.14.1).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

#[repr(C, align(16))]
struct Stack([u8; DOUBLE_FAULT_STACK_SIZE]);

/// Needs no initial value: not zeroed (`linker.ld` `.noinit`).
#[unsafe(link_section = ".bss.noinit.double_fault_stack")]
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; DOUBLE_FAULT_STACK_SIZE]);
static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();
static IDT: Once<Idt> = Once::new();

/// Loads the kernel's GDT, TSS and IDT. Call once, first thing in Rust.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack_end = (&raw const DOUBLE_FAULT_STACK as u64) + DOUBLE_FAULT_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(stack_end);
        tss
    });
    let (gdt, code, data, tss_selector) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_selector)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose descriptors are
    // a 64-bit code segment, a data segment and an available TSS.
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        load_tss(*tss_selector);
    }

    let idt = IDT.call_once(|| {
        // Only the address of the stubs' label is taken.
        let stubs = &raw const exception_stubs as u64;
        let mut idt = Idt([Gate::default(); 256]);
        for (vector, gate) in idt.0.iter_mut().enumerate() {
            let handler = stubs + (vector * STUB_SIZE) as u64;
            *gate = Gate {
                offset_low: handler as u16,
                selector: code.0,
                ist: if vector == DOUBLE_FAULT_VECTOR {
                    DOUBLE_FAULT_IST as u8
                } else {
                    0
                },
                attributes: INTERRUPT_GATE,
                offset_middle: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is a 'static table of valid gates to the stubs above.
    unsafe { lidt(&pointer) };
}

/// Loads an empty IDT so the next exception triple-faults: the last-resort
/// way to stop a VM (QEMU `-no-reboot` exits).
pub fn triple_fault() -> ! {
    let pointer = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately makes every exception unhandleable, then raises one.
    unsafe {
        lidt(&pointer);
        asm!("int3", options(nomem, nostack));
    }
    cpu::halt_forever()
}

/// An external interrupt: record it for the main loop, which does the work.
/// Handlers touch only atomics and APIC registers (they can run during the
/// idle halt only, but never take a lock).
fn external_interrupt(vector: u8) {
    use core::sync::atomic::Ordering;
    match vector {
        apic::SPURIOUS_VECTOR => {
            apic::SPURIOUS.fetch_add(1, Ordering::Relaxed);
            return; // no EOI for the spurious vector
        }
        apic::TIMER_VECTOR => apic::TIMER_FIRED.store(true, Ordering::Release),
        v if v >= apic::DEVICE_VECTOR_BASE
            && u32::from(v - apic::DEVICE_VECTOR_BASE) <= apic::MAX_GSI =>
        {
            let gsi = u32::from(v - apic::DEVICE_VECTOR_BASE);
            apic::mask_gsi(gsi);
            apic::PENDING_GSIS.fetch_or(1 << gsi, Ordering::AcqRel);
        }
        other => {
            apic::UNEXPECTED.fetch_add(1, Ordering::Relaxed);
            apic::LAST_UNEXPECTED_VECTOR.store(u32::from(other), Ordering::Relaxed);
        }
    }
    apic::eoi();
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved",
];

extern "C" fn interrupt_dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as usize;
    if vector >= EXCEPTION_NAMES.len() {
        external_interrupt(vector as u8);
        return;
    }
    console::recover_for_crash();
    crate::console_println!(
        "mote: EXCEPTION {} (vector {vector}) in phase {}",
        EXCEPTION_NAMES[vector],
        phase::current()
    );
    if vector == 14 {
        crate::console_println!(
            "mote:   page fault at CR2 {:#018x}, error code {:#x} ({}, {}, {})",
            cpu::cr2(),
            frame.error_code,
            if frame.error_code & 1 != 0 {
                "protection violation"
            } else {
                "page not present"
            },
            if frame.error_code & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if frame.error_code & 16 != 0 {
                "instruction fetch"
            } else {
                "data access"
            },
        );
    } else {
        crate::console_println!("mote:   error code {:#x}", frame.error_code);
    }
    crate::console_println!(
        "mote:   RIP {:#018x} CS {:#x} RFLAGS {:#x} RSP {:#018x} SS {:#x}",
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss
    );
    crate::console_println!(
        "mote:   RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x} RSI {:#x} RDI {:#x} RBP {:#x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp
    );
    poweroff::poweroff(poweroff::Status::Failure);
}
