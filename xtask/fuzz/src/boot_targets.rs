//! Targets for the boot crate's `start_info` reader, over a fuzzer-chosen
//! physical memory ([`PhysicalImage`]).

use mote_boot::start_info::memory_map::{MAX_RAW_ENTRIES, MAX_REGIONS, MemoryKind, MemoryMap};
use mote_boot::start_info::{BootInfo, CMDLINE_MAX, MAX_MODULES, StartInfoError};
use mote_kernel::fuzzing::PhysicalImage;

/// `hvm_start_info`'s magic (xen `public/arch-x86/hvm/start_info.h`).
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Bytes of a version-1 `hvm_start_info` and of one memory map entry.
const START_INFO_V1_SIZE: usize = 56;
const MEMMAP_ENTRY_SIZE: usize = 24;

/// A little-endian field of `bytes`, or 0 past its end.
pub fn field(bytes: &[u8], offset: usize, width: usize) -> u64 {
    bytes.get(offset..offset + width).map_or(0, |b| {
        b.iter()
            .rev()
            .fold(0, |value, &byte| (value << 8) | u64::from(byte))
    })
}

/// One raw memory map entry as the loader wrote it.
#[derive(Clone, Copy, Debug)]
struct RawEntry {
    base: u64,
    size: u64,
    kind: u32,
}

impl RawEntry {
    fn read(bytes: &[u8]) -> Self {
        Self {
            base: field(bytes, 0, 8),
            size: field(bytes, 8, 8),
            kind: u32::try_from(field(bytes, 16, 4)).unwrap_or(0),
        }
    }

    /// The entry as a range with a type, unless the normaliser must drop it
    /// (type 0, size 0, or a range that wraps).
    fn valid(self) -> Option<(u64, u64, MemoryKind)> {
        let kind = MemoryKind::from_e820(self.kind)?;
        let end = self.base.checked_add(self.size)?;
        (self.size > 0).then_some((self.base, end, kind))
    }
}

/// What a normalised memory map promises about the raw entries it came
/// from: regions sorted, non-empty, never overlapping, merged where two
/// touching regions have one type; every region inside what the valid
/// entries cover, every covered byte inside a region; a region is RAM only
/// where every entry covering it is RAM, and has the type of the entries
/// when they all agree; the cleanup counts add up.
fn check_memory_map(map: &MemoryMap, raw: &[RawEntry]) {
    let regions = map.regions();
    let valid: Vec<(u64, u64, MemoryKind)> = raw.iter().filter_map(|e| e.valid()).collect();
    assert!(regions.len() <= MAX_REGIONS);
    assert_eq!(
        (map.cleanup.empty + map.cleanup.wrapping) as usize + valid.len(),
        raw.len().min(MAX_RAW_ENTRIES),
        "{:?}",
        map.cleanup
    );
    for pair in regions.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.end <= b.start, "unsorted or overlapping: {a:?} {b:?}");
        assert!(
            !(a.end == b.start && a.kind == b.kind),
            "not merged: {a:?} {b:?}"
        );
    }
    let covering = |point: u64| -> Vec<MemoryKind> {
        valid
            .iter()
            .filter(|&&(start, end, _)| start <= point && point < end)
            .map(|&(_, _, kind)| kind)
            .collect()
    };
    for region in regions {
        assert!(region.start < region.end, "empty region {region:?}");
        // Inside a region the covering entries only change at an entry's
        // boundary, so checking its first and last byte and every entry
        // boundary inside it is checking all of it.
        let inner = valid
            .iter()
            .flat_map(|&(start, end, _)| [start, end])
            .filter(|&point| region.start < point && point < region.end);
        for point in [region.start, region.end - 1].into_iter().chain(inner) {
            let kinds = covering(point);
            assert!(
                !kinds.is_empty(),
                "{region:?} is not in the input at {point:#x}"
            );
            if kinds.iter().any(|&kind| kind != MemoryKind::Ram) {
                assert_ne!(
                    region.kind,
                    MemoryKind::Ram,
                    "{region:?} at {point:#x}: {kinds:?}"
                );
            }
            if kinds.iter().all(|&kind| kind == kinds[0]) {
                assert_eq!(region.kind, kinds[0], "{region:?} at {point:#x}");
            }
            assert!(
                kinds.contains(&region.kind),
                "{region:?} at {point:#x}: {kinds:?}"
            );
        }
    }
    for &(start, end, _) in &valid {
        for point in [start, end - 1] {
            assert!(
                regions.iter().any(|r| r.start <= point && point < r.end),
                "input byte {point:#x} is in no region"
            );
        }
    }
    let usable: u64 = regions
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .map(|r| r.end - r.start)
        .sum();
    assert_eq!(map.usable_bytes(), usable);
}

/// The raw memory map entries `image` holds for a start_info at `paddr`.
fn raw_entries(image: &PhysicalImage<'_>, memmap: u64, count: usize) -> Vec<RawEntry> {
    (0..count)
        .map(|index| {
            let at = memmap + (index * MEMMAP_ENTRY_SIZE) as u64;
            RawEntry::read(
                image
                    .bytes(at, MEMMAP_ENTRY_SIZE)
                    .expect("the reader read it"),
            )
        })
        .collect()
}

