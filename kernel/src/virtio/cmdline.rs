//! `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, as Linux parses it
//! (`drivers/virtio/virtio_mmio.c` `vm_cmdline_set`: size through
//! `memparse`, base auto-radix, trailing characters rejected) with
//! FreeBSD's harmless leniency (`virtio_mmio_cmdline.c`: every field
//! auto-radix, so a hex IRQ is fine; `virtio_mmio.device_N=` keys).
//!
//! QEMU appends `virtio_mmio.device=512@0xfeb00e00:12`; Firecracker
//! `virtio_mmio.device=4K@0xc0001000:5` (docs/virtio-mmio.md).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use super::{Discovery, MmioDevice};
use crate::cmdline::lex::{auto_radix, memparse, split_key, words};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// A field is not a number (or overflows).
    #[error("{0} is not a number")]
    BadNumber(&'static str),
    /// Something other than the expected separator or the end follows.
    #[error("unexpected characters (expected <size>@<base>:<irq>[:<id>])")]
    Trailing,
    /// Size, base or IRQ is 0 (Linux and FreeBSD both refuse these).
    #[error("{0} must not be 0")]
    Zero(&'static str),
    /// `base + size` does not fit in 64 bits.
    #[error("base + size overflows")]
    Wraps,
}

/// One `virtio_mmio.device=` value that could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadEntry<'a> {
    pub(crate) value: &'a str,
    pub(crate) error: ParseError,
}

/// Every `virtio_mmio.device[_N]=` entry on the command line, in order:
/// the good ones, and the bad ones with why (reported, then skipped).
pub(crate) fn virtio_mmio_devices_from_cmdline<'a>(
    cmdline: &'a str,
    mut good: impl FnMut(MmioDevice),
    mut bad: impl FnMut(BadEntry<'a>),
) {
    for word in words(cmdline) {
        let Some((key, value)) = split_key(word) else {
            continue;
        };
        if !is_device_key(key) {
            continue;
        }
        match parse_device(value) {
            Ok(device) => good(device),
            Err(error) => bad(BadEntry { value, error }),
        }
    }
}

/// Keeps the first of command-line entries whose windows overlap: two
/// drivers on one transport would corrupt each other's queues. QEMU
/// microvm with `acpi=off` appends its own entries after the user's
/// `-append`, so a user who lists the transports too names each twice.
/// Returns what was dropped, with the entry it collided with.
pub(crate) fn drop_overlapping(devices: &mut Vec<MmioDevice>) -> Vec<(MmioDevice, MmioDevice)> {
    let mut kept: Vec<MmioDevice> = Vec::with_capacity(devices.len());
    let mut dropped = Vec::new();
    for device in devices.drain(..) {
        let end = device.base.saturating_add(device.size);
        match kept
            .iter()
            .find(|other| other.base < end && device.base < other.base.saturating_add(other.size))
        {
            Some(&other) => dropped.push((device, other)),
            None => kept.push(device),
        }
    }
    *devices = kept;
    dropped
}

