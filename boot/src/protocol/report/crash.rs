//! The failure lines: a fatal boot error, a panic, a CPU exception and the
//! exception's detail lines (indented by two spaces after the prefix). Each
//! comes before `poweroff failure`.

use core::fmt;

use super::{Fact, Shape};
use crate::protocol::fields::{Fields, ParseError};

/// `FATAL in phase <phase>: <message>`: boot cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fatal<'a, M> {
    pub phase: &'a str,
    pub message: M,
}

line_shape! {
    impl[M: fmt::Display] Fatal<'_, M>, "FATAL", "FATAL in phase <phase>: <message>",
    |line, f| write!(f, "FATAL in phase {}: {}", line.phase, line.message)
}

impl<'a> Fatal<'a, &'a str> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        let mut fields = Fields::new(fact);
        fields.literal("FATAL in phase ", "'FATAL in phase '")?;
        let phase = fields.until(": ", "': '")?;
        fields.literal(": ", "': '")?;
        let message = fields.text()?;
        Ok(Self { phase, message })
    }
}

/// Where a panic happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    pub file: &'a str,
    pub line: u32,
    pub column: u32,
}

/// `PANIC in phase <phase>[ at <file>:<line>:<column>]: <message>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Panic<'a, M> {
    pub phase: &'a str,
    pub location: Option<Location<'a>>,
    pub message: M,
}

impl<M> Panic<'_, M> {
    pub const LOCATED_SHAPE: Shape = Shape {
        keyword: "PANIC",
        grammar: "PANIC in phase <phase> at <file>:<line>:<column>: <message>",
    };
    pub const SHAPE: Shape = Shape {
        keyword: "PANIC",
        grammar: "PANIC in phase <phase>: <message>",
    };
}

impl<'a> Panic<'a, &'a str> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        let mut fields = Fields::new(fact);
        fields.literal("PANIC in phase ", "'PANIC in phase '")?;
        // A phase is one word, so the first delimiter after it is the real one.
        let phase = fields.until_any(&[" at ", ": "], "' at ' or ': '")?;
        let location = if fields.optional(" at ") {
            let file = fields.until(":", "':'")?;
            fields.literal(":", "':'")?;
            let line = fields.decimal()?;
            fields.literal(":", "':'")?;
            let column = fields.decimal()?;
            Some(Location { file, line, column })
        } else {
            None
        };
        fields.literal(": ", "': '")?;
        let message = fields.text()?;
        Ok(Self {
            phase,
            location,
            message,
        })
    }
}

impl<M: fmt::Display> fmt::Display for Panic<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PANIC in phase {}", self.phase)?;
        if let Some(Location { file, line, column }) = self.location {
            write!(f, " at {file}:{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// `EXCEPTION <name> (vector <n>) in phase <phase>`: a CPU exception; its
/// detail lines follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception<'a> {
    /// The SDM's name (`page fault`, `divide error`, …).
    pub name: &'a str,
    pub vector: u8,
    pub phase: &'a str,
}

line_shape! {
    impl['a] Exception<'a>, "EXCEPTION", "EXCEPTION <name> (vector <n>) in phase <phase>",
    |line, f| {
        write!(
            f,
            "EXCEPTION {} (vector {}) in phase {}",
            line.name, line.vector, line.phase
        )
    }
}

impl<'a> Exception<'a> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        let mut fields = Fields::new(fact);
        fields.literal("EXCEPTION ", "'EXCEPTION '")?;
        let name = fields.until(" (vector ", "' (vector '")?;
        fields.literal(" (vector ", "' (vector '")?;
        let vector = fields.decimal()?;
        fields.literal(") in phase ", "') in phase '")?;
        let phase = fields.remainder();
        Ok(Self {
            name,
            vector,
            phase,
        })
    }
}

/// `  page fault at CR2 <0x + 16 hex>, error code <hex> (<present>, <access>, <fetch>)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    pub cr2: u64,
    pub error_code: u64,
    /// Error code bit 0: a protection violation, not a missing page.
    pub protection_violation: bool,
    /// Bit 1: a write, not a read.
    pub write: bool,
    /// Bit 4: an instruction fetch, not a data access.
    pub instruction_fetch: bool,
}

line_shape! {
    impl[] PageFault, "", "  page fault at CR2 <hex>, error code <hex> (protection violation|page not present, write|read, instruction fetch|data access)",
    |line, f| {
        write!(
            f,
            "  page fault at CR2 {:#018x}, error code {:#x} ({}, {}, {})",
            line.cr2,
            line.error_code,
            Self::PRESENT[usize::from(line.protection_violation)],
            Self::ACCESS[usize::from(line.write)],
            Self::FETCH[usize::from(line.instruction_fetch)],
        )
    }
}

