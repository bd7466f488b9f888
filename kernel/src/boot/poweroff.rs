//! Ending the VM, in every setup mote runs in, most specific first
//! (`mote_boot::protocol::exit`, docs/vmms.md): isa-debug-exit (QEMU in
//! tests; carries the status; not on Firecracker, which logs the unknown
//! port), the ACPI sleep register (QEMU microvm with ACPI on, Cloud
//! Hypervisor), the i8042 reset line (Firecracker), and a triple fault
//! (`-no-reboot`) only when no VMM known to stop the VM is underneath.
//!
//! A VMM may stop the vCPU some time after the write that asks it to:
//! QEMU 10's isa-debug-exit requests a shutdown and the vCPU runs on. So
//! after each write the CPU waits a bounded moment before trying the next
//! way, instead of racing into it.

use core::ptr::NonNull;

use mote_boot::protocol::exit::{self, Status};
use mote_boot::protocol::report::{Line, PowerOff};
use spin::Once;
use volatile::VolatilePtr;

use crate::acpi::vmm::Vmm;
use crate::acpi::{AddressSpace, SleepControl};
use crate::arch::x86_64::{cpu, descriptors};
use crate::{console, console_println};

/// The S5 register the FADT named; set once at boot, read by [`poweroff`].
static ACPI_SLEEP: Once<SleepControl> = Once::new();
/// The VMM the ACPI tables named; unset without ACPI.
static VMM: Once<Option<Vmm>> = Once::new();

/// How long to let the VMM act on one exit write before trying the next,
/// when the TSC frequency is not known (a crash before it is): 2^30 TSC
/// cycles, 0.3-0.5 s at the frequencies VMMs report.
const EXIT_GRACE_CYCLES: u64 = 1 << 30;
/// The same when the frequency is known: 100 ms, at most
/// [`EXIT_GRACE_CYCLES`]. Under `-icount` the TSC counts instructions
/// (`tsc_early_khz=1000000`), and 2^30 of them took QEMU 20 s and more to
/// emulate: a boot without the debug-exit device outlived its test's
/// timeout before reaching the ACPI sleep register.
const EXIT_GRACE_MICROS: u64 = 100_000;

/// Records the ACPI S5 register found at boot (the first one counts).
pub(crate) fn set_acpi_sleep(sleep: SleepControl) {
    ACPI_SLEEP.call_once(|| sleep);
}

/// Records which VMM the ACPI tables named.
pub(crate) fn set_vmm(vmm: Option<Vmm>) {
    VMM.call_once(|| vmm);
}

/// Prints the final report line and stops the VM. Never returns.
pub(crate) fn poweroff(status: Status) -> ! {
    console_println!("{}", Line(PowerOff(status)));
    // Make sure a buffered boot log reaches the console even on this path.
    console::go_live();
    let vmm = VMM.get().copied().flatten();

    if vmm != Some(Vmm::Firecracker) {
        write_port(exit::DEBUG_EXIT_PORT, status.value());
        wait_for_the_vmm();
    }
    if let Some(sleep) = ACPI_SLEEP.get() {
        write_sleep_register(sleep);
        wait_for_the_vmm();
    }
    if vmm != Some(Vmm::CloudHypervisor) {
        // Cloud Hypervisor's i8042 resets (reboots) the VM; its sleep
        // register above is how it powers off.
        write_port(exit::I8042_COMMAND_PORT, exit::I8042_PULSE_RESET);
        wait_for_the_vmm();
    }
    match vmm {
        // These stop the VM on the writes above: a triple fault would only
        // race them (and a VMM logs it as an error).
        Some(_) => cpu::halt_forever(),
        None => descriptors::triple_fault(),
    }
}

fn write_sleep_register(sleep: &SleepControl) {
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

/// Spins (interrupts off, `pause`) for the grace period: a VMM that
/// honoured the last write stops the vCPU meanwhile.
fn wait_for_the_vmm() {
    x86_64::instructions::interrupts::disable();
    let grace = crate::clock::known_tsc().map_or(EXIT_GRACE_CYCLES, |tsc| {
        tsc.cycles_for_micros(EXIT_GRACE_MICROS)
            .min(EXIT_GRACE_CYCLES)
    });
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < grace {
        core::hint::spin_loop();
    }
}

/// One byte to a port whose only effect is to end the VM (or nothing, on a
/// machine without that device).
fn write_port(port: u16, value: u8) {
    // SAFETY: every caller names an exit device (debug exit, the ACPI sleep
    // port, the i8042); after this the VM is gone, so no state it changes
    // matters.
    unsafe { cpu::Port::<u8>::new(port).write(value) };
}
