//! `hvm_start_info` validation: the raw structure a PVH loader leaves at the
//! address in `ebx` becomes an owned [`BootInfo`], and no raw physical pointer
//! travels further into the kernel. Layouts: [`layout`]; what loaders put
//! where: docs/pvh.md.
#![deny(unsafe_code)]

mod layout;
pub mod memory_map;

use arrayvec::ArrayVec;
use zerocopy::{FromZeros, IntoBytes};

use self::layout::{
    MemmapEntry, ModlistEntry, START_INFO_MAGIC, START_INFO_V0_SIZE, StartInfoLayout,
};
use self::memory_map::{MAX_RAW_ENTRIES, MemoryMap, RawEntry};

/// Longest command line kept, without its NUL. Linux x86 allows 2048
/// (`COMMAND_LINE_SIZE`); QEMU's SeaBIOS `pvh.bin` buffer is 4096.
pub const CMDLINE_MAX: usize = 4096;
/// Longest module command line kept, without its NUL.
pub const MODULE_CMDLINE_MAX: usize = 128;
/// Most modules accepted; a larger `nr_modules` is a corrupt structure
/// (QEMU and Firecracker pass one, the `-initrd`).
pub const MAX_MODULES: usize = 8;

/// Reads physical memory on behalf of the parser. The kernel implements it
/// over the boot identity map; tests implement it over a byte vector.
pub trait PhysicalMemory {
    /// Fills `buf` from physical address `paddr`, or refuses the whole range.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach>;
}

/// A physical range the reader cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfReach;

/// Why a `start_info` was refused. Every variant names what was wrong and
/// where, so the console message alone is enough to debug a loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartInfoError {
    #[error("no start_info: the loader passed address 0 in ebx")]
    NullStartInfo,
    #[error("start_info magic is {0:#010x}, expected {START_INFO_MAGIC:#010x}: not a PVH loader?")]
    BadMagic(u32),
    #[error("start_info version {0} is not supported (0 and 1 are)")]
    UnsupportedVersion(u32),
    /// A structure lies outside memory the kernel can read at this point.
    #[error("{what} at {paddr:#x} ({len} bytes) is outside readable memory")]
    Unreachable {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
    /// No NUL within the limit.
    #[error("{what} at {paddr:#x} has no NUL terminator within {limit} bytes")]
    Unterminated {
        what: &'static str,
        paddr: u64,
        limit: usize,
    },
    #[error("memory map claims {0} entries (at most {MAX_RAW_ENTRIES} are accepted)")]
    TooManyMemoryMapEntries(u32),
    #[error("start_info claims {0} modules (at most {MAX_MODULES} are accepted)")]
    TooManyModules(u32),
    /// A structure or module the loader pointed to is not in its own map.
    #[error("{what} at {paddr:#x} ({len} bytes) is not inside any range of the memory map")]
    OutsideMemoryMap {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
}

/// A module (`-initrd`) as the loader described it. The bytes stay where the
/// loader put them; the kernel reserves that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its place in the loader's module list.
    pub index: usize,
    pub paddr: u64,
    pub size: u64,
    pub cmdline: ArrayVec<u8, MODULE_CMDLINE_MAX>,
    /// Why the module's command line was not read (it is then empty):
    /// QEMU 10's qboot leaves stack garbage in `cmdline_paddr`, and Linux
    /// ignores module command lines, so a bad one costs only itself.
    pub cmdline_ignored: Option<StartInfoError>,
}

/// Why a module from the loader's list is not used. The boot goes on
/// without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModuleProblem {
    #[error("address 0 or a range that wraps ({paddr:#x}, {size} bytes)")]
    BadRange { paddr: u64, size: u64 },
    /// Reserved or absent memory is not the module's to claim: QEMU 10
    /// loads an initrd flush against the top of RAM, over the pages SeaBIOS
    /// reserves there for its ACPI tables.
    #[error("{paddr:#x}+{size:#x} is not inside one RAM range of the memory map")]
    NotRam { paddr: u64, size: u64 },
}

