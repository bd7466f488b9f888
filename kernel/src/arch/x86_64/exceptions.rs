//! The fatal-exception report: the exception's name, the boot phase, the
//! page-fault cause or error code and the registers, as `mote:` report
//! lines, then power-off with the failure status. No exception is handled.
#![deny(unsafe_code)]

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{
    ControlRegisters, ErrorCode, Exception, GeneralRegisters, Line, OnCpu, PageFault,
};
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::PageFaultErrorCode;

use super::interrupts::InterruptFrame;
use crate::{boot, console, console_println, trace};

const PAGE_FAULT_VECTOR: u64 = 14;

/// Exception names by vector (Intel SDM vol. 3 table 6-1).
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

/// Reports the exception in `frame` and powers off.
pub(super) fn report(frame: &InterruptFrame) -> ! {
    console::recover_for_crash();
    let name = usize::try_from(frame.vector)
        .ok()
        .and_then(|vector| EXCEPTION_NAMES.get(vector))
        .copied()
        .unwrap_or("reserved");
    console_println!(
        "{}",
        Line(Exception {
            name,
            vector: u8::try_from(frame.vector).unwrap_or(u8::MAX),
            phase: trace::phase::current(),
        })
    );
    console_println!("{}", Line(OnCpu(trace::current_cpu())));
    if frame.vector == PAGE_FAULT_VECTOR {
        let cause = PageFaultErrorCode::from_bits_truncate(frame.error_code);
        console_println!(
            "{}",
            Line(PageFault {
                cr2: Cr2::read_raw(),
                error_code: frame.error_code,
                protection_violation: cause.contains(PageFaultErrorCode::PROTECTION_VIOLATION),
                write: cause.contains(PageFaultErrorCode::CAUSED_BY_WRITE),
                instruction_fetch: cause.contains(PageFaultErrorCode::INSTRUCTION_FETCH),
            })
        );
    } else {
        console_println!("{}", Line(ErrorCode(frame.error_code)));
    }
    console_println!(
        "{}",
        Line(ControlRegisters {
            rip: frame.rip,
            cs: frame.cs,
            rflags: frame.rflags,
            rsp: frame.rsp,
            ss: frame.ss,
        })
    );
    console_println!(
        "{}",
        Line(GeneralRegisters {
            rax: frame.rax,
            rbx: frame.rbx,
            rcx: frame.rcx,
            rdx: frame.rdx,
            rsi: frame.rsi,
            rdi: frame.rdi,
            rbp: frame.rbp,
        })
    );
    boot::poweroff::poweroff(Status::Failure)
}
