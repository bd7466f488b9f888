//! The capability list (PCI Local Bus 3.0 §6.7) and the MSI-X capability
//! (§6.8.2). The walk stops at a pointer into the header, at a pointer it
//! has seen (a loop), and after as many capabilities as 256 bytes can hold;
//! a capability whose body would run past the 256 bytes is an error.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use super::bar::Bars;
use super::config::{
    Bdf, CAPABILITY_POINTER, COMMAND_STATUS, ConfigSpace, LEGACY_SPACE, STATUS_CAPABILITIES,
};

/// Capability IDs (PCI Code and ID Assignment 1.11 §2).
pub(crate) const CAPABILITY_VENDOR: u8 = 0x09;
pub(crate) const CAPABILITY_MSIX: u8 = 0x11;

/// The header ends here; a capability cannot start inside it.
const HEADER_END: u16 = 0x40;
/// Bytes of the MSI-X capability: ID, next, control, table, PBA.
const MSIX_LENGTH: u16 = 12;
/// MSI-X message control: table size minus one (bits 10:0).
const MSIX_TABLE_SIZE_MASK: u16 = 0x07ff;
/// Table and PBA dwords: BAR indicator (bits 2:0), offset (the rest).
const BIR_MASK: u32 = 0x7;
/// Bytes of an MSI-X table entry: address low, high, data, vector control.
pub(crate) const MSIX_ENTRY_SIZE: u64 = 16;

/// One capability: its ID, where its body starts, and the two bytes after
/// the next pointer (for a virtio capability, its length and `cfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capability {
    pub(crate) id: u8,
    pub(crate) offset: u16,
    pub(crate) private: [u8; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CapabilityError {
    #[error("{bdf}: capability pointer {pointer:#x} points into the header")]
    IntoHeader { bdf: Bdf, pointer: u16 },
    #[error("{bdf}: capability list loops back to {pointer:#x}")]
    Loop { bdf: Bdf, pointer: u16 },
    #[error("{bdf}: capability {id:#x} at {offset:#x} runs past the configuration space")]
    PastTheEnd { bdf: Bdf, id: u8, offset: u16 },
    #[error("{bdf}: MSI-X {what} is in BAR{bar}, which is not a memory BAR")]
    MsixBar {
        bdf: Bdf,
        what: &'static str,
        bar: u8,
    },
    #[error("{bdf}: MSI-X {what} at {offset:#x} does not fit in BAR{bar}")]
    MsixOutsideBar {
        bdf: Bdf,
        what: &'static str,
        bar: u8,
        offset: u64,
    },
}

/// The capabilities of `bdf` in list order, and why the walk stopped
/// early, if it did.
pub(crate) fn capabilities(
    config: &impl ConfigSpace,
    bdf: Bdf,
) -> (Vec<Capability>, Option<CapabilityError>) {
    let mut found = Vec::new();
    if config.read_u16(bdf, COMMAND_STATUS + 2) & STATUS_CAPABILITIES == 0 {
        return (found, None);
    }
    // The low two bits are reserved (§6.7): pointers are dword-aligned.
    let mut pointer = u16::from(config.read_u8(bdf, CAPABILITY_POINTER)) & !3;
    let mut seen = [false; (LEGACY_SPACE / 4) as usize];
    while pointer != 0 {
        if pointer < HEADER_END {
            return (found, Some(CapabilityError::IntoHeader { bdf, pointer }));
        }
        let slot = &mut seen[usize::from(pointer / 4)];
        if *slot {
            return (found, Some(CapabilityError::Loop { bdf, pointer }));
        }
        *slot = true;
        let [id, next, low, high] = config.read(bdf, pointer).to_le_bytes();
        found.push(Capability {
            id,
            offset: pointer,
            private: [low, high],
        });
        pointer = u16::from(next) & !3;
    }
    (found, None)
}

/// Where in which BAR an MSI-X structure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InBar {
    pub(crate) bar: u8,
    pub(crate) offset: u32,
}

