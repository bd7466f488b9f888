//! The command-line options every command that boots mote shares, declared
//! once and flattened into each command's own `Args` struct.

use std::path::PathBuf;
use std::time::Duration;

use super::accel::AccelChoice;
use super::vmm::{VmmKind, VmmPaths};

/// Which kernel to boot and how: `run`, `trace` and `test`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct VmArgs {
    /// The accelerator.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub(crate) accel: AccelChoice,
    /// Boot this prebuilt image instead of building target/kernel.
    #[arg(long, value_name = "PATH")]
    pub(crate) kernel: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) vmm_paths: VmmPaths,
}

/// One boot with the console captured: `run` and `trace`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BootArgs {
    #[command(flatten)]
    pub(crate) vm: VmArgs,
    /// The VMM to boot under (Firecracker and Cloud Hypervisor need --accel kvm).
    #[arg(long, value_enum, default_value_t = VmmKind::Qemu)]
    pub(crate) vmm: VmmKind,
    /// Text added to the kernel command line.
    #[arg(long)]
    pub(crate) append: Option<String>,
    /// Kill the VMM after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Extra QEMU arguments, after `--` (QEMU only).
    #[arg(last = true)]
    pub(crate) qemu_args: Vec<String>,
}

impl BootArgs {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}
