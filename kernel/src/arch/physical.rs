//! Reading physical memory through the identity map.

use mote_boot::start_info::{OutOfReach, PhysicalMemory};

/// The boot stub identity-maps the first 4 GiB (`boot/src/pvh.s`).
pub const BOOT_IDENTITY_MAP_END: u64 = 1 << 32;

/// Physical memory below `end`, read through the identity map.
pub struct IdentityMapped {
    pub end: u64,
}

impl IdentityMapped {
    /// What is reachable before the kernel extends the map.
    pub const fn boot() -> Self {
        Self {
            end: BOOT_IDENTITY_MAP_END,
        }
    }
}

impl PhysicalMemory for IdentityMapped {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
        let end = paddr.checked_add(buf.len() as u64).ok_or(OutOfReach)?;
        if paddr == 0 || end > self.end {
            return Err(OutOfReach);
        }
        for (offset, byte) in buf.iter_mut().enumerate() {
            // SAFETY: [paddr, end) is non-null and inside the identity map,
            // so the addresses are mapped; bytes have no invalid values.
            // Volatile because a loader or device may own the range.
            *byte = unsafe { core::ptr::read_volatile((paddr as usize + offset) as *const u8) };
        }
        Ok(())
    }
}
