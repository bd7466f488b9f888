//! Splitting a command line into words and reading numbers from them, as
//! Linux does (`lib/cmdline.c`: `next_arg`, `memparse`; `simple_strtoull`
//! with base 0).
#![deny(unsafe_code)]

/// Splits a command line into words the way Linux's `next_arg` does:
/// whitespace separates, double quotes group (`a="b c"` is one word).
///
/// It scans bytes, not chars: the separators and the quote are ASCII, and
/// an ASCII byte never occurs inside a UTF-8 sequence, so every split falls
/// on a char boundary. Decoding chars cost three times the instructions,
/// and the command line is read twice before the ready mark.
pub(crate) fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    let mut rest = cmdline;
    core::iter::from_fn(move || {
        let bytes = rest.as_bytes();
        let start = bytes.iter().position(|byte| !byte.is_ascii_whitespace())?;
        let end = word_end(bytes, start);
        let word = &rest[start..end];
        rest = &rest[end..];
        Some(word)
    })
}

/// Where the word starting at `start` ends: the first whitespace byte
/// outside double quotes, or the end. Every byte that can end a word or
/// toggle the quotes is at most `"` (0x22), so one comparison passes the
/// rest: the test per byte was most of the 4 000 instructions the boot's
/// two readings of its command line cost.
fn word_end(bytes: &[u8], start: usize) -> usize {
    let mut in_quotes = false;
    let mut at = start;
    while let Some(&byte) = bytes.get(at) {
        if byte <= b'"' {
            if byte == b'"' {
                in_quotes = !in_quotes;
            } else if !in_quotes && byte.is_ascii_whitespace() {
                return at;
            }
        }
        at += 1;
    }
    bytes.len()
}

/// A word as key and value: `key=value` (value unquoted) or a bare `key`.
pub(crate) fn key_value(word: &str) -> (&str, Option<&str>) {
    match split_key(word) {
        Some((key, value)) => (key, Some(unquote(value))),
        None => (word, None),
    }
}

/// `word` split at its first `=`, as `str::split_once('=')` does. A byte
/// loop: keys are short, and `split_once`'s word-at-a-time `memchr` cost
/// about 90 instructions a word before the first byte was compared.
pub(crate) fn split_key(word: &str) -> Option<(&str, &str)> {
    let at = word.bytes().position(|byte| byte == b'=')?;
    // `=` is ASCII: both sides of it are char boundaries.
    Some((word.get(..at)?, word.get(at + 1..)?))
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// `strtoull(text, &end, 0)`: `0x` hex, leading `0` octal, else decimal.
/// At least one digit is required, and a value that does not fit 64 bits
/// is refused; returns the value and the rest. One pass that finds the
/// digits and sums them (a scan, then `from_str_radix` over the same
/// digits, cost twice the instructions: 1 650 of a served boot's).
pub(crate) fn auto_radix(text: &str) -> Option<(u64, &str)> {
    let bytes = text.as_bytes();
    let (radix, start) = match bytes {
        [b'0', b'x' | b'X', ..] => (16, 2),
        [b'0', second, ..] if second.is_ascii_digit() => (8, 1),
        _ => (10, 0),
    };
    let mut value: u64 = 0;
    let mut fits = true;
    let mut end = start;
    while let Some(&byte) = bytes.get(end) {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => break,
        };
        if u64::from(digit) >= radix {
            break;
        }
        match value
            .checked_mul(radix)
            .and_then(|value| value.checked_add(u64::from(digit)))
        {
            Some(next) => value = next,
            None => fits = false,
        }
        end += 1;
    }
    // Digits are ASCII: the first byte that is not one ends the number
    // on a char boundary.
    (end > start && fits).then(|| (value, &text[end..]))
}

/// A whole word that is one auto-radix number.
pub(crate) fn number(text: &str) -> Option<u64> {
    match auto_radix(text)? {
        (value, "") => Some(value),
        _ => None,
    }
}

/// Linux `memparse`: an auto-radix number and an optional K/M/G/T/P/E
/// suffix (either case). Returns the value and the rest of the text.
pub(crate) fn memparse(text: &str) -> Option<(u64, &str)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_whitespace_and_respect_quotes() {
        let parts: Vec<&str> = words("  a  b=\"c d\"\te \"f g\" h=\"unterminated i").collect();
        assert_eq!(
            parts,
            ["a", "b=\"c d\"", "e", "\"f g\"", "h=\"unterminated i"]
        );
        assert_eq!(words("").count(), 0);
        let parts: Vec<&str> = words("\u{e9}t\u{e9} a=\"\u{fc} \u{fc}\"\u{a0}b").collect();
        assert_eq!(
            parts,
            ["\u{e9}t\u{e9}", "a=\"\u{fc} \u{fc}\"\u{a0}b"],
            "non-ASCII text, and U+00A0 is no separator"
        );
        assert_eq!(words(" \t\n").count(), 0);
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(key_value("quiet"), ("quiet", None));
        assert_eq!(key_value("a=\"b c\""), ("a", Some("b c")));
        assert_eq!(key_value("a=b=c"), ("a", Some("b=c")));
        assert_eq!(key_value("a="), ("a", Some("")));
        for word in [
            "",
            "=",
            "a",
            "a=",
            "=b",
            "a=b=c",
            "\u{e9}=\u{fc}",
            "\u{e9}\u{fc}",
        ] {
            assert_eq!(split_key(word), word.split_once('='), "{word:?}");
        }
    }

    #[test]
    fn numbers_in_any_radix() {
        assert_eq!(auto_radix("0x1fz"), Some((0x1f, "z")));
        assert_eq!(auto_radix("010"), Some((8, "")));
        assert_eq!(auto_radix("0"), Some((0, "")));
        assert_eq!(
            auto_radix("08"),
            None,
            "a leading 0 means octal, and 8 is not an octal digit"
        );
        assert_eq!(auto_radix("x"), None);
        assert_eq!(number("0x2a"), Some(42));
        assert_eq!(number("42x"), None);
        assert_eq!(auto_radix("12\u{e9}"), Some((12, "\u{e9}")));
        assert_eq!(
            auto_radix("0xff\u{663}"),
            Some((255, "\u{663}")),
            "an Arabic-Indic digit is no digit"
        );
        assert_eq!(auto_radix("18446744073709551615 "), Some((u64::MAX, " ")));
        assert_eq!(auto_radix("18446744073709551616"), None, "past 64 bits");
        assert_eq!(auto_radix("0x1ffffffffffffffff"), None);
        assert_eq!(auto_radix("0777"), Some((0o777, "")));
        assert_eq!(auto_radix("0x"), None);
        assert_eq!(auto_radix("0xg"), None);
        assert_eq!(auto_radix("+5"), None);
        assert_eq!(
            auto_radix("0AF"),
            Some((0, "AF")),
            "as strtoull: a lone 0, then text"
        );
    }

    #[test]
    fn memparse_suffixes() {
        assert_eq!(memparse("4K"), Some((4096, "")));
        assert_eq!(memparse("2m@"), Some((2 << 20, "@")));
        assert_eq!(memparse("1E"), Some((1 << 60, "")));
        assert_eq!(memparse("0x10g"), Some((16 << 30, "")));
        assert_eq!(memparse("7"), Some((7, "")));
        assert_eq!(memparse("x"), None);
        assert_eq!(memparse("16E"), None, "overflows");
    }
}
