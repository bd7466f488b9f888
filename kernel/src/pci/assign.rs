//! Assigning the memory BARs a firmware left at 0 (QEMU 7.2's qboot on
//! `microvm,pcie=on` assigns none) from the host bridge's memory windows,
//! the ranges its `_CRS` produces (PCI Firmware 3.2 §4.1.5). Each BAR is
//! placed at a multiple of its size (a BAR decodes only naturally aligned
//! addresses: PCI Local Bus 3.0 §6.2.5.1), largest first so that small
//! ones fill what alignment leaves; a 64-bit BAR goes above 4 GiB when a
//! window is there, as Linux places it (`pci_bus_alloc_resource` tries
//! its `pci_high` region first), and a 32-bit BAR only below. Addresses
//! already decoded (BARs the VMM assigned) are never handed out again.
//! I/O BARs are left alone: mote's drivers use none. The writes are read
//! back; a BAR that does not keep its address is reported, not used.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use super::bar::{Bar, BarKind};
use super::config::{BAR0, Bdf, ConfigSpace};
use super::device::Inspected;
use crate::acpi::resources::MemoryWindow;

const FOUR_GIB: u64 = 1 << 32;
/// A memory BAR's low dword: bits 3:0 are its type and prefetchability.
const MEMORY_FLAGS: u32 = 0xf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssignError {
    #[error("BAR{index} ({size:#x} bytes) fits in no free part of the host bridge's windows")]
    NoRoom { index: u8, size: u64 },
    #[error("BAR{index} did not keep {address:#x} (read back {read:#x})")]
    NotKept { index: u8, address: u64, read: u64 },
}

/// A BAR mote gave an address to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Assigned {
    pub(crate) bdf: Bdf,
    pub(crate) bar: Bar,
}

/// Where each of `wanted` (unassigned memory BARs) goes in `windows`,
/// avoiding `taken` (`[start, end)` ranges already decoded): an address,
/// or why there is none. In the order of `wanted`.
pub(crate) fn plan(
    windows: &[MemoryWindow],
    taken: &[(u64, u64)],
    wanted: &[(Bdf, Bar)],
) -> Vec<Result<u64, AssignError>> {
    let mut used: Vec<(u64, u64)> = taken.to_vec();
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    // Largest first; ties in the order given.
    order.sort_by_key(|&index| core::cmp::Reverse(wanted[index].1.size));
    let mut placed = alloc::vec![None; wanted.len()];
    for index in order {
        let bar = wanted[index].1;
        let address = candidates(windows, bar.kind)
            .find_map(|(start, end)| first_fit(start, end, bar.size, &used));
        if let Some(address) = address {
            used.push((address, address + bar.size));
        }
        placed[index] = Some(address.ok_or(AssignError::NoRoom {
            index: bar.index,
            size: bar.size,
        }));
    }
    placed.into_iter().flatten().collect()
}

/// The parts of `windows` a BAR of `kind` may use, in the order they are
/// tried: for a 64-bit BAR the parts above 4 GiB, then those below; for a
/// 32-bit BAR only those below.
fn candidates(windows: &[MemoryWindow], kind: BarKind) -> impl Iterator<Item = (u64, u64)> + '_ {
    let high = windows
        .iter()
        .filter(move |_| kind == BarKind::Memory64)
        .filter(|window| window.end() > FOUR_GIB)
        .map(|window| (window.base.max(FOUR_GIB), window.end()));
    let low = windows
        .iter()
        .filter(|window| window.base < FOUR_GIB)
        .map(|window| (window.base, window.end().min(FOUR_GIB)));
    high.chain(low)
}

/// The lowest multiple of `size` (a power of two) in `[start, end)` with
/// `size` bytes free of `used`.
fn first_fit(start: u64, end: u64, size: u64, used: &[(u64, u64)]) -> Option<u64> {
    let mut address = start.checked_next_multiple_of(size)?;
    loop {
        let last = address.checked_add(size)?;
        if last > end {
            return None;
        }
        match used.iter().find(|&&(from, to)| from < last && address < to) {
            Some(&(_, to)) => address = to.checked_next_multiple_of(size)?,
            None => return Some(address),
        }
    }
}

