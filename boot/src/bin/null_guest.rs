//! The null guest: the smallest PVH kernel that powers off at its first
//! instructions. `cargo xtask bench` boots it beside mote, in the same QEMU
//! configuration, to measure QEMU's own floor (process start, firmware, PVH
//! handoff, exit), so mote's cost can be stated as a ratio above it.
//!
//! Its 32-bit entry tries every way out the VMMs we run offer, in order:
//! isa-debug-exit (QEMU exits 33), the ACPI GED sleep register (microvm with
//! ACPI on; QEMU exits 0), the i8042 reset line (Firecracker), then halts
//! with interrupts off. It never touches memory except to write the GED
//! register, so it needs no stack, no page tables and no .bss.
//!
//! Build: `cargo build --release -p mote-boot --bin null_guest --target
//! x86_64-unknown-none` (xtask copies the result to `target/null-guest`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use core::arch::global_asm;

    /// `XEN_ELFNOTE_PHYS32_ENTRY` (xen `include/public/elfnote.h`).
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

    /// The port of `-device isa-debug-exit,iobase=0xf4,iosize=4`; QEMU exits
    /// with `(value << 1) | 1` (hw/misc/debugexit.c), so 0x10 gives 33, the
    /// same success status mote uses.
    const DEBUG_EXIT_PORT: u16 = 0xf4;
    const DEBUG_EXIT_SUCCESS_VALUE: u8 = 0x10;

    /// microvm's ACPI generic event device sleep control register
    /// (`GED_MMIO_BASE_REGS`, hw/i386/microvm.c + hw/acpi/generic_event_device.c).
    const GED_SLEEP_CONTROL: u32 = 0xfea0_0200;
    /// SLP_TYPx = 5 (`\_S5`) in bits 2-4, SLP_EN (bit 5): power off.
    const GED_SLEEP_S5: u8 = (5 << 2) | 0x20;

    /// i8042 command port; command 0xfe pulses the reset line, which
    /// Firecracker turns into a VM exit.
    const I8042_COMMAND_PORT: u16 = 0x64;
    const I8042_PULSE_RESET: u8 = 0xfe;

    global_asm!(
        r#"
        .pushsection .note.Xen, "a", @note
        .balign 4
        .long 4                         # namesz: "Xen\0"
        .long 4                         # descsz: a 32-bit physical address
        .long {note_type}               # XEN_ELFNOTE_PHYS32_ENTRY
        .asciz "Xen"
        .long null_guest_entry
        .popsection

        .pushsection .text.null_guest_entry, "ax"
        .code32
        .global null_guest_entry
    null_guest_entry:
        mov ${debug_exit_value}, %al
        out %al, ${debug_exit_port}
        movb ${ged_sleep_s5}, {ged_sleep_control}
        mov ${i8042_reset}, %al
        out %al, ${i8042_port}
    1:
        cli
        hlt
        jmp 1b
        .code64
        .popsection
        "#,
        note_type = const XEN_ELFNOTE_PHYS32_ENTRY,
        debug_exit_value = const DEBUG_EXIT_SUCCESS_VALUE,
        debug_exit_port = const DEBUG_EXIT_PORT,
        ged_sleep_s5 = const GED_SLEEP_S5,
        ged_sleep_control = const GED_SLEEP_CONTROL,
        i8042_reset = const I8042_PULSE_RESET,
        i8042_port = const I8042_COMMAND_PORT,
        options(att_syntax)
    );

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