/// `virtio_mmio.device`, or FreeBSD's early-kenv `virtio_mmio.device_<N>`.
pub(crate) fn is_device_key(key: &str) -> bool {
    match key.strip_prefix("virtio_mmio.device") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('_')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Parses `<size>@<base>:<irq>[:<id>]`.
fn parse_device(value: &str) -> Result<MmioDevice, ParseError> {
    let (size, rest) = memparse(value).ok_or(ParseError::BadNumber("size"))?;
    let rest = rest.strip_prefix('@').ok_or(ParseError::Trailing)?;
    let (base, rest) = auto_radix(rest).ok_or(ParseError::BadNumber("base"))?;
    let rest = rest.strip_prefix(':').ok_or(ParseError::Trailing)?;
    let (irq, rest) = auto_radix(rest).ok_or(ParseError::BadNumber("irq"))?;
    let irq = u32::try_from(irq).map_err(|_| ParseError::BadNumber("irq"))?;
    let (id, rest) = match rest.strip_prefix(':') {
        Some(id_text) => {
            let (negative, digits) = match id_text.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, id_text),
            };
            let (magnitude, rest) = auto_radix(digits).ok_or(ParseError::BadNumber("id"))?;
            let magnitude = i64::try_from(magnitude).map_err(|_| ParseError::BadNumber("id"))?;
            (Some(if negative { -magnitude } else { magnitude }), rest)
        }
        None => (None, rest),
    };
    if !rest.is_empty() {
        return Err(ParseError::Trailing);
    }
    if size == 0 {
        return Err(ParseError::Zero("size"));
    }
    if base == 0 {
        return Err(ParseError::Zero("base"));
    }
    if irq == 0 {
        return Err(ParseError::Zero("irq"));
    }
    base.checked_add(size).ok_or(ParseError::Wraps)?;
    Ok(MmioDevice {
        base,
        size,
        irq,
        id,
        found_by: Discovery::Cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_named_twice_is_driven_once() {
        let mut found = Vec::new();
        virtio_mmio_devices_from_cmdline(
            "virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 \
             virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=256@0xfeb00d00:10",
            |device| found.push(device),
            |bad| panic!("{bad:?}"),
        );
        let dropped = drop_overlapping(&mut found);
        assert_eq!(
            found.iter().map(|device| device.base).collect::<Vec<_>>(),
            [0xfeb0_0e00, 0xfeb0_0c00]
        );
        // The exact repeat, and a window inside the second one.
        assert_eq!(dropped.len(), 2);
        assert_eq!(dropped[0].1.base, 0xfeb0_0e00);
        assert_eq!(dropped[1].1.base, 0xfeb0_0c00);
    }

    fn device(size: u64, base: u64, irq: u32, id: Option<i64>) -> MmioDevice {
        MmioDevice {
            base,
            size,
            irq,
            id,
            found_by: Discovery::Cmdline,
        }
    }

    #[test]
    fn valid_entries() {
        let table: &[(&str, MmioDevice)] = &[
            ("512@0xfeb00e00:12", device(512, 0xfeb0_0e00, 12, None)),
            ("4K@0xc0001000:5", device(4096, 0xc000_1000, 5, None)),
            ("4k@0xd0000000:5:3", device(4096, 0xd000_0000, 5, Some(3))),
            (
                "1M@0x10000000:48:-1",
                device(1 << 20, 0x1000_0000, 48, Some(-1)),
            ),
            (
                "0x200@4273999360:0x2f",
                device(0x200, 4_273_999_360, 0x2f, None),
            ),
            ("01000@0xfeb00000:010", device(0o1000, 0xfeb0_0000, 8, None)),
            ("1G@0X100000000:7", device(1 << 30, 0x1_0000_0000, 7, None)),
        ];
        for (text, expected) in table {
            assert_eq!(parse_device(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn invalid_entries() {
        let table: &[(&str, ParseError)] = &[
            ("", ParseError::BadNumber("size")),
            ("K@0x1000:5", ParseError::BadNumber("size")),
            ("512", ParseError::Trailing),
            ("512@", ParseError::BadNumber("base")),
            ("512@0xfeb00e00", ParseError::Trailing),
            ("512@0xfeb00e00:", ParseError::BadNumber("irq")),
            ("512@0xfeb00e00:12x", ParseError::Trailing),
            ("512@0xfeb00e00:12:", ParseError::BadNumber("id")),
            ("512@0xfeb00e00:12:3:4", ParseError::Trailing),
            ("512@0xfeb00e00 :12", ParseError::Trailing),
            ("512@0xzz:12", ParseError::BadNumber("base")),
            ("0@0xfeb00e00:12", ParseError::Zero("size")),
            ("512@0:12", ParseError::Zero("base")),
            ("512@0xfeb00e00:0", ParseError::Zero("irq")),
            ("512@0xfeb00e00:99999999999", ParseError::BadNumber("irq")),
            ("99999999999999999999@1:1", ParseError::BadNumber("size")),
            ("16E@1:1", ParseError::BadNumber("size")),
            ("4K@0xfffffffffffff800:5", ParseError::Wraps),
            ("08@0x1000:5", ParseError::BadNumber("size")),
        ];
        for (text, expected) in table {
            assert_eq!(parse_device(text), Err(*expected), "{text}");
        }
    }

    #[test]
    fn scans_the_command_line_and_keeps_going_after_a_bad_entry() {
        let cmdline = "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 \
                       virtio_mmio.device=junk virtio_mmio.device_1=4K@0xc0001000:0x5 \
                       virtio_mmio.devicex=1@1:1 virtio_mmio.device_=1@1:1 device=1@1:1 \
                       virtio_mmio.device=512@0xfeb00c00:11";
        let mut good = Vec::new();
        let mut bad = Vec::new();
        virtio_mmio_devices_from_cmdline(cmdline, |d| good.push(d), |b| bad.push(b));
        let bases: Vec<u64> = good.iter().map(|d| d.base).collect();
        assert_eq!(bases, [0xfeb0_0e00, 0xc000_1000, 0xfeb0_0c00]);
        assert_eq!(good[1].irq, 5);
        assert_eq!(
            bad,
            [BadEntry {
                value: "junk",
                error: ParseError::BadNumber("size")
            }]
        );
    }
}
