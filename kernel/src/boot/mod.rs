//! The VM's life: the boot sequence from the PVH stub's call into Rust to
//! the ready mark, device bring-up, the boot report, the crash path, and
//! power-off. It calls into every other folder and is called by none but
//! the binary and the crash paths.

#[cfg(target_os = "none")]
mod crash;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod exit_cost;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
pub(crate) mod poweroff;
#[cfg(target_os = "none")]
mod report;
#[cfg(target_os = "none")]
mod slot;
#[cfg(target_os = "none")]
mod start;

#[cfg(target_os = "none")]
pub(crate) use crash::{fatal, panic};
#[cfg(target_os = "none")]
pub use start::start;