/// The MSI-X capability as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Msix {
    /// Where the capability is (its message control is at `offset + 2`).
    pub(crate) offset: u16,
    /// Table entries (1-2048).
    pub(crate) vectors: u16,
    pub(crate) control: u16,
    pub(crate) table: InBar,
    pub(crate) pending: InBar,
}

/// Reads the MSI-X capability `capability` of `bdf`.
pub(crate) fn msix(
    config: &impl ConfigSpace,
    bdf: Bdf,
    capability: Capability,
) -> Result<Msix, CapabilityError> {
    let offset = capability.offset;
    if offset + MSIX_LENGTH > LEGACY_SPACE {
        return Err(CapabilityError::PastTheEnd {
            bdf,
            id: capability.id,
            offset,
        });
    }
    let control = config.read_u16(bdf, offset + 2);
    let in_bar = |dword: u32| InBar {
        bar: (dword & BIR_MASK) as u8,
        offset: dword & !BIR_MASK,
    };
    Ok(Msix {
        offset,
        vectors: (control & MSIX_TABLE_SIZE_MASK) + 1,
        control,
        table: in_bar(config.read(bdf, offset + 4)),
        pending: in_bar(config.read(bdf, offset + 8)),
    })
}

impl Msix {
    /// Checks that the table and the pending bits lie inside memory BARs
    /// of `bars`; returns the table's BAR.
    pub(crate) fn check(&self, bdf: Bdf, bars: &Bars) -> Result<(), CapabilityError> {
        let table_bytes = u64::from(self.vectors) * MSIX_ENTRY_SIZE;
        let pending_bytes = u64::from(self.vectors).div_ceil(64) * 8;
        for (what, place, bytes) in [
            ("table", self.table, table_bytes),
            ("pending bits", self.pending, pending_bytes),
        ] {
            let Some(bar) = bars.get(place.bar).filter(|bar| bar.is_memory()) else {
                return Err(CapabilityError::MsixBar {
                    bdf,
                    what,
                    bar: place.bar,
                });
            };
            let offset = u64::from(place.offset);
            if offset + bytes > bar.size {
                return Err(CapabilityError::MsixOutsideBar {
                    bdf,
                    what,
                    bar: place.bar,
                    offset,
                });
            }
        }
        Ok(())
    }
}

/// virtio's common configuration structure: `cfg_type` 1 of a vendor
/// capability at least 16 bytes long (virtio 1.2 §4.1.4), and the bytes
/// of its 1.0-1.1 layout, up to `queue_device` (§4.1.4.3).
const VIRTIO_COMMON_CFG: u8 = 1;
const VIRTIO_CAPABILITY_LENGTH: u8 = 16;
const VIRTIO_COMMON_CFG_LENGTH: u64 = 0x38;
/// The dwords of a virtio capability holding its BAR and its offset.
const VIRTIO_CAPABILITY_BAR: u16 = 4;
const VIRTIO_CAPABILITY_OFFSET: u16 = 8;

/// Where the first virtio common configuration structure of `bdf` lies,
/// as `virtio-drivers` picks it; `None` when there is none or it does not
/// fit its memory BAR. Two reads.
pub(crate) fn virtio_common_config(
    config: &impl ConfigSpace,
    bdf: Bdf,
    capabilities: &[Capability],
    bars: &Bars,
) -> Option<InBar> {
    let capability = capabilities.iter().find(|capability| {
        let [length, cfg_type] = capability.private;
        capability.id == CAPABILITY_VENDOR
            && cfg_type == VIRTIO_COMMON_CFG
            && length >= VIRTIO_CAPABILITY_LENGTH
    })?;
    // Checked against 256 bytes: the last dword read ends at +12.
    if capability.offset + u16::from(VIRTIO_CAPABILITY_LENGTH) > LEGACY_SPACE {
        return None;
    }
    let bar = config.read_u8(bdf, capability.offset + VIRTIO_CAPABILITY_BAR);
    let offset = config.read(bdf, capability.offset + VIRTIO_CAPABILITY_OFFSET);
    let fits = bars.get(bar).is_some_and(|found| {
        found.is_memory() && u64::from(offset) + VIRTIO_COMMON_CFG_LENGTH <= found.size
    });
    fits.then_some(InBar { bar, offset })
}

