//! Block devices: one trait for virtio-blk disks and `-initrd` ramdisks,
//! request validation shared by both (so no driver ever sees an unaligned or
//! out-of-range request; virtio-drivers asserts on those), and the disk
//! workloads the host can check: a CRC-32 of every sector, a seeded write
//! pattern, and image-kind probing.

use core::fmt;

/// Bytes per sector (virtio-blk counts capacity in 512-byte sectors).
pub const SECTOR_SIZE: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Zero-length, or not a whole number of sectors.
    Unaligned { len: usize },
    /// Past the end of the device.
    OutOfRange {
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
    /// A write or flush to a read-only device.
    ReadOnly,
    /// The device reported an error status, or the transport failed.
    Device(&'static str),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unaligned { len } => write!(
                f,
                "{len} bytes is not a whole, non-zero number of 512-byte sectors"
            ),
            Self::OutOfRange {
                lba,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {lba}..{} are beyond the device's {capacity} sectors",
                lba.saturating_add(sectors)
            ),
            Self::ReadOnly => f.write_str("the device is read-only"),
            Self::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

pub trait BlockDevice {
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

/// Checks a request of `len` bytes at `lba` against a device of `capacity`
/// sectors; returns the number of sectors.
pub fn check_request(capacity: u64, lba: u64, len: usize) -> Result<u64, BlockError> {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::Unaligned { len });
    }
    let sectors = (len / SECTOR_SIZE) as u64;
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
pub fn check_write(device: &dyn BlockDevice, lba: u64, len: usize) -> Result<u64, BlockError> {
    if device.read_only() {
        return Err(BlockError::ReadOnly);
    }
    check_request(device.sectors(), lba, len)
}

/// A read-only disk over bytes already in memory (a `start_info` module).
/// A final partial sector reads as zero-padded.
pub struct Ramdisk {
    data: &'static [u8],
}

impl Ramdisk {
    pub fn new(data: &'static [u8]) -> Self {
        Self { data }
    }

    pub fn bytes(&self) -> &'static [u8] {
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
        let start = (lba as usize) * SECTOR_SIZE;
        let available = self.data.len().saturating_sub(start).min(buf.len());
        buf[..available].copy_from_slice(&self.data[start..start + available]);
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

/// CRC-32/IEEE (zlib's `crc32`) of every sector of `device`, read in
/// requests of `buf.len()` bytes (a whole number of sectors).
pub fn crc32_of_device(device: &mut dyn BlockDevice, buf: &mut [u8]) -> Result<u32, BlockError> {
    check_request(u64::MAX, 0, buf.len())?;
    let per_request = (buf.len() / SECTOR_SIZE) as u64;
    let mut hasher = crc32fast::Hasher::new();
    let mut lba = 0;
    let total = device.sectors();
    while lba < total {
        let sectors = per_request.min(total - lba);
        let chunk = &mut buf[..sectors as usize * SECTOR_SIZE];
        device.read(lba, chunk)?;
        hasher.update(chunk);
        lba += sectors;
    }
    Ok(hasher.finalize())
}

/// The default seed of `mote.blk.write=`.
pub const DEFAULT_PATTERN_SEED: u64 = 0x6d6f_7465_626c_6b00;

/// Fills `buf` with the pattern for the bytes at `lba`: each 8-byte word is
/// splitmix64(seed ^ its absolute byte offset), little-endian, so any range
/// can be checked on its own. The host checker uses this same function.
pub fn fill_pattern(seed: u64, lba: u64, buf: &mut [u8]) {
    let base = lba * SECTOR_SIZE as u64;
    for (index, word) in buf.chunks_mut(8).enumerate() {
        let value = splitmix64(seed ^ (base + 8 * index as u64));
        word.copy_from_slice(&value.to_le_bytes()[..word.len()]);
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes the pattern over `sectors` sectors at `lba` in requests of
/// `buf.len()` bytes, flushes, and returns the CRC-32 of what was written.
pub fn write_pattern(
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
    let per_request = (buf.len() / SECTOR_SIZE) as u64;
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0;
    while done < sectors {
        let count = per_request.min(sectors - done);
        let chunk = &mut buf[..count as usize * SECTOR_SIZE];
        fill_pattern(seed, lba + done, chunk);
        device.write(lba + done, chunk)?;
        hasher.update(chunk);
        done += count;
    }
    device.flush()?;
    Ok(hasher.finalize())
}

/// `<lba>+<sectors>` (auto-radix numbers), as `mote.blk.write=` takes it.
pub fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (lba, rest) = crate::virtio::cmdline::auto_radix(text)?;
    let (sectors, rest) = crate::virtio::cmdline::auto_radix(rest.strip_prefix('+')?)?;
    (rest.is_empty() && sectors > 0).then_some((lba, sectors))
}

/// What the first bytes of an image look like, as NetBSD's GENPVH reports
/// its `-initrd`.
pub fn probe_kind(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "elf",
        [0x1f, 0x8b, ..] => "gzip",
        [b'0', b'7', b'0', b'7', b'0', b'1' | b'2' | b'7', ..] => "cpio",
        [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => "png",
        [0xff, 0xd8, 0xff, ..] => "jpeg",
        _ => "image",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk in memory that can be told to fail, to test callers.
    struct FakeDisk {
        data: Vec<u8>,
        read_only: bool,
        fail_at: Option<u64>,
        flushed: bool,
    }

    impl FakeDisk {
        fn new(sectors: usize) -> Self {
            let data = (0..sectors * SECTOR_SIZE)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            Self {
                data,
                read_only: false,
                fail_at: None,
                flushed: false,
            }
        }
    }

    impl BlockDevice for FakeDisk {
        fn sectors(&self) -> u64 {
            (self.data.len() / SECTOR_SIZE) as u64
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
            let start = lba as usize * SECTOR_SIZE;
            buf.copy_from_slice(&self.data[start..start + buf.len()]);
            Ok(())
        }
        fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            check_write(self, lba, buf.len())?;
            let start = lba as usize * SECTOR_SIZE;
            self.data[start..start + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            self.flushed = true;
            Ok(())
        }
    }

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

    #[test]
    fn crc_matches_zlib_over_the_whole_disk_for_any_request_size() {
        let mut disk = FakeDisk::new(37);
        let expected = crc32fast::hash(&disk.data);
        for request in [512, 4096, 64 * 1024] {
            let mut buf = vec![0; request];
            assert_eq!(
                crc32_of_device(&mut disk, &mut buf),
                Ok(expected),
                "{request}"
            );
        }
        // zlib.crc32(b"123456789") == 0xcbf43926
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn device_error_is_returned_not_panicked() {
        let mut disk = FakeDisk::new(16);
        disk.fail_at = Some(9);
        let mut buf = vec![0; 2048];
        assert_eq!(
            crc32_of_device(&mut disk, &mut buf),
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
        fill_pattern(42, 10, &mut expected);
        assert_eq!(&disk.data[range.clone()], &expected[..]);
        assert_eq!(crc, crc32fast::hash(&expected));
        assert_eq!(disk.data[..range.start], before[..range.start]);
        assert_eq!(disk.data[range.end..], before[range.end..]);
    }

    #[test]
    fn pattern_is_position_dependent_and_seeded() {
        let mut a = [0u8; 512];
        let mut b = [0u8; 512];
        fill_pattern(1, 0, &mut a);
        fill_pattern(1, 1, &mut b);
        assert_ne!(a, b);
        let mut whole = [0u8; 1024];
        fill_pattern(1, 0, &mut whole);
        assert_eq!(&whole[512..], &b[..], "a range checks on its own");
        fill_pattern(2, 0, &mut b);
        assert_ne!(a, b);
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
    fn ranges_and_kinds() {
        assert_eq!(parse_range("2048+16"), Some((2048, 16)));
        assert_eq!(parse_range("0x800+0x10"), Some((2048, 16)));
        assert_eq!(parse_range("1+0"), None);
        assert_eq!(parse_range("1-2"), None);
        assert_eq!(parse_range("1+2x"), None);
        assert_eq!(probe_kind(b"\x7fELF\x02\x01"), "elf");
        assert_eq!(probe_kind(&[0x1f, 0x8b, 8]), "gzip");
        assert_eq!(probe_kind(b"070701000000"), "cpio");
        assert_eq!(probe_kind(b"\x89PNG\r\n\x1a\n...."), "png");
        assert_eq!(probe_kind(&[0xff, 0xd8, 0xff, 0xe0]), "jpeg");
        assert_eq!(probe_kind(b""), "image");
        assert_eq!(probe_kind(b"hello"), "image");
    }
}
