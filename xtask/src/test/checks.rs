//! Assertions a boot test makes about the serial output and the boot report.

use crate::vm::accel::Accel;
use std::fmt;
use std::sync::Arc;

use mote_boot::protocol::report::{Cmdline, Fact, Line, StartInfo};
use regex::Regex;

use crate::guest_output::report::BootReport;

/// A custom assertion: `Err` carries the reason it failed.
pub(crate) type CheckFn = fn(&[String], &BootReport) -> Result<(), String>;

/// Which parsed report lines a [`Check::Reports`] accepts.
pub(crate) type FactFilter = Arc<dyn Fn(&Fact<'_>) -> bool + Send + Sync>;

/// One assertion about a boot. Regexes apply to single lines; report lines
/// are read with the boot crate's protocol, never with a regex.
/// The `start_info` version microvm's firmware hands over (qboot
/// `fw_cfg.c`, `boot_pvh_from_fw_cfg`; docs/pvh.md).
pub(crate) const START_INFO_VERSION: u32 = 1;

/// The `mote: start_info` line of a boot whose command line is `cmdline`.
fn start_info_text(cmdline: &str) -> String {
    Line(StartInfo {
        version: START_INFO_VERSION,
        cmdline: Cmdline::Bytes(cmdline.as_bytes()),
    })
    .to_string()
}

#[derive(Clone)]
pub(crate) enum Check {
    /// Some output line is exactly this text.
    LineEquals(String),
    /// Some output line matches.
    LineMatches(Regex),
    /// No output line matches.
    NoLineMatches(Regex),
    /// No output line contains this text.
    NotContains(String),
    /// The reported command line is exactly this.
    CmdlineEquals(String),
    /// The reported command line is the case's words (`ours`), then what
    /// the VMM appended after them (`appended`, e.g. QEMU's
    /// `virtio_mmio.device=`): an accelerator's words go between the two.
    CmdlineEqualsAppended { ours: String, appended: String },
    /// The `start_info` report line carries exactly this command line.
    StartInfoCmdline(String),
    /// The reported command line contains this.
    CmdlineContains(String),
    /// The reported usable memory lies in `min..=max` bytes.
    UsableMemoryBetween { min: u64, max: u64 },
    /// The report lists a module with this index and size.
    ModuleSize { index: usize, size: u64 },
    /// Some report line parses to a fact `accept` takes; `description`
    /// names that fact in failure messages.
    Reports {
        description: &'static str,
        accept: FactFilter,
    },
    /// The last `mote: ` line is exactly this text.
    LastReportLine(String),
    /// Anything else; `description` names it in failure messages.
    Custom {
        description: &'static str,
        check: CheckFn,
    },
}

impl Check {
    /// `LineMatches` for a regex literal; panics on a malformed regex (a bug in the table).
    pub(crate) fn line_matches(pattern: &str) -> Self {
        Check::LineMatches(compile(pattern))
    }

    pub(crate) fn no_line_matches(pattern: &str) -> Self {
        Check::NoLineMatches(compile(pattern))
    }

    /// `LineEquals` for text or for a protocol `Line`, formatted.
    pub(crate) fn line_equals(line: impl fmt::Display) -> Self {
        Check::LineEquals(line.to_string())
    }

    pub(crate) fn not_contains(text: impl Into<String>) -> Self {
        Check::NotContains(text.into())
    }

    pub(crate) fn cmdline_equals(cmdline: impl Into<String>) -> Self {
        Check::CmdlineEquals(cmdline.into())
    }

    pub(crate) fn cmdline_contains(text: impl Into<String>) -> Self {
        Check::CmdlineContains(text.into())
    }

    /// `LastReportLine` for a protocol `Line`, formatted (or its text).
    pub(crate) fn last_report_line(line: impl fmt::Display) -> Self {
        Check::LastReportLine(line.to_string())
    }

    /// `Reports`: some report line is a fact `accept` takes.
    pub(crate) fn reports(
        description: &'static str,
        accept: impl Fn(&Fact<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Check::Reports {
            description,
            accept: Arc::new(accept),
        }
    }

    /// This check for a boot under `accel`, which may add to the command
    /// line the kernel sees (icount adds `tsc_early_khz=`).
    pub(crate) fn under(&self, accel: Accel) -> Check {
        match self {
            Check::CmdlineEquals(cmdline) => Check::CmdlineEquals(accel.kernel_cmdline(cmdline)),
            Check::CmdlineEqualsAppended { ours, appended } => Check::CmdlineEqualsAppended {
                ours: accel.kernel_cmdline(ours),
                appended: appended.clone(),
            },
            Check::StartInfoCmdline(cmdline) => {
                Check::StartInfoCmdline(accel.kernel_cmdline(cmdline))
            }
            other => other.clone(),
        }
    }

    /// `Ok` if the assertion holds for `output` and its parsed `report`.
    pub(crate) fn evaluate(&self, output: &[String], report: &BootReport) -> Result<(), String> {
        let any_line = |predicate: &dyn Fn(&str) -> bool| output.iter().any(|line| predicate(line));
        let holds = match self {
            Check::LineEquals(expected) => any_line(&|line| line == expected),
            Check::LineMatches(pattern) => any_line(&|line| pattern.is_match(line)),
            Check::NoLineMatches(pattern) => {
                return match output.iter().find(|line| pattern.is_match(line)) {
                    Some(line) => Err(format!("{self}, but found {line:?}")),
                    None => Ok(()),
                };
            }
            Check::NotContains(text) => {
                return match output.iter().find(|line| line.contains(text.as_str())) {
                    Some(line) => Err(format!("{self}, but found {line:?}")),
                    None => Ok(()),
                };
            }
            Check::CmdlineEqualsAppended { ours, appended } => {
                let expected = format!("{ours} {appended}");
                return match report.cmdline_text() {
                    Some(actual) if actual == expected => Ok(()),
                    Some(actual) => Err(format!("{self}, but it is {actual:?}")),
                    None => Err(format!("{self}, but there is no start_info line")),
                };
            }
            Check::StartInfoCmdline(cmdline) => {
                let expected = start_info_text(cmdline);
                any_line(&|line| line == expected)
            }
            Check::CmdlineEquals(expected) => {
                return match report.cmdline_text() {
                    Some(actual) if actual == *expected => Ok(()),
                    Some(actual) => Err(format!("{self}, but it is {actual:?}")),
                    None => Err(format!("{self}, but there is no start_info line")),
                };
            }
            Check::CmdlineContains(text) => {
                return match report.cmdline_text() {
                    Some(actual) if actual.contains(text.as_str()) => Ok(()),
                    Some(actual) => Err(format!("{self}, but it is {actual:?}")),
                    None => Err(format!("{self}, but there is no start_info line")),
                };
            }
            Check::UsableMemoryBetween { min, max } => {
                return match report.memory {
                    Some(memory) if (*min..=*max).contains(&memory.usable_bytes) => Ok(()),
                    Some(memory) => Err(format!(
                        "{self}, but {} bytes are usable",
                        memory.usable_bytes
                    )),
                    None => Err(format!("{self}, but there is no memory line")),
                };
            }
            Check::ModuleSize { index, size } => report
                .modules
                .iter()
                .any(|module| module.index == *index && module.size == *size),
            Check::Reports { accept, .. } => output
                .iter()
                .any(|line| matches!(Fact::parse_line(line), Some(Ok(fact)) if accept(&fact))),
            Check::LastReportLine(expected) => {
                return match report.last_line() {
                    Some(actual) if actual == expected => Ok(()),
                    Some(actual) => Err(format!("{self}, but it is {actual:?}")),
                    None => Err(format!("{self}, but there are no report lines")),
                };
            }
            Check::Custom { check, .. } => {
                return check(output, report).map_err(|reason| format!("{self}: {reason}"));
            }
        };
        if holds {
            Ok(())
        } else {
            Err(format!("missing: {self}"))
        }
    }
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|error| panic!("bad check regex {pattern:?}: {error}"))
}

impl fmt::Display for Check {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::LineEquals(line) => write!(formatter, "a line {line:?}"),
            Check::LineMatches(pattern) => write!(formatter, "a line matching /{pattern}/"),
            Check::NoLineMatches(pattern) => write!(formatter, "no line matching /{pattern}/"),
            Check::NotContains(text) => write!(formatter, "no line containing {text:?}"),
            Check::CmdlineEquals(cmdline) => write!(formatter, "cmdline {cmdline:?}"),
            Check::CmdlineEqualsAppended { ours, appended } => {
                write!(formatter, "cmdline {:?}", format!("{ours} {appended}"))
            }
            Check::StartInfoCmdline(cmdline) => {
                write!(formatter, "a line {:?}", start_info_text(cmdline))
            }
            Check::CmdlineContains(text) => write!(formatter, "cmdline containing {text:?}"),
            Check::UsableMemoryBetween { min, max } => {
                write!(formatter, "usable memory in {min}..={max} bytes")
            }
            Check::ModuleSize { index, size } => {
                write!(formatter, "module {index} of {size} bytes")
            }
            Check::Reports { description, .. } => write!(formatter, "a report line {description}"),
            Check::LastReportLine(line) => write!(formatter, "last report line {line:?}"),
            Check::Custom { description, .. } => formatter.write_str(description),
        }
    }
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::exit::Status;
    use mote_boot::protocol::report::{Cmdline, Line, Memory, Module, PowerOff, StartInfo};

    use super::*;

    const SUCCESS: Line<PowerOff> = Line(PowerOff(Status::Success));
    const FAILURE: Line<PowerOff> = Line(PowerOff(Status::Failure));

    fn output() -> Vec<String> {
        let start_info = StartInfo {
            version: 1,
            cmdline: Cmdline::Bytes(b"console=ttyS0 mote.exit=ready"),
        };
        let memory = Memory {
            usable_bytes: 200_000_000,
            regions: 2,
        };
        let module = Module {
            index: 0,
            address: 0x1000,
            size: 77,
        };
        vec![
            "[INFO ] hello".to_owned(),
            Line(start_info).to_string(),
            Line(memory).to_string(),
            Line(module).to_string(),
            SUCCESS.to_string(),
        ]
    }

    fn evaluate(check: Check) -> Result<(), String> {
        let output = output();
        let report = BootReport::parse(&output);
        check.evaluate(&output, &report)
    }

    #[test]
    fn line_checks() {
        assert!(evaluate(Check::line_equals("[INFO ] hello")).is_ok());
        assert!(evaluate(Check::line_equals("[INFO ] hell")).is_err());
        assert!(evaluate(Check::line_matches(r"^\[INFO +\] h")).is_ok());
        assert!(evaluate(Check::line_matches(r"^\[WARN")).is_err());
        assert!(evaluate(Check::no_line_matches(r"^\[DEBUG\]")).is_ok());
        let error = evaluate(Check::no_line_matches(r"^\[INFO ")).unwrap_err();
        assert!(error.contains("[INFO ] hello"), "{error}");
        assert!(evaluate(Check::not_contains("PANIC")).is_ok());
        assert!(evaluate(Check::not_contains("hello")).is_err());
    }

    #[test]
    fn report_checks() {
        assert!(evaluate(Check::cmdline_equals("console=ttyS0 mote.exit=ready")).is_ok());
        let error = evaluate(Check::cmdline_equals("console=ttyS0")).unwrap_err();
        assert!(error.contains("but it is"), "{error}");
        assert!(evaluate(Check::cmdline_contains("mote.exit=ready")).is_ok());
        assert!(
            evaluate(Check::UsableMemoryBetween {
                min: 200_000_000,
                max: 200_000_000
            })
            .is_ok()
        );
        let error = evaluate(Check::UsableMemoryBetween { min: 1, max: 10 }).unwrap_err();
        assert!(error.contains("200000000 bytes are usable"), "{error}");
        assert!(evaluate(Check::ModuleSize { index: 0, size: 77 }).is_ok());
        assert!(evaluate(Check::ModuleSize { index: 1, size: 77 }).is_err());
        assert!(evaluate(Check::last_report_line(SUCCESS)).is_ok());
        assert!(evaluate(Check::last_report_line(FAILURE)).is_err());
    }

    #[test]
    fn fact_checks_read_lines_with_the_protocol() {
        let two_regions = Check::reports(
            "with two memory regions",
            |fact| matches!(fact, Fact::Memory(memory) if memory.regions == 2),
        );
        assert!(evaluate(two_regions).is_ok());
        let tsc = Check::reports("with the TSC frequency", |fact| {
            matches!(fact, Fact::Tsc(_))
        });
        assert_eq!(
            evaluate(tsc).unwrap_err(),
            "missing: a report line with the TSC frequency"
        );
    }

    #[test]
    fn report_checks_fail_without_a_report() {
        let report = BootReport::default();
        for check in [
            Check::cmdline_equals("x"),
            Check::UsableMemoryBetween {
                min: 0,
                max: u64::MAX,
            },
            Check::last_report_line(SUCCESS),
        ] {
            assert!(check.evaluate(&[], &report).is_err(), "{check}");
        }
    }

    #[test]
    fn custom_checks_carry_their_description() {
        let check = Check::Custom {
            description: "two report lines",
            check: |_, report| {
                if report.lines.len() == 2 {
                    Ok(())
                } else {
                    Err(format!("found {}", report.lines.len()))
                }
            },
        };
        assert_eq!(evaluate(check).unwrap_err(), "two report lines: found 4");
    }
}
