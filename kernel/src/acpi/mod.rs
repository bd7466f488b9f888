//! Just enough ACPI for a microVM: the S5 sleep register of a
//! hardware-reduced machine (QEMU microvm with ACPI on), the I/O APICs of
//! the MADT, and the DSDT's AML for the one reader in [`aml`] (virtio reads
//! its devices from it). Table layouts are in [`tables`]; docs/acpi.md
//! says what VMMs put in them. Everything reads through
//! [`PhysicalMemory`], so it is all tested on the host.
#![deny(unsafe_code)]

extern crate alloc;

pub(crate) mod aml;
pub(crate) mod resources;
mod tables;

use alloc::vec;
use alloc::vec::Vec;

use arrayvec::ArrayVec;
use mote_boot::protocol::exit;
use mote_boot::start_info::PhysicalMemory;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use self::tables::{
    FADT_HW_REDUCED_ACPI, Fadt, HEADER_SIZE, MADT_IO_APIC, MADT_SOURCE_OVERRIDE, MadtHeader,
    MadtIoApic, SdtHeader, find_table, read, read_table,
};

/// Largest DSDT read.
const MAX_DSDT: usize = 64 * 1024;
/// Most I/O APICs kept (QEMU microvm has one or two).
pub(crate) const MAX_IO_APICS: usize = 8;
/// The `\_S5` object: the soft-off sleep state's package.
const S5_PATH: &str = "\\_S5_";

/// Generic Address Structure address spaces used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressSpace {
    Memory,
    Io,
}

