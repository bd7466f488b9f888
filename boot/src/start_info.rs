//! `hvm_start_info` validation: the raw structure a PVH loader leaves at the
//! address in `ebx` becomes an owned [`BootInfo`], and no raw physical pointer
//! travels further into the kernel.
//!
//! Layouts: xen `include/public/arch-x86/hvm/start_info.h`, summarised with
//! offsets in `../shared/reference/pvh-microvm-facts.md` §1.

use core::fmt;

use arrayvec::ArrayVec;

use crate::memory_map::{MAX_RAW_ENTRIES, MemoryMap, RawEntry};

/// `XEN_HVM_START_MAGIC_VALUE`: "xEn3" with bit 7 set on the 'E'.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Size of version 0 of the structure (up to and including `rsdp_paddr`).
pub const START_INFO_V0_SIZE: usize = 40;
/// Size of version 1 (adds `memmap_paddr`, `memmap_entries`, `reserved`).
pub const START_INFO_V1_SIZE: usize = 56;
/// `hvm_modlist_entry` size.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// `hvm_memmap_table_entry` size.
pub const MEMMAP_ENTRY_SIZE: usize = 24;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// `ebx` was 0.
    NullStartInfo,
    BadMagic(u32),
    UnsupportedVersion(u32),
    /// A structure lies outside memory the kernel can read at this point.
    Unreachable {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
    /// No NUL within the limit.
    Unterminated {
        what: &'static str,
        paddr: u64,
        limit: usize,
    },
    TooManyMemoryMapEntries(u32),
    TooManyModules(u32),
    /// A structure or module the loader pointed to is not in its own map.
    OutsideMemoryMap {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NullStartInfo => write!(f, "no start_info: the loader passed address 0 in ebx"),
            Self::BadMagic(magic) => write!(
                f,
                "start_info magic is {magic:#010x}, expected {START_INFO_MAGIC:#010x}: not a PVH loader?"
            ),
            Self::UnsupportedVersion(version) => {
                write!(
                    f,
                    "start_info version {version} is not supported (0 and 1 are)"
                )
            }
            Self::Unreachable { what, paddr, len } => write!(
                f,
                "{what} at {paddr:#x} ({len} bytes) is outside readable memory"
            ),
            Self::Unterminated { what, paddr, limit } => write!(
                f,
                "{what} at {paddr:#x} has no NUL terminator within {limit} bytes"
            ),
            Self::TooManyMemoryMapEntries(count) => write!(
                f,
                "memory map claims {count} entries (at most {MAX_RAW_ENTRIES} are accepted)"
            ),
            Self::TooManyModules(count) => write!(
                f,
                "start_info claims {count} modules (at most {MAX_MODULES} are accepted)"
            ),
            Self::OutsideMemoryMap { what, paddr, len } => write!(
                f,
                "{what} at {paddr:#x} ({len} bytes) is not inside any range of the memory map"
            ),
        }
    }
}

/// A module (`-initrd`) as the loader described it. The bytes stay where the
/// loader put them; the kernel reserves that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub paddr: u64,
    pub size: u64,
    pub cmdline: ArrayVec<u8, MODULE_CMDLINE_MAX>,
}

/// Everything the kernel needs from the loader, owned and validated.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub start_info_paddr: u64,
    pub version: u32,
    pub flags: u32,
    cmdline: ArrayVec<u8, CMDLINE_MAX>,
    pub memory_map: MemoryMap,
    /// Raw entry count before normalisation (0 for version 0).
    pub memory_map_entries: u32,
    pub modules: ArrayVec<Module, MAX_MODULES>,
    /// `rsdp_paddr`, when the loader gave one.
    pub rsdp: Option<u64>,
}

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

    /// Parses and validates the `hvm_start_info` at `paddr`.
    pub fn from_start_info(
        memory: &impl PhysicalMemory,
        paddr: u64,
    ) -> Result<Self, StartInfoError> {
        if paddr == 0 {
            return Err(StartInfoError::NullStartInfo);
        }
        let mut header = [0u8; START_INFO_V1_SIZE];
        read(
            memory,
            "start_info",
            paddr,
            &mut header[..START_INFO_V0_SIZE],
        )?;
        let magic = le_u32(&header, 0);
        if magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = le_u32(&header, 4);
        if version > 1 {
            return Err(StartInfoError::UnsupportedVersion(version));
        }
        if version >= 1 {
            read(memory, "start_info", paddr, &mut header)?;
        }
        let flags = le_u32(&header, 8);
        let nr_modules = le_u32(&header, 12);
        let modlist_paddr = le_u64(&header, 16);
        let cmdline_paddr = le_u64(&header, 24);
        let rsdp_paddr = le_u64(&header, 32);
        let (memmap_paddr, memmap_entries) = if version >= 1 {
            (le_u64(&header, 40), le_u32(&header, 48))
        } else {
            (0, 0)
        };

        let memory_map = read_memory_map(memory, memmap_paddr, memmap_entries)?;
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

        let mut cmdline = ArrayVec::new();
        if cmdline_paddr != 0 {
            read_c_string(memory, "command line", cmdline_paddr, &mut cmdline)?;
            check_in_map("command line", cmdline_paddr, cmdline.len() as u64 + 1)?;
        }

        let modules = read_modules(memory, modlist_paddr, nr_modules)?;
        if nr_modules > 0 {
            check_in_map(
                "module list",
                modlist_paddr,
                u64::from(nr_modules) * MODLIST_ENTRY_SIZE as u64,
            )?;
        }
        for module in &modules {
            check_in_map("module", module.paddr, module.size)?;
        }

        Ok(Self {
            start_info_paddr: paddr,
            version,
            flags,
            cmdline,
            memory_map,
            memory_map_entries: memmap_entries,
            modules,
            rsdp: (rsdp_paddr != 0).then_some(rsdp_paddr),
        })
    }
}

