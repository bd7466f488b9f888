//! The QEMU `microvm` command line: the machine, the accelerator's CPU
//! model, devices, and the line printed for a user to paste.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use mote_boot::protocol::exit::DEBUG_EXIT_DEVICE;

use super::Vmm;
use crate::env::workspace;
use crate::vm::accel::{Accel, ICOUNT_ARGUMENTS};
use crate::vm::network::{HostForward, Transport};
use crate::vm::process::{self, Finished, Output};

pub(crate) const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Where Debian's QEMU finds its firmware when no `-L` is given.
pub(crate) const SYSTEM_FIRMWARE_DIR: &str = "/usr/share/qemu";

/// The microvm property that skips option ROMs (hw/i386/microvm.c). qboot
/// loads `-kernel` itself, but SeaBIOS, microvm's ACPI-on firmware in QEMU
/// builds that ship it, loads it through the linuxboot option ROM and hangs
/// without it.
const NO_OPTION_ROMS: &str = "x-option-roms=off";

/// microvm trimmed as in the NetBSD MICROVM example: no option ROMs, no ACPI,
/// no legacy PIC, an RTC even under KVM.
const MICROVM_NO_ACPI: &str = "microvm,x-option-roms=off,rtc=on,acpi=off,pic=off";

const DEFAULT_MEMORY: &str = "256M";

/// The `-M` value of the tuned base line, with ACPI off (the default) or on
/// (QEMU's default for microvm: firmware tables, the GED power-off register).
pub(crate) fn microvm_options(acpi: bool) -> &'static str {
    if acpi {
        "microvm,x-option-roms=off,rtc=on,pic=off"
    } else {
        MICROVM_NO_ACPI
    }
}

/// The CPU model under KVM (see [`accel_arguments`]).
pub(crate) const KVM_CPU: &str = "host,+invtsc,-arch-capabilities";

/// The accelerator's arguments: `-accel` and the `-cpu` model.
fn accel_arguments(accel: Accel) -> [&'static str; 4] {
    match accel {
        // invtsc lets the guest trust the TSC; with KVM, `host` also exposes
        // the CPUID 0x40000010 timing leaf. Some nested KVMs cannot set MSR
        // 0x10a (ARCH_CAPABILITIES) and QEMU aborts; mote never reads it, so
        // it is hidden.
        Accel::Kvm => ["-accel", "kvm", "-cpu", KVM_CPU],
        Accel::Tcg | Accel::Icount => ["-accel", "tcg", "-cpu", "max"],
    }
}

/// Which microvm configuration to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Machine {
    /// The tuned base line: `acpi=off`, 256 MiB, isa-debug-exit, `-no-user-config`.
    MicrovmNoAcpi,
    /// A plain `-M microvm` with QEMU's defaults (ACPI on, no isa-debug-exit),
    /// as a user would type it; the kernel powers off through ACPI and QEMU exits 0.
    MicrovmDefaults,
    /// `-M q35` (SeaBIOS, which assigns BARs; ECAM in the MCFG), otherwise
    /// as the base line: virtio devices are `virtio-*-pci`.
    Q35,
    /// `-M microvm,pcie=on` with QEMU's other defaults (ACPI on): virtio
    /// devices are `virtio-*-pci` on its PCI Express host bridge, whose
    /// BARs QEMU 7.2's firmware leaves unassigned and whose ECAM base is
    /// only in the DSDT's `_CBA`.
    MicrovmPcie,
}

impl Machine {
    /// Whether virtio devices go on PCI rather than virtio-mmio.
    pub(crate) fn virtio_on_pci(self) -> bool {
        matches!(self, Self::Q35 | Self::MicrovmPcie)
    }

    /// The QEMU device model for virtio `kind` (`blk`, `net`).
    fn virtio_model(self, kind: &str) -> String {
        if self.virtio_on_pci() {
            format!("virtio-{kind}-pci")
        } else {
            format!("virtio-{kind}-device")
        }
    }
}

/// A raw disk image the guest sees as a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    pub(crate) image: PathBuf,
    /// The device refuses writes (QEMU `readonly=on`).
    pub(crate) read_only: bool,
}

impl Disk {
    pub(crate) fn writable(image: &Path) -> Self {
        Self {
            image: image.to_path_buf(),
            read_only: false,
        }
    }

