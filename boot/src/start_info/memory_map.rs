//! Normalisation of the E820-style memory map a PVH loader hands over.
//!
//! QEMU's qboot hands the map over unsorted, with an all-zero type-0 entry at
//! the end (docs/pvh.md, "What loaders hand over"); other loaders may give
//! overlapping entries. [`MemoryMap::normalise`] turns any of that into a
//! sorted list of disjoint regions where, on overlap, the more restrictive type
//! wins (RAM never shadows a reserved range).
#![deny(unsafe_code)]

use arrayvec::ArrayVec;

/// Most raw entries accepted from a loader. qboot gives ~8, Firecracker ~4;
/// more than this is a corrupt `memmap_entries` field. Kept small because
/// boot structures are copied by value, and under an emulating KVM every
/// copied KiB costs ~80 us.
pub const MAX_RAW_ENTRIES: usize = 32;

/// Most regions after normalisation: every raw entry can split the line into
/// at most two more pieces.
pub const MAX_REGIONS: usize = 2 * MAX_RAW_ENTRIES + 1;

/// E820 / ACPI address range types (ACPI 6.5 §15.1 "Address Range Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemoryKind {
    /// Type 1: usable RAM.
    Ram,
    /// Type 3: ACPI tables; reclaimable after they are read.
    AcpiReclaimable,
    /// Type 7: persistent memory.
    Persistent,
    /// Type 4: ACPI non-volatile storage.
    AcpiNvs,
    /// Type 2: reserved.
    Reserved,
    /// Type 5: unusable (bad RAM).
    Unusable,
    /// Type 6: disabled.
    Disabled,
    /// Any other non-zero type: treated as reserved.
    Other(u32),
}

impl MemoryKind {
    /// Maps a raw E820 type; type 0 (qboot's padding entry) is `None`.
    pub fn from_e820(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => return None,
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            6 => Self::Disabled,
            7 => Self::Persistent,
            other => Self::Other(other),
        })
    }

    /// Which type wins where two entries overlap: the higher value.
    /// RAM is the weakest, so an overlap never makes reserved memory usable.
    fn precedence(self) -> u32 {
        match self {
            Self::Ram => 0,
            Self::AcpiReclaimable => 1,
            Self::Persistent => 2,
            Self::AcpiNvs => 3,
            Self::Reserved | Self::Other(_) => 4,
            Self::Unusable => 5,
            Self::Disabled => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ram => "ram",
            Self::AcpiReclaimable => "acpi",
            Self::Persistent => "pmem",
            Self::AcpiNvs => "nvs",
            Self::Reserved => "reserved",
            Self::Unusable => "unusable",
            Self::Disabled => "disabled",
            Self::Other(_) => "other",
        }
    }
}

/// One raw entry as the loader wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) kind: u32,
}

/// A half-open physical range `[start, end)` of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: MemoryKind,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn contains_range(&self, start: u64, end: u64) -> bool {
        self.start <= start && end <= self.end
    }
}

/// What normalisation had to throw away, so the kernel can say so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Entries with size 0 or type 0.
    pub empty: u32,
    /// Entries whose `base + size` overflows 64 bits.
    pub wrapping: u32,
    /// Pairs of entries that overlapped (resolved by type precedence).
    pub overlaps: u32,
}

/// A sorted list of disjoint, maximal regions.
#[derive(Clone, Debug, Default)]
pub struct MemoryMap {
    regions: ArrayVec<Region, MAX_REGIONS>,
    pub cleanup: Cleanup,
}

impl MemoryMap {
    /// Sorts, splits and merges raw entries. Panics never; at most
    /// [`MAX_RAW_ENTRIES`] entries are considered (the caller rejects more).
    /// No regions (a loader that gave no map), for statics.
    pub const fn new() -> Self {
        Self {
            regions: ArrayVec::new_const(),
            cleanup: Cleanup {
                empty: 0,
                wrapping: 0,
                overlaps: 0,
            },
        }
    }

    #[cfg(test)]
    pub(crate) fn normalise(raw: &[RawEntry]) -> Self {
        let mut map = Self::new();
        map.normalise_into(raw);
        map
    }

