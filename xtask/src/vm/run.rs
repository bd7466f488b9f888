//! `cargo xtask run`: build, boot once with the serial console live, exit
//! with the kernel's verdict; `--serve` keeps the VM serving until it is
//! powered off over HTTP. (`cargo xtask bench --served` times served boots.)

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::accel::{self, Accel};
use super::args::BootArgs;
use super::cmdline::{self, READY_CMDLINE, STATIC_IP_PARAMETER};
use super::network::{HostForward, HostPorts, LISTENING_LINE};
use super::power_off::PowerOff;
use super::process::{Finished, LineWait, LiveChild};
use super::qemu::{self, Disk, Machine, QemuCommand};
use crate::env::boot_files::{self, BootFiles};
use crate::env::workspace;
use crate::guest_output::report;

/// `cargo xtask run`'s command line.
#[derive(Debug, clap::Args)]
#[command(
    mut_arg("append", |arg| arg.help(
        "Text added to the kernel command line `console=ttyS0 mote.exit=ready` \
         (with --serve: `console=ttyS0 ip=10.0.2.15:10.0.2.2:…`)"
    )),
    mut_arg("timeout", |arg| arg.help(
        "Kill QEMU after this many seconds (with --serve, 0 means no limit)"
    )),
)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    boot: BootArgs,
    /// Keep the VM serving (no `mote.exit=ready`, a static address) until
    /// it is powered off with `POST /poweroff` or --timeout passes.
    #[arg(long)]
    serve: bool,
}

/// What `run` and `trace` boot: the kernel and `run`'s disk, under the
/// accelerator the user chose.
pub(crate) struct Setup {
    pub(crate) files: BootFiles,
    pub(crate) accel: Accel,
}

impl Setup {
    /// Prepares the files (see [`boot_files::prepare`]) and resolves the accelerator.
    pub(crate) fn prepare(boot: &BootArgs) -> Result<Self> {
        let files = boot_files::prepare(boot.vm.kernel.as_deref())?;
        let accel = accel::resolve(boot.vm.accel, &files.kernel);
        Ok(Self { files, accel })
    }

    /// The microvm command with the disk and a user-mode NIC (with
    /// `forwards`), booting `cmdline`, then `qemu_args`.
    pub(crate) fn command(
        &self,
        cmdline: &str,
        forwards: &[HostForward],
        qemu_args: &[String],
    ) -> QemuCommand {
        QemuCommand::new(Machine::MicrovmNoAcpi, self.accel, &self.files.kernel)
            .append(cmdline)
            .virtio_blk(&Disk::writable(&self.files.disk), "disk0")
            .virtio_net_user_forwarded("net0", forwards)
            .args(qemu_args)
    }
}

/// Returns whether the kernel powered off with success.
pub(crate) fn run(arguments: &RunArgs) -> Result<bool> {
    let boot = &arguments.boot;
    let setup = Setup::prepare(boot)?;
    let base = if arguments.serve {
        cmdline::served_cmdline(STATIC_IP_PARAMETER)
    } else {
        READY_CMDLINE.to_owned()
    };
    let cmdline = cmdline::with_append(&base, boot.append.as_deref());
    let ports = HostPorts::pick()?;
    let qemu = setup.command(&cmdline, &ports.forwards(), &boot.qemu_args);
    println!("{}", pasteable(&qemu));
    println!("{}", ports.describe());
    if arguments.serve {
        return serve(&qemu, &ports, boot.timeout());
    }

    let finished = qemu.run(boot.timeout(), true)?;
    Ok(verdict(&finished, boot.timeout()))
}

/// Prints how the boot ended; returns whether the kernel powered off with success.
fn verdict(finished: &Finished, timeout: Duration) -> bool {
    let power_off = PowerOff::from_exit(finished, timeout);
    eprintln!(
        "xtask: {power_off} after {:.2} s",
        finished.elapsed.as_secs_f64()
    );
    power_off.is_success()
}

/// The QEMU command line to paste, with a `cd` to the workspace root first
/// unless we run there (its paths are relative to the root).
fn pasteable(qemu: &QemuCommand) -> String {
    let root: &Path = workspace::root();
    if std::env::current_dir().ok().as_deref() == Some(root) {
        qemu.command_line()
    } else {
        let root = root.to_string_lossy();
        format!("cd {} && {}", qemu::shell_quote(&root), qemu.command_line())
    }
}

/// Boots with the console live and waits for the VM to power off, or for
/// `timeout` (zero: no limit; Ctrl-C reaches QEMU directly).
fn serve(qemu: &QemuCommand, ports: &HostPorts, timeout: Duration) -> Result<bool> {
    let limit = (!timeout.is_zero()).then_some(timeout);
    let mut child = LiveChild::spawn(&mut qemu.command(), limit, true)?;
    let waited = child.wait_for_stdout(
        |line| report::is_line(line, &LISTENING_LINE),
        limit.unwrap_or(Duration::MAX),
    )?;
    match waited {
        Ok(_) => eprintln!(
            "xtask: serving {url} and udp echo on {udp}; stop with: curl -X POST {url}poweroff",
            url = ports.url(),
            udp = ports.udp_echo_address()
        ),
        Err(LineWait::Exited) => {
            eprintln!("xtask: QEMU exited without `{LISTENING_LINE}`: the kernel did not serve")
        }
        Err(LineWait::TimedOut) => {}
    }
    let finished = child.finish(None)?;
    Ok(verdict(&finished, timeout))
}
