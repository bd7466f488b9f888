//! `mote.acpi=dump`: every ACPI table mote read, as hex on the console, in
//! a form that reads back into memory (the host tests' fixtures in
//! `kernel/tests/fixtures/acpi/` are such dumps, captured from booted
//! guests; docs/vmms.md says how).
//!
//! ```text
//! acpi-dump rsdp 0xe0000 36 FIRECK
//! acpi-dump table XSDT 0x9fc00 52
//! acpi-dump 0x9fc00 5853445434000000...   (up to 32 bytes a line)
//! ```
//! Only the `acpi-dump <address> <hex>` lines carry data; the others say
//! what follows. The lines do not start with `mote:`: they are not part of
//! the boot report.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use core::fmt::{self, Write};

use mote_boot::start_info::PhysicalMemory;

use super::Acpi;

/// The prefix of every dump line.
pub(crate) const PREFIX: &str = "acpi-dump";
/// Bytes per data line.
const LINE_BYTES: usize = 32;

/// Writes the RSDP (read again from `memory`, `rsdp_length` bytes) and
/// every table of `acpi`.
pub(crate) fn write(
    out: &mut impl Write,
    memory: &impl PhysicalMemory,
    acpi: &Acpi,
) -> fmt::Result {
    let rsdp = acpi.rsdp;
    let length = if rsdp.revision >= 2 { 36 } else { 20 };
    let mut bytes = vec![0u8; length];
    let oem = core::str::from_utf8(&rsdp.oem_id).unwrap_or("?");
    writeln!(out, "{PREFIX} rsdp {:#x} {length} {oem}", rsdp.paddr)?;
    if memory.read(rsdp.paddr, &mut bytes).is_ok() {
        write_bytes(out, rsdp.paddr, &bytes)?;
    }
    for table in &acpi.tables {
        let signature = core::str::from_utf8(&table.signature).unwrap_or("????");
        writeln!(
            out,
            "{PREFIX} table {signature} {:#x} {}",
            table.paddr,
            table.bytes.len()
        )?;
        write_bytes(out, table.paddr, &table.bytes)?;
    }
    Ok(())
}

fn write_bytes(out: &mut impl Write, paddr: u64, bytes: &[u8]) -> fmt::Result {
    for (line, chunk) in (0u64..).zip(bytes.chunks(LINE_BYTES)) {
        write!(out, "{PREFIX} {:#x} ", paddr + line * LINE_BYTES as u64)?;
        for byte in chunk {
            write!(out, "{byte:02x}")?;
        }
        out.write_char('\n')?;
    }
    Ok(())
}

/// Reading dumps back, for host tests.
#[cfg(test)]
pub(crate) mod fixture {
    use mote_boot::start_info::{OutOfReach, PhysicalMemory};

    use super::PREFIX;

    /// Memory rebuilt from a dump: the bytes of its data lines at their
    /// addresses; every other address is unreadable. For host tests.
    #[derive(Debug, Default)]
    pub(crate) struct DumpedMemory {
        /// (address, bytes), one per data line.
        pieces: Vec<(u64, Vec<u8>)>,
    }

    impl DumpedMemory {
        /// Reads the data lines of `text` (other lines, such as the rest of a
        /// serial log, are ignored). `None` if a data line is malformed.
        pub(crate) fn parse(text: &str) -> Option<Self> {
            let mut memory = Self::default();
            for line in text.lines() {
                let Some(rest) = line.trim_end().strip_prefix(PREFIX) else {
                    continue;
                };
                let mut fields = rest.split_ascii_whitespace();
                let (Some(address), Some(hex), None) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let Some(address) = address.strip_prefix("0x") else {
                    continue;
                };
                let address = u64::from_str_radix(address, 16).ok()?;
                if hex.len() % 2 != 0 {
                    return None;
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                memory.pieces.push((address, bytes));
            }
            memory.pieces.sort_by_key(|&(address, _)| address);
            Some(memory)
        }
    }

    impl PhysicalMemory for DumpedMemory {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
            // Pieces are contiguous runs of lines: copy piece by piece.
            let mut at = paddr;
            let mut filled = 0;
            while filled < buf.len() {
                let index = self
                    .pieces
                    .partition_point(|&(address, _)| address <= at)
                    .checked_sub(1)
                    .ok_or(OutOfReach)?;
                let (address, bytes) = &self.pieces[index];
                let offset = usize::try_from(at - address).map_err(|_| OutOfReach)?;
                let available = bytes.get(offset..).filter(|rest| !rest.is_empty());
                let available = available.ok_or(OutOfReach)?;
                let count = available.len().min(buf.len() - filled);
                buf[filled..filled + count].copy_from_slice(&available[..count]);
                filled += count;
                at += count as u64;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use mote_boot::start_info::{OutOfReach, PhysicalMemory};

    use super::fixture::DumpedMemory;
    use super::*;

    #[test]
    fn data_lines_read_back_across_line_boundaries() {
        let mut text = String::from("mote: ready 1 us after entry\n");
        write_bytes(&mut text, 0x1000, &(0u8..70).collect::<Vec<_>>()).unwrap();
        text.push_str("acpi-dump table DSDT 0x1000 70\n");
        let memory = DumpedMemory::parse(&text).unwrap();
        let mut buf = [0u8; 40];
        memory.read(0x1010, &mut buf).unwrap();
        assert_eq!(buf[0], 0x10);
        assert_eq!(buf[39], 0x37);
        assert_eq!(memory.read(0x1040, &mut [0u8; 7]), Err(OutOfReach));
        assert_eq!(memory.read(0xfff, &mut [0u8; 1]), Err(OutOfReach));
        assert!(DumpedMemory::parse("acpi-dump 0x10 abc").is_none());
    }
}