/// A whole `start_info` over an image whose entry is its address.
/// Invariants, besides the memory map's: the version is 0 or 1; the
/// command line is the bytes before the first NUL at `cmdline_paddr`; the
/// modules are those the list describes, inside the memory map when there
/// is one; `rsdp` is the field when it is not 0.
pub(crate) fn start_info(data: &[u8]) {
    let Some(image) = PhysicalImage::decode(data) else {
        return;
    };
    let result = BootInfo::from_start_info(&image, image.entry);
    let Ok(info) = result else {
        if let Err(StartInfoError::BadMagic(magic)) = result {
            assert_ne!(magic, START_INFO_MAGIC);
        }
        return;
    };
    let header_size = if info.version == 0 {
        40
    } else {
        START_INFO_V1_SIZE
    };
    let header = image
        .bytes(image.entry, header_size)
        .expect("a parsed start_info was readable");
    assert_eq!(field(header, 0, 4), u64::from(START_INFO_MAGIC));
    assert!(info.version <= 1);

    let cmdline_paddr = field(header, 24, 8);
    let cmdline = info.cmdline_bytes();
    assert!(!cmdline.contains(&0) && cmdline.len() <= CMDLINE_MAX);
    if cmdline_paddr == 0 {
        assert!(cmdline.is_empty());
    } else {
        let stored = image.bytes(cmdline_paddr, cmdline.len() + 1);
        assert_eq!(stored.map(|s| &s[..cmdline.len()]), Some(cmdline));
        assert_eq!(stored.map(|s| s[cmdline.len()]), Some(0), "the NUL");
    }
    assert!(cmdline.starts_with(info.cmdline().as_bytes()));

    let rsdp = field(header, 32, 8);
    assert_eq!(info.rsdp, (rsdp != 0).then_some(rsdp));

    let (memmap, entries) = if info.version >= 1 {
        (field(header, 40, 8), field(header, 48, 4))
    } else {
        (0, 0)
    };
    assert_eq!(u64::from(info.memory_map_entries), entries);
    let raw = if memmap == 0 {
        Vec::new()
    } else {
        raw_entries(&image, memmap, usize::try_from(entries).unwrap_or(0))
    };
    check_memory_map(&info.memory_map, &raw);

    // Every listed module is either kept or reported unusable, in list
    // order, each under its own index.
    let nr_modules = usize::try_from(field(header, 12, 4)).unwrap_or(usize::MAX);
    assert!(nr_modules <= MAX_MODULES);
    assert_eq!(info.modules.len() + info.unusable_modules.len(), nr_modules);
    let mut indices: Vec<usize> = info.modules.iter().map(|module| module.index).collect();
    indices.extend(info.unusable_modules.iter().map(|module| module.index));
    indices.sort_unstable();
    assert!(indices.iter().copied().eq(0..nr_modules), "{indices:?}");
    let modlist = field(header, 16, 8);
    let entry_of = |index: usize| {
        image
            .bytes(modlist + 32 * index as u64, 32)
            .expect("the reader read it")
    };
    for module in &info.modules {
        let entry = entry_of(module.index);
        assert_eq!(
            (module.paddr, module.size),
            (field(entry, 0, 8), field(entry, 8, 8))
        );
        assert!(module.paddr != 0 && module.paddr.checked_add(module.size).is_some());
        assert!(!module.cmdline.contains(&0));
        if !info.memory_map.regions().is_empty() {
            assert!(
                info.memory_map.is_ram(module.paddr, module.size),
                "{module:?}"
            );
        }
    }
    for unusable in &info.unusable_modules {
        let entry = entry_of(unusable.index);
        let (paddr, size) = (field(entry, 0, 8), field(entry, 8, 8));
        let fits = paddr != 0 && paddr.checked_add(size).is_some();
        let in_ram = info.memory_map.regions().is_empty() || info.memory_map.is_ram(paddr, size);
        assert!(
            !(fits && in_ram),
            "a usable module was skipped: {unusable:?}"
        );
    }
}

/// Where the memory map target puts its start_info and its map.
const MAP_TARGET_START_INFO: u64 = 0x1000;
const MAP_TARGET_MEMMAP: u64 = 0x2000;

/// The memory map normalisation alone: the input is the raw entries
/// (24 bytes each; up to 40, so too many is tried too) behind a fixed
/// version-1 start_info with no command line and no modules.
pub(crate) fn memory_map(data: &[u8]) {
    let entries = data
        .chunks_exact(MEMMAP_ENTRY_SIZE)
        .take(MAX_RAW_ENTRIES + 8);
    let raw: Vec<RawEntry> = entries.clone().map(RawEntry::read).collect();
    let mut header = [0u8; START_INFO_V1_SIZE];
    header[0..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    header[40..48].copy_from_slice(&MAP_TARGET_MEMMAP.to_le_bytes());
    let count = u32::try_from(raw.len()).unwrap_or(u32::MAX);
    header[48..52].copy_from_slice(&count.to_le_bytes());
    let table: Vec<u8> = entries.flatten().copied().collect();
    let encoded = PhysicalImage::encode(
        MAP_TARGET_START_INFO,
        &[
            (MAP_TARGET_START_INFO, &header),
            (MAP_TARGET_MEMMAP, &table),
        ],
    );
    let image = PhysicalImage::decode(&encoded).expect("encoded above");
    match BootInfo::from_start_info(&image, image.entry) {
        Ok(info) => {
            assert!(raw.len() <= MAX_RAW_ENTRIES);
            check_memory_map(&info.memory_map, &raw);
        }
        Err(StartInfoError::TooManyMemoryMapEntries(n)) => {
            assert!(n as usize > MAX_RAW_ENTRIES);
        }
        Err(error) => panic!("a start_info with only a memory map was refused: {error}"),
    }
}
