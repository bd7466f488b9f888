//! The kernel's boot report: the `mote: ` lines on the serial console, parsed.

use std::sync::LazyLock;

use regex::Regex;

/// Every report line starts with this.
const REPORT_PREFIX: &str = "mote: ";

/// The report line that says the network services are up.
pub(crate) const LISTENING_LINE: &str = "mote: listening http 80 udp-echo 7";

/// Report lines that mean the kernel failed.
const FAILURE_PREFIXES: [&str; 3] = ["mote: PANIC", "mote: EXCEPTION", "mote: FATAL"];

/// The `mote: memory` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    pub(crate) usable_bytes: u64,
    pub(crate) regions: u32,
}

/// A `mote: module` line (e.g. the initrd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Module {
    pub(crate) index: u32,
    pub(crate) address: u64,
    pub(crate) size: u64,
}

/// The `mote: tsc` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tsc {
    pub(crate) hz: u64,
    pub(crate) source: String,
}

/// What a boot report says. Facts missing from the output are `None`/empty;
/// a line that names a known fact but does not have its shape is a `problem`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BootReport {
    pub(crate) start_info_version: Option<u32>,
    /// The command line with the kernel's escapes undone.
    pub(crate) cmdline: Option<Vec<u8>>,
    pub(crate) memory: Option<Memory>,
    pub(crate) modules: Vec<Module>,
    pub(crate) tsc: Option<Tsc>,
    pub(crate) ready_microseconds: Option<u64>,
    /// From the last `mote: poweroff` line: `Some(true)` for success.
    pub(crate) poweroff_success: Option<bool>,
    /// Every `mote: ` line, in order, prefix included.
    pub(crate) lines: Vec<String>,
    /// Report lines that could not be parsed, with the reason.
    pub(crate) problems: Vec<String>,
}

/// Per fact: its keyword, the prefix that claims a line for it, and its full shape.
static FACTS: LazyLock<[(&str, Regex, Regex); 6]> = LazyLock::new(|| {
    let fact = |keyword, claim: &str, shape: &str| {
        (
            keyword,
            Regex::new(claim).unwrap(),
            Regex::new(shape).unwrap(),
        )
    };
    [
        fact(
            "start_info",
            r"^start_info ",
            r#"^start_info v(\d+) cmdline "(.*)"$"#,
        ),
        fact(
            "memory",
            r"^memory \d",
            r"^memory (\d+) bytes usable in (\d+) regions$",
        ),
        fact(
            "module",
            r"^module \d",
            r"^module (\d+) at 0x([0-9a-f]+) size (\d+)$",
        ),
        fact("tsc", r"^tsc \d", r"^tsc (\d+) Hz from (\S+)$"),
        fact("ready", r"^ready \d", r"^ready (\d+) us after entry$"),
        fact("poweroff", r"^poweroff", r"^poweroff (success|failure)$"),
    ]
});

impl BootReport {
    /// Collects the report from captured serial output.
    pub(crate) fn parse<S: AsRef<str>>(output: &[S]) -> Self {
        let mut report = BootReport::default();
        for line in output.iter().map(AsRef::as_ref) {
            let Some(fact) = line.strip_prefix(REPORT_PREFIX) else {
                continue;
            };
            report.lines.push(line.to_owned());
            if let Err(reason) = report.record(fact) {
                report.problems.push(format!("{line:?}: {reason}"));
            }
        }
        report
    }