/// A module the kernel skipped, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnusableModule {
    pub index: usize,
    pub problem: ModuleProblem,
}

/// Everything the kernel needs from the loader, owned and validated.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub version: u32,
    cmdline: ArrayVec<u8, CMDLINE_MAX>,
    pub memory_map: MemoryMap,
    /// Raw entry count before normalisation (0 for version 0).
    pub memory_map_entries: u32,
    /// The modules the kernel may use.
    pub modules: ArrayVec<Module, MAX_MODULES>,
    /// The others: reported, not used.
    pub unusable_modules: ArrayVec<UnusableModule, MAX_MODULES>,
    /// `rsdp_paddr`, when the loader gave one.
    pub rsdp: Option<u64>,
    /// `[start, end)` of every structure the loader wrote and this was
    /// read from: start_info, the memory map, the command line, the module
    /// list and the module command lines (the modules are in `modules`).
    /// Memory the kernel takes for itself below 1 MiB must avoid them.
    pub loader_ranges: ArrayVec<(u64, u64), MAX_LOADER_RANGES>,
}

/// Structures a loader writes besides the modules: start_info, the memory
/// map, the command line, the module list, one command line per module.
pub const MAX_LOADER_RANGES: usize = 4 + MAX_MODULES;

impl BootInfo {
    /// The command line's bytes, without the NUL. Not necessarily UTF-8.
    pub fn cmdline_bytes(&self) -> &[u8] {
        &self.cmdline
    }

    /// The command line as text; bytes that are not UTF-8 end the text
    /// (a command line is ASCII in every loader this kernel knows).
    pub fn cmdline(&self) -> &str {
        match core::str::from_utf8(&self.cmdline) {
            Ok(text) => text,
            Err(error) => {
                // The prefix up to the error is valid UTF-8 by definition.
                core::str::from_utf8(&self.cmdline[..error.valid_up_to()]).unwrap_or("")
            }
        }
    }

    /// Nothing read yet (no command line, map or modules). Not `const`:
    /// from `ArrayVec::new_const`'s constant, whose buffer bytes are
    /// uninitialised, LLVM writes zeroes over the whole 4 KiB command-line
    /// buffer (560 instructions under icount); `ArrayVec::new` writes the
    /// lengths alone.
    pub fn empty() -> Self {
        Self {
            version: 0,
            cmdline: ArrayVec::new(),
            memory_map: MemoryMap::new(),
            memory_map_entries: 0,
            modules: ArrayVec::new(),
            unusable_modules: ArrayVec::new(),
            rsdp: None,
            loader_ranges: ArrayVec::new(),
        }
    }

    /// Parses and validates the `hvm_start_info` at `paddr`.
    pub fn from_start_info(
        memory: &impl PhysicalMemory,
        paddr: u64,
    ) -> Result<Self, StartInfoError> {
        let mut info = Self::empty();
        info.read_start_info(memory, paddr)?;
        Ok(info)
    }

