//! `cargo xtask trace --cpu-instructions`: the instructions each vCPU
//! executed from its first one to the ready line, counted by QEMU itself.
//! Under icount the guest's TSC counts the instructions of every vCPU as
//! one clock (the vCPUs take turns on one thread, and the clock also jumps
//! while they wait), so with several CPUs a span's ticks are not its CPU's
//! instructions. TCG with one instruction per block and `-d exec,nochain`
//! logs each instruction a vCPU executes as `Trace <cpu>: …`; the log
//! goes to the same file as the memory-region trace, in order, so the ready
//! line's first byte to the serial port (the first byte mote writes there:
//! everything before ready is buffered) cuts it.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::Result;

/// The ready line's first byte, `m` of `mote: ready`. (Before it the
/// serial port is only programmed: its divisor latch, also at offset 0,
/// is written with 1, 3 or 12, never this.)
const READY_FIRST_BYTE: u64 = b'm' as u64;

/// What the log says up to the ready line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuInstructions {
    /// Instructions per vCPU index.
    pub(crate) per_cpu: BTreeMap<u32, u64>,
    /// The ready line's first byte was seen (else the counts run to the
    /// log's end).
    pub(crate) cut: bool,
}

impl CpuInstructions {
    pub(crate) fn total(&self) -> u64 {
        self.per_cpu.values().sum()
    }
}

/// Counts `Trace <cpu>:` lines per CPU until the first write of
/// [`READY_FIRST_BYTE`] to offset 0 of the device named `serial`.
pub(crate) fn count(log: impl BufRead) -> Result<CpuInstructions> {
    let mut counts = CpuInstructions::default();
    for line in log.split(b'\n') {
        let line = line?;
        if let Some(rest) = line.strip_prefix(b"Trace ") {
            let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
            if digits > 0
                && rest.get(digits) == Some(&b':')
                && let Some(cpu) = std::str::from_utf8(&rest[..digits])
                    .ok()
                    .and_then(|text| text.parse().ok())
            {
                *counts.per_cpu.entry(cpu).or_insert(0) += 1;
            }
        } else if is_ready_byte(&line) {
            counts.cut = true;
            break;
        }
    }
    Ok(counts)
}

fn is_ready_byte(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let Some(at) = line.find("memory_region_ops_write ") else {
        return false;
    };
    let line = &line[at..];
    let field = |key: &str| {
        let start = line.find(&format!(" {key} "))? + key.len() + 2;
        let value = line[start..].split(' ').next()?;
        u64::from_str_radix(value.trim_start_matches("0x"), 16).ok()
    };
    line.trim_end().ends_with(" name 'serial'")
        && field("addr") == Some(0)
        && field("value") == Some(READY_FIRST_BYTE)
}

/// The table: one row per vCPU, and the sum.
pub(crate) fn table(counts: &CpuInstructions) -> String {
    let mut out = String::from("| vCPU | instructions to ready |\n|---|---|\n");
    for (cpu, instructions) in &counts.per_cpu {
        let role = if *cpu == 0 { " (boot CPU)" } else { "" };
        out.push_str(&format!("| {cpu}{role} | {instructions} |\n"));
    }
    out.push_str(&format!("| all | {} |\n", counts.total()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL_M: &str =
        "memory_region_ops_write cpu 0 mr 0x55d1 addr 0x0 value 0x6d size 1 name 'serial'";

    #[test]
    fn counts_each_cpu_up_to_the_ready_byte() {
        let log = [
            "Trace 0: 0x7f00 [00000000/0000000000100000/00000000/00000000] pvh_entry",
            "Trace 0: 0x7f01 [00000000/0000000000100003/00000000/00000000]",
            "memory_region_ops_write cpu 0 mr 0x55d1 addr 0x0 value 0x3 size 1 name 'serial'",
            "Trace 1: 0x7f02 [00000000/000000000009e000/00000000/00000000]",
            "Trace 12: 0x7f03 [00000000/000000000009e000/00000000/00000000]",
            SERIAL_M,
            "Trace 0: 0x7f04 [00000000/0000000000100006/00000000/00000000]",
        ]
        .join("\n");
        let counts = count(log.as_bytes()).unwrap();
        assert!(counts.cut);
        assert_eq!(counts.per_cpu, BTreeMap::from([(0, 2), (1, 1), (12, 1)]));
        assert_eq!(counts.total(), 4);
        assert!(table(&counts).contains("| 0 (boot CPU) | 2 |"));
    }

    #[test]
    fn garbage_is_not_counted_and_a_log_without_ready_is_not_cut() {
        let log = "Trace x: 1\nTrace : 2\nTrace 3 4\nmemory_region_ops_write addr 0x0 value 0x6d size 1 name 'serial2'\n\u{fffd}\n";
        let counts = count(log.as_bytes()).unwrap();
        assert!(!counts.cut);
        assert!(counts.per_cpu.is_empty());
    }
}
