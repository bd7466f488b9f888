//! The host side of a boot: where the workspace's files are, what must be
//! installed, how the kernel and the null guest are built, and the disk and
//! initrd images handed to guests.

pub(crate) mod boot_files;
pub(crate) mod build;
pub(crate) mod deps;
pub(crate) mod images;
pub(crate) mod workspace;
