//! MSI-X for the local APIC: the message an entry sends (Intel SDM vol. 3
//! §11.11.1-2), which table entry each virtqueue uses, and the order in
//! which a table is written (PCI Local Bus 3.0 §6.8.2; docs/virtio-pci.md).
//! The table itself is behind [`Table`], so the sequence is tested on the
//! host; the kernel's table is MMIO in a BAR (`virtio::pci`).
#![deny(unsafe_code)]

/// Message control (the capability's bytes 2-3): MSI-X enable.
pub(crate) const CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: every entry masked, whatever its own mask bit.
pub(crate) const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control (an entry's fourth dword) bit 0: the entry is masked.
/// Bits 31:1 are reserved and preserved (PCI Express Base 4.0 §7.7.2).
pub(crate) const VECTOR_MASKED: u32 = 1;
/// The dwords of a table entry.
const ADDRESS_LOW: u8 = 0;
const ADDRESS_HIGH: u8 = 1;
const DATA: u8 = 2;
const VECTOR_CONTROL: u8 = 3;

/// virtio's "no vector" for `config_msix_vector` and `queue_msix_vector`;
/// the device also reads it back when it could not map a vector (virtio
/// 1.2 §4.1.4.3, §4.1.5.1.2).
pub(crate) const NO_VECTOR: u16 = 0xffff;

/// Message address bits 31:20 for the local APICs (SDM vol. 3 §11.11.1);
/// bits 19:12 are the destination APIC id; redirection hint (bit 3) and
/// destination mode (bit 2) zero: physical, to that one CPU.
const APIC_MESSAGE_BASE: u32 = 0xfee0_0000;
const DESTINATION_SHIFT: u32 = 12;

/// The CPU an entry's interrupts go to, as its local APIC names itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// An xAPIC id (8 bits).
    XApic(u8),
    /// An x2APIC id (32 bits).
    X2Apic(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MsixError {
    #[error("x2APIC id {0} does not fit a message's 8-bit destination (needs interrupt remapping)")]
    DestinationTooWide(u32),
    #[error("vector {0:#x} is an exception vector")]
    ExceptionVector(u8),
    #[error("no local APIC")]
    NoLocalApic,
    #[error("no CPU vector left")]
    NoVectorsLeft,
}

/// What one table entry sends: a dword write of `data` to `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) address: u64,
    pub(crate) data: u32,
}

/// The message that raises `vector` on `destination`: fixed delivery,
/// edge-triggered (data bits 10:8 and 15 zero; SDM vol. 3 §11.11.2). In
/// x2APIC mode without interrupt remapping a message still carries 8 bits
/// of destination, so only ids below 256 are reachable (SDM vol. 3
/// §11.12.1; every VMM mote runs on gives the boot CPU id 0).
pub(crate) fn message(destination: Destination, vector: u8) -> Result<Message, MsixError> {
    if vector < 32 {
        return Err(MsixError::ExceptionVector(vector));
    }
    let id = match destination {
        Destination::XApic(id) => id,
        Destination::X2Apic(id) => {
            u8::try_from(id).map_err(|_| MsixError::DestinationTooWide(id))?
        }
    };
    Ok(Message {
        address: u64::from(APIC_MESSAGE_BASE | u32::from(id) << DESTINATION_SHIFT),
        data: u32::from(vector),
    })
}

/// Which table entry each of a device's queues signals through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Queue `n` uses entry `n`: the table has one for each queue.
    PerQueue { queues: u16 },
    /// Every queue uses entry 0.
    Shared,
}

impl Plan {
    /// One entry per queue when `entries` (the table's size) and the
    /// `free` CPU vectors allow it, else one shared entry; `None` when not
    /// even one vector is free.
    pub(crate) fn new(entries: u16, queues: u16, free: usize) -> Option<Self> {
        if entries == 0 || free == 0 || queues == 0 {
            return None;
        }
        if queues > 1 && queues <= entries && usize::from(queues) <= free {
            Some(Self::PerQueue { queues })
        } else {
            Some(Self::Shared)
        }
    }

    /// Table entries (and CPU vectors) used.
    pub(crate) fn entries(self) -> u16 {
        match self {
            Self::PerQueue { queues } => queues,
            Self::Shared => 1,
        }
    }

    /// The entry queue `queue` signals through (what its
    /// `queue_msix_vector` is set to).
    pub(crate) fn entry_of(self, queue: u16) -> u16 {
        match self {
            Self::PerQueue { queues } if queue < queues => queue,
            Self::PerQueue { .. } => NO_VECTOR,
            Self::Shared => 0,
        }
    }
}

/// An MSI-X table: dword `dword` (0-3) of entry `entry`.
pub(crate) trait Table {
    fn read(&self, entry: u16, dword: u8) -> u32;
    fn write(&mut self, entry: u16, dword: u8, value: u32);
}

/// Writes `message` into `entry`, masking it first, and leaves it masked;
/// returns its vector control with the mask bit clear, for [`unmask`].
/// Four writes and one read.
pub(crate) fn program(table: &mut impl Table, entry: u16, message: Message) -> u32 {
    let control = table.read(entry, VECTOR_CONTROL);
    table.write(entry, VECTOR_CONTROL, control | VECTOR_MASKED);
    // The address is dword-aligned: its two halves.
    #[allow(clippy::cast_possible_truncation)]
    table.write(entry, ADDRESS_LOW, message.address as u32);
    table.write(entry, ADDRESS_HIGH, (message.address >> 32) as u32);
    table.write(entry, DATA, message.data);
    control & !VECTOR_MASKED
}

