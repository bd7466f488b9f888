//! Block devices: one trait for virtio-blk disks and `-initrd` ramdisks,
//! request validation shared by both (so no driver ever sees an unaligned or
//! out-of-range request; virtio-drivers asserts on those), and the disk
//! workloads the host can check ([`workloads`]): a CRC-32 of every sector
//! (computed by every CPU, [`crc`]),
//! the seeded write pattern, a read benchmark. Host-tested logic.
#![deny(unsafe_code)]

pub(crate) mod crc;
pub(crate) mod workloads;

use mote_boot::protocol::disk_pattern::{self, SECTOR_SIZE};

use crate::smp::work::Workers;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BlockError {
    /// Zero-length, or not a whole number of sectors.
    #[error("{len} bytes is not a whole, non-zero number of 512-byte sectors")]
    Unaligned { len: usize },
    /// Past the end of the device.
    #[error("sectors {lba}..{} are beyond the device's {capacity} sectors", lba.saturating_add(*sectors))]
    OutOfRange {
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
    /// A write or flush to a read-only device.
    #[error("the device is read-only")]
    ReadOnly,
    /// The device reported an error status, or the transport failed.
    #[error("device error: {0}")]
    Device(&'static str),
}

pub(crate) trait BlockDevice {
    /// Capacity in 512-byte sectors.
    fn sectors(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors from `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / 512` sectors at `lba`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// A device that can keep several reads in flight (`mote.blk=bench`).
pub(crate) trait QueuedRead {
    /// Sequential reads of `request` bytes with `depth` requests in flight,
    /// over `total` bytes from sector 0 (wrapping at the end of the disk).
    /// Returns the TSC cycles taken.
    fn queued_read(&mut self, request: usize, depth: usize, total: u64) -> Result<u64, BlockError>;
}

/// Sectors in `len` bytes (whole sectors).
fn sectors_in(len: usize) -> u64 {
    (len / SECTOR_SIZE) as u64
}

/// Checks a request of `len` bytes at `lba` against a device of `capacity`
/// sectors; returns the number of sectors.
pub(crate) fn check_request(capacity: u64, lba: u64, len: usize) -> Result<u64, BlockError> {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::Unaligned { len });
    }
    let sectors = sectors_in(len);
    match lba.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(sectors),
        _ => Err(BlockError::OutOfRange {
            lba,
            sectors,
            capacity,
        }),
    }
}

/// Checks a write: read-only devices refuse before anything is sent.
pub(crate) fn check_write(
    device: &dyn BlockDevice,
    lba: u64,
    len: usize,
) -> Result<u64, BlockError> {
    if device.read_only() {
        return Err(BlockError::ReadOnly);
    }
    check_request(device.sectors(), lba, len)
}

/// A read-only disk over bytes already in memory (a `start_info` module).
/// A final partial sector reads as zero-padded.
pub(crate) struct Ramdisk {
    data: &'static [u8],
}

impl Ramdisk {
    pub(crate) fn new(data: &'static [u8]) -> Self {
        Self { data }
    }

    pub(crate) fn bytes(&self) -> &'static [u8] {
        self.data
    }
}

impl BlockDevice for Ramdisk {
    fn sectors(&self) -> u64 {
        self.data.len().div_ceil(SECTOR_SIZE) as u64
    }

    fn read_only(&self) -> bool {
        true
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self.sectors(), lba, buf.len())?;
        let start = usize::try_from(lba)
            .ok()
            .and_then(|lba| lba.checked_mul(SECTOR_SIZE))
            .unwrap_or(usize::MAX);
        let available = self.data.len().saturating_sub(start).min(buf.len());
        if available > 0 {
            buf[..available].copy_from_slice(&self.data[start..start + available]);
        }
        buf[available..].fill(0);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_write(self, lba, buf.len()).map(drop)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
}

/// The byte count of `sectors` whole sectors, for a buffer slice.
fn sector_bytes(sectors: u64) -> usize {
    usize::try_from(sectors).map_or(usize::MAX, |sectors| sectors.saturating_mul(SECTOR_SIZE))
}

/// What `mote.blk=verify` found on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceCrc {
    /// CRC-32/IEEE (zlib's `crc32`) of every sector.
    pub(crate) crc: u32,
    /// Of the `now` stamps: the time the CRC computation took, the reads
    /// not counted.
    pub(crate) crc_ticks: u64,
}

