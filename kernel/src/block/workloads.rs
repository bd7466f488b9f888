//! The disk workloads the command line asks for, run after the ready mark,
//! each ending in report lines the host checks: `mote.blk=verify` (CRC-32 of
//! every disk and ramdisk), `mote.blk.write=` (the seeded pattern, flushed)
//! and `mote.blk=bench` (read throughput at a fixed queue depth).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use mote_boot::protocol::disk_pattern::SECTOR_SIZE;
use mote_boot::protocol::report::{
    BenchFailed, BenchRead, Crc32, DiskName, Line, Verified, VerifyFailed, WriteRefused, Wrote,
};

use super::{BlockDevice, QueuedRead, Ramdisk, crc, crc32_of_device, write_pattern};
use crate::clock::TscFrequency;
use crate::cmdline::Options;
use crate::smp::work::Workers;

/// Bytes per request for verify and write.
const IO_CHUNK: usize = 64 * 1024;
/// Request sizes and queue depth of `mote.blk=bench`.
const BENCH_REQUEST_SIZES: [usize; 3] = [4096, 64 * 1024, 256 * 1024];
const BENCH_QUEUE_DEPTH: usize = 8;
/// Bytes read per request size (or the whole disk, if smaller).
const BENCH_BYTES: u64 = 64 * 1024 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

/// Runs what `options` asks for on `disks` and `ramdisks`, writing one
/// report line per result to `out`. Returns false if any failed (a refused
/// write included), for the power-off status. CRCs are computed by every
/// CPU of `workers`; `now` is the TSC, for the rates.
pub(crate) fn run<D: BlockDevice + QueuedRead>(
    disks: &mut [D],
    ramdisks: &[Ramdisk],
    options: &Options<'_>,
    tsc: Option<TscFrequency>,
    workers: &dyn Workers,
    now: fn() -> u64,
    out: &mut dyn Write,
) -> Result<bool, fmt::Error> {
    let mut ok = true;
    let mut buffer = vec![0u8; IO_CHUNK];
    if options.blk_verify {
        ok &= verify(disks, ramdisks, &mut buffer, tsc, workers, now, out)?;
    }
    if let Some((lba, sectors)) = options.blk_write {
        for (index, disk) in disks.iter_mut().enumerate() {
            match write_pattern(disk, options.blk_seed, lba, sectors, &mut buffer) {
                Ok(crc) => writeln!(
                    out,
                    "{}",
                    Line(Wrote {
                        index,
                        sectors,
                        lba,
                        crc
                    })
                )?,
                Err(error) => {
                    writeln!(out, "{}", Line(WriteRefused { index, error }))?;
                    ok = false;
                }
            }
        }
    }
    if options.blk_bench {
        for (index, disk) in disks.iter_mut().enumerate() {
            for request in BENCH_REQUEST_SIZES {
                ok &= bench(index, disk, request, tsc, out)?;
            }
        }
    }
    Ok(ok)
}

/// `mote.blk=verify`: the CRC of every disk (read into a buffer of
/// [`crc::WINDOW`] bytes, or `buffer` when that cannot be had) and
/// ramdisk, and how fast it was found. False if a disk could not be read.
fn verify<D: BlockDevice>(
    disks: &mut [D],
    ramdisks: &[Ramdisk],
    buffer: &mut [u8],
    tsc: Option<TscFrequency>,
    workers: &dyn Workers,
    now: fn() -> u64,
    out: &mut dyn Write,
) -> Result<bool, fmt::Error> {
    let mut ok = true;
    let mut window = Vec::new();
    let buffer = match window.try_reserve_exact(crc::WINDOW) {
        Ok(()) => {
            window.resize(crc::WINDOW, 0);
            &mut window[..]
        }
        Err(_) => buffer,
    };
    for (index, disk) in disks.iter_mut().enumerate() {
        let bytes = disk.sectors().saturating_mul(SECTOR_SIZE as u64);
        let began = now();
        match crc32_of_device(disk, buffer, IO_CHUNK, workers, now) {
            Ok(found) => {
                let ticks = now().saturating_sub(began);
                let disk = DiskName::Blk(index);
                writeln!(
                    out,
                    "{}",
                    Line(Crc32 {
                        disk,
                        crc: found.crc
                    })
                )?;
                rate_line(disk, bytes, ticks, found.crc_ticks, tsc, workers, out)?;
            }
            Err(error) => {
                writeln!(out, "{}", Line(VerifyFailed { index, error }))?;
                ok = false;
            }
        }
    }
    for (index, ramdisk) in ramdisks.iter().enumerate() {
        let began = now();
        let crc = crc::hash(ramdisk.bytes(), workers);
        let ticks = now().saturating_sub(began);
        let disk = DiskName::Ramdisk(index);
        writeln!(out, "{}", Line(Crc32 { disk, crc }))?;
        let bytes = ramdisk.bytes().len() as u64;
        rate_line(disk, bytes, ticks, ticks, tsc, workers, out)?;
    }
    Ok(ok)
}

