//! The VMMs mote boots under, each described once: how its binary is found
//! ([`locate`]), how a [`VmSpec`] becomes its invocation, and how its end
//! is read ([`Vmm::ending`]). QEMU keeps its richer command builder
//! ([`qemu::QemuCommand`]) for the machine variants its cases need.

pub(crate) mod cloud_hypervisor;
pub(crate) mod firecracker;
pub(crate) mod qemu;
pub(crate) mod qemu_install;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mote_boot::protocol::exit::Status;

use super::accel::Accel;
use super::power_off::PowerOff;
use super::process::{self, Finished};
use crate::env::workspace;
use crate::guest_output::report::BootReport;

/// The kinds of VMM xtask knows.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum VmmKind {
    /// QEMU `microvm` (`--qemu PATH|VERSION`, `QEMU`, then `qemu-system-x86_64` on PATH).
    Qemu,
    /// Firecracker (`--firecracker PATH`, `FIRECRACKER`, then `firecracker` on PATH); needs KVM.
    Firecracker,
    /// Cloud Hypervisor (`--cloud-hypervisor PATH`, `CLOUD_HYPERVISOR`, then PATH); needs KVM.
    CloudHypervisor,
}

impl VmmKind {
    pub(crate) const ALL: [VmmKind; 3] = [
        VmmKind::Qemu,
        VmmKind::Firecracker,
        VmmKind::CloudHypervisor,
    ];

    /// The name used on the command line and in labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            VmmKind::Qemu => "qemu",
            VmmKind::Firecracker => "firecracker",
            VmmKind::CloudHypervisor => "cloud-hypervisor",
        }
    }

    /// The program name looked up on PATH.
    fn program(self) -> &'static str {
        match self {
            VmmKind::Qemu => qemu::QEMU_BINARY,
            VmmKind::Firecracker => "firecracker",
            VmmKind::CloudHypervisor => "cloud-hypervisor",
        }
    }

    /// The environment variable that names the binary.
    fn variable(self) -> &'static str {
        match self {
            VmmKind::Qemu => "QEMU",
            VmmKind::Firecracker => "FIRECRACKER",
            VmmKind::CloudHypervisor => "CLOUD_HYPERVISOR",
        }
    }

    /// What a user without it installs.
    fn install_hint(self) -> &'static str {
        match self {
            VmmKind::Qemu => "apt-get install qemu-system-x86, or pass --qemu PATH or --qemu 10.0",
            VmmKind::Firecracker => {
                "build or download Firecracker (github.com/firecracker-microvm/firecracker releases) \
                 and pass --firecracker PATH or set FIRECRACKER"
            }
            VmmKind::CloudHypervisor => {
                "build or download Cloud Hypervisor (github.com/cloud-hypervisor/cloud-hypervisor \
                 releases) and pass --cloud-hypervisor PATH or set CLOUD_HYPERVISOR"
            }
        }
    }

    /// Firecracker and Cloud Hypervisor are KVM-only; QEMU also emulates (TCG).
    pub(crate) fn needs_kvm(self) -> bool {
        self != VmmKind::Qemu
    }
}

impl fmt::Display for VmmKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Where the user said the VMM binaries are; flattened into every command that boots.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct VmmPaths {
    /// The QEMU binary (a path or a name on PATH), or a version such as
    /// `10.0` to unpack from Debian beside the system QEMU (repeatable in `test`).
    #[arg(long = "qemu", value_name = "PATH|VERSION")]
    pub(crate) qemu: Vec<String>,
    /// The Firecracker binary (else FIRECRACKER, then PATH).
    #[arg(long, value_name = "PATH")]
    pub(crate) firecracker: Option<PathBuf>,
    /// The Cloud Hypervisor binary (else CLOUD_HYPERVISOR, then PATH).
    #[arg(long = "cloud-hypervisor", value_name = "PATH")]
    pub(crate) cloud_hypervisor: Option<PathBuf>,
}

/// A VMM binary found and asked for its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vmm {
    pub(crate) kind: VmmKind,
    pub(crate) program: PathBuf,
    /// As the binary prints it, without a leading `v` (`7.2.22`, `1.17.0-dev`).
    pub(crate) version: String,
    /// Environment an unpacked QEMU needs (its libraries and modules).
    pub(crate) environment: Vec<(String, String)>,
    /// Arguments before all others (an unpacked QEMU's `-L` firmware directories).
    pub(crate) leading_args: Vec<String>,
    /// QEMU only: microvm's ACPI-on firmware is SeaBIOS, which needs option
    /// ROMs to load `-kernel` (with qboot, `x-option-roms=off` is harmless).
    pub(crate) seabios_microvm: bool,
}