    pub(crate) fn read_only(image: &Path) -> Self {
        Self {
            image: image.to_path_buf(),
            read_only: true,
        }
    }
}

/// Builds one QEMU invocation.
#[derive(Debug, Clone)]
pub(crate) struct QemuCommand {
    machine: Machine,
    accel: Accel,
    memory: Option<String>,
    kernel: PathBuf,
    append: String,
    extra: Vec<String>,
    /// Replaces the `-M` value of [`Machine::MicrovmNoAcpi`] (see [`microvm_options`]).
    machine_options: Option<String>,
    /// Replaces the accelerator's default `-cpu` model.
    cpu: Option<String>,
    /// Appended to the `-accel` value (`one-insn-per-tb=on`).
    accel_options: Option<String>,
    /// The QEMU binary; `None`: `qemu-system-x86_64` on PATH.
    vmm: Option<Vmm>,
}

impl QemuCommand {
    pub(crate) fn new(machine: Machine, accel: Accel, kernel: &Path) -> Self {
        Self {
            machine,
            accel,
            memory: match machine {
                Machine::MicrovmNoAcpi | Machine::Q35 => Some(DEFAULT_MEMORY.to_owned()),
                Machine::MicrovmDefaults | Machine::MicrovmPcie => None,
            },
            kernel: workspace::relative_to_root(kernel),
            append: String::new(),
            extra: Vec::new(),
            machine_options: None,
            cpu: None,
            accel_options: None,
            vmm: None,
        }
    }

    /// Runs this QEMU binary (its environment and `-L` directories too).
    pub(crate) fn vmm(mut self, vmm: &Vmm) -> Self {
        self.vmm = Some(vmm.clone());
        self
    }

    /// The `-M` value, without `x-option-roms=off` when ACPI is on and the
    /// firmware is SeaBIOS (see [`NO_OPTION_ROMS`]).
    fn machine_value(&self) -> String {
        let machine = match self.machine {
            Machine::MicrovmNoAcpi => self.machine_options.as_deref().unwrap_or(MICROVM_NO_ACPI),
            Machine::MicrovmDefaults => "microvm",
            Machine::MicrovmPcie => "microvm,pcie=on",
            Machine::Q35 => "q35",
        };
        let seabios = self.vmm.as_ref().is_some_and(|vmm| vmm.seabios_microvm);
        if seabios && !machine.split(',').any(|option| option == "acpi=off") {
            machine
                .split(',')
                .filter(|option| *option != NO_OPTION_ROMS)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            machine.to_owned()
        }
    }

    /// The `-M` value for [`Machine::MicrovmNoAcpi`] (e.g. [`microvm_options`]`(true)`).
    pub(crate) fn machine_options(mut self, options: &str) -> Self {
        self.machine_options = Some(options.to_owned());
        self
    }

    /// The `-cpu` model instead of the accelerator's default.
    pub(crate) fn cpu(mut self, model: &str) -> Self {
        self.cpu = Some(model.to_owned());
        self
    }

    /// Options for the accelerator, after its name in `-accel` (a second
    /// `-accel` would only be a fallback for the first).
    pub(crate) fn accel_options(mut self, options: &str) -> Self {
        self.accel_options = Some(options.to_owned());
        self
    }

    /// The accelerator's arguments with the `-cpu` and accelerator
    /// options applied.
    fn accel_and_cpu(&self) -> [String; 4] {
        let mut arguments = accel_arguments(self.accel).map(str::to_owned);
        if let Some(options) = &self.accel_options {
            arguments[1] = format!("{},{options}", arguments[1]);
        }
        if let Some(cpu) = &self.cpu {
            arguments[3].clone_from(cpu);
        }
        arguments
    }

    /// Guest RAM in QEMU's `-m` syntax (`16M`, `6G`).
    pub(crate) fn memory(mut self, size: &str) -> Self {
        self.memory = Some(size.to_owned());
        self
    }

    /// The kernel command line (`-append`).
    pub(crate) fn append(mut self, cmdline: &str) -> Self {
        self.append = cmdline.to_owned();
        self
    }

    /// Further QEMU arguments, placed after everything else.
    pub(crate) fn args<S: AsRef<str>>(mut self, arguments: impl IntoIterator<Item = S>) -> Self {
        self.extra.extend(
            arguments
                .into_iter()
                .map(|argument| argument.as_ref().to_owned()),
        );
        self
    }

