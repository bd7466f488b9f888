//! Recording: spans as RAII guards (an early return cannot leave one open),
//! spans and events at TSC readings taken earlier, and the boot phase each
//! span sets for crash reports.
#![deny(unsafe_code)]

use mote_boot::protocol::tslog::{Kind, STUB_THREAD, kernel_thread};

use super::buffer::{Record, TSLOG};
use super::{exits, phase, timestamp};

/// Who wrote a record: the stub is traced as FreeBSD traces its loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The 32-bit entry stub, whose stamps the kernel records later.
    EntryStub,
    /// The kernel, on the CPU that records (one tslog thread per CPU).
    Kernel,
}

impl Writer {
    fn thread(self) -> u64 {
        match self {
            Self::EntryStub => STUB_THREAD,
            Self::Kernel => kernel_thread(u8::try_from(super::current_cpu()).unwrap_or(u8::MAX)),
        }
    }
}

fn record(kind: Kind, tsc: u64, function: &'static str, detail: Option<&'static str>) {
    record_as(Writer::Kernel, kind, tsc, function, detail);
}

fn record_as(
    writer: Writer,
    kind: Kind,
    tsc: u64,
    function: &'static str,
    detail: Option<&'static str>,
) {
    TSLOG.record(Record {
        thread: writer.thread(),
        kind,
        tsc,
        function,
        detail,
        exits: (writer == Writer::Kernel).then(exits::snapshot),
    });
}

/// Records an ENTER for `function` and returns the guard that records its
/// EXIT when dropped. The innermost open span is also the boot phase a
/// crash reports.
#[must_use = "the span ends when the guard is dropped"]
pub(crate) fn span(function: &'static str) -> Span {
    span_from(function, timestamp())
}

/// Starts a span at a TSC read earlier (the first phase after the stub).
#[must_use = "the span ends when the guard is dropped"]
pub(crate) fn span_from(function: &'static str, tsc: u64) -> Span {
    let previous = phase::current();
    phase::set(function);
    enter_at(Writer::Kernel, function, tsc);
    Span { function, previous }
}

/// Records a point event at a TSC read earlier, with an optional detail.
pub(crate) fn event_at(tsc: u64, function: &'static str, detail: Option<&'static str>) {
    record(Kind::Event, tsc, function, detail);
}

/// Records a span whose ends were measured before the tracer could run
/// (the 32-bit entry stub, the call into Rust).
pub(crate) fn span_at(writer: Writer, function: &'static str, enter: u64, exit: u64) {
    enter_at(writer, function, enter);
    exit_at(writer, function, exit);
}

/// Records an ENTER at a TSC read earlier; pair it with [`exit_at`].
pub(crate) fn enter_at(writer: Writer, function: &'static str, tsc: u64) {
    record_as(writer, Kind::Enter, tsc, function, None);
}

/// Records an EXIT at a TSC read earlier.
pub(crate) fn exit_at(writer: Writer, function: &'static str, tsc: u64) {
    record_as(writer, Kind::Exit, tsc, function, None);
}

/// An open span; dropping it records the EXIT and restores the phase.
pub(crate) struct Span {
    function: &'static str,
    previous: &'static str,
}

impl Span {
    /// Ends this span and starts the next at the same TSC, so consecutive
    /// phases leave no untraced time between them.
    #[must_use = "the span ends when the guard is dropped"]
    pub(crate) fn then(self, function: &'static str) -> Span {
        let tsc = timestamp();
        exit_at(Writer::Kernel, self.function, tsc);
        enter_at(Writer::Kernel, function, tsc);
        phase::set(function);
        let next = Span {
            function,
            previous: self.previous,
        };
        core::mem::forget(self);
        next
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        exit_at(Writer::Kernel, self.function, timestamp());
        phase::set(self.previous);
    }
}

#[cfg(test)]
mod tests {
    use mote_boot::protocol::tslog::KERNEL_THREAD;

    use super::*;

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
        assert_eq!(records[0].thread, KERNEL_THREAD);
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
}
