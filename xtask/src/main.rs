//! `cargo xtask`: build, run and test the mote kernel under QEMU microvm.
//!
//! This file only wires the command line to the modules that do the work.

mod env;
mod guest_output;
mod measure;
mod test;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::env::{build, deps};
use crate::measure::{bench, trace};
use crate::test::suite as test_suite;
use crate::vm::accel::AccelChoice;
use crate::vm::run;

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
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build, then boot the kernel once with a disk and a network card, serial output live.
    /// Host ports on 127.0.0.1 are forwarded to the guest's HTTP (80) and UDP echo (7) ports.
    Run {
        #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
        accel: AccelChoice,
        /// Text added to the kernel command line `console=ttyS0 mote.exit=ready`
        /// (with --serve or --measure: `console=ttyS0 ip=10.0.2.15:10.0.2.2:…`).
        #[arg(long)]
        append: Option<String>,
        /// Kill QEMU after this many seconds (with --serve, 0 means no limit;
        /// with --measure, it applies to each boot).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
        /// Keep the VM serving (no `mote.exit=ready`, a static address) until
        /// it is powered off with `POST /poweroff` or --timeout passes.
        #[arg(long, conflicts_with = "measure")]
        serve: bool,
        /// Boot N times (default 10) in served mode and time QEMU start → first
        /// `GET /health` 200, beside the null guest's start → exit, interleaved.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
        measure: Option<usize>,
        /// Boot this prebuilt image instead of building target/kernel.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Extra QEMU arguments, after `--`.
        #[arg(last = true)]
        qemu_args: Vec<String>,
    },
    /// Boot with the tslog dump on (or read one) and print the per-phase
    /// table; write target/tslog.folded and the flamechart target/tslog.svg.
    Trace {
        #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
        accel: AccelChoice,
        /// Text added to the kernel command line.
        #[arg(long)]
        append: Option<String>,
        /// Kill QEMU after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
        /// Boot this prebuilt image instead of building target/kernel.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Analyse a dump captured elsewhere (a saved log, another VMM) instead of booting.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// TSC frequency, for a dump without mote's `tslog begin` line.
        #[arg(long, value_name = "HZ")]
        tsc_hz: Option<u64>,
        /// Extra QEMU arguments, after `--`.
        #[arg(last = true)]
        qemu_args: Vec<String>,
    },
    /// Measure boot latency: boot each configuration N times, interleaved,
    /// beside a null guest (QEMU's floor); print the table, write
    /// target/bench/bench-<time>.json and .svg. Or --compare / --render saved runs.
    #[command(after_long_help = bench::CONFIG_FILE_HELP)]
    Bench(Box<bench::BenchArgs>),
    /// Run the host unit tests, then the boot tests under QEMU.
    Test {
        #[arg(long, value_enum, default_value_t = AccelChoice::Tcg)]
        accel: AccelChoice,
        /// Run only the boot cases whose name contains this.
        #[arg(long, value_name = "SUBSTR")]
        filter: Option<String>,
        /// Skip `cargo test --workspace`.
        #[arg(long)]
        no_host: bool,
        /// Boot this prebuilt image instead of building target/kernel.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one task; `Ok(false)` means it ran and reported a failure.
fn dispatch(task: Task) -> Result<bool> {
    match task {
        Task::Build { debug } => {
            deps::ensure_rust_target()?;
            let profile = if debug {
                build::Profile::Debug
            } else {
                build::Profile::Release
            };
            let kernel = build::build_kernel(profile)?;
            println!("{}", kernel.display());
            Ok(true)
        }
        Task::Run {
            accel,
            append,
            timeout,
            serve,
            measure,
            kernel,
            qemu_args,
        } => run::run(run::RunOptions {
            accel,
            append,
            timeout: Duration::from_secs(timeout),
            kernel,
            qemu_args,
            serve,
            measure,
        }),
        Task::Trace {
            accel,
            append,
            timeout,
            kernel,
            from,
            tsc_hz,
            qemu_args,
        } => trace::trace(trace::TraceOptions {
            accel,
            append,
            timeout: Duration::from_secs(timeout),
            kernel,
            from,
            tsc_hz,
            qemu_args,
        }),
        Task::Bench(arguments) => bench::bench(arguments.into_options()),
        Task::Test {
            accel,
            filter,
            no_host,
            kernel,
        } => test_suite::test(test_suite::TestOptions {
            accel,
            filter,
            no_host,
            kernel,
        }),
    }
}
