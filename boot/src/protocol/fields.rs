//! A cursor over one line of text, for the protocol's parse functions: each
//! line shape is read left to right with literals, numbers and words, and
//! anything else is a [`ParseError`] that says what was expected and where.

use core::str::FromStr;

/// A line that does not have the shape its keyword promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} at byte {at}")]
pub struct ParseError {
    /// What the grammar wanted at that point (`"decimal number"`, `"' us after entry'"`).
    pub expected: &'static str,
    /// Byte offset into the text given to the parse function.
    pub at: usize,
}

/// The unread rest of a line, and how much was read before it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(line: &'a str) -> Self {
        Self { line, at: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    fn rest(&self) -> &'a str {
        &self.line[self.at..]
    }

    pub(crate) fn error(&self, expected: &'static str) -> ParseError {
        ParseError {
            expected,
            at: self.at,
        }
    }

    /// Whether the rest starts with `literal` (nothing is consumed).
    pub(crate) fn peek(&self, literal: &str) -> bool {
        self.rest().starts_with(literal)
    }

    /// Consumes `literal`, which must come next; `expected` names it.
    pub(crate) fn literal(
        &mut self,
        literal: &str,
        expected: &'static str,
    ) -> Result<(), ParseError> {
        if self.peek(literal) {
            self.at += literal.len();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// Consumes `literal` if it comes next.
    pub(crate) fn optional(&mut self, literal: &str) -> bool {
        self.literal(literal, "").is_ok()
    }

    /// Consumes the longest run of bytes that satisfy `accept` (at least one).
    fn run(
        &mut self,
        accept: impl Fn(u8) -> bool,
        expected: &'static str,
    ) -> Result<&'a str, ParseError> {
        let length = self
            .rest()
            .bytes()
            .position(|byte| !accept(byte))
            .unwrap_or(self.rest().len());
        if length == 0 {
            return Err(self.error(expected));
        }
        let run = &self.rest()[..length];
        self.at += length;
        Ok(run)
    }

    /// An unsigned decimal number (no sign, no leading `+`).
    pub(crate) fn decimal<T: FromStr>(&mut self) -> Result<T, ParseError> {
        let start = *self;
        let digits = self.run(|byte| byte.is_ascii_digit(), "decimal number")?;
        digits
            .parse()
            .map_err(|_| start.error("decimal number in range"))
    }

    /// A `0x`-prefixed lowercase hexadecimal number, as `{:#x}` prints it.
    pub(crate) fn hex(&mut self) -> Result<u64, ParseError> {
        self.literal("0x", "'0x'")?;
        let start = *self;
        let digits = self.run(
            |byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'),
            "hex digits",
        )?;
        u64::from_str_radix(digits, 16).map_err(|_| start.error("hex number in range"))
    }

    /// Exactly `count` lowercase hexadecimal digits without a prefix (`{:08x}`).
    pub(crate) fn fixed_hex(&mut self, count: usize) -> Result<u64, ParseError> {
        let start = *self;
        let digits = self.run(
            |byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'),
            "hex digits",
        )?;
        if digits.len() != count {
            return Err(start.error("a fixed number of hex digits"));
        }
        u64::from_str_radix(digits, 16).map_err(|_| start.error("hex number in range"))
    }

    /// A decimal number with one or more fraction digits, as `{:.N}` prints it.
    pub(crate) fn fraction(&mut self) -> Result<f64, ParseError> {
        let start = *self;
        let text = self.run(
            |byte| byte.is_ascii_digit() || byte == b'.',
            "decimal fraction",
        )?;
        text.parse().map_err(|_| start.error("decimal fraction"))
    }

    /// A non-empty word: everything up to the next space or the end.
    pub(crate) fn word(&mut self) -> Result<&'a str, ParseError> {
        self.run(|byte| byte != b' ', "a word")
    }

    /// Everything up to (not including) the first `delimiter`, which must follow.
    pub(crate) fn until(
        &mut self,
        delimiter: &str,
        expected: &'static str,
    ) -> Result<&'a str, ParseError> {
        let length = self
            .rest()
            .find(delimiter)
            .ok_or_else(|| self.error(expected))?;
        let text = &self.rest()[..length];
        self.at += length;
        Ok(text)
    }

    /// Everything up to the earliest of `delimiters`, one of which must follow.
    pub(crate) fn until_any(
        &mut self,
        delimiters: &[&str],
        expected: &'static str,
    ) -> Result<&'a str, ParseError> {
        let length = delimiters
            .iter()
            .filter_map(|delimiter| self.rest().find(delimiter))
            .min()
            .ok_or_else(|| self.error(expected))?;
        let text = &self.rest()[..length];
        self.at += length;
        Ok(text)
    }

    /// Everything that is left (possibly empty); the cursor ends.
    pub(crate) fn remainder(mut self) -> &'a str {
        let rest = self.rest();
        self.at = self.line.len();
        rest
    }

    /// Everything that is left, which must not be empty.
    pub(crate) fn text(self) -> Result<&'a str, ParseError> {
        if self.rest().is_empty() {
            return Err(self.error("text"));
        }
        Ok(self.remainder())
    }

    /// The line must end here.
    pub(crate) fn end(self) -> Result<(), ParseError> {
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(self.error("end of line"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_left_to_right_and_says_where_it_stopped() {
        let mut fields = Fields::new("blk0 crc32 00c0ffee at 0x1f rest");
        fields.literal("blk", "'blk'").unwrap();
        assert_eq!(fields.decimal::<u32>(), Ok(0));
        fields.literal(" crc32 ", "' crc32 '").unwrap();
        assert_eq!(fields.fixed_hex(8), Ok(0xc0_ffee));
        fields.literal(" at ", "' at '").unwrap();
        assert_eq!(fields.hex(), Ok(0x1f));
        assert!(fields.optional(" "));
        assert_eq!(
            fields.end(),
            Err(ParseError {
                expected: "end of line",
                at: 28
            })
        );
        assert_eq!(fields.remainder(), "rest");
    }

    #[test]
    fn numbers_are_strict() {
        assert!(Fields::new("+1").decimal::<u64>().is_err());
        assert!(Fields::new("256").decimal::<u8>().is_err());
        assert!(
            Fields::new("0xFF").hex().is_err(),
            "uppercase is not what {{:#x}} prints"
        );
        assert!(Fields::new("0x").hex().is_err());
        assert!(Fields::new("abc").fixed_hex(8).is_err());
        assert_eq!(Fields::new("12.5 MiB").fraction(), Ok(12.5));
        assert!(Fields::new("").word().is_err());
        assert!(Fields::new("").text().is_err());
    }
}
