//! Runs [`BootCase`]s under QEMU, a few at a time, and judges their output.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::guest_output::report::BootReport;
use crate::test::boot_case::{BootCase, ExpectedExit};
use crate::vm::accel::Accel;
use crate::vm::power_off::PowerOff;
use crate::vm::process::Finished;
use crate::vm::qemu::QemuCommand;

/// How many lines of serial output a failure shows.
const FAILURE_TAIL_LINES: usize = 30;

/// The outcome of one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) name: &'static str,
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
    pub(crate) fn not_run(name: &'static str, reason: String) -> Self {
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
    accel: Accel,
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
                    let result = run_case(case, accel, kernel);
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

fn run_case(case: &BootCase, accel: Accel, kernel: &Path) -> CaseResult {
    let mut qemu = QemuCommand::new(case.machine, accel, kernel).append(&case.append);
    for (index, disk) in case.disks.iter().enumerate() {
        qemu = qemu.virtio_blk(disk, &format!("disk{index}"));
    }
    if let Some(initrd) = &case.initrd {
        qemu = qemu.initrd(initrd);
    }
    qemu = qemu.args(&case.qemu_args);
    if let Some(memory) = case.memory {
        qemu = qemu.memory(memory);
    }
    let command_line = qemu.command_line();
    match qemu.run(case.timeout, false) {
        Ok(finished) => CaseResult {
            name: case.name,
            elapsed: finished.elapsed,
            failures: judge(case, &finished),
            command_line,
            tail: finished.tail(FAILURE_TAIL_LINES),
        },
        Err(error) => CaseResult {
            command_line,
            ..CaseResult::not_run(case.name, format!("{error:#}"))
        },
    }
}

/// Every way `finished` falls short of `case`; empty if it passed.
fn judge(case: &BootCase, finished: &Finished) -> Vec<String> {
    let mut failures = Vec::new();
    let power_off = PowerOff::from_exit(finished, case.timeout);
    let exit_ok = match case.expected_exit {
        ExpectedExit::Success => power_off == PowerOff::Success,
        ExpectedExit::Failure => power_off == PowerOff::Failure,
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
            .filter_map(|check| check.evaluate(&finished.stdout, &report).err()),
    );
    failures
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::exit::Status;
    use mote_boot::protocol::report::{Cmdline, Line, PowerOff, StartInfo};

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

    fn case() -> BootCase {
        BootCase::new("sample", CMDLINE)
            .check(Check::cmdline_equals(CMDLINE))
            .check(Check::last_report_line(Line(PowerOff(Status::Success))))
    }

    /// The report of a good boot.
    fn good() -> Vec<String> {
        let start_info = StartInfo {
            version: 1,
            cmdline: Cmdline::Bytes(CMDLINE.as_bytes()),
        };
        vec![
            Line(start_info).to_string(),
            Line(PowerOff(Status::Success)).to_string(),
        ]
    }

    #[test]
    fn passes_a_good_boot() {
        assert_eq!(
            judge(&case(), &finished(SUCCESS, &good())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn fails_on_the_wrong_exit_code() {
        let failures = judge(&case(), &finished(FAILURE, &good()));
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("expected a success power-off"),
            "{failures:?}"
        );
        let failures = judge(&case(), &finished(1, &good()));
        assert!(failures[0].contains("code 1"), "{failures:?}");
    }

    #[test]
    fn fails_on_timeout_even_with_a_good_report() {
        let mut timed_out = finished(0, &good());
        timed_out.exit_code = None;
        timed_out.timed_out = true;
        let failures = judge(&case(), &timed_out);
        assert!(
            failures[0].contains("did not exit within 30 s"),
            "{failures:?}"
        );
    }

    #[test]
    fn accepts_a_plain_qemu_exit_code() {
        let plain = case().expect_exit(ExpectedExit::QemuExitCode(0));
        assert!(judge(&plain, &finished(0, &good())).is_empty());
        assert!(!judge(&plain, &finished(SUCCESS, &good())).is_empty());
    }

    #[test]
    fn reports_every_failed_check_and_malformed_lines() {
        let failures = judge(
            &case(),
            &finished(
                SUCCESS,
                &[
                    "mote: memory 5 bytes".to_owned(),
                    Line(PowerOff(Status::Failure)).to_string(),
                ],
            ),
        );
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].starts_with("malformed report line"));
    }

    #[test]
    fn enforces_the_elapsed_limit() {
        let slow = case().must_finish_within(Duration::from_millis(100));
        let failures = judge(&slow, &finished(SUCCESS, &good()));
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("more than the 0.1 s allowed"),
            "{failures:?}"
        );
    }
}
