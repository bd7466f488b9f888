//! Base address registers: sizing (write all ones, read the mask back,
//! restore; PCI Local Bus 3.0 §6.2.5.1) with decoding turned off meanwhile,
//! and decoding into I/O, 32-bit and 64-bit memory BARs. A BAR whose mask
//! is not a run of ones from the top, whose address is not aligned to its
//! size, or that is 64-bit in the last slot, is an error, never a BAR.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use super::config::{BAR0, Bdf, COMMAND_IO, COMMAND_MEMORY, COMMAND_STATUS, ConfigSpace};

/// BARs of a type 0 (device) and a type 1 (bridge) header.
pub(crate) const DEVICE_BARS: u8 = 6;
pub(crate) const BRIDGE_BARS: u8 = 2;

/// BAR bit 0: I/O space; memory BAR bits 2:1: the type; bit 3: prefetchable.
const BAR_IO: u32 = 1;
const MEMORY_TYPE_SHIFT: u32 = 1;
const MEMORY_TYPE_32: u32 = 0b00;
/// "Reserved" in PCI 3.0, below 1 MiB in PCI 2.x: decoded as 32-bit.
const MEMORY_TYPE_BELOW_1M: u32 = 0b01;
const MEMORY_TYPE_64: u32 = 0b10;
const MEMORY_PREFETCHABLE: u32 = 1 << 3;
const MEMORY_FLAGS: u32 = 0xf;
const IO_FLAGS: u32 = 0x3;
/// I/O space ends at 64 KiB on x86.
const IO_SPACE_END: u64 = 0x1_0000;
const FOUR_GIB: u64 = 1 << 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BarKind {
    Io,
    Memory32,
    Memory64,
}

/// A BAR that decodes: where it is (0: not assigned) and how large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bar {
    pub(crate) index: u8,
    pub(crate) kind: BarKind,
    pub(crate) prefetchable: bool,
    pub(crate) address: u64,
    /// A power of two.
    pub(crate) size: u64,
}

impl Bar {
    pub(crate) fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }

    pub(crate) fn is_assigned(&self) -> bool {
        self.address != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BarError {
    #[error("BAR{index} has the reserved memory type 3")]
    ReservedType { index: u8 },
    #[error("BAR{index} is 64-bit but is the last BAR")]
    NoUpperHalf { index: u8 },
    #[error("BAR{index} answers sizing with {mask:#x}, not a size")]
    NotASize { index: u8, mask: u64 },
    #[error("BAR{index} at {address:#x} does not fit its size {size:#x}")]
    DoesNotFit { index: u8, address: u64, size: u64 },
}

/// The two dwords of a BAR as found and as read back after writing ones
/// (the upper ones only for a 64-bit BAR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) original: u32,
    pub(crate) readback: u32,
    pub(crate) original_high: u32,
    pub(crate) readback_high: u32,
}

/// Whether the BAR whose first dword is `original` takes two slots.
pub(crate) fn is_64_bit(original: u32) -> bool {
    original & BAR_IO == 0 && (original >> MEMORY_TYPE_SHIFT) & 0b11 == MEMORY_TYPE_64
}

