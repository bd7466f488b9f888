//! A boot tracer in the spirit of FreeBSD's tslog(4): ENTER/EXIT/EVENT
//! records stamped with the raw TSC, in a fixed static buffer where a slot is
//! claimed with one atomic add. Nothing allocates; when the buffer is full,
//! records are dropped and counted.
//!
//! The dump uses FreeBSD's `debug.tslog` line format,
//! `<thread> <tsc> ENTER|EXIT|EVENT <function>[ <string>]`, so FreeBSD's own
//! scripts (`tslog.sh`, `stackcollapse-tslog.pl`) read it as well as
//! `cargo xtask trace`.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::phase;

/// Records kept; a traced boot writes a few hundred.
pub const CAPACITY: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Enter,
    Exit,
    Event,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Enter => "ENTER",
            Self::Exit => "EXIT",
            Self::Event => "EVENT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub tsc: u64,
    pub function: &'static str,
    pub detail: Option<&'static str>,
}

impl fmt::Display for Record {
    /// One `debug.tslog` line; mote has one thread, printed as `0x0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x0 {} {} {}", self.tsc, self.kind.name(), self.function)?;
        if let Some(detail) = self.detail {
            write!(f, " {detail}")?;
        }
        Ok(())
    }
}

/// Record storage: needs no initial value, so the kernel keeps it out of
/// the zeroed .bss; `Tslog::written` says which slots hold a record.
pub struct RecordSlots<const N: usize>([UnsafeCell<MaybeUninit<Record>>; N]);

// SAFETY: access goes through `Tslog`, which hands each slot to one writer.
unsafe impl<const N: usize> Sync for RecordSlots<N> {}

impl<const N: usize> RecordSlots<N> {
    pub const fn new() -> Self {
        Self([const { UnsafeCell::new(MaybeUninit::uninit()) }; N])
    }
}

impl<const N: usize> Default for RecordSlots<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The record buffer.
pub struct Tslog<const N: usize> {
    slots: &'static RecordSlots<N>,
    written: [AtomicBool; N],
    claimed: AtomicUsize,
    dropped: AtomicUsize,
}

