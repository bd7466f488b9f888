//! `cargo xtask`: build, run and test the mote kernel under QEMU microvm.
//!
//! This file only wires the command line to the modules that do the work.

mod env;
mod fuzz;
mod guest_output;
mod measure;
mod peer;
mod test;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::env::build::BuildArgs;
use crate::fuzz::FuzzArgs;
use crate::measure::bench::{self, BenchArgs};
use crate::measure::trace::TraceArgs;
use crate::peer::PeerArgs;
use crate::test::suite::TestArgs;
use crate::vm::run::RunArgs;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test the mote kernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the kernel for x86_64-unknown-none and copy it to target/kernel.
    Build(BuildArgs),
    /// Build, then boot the kernel once with a disk and a network card, serial output live.
    /// Host ports on 127.0.0.1 are forwarded to the guest's HTTP (80) and UDP echo (7) ports.
    Run(RunArgs),
    /// Boot with the tslog dump on (or read one) and print the per-phase
    /// table; write target/tslog.folded and the flamechart target/tslog.svg.
    Trace(TraceArgs),
    /// Measure boot latency: boot each configuration N times, interleaved,
    /// beside a null guest (QEMU's floor); print the table, write
    /// target/bench/bench-<time>.json and .svg. Or --compare / --render saved runs.
    #[command(after_long_help = bench::CONFIG_FILE_HELP)]
    Bench(Box<BenchArgs>),
    /// Run the host unit tests, then the boot tests under QEMU.
    Test(TestArgs),
    /// Build a stock guest to bench beside mote: `linux` fetches Debian's
    /// cloud kernel and busybox-static (apt-get download, cached under
    /// target/peer/linux/) and builds an initramfs that serves /health.
    Peer(PeerArgs),
    /// Fuzz a parser of outside bytes under AFL++ (cargo-afl, installed
    /// when missing) for a bounded time; crashes are kept for `cargo test`.
    Fuzz(FuzzArgs),
}

fn main() -> ExitCode {
    match dispatch(&Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one task; `Ok(false)` means it ran and reported a failure.
fn dispatch(task: &Task) -> Result<bool> {
    match task {
        Task::Build(arguments) => env::build::build(arguments),
        Task::Run(arguments) => vm::run::run(arguments),
        Task::Trace(arguments) => measure::trace::trace(arguments),
        Task::Bench(arguments) => bench::bench(arguments),
        Task::Test(arguments) => test::suite::test(arguments),
        Task::Peer(arguments) => peer::peer(arguments),
        Task::Fuzz(arguments) => fuzz::fuzz(arguments),
    }
}
