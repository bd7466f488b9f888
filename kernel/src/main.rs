//! The kernel binary: the PVH note that names the entry stub, and the
//! symbol the stub calls, nothing more. Build it with `cargo xtask build`
//! (target x86_64-unknown-none).
#![cfg_attr(target_os = "none", no_std, no_main)]

// The note lives in the binary, not in `mote-boot`: see `mote_boot::pvh`.
#[cfg(target_os = "none")]
mote_boot::pvh_note!(mote_boot::pvh::pvh_entry);

/// Entered from `boot/src/pvh/pvh.s` in long mode, on the boot stack.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub extern "C" fn mote_rust_entry(start_info_paddr: u32, entry_tsc: u64) -> ! {
    mote_kernel::boot::start(start_info_paddr, entry_tsc)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the mote kernel runs under a VMM: build it with `cargo xtask build`");
    std::process::exit(2);
}
