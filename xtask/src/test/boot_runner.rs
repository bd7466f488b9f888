//! Runs [`BootCase`]s under one VMM, a few at a time, and judges their
//! output (and, outside QEMU, the VMM's log).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::guest_output::report::BootReport;
use crate::test::boot_case::{BootCase, ExpectedExit};
use crate::vm::accel::Accel;
use crate::vm::power_off::PowerOff;
use crate::vm::process::{self, Finished, Output};
use crate::vm::vmm::qemu::QemuCommand;
use crate::vm::vmm::{DEFAULT_MEMORY_MIB, VmSpec, Vmm, VmmKind};

/// How many of the VMM's error log lines a failure quotes.
const LOG_PROBLEM_LINES: usize = 10;

/// The VMM cases run on and its accelerator.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) vmm: Vmm,
    pub(crate) accel: Accel,
}

impl Target {
    /// `qemu-7.2.22/default-report`: a case's name under this VMM.
    pub(crate) fn case_name(&self, case: &str) -> String {
        format!("{}/{case}", self.vmm.label())
    }
}

/// How many lines of serial output a failure shows.
const FAILURE_TAIL_LINES: usize = 30;

/// The outcome of one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) name: String,
    pub(crate) elapsed: Duration,
    /// Empty if the case passed.
    pub(crate) failures: Vec<String>,
    pub(crate) command_line: String,
    /// The end of the output, kept for failures.
    pub(crate) tail: Vec<String>,
}

impl CaseResult {
    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// A case that could not run at all.
    pub(crate) fn not_run(name: String, reason: String) -> Self {
        Self {
            name,
            elapsed: Duration::ZERO,
            failures: vec![reason],
            command_line: String::new(),
            tail: Vec::new(),
        }
    }

    /// `ok   name (1.23 s)`, or `FAIL name: reason` followed by the command and output tail.
    pub(crate) fn print(&self) {
        if self.passed() {
            println!("ok   {} ({:.2} s)", self.name, self.elapsed.as_secs_f64());
            return;
        }
        let mut text = format!("FAIL {}: {}\n", self.name, self.failures.join("; "));
        if !self.command_line.is_empty() {
            text.push_str(&format!("    command: {}\n", self.command_line));
        }
        for line in &self.tail {
            text.push_str(&format!("    | {line}\n"));
        }
        print!("{text}");
    }
}

/// Runs `cases` with at most `parallel` QEMUs at once, printing each result as
/// it arrives; returns the results in table order.
pub(crate) fn run_cases(
    cases: &[BootCase],
    target: &Target,
    kernel: &Path,
    parallel: usize,
) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; cases.len()]);
    thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, cases.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(index) else { break };
                    let result = run_case(case, target, kernel);
                    let mut results = results
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    // Printed under the lock so that two results never interleave.
                    result.print();
                    results[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|result| result.expect("every case ran"))
        .collect()
}

fn run_case(case: &BootCase, target: &Target, kernel: &Path) -> CaseResult {
    let name = target.case_name(case.name);
    if let Some((base, copy)) = &case.fresh_copy
        && let Err(error) = std::fs::copy(base, copy)
    {
        return CaseResult::not_run(
            name,
            format!("copying {} to {}: {error}", base.display(), copy.display()),
        );
    }
    if target.vmm.kind == VmmKind::Qemu {
        run_on_qemu(case, target, kernel, name)
    } else {
        run_on_other(case, target, kernel, name)
    }
}

fn run_on_qemu(case: &BootCase, target: &Target, kernel: &Path, name: String) -> CaseResult {
    let mut qemu = QemuCommand::new(case.machine, target.accel, kernel)
        .vmm(&target.vmm)
        .append(&case.append);
    for (index, disk) in case.disks.iter().enumerate() {
        qemu = qemu.virtio_blk(disk, &format!("disk{index}"));
    }
    if let Some(initrd) = &case.initrd {
        qemu = qemu.initrd(initrd);
    }
    if case.vcpus > 1 {
        qemu = qemu.args(&["-smp".to_owned(), case.vcpus.to_string()]);
    }
    qemu = qemu.args(&case.qemu_args);
    if let Some(memory) = case.memory {
        qemu = qemu.memory(memory);
    }
    let command_line = qemu.command_line();
    match qemu.run(case.timeout, false) {
        Ok(finished) => {
            let ending = PowerOff::from_exit(&finished, case.timeout);
            CaseResult {
                name,
                elapsed: finished.elapsed,
                failures: judge(case, target.accel, &finished, &ending),
                command_line,
                tail: finished.tail(FAILURE_TAIL_LINES),
            }
        }
        Err(error) => CaseResult {
            command_line,
            ..CaseResult::not_run(name, format!("{error:#}"))
        },
    }
}

/// Firecracker and Cloud Hypervisor: the case as a [`VmSpec`]; the report's
/// power-off line is the verdict, and the VMM's log must hold no error.
fn run_on_other(case: &BootCase, target: &Target, kernel: &Path, name: String) -> CaseResult {
    let mut spec = VmSpec::new(kernel, &case.append);
    spec.memory_mib = DEFAULT_MEMORY_MIB;
    spec.disks = case.disks.clone();
    spec.vcpus = case.vcpus;
    spec.pci = case.pci;
    let mut invocation = match target.vmm.invocation(&spec) {
        Ok(invocation) => invocation,
        Err(error) => return CaseResult::not_run(name, format!("{error:#}")),
    };
    let command_line = invocation.command_line.clone();
    match process::run(
        &mut invocation.command,
        case.timeout,
        Output::Capture { echo: false },
    ) {
        Ok(finished) => {
            let ending = target.vmm.ending(&finished, case.timeout);
            let mut failures = judge(case, target.accel, &finished, &ending);
            let problems = invocation.log_problems(target.vmm.kind, &finished);
            if !problems.is_empty() {
                failures.push(format!(
                    "{} logged {} error line(s): {}",
                    target.vmm.kind,
                    problems.len(),
                    problems[..problems.len().min(LOG_PROBLEM_LINES)].join(" | ")
                ));
            }
            let mut tail = finished.tail(FAILURE_TAIL_LINES);
            let log = invocation.log_lines();
            tail.extend(
                log[log.len().saturating_sub(FAILURE_TAIL_LINES)..]
                    .iter()
                    .map(|line| format!("log: {line}")),
            );
            CaseResult {
                name,
                elapsed: finished.elapsed,
                failures,
                command_line,
                tail,
            }
        }
        Err(error) => CaseResult {
            command_line,
            ..CaseResult::not_run(name, format!("{error:#}"))
        },
    }
}