/// The CRC of every sector of `device`, read into `buf` in requests of at
/// most `request` bytes (both whole numbers of sectors); each time `buf`
/// is full (or the disk read) its CRC is computed by every CPU of
/// `workers` ([`crc`]). `now` stamps the CRC computations.
pub(crate) fn crc32_of_device(
    device: &mut dyn BlockDevice,
    buf: &mut [u8],
    request: usize,
    workers: &dyn Workers,
    now: fn() -> u64,
) -> Result<DeviceCrc, BlockError> {
    check_request(u64::MAX, 0, buf.len())?;
    let per_request = check_request(u64::MAX, 0, request.min(buf.len()))?;
    let per_buffer = sectors_in(buf.len());
    let mut hasher = crc32fast::Hasher::new();
    let mut crc_ticks = 0u64;
    let mut lba = 0;
    let total = device.sectors();
    while lba < total {
        let in_buffer = per_buffer.min(total - lba);
        let mut done = 0;
        while done < in_buffer {
            let sectors = per_request.min(in_buffer - done);
            let at = sector_bytes(done);
            device.read(lba + done, &mut buf[at..at + sector_bytes(sectors)])?;
            done += sectors;
        }
        let began = now();
        crc::update(&mut hasher, &buf[..sector_bytes(in_buffer)], workers);
        crc_ticks = crc_ticks.saturating_add(now().saturating_sub(began));
        lba += in_buffer;
    }
    Ok(DeviceCrc {
        crc: hasher.finalize(),
        crc_ticks,
    })
}

/// Writes the pattern ([`disk_pattern`]) over `sectors` sectors at `lba`
/// in requests of `buf.len()` bytes, flushes, and returns the CRC-32 of
/// what was written.
pub(crate) fn write_pattern(
    device: &mut dyn BlockDevice,
    seed: u64,
    lba: u64,
    sectors: u64,
    buf: &mut [u8],
) -> Result<u32, BlockError> {
    if sectors == 0 {
        return Err(BlockError::Unaligned { len: 0 });
    }
    if device.read_only() {
        return Err(BlockError::ReadOnly);
    }
    match lba.checked_add(sectors) {
        Some(end) if end <= device.sectors() => {}
        _ => {
            return Err(BlockError::OutOfRange {
                lba,
                sectors,
                capacity: device.sectors(),
            });
        }
    }
    check_request(u64::MAX, 0, buf.len())?;
    let per_request = sectors_in(buf.len());
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0;
    while done < sectors {
        let count = per_request.min(sectors - done);
        let chunk = &mut buf[..sector_bytes(count)];
        disk_pattern::fill(seed, lba + done, chunk);
        device.write(lba + done, chunk)?;
        hasher.update(chunk);
        done += count;
    }
    device.flush()?;
    Ok(hasher.finalize())
}

/// What the first bytes of an image look like, as NetBSD's GENPVH reports
/// its `-initrd`.
pub(crate) fn probe_kind(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "elf",
        [0x1f, 0x8b, ..] => "gzip",
        [b'0', b'7', b'0', b'7', b'0', b'1' | b'2' | b'7', ..] => "cpio",
        [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => "png",
        [0xff, 0xd8, 0xff, ..] => "jpeg",
        _ => "image",
    }
}

/// A disk in memory that can be told to fail, for tests of the callers.
#[cfg(test)]
pub(crate) mod test_disk {
    use super::*;

    pub(crate) struct FakeDisk {
        pub(crate) data: Vec<u8>,
        pub(crate) read_only: bool,
        pub(crate) fail_at: Option<u64>,
        pub(crate) flushed: bool,
    }

    impl FakeDisk {
        pub(crate) fn new(sectors: usize) -> Self {
            let data = (0..sectors * SECTOR_SIZE)
                .map(|i| u8::try_from(i * 7 % 251).unwrap())
                .collect();
            Self {
                data,
                read_only: false,
                fail_at: None,
                flushed: false,
            }
        }

        fn range(lba: u64, len: usize) -> core::ops::Range<usize> {
            let start = usize::try_from(lba).unwrap() * SECTOR_SIZE;
            start..start + len
        }
    }

    impl BlockDevice for FakeDisk {
        fn sectors(&self) -> u64 {
            sectors_in(self.data.len())
        }
        fn read_only(&self) -> bool {
            self.read_only
        }
        fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            let sectors = check_request(self.sectors(), lba, buf.len())?;
            if self
                .fail_at
                .is_some_and(|bad| (lba..lba + sectors).contains(&bad))
            {
                return Err(BlockError::Device("I/O error"));
            }
            buf.copy_from_slice(&self.data[Self::range(lba, buf.len())]);
            Ok(())
        }
        fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            check_write(self, lba, buf.len())?;
            self.data[Self::range(lba, buf.len())].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            self.flushed = true;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_disk::FakeDisk;
    use super::*;
    use crate::smp::work::{ThisCpu, Threads};

    #[test]
    fn request_validation() {
        assert_eq!(check_request(8, 0, 512), Ok(1));
        assert_eq!(check_request(8, 7, 512), Ok(1));
        assert_eq!(check_request(8, 0, 4096), Ok(8));
        assert_eq!(
            check_request(8, 0, 0),
            Err(BlockError::Unaligned { len: 0 })
        );
        assert_eq!(
            check_request(8, 0, 511),
            Err(BlockError::Unaligned { len: 511 })
        );
        assert_eq!(
            check_request(8, 0, 513),
            Err(BlockError::Unaligned { len: 513 })
        );
        assert_eq!(
            check_request(8, 8, 512),
            Err(BlockError::OutOfRange {
                lba: 8,
                sectors: 1,
                capacity: 8
            })
        );
        assert!(check_request(8, u64::MAX, 512).is_err(), "no overflow");
    }

