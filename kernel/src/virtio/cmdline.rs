//! `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, as Linux parses it
//! (`drivers/virtio/virtio_mmio.c` `vm_cmdline_set`: size through
//! `memparse`, base auto-radix, trailing characters rejected) with
//! FreeBSD's harmless leniency (`virtio_mmio_cmdline.c`: every field
//! auto-radix, so a hex IRQ is fine; `virtio_mmio.device_N=` keys).
//!
//! QEMU appends `virtio_mmio.device=512@0xfeb00e00:12`; Firecracker
//! `virtio_mmio.device=4K@0xc0001000:5`.

use core::fmt;

use super::{Discovery, MmioDevice};
use crate::options::words;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A field is not a number (or overflows).
    BadNumber(&'static str),
    /// Something other than the expected separator or the end follows.
    Trailing,
    /// Size, base or IRQ is 0 (Linux and FreeBSD both refuse these).
    Zero(&'static str),
    /// `base + size` does not fit in 64 bits.
    Wraps,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadNumber(field) => write!(f, "{field} is not a number"),
            Self::Trailing => {
                f.write_str("unexpected characters (expected <size>@<base>:<irq>[:<id>])")
            }
            Self::Zero(field) => write!(f, "{field} must not be 0"),
            Self::Wraps => f.write_str("base + size overflows"),
        }
    }
}

/// One `virtio_mmio.device=` value that could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadEntry<'a> {
    pub value: &'a str,
    pub error: ParseError,
}

/// Every `virtio_mmio.device[_N]=` entry on the command line, in order:
/// the good ones, and the bad ones with why (reported, then skipped).
pub fn virtio_mmio_devices_from_cmdline<'a>(
    cmdline: &'a str,
    mut good: impl FnMut(MmioDevice),
    mut bad: impl FnMut(BadEntry<'a>),
) {
    for word in words(cmdline) {
        let Some((key, value)) = word.split_once('=') else {
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

/// `virtio_mmio.device`, or FreeBSD's early-kenv `virtio_mmio.device_<N>`.
fn is_device_key(key: &str) -> bool {
    match key.strip_prefix("virtio_mmio.device") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('_')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Parses `<size>@<base>:<irq>[:<id>]`.
pub fn parse_device(value: &str) -> Result<MmioDevice, ParseError> {
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

/// Linux `memparse`: an auto-radix number and an optional K/M/G/T/P/E
/// suffix (either case). Returns the value and the rest of the text.
pub fn memparse(text: &str) -> Option<(u64, &str)> {
    let (value, rest) = auto_radix(text)?;
    let shift = match rest.as_bytes().first().map(u8::to_ascii_uppercase) {
        Some(b'K') => 10,
        Some(b'M') => 20,
        Some(b'G') => 30,
        Some(b'T') => 40,
        Some(b'P') => 50,
        Some(b'E') => 60,
        _ => return Some((value, rest)),
    };
    let scaled = value.checked_mul(1u64 << shift)?;
    Some((scaled, &rest[1..]))
}

/// `strtoull(text, &end, 0)`: `0x` hex, leading `0` octal, else decimal.
/// At least one digit is required; returns the value and the rest.
pub fn auto_radix(text: &str) -> Option<(u64, &str)> {
    let (radix, digits) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (16, hex)
        } else if text.len() > 1 && text.starts_with('0') && text.as_bytes()[1].is_ascii_digit() {
            (8, &text[1..])
        } else {
            (10, text)
        };
    let end = digits
        .char_indices()
        .find(|&(_, c)| !c.is_digit(radix))
        .map_or(digits.len(), |(index, _)| index);
    if end == 0 {
        return None;
    }
    let value = u64::from_str_radix(&digits[..end], radix).ok()?;
    Some((value, &digits[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn memparse_suffixes() {
        assert_eq!(memparse("4K"), Some((4096, "")));
        assert_eq!(memparse("2m@"), Some((2 << 20, "@")));
        assert_eq!(memparse("1E"), Some((1 << 60, "")));
        assert_eq!(memparse("0x10g"), Some((16 << 30, "")));
        assert_eq!(memparse("7"), Some((7, "")));
        assert_eq!(memparse("x"), None);
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
