//! Resource templates (`_CRS` buffers, ACPI 6.5 §6.4): the first memory
//! window and the first interrupt, which is all a virtio-mmio transport
//! has (Memory32Fixed, DWord or QWord memory; Extended Interrupt or the
//! legacy IRQ descriptor), and what a PCI host bridge produces: its bus
//! range and its memory windows (Word, DWord and QWord address space
//! descriptors, §6.4.3.5).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

/// Small and large resource descriptor tags used here (ACPI 6.5 §6.4.2-3).
const SMALL_IRQ: u8 = 0x04;
const SMALL_END: u8 = 0x0f;
const LARGE_MEMORY32_FIXED: u8 = 0x86;
const LARGE_DWORD_ADDRESS: u8 = 0x87;
const LARGE_EXTENDED_INTERRUPT: u8 = 0x89;
const LARGE_QWORD_ADDRESS: u8 = 0x8a;
const LARGE_WORD_ADDRESS: u8 = 0x88;
/// Address space descriptors' resource types: memory, I/O, bus numbers.
const MEMORY_RANGE: u8 = 0;
const BUS_NUMBER_RANGE: u8 = 2;
/// General flags bit 0: the device consumes the range (else it produces
/// it, as a bridge's windows).
const CONSUMER: u8 = 1;

/// One resource descriptor: its kind (the small item's name, or the large
/// item's tag) and its body.
fn descriptors(template: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), &'static str>> + '_ {
    const TRUNCATED: &str = "resource template truncated";
    // What is left to read: slices, so each step checks one length.
    let mut rest = template;
    core::iter::from_fn(move || {
        let (&tag, tail) = rest.split_first()?;
        let split = if tag & 0x80 == 0 {
            let kind = (tag >> 3) & 0x0f;
            tail.split_at_checked(usize::from(tag & 0x07))
                .map(|(body, after)| (kind, body, if kind == SMALL_END { &[][..] } else { after }))
        } else {
            tail.split_first_chunk::<2>().and_then(|(length, tail)| {
                tail.split_at_checked(usize::from(u16::from_le_bytes(*length)))
                    .map(|(body, after)| (tag, body, after))
            })
        };
        let Some((kind, body, after)) = split else {
            rest = &[];
            return Some(Err(TRUNCATED));
        };
        rest = after;
        Some(Ok((kind, body)))
    })
}

/// The little-endian field of `width` bytes (1, 2, 4 or 8) at `offset`
/// of `body`.
pub(super) fn le(body: &[u8], offset: usize, width: usize) -> Option<u64> {
    // Fixed widths: one load each, not a loop over the bytes.
    let field = body.get(offset..)?;
    match width {
        1 => field.first().copied().map(u64::from),
        2 => field
            .first_chunk()
            .copied()
            .map(u16::from_le_bytes)
            .map(u64::from),
        4 => field
            .first_chunk()
            .copied()
            .map(u32::from_le_bytes)
            .map(u64::from),
        8 => field.first_chunk().copied().map(u64::from_le_bytes),
        _ => None,
    }
}

/// A device's memory window and interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowAndInterrupt {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) irq: u32,
}

