//! The structures a PVH loader leaves in memory, byte for byte (xen
//! `include/public/arch-x86/hvm/start_info.h`; docs/pvh.md has the offsets).
//! All fields are little-endian and unaligned, so they are read from any
//! buffer on any host.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_HVM_START_MAGIC_VALUE`: "xEn3" with bit 7 set on the 'E'.
pub(crate) const START_INFO_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info`, version 1. Version 0 ends after `rsdp_paddr`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Default)]
#[repr(C)]
pub(crate) struct StartInfoLayout {
    pub(crate) magic: U32,
    pub(crate) version: U32,
    pub(crate) flags: U32,
    pub(crate) nr_modules: U32,
    pub(crate) modlist_paddr: U64,
    pub(crate) cmdline_paddr: U64,
    pub(crate) rsdp_paddr: U64,
    /// Version 1 from here on.
    pub(crate) memmap_paddr: U64,
    pub(crate) memmap_entries: U32,
    pub(crate) reserved: U32,
}

/// Bytes of version 0 of the structure (up to and including `rsdp_paddr`).
pub(crate) const START_INFO_V0_SIZE: usize = core::mem::offset_of!(StartInfoLayout, memmap_paddr);

/// `struct hvm_modlist_entry`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Default)]
#[repr(C)]
pub(crate) struct ModlistEntry {
    pub(crate) paddr: U64,
    pub(crate) size: U64,
    pub(crate) cmdline_paddr: U64,
    pub(crate) reserved: U64,
}

/// `struct hvm_memmap_table_entry`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Default)]
#[repr(C)]
pub(crate) struct MemmapEntry {
    pub(crate) addr: U64,
    pub(crate) size: U64,
    pub(crate) kind: U32,
    pub(crate) reserved: U32,
}

const _: () = assert!(START_INFO_V0_SIZE == 40);
const _: () = assert!(size_of::<StartInfoLayout>() == 56);
const _: () = assert!(size_of::<ModlistEntry>() == 32);
const _: () = assert!(size_of::<MemmapEntry>() == 24);
