//! The record buffer: ENTER/EXIT/EVENT records in a fixed static array where
//! a slot is claimed with one atomic add. Nothing allocates or locks; when
//! the buffer is full, records are dropped and counted. This file holds
//! the tracer's only `unsafe`: slots that are written once, before anyone
//! may read them, and need no initial value.

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mote_boot::protocol::tslog::{Exits, Kind};

/// Records kept; a traced boot writes a few hundred.
pub(crate) const CAPACITY: usize = 2048;
// `mote.tslog=markers` writes an index in 16 bits.
const _: () = assert!(CAPACITY <= 1 << 16);

/// One record: a `debug.tslog` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// [`mote_boot::protocol::tslog::STUB_THREAD`] or a kernel thread.
    pub(crate) thread: u64,
    pub(crate) kind: Kind,
    pub(crate) tsc: u64,
    pub(crate) function: &'static str,
    pub(crate) detail: Option<&'static str>,
    /// The exit counts when the kernel wrote it; `None` for the stub's.
    pub(crate) exits: Option<Exits>,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mote_boot::protocol::tslog::Record {
            thread: self.thread,
            tsc: self.tsc,
            kind: self.kind,
            function: self.function,
            detail: self.detail,
            exits: self.exits,
        }
        .fmt(f)
    }
}

/// Record storage. It needs no initial value, so the kernel keeps it out of
/// the zeroed .bss; [`Tslog`]'s `written` flags say which slots hold one.
pub(crate) struct RecordSlots<const N: usize>([UnsafeCell<MaybeUninit<Record>>; N]);

// SAFETY: slots are reachable only through the one `Tslog` they were given
// to (`Tslog::new` takes them by unique reference and keeps them), which
// hands each slot to a single writer (the fetch_add in `record`) and lets
// readers see a slot only after the Release store of its `written` flag.
unsafe impl<const N: usize> Sync for RecordSlots<N> {}

impl<const N: usize> RecordSlots<N> {
    pub(crate) const fn new() -> Self {
        Self([const { UnsafeCell::new(MaybeUninit::uninit()) }; N])
    }
}

impl<const N: usize> Default for RecordSlots<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The tracer over one set of slots.
pub(crate) struct Tslog<const N: usize> {
    slots: &'static RecordSlots<N>,
    written: [AtomicBool; N],
    claimed: AtomicUsize,
    dropped: AtomicUsize,
    /// `mote.tslog=markers`: each stored record's index goes to the host.
    markers: AtomicBool,
}

impl<const N: usize> Tslog<N> {
    /// A tracer that owns `slots`: the unique reference is what makes the
    /// slots this tracer's alone, so no two tracers can share them.
    pub(crate) const fn new(slots: &'static mut RecordSlots<N>) -> Self {
        Self {
            slots,
            written: [const { AtomicBool::new(false) }; N],
            claimed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            markers: AtomicBool::new(false),
        }
    }

    /// Appends a record, or counts it as dropped when the buffer is full.
    pub(crate) fn record(&self, record: Record) {
        let index = self.claimed.fetch_add(1, Ordering::Relaxed);
        let (Some(slot), Some(written)) = (self.slots.0.get(index), self.written.get(index)) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // SAFETY: `index` was handed out once by the fetch_add above, so no
        // one else writes this slot; readers wait for `written`.
        unsafe { (*slot.get()).write(record) };
        written.store(true, Ordering::Release);
        if self.markers.load(Ordering::Relaxed) {
            super::marker(index);
        }
    }

    /// From now on, tells the host each stored record's index as it is
    /// recorded ([`super::marker`]), starting with the last record stored
    /// so far: the host then knows which record every later device access
    /// follows. Records stored before this had no marker.
    pub(crate) fn enable_markers(&self) {
        let claimed = self.claimed.load(Ordering::Relaxed);
        self.markers.store(true, Ordering::Relaxed);
        if let Some(last) = claimed.checked_sub(1).filter(|&last| last < N) {
            super::marker(last);
        }
    }

    /// The records written so far, in claim order.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let claimed = self.claimed.load(Ordering::Acquire).min(N);
        self.slots.0[..claimed]
            .iter()
            .zip(&self.written)
            .filter(|(_, written)| written.load(Ordering::Acquire))
            // SAFETY: `written` is set (Release) only after the record is
            // fully written; the Acquire load above makes it visible.
            .map(|(slot, _)| unsafe { (*slot.get()).assume_init() })
    }

    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The kernel's record storage; [`TSLOG`] is its one owner.
#[cfg_attr(target_os = "none", unsafe(link_section = ".bss.noinit.tslog"))]
static mut RECORD_SLOTS: RecordSlots<CAPACITY> = RecordSlots::new();

/// The kernel's tracer.
pub(crate) static TSLOG: Tslog<CAPACITY> = Tslog::new(
    #[allow(
        clippy::deref_addrof,
        reason = "a `static mut` is reached through a raw pointer"
    )]
    // SAFETY: the one reference to `RECORD_SLOTS` ever made; `Tslog::new`
    // keeps it for good.
    unsafe {
        &mut *(&raw mut RECORD_SLOTS)
    },
);

/// A kernel record without detail, for tests.
#[cfg(test)]
pub(super) fn rec(kind: Kind, tsc: u64, function: &'static str) -> Record {
    Record {
        thread: mote_boot::protocol::tslog::KERNEL_THREAD,
        kind,
        tsc,
        function,
        detail: None,
        exits: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "0x1000 42 ENTER memory"
        );
        let event = Record {
            thread: mote_boot::protocol::tslog::STUB_THREAD,
            kind: Kind::Event,
            tsc: 7,
            function: "ready",
            detail: Some("boot"),
            exits: None,
        };
        assert_eq!(event.to_string(), "0x0 7 EVENT ready boot");
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
