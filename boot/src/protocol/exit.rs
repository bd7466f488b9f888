//! The ways a guest ends the VM, and the status the host sees. The kernel
//! and the null guest write these registers; xtask adds the debug-exit
//! device and reads the exit status. See docs/qemu-microvm.md.
//!
//! - QEMU's `isa-debug-exit` device: a write of `value` to its port makes
//!   QEMU exit with status `(value << 1) | 1` (QEMU `hw/misc/debugexit.c`,
//!   `debug_exit_write`). Only this way carries the guest's status.
//! - The ACPI sleep control register (hardware-reduced ACPI, ACPI 6.5
//!   §4.8.3.7), which QEMU microvm with ACPI on implements in its generic
//!   event device: QEMU exits 0.
//! - The i8042 reset line, which Firecracker turns into a VM exit.

/// The debug-exit port (`iobase=`); QEMU's default is 0x501.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The width of the debug-exit window in bytes (`iosize=`); a byte write
/// at its base counts.
pub const DEBUG_EXIT_IO_SIZE: u16 = 4;
/// The `-device` argument that puts the device where the guest writes.
pub const DEBUG_EXIT_DEVICE: &str = "isa-debug-exit,iobase=0xf4,iosize=4";

/// The i8042 command port, and the command that pulses the CPU reset line
/// (Firecracker exits on it, as Linux `reboot=k` expects).
pub const I8042_COMMAND_PORT: u16 = 0x64;
pub const I8042_PULSE_RESET: u8 = 0xfe;

/// QEMU microvm's sleep control register with ACPI on: the generic event
/// device's `GED_MMIO_BASE_REGS` (QEMU `hw/i386/microvm.c`,
/// `hw/acpi/generic_event_device.c`). The kernel reads it from the FADT;
/// the null guest, which reads no ACPI, writes it blind.
pub const MICROVM_SLEEP_CONTROL: u32 = 0xfea0_0200;
/// SLP_TYP of `\_S5` in QEMU microvm's DSDT (`hw/i386/acpi-microvm.c`).
pub const MICROVM_S5_SLEEP_TYPE: u8 = 5;

/// Cloud Hypervisor's fixed sleep control port: its `AcpiShutdownDevice`
/// sits at I/O 0x600 (`vmm/src/device_manager.rs`, `shutdown_pio_address`)
/// and exits on the byte `(5 << 2) | (1 << 5)`, S5 with SLP_EN
/// (`devices/src/acpi.rs`, `S5_SLEEP_VALUE`). A 1 there reboots. The
/// kernel reads it from the FADT; the null guest writes it blind.
pub const CLOUD_HYPERVISOR_SLEEP_PORT: u16 = 0x600;
/// SLP_TYP of S5 in Cloud Hypervisor's DSDT and shutdown device.
pub const CLOUD_HYPERVISOR_S5_SLEEP_TYPE: u8 = 5;

/// The byte that enters sleep state `sleep_type` through a sleep control
/// register: SLP_TYPx in bits 2-4, SLP_EN in bit 5 (ACPI 6.5 §4.8.3.7).
pub const fn sleep_control_value(sleep_type: u8) -> u8 {
    ((sleep_type & 0x7) << 2) | (1 << 5)
}

/// What the guest reports by exiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
}

impl Status {
    /// The byte the guest writes to [`DEBUG_EXIT_PORT`].
    pub const fn value(self) -> u8 {
        match self {
            Self::Success => 0x10,
            Self::Failure => 0x11,
        }
    }

    /// QEMU's exit status after the guest wrote [`Self::value`]: 33 or 35.
    pub const fn qemu_exit_code(self) -> i32 {
        // Widening u8 -> i32 is lossless; `as` because `From` is not const.
        ((self.value() as i32) << 1) | 1
    }

    /// The status a QEMU exit code carries, if it came from this device.
    pub fn from_qemu_exit_code(code: i32) -> Option<Self> {
        [Self::Success, Self::Failure]
            .into_iter()
            .find(|status| status.qemu_exit_code() == code)
    }

    /// The word of the `mote: poweroff <word>` line.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_statuses() {
        assert_eq!(Status::Success.qemu_exit_code(), 33);
        assert_eq!(Status::Failure.qemu_exit_code(), 35);
        assert_eq!(Status::from_qemu_exit_code(33), Some(Status::Success));
        assert_eq!(Status::from_qemu_exit_code(35), Some(Status::Failure));
        assert_eq!(Status::from_qemu_exit_code(0), None);
        assert_eq!(Status::from_qemu_exit_code(1), None);
    }

    #[test]
    fn device_argument_names_the_port_and_width() {
        assert_eq!(
            DEBUG_EXIT_DEVICE,
            format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize={DEBUG_EXIT_IO_SIZE}")
        );
    }

    #[test]
    fn microvm_soft_off_byte() {
        assert_eq!(sleep_control_value(MICROVM_S5_SLEEP_TYPE), 0x34);
        assert_eq!(sleep_control_value(0), 0x20);
    }
}
