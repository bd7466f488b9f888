//! `cargo xtask run`: build, boot once with the serial console live, exit with the kernel's verdict.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::build;
use crate::deps;
use crate::images::{self, RUN_DISK_SIZE};
use crate::qemu::{self, AccelChoice, Machine, PowerOff, QemuCommand};
use crate::workspace;

/// The command line `run` boots with before `--append`.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 mote.exit=ready";

pub struct RunOptions {
    pub accel: AccelChoice,
    /// Appended to [`DEFAULT_CMDLINE`] after a space.
    pub append: Option<String>,
    pub timeout: Duration,
    /// A prebuilt image to boot instead of building one.
    pub kernel: Option<PathBuf>,
    /// Passed to QEMU after everything else.
    pub qemu_args: Vec<String>,
}

/// Returns whether the kernel powered off with success.
pub fn run(options: RunOptions) -> Result<bool> {
    deps::ensure_all()?;
    let kernel = build::prebuilt_or_release(options.kernel.as_deref())?;
    let accel = qemu::resolve_accel(options.accel, &kernel);
    let disk = workspace::target_dir().join("disk.img");
    images::ensure_disk_image(&disk, RUN_DISK_SIZE)?;

    let cmdline = match &options.append {
        Some(extra) if !extra.is_empty() => format!("{DEFAULT_CMDLINE} {extra}"),
        _ => DEFAULT_CMDLINE.to_owned(),
    };
    let qemu = QemuCommand::new(Machine::MicrovmNoAcpi, accel, &kernel)
        .append(&cmdline)
        .virtio_blk(&disk, "disk0")
        .virtio_net_user("net0")
        .args(&options.qemu_args);

    let here = std::env::current_dir().ok();
    if here.as_deref() == Some(workspace::root()) {
        println!("{}", qemu.command_line());
    } else {
        let root = workspace::root().to_string_lossy();
        println!("cd {} && {}", qemu::shell_quote(&root), qemu.command_line());
    }

    let finished = qemu.run(options.timeout, true)?;
    let power_off = PowerOff::from_exit(&finished, options.timeout);
    eprintln!(
        "xtask: {power_off} after {:.2} s",
        finished.elapsed.as_secs_f64()
    );
    Ok(power_off.is_success())
}
