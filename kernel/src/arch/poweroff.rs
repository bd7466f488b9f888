//! Ending the VM, in every setup mote runs in, most specific first:
//! isa-debug-exit (tests; carries the status), the ACPI sleep register
//! (QEMU microvm with ACPI on), the i8042 reset line (Firecracker), and a
//! triple fault (`-no-reboot`) when nothing else worked.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::{console, cpu, interrupts};
use crate::acpi::{AddressSpace, SleepControl};

/// `-device isa-debug-exit,iobase=0xf4,iosize=4`: QEMU exits with
/// `(value << 1) | 1` (hw/misc/debugexit.c): 0x10 → 33, 0x11 → 35.
const DEBUG_EXIT_PORT: u16 = 0xf4;
const DEBUG_EXIT_SUCCESS: u8 = 0x10;
const DEBUG_EXIT_FAILURE: u8 = 0x11;
/// i8042 command port; 0xfe pulses the CPU reset line. Firecracker exits on
/// it (Linux `reboot=k`).
const I8042_COMMAND_PORT: u16 = 0x64;
const I8042_PULSE_RESET: u8 = 0xfe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
}

const SLEEP_NONE: u8 = 0;
const SLEEP_MEMORY: u8 = 1;
const SLEEP_IO: u8 = 2;
static SLEEP_SPACE: AtomicU8 = AtomicU8::new(SLEEP_NONE);
static SLEEP_ADDRESS: AtomicU64 = AtomicU64::new(0);
static SLEEP_VALUE: AtomicU8 = AtomicU8::new(0);

/// Records the ACPI S5 register found at boot.
pub fn set_acpi_sleep(sleep: SleepControl) {
    SLEEP_ADDRESS.store(sleep.address, Ordering::Relaxed);
    SLEEP_VALUE.store(sleep.value, Ordering::Relaxed);
    let space = match sleep.space {
        AddressSpace::Memory => SLEEP_MEMORY,
        AddressSpace::Io => SLEEP_IO,
    };
    SLEEP_SPACE.store(space, Ordering::Release);
}

/// Prints the final report line and stops the VM. Never returns.
pub fn poweroff(status: Status) -> ! {
    let word = match status {
        Status::Success => "success",
        Status::Failure => "failure",
    };
    crate::console_println!("mote: poweroff {word}");
    // Make sure a buffered boot log reaches the console even on this path.
    console::go_live();

    cpu::outb(
        DEBUG_EXIT_PORT,
        match status {
            Status::Success => DEBUG_EXIT_SUCCESS,
            Status::Failure => DEBUG_EXIT_FAILURE,
        },
    );

    let address = SLEEP_ADDRESS.load(Ordering::Relaxed);
    let value = SLEEP_VALUE.load(Ordering::Relaxed);
    match SLEEP_SPACE.load(Ordering::Acquire) {
        SLEEP_MEMORY => {
            // SAFETY: the FADT names this byte as the sleep control register,
            // inside the identity-mapped MMIO window.
            unsafe { core::ptr::write_volatile(address as *mut u8, value) };
        }
        SLEEP_IO => {
            if let Ok(port) = u16::try_from(address) {
                cpu::outb(port, value);
            }
        }
        _ => {}
    }

    cpu::outb(I8042_COMMAND_PORT, I8042_PULSE_RESET);
    interrupts::triple_fault()
}
