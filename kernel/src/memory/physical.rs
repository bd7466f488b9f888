//! Reading physical memory through the identity map, for the parsers that
//! take a [`PhysicalMemory`] (start_info, ACPI).

use mote_boot::protocol::boot_map;
use mote_boot::start_info::{OutOfReach, PhysicalMemory};

/// Physical memory below an end the identity map is known to reach. Made
/// only from the boot map or by [`super::identity_map`] after extending it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdentityMapped {
    end: u64,
}

impl IdentityMapped {
    /// What is reachable before the kernel extends the map.
    pub(crate) const fn boot() -> Self {
        Self { end: boot_map::END }
    }

    /// Only [`super::identity_map`] knows a larger end is mapped.
    pub(super) const fn up_to(end: u64) -> Self {
        Self { end }
    }

    /// One past the last mapped byte.
    pub(crate) fn end(self) -> u64 {
        self.end
    }

    /// Whether `[start, start + len)` is inside the map.
    pub(crate) fn contains(self, start: u64, len: u64) -> bool {
        start.checked_add(len).is_some_and(|end| end <= self.end)
    }
}

impl PhysicalMemory for IdentityMapped {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
        let len = u64::try_from(buf.len()).map_err(|_| OutOfReach)?;
        if paddr == 0 || !self.contains(paddr, len) {
            return Err(OutOfReach);
        }
        let source = usize::try_from(paddr).map_err(|_| OutOfReach)? as *const u8;
        // SAFETY: [paddr, paddr + len) is non-null and inside the identity
        // map, so mapped; it is RAM a loader or firmware filled before the
        // kernel ran (start_info, tables), which nothing writes meanwhile,
        // and it cannot overlap `buf`, which the kernel owns.
        unsafe { core::ptr::copy_nonoverlapping(source, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
}
