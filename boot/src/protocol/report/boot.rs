//! The boot facts: the ready mark, what the loader handed over, memory,
//! ACPI, the TSC and the clock, the trace frame, and power-off.

use core::fmt;

use super::{Cmdline, Fact, Shape, parse_after};
use crate::protocol::exit::Status;
use crate::protocol::fields::{Fields, ParseError};
use crate::protocol::words::words;

/// `ready …`: the ready mark, timed from the entry stub's first instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// (TSC at ready − TSC at entry) × 10⁶ / TSC Hz.
    Micros(u64),
    /// The same span in TSC cycles, when the TSC frequency is unknown.
    Cycles(u64),
}

impl Ready {
    pub const MICROS_SHAPE: Shape = Shape {
        keyword: "ready",
        grammar: "ready <microseconds> us after entry",
    };
    pub const CYCLES_SHAPE: Shape = Shape {
        keyword: "ready",
        grammar: "ready <cycles> cycles after entry (TSC frequency unknown)",
    };
    const MICROS_TAIL: &'static str = " us after entry";
    const CYCLES_TAIL: &'static str = " cycles after entry (TSC frequency unknown)";

    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "ready ", "'ready '", |fields| {
            let count = fields.decimal()?;
            if fields.optional(Self::MICROS_TAIL) {
                Ok(Self::Micros(count))
            } else {
                fields.literal(
                    Self::CYCLES_TAIL,
                    "' us after entry' or ' cycles after entry …'",
                )?;
                Ok(Self::Cycles(count))
            }
        })
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Micros(micros) => write!(f, "ready {micros}{}", Self::MICROS_TAIL),
            Self::Cycles(cycles) => write!(f, "ready {cycles}{}", Self::CYCLES_TAIL),
        }
    }
}

/// `start_info v<version> cmdline "<command line>"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StartInfo<'a> {
    pub version: u32,
    pub cmdline: Cmdline<'a>,
}

line_shape! {
    impl['a] StartInfo<'a>, "start_info", "start_info v<version> cmdline \"<command line, \\\" \\\\ \\xNN escaped>\"",
    |line, f| write!(f, "start_info v{} cmdline {}", line.version, line.cmdline)
}

impl<'a> StartInfo<'a> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        let mut fields = Fields::new(fact);
        fields.literal("start_info v", "'start_info v'")?;
        let version = fields.decimal()?;
        fields.literal(" cmdline \"", "' cmdline \"'")?;
        let at = fields.offset();
        let text = fields.remainder().strip_suffix('"').ok_or(ParseError {
            expected: "closing '\"'",
            at: fact.len(),
        })?;
        Ok(Self {
            version,
            cmdline: Cmdline::parse_escaped(text, at)?,
        })
    }
}

/// `memory <bytes> bytes usable in <n> regions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Usable RAM (E820 type 1) after normalisation.
    pub usable_bytes: u64,
    pub regions: usize,
}

line_shape! {
    impl[] Memory, "memory", "memory <bytes> bytes usable in <regions> regions",
    |line, f| {
        write!(
            f,
            "memory {} bytes usable in {} regions",
            line.usable_bytes, line.regions
        )
    }
}

impl Memory {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "memory ", "'memory '", |fields| {
            let usable_bytes = fields.decimal()?;
            fields.literal(" bytes usable in ", "' bytes usable in '")?;
            let regions = fields.decimal()?;
            fields.literal(" regions", "' regions'")?;
            Ok(Self {
                usable_bytes,
                regions,
            })
        })
    }
}

/// `memory mapped up to <hex>, heap <bytes> bytes, <bytes> bytes free`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapped {
    /// One past the identity map's last byte.
    pub end: u64,
    pub heap_bytes: u64,
    /// Frames left in the allocator.
    pub free_bytes: u64,
}

line_shape! {
    impl[] MemoryMapped, "memory", "memory mapped up to <hex>, heap <bytes> bytes, <bytes> bytes free",
    |line, f| {
        write!(
            f,
            "{}{:#x}, heap {} bytes, {} bytes free",
            Self::START,
            line.end,
            line.heap_bytes,
            line.free_bytes
        )
    }
}

