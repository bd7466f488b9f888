//! Reading a tslog dump (FreeBSD `debug.tslog` lines, optionally framed by
//! mote's `mote: tslog begin …` / `mote: tslog end`) and nesting its spans
//! into a [`Trace`] of entry → ready. Records and frame lines are read with
//! the boot crate's protocol module, which the kernel writes them with.

use std::collections::HashMap;

use anyhow::{Result, bail};
use mote_boot::protocol::report::{self, Fact, PREFIX, TslogBegin};
use mote_boot::protocol::tslog::{Exits, Kind, Record};

/// A parsed dump; its records borrow the text they were read from.
#[derive(Debug, Default)]
pub(crate) struct Dump<'a> {
    /// From the frame line; `None` for an unframed dump.
    pub(crate) tsc_hz: Option<u64>,
    /// Records the kernel says it dropped because its buffer was full.
    pub(crate) dropped: usize,
    /// Records the frame announced, to detect a truncated capture.
    pub(crate) announced: Option<usize>,
    pub(crate) records: Vec<Record<'a>>,
    /// Lines inside the dump that are not records (serial noise, cut lines).
    pub(crate) garbage: Vec<&'a str>,
    /// The frame's end line was seen (false: the capture was cut short).
    pub(crate) complete: bool,
}

/// `line` as the frame's first line; `Err` for a `tslog` report line that
/// is neither frame line (a cut or garbled frame cannot be trusted for its
/// TSC frequency).
fn frame_begin(line: &str) -> Result<Option<TslogBegin>> {
    match Fact::parse_line(line) {
        Some(Ok(Fact::TslogBegin(begin))) => Ok(Some(begin)),
        Some(Err(error))
            if report::body(line).map(report::keyword) == Some(TslogBegin::SHAPE.keyword) =>
        {
            bail!(
                "malformed tslog frame line {line:?}: {error} (expected `{}`)",
                TslogBegin::SHAPE.grammar
            )
        }
        _ => Ok(None),
    }
}

/// `line` is the frame's last line.
fn is_frame_end(line: &str) -> bool {
    matches!(Fact::parse_line(line), Some(Ok(Fact::TslogEnd(_))))
}

/// Finds the dump in captured output. With a frame, only lines inside it
/// count; without one (a FreeBSD `sysctl debug.tslog` capture), every line
/// that parses as a record does, and `tsc_hz` must come from the caller.
pub(crate) fn parse_dump(text: &str) -> Result<Dump<'_>> {
    let mut dump = Dump::default();
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut begin = None;
    for (index, line) in lines.iter().enumerate() {
        if let Some(frame) = frame_begin(line)? {
            begin = Some((index, frame));
            break;
        }
    }
    let Some((begin, frame_line)) = begin else {
        for line in &lines {
            match Record::parse(line) {
                Ok(record) => dump.records.push(record),
                Err(_) if line.trim().is_empty() => {}
                Err(_) => dump.garbage.push(line),
            }
        }
        if dump.records.is_empty() {
            bail!(
                "no tslog records found (expected `{PREFIX}{}` or `{}` lines)",
                TslogBegin::SHAPE.grammar,
                Record::GRAMMAR
            );
        }
        dump.complete = true;
        return Ok(dump);
    };
    dump.tsc_hz = frame_line.tsc_hz;
    dump.announced = Some(frame_line.records);
    dump.dropped = frame_line.dropped;
    for line in &lines[begin + 1..] {
        if is_frame_end(line) {
            dump.complete = true;
            break;
        }
        match Record::parse(line) {
            Ok(record) => dump.records.push(record),
            Err(_) => dump.garbage.push(line),
        }
    }
    Ok(dump)
}

/// One span: an ENTER and its EXIT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) name: String,
    /// The record's thread field (`0x1000 + n` for mote's CPU n).
    pub(crate) thread: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) depth: usize,
    pub(crate) children: Vec<usize>,
    /// Closed by the analysis, not by an EXIT record.
    pub(crate) unclosed: bool,
    /// The exits mote counted inside the span (its EXIT's counts minus its
    /// ENTER's); `None` when either record has no counts (the stub's, an
    /// older kernel's, FreeBSD's) or the span was not closed by its EXIT.
    pub(crate) exits: Option<Exits>,
    /// Its ENTER's counts, kept until the EXIT.
    entered_with: Option<Exits>,
}