/// A VMM that could not be used, and why (printed as a skip reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    pub(crate) kind: VmmKind,
    pub(crate) reason: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.kind, self.reason)
    }
}

const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

impl Vmm {
    /// `qemu-7.2.22`, `firecracker-1.17.0-dev`: the prefix of case names.
    pub(crate) fn label(&self) -> String {
        format!("{}-{}", self.kind, self.version)
    }

    /// A `Command` for the binary, run in the workspace root with its environment.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .current_dir(workspace::root())
            .envs(self.environment.iter().map(|(key, value)| (key, value)))
            .args(&self.leading_args);
        command
    }

    /// The words a shell line starts with: `KEY=value … program leading-args`.
    pub(crate) fn command_prefix(&self) -> Vec<String> {
        self.environment
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .chain(std::iter::once(
                workspace::relative_to_root(&self.program)
                    .display()
                    .to_string(),
            ))
            .chain(self.leading_args.iter().cloned())
            .collect()
    }

    /// Asks `program --version` and builds the description.
    fn probe(kind: VmmKind, program: PathBuf) -> Result<Self, Missing> {
        let missing = |reason: String| Missing { kind, reason };
        let output = process::query(Command::new(&program).arg("--version"), VERSION_TIMEOUT)
            .map_err(|error| missing(format!("{} --version: {error:#}", program.display())))?;
        let version = parse_version(kind, &output).ok_or_else(|| {
            missing(format!(
                "{} --version printed {:?}, not a {kind} version",
                program.display(),
                output.lines().next().unwrap_or_default()
            ))
        })?;
        let seabios_microvm = kind == VmmKind::Qemu
            && microvm_firmware_is_seabios(&[PathBuf::from(qemu::SYSTEM_FIRMWARE_DIR)]);
        Ok(Self {
            kind,
            program,
            version,
            environment: Vec::new(),
            leading_args: Vec::new(),
            seabios_microvm,
        })
    }

    /// How a boot under this VMM ended. QEMU's status carries the verdict
    /// (isa-debug-exit); elsewhere the VMM exits 0 whatever the guest's
    /// verdict, so the last `mote: poweroff` line decides, and the VMM must
    /// have ended by itself.
    pub(crate) fn ending(&self, finished: &Finished, timeout: Duration) -> PowerOff {
        if self.kind == VmmKind::Qemu {
            return PowerOff::from_exit(finished, timeout);
        }
        if finished.timed_out {
            return PowerOff::Abnormal(format!(
                "{} did not exit within {} s and was killed",
                self.kind,
                timeout.as_secs_f64()
            ));
        }
        match finished.exit_code {
            Some(0) => {}
            Some(code) => {
                return PowerOff::Abnormal(format!("{} exited with code {code}", self.kind));
            }
            None => {
                return PowerOff::Abnormal(format!(
                    "{} was killed by signal {}",
                    self.kind,
                    finished.signal.unwrap_or_default()
                ));
            }
        }
        match BootReport::parse(&finished.stdout).power_off {
            Some(Status::Success) => PowerOff::Success,
            Some(Status::Failure) => PowerOff::Failure,
            None => PowerOff::Abnormal(format!(
                "{} exited 0 without a `mote: poweroff` line",
                self.kind
            )),
        }
    }

    /// The accelerator this VMM runs with when the user asked for `asked`:
    /// Firecracker and Cloud Hypervisor only have KVM.
    pub(crate) fn accel_for(&self, asked: Accel) -> Result<Accel, String> {
        if self.kind.needs_kvm() && asked != Accel::Kvm {
            return Err(format!(
                "{} runs only under KVM; pass --accel kvm",
                self.kind
            ));
        }
        Ok(asked)
    }
}