fn read_memory_map(
    memory: &impl PhysicalMemory,
    paddr: u64,
    entries: u32,
) -> Result<MemoryMap, StartInfoError> {
    if paddr == 0 || entries == 0 {
        return Ok(MemoryMap::default());
    }
    if entries as usize > MAX_RAW_ENTRIES {
        return Err(StartInfoError::TooManyMemoryMapEntries(entries));
    }
    let mut raw: ArrayVec<RawEntry, MAX_RAW_ENTRIES> = ArrayVec::new();
    let mut bytes = [0u8; MEMMAP_ENTRY_SIZE];
    for index in 0..u64::from(entries) {
        let entry_paddr = array_element(paddr, index, MEMMAP_ENTRY_SIZE, "memory map")?;
        read(memory, "memory map", entry_paddr, &mut bytes)?;
        raw.push(RawEntry {
            base: le_u64(&bytes, 0),
            size: le_u64(&bytes, 8),
            kind: le_u32(&bytes, 16),
        });
    }
    Ok(MemoryMap::normalise(&raw))
}

fn read_modules(
    memory: &impl PhysicalMemory,
    paddr: u64,
    count: u32,
) -> Result<ArrayVec<Module, MAX_MODULES>, StartInfoError> {
    let mut modules = ArrayVec::new();
    if count == 0 {
        return Ok(modules);
    }
    if count as usize > MAX_MODULES {
        return Err(StartInfoError::TooManyModules(count));
    }
    if paddr == 0 {
        return Err(StartInfoError::Unreachable {
            what: "module list",
            paddr,
            len: u64::from(count) * MODLIST_ENTRY_SIZE as u64,
        });
    }
    let mut bytes = [0u8; MODLIST_ENTRY_SIZE];
    for index in 0..u64::from(count) {
        let entry_paddr = array_element(paddr, index, MODLIST_ENTRY_SIZE, "module list")?;
        read(memory, "module list", entry_paddr, &mut bytes)?;
        let mut module = Module {
            paddr: le_u64(&bytes, 0),
            size: le_u64(&bytes, 8),
            cmdline: ArrayVec::new(),
        };
        if module.paddr.checked_add(module.size).is_none() || module.paddr == 0 {
            return Err(StartInfoError::Unreachable {
                what: "module",
                paddr: module.paddr,
                len: module.size,
            });
        }
        let cmdline_paddr = le_u64(&bytes, 16);
        if cmdline_paddr != 0 {
            read_c_string(
                memory,
                "module command line",
                cmdline_paddr,
                &mut module.cmdline,
            )?;
        }
        modules.push(module);
    }
    Ok(modules)
}

/// Address of element `index` of an array at `base`, refusing wrap-around.
fn array_element(
    base: u64,
    index: u64,
    size: usize,
    what: &'static str,
) -> Result<u64, StartInfoError> {
    index
        .checked_mul(size as u64)
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
        for &byte in &chunk[..got] {
            if byte == 0 {
                return Ok(());
            }
            if out.try_push(byte).is_err() {
                return Err(StartInfoError::Unterminated {
                    what,
                    paddr,
                    limit: N,
                });
            }
        }
        offset += got as u64;
    }
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

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_map::MemoryKind;

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
            let at = at as usize;
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
                let at = MEMMAP + (index * MEMMAP_ENTRY_SIZE) as u64;
                self.put_u64(at, base);
                self.put_u64(at + 8, size);
                self.put_u32(at + 16, kind);
            }
            self.put_u64(START_INFO + 40, MEMMAP);
            self.put_u32(START_INFO + 48, entries.len() as u32);
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

    #[test]
    fn module_outside_the_memory_map() {
        let mut guest = Builder::new();
        guest.module(0x2000_0000, 0x1000, 0);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::OutsideMemoryMap {
                what: "module",
                paddr: 0x2000_0000,
                ..
            }
        ));
    }

    #[test]
    fn module_whose_end_wraps() {
        let mut guest = Builder::new();
        guest.module(u64::MAX - 10, 100, 0);
        assert!(matches!(
            guest.parse().unwrap_err(),
            StartInfoError::Unreachable { what: "module", .. }
        ));
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