    /// As [`Self::normalise`], in place (boot fills its one map where it
    /// stays: each move of the 1.6 KiB table is a copy).
    pub(crate) fn normalise_into(&mut self, raw: &[RawEntry]) {
        let mut cleanup = Cleanup::default();
        let mut valid: ArrayVec<Region, MAX_RAW_ENTRIES> = ArrayVec::new();
        for entry in raw.iter().take(MAX_RAW_ENTRIES) {
            let Some(kind) = MemoryKind::from_e820(entry.kind) else {
                cleanup.empty += 1;
                continue;
            };
            if entry.size == 0 {
                cleanup.empty += 1;
                continue;
            }
            let Some(end) = entry.base.checked_add(entry.size) else {
                cleanup.wrapping += 1;
                continue;
            };
            valid.push(Region {
                start: entry.base,
                end,
                kind,
            });
        }
        for (i, a) in valid.iter().enumerate() {
            for b in &valid[i + 1..] {
                if a.start < b.end && b.start < a.end {
                    cleanup.overlaps += 1;
                }
            }
        }

        let regions = &mut self.regions;
        regions.clear();
        // What VMMs write: disjoint entries in ascending order. Each entry
        // is then one interval between consecutive boundaries, covered by
        // it alone, so the general pass below would rebuild the same
        // regions from 2n sorted boundaries and a scan of every entry for
        // each; only adjacent entries of one type merge.
        if cleanup.overlaps == 0 && valid.windows(2).all(|pair| pair[0].start < pair[1].start) {
            for region in &valid {
                merge_or_push(regions, region.start, region.end, region.kind);
            }
            self.cleanup = cleanup;
            return;
        }
        by_boundaries(&valid, regions);
        self.cleanup = cleanup;
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn usable(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.kind == MemoryKind::Ram)
    }

    pub fn usable_bytes(&self) -> u64 {
        self.usable().map(Region::len).sum()
    }

    /// One past the highest byte of any RAM region (0 when there is none).
    pub fn ram_end(&self) -> u64 {
        self.usable().map(|r| r.end).max().unwrap_or(0)
    }

    /// Whether `[start, start + len)` lies inside one usable RAM region.
    pub fn is_ram(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.usable().any(|r| r.contains_range(start, end))
    }

    /// Whether `[start, start + len)` lies inside one described region of any
    /// type: loaders put boot structures in RAM, reserved or NVS ranges.
    pub fn describes(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.regions.iter().any(|r| r.contains_range(start, end))
    }
}

/// The general pass: every start and end of `valid` is a boundary, and
/// between two consecutive boundaries the strongest covering type decides.
fn by_boundaries(valid: &[Region], regions: &mut ArrayVec<Region, MAX_REGIONS>) {
    let mut bounds: ArrayVec<u64, { 2 * MAX_RAW_ENTRIES }> = ArrayVec::new();
    for region in valid {
        bounds.push(region.start);
        bounds.push(region.end);
    }
    bounds.sort_unstable();
    for pair in bounds.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        if start == end {
            continue;
        }
        let strongest = valid
            .iter()
            .filter(|r| r.start <= start && end <= r.end)
            .map(|r| r.kind)
            .max_by_key(|kind| kind.precedence());
        let Some(kind) = strongest else { continue };
        merge_or_push(regions, start, end, kind);
    }
}