impl Span {
    /// The application processor that recorded it (mote's CPU 1, 2, …),
    /// or `None` for the stub, the boot CPU and any other thread.
    pub(crate) fn application_processor(&self) -> Option<u64> {
        self.thread
            .checked_sub(mote_boot::protocol::tslog::KERNEL_THREAD)
            .filter(|&cpu| (1..=u64::from(u8::MAX)).contains(&cpu))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) tsc: u64,
    pub(crate) name: String,
    pub(crate) detail: Option<String>,
}

/// Spans nested by their ENTER/EXIT order.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) spans: Vec<Span>,
    pub(crate) roots: Vec<usize>,
    pub(crate) events: Vec<Event>,
    /// The first record's TSC: the entry stub's first instruction.
    pub(crate) start: u64,
    /// The `ready` event, when there is one; else the last record.
    pub(crate) end: u64,
    /// Counted exits from the first kernel record to `ready` (`None`
    /// without counts on both).
    pub(crate) exits: Option<Exits>,
    pub(crate) ready_seen: bool,
    /// What did not add up (EXIT without ENTER, spans never closed, …).
    pub(crate) problems: Vec<String>,
}

impl Trace {
    pub(crate) fn build(records: &[Record<'_>]) -> Trace {
        let mut trace = Trace::default();
        let Some(first) = records.first() else {
            return trace;
        };
        trace.start = first.tsc;
        let last = records.iter().map(|r| r.tsc).max().unwrap_or(first.tsc);
        // One open-span stack per thread (the stub and the kernel; FreeBSD many).
        let mut stacks: HashMap<u64, Vec<usize>> = HashMap::new();
        let first_counts = records.iter().find_map(|record| record.exits);
        for record in records {
            let stack = stacks.entry(record.thread).or_default();
            match record.kind {
                Kind::Enter => {
                    let index = trace.spans.len();
                    trace.spans.push(Span {
                        name: record.function.to_owned(),
                        thread: record.thread,
                        start: record.tsc,
                        end: record.tsc,
                        depth: stack.len(),
                        children: Vec::new(),
                        unclosed: false,
                        exits: None,
                        entered_with: record.exits,
                    });
                    match stack.last() {
                        Some(&parent) => trace.spans[parent].children.push(index),
                        None => trace.roots.push(index),
                    }
                    stack.push(index);
                }
                Kind::Exit => {
                    let position = stack
                        .iter()
                        .rposition(|&open| trace.spans[open].name == record.function);
                    match position {
                        Some(position) => {
                            // Spans opened inside and never exited end here.
                            for &open in &stack[position + 1..] {
                                trace.spans[open].end = record.tsc;
                                trace.spans[open].unclosed = true;
                                trace.problems.push(format!(
                                    "{} was never exited; closed with {}",
                                    trace.spans[open].name, record.function
                                ));
                            }
                            let closed = &mut trace.spans[stack[position]];
                            closed.end = record.tsc;
                            closed.exits = closed
                                .entered_with
                                .zip(record.exits)
                                .map(|(enter, exit)| exit.since(&enter));
                            // A TSC that went backwards (a garbled line, a
                            // migrated vCPU) must not make a span end
                            // before it starts: its length would underflow.
                            for &open in &stack[position..] {
                                let span = &mut trace.spans[open];
                                if span.end < span.start {
                                    trace.problems.push(format!(
                                        "{} ends at {} before it starts at {}; taken as empty",
                                        span.name, span.end, span.start
                                    ));
                                    span.end = span.start;
                                }
                            }
                            stack.truncate(position);
                        }
                        None => trace.problems.push(format!(
                            "EXIT {} at {} without a matching ENTER (dropped record?)",
                            record.function, record.tsc
                        )),
                    }
                }
                Kind::Event => {
                    if record.function == "ready" && !trace.ready_seen {
                        trace.ready_seen = true;
                        trace.end = record.tsc;
                        trace.exits = first_counts
                            .zip(record.exits)
                            .map(|(first, ready)| ready.since(&first));
                    }
                    trace.events.push(Event {
                        tsc: record.tsc,
                        name: record.function.to_owned(),
                        detail: record.detail.map(str::to_owned),
                    });
                }
                Kind::Thread => {}
            }
        }
        for stack in stacks.values() {
            for &open in stack {
                trace.spans[open].end = last;
                trace.spans[open].unclosed = true;
                trace.problems.push(format!(
                    "{} was still open at the end of the dump",
                    trace.spans[open].name
                ));
            }
        }
        if !trace.ready_seen {
            trace.end = last;
            trace
                .problems
                .push("no `ready` event: the window ends at the last record".to_owned());
        }
        trace
    }

    /// Cycles from entry to ready.
    pub(crate) fn total(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// The part of `span` inside the entry → ready window.
    pub(crate) fn clipped(&self, span: &Span) -> (u64, u64) {
        (
            span.start.max(self.start).min(self.end),
            span.end.max(self.start).min(self.end),
        )
    }

    /// Cycles of the window covered by top-level spans: the union of their
    /// clipped extents, so it never exceeds [`Self::total`] even when a
    /// malformed dump's top-level spans overlap (a sum then overflowed on
    /// fuzzed TSCs near 2^64).
    pub(crate) fn covered(&self) -> u64 {
        let mut extents: Vec<(u64, u64)> = self
            .roots
            .iter()
            .map(|&root| self.clipped(&self.spans[root]))
            .collect();
        extents.sort_unstable();
        let (mut covered, mut reached) = (0, self.start);
        for (start, end) in extents {
            let start = start.max(reached);
            if end > start {
                covered += end - start;
                reached = end;
            }
        }
        covered
    }
}

/// A real dump from a TCG boot, with serial noise around it, for tests.
#[cfg(test)]
pub(crate) const TCG_DUMP: &str = include_str!("../../testdata/tslog-tcg.txt");

/// `body` (record lines) between the frame lines the kernel writes, for tests.
#[cfg(test)]
pub(crate) fn frame(tsc_hz: u64, records: usize, dropped: usize, body: &str) -> String {
    use mote_boot::protocol::report::{Line, TslogEnd};
    let begin = TslogBegin {
        tsc_hz: Some(tsc_hz),
        records,
        dropped,
    };
    format!("{}\n{body}{}\n", Line(begin), Line(TslogEnd))
}

/// `body` framed as mote frames a dump (1 MHz TSC) inside a boot's report,
/// for tests.
#[cfg(test)]
pub(crate) fn framed_dump(body: &str) -> String {
    use mote_boot::protocol::exit::Status;
    use mote_boot::protocol::report::{Line, PowerOff, Ready};
    format!(
        "{}\n{}{}\n",
        Line(Ready::Micros(5)),
        frame(1_000_000, 9, 0, body),
        Line(PowerOff(Status::Success))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(body: &str) -> String {
        framed_dump(body)
    }

    #[test]
    fn real_dump_accounts_for_the_whole_boot() {
        let dump = parse_dump(TCG_DUMP).unwrap();
        assert!(dump.complete);
        assert_eq!(dump.tsc_hz, Some(2_596_102_435));
        assert_eq!(Some(dump.records.len()), dump.announced);
        assert!(dump.garbage.is_empty());
        let trace = Trace::build(&dump.records);
        assert!(trace.problems.is_empty(), "{:?}", trace.problems);
        assert!(trace.ready_seen);
        assert_eq!(trace.roots.len(), 7);
        let names: Vec<&str> = trace
            .roots
            .iter()
            .map(|&r| trace.spans[r].name.as_str())
            .collect();
        assert_eq!(names[0], "pvh_entry");
        assert!(
            trace.covered() * 100 / trace.total() >= 95,
            "top-level spans cover >= 95 %"
        );
    }

    #[test]
    fn spans_carry_the_exits_counted_inside_them() {
        let text = dump(concat!(
            "0x0 0 ENTER stub\n0x0 5 EXIT stub\n",
            "0x1000 10 ENTER a exits=0,0,0,0,0,0,1\n",
            "0x1000 20 ENTER b exits=1,0,0,2,3,0,2\n",
            "0x1000 30 EXIT b exits=2,0,1,4,9,0,3\n",
            "0x1000 40 EXIT a exits=2,0,1,4,9,1,4\n",
            "0x1000 50 EVENT ready exits=2,0,1,4,9,1,5\n",
        ));
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert_eq!(
            trace.spans[0].exits, None,
            "the stub's records have no counts"
        );
        assert_eq!(trace.spans[1].exits, Some(Exits([2, 0, 1, 4, 9, 1, 3])));
        assert_eq!(trace.spans[2].exits, Some(Exits([1, 0, 1, 2, 6, 0, 1])));
        assert_eq!(trace.exits, Some(Exits([2, 0, 1, 4, 9, 1, 4])));
    }

    #[test]
    fn nested_spans_cover_the_window() {
        let text = dump(
            "0x0 0 ENTER a\n0x0 10 ENTER b\n0x0 30 EXIT b\n0x0 40 EXIT a\n0x0 45 ENTER c\n0x0 50 EXIT c\n0x0 60 EVENT ready\n",
        );
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert_eq!(trace.roots.len(), 2);
        assert_eq!(trace.spans[trace.roots[0]].children.len(), 1);
        assert_eq!(trace.total(), 60);
        assert_eq!(trace.covered(), 45);
    }

    #[test]
    fn dropped_records_leave_spans_open_and_say_so() {
        // The buffer filled before b's and a's EXIT: both unclosed, no ready.
        let text = frame(1000, 2, 3, "0x0 0 ENTER a\n0x0 5 ENTER b\n");
        let dump = parse_dump(&text).unwrap();
        assert_eq!(dump.dropped, 3);
        let trace = Trace::build(&dump.records);
        assert!(trace.spans.iter().all(|span| span.unclosed));
        assert!(!trace.ready_seen);
        assert!(trace.problems.iter().any(|p| p.contains("ready")));
    }

    #[test]
    fn exit_without_enter_and_mismatched_exits() {
        let text =
            dump("0x0 0 ENTER a\n0x0 2 ENTER b\n0x0 4 EXIT a\n0x0 6 EXIT z\n0x0 8 EVENT ready\n");
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert!(trace.spans[1].unclosed, "b was closed by a's EXIT");
        assert_eq!(trace.spans[1].end, 4);
        assert!(trace.problems.iter().any(|p| p.contains("EXIT z")));
    }

    #[test]
    fn an_exit_before_its_enter_is_an_empty_span_and_a_problem() {
        // Found by the tslog_dump fuzz target: the span ended before it
        // started and `covered` underflowed.
        let text = dump("0x0 10 ENTER a\n0x0 4 EXIT a\n0x0 20 EVENT ready\n");
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert_eq!((trace.spans[0].start, trace.spans[0].end), (10, 10));
        assert_eq!(trace.covered(), 0);
        assert!(
            trace
                .problems
                .iter()
                .any(|p| p.contains("before it starts"))
        );
    }

    #[test]
    fn garbage_lines_are_set_aside() {
        let text =
            dump("0x0 0 ENTER a\nthis is noise\n0x0 4 EX\n0x0 5 EXIT a\n0x0 8 EVENT ready\n");
        let dump = parse_dump(&text).unwrap();
        assert_eq!(dump.garbage, ["this is noise", "0x0 4 EX"]);
        assert_eq!(dump.records.len(), 3);
    }

    #[test]
    fn truncated_capture_is_not_complete() {
        let frame = frame(1000, 5, 0, "0x0 0 ENTER a\n");
        let cut = &frame[..frame.rfind("mote: ").unwrap()];
        let dump = parse_dump(cut).unwrap();
        assert!(!dump.complete);
        assert_eq!(dump.records.len(), 1);
    }

    #[test]
    fn a_garbled_frame_line_is_an_error_not_a_frequency() {
        let error = parse_dump("mote: tslog begin tsc_hz=1000 records=5\n0x0 0 ENTER a\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("malformed tslog frame line"), "{error}");
        let garbled_end = framed_dump("0x0 0 ENTER a\nmote: tslog en\n0x0 1 EXIT a\n");
        let dump = parse_dump(&garbled_end).unwrap();
        assert_eq!(
            dump.garbage,
            ["mote: tslog en"],
            "inside the frame it is garbage"
        );
        assert_eq!(dump.records.len(), 2);
    }

    #[test]
    fn unframed_freebsd_dump() {
        let text = "0xfffff800 100 ENTER mi_startup\n0xfffff800 300 EXIT mi_startup\n";
        let dump = parse_dump(text).unwrap();
        assert_eq!(dump.tsc_hz, None);
        assert_eq!(dump.records.len(), 2);
        assert!(parse_dump("nothing here\n").is_err());
    }
}
