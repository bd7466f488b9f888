//! The door into mote: the PVH entry stub, the validation of what the loader
//! hands over (`start_info`, command line, memory map, modules), and the
//! protocol the guest and the host share.
#![cfg_attr(not(test), no_std)]

pub mod protocol;
pub mod start_info;

#[cfg(target_os = "none")]
pub mod pvh;