    /// `disk` as a virtio-blk device on a virtio-mmio transport; `id` names
    /// its drive. Devices take transports in the order they are added.
    pub(crate) fn virtio_blk(self, disk: &Disk, id: &str) -> Self {
        let image = workspace::relative_to_root(&disk.image);
        let read_only = if disk.read_only { ",readonly=on" } else { "" };
        let model = self.machine.virtio_model("blk");
        self.args([
            "-drive".to_owned(),
            format!(
                "file={},format=raw,if=none,id={id}{read_only}",
                image.display()
            ),
            "-device".to_owned(),
            format!("{model},drive={id}"),
        ])
    }

    /// An initrd (`-initrd`), which the guest gets as a PVH module.
    pub(crate) fn initrd(self, image: &Path) -> Self {
        let image = workspace::relative_to_root(image);
        self.args(["-initrd".to_owned(), image.display().to_string()])
    }

    /// The isa-debug-exit device, for [`Machine::MicrovmDefaults`], which
    /// lacks it: the kernel tries it before ACPI, so the verdict reaches
    /// QEMU's exit status.
    pub(crate) fn debug_exit_device(self) -> Self {
        self.args(["-device", DEBUG_EXIT_DEVICE])
    }

    /// A user-mode (slirp) network as a virtio-net device, with host ports
    /// forwarded to guest ports (`hostfwd=tcp:127.0.0.1:<host>-:<guest>`):
    /// bound to the loopback address only, so nothing outside this machine
    /// can reach the guest.
    pub(crate) fn virtio_net_user_forwarded(self, id: &str, forwards: &[HostForward]) -> Self {
        let mut netdev = format!("user,id={id}");
        for forward in forwards {
            netdev.push_str(&format!(",hostfwd={}", hostfwd_rule(forward)));
        }
        let model = self.machine.virtio_model("net");
        self.args([
            "-netdev".to_owned(),
            netdev,
            "-device".to_owned(),
            format!("{model},netdev={id}"),
        ])
    }

    /// A virtio-net device on the tap device `tap` (in the namespace QEMU
    /// runs in; `docs/system/net.rst`, `-netdev tap`), without QEMU's
    /// up/down scripts: xtask configures the tap itself.
    pub(crate) fn virtio_net_tap(self, id: &str, tap: &str) -> Self {
        let model = self.machine.virtio_model("net");
        self.args([
            "-netdev".to_owned(),
            format!("tap,id={id},ifname={tap},script=no,downscript=no"),
            "-device".to_owned(),
            format!("{model},netdev={id}"),
        ])
    }

    /// The arguments after the program name.
    pub(crate) fn arguments(&self) -> Vec<String> {
        let mut arguments: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| arguments.extend(items.iter().map(|&item| item.to_owned()));
        let kernel = self.kernel.to_string_lossy();
        let machine = self.machine_value();
        push(&["-M", &machine]);
        let accel = self.accel_and_cpu();
        push(&accel.each_ref().map(String::as_str));
        if self.accel == Accel::Icount {
            push(&ICOUNT_ARGUMENTS);
        }
        let append = self.accel.kernel_cmdline(&self.append);
        if let Some(memory) = &self.memory {
            push(&["-m", memory]);
        }
        match self.machine {
            Machine::MicrovmNoAcpi | Machine::Q35 => {
                push(&[
                    "-nodefaults",
                    "-no-user-config",
                    "-display",
                    "none",
                    "-serial",
                    "stdio",
                    "-no-reboot",
                    "-device",
                    DEBUG_EXIT_DEVICE,
                    "-kernel",
                    &kernel,
                    "-append",
                    &append,
                ]);
            }
            Machine::MicrovmDefaults | Machine::MicrovmPcie => {
                push(&[
                    "-kernel",
                    &kernel,
                    "-nodefaults",
                    "-serial",
                    "stdio",
                    "-display",
                    "none",
                    "-no-reboot",
                    "-append",
                    &append,
                ]);
            }
        }
        arguments.extend(self.extra.iter().cloned());
        arguments
    }

    /// A `Command` that runs QEMU in the workspace root (paths are relative to it).
    pub(crate) fn command(&self) -> Command {
        let mut command = match &self.vmm {
            Some(vmm) => vmm.command(),
            None => {
                let mut command = Command::new(QEMU_BINARY);
                command.current_dir(workspace::root());
                command
            }
        };
        command.args(self.arguments());
        command
    }

