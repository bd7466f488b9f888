//! `cargo xtask test`: host unit tests, then, on every VMM found (each
//! `--qemu`, Firecracker, Cloud Hypervisor), the boot tests and the network
//! boot tests that apply to it, then one summary line.

use anyhow::Result;

use crate::env::build;
use crate::env::deps;
use crate::test::boot_case::BootCase;
use crate::test::boot_cases;
use crate::test::boot_runner::{self, CaseResult, Target};
use crate::test::fixtures::Fixtures;
use crate::test::host_tests;
use crate::test::net_cases::{self, NetCase};
use crate::test::vmm_cases;
use crate::vm::accel::{self, Accel};
use crate::vm::args::VmArgs;
use crate::vm::tap_namespace;
use crate::vm::vmm::{self, Vmm, VmmKind};

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
    /// The VMMs to run the cases on; each one not found here has its cases
    /// skipped with the reason. QEMU's cases run under --accel, the others' under KVM.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = VmmKind::ALL)]
    vmm: Vec<VmmKind>,
    /// Run only the cases whose name (`<vmm>-<version>/<case>`) contains this.
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

    let (results, skipped) = run_vm_tests(options);
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

/// Runs every selected case on every VMM of `options.vmm` found here;
/// returns the results and how many cases were skipped (each printed with
/// its reason: a VMM not found, no /dev/kvm, an accelerator, virtio-pci).
fn run_vm_tests(options: &TestArgs) -> (Vec<CaseResult>, u64) {
    let removed = tap_namespace::sweep_stale();
    if removed > 0 {
        println!("xtask: removed {removed} stale network namespace(s) of earlier runs");
    }
    let fixtures = match Fixtures::create() {
        Ok(fixtures) => fixtures,
        Err(error) => {
            let result = CaseResult::not_run(
                "boot test fixtures".to_owned(),
                format!("could not create them: {error:#}"),
            );
            result.print();
            return (vec![result], 0);
        }
    };
    let kernel = build::prebuilt_or_release(options.vm.kernel.as_deref())
        .map_err(|error| format!("kernel build failed: {error:#}"));
    let mut results = Vec::new();
    let mut skipped: u64 = 0;
    let mut considered = 0;
    let mut kinds = options.vmm.clone();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        for found in vmm::locate(kind, &options.vm.vmm_paths) {
            let (boot, net) = cases_for(kind, &fixtures);
            let label = found.as_ref().map_or_else(|_| kind.to_string(), Vmm::label);
            let named = |name: &str| format!("{label}/{name}");
            let boot: Vec<BootCase> = boot
                .into_iter()
                .filter(|case| matches(options, &named(case.name)))
                .collect();
            let net: Vec<NetCase> = net
                .into_iter()
                .filter(|case| matches(options, &named(case.name)))
                .collect();
            considered += boot.len() + net.len();
            let names = || {
                boot.iter()
                    .map(|case| named(case.name))
                    .chain(net.iter().map(|case| named(case.name)))
                    .collect::<Vec<_>>()
            };
            let skip_all = |reason: &str, skipped: &mut u64| {
                for name in names() {
                    println!("skip {name} ({reason})");
                    *skipped += 1;
                }
            };
            let vmm = match found {
                Ok(vmm) => vmm,
                Err(missing) => {
                    skip_all(&missing.reason, &mut skipped);
                    continue;
                }
            };
            if boot.is_empty() && net.is_empty() {
                continue;
            }
            let kernel = match &kernel {
                Ok(kernel) => kernel.clone(),
                Err(reason) => {
                    for name in names() {
                        let result = CaseResult::not_run(name, reason.clone());
                        result.print();
                        results.push(result);
                    }
                    continue;
                }
            };
            let accel = if kind.needs_kvm() {
                if !vmm::kvm_usable() {
                    skip_all(
                        &format!("{kind} needs /dev/kvm, which is not usable here"),
                        &mut skipped,
                    );
                    continue;
                }
                Accel::Kvm
            } else {
                accel::resolve(options.vm.accel, &kernel)
            };
            let target = Target { vmm, accel };
            let (boot, other): (Vec<BootCase>, Vec<BootCase>) = boot
                .into_iter()
                .partition(|case| case.only_under.is_none_or(|only| only == accel));
            for case in &other {
                if let Some(only) = case.only_under {
                    println!(
                        "skip {} (needs --accel {only})",
                        target.case_name(case.name)
                    );
                    skipped += 1;
                }
            }
            if !boot.is_empty() {
                println!(
                    "xtask: {} boot tests on {} under {accel}",
                    boot.len(),
                    target.vmm.label()
                );
                results.extend(boot_runner::run_cases(
                    &boot,
                    &target,
                    &kernel,
                    PARALLEL_BOOTS,
                ));
            }
            let mut runnable = Vec::new();
            for case in net {
                let reason = net_cases::unavailable(&case, &target);
                match reason {
                    Some(reason) => {
                        println!("skip {} ({reason})", target.case_name(case.name));
                        skipped += 1;
                    }
                    None => runnable.push(case),
                }
            }
            if !runnable.is_empty() {
                println!(
                    "xtask: {} network boot tests on {} under {accel}",
                    runnable.len(),
                    target.vmm.label()
                );
                results.extend(net_cases::run_cases(&runnable, &target, &kernel));
            }
        }
    }
    if considered == 0 {
        println!(
            "xtask: no case name contains {:?}",
            options.filter.as_deref().unwrap_or_default()
        );
    }
    (results, skipped)
}

/// The boot and network cases that apply to `kind`.
fn cases_for(kind: VmmKind, fixtures: &Fixtures) -> (Vec<BootCase>, Vec<NetCase>) {
    let boot = match kind {
        VmmKind::Qemu => boot_cases::boot_cases(fixtures),
        VmmKind::Firecracker | VmmKind::CloudHypervisor => vmm_cases::vmm_cases(fixtures, kind),
    };
    let net = net_cases::net_cases()
        .into_iter()
        .filter(|case| case.vmms.contains(&kind))
        .collect();
    (boot, net)
}

/// Whether the case's full name (`<vmm label>/<case>`) passes `--filter`.
fn matches(options: &TestArgs, name: &str) -> bool {
    options
        .filter
        .as_deref()
        .is_none_or(|filter| name.contains(filter))
}
