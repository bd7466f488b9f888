//! The Intel MultiProcessor Specification 1.4 table (MPS 1.4 chapter 4),
//! which QEMU microvm with `acpi=off` (qboot's `mptable.c`) and Firecracker
//! (`arch/src/x86_64/mptable.rs`) give instead of, or beside, ACPI: the
//! floating pointer structure searched for where §4 says it may be, then
//! the configuration table it points at, both checksummed, and its
//! processor entries. Reads through [`PhysicalMemory`]: tested on the host.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;

use mote_boot::start_info::PhysicalMemory;

use super::processors::{Processors, Source};

/// The floating pointer's signature (MPS 1.4 §4.1).
const FLOATING_SIGNATURE: &[u8; 4] = b"_MP_";
/// The floating pointer is 16 bytes (one paragraph) on a 16-byte boundary.
const FLOATING_SIZE: usize = 16;
/// The configuration table's signature (MPS 1.4 §4.2).
const TABLE_SIGNATURE: &[u8; 4] = b"PCMP";
/// The configuration table header's size (MPS 1.4 table 4-2).
const TABLE_HEADER_SIZE: usize = 44;
/// Entry types and sizes (MPS 1.4 table 4-3): a processor entry is 20
/// bytes, the bus, I/O APIC, I/O interrupt and local interrupt entries 8.
const ENTRY_PROCESSOR: u8 = 0;
const PROCESSOR_ENTRY_SIZE: usize = 20;
const LAST_SMALL_ENTRY: u8 = 4;
const SMALL_ENTRY_SIZE: usize = 8;
/// Processor entry CPU flags (MPS 1.4 §4.3.1): usable, and the boot CPU.
const CPU_ENABLED: u8 = 1 << 0;
const CPU_BOOT_PROCESSOR: u8 = 1 << 1;

/// BIOS data area words (MPS 1.4 §4; IBM PC BIOS): the EBDA's segment at
/// 0x40e, the KiB of base memory at 0x413.
const BDA_EBDA_SEGMENT: u64 = 0x40e;
const BDA_BASE_MEMORY_KIB: u64 = 0x413;
/// One KiB: how much of the EBDA and of the top of base memory is searched.
const SEARCHED_KIB: usize = 1024;
/// Base memory ends at 640 KiB; 639 KiB is where the last KiB starts when
/// the BDA does not say (Linux's `smp_scan_config(639 * 0x400, 0x400)`).
const BASE_MEMORY_END: u64 = 640 * 1024;
const DEFAULT_LAST_KIB: u64 = 639 * 1024;
/// The BIOS ROM area searched last: 0xf0000–0xfffff.
const BIOS_ROM: (u64, usize) = (0xf_0000, 0x1_0000);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MpTableError {
    #[error("no MP floating pointer structure")]
    NotFound,
    /// Feature byte 1 names one of the spec's default configurations
    /// (chapter 5), which have no table; no VMM mote knows uses them.
    #[error("MP default configuration {0} (no table) is not supported")]
    DefaultConfiguration(u8),
    #[error("MP configuration table at {paddr:#x} is unreadable")]
    Unreadable { paddr: u64 },
    #[error("MP configuration table at {paddr:#x} has a bad signature or length")]
    BadTable { paddr: u64 },
    #[error("MP configuration table at {paddr:#x} has a bad checksum")]
    BadChecksum { paddr: u64 },
}

/// A floating pointer structure that checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FloatingPointer {
    pub(crate) paddr: u64,
    /// The configuration table's address (0 with a default configuration).
    pub(crate) table: u64,
    pub(crate) default_configuration: u8,
}

/// The byte sum both structures zero with their checksum field.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

fn read_u16(memory: &impl PhysicalMemory, paddr: u64) -> Option<u16> {
    let mut bytes = [0u8; 2];
    memory.read(paddr, &mut bytes).ok()?;
    Some(u16::from_le_bytes(bytes))
}

