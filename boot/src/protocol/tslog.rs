//! The boot trace's record lines, in FreeBSD's `sysctl debug.tslog` format
//! (FreeBSD `sys/kern/kern_tslog.c`, `sysctl_debug_tslog`):
//! `<thread> <tsc> ENTER|EXIT|THREAD|EVENT <function>[ <detail>]`, so FreeBSD's
//! own scripts (`tslog.sh`, `stackcollapse-tslog.pl`) read mote's dump. The
//! kernel writes them between the `mote: tslog begin …` and `mote: tslog end`
//! report lines ([`super::report::TslogBegin`]); xtask reads them back.

use core::fmt;

use super::fields::{Fields, ParseError};

/// The thread field mote writes: it has one thread, and FreeBSD prints its
/// boot loader's records with this one too.
pub const KERNEL_THREAD: &str = "0x0";

/// A record's type (FreeBSD `TS_ENTER`, `TS_EXIT`, `TS_THREAD`, `TS_EVENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Enter,
    Exit,
    /// Only in FreeBSD dumps: the thread was named.
    Thread,
    Event,
}

impl Kind {
    pub const fn word(self) -> &'static str {
        match self {
            Self::Enter => "ENTER",
            Self::Exit => "EXIT",
            Self::Thread => "THREAD",
            Self::Event => "EVENT",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        [Self::Enter, Self::Exit, Self::Thread, Self::Event]
            .into_iter()
            .find(|kind| kind.word() == word)
    }
}

/// One record line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// `0x`-prefixed; [`KERNEL_THREAD`] for mote.
    pub thread: &'a str,
    pub tsc: u64,
    pub kind: Kind,
    pub function: &'a str,
    pub detail: Option<&'a str>,
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.thread,
            self.tsc,
            self.kind.word(),
            self.function
        )?;
        if let Some(detail) = self.detail {
            write!(f, " {detail}")?;
        }
        Ok(())
    }
}

impl<'a> Record<'a> {
    /// The grammar, for documentation.
    pub const GRAMMAR: &'static str =
        "<0xthread> <tsc> ENTER|EXIT|THREAD|EVENT <function>[ <detail>]";

    /// Parses one record line (a trailing `\r` from a serial capture is ignored).
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = Fields::new(line);
        if !fields.peek("0x") {
            return Err(fields.error("'0x' thread"));
        }
        let thread = fields.word()?;
        fields.literal(" ", "' '")?;
        let tsc = fields.decimal()?;
        fields.literal(" ", "' '")?;
        let at_kind = fields;
        let kind = Kind::from_word(fields.word()?)
            .ok_or_else(|| at_kind.error("ENTER, EXIT, THREAD or EVENT"))?;
        fields.literal(" ", "' '")?;
        let function = fields.word()?;
        let detail = if fields.optional(" ") {
            Some(fields.text()?)
        } else {
            fields.end()?;
            None
        };
        Ok(Self {
            thread,
            tsc,
            kind,
            function,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, detail: Option<&'static str>) -> Record<'static> {
        Record {
            thread: KERNEL_THREAD,
            tsc: 42,
            kind,
            function: "memory_init",
            detail,
        }
    }

    #[test]
    fn freebsd_line_format_round_trips() {
        assert_eq!(
            record(Kind::Enter, None).to_string(),
            "0x0 42 ENTER memory_init"
        );
        assert_eq!(
            record(Kind::Event, Some("two words")).to_string(),
            "0x0 42 EVENT memory_init two words"
        );
        for kind in [Kind::Enter, Kind::Exit, Kind::Thread, Kind::Event] {
            for detail in [None, Some("x"), Some("a b c")] {
                let text = record(kind, detail).to_string();
                assert_eq!(Record::parse(&text), Ok(record(kind, detail)), "{text}");
            }
        }
    }

    #[test]
    fn freebsd_kernel_records_parse() {
        let parsed = Record::parse("0xfffff80003a1e740 123456789 ENTER mi_startup\r").unwrap();
        assert_eq!(parsed.thread, "0xfffff80003a1e740");
        assert_eq!(parsed.tsc, 123_456_789);
        assert_eq!(parsed.function, "mi_startup");
    }

    #[test]
    fn malformed_records() {
        for bad in [
            "",
            "0x0",
            "12 34 ENTER f",
            "0x0 x ENTER f",
            "0x0 1 BEGIN f",
            "0x0 1 ENTER",
            "0x0 1 ENTER ",
            "0x0 1 EVENT f ",
            "mote: tslog end",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad:?}");
        }
    }
}
