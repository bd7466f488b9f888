//! Which table names the processors: the MADT when ACPI has one, else the
//! MP table (QEMU microvm with `acpi=off`, and Firecracker, which has
//! both). A machine with neither has the boot CPU only.
#![deny(unsafe_code)]

use mote_boot::start_info::PhysicalMemory;

use super::mp_table::{self, MpTableError};
use super::processors::Processors;
use crate::acpi::{Acpi, AcpiError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("no MADT ({madt}) and no MP table ({mp_table})")]
    NoTable {
        madt: AcpiError,
        mp_table: MpTableError,
    },
}

/// The processors of the MADT in `acpi`, or when it has none (or no
/// processor in it), those of the MP table found in `memory`.
pub(crate) fn processors(
    acpi: Option<&Acpi>,
    memory: &impl PhysicalMemory,
) -> Result<Processors, DiscoveryError> {
    let madt = match acpi.map(Acpi::processors) {
        Some(Ok(processors)) if processors.count() > 0 => return Ok(processors),
        Some(Ok(_)) => AcpiError::NoMadt,
        Some(Err(error)) => error,
        None => AcpiError::NoMadt,
    };
    mp_table::processors(memory).map_err(|mp_table| DiscoveryError::NoTable { madt, mp_table })
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use alloc::vec;
    use alloc::vec::Vec;

    use mote_boot::start_info::OutOfReach;

    use super::super::mp_table::build;
    use super::super::processors::Source;
    use super::*;

    struct FakeMemory(Vec<u8>);

    impl PhysicalMemory for FakeMemory {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
            let start = usize::try_from(paddr).map_err(|_| OutOfReach)?;
            let source = self.0.get(start..start + buf.len()).ok_or(OutOfReach)?;
            buf.copy_from_slice(source);
            Ok(())
        }
    }

    #[test]
    fn without_acpi_the_mp_table_names_the_processors() {
        let mut memory = vec![0u8; 0x10_0000];
        memory[0x9fc00..0x9fc10].copy_from_slice(&build::floating_pointer(0x9fc10));
        let table = build::qboot(2);
        memory[0x9fc10..0x9fc10 + table.len()].copy_from_slice(&table);
        let processors = processors(None, &FakeMemory(memory)).unwrap();
        assert_eq!(processors.source, Source::MpTable);
        assert_eq!(processors.apic_ids(), [0, 1]);
        assert_eq!(
            super::processors(None, &FakeMemory(vec![0u8; 0x10_0000])),
            Err(DiscoveryError::NoTable {
                madt: AcpiError::NoMadt,
                mp_table: MpTableError::NotFound
            })
        );
    }
}