/// The version word of `--version` output, without a leading `v`.
fn parse_version(kind: VmmKind, output: &str) -> Option<String> {
    let first = output.lines().find(|line| !line.trim().is_empty())?;
    let marker = match kind {
        VmmKind::Qemu => "QEMU emulator version ",
        VmmKind::Firecracker => "Firecracker ",
        VmmKind::CloudHypervisor => "cloud-hypervisor ",
    };
    let rest = &first[first.find(marker)? + marker.len()..];
    let word = rest.split_whitespace().next()?;
    let version = word.strip_prefix('v').unwrap_or(word);
    version
        .starts_with(|character: char| character.is_ascii_digit())
        .then(|| version.to_owned())
}

/// Whether the first `bios-microvm.bin` QEMU finds in `directories` is
/// SeaBIOS (it names itself in its image) rather than qboot.
pub(crate) fn microvm_firmware_is_seabios(directories: &[PathBuf]) -> bool {
    directories
        .iter()
        .map(|directory| directory.join("bios-microvm.bin"))
        .find(|path| path.exists())
        .and_then(|path| std::fs::read(path).ok())
        .is_some_and(|image| image.windows(7).any(|window| window == b"SeaBIOS"))
}

/// An executable file, or a name found on PATH.
fn resolve_program(given: &Path) -> Option<PathBuf> {
    if given.components().count() > 1 {
        given.is_file().then(|| given.to_path_buf())
    } else {
        workspace::find_on_path(&given.to_string_lossy())
    }
}

/// The binary the user named for `kind` (flag, then variable, then PATH).
fn locate_one(kind: VmmKind, flag: Option<&Path>) -> Result<Vmm, Missing> {
    let variable = std::env::var_os(kind.variable())
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let (given, source) = match (flag, variable) {
        (Some(flag), _) => (flag.to_path_buf(), "the command line"),
        (None, Some(variable)) => (variable, kind.variable()),
        (None, None) => (PathBuf::from(kind.program()), "PATH"),
    };
    let program = resolve_program(&given).ok_or_else(|| Missing {
        kind,
        reason: format!(
            "{} (from {source}) not found; {}",
            given.display(),
            kind.install_hint()
        ),
    })?;
    Vmm::probe(kind, program)
}

/// Every VMM of `kind` the user named: several QEMUs (each `--qemu`),
/// else one. A QEMU version (`10.0`) is unpacked first.
pub(crate) fn locate(kind: VmmKind, paths: &VmmPaths) -> Vec<Result<Vmm, Missing>> {
    match kind {
        VmmKind::Qemu if !paths.qemu.is_empty() => paths
            .qemu
            .iter()
            .map(|given| {
                if qemu_install::is_version(given) {
                    qemu_install::ensure(given).map_err(|error| Missing {
                        kind,
                        reason: format!("unpacking QEMU {given}: {error:#}"),
                    })
                } else {
                    locate_one(kind, Some(Path::new(given)))
                }
            })
            .collect(),
        VmmKind::Qemu => vec![locate_one(kind, None)],
        VmmKind::Firecracker => vec![locate_one(kind, paths.firecracker.as_deref())],
        VmmKind::CloudHypervisor => vec![locate_one(kind, paths.cloud_hypervisor.as_deref())],
    }
}

/// The one VMM of `kind` for `run`, `trace` (the first `--qemu`), or an error
/// that says what to install.
pub(crate) fn locate_single(kind: VmmKind, paths: &VmmPaths) -> anyhow::Result<Vmm> {
    match locate(kind, paths).into_iter().next() {
        Some(Ok(vmm)) => Ok(vmm),
        Some(Err(missing)) => anyhow::bail!("{missing}"),
        None => anyhow::bail!("no {kind} named"),
    }
}

/// Whether /dev/kvm can be opened for reading and writing.
pub(crate) fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// One disk image a VM gets, read-only or not.
pub(crate) use qemu::Disk;

/// A VM to boot, independent of the VMM: what Firecracker's JSON and
/// Cloud Hypervisor's flags are built from.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub(crate) kernel: PathBuf,
    pub(crate) cmdline: String,
    pub(crate) memory_mib: u64,
    pub(crate) vcpus: u32,
    pub(crate) disks: Vec<Disk>,
    /// Tap devices (by name, in the VMM's network namespace), one NIC each.
    pub(crate) taps: Vec<String>,
    /// Firecracker's `--enable-pci`: its devices on virtio-pci, not
    /// virtio-mmio (Cloud Hypervisor has PCI only; QEMU is its own).
    pub(crate) pci: bool,
}