/// The places MPS 1.4 §4 says to look, in its order: the first KiB of the
/// EBDA, the last KiB of base memory, the BIOS ROM.
pub(crate) fn search_areas(memory: &impl PhysicalMemory) -> [Option<(u64, usize)>; 3] {
    let ebda = read_u16(memory, BDA_EBDA_SEGMENT)
        .map(|segment| u64::from(segment) << 4)
        .filter(|&start| start != 0 && start + SEARCHED_KIB as u64 <= BASE_MEMORY_END);
    let last_kib = read_u16(memory, BDA_BASE_MEMORY_KIB)
        .map(|kib| u64::from(kib) * 1024)
        .filter(|end| (SEARCHED_KIB as u64..=BASE_MEMORY_END).contains(end))
        .map_or(DEFAULT_LAST_KIB, |end| end - SEARCHED_KIB as u64);
    [
        ebda.map(|start| (start, SEARCHED_KIB)),
        Some((last_kib, SEARCHED_KIB)),
        Some(BIOS_ROM),
    ]
}

/// The first valid floating pointer structure in the search areas. A
/// signature with a bad length or checksum is passed over.
pub(crate) fn find_floating_pointer(memory: &impl PhysicalMemory) -> Option<FloatingPointer> {
    let mut chunk = [0u8; SEARCHED_KIB];
    for (start, length) in search_areas(memory).into_iter().flatten() {
        for offset in (0..length).step_by(SEARCHED_KIB) {
            let at = start + offset as u64;
            let size = SEARCHED_KIB.min(length - offset);
            if memory.read(at, &mut chunk[..size]).is_err() {
                continue;
            }
            for (index, candidate) in chunk[..size].chunks_exact(FLOATING_SIZE).enumerate() {
                if &candidate[..4] != FLOATING_SIGNATURE
                    || candidate[8] != 1
                    || checksum(candidate) != 0
                {
                    continue;
                }
                let table =
                    u32::from_le_bytes([candidate[4], candidate[5], candidate[6], candidate[7]]);
                return Some(FloatingPointer {
                    paddr: at + (index * FLOATING_SIZE) as u64,
                    table: u64::from(table),
                    default_configuration: candidate[11],
                });
            }
        }
    }
    None
}

/// The processors of the MP configuration table: the floating pointer
/// searched for, the table it names read whole and checksummed, then its
/// entries walked to the table's end or to an entry type of unknown size
/// (which marks the list `truncated`, as does an entry cut short or a
/// count beyond the entries there are).
pub(crate) fn processors(memory: &impl PhysicalMemory) -> Result<Processors, MpTableError> {
    let pointer = find_floating_pointer(memory).ok_or(MpTableError::NotFound)?;
    if pointer.default_configuration != 0 {
        return Err(MpTableError::DefaultConfiguration(
            pointer.default_configuration,
        ));
    }
    read_table(memory, pointer.table)
}

