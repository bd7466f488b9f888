//! Configuration space: the address of a function, the registers of the
//! common header (PCI Local Bus 3.0 §6.1, PCI Express Base 4.0 §7.5.1),
//! and the one trait every access goes through.
#![deny(unsafe_code)]

use core::fmt;

/// Devices per bus and functions per device (PCI Local Bus 3.0 §3.2.2.3.1).
pub(crate) const DEVICES_PER_BUS: u8 = 32;
pub(crate) const FUNCTIONS_PER_DEVICE: u8 = 8;

/// Register offsets of the common header.
pub(crate) const VENDOR_DEVICE: u16 = 0x00;
pub(crate) const COMMAND_STATUS: u16 = 0x04;
pub(crate) const CLASS_REVISION: u16 = 0x08;
/// Cache line, latency timer, header type (byte 2), BIST.
pub(crate) const HEADER_TYPE_DWORD: u16 = 0x0c;
pub(crate) const BAR0: u16 = 0x10;
/// Type 1 header: primary, secondary and subordinate bus numbers.
pub(crate) const BRIDGE_BUSES: u16 = 0x18;
/// Type 0 and type 1 headers: the capability pointer (low byte).
pub(crate) const CAPABILITY_POINTER: u16 = 0x34;

/// Vendor ID of an absent function: reads of nothing return all ones.
pub(crate) const NO_VENDOR: u16 = 0xffff;
/// Header type byte: bit 7 is "multi-function", bits 6:0 the layout.
pub(crate) const HEADER_MULTI_FUNCTION: u8 = 0x80;
pub(crate) const HEADER_TYPE_DEVICE: u8 = 0x00;
pub(crate) const HEADER_TYPE_BRIDGE: u8 = 0x01;

/// Command register bits (PCI Local Bus 3.0 §6.2.2).
pub(crate) const COMMAND_IO: u16 = 1 << 0;
pub(crate) const COMMAND_MEMORY: u16 = 1 << 1;
pub(crate) const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Status register: the function has a capability list.
pub(crate) const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Bytes of configuration space a function has through port access
/// (mechanism #1); ECAM reaches 4096, of which mote reads the first 256.
pub(crate) const LEGACY_SPACE: u16 = 256;

/// A function's address: bus, device (0-31), function (0-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Bdf {
    pub(crate) bus: u8,
    pub(crate) device: u8,
    pub(crate) function: u8,
}

impl Bdf {
    /// `None` when `device` or `function` is out of range.
    pub(crate) fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < DEVICES_PER_BUS && function < FUNCTIONS_PER_DEVICE).then_some(Self {
            bus,
            device,
            function,
        })
    }
}

/// `bb:dd.f` in hex, as Linux's `lspci` writes it.
impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// Read and write a dword of a function's configuration space. `offset` is
/// dword-aligned and below [`LEGACY_SPACE`]; implementations may assume
/// both (every caller here masks its offsets). Each access is a VM exit on
/// a virtual machine, so callers read what they need once.
pub(crate) trait ConfigSpace {
    fn read(&self, bdf: Bdf, offset: u16) -> u32;
    fn write(&mut self, bdf: Bdf, offset: u16, value: u32);

    /// The 16-bit half of the dword at `offset & !3` that holds `offset`.
    fn read_u16(&self, bdf: Bdf, offset: u16) -> u16 {
        let bytes = self.read(bdf, offset & !3).to_le_bytes();
        let at = usize::from(offset & 2);
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    /// The byte at `offset`.
    fn read_u8(&self, bdf: Bdf, offset: u16) -> u8 {
        self.read(bdf, offset & !3).to_le_bytes()[usize::from(offset & 3)]
    }

    /// Sets the command register to `command`; writes zero to the status
    /// half, whose bits are write-one-to-clear.
    fn write_command(&mut self, bdf: Bdf, command: u16) {
        self.write(bdf, COMMAND_STATUS, u32::from(command));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_is_written_as_lspci_writes_it() {
        let bdf = Bdf::new(0, 0x1f, 7).unwrap();
        assert_eq!(format!("{bdf}"), "00:1f.7");
        assert_eq!(Bdf::new(0, 32, 0), None);
        assert_eq!(Bdf::new(0, 0, 8), None);
    }
}