/// Appends `[start, end)` of `kind`, extending the last region instead
/// when it ends at `start` with the same kind.
fn merge_or_push(
    regions: &mut ArrayVec<Region, MAX_REGIONS>,
    start: u64,
    end: u64,
    kind: MemoryKind,
) {
    match regions.last_mut() {
        Some(last) if last.end == start && last.kind == kind => last.end = end,
        _ => regions.push(Region { start, end, kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(base: u64, size: u64, kind: u32) -> RawEntry {
        RawEntry { base, size, kind }
    }

    #[test]
    fn sorted_disjoint_maps_take_the_short_way_to_the_same_regions() {
        // Deterministic pseudo-random maps: sorted and disjoint (adjacent
        // entries of one kind included), and shuffled or overlapping ones.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |limit: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % limit
        };
        for case in 0..2000 {
            let mut entries = Vec::new();
            let mut at = next(4) * 0x1000;
            for _ in 0..1 + next(12) {
                let size = (1 + next(4)) * 0x1000;
                entries.push(raw(at, size, 1 + u32::try_from(next(5)).unwrap()));
                at += size + next(3) * 0x1000;
            }
            if case % 3 == 1 {
                let (a, b) = (next(entries.len() as u64), next(entries.len() as u64));
                entries.swap(usize::try_from(a).unwrap(), usize::try_from(b).unwrap());
            } else if case % 3 == 2 {
                let first = entries[0];
                entries.push(raw(
                    first.base + 0x800,
                    first.size,
                    1 + u32::try_from(next(5)).unwrap(),
                ));
            }
            let map = MemoryMap::normalise(&entries);
            let valid: Vec<Region> = entries
                .iter()
                .filter_map(|e| {
                    let kind = MemoryKind::from_e820(e.kind)?;
                    Some(Region {
                        start: e.base,
                        end: e.base + e.size,
                        kind,
                    })
                })
                .collect();
            let mut general = ArrayVec::new();
            by_boundaries(&valid, &mut general);
            assert_eq!(map.regions(), &general[..], "{entries:x?}");
        }
    }

    fn ram(start: u64, end: u64) -> Region {
        Region {
            start,
            end,
            kind: MemoryKind::Ram,
        }
    }

    fn reserved(start: u64, end: u64) -> Region {
        Region {
            start,
            end,
            kind: MemoryKind::Reserved,
        }
    }

    /// The map qboot handed a 128 MiB guest, in its order, with its trailing
    /// all-zero entry (docs/pvh.md).
    #[test]
    fn qboot_map_is_sorted_and_padding_dropped() {
        let map = MemoryMap::normalise(&[
            raw(0, 0x9fc00, 1),
            raw(0x9fc00, 0x400, 2),
            raw(0xd0000, 0x20000, 4),
            raw(0xf0000, 0x10000, 2),
            raw(0xfeffc000, 0x4000, 2),
            raw(0x100000, 0x7f00000, 1),
            raw(0, 0, 0),
        ]);
        assert_eq!(map.cleanup.empty, 1);
        assert_eq!(map.cleanup.overlaps, 0);
        let starts: Vec<u64> = map.regions().iter().map(|r| r.start).collect();
        assert_eq!(starts, [0, 0x9fc00, 0xd0000, 0xf0000, 0x100000, 0xfeffc000]);
        assert_eq!(map.usable_bytes(), 0x9fc00 + 0x7f00000);
        assert_eq!(map.ram_end(), 0x8000000);
    }

    #[test]
    fn adjacent_ram_merges() {
        let map = MemoryMap::normalise(&[raw(0x2000, 0x1000, 1), raw(0x1000, 0x1000, 1)]);
        assert_eq!(map.regions(), [ram(0x1000, 0x3000)]);
    }

    #[test]
    fn reserved_overlapping_ram_is_carved_out() {
        let map = MemoryMap::normalise(&[raw(0, 0x10000, 1), raw(0x4000, 0x2000, 2)]);
        assert_eq!(map.cleanup.overlaps, 1);
        assert_eq!(
            map.regions(),
            [
                ram(0, 0x4000),
                reserved(0x4000, 0x6000),
                ram(0x6000, 0x10000)
            ]
        );
        assert_eq!(map.usable_bytes(), 0x10000 - 0x2000);
    }

    #[test]
    fn ram_never_shadows_reserved_whatever_the_order() {
        let a = MemoryMap::normalise(&[raw(0x4000, 0x2000, 2), raw(0, 0x10000, 1)]);
        let b = MemoryMap::normalise(&[raw(0, 0x10000, 1), raw(0x4000, 0x2000, 2)]);
        assert_eq!(a.regions(), b.regions());
    }

    #[test]
    fn duplicate_entries_count_once() {
        let map = MemoryMap::normalise(&[raw(0x1000, 0x1000, 1), raw(0x1000, 0x1000, 1)]);
        assert_eq!(map.usable_bytes(), 0x1000);
        assert_eq!(map.cleanup.overlaps, 1);
    }

    #[test]
    fn zero_sized_type_zero_and_wrapping_entries_are_dropped() {
        let map = MemoryMap::normalise(&[
            raw(0x1000, 0, 1),
            raw(0x1000, 0x1000, 0),
            raw(u64::MAX - 0x10, 0x1000, 1),
            raw(0x100000, 0x100000, 1),
        ]);
        assert_eq!(map.cleanup.empty, 2);
        assert_eq!(map.cleanup.wrapping, 1);
        assert_eq!(map.regions(), [ram(0x100000, 0x200000)]);
    }

    #[test]
    fn region_ending_at_top_of_address_space_is_kept() {
        let map = MemoryMap::normalise(&[raw(u64::MAX - 0xfff, 0xfff, 2)]);
        assert_eq!(map.regions(), [reserved(u64::MAX - 0xfff, u64::MAX)]);
    }

    #[test]
    fn unknown_types_are_reserved_not_usable() {
        let map = MemoryMap::normalise(&[raw(0, 0x1000, 12), raw(0, 0x1000, 1)]);
        assert_eq!(map.usable_bytes(), 0);
        assert_eq!(map.regions()[0].kind, MemoryKind::Other(12));
    }

    #[test]
    fn ram_above_4g_counts() {
        let map = MemoryMap::normalise(&[
            raw(0x100000, 0xbff00000, 1),
            raw(0x1_0000_0000, 0x8000_0000, 1),
        ]);
        assert_eq!(map.usable_bytes(), 0xbff00000 + 0x8000_0000);
        assert_eq!(map.ram_end(), 0x1_8000_0000);
    }

    #[test]
    fn describes_checks_containment_in_one_region() {
        let map = MemoryMap::normalise(&[raw(0, 0x1000, 1), raw(0x1000, 0x1000, 2)]);
        assert!(map.describes(0x800, 0x100));
        assert!(!map.describes(0xf00, 0x200), "straddles two regions");
        assert!(!map.describes(0x3000, 1));
        assert!(!map.describes(u64::MAX, 2));
    }

    #[test]
    fn maximum_number_of_interleaved_entries_fits() {
        let entries: Vec<RawEntry> = (0..MAX_RAW_ENTRIES as u64)
            .map(|i| raw(i * 0x3000, 0x2000, if i % 2 == 0 { 1 } else { 2 }))
            .collect();
        let map = MemoryMap::normalise(&entries);
        assert_eq!(map.regions().len(), MAX_RAW_ENTRIES);
        assert_eq!(map.usable_bytes(), (MAX_RAW_ENTRIES as u64 / 2) * 0x2000);
    }
}