/// The first memory window and the first interrupt of `template`.
pub(crate) fn window_and_interrupt(template: &[u8]) -> Result<WindowAndInterrupt, &'static str> {
    let mut window = None;
    let mut irq = None;
    for descriptor in descriptors(template) {
        let (kind, body) = descriptor?;
        let le = |offset, width| le(body, offset, width);
        match kind {
            SMALL_END => break,
            // A 16-bit mask of ISA IRQs.
            SMALL_IRQ if irq.is_none() => {
                let mask = le(0, 2).ok_or("IRQ descriptor truncated")?;
                if mask != 0 {
                    irq = Some(mask.trailing_zeros());
                }
            }
            // Information, base, length.
            LARGE_MEMORY32_FIXED if window.is_none() => {
                window = Some((
                    le(1, 4).ok_or("Memory32Fixed truncated")?,
                    le(5, 4).ok_or("Memory32Fixed truncated")?,
                ));
            }
            LARGE_DWORD_ADDRESS | LARGE_QWORD_ADDRESS
                if window.is_none() && body.first() == Some(&MEMORY_RANGE) =>
            {
                let width = if kind == LARGE_DWORD_ADDRESS { 4 } else { 8 };
                let minimum = le(3 + width, width).ok_or("address descriptor truncated")?;
                let length = le(3 + 4 * width, width).ok_or("address descriptor truncated")?;
                window = Some((minimum, length));
            }
            // Flags, count, interrupts.
            LARGE_EXTENDED_INTERRUPT if irq.is_none() && body.get(1).copied().unwrap_or(0) > 0 => {
                let first = le(2, 4).ok_or("interrupt descriptor truncated")?;
                irq = Some(u32::try_from(first).unwrap_or(0));
            }
            _ => {}
        }
    }
    let (base, size) = window.ok_or("_CRS has no memory window")?;
    let irq = irq.ok_or("_CRS has no interrupt")?;
    if base == 0 || size == 0 || irq == 0 {
        return Err("_CRS window or interrupt is zero");
    }
    Ok(WindowAndInterrupt { base, size, irq })
}

/// Most memory windows kept of one host bridge.
pub(crate) const MAX_WINDOWS: usize = 8;

/// A memory range a bridge forwards to its buses: `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemoryWindow {
    pub(crate) base: u64,
    pub(crate) size: u64,
}

impl MemoryWindow {
    /// The first address past the window (saturating: a window may end at
    /// the top of the address space).
    pub(crate) fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// What a PCI host bridge's `_CRS` produces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BridgeResources {
    /// The first bus number range, when it names one.
    pub(crate) buses: Option<(u8, u8)>,
    /// Its memory windows, in template order (at most [`MAX_WINDOWS`]).
    pub(crate) memory: Vec<MemoryWindow>,
    /// Descriptors left out, and why.
    pub(crate) ignored: Vec<&'static str>,
}

