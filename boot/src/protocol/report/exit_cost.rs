//! The `mote.bench=exits` lines: what one VM exit of each kind cost, timed
//! by the guest over a loop of them (`cargo xtask bench --exit-cost`).

use super::parse_after;
use crate::protocol::fields::ParseError;

/// The exits the loop causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCostKind {
    /// CPUID leaf 0: under KVM answered in the kernel, without the VMM.
    Cpuid,
    /// A read of COM1's scratch register: a port exit the VMM's serial
    /// model answers.
    Port,
    /// A read of the first virtio-mmio transport's magic value: an MMIO
    /// exit the VMM's virtio model answers.
    Mmio,
}

impl ExitCostKind {
    pub const ALL: [Self; 3] = [Self::Cpuid, Self::Port, Self::Mmio];

    pub const fn word(self) -> &'static str {
        match self {
            Self::Cpuid => "cpuid",
            Self::Port => "port",
            Self::Mmio => "mmio",
        }
    }
}

/// `exitcost <kind> <count> x <ns> ns`: `count` exits of `kind` took
/// `nanos` each on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExitCost {
    pub kind: ExitCostKind,
    pub count: u32,
    /// Printed with one decimal.
    pub nanos: f64,
}

line_shape! {
    impl[] ExitCost, "exitcost", "exitcost cpuid|port|mmio <count> x <ns, 1 decimal> ns",
    |line, f| write!(f, "exitcost {} {} x {:.1} ns", line.kind.word(), line.count, line.nanos)
}

impl ExitCost {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "exitcost ", "'exitcost '", |fields| {
            let at = *fields;
            let word = fields.word()?;
            let kind = ExitCostKind::ALL
                .into_iter()
                .find(|kind| kind.word() == word)
                .ok_or_else(|| at.error("cpuid, port or mmio"))?;
            fields.literal(" ", "' '")?;
            let count = fields.decimal()?;
            fields.literal(" x ", "' x '")?;
            let nanos = fields.fraction()?;
            fields.literal(" ns", "' ns'")?;
            Ok(Self { kind, count, nanos })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::Fact;
    use crate::protocol::report::testing::{malformed, round_trip};

    #[test]
    fn exit_cost_lines_round_trip() {
        let line = ExitCost {
            kind: ExitCostKind::Mmio,
            count: 1000,
            nanos: 31_250.5,
        };
        round_trip(
            &line,
            "exitcost mmio 1000 x 31250.5 ns",
            Fact::ExitCost(line),
        );
        malformed(&[
            "exitcost",
            "exitcost hlt 1 x 1.0 ns",
            "exitcost port x 1.0 ns",
            "exitcost cpuid 10 x 1.0 ns extra",
        ]);
    }
}
