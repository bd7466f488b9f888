//! `cargo xtask test`: host unit tests, then the boot tests under QEMU, then
//! the network boot tests, then one summary line.

use std::path::PathBuf;

use anyhow::Result;

use crate::env::build;
use crate::env::deps;
use crate::test::boot_case::BootCase;
use crate::test::boot_cases;
use crate::test::boot_runner::{self, CaseResult};
use crate::test::fixtures::Fixtures;
use crate::test::host_tests;
use crate::test::net_cases;
use crate::vm::accel::{self, Accel};
use crate::vm::args::VmArgs;

/// QEMUs running at once: enough to overlap, few enough that TCG timings stay honest.
const PARALLEL_BOOTS: usize = 2;

/// Output lines shown when the host tests fail.
const HOST_FAILURE_TAIL_LINES: usize = 30;

/// `cargo xtask test`'s command line.
#[derive(Debug, clap::Args)]
#[command(mut_arg("accel", |arg| arg.default_value("tcg")))]
pub(crate) struct TestArgs {
    #[command(flatten)]
    vm: VmArgs,
    /// Run only the boot cases whose name contains this.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,
    /// Skip `cargo test --workspace`.
    #[arg(long)]
    no_host: bool,
}

/// Returns whether everything passed. The last line printed is always `N passed, N failed`.
pub(crate) fn test(options: &TestArgs) -> Result<bool> {
    deps::ensure_all()?;
    let mut passed: u64 = 0;
    let mut failed: u64 = 0;

    if !options.no_host {
        let (host_passed, host_failed) = run_host_tests();
        passed += host_passed;
        failed += host_failed;
    }

    let mut kernel = KernelForBoots::default();
    let (mut results, skipped) = run_boot_tests(options, &mut kernel);
    results.extend(run_net_tests(options, &mut kernel));
    for result in &results {
        if result.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
    }

    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(failed == 0)
}

/// Runs and prints the host tests; returns the (passed, failed) counts. A
/// run that failed without a failed test (a compile error, a timeout) counts
/// as one failure.
fn run_host_tests() -> (u64, u64) {
    let host = match host_tests::run_host_tests() {
        Ok(host) => host,
        Err(error) => {
            println!("FAIL host: {error:#}");
            return (0, 1);
        }
    };
    let counts = host.counts;
    if let Some(reason) = &host.run_failure {
        println!("FAIL host: {reason}");
        for line in host.finished.tail(HOST_FAILURE_TAIL_LINES) {
            println!("    | {line}");
        }
        return (counts.passed, counts.failed + 1);
    }
    if counts.failed > 0 {
        println!("FAIL host: {} host tests failed", counts.failed);
        // Failed tests explain themselves in libtest's `failures:` blocks;
        // the rest of stdout is passing tests and stderr is compile progress.
        for line in host_tests::failure_sections(&host.finished.stdout) {
            println!("    | {line}");
        }
    } else {
        println!(
            "ok   host: cargo test --workspace ({} passed in {} test binaries, {:.2} s)",
            counts.passed,
            counts.binaries,
            host.finished.elapsed.as_secs_f64()
        );
    }
    (counts.passed, counts.failed)
}

/// The kernel image and accelerator the boot tests use, built and chosen
/// once for both the boot cases and the network cases.
#[derive(Default)]
struct KernelForBoots {
    resolved: Option<Result<(PathBuf, Accel), String>>,
}

impl KernelForBoots {
    fn get(&mut self, options: &TestArgs) -> Result<(PathBuf, Accel), String> {
        self.resolved
            .get_or_insert_with(|| {
                build::prebuilt_or_release(options.vm.kernel.as_deref())
                    .map(|kernel| {
                        let accel = accel::resolve(options.vm.accel, &kernel);
                        (kernel, accel)
                    })
                    .map_err(|error| format!("kernel build failed: {error:#}"))
            })
            .clone()
    }
}

/// Runs the selected network cases (after the boot cases, one at a time).
fn run_net_tests(options: &TestArgs, kernel: &mut KernelForBoots) -> Vec<CaseResult> {
    let cases = net_cases::selected(options.filter.as_deref());
    if cases.is_empty() {
        return Vec::new();
    }
    match kernel.get(options) {
        Ok((kernel, accel)) => {
            println!("xtask: {} network boot tests under {accel}", cases.len());
            net_cases::run_cases(&cases, accel, &kernel)
        }
        Err(reason) => cases
            .iter()
            .map(|case| CaseResult::not_run(case.name, reason.clone()))
            .inspect(CaseResult::print)
            .collect(),
    }
}

/// Builds the kernel and runs the selected cases; a build or setup failure
/// fails every selected case, so the summary still counts them.
/// Also returns how many cases were skipped for needing another accelerator.
fn run_boot_tests(options: &TestArgs, kernel: &mut KernelForBoots) -> (Vec<CaseResult>, u64) {
    let not_run = |names: Vec<&'static str>, reason: String| -> Vec<CaseResult> {
        names
            .into_iter()
            .map(|name| CaseResult::not_run(name, reason.clone()))
            .inspect(CaseResult::print)
            .collect()
    };
    let fixtures = match Fixtures::create() {
        Ok(fixtures) => fixtures,
        Err(error) => {
            return (
                not_run(
                    vec!["boot test fixtures"],
                    format!("could not create them: {error:#}"),
                ),
                0,
            );
        }
    };
    let cases = selected(boot_cases::boot_cases(&fixtures), options.filter.as_deref());
    if cases.is_empty() {
        if net_cases::selected(options.filter.as_deref()).is_empty() {
            println!(
                "xtask: no boot case name contains {:?}",
                options.filter.as_deref().unwrap_or_default()
            );
        }
        return (Vec::new(), 0);
    }
    let (kernel, accel) = match kernel.get(options) {
        Ok(resolved) => resolved,
        Err(reason) => {
            let names = cases.iter().map(|case| case.name).collect();
            return (not_run(names, reason), 0);
        }
    };
    let (cases, other): (Vec<BootCase>, Vec<BootCase>) = cases
        .into_iter()
        .partition(|case| case.only_under.is_none_or(|only| only == accel));
    println!("xtask: {} boot tests under {accel}", cases.len());
    for case in &other {
        if let Some(only) = case.only_under {
            println!("skip {} (needs --accel {only})", case.name);
        }
    }
    (
        boot_runner::run_cases(&cases, accel, &kernel, PARALLEL_BOOTS),
        other.len() as u64,
    )
}

fn selected(cases: Vec<BootCase>, filter: Option<&str>) -> Vec<BootCase> {
    match filter {
        Some(filter) => cases
            .into_iter()
            .filter(|case| case.name.contains(filter))
            .collect(),
        None => cases,
    }
}
