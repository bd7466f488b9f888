//! Formatting helpers for the boot report: one fact per line, each starting
//! `mote: `, documented in the README under "Boot report".

use core::fmt;

/// Writes `bytes` inside double quotes, escaping `"` and `\` with a
/// backslash and any byte outside printable ASCII as `\xNN`, so a script can
/// always recover the exact command line.
pub struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0 {
            match byte {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => fmt::Write::write_char(f, char::from(byte))?,
                other => write!(f, "\\x{other:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Microseconds between two TSC readings at `tsc_hz`, without overflow.
pub fn tsc_delta_micros(from: u64, to: u64, tsc_hz: u64) -> u64 {
    if tsc_hz == 0 {
        return 0;
    }
    let cycles = u128::from(to.saturating_sub(from));
    u64::try_from(cycles * 1_000_000 / u128::from(tsc_hz)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_anything() {
        assert_eq!(
            Quoted(b"console=ttyS0 hello").to_string(),
            "\"console=ttyS0 hello\""
        );
        assert_eq!(Quoted(b"a=\"b c\"").to_string(), r#""a=\"b c\"""#);
        assert_eq!(Quoted(b"back\\slash").to_string(), r#""back\\slash""#);
        assert_eq!(Quoted(b"\xff\t\x7f").to_string(), r#""\xff\x09\x7f""#);
        assert_eq!(Quoted(b"").to_string(), "\"\"");
    }

    #[test]
    fn micros_from_tsc() {
        assert_eq!(tsc_delta_micros(1000, 2_301_000, 2_300_000_000), 1000);
        assert_eq!(
            tsc_delta_micros(5, 1, 1_000_000),
            0,
            "a backwards TSC is 0, not a wrap"
        );
        assert_eq!(tsc_delta_micros(0, u64::MAX, 1), u64::MAX);
        assert_eq!(tsc_delta_micros(0, 100, 0), 0);
    }
}
