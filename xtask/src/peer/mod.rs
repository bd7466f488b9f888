//! `cargo xtask peer`: stock guests to boot beside mote. This file only
//! wires the command line to `linux.rs` and the parsers it uses.

mod bzimage;
mod cpio;
pub(crate) mod linux;
mod modinfo;

/// Also `cargo xtask trace --cpu-instructions`'s: where mote's boot CPU
/// enters.
pub(crate) use bzimage::pvh_entry;

use anyhow::Result;

/// Which peer to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeerKind {
    /// Debian's cloud kernel (PVH) and a busybox initramfs serving /health.
    Linux,
}

/// `cargo xtask peer`'s command line.
#[derive(Debug, clap::Args)]
pub(crate) struct PeerArgs {
    #[arg(value_enum)]
    kind: PeerKind,
}

pub(crate) fn peer(arguments: &PeerArgs) -> Result<bool> {
    match arguments.kind {
        PeerKind::Linux => linux::build(),
    }
}
