//! The engine: cargo-afl (AFL++ built from the `afl` crate, on stable
//! Rust). Installs it when it is missing, builds the instrumented fuzzer
//! binary, and runs `afl-fuzz` unattended with a hard timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::env::workspace;
use crate::vm::process::{self, Output};

/// `cargo install cargo-afl` builds AFL++ too: about a minute here.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Past `-V`, afl-fuzz still calibrates the seeds first and writes its
/// stats at the end; a run this much longer is stuck and is killed.
const FUZZ_GRACE: Duration = Duration::from_secs(180);

/// The environment afl-fuzz needs on a shared, unattended machine:
/// no CPU frequency governor check, no core-pattern check (crashes are
/// caught in-process, not by a core dump), no curses UI, no stdin, and no
/// pinning to a core other processes use.
const AFL_ENVIRONMENT: [(&str, &str); 4] = [
    ("AFL_SKIP_CPUFREQ", "1"),
    ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
    ("AFL_NO_UI", "1"),
    ("AFL_NO_AFFINITY", "1"),
];

/// Where the instrumented build goes: apart from the normal target dir,
/// whose artifacts AFL's compiler flags would otherwise invalidate.
fn fuzz_target_dir() -> PathBuf {
    workspace::target_dir().join("fuzz").join("build")
}

fn cargo() -> Command {
    let mut command = Command::new(workspace::cargo());
    command.current_dir(workspace::root());
    command
}

/// Installs cargo-afl when `cargo afl` is not there.
pub(crate) fn ensure_cargo_afl() -> Result<()> {
    let installed = process::run(
        cargo().args(["afl", "--version"]),
        Duration::from_secs(60),
        Output::Capture { echo: false },
    )?;
    if installed.succeeded() {
        return Ok(());
    }
    let command = "cargo install cargo-afl --locked";
    println!(
        "xtask: cargo-afl is missing; installing it (builds AFL++, about a minute): {command}"
    );
    process::run_inherited(
        cargo().args(["install", "cargo-afl", "--locked"]),
        INSTALL_TIMEOUT,
        &format!("`{command}` (run it by hand, then `cargo afl config --build`)"),
    )
}

/// Builds `mote-fuzz` instrumented for AFL++ and returns its path.
pub(crate) fn build_fuzzer() -> Result<PathBuf> {
    let target_dir = fuzz_target_dir();
    println!("xtask: building the fuzzer (cargo afl build --release -p mote-fuzz --features afl)");
    let finished = process::run(
        cargo()
            .env("CARGO_TARGET_DIR", &target_dir)
            .args([
                "afl",
                "build",
                "--release",
                "-p",
                "mote-fuzz",
                "--features",
                "afl",
            ])
            .args(["--bin", "mote-fuzz"]),
        BUILD_TIMEOUT,
        Output::Capture { echo: false },
    )?;
    if !finished.succeeded() {
        bail!(
            "building the fuzzer failed ({}); if AFL++ itself is missing, run \
             `cargo afl config --build`:\n{}",
            finished.describe_end(BUILD_TIMEOUT),
            finished.stderr.join("\n")
        );
    }
    Ok(target_dir.join("release").join("mote-fuzz"))
}

/// Runs afl-fuzz on `target` for `duration` of fuzzing.
pub(crate) fn run_fuzzer(
    fuzzer: &Path,
    target: &str,
    inputs: &Path,
    findings: &Path,
    duration: Duration,
) -> Result<()> {
    let seconds = duration.as_secs().to_string();
    let mut command = cargo();
    command
        .envs(AFL_ENVIRONMENT)
        .args(["afl", "fuzz", "-V", &seconds, "-i"]);
    command
        .arg(inputs)
        .arg("-o")
        .arg(findings)
        .arg("--")
        .arg(fuzzer)
        .arg(target);
    let timeout = duration + FUZZ_GRACE;
    let finished = process::run(&mut command, timeout, Output::Capture { echo: false })?;
    if !finished.succeeded() {
        bail!(
            "afl-fuzz on {target} failed ({}):\n{}",
            finished.describe_end(timeout),
            finished.tail(30).join("\n")
        );
    }
    Ok(())
}
