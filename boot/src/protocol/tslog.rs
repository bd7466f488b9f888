//! The boot trace's record lines, in FreeBSD's `sysctl debug.tslog` format
//! (FreeBSD `sys/kern/kern_tslog.c`, `sysctl_debug_tslog`):
//! `<thread> <tsc> ENTER|EXIT|THREAD|EVENT <function>[ <detail>]`, so FreeBSD's
//! own scripts (`tslog.sh`, `stackcollapse-tslog.pl`) read mote's dump. The
//! kernel writes them between the `mote: tslog begin …` and `mote: tslog end`
//! report lines ([`super::report::TslogBegin`]); xtask reads them back.

use core::fmt;

use super::fields::{Fields, ParseError};

/// The thread field of the entry stub's records. FreeBSD prints its boot
/// loader's records with thread `0x0`, and FreeBSD's `tslog.sh` reads that
/// thread as the loader's (it drops the `kernel;` root from its stacks);
/// mote's 32-bit stub is its loader.
pub const STUB_THREAD: u64 = 0;

/// The thread field of the kernel's records on the boot CPU; CPU `n` writes
/// [`kernel_thread`]`(n)`. FreeBSD writes a thread's address there, never 0.
/// `tslog.sh` selects a thread's records with look(1), a prefix match, so
/// every value has the same four hex digits: no thread's value is a prefix
/// of another's.
pub const KERNEL_THREAD: u64 = 0x1000;

/// The thread field of the kernel's records on CPU `cpu`.
pub const fn kernel_thread(cpu: u8) -> u64 {
    KERNEL_THREAD + cpu as u64
}

/// How far ahead each application processor arms its one-shot timer, set
/// from the boot CPU's frequencies, before it says it is online: long
/// enough that a timer counting far too fast or too slow shows in its
/// `ap_timer` span, short beside the devices it overlaps. The host's checks
/// read an `ap_timer` span shorter than half of it as a timer gone wrong.
pub const AP_TIMER_CHECK_US: u64 = 10;

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

/// The exits mote causes itself, by kind: the instructions that leave the
/// guest under a hypervisor (or may: RDTSC traps only where the host makes
/// it), counted by the kernel's own wrappers as it executes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Cpuid,
    Rdmsr,
    Wrmsr,
    /// A port read (`in`).
    PortIn,
    /// A port write (`out`).
    PortOut,
    Hlt,
    Rdtsc,
}

impl ExitKind {
    /// Every kind, in the order a record's `exits=` field lists them.
    pub const ALL: [Self; 7] = [
        Self::Cpuid,
        Self::Rdmsr,
        Self::Wrmsr,
        Self::PortIn,
        Self::PortOut,
        Self::Hlt,
        Self::Rdtsc,
    ];

    /// The column name tables print.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpuid => "cpuid",
            Self::Rdmsr => "rdmsr",
            Self::Wrmsr => "wrmsr",
            Self::PortIn => "in",
            Self::PortOut => "out",
            Self::Hlt => "hlt",
            Self::Rdtsc => "rdtsc",
        }
    }

    /// This kind's position in [`Self::ALL`] and in [`Exits`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Exits counted since the kernel started, one counter per [`ExitKind`]. A
/// kernel record carries the counts at the moment it was written, so a
/// span's own exits are its EXIT's counts minus its ENTER's. On a record
/// line they are the last word, `exits=<cpuid>,<rdmsr>,<wrmsr>,<in>,<out>,<hlt>,<rdtsc>`,
/// where FreeBSD writes a record's detail: FreeBSD's scripts read only the
/// first four fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits(pub [u32; ExitKind::ALL.len()]);

impl Exits {
    /// The word's prefix.
    pub const PREFIX: &'static str = "exits=";

    pub const fn get(&self, kind: ExitKind) -> u32 {
        self.0[kind.index()]
    }

    /// The counts from `earlier` to `self`, kind by kind (zero where a
    /// counter went backwards, which only a garbled dump can do).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut delta = [0; ExitKind::ALL.len()];
        for (index, value) in delta.iter_mut().enumerate() {
            *value = self.0[index].saturating_sub(earlier.0[index]);
        }
        Self(delta)
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&count| u64::from(count)).sum()
    }

    /// Reads an `exits=` word.
    pub fn parse(word: &str) -> Result<Self, ParseError> {
        let mut fields = Fields::new(word);
        fields.literal(Self::PREFIX, "'exits='")?;
        let mut counts = [0; ExitKind::ALL.len()];
        for (index, count) in counts.iter_mut().enumerate() {
            if index > 0 {
                fields.literal(",", "','")?;
            }
            *count = fields.decimal()?;
        }
        fields.end()?;
        Ok(Self(counts))
    }
}

impl fmt::Display for Exits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        for (index, count) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{count}")?;
        }
        Ok(())
    }
}

