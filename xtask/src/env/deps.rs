//! Host prerequisites: the `x86_64-unknown-none` Rust target, QEMU, and
//! the Debian tools some commands drive (`wrk` for `bench --http`).
//!
//! Missing pieces are installed when that is safe to do unattended
//! (`rustup target add`; `apt-get` when running as root), otherwise the error
//! names the exact command to run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::env::workspace::{self, KERNEL_TARGET};
use crate::vm::process;
use crate::vm::vmm::qemu::QEMU_BINARY;

/// The Debian package that provides `qemu-system-x86_64`.
const QEMU_PACKAGE: &str = "qemu-system-x86";

const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Everything `build`, `run` and `test` need.
pub(crate) fn ensure_all() -> Result<()> {
    ensure_rust_target()?;
    ensure_qemu()
}

/// Makes sure the kernel's Rust target is installed for the pinned toolchain.
pub(crate) fn ensure_rust_target() -> Result<()> {
    let add_command = format!("rustup target add {KERNEL_TARGET}");
    if workspace::find_on_path("rustup").is_none() {
        if target_in_sysroot()? {
            return Ok(());
        }
        bail!(
            "the Rust target {KERNEL_TARGET} is missing and rustup is not installed; run: {add_command}"
        );
    }
    let installed = process::query(
        rustup().args(["target", "list", "--installed"]),
        QUERY_TIMEOUT,
    )?;
    if installed.lines().any(|line| line.trim() == KERNEL_TARGET) {
        return Ok(());
    }
    println!("xtask: installing the Rust target {KERNEL_TARGET}: {add_command}");
    process::run_inherited(
        rustup().args(["target", "add", KERNEL_TARGET]),
        INSTALL_TIMEOUT,
        &format!("`{add_command}` (run it by hand)"),
    )
}

/// rustup run in the workspace root, so `rust-toolchain.toml` picks the toolchain.
fn rustup() -> Command {
    let mut command = Command::new("rustup");
    command.current_dir(workspace::root());
    command
}

/// Without rustup, the target is installed iff its library directory exists.
fn target_in_sysroot() -> Result<bool> {
    let libdir = process::query(
        Command::new("rustc").current_dir(workspace::root()).args([
            "--print",
            "target-libdir",
            "--target",
            KERNEL_TARGET,
        ]),
        QUERY_TIMEOUT,
    )
    .context("rustc could not locate the target's library directory")?;
    Ok(Path::new(&libdir).is_dir())
}

/// Makes sure `qemu-system-x86_64` is on `PATH`, installing it with apt-get as root.
fn ensure_qemu() -> Result<()> {
    ensure_debian_binary(QEMU_BINARY, QEMU_PACKAGE)
}

/// Makes sure `binary` is on `PATH`, installing the Debian `package` that
/// provides it with apt-get when running as root; otherwise the error names
/// the command to run.
pub(crate) fn ensure_debian_binary(binary: &str, package: &str) -> Result<()> {
    if workspace::find_on_path(binary).is_some() {
        return Ok(());
    }
    let can_install = is_root() && workspace::find_on_path("apt-get").is_some();
    if !can_install {
        bail!(
            "{binary} is not on PATH; install it with: \
             sudo apt-get update && sudo apt-get install -y {package}"
        );
    }
    println!("xtask: {binary} is missing; installing the Debian package {package}");
    for arguments in [&["update"][..], &["install", "-y", package][..]] {
        println!("xtask: apt-get {}", arguments.join(" "));
        process::run_inherited(
            Command::new("apt-get")
                .args(arguments)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            INSTALL_TIMEOUT,
            &format!("`apt-get {}`", arguments.join(" ")),
        )?;
    }
    if workspace::find_on_path(binary).is_none() {
        bail!("installed {package} but {binary} is still not on PATH");
    }
    Ok(())
}

/// Whether we run as root, asked of `id -u` (no libc dependency for one syscall).
fn is_root() -> bool {
    process::query(Command::new("id").arg("-u"), Duration::from_secs(10))
        .is_ok_and(|uid| uid == "0")
}
