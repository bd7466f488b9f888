//! The kernel's GDT (with a TSS for the double-fault stack) and its IDT,
//! whose gates lead to the entry stubs in [`super::interrupts`]: the
//! exceptions' and the fixed vectors' from boot, a device vector's from
//! when it is routed ([`open_gate`]). Built
//! from the `x86_64` crate's descriptor types; the stubs stay assembly
//! because stable Rust has no interrupt calling convention.
//!
//! Each application processor gets a GDT and TSS of its own, with its own
//! double-fault stack ([`CpuDescriptors`], built by the boot CPU), and
//! shares the one IDT.

extern crate alloc;

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{DescriptorTablePointer, lidt, load_tss};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{Entry, InterruptDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use super::apic::vectors;
use super::interrupts;

const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;
/// An application processor's double-fault stack, in bytes.
pub(crate) const AP_DOUBLE_FAULT_STACK_SIZE: u64 = DOUBLE_FAULT_STACK_SIZE as u64;
/// The double fault runs on IST 1 (the crate counts IST slots from 0).
const DOUBLE_FAULT_IST_INDEX: u16 = 0;

#[repr(C, align(16))]
struct Stack([u8; DOUBLE_FAULT_STACK_SIZE]);

/// Owned by the CPU: only its address goes into the TSS, in [`init`]. Needs
/// no initial value: not zeroed (`linker.ld` `.noinit`).
#[unsafe(link_section = ".bss.noinit.double_fault_stack")]
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; DOUBLE_FAULT_STACK_SIZE]);

/// Built in place by [`init`] alone (the `INITIALISED` flag lets it run
/// once); after that only [`open_gate`] writes it, a gate at a time, and
/// the CPUs read it. A static rather than a `Once` so its 4 KiB are
/// neither zeroed nor copied at boot: the empty table is in the image.
/// Reached through raw pointers only, never a reference, since gates are
/// written while the CPUs use it.
static mut IDT: InterruptDescriptorTable = InterruptDescriptorTable::new();
static INITIALISED: AtomicBool = AtomicBool::new(false);

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// Loads the kernel's GDT, TSS and IDT. First thing in Rust; later calls
/// do nothing.
pub(crate) fn init() {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack_end = (&raw const DOUBLE_FAULT_STACK as u64) + DOUBLE_FAULT_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] = VirtAddr::new(stack_end);
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    load_gdt(gdt, selectors);

    let idt: *mut InterruptDescriptorTable = &raw mut IDT;
    // SAFETY: `INITIALISED` lets only this call get here, so this is the
    // one reference to the table until it is loaded and only read.
    let idt: &'static mut InterruptDescriptorTable = unsafe { &mut *idt };
    fill(idt);
    load_idt();
    IDT_FILLED.store(true, Ordering::Release);
}

/// `lidt` of [`IDT`], by address: no reference to the table outlives
/// [`init`], so [`open_gate`] may write it later.
fn load_idt() {
    /// 256 gates of 16 bytes, less one: fits the limit's 16 bits.
    const LIMIT: u16 = 256 * 16 - 1;
    const _: () = assert!(size_of::<InterruptDescriptorTable>() == LIMIT as usize + 1);
    let pointer = DescriptorTablePointer {
        limit: LIMIT,
        base: VirtAddr::from_ptr(&raw const IDT),
    };
    // SAFETY: the table is static, filled by `init`, and every present
    // gate leads to a stub that returns with `iretq`.
    unsafe { lidt(&pointer) };
}

/// Set once [`init`] has filled the IDT: from then on it is only read.
static IDT_FILLED: AtomicBool = AtomicBool::new(false);

/// Loads `gdt`, reloads the segment registers from it and loads its TSS.
fn load_gdt(gdt: &'static GlobalDescriptorTable, selectors: &Selectors) {
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose descriptors are
    // a 64-bit code segment, a data segment and an available TSS.
    unsafe {
        CS::set_reg(selectors.code);
        SS::set_reg(selectors.data);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        load_tss(selectors.tss);
    }
}

/// An application processor's GDT and TSS, the TSS's double-fault stack
/// given: built on the boot CPU (which owns the heap's state at the
/// time), loaded by the processor itself with [`CpuDescriptors::load`].
pub(crate) struct CpuDescriptors {
    gdt: &'static GlobalDescriptorTable,
    selectors: Selectors,
}

impl CpuDescriptors {
    /// Builds them with the double-fault stack ending at `stack_end`
    /// (identity mapped, [`AP_DOUBLE_FAULT_STACK_SIZE`] bytes, this CPU's
    /// alone). They live as long as the VM: a CPU is never taken down.
    pub(crate) fn new(stack_end: u64) -> Self {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] = VirtAddr::new(stack_end);
        let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
        let gdt: &'static mut GlobalDescriptorTable =
            Box::leak(Box::new(GlobalDescriptorTable::new()));
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Self {
            gdt,
            selectors: Selectors { code, data, tss },
        }
    }

    /// Loads this GDT and TSS on the CPU that calls it, and the IDT the
    /// boot CPU filled. Call once per CPU (a TSS is marked busy when
    /// loaded), after [`init`] ran on the boot CPU.
    pub(crate) fn load(&self) {
        assert!(
            IDT_FILLED.load(Ordering::Acquire),
            "descriptors::init runs on the boot CPU before any other CPU starts"
        );
        load_gdt(self.gdt, &self.selectors);
        load_idt();
    }
}

