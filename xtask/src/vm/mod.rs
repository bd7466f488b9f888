//! How a VM is described and launched: the QEMU command line, the
//! accelerator, child processes with hard timeouts, served boots and the
//! host side of their network, and the `run` command.

pub mod http_client;
pub mod process;
pub mod qemu;
pub mod run;
pub mod served;
