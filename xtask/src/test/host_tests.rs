//! The host half of `cargo xtask test`: `cargo test --workspace --no-fail-fast` and its counts.

use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Result;
use regex::Regex;

use crate::env::workspace;
use crate::vm::process::{self, Finished, Output};

/// Building and running every host test binary takes well under this.
const HOST_TEST_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// `passed` and `failed` summed over every `test result:` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TestCounts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    /// How many `test result:` lines there were (one per test binary and doc-test run).
    pub(crate) binaries: u64,
}

static TEST_RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^test result: \w+\. (\d+) passed; (\d+) failed;").unwrap());

/// Sums libtest's summary lines.
fn count_test_results<S: AsRef<str>>(output: &[S]) -> TestCounts {
    output
        .iter()
        .filter_map(|line| TEST_RESULT.captures(line.as_ref()))
        .fold(TestCounts::default(), |counts, captures| TestCounts {
            passed: counts.passed + captures[1].parse::<u64>().unwrap_or(0),
            failed: counts.failed + captures[2].parse::<u64>().unwrap_or(0),
            binaries: counts.binaries + 1,
        })
}

/// libtest's `failures:` blocks (each failed test's output and the list of
/// failed names), up to each binary's `test result:` line.
pub(crate) fn failure_sections<S: AsRef<str>>(output: &[S]) -> Vec<String> {
    let mut sections = Vec::new();
    let mut inside = false;
    for line in output.iter().map(AsRef::as_ref) {
        if line == "failures:" && !inside {
            inside = true;
        }
        if inside {
            sections.push(line.to_owned());
            if line.starts_with("test result:") {
                inside = false;
            }
        }
    }
    sections
}

/// The host tests' outcome.
pub(crate) struct HostTests {
    pub(crate) counts: TestCounts,
    pub(crate) finished: Finished,
    /// Why the run as a whole failed even if no test did (compile error, timeout).
    pub(crate) run_failure: Option<String>,
}

/// Runs `cargo test --workspace --no-fail-fast` for the host, output captured.
pub(crate) fn run_host_tests() -> Result<HostTests> {
    let mut cargo = Command::new(workspace::cargo());
    cargo
        .current_dir(workspace::root())
        // Without --no-fail-fast, cargo stops at the first failing test
        // binary and the later binaries' tests would go uncounted.
        .args(["test", "--workspace", "--no-fail-fast"]);
    let finished = process::run(
        &mut cargo,
        HOST_TEST_TIMEOUT,
        Output::Capture { echo: false },
    )?;
    let counts = count_test_results(&finished.stdout);
    let run_failure = (!finished.succeeded() && counts.failed == 0).then(|| {
        format!(
            "cargo test --workspace failed ({}) before reporting a failed test",
            finished.describe_end(HOST_TEST_TIMEOUT)
        )
    });
    Ok(HostTests {
        counts,
        finished,
        run_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_failure_sections() {
        let output = [
            "test a ... ok",
            "test b ... FAILED",
            "",
            "failures:",
            "",
            "---- b stdout ----",
            "assertion failed",
            "",
            "failures:",
            "    b",
            "",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "running 2 tests",
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        ];
        let sections = failure_sections(&output);
        assert_eq!(sections.first().map(String::as_str), Some("failures:"));
        assert!(sections.iter().any(|line| line == "assertion failed"));
        assert!(sections.last().unwrap().starts_with("test result: FAILED."));
        assert_eq!(sections.len(), 9);
    }

    #[test]
    fn sums_every_test_result_line() {
        let output = [
            "running 3 tests",
            "test a ... ok",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 4 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.20s",
            "   Doc-tests mote_boot",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "  test result: ok. 9 passed; 0 failed; (indented: not libtest's summary)",
        ];
        assert_eq!(
            count_test_results(&output),
            TestCounts {
                passed: 7,
                failed: 2,
                binaries: 3
            }
        );
    }
}
