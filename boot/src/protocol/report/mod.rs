//! The boot report: one fact per line on the serial console, each starting
//! [`PREFIX`] and a keyword. The kernel formats every line with the types
//! here (their `Display` writes the line without the prefix; [`Line`] adds
//! it), and the host reads them back with [`Fact::parse`] or each type's
//! `parse`. [`SHAPES`] lists every line shape with its grammar, for the
//! documentation.

/// Declares a line type's [`Shape`] (as `SHAPE`) and its `Display`, the
/// line without the prefix: `impl[generics] Type, keyword, grammar, |line,
/// f| expression writing `line` to `f``.
macro_rules! line_shape {
    (
        impl[$($generics:tt)*] $type:ty, $keyword:literal, $grammar:literal,
        |$line:pat_param, $f:ident| $body:expr
    ) => {
        impl<$($generics)*> $type {
            /// This line's keyword and grammar, as listed in `SHAPES`.
            pub const SHAPE: $crate::protocol::report::Shape = $crate::protocol::report::Shape {
                keyword: $keyword,
                grammar: $grammar,
            };
        }

        impl<$($generics)*> core::fmt::Display for $type {
            fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let ($line, $f) = (self, formatter);
                $body
            }
        }
    };
}

mod boot;
mod crash;
mod devices;
mod exit_cost;
mod net;
mod quoted;

use core::fmt;

pub use self::boot::{
    AcpiNone, AcpiSleepRegister, AcpiUnusable, BootTimerWritten, Clock, ClockSource, Cpus, Elapsed,
    Memory, MemoryMapped, Module, ModuleUnusable, PowerOff, Ready, StartInfo, Tsc, TscSource,
    TslogBegin, TslogEnd,
};
pub use self::crash::{
    ControlRegisters, ErrorCode, Exception, Fatal, GeneralRegisters, Location, OnCpu, PageFault,
    Panic,
};
pub use self::devices::{
    BarWidth, BenchFailed, BenchRead, ConfigAccess, Crc32, Discovery, Disk, DiskName, PciBar,
    Ramdisk, Verified, VerifyFailed, VirtioMmio, VirtioPci, WriteRefused, Wrote,
};
pub use self::exit_cost::{ExitCost, ExitCostKind};
pub use self::net::{Cidr, Listening, MacAddress, Net};
pub use self::quoted::Cmdline;
use super::fields::Fields;
pub use super::fields::ParseError;

/// Every report line starts with this.
pub const PREFIX: &str = "mote: ";

/// A fact as a whole report line: [`PREFIX`], then the fact.
pub struct Line<T>(pub T);

impl<T: fmt::Display> fmt::Display for Line<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.0)
    }
}

/// The fact of a report line (the line without [`PREFIX`]), or `None` for a
/// line that is not a report line.
pub fn body(line: &str) -> Option<&str> {
    line.strip_prefix(PREFIX)
}

/// One line shape: the keyword that starts it and its grammar (`<field>`
/// for a value, `a|b` for a choice, `[...]` for an optional part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub keyword: &'static str,
    pub grammar: &'static str,
}

/// Every report line shape the kernel prints, in the order a boot prints
/// them (device and workload lines after the boot facts, failures last).
pub const SHAPES: &[Shape] = &[
    Ready::MICROS_SHAPE,
    Ready::CYCLES_SHAPE,
    StartInfo::SHAPE,
    Memory::SHAPE,
    MemoryMapped::SHAPE,
    Module::SHAPE,
    ModuleUnusable::<&str>::SHAPE,
    AcpiSleepRegister::SHAPE,
    AcpiUnusable::<&str>::SHAPE,
    AcpiNone::SHAPE,
    Tsc::SHAPE,
    Clock::SHAPE,
    Cpus::MICROS_SHAPE,
    Cpus::CYCLES_SHAPE,
    BootTimerWritten::SHAPE,
    VirtioMmio::SHAPE,
    VirtioPci::SHAPE,
    PciBar::SHAPE,
    Disk::SHAPE,
    Ramdisk::SHAPE,
    Crc32::SHAPE,
    Verified::SHAPE,
    VerifyFailed::<&str>::SHAPE,
    Wrote::SHAPE,
    WriteRefused::<&str>::SHAPE,
    BenchRead::SHAPE,
    BenchFailed::<&str>::SHAPE,
    ExitCost::SHAPE,
    Net::SHAPE,
    Listening::SHAPE,
    TslogBegin::SHAPE,
    TslogEnd::SHAPE,
    PowerOff::SHAPE,
    Fatal::<&str>::SHAPE,
    Panic::<&str>::LOCATED_SHAPE,
    Panic::<&str>::SHAPE,
    Exception::SHAPE,
    OnCpu::SHAPE,
    PageFault::SHAPE,
    ErrorCode::SHAPE,
    ControlRegisters::SHAPE,
    GeneralRegisters::SHAPE,
];