    /// As [`Self::from_start_info`], into `self` (which must be
    /// [`Self::empty`]): the boot fills its one `BootInfo` where it stays,
    /// since each move of its 7.8 KiB is a copy (2 700 instructions of
    /// them before). On an error `self` is partly filled; do not use it.
    pub fn read_start_info(
        &mut self,
        memory: &impl PhysicalMemory,
        paddr: u64,
    ) -> Result<(), StartInfoError> {
        if paddr == 0 {
            return Err(StartInfoError::NullStartInfo);
        }
        let mut header = StartInfoLayout::new_zeroed();
        read(
            memory,
            "start_info",
            paddr,
            &mut header.as_mut_bytes()[..START_INFO_V0_SIZE],
        )?;
        let magic = header.magic.get();
        if magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = header.version.get();
        if version > 1 {
            return Err(StartInfoError::UnsupportedVersion(version));
        }
        if version >= 1 {
            read(memory, "start_info", paddr, header.as_mut_bytes())?;
        }
        let nr_modules = header.nr_modules.get();
        let modlist_paddr = header.modlist_paddr.get();
        let cmdline_paddr = header.cmdline_paddr.get();
        let rsdp_paddr = header.rsdp_paddr.get();
        // Version 0 has no map: the bytes after it are not ours to read.
        let (memmap_paddr, memmap_entries) = if version >= 1 {
            (header.memmap_paddr.get(), header.memmap_entries.get())
        } else {
            (0, 0)
        };

        self.version = version;
        self.memory_map_entries = memmap_entries;
        self.rsdp = (rsdp_paddr != 0).then_some(rsdp_paddr);
        let loader_ranges = &mut self.loader_ranges;
        let header_size = if version >= 1 {
            size_of::<StartInfoLayout>()
        } else {
            START_INFO_V0_SIZE
        };
        record(loader_ranges, paddr, header_size as u64);
        record(
            loader_ranges,
            memmap_paddr,
            u64::from(memmap_entries) * size_of::<MemmapEntry>() as u64,
        );

        read_memory_map(memory, memmap_paddr, memmap_entries, &mut self.memory_map)?;
        let memory_map = &self.memory_map;
        // Only a loader that gave a map can be held to it.
        let check_in_map = |what, start: u64, len: u64| {
            if memory_map.regions().is_empty() || memory_map.describes(start, len) {
                Ok(())
            } else {
                Err(StartInfoError::OutsideMemoryMap {
                    what,
                    paddr: start,
                    len,
                })
            }
        };

        let cmdline = &mut self.cmdline;
        if cmdline_paddr != 0 {
            read_c_string(memory, "command line", cmdline_paddr, cmdline)?;
            check_in_map("command line", cmdline_paddr, cmdline.len() as u64 + 1)?;
            record(loader_ranges, cmdline_paddr, cmdline.len() as u64 + 1);
        }

        let modules = &mut self.modules;
        read_modules(memory, modlist_paddr, nr_modules, loader_ranges, modules)?;
        if nr_modules > 0 {
            check_in_map(
                "module list",
                modlist_paddr,
                u64::from(nr_modules) * size_of::<ModlistEntry>() as u64,
            )?;
            record(
                loader_ranges,
                modlist_paddr,
                u64::from(nr_modules) * size_of::<ModlistEntry>() as u64,
            );
        }
        let unusable_modules = &mut self.unusable_modules;
        modules.retain(|module| {
            let (paddr, size) = (module.paddr, module.size);
            let problem = if paddr == 0 || paddr.checked_add(size).is_none() {
                Some(ModuleProblem::BadRange { paddr, size })
            } else if !memory_map.regions().is_empty() && !memory_map.is_ram(paddr, size) {
                Some(ModuleProblem::NotRam { paddr, size })
            } else {
                None
            };
            match problem {
                Some(problem) => {
                    unusable_modules.push(UnusableModule {
                        index: module.index,
                        problem,
                    });
                    false
                }
                None => true,
            }
        });
        Ok(())
    }
}

fn read_memory_map(
    memory: &impl PhysicalMemory,
    paddr: u64,
    entries: u32,
    map: &mut MemoryMap,
) -> Result<(), StartInfoError> {
    if paddr == 0 || entries == 0 {
        return Ok(());
    }
    if entries as usize > MAX_RAW_ENTRIES {
        return Err(StartInfoError::TooManyMemoryMapEntries(entries));
    }
    let mut raw: ArrayVec<RawEntry, MAX_RAW_ENTRIES> = ArrayVec::new();
    let mut entry = MemmapEntry::new_zeroed();
    for index in 0..u64::from(entries) {
        let entry_paddr = array_element::<MemmapEntry>(paddr, index, "memory map")?;
        read(memory, "memory map", entry_paddr, entry.as_mut_bytes())?;
        raw.push(RawEntry {
            base: entry.addr.get(),
            size: entry.size.get(),
            kind: entry.kind.get(),
        });
    }
    map.normalise_into(&raw);
    Ok(())
}

