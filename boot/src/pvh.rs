//! The PVH entry stub (`pvh.s`), the ELF note that points QEMU at it, and the
//! boot page tables it builds at assembly time.
//!
//! Every constant the assembly needs is passed from here, so a selector or an
//! MSR number is written once.

use core::arch::global_asm;

/// `XEN_ELFNOTE_PHYS32_ENTRY` (xen `include/public/elfnote.h`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Selector of the 64-bit code segment in the stub's GDT (entry 1).
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segment in the stub's GDT (entry 2).
pub const DATA_SELECTOR: u16 = 0x10;
/// Long-mode code segment: present, DPL 0, executable, readable, L=1.
const GDT_CODE64: u64 = 0x00af_9a00_0000_ffff;
/// Flat data segment: present, DPL 0, writable, 4 GiB, D/B=1.
const GDT_DATA: u64 = 0x00cf_9200_0000_ffff;

const CR4_PAE: u32 = 1 << 5;
const CR0_PG_WP: u32 = (1 << 31) | (1 << 16);
const MSR_EFER: u32 = 0xc000_0080;
const EFER_LME: u32 = 1 << 8;

/// TSC stamps the stub takes: its first instruction, descriptor tables
/// loaded, long mode entered, .bss zeroed (just before calling Rust).
pub const STAMP_COUNT: usize = 4;

/// The boot stack the stub switches to before calling Rust.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

#[repr(C, align(16))]
pub struct Stack([u8; BOOT_STACK_SIZE]);

/// Needs no initial value: not zeroed (`linker.ld` `.noinit`).
#[unsafe(link_section = ".bss.noinit.boot_stack")]
static mut BOOT_STACK: Stack = Stack([0; BOOT_STACK_SIZE]);

unsafe extern "C" {
    /// Defined by the kernel: `extern "C" fn(start_info_paddr: u32, entry_tsc: u64) -> !`.
    fn mote_rust_entry(start_info_paddr: u32, entry_tsc: u64) -> !;
    /// The boot page-directory-pointer table (`pvh.s`): entries 0-3 map the
    /// first 4 GiB; the kernel fills the rest for RAM above 4 GiB.
    static mut pvh_pdpt: [u64; 512];
    /// Written by the stub before Rust runs; read-only afterwards.
    static pvh_stamps: [u64; STAMP_COUNT];
    /// Linker-script symbols (`linker.ld`).
    static __kernel_start: u8;
    static __kernel_end: u8;
}

global_asm!(
    include_str!("pvh.s"),
    note_type = const XEN_ELFNOTE_PHYS32_ENTRY,
    cr4_pae = const CR4_PAE,
    msr_efer = const MSR_EFER,
    efer_lme = const EFER_LME,
    cr0_pg_wp = const CR0_PG_WP,
    code_selector = const CODE_SELECTOR,
    data_selector = const DATA_SELECTOR,
    gdt_code64 = const GDT_CODE64,
    gdt_data = const GDT_DATA,
    stamp_count = const STAMP_COUNT,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    rust_entry = sym mote_rust_entry,
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

/// The boot PDPT, for mapping RAM above 4 GiB.
///
/// # Safety
/// The caller must be the only user of the returned reference, and entries
/// 0-3 (the first 4 GiB, which the kernel runs in) must not be changed.
pub unsafe fn boot_pdpt() -> &'static mut [u64; 512] {
    let table: *mut [u64; 512] = &raw mut pvh_pdpt;
    // SAFETY: the table is a static defined in pvh.s; exclusivity is the caller's contract.
    unsafe { &mut *table }
}

/// The TSC stamps taken by the entry stub (see [`STAMP_COUNT`]).
pub fn stub_stamps() -> [u64; STAMP_COUNT] {
    // SAFETY: the stub wrote the array before calling Rust and nothing
    // writes it since; volatile because the compiler cannot see the stub.
    unsafe { core::ptr::read_volatile(&raw const pvh_stamps) }
}
