//! The disk workloads the command line asks for, run after the ready mark,
//! each ending in report lines the host checks: `mote.blk=verify` (CRC-32 of
//! every disk and ramdisk), `mote.blk.write=` (the seeded pattern, flushed)
//! and `mote.blk=bench` (read throughput at a fixed queue depth).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use core::fmt::{self, Write};

use mote_boot::protocol::disk_pattern::SECTOR_SIZE;
use mote_boot::protocol::report::{
    BenchFailed, BenchRead, Crc32, DiskName, Line, VerifyFailed, WriteRefused, Wrote,
};

use super::{BlockDevice, QueuedRead, Ramdisk, crc32_of_device, write_pattern};
use crate::clock::TscFrequency;
use crate::cmdline::Options;

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
/// write included), for the power-off status.
pub(crate) fn run<D: BlockDevice + QueuedRead>(
    disks: &mut [D],
    ramdisks: &[Ramdisk],
    options: &Options<'_>,
    tsc: Option<TscFrequency>,
    out: &mut dyn Write,
) -> Result<bool, fmt::Error> {
    let mut ok = true;
    let mut buffer = vec![0u8; IO_CHUNK];
    if options.blk_verify {
        for (index, disk) in disks.iter_mut().enumerate() {
            match crc32_of_device(disk, &mut buffer) {
                Ok(crc) => writeln!(
                    out,
                    "{}",
                    Line(Crc32 {
                        disk: DiskName::Blk(index),
                        crc
                    })
                )?,
                Err(error) => {
                    writeln!(out, "{}", Line(VerifyFailed { index, error }))?;
                    ok = false;
                }
            }
        }
        for (index, ramdisk) in ramdisks.iter().enumerate() {
            let crc = crc32fast::hash(ramdisk.bytes());
            writeln!(
                out,
                "{}",
                Line(Crc32 {
                    disk: DiskName::Ramdisk(index),
                    crc
                })
            )?;
        }
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

    fn run_on(disks: &mut [FakeDisk], cmdline: &str, tsc: Option<TscFrequency>) -> (bool, String) {
        let options = Options::parse(cmdline);
        let ramdisk = Ramdisk::new(b"ramdisk bytes");
        let mut out = String::new();
        let ok = run(disks, &[ramdisk], &options, tsc, &mut out).unwrap();
        (ok, out)
    }

    fn ghz() -> Option<TscFrequency> {
        TscFrequency::new(1_000_000_000, TscSource::Calibrated)
    }

    #[test]
    fn verify_prints_every_disk_and_ramdisk() {
        let mut disks = [FakeDisk::new(8), FakeDisk::new(4)];
        let expected = crc32fast::hash(&disks[1].data);
        let (ok, out) = run_on(&mut disks, "mote.blk=verify", ghz());
        assert!(ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], format!("mote: blk1 crc32 {expected:08x}"));
        assert_eq!(
            lines[2],
            format!(
                "mote: ramdisk0 crc32 {:08x}",
                crc32fast::hash(b"ramdisk bytes")
            )
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
