//! What a boot of mote needs on disk, made ready in one call: the host
//! prerequisites, the kernel image (built unless given) and `run`'s disk.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::images::{self, RUN_DISK_SIZE};
use super::{build, deps, workspace};

/// The kernel and the disk image a boot attaches as virtio-blk.
pub(crate) struct BootFiles {
    pub(crate) kernel: PathBuf,
    pub(crate) disk: PathBuf,
}

/// Installs what is missing, builds or takes the kernel, and makes sure
/// `target/disk.img` exists.
pub(crate) fn prepare(kernel: Option<&Path>) -> Result<BootFiles> {
    deps::ensure_all()?;
    let kernel = build::prebuilt_or_release(kernel)?;
    let disk = workspace::target_dir().join("disk.img");
    images::ensure_disk_image(&disk, RUN_DISK_SIZE)?;
    Ok(BootFiles { kernel, disk })
}
