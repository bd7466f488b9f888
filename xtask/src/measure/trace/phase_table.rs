//! The per-phase table `cargo xtask trace` prints: each span's time and
//! share of entry → ready, nested by depth, then the coverage lines. With
//! counts in the dump, each span's exits mote counted itself, in total and
//! by kind; under icount, its instructions.

use std::fmt::Write as _;

use mote_boot::protocol::tslog::{ExitKind, Exits};

use super::exits::{ByDevice, DeviceExits};
use crate::guest_output::tslog::Trace;

/// What the table shows beside time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Columns<'a> {
    /// The TSC counts instructions (`--accel icount`): cycles are shown as
    /// instructions too.
    pub(crate) instructions: bool,
    /// Device accesses per span, from `--exits`.
    pub(crate) devices: Option<&'a DeviceExits>,
}

/// Device columns: the total, then one per device seen in the window.
fn device_cells(out: &mut String, names: &[&str], counts: Option<&ByDevice>) {
    let width = |name: &str| name.len().max(5);
    match counts {
        Some(counts) => {
            let _ = write!(out, " {:>6}", counts.values().sum::<u64>());
            for &name in names {
                let count = counts.get(name).copied().unwrap_or(0);
                let _ = write!(out, " {count:>w$}", w = width(name));
            }
        }
        None => {
            let _ = write!(out, " {:>6}", "-");
            for &name in names {
                let _ = write!(out, " {:>w$}", "-", w = width(name));
            }
        }
    }
}