    fn record(&mut self, fact: &str) -> Result<(), String> {
        // A fact is claimed by its keyword and the shape of its first
        // argument, so that other facts may share a keyword (`memory mapped
        // up to …` is not the `memory <bytes> …` line) while a contract line
        // with a typo is still reported.
        let Some((keyword, pattern)) = FACTS
            .iter()
            .find(|(_, claim, _)| claim.is_match(fact))
            .map(|(keyword, _, pattern)| (*keyword, pattern))
        else {
            // PANIC, EXCEPTION and facts added later are kept in `lines` only.
            return Ok(());
        };
        let captures = pattern
            .captures(fact)
            .ok_or_else(|| format!("does not match {}", pattern.as_str()))?;
        let field = |index: usize| &captures[index];
        let number = |index: usize| {
            field(index)
                .parse::<u64>()
                .map_err(|error| format!("{}: {error}", field(index)))
        };
        let small_number = |index: usize| {
            field(index)
                .parse::<u32>()
                .map_err(|error| format!("{}: {error}", field(index)))
        };
        match keyword {
            "start_info" => {
                self.start_info_version = Some(small_number(1)?);
                self.cmdline = Some(unescape_cmdline(field(2))?);
            }
            "memory" => {
                self.memory = Some(Memory {
                    usable_bytes: number(1)?,
                    regions: small_number(2)?,
                });
            }
            "module" => self.modules.push(Module {
                index: small_number(1)?,
                address: u64::from_str_radix(field(2), 16).map_err(|error| error.to_string())?,
                size: number(3)?,
            }),
            "tsc" => {
                self.tsc = Some(Tsc {
                    hz: number(1)?,
                    source: field(2).to_owned(),
                });
            }
            "ready" => self.ready_microseconds = Some(number(1)?),
            "poweroff" => self.poweroff_success = Some(field(1) == "success"),
            _ => unreachable!("every entry of FACTS is handled"),
        }
        Ok(())
    }

    /// The command line as text (lossy for non-UTF-8 bytes).
    pub(crate) fn cmdline_text(&self) -> Option<String> {
        self.cmdline
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// Each line in [`Self::problems`] as a failure message.
    pub(crate) fn malformed_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .map(|problem| format!("malformed report line {problem}"))
    }

    pub(crate) fn last_line(&self) -> Option<&str> {
        self.lines.last().map(String::as_str)
    }
}

/// Undoes the kernel's quoting: `\"`, `\\` and `\xNN`; a bare `"` is an error.
fn unescape_cmdline(quoted: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(quoted.len());
    let mut input = quoted.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'\\' => match input.next() {
                Some(escaped @ (b'"' | b'\\')) => bytes.push(escaped),
                Some(b'x') => {
                    let digits = [input.next(), input.next()];
                    let [Some(high), Some(low)] = digits else {
                        return Err("truncated \\x escape".to_owned());
                    };
                    let hex = [high, low];
                    let hex = std::str::from_utf8(&hex).map_err(|error| error.to_string())?;
                    let value = u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad \\x escape \\x{hex}"))?;
                    bytes.push(value);
                }
                Some(other) => return Err(format!("unknown escape \\{}", char::from(other))),
                None => return Err("trailing backslash".to_owned()),
            },
            b'"' => return Err("unescaped quote".to_owned()),
            _ => bytes.push(byte),
        }
    }
    Ok(bytes)
}

/// The kernel's quoting, for building expected lines: the inverse of [`unescape_cmdline`].
pub(crate) fn escape_cmdline(bytes: &[u8]) -> String {
    let mut quoted = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b' '..=b'~' => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    quoted
}

/// The `mote: net0 mac … ip …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetLine {
    pub(crate) mac: String,
    /// `a.b.c.d/prefix`.
    pub(crate) address: String,
}

static NET_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^mote: net0 mac ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) ip (\d{1,3}(?:\.\d{1,3}){3}/\d{1,2})$",
    )
    .unwrap()
});

/// The `mote: net0` line in `output`, if any; `Err` for one with the wrong shape.
pub(crate) fn find_net_line<S: AsRef<str>>(output: &[S]) -> Option<Result<NetLine, String>> {
    let line = output
        .iter()
        .map(AsRef::as_ref)
        .find(|line| line.starts_with("mote: net0 "))?;
    Some(match NET_LINE.captures(line) {
        Some(captures) => Ok(NetLine {
            mac: captures[1].to_owned(),
            address: captures[2].to_owned(),
        }),
        None => Err(format!("{line:?} does not match {}", NET_LINE.as_str())),
    })
}