#[cfg(test)]
mod tests {
    use super::super::bar::{DEVICE_BARS, size_bars};
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    fn device() -> (FakeConfigSpace, Bdf) {
        let mut config = FakeConfigSpace::default();
        let at = bdf(0, 3, 0);
        config.add(at, 0x1af4, 0x1041, 0x02_00_00, 0);
        (config, at)
    }

    /// Places a capability `id` at `offset` pointing to `next`, with `body`.
    fn capability(
        config: &mut FakeConfigSpace,
        at: Bdf,
        offset: u8,
        id: u8,
        next: u8,
        body: &[u8],
    ) {
        config.set_bytes(at, usize::from(offset), &[id, next]);
        config.set_bytes(at, usize::from(offset) + 2, body);
    }

    /// QEMU's virtio-net-pci: MSI-X with 3 vectors in BAR1, then four
    /// vendor (virtio) capabilities.
    fn qemu_virtio_net() -> (FakeConfigSpace, Bdf) {
        let (mut config, at) = device();
        config.set_capability_pointer(at, 0x98);
        capability(
            &mut config,
            at,
            0x98,
            CAPABILITY_MSIX,
            0x84,
            &[2, 0, 1, 0, 0, 0, 1, 8, 0, 0],
        );
        capability(&mut config, at, 0x84, CAPABILITY_VENDOR, 0x70, &[0x14, 5]);
        capability(&mut config, at, 0x70, CAPABILITY_VENDOR, 0x60, &[0x10, 4]);
        capability(&mut config, at, 0x60, CAPABILITY_VENDOR, 0x50, &[0x10, 3]);
        capability(&mut config, at, 0x50, CAPABILITY_VENDOR, 0x40, &[0x10, 1]);
        capability(&mut config, at, 0x40, CAPABILITY_VENDOR, 0x00, &[0x10, 2]);
        config.set_bar(at, 1, 0xfebd_1000, 0xffff_f000);
        (config, at)
    }

    #[test]
    fn walks_the_list_and_reads_msix() {
        let (mut config, at) = qemu_virtio_net();
        let (found, stopped) = capabilities(&config, at);
        assert_eq!(stopped, None);
        let offsets: Vec<u16> = found.iter().map(|c| c.offset).collect();
        assert_eq!(offsets, [0x98, 0x84, 0x70, 0x60, 0x50, 0x40]);
        assert_eq!(found[1].private, [0x14, 5]);
        let msix = msix(&config, at, found[0]).unwrap();
        assert_eq!(msix.vectors, 3);
        assert_eq!(msix.table, InBar { bar: 1, offset: 0 });
        assert_eq!(
            msix.pending,
            InBar {
                bar: 1,
                offset: 0x800
            }
        );
        let bars = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(msix.check(at, &bars), Ok(()));
    }

    #[test]
    fn finds_the_virtio_common_configuration() {
        let (mut config, at) = qemu_virtio_net();
        // QEMU: the common configuration at offset 0 of the 64-bit BAR4
        // (16 KiB); the capability at 0x50 is cfg_type 1.
        config.set_bar(at, 4, 0xfe00_000c, 0xffff_c000);
        config.set_bar(at, 5, 0, 0xffff_ffff);
        config.set_bytes(at, 0x54, &[4]);
        let bars = size_bars(&mut config, at, DEVICE_BARS);
        let (found, _) = capabilities(&config, at);
        assert_eq!(
            virtio_common_config(&config, at, &found, &bars),
            Some(InBar { bar: 4, offset: 0 })
        );
        // Too close to the end of its BAR.
        config.set_bytes(at, 0x58, &0x3fd0u32.to_le_bytes());
        assert_eq!(virtio_common_config(&config, at, &found, &bars), None);
        // In a BAR that does not exist.
        config.set_bytes(at, 0x58, &[0, 0, 0, 0]);
        config.set_bytes(at, 0x54, &[3]);
        assert_eq!(virtio_common_config(&config, at, &found, &bars), None);
        // No common configuration capability at all.
        assert_eq!(virtio_common_config(&config, at, &found[..1], &bars), None);
    }

