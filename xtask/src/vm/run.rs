//! `cargo xtask run`: build, boot once with the serial console live, exit
//! with the kernel's verdict; `--serve` keeps the VM serving until it is
//! powered off over HTTP, `--measure` times boots to the first HTTP answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::env::build;
use crate::env::deps;
use crate::env::images::{self, RUN_DISK_SIZE};
use crate::env::workspace;
use crate::guest_output::report::LISTENING_LINE;
use crate::measure::bench::served::{self as served_boots, MeasureOptions};
use crate::vm::accel::{self, AccelChoice};
use crate::vm::cmdline::{self, READY_CMDLINE, STATIC_IP_PARAMETER};
use crate::vm::network::{HostForward, HostPorts};
use crate::vm::power_off::PowerOff;
use crate::vm::process::{LineWait, LiveChild};
use crate::vm::qemu::{self, Machine, QemuCommand};

pub struct RunOptions {
    pub accel: AccelChoice,
    /// Appended to [`READY_CMDLINE`] after a space.
    pub append: Option<String>,
    pub timeout: Duration,
    /// A prebuilt image to boot instead of building one.
    pub kernel: Option<PathBuf>,
    /// Passed to QEMU after everything else.
    pub qemu_args: Vec<String>,
    /// Boot without `mote.exit=ready`, with a static address, and wait
    /// until the VM powers off (`POST /poweroff`) or `timeout` (zero: no limit).
    pub serve: bool,
    /// Time this many served boots to the first `GET /health` 200, beside the null guest.
    pub measure: Option<usize>,
}

/// What `run` and `trace` boot: the kernel (built unless given), the
/// accelerator, and the disk image attached as virtio-blk.
pub struct Setup {
    pub kernel: PathBuf,
    pub accel: accel::Accel,
    pub disk: PathBuf,
}

impl Setup {
    /// Installs what is missing, builds or takes the kernel, resolves the
    /// accelerator and makes sure the disk image exists.
    pub fn prepare(kernel: Option<&std::path::Path>, accel: AccelChoice) -> Result<Self> {
        deps::ensure_all()?;
        let kernel = build::prebuilt_or_release(kernel)?;
        let accel = accel::resolve(accel, &kernel);
        let disk = workspace::target_dir().join("disk.img");
        images::ensure_disk_image(&disk, RUN_DISK_SIZE)?;
        Ok(Self {
            kernel,
            accel,
            disk,
        })
    }

    /// The microvm command with the disk and a user-mode NIC (with
    /// `forwards`), booting `cmdline`, then `qemu_args`.
    pub fn command(
        &self,
        cmdline: &str,
        forwards: &[HostForward],
        qemu_args: &[String],
    ) -> QemuCommand {
        QemuCommand::new(Machine::MicrovmNoAcpi, self.accel, &self.kernel)
            .append(cmdline)
            .virtio_blk(&self.disk, "disk0")
            .virtio_net_user_forwarded("net0", forwards)
            .args(qemu_args)
    }
}

/// Returns whether the kernel powered off with success.
pub fn run(options: RunOptions) -> Result<bool> {
    let setup = Setup::prepare(options.kernel.as_deref(), options.accel)?;
    let base = if options.serve || options.measure.is_some() {
        cmdline::served_cmdline(STATIC_IP_PARAMETER)
    } else {
        READY_CMDLINE.to_owned()
    };
    let cmdline = cmdline::with_append(&base, options.append.as_deref());
    if let Some(runs) = options.measure {
        if !options.qemu_args.is_empty() {
            anyhow::bail!(
                "--measure boots a fixed configuration; extra QEMU arguments are not supported"
            );
        }
        return served_boots::measure(&MeasureOptions {
            runs,
            accel: setup.accel,
            kernel: setup.kernel,
            null_guest: crate::env::null_guest::build()?,
            disk: setup.disk,
            cmdline,
            timeout: options.timeout,
        });
    }
    let ports = HostPorts::pick()?;
    let qemu = setup.command(&cmdline, &ports.forwards(), &options.qemu_args);

    let here = std::env::current_dir().ok();
    if here.as_deref() == Some(workspace::root()) {
        println!("{}", qemu.command_line());
    } else {
        let root = workspace::root().to_string_lossy();
        println!("cd {} && {}", qemu::shell_quote(&root), qemu.command_line());
    }

    println!("{}", ports.describe());
    if options.serve {
        return serve(&qemu, &ports, options.timeout);
    }

    let finished = qemu.run(options.timeout, true)?;
    let power_off = PowerOff::from_exit(&finished, options.timeout);
    eprintln!(
        "xtask: {power_off} after {:.2} s",
        finished.elapsed.as_secs_f64()
    );
    Ok(power_off.is_success())
}

/// Boots with the console live and waits for the VM to power off, or for
/// `timeout` (zero: no limit; Ctrl-C reaches QEMU directly).
fn serve(qemu: &QemuCommand, ports: &HostPorts, timeout: Duration) -> Result<bool> {
    let limit = (!timeout.is_zero()).then_some(timeout);
    let mut child = LiveChild::spawn(&mut qemu.command(), limit, true)?;
    let waited = child.wait_for_stdout(
        |line| line == LISTENING_LINE,
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
    let finished = child.finish(None)?.finished;
    let power_off = PowerOff::from_exit(&finished, timeout);
    eprintln!(
        "xtask: {power_off} after {:.2} s",
        finished.elapsed.as_secs_f64()
    );
    Ok(power_off.is_success())
}
