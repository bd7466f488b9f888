//! Building the kernel image for `x86_64-unknown-none` and copying it to `target/kernel`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::env::workspace::{self, KERNEL_TARGET};
use crate::vm::process::{self, Output};

/// The kernel's package and binary names (kernel/Cargo.toml).
const KERNEL_PACKAGE: &str = "mote-kernel";
const KERNEL_BINARY: &str = "kernel";

/// A cold build of the kernel and its dependencies takes well under this.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    fn directory(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// `prebuilt` if given (it must exist), else a fresh release build of `target/kernel`.
pub fn prebuilt_or_release(prebuilt: Option<&Path>) -> Result<PathBuf> {
    match prebuilt {
        Some(image) if image.is_file() => Ok(image.to_path_buf()),
        Some(image) => bail!("no kernel image at {}", image.display()),
        None => build_kernel(Profile::Release),
    }
}

/// Builds the kernel and returns the path of `target/kernel`.
pub fn build_kernel(profile: Profile) -> Result<PathBuf> {
    let mut cargo = Command::new(workspace::cargo());
    cargo.current_dir(workspace::root()).args([
        "build",
        "-p",
        KERNEL_PACKAGE,
        "--bin",
        KERNEL_BINARY,
        "--target",
        KERNEL_TARGET,
    ]);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    let finished = process::run(&mut cargo, BUILD_TIMEOUT, Output::Inherit)?;
    if !finished.succeeded() {
        bail!(
            "building the kernel failed ({})",
            finished.describe_end(BUILD_TIMEOUT)
        );
    }

    let artifact = workspace::target_dir()
        .join(KERNEL_TARGET)
        .join(profile.directory())
        .join(KERNEL_BINARY);
    let image = workspace::kernel_image();
    fs::copy(&artifact, &image).with_context(|| {
        format!(
            "failed to copy {} to {}",
            artifact.display(),
            image.display()
        )
    })?;
    Ok(image)
}