/// Gives every unassigned memory BAR of `functions` an address from
/// `windows`, writes it (both dwords of a 64-bit BAR) and reads it back,
/// and updates the function's record so the driver sees the new address.
/// Returns what was assigned, and what could not be, per function.
pub(crate) fn assign(
    config: &mut impl ConfigSpace,
    functions: &mut [Inspected],
    windows: &[MemoryWindow],
) -> (Vec<Assigned>, Vec<(Bdf, AssignError)>) {
    let taken: Vec<(u64, u64)> = functions
        .iter()
        .flat_map(|function| function.bars.bars.iter())
        .filter(|bar| bar.is_memory() && bar.is_assigned())
        .map(|bar| (bar.address, bar.address.saturating_add(bar.size)))
        .collect();
    let wanted: Vec<(Bdf, Bar)> = functions
        .iter()
        .flat_map(|function| {
            let bdf = function.function.bdf;
            function
                .bars
                .bars
                .iter()
                .filter(|bar| bar.is_memory() && !bar.is_assigned())
                .map(move |&bar| (bdf, bar))
        })
        .collect();
    let mut assigned = Vec::new();
    let mut failed = Vec::new();
    let places = plan(windows, &taken, &wanted);
    for ((bdf, bar), place) in wanted.into_iter().zip(places) {
        let Some(function) = functions
            .iter_mut()
            .find(|function| function.function.bdf == bdf)
        else {
            continue;
        };
        match place.and_then(|address| write(config, function, bar, address)) {
            Ok(bar) => assigned.push(Assigned { bdf, bar }),
            Err(error) => failed.push((bdf, error)),
        }
    }
    (assigned, failed)
}

/// The low and high dwords of `address`.
fn split(address: u64) -> [u32; 2] {
    let [a, b, c, d, e, f, g, h] = address.to_le_bytes();
    [
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    ]
}