/// The table, with cycles turned into microseconds at `tsc_hz`.
pub(crate) fn phase_table(trace: &Trace, tsc_hz: u64, columns: Columns<'_>) -> String {
    let device_names = columns
        .devices
        .map(DeviceExits::devices)
        .unwrap_or_default();
    let total = trace.total().max(1);
    let micros = |cycles: u64| cycles as f64 * 1e6 / tsc_hz as f64;
    let percent = |cycles: u64| cycles as f64 * 100.0 / total as f64;
    let counted = trace.spans.iter().any(|span| span.exits.is_some());
    let extra = |cycles: u64, exits: Option<Exits>, devices: Option<&ByDevice>| {
        let mut cells = String::new();
        if columns.instructions {
            let _ = write!(cells, " {cycles:>10}");
        }
        if counted {
            match exits {
                Some(exits) => {
                    let _ = write!(cells, " {:>6}", exits.total());
                    for kind in ExitKind::ALL {
                        let _ = write!(cells, " {:>5}", exits.get(kind));
                    }
                }
                None => {
                    let _ = write!(cells, " {:>6}", "-");
                    for _ in ExitKind::ALL {
                        let _ = write!(cells, " {:>5}", "-");
                    }
                }
            }
        }
        if columns.devices.is_some() {
            device_cells(&mut cells, &device_names, devices);
        }
        cells
    };
    let mut out = String::new();
    let mut header = format!("{:<40} {:>12} {:>7}", "phase", "us", "%");
    if columns.instructions {
        let _ = write!(header, " {:>10}", "insns");
    }
    if counted {
        let _ = write!(header, " {:>6}", "exits");
        for kind in ExitKind::ALL {
            let _ = write!(header, " {:>5}", kind.name());
        }
    }
    if columns.devices.is_some() {
        let _ = write!(header, " {:>6}", "device");
        for name in &device_names {
            let _ = write!(header, " {name:>5}");
        }
    }
    let _ = writeln!(out, "{}", header.trim_end());
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
            span.application_processor().map_or_else(
                || span.name.clone(),
                |cpu| format!("cpu{cpu}: {}", span.name)
            ),
            if span.unclosed { " (unclosed)" } else { "" }
        );
        // A span that runs past ready has counts for its whole length.
        let exits = span.exits.filter(|_| span.end <= trace.end);
        let _ = writeln!(
            out,
            "{name:<40} {:>12.1} {:>6.1}%{}",
            micros(end - start),
            percent(end - start),
            extra(
                end - start,
                exits,
                columns
                    .devices
                    .and_then(|devices| devices.spans.get(index)?.as_ref())
            )
        );
    }
    let covered = trace.covered();
    let gap = trace.total() - covered.min(trace.total());
    let _ = writeln!(
        out,
        "{:<40} {:>12.1} {:>6.1}%{}",
        "(between top-level spans)",
        micros(gap),
        percent(gap),
        extra(gap, None, columns.devices.map(|devices| &devices.between))
    );
    let _ = writeln!(
        out,
        "{:<40} {:>12.1} {:>6.1}%{}",
        if trace.ready_seen {
            "entry -> ready"
        } else {
            "entry -> last record"
        },
        micros(trace.total()),
        100.0,
        extra(
            trace.total(),
            trace.exits,
            columns.devices.map(|devices| &devices.total)
        )
    );
    if counted {
        let _ = writeln!(
            out,
            "\nexits: counted by mote's own wrappers (CPUID, MSRs, port I/O, HLT, RDTSC, each\n\
             RDTSC a record stamps included); the entry stub's and device memory accesses are not"
        );
    }
    if let Some(devices) = columns.devices {
        let list = |counts: &ByDevice| {
            let parts: Vec<String> = counts
                .iter()
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
            if parts.is_empty() {
                "none".to_owned()
            } else {
                parts.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "\ndevice: accesses QEMU dispatched to each device model (its memory-region trace),\n\
             with mote.tslog=markers ON: {} markers on port 0x80 from record {}, not counted.\n\
             A span's count includes its children's; the entry -> ready row runs from the first marker.\n\
             before the first marker (firmware, stub, early kernel): {}\n\
             after ready: {}",
            devices.markers,
            devices.first_marker,
            list(&devices.before),
            list(&devices.after),
        );
    }
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
        let table = phase_table(&trace, dump.tsc_hz.unwrap(), Columns::default());
        assert!(table.contains("  zero_bss"), "{table}");
        assert!(table.lines().last().unwrap().contains("100.0%"));
    }

    #[test]
    fn nested_spans_and_the_gap_between_top_level_ones() {
        let text = framed_dump(
            "0x0 0 ENTER a\n0x0 10 ENTER b\n0x0 30 EXIT b\n0x0 40 EXIT a\n0x0 45 ENTER c\n0x0 50 EXIT c\n0x0 60 EVENT ready\n",
        );
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        let table = phase_table(&trace, 1_000_000, Columns::default());
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
    fn exit_and_instruction_columns() {
        let text = framed_dump(concat!(
            "0x0 0 ENTER stub\n0x0 10 EXIT stub\n",
            "0x1000 10 ENTER a exits=0,0,0,0,0,0,1\n",
            "0x1000 40 EXIT a exits=3,0,0,1,7,0,2\n",
            "0x1000 40 EVENT ready exits=3,0,0,1,7,0,3\n",
        ));
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        let table = phase_table(
            &trace,
            1_000_000_000,
            Columns {
                instructions: true,
                devices: None,
            },
        );
        let header = table.lines().next().unwrap();
        assert!(
            header.ends_with("insns  exits cpuid rdmsr wrmsr    in   out   hlt rdtsc"),
            "{table}"
        );
        let a = table.lines().find(|l| l.starts_with("a ")).unwrap();
        assert!(
            a.ends_with("30     12     3     0     0     1     7     0     1"),
            "{table}"
        );
        let stub = table.lines().find(|l| l.starts_with("stub ")).unwrap();
        assert!(
            stub.ends_with("10      -     -     -     -     -     -     -     -"),
            "{table}"
        );
        let whole = table
            .lines()
            .find(|l| l.starts_with("entry -> ready"))
            .unwrap();
        assert!(whole.contains(" 40     13     3 "), "{table}");
    }

    #[test]
    fn device_columns_say_markers_were_on() {
        use super::super::exits::{Access, attribute};
        let text = framed_dump(concat!(
            "0x1000 1 ENTER a exits=0,0,0,0,0,0,1\n",
            "0x1000 2 EXIT a exits=0,0,0,0,0,0,2\n",
            "0x1000 3 EVENT ready exits=0,0,0,0,0,0,3\n",
        ));
        let dump = parse_dump(&text).unwrap();
        let trace = Trace::build(&dump.records);
        let device = |name: &str| Access::Device(name.to_owned());
        let accesses = [
            Access::Marker(0),
            device("pit"),
            device("virtio-mmio"),
            Access::Marker(1),
            Access::Marker(2),
            device("serial"),
        ];
        let devices = attribute(&dump.records, &accesses).unwrap();
        let columns = Columns {
            instructions: false,
            devices: Some(&devices),
        };
        let table = phase_table(&trace, 1000, columns);
        assert!(
            table
                .lines()
                .next()
                .unwrap()
                .ends_with("device   pit virtio-mmio"),
            "{table}"
        );
        let a = table.lines().find(|l| l.starts_with("a ")).unwrap();
        assert!(a.ends_with("2     1           1"), "{table}");
        assert!(table.contains("mote.tslog=markers ON"), "{table}");
        assert!(table.contains("after ready: 1 serial"), "{table}");
    }

    #[test]
    fn unclosed_spans_are_marked() {
        let text = frame(1000, 2, 3, "0x0 0 ENTER a\n0x0 5 ENTER b\n");
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert!(phase_table(&trace, 1000, Columns::default()).contains("(unclosed)"));
    }
}