/// The kernel's failure lines in `output`.
pub(crate) fn failure_lines<S: AsRef<str>>(output: &[S]) -> Vec<String> {
    output
        .iter()
        .map(AsRef::as_ref)
        .filter(|line| {
            FAILURE_PREFIXES
                .iter()
                .any(|prefix| line.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[&str] = &[
        "[INFO ] mote starting",
        "mote: start_info v1 cmdline \"console=ttyS0 say=\\\"hi\\\" tab=\\x09 mote.exit=ready\"",
        "mote: memory 264241152 bytes usable in 2 regions",
        "mote: module 0 at 0x7fe0000 size 123457",
        "mote: tsc 2300000000 Hz from cpuid-0x40000010",
        "[DEBUG] something",
        "mote: ready 1234 us after entry",
        "mote: poweroff success",
    ];

    #[test]
    fn parses_a_complete_report() {
        let report = BootReport::parse(SAMPLE);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(report.start_info_version, Some(1));
        assert_eq!(
            report.cmdline_text().unwrap(),
            "console=ttyS0 say=\"hi\" tab=\t mote.exit=ready"
        );
        assert_eq!(
            report.memory,
            Some(Memory {
                usable_bytes: 264_241_152,
                regions: 2
            })
        );
        assert_eq!(
            report.modules,
            [Module {
                index: 0,
                address: 0x7fe_0000,
                size: 123_457
            }]
        );
        assert_eq!(
            report.tsc,
            Some(Tsc {
                hz: 2_300_000_000,
                source: "cpuid-0x40000010".to_owned()
            })
        );
        assert_eq!(report.ready_microseconds, Some(1234));
        assert_eq!(report.poweroff_success, Some(true));
        assert_eq!(report.lines.len(), 6);
        assert_eq!(report.last_line(), Some("mote: poweroff success"));
    }

    #[test]
    fn reports_malformed_facts_and_keeps_unknown_ones() {
        let report = BootReport::parse(&[
            "mote: memory 12 bytes",
            "mote: memory mapped up to 0x100000000, heap 4096 bytes",
            "mote: PANIC at src/main.rs:3:5: boom",
            "mote: poweroff failure",
        ]);
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].contains("mote: memory 12 bytes"));
        assert_eq!(report.memory, None);
        assert_eq!(report.poweroff_success, Some(false));
        assert_eq!(report.lines.len(), 4);
    }

    #[test]
    fn empty_output_has_no_report() {
        let report = BootReport::parse::<&str>(&[]);
        assert_eq!(report, BootReport::default());
    }

    #[test]
    fn cmdline_escapes_round_trip() {
        let raw = b"a \"b\" c\\d \x01\x7f\xff";
        let quoted = escape_cmdline(raw);
        assert_eq!(quoted, r#"a \"b\" c\\d \x01\x7f\xff"#);
        assert_eq!(unescape_cmdline(&quoted).unwrap(), raw);
    }

    #[test]
    fn rejects_bad_escapes() {
        for bad in [r"\q", r"\x4", r"\xzz", "\\", "a\"b"] {
            assert!(unescape_cmdline(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_net_line() {
        let output = [
            "mote: ready 5000 us after entry",
            "mote: net0 mac 52:54:00:12:34:56 ip 10.0.2.15/24",
            LISTENING_LINE,
        ];
        assert_eq!(
            find_net_line(&output),
            Some(Ok(NetLine {
                mac: "52:54:00:12:34:56".to_owned(),
                address: "10.0.2.15/24".to_owned()
            }))
        );
        assert!(find_net_line(&["mote: ready 1 us after entry"]).is_none());
        assert!(matches!(
            find_net_line(&["mote: net0 mac 52:54:00:12:34 ip 10.0.2.15/24"]),
            Some(Err(_))
        ));
    }

    #[test]
    fn finds_failure_lines() {
        let output = [
            "mote: ready 1 us after entry",
            "mote: PANIC at kernel/src/net.rs:10: oops",
            "[INFO ] mote: EXCEPTION in a log line does not count",
            "mote: EXCEPTION page fault",
        ];
        assert_eq!(
            failure_lines(&output),
            [
                "mote: PANIC at kernel/src/net.rs:10: oops",
                "mote: EXCEPTION page fault"
            ]
        );
    }
}