    /// A clock of the calling thread that advances by one tick per read.
    pub(crate) fn ticks() -> u64 {
        std::thread_local!(static NOW: core::cell::Cell<u64> = const { core::cell::Cell::new(0) });
        NOW.with(|now| now.replace(now.get() + 1))
    }

    #[test]
    fn crc_matches_zlib_over_the_whole_disk_for_any_request_and_buffer_size() {
        let mut disk = FakeDisk::new(300);
        let expected = crc32fast::hash(&disk.data);
        for (buffer, request) in [
            (512, 512),
            (4096, 4096),
            (64 * 1024, 4096),
            (64 * 1024, 1 << 20),
            (crc::WINDOW, 64 * 1024),
            (3 * 4096, 4096),
        ] {
            let mut buf = vec![0; buffer];
            for cpus in [1, 4] {
                let found = crc32_of_device(&mut disk, &mut buf, request, &Threads(cpus), ticks)
                    .map(|found| found.crc);
                assert_eq!(found, Ok(expected), "{buffer} {request} {cpus}");
            }
        }
        // zlib.crc32(b"123456789") == 0xcbf43926
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn crc_time_counts_each_buffer_once() {
        // 300 sectors through a 64 KiB buffer: 3 buffers, each CRC one tick.
        let mut disk = FakeDisk::new(300);
        let mut buf = vec![0; 64 * 1024];
        let found = crc32_of_device(&mut disk, &mut buf, 4096, &ThisCpu, ticks).unwrap();
        assert_eq!(found.crc_ticks, 3, "{found:?}");
        let bad = crc32_of_device(&mut disk, &mut buf[..100], 512, &ThisCpu, ticks);
        assert_eq!(bad, Err(BlockError::Unaligned { len: 100 }));
    }

    #[test]
    fn device_error_is_returned_not_panicked() {
        let mut disk = FakeDisk::new(16);
        disk.fail_at = Some(9);
        let mut buf = vec![0; 2048];
        assert_eq!(
            crc32_of_device(&mut disk, &mut buf, 512, &ThisCpu, ticks),
            Err(BlockError::Device("I/O error"))
        );
    }

    #[test]
    fn pattern_write_touches_exactly_the_range_and_flushes() {
        let mut disk = FakeDisk::new(64);
        let before = disk.data.clone();
        let mut buf = vec![0; 3 * SECTOR_SIZE];
        let crc = write_pattern(&mut disk, 42, 10, 7, &mut buf).unwrap();
        assert!(disk.flushed);
        let range = 10 * SECTOR_SIZE..17 * SECTOR_SIZE;
        let mut expected = vec![0; range.len()];
        disk_pattern::fill(42, 10, &mut expected);
        assert_eq!(&disk.data[range.clone()], &expected[..]);
        assert_eq!(crc, crc32fast::hash(&expected));
        assert_eq!(disk.data[..range.start], before[..range.start]);
        assert_eq!(disk.data[range.end..], before[range.end..]);
    }

    #[test]
    fn writes_to_read_only_or_beyond_the_end_are_refused() {
        let mut disk = FakeDisk::new(8);
        let mut buf = vec![0; 512];
        assert_eq!(
            write_pattern(&mut disk, 1, 7, 2, &mut buf),
            Err(BlockError::OutOfRange {
                lba: 7,
                sectors: 2,
                capacity: 8
            })
        );
        disk.read_only = true;
        assert_eq!(
            write_pattern(&mut disk, 1, 0, 1, &mut buf),
            Err(BlockError::ReadOnly)
        );
        assert_eq!(
            write_pattern(&mut FakeDisk::new(8), 1, 0, 0, &mut buf),
            Err(BlockError::Unaligned { len: 0 })
        );
    }

    #[test]
    fn ramdisk_pads_its_last_sector_and_refuses_writes() {
        let data: &'static [u8] = Box::leak(vec![7u8; 1000].into_boxed_slice());
        let mut disk = Ramdisk::new(data);
        assert_eq!(disk.sectors(), 2);
        let mut buf = vec![1u8; 1024];
        disk.read(0, &mut buf).unwrap();
        assert!(buf[..1000].iter().all(|&b| b == 7));
        assert!(buf[1000..].iter().all(|&b| b == 0));
        assert_eq!(disk.write(0, &buf[..512]), Err(BlockError::ReadOnly));
        assert!(disk.read(2, &mut buf[..512]).is_err());
    }

    #[test]
    fn image_kinds() {
        assert_eq!(probe_kind(b"\x7fELF\x02\x01"), "elf");
        assert_eq!(probe_kind(&[0x1f, 0x8b, 8]), "gzip");
        assert_eq!(probe_kind(b"070701000000"), "cpio");
        assert_eq!(probe_kind(b"\x89PNG\r\n\x1a\n...."), "png");
        assert_eq!(probe_kind(&[0xff, 0xd8, 0xff, 0xe0]), "jpeg");
        assert_eq!(probe_kind(b""), "image");
        assert_eq!(probe_kind(b"hello"), "image");
    }
}
