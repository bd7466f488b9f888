//! `cargo xtask trace --exits`: the device accesses QEMU dispatched during
//! a boot with `mote.tslog=markers`, attributed to the tslog spans they
//! happened in.
//!
//! QEMU's `-trace 'memory_region_ops_*' -D FILE` writes one line per access
//! it dispatches to a device model (QEMU `system/trace-events`:
//! `memory_region_ops_read|write cpu %d mr %p addr 0x%x value 0x%x size %u
//! name '%s'`), each an exit under KVM. With markers on, the kernel writes
//! each record's index to port 0x80 (a 16-bit write) right after storing
//! the record; microvm has nothing there, so the trace names it `io`. An
//! access between the markers of records i and i + 1 happened while the
//! spans open after record i were open: it is counted to the innermost,
//! and, like time, to every span around it. The markers themselves are
//! not counted.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use mote_boot::protocol::tslog::{Kind, Record, STUB_THREAD};

/// The port and width the kernel writes markers with.
const MARKER_PORT: u64 = 0x80;
const MARKER_SIZE: u32 = 2;

/// One dispatched access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// A tslog marker: the record index.
    Marker(u64),
    /// A device access, by the device's memory-region name.
    Device(String),
}

/// One `memory_region_ops_read`/`_write` line of a QEMU trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpsLine<'a> {
    pub(crate) write: bool,
    /// As QEMU prints it: for the ISA serial port and port 0x80 the port
    /// number itself, for MMIO devices the offset in the region.
    pub(crate) addr: Option<u64>,
    pub(crate) value: Option<u64>,
    pub(crate) size: Option<u32>,
    /// The memory region's name.
    pub(crate) name: &'a str,
}

/// Parses one trace line; `None` for any other line (the log may hold
/// other events, or `-d exec` lines, between them).
pub(crate) fn parse_ops_line(line: &str) -> Option<OpsLine<'_>> {
    let line = &line[line.find("memory_region_ops_")?..];
    let write = line.starts_with("memory_region_ops_write ");
    if !write && !line.starts_with("memory_region_ops_read ") {
        return None;
    }
    let field = |key: &str| {
        let start = line.find(&format!(" {key} "))? + key.len() + 2;
        line[start..].split(' ').next()
    };
    let hex =
        |key| field(key).and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    let name = line
        .rfind(" name '")
        .map(|start| line[start + 7..].trim_end().trim_end_matches('\''))?;
    Some(OpsLine {
        write,
        addr: hex("addr"),
        value: hex("value"),
        size: field("size").and_then(|v| v.parse().ok()),
        name,
    })
}

/// Reads the accesses in a QEMU memory-region trace, in order. Lines that
/// are not `memory_region_ops_read`/`_write` are ignored.
pub(crate) fn parse_trace(text: &str) -> Vec<Access> {
    text.lines()
        .filter_map(parse_ops_line)
        .map(|ops| match ops {
            OpsLine {
                write: true,
                name: "io",
                addr: Some(MARKER_PORT),
                size: Some(MARKER_SIZE),
                value: Some(value),
            } => Access::Marker(value),
            _ => Access::Device(ops.name.to_owned()),
        })
        .collect()
}

/// Accesses by device name.
pub(crate) type ByDevice = BTreeMap<String, u64>;

/// The accesses of one boot, by span.
#[derive(Debug, Default)]
pub(crate) struct DeviceExits {
    /// Per span of [`crate::guest_output::tslog::Trace::spans`] (same
    /// index): the accesses made while it was open, its children's
    /// included; `None` for a span that began before the first marker,
    /// whose accesses cannot all be told apart.
    pub(crate) spans: Vec<Option<ByDevice>>,
    /// Between the first marker and `ready`, while no kernel span was open.
    pub(crate) between: ByDevice,
    /// Between the first marker and `ready`: every access the table shows.
    pub(crate) total: ByDevice,
    /// Before the first marker: firmware, the stub, the kernel before it
    /// read `mote.tslog=markers`.
    pub(crate) before: ByDevice,
    /// After `ready`'s marker (the report, the dump, power-off).
    pub(crate) after: ByDevice,
    /// Markers seen.
    pub(crate) markers: usize,
    /// The record the first marker named.
    pub(crate) first_marker: u64,
}

