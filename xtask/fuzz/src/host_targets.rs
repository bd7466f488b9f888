//! Targets for what xtask reads from the guest's serial output: the boot
//! report and the tslog dump. xtask is a binary crate, so its readers are
//! compiled here from their own source files (no copy), as modules.

use std::collections::HashSet;

use mote_boot::protocol::report::{Fact, Line, PREFIX};
use mote_boot::protocol::tslog::Record;

#[allow(dead_code, unreachable_pub)]
#[path = "../../src/guest_output/report.rs"]
mod report;
#[allow(dead_code, unreachable_pub)]
#[path = "../../src/guest_output/tslog.rs"]
mod tslog;

/// Input bytes as the serial capture xtask reads (lossy UTF-8, as
/// `String::from_utf8_lossy` in its process module).
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The tslog dump reader and the span nesting. Invariants: every record
/// formats back to a line that parses to itself; a framed dump's records
/// come from inside the frame; spans nest (a child lies inside its parent
/// and is one level deeper, roots are level 0, each span has one parent)
/// and never end before they start; the window is entry → ready or the
/// last record; the top-level spans' coverage is computed without
/// overflow and, for one root, is at most the window.
pub(crate) fn tslog_dump(data: &[u8]) {
    let text = text(data);
    let Ok(dump) = tslog::parse_dump(&text) else {
        return;
    };
    for record in &dump.records {
        let line = record.to_string();
        assert_eq!(Record::parse(&line).as_ref(), Ok(record), "{line:?}");
    }
    let trace = tslog::Trace::build(&dump.records);
    let mut parent_of = vec![None; trace.spans.len()];
    for (index, span) in trace.spans.iter().enumerate() {
        assert!(span.start <= span.end, "{span:?}");
        for &child in &span.children {
            assert!(parent_of[child].replace(index).is_none(), "two parents");
            let inner = &trace.spans[child];
            assert_eq!(inner.depth, span.depth + 1);
            assert!(child > index, "a child opens after its parent");
        }
    }
    let roots: HashSet<usize> = trace.roots.iter().copied().collect();
    for (index, parent) in parent_of.iter().enumerate() {
        assert_eq!(parent.is_none(), roots.contains(&index), "span {index}");
        if parent.is_none() {
            assert_eq!(trace.spans[index].depth, 0);
        }
    }
    if let Some(first) = dump.records.first() {
        assert_eq!(trace.start, first.tsc);
    }
    for span in &trace.spans {
        let (start, end) = trace.clipped(span);
        assert!(trace.start.min(trace.end) <= start && end <= trace.end.max(trace.start));
    }
    // What `cargo xtask trace` prints: the top-level spans cover at most
    // the window, overlapping or not.
    assert!(trace.covered() <= trace.total());
}