/// The bus range and memory windows a host bridge's `_CRS` produces
/// (PCI Firmware 3.2 §4.1.5 asks a host bridge to list them there). An
/// address space descriptor is: resource type, general flags, type-specific
/// flags, then granularity, minimum, maximum, translation offset and length,
/// each of the descriptor's width (ACPI 6.5 §6.4.3.5.1-3). A window is kept
/// when it is produced, non-empty, does not wrap, its minimum plus length
/// minus one is its maximum, and it has no translation (on x86 the CPU and
/// the bus see one address). I/O ranges are not kept: mote assigns no I/O
/// BARs.
pub(crate) fn bridge_resources(template: &[u8]) -> Result<BridgeResources, &'static str> {
    let mut found = BridgeResources::default();
    for descriptor in descriptors(template) {
        let (kind, body) = descriptor?;
        let width = match kind {
            SMALL_END => break,
            LARGE_WORD_ADDRESS => 2,
            LARGE_DWORD_ADDRESS => 4,
            LARGE_QWORD_ADDRESS => 8,
            _ => continue,
        };
        let field = |index: usize| le(body, 3 + index * width, width);
        let (
            Some(&resource),
            Some(&flags),
            Some(minimum),
            Some(maximum),
            Some(offset),
            Some(length),
        ) = (
            body.first(),
            body.get(1),
            field(1),
            field(2),
            field(3),
            field(4),
        )
        else {
            return Err("address descriptor truncated");
        };
        if flags & CONSUMER != 0 {
            found.ignored.push("a range the bridge consumes");
            continue;
        }
        let consistent = length > 0
            && minimum
                .checked_add(length - 1)
                .is_some_and(|last| last == maximum);
        match resource {
            BUS_NUMBER_RANGE if found.buses.is_none() => {
                let range = u8::try_from(minimum).ok().zip(u8::try_from(maximum).ok());
                match range.filter(|_| consistent) {
                    Some(range) => found.buses = Some(range),
                    None => found
                        .ignored
                        .push("a bus range that is not 0-255 or not consistent"),
                }
            }
            MEMORY_RANGE if !consistent => found
                .ignored
                .push("a memory window whose length is not maximum - minimum + 1"),
            MEMORY_RANGE if offset != 0 => found
                .ignored
                .push("a memory window with a translation offset"),
            MEMORY_RANGE if found.memory.len() >= MAX_WINDOWS => {
                found.ignored.push("a memory window past the first eight")
            }
            MEMORY_RANGE => found.memory.push(MemoryWindow {
                base: minimum,
                size: length,
            }),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2 `microvm,pcie=on`'s `PCI0._CRS` (the fuzz seed
    /// `qemu-7.2-microvm-pcie-host-bridge`).
    const QEMU_PCIE_BRIDGE: &[u8] = include_bytes!(
        "../../../xtask/fuzz/corpus/aml_resources/qemu-7.2-microvm-pcie-host-bridge"
    );

    /// A DWordMemory descriptor: general flags, minimum, maximum,
    /// translation, length.
    fn dword_memory(flags: u8, minimum: u32, maximum: u32, offset: u32, length: u32) -> Vec<u8> {
        let mut out = vec![0x87, 0x17, 0x00, MEMORY_RANGE, flags, 0x01];
        for value in [0, minimum, maximum, offset, length] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_host_bridge_template() {
        let found = bridge_resources(QEMU_PCIE_BRIDGE).unwrap();
        assert_eq!(found.buses, Some((0, 255)));
        assert_eq!(
            found.memory,
            [
                MemoryWindow {
                    base: 0xc000_0000,
                    size: 0x2000_0000
                },
                MemoryWindow {
                    base: 0xc0_0000_0000,
                    size: 0x40_0000_0000
                }
            ]
        );
        assert!(found.ignored.is_empty());
        // Cut anywhere inside a descriptor: an error, never a panic.
        for cut in 1..QEMU_PCIE_BRIDGE.len() - 2 {
            let _ = bridge_resources(&QEMU_PCIE_BRIDGE[..cut]);
        }
        assert_eq!(
            bridge_resources(&QEMU_PCIE_BRIDGE[..20]),
            Err("resource template truncated")
        );
    }

    #[test]
    fn hostile_bridge_windows_are_ignored() {
        let mut template = Vec::new();
        // Consumed, inconsistent, translated, empty, wrapping.
        template.extend(dword_memory(0x01, 0xc000_0000, 0xc000_ffff, 0, 0x1_0000));
        template.extend(dword_memory(0x0c, 0xc000_0000, 0xc000_ffff, 0, 0x2_0000));
        template.extend(dword_memory(
            0x0c,
            0xc000_0000,
            0xc000_ffff,
            0x1000,
            0x1_0000,
        ));
        template.extend(dword_memory(0x0c, 0xc000_0000, 0xbfff_ffff, 0, 0));
        template.extend(dword_memory(0x0c, 0xffff_0000, 0x0000_ffff, 0, 0x2_0000));
        template.extend(dword_memory(0x0c, 0xe000_0000, 0xe000_ffff, 0, 0x1_0000));
        template.extend([0x79, 0x00]);
        let found = bridge_resources(&template).unwrap();
        assert_eq!(
            found.memory,
            [MemoryWindow {
                base: 0xe000_0000,
                size: 0x1_0000
            }]
        );
        assert_eq!(found.ignored.len(), 5, "{:?}", found.ignored);
        assert_eq!(found.buses, None);
    }

    #[test]
    fn resource_templates() {
        // Firecracker-style: Memory32Fixed + legacy IRQ mask.
        let template = [
            0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, 0x22, 0x20,
            0x00, 0x79, 0x00,
        ];
        assert_eq!(
            window_and_interrupt(&template),
            Ok(WindowAndInterrupt {
                base: 0xc000_1000,
                size: 0x1000,
                irq: 5
            })
        );
        assert_eq!(
            window_and_interrupt(&[0x79, 0x00]),
            Err("_CRS has no memory window")
        );
        assert_eq!(
            window_and_interrupt(&[0x86, 0x09]),
            Err("resource template truncated")
        );
    }
}
