//! Where the application processors' real-mode trampoline goes: a STARTUP
//! IPI starts a CPU in real mode at `vector << 12` (Intel SDM vol. 3
//! §9.4.4.1 and §11.6.1: an 8-bit vector, so a 4 KiB page below 1 MiB),
//! and the page must be RAM no one else uses. Pure logic, host-tested.
#![deny(unsafe_code)]

/// The trampoline's page size.
pub(crate) const PAGE_SIZE: u64 = 4096;
/// Below the EBDA and the legacy video and ROM area (640 KiB up).
const LOW_RAM_END: u64 = 0xa_0000;
/// Page 0 holds the real-mode interrupt vectors and the BIOS data area,
/// which the MP table search reads.
const FIRST_PAGE: u64 = PAGE_SIZE;

/// The highest 4 KiB page in `[4 KiB, 640 KiB)` that lies wholly inside
/// one of the `usable` RAM ranges and overlaps none of `occupied` (each
/// `[start, end)`). The highest, because loaders put their own
/// structures low (qboot's stack at 0x7b60, Firecracker's and Cloud
/// Hypervisor's start_info at 0x6000 and their boot page tables at 0x9000).
pub(crate) fn choose(usable: &[(u64, u64)], occupied: &[(u64, u64)]) -> Option<u64> {
    (FIRST_PAGE / PAGE_SIZE..LOW_RAM_END / PAGE_SIZE)
        .rev()
        .map(|page| page * PAGE_SIZE)
        .find(|&page| {
            let end = page + PAGE_SIZE;
            usable
                .iter()
                .any(|&(start, stop)| start <= page && end <= stop)
                && !occupied
                    .iter()
                    .any(|&(start, stop)| start < end && page < stop)
        })
}

/// The STARTUP IPI vector that starts a CPU at `page`.
pub(crate) fn startup_vector(page: u64) -> Option<u8> {
    if !page.is_multiple_of(PAGE_SIZE) {
        return None;
    }
    u8::try_from(page / PAGE_SIZE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// qboot's map: RAM up to 0x9fc00, its MP table and EBDA above.
    const QBOOT_LOW_RAM: (u64, u64) = (0, 0x9_fc00);

    #[test]
    fn the_highest_whole_free_page_of_low_ram() {
        assert_eq!(choose(&[QBOOT_LOW_RAM], &[]), Some(0x9_e000));
        let high_ram = (0x10_0000, 0x800_0000);
        assert_eq!(choose(&[high_ram, QBOOT_LOW_RAM], &[]), Some(0x9_e000));
    }

    #[test]
    fn occupied_pages_are_passed_over() {
        // A command line that ends one byte into page 0x9e000.
        let occupied = [(0x9_d800, 0x9_e001), (0x9_c000, 0x9_d000)];
        assert_eq!(choose(&[QBOOT_LOW_RAM], &occupied), Some(0x9_b000));
        // Touching is not overlapping.
        assert_eq!(
            choose(&[QBOOT_LOW_RAM], &[(0x9_f000, 0xa_0000)]),
            Some(0x9_e000)
        );
    }

    #[test]
    fn no_low_ram_no_page() {
        assert_eq!(choose(&[(0x10_0000, 0x800_0000)], &[]), None);
        assert_eq!(choose(&[(0, 0x1000)], &[]), None, "page 0 is never used");
        assert_eq!(choose(&[(0, 0x2000)], &[(0x1000, 0x1001)]), None);
        assert_eq!(choose(&[(0, 0x1800)], &[]), None, "not a whole page");
    }

    #[test]
    fn vectors_name_pages_below_1_mib() {
        assert_eq!(startup_vector(0x9_e000), Some(0x9e));
        assert_eq!(startup_vector(0x9_e800), None);
        assert_eq!(startup_vector(0x10_0000), None);
    }
}
