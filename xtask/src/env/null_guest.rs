//! Building the null guest (`boot/src/bin/null_guest.rs`), the PVH kernel
//! that powers off at its first instructions: QEMU's own floor.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::env::workspace::{self, KERNEL_TARGET};
use crate::vm::process::{self, Output};

const PACKAGE: &str = "mote-boot";
const BINARY: &str = "null_guest";
const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Where the image is copied, beside `target/kernel`.
pub fn image_path() -> PathBuf {
    workspace::target_dir().join("null-guest")
}

/// Builds the null guest (release) and returns `target/null-guest`.
pub fn build() -> Result<PathBuf> {
    let mut cargo = Command::new(workspace::cargo());
    cargo.current_dir(workspace::root()).args([
        "build",
        "--release",
        "-p",
        PACKAGE,
        "--bin",
        BINARY,
        "--target",
        KERNEL_TARGET,
    ]);
    let finished = process::run(&mut cargo, BUILD_TIMEOUT, Output::Inherit)?;
    if !finished.succeeded() {
        bail!(
            "building the null guest failed ({})",
            finished.describe_end(BUILD_TIMEOUT)
        );
    }
    let artifact = workspace::target_dir()
        .join(KERNEL_TARGET)
        .join("release")
        .join(BINARY);
    let image = image_path();
    fs::copy(&artifact, &image)
        .with_context(|| format!("copying {} to {}", artifact.display(), image.display()))?;
    Ok(image)
}