/// Reads the configuration table at `paddr` (see [`processors`]).
pub(crate) fn read_table(
    memory: &impl PhysicalMemory,
    paddr: u64,
) -> Result<Processors, MpTableError> {
    let mut header = [0u8; TABLE_HEADER_SIZE];
    if paddr == 0 || memory.read(paddr, &mut header).is_err() {
        return Err(MpTableError::Unreadable { paddr });
    }
    let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
    if &header[..4] != TABLE_SIGNATURE || length < TABLE_HEADER_SIZE {
        return Err(MpTableError::BadTable { paddr });
    }
    let mut table = vec![0u8; length];
    memory
        .read(paddr, &mut table)
        .map_err(|_| MpTableError::Unreadable { paddr })?;
    if checksum(&table) != 0 {
        return Err(MpTableError::BadChecksum { paddr });
    }
    // The entry count is advisory: qboot leaves it 0 (what NetBSD's
    // `MPTABLE_LINUX_BUG_COMPAT` is about), and Linux's `smp_read_mpc`
    // walks by the base table length alone. So does this walk; a count
    // that claims more entries than the table holds marks it truncated.
    let count = usize::from(u16::from_le_bytes([table[34], table[35]]));
    let mut processors = Processors::new(Source::MpTable);
    let mut at = TABLE_HEADER_SIZE;
    let mut entries = 0;
    while at < table.len() {
        let size = match table[at] {
            ENTRY_PROCESSOR => PROCESSOR_ENTRY_SIZE,
            1..=LAST_SMALL_ENTRY => SMALL_ENTRY_SIZE,
            _ => {
                processors.truncated = true;
                break;
            }
        };
        let Some(entry) = table.get(at..at + size) else {
            processors.truncated = true;
            break;
        };
        if entry[0] == ENTRY_PROCESSOR {
            let (apic_id, flags) = (u32::from(entry[1]), entry[3]);
            let enabled = flags & CPU_ENABLED != 0;
            processors.add(apic_id, enabled, false);
            if enabled && flags & CPU_BOOT_PROCESSOR != 0 {
                processors.boot_processor.get_or_insert(apic_id);
            }
        }
        at += size;
        entries += 1;
    }
    if count > entries {
        processors.truncated = true;
    }
    Ok(processors)
}

/// Builders of MP tables, for the tests here and the fuzz target's seeds.
#[cfg(not(target_os = "none"))]
pub(crate) mod build {
    use alloc::vec::Vec;

    use super::*;

    /// A floating pointer structure naming `table`, checksummed.
    pub(crate) fn floating_pointer(table: u32) -> [u8; FLOATING_SIZE] {
        let mut bytes = [0u8; FLOATING_SIZE];
        bytes[..4].copy_from_slice(FLOATING_SIGNATURE);
        bytes[4..8].copy_from_slice(&table.to_le_bytes());
        bytes[8] = 1;
        bytes[9] = 4;
        bytes[10] = 0u8.wrapping_sub(checksum(&bytes));
        bytes
    }

    /// A processor entry: `apic_id` with the CPU flags `flags`.
    pub(crate) fn processor(apic_id: u8, flags: u8) -> [u8; PROCESSOR_ENTRY_SIZE] {
        let mut entry = [0u8; PROCESSOR_ENTRY_SIZE];
        entry[1] = apic_id;
        entry[2] = 0x14;
        entry[3] = flags;
        entry
    }

