//! The host side of a boot: where the workspace's files are, what must be
//! installed, how the kernel and the null guest are built, and the disk and
//! initrd images handed to guests.

pub mod build;
pub mod deps;
pub mod images;
pub mod null_guest;
pub mod workspace;
