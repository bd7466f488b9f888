//! The PVH entry stub (`pvh.s`), the ELF note that points loaders at it, and
//! the boot page tables it carries ready-made (docs/pvh.md).
//!
//! The stub is assembly because the CPU mode demands it: the loader enters
//! in 32-bit protected mode without paging. Every constant it needs is
//! passed from here as a `const`/`sym` operand, so a selector, a control
//! register bit or the map's extent is written once.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::structures::gdt::DescriptorFlags;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags};

use crate::protocol::boot_map;

/// Selector of the 64-bit code segment in the stub's GDT (entry 1).
const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segment in the stub's GDT (entry 2).
const DATA_SELECTOR: u16 = 0x10;
/// `IA32_EFER` (Intel SDM vol. 4, table 2-2).
const MSR_EFER: u32 = 0xc000_0080;

/// Page-directory-pointer entries of the boot map: present, writable.
const TABLE_FLAGS: u64 = PageTableFlags::PRESENT.bits() | PageTableFlags::WRITABLE.bits();
/// Page-directory entries: present, writable, a 2 MiB page.
const PAGE_FLAGS: u64 = TABLE_FLAGS | PageTableFlags::HUGE_PAGE.bits();

/// TSC stamps the stub takes: its first instruction, descriptor tables
/// loaded, long mode entered, .bss zeroed (just before calling Rust).
pub const STAMP_COUNT: usize = 4;

/// The boot stack the stub switches to before calling Rust.
const BOOT_STACK_SIZE: usize = 128 * 1024;

#[repr(C, align(16))]
struct Stack([u8; BOOT_STACK_SIZE]);

/// Owned by the stub alone: only its `sym` operand below names it, and Rust
/// code reaches it only as the stack it runs on. Needs no initial value:
/// not zeroed (`linker.ld` `.noinit`).
#[unsafe(link_section = ".bss.noinit.boot_stack")]
static mut BOOT_STACK: Stack = Stack([0; BOOT_STACK_SIZE]);

unsafe extern "C" {
    /// The stub's first instruction (`pvh.s`), for the kernel binary's
    /// `pvh_note!`; only its address is used. The note is not declared in
    /// this library: a `#[used]` static here would link the stub into every
    /// binary that uses the library, the null guest included.
    pub fn pvh_entry() -> !;
    /// Defined by the kernel: `extern "C" fn(start_info_paddr: u32, entry_tsc: u64) -> !`.
    fn mote_rust_entry(start_info_paddr: u32, entry_tsc: u64) -> !;
    /// The boot page-directory-pointer table (`pvh.s`): entries below
    /// [`boot_map::DIRECTORIES`] map the first 4 GiB; [`UpperPdpt`] hands
    /// out the rest for RAM above 4 GiB.
    static mut pvh_pdpt: PageTable;
    /// Written by the stub before Rust runs; read-only afterwards.
    static pvh_stamps: [u64; STAMP_COUNT];
    /// Linker-script symbols (`linker.ld`).
    static __kernel_start: u8;
    static __kernel_end: u8;
}

global_asm!(
    include_str!("pvh.s"),
    cr4_pae = const Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits(),
    msr_efer = const MSR_EFER,
    efer_lme = const EferFlags::LONG_MODE_ENABLE.bits(),
    cr0_pg_wp = const Cr0Flags::PAGING.bits() | Cr0Flags::WRITE_PROTECT.bits(),
    code_selector = const CODE_SELECTOR,
    data_selector = const DATA_SELECTOR,
    gdt_code64 = const DescriptorFlags::KERNEL_CODE64.bits(),
    gdt_data = const DescriptorFlags::KERNEL_DATA.bits(),
    stamp_count = const STAMP_COUNT,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    rust_entry = sym mote_rust_entry,
    table_entries = const boot_map::ENTRIES_PER_TABLE,
    directories = const boot_map::DIRECTORIES,
    pages = const boot_map::PAGES,
    page_shift = const boot_map::PAGE_SHIFT,
    table_flags = const TABLE_FLAGS,
    page_flags = const PAGE_FLAGS,
    options(att_syntax)
);

/// Physical range `[start, end)` of the loaded kernel image, .bss included.
pub fn kernel_image() -> (u64, u64) {
    // Only the addresses of linker symbols are taken, never their contents.
    (
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    )
}

/// The boot PDPT's entries above the boot map, for mapping RAM above 4 GiB.
/// The entries the kernel runs in are not reachable through it.
pub struct UpperPdpt(&'static mut PageTable);

static UPPER_PDPT_TAKEN: AtomicBool = AtomicBool::new(false);

impl UpperPdpt {
    /// The table, the first time only: a second caller gets `None`, so the
    /// reference is unique.
    pub fn take() -> Option<Self> {
        if UPPER_PDPT_TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let table: *mut PageTable = &raw mut pvh_pdpt;
        // SAFETY: `pvh_pdpt` is a page-aligned static in pvh.s; after the
        // stub, nothing but this type touches it (the CPU reads it through
        // CR3), and the flag above hands the reference out once.
        Some(Self(unsafe { &mut *table }))
    }

    /// Entries [`boot_map::DIRECTORIES`]`..512`: 1 GiB each, from 4 GiB up.
    pub fn entries(&mut self) -> impl Iterator<Item = &mut PageTableEntry> {
        self.0.iter_mut().skip(boot_map::DIRECTORIES)
    }
}

/// The TSC stamps taken by the entry stub (see [`STAMP_COUNT`]).
pub fn stub_stamps() -> [u64; STAMP_COUNT] {
    // SAFETY: the stub wrote the array before calling Rust and nothing
    // writes it since; volatile because the compiler cannot see the stub.
    unsafe { core::ptr::read_volatile(&raw const pvh_stamps) }
}