    /// A configuration table of `entries` (their count declared as
    /// `count`), checksummed; like qboot's, with one bus and one I/O APIC.
    pub(crate) fn table(entries: &[&[u8]], count: u16) -> Vec<u8> {
        let mut table = vec![0u8; TABLE_HEADER_SIZE];
        table[..4].copy_from_slice(TABLE_SIGNATURE);
        table[6] = 4;
        table[8..16].copy_from_slice(b"QEMU    ");
        table[34..36].copy_from_slice(&count.to_le_bytes());
        table[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        for entry in entries {
            table.extend_from_slice(entry);
        }
        let length = u16::try_from(table.len()).unwrap_or(u16::MAX);
        table[4..6].copy_from_slice(&length.to_le_bytes());
        table[7] = 0u8.wrapping_sub(checksum(&table));
        table
    }

    /// qboot's table for `cpus` CPUs (`mptable.c`, as QEMU 7.2's qboot
    /// writes it): processors with ids 0.., the first the boot processor,
    /// then a bus and an I/O APIC; the entry count 0.
    pub(crate) fn qboot(cpus: u8) -> Vec<u8> {
        let processors: Vec<[u8; PROCESSOR_ENTRY_SIZE]> = (0..cpus)
            .map(|id| {
                let boot = if id == 0 { CPU_BOOT_PROCESSOR } else { 0 };
                processor(id, CPU_ENABLED | boot)
            })
            .collect();
        let bus = [1u8, 0, b'I', b'S', b'A', b' ', b' ', b' '];
        let io_apic = [2u8, cpus, 0x11, 1, 0, 0, 0xc0, 0xfe];
        let mut entries: Vec<&[u8]> = processors.iter().map(|entry| &entry[..]).collect();
        entries.push(&bus);
        entries.push(&io_apic);
        // qboot leaves the entry count 0.
        table(&entries, 0)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use mote_boot::start_info::OutOfReach;

    use super::build::*;
    use super::*;

    /// Guest memory from address 0 up to 1 MiB.
    struct FakeMemory(Vec<u8>);

    impl PhysicalMemory for FakeMemory {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
            let start = usize::try_from(paddr).map_err(|_| OutOfReach)?;
            let source = self.0.get(start..start + buf.len()).ok_or(OutOfReach)?;
            buf.copy_from_slice(source);
            Ok(())
        }
    }

    impl FakeMemory {
        fn new() -> Self {
            Self(vec![0u8; 0x10_0000])
        }

        fn put(&mut self, at: usize, bytes: &[u8]) {
            self.0[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// qboot puts both structures at 0x9fc00, the last KiB of base memory.
    fn qboot_memory(cpus: u8) -> FakeMemory {
        let mut memory = FakeMemory::new();
        memory.put(0x9fc00, &floating_pointer(0x9fc10));
        memory.put(0x9fc10, &qboot(cpus));
        memory
    }

    #[test]
    fn finds_qboot_s_table_in_the_last_kib_of_base_memory() {
        let processors = processors(&qboot_memory(4)).unwrap();
        assert_eq!(processors.source, Source::MpTable);
        assert_eq!(processors.apic_ids(), [0, 1, 2, 3]);
        assert_eq!(processors.boot_processor, Some(0));
        assert!(!processors.truncated);
    }

    #[test]
    fn the_ebda_and_the_bios_rom_are_searched_too() {
        let mut memory = FakeMemory::new();
        memory.put(0x40e, &0x9000u16.to_le_bytes());
        memory.put(0x90000 + 0x30, &floating_pointer(0x80000));
        memory.put(0x80000, &qboot(2));
        let pointer = find_floating_pointer(&memory).unwrap();
        assert_eq!((pointer.paddr, pointer.table), (0x90030, 0x80000));
        let mut memory = FakeMemory::new();
        memory.put(0xf5a50, &floating_pointer(0xf5a60));
        memory.put(0xf5a60, &qboot(2));
        assert_eq!(processors(&memory).unwrap().apic_ids(), [0, 1]);
        // A BDA base-memory size moves the last KiB searched.
        let mut memory = FakeMemory::new();
        memory.put(0x413, &512u16.to_le_bytes());
        memory.put(0x7fc00, &floating_pointer(0x7fc10));
        memory.put(0x7fc10, &qboot(1));
        assert_eq!(processors(&memory).unwrap().apic_ids(), [0]);
    }

    #[test]
    fn no_table_is_not_found() {
        assert_eq!(processors(&FakeMemory::new()), Err(MpTableError::NotFound));
        // Memory that ends below the search areas is not a panic.
        assert_eq!(
            processors(&FakeMemory(vec![0u8; 0x500])),
            Err(MpTableError::NotFound)
        );
    }

    #[test]
    fn a_floating_pointer_with_a_bad_checksum_is_passed_over() {
        let mut memory = qboot_memory(2);
        memory.0[0x9fc00 + 12] ^= 1;
        assert_eq!(processors(&memory), Err(MpTableError::NotFound));
        // A later good one is still found.
        memory.put(0xf0000, &floating_pointer(0x9fc10));
        assert_eq!(processors(&memory).unwrap().count(), 2);
    }

    #[test]
    fn a_table_with_a_bad_checksum_is_refused() {
        let mut memory = qboot_memory(2);
        memory.0[0x9fc10 + 44 + 1] = 9;
        assert_eq!(
            processors(&memory),
            Err(MpTableError::BadChecksum { paddr: 0x9fc10 })
        );
    }

    #[test]
    fn a_bad_signature_a_short_length_or_an_unreadable_table_is_refused() {
        let mut memory = qboot_memory(2);
        memory.0[0x9fc10] = b'X';
        assert_eq!(
            processors(&memory),
            Err(MpTableError::BadTable { paddr: 0x9fc10 })
        );
        let mut memory = qboot_memory(2);
        memory.put(0x9fc10 + 4, &10u16.to_le_bytes());
        assert_eq!(
            processors(&memory),
            Err(MpTableError::BadTable { paddr: 0x9fc10 })
        );
        let mut memory = FakeMemory::new();
        memory.put(0x9fc00, &floating_pointer(0xfff0_0000));
        assert_eq!(
            processors(&memory),
            Err(MpTableError::Unreadable { paddr: 0xfff0_0000 })
        );
    }

    #[test]
    fn a_default_configuration_is_reported() {
        let mut memory = FakeMemory::new();
        let mut pointer = floating_pointer(0);
        pointer[11] = 5;
        pointer[10] = pointer[10].wrapping_sub(5);
        memory.put(0x9fc00, &pointer);
        assert_eq!(
            processors(&memory),
            Err(MpTableError::DefaultConfiguration(5))
        );
    }

    #[test]
    fn a_count_beyond_the_table_stops_at_its_end() {
        let one = processor(0, CPU_ENABLED | CPU_BOOT_PROCESSOR);
        let two = processor(1, CPU_ENABLED);
        let mut memory = FakeMemory::new();
        memory.put(0x9fc00, &floating_pointer(0x9fc10));
        memory.put(0x9fc10, &table(&[&one, &two], 500));
        let processors = processors(&memory).unwrap();
        assert_eq!(processors.apic_ids(), [0, 1]);
        assert!(processors.truncated);
    }

    #[test]
    fn an_entry_of_unknown_type_or_cut_short_ends_the_walk() {
        let one = processor(0, CPU_ENABLED);
        let unknown = [0x80u8, 0, 0, 0, 0, 0, 0, 0];
        let two = processor(1, CPU_ENABLED);
        let list = read_table(&FakeMemory(table(&[&one, &unknown, &two], 3)), 0).err();
        assert_eq!(list, Some(MpTableError::Unreadable { paddr: 0 }));
        let mut memory = FakeMemory::new();
        memory.put(0x1000, &table(&[&one, &unknown, &two], 3));
        let processors = read_table(&memory, 0x1000).unwrap();
        assert_eq!(processors.apic_ids(), [0]);
        assert!(processors.truncated);
        let mut memory = FakeMemory::new();
        memory.put(0x1000, &table(&[&one, &two[..10]], 2));
        let processors = read_table(&memory, 0x1000).unwrap();
        assert_eq!(processors.apic_ids(), [0]);
        assert!(processors.truncated);
    }

    #[test]
    fn duplicate_and_disabled_processors_are_not_cpus() {
        let entries = [
            processor(0, CPU_ENABLED | CPU_BOOT_PROCESSOR),
            processor(0, CPU_ENABLED),
            processor(1, 0),
            processor(2, CPU_ENABLED | CPU_BOOT_PROCESSOR),
        ];
        let entries: Vec<&[u8]> = entries.iter().map(|entry| &entry[..]).collect();
        let mut memory = FakeMemory::new();
        memory.put(0x1000, &table(&entries, 4));
        let processors = read_table(&memory, 0x1000).unwrap();
        assert_eq!(processors.apic_ids(), [0, 2]);
        assert_eq!(processors.duplicates, 1);
        assert_eq!(processors.disabled, 1);
        assert_eq!(processors.boot_processor, Some(0), "the first one marked");
    }
}