impl MemoryMapped {
    pub(crate) const START: &'static str = "memory mapped up to ";

    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, Self::START, "'memory mapped up to '", |fields| {
            let end = fields.hex()?;
            fields.literal(", heap ", "', heap '")?;
            let heap_bytes = fields.decimal()?;
            fields.literal(" bytes, ", "' bytes, '")?;
            let free_bytes = fields.decimal()?;
            fields.literal(" bytes free", "' bytes free'")?;
            Ok(Self {
                end,
                heap_bytes,
                free_bytes,
            })
        })
    }
}

/// `module <index> at <hex address> size <bytes>`: a `start_info` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub index: usize,
    pub address: u64,
    pub size: u64,
}

line_shape! {
    impl[] Module, "module", "module <index> at <hex address> size <bytes>",
    |line, f| {
        write!(
            f,
            "module {} at {:#x} size {}",
            line.index, line.address, line.size
        )
    }
}

impl Module {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "module ", "'module '", |fields| {
            let index = fields.decimal()?;
            fields.literal(" at ", "' at '")?;
            let address = fields.hex()?;
            fields.literal(" size ", "' size '")?;
            let size = fields.decimal()?;
            Ok(Self {
                index,
                address,
                size,
            })
        })
    }
}

/// `module <index> unusable: <why>`: a `start_info` module the kernel
/// skipped (its range is not RAM it may read, say); the boot goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleUnusable<R> {
    pub index: usize,
    pub reason: R,
}

line_shape! {
    impl[R: fmt::Display] ModuleUnusable<R>, "module", "module <index> unusable: <why>",
    |line, f| write!(f, "module {} unusable: {}", line.index, line.reason)
}

/// The two `module` shapes.
pub(crate) fn parse_module(fact: &str) -> Result<Fact<'_>, ParseError> {
    let mut fields = Fields::new(fact);
    fields.literal("module ", "'module '")?;
    let index = fields.decimal()?;
    if fields.optional(" unusable: ") {
        let reason = fields.text()?;
        return Ok(Fact::ModuleUnusable(ModuleUnusable { index, reason }));
    }
    Module::parse(fact).map(Fact::Module)
}

/// `boottimer <hex> written`: the Firecracker boot-timer byte was written
/// at the ready mark, to that address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootTimerWritten {
    pub address: u64,
}

line_shape! {
    impl[] BootTimerWritten, "boottimer", "boottimer <hex> written",
    |line, f| write!(f, "boottimer {:#x} written", line.address)
}

impl BootTimerWritten {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "boottimer ", "'boottimer '", |fields| {
            let address = fields.hex()?;
            fields.literal(" written", "' written'")?;
            Ok(Self { address })
        })
    }
}

/// `acpi rsdp <hex> sleep register <hex>`: ACPI can power the VM off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiSleepRegister {
    pub rsdp: u64,
    pub register: u64,
}

line_shape! {
    impl[] AcpiSleepRegister, "acpi", "acpi rsdp <hex> sleep register <hex>",
    |line, f| {
        write!(
            f,
            "acpi rsdp {:#x} sleep register {:#x}",
            line.rsdp, line.register
        )
    }
}

/// `acpi rsdp <hex> unusable: <why>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiUnusable<R> {
    pub rsdp: u64,
    pub reason: R,
}

line_shape! {
    impl[R: fmt::Display] AcpiUnusable<R>, "acpi", "acpi rsdp <hex> unusable: <why>",
    |line, f| write!(f, "acpi rsdp {:#x} unusable: {}", line.rsdp, line.reason)
}

/// `acpi none`: the loader gave no RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiNone;

line_shape! {
    impl[] AcpiNone, "acpi", "acpi none",
    |_, f| f.write_str("acpi none")
}

/// The three `acpi` shapes.
pub(crate) fn parse_acpi(fact: &str) -> Result<Fact<'_>, ParseError> {
    if fact == "acpi none" {
        return Ok(Fact::AcpiNone(AcpiNone));
    }
    let mut fields = Fields::new(fact);
    fields.literal("acpi rsdp ", "'acpi rsdp ' or 'acpi none'")?;
    let rsdp = fields.hex()?;
    if fields.optional(" unusable: ") {
        let reason = fields.text()?;
        return Ok(Fact::AcpiUnusable(AcpiUnusable { rsdp, reason }));
    }
    fields.literal(" sleep register ", "' sleep register ' or ' unusable: '")?;
    let register = fields.hex()?;
    fields.end()?;
    Ok(Fact::AcpiSleepRegister(AcpiSleepRegister {
        rsdp,
        register,
    }))
}