impl PageFault {
    const PRESENT: [&'static str; 2] = ["page not present", "protection violation"];
    const ACCESS: [&'static str; 2] = ["read", "write"];
    const FETCH: [&'static str; 2] = ["data access", "instruction fetch"];

    fn read(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let cr2 = fields.hex()?;
        fields.literal(", error code ", "', error code '")?;
        let error_code = fields.hex()?;
        fields.literal(" (", "' ('")?;
        let choose = |fields: &mut Fields<'_>, words: [&str; 2]| {
            let at = *fields;
            let word = fields.until_any(&[", ", ")"], "', ' or ')'")?;
            words
                .iter()
                .position(|candidate| *candidate == word)
                .map(|index| index == 1)
                .ok_or_else(|| at.error("a page-fault cause"))
        };
        let protection_violation = choose(fields, Self::PRESENT)?;
        fields.literal(", ", "', '")?;
        let write = choose(fields, Self::ACCESS)?;
        fields.literal(", ", "', '")?;
        let instruction_fetch = choose(fields, Self::FETCH)?;
        fields.literal(")", "')'")?;
        Ok(Self {
            cr2,
            error_code,
            protection_violation,
            write,
            instruction_fetch,
        })
    }
}

/// `  error code <hex>`: any exception but a page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u64);

line_shape! {
    impl[] ErrorCode, "", "  error code <hex>",
    |line, f| write!(f, "  error code {:#x}", line.0)
}

/// `  RIP <hex> CS <hex> RFLAGS <hex> RSP <hex> SS <hex>`: the interrupt frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRegisters {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

line_shape! {
    impl[] ControlRegisters, "", "  RIP <hex> CS <hex> RFLAGS <hex> RSP <hex> SS <hex>",
    |line, f| {
        write!(
            f,
            "  RIP {:#018x} CS {:#x} RFLAGS {:#x} RSP {:#018x} SS {:#x}",
            line.rip, line.cs, line.rflags, line.rsp, line.ss
        )
    }
}

/// `  RAX <hex> RBX <hex> RCX <hex> RDX <hex> RSI <hex> RDI <hex> RBP <hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
}

line_shape! {
    impl[] GeneralRegisters, "", "  RAX <hex> RBX <hex> RCX <hex> RDX <hex> RSI <hex> RDI <hex> RBP <hex>",
    |line, f| {
        f.write_str(" ")?;
        for (name, value) in Self::NAMES.iter().zip(line.values()) {
            write!(f, " {name} {value:#x}")?;
        }
        Ok(())
    }
}

impl GeneralRegisters {
    const NAMES: [&'static str; 7] = ["RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP"];

    fn values(&self) -> [u64; 7] {
        [
            self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi, self.rbp,
        ]
    }
}

/// `  on cpu <n>`: the CPU a failure happened on (0 is the boot CPU; the
/// others in the order the firmware table lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnCpu(pub u32);

line_shape! {
    impl[] OnCpu, "", "  on cpu <n>",
    |line, f| write!(f, "  on cpu {}", line.0)
}

/// The five detail shapes, told apart by their first words.
pub(crate) fn parse_detail(fact: &str) -> Result<Fact<'_>, ParseError> {
    let mut fields = Fields::new(fact);
    if fields.optional("  on cpu ") {
        let cpu = fields.decimal()?;
        fields.end()?;
        return Ok(Fact::OnCpu(OnCpu(cpu)));
    }
    if fields.optional("  page fault at CR2 ") {
        let fault = PageFault::read(&mut fields)?;
        fields.end()?;
        return Ok(Fact::PageFault(fault));
    }
    if fields.optional("  error code ") {
        let code = fields.hex()?;
        fields.end()?;
        return Ok(Fact::ErrorCode(ErrorCode(code)));
    }
    if fact.starts_with("  RIP ") {
        let mut values = [0u64; 5];
        for (name, value) in ["  RIP ", " CS ", " RFLAGS ", " RSP ", " SS "]
            .iter()
            .zip(&mut values)
        {
            fields.literal(name, "a register name")?;
            *value = fields.hex()?;
        }
        fields.end()?;
        let [rip, cs, rflags, rsp, ss] = values;
        return Ok(Fact::ControlRegisters(ControlRegisters {
            rip,
            cs,
            rflags,
            rsp,
            ss,
        }));
    }
    fields.literal(
        " ",
        "'  on cpu', '  page fault', '  error code', '  RIP' or '  RAX'",
    )?;
    let mut values = [0u64; 7];
    for (name, value) in GeneralRegisters::NAMES.iter().zip(&mut values) {
        fields.literal(" ", "' '")?;
        fields.literal(name, "a register name")?;
        fields.literal(" ", "' '")?;
        *value = fields.hex()?;
    }
    fields.end()?;
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp] = values;
    Ok(Fact::GeneralRegisters(GeneralRegisters {
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rbp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::testing::{malformed, round_trip};

    #[test]
    fn the_cpu_detail_round_trips() {
        round_trip(&OnCpu(3), "  on cpu 3", Fact::OnCpu(OnCpu(3)));
        malformed(&["  on cpu", "  on cpu x", "  on cpu 3 extra"]);
    }

    #[test]
    fn failure_lines_round_trip() {
        let fatal = Fatal {
            phase: "memory_init",
            message: "no usable RAM: start_info v1 gave 0 memory map entries",
        };
        round_trip(
            &fatal,
            "FATAL in phase memory_init: no usable RAM: start_info v1 gave 0 memory map entries",
            Fact::Fatal(fatal),
        );
        let panic = Panic {
            phase: "crash_test",
            location: Some(Location {
                file: "kernel/src/boot/crash.rs",
                line: 30,
                column: 29,
            }),
            message: "mote.crash=panic asked for a panic",
        };
        round_trip(
            &panic,
            "PANIC in phase crash_test at kernel/src/boot/crash.rs:30:29: mote.crash=panic asked for a panic",
            Fact::Panic(panic),
        );
        let bare = Panic {
            phase: "report",
            location: None,
            message: "boom: twice",
        };
        round_trip(
            &bare,
            "PANIC in phase report: boom: twice",
            Fact::Panic(bare),
        );
        let exception = Exception {
            name: "page fault",
            vector: 14,
            phase: "crash_test",
        };
        round_trip(
            &exception,
            "EXCEPTION page fault (vector 14) in phase crash_test",
            Fact::Exception(exception),
        );
        let fault = PageFault {
            cr2: 0x4000_0000_0000,
            error_code: 0,
            protection_violation: false,
            write: false,
            instruction_fetch: false,
        };
        round_trip(
            &fault,
            "  page fault at CR2 0x0000400000000000, error code 0x0 (page not present, read, data access)",
            Fact::PageFault(fault),
        );
        let fault = PageFault {
            error_code: 0x13,
            protection_violation: true,
            write: true,
            instruction_fetch: true,
            ..fault
        };
        assert_eq!(
            Fact::parse(&fault.to_string()),
            Some(Ok(Fact::PageFault(fault)))
        );
        round_trip(
            &ErrorCode(0x10),
            "  error code 0x10",
            Fact::ErrorCode(ErrorCode(0x10)),
        );
        let control = ControlRegisters {
            rip: 0x10_2030,
            cs: 8,
            rflags: 0x46,
            rsp: 0x1f_ff00,
            ss: 0x10,
        };
        round_trip(
            &control,
            "  RIP 0x0000000000102030 CS 0x8 RFLAGS 0x46 RSP 0x00000000001fff00 SS 0x10",
            Fact::ControlRegisters(control),
        );
        let general = GeneralRegisters {
            rax: 0,
            rbx: 1,
            rcx: 2,
            rdx: 3,
            rsi: 4,
            rdi: 5,
            rbp: 6,
        };
        round_trip(
            &general,
            "  RAX 0x0 RBX 0x1 RCX 0x2 RDX 0x3 RSI 0x4 RDI 0x5 RBP 0x6",
            Fact::GeneralRegisters(general),
        );
    }

    #[test]
    fn malformed_failure_lines_are_errors() {
        malformed(&[
            "FATAL in phase x",
            "FATAL in phase x: ",
            "PANIC in phase x at y.rs:1: boom",
            "PANIC at y.rs:1:2: boom",
            "EXCEPTION page fault in phase x",
            "  page fault at CR2 0x0, error code 0x0 (page not present, read)",
            "  page fault at CR2 0x0, error code 0x0 (absent, read, data access)",
            "  error code 16",
            "  RIP 0x1 CS 0x8",
            "  RAX 0x0 RBX 0x1",
            "  something else",
        ]);
    }
}