impl DeviceExits {
    /// The device names seen in the window, for the table's columns.
    pub(crate) fn devices(&self) -> Vec<&str> {
        self.total.keys().map(String::as_str).collect()
    }
}

/// Attributes `accesses` to the spans `records` (the dump, in order) open
/// at each. Span indexes follow [`crate::guest_output::tslog::Trace::build`]:
/// the n-th ENTER opens span n.
pub(crate) fn attribute(records: &[Record<'_>], accesses: &[Access]) -> Result<DeviceExits> {
    // For each record: the kernel spans open after it, innermost last.
    let mut open_after: Vec<Vec<usize>> = Vec::with_capacity(records.len());
    let mut stack: Vec<(usize, &str)> = Vec::new();
    let mut entered = 0;
    // Each span's ENTER record.
    let mut entered_at = Vec::new();
    let mut ready = None;
    for (index, record) in records.iter().enumerate() {
        let kernel = record.thread != STUB_THREAD;
        match record.kind {
            Kind::Enter => {
                if kernel {
                    stack.push((entered, record.function));
                }
                entered += 1;
                entered_at.push(index);
            }
            Kind::Exit if kernel => {
                if let Some(position) = stack.iter().rposition(|&(_, name)| name == record.function)
                {
                    stack.truncate(position);
                }
            }
            Kind::Event if record.function == "ready" && ready.is_none() => {
                ready = Some(index);
            }
            _ => {}
        }
        open_after.push(stack.iter().map(|&(span, _)| span).collect());
    }
    let Some(ready) = ready else {
        bail!("the dump has no `ready` event: nothing to attribute to");
    };
    let mut exits = DeviceExits {
        spans: vec![Some(ByDevice::new()); entered],
        ..DeviceExits::default()
    };
    // `None` before the first marker; then the record the last marker named.
    let mut current: Option<usize> = None;
    for access in accesses {
        match access {
            Access::Marker(value) => {
                let index = usize::try_from(*value).unwrap_or(usize::MAX);
                let expected = current.map(|last| last + 1);
                if index >= records.len() || expected.is_some_and(|next| next != index) {
                    bail!(
                        "marker {value} after {current:?}: the markers do not follow the dump's {} records",
                        records.len()
                    );
                }
                if current.is_none() {
                    exits.first_marker = *value;
                }
                exits.markers += 1;
                current = Some(index);
            }
            Access::Device(name) => {
                let bucket = match current {
                    None => &mut exits.before,
                    Some(index) if index >= ready => &mut exits.after,
                    Some(index) => {
                        *exits.total.entry(name.clone()).or_default() += 1;
                        let open = &open_after[index];
                        if open.is_empty() {
                            &mut exits.between
                        } else {
                            for &span in &open[1..] {
                                if let Some(counts) = &mut exits.spans[span] {
                                    *counts.entry(name.clone()).or_default() += 1;
                                }
                            }
                            match &mut exits.spans[open[0]] {
                                Some(counts) => counts,
                                None => continue,
                            }
                        }
                    }
                };
                *bucket.entry(name.clone()).or_default() += 1;
            }
        }
    }
    if exits.markers == 0 {
        bail!("the trace has no tslog markers (was the kernel booted with mote.tslog=markers?)");
    }
    if current.is_none_or(|last| last < ready) {
        bail!("the markers stop before `ready`'s record: the trace was cut short");
    }
    let first = usize::try_from(exits.first_marker).unwrap_or(usize::MAX);
    for (counts, &enter) in exits.spans.iter_mut().zip(&entered_at) {
        if enter < first {
            *counts = None;
        }
    }
    Ok(exits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_output::tslog::{Trace, framed_dump, parse_dump};

    fn write(addr: u64, value: u64, size: u32, name: &str) -> String {
        format!(
            "memory_region_ops_write cpu 0 mr 0x55a8bda28400 addr {addr:#x} value {value:#x} size {size} name '{name}'\n"
        )
    }

    fn read(name: &str) -> String {
        format!("memory_region_ops_read cpu 0 mr 0x1 addr 0x70 value 0x2 size 4 name '{name}'\n")
    }

    #[test]
    fn reads_qemu_lines_and_tells_markers_apart() {
        let text = [
            write(0xcf8, 0x8000_0000, 4, "io"),
            "some other trace line\n".to_owned(),
            write(0x80, 0x1e, 2, "io"),
            write(0x80, 0x1e, 1, "io"),
            read("virtio-mmio"),
        ]
        .concat();
        assert_eq!(
            parse_trace(&text),
            [
                Access::Device("io".into()),
                Access::Marker(0x1e),
                Access::Device("io".into()),
                Access::Device("virtio-mmio".into()),
            ]
        );
    }

    #[test]
    fn accesses_go_to_the_innermost_open_span_and_its_parents() {
        let text = framed_dump(concat!(
            "0x0 0 ENTER stub\n0x0 1 EXIT stub\n",        // 0, 1
            "0x1000 2 ENTER a exits=0,0,0,0,0,0,1\n",     // 2
            "0x1000 3 ENTER b exits=0,0,0,0,0,0,2\n",     // 3
            "0x1000 4 EXIT b exits=0,0,0,0,0,0,3\n",      // 4
            "0x1000 5 EXIT a exits=0,0,0,0,0,0,4\n",      // 5
            "0x1000 6 ENTER c exits=0,0,0,0,0,0,5\n",     // 6
            "0x1000 7 EXIT c exits=0,0,0,0,0,0,6\n",      // 7
            "0x1000 8 EVENT ready exits=0,0,0,0,0,0,7\n", // 8
        ));
        let dump = parse_dump(&text).unwrap();
        let trace = Trace::build(&dump.records);
        let marker = |i| Access::Marker(i);
        let device = |name: &str| Access::Device(name.to_owned());
        let accesses = [
            device("fwcfg"),
            marker(2),
            device("pit"),
            marker(3),
            device("virtio-mmio"),
            device("virtio-mmio"),
            marker(4),
            device("ioapic"),
            marker(5),
            device("pic"),
            marker(6),
            marker(7),
            marker(8),
            device("serial"),
        ];
        let exits = attribute(&dump.records, &accesses).unwrap();
        let span = |name: &str| {
            let index = trace.spans.iter().position(|s| s.name == name).unwrap();
            exits.spans[index].clone().unwrap_or_default()
        };
        let of = |pairs: &[(&str, u64)]| -> ByDevice {
            pairs.iter().map(|&(n, c)| (n.to_owned(), c)).collect()
        };
        assert_eq!(span("b"), of(&[("virtio-mmio", 2)]));
        assert_eq!(
            span("a"),
            of(&[("ioapic", 1), ("pit", 1), ("virtio-mmio", 2)])
        );
        assert_eq!(span("c"), of(&[]));
        assert_eq!(exits.between, of(&[("pic", 1)]));
        assert_eq!(exits.before, of(&[("fwcfg", 1)]));
        assert_eq!(exits.after, of(&[("serial", 1)]));
        let window: u64 = exits.total.values().sum();
        let top: u64 = span("a").values().sum::<u64>() + span("c").values().sum::<u64>();
        assert_eq!(top + exits.between.values().sum::<u64>(), window);
        assert_eq!((exits.markers, exits.first_marker), (7, 2));
        assert_eq!(
            exits.spans[0], None,
            "the stub's span began before the markers"
        );
    }

    #[test]
    fn markers_that_do_not_follow_the_dump_are_an_error() {
        let text = framed_dump("0x1000 1 ENTER a\n0x1000 2 EXIT a\n0x1000 3 EVENT ready\n");
        let dump = parse_dump(&text).unwrap();
        let skipped = attribute(&dump.records, &[Access::Marker(0), Access::Marker(2)]);
        assert!(skipped.unwrap_err().to_string().contains("do not follow"));
        let cut = attribute(&dump.records, &[Access::Marker(0), Access::Marker(1)]);
        assert!(cut.unwrap_err().to_string().contains("cut short"));
        let none = attribute(&dump.records, &[Access::Device("pit".into())]);
        assert!(none.unwrap_err().to_string().contains("no tslog markers"));
    }
}
