//! The identity map the PVH stub (`boot/src/pvh/pvh.s`) builds before any
//! Rust runs: the first 4 GiB, physical = virtual, in 2 MiB pages held by
//! four page directories. It covers RAM below 3 GiB and microvm's MMIO window
//! (virtio-mmio at 0xfeb00000, I/O APIC 0xfec00000, local APIC 0xfee00000;
//! docs/qemu-microvm.md). The stub's tables, the kernel's page-table code and
//! its physical-memory reader all take the extent from here.

/// Bytes per page of the boot map (a page-directory entry with PS set).
pub const PAGE_SIZE: u64 = 2 << 20;
/// Bytes per page directory: 512 entries of [`PAGE_SIZE`].
pub const DIRECTORY_SPAN: u64 = ENTRIES_PER_TABLE as u64 * PAGE_SIZE;
/// Entries in every x86-64 paging structure (Intel SDM vol. 3 §4.5).
pub const ENTRIES_PER_TABLE: usize = 512;
/// Page directories, one per page-directory-pointer-table entry from 0.
pub const DIRECTORIES: usize = 4;
/// 2 MiB pages in the boot map.
pub const PAGES: usize = DIRECTORIES * ENTRIES_PER_TABLE;
/// One past the highest byte the boot map reaches: 4 GiB.
pub const END: u64 = DIRECTORIES as u64 * DIRECTORY_SPAN;

const _: () = assert!(
    END == 1 << 32,
    "the 32-bit PVH entry and microvm's MMIO fit below 4 GiB"
);
const _: () = assert!(PAGE_SIZE.is_power_of_two());

/// log2 of [`PAGE_SIZE`], for the stub's `.rept` that writes the entries.
pub const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
