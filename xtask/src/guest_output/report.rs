//! The kernel's boot report: the `mote: ` lines on the serial console, read
//! with the boot crate's protocol module (the kernel writes them with it).

use std::fmt;

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{
    self, Exception, Fact, Fatal, Memory, Module, Net, Panic, Ready, SHAPES, Tsc,
};

/// What a boot report says. Facts missing from the output are `None`/empty;
/// a line whose keyword is known but whose shape is not is a `problem`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BootReport {
    pub(crate) start_info_version: Option<u32>,
    /// The command line with the kernel's escapes undone.
    pub(crate) cmdline: Option<Vec<u8>>,
    pub(crate) memory: Option<Memory>,
    pub(crate) modules: Vec<Module>,
    pub(crate) tsc: Option<Tsc>,
    pub(crate) ready: Option<Ready>,
    /// From the last `poweroff` line.
    pub(crate) power_off: Option<Status>,
    /// Every `mote: ` line, in order, prefix included.
    pub(crate) lines: Vec<String>,
    /// Report lines that could not be parsed, with the reason.
    pub(crate) problems: Vec<String>,
}

impl BootReport {
    /// Collects the report from captured serial output. Every line with a
    /// known keyword must have one of its shapes; lines with a keyword the
    /// protocol does not know (a later kernel's) are kept in `lines` only.
    pub(crate) fn parse<S: AsRef<str>>(output: &[S]) -> Self {
        let mut report = BootReport::default();
        for line in output.iter().map(AsRef::as_ref) {
            if report::body(line).is_none() {
                continue;
            }
            report.lines.push(line.to_owned());
            match Fact::parse_line(line) {
                None => {}
                Some(Ok(fact)) => report.record(fact),
                Some(Err(error)) => report.problems.push(problem(line, error)),
            }
        }
        report
    }

    fn record(&mut self, fact: Fact<'_>) {
        match fact {
            Fact::StartInfo(start_info) => {
                self.start_info_version = Some(start_info.version);
                self.cmdline = Some(start_info.cmdline.bytes().collect());
            }
            Fact::Memory(memory) => self.memory = Some(memory),
            Fact::Module(module) => self.modules.push(module),
            Fact::Tsc(tsc) => self.tsc = Some(tsc),
            Fact::Ready(ready) => self.ready = Some(ready),
            Fact::PowerOff(power_off) => self.power_off = Some(power_off.0),
            // The rest are read where they are needed (the checks, `net0`).
            _ => {}
        }
    }

