//! The Root System Description Pointer: checking one (ACPI 6.5 §5.2.5.3)
//! and, when the loader passed none (`start_info.rsdp_paddr` 0, as
//! Firecracker does), finding it the way §5.2.5.1 says an IA-PC OS does:
//! the first KiB of the Extended BIOS Data Area, whose segment is the
//! 16-bit word at 0x40E, then the BIOS area 0xE0000-0xFFFFF, on 16-byte
//! boundaries.
#![deny(unsafe_code)]

use mote_boot::start_info::PhysicalMemory;
use zerocopy::{FromZeros, IntoBytes};

use super::AcpiError;
use super::tables::{RSDP_SIGNATURE, RSDP_V1_SIZE, Rsdp, checksum, read};

/// Where the EBDA's real-mode segment is kept (BIOS data area).
const EBDA_SEGMENT_POINTER: u64 = 0x40e;
/// How much of the EBDA is searched.
const EBDA_SEARCH_LENGTH: u64 = 1024;
/// An EBDA must start above the BIOS data area and below the legacy video
/// window at 0xA0000 (Linux `drivers/acpi/acpica/tbxfroot.c` takes
/// anything above 0x400; the upper bound keeps the search in low RAM).
const EBDA_RANGE: core::ops::Range<u64> = 0x401..0xa0000;
/// The BIOS read-only area searched second.
const BIOS_AREA: core::ops::Range<u64> = 0xe0000..0x100000;
/// The x86 reset vector: firmware keeps its entry jump here.
const RESET_VECTOR: u64 = 0xffff0;
/// `jmp rel16` (qboot) and `jmp ptr16:16` (SeaBIOS), the first instruction
/// a real-mode firmware puts at its reset vector.
const RESET_VECTOR_JUMPS: [u8; 2] = [0xe9, 0xea];
/// RSDPs sit on 16-byte boundaries.
const ALIGNMENT: u64 = 16;
/// An extended RSDP longer than this is corrupt.
const MAX_RSDP_LENGTH: usize = 256;

/// A checked RSDP: its revision, OEM id and root table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RootPointer {
    pub(crate) paddr: u64,
    pub(crate) revision: u8,
    pub(crate) oem_id: [u8; 6],
    /// The XSDT (revision ≥ 2 with a non-zero address) or else the RSDT.
    pub(crate) root: u64,
    pub(crate) root_is_xsdt: bool,
}

/// Checks the RSDP at `paddr`: signature, the checksum of its first 20
/// bytes and, from revision 2 on, the extended checksum over its length.
pub(crate) fn check(memory: &impl PhysicalMemory, paddr: u64) -> Result<RootPointer, AcpiError> {
    let mut rsdp = Rsdp::new_zeroed();
    read(
        memory,
        "RSDP",
        paddr,
        &mut rsdp.as_mut_bytes()[..RSDP_V1_SIZE],
    )?;
    if &rsdp.signature != RSDP_SIGNATURE {
        return Err(AcpiError::bad_signature("RSDP", paddr));
    }
    if checksum(&rsdp.as_bytes()[..RSDP_V1_SIZE]) != 0 {
        return Err(AcpiError::bad_checksum("RSDP", paddr));
    }
    let rsdt = u64::from(rsdp.rsdt_address.get());
    if rsdp.revision < 2 {
        return Ok(RootPointer {
            paddr,
            revision: rsdp.revision,
            oem_id: rsdp.oem_id,
            root: rsdt,
            root_is_xsdt: false,
        });
    }
    read(memory, "RSDP", paddr, rsdp.as_mut_bytes())?;
    let length = usize::try_from(rsdp.length.get()).unwrap_or(usize::MAX);
    if !(size_of::<Rsdp>()..=MAX_RSDP_LENGTH).contains(&length) {
        return Err(AcpiError::bad_signature("RSDP", paddr));
    }
    let mut whole = [0u8; MAX_RSDP_LENGTH];
    read(memory, "RSDP", paddr, &mut whole[..length])?;
    if checksum(&whole[..length]) != 0 {
        return Err(AcpiError::bad_checksum("RSDP", paddr));
    }
    let xsdt = rsdp.xsdt_address.get();
    Ok(RootPointer {
        paddr,
        revision: rsdp.revision,
        oem_id: rsdp.oem_id,
        root: if xsdt != 0 { xsdt } else { rsdt },
        root_is_xsdt: xsdt != 0,
    })
}

/// Whether a firmware booted us: its entry jump is at the reset vector.
/// Firmware that loads a PVH kernel passes the RSDP it has in
/// `start_info.rsdp_paddr` (QEMU's qboot and the PVH option ROM,
/// `pc-bios/optionrom/pvh_main.c`, which does the search itself), so a
/// zero there then means there is no ACPI and the search can be skipped:
/// 8 192 probes of the BIOS area that find nothing on QEMU `acpi=off`.
/// A VMM that loads the kernel itself (Firecracker) leaves RAM there.
pub(crate) fn firmware_present(memory: &impl PhysicalMemory) -> bool {
    let mut first = [0u8; 1];
    read(memory, "reset vector", RESET_VECTOR, &mut first).is_ok()
        && RESET_VECTOR_JUMPS.contains(&first[0])
}