impl<const N: usize> Tslog<N> {
    pub const fn new(slots: &'static RecordSlots<N>) -> Self {
        Self {
            slots,
            written: [const { AtomicBool::new(false) }; N],
            claimed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    /// Appends a record, or counts it as dropped when the buffer is full.
    pub fn record(&self, record: Record) {
        let index = self.claimed.fetch_add(1, Ordering::Relaxed);
        let (Some(slot), Some(written)) = (self.slots.0.get(index), self.written.get(index)) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // SAFETY: `index` was handed out once by the fetch_add above, so no
        // one else writes this slot; readers wait for `written`.
        unsafe { (*slot.get()).write(record) };
        written.store(true, Ordering::Release);
    }

    /// The records written so far, in claim order.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let claimed = self.claimed.load(Ordering::Acquire).min(N);
        self.slots.0[..claimed]
            .iter()
            .zip(&self.written)
            .filter(|(_, written)| written.load(Ordering::Acquire))
            // SAFETY: `written` is set (Release) only after the record is
            // fully written; the Acquire load above makes it visible.
            .map(|(slot, _)| unsafe { (*slot.get()).assume_init() })
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg_attr(target_os = "none", unsafe(link_section = ".bss.noinit.tslog"))]
static RECORD_SLOTS: RecordSlots<CAPACITY> = RecordSlots::new();

/// The kernel's trace buffer.
pub static TSLOG: Tslog<CAPACITY> = Tslog::new(&RECORD_SLOTS);

/// Reads the TSC (the tracer's clock; the host converts with the frequency
/// printed in the dump's frame).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Records an ENTER for `function` and returns the guard that records its
/// EXIT when dropped, so an early return cannot leave a span open. The
/// innermost open span is also the boot phase a crash reports.
#[must_use = "the span ends when the guard is dropped"]
pub fn span(function: &'static str) -> Span {
    let previous = phase::current();
    phase::set(function);
    TSLOG.record(Record {
        kind: Kind::Enter,
        tsc: rdtsc(),
        function,
        detail: None,
    });
    Span {
        function,
        previous,
        open: true,
    }
}

/// Writes the dump: a frame line with what the host needs to convert TSC
/// ticks, one `debug.tslog` line per record, and an end line.
pub fn write_dump(out: &mut dyn fmt::Write, tsc_hz: u64) -> fmt::Result {
    writeln!(
        out,
        "mote: tslog begin tsc_hz={tsc_hz} records={} dropped={}",
        TSLOG.records().count(),
        TSLOG.dropped()
    )?;
    for record in TSLOG.records() {
        writeln!(out, "{record}")?;
    }
    writeln!(out, "mote: tslog end")
}

/// Writes the per-phase table of entry -> `ready`: one line per span, in
/// start order, indented by depth, with microseconds and the share of the
/// whole. Spans that start after `ready` are left out.
pub fn write_phase_table(
    out: &mut dyn fmt::Write,
    records: impl Iterator<Item = Record>,
    tsc_hz: u64,
) -> fmt::Result {
    extern crate alloc;
    let mut spans: alloc::vec::Vec<(u64, u64, usize, &'static str)> = alloc::vec::Vec::new();
    let mut open: alloc::vec::Vec<(u64, &'static str)> = alloc::vec::Vec::new();
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
                ready = Some(record.tsc)
            }
            Kind::Event => {}
        }
    }
    let (Some(first), Some(ready)) = (first, ready) else {
        return writeln!(out, "(no complete boot trace)");
    };
    let total = ready.saturating_sub(first).max(1);
    spans.retain(|&(start, ..)| start < ready);
    spans.sort_by_key(|&(start, _, depth, _)| (start, depth));
    let micros = |cycles: u64| cycles as f64 * 1e6 / tsc_hz.max(1) as f64;
    for (start, end, depth, name) in spans {
        let cycles = end.min(ready) - start;
        writeln!(
            out,
            "{:indent$}{name:<width$} {:>10.1} us {:>5.1}%",
            "",
            micros(cycles),
            cycles as f64 * 100.0 / total as f64,
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

/// Records a point event, with an optional detail string.
pub fn event(function: &'static str, detail: Option<&'static str>) {
    event_at(rdtsc(), function, detail);
}

/// Records an event at a TSC read earlier.
pub fn event_at(tsc: u64, function: &'static str, detail: Option<&'static str>) {
    TSLOG.record(Record {
        kind: Kind::Event,
        tsc,
        function,
        detail,
    });
}

/// Records a span whose ends were measured before the tracer could run
/// (the 32-bit entry stub).
pub fn span_at(function: &'static str, enter: u64, exit: u64) {
    TSLOG.record(Record {
        kind: Kind::Enter,
        tsc: enter,
        function,
        detail: None,
    });
    TSLOG.record(Record {
        kind: Kind::Exit,
        tsc: exit,
        function,
        detail: None,
    });
}

/// Records an ENTER at a TSC read earlier; pair it with [`exit_at`].
pub fn enter_at(function: &'static str, tsc: u64) {
    TSLOG.record(Record {
        kind: Kind::Enter,
        tsc,
        function,
        detail: None,
    });
}

/// Records an EXIT at a TSC read earlier.
pub fn exit_at(function: &'static str, tsc: u64) {
    TSLOG.record(Record {
        kind: Kind::Exit,
        tsc,
        function,
        detail: None,
    });
}

/// Starts a span at a TSC read earlier (the first phase after the stub).
#[must_use = "the span ends when the guard is dropped"]
pub fn span_from(function: &'static str, tsc: u64) -> Span {
    let previous = phase::current();
    phase::set(function);
    enter_at(function, tsc);
    Span {
        function,
        previous,
        open: true,
    }
}

pub struct Span {
    function: &'static str,
    previous: &'static str,
    open: bool,
}

impl Span {
    /// Ends this span and starts the next at the same TSC, so consecutive
    /// phases leave no untraced time between them.
    #[must_use = "the span ends when the guard is dropped"]
    pub fn then(mut self, function: &'static str) -> Span {
        let tsc = rdtsc();
        exit_at(self.function, tsc);
        enter_at(function, tsc);
        self.open = false;
        phase::set(function);
        Span {
            function,
            previous: self.previous,
            open: true,
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.open {
            exit_at(self.function, rdtsc());
            phase::set(self.previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, tsc: u64, function: &'static str) -> Record {
        Record {
            kind,
            tsc,
            function,
            detail: None,
        }
    }

    #[test]
    fn records_in_order_then_drops_and_counts() {
        let log = Tslog::<3>::new(Box::leak(Box::default()));
        log.record(rec(Kind::Enter, 1, "a"));
        log.record(rec(Kind::Exit, 2, "a"));
        log.record(rec(Kind::Event, 3, "b"));
        log.record(rec(Kind::Event, 4, "c"));
        log.record(rec(Kind::Event, 5, "d"));
        let tscs: Vec<u64> = log.records().map(|r| r.tsc).collect();
        assert_eq!(tscs, [1, 2, 3]);
        assert_eq!(log.dropped(), 2);
    }

    #[test]
    fn freebsd_line_format() {
        assert_eq!(
            rec(Kind::Enter, 42, "memory").to_string(),
            "0x0 42 ENTER memory"
        );
        let event = Record {
            kind: Kind::Event,
            tsc: 7,
            function: "ready",
            detail: Some("boot"),
        };
        assert_eq!(event.to_string(), "0x0 7 EVENT ready boot");
    }

    #[test]
    fn guard_closes_span_on_early_return_and_restores_phase() {
        fn traced(fail: bool) -> Result<(), ()> {
            let _span = span("tslog_test_inner");
            if fail {
                return Err(());
            }
            Ok(())
        }
        let _outer = span("tslog_test_outer");
        let _ = traced(true);
        assert_eq!(phase::current(), "tslog_test_outer");
        let records: Vec<Record> = TSLOG
            .records()
            .filter(|r| r.function == "tslog_test_inner")
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].kind, Kind::Enter);
        assert_eq!(records[1].kind, Kind::Exit);
        assert!(records[0].tsc <= records[1].tsc);
    }

    #[test]
    fn then_hands_over_at_one_instant() {
        let first = span("tslog_test_first");
        let second = first.then("tslog_test_second");
        assert_eq!(phase::current(), "tslog_test_second");
        drop(second);
        let records: Vec<Record> = TSLOG
            .records()
            .filter(|r| {
                r.function.starts_with("tslog_test_first") || r.function == "tslog_test_second"
            })
            .collect();
        let kinds: Vec<(Kind, &str)> = records.iter().map(|r| (r.kind, r.function)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Enter, "tslog_test_first"),
                (Kind::Exit, "tslog_test_first"),
                (Kind::Enter, "tslog_test_second"),
                (Kind::Exit, "tslog_test_second"),
            ]
        );
        assert_eq!(records[1].tsc, records[2].tsc);
    }

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
        let mut text = String::new();
        write_phase_table(&mut text, records.into_iter(), 1_000_000).unwrap();
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
        write_phase_table(&mut empty, [rec(Kind::Enter, 0, "a")].into_iter(), 1).unwrap();
        assert_eq!(empty, "(no complete boot trace)\n");
    }

    #[test]
    fn concurrent_writers_never_share_a_slot() {
        let log = std::sync::Arc::new(Tslog::<1000>::new(Box::leak(Box::default())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..300 {
                        log.record(rec(Kind::Event, t * 1000 + i, "x"));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut tscs: Vec<u64> = log.records().map(|r| r.tsc).collect();
        assert_eq!(tscs.len() + log.dropped(), 1200);
        assert_eq!(log.dropped(), 200);
        tscs.sort_unstable();
        tscs.dedup();
        assert_eq!(tscs.len(), 1000, "each record is whole and unique");
    }
}