/// Every way `finished` (which ended as `ending`) falls short of `case`; empty if it passed.
fn judge(case: &BootCase, accel: Accel, finished: &Finished, ending: &PowerOff) -> Vec<String> {
    let mut failures = Vec::new();
    let power_off = ending;
    let exit_ok = match case.expected_exit {
        ExpectedExit::Success => *power_off == PowerOff::Success,
        ExpectedExit::Failure => *power_off == PowerOff::Failure,
        ExpectedExit::QemuExitCode(code) => !finished.timed_out && finished.exit_code == Some(code),
    };
    if !exit_ok {
        let expected = match case.expected_exit {
            ExpectedExit::Success => "a success power-off".to_owned(),
            ExpectedExit::Failure => "a failure power-off".to_owned(),
            ExpectedExit::QemuExitCode(code) => format!("QEMU exit code {code}"),
        };
        failures.push(format!("expected {expected}, but {power_off}"));
    }
    if let Some(limit) = case.must_finish_within
        && finished.elapsed > limit
    {
        failures.push(format!(
            "took {:.2} s, more than the {} s allowed",
            finished.elapsed.as_secs_f64(),
            limit.as_secs_f64()
        ));
    }
    let report = BootReport::parse(&finished.stdout);
    failures.extend(report.malformed_lines());
    failures.extend(
        case.checks
            .iter()
            .filter_map(|check| check.under(accel).evaluate(&finished.stdout, &report).err()),
    );
    failures
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::exit::Status;
    use mote_boot::protocol::report::{Cmdline, Line, PowerOff as PowerOffLine, StartInfo};

    use super::*;
    use crate::test::checks::Check;

    const SUCCESS: i32 = Status::Success.qemu_exit_code();
    const FAILURE: i32 = Status::Failure.qemu_exit_code();
    const CMDLINE: &str = "console=ttyS0 mote.exit=ready";

    fn finished(exit_code: i32, stdout: &[String]) -> Finished {
        Finished {
            stdout: stdout.to_vec(),
            exit_code: Some(exit_code),
            elapsed: Duration::from_millis(500),
            ..Finished::default()
        }
    }

    /// `judge` with QEMU's reading of the exit status.
    fn judge_exit(case: &BootCase, finished: &Finished) -> Vec<String> {
        judge(
            case,
            Accel::Tcg,
            finished,
            &PowerOff::from_exit(finished, case.timeout),
        )
    }

    fn case() -> BootCase {
        BootCase::new("sample", CMDLINE)
            .check(Check::cmdline_equals(CMDLINE))
            .check(Check::last_report_line(Line(PowerOffLine(Status::Success))))
    }

    /// The report of a good boot.
    fn good() -> Vec<String> {
        let start_info = StartInfo {
            version: 1,
            cmdline: Cmdline::Bytes(CMDLINE.as_bytes()),
        };
        vec![
            Line(start_info).to_string(),
            Line(PowerOffLine(Status::Success)).to_string(),
        ]
    }

    #[test]
    fn passes_a_good_boot() {
        assert_eq!(
            judge_exit(&case(), &finished(SUCCESS, &good())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn fails_on_the_wrong_exit_code() {
        let failures = judge_exit(&case(), &finished(FAILURE, &good()));
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("expected a success power-off"),
            "{failures:?}"
        );
        let failures = judge_exit(&case(), &finished(1, &good()));
        assert!(failures[0].contains("code 1"), "{failures:?}");
    }

    #[test]
    fn fails_on_timeout_even_with_a_good_report() {
        let mut timed_out = finished(0, &good());
        timed_out.exit_code = None;
        timed_out.timed_out = true;
        let failures = judge_exit(&case(), &timed_out);
        assert!(
            failures[0].contains("did not exit within 30 s"),
            "{failures:?}"
        );
    }

    #[test]
    fn accepts_a_plain_qemu_exit_code() {
        let plain = case().expect_exit(ExpectedExit::QemuExitCode(0));
        assert!(judge_exit(&plain, &finished(0, &good())).is_empty());
        assert!(!judge_exit(&plain, &finished(SUCCESS, &good())).is_empty());
    }

    #[test]
    fn reports_every_failed_check_and_malformed_lines() {
        let failures = judge_exit(
            &case(),
            &finished(
                SUCCESS,
                &[
                    "mote: memory 5 bytes".to_owned(),
                    Line(PowerOffLine(Status::Failure)).to_string(),
                ],
            ),
        );
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].starts_with("malformed report line"));
    }

    #[test]
    fn enforces_the_elapsed_limit() {
        let slow = case().must_finish_within(Duration::from_millis(100));
        let failures = judge_exit(&slow, &finished(SUCCESS, &good()));
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("more than the 0.1 s allowed"),
            "{failures:?}"
        );
    }
}