/// Adds `[start, start + length)` to `ranges` (a zero address or length is
/// nothing the loader wrote).
fn record(ranges: &mut ArrayVec<(u64, u64), MAX_LOADER_RANGES>, start: u64, length: u64) {
    if start != 0 && length != 0 {
        let _ = ranges.try_push((start, start.saturating_add(length)));
    }
}

/// The module list; each module command line read is added to `ranges`.
fn read_modules(
    memory: &impl PhysicalMemory,
    paddr: u64,
    count: u32,
    ranges: &mut ArrayVec<(u64, u64), MAX_LOADER_RANGES>,
    modules: &mut ArrayVec<Module, MAX_MODULES>,
) -> Result<(), StartInfoError> {
    if count == 0 {
        return Ok(());
    }
    if count as usize > MAX_MODULES {
        return Err(StartInfoError::TooManyModules(count));
    }
    if paddr == 0 {
        return Err(StartInfoError::Unreachable {
            what: "module list",
            paddr,
            len: u64::from(count) * size_of::<ModlistEntry>() as u64,
        });
    }
    let mut entry = ModlistEntry::new_zeroed();
    for (index, position) in (0..u64::from(count)).enumerate() {
        let entry_paddr = array_element::<ModlistEntry>(paddr, position, "module list")?;
        read(memory, "module list", entry_paddr, entry.as_mut_bytes())?;
        let mut module = Module {
            index,
            paddr: entry.paddr.get(),
            size: entry.size.get(),
            cmdline: ArrayVec::new(),
            cmdline_ignored: None,
        };
        let cmdline_paddr = entry.cmdline_paddr.get();
        if cmdline_paddr != 0 {
            let read = read_c_string(
                memory,
                "module command line",
                cmdline_paddr,
                &mut module.cmdline,
            );
            match read {
                Ok(()) => record(ranges, cmdline_paddr, module.cmdline.len() as u64 + 1),
                Err(error) => {
                    module.cmdline.clear();
                    module.cmdline_ignored = Some(error);
                }
            }
        }
        modules.push(module);
    }
    Ok(())
}

/// Address of element `index` of an array of `T` at `base`, refusing wrap-around.
fn array_element<T>(base: u64, index: u64, what: &'static str) -> Result<u64, StartInfoError> {
    index
        .checked_mul(size_of::<T>() as u64)
        .and_then(|offset| base.checked_add(offset))
        .ok_or(StartInfoError::Unreachable {
            what,
            paddr: base,
            len: u64::MAX,
        })
}

/// Copies a NUL-terminated string of at most `N` bytes (plus its NUL).
fn read_c_string<const N: usize>(
    memory: &impl PhysicalMemory,
    what: &'static str,
    paddr: u64,
    out: &mut ArrayVec<u8, N>,
) -> Result<(), StartInfoError> {
    let mut chunk = [0u8; 64];
    let mut offset = 0u64;
    loop {
        let chunk_paddr = paddr
            .checked_add(offset)
            .ok_or(StartInfoError::Unreachable {
                what,
                paddr,
                len: offset,
            })?;
        // Read byte-wise near the end of reachable memory: a short string
        // just below a boundary must not fail because the chunk crosses it.
        let got = if memory.read(chunk_paddr, &mut chunk).is_ok() {
            chunk.len()
        } else {
            read(memory, what, chunk_paddr, &mut chunk[..1])?;
            1
        };
        // Found and copied a chunk at a time, not pushed byte by byte (10
        // instructions a byte of the command line).
        let chunk = &chunk[..got];
        let end = nul_position(chunk);
        if out
            .try_extend_from_slice(&chunk[..end.unwrap_or(got)])
            .is_err()
        {
            return Err(StartInfoError::Unterminated {
                what,
                paddr,
                limit: N,
            });
        }
        if end.is_some() {
            return Ok(());
        }
        offset += got as u64;
    }
}

/// The index of the first NUL in `bytes`, eight bytes at a time: a word
/// holds a zero byte exactly when `(w - 0x01…01) & !w & 0x80…80` is not
/// zero, and its lowest set bit marks the first one (a borrow only
/// propagates upwards, past the first zero). A byte at a time cost 4-5
/// instructions a byte of the command line.
fn nul_position(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        let word = u64::from_le_bytes(lanes);
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&byte| byte == 0)
        .map(|index| at + index)
}

