//! How a VM is described and launched: the VMMs (QEMU, Firecracker, Cloud
//! Hypervisor) and their command lines, tap networks in namespaces, the
//! accelerator, child processes with hard timeouts, served boots and the
//! host side of their network, and the `run` command.

pub(crate) mod accel;
pub(crate) mod args;
pub(crate) mod cmdline;
pub(crate) mod http_client;
pub(crate) mod network;
pub(crate) mod power_off;
pub(crate) mod process;
pub(crate) mod run;
pub(crate) mod served;
pub(crate) mod tap_namespace;
pub(crate) mod vmm;