/// Lets `entry` send again; `control` is what [`program`] returned.
pub(crate) fn unmask(table: &mut impl Table, entry: u16, control: u32) {
    table.write(entry, VECTOR_CONTROL, control & !VECTOR_MASKED);
}

/// Stops `entry` from sending (the device keeps its pending bit).
pub(crate) fn mask(table: &mut impl Table, entry: u16, control: u32) {
    table.write(entry, VECTOR_CONTROL, control | VECTOR_MASKED);
}

/// The capability's first dword with MSI-X enabled and the function mask
/// clear: `header` is that dword as read (ID, next pointer, control). The
/// entries stay masked by their own bits until [`unmask`].
pub(crate) fn enabled(header: u32) -> u32 {
    let control = (header >> 16) as u16;
    let control = (control | CONTROL_ENABLE) & !CONTROL_FUNCTION_MASK;
    header & 0xffff | u32::from(control) << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of 16-byte entries that records every access, reset state:
    /// all entries masked (PCI Local Bus 3.0 §6.8.2.9).
    struct FakeTable {
        dwords: [[u32; 4]; 4],
        log: Vec<(char, u16, u8, u32)>,
    }

    impl FakeTable {
        fn new() -> Self {
            Self {
                dwords: [[0, 0, 0, VECTOR_MASKED]; 4],
                log: Vec::new(),
            }
        }
    }

    impl Table for FakeTable {
        fn read(&self, entry: u16, dword: u8) -> u32 {
            self.dwords[usize::from(entry)][usize::from(dword)]
        }

        fn write(&mut self, entry: u16, dword: u8, value: u32) {
            self.log.push(('w', entry, dword, value));
            self.dwords[usize::from(entry)][usize::from(dword)] = value;
        }
    }

    #[test]
    fn xapic_and_x2apic_destinations_encode_alike() {
        let xapic = message(Destination::XApic(3), 0x80).unwrap();
        assert_eq!(
            xapic,
            Message {
                address: 0xfee0_3000,
                data: 0x80
            }
        );
        assert_eq!(message(Destination::X2Apic(3), 0x80), Ok(xapic));
        assert_eq!(
            message(Destination::X2Apic(0), 0xbf).unwrap(),
            Message {
                address: 0xfee0_0000,
                data: 0xbf
            }
        );
        assert_eq!(
            message(Destination::XApic(255), 0x81).unwrap().address,
            0xfeef_f000
        );
        assert_eq!(
            message(Destination::X2Apic(256), 0x80),
            Err(MsixError::DestinationTooWide(256))
        );
        assert_eq!(
            message(Destination::XApic(0), 14),
            Err(MsixError::ExceptionVector(14))
        );
    }

    #[test]
    fn one_entry_per_queue_when_the_table_allows() {
        // QEMU's virtio-net-pci: 4 entries, two queues used.
        let plan = Plan::new(4, 2, 64).unwrap();
        assert_eq!(plan, Plan::PerQueue { queues: 2 });
        assert_eq!(plan.entries(), 2);
        assert_eq!((plan.entry_of(0), plan.entry_of(1)), (0, 1));
        assert_eq!(plan.entry_of(2), NO_VECTOR);
        // Exactly as many entries as queues is enough.
        assert_eq!(Plan::new(2, 2, 64), Some(Plan::PerQueue { queues: 2 }));
    }

    #[test]
    fn one_shared_entry_otherwise() {
        // A table smaller than the queues.
        let plan = Plan::new(1, 2, 64).unwrap();
        assert_eq!(plan, Plan::Shared);
        assert_eq!(plan.entries(), 1);
        assert_eq!((plan.entry_of(0), plan.entry_of(1)), (0, 0));
        // Too few CPU vectors left.
        assert_eq!(Plan::new(4, 2, 1), Some(Plan::Shared));
        // One queue needs one entry: shared and per queue are the same.
        assert_eq!(Plan::new(2, 1, 64), Some(Plan::Shared));
        assert_eq!(Plan::new(4, 2, 0), None);
        assert_eq!(Plan::new(0, 2, 64), None);
    }

    #[test]
    fn an_entry_is_written_masked_and_unmasked_last() {
        let mut table = FakeTable::new();
        // A reserved bit that must survive.
        table.dwords[1][3] = 1 << 16 | VECTOR_MASKED;
        let message = message(Destination::X2Apic(1), 0x81).unwrap();
        let control = program(&mut table, 1, message);
        assert_eq!(control, 1 << 16);
        assert_eq!(
            table.log,
            [
                ('w', 1, 3, 1 << 16 | VECTOR_MASKED),
                ('w', 1, 0, 0xfee0_1000),
                ('w', 1, 1, 0),
                ('w', 1, 2, 0x81),
            ]
        );
        assert_eq!(table.dwords[1][3] & VECTOR_MASKED, VECTOR_MASKED);
        unmask(&mut table, 1, control);
        assert_eq!(table.dwords[1][3], 1 << 16);
        mask(&mut table, 1, control);
        assert_eq!(table.dwords[1][3], 1 << 16 | VECTOR_MASKED);
        // Entry 0 was never touched.
        assert_eq!(table.dwords[0], [0, 0, 0, VECTOR_MASKED]);
    }

    #[test]
    fn enabling_keeps_the_header_and_table_size() {
        // ID 0x11, next 0x84, control: 4 entries (size - 1 = 3), function
        // mask set.
        let header = 0x11 | 0x84 << 8 | u32::from(CONTROL_FUNCTION_MASK | 3) << 16;
        assert_eq!(
            enabled(header),
            0x11 | 0x84 << 8 | u32::from(CONTROL_ENABLE | 3) << 16
        );
    }
}
