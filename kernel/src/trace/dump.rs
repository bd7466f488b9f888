//! What the trace looks like outside: the dump (a frame line, one
//! `debug.tslog` line per record, an end line) and the per-phase table of
//! entry -> ready that the status page shows.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use mote_boot::protocol::report::{TslogBegin, TslogEnd};
use mote_boot::protocol::tslog::Kind;

use super::buffer::{Record, TSLOG};
use crate::clock::TscFrequency;

/// Writes the dump of [`TSLOG`]: the frame line carries what the host needs
/// to convert TSC ticks.
pub(crate) fn write_dump(out: &mut dyn fmt::Write, tsc: Option<TscFrequency>) -> fmt::Result {
    let begin = TslogBegin {
        tsc_hz: tsc.map(TscFrequency::hz),
        records: TSLOG.records().count(),
        dropped: TSLOG.dropped(),
    };
    writeln!(out, "{}", mote_boot::protocol::report::Line(begin))?;
    for record in TSLOG.records() {
        writeln!(out, "{record}")?;
    }
    writeln!(out, "{}", mote_boot::protocol::report::Line(TslogEnd))
}

/// Writes the per-phase table of entry -> `ready`: one line per span, in
/// start order, indented by depth, with microseconds and the share of the
/// whole. Spans that start after `ready` are left out.
pub(crate) fn write_phase_table(
    out: &mut dyn fmt::Write,
    records: impl Iterator<Item = Record>,
    tsc: TscFrequency,
) -> fmt::Result {
    let mut spans: Vec<(u64, u64, usize, &'static str)> = Vec::new();
    let mut open: Vec<(u64, &'static str)> = Vec::new();
    let mut first = None;
    let mut ready = None;
    for record in records {
        first.get_or_insert(record.tsc);
        match record.kind {
            Kind::Enter => open.push((record.tsc, record.function)),
            Kind::Exit => {
                if let Some(position) = open.iter().rposition(|&(_, name)| name == record.function)
                {
                    let (start, name) = open[position];
                    spans.push((start, record.tsc, position, name));
                    open.truncate(position);
                }
            }
            Kind::Event if record.function == "ready" && ready.is_none() => {
                ready = Some(record.tsc);
            }
            Kind::Event | Kind::Thread => {}
        }
    }
    let (Some(first), Some(ready)) = (first, ready) else {
        return writeln!(out, "(no complete boot trace)");
    };
    let total = ready.saturating_sub(first).max(1);
    spans.retain(|&(start, ..)| start < ready);
    spans.sort_by_key(|&(start, _, depth, _)| (start, depth));
    #[allow(
        clippy::cast_precision_loss,
        reason = "a table of figures with one decimal"
    )]
    let micros = |cycles: u64| cycles as f64 * 1e6 / tsc.hz() as f64;
    for (start, end, depth, name) in spans {
        let cycles = end.min(ready) - start;
        #[allow(clippy::cast_precision_loss, reason = "a percentage with one decimal")]
        let share = cycles as f64 * 100.0 / total as f64;
        writeln!(
            out,
            "{:indent$}{name:<width$} {:>10.1} us {share:>5.1}%",
            "",
            micros(cycles),
            indent = 2 * depth,
            width = 30 - 2 * depth.min(10),
        )?;
    }
    writeln!(
        out,
        "{:<30} {:>10.1} us 100.0%",
        "entry -> ready",
        micros(total)
    )
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::report::TscSource;

    use super::super::buffer::rec;
    use super::*;

    #[test]
    fn phase_table_nests_and_stops_at_ready() {
        let records = [
            rec(Kind::Enter, 0, "a"),
            rec(Kind::Enter, 100, "b"),
            rec(Kind::Exit, 300, "b"),
            rec(Kind::Exit, 500, "a"),
            rec(Kind::Enter, 500, "c"),
            rec(Kind::Exit, 1000, "c"),
            rec(Kind::Event, 1000, "ready"),
            rec(Kind::Enter, 1200, "after"),
            rec(Kind::Exit, 1300, "after"),
        ];
        let mhz = TscFrequency::new(1_000_000, TscSource::Calibrated).unwrap();
        let mut text = String::new();
        write_phase_table(&mut text, records.into_iter(), mhz).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("a ") && lines[0].ends_with("50.0%"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("  b ") && lines[1].contains("200.0 us"),
            "{text}"
        );
        assert!(lines[2].starts_with("c "), "{text}");
        assert!(
            lines[3].starts_with("entry -> ready") && lines[3].contains("1000.0 us"),
            "{text}"
        );
        let mut empty = String::new();
        let hz = TscFrequency::new(1, TscSource::Calibrated).unwrap();
        write_phase_table(&mut empty, [rec(Kind::Enter, 0, "a")].into_iter(), hz).unwrap();
        assert_eq!(empty, "(no complete boot trace)\n");
    }

    #[test]
    fn dump_is_framed_for_the_host() {
        let hz = TscFrequency::new(2_000_000_000, TscSource::Kvmclock);
        let mut text = String::new();
        write_dump(&mut text, hz).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("mote: tslog begin tsc_hz=2000000000 records="),
            "{text}"
        );
        assert_eq!(lines.last(), Some(&"mote: tslog end"));
        let mut unknown = String::new();
        write_dump(&mut unknown, None).unwrap();
        assert!(
            unknown.starts_with("mote: tslog begin tsc_hz=0 "),
            "{unknown}"
        );
    }
}
