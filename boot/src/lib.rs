//! The door into mote: the PVH entry stub and the validation of what the
//! loader hands over (`start_info`, command line, memory map, modules), and
//! the protocol the guest and the host share.
#![cfg_attr(not(test), no_std)]

pub mod memory_map;
pub mod protocol;
pub mod start_info;

#[cfg(target_os = "none")]
pub mod pvh;

pub use memory_map::{MemoryKind, MemoryMap, Region};
pub use start_info::{BootInfo, Module, OutOfReach, PhysicalMemory, StartInfoError};