/// Points the exception gates (but the reserved ones, 15, 22-27 and 31:
/// the CPU never raises them) at their stubs, the double fault on its own
/// stack, and opens the gates of the vectors every CPU may take: the
/// timer, the work IPI and the spurious vector. Device vectors are opened
/// by [`open_gate`] as they are routed.
fn fill(idt: &mut InterruptDescriptorTable) {
    /// # Safety
    /// `vector`'s stub must suit `F`'s frame (error code or not): the stubs
    /// push a uniform frame for every vector, so any entry type fits.
    unsafe fn gate<F>(
        entry: &mut Entry<F>,
        vector: u8,
    ) -> &mut x86_64::structures::idt::EntryOptions {
        // SAFETY: the stub for `vector` is a valid handler (caller's contract).
        unsafe { entry.set_handler_addr(interrupts::stub_address(vector)) }
    }
    // SAFETY: for every `gate` call, `stub_address(vector)` is that
    // vector's stub, which saves the registers, calls the dispatcher and
    // returns with `iretq`.
    unsafe {
        gate(&mut idt.divide_error, 0);
        gate(&mut idt.debug, 1);
        gate(&mut idt.non_maskable_interrupt, 2);
        gate(&mut idt.breakpoint, 3);
        gate(&mut idt.overflow, 4);
        gate(&mut idt.bound_range_exceeded, 5);
        gate(&mut idt.invalid_opcode, 6);
        gate(&mut idt.device_not_available, 7);
        // The IST index names a stack set up in the TSS above.
        gate(&mut idt.double_fault, 8).set_stack_index(DOUBLE_FAULT_IST_INDEX);
        gate(&mut idt[9], 9); // coprocessor segment overrun (no field of its own)
        gate(&mut idt.invalid_tss, 10);
        gate(&mut idt.segment_not_present, 11);
        gate(&mut idt.stack_segment_fault, 12);
        gate(&mut idt.general_protection_fault, 13);
        gate(&mut idt.page_fault, 14);
        gate(&mut idt.x87_floating_point, 16);
        gate(&mut idt.alignment_check, 17);
        gate(&mut idt.machine_check, 18);
        gate(&mut idt.simd_floating_point, 19);
        gate(&mut idt.virtualization, 20);
        gate(&mut idt.cp_protection_exception, 21);
        gate(&mut idt.hv_injection_exception, 28);
        gate(&mut idt.vmm_communication_exception, 29);
        gate(&mut idt.security_exception, 30);
        for vector in [vectors::TIMER, vectors::WORK, vectors::SPURIOUS] {
            gate(&mut idt[vector], vector);
        }
    }
}

/// Opens the gate of external vector `vector` (32-255) on its stub, a
/// copy of the timer's gate with its own address, written in place: the
/// table stays loaded on every CPU. Vectors whose gate is closed still
/// arrive, as a segment-not-present fault naming the gate, which the
/// dispatcher counts as an unexpected interrupt (`interrupts::dispatch`).
/// Opening them as they are routed, rather than all 224 at boot, spares
/// the boot 2 800 instructions (one gate cost 13).
pub(crate) fn open_gate(vector: u8) {
    /// A gate's offset bits: 15:0 in bits 15:0 of its first quadword,
    /// 31:16 in bits 63:48, 63:32 in its second quadword (Intel SDM vol. 3
    /// §6.14.1, Figure 6-8); the selector and options between them.
    const SELECTOR_AND_OPTIONS: u64 = 0x0000_ffff_ffff_0000;
    const _: () = assert!(size_of::<InterruptDescriptorTable>() == 256 * 16);
    assert!(
        vector >= 32 && IDT_FILLED.load(Ordering::Acquire),
        "open_gate: an external vector (not {vector}), after descriptors::init"
    );
    let table: *mut [u64; 2] = (&raw mut IDT).cast();
    let address = interrupts::stub_address(vector).as_u64();
    // SAFETY: the table is the 256 gates in vector order, 16 bytes each,
    // as the hardware reads them (the crate's `repr(C)` layout, checked
    // above by size, which `lidt` loads as it is); `init` wrote the
    // timer's gate through the crate and no reference to the table is
    // live. Volatile: the CPUs read the table behind the compiler's back.
    // The high quadword goes first: the present bit is in the low one.
    // The stubs are in the kernel image, far below the non-canonical hole:
    // each address is a valid gate offset.
    unsafe {
        let [template, _] = table.add(usize::from(vectors::TIMER)).read_volatile();
        let low = (template & SELECTOR_AND_OPTIONS)
            | (address & 0xffff)
            | ((address >> 16) & 0xffff) << 48;
        let gate = table.add(usize::from(vector)).cast::<u64>();
        gate.add(1).write_volatile(address >> 32);
        gate.write_volatile(low);
    }
}

/// Loads an empty IDT so the next exception triple-faults: the last-resort
/// way to stop a VM (QEMU `-no-reboot` exits).
pub(crate) fn triple_fault() -> ! {
    let pointer = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately makes every exception unhandleable, then raises one.
    unsafe { lidt(&pointer) };
    x86_64::instructions::interrupts::int3();
    super::cpu::halt_forever()
}
