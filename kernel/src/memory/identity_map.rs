//! Extends the boot identity map (`mote_boot::protocol::boot_map`, the first
//! 4 GiB) over RAM above 4 GiB, with 1 GiB pages when the CPU has them,
//! else 2 MiB pages in page directories taken from the frame allocator.

use mote_boot::protocol::boot_map;
use mote_boot::pvh::UpperPdpt;
use x86_64::PhysAddr;
use x86_64::structures::paging::{PageTable, PageTableFlags};

use super::frames::{FrameAllocator, FrameError};
use super::physical::IdentityMapped;
use crate::arch::x86_64::cpu;

const GIB: u64 = 1 << 30;
/// One PML4 entry (the boot PDPT) covers 512 GiB.
const IDENTITY_MAP_LIMIT: u64 = boot_map::ENTRIES_PER_TABLE as u64 * GIB;
/// CPUID.80000001H:EDX.Page1GB[bit 26].
const CPUID_PDPE1GB: u32 = 1 << 26;
const TABLE: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);
const PAGE: PageTableFlags = TABLE.union(PageTableFlags::HUGE_PAGE);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MapError {
    #[error("no page directory frame: {0}")]
    Frames(#[from] FrameError),
    #[error("the boot page tables were already extended")]
    AlreadyExtended,
}

/// Maps `[4 GiB, end)` (rounded up to whole GiB, capped at 512 GiB) and
/// returns what is now reachable.
pub(crate) fn map_up_to(end: u64, frames: &mut FrameAllocator) -> Result<IdentityMapped, MapError> {
    let end = end.min(IDENTITY_MAP_LIMIT);
    if end <= boot_map::END {
        return Ok(IdentityMapped::boot());
    }
    let gibs = end.div_ceil(GIB);
    let huge_pages = cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && cpu::cpuid(0x8000_0001, 0).edx & CPUID_PDPE1GB != 0;
    let mut pdpt = UpperPdpt::take().ok_or(MapError::AlreadyExtended)?;
    let first = boot_map::END / GIB;
    for (gib, entry) in (first..gibs).zip(pdpt.entries()) {
        let base = PhysAddr::new(gib * GIB);
        if huge_pages {
            entry.set_addr(base, PAGE);
            continue;
        }
        let directory = frames.allocate(1, 1)?;
        let table = usize::try_from(directory).map_err(|_| FrameError::OutOfMemory { frames: 1 })?
            as *mut PageTable;
        // SAFETY: the frame was just allocated (so it is this function's),
        // page aligned, and below 4 GiB or already mapped: frames are handed
        // out lowest first and RAM below 4 GiB is mapped.
        let table = unsafe { &mut *table };
        for (index, page) in (0u64..).zip(table.iter_mut()) {
            page.set_addr(base + index * boot_map::PAGE_SIZE, PAGE);
        }
        entry.set_addr(PhysAddr::new(directory), TABLE);
    }
    x86_64::instructions::tlb::flush_all();
    Ok(IdentityMapped::up_to(gibs * GIB))
}
