//! A configuration space in memory for the host tests: functions are
//! 256-byte arrays, BARs answer a sizing write with their size mask, and
//! every access is counted, so tests can bound the cost of a walk.

use std::cell::Cell;
use std::collections::BTreeMap;

use super::config::{BAR0, Bdf, ConfigSpace, LEGACY_SPACE};

#[derive(Default)]
pub(crate) struct FakeConfigSpace {
    functions: BTreeMap<Bdf, Function>,
    pub(crate) reads: Cell<usize>,
    pub(crate) writes: usize,
}

#[derive(Clone)]
struct Function {
    bytes: [u8; 256],
    /// Per BAR dword: the bits that hold address (the rest read as set).
    bar_masks: [u32; 6],
}

pub(crate) fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::new(bus, device, function).unwrap()
}

impl FakeConfigSpace {
    /// Adds a function with header type `header` (bit 7: multi-function).
    pub(crate) fn add(&mut self, at: Bdf, vendor: u16, device: u16, class: u32, header: u8) {
        let mut function = Function {
            bytes: [0; 256],
            bar_masks: [0; 6],
        };
        function.bytes[0..2].copy_from_slice(&vendor.to_le_bytes());
        function.bytes[2..4].copy_from_slice(&device.to_le_bytes());
        function.bytes[8..12].copy_from_slice(&(class << 8).to_le_bytes());
        function.bytes[0x0e] = header;
        self.functions.insert(at, function);
    }

    /// A type 1 header at `at` forwarding `secondary..=subordinate`.
    pub(crate) fn add_bridge(&mut self, at: Bdf, secondary: u8, subordinate: u8) {
        self.add(at, 0x1b36, 0x000c, 0x06_04_00, 0x01);
        self.set_bytes(at, 0x18, &[at.bus, secondary, subordinate]);
    }

    pub(crate) fn set_bytes(&mut self, at: Bdf, offset: usize, bytes: &[u8]) {
        let function = self.functions.get_mut(&at).unwrap();
        function.bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    pub(crate) fn bytes(&self, at: Bdf, offset: usize, length: usize) -> &[u8] {
        &self.functions[&at].bytes[offset..offset + length]
    }

    /// BAR dword `index` holds `value`; writes keep the bits of `mask` and
    /// the low four (flag) bits of `value`, and clear the others.
    pub(crate) fn set_bar(&mut self, at: Bdf, index: usize, value: u32, mask: u32) {
        let offset = usize::from(BAR0) + 4 * index;
        self.set_bytes(at, offset, &value.to_le_bytes());
        self.functions.get_mut(&at).unwrap().bar_masks[index] = mask;
    }

    /// Sets the status bit for a capability list and the pointer.
    pub(crate) fn set_capability_pointer(&mut self, at: Bdf, pointer: u8) {
        let function = self.functions.get_mut(&at).unwrap();
        function.bytes[6] |= 1 << 4;
        function.bytes[0x34] = pointer;
    }

    pub(crate) fn accesses(&self) -> usize {
        self.reads.get() + self.writes
    }
}

impl ConfigSpace for FakeConfigSpace {
    fn read(&self, bdf: Bdf, offset: u16) -> u32 {
        assert!(
            offset.is_multiple_of(4) && offset < LEGACY_SPACE,
            "offset {offset:#x}"
        );
        self.reads.set(self.reads.get() + 1);
        let Some(function) = self.functions.get(&bdf) else {
            return u32::MAX;
        };
        let at = usize::from(offset);
        u32::from_le_bytes(function.bytes[at..at + 4].try_into().unwrap())
    }

    fn write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        assert!(
            offset.is_multiple_of(4) && offset < LEGACY_SPACE,
            "offset {offset:#x}"
        );
        self.writes += 1;
        let Some(function) = self.functions.get_mut(&bdf) else {
            return;
        };
        let at = usize::from(offset);
        let old = u32::from_le_bytes(function.bytes[at..at + 4].try_into().unwrap());
        let value = match at.checked_sub(usize::from(BAR0)).map(|bar| bar / 4) {
            Some(index) if index < 6 => {
                let mask = function.bar_masks[index];
                // Bits below the mask are zero, but the flag bits, which
                // are read-only.
                (value & mask) | (old & !mask & 0xf)
            }
            // The status half is read-only or write-one-to-clear: kept.
            _ if at == 4 => (value & 0xffff) | (old & 0xffff_0000),
            _ => value,
        };
        function.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
}