words! {
    /// Where the TSC frequency came from, in the order the kernel tries them.
    pub enum TscSource {
        /// CPUID 0x40000010 EAX (kHz), the hypervisor timing leaf.
        Cpuid40000010 => "cpuid-0x40000010",
        /// kvmclock's `tsc_to_system_mul` and `tsc_shift`.
        Kvmclock => "kvmclock",
        /// CPUID 0x15 (crystal ratio) or 0x16 (base MHz).
        Cpuid15 => "cpuid-0x15",
        /// Measured against PIT channel 0.
        Calibrated => "calibrated",
        /// Linux's `tsc_early_khz=` on the command line, which comes first.
        Cmdline => "cmdline",
    }
}

/// `tsc <hz> Hz from <source>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tsc {
    pub hz: u64,
    pub source: TscSource,
}

line_shape! {
    impl[] Tsc, "tsc", "tsc <hz> Hz from cmdline|cpuid-0x40000010|kvmclock|cpuid-0x15|calibrated",
    |line, f| write!(f, "tsc {} Hz from {}", line.hz, line.source)
}

impl Tsc {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "tsc ", "'tsc '", |fields| {
            let hz = fields.decimal()?;
            fields.literal(" Hz from ", "' Hz from '")?;
            let at = *fields;
            let source = TscSource::from_word(fields.word()?)
                .ok_or_else(|| at.error("a TSC source word"))?;
            Ok(Self { hz, source })
        })
    }
}

words! {
    /// The clock a monotonic reading came from.
    pub enum ClockSource {
        /// kvmclock's system time, which KVM starts at 0 when it creates the VM.
        Kvmclock => "kvmclock",
        /// The TSC divided by its frequency: time since the TSC's origin.
        Tsc => "tsc",
    }
}

/// `clock kvmclock|tsc <ns> ns at ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub source: ClockSource,
    pub ns: u64,
}

line_shape! {
    impl[] Clock, "clock", "clock kvmclock|tsc <ns> ns at ready",
    |line, f| write!(f, "clock {} {} ns at ready", line.source, line.ns)
}

impl Clock {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "clock ", "'clock '", |fields| {
            let at = *fields;
            let source = ClockSource::from_word(fields.word()?)
                .ok_or_else(|| at.error("kvmclock or tsc"))?;
            fields.literal(" ", "' '")?;
            let ns = fields.decimal()?;
            fields.literal(" ns at ready", "' ns at ready'")?;
            Ok(Self { source, ns })
        })
    }
}

/// `cpus <online>/<found> online in <us> us`: how many of the CPUs the
/// firmware tables list run, and how long bringing up the others took
/// (from the first INIT to the last CPU online or the wait's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    pub online: u32,
    pub found: u32,
    pub elapsed: Elapsed,
}

/// A span of boot time: microseconds, or TSC cycles when the TSC
/// frequency is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elapsed {
    Micros(u64),
    Cycles(u64),
}

impl Cpus {
    pub const MICROS_SHAPE: Shape = Shape {
        keyword: "cpus",
        grammar: "cpus <online>/<found> online in <microseconds> us",
    };
    pub const CYCLES_SHAPE: Shape = Shape {
        keyword: "cpus",
        grammar: "cpus <online>/<found> online in <cycles> cycles (TSC frequency unknown)",
    };
    const CYCLES_TAIL: &'static str = " cycles (TSC frequency unknown)";

    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "cpus ", "'cpus '", |fields| {
            let online = fields.decimal()?;
            fields.literal("/", "'/'")?;
            let found = fields.decimal()?;
            fields.literal(" online in ", "' online in '")?;
            let count = fields.decimal()?;
            let elapsed = if fields.optional(" us") {
                Elapsed::Micros(count)
            } else {
                fields.literal(Self::CYCLES_TAIL, "' us' or ' cycles …'")?;
                Elapsed::Cycles(count)
            };
            Ok(Self {
                online,
                found,
                elapsed,
            })
        })
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus {}/{} online in ", self.online, self.found)?;
        match self.elapsed {
            Elapsed::Micros(micros) => write!(f, "{micros} us"),
            Elapsed::Cycles(cycles) => write!(f, "{cycles}{}", Self::CYCLES_TAIL),
        }
    }
}