/// A report line formatted with its type's `Display` (what the kernel
/// prints), or `None` for a line type the kernel writes without one.
fn format_fact(fact: &Fact<'_>) -> String {
    match fact {
        Fact::Ready(f) => Line(f).to_string(),
        Fact::StartInfo(f) => Line(f).to_string(),
        Fact::Memory(f) => Line(f).to_string(),
        Fact::MemoryMapped(f) => Line(f).to_string(),
        Fact::Module(f) => Line(f).to_string(),
        Fact::ModuleUnusable(f) => Line(f).to_string(),
        Fact::BootTimerWritten(f) => Line(f).to_string(),
        Fact::AcpiSleepRegister(f) => Line(f).to_string(),
        Fact::AcpiUnusable(f) => Line(f).to_string(),
        Fact::AcpiNone(f) => Line(f).to_string(),
        Fact::Tsc(f) => Line(f).to_string(),
        Fact::Clock(f) => Line(f).to_string(),
        Fact::Cpus(f) => Line(f).to_string(),
        Fact::VirtioMmio(f) => Line(f).to_string(),
        Fact::VirtioPci(f) => Line(f).to_string(),
        Fact::PciBar(f) => Line(f).to_string(),
        Fact::Disk(f) => Line(f).to_string(),
        Fact::Ramdisk(f) => Line(f).to_string(),
        Fact::Crc32(f) => Line(f).to_string(),
        Fact::Verified(f) => Line(f).to_string(),
        Fact::VerifyFailed(f) => Line(f).to_string(),
        Fact::Wrote(f) => Line(f).to_string(),
        Fact::WriteRefused(f) => Line(f).to_string(),
        Fact::BenchRead(f) => Line(f).to_string(),
        Fact::BenchFailed(f) => Line(f).to_string(),
        Fact::ExitCost(f) => Line(f).to_string(),
        Fact::Net(f) => Line(f).to_string(),
        Fact::Listening(f) => Line(f).to_string(),
        Fact::TslogBegin(f) => Line(f).to_string(),
        Fact::TslogEnd(f) => Line(f).to_string(),
        Fact::PowerOff(f) => Line(f).to_string(),
        Fact::Fatal(f) => Line(f).to_string(),
        Fact::Panic(f) => Line(f).to_string(),
        Fact::Exception(f) => Line(f).to_string(),
        Fact::OnCpu(f) => Line(f).to_string(),
        Fact::PageFault(f) => Line(f).to_string(),
        Fact::ErrorCode(f) => Line(f).to_string(),
        Fact::ControlRegisters(f) => Line(f).to_string(),
        Fact::GeneralRegisters(f) => Line(f).to_string(),
    }
}

/// Each line of the input through `Fact::parse_line`. Invariant (the
/// protocol's contract): a line that parses, formatted again by its type,
/// parses (`Fact::parse`) to the same fact; so does the whole line through
/// `parse_line`, unless the fact ends in `\r`, which `parse_line` takes
/// for the serial capture's and drops (a capture cannot tell them apart).
pub(crate) fn report_line(data: &[u8]) {
    let text = text(data);
    for line in text.lines() {
        if let Some(Ok(fact)) = Fact::parse_line(line) {
            let again = format_fact(&fact);
            let body = again.strip_prefix(PREFIX).expect("Line writes the prefix");
            assert_eq!(
                Fact::parse(body),
                Some(Ok(fact.clone())),
                "{line:?} -> {again:?}"
            );
            if !again.ends_with('\r') {
                assert_eq!(
                    Fact::parse_line(&again),
                    Some(Ok(fact)),
                    "{line:?} -> {again:?}"
                );
            }
        }
    }
}

/// xtask's boot report reader over a whole capture. Invariants: every
/// kept line is a line of the input, in order; each known fact is the
/// last (or first, for `net0`) such line's; failure lines are report
/// lines with a failure keyword.
pub(crate) fn boot_report(data: &[u8]) {
    let text = text(data);
    let lines: Vec<&str> = text.lines().collect();
    let parsed = report::BootReport::parse(&lines);
    let mut kept = parsed.lines.iter();
    let mut next = kept.next();
    for line in &lines {
        if next.is_some_and(|kept| kept == line) {
            next = kept.next();
        }
    }
    assert!(
        next.is_none(),
        "a kept line is not in the input in order: {next:?}"
    );
    assert!(parsed.lines.len() >= parsed.problems.len());
    if let Some(memory) = parsed.memory {
        let last = lines
            .iter()
            .rev()
            .find_map(|line| match Fact::parse_line(line) {
                Some(Ok(Fact::Memory(memory))) => Some(memory),
                _ => None,
            });
        assert_eq!(last, Some(memory));
    }
    if let Some(Ok(net)) = report::find_net_line(&lines) {
        assert_eq!(net.index, 0);
    }
    for failure in report::failure_lines(&lines) {
        let keyword =
            mote_boot::protocol::report::body(&failure).map(mote_boot::protocol::report::keyword);
        assert!(
            keyword.is_some_and(|k| report::FAILURE_KEYWORDS.contains(&k)),
            "{failure:?}"
        );
    }
}
