//! The mote kernel, one folder per topic (docs/architecture.md). Inside
//! each, the logic that `cargo test` runs on the host is kept apart from
//! the target-only hardware shell (entry, port/MMIO/MSR access, interrupts,
//! paging), which is built only for `x86_64-unknown-none`.
#![cfg_attr(not(test), no_std)]
// Only the target build has every caller (the hardware shell uses what the
// host-tested logic offers); dead code and unused imports are judged there.
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

mod acpi;
mod arch;
mod block;
pub mod boot;
mod clock;
mod cmdline;
mod console;
// The fuzz targets' door to the parsers (xtask/fuzz); never in the guest.
#[cfg(not(target_os = "none"))]
pub mod fuzzing;
mod memory;
mod net;
mod pci;
mod smp;
mod trace;
mod virtio;

#[cfg(all(target_os = "none", not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    boot::panic(info)
}