    /// Entry to ready in microseconds; `None` without a `ready` line or when
    /// the kernel could only count cycles.
    pub(crate) fn ready_microseconds(&self) -> Option<u64> {
        match self.ready? {
            Ready::Micros(micros) => Some(micros),
            Ready::Cycles(_) => None,
        }
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

/// Why `line` is not a report line of its keyword, with that keyword's shapes.
fn problem(line: &str, error: report::ParseError) -> String {
    let keyword = report::body(line).map_or("", report::keyword);
    let shapes: Vec<String> = SHAPES
        .iter()
        .filter(|shape| shape.keyword == keyword)
        .map(|shape| format!("`{}`", shape.grammar))
        .collect();
    format!("{line:?}: {error} (its shapes: {})", shapes.join(" or "))
}

/// Whether `line` is exactly the report line `expected`, as the protocol
/// formats it.
pub(crate) fn is_line(line: &str, expected: &report::Line<impl fmt::Display>) -> bool {
    line.strip_suffix('\r').unwrap_or(line) == expected.to_string()
}

/// The `net0` line in `output`, if any; `Err` for a `net` line with the
/// wrong shape.
pub(crate) fn find_net_line<S: AsRef<str>>(output: &[S]) -> Option<Result<Net, String>> {
    output.iter().map(AsRef::as_ref).find_map(|line| {
        let claims_net = report::body(line).map(report::keyword) == Some(Net::SHAPE.keyword);
        match Fact::parse_line(line)? {
            Ok(Fact::Net(net)) if net.index == 0 => Some(Ok(net)),
            Err(error) if claims_net => Some(Err(problem(line, error))),
            _ => None,
        }
    })
}

/// The keywords of the lines that say the kernel failed.
pub(crate) const FAILURE_KEYWORDS: [&str; 3] = [
    Fatal::<&str>::SHAPE.keyword,
    Panic::<&str>::SHAPE.keyword,
    Exception::SHAPE.keyword,
];

/// The kernel's failure lines in `output`: a fatal error, a panic or an
/// exception, well-formed or cut short.
pub(crate) fn failure_lines<S: AsRef<str>>(output: &[S]) -> Vec<String> {
    output
        .iter()
        .map(AsRef::as_ref)
        .filter(|line| {
            report::body(line).is_some_and(|fact| FAILURE_KEYWORDS.contains(&report::keyword(fact)))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::report::{Line, Listening, MacAddress, PowerOff, TscSource};

    use super::*;

    const SAMPLE: &[&str] = &[
        "[INFO ] mote starting",
        "mote: start_info v1 cmdline \"console=ttyS0 say=\\\"hi\\\" tab=\\x09 mote.exit=ready\"",
        "mote: memory 264241152 bytes usable in 2 regions",
        "mote: memory mapped up to 0x100000000, heap 4096 bytes, 8192 bytes free",
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
            }),
            "`memory mapped up to` is another shape, not this one"
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
                source: TscSource::Cpuid40000010
            })
        );
        assert_eq!(report.ready_microseconds(), Some(1234));
        assert_eq!(report.power_off, Some(Status::Success));
        assert_eq!(report.lines.len(), 7);
        assert_eq!(report.last_line(), Some("mote: poweroff success"));
    }

    #[test]
    fn reports_malformed_facts_and_keeps_unknown_ones() {
        let report = BootReport::parse(&[
            "mote: memory 12 bytes",
            "mote: memory mapped up to 0x100000000, heap 4096 bytes",
            "mote: frobnicated 3 widgets",
            "mote: ready 77 cycles after entry (TSC frequency unknown)",
            "mote: poweroff failure",
        ]);
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems[0].contains("mote: memory 12 bytes"));
        assert!(
            report.problems[0].contains("`memory <bytes> bytes usable in <regions> regions`"),
            "the message lists the keyword's shapes: {}",
            report.problems[0]
        );
        assert!(report.problems[1].contains("heap 4096 bytes\""));
        assert_eq!(report.memory, None);
        assert_eq!(report.ready, Some(Ready::Cycles(77)));
        assert_eq!(report.ready_microseconds(), None, "cycles are no time");
        assert_eq!(report.power_off, Some(Status::Failure));
        assert_eq!(report.lines.len(), 5);
    }

    #[test]
    fn empty_output_has_no_report() {
        let report = BootReport::parse::<&str>(&[]);
        assert_eq!(report, BootReport::default());
    }

    #[test]
    fn compares_whole_lines_as_the_protocol_formats_them() {
        let success = Line(PowerOff(Status::Success));
        assert!(is_line("mote: poweroff success", &success));
        assert!(is_line("mote: poweroff success\r", &success));
        assert!(!is_line("mote: poweroff success ", &success));
        assert!(!is_line("poweroff success", &success));
    }

    #[test]
    fn reads_the_net_line() {
        let output = [
            "mote: ready 5000 us after entry".to_owned(),
            "mote: net0 mac 52:54:00:12:34:56 ip 10.0.2.15/24".to_owned(),
            Line(Listening {
                http: 80,
                udp_echo: 7,
            })
            .to_string(),
        ];
        let net = find_net_line(&output).unwrap().unwrap();
        assert_eq!(net.mac, MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(net.address.to_string(), "10.0.2.15/24");
        assert_eq!(Line(net).to_string(), output[1]);
        assert!(find_net_line(&["mote: ready 1 us after entry"]).is_none());
        assert!(matches!(
            find_net_line(&["mote: net0 mac 52:54:00:12:34 ip 10.0.2.15/24"]),
            Some(Err(_))
        ));
    }

    #[test]
    fn finds_failure_lines() {
        let panic = Line(Panic {
            phase: "net",
            location: None,
            message: "oops",
        })
        .to_string();
        let output = [
            "mote: ready 1 us after entry",
            &panic,
            "[INFO ] mote: EXCEPTION in a log line does not count",
            "mote: EXCEPTION page fault",
            "mote: FATAL in phase memory_init: no usable RAM",
        ];
        assert_eq!(
            failure_lines(&output),
            [
                "mote: PANIC in phase net: oops",
                "mote: EXCEPTION page fault",
                "mote: FATAL in phase memory_init: no usable RAM"
            ],
            "a failure line cut short still counts"
        );
    }
}
