//! How a VM is described and launched: the QEMU command line, the
//! accelerator, child processes with hard timeouts, served boots and the
//! host side of their network, and the `run` command.

pub mod accel;
pub mod cmdline;
pub mod http_client;
pub mod network;
pub mod power_off;
pub mod process;
pub mod qemu;
pub mod run;
pub mod served;
