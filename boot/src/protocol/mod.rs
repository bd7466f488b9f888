//! What the guest and the host must agree on, written once and imported by
//! the kernel, the null guest and xtask: the debug-exit port and statuses,
//! every report line's shape (the kernel formats with it, the host parses
//! with it), the trace's record lines, the PVH note, the boot identity map's
//! extent, and the disk pattern `mote.blk.write=` leaves. Pure logic: it
//! builds and is tested on the host.
#![deny(unsafe_code)]

pub mod boot_map;
pub mod disk_pattern;
pub mod exit;
mod fields;
pub mod pvh_note;
pub mod report;
pub mod tslog;
mod words;

pub use fields::ParseError;
