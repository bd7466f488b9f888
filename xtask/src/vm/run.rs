//! `cargo xtask run`: build, boot once with the serial console live on the
//! chosen VMM (`--vmm`), exit with the kernel's verdict; `--serve` keeps the VM serving until it is
//! powered off over HTTP. (`cargo xtask bench --served` times served boots.)

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::accel::{self, Accel, AccelChoice};
use super::args::BootArgs;
use super::cmdline::{self, READY_CMDLINE, STATIC_IP_PARAMETER};
use super::network::{HostForward, HostPorts, LISTENING_LINE};
use super::power_off::PowerOff;
use super::process::{self, Finished, LineWait, LiveChild, Output};
use super::vmm::qemu::{self, Disk, Machine, QemuCommand};
use super::vmm::{self, VmSpec, Vmm, VmmKind};
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

/// What `run` and `trace` boot: the kernel and `run`'s disk, on the VMM
/// and under the accelerator the user chose.
pub(crate) struct Setup {
    pub(crate) files: BootFiles,
    pub(crate) accel: Accel,
    pub(crate) vmm: Vmm,
}

/// One finished boot of [`Setup::boot`].
pub(crate) struct Booted {
    pub(crate) finished: Finished,
    /// How it ended, read the VMM's way (see [`Vmm::ending`]).
    pub(crate) ending: PowerOff,
}

impl Setup {
    /// Prepares the files (see [`boot_files::prepare`]), finds the VMM and
    /// resolves the accelerator (KVM for Firecracker and Cloud Hypervisor).
    pub(crate) fn prepare(boot: &BootArgs) -> Result<Self> {
        let vmm = vmm::locate_single(boot.vmm, &boot.vm.vmm_paths)?;
        let files = boot_files::prepare(boot.vm.kernel.as_deref())?;
        let accel = match (vmm.kind.needs_kvm(), boot.vm.accel) {
            (true, AccelChoice::Auto) => {
                println!("xtask: {} runs only under KVM: using kvm", vmm.kind);
                Accel::Kvm
            }
            (true, choice) => vmm
                .accel_for(accel::resolve(choice, &files.kernel))
                .map_err(anyhow::Error::msg)?,
            (false, choice) => accel::resolve(choice, &files.kernel),
        };
        Ok(Self { files, accel, vmm })
    }

    /// Boots `cmdline` with the disk (and, on QEMU, a user-mode NIC with
    /// `forwards` and `qemu_args`), printing the command line to paste, and
    /// waits at most `timeout`.
    pub(crate) fn boot(
        &self,
        cmdline: &str,
        forwards: &[HostForward],
        qemu_args: &[String],
        timeout: Duration,
        echo: bool,
    ) -> Result<Booted> {
        if self.vmm.kind == VmmKind::Qemu {
            return self.run_qemu(&self.command(cmdline, forwards, qemu_args), timeout, echo);
        }
        if !qemu_args.is_empty() {
            bail!(
                "arguments after `--` are QEMU arguments; {} takes none",
                self.vmm.kind
            );
        }
        let mut spec = VmSpec::new(&self.files.kernel, cmdline);
        spec.disks.push(Disk::writable(&self.files.disk));
        let mut invocation = self.vmm.invocation(&spec)?;
        println!("{}", pasteable(&invocation.command_line));
        let finished = process::run(&mut invocation.command, timeout, Output::Capture { echo })?;
        for line in invocation.log_problems(self.vmm.kind, &finished) {
            eprintln!("xtask: {} log: {line}", self.vmm.kind);
        }
        let ending = self.vmm.ending(&finished, timeout);
        Ok(Booted { finished, ending })
    }

    /// Runs `qemu` (from [`Self::command`]), printing its command line first.
    fn run_qemu(&self, qemu: &QemuCommand, timeout: Duration, echo: bool) -> Result<Booted> {
        println!("{}", pasteable(&qemu.command_line()));
        let finished = qemu.run(timeout, echo)?;
        let ending = self.vmm.ending(&finished, timeout);
        Ok(Booted { finished, ending })
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
            .vmm(&self.vmm)
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
    if setup.vmm.kind != VmmKind::Qemu {
        if arguments.serve {
            bail!(
                "--serve runs on QEMU only for now; `cargo xtask test --vmm {}` serves over a tap",
                setup.vmm.kind
            );
        }
        let booted = setup.boot(&cmdline, &[], &boot.qemu_args, boot.timeout(), true)?;
        return Ok(verdict(&booted));
    }
    let ports = HostPorts::pick()?;
    if arguments.serve {
        let qemu = setup.command(&cmdline, &ports.forwards(), &boot.qemu_args);
        println!("{}", pasteable(&qemu.command_line()));
        println!("{}", ports.describe());
        return serve(&setup.vmm, &qemu, &ports, boot.timeout());
    }
    println!("{}", ports.describe());
    let booted = setup.boot(
        &cmdline,
        &ports.forwards(),
        &boot.qemu_args,
        boot.timeout(),
        true,
    )?;
    Ok(verdict(&booted))
}

/// Prints how the boot ended; returns whether the kernel powered off with success.
fn verdict(booted: &Booted) -> bool {
    eprintln!(
        "xtask: {} after {:.2} s",
        booted.ending,
        booted.finished.elapsed.as_secs_f64()
    );
    booted.ending.is_success()
}

/// A command line to paste, with a `cd` to the workspace root first
/// unless we run there (its paths are relative to the root).
fn pasteable(command_line: &str) -> String {
    let root: &Path = workspace::root();
    if std::env::current_dir().ok().as_deref() == Some(root) {
        command_line.to_owned()
    } else {
        let root = root.to_string_lossy();
        format!("cd {} && {command_line}", qemu::shell_quote(&root))
    }
}

/// Boots with the console live and waits for the VM to power off, or for
/// `timeout` (zero: no limit; Ctrl-C reaches QEMU directly).
fn serve(vmm: &Vmm, qemu: &QemuCommand, ports: &HostPorts, timeout: Duration) -> Result<bool> {
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
    let ending = vmm.ending(&finished, timeout);
    Ok(verdict(&Booted { finished, ending }))
}
