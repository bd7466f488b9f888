//! Ending the VM, in every setup mote runs in, most specific first
//! (`mote_boot::protocol::exit`): isa-debug-exit (tests; carries the
//! status), the ACPI sleep register (QEMU microvm with ACPI on), the i8042
//! reset line (Firecracker), and a triple fault (`-no-reboot`) when nothing
//! else worked.

use core::ptr::NonNull;

use mote_boot::protocol::exit::{self, Status};
use mote_boot::protocol::report::{Line, PowerOff};
use spin::Once;
use volatile::VolatilePtr;
use x86_64::instructions::port::PortWriteOnly;

use crate::acpi::{AddressSpace, SleepControl};
use crate::arch::x86_64::descriptors;
use crate::{console, console_println};

/// The S5 register the FADT named; set once at boot, read by [`poweroff`].
static ACPI_SLEEP: Once<SleepControl> = Once::new();

/// Records the ACPI S5 register found at boot (the first one counts).
pub(crate) fn set_acpi_sleep(sleep: SleepControl) {
    ACPI_SLEEP.call_once(|| sleep);
}

/// Prints the final report line and stops the VM. Never returns.
pub(crate) fn poweroff(status: Status) -> ! {
    console_println!("{}", Line(PowerOff(status)));
    // Make sure a buffered boot log reaches the console even on this path.
    console::go_live();

    write_port(exit::DEBUG_EXIT_PORT, status.value());
    if let Some(sleep) = ACPI_SLEEP.get() {
        match sleep.space {
            AddressSpace::Memory => {
                if let Some(register) = usize::try_from(sleep.address)
                    .ok()
                    .and_then(|address| NonNull::new(address as *mut u8))
                {
                    // SAFETY: the FADT names this byte as the sleep control
                    // register, inside the identity-mapped MMIO window; the
                    // write ends the VM.
                    unsafe { VolatilePtr::new(register) }.write(sleep.value);
                }
            }
            AddressSpace::Io => {
                if let Ok(port) = u16::try_from(sleep.address) {
                    write_port(port, sleep.value);
                }
            }
        }
    }
    write_port(exit::I8042_COMMAND_PORT, exit::I8042_PULSE_RESET);
    descriptors::triple_fault()
}

/// One byte to a port whose only effect is to end the VM (or nothing, on a
/// machine without that device).
fn write_port(port: u16, value: u8) {
    // SAFETY: every caller names an exit device (debug exit, the ACPI sleep
    // port, the i8042); after this the VM is gone, so no state it changes
    // matters.
    unsafe { PortWriteOnly::<u8>::new(port).write(value) };
}
