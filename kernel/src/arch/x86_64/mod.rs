//! x86-64: CPU instructions, descriptor tables, interrupt entry and the
//! APICs. Register layouts come from the `x86_64` crate where it has them
//! (descriptors, control registers, MSR access, ports) and from `bitflags`
//! types in `apic::registers` where it does not.

pub(crate) mod apic;
#[cfg(target_os = "none")]
pub(crate) mod cpu;
#[cfg(target_os = "none")]
pub(crate) mod descriptors;
#[cfg(target_os = "none")]
mod exceptions;
#[cfg(target_os = "none")]
pub(crate) mod interrupts;
#[cfg(target_os = "none")]
pub(crate) mod per_cpu;