    /// One shell line to paste into a terminal in the workspace root.
    pub(crate) fn command_line(&self) -> String {
        let prefix = match &self.vmm {
            Some(vmm) => vmm.command_prefix(),
            None => vec![QEMU_BINARY.to_owned()],
        };
        prefix
            .into_iter()
            .map(|word| shell_quote(&word))
            .chain(
                self.arguments()
                    .iter()
                    .map(|argument| shell_quote(argument)),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Boots and waits at most `timeout`, stamping each output line with its
    /// arrival; with `echo`, serial output is copied live.
    pub(crate) fn run(&self, timeout: Duration, echo: bool) -> Result<Finished> {
        process::run(&mut self.command(), timeout, Output::Capture { echo })
    }
}

/// One `hostfwd=` rule in QEMU's syntax (`docs/system/net.rst`,
/// `-netdev user,hostfwd=`), bound to the loopback address only, so nothing
/// outside this machine can reach the guest; the empty guest address means
/// the first DHCP address, 10.0.2.15.
fn hostfwd_rule(forward: &HostForward) -> String {
    let transport = match forward.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    format!(
        "{transport}:127.0.0.1:{}-:{}",
        forward.host_port, forward.guest_port
    )
}

/// Quotes `argument` for a POSIX shell unless it is made of plainly safe characters.
pub(crate) fn shell_quote(argument: &str) -> String {
    let plain =
        |character: char| character.is_ascii_alphanumeric() || "_-+=,.:/@%".contains(character);
    if !argument.is_empty() && argument.chars().all(plain) {
        argument.to_owned()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_command_line_matches_the_microvm_example() {
        let command = QemuCommand::new(
            Machine::MicrovmNoAcpi,
            Accel::Tcg,
            Path::new("target/kernel"),
        )
        .append("console=ttyS0 mote.exit=ready");
        assert_eq!(
            command.command_line(),
            format!(
                "qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,acpi=off,pic=off \
                 -accel tcg -cpu max -m 256M -nodefaults -no-user-config -display none \
                 -serial stdio -no-reboot -device {DEBUG_EXIT_DEVICE} \
                 -kernel target/kernel -append 'console=ttyS0 mote.exit=ready'"
            )
        );
    }

    #[test]
    fn plain_command_has_no_debug_exit_and_no_memory_size() {
        let arguments = QemuCommand::new(Machine::MicrovmDefaults, Accel::Kvm, Path::new("k"))
            .append("console=ttyS0 hello")
            .arguments();
        assert!(
            !arguments
                .iter()
                .any(|argument| argument.contains("isa-debug-exit"))
        );
        assert!(!arguments.iter().any(|argument| argument == "-m"));
        assert_eq!(
            &arguments[..6],
            ["-M", "microvm", "-accel", "kvm", "-cpu", KVM_CPU]
        );
    }

    #[test]
    fn machine_and_cpu_overrides() {
        let arguments = QemuCommand::new(Machine::MicrovmNoAcpi, Accel::Kvm, Path::new("k"))
            .machine_options(microvm_options(true))
            .cpu("host,-arch-capabilities")
            .arguments();
        assert_eq!(
            &arguments[..6],
            [
                "-M",
                "microvm,x-option-roms=off,rtc=on,pic=off",
                "-accel",
                "kvm",
                "-cpu",
                "host,-arch-capabilities"
            ]
        );
        assert_eq!(microvm_options(false), MICROVM_NO_ACPI);
    }

    #[test]
    fn forwards_host_ports_on_loopback_only() {
        let forwards = [
            HostForward {
                transport: Transport::Tcp,
                host_port: 40080,
                guest_port: 80,
            },
            HostForward {
                transport: Transport::Udp,
                host_port: 40007,
                guest_port: 7,
            },
        ];
        let arguments = QemuCommand::new(Machine::MicrovmNoAcpi, Accel::Tcg, Path::new("k"))
            .virtio_net_user_forwarded("net0", &forwards)
            .arguments();
        let tail = &arguments[arguments.len() - 4..];
        assert_eq!(
            tail,
            [
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:40080-:80,hostfwd=udp:127.0.0.1:40007-:7",
                "-device",
                "virtio-net-device,netdev=net0"
            ]
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(
            shell_quote("file=a.img,format=raw"),
            "file=a.img,format=raw"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