/// `tslog begin tsc_hz=<hz> records=<n> dropped=<n>`: the boot trace
/// follows, one [`crate::protocol::tslog::Record`] per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TslogBegin {
    /// `tsc_hz=0` on the line when the kernel does not know it.
    pub tsc_hz: Option<u64>,
    pub records: usize,
    pub dropped: usize,
}

line_shape! {
    impl[] TslogBegin, "tslog", "tslog begin tsc_hz=<hz, 0 if unknown> records=<n> dropped=<n>",
    |line, f| {
        write!(
            f,
            "tslog begin tsc_hz={} records={} dropped={}",
            line.tsc_hz.unwrap_or(0),
            line.records,
            line.dropped
        )
    }
}

impl TslogBegin {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(
            fact,
            "tslog begin tsc_hz=",
            "'tslog begin tsc_hz='",
            |fields| {
                let hz: u64 = fields.decimal()?;
                fields.literal(" records=", "' records='")?;
                let records = fields.decimal()?;
                fields.literal(" dropped=", "' dropped='")?;
                let dropped = fields.decimal()?;
                Ok(Self {
                    tsc_hz: (hz != 0).then_some(hz),
                    records,
                    dropped,
                })
            },
        )
    }
}

/// `tslog end`: the last line of the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TslogEnd;

line_shape! {
    impl[] TslogEnd, "tslog", "tslog end",
    |_, f| f.write_str(Self::TEXT)
}

impl TslogEnd {
    pub(crate) const TEXT: &'static str = "tslog end";
}

/// `poweroff success|failure`: always the last report line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerOff(pub Status);

line_shape! {
    impl[] PowerOff, "poweroff", "poweroff success|failure",
    |line, f| write!(f, "poweroff {}", line.0.word())
}

