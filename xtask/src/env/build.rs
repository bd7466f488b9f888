//! Building the guests for `x86_64-unknown-none`: the kernel, copied to
//! `target/kernel`, and the null guest (`boot/src/bin/null_guest.rs`, the
//! PVH kernel that powers off at its first instructions: QEMU's own floor),
//! copied to `target/null-guest`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::workspace::{self, KERNEL_TARGET};
use crate::vm::process;

/// A cold build of a guest and its dependencies takes well under this.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `cargo xtask build`'s command line.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// Build the debug profile instead of release.
    #[arg(long)]
    debug: bool,
}

/// `cargo xtask build`: installs the Rust target if needed, builds the
/// kernel and prints where it is.
pub(crate) fn build(arguments: &BuildArgs) -> Result<bool> {
    super::deps::ensure_rust_target()?;
    let profile = if arguments.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    println!("{}", Guest::Kernel.build(profile)?.display());
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
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

/// A guest image built from this workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guest {
    Kernel,
    NullGuest,
}

impl Guest {
    /// The package and binary (`kernel/Cargo.toml`, `boot/Cargo.toml`).
    fn package_and_binary(self) -> (&'static str, &'static str) {
        match self {
            Guest::Kernel => ("mote-kernel", "kernel"),
            Guest::NullGuest => ("mote-boot", "null_guest"),
        }
    }

    /// Where the image is copied, so that a hand-typed
    /// `qemu-system-x86_64 -M microvm -kernel target/kernel` works.
    fn image(self) -> PathBuf {
        match self {
            Guest::Kernel => workspace::kernel_image(),
            Guest::NullGuest => workspace::target_dir().join("null-guest"),
        }
    }

    /// Builds the guest and returns the path of its copy under `target/`.
    fn build(self, profile: Profile) -> Result<PathBuf> {
        let (package, binary) = self.package_and_binary();
        let mut cargo = Command::new(workspace::cargo());
        cargo.current_dir(workspace::root()).args([
            "build",
            "-p",
            package,
            "--bin",
            binary,
            "--target",
            KERNEL_TARGET,
        ]);
        if profile == Profile::Release {
            cargo.arg("--release");
        }
        process::run_inherited(&mut cargo, BUILD_TIMEOUT, &format!("building {binary}"))?;
        let artifact = workspace::target_dir()
            .join(KERNEL_TARGET)
            .join(profile.directory())
            .join(binary);
        let image = self.image();
        fs::copy(&artifact, &image).with_context(|| {
            format!(
                "failed to copy {} to {}",
                artifact.display(),
                image.display()
            )
        })?;
        Ok(image)
    }
}

/// `prebuilt` if given (it must exist), else a fresh release build of `target/kernel`.
pub(crate) fn prebuilt_or_release(prebuilt: Option<&Path>) -> Result<PathBuf> {
    match prebuilt {
        Some(image) if image.is_file() => Ok(image.to_path_buf()),
        Some(image) => bail!("no kernel image at {}", image.display()),
        None => Guest::Kernel.build(Profile::Release),
    }
}

/// Builds the null guest (release) and returns `target/null-guest`.
pub(crate) fn null_guest() -> Result<PathBuf> {
    Guest::NullGuest.build(Profile::Release)
}
