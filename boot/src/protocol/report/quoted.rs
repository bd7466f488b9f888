//! The command line inside `start_info … cmdline "<text>"`: any bytes, so a
//! script can recover the exact command line. `"` and `\` are escaped with
//! a backslash, bytes outside printable ASCII as `\xNN`.

use core::fmt;

use crate::protocol::fields::ParseError;

/// A command line, either the kernel's bytes (to print) or the escaped text
/// of a parsed line (checked when parsed). Equal when the bytes are.
#[derive(Clone, Copy, Debug)]
pub enum Cmdline<'a> {
    Bytes(&'a [u8]),
    Escaped(Escaped<'a>),
}

/// Escaped text whose escapes were checked by [`Cmdline::parse_escaped`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(&'a str);

impl<'a> Cmdline<'a> {
    /// Checks the text between the quotes; `at` is its offset in the line,
    /// for the error.
    pub(crate) fn parse_escaped(text: &'a str, at: usize) -> Result<Self, ParseError> {
        let mut bytes = Unescape(text.as_bytes().iter());
        loop {
            let unread = bytes.0.len();
            match bytes.next() {
                None => return Ok(Self::Escaped(Escaped(text))),
                Some(Ok(_)) => {}
                Some(Err(())) => {
                    return Err(ParseError {
                        expected: "a \\\", \\\\ or \\xNN escape and no bare '\"'",
                        at: at + text.len() - unread,
                    });
                }
            }
        }
    }

    /// The command line's bytes.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        let (raw, escaped): (&'a [u8], &'a [u8]) = match *self {
            Self::Bytes(bytes) => (bytes, &[]),
            Self::Escaped(Escaped(text)) => (&[], text.as_bytes()),
        };
        // Escaped text was checked when parsed: no error remains to skip.
        raw.iter()
            .copied()
            .chain(Unescape(escaped.iter()).filter_map(Result::ok))
    }
}

impl PartialEq for Cmdline<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes().eq(other.bytes())
    }
}

impl fmt::Display for Cmdline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        match *self {
            Self::Bytes(bytes) => {
                for &byte in bytes {
                    match byte {
                        b'"' => f.write_str("\\\"")?,
                        b'\\' => f.write_str("\\\\")?,
                        0x20..=0x7e => fmt::Write::write_char(f, char::from(byte))?,
                        other => write!(f, "\\x{other:02x}")?,
                    }
                }
            }
            Self::Escaped(Escaped(text)) => f.write_str(text)?,
        }
        f.write_str("\"")
    }
}

/// Undoes the escaping, one byte at a time; `Err` at a bad escape or a bare quote.
struct Unescape<'a>(core::slice::Iter<'a, u8>);

impl Iterator for Unescape<'_> {
    type Item = Result<u8, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match *self.0.next()? {
            b'\\' => match self.0.next() {
                Some(&escaped @ (b'"' | b'\\')) => Ok(escaped),
                Some(b'x') => {
                    let mut value = 0u8;
                    for _ in 0..2 {
                        let digit = self
                            .0
                            .next()
                            .and_then(|&digit| char::from(digit).to_digit(16));
                        match digit.and_then(|digit| u8::try_from(digit).ok()) {
                            Some(digit) => value = value << 4 | digit,
                            None => return Some(Err(())),
                        }
                    }
                    Ok(value)
                }
                _ => Err(()),
            },
            b'"' => Err(()),
            byte => Ok(byte),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> Result<Cmdline<'_>, ParseError> {
        Cmdline::parse_escaped(text, 0)
    }

    #[test]
    fn quoting_round_trips_any_bytes() {
        let cases: [&[u8]; 5] = [
            b"console=ttyS0 hello",
            b"a=\"b c\"",
            b"back\\slash",
            b"\xff\t\x7f",
            b"",
        ];
        for bytes in cases {
            let quoted = Cmdline::Bytes(bytes).to_string();
            let inner = &quoted[1..quoted.len() - 1];
            let parsed = escaped(inner).unwrap();
            assert_eq!(parsed.bytes().collect::<Vec<u8>>(), bytes, "{quoted}");
            assert_eq!(parsed, Cmdline::Bytes(bytes));
            assert_eq!(parsed.to_string(), quoted);
        }
        assert_eq!(
            Cmdline::Bytes(b"\xff\t\x7f").to_string(),
            r#""\xff\x09\x7f""#
        );
        assert_eq!(Cmdline::Bytes(b"a=\"b c\"").to_string(), r#""a=\"b c\"""#);
    }

    #[test]
    fn bad_escapes_are_refused() {
        for bad in [r"\q", r"\x4", r"\xzz", "\\", "a\"b"] {
            assert!(escaped(bad).is_err(), "{bad}");
        }
        assert_eq!(escaped(r"ab\q").unwrap_err().at, 2);
    }
}
