//! One boot test: the VM configuration a case boots and what its output
//! must show, built with a small builder so the case table reads as a list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::Check;
use crate::vm::accel::Accel;
use crate::vm::vmm::qemu::{Disk, Machine};

/// The default time a case may run before QEMU is killed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How QEMU must exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpectedExit {
    /// The kernel powered off through isa-debug-exit with success (QEMU exit 33).
    Success,
    /// The kernel powered off through isa-debug-exit with failure (QEMU exit 35).
    Failure,
    /// QEMU itself exits with this code (e.g. 0 after an ACPI power-off).
    QemuExitCode(i32),
}

/// One boot of the kernel under QEMU and what it must print.
#[derive(Clone)]
pub(crate) struct BootCase {
    pub(crate) name: &'static str,
    pub(crate) machine: Machine,
    /// `-m` size; `None` keeps the machine's default.
    pub(crate) memory: Option<&'static str>,
    /// Disks, attached as virtio-blk devices in this order.
    pub(crate) disks: Vec<Disk>,
    /// Handed to the guest as a PVH module.
    pub(crate) initrd: Option<PathBuf>,
    /// vCPUs (QEMU `-smp`, Firecracker `vcpu_count`, Cloud Hypervisor
    /// `--cpus boot=`).
    pub(crate) vcpus: u32,
    /// Firecracker with `--enable-pci` (`VmSpec::pci`).
    pub(crate) pci: bool,
    /// Extra QEMU arguments after the machine's own and the devices.
    pub(crate) qemu_args: Vec<String>,
    /// The whole kernel command line.
    pub(crate) append: String,
    pub(crate) expected_exit: ExpectedExit,
    /// QEMU is killed after this long, and the case fails.
    pub(crate) timeout: Duration,
    /// The case fails if QEMU ran longer than this (a fault must not wait for a timeout).
    pub(crate) must_finish_within: Option<Duration>,
    pub(crate) checks: Vec<Check>,
    /// Run only under this accelerator; skipped (and said so) otherwise.
    pub(crate) only_under: Option<Accel>,
    /// Copied from the first path to the second just before the boot (a
    /// disk the guest writes into starts fresh on every VMM).
    pub(crate) fresh_copy: Option<(PathBuf, PathBuf)>,
}

impl BootCase {
    /// A case on the base microvm line that must power off with success.
    pub(crate) fn new(name: &'static str, append: impl Into<String>) -> Self {
        Self {
            name,
            machine: Machine::MicrovmNoAcpi,
            memory: None,
            disks: Vec::new(),
            initrd: None,
            vcpus: 1,
            pci: false,
            qemu_args: Vec::new(),
            append: append.into(),
            expected_exit: ExpectedExit::Success,
            timeout: DEFAULT_TIMEOUT,
            must_finish_within: None,
            checks: Vec::new(),
            only_under: None,
            fresh_copy: None,
        }
    }

    pub(crate) fn only_under(mut self, accel: Accel) -> Self {
        self.only_under = Some(accel);
        self
    }

    /// Copies `base` over `copy` before the boot.
    pub(crate) fn fresh_copy(mut self, base: PathBuf, copy: PathBuf) -> Self {
        self.fresh_copy = Some((base, copy));
        self
    }

    pub(crate) fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }

    pub(crate) fn memory(mut self, size: &'static str) -> Self {
        self.memory = Some(size);
        self
    }

    pub(crate) fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }

    pub(crate) fn initrd(mut self, image: &Path) -> Self {
        self.initrd = Some(image.to_path_buf());
        self
    }

    /// Boots Firecracker with `--enable-pci`.
    pub(crate) fn pci(mut self) -> Self {
        self.pci = true;
        self
    }

    pub(crate) fn vcpus(mut self, vcpus: u32) -> Self {
        self.vcpus = vcpus;
        self
    }

    pub(crate) fn qemu_args<S: Into<String>>(
        mut self,
        arguments: impl IntoIterator<Item = S>,
    ) -> Self {
        self.qemu_args.extend(arguments.into_iter().map(Into::into));
        self
    }

    pub(crate) fn expect_exit(mut self, expected: ExpectedExit) -> Self {
        self.expected_exit = expected;
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn must_finish_within(mut self, limit: Duration) -> Self {
        self.must_finish_within = Some(limit);
        self
    }

    pub(crate) fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    pub(crate) fn checks(mut self, checks: impl IntoIterator<Item = Check>) -> Self {
        self.checks.extend(checks);
        self
    }
}