impl VmSpec {
    pub(crate) fn new(kernel: &Path, cmdline: &str) -> Self {
        Self {
            kernel: kernel.to_path_buf(),
            cmdline: cmdline.to_owned(),
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            disks: Vec::new(),
            taps: Vec::new(),
            pci: false,
        }
    }
}

/// Guest RAM when a case does not say (QEMU's base line uses the same).
pub(crate) const DEFAULT_MEMORY_MIB: u64 = 256;

/// A VMM other than QEMU, ready to start: the command, its shell form, and
/// the log to check after it ends. Its temporary files go with it.
pub(crate) struct Invocation {
    pub(crate) command: Command,
    pub(crate) command_line: String,
    /// Firecracker's log file (its serial console is stdout).
    pub(crate) log: Option<PathBuf>,
    /// Where the invocation's files live; removed on drop.
    pub(crate) scratch: Option<PathBuf>,
}

impl Drop for Invocation {
    fn drop(&mut self) {
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

impl Invocation {
    /// The lines of the VMM's log (Firecracker's file, else stderr) that
    /// say something went wrong: its `ERROR` and `WARN` levels (but the
    /// warnings about the host each VMM module lists) and Firecracker's
    /// virtio status-transition complaint.
    pub(crate) fn log_problems(&self, vmm: VmmKind, finished: &Finished) -> Vec<String> {
        let lines: Vec<String> = match &self.log {
            Some(log) => std::fs::read_to_string(log)
                .map(|text| text.lines().map(str::to_owned).collect())
                .unwrap_or_default(),
            None => finished.stderr.clone(),
        };
        log_problem_lines(vmm, &lines)
    }

    /// The whole log (for a failure's tail).
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// See [`Invocation::log_problems`].
pub(crate) fn log_problem_lines(vmm: VmmKind, lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| {
            let warned = |level: &str, host: &[&str]| {
                line.contains(level) && !host.iter().any(|warning| line.contains(warning))
            };
            match vmm {
                VmmKind::Firecracker => {
                    line.contains(firecracker::STATUS_TRANSITION_COMPLAINT)
                        || line.contains(firecracker::ERROR_LEVEL)
                        || warned(firecracker::WARN_LEVEL, &firecracker::HOST_WARNINGS)
                }
                VmmKind::CloudHypervisor => {
                    line.contains(cloud_hypervisor::ERROR_LEVEL)
                        || warned(
                            cloud_hypervisor::WARN_LEVEL,
                            &cloud_hypervisor::HOST_WARNINGS,
                        )
                }
                VmmKind::Qemu => false,
            }
        })
        .cloned()
        .collect()
}

/// A unique scratch directory under target/vmm for one invocation's files.
fn scratch_directory(kind: VmmKind) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let directory = workspace::target_dir().join("vmm").join(format!(
        "{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&directory)?;
    Ok(directory)
}

impl Vmm {
    /// The invocation of `spec` under Firecracker or Cloud Hypervisor
    /// (QEMU's cases build a [`qemu::QemuCommand`] instead).
    pub(crate) fn invocation(&self, spec: &VmSpec) -> anyhow::Result<Invocation> {
        match self.kind {
            VmmKind::Firecracker => {
                firecracker::invocation(self, spec, scratch_directory(self.kind)?)
            }
            VmmKind::CloudHypervisor => Ok(cloud_hypervisor::invocation(self, spec)),
            VmmKind::Qemu => {
                anyhow::bail!("QEMU boots through its own command builder (QemuCommand)")
            }
        }
    }
}

/// Joins the words of a command line, quoted for a shell.
pub(crate) fn shell_line(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|word| qemu::shell_quote(&word))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_vmms_version_line() {
        assert_eq!(
            parse_version(
                VmmKind::Qemu,
                "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b2)\nCopyright"
            )
            .as_deref(),
            Some("7.2.22")
        );
        assert_eq!(
            parse_version(VmmKind::Firecracker, "Firecracker v1.17.0-dev\n\n").as_deref(),
            Some("1.17.0-dev")
        );
        assert_eq!(
            parse_version(
                VmmKind::CloudHypervisor,
                "cloud-hypervisor v54.0.0\nMigration Protocol Versions: 0"
            )
            .as_deref(),
            Some("54.0.0")
        );
        assert_eq!(parse_version(VmmKind::Qemu, "Firecracker v1.0"), None);
    }

    #[test]
    fn only_firecracker_and_cloud_hypervisor_need_kvm() {
        let vmm = |kind| Vmm {
            kind,
            program: PathBuf::from("x"),
            version: "1".to_owned(),
            environment: Vec::new(),
            leading_args: Vec::new(),
            seabios_microvm: false,
        };
        assert!(vmm(VmmKind::Firecracker).accel_for(Accel::Tcg).is_err());
        assert_eq!(
            vmm(VmmKind::Firecracker).accel_for(Accel::Kvm),
            Ok(Accel::Kvm)
        );
        assert_eq!(vmm(VmmKind::Qemu).accel_for(Accel::Tcg), Ok(Accel::Tcg));
        assert_eq!(vmm(VmmKind::CloudHypervisor).label(), "cloud-hypervisor-1");
    }

    #[test]
    fn the_report_line_is_the_verdict_outside_qemu() {
        let vmm = Vmm {
            kind: VmmKind::Firecracker,
            program: PathBuf::from("firecracker"),
            version: "1".to_owned(),
            environment: Vec::new(),
            leading_args: Vec::new(),
            seabios_microvm: false,
        };
        let finished = |code, lines: &[&str]| Finished {
            stdout: lines.iter().map(|line| (*line).to_owned()).collect(),
            exit_code: Some(code),
            ..Finished::default()
        };
        let timeout = Duration::from_secs(5);
        assert_eq!(
            vmm.ending(&finished(0, &["mote: poweroff success"]), timeout),
            PowerOff::Success
        );
        assert_eq!(
            vmm.ending(&finished(0, &["mote: poweroff failure"]), timeout),
            PowerOff::Failure
        );
        assert!(matches!(
            vmm.ending(&finished(0, &["mote: ready 5 us after entry"]), timeout),
            PowerOff::Abnormal(_)
        ));
        assert!(matches!(
            vmm.ending(&finished(1, &["mote: poweroff success"]), timeout),
            PowerOff::Abnormal(_)
        ));
    }

    #[test]
    fn finds_the_log_lines_that_fail_a_case() {
        let lines: Vec<String> = [
            "2026-12-02T14:00:35 [anonymous-instance:main:INFO] Running Firecracker v1.17.0-dev",
            "2026-12-02T14:00:35 [anonymous-instance:fc_vcpu 0:ERROR] Received KVM_EXIT_INTERNAL_ERROR signal",
            "2026-12-02T14:00:35 [anonymous-instance:fc_vmm:WARN] invalid virtio driver status transition: 0x0 -> 0x3",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(log_problem_lines(VmmKind::Firecracker, &lines), lines[1..]);
        let race = "2026-12-03T12:10:22 [anonymous-instance:fc_vcpu 0:WARN] Received a VcpuEvent::Resume message with immediate_exit enabled. immediate_exit was disabled before proceeding";
        assert!(log_problem_lines(VmmKind::Firecracker, &[race.to_owned()]).is_empty());
        let ch = [
            "cloud-hypervisor:   0.003527s: <vcpu0> WARN:vmm/src/cpu.rs:278 -- Kernel lacks CONFIG_SCHED_CORE support - no SMT isolation"
                .to_owned(),
            "cloud-hypervisor:   0.1s: <vmm> ERROR:vmm/src/lib.rs:1 -- boom".to_owned(),
            "cloud-hypervisor:   0.090844s: <vcpu0> WARN:pci/src/bus.rs:439 -- Failed moving device BAR: failed allocating new MMIO range: 0x3fffff800000->0x3ffffff80000(0x80000), keeping old BAR".to_owned(),
        ];
        assert_eq!(log_problem_lines(VmmKind::CloudHypervisor, &ch), ch[1..]);
    }

    #[test]
    fn recognises_seabios_by_its_name() {
        let directory = std::env::temp_dir().join(format!("mote-seabios-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(
            directory.join("bios-microvm.bin"),
            b"....SeaBIOS (version 1.16)",
        )
        .unwrap();
        assert!(microvm_firmware_is_seabios(&[
            PathBuf::from("/nonexistent"),
            directory.clone()
        ]));
        std::fs::write(directory.join("bios-microvm.bin"), b"qboot").unwrap();
        assert!(!microvm_firmware_is_seabios(std::slice::from_ref(
            &directory
        )));
        std::fs::remove_dir_all(directory).unwrap();
    }
}