/// The `verify … MiB/s` line of `bytes` verified in `ticks` TSC cycles,
/// `crc_ticks` of them computing the CRC; none without a TSC frequency.
fn rate_line(
    disk: DiskName,
    bytes: u64,
    ticks: u64,
    crc_ticks: u64,
    tsc: Option<TscFrequency>,
    workers: &dyn Workers,
    out: &mut dyn Write,
) -> Result<(), fmt::Error> {
    let Some(tsc) = tsc else {
        return Ok(());
    };
    #[allow(
        clippy::cast_precision_loss,
        reason = "figures printed with one decimal"
    )]
    let (mib, seconds, crc_seconds) = (
        bytes as f64 / MIB,
        tsc.nanos(ticks).max(1) as f64 / 1e9,
        tsc.nanos(crc_ticks).max(1) as f64 / 1e9,
    );
    let line = Verified {
        disk,
        mib,
        cpus: workers.cpus(),
        milliseconds: seconds * 1e3,
        mib_per_second: mib / seconds,
        crc_milliseconds: crc_seconds * 1e3,
        crc_mib_per_second: mib / crc_seconds,
    };
    writeln!(out, "{}", Line(line))
}

/// One bench line; false if the reads failed or cannot be timed.
fn bench<D: BlockDevice + QueuedRead>(
    index: usize,
    disk: &mut D,
    request: usize,
    tsc: Option<TscFrequency>,
    out: &mut dyn Write,
) -> Result<bool, fmt::Error> {
    let failed = |error: &dyn fmt::Display, out: &mut dyn Write| {
        writeln!(
            out,
            "{}",
            Line(BenchFailed {
                index,
                request,
                error
            })
        )
        .map(|()| false)
    };
    let Some(tsc) = tsc else {
        return failed(&"the TSC frequency is unknown", out);
    };
    let total = BENCH_BYTES.min(disk.sectors().saturating_mul(SECTOR_SIZE as u64));
    match disk.queued_read(request, BENCH_QUEUE_DEPTH, total) {
        Ok(cycles) => {
            #[allow(
                clippy::cast_precision_loss,
                reason = "figures printed with one decimal"
            )]
            let (ns, mib) = (tsc.nanos(cycles).max(1) as f64, total as f64 / MIB);
            let line = BenchRead {
                index,
                request,
                depth: BENCH_QUEUE_DEPTH,
                mib_per_second: mib * 1e9 / ns,
                mib,
                milliseconds: ns / 1e6,
            };
            writeln!(out, "{}", Line(line)).map(|()| true)
        }
        Err(error) => failed(&error, out),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_disk::FakeDisk;
    use super::*;
    use crate::block::BlockError;
    use crate::smp::work::{ThisCpu, Threads};
    use mote_boot::protocol::report::TscSource;

    impl QueuedRead for FakeDisk {
        /// 1 ms per MiB at 1 GHz (10^6 cycles), so the figures are round.
        fn queued_read(
            &mut self,
            request: usize,
            _depth: usize,
            total: u64,
        ) -> Result<u64, BlockError> {
            if request > 64 * 1024 {
                return Err(BlockError::Device("queue full"));
            }
            Ok(total * 1_000_000 / (1024 * 1024))
        }
    }

    /// A TSC that advances by a millisecond at 1 GHz each time it is read
    /// (on the calling thread).
    fn milliseconds() -> u64 {
        std::thread_local!(static NOW: core::cell::Cell<u64> = const { core::cell::Cell::new(0) });
        NOW.with(|now| now.replace(now.get() + 1_000_000))
    }

    fn run_on(disks: &mut [FakeDisk], cmdline: &str, tsc: Option<TscFrequency>) -> (bool, String) {
        run_with(disks, cmdline, tsc, &ThisCpu)
    }

    fn run_with(
        disks: &mut [FakeDisk],
        cmdline: &str,
        tsc: Option<TscFrequency>,
        workers: &dyn Workers,
    ) -> (bool, String) {
        let options = Options::parse(cmdline);
        let ramdisk = Ramdisk::new(b"ramdisk bytes");
        let mut out = String::new();
        let ok = run(
            disks,
            &[ramdisk],
            &options,
            tsc,
            workers,
            milliseconds,
            &mut out,
        )
        .unwrap();
        (ok, out)
    }

    fn ghz() -> Option<TscFrequency> {
        TscFrequency::new(1_000_000_000, TscSource::Calibrated)
    }

    #[test]
    fn verify_prints_every_disk_and_ramdisk_with_its_rate() {
        // 1 MiB and 2 KiB: one buffer each, so one CRC of 1 ms within 3 ms.
        let mut disks = [FakeDisk::new(2048), FakeDisk::new(4)];
        let expected = crc32fast::hash(&disks[1].data);
        let (ok, out) = run_with(&mut disks, "mote.blk=verify", ghz(), &Threads(3));
        assert!(ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{out}");
        assert_eq!(
            lines[0],
            format!("mote: blk0 crc32 {:08x}", crc32fast::hash(&disks[0].data))
        );
        assert_eq!(
            lines[1],
            "mote: blk0 verify 1.0 MiB on 3 cpus in 3.000 ms: 333.3 MiB/s, crc32 in 1.000 ms: 1000.0 MiB/s"
        );
        assert_eq!(lines[2], format!("mote: blk1 crc32 {expected:08x}"));
        assert!(lines[3].starts_with("mote: blk1 verify 0.0 MiB on 3 cpus in 3.000 ms: "));
        assert_eq!(
            lines[4],
            format!(
                "mote: ramdisk0 crc32 {:08x}",
                crc32fast::hash(b"ramdisk bytes")
            )
        );
        assert!(lines[5].starts_with("mote: ramdisk0 verify 0.0 MiB on 3 cpus in "));
        // No TSC frequency: the CRCs without rates.
        let (ok, out) = run_on(&mut disks, "mote.blk=verify", None);
        assert!(ok);
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.lines().all(|line| line.contains(" crc32 ")), "{out}");
    }

    #[test]
    fn verify_failure_fails_the_run() {
        let mut disks = [FakeDisk::new(16)];
        disks[0].fail_at = Some(3);
        let (ok, out) = run_on(&mut disks, "mote.blk=verify", ghz());
        assert!(!ok);
        assert!(
            out.starts_with("mote: blk0 verify failed: device error: I/O error\n"),
            "{out}"
        );
    }

    #[test]
    fn refused_write_fails_the_run() {
        let mut disks = [FakeDisk::new(64)];
        let (ok, out) = run_on(&mut disks, "mote.blk.write=8+16 mote.blk.seed=7", ghz());
        assert!(ok);
        assert!(
            out.starts_with("mote: blk0 wrote 16 sectors at 8 crc32 "),
            "{out}"
        );
        disks[0].read_only = true;
        let (ok, out) = run_on(&mut disks, "mote.blk.write=8+16", ghz());
        assert!(!ok);
        assert_eq!(out, "mote: blk0 write refused: the device is read-only\n");
    }

    #[test]
    fn bench_lines_and_failures() {
        let mut disks = [FakeDisk::new(2048)];
        let (ok, out) = run_on(&mut disks, "mote.blk=bench", ghz());
        assert!(!ok, "the 256 KiB request failed");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "mote: blk0 bench read 4096 bytes qd 8: 1000.0 MiB/s (1 MiB in 1.0 ms)",
                "mote: blk0 bench read 65536 bytes qd 8: 1000.0 MiB/s (1 MiB in 1.0 ms)",
                "mote: blk0 bench read 262144 bytes failed: device error: queue full",
            ]
        );
        let (ok, out) = run_on(&mut disks, "mote.blk=bench", None);
        assert!(!ok);
        assert!(
            out.ends_with("failed: the TSC frequency is unknown\n"),
            "{out}"
        );
    }

    #[test]
    fn nothing_asked_nothing_printed() {
        let (ok, out) = run_on(&mut [FakeDisk::new(8)], "", ghz());
        assert!(ok);
        assert!(out.is_empty());
    }
}