impl PowerOff {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "poweroff ", "'poweroff '", |fields| {
            let at = *fields;
            let word = fields.word()?;
            [Status::Success, Status::Failure]
                .into_iter()
                .find(|status| status.word() == word)
                .map(Self)
                .ok_or_else(|| at.error("success or failure"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::testing::{malformed, round_trip};

    #[test]
    fn boot_facts_round_trip() {
        round_trip(
            &Ready::Micros(1028),
            "ready 1028 us after entry",
            Fact::Ready(Ready::Micros(1028)),
        );
        round_trip(
            &Ready::Cycles(77),
            "ready 77 cycles after entry (TSC frequency unknown)",
            Fact::Ready(Ready::Cycles(77)),
        );
        let start_info = StartInfo {
            version: 1,
            cmdline: Cmdline::Bytes(b"console=ttyS0 say=\"hi\" tab=\t"),
        };
        round_trip(
            &start_info,
            r#"start_info v1 cmdline "console=ttyS0 say=\"hi\" tab=\x09""#,
            Fact::StartInfo(start_info),
        );
        let memory = Memory {
            usable_bytes: 268_041_216,
            regions: 2,
        };
        round_trip(
            &memory,
            "memory 268041216 bytes usable in 2 regions",
            Fact::Memory(memory),
        );
        let mapped = MemoryMapped {
            end: 1 << 32,
            heap_bytes: 33_349_632,
            free_bytes: 233_439_232,
        };
        round_trip(
            &mapped,
            "memory mapped up to 0x100000000, heap 33349632 bytes, 233439232 bytes free",
            Fact::MemoryMapped(mapped),
        );
        let module = Module {
            index: 0,
            address: 0x7fe_0000,
            size: 123_457,
        };
        round_trip(
            &module,
            "module 0 at 0x7fe0000 size 123457",
            Fact::Module(module),
        );
        let unusable_module = ModuleUnusable {
            index: 1,
            reason: "its range is not all RAM",
        };
        round_trip(
            &unusable_module,
            "module 1 unusable: its range is not all RAM",
            Fact::ModuleUnusable(unusable_module),
        );
        let timer = BootTimerWritten {
            address: 0xc000_0000,
        };
        round_trip(
            &timer,
            "boottimer 0xc0000000 written",
            Fact::BootTimerWritten(timer),
        );
        let sleep = AcpiSleepRegister {
            rsdp: 0xf34d0,
            register: 0xfea0_0200,
        };
        round_trip(
            &sleep,
            "acpi rsdp 0xf34d0 sleep register 0xfea00200",
            Fact::AcpiSleepRegister(sleep),
        );
        let unusable = AcpiUnusable {
            rsdp: 0xf34d0,
            reason: "ACPI has no FADT",
        };
        round_trip(
            &unusable,
            "acpi rsdp 0xf34d0 unusable: ACPI has no FADT",
            Fact::AcpiUnusable(unusable),
        );
        round_trip(&AcpiNone, "acpi none", Fact::AcpiNone(AcpiNone));
        for &source in TscSource::ALL {
            let tsc = Tsc {
                hz: 2_300_000_000,
                source,
            };
            let text = format!("tsc 2300000000 Hz from {}", source.word());
            round_trip(&tsc, &text, Fact::Tsc(tsc));
        }
        let cpus = Cpus {
            online: 3,
            found: 4,
            elapsed: Elapsed::Micros(1250),
        };
        round_trip(&cpus, "cpus 3/4 online in 1250 us", Fact::Cpus(cpus));
        let cpus = Cpus {
            online: 1,
            found: 1,
            elapsed: Elapsed::Cycles(0),
        };
        round_trip(
            &cpus,
            "cpus 1/1 online in 0 cycles (TSC frequency unknown)",
            Fact::Cpus(cpus),
        );
        let clock = Clock {
            source: ClockSource::Tsc,
            ns: 1_034_158,
        };
        round_trip(&clock, "clock tsc 1034158 ns at ready", Fact::Clock(clock));
        let begin = TslogBegin {
            tsc_hz: Some(1_000_024_421),
            records: 37,
            dropped: 0,
        };
        round_trip(
            &begin,
            "tslog begin tsc_hz=1000024421 records=37 dropped=0",
            Fact::TslogBegin(begin),
        );
        let unknown = TslogBegin {
            tsc_hz: None,
            records: 1,
            dropped: 2,
        };
        round_trip(
            &unknown,
            "tslog begin tsc_hz=0 records=1 dropped=2",
            Fact::TslogBegin(unknown),
        );
        round_trip(&TslogEnd, "tslog end", Fact::TslogEnd(TslogEnd));
        for status in [Status::Success, Status::Failure] {
            let text = format!("poweroff {}", status.word());
            round_trip(&PowerOff(status), &text, Fact::PowerOff(PowerOff(status)));
        }
    }

    #[test]
    fn malformed_boot_facts_are_errors() {
        malformed(&[
            "ready",
            "ready 12 us",
            "ready x us after entry",
            "ready 12 us after entry!",
            "start_info v1 cmdline \"unterminated",
            "start_info v1 cmdline \"bare \" quote\"",
            "start_info vX cmdline \"\"",
            "memory 12 bytes",
            "memory 12 bytes usable in 2 regions and more",
            "memory mapped up to 4096, heap 1 bytes, 2 bytes free",
            "module 0 at 0x10",
            "module 0 at 10 size 5",
            "acpi",
            "acpi rsdp 0x10",
            "acpi rsdp 0x10 unusable: ",
            "acpi rsdp 0x10 sleep register 0xfea00200 extra",
            "tsc 100 Hz from guesswork",
            "tsc Hz from calibrated",
            "clock hpet 5 ns at ready",
            "cpus 1 online in 5 us",
            "cpus 1/2 online in 5",
            "cpus 1/x online in 5 us",
            "cpus 1/2 online in 5 us extra",
            "tslog begin tsc_hz=1 records=2",
            "tslog ended",
            "poweroff maybe",
            "poweroff",
        ]);
    }

    #[test]
    fn errors_point_at_the_offending_field() {
        assert_eq!(
            Memory::parse("memory 12 bytes free"),
            Err(ParseError {
                expected: "' bytes usable in '",
                at: 9
            })
        );
        assert_eq!(
            StartInfo::parse(r#"start_info v1 cmdline "a\qb""#)
                .unwrap_err()
                .at,
            24
        );
    }
}
