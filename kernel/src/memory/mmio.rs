//! Device memory above what the boot map and the identity map reach: BARs
//! that a VMM puts high (Cloud Hypervisor 54 puts its 64-bit BARs just
//! below 64 TiB), mapped 1:1 with 2 MiB pages that are uncached (PCD and
//! PWT; Intel SDM vol. 3A §11.12.3: PAT entry 3, UC, with the default PAT).
//! Below 512 GiB the pages go under the boot PDPT (the first PML4 entry),
//! in the 1 GiB slots above 4 GiB that `identity_map` left empty (no RAM
//! there); a slot or page it mapped (cached RAM) is refused, never
//! remapped. Firecracker with `--enable-pci` puts its BARs at 256 GiB.
//!
//! Device memory below 4 GiB (ECAM windows, and BARs in a host bridge's
//! 32-bit window) is already mapped by the boot map, write-back;
//! [`uncache_boot_map`] turns those 2 MiB pages uncached, unless one holds
//! memory the memory map lists (RAM, ACPI, NVS or persistent).

use mote_boot::start_info::memory_map::{MemoryKind, MemoryMap};
use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTable, PageTableFlags};

use super::FRAMES;
use super::frames::{FRAME_BYTES, FrameError};

const PAGE: u64 = 2 << 20;
/// Where the boot map ends: below it the identity map is the boot stub's.
const BOOT_MAP_END: u64 = 4 << 30;
/// The end of the lower canonical half (48-bit virtual addresses).
const LOWER_HALF_END: u64 = 1 << 47;
const TABLE: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);
const UNCACHED_PAGE: PageTableFlags = TABLE
    .union(PageTableFlags::HUGE_PAGE)
    .union(PageTableFlags::NO_CACHE)
    .union(PageTableFlags::WRITE_THROUGH);

/// Serialises the walks: after `identity_map` (memory_init, before any
/// device) this module is the only writer of page tables.
static TABLES: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MmioError {
    #[error("{start:#x}+{size:#x} is below 4 GiB or outside the lower canonical half")]
    OutOfRange { start: u64, size: u64 },
    #[error("{page:#x} is mapped as memory (cached) already")]
    Occupied { page: u64 },
    #[error("no page table frame: {0}")]
    Frames(#[from] FrameError),
}

/// Maps `[start, start + size)` 1:1, uncached, in 2 MiB pages. Pages
/// already mapped by an earlier call are left as they are.
pub(crate) fn map_uncached(start: u64, size: u64) -> Result<(), MmioError> {
    let end = start
        .checked_add(size)
        .filter(|&end| start >= BOOT_MAP_END && end <= LOWER_HALF_END && size > 0)
        .ok_or(MmioError::OutOfRange { start, size })?;
    let _tables = TABLES.lock();
    let (pml4_frame, _) = Cr3::read();
    let pml4 = table_at(pml4_frame.start_address().as_u64());
    let mut page = start & !(PAGE - 1);
    while page < end {
        // SAFETY: CR3 holds the identity-mapped PML4 the boot stub built;
        // entries from the second on are this module's (module comment),
        // and the lock above makes this the only walk.
        let pml4 = unsafe { &mut *pml4 };
        let pdpt = next_table(&mut pml4[index(page, 39)], page)?;
        let directory = next_table(&mut pdpt[index(page, 30)], page)?;
        let entry = &mut directory[index(page, 21)];
        if entry.is_unused() {
            entry.set_addr(PhysAddr::new(page), UNCACHED_PAGE);
        } else if !entry.flags().contains(PageTableFlags::NO_CACHE) {
            return Err(MmioError::Occupied { page });
        }
        page += PAGE;
    }
    x86_64::instructions::tlb::flush_all();
    Ok(())
}

/// Makes the boot map's 2 MiB pages over `[start, start + size)` (all
/// below 4 GiB) uncached. A page that holds memory `memory` lists is
/// refused and nothing is changed.
pub(crate) fn uncache_boot_map(start: u64, size: u64, memory: &MemoryMap) -> Result<(), MmioError> {
    let end = start
        .checked_add(size)
        .filter(|&end| end <= BOOT_MAP_END && size > 0)
        .ok_or(MmioError::OutOfRange { start, size })?;
    let first = start & !(PAGE - 1);
    if let Some(page) = holding_memory(first, end, memory) {
        return Err(MmioError::Occupied { page });
    }
    let _tables = TABLES.lock();
    let (pml4_frame, _) = Cr3::read();
    let pml4 = table_at(pml4_frame.start_address().as_u64());
    let mut page = first;
    while page < end {
        // SAFETY: CR3 holds the identity-mapped PML4 the boot stub built,
        // whose first entry leads to the boot map's PDPT and directories
        // (boot/src/protocol/boot_map.rs); the lock above makes this the
        // only walk, and only the cache bits of a device page change.
        let pml4 = unsafe { &mut *pml4 };
        let pdpt = next_table(&mut pml4[index(page, 39)], page)?;
        let directory = next_table(&mut pdpt[index(page, 30)], page)?;
        let entry = &mut directory[index(page, 21)];
        let flags = entry.flags();
        if !flags.contains(PageTableFlags::HUGE_PAGE) || entry.addr().as_u64() != page {
            return Err(MmioError::Occupied { page });
        }
        entry.set_flags(flags | PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH);
        page += PAGE;
    }
    x86_64::instructions::tlb::flush_all();
    Ok(())
}

/// The first 2 MiB page of `[first, end)` (`first` page-aligned) that
/// overlaps memory the map lists, other than reserved ranges.
fn holding_memory(first: u64, end: u64, memory: &MemoryMap) -> Option<u64> {
    memory
        .regions()
        .iter()
        .filter(|region| {
            matches!(
                region.kind,
                MemoryKind::Ram
                    | MemoryKind::AcpiReclaimable
                    | MemoryKind::AcpiNvs
                    | MemoryKind::Persistent
            )
        })
        .filter(|region| region.start < end && first < region.end)
        .map(|region| region.start.max(first) & !(PAGE - 1))
        .min()
}

/// The 9-bit table index of `address` at `shift` (39 PML4, 30 PDPT, 21 PD).
fn index(address: u64, shift: u32) -> usize {
    usize::from(u16::try_from((address >> shift) & 511).unwrap_or(0))
}

/// The identity-mapped table at physical `address`.
fn table_at(address: u64) -> *mut PageTable {
    usize::try_from(address).unwrap_or(0) as *mut PageTable
}

/// The table `entry` points to, made (zeroed, from the frame allocator)
/// when it points nowhere yet.
fn next_table(
    entry: &mut x86_64::structures::paging::page_table::PageTableEntry,
    page: u64,
) -> Result<&'static mut PageTable, MmioError> {
    if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
        // A 1 GiB page of `identity_map`'s: memory, not a device.
        return Err(MmioError::Occupied { page });
    }
    if entry.is_unused() {
        let frame = FRAMES.lock().allocate(1, 1)?;
        // SAFETY: the frame was just allocated, so it is this caller's; it
        // is RAM, identity mapped (frames come from mapped RAM) and page
        // aligned.
        unsafe { core::ptr::write_bytes(table_at(frame).cast::<u8>(), 0, FRAME_BYTES) };
        entry.set_addr(PhysAddr::new(frame), TABLE);
    }
    let table = table_at(entry.addr().as_u64());
    // SAFETY: the entry points to a table, this module's or the boot
    // map's/`identity_map`'s (module comment), each an identity-mapped
    // frame; the lock in `map_uncached` makes this the only reference, and
    // nothing else writes page tables after memory_init.
    Ok(unsafe { &mut *table })
}