/// How to enter S5 (soft off) on the machine the FADT describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SleepControl {
    pub(crate) space: AddressSpace,
    pub(crate) address: u64,
    /// The byte to write: SLP_TYP of `\_S5` and SLP_EN.
    pub(crate) value: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AcpiError {
    #[error("ACPI {what} at {paddr:#x} is unreadable")]
    Unreadable { what: &'static str, paddr: u64 },
    #[error("ACPI {what} at {paddr:#x} has a bad signature")]
    BadSignature { what: &'static str, paddr: u64 },
    #[error("ACPI {what} at {paddr:#x} has a bad checksum")]
    BadChecksum { what: &'static str, paddr: u64 },
    #[error("ACPI has no FADT")]
    NoFadt,
    /// Not hardware-reduced, or FADT older than 5.0: no sleep register.
    #[error("FADT describes no sleep control register (not hardware-reduced ACPI)")]
    NoSleepControlRegister,
    #[error("DSDT has no \\_S5 package")]
    NoS5,
    #[error(transparent)]
    Aml(#[from] aml::AmlError),
}

impl AcpiError {
    fn bad_signature(what: &'static str, paddr: u64) -> Self {
        Self::BadSignature { what, paddr }
    }

    fn bad_checksum(what: &'static str, paddr: u64) -> Self {
        Self::BadChecksum { what, paddr }
    }
}

/// Finds the S5 sleep register starting from the RSDP at `rsdp`.
pub(crate) fn find_sleep_control(
    memory: &impl PhysicalMemory,
    rsdp: u64,
) -> Result<SleepControl, AcpiError> {
    let (fadt, length) = read_fadt(memory, rsdp)?;
    let register = &fadt.sleep_control_reg;
    if length < core::mem::offset_of!(Fadt, sleep_status_reg)
        || fadt.flags.get() & FADT_HW_REDUCED_ACPI == 0
    {
        return Err(AcpiError::NoSleepControlRegister);
    }
    let space = match register.space_id {
        0 => AddressSpace::Memory,
        1 => AddressSpace::Io,
        _ => return Err(AcpiError::NoSleepControlRegister),
    };
    let address = register.address.get();
    if address == 0 {
        return Err(AcpiError::NoSleepControlRegister);
    }
    let aml = read_aml(memory, dsdt_address(&fadt, length))?;
    let sleep_type = s5_sleep_type(&aml)?.ok_or(AcpiError::NoS5)?;
    Ok(SleepControl {
        space,
        address,
        value: exit::sleep_control_value(sleep_type),
    })
}

/// SLP_TYPa of `\_S5`: the first element of its package.
fn s5_sleep_type(aml: &[u8]) -> Result<Option<u8>, AcpiError> {
    struct S5(Option<u8>);
    impl aml::Visitor<'_> for S5 {
        fn name(&mut self, path: &str, data: aml::Data<'_>) {
            if let (S5_PATH, aml::Data::Package { first: Some(first) }) = (path, data) {
                self.0.get_or_insert(u8::try_from(first & 0x7).unwrap_or(0));
            }
        }
    }
    let mut s5 = S5(None);
    aml::walk(aml, &mut s5)?;
    Ok(s5.0)
}

/// The DSDT's AML (the table without its header), through the FADT.
pub(crate) fn dsdt_aml(memory: &impl PhysicalMemory, rsdp: u64) -> Result<Vec<u8>, AcpiError> {
    let (fadt, length) = read_fadt(memory, rsdp)?;
    read_aml(memory, dsdt_address(&fadt, length))
}

/// The FADT (the fields past its length are zero) and its length.
fn read_fadt(memory: &impl PhysicalMemory, rsdp: u64) -> Result<(Fadt, usize), AcpiError> {
    let address = find_table(memory, rsdp, b"FACP")?.ok_or(AcpiError::NoFadt)?;
    let mut fadt = Fadt::new_zeroed();
    let length = read_table(memory, address, "FADT", fadt.as_mut_bytes())?;
    Ok((fadt, length))
}

/// The DSDT's address: X_DSDT when the FADT has a non-zero one, else DSDT.
fn dsdt_address(fadt: &Fadt, length: usize) -> u64 {
    let x_dsdt = if length >= core::mem::offset_of!(Fadt, extended_blocks) {
        fadt.x_dsdt.get()
    } else {
        0
    };
    match x_dsdt {
        0 => u64::from(fadt.dsdt.get()),
        x_dsdt => x_dsdt,
    }
}

/// Reads the DSDT at `dsdt` (checking its signature and size) and returns
/// its AML.
fn read_aml(memory: &impl PhysicalMemory, dsdt: u64) -> Result<Vec<u8>, AcpiError> {
    let mut header = SdtHeader::new_zeroed();
    read(memory, "DSDT", dsdt, header.as_mut_bytes())?;
    let length = usize::try_from(header.length.get()).unwrap_or(usize::MAX);
    if &header.signature != b"DSDT" || !(HEADER_SIZE..=MAX_DSDT).contains(&length) {
        return Err(AcpiError::bad_signature("DSDT", dsdt));
    }
    let mut table = vec![0u8; length];
    read(memory, "DSDT", dsdt, &mut table)?;
    table.drain(..HEADER_SIZE);
    Ok(table)
}

/// An I/O APIC from the MADT (ACPI 6.5 §5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoApic {
    pub(crate) id: u8,
    pub(crate) address: u64,
    pub(crate) gsi_base: u32,
}

/// The I/O APICs the MADT lists, and how many interrupt source overrides
/// it has (QEMU microvm gives none; mote does not remap ISA IRQs).
pub(crate) fn find_io_apics(
    memory: &impl PhysicalMemory,
    rsdp: u64,
) -> Result<(ArrayVec<IoApic, MAX_IO_APICS>, usize), AcpiError> {
    let madt = find_table(memory, rsdp, b"APIC")?.ok_or(AcpiError::Unreadable {
        what: "MADT",
        paddr: 0,
    })?;
    let mut bytes = [0u8; 1024];
    let length = read_table(memory, madt, "MADT", &mut bytes)?;
    let mut io_apics = ArrayVec::new();
    let mut overrides = 0;
    let mut at = size_of::<MadtHeader>();
    while at + 2 <= length {
        let (kind, entry_length) = (bytes[at], usize::from(bytes[at + 1]));
        if entry_length < 2 || at + entry_length > length {
            break;
        }
        let entry = &bytes[at..at + entry_length];
        match kind {
            MADT_IO_APIC => {
                if let Ok((io_apic, _)) = MadtIoApic::read_from_prefix(entry) {
                    let _ = io_apics.try_push(IoApic {
                        id: io_apic.id,
                        address: u64::from(io_apic.address.get()),
                        gsi_base: io_apic.gsi_base.get(),
                    });
                }
            }
            MADT_SOURCE_OVERRIDE => overrides += 1,
            _ => {}
        }
        at += entry_length;
    }
    Ok((io_apics, overrides))
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use mote_boot::start_info::OutOfReach;

    use super::tables::{RSDP_SIGNATURE, checksum};
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

    const FADT_FLAGS: usize = offset_of!(Fadt, flags);
    const FADT_X_DSDT: usize = offset_of!(Fadt, x_dsdt);
    const FADT_SLEEP_CONTROL_REG: usize = offset_of!(Fadt, sleep_control_reg);

    const RSDP: usize = 0x100;
    const XSDT: usize = 0x200;
    const FADT: usize = 0x400;
    const DSDT: usize = 0x800;

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        bytes[at] = 0u8.wrapping_sub(checksum(bytes));
    }

    fn table(memory: &mut [u8], at: usize, signature: &[u8; 4], length: usize) {
        memory[at..at + 4].copy_from_slice(signature);
        memory[at + 4..at + 8].copy_from_slice(&u32::try_from(length).unwrap().to_le_bytes());
    }

    /// Tables shaped like QEMU microvm's (hw/i386/acpi-microvm.c).
    fn qemu_microvm() -> Vec<u8> {
        let mut m = vec![0u8; 0x1000];
        m[RSDP..RSDP + 8].copy_from_slice(RSDP_SIGNATURE);
        m[RSDP + 15] = 2;
        m[RSDP + 20..RSDP + 24].copy_from_slice(&36u32.to_le_bytes());
        m[RSDP + 24..RSDP + 32].copy_from_slice(&(XSDT as u64).to_le_bytes());
        fix_checksum(&mut m[RSDP..RSDP + 20], 8);
        fix_checksum(&mut m[RSDP..RSDP + 36], 32);

        table(&mut m, XSDT, b"XSDT", 36 + 16);
        m[XSDT + 36..XSDT + 44].copy_from_slice(&0x600u64.to_le_bytes());
        m[XSDT + 44..XSDT + 52].copy_from_slice(&(FADT as u64).to_le_bytes());
        fix_checksum(&mut m[XSDT..XSDT + 52], 9);
        // MADT: a local APIC and QEMU microvm's two I/O APICs.
        let mut madt = vec![0u8; 44];
        madt.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        madt.extend_from_slice(&[1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
        madt.extend_from_slice(&[1, 12, 1, 0, 0x00, 0x00, 0xc1, 0xfe, 24, 0, 0, 0]);
        m[0x600..0x600 + madt.len()].copy_from_slice(&madt);
        table(&mut m, 0x600, b"APIC", madt.len());
        fix_checksum(&mut m[0x600..0x600 + madt.len()], 9);

        table(&mut m, FADT, b"FACP", 276);
        m[FADT + FADT_FLAGS..FADT + FADT_FLAGS + 4].copy_from_slice(&0x0010_0400u32.to_le_bytes());
        m[FADT + FADT_X_DSDT..FADT + FADT_X_DSDT + 8].copy_from_slice(&(DSDT as u64).to_le_bytes());
        let gas = FADT + FADT_SLEEP_CONTROL_REG;
        m[gas] = 0;
        m[gas + 4..gas + 12].copy_from_slice(&0xfea0_0200u64.to_le_bytes());
        fix_checksum(&mut m[FADT..FADT + 276], 9);

        // QEMU's DSDT ends with `Scope (\) { Name (_S5, Package (4) { 5, 0, 0, 0 }) }`.
        let aml = qemu_dsdt_aml();
        table(&mut m, DSDT, b"DSDT", 36 + aml.len());
        m[DSDT + 36..DSDT + 36 + aml.len()].copy_from_slice(&aml);
        m
    }

    /// Devices first, `\_S5` last, as in QEMU's table.
    fn qemu_dsdt_aml() -> Vec<u8> {
        use super::aml::build;
        [
            build::scope(b"_SB_", &[build::virtio_device(23, 0xfeb0_2e00, 47)]),
            build::s5_scope(5),
        ]
        .concat()
    }

    #[test]
    fn finds_qemu_microvm_sleep_register() {
        let memory = FakeMemory(qemu_microvm());
        assert_eq!(
            find_sleep_control(&memory, RSDP as u64),
            Ok(SleepControl {
                space: AddressSpace::Memory,
                address: 0xfea0_0200,
                value: 0x34,
            })
        );
    }

    #[test]
    fn corrupt_rsdp() {
        let mut bytes = qemu_microvm();
        bytes[RSDP + 9] ^= 1;
        let memory = FakeMemory(bytes);
        assert_eq!(
            find_sleep_control(&memory, RSDP as u64),
            Err(AcpiError::BadChecksum {
                what: "RSDP",
                paddr: RSDP as u64
            })
        );
        assert_eq!(
            find_sleep_control(&memory, 0x40),
            Err(AcpiError::BadSignature {
                what: "RSDP",
                paddr: 0x40
            })
        );
        assert!(matches!(
            find_sleep_control(&memory, 0xffff_0000),
            Err(AcpiError::Unreadable { .. })
        ));
    }

    #[test]
    fn not_hardware_reduced() {
        let mut bytes = qemu_microvm();
        bytes[FADT + FADT_FLAGS + 2] = 0;
        fix_checksum(&mut bytes[FADT..FADT + 276], 9);
        assert_eq!(
            find_sleep_control(&FakeMemory(bytes), RSDP as u64),
            Err(AcpiError::NoSleepControlRegister)
        );
    }

    #[test]
    fn dsdt_through_the_fadt() {
        let memory = FakeMemory(qemu_microvm());
        assert_eq!(
            dsdt_aml(&memory, RSDP as u64),
            Ok(qemu_dsdt_aml()),
            "the AML after the header"
        );
        let mut bytes = qemu_microvm();
        bytes[DSDT] = b'X';
        assert_eq!(
            dsdt_aml(&FakeMemory(bytes), RSDP as u64),
            Err(AcpiError::BadSignature {
                what: "DSDT",
                paddr: DSDT as u64
            })
        );
    }

    #[test]
    fn io_apics_from_the_madt() {
        let memory = FakeMemory(qemu_microvm());
        let (io_apics, overrides) = find_io_apics(&memory, RSDP as u64).unwrap();
        assert_eq!(overrides, 0);
        assert_eq!(
            io_apics.as_slice(),
            [
                IoApic {
                    id: 0,
                    address: 0xfec0_0000,
                    gsi_base: 0
                },
                IoApic {
                    id: 1,
                    address: 0xfec1_0000,
                    gsi_base: 24
                },
            ]
        );
    }

    #[test]
    fn missing_s5() {
        let mut bytes = qemu_microvm();
        let at = bytes.windows(4).position(|w| w == b"_S5_").unwrap();
        bytes[at + 2] = b'4';
        assert_eq!(
            find_sleep_control(&FakeMemory(bytes), RSDP as u64),
            Err(AcpiError::NoS5)
        );
    }
}
