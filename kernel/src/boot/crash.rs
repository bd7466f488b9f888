//! The crash path: a fatal boot error or a panic prints what happened and
//! where (message, location, boot phase) and powers off with the failure
//! status; `mote.crash=` fails on purpose to prove it, and
//! `mote.inject=stray-interrupt` sends what must not crash.

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Fatal, Line, Location, OnCpu, Panic};

use super::poweroff::poweroff;
use crate::arch::x86_64::apic::local;
use crate::arch::x86_64::apic::registers::InterruptCommand;
use crate::arch::x86_64::apic::vectors;
use crate::cmdline::Crash;
use crate::{console, console_println, trace};

/// An address no page table maps (PML4 entry 128), for `mote.crash=page-fault`.
const UNMAPPED_ADDRESS: u64 = 0x0000_4000_0000_0000;

/// Prints a boot failure and powers off with the failure status.
pub(crate) fn fatal(message: core::fmt::Arguments<'_>) -> ! {
    console::recover_for_crash();
    console_println!(
        "{}",
        Line(Fatal {
            phase: trace::phase::current(),
            message,
        })
    );
    console_println!("{}", Line(OnCpu(trace::current_cpu())));
    poweroff(Status::Failure)
}

/// The panic path: message, location and boot phase, then power off.
pub(crate) fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::recover_for_crash();
    let location = info.location().map(|location| Location {
        file: location.file(),
        line: location.line(),
        column: location.column(),
    });
    console_println!(
        "{}",
        Line(Panic {
            phase: trace::phase::current(),
            location,
            message: info.message(),
        })
    );
    console_println!("{}", Line(OnCpu(trace::current_cpu())));
    poweroff(Status::Failure)
}

/// Reads an unmapped address: the page fault powers the VM off.
pub(super) fn page_fault() {
    // SAFETY: deliberately not safe: the address is unmapped and the read
    // raises #PF, which powers the VM off.
    let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
    log::error!("read {value:#x} from an unmapped address?");
}

/// Fails the way `crash` asks: each way must end in a report and power-off.
pub(super) fn crash_on_purpose(crash: Crash) {
    log::info!("mote.crash={crash:?}: failing on purpose");
    match crash {
        Crash::PageFault => page_fault(),
        // The first application processor faults as it comes up
        // (`page_fault` is its hook): getting here means none came.
        Crash::ApPageFault => fatal(format_args!(
            "mote.crash=ap-page-fault: no application processor came up to fault"
        )),
        Crash::Panic => panic!("mote.crash=panic asked for a panic"),
        Crash::DivideError => {
            // SAFETY: raises #DE on purpose; the handler powers off.
            unsafe {
                core::arch::asm!("xor edx, edx", "xor eax, eax", "div eax", out("eax") _, out("edx") _)
            };
        }
    }
}

/// A vector nothing routes (device vectors start at 0x40), so its gate
/// stays closed: `mote.inject=stray-interrupt` interrupts on it.
const STRAY_VECTOR: u8 = 0x30;
const _: () = assert!(STRAY_VECTOR >= 32 && STRAY_VECTOR < vectors::DEVICE_BASE);

/// `mote.inject=stray-interrupt`: a fixed IPI to this CPU on
/// [`STRAY_VECTOR`], taken at the serving loop's first halt. It must be
/// counted and reported (`1 unexpected interrupt(s), last vector 0x30`)
/// and the service go on.
pub(super) fn stray_interrupt() {
    let Some(apic) = local::init() else {
        log::warn!("mote.inject=stray-interrupt: no local APIC to send it with");
        return;
    };
    if !apic.send_ipi(
        apic.id(),
        InterruptCommand::fixed(STRAY_VECTOR),
        STRAY_IPI_SPINS,
    ) {
        log::warn!("mote.inject=stray-interrupt: the local APIC did not take the IPI");
    }
}

/// How many ICR reads an xAPIC gets to accept the previous IPI.
const STRAY_IPI_SPINS: u32 = 10_000;