    #[test]
    fn no_status_bit_no_list() {
        let (mut config, at) = qemu_virtio_net();
        config.set_bytes(at, 6, &[0]);
        assert_eq!(capabilities(&config, at), (Vec::new(), None));
    }

    #[test]
    fn a_loop_stops_the_walk() {
        let (mut config, at) = device();
        config.set_capability_pointer(at, 0x40);
        capability(&mut config, at, 0x40, CAPABILITY_VENDOR, 0x50, &[]);
        // The low bits of a pointer are reserved: 0x43 is 0x40 again.
        capability(&mut config, at, 0x50, CAPABILITY_VENDOR, 0x43, &[]);
        let (found, stopped) = capabilities(&config, at);
        assert_eq!(found.len(), 2);
        assert_eq!(
            stopped,
            Some(CapabilityError::Loop {
                bdf: at,
                pointer: 0x40
            })
        );
        assert!(config.accesses() < 8);
    }

    #[test]
    fn a_pointer_into_the_header_stops_the_walk() {
        let (mut config, at) = device();
        config.set_capability_pointer(at, 0x40);
        capability(&mut config, at, 0x40, CAPABILITY_VENDOR, 0x10, &[]);
        let (found, stopped) = capabilities(&config, at);
        assert_eq!(found.len(), 1);
        assert_eq!(
            stopped,
            Some(CapabilityError::IntoHeader {
                bdf: at,
                pointer: 0x10
            })
        );
    }

    #[test]
    fn a_list_through_every_slot_ends() {
        let (mut config, at) = device();
        config.set_capability_pointer(at, 0x40);
        for offset in (0x40..=0xfcu8).step_by(4) {
            let next = if offset == 0xfc { 0x40 } else { offset + 4 };
            capability(&mut config, at, offset, CAPABILITY_VENDOR, next, &[]);
        }
        let (found, stopped) = capabilities(&config, at);
        assert_eq!(found.len(), 48);
        assert_eq!(
            stopped,
            Some(CapabilityError::Loop {
                bdf: at,
                pointer: 0x40
            })
        );
    }

    #[test]
    fn an_msix_capability_past_256_bytes_is_refused() {
        let (mut config, at) = device();
        config.set_capability_pointer(at, 0xf8);
        capability(&mut config, at, 0xf8, CAPABILITY_MSIX, 0, &[0, 0]);
        let (found, stopped) = capabilities(&config, at);
        assert_eq!(stopped, None);
        assert_eq!(
            msix(&config, at, found[0]),
            Err(CapabilityError::PastTheEnd {
                bdf: at,
                id: CAPABILITY_MSIX,
                offset: 0xf8
            })
        );
    }

    #[test]
    fn an_msix_table_outside_its_bar_is_refused() {
        let (mut config, at) = qemu_virtio_net();
        // 2048 vectors: 32 KiB of table in a 4 KiB BAR.
        config.set_bytes(at, 0x9a, &[0xff, 0x07]);
        let (found, _) = capabilities(&config, at);
        let msix = msix(&config, at, found[0]).unwrap();
        let bars = size_bars(&mut config, at, DEVICE_BARS);
        assert_eq!(
            msix.check(at, &bars),
            Err(CapabilityError::MsixOutsideBar {
                bdf: at,
                what: "table",
                bar: 1,
                offset: 0
            })
        );
        // A table in a BAR that does not exist.
        config.set_bytes(at, 0x9c, &[4]);
        let msix = super::msix(&config, at, found[0]).unwrap();
        assert_eq!(
            msix.check(at, &bars),
            Err(CapabilityError::MsixBar {
                bdf: at,
                what: "table",
                bar: 4
            })
        );
    }
}
