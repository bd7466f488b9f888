//! The mote kernel. Everything that is logic rather than hardware lives in
//! modules that `cargo test` runs on the host; the target-only shell (entry,
//! port/MMIO/MSR access, exceptions, paging) is under `arch`.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod block;
pub mod log_buffer;
pub mod memory;
pub mod net;
pub mod options;
pub mod phase;
pub mod report;
pub mod tsc_frequency;
pub mod tslog;
pub mod virtio;

#[cfg(target_os = "none")]
pub mod arch;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod devices;
#[cfg(target_os = "none")]
pub mod drivers;
#[cfg(target_os = "none")]
pub mod services;

#[cfg(all(target_os = "none", not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    boot::panic(info)
}
