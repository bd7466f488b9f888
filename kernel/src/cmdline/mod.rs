//! The kernel command line: how it splits into words and numbers the way
//! Linux reads them ([`lex`]), and the options mote acts on ([`options`]).
//! Other folders with command-line grammar of their own (virtio's
//! `virtio_mmio.device=`, net's `ip=`) build on [`lex`]. Pure logic,
//! host-tested; hand-written because it must match Linux's own parser
//! (`lib/cmdline.c`, `next_arg` and `memparse`) byte for byte.

pub(crate) mod lex;
pub(crate) mod options;

pub(crate) use options::{BootTimer, Crash, ExitPolicy, MAX_TSC_EARLY_KHZ, Options, TscEarlyKhz};