/// Decodes the BAR at `index` from its probe: `Ok(None)` when it is not
/// implemented (reads back zero).
pub(crate) fn decode(index: u8, probe: Probe) -> Result<Option<Bar>, BarError> {
    let Probe {
        original,
        readback,
        original_high,
        readback_high,
    } = probe;
    let (kind, prefetchable, address, mask, end) = if original & BAR_IO != 0 {
        let mut mask = readback & !IO_FLAGS;
        if mask != 0 && mask >> 16 == 0 {
            // The upper half of an I/O BAR may read back zero (16-bit decode).
            mask |= 0xffff_0000;
        }
        let mask = u64::from(mask) | !u64::from(u32::MAX);
        (
            BarKind::Io,
            false,
            u64::from(original & !IO_FLAGS),
            mask,
            IO_SPACE_END,
        )
    } else {
        let prefetchable = original & MEMORY_PREFETCHABLE != 0;
        match (original >> MEMORY_TYPE_SHIFT) & 0b11 {
            MEMORY_TYPE_32 | MEMORY_TYPE_BELOW_1M => (
                BarKind::Memory32,
                prefetchable,
                u64::from(original & !MEMORY_FLAGS),
                u64::from(readback & !MEMORY_FLAGS) | !u64::from(u32::MAX),
                FOUR_GIB,
            ),
            MEMORY_TYPE_64 => (
                BarKind::Memory64,
                prefetchable,
                u64::from(original_high) << 32 | u64::from(original & !MEMORY_FLAGS),
                u64::from(readback_high) << 32 | u64::from(readback & !MEMORY_FLAGS),
                u64::MAX,
            ),
            _ => return Err(BarError::ReservedType { index }),
        }
    };
    // A 32-bit mask was widened with ones above bit 31: zero below them is
    // an unimplemented BAR, as is a zero 64-bit mask.
    if mask == 0 || mask == !u64::from(u32::MAX) {
        return Ok(None);
    }
    let unmasked = !mask;
    if unmasked & unmasked.wrapping_add(1) != 0 {
        return Err(BarError::NotASize { index, mask });
    }
    let size = unmasked + 1;
    let fits = address % size == 0 && address.checked_add(size).is_some_and(|last| last <= end);
    if address != 0 && !fits {
        return Err(BarError::DoesNotFit {
            index,
            address,
            size,
        });
    }
    Ok(Some(Bar {
        index,
        kind,
        prefetchable,
        address,
        size,
    }))
}

/// What sizing a function's BARs found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Bars {
    pub(crate) bars: Vec<Bar>,
    pub(crate) errors: Vec<BarError>,
    /// Per BAR dword sized: the value found and the mask read back, for
    /// answering a driver's own sizing later (`super::shadow`).
    pub(crate) raw: [Option<(u32, u32)>; DEVICE_BARS as usize],
}

impl Bars {
    pub(crate) fn get(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }
}

/// Sizes the first `count` BARs of `bdf` with I/O and memory decoding off
/// (so a BAR briefly at all ones decodes nothing), then restores every BAR
/// and the command register. About 4 accesses per 32-bit BAR and 8 per
/// 64-bit one, plus 2.
pub(crate) fn size_bars(config: &mut impl ConfigSpace, bdf: Bdf, count: u8) -> Bars {
    let command = config.read_u16(bdf, COMMAND_STATUS);
    if command & (COMMAND_IO | COMMAND_MEMORY) != 0 {
        config.write_command(bdf, command & !(COMMAND_IO | COMMAND_MEMORY));
    }
    let mut found = Bars::default();
    let mut index = 0;
    while index < count {
        let offset = BAR0 + 4 * u16::from(index);
        let original = config.read(bdf, offset);
        let readback = sized(config, bdf, offset, original);
        found.raw[usize::from(index)] = Some((original, readback));
        let mut probe = Probe {
            original,
            readback,
            original_high: 0,
            readback_high: 0,
        };
        let wide = is_64_bit(original);
        if wide {
            if index + 1 >= count {
                found.errors.push(BarError::NoUpperHalf { index });
                break;
            }
            probe.original_high = config.read(bdf, offset + 4);
            probe.readback_high = sized(config, bdf, offset + 4, probe.original_high);
            found.raw[usize::from(index) + 1] = Some((probe.original_high, probe.readback_high));
        }
        match decode(index, probe) {
            Ok(Some(bar)) => found.bars.push(bar),
            Ok(None) => {}
            Err(error) => found.errors.push(error),
        }
        index += if wide { 2 } else { 1 };
    }
    if command & (COMMAND_IO | COMMAND_MEMORY) != 0 {
        config.write_command(bdf, command);
    }
    found
}