fn read(
    memory: &impl PhysicalMemory,
    what: &'static str,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), StartInfoError> {
    memory
        .read(paddr, buf)
        .map_err(|OutOfReach| StartInfoError::Unreachable {
            what,
            paddr,
            len: buf.len() as u64,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_position_finds_the_first_nul_at_every_offset() {
        for length in 0..40 {
            for fill in [0x01u8, 0x80, 0xff, b'a'] {
                let mut bytes = vec![fill; length];
                assert_eq!(super::nul_position(&bytes), None, "{length} {fill:#x}");
                for first in 0..length {
                    bytes.fill(fill);
                    bytes[first] = 0;
                    // A later NUL, and a 0x01 after the first (the borrow's case).
                    for (later, byte) in [(first + 1, 0x01), (first + 3, 0)] {
                        if later < length {
                            bytes[later] = byte;
                        }
                    }
                    assert_eq!(super::nul_position(&bytes), Some(first), "{bytes:x?}");
                }
            }
        }
    }

    use super::memory_map::MemoryKind;
    use super::*;

    /// Physical memory `[0, bytes.len())`; everything above is out of reach.
    struct FakeMemory {
        bytes: Vec<u8>,
    }

    impl PhysicalMemory for FakeMemory {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
            let start = usize::try_from(paddr).map_err(|_| OutOfReach)?;
            let end = start.checked_add(buf.len()).ok_or(OutOfReach)?;
            let source = self.bytes.get(start..end).ok_or(OutOfReach)?;
            buf.copy_from_slice(source);
            Ok(())
        }
    }

    const START_INFO: u64 = 0x1000;
    const MEMMAP: u64 = 0x2000;
    const CMDLINE: u64 = 0x3000;
    const MODLIST: u64 = 0x4000;
    const MODULE: u64 = 0x8000;

    /// Builds a 64 KiB guest the way qboot lays one out, at small addresses.
    struct Builder {
        memory: FakeMemory,
    }

    impl Builder {
        fn new() -> Self {
            let mut builder = Self {
                memory: FakeMemory {
                    bytes: vec![0; 0x10000],
                },
            };
            builder.put_u32(START_INFO, START_INFO_MAGIC);
            builder.put_u32(START_INFO + 4, 1);
            builder.put_u64(START_INFO + 24, CMDLINE);
            builder.put_bytes(CMDLINE, b"console=ttyS0 hello\0");
            builder.memmap(&[(0, 0x10000, 1), (0, 0, 0)]);
            builder
        }

        fn put_bytes(&mut self, at: u64, bytes: &[u8]) {
            let at = usize::try_from(at).unwrap();
            self.memory.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        }

        fn put_u32(&mut self, at: u64, value: u32) {
            self.put_bytes(at, &value.to_le_bytes());
        }

        fn put_u64(&mut self, at: u64, value: u64) {
            self.put_bytes(at, &value.to_le_bytes());
        }

        fn memmap(&mut self, entries: &[(u64, u64, u32)]) {
            for (index, &(base, size, kind)) in entries.iter().enumerate() {
                let at = MEMMAP + (index * size_of::<MemmapEntry>()) as u64;
                self.put_u64(at, base);
                self.put_u64(at + 8, size);
                self.put_u32(at + 16, kind);
            }
            self.put_u64(START_INFO + 40, MEMMAP);
            self.put_u32(START_INFO + 48, u32::try_from(entries.len()).unwrap());
        }

        fn module(&mut self, paddr: u64, size: u64, cmdline: u64) {
            self.put_u32(START_INFO + 12, 1);
            self.put_u64(START_INFO + 16, MODLIST);
            self.put_u64(MODLIST, paddr);
            self.put_u64(MODLIST + 8, size);
            self.put_u64(MODLIST + 16, cmdline);
        }

        fn parse(&self) -> Result<BootInfo, StartInfoError> {
            BootInfo::from_start_info(&self.memory, START_INFO)
        }
    }

    #[test]
    fn well_formed_v1() {
        let mut guest = Builder::new();
        guest.put_u64(START_INFO + 32, 0xf34d0);
        guest.module(MODULE, 0x1234, 0);
        let info = guest.parse().unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.cmdline(), "console=ttyS0 hello");
        assert_eq!(info.memory_map.usable_bytes(), 0x10000);
        assert_eq!(info.memory_map.cleanup.empty, 1, "qboot's zero entry");
        assert_eq!(info.modules.len(), 1);
        assert_eq!(
            (info.modules[0].paddr, info.modules[0].size),
            (MODULE, 0x1234)
        );
        assert_eq!(info.rsdp, Some(0xf34d0));
    }

    #[test]
    fn version_0_has_no_memory_map_even_if_bytes_follow() {
        let mut guest = Builder::new();
        guest.put_u32(START_INFO + 4, 0);
        let info = guest.parse().unwrap();
        assert_eq!(info.version, 0);
        assert!(info.memory_map.regions().is_empty());
        assert_eq!(info.cmdline(), "console=ttyS0 hello");
        assert_eq!(info.rsdp, None);
    }

    #[test]
    fn wrong_magic() {
        let mut guest = Builder::new();
        guest.put_u32(START_INFO, 0x1bad_b002);
        assert_eq!(
            guest.parse().unwrap_err(),
            StartInfoError::BadMagic(0x1bad_b002)
        );
    }

    #[test]
    fn unknown_version() {
        let mut guest = Builder::new();
        guest.put_u32(START_INFO + 4, 2);
        assert_eq!(
            guest.parse().unwrap_err(),
            StartInfoError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn null_and_unreachable_start_info() {
        let guest = Builder::new();
        assert_eq!(
            BootInfo::from_start_info(&guest.memory, 0).unwrap_err(),
            StartInfoError::NullStartInfo
        );
        assert!(matches!(
            BootInfo::from_start_info(&guest.memory, 0xfff0).unwrap_err(),
            StartInfoError::Unreachable {
                what: "start_info",
                ..
            }
        ));
    }

    #[test]
    fn memory_map_outside_reachable_memory() {
        let mut guest = Builder::new();
        guest.put_u64(START_INFO + 40, 0xffff_ffff_0000_0000);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::Unreachable {
                what: "memory map",
                paddr: 0xffff_ffff_0000_0000,
                ..
            }
        ));
    }

    #[test]
    fn memory_map_array_that_wraps_the_address_space() {
        let mut guest = Builder::new();
        guest.put_u64(START_INFO + 40, u64::MAX - 8);
        guest.put_u32(START_INFO + 48, 2);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::Unreachable {
                what: "memory map",
                ..
            }
        ));
    }

    #[test]
    fn absurd_memory_map_count() {
        let mut guest = Builder::new();
        guest.put_u32(START_INFO + 48, u32::MAX);
        assert_eq!(
            guest.parse().unwrap_err(),
            StartInfoError::TooManyMemoryMapEntries(u32::MAX)
        );
    }

    #[test]
    fn absurd_module_count() {
        let mut guest = Builder::new();
        guest.module(MODULE, 16, 0);
        guest.put_u32(START_INFO + 12, 100_000);
        assert_eq!(
            guest.parse().unwrap_err(),
            StartInfoError::TooManyModules(100_000)
        );
    }

    /// The one module of `guest`, which must have been skipped.
    fn unusable(guest: &Builder) -> UnusableModule {
        let info = guest.parse().unwrap();
        assert!(info.modules.is_empty(), "{:?}", info.modules);
        assert_eq!(info.unusable_modules.len(), 1);
        info.unusable_modules[0]
    }

    #[test]
    fn module_outside_the_memory_map_is_skipped() {
        let mut guest = Builder::new();
        guest.module(0x2000_0000, 0x1000, 0);
        assert_eq!(
            unusable(&guest),
            UnusableModule {
                index: 0,
                problem: ModuleProblem::NotRam {
                    paddr: 0x2000_0000,
                    size: 0x1000
                }
            }
        );
    }

    #[test]
    fn module_whose_end_wraps_is_skipped() {
        let mut guest = Builder::new();
        guest.module(u64::MAX - 10, 100, 0);
        assert!(matches!(
            unusable(&guest).problem,
            ModuleProblem::BadRange { size: 100, .. }
        ));
        guest.module(0, 100, 0);
        assert!(matches!(
            unusable(&guest).problem,
            ModuleProblem::BadRange { paddr: 0, .. }
        ));
    }

    /// QEMU 10 with ACPI on: SeaBIOS reserves the last page of RAM for its
    /// tables, and QEMU loads the initrd flush against the top, over it.
    #[test]
    fn module_over_reserved_memory_at_the_top_of_ram_is_skipped() {
        let mut guest = Builder::new();
        guest.memmap(&[(0, 0xf000, 1), (0xf000, 0x1000, 2)]);
        guest.module(0xe000, 0x2000, 0);
        assert_eq!(
            unusable(&guest).problem,
            ModuleProblem::NotRam {
                paddr: 0xe000,
                size: 0x2000
            }
        );
        let mut guest = Builder::new();
        guest.memmap(&[(0, 0xf000, 1), (0xf000, 0x1000, 2)]);
        guest.module(0xf000, 0x100, 0);
        assert!(matches!(
            unusable(&guest).problem,
            ModuleProblem::NotRam { .. }
        ));
    }

    /// QEMU 10's qboot: `cmdline_paddr` is stack garbage (seen:
    /// 0x202000f18f2), or points at bytes with no NUL. The module is kept,
    /// its command line dropped.
    #[test]
    fn module_with_a_garbage_command_line_pointer_is_kept() {
        let mut guest = Builder::new();
        guest.module(MODULE, 16, 0x0202_000f_18f2);
        let info = guest.parse().unwrap();
        assert!(info.unusable_modules.is_empty());
        assert_eq!(info.modules[0].paddr, MODULE);
        assert!(info.modules[0].cmdline.is_empty());
        assert!(matches!(
            info.modules[0].cmdline_ignored,
            Some(StartInfoError::Unreachable {
                what: "module command line",
                paddr: 0x0202_000f_18f2,
                ..
            })
        ));
        let mut guest = Builder::new();
        guest.put_bytes(0x5000, &[b'x'; 0x200]);
        guest.module(MODULE, 16, 0x5000);
        let info = guest.parse().unwrap();
        assert!(info.modules[0].cmdline.is_empty());
        assert!(matches!(
            info.modules[0].cmdline_ignored,
            Some(StartInfoError::Unterminated { .. })
        ));
    }

    #[test]
    fn good_and_bad_modules_keep_their_indices() {
        let mut guest = Builder::new();
        guest.put_u32(START_INFO + 12, 2);
        guest.put_u64(START_INFO + 16, MODLIST);
        guest.put_u64(MODLIST, 0x2000_0000);
        guest.put_u64(MODLIST + 8, 0x10);
        guest.put_u64(MODLIST + 32, MODULE);
        guest.put_u64(MODLIST + 40, 0x10);
        let info = guest.parse().unwrap();
        assert_eq!(info.unusable_modules[0].index, 0);
        assert_eq!((info.modules[0].index, info.modules[0].paddr), (1, MODULE));
    }

    #[test]
    fn module_list_pointer_missing() {
        let mut guest = Builder::new();
        guest.module(MODULE, 16, 0);
        guest.put_u64(START_INFO + 16, 0);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::Unreachable {
                what: "module list",
                ..
            }
        ));
    }

    #[test]
    fn module_command_line_is_copied() {
        let mut guest = Builder::new();
        guest.put_bytes(0x5000, b"rootfs\0");
        guest.module(MODULE, 16, 0x5000);
        assert_eq!(
            guest.parse().unwrap().modules[0].cmdline.as_slice(),
            b"rootfs"
        );
    }

    #[test]
    fn every_structure_the_loader_wrote_is_a_loader_range() {
        let mut guest = Builder::new();
        guest.put_bytes(0x5000, b"rootfs\0");
        guest.module(MODULE, 16, 0x5000);
        let info = guest.parse().unwrap();
        let memmap_size = 2 * size_of::<MemmapEntry>() as u64;
        assert_eq!(
            info.loader_ranges.as_slice(),
            [
                (START_INFO, START_INFO + size_of::<StartInfoLayout>() as u64),
                (MEMMAP, MEMMAP + memmap_size),
                (CMDLINE, CMDLINE + 20),
                (0x5000, 0x5007),
                (MODLIST, MODLIST + size_of::<ModlistEntry>() as u64),
            ]
        );
    }

    #[test]
    fn command_line_without_nul() {
        let mut guest = Builder::new();
        let filler = vec![b'a'; CMDLINE_MAX + 100];
        guest.put_bytes(CMDLINE, &filler);
        assert_eq!(
            guest.parse().unwrap_err(),
            StartInfoError::Unterminated {
                what: "command line",
                paddr: CMDLINE,
                limit: CMDLINE_MAX
            }
        );
    }

    #[test]
    fn command_line_running_off_the_end_of_memory() {
        let mut guest = Builder::new();
        let at = 0x10000 - 10;
        guest.put_bytes(at, &[b'x'; 10]);
        guest.put_u64(START_INFO + 24, at);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::Unreachable {
                what: "command line",
                ..
            }
        ));
    }

    #[test]
    fn command_line_ending_just_below_the_end_of_memory() {
        let mut guest = Builder::new();
        let at = 0x10000 - 4;
        guest.put_bytes(at, b"abc\0");
        guest.put_u64(START_INFO + 24, at);
        assert_eq!(guest.parse().unwrap().cmdline(), "abc");
    }

    #[test]
    fn longest_command_line_is_kept_whole() {
        let mut guest = Builder::new();
        let mut text = vec![b'y'; CMDLINE_MAX];
        text.push(0);
        guest.put_bytes(CMDLINE, &text);
        assert_eq!(guest.parse().unwrap().cmdline().len(), CMDLINE_MAX);
    }

    #[test]
    fn command_line_with_invalid_utf8_is_cut_at_the_bad_byte() {
        let mut guest = Builder::new();
        guest.put_bytes(CMDLINE, b"quiet \xff loglevel=3\0");
        let info = guest.parse().unwrap();
        assert_eq!(info.cmdline(), "quiet ");
        assert_eq!(info.cmdline_bytes().len(), 18);
    }

    #[test]
    fn no_command_line() {
        let mut guest = Builder::new();
        guest.put_u64(START_INFO + 24, 0);
        assert_eq!(guest.parse().unwrap().cmdline(), "");
    }

    #[test]
    fn command_line_outside_the_memory_map() {
        let mut guest = Builder::new();
        guest.memmap(&[(0, 0x3000, 1)]);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::OutsideMemoryMap {
                what: "command line",
                ..
            }
        ));
    }

    #[test]
    fn overlapping_memory_map_is_resolved() {
        let mut guest = Builder::new();
        guest.memmap(&[(0, 0x10000, 1), (0x8000, 0x1000, 2), (0x8800, 0x100, 1)]);
        let info = guest.parse().unwrap();
        assert_eq!(info.memory_map.usable_bytes(), 0xf000);
        assert_eq!(info.memory_map.regions()[1].kind, MemoryKind::Reserved);
        assert_eq!(info.memory_map.cleanup.overlaps, 3, "every pair counts");
    }

    #[test]
    fn errors_explain_themselves() {
        let text = StartInfoError::BadMagic(0).to_string();
        assert!(text.contains("0x336ec578"), "{text}");
        let text = StartInfoError::Unterminated {
            what: "command line",
            paddr: 0x3000,
            limit: 4096,
        }
        .to_string();
        assert!(text.contains("command line") && text.contains("0x3000") && text.contains("4096"));
    }
}