/// Any report line, parsed. Free-text fields (reasons, messages) are the
/// text as printed.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact<'a> {
    Ready(Ready),
    StartInfo(StartInfo<'a>),
    Memory(Memory),
    MemoryMapped(MemoryMapped),
    Module(Module),
    ModuleUnusable(ModuleUnusable<&'a str>),
    AcpiSleepRegister(AcpiSleepRegister),
    AcpiUnusable(AcpiUnusable<&'a str>),
    AcpiNone(AcpiNone),
    Tsc(Tsc),
    Clock(Clock),
    Cpus(Cpus),
    BootTimerWritten(BootTimerWritten),
    VirtioMmio(VirtioMmio<'a>),
    VirtioPci(VirtioPci<'a>),
    PciBar(PciBar),
    Disk(Disk),
    Ramdisk(Ramdisk<'a>),
    Crc32(Crc32),
    Verified(Verified),
    VerifyFailed(VerifyFailed<&'a str>),
    Wrote(Wrote),
    WriteRefused(WriteRefused<&'a str>),
    BenchRead(BenchRead),
    BenchFailed(BenchFailed<&'a str>),
    ExitCost(ExitCost),
    Net(Net),
    Listening(Listening),
    TslogBegin(TslogBegin),
    TslogEnd(TslogEnd),
    PowerOff(PowerOff),
    Fatal(Fatal<'a, &'a str>),
    Panic(Panic<'a, &'a str>),
    Exception(Exception<'a>),
    OnCpu(OnCpu),
    PageFault(PageFault),
    ErrorCode(ErrorCode),
    ControlRegisters(ControlRegisters),
    GeneralRegisters(GeneralRegisters),
}

/// The keyword a fact claims, as in [`Shape::keyword`]: its first word
/// without a device index (`blk0 …` claims `blk`), or `""` for an indented
/// detail line. [`Fact::parse`] chooses the shapes to try by it, so a host
/// can tell which shape a malformed line was meant to have.
pub fn keyword(fact: &str) -> &str {
    if fact.starts_with("  ") {
        return "";
    }
    let word = fact.split(' ').next().unwrap_or("");
    word.trim_end_matches(|c: char| c.is_ascii_digit())
}

impl<'a> Fact<'a> {
    /// Parses a fact (a report line without [`PREFIX`]). `None` when its
    /// keyword is not one of [`SHAPES`] (a later kernel's fact, say);
    /// `Some(Err(_))` when the keyword is known but the line does not have
    /// any of its shapes.
    pub fn parse(fact: &'a str) -> Option<Result<Self, ParseError>> {
        if fact.starts_with("  ") {
            return Some(crash::parse_detail(fact));
        }
        let numbered = keyword(fact);
        let indexed = fact.split(' ').next().unwrap_or("").len() > numbered.len();
        Some(match numbered {
            "ready" => Ready::parse(fact).map(Self::Ready),
            "start_info" => StartInfo::parse(fact).map(Self::StartInfo),
            "memory" if fact.starts_with(MemoryMapped::START) => {
                MemoryMapped::parse(fact).map(Self::MemoryMapped)
            }
            "memory" => Memory::parse(fact).map(Self::Memory),
            "module" => boot::parse_module(fact),
            "acpi" => boot::parse_acpi(fact),
            "tsc" => Tsc::parse(fact).map(Self::Tsc),
            "clock" => Clock::parse(fact).map(Self::Clock),
            "cpus" => Cpus::parse(fact).map(Self::Cpus),
            "boottimer" => BootTimerWritten::parse(fact).map(Self::BootTimerWritten),
            "virtio-mmio" => VirtioMmio::parse(fact).map(Self::VirtioMmio),
            "virtio-pci" => VirtioPci::parse(fact).map(Self::VirtioPci),
            "pci-bar" => PciBar::parse(fact).map(Self::PciBar),
            "blk" | "ramdisk" if indexed => devices::parse_disk_fact(fact),
            "net" if indexed => Net::parse(fact).map(Self::Net),
            "listening" => Listening::parse(fact).map(Self::Listening),
            "exitcost" => ExitCost::parse(fact).map(Self::ExitCost),
            "tslog" if fact == TslogEnd::TEXT => Ok(Self::TslogEnd(TslogEnd)),
            "tslog" => TslogBegin::parse(fact).map(Self::TslogBegin),
            "poweroff" => PowerOff::parse(fact).map(Self::PowerOff),
            "FATAL" => Fatal::parse(fact).map(Self::Fatal),
            "PANIC" => Panic::parse(fact).map(Self::Panic),
            "EXCEPTION" => Exception::parse(fact).map(Self::Exception),
            _ => return None,
        })
    }

    /// Parses a whole console line: `None` unless it is a report line with a
    /// known keyword.
    pub fn parse_line(line: &'a str) -> Option<Result<Self, ParseError>> {
        Self::parse(body(line.strip_suffix('\r').unwrap_or(line))?)
    }
}

/// Reads a fact that is `keyword` followed by the shape `read` knows.
pub(crate) fn parse_after<'a, T>(
    fact: &'a str,
    keyword: &'static str,
    expected: &'static str,
    read: impl FnOnce(&mut Fields<'a>) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    let mut fields = Fields::new(fact);
    fields.literal(keyword, expected)?;
    let value = read(&mut fields)?;
    fields.end()?;
    Ok(value)
}

/// Checks shared by the line modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Fact;

    /// Formats `value`, parses the text back with `Fact::parse`, and checks
    /// both the value and the text survive.
    pub(crate) fn round_trip(value: &dyn core::fmt::Display, expected_text: &str, fact: Fact<'_>) {
        let text = value.to_string();
        assert_eq!(text, expected_text);
        assert_eq!(Fact::parse(&text), Some(Ok(fact)), "{text}");
    }

    /// Each of `lines` has a known keyword but none of its shapes.
    pub(crate) fn malformed(lines: &[&str]) {
        for bad in lines {
            assert!(matches!(Fact::parse(bad), Some(Err(_))), "{bad:?} parsed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_has_a_keyword_and_a_grammar_starting_with_it() {
        for shape in SHAPES {
            assert!(
                !shape.keyword.is_empty() || shape.grammar.starts_with("  "),
                "{shape:?}"
            );
            assert!(shape.grammar.starts_with(shape.keyword), "{shape:?}");
        }
        let mut grammars: Vec<&str> = SHAPES.iter().map(|shape| shape.grammar).collect();
        grammars.sort_unstable();
        grammars.dedup();
        assert_eq!(grammars.len(), SHAPES.len(), "each shape once");
    }

    #[test]
    fn whole_lines_carry_the_prefix() {
        let line = Line(PowerOff(super::super::exit::Status::Success)).to_string();
        assert_eq!(line, "mote: poweroff success");
        assert_eq!(
            Fact::parse_line(&line),
            Some(Ok(Fact::PowerOff(PowerOff(
                super::super::exit::Status::Success
            ))))
        );
        assert_eq!(Fact::parse_line("[INFO ] mote starting"), None);
        assert_eq!(
            Fact::parse_line("mote: frobnicated 3 widgets"),
            None,
            "unknown keyword"
        );
        assert!(matches!(
            Fact::parse_line("mote: memory 12 bytes"),
            Some(Err(_))
        ));
        assert!(Fact::parse_line("mote: blkx 1 sectors rw").is_none());
    }

    #[test]
    fn keyword_is_the_shape_a_line_claims() {
        for (fact, claimed) in [
            ("memory 12 bytes", "memory"),
            ("blk0 crc32 c0ffee", "blk"),
            ("ramdisk12 1 bytes gzip", "ramdisk"),
            ("net0 mac 52:54:00", "net"),
            ("PANIC at y.rs:1: boom", "PANIC"),
            ("tslog begin tsc_hz=x", "tslog"),
            ("  RIP 0x1 CS 0x8", ""),
            ("", ""),
        ] {
            assert_eq!(keyword(fact), claimed, "{fact:?}");
            let listed = SHAPES.iter().any(|shape| shape.keyword == claimed);
            assert!(listed, "{claimed:?} is the keyword of a shape");
        }
    }
}