/// Searches the EBDA's first KiB, then the BIOS area, for a valid RSDP.
/// `memory` must refuse (not fault on) what it cannot read; a range it
/// refuses is not searched.
pub(crate) fn search(memory: &impl PhysicalMemory) -> Option<RootPointer> {
    let mut segment = [0u8; 2];
    let ebda = match read(memory, "EBDA pointer", EBDA_SEGMENT_POINTER, &mut segment) {
        Ok(()) => u64::from(u16::from_le_bytes(segment)) << 4,
        Err(_) => 0,
    };
    if EBDA_RANGE.contains(&ebda) {
        let end = (ebda + EBDA_SEARCH_LENGTH).min(EBDA_RANGE.end);
        if let Some(found) = search_range(memory, ebda..end) {
            return Some(found);
        }
    }
    search_range(memory, BIOS_AREA)
}

fn search_range(memory: &impl PhysicalMemory, range: core::ops::Range<u64>) -> Option<RootPointer> {
    let mut signature = [0u8; 8];
    let candidates = (range.start.div_ceil(ALIGNMENT)..range.end.div_ceil(ALIGNMENT))
        .map(|slot| slot * ALIGNMENT);
    candidates
        .filter(|&paddr| paddr + RSDP_V1_SIZE as u64 <= range.end)
        .find_map(|paddr| {
            read(memory, "RSDP", paddr, &mut signature).ok()?;
            if &signature != RSDP_SIGNATURE {
                return None;
            }
            check(memory, paddr).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::FakeMemory;
    use super::*;

    fn rsdp(revision: u8, xsdt: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; 36];
        bytes[..8].copy_from_slice(RSDP_SIGNATURE);
        bytes[9..15].copy_from_slice(b"FIRECK");
        bytes[15] = revision;
        bytes[16..20].copy_from_slice(&0x1234u32.to_le_bytes());
        bytes[20..24].copy_from_slice(&36u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
        bytes[8] = 0u8.wrapping_sub(checksum(&bytes[..20]));
        bytes[32] = 0u8.wrapping_sub(checksum(&bytes));
        bytes
    }

    fn low_memory_with(at: usize, bytes: &[u8]) -> FakeMemory {
        let mut memory = vec![0u8; 0x10_0000];
        memory[at..at + bytes.len()].copy_from_slice(bytes);
        FakeMemory(memory)
    }

    #[test]
    fn firmware_is_told_by_its_reset_vector() {
        assert!(!firmware_present(&low_memory_with(
            0xe0000,
            &rsdp(2, 0x1000)
        )));
        for jump in RESET_VECTOR_JUMPS {
            assert!(firmware_present(&low_memory_with(
                0xffff0,
                &[jump, 0x5b, 0xe0]
            )));
        }
        assert!(!firmware_present(&low_memory_with(0xffff0, &[0x90])));
    }

    #[test]
    fn finds_firecrackers_rsdp_in_the_bios_area() {
        let memory = low_memory_with(0xe0000, &rsdp(2, 0x9fc00));
        let found = search(&memory).unwrap();
        assert_eq!(found.paddr, 0xe0000);
        assert_eq!(&found.oem_id, b"FIRECK");
        assert_eq!((found.root, found.root_is_xsdt), (0x9fc00, true));
    }

    #[test]
    fn ebda_is_searched_first() {
        let mut memory = low_memory_with(0xf0010, &rsdp(2, 0x2000));
        let ebda = rsdp(0, 0);
        memory.0[0x9fc20..0x9fc20 + 36].copy_from_slice(&ebda);
        memory.0[0x40e..0x410].copy_from_slice(&0x9fc0u16.to_le_bytes());
        let found = search(&memory).unwrap();
        assert_eq!(found.paddr, 0x9fc20);
        assert_eq!(
            (found.revision, found.root, found.root_is_xsdt),
            (0, 0x1234, false)
        );
    }

    #[test]
    fn bad_checksums_unaligned_copies_and_nothing_at_all() {
        let mut bad = rsdp(2, 0x2000);
        bad[20] ^= 1; // breaks only the extended checksum
        assert_eq!(search(&low_memory_with(0xe0000, &bad)), None);
        assert_eq!(
            check(&low_memory_with(0xe0000, &bad), 0xe0000),
            Err(AcpiError::BadChecksum {
                what: "RSDP",
                paddr: 0xe0000
            })
        );
        assert_eq!(search(&low_memory_with(0xe0008, &rsdp(2, 0x2000))), None);
        assert_eq!(search(&FakeMemory(vec![0u8; 0x10_0000])), None);
        // A first MiB the reader refuses is not searched, and nothing panics.
        assert_eq!(search(&FakeMemory(Vec::new())), None);
    }
}
