//! Extends the boot identity map (first 4 GiB, `boot/src/pvh.s`) over RAM
//! above 4 GiB, with 1 GiB pages when the CPU has them, else 2 MiB pages in
//! page directories taken from the frame allocator.

use super::cpu;
use crate::memory::frames::{FrameAllocator, FrameError};

const GIB: u64 = 1 << 30;
/// One PML4 entry (the boot PDPT) covers 512 GiB.
pub const IDENTITY_MAP_LIMIT: u64 = 512 * GIB;
/// Entries 0-3 of the boot PDPT map the first 4 GiB.
const BOOT_MAPPED_GIB: usize = 4;
const PRESENT_WRITABLE: u64 = 0x3;
const HUGE_PAGE: u64 = 1 << 7;
/// CPUID.80000001H:EDX.Page1GB[bit 26].
const CPUID_PDPE1GB: u32 = 1 << 26;

/// Maps `[4 GiB, end)` (rounded up to whole GiB, capped at 512 GiB) and
/// returns the new end of the identity map.
pub fn identity_map_up_to(end: u64, frames: &mut FrameAllocator) -> Result<u64, FrameError> {
    let end = end.min(IDENTITY_MAP_LIMIT);
    let gibs = end.div_ceil(GIB) as usize;
    if gibs <= BOOT_MAPPED_GIB {
        return Ok((BOOT_MAPPED_GIB as u64) * GIB);
    }
    let huge_pages = cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && cpu::cpuid(0x8000_0001, 0).edx & CPUID_PDPE1GB != 0;
    // SAFETY: boot runs on one CPU and this is the only user of the PDPT;
    // entries 0-3 are left alone.
    let pdpt = unsafe { mote_boot::pvh::boot_pdpt() };
    for (gib, entry) in pdpt.iter_mut().enumerate().take(gibs).skip(BOOT_MAPPED_GIB) {
        let base = gib as u64 * GIB;
        *entry = if huge_pages {
            base | HUGE_PAGE | PRESENT_WRITABLE
        } else {
            let directory = frames.allocate(1, 1)?;
            // SAFETY: the frame was just allocated, below 4 GiB or already
            // mapped (frames are handed out lowest first, and RAM below
            // 4 GiB is mapped), and is owned by this function.
            let entries = unsafe { &mut *(directory as *mut [u64; 512]) };
            for (index, entry) in entries.iter_mut().enumerate() {
                *entry = (base + index as u64 * (2 << 20)) | HUGE_PAGE | PRESENT_WRITABLE;
            }
            directory | PRESENT_WRITABLE
        };
    }
    cpu::flush_tlb();
    Ok(gibs as u64 * GIB)
}
