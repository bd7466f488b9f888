//! The per-phase table `cargo xtask trace` prints: each span's time and
//! share of entry → ready, nested by depth, then the coverage lines.

use std::fmt::Write as _;

use crate::guest_output::tslog::Trace;

/// The table, with cycles turned into microseconds at `tsc_hz`.
pub(crate) fn phase_table(trace: &Trace, tsc_hz: u64) -> String {
    let total = trace.total().max(1);
    let micros = |cycles: u64| cycles as f64 * 1e6 / tsc_hz as f64;
    let percent = |cycles: u64| cycles as f64 * 100.0 / total as f64;
    let mut out = String::new();
    let _ = writeln!(out, "{:<40} {:>12} {:>7}", "phase", "us", "%");
    let mut order = Vec::new();
    for &root in &trace.roots {
        preorder(trace, root, &mut order);
    }
    for index in order {
        let span = &trace.spans[index];
        let (start, end) = trace.clipped(span);
        if start >= end && span.start >= trace.end {
            continue; // entirely after ready (the report, the dump)
        }
        let name = format!(
            "{}{}{}",
            "  ".repeat(span.depth),
            span.name,
            if span.unclosed { " (unclosed)" } else { "" }
        );
        let _ = writeln!(
            out,
            "{name:<40} {:>12.1} {:>6.1}%",
            micros(end - start),
            percent(end - start)
        );
    }
    let covered = trace.covered();
    let _ = writeln!(
        out,
        "{:<40} {:>12.1} {:>6.1}%",
        "(between top-level spans)",
        micros(trace.total() - covered.min(trace.total())),
        percent(trace.total() - covered.min(trace.total()))
    );
    let _ = writeln!(
        out,
        "{:<40} {:>12.1} {:>6.1}%",
        if trace.ready_seen {
            "entry -> ready"
        } else {
            "entry -> last record"
        },
        micros(trace.total()),
        100.0
    );
    out
}

fn preorder(trace: &Trace, index: usize, order: &mut Vec<usize>) {
    order.push(index);
    for &child in &trace.spans[index].children {
        preorder(trace, child, order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_output::tslog::{TCG_DUMP, frame, framed_dump, parse_dump};

    #[test]
    fn real_dump_table_nests_and_ends_at_the_whole_window() {
        let dump = parse_dump(TCG_DUMP).unwrap();
        let trace = Trace::build(&dump.records);
        let table = phase_table(&trace, dump.tsc_hz.unwrap());
        assert!(table.contains("  zero_bss"), "{table}");
        assert!(table.lines().last().unwrap().contains("100.0%"));
    }

    #[test]
    fn nested_spans_and_the_gap_between_top_level_ones() {
        let text = framed_dump(
            "0x0 0 ENTER a\n0x0 10 ENTER b\n0x0 30 EXIT b\n0x0 40 EXIT a\n0x0 45 ENTER c\n0x0 50 EXIT c\n0x0 60 EVENT ready\n",
        );
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        let table = phase_table(&trace, 1_000_000);
        assert!(table.contains("  b "), "{table}");
        let gap = table
            .lines()
            .find(|line| line.starts_with("(between top-level spans)"))
            .unwrap();
        assert_eq!(
            gap.split_whitespace().rev().take(2).collect::<Vec<_>>(),
            ["25.0%", "15.0"]
        );
    }

    #[test]
    fn unclosed_spans_are_marked() {
        let text = frame(1000, 2, 3, "0x0 0 ENTER a\n0x0 5 ENTER b\n");
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert!(phase_table(&trace, 1000).contains("(unclosed)"));
    }
}