/// Writes `address` to `bar` of `function`, checks it was kept, and
/// records it (the BAR list and the dwords the driver is answered from).
fn write(
    config: &mut impl ConfigSpace,
    function: &mut Inspected,
    bar: Bar,
    address: u64,
) -> Result<Bar, AssignError> {
    let bdf = function.function.bdf;
    let index = usize::from(bar.index);
    let offset = BAR0 + 4 * u16::from(bar.index);
    let (found, mask) = function.bars.raw[index].unwrap_or((0, 0));
    let [low, high] = split(address);
    let low = (low & !MEMORY_FLAGS) | (found & MEMORY_FLAGS);
    config.write(bdf, offset, low);
    let wide = bar.kind == BarKind::Memory64;
    if wide {
        config.write(bdf, offset + 4, high);
    }
    let mut read = u64::from(config.read(bdf, offset) & !MEMORY_FLAGS);
    if wide {
        read |= u64::from(config.read(bdf, offset + 4)) << 32;
    }
    if read != address {
        // Left as found: decoding stays off, and no driver takes it.
        config.write(bdf, offset, found);
        if wide && let Some((found_high, _)) = function.bars.raw[index + 1] {
            config.write(bdf, offset + 4, found_high);
        }
        return Err(AssignError::NotKept {
            index: bar.index,
            address,
            read,
        });
    }
    function.bars.raw[index] = Some((low, mask));
    function.known.bars[index] = Some((low, mask));
    if wide && let Some((_, high_mask)) = function.bars.raw[index + 1] {
        function.bars.raw[index + 1] = Some((high, high_mask));
        function.known.bars[index + 1] = Some((high, high_mask));
    }
    let assigned = Bar { address, ..bar };
    if let Some(kept) = function
        .bars
        .bars
        .iter_mut()
        .find(|kept| kept.index == bar.index)
    {
        *kept = assigned;
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::super::device::inspect;
    use super::super::enumerate::Function;
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    /// QEMU 7.2 `microvm,pcie=on`'s windows (its DSDT's `PCI0._CRS`).
    const WINDOWS: [MemoryWindow; 2] = [
        MemoryWindow {
            base: 0xc000_0000,
            size: 0x2000_0000,
        },
        MemoryWindow {
            base: 0xc0_0000_0000,
            size: 0x40_0000_0000,
        },
    ];

    fn bar(index: u8, kind: BarKind, size: u64) -> (Bdf, Bar) {
        let bar = Bar {
            index,
            kind,
            prefetchable: false,
            address: 0,
            size,
        };
        (bdf(0, 1, 0), bar)
    }

    #[test]
    fn largest_first_naturally_aligned_64_bit_above_4_gib() {
        let wanted = [
            bar(1, BarKind::Memory32, 0x1000),
            bar(4, BarKind::Memory64, 0x4000),
            bar(2, BarKind::Memory32, 0x8000),
            bar(0, BarKind::Memory64, 0x4000),
        ];
        let placed = plan(&WINDOWS, &[], &wanted);
        assert_eq!(
            placed,
            [
                Ok(0xc000_8000),
                Ok(0xc0_0000_0000),
                Ok(0xc000_0000),
                Ok(0xc0_0000_4000)
            ]
        );
    }

    #[test]
    fn addresses_already_decoded_are_skipped() {
        let taken = [(0xc000_0000, 0xc000_1000), (0xc000_2000, 0xc000_2100)];
        let placed = plan(&WINDOWS, &taken, &[bar(0, BarKind::Memory32, 0x2000)]);
        assert_eq!(placed, [Ok(0xc000_4000)]);
    }

    #[test]
    fn a_64_bit_bar_goes_low_without_a_high_window_and_a_32_bit_one_never_high() {
        let placed = plan(&WINDOWS[..1], &[], &[bar(4, BarKind::Memory64, 0x4000)]);
        assert_eq!(placed, [Ok(0xc000_0000)]);
        let placed = plan(&WINDOWS[1..], &[], &[bar(1, BarKind::Memory32, 0x1000)]);
        assert_eq!(
            placed,
            [Err(AssignError::NoRoom {
                index: 1,
                size: 0x1000
            })]
        );
    }

    #[test]
    fn no_room_and_hostile_windows_are_errors_not_overflows() {
        let small = [MemoryWindow {
            base: 0xc000_0800,
            size: 0x1000,
        }];
        let placed = plan(&small, &[], &[bar(0, BarKind::Memory32, 0x1000)]);
        assert!(placed[0].is_err(), "{placed:?}");
        let top = [MemoryWindow {
            base: u64::MAX - 0xfff,
            size: 0x1000,
        }];
        let placed = plan(&top, &[], &[bar(4, BarKind::Memory64, 1 << 63)]);
        assert!(placed[0].is_err(), "{placed:?}");
        let placed = plan(&[], &[], &[bar(4, BarKind::Memory64, 0x4000)]);
        assert!(placed[0].is_err());
        // Windows packed full: the second BAR finds no room.
        let exact = [MemoryWindow {
            base: 0xc000_0000,
            size: 0x2000,
        }];
        let two = [
            bar(0, BarKind::Memory32, 0x2000),
            bar(1, BarKind::Memory32, 0x1000),
        ];
        let placed = plan(&exact, &[], &two);
        assert_eq!(placed[0], Ok(0xc000_0000));
        assert!(placed[1].is_err());
    }

    /// A function like QEMU's `virtio-net-pci` behind qboot: the MSI-X
    /// table in 32-bit BAR1 and the virtio structures in 64-bit BAR4, both
    /// at 0.
    fn unassigned_net(config: &mut FakeConfigSpace) -> Inspected {
        let at = bdf(0, 2, 0);
        config.add(at, 0x1af4, 0x1000, 0x02_00_00, 0);
        config.set_bar(at, 1, 0, 0xffff_f000);
        config.set_bar(at, 4, 0x4 | 0x8, 0xffff_c000);
        config.set_bar(at, 5, 0, 0xffff_ffff);
        let function = Function {
            bdf: at,
            vendor: 0x1af4,
            device: 0x1000,
            class: 0x02_00_00,
            header_type: 0,
        };
        inspect(config, function)
    }

    #[test]
    fn assigned_bars_are_written_read_back_and_recorded() {
        let mut config = FakeConfigSpace::default();
        let mut functions = [unassigned_net(&mut config)];
        assert_eq!(functions[0].bars.bars.len(), 2);
        let (assigned, failed) = assign(&mut config, &mut functions, &WINDOWS);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(assigned.len(), 2);
        let at = functions[0].function.bdf;
        assert_eq!(config.read(at, BAR0 + 4), 0xc000_0000);
        assert_eq!(config.read(at, BAR0 + 16), 0xc);
        assert_eq!(config.read(at, BAR0 + 20), 0xc0);
        let bars = &functions[0].bars;
        assert_eq!(bars.get(4).map(|bar| bar.address), Some(0xc0_0000_0000));
        assert_eq!(bars.get(1).map(|bar| bar.address), Some(0xc000_0000));
        assert_eq!(functions[0].known.bars[4], Some((0xc, 0xffff_c00c)));
        assert_eq!(
            functions[0].known.bars[5].map(|(value, _)| value),
            Some(0xc0)
        );
    }

    #[test]
    fn a_bar_that_does_not_keep_its_address_is_reported() {
        let mut config = FakeConfigSpace::default();
        let mut functions = [unassigned_net(&mut config)];
        let at = functions[0].function.bdf;
        // The upper dword stops taking writes after sizing.
        config.set_bar(at, 5, 0, 0);
        let (assigned, failed) = assign(&mut config, &mut functions, &WINDOWS);
        assert_eq!(assigned.len(), 1);
        assert_eq!(
            failed,
            [(
                at,
                AssignError::NotKept {
                    index: 4,
                    address: 0xc0_0000_0000,
                    read: 0
                }
            )]
        );
        assert_eq!(functions[0].bars.get(4).map(|bar| bar.address), Some(0));
    }
}