/// One record line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Printed `0x`-prefixed: [`STUB_THREAD`] or a [`kernel_thread`] for
    /// mote, a thread's address for FreeBSD.
    pub thread: u64,
    pub tsc: u64,
    pub kind: Kind,
    pub function: &'a str,
    pub detail: Option<&'a str>,
    /// The kernel's exit counts when it wrote the record; `None` for the
    /// stub's records, dumps from before mote counted, and FreeBSD's.
    pub exits: Option<Exits>,
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} {} {} {}",
            self.thread,
            self.tsc,
            self.kind.word(),
            self.function
        )?;
        if let Some(detail) = self.detail {
            write!(f, " {detail}")?;
        }
        if let Some(exits) = self.exits {
            write!(f, " {exits}")?;
        }
        Ok(())
    }
}

impl<'a> Record<'a> {
    /// The grammar, for documentation.
    pub const GRAMMAR: &'static str = "<0xthread> <tsc> ENTER|EXIT|THREAD|EVENT <function>[ <detail>][ exits=<n>,<n>,<n>,<n>,<n>,<n>,<n>]";

    /// Parses one record line (a trailing `\r` from a serial capture is ignored).
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = Fields::new(line);
        let thread = fields.hex()?;
        fields.literal(" ", "' '")?;
        let tsc = fields.decimal()?;
        fields.literal(" ", "' '")?;
        let at_kind = fields;
        let kind = Kind::from_word(fields.word()?)
            .ok_or_else(|| at_kind.error("ENTER, EXIT, THREAD or EVENT"))?;
        fields.literal(" ", "' '")?;
        let function = fields.word()?;
        let mut detail = if fields.optional(" ") {
            Some(fields.text()?)
        } else {
            fields.end()?;
            None
        };
        let mut exits = None;
        if let Some(text) = detail {
            let (before, last) = text.rsplit_once(' ').map_or(("", text), |(b, l)| (b, l));
            if let Ok(counts) = Exits::parse(last) {
                exits = Some(counts);
                detail = (!before.is_empty()).then_some(before);
            }
        }
        Ok(Self {
            thread,
            tsc,
            kind,
            function,
            detail,
            exits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, detail: Option<&'static str>) -> Record<'static> {
        Record {
            thread: STUB_THREAD,
            tsc: 42,
            kind,
            function: "memory_init",
            detail,
            exits: None,
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
    fn exit_counts_are_the_last_word_and_round_trip() {
        let exits = Exits([1, 2, 3, 4, 50, 6, 700]);
        let line = "0x1000 9 ENTER pci exits=1,2,3,4,50,6,700";
        let parsed = Record::parse(line).unwrap();
        assert_eq!(parsed.exits, Some(exits));
        assert_eq!(parsed.detail, None);
        assert_eq!(parsed.to_string(), line);
        let event = Record::parse("0x1000 9 EVENT ready boot exits=1,2,3,4,50,6,700").unwrap();
        assert_eq!((event.detail, event.exits), (Some("boot"), Some(exits)));
        assert_eq!(event.exits.unwrap().get(ExitKind::Rdtsc), 700);
        assert_eq!(exits.total(), 766);
        assert_eq!(
            Exits([2, 2, 3, 5, 50, 6, 701]).since(&exits),
            Exits([1, 0, 0, 1, 0, 0, 1])
        );
        // Not seven counts: an ordinary detail.
        let short = Record::parse("0x1000 9 EVENT note exits=1,2").unwrap();
        assert_eq!((short.detail, short.exits), (Some("exits=1,2"), None));
    }

    #[test]
    fn freebsd_kernel_records_parse() {
        let parsed = Record::parse("0xfffff80003a1e740 123456789 ENTER mi_startup\r").unwrap();
        assert_eq!(parsed.thread, 0xffff_f800_03a1_e740);
        assert_eq!(parsed.tsc, 123_456_789);
        assert_eq!(parsed.function, "mi_startup");
    }

    #[test]
    fn kernel_threads_are_distinct_from_the_stub_and_never_prefix_each_other() {
        let kernel = Record {
            thread: kernel_thread(0),
            ..record(Kind::Exit, None)
        };
        assert_eq!(kernel.to_string(), "0x1000 42 EXIT memory_init");
        assert_eq!(Record::parse("0x1000 42 EXIT memory_init"), Ok(kernel));
        let names: Vec<String> = (0..=u8::MAX)
            .map(|cpu| format!("{:#x}", kernel_thread(cpu)))
            .chain([format!("{STUB_THREAD:#x}")])
            .collect();
        for (index, name) in names.iter().enumerate() {
            for (other_index, other) in names.iter().enumerate() {
                assert!(
                    index == other_index || !other.starts_with(name.as_str()),
                    "{name} is a prefix of {other}"
                );
            }
        }
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
            "0x 1 ENTER f",
            "0xg 1 ENTER f",
            "0x10000000000000000 1 ENTER f",
            "mote: tslog end",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad:?}");
        }
    }
}