/// Writes ones to the BAR dword at `offset`, reads it, restores `original`.
fn sized(config: &mut impl ConfigSpace, bdf: Bdf, offset: u16, original: u32) -> u32 {
    config.write(bdf, offset, u32::MAX);
    let readback = config.read(bdf, offset);
    config.write(bdf, offset, original);
    readback
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    fn device() -> (FakeConfigSpace, Bdf) {
        let mut config = FakeConfigSpace::default();
        let at = bdf(0, 1, 0);
        config.add(at, 0x1af4, 0x1042, 0x01_00_00, 0);
        (config, at)
    }

    #[test]
    fn sizes_io_32_and_64_bit_bars_and_restores_them() {
        let (mut config, at) = device();
        config.set_bytes(at, 4, &[0x07, 0x00]);
        // q35's transitional virtio-blk: I/O BAR0, 32-bit BAR1, 64-bit
        // prefetchable BAR4.
        config.set_bar(at, 0, 0xc001, 0xffff_ffc0);
        config.set_bar(at, 1, 0xfebd_1000, 0xffff_f000);
        config.set_bar(at, 4, 0xfe00_000c, 0xffff_c000);
        config.set_bar(at, 5, 0x0000_0001, 0xffff_ffff);
        let before = config.bytes(at, 0x10, 24).to_vec();
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        assert_eq!(
            found.bars,
            [
                Bar {
                    index: 0,
                    kind: BarKind::Io,
                    prefetchable: false,
                    address: 0xc000,
                    size: 0x40
                },
                Bar {
                    index: 1,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                    address: 0xfebd_1000,
                    size: 0x1000
                },
                Bar {
                    index: 4,
                    kind: BarKind::Memory64,
                    prefetchable: true,
                    address: 0x1_fe00_0000,
                    size: 0x4000
                },
            ]
        );
        assert_eq!(config.bytes(at, 0x10, 24), before);
        // Decoding was turned off, then back on.
        assert_eq!(config.bytes(at, 4, 2), [0x07, 0x00]);
    }

    #[test]
    fn an_unassigned_bar_has_address_zero() {
        let (mut config, at) = device();
        config.set_bar(at, 1, 0, 0xffff_f000);
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(found.bars.len(), 1);
        assert!(!found.bars[0].is_assigned());
        assert_eq!(found.bars[0].size, 0x1000);
    }

    #[test]
    fn a_bar_not_aligned_to_its_size_does_not_fit() {
        let (mut config, at) = device();
        config.set_bar(at, 0, 0xfebd_1000, 0xffff_0000);
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert!(found.bars.is_empty());
        assert_eq!(
            found.errors,
            [BarError::DoesNotFit {
                index: 0,
                address: 0xfebd_1000,
                size: 0x1_0000
            }]
        );
    }

    #[test]
    fn an_io_bar_past_64_kib_does_not_fit() {
        let probe = Probe {
            original: 0x0010_0001,
            readback: 0xffff_ff01,
            original_high: 0,
            readback_high: 0,
        };
        assert!(matches!(decode(0, probe), Err(BarError::DoesNotFit { .. })));
    }

    #[test]
    fn a_mask_with_holes_is_not_a_size() {
        let (mut config, at) = device();
        config.set_bar(at, 2, 0, 0xff0f_f000);
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(
            found.errors,
            [BarError::NotASize {
                index: 2,
                mask: 0xffff_ffff_ff0f_f000
            }]
        );
    }

    #[test]
    fn a_64_bit_bar_in_the_last_slot_has_no_upper_half() {
        let (mut config, at) = device();
        config.set_bar(at, 5, 0x4, 0xffff_f000);
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(found.errors, [BarError::NoUpperHalf { index: 5 }]);
        // A bridge's second BAR is its last.
        config.set_bar(at, 1, 0x4, 0xffff_f000);
        let found = size_bars(&mut config, at, BRIDGE_BARS);
        assert_eq!(found.errors, [BarError::NoUpperHalf { index: 1 }]);
    }

    #[test]
    fn the_reserved_memory_type_is_refused() {
        let (mut config, at) = device();
        config.set_bar(at, 0, 0x6, 0xffff_f000);
        let found = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(found.errors, [BarError::ReservedType { index: 0 }]);
    }

    #[test]
    fn a_64_bit_bar_that_wraps_does_not_fit() {
        let probe = Probe {
            original: 0xffff_f004,
            readback: 0xffff_f004,
            original_high: 0xffff_ffff,
            readback_high: 0xffff_ffff,
        };
        assert_eq!(
            decode(0, probe),
            Err(BarError::DoesNotFit {
                index: 0,
                address: 0xffff_ffff_ffff_f000,
                size: 0x1000
            })
        );
    }
}
