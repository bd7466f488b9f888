//! Observability of the boot itself: a FreeBSD-style tslog tracer (records
//! stamped with the raw TSC, kept in a lock-free static buffer, dumped in
//! `debug.tslog` format), RAII span guards, the per-phase table, and the
//! current boot phase for crash reports.
//!
//! The tracer is hand-written: no crate records from a fixed static buffer
//! without allocating or locking, in a format FreeBSD's scripts read.

mod buffer;
mod dump;
pub(crate) mod exits;
pub(crate) mod phase;
mod span;

pub(crate) use buffer::TSLOG;
pub(crate) use dump::{write_dump, write_phase_table};
pub(crate) use span::{Writer, enter_at, event_at, exit_at, span, span_at, span_from};

/// The tracer's clock: the TSC on the target. Host tests use a counter, so
/// they build and run on any architecture.
#[cfg(target_os = "none")]
pub(crate) use crate::arch::x86_64::cpu::rdtsc as timestamp;

/// Tells the host that record `index` was just stored
/// (`mote.tslog=markers`): a 16-bit write of the index to I/O port 0x80
/// (the buffer holds fewer records than that), uncounted.
#[cfg(target_os = "none")]
fn marker(index: usize) {
    let [low, high, ..] = index.to_le_bytes();
    crate::arch::x86_64::cpu::tslog_marker(u16::from_le_bytes([low, high]));
}

/// Host builds have no port 0x80.
#[cfg(not(target_os = "none"))]
fn marker(_index: usize) {}

/// The CPU a record is written on (its tslog thread is
/// `kernel_thread(cpu)`); host tests run as the boot CPU.
#[cfg(target_os = "none")]
pub(crate) use crate::arch::x86_64::per_cpu::current_cpu;

#[cfg(not(target_os = "none"))]
pub(crate) fn current_cpu() -> u32 {
    0
}

#[cfg(not(target_os = "none"))]
pub(crate) fn timestamp() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static TICKS: AtomicU64 = AtomicU64::new(0);
    TICKS.fetch_add(1, Ordering::Relaxed)
}
