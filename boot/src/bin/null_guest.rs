//! The null guest: the smallest PVH kernel that powers off at its first
//! instructions. `cargo xtask bench` boots it beside mote, in the same QEMU
//! configuration, to measure QEMU's own floor (process start, firmware, PVH
//! handoff, exit), so mote's cost can be stated as a ratio above it.
//!
//! Its 32-bit entry tries every way out the VMMs we run offer, in order
//! (`mote_boot::protocol::exit`, docs/vmms.md): isa-debug-exit with the
//! success value (QEMU exits 33), microvm's ACPI sleep register (ACPI on;
//! QEMU exits 0), Cloud Hypervisor's fixed sleep port 0x600 (exits 0), the
//! i8042 reset line (Firecracker), then halts with interrupts off. Each VMM
//! ignores the writes it does not decode (Firecracker logs them as
//! warnings). QEMU 10 lets the vCPU run on after isa-debug-exit until it
//! stops the VM, so the later writes may happen there too: none of them
//! means anything to microvm. It never touches memory except to write the
//! sleep register, so it needs no stack, no page tables and no .bss.
//!
//! Build: `cargo build --release -p mote-boot --bin null_guest --target
//! x86_64-unknown-none` (xtask copies the result to `target/null-guest`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use core::arch::global_asm;

    use mote_boot::protocol::exit;

    unsafe extern "C" {
        /// The entry below; only its address is used, by the note.
        fn null_guest_entry() -> !;
    }

    mote_boot::pvh_note!(null_guest_entry);

    global_asm!(
        r#"
        .pushsection .text.null_guest_entry, "ax"
        .code32
        .global null_guest_entry
    null_guest_entry:
        mov ${debug_exit_value}, %al
        out %al, ${debug_exit_port}
        movb ${sleep_value}, {sleep_control}
        mov ${ch_sleep_value}, %al
        mov ${ch_sleep_port}, %dx
        out %al, %dx
        mov ${i8042_reset}, %al
        out %al, ${i8042_port}
    1:
        cli
        hlt
        jmp 1b
        .code64
        .popsection
        "#,
        debug_exit_value = const exit::Status::Success.value(),
        debug_exit_port = const exit::DEBUG_EXIT_PORT,
        sleep_value = const exit::sleep_control_value(exit::MICROVM_S5_SLEEP_TYPE),
        sleep_control = const exit::MICROVM_SLEEP_CONTROL,
        ch_sleep_value = const exit::sleep_control_value(exit::CLOUD_HYPERVISOR_S5_SLEEP_TYPE),
        ch_sleep_port = const exit::CLOUD_HYPERVISOR_SLEEP_PORT,
        i8042_reset = const exit::I8042_PULSE_RESET,
        i8042_port = const exit::I8042_COMMAND_PORT,
        options(att_syntax)
    );

    /// The guest has no heap. Built together with the kernel, cargo unifies
    /// features and `zerocopy` (a dependency of `mote-boot`) brings in the
    /// `alloc` crate, which wants an allocator to link: this one refuses
    /// every request, and nothing ever makes one.
    struct NoHeap;

    // SAFETY: `alloc` returns null (allocation failure) and `dealloc` is
    // never given a pointer, as no allocation ever succeeded.
    unsafe impl core::alloc::GlobalAlloc for NoHeap {
        unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
            core::ptr::null_mut()
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
    }

    #[global_allocator]
    static NO_HEAP: NoHeap = NoHeap;

    /// No Rust code runs in this guest; a panic cannot happen. Should one,
    /// the VM stops with the interrupts off rather than spinning.
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {
            // SAFETY: `hlt` with interrupts off stops this vCPU and touches no memory.
            unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
        }
    }
}

/// On the host this binary only explains itself (`cargo test --workspace`
/// builds every binary for the host).
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the null guest runs under a VMM: build it with `cargo build --release -p mote-boot \
         --bin null_guest --target x86_64-unknown-none`"
    );
    std::process::exit(2);
}
