//! Just enough ACPI to power off a hardware-reduced machine (QEMU microvm
//! with ACPI on): RSDP → XSDT/RSDT → FADT's `SLEEP_CONTROL_REG`, and the S5
//! sleep type from the DSDT's `\_S5` package.
//!
//! Table layouts: ACPI 6.5 §5.2.5 (RSDP), §5.2.6 (header), §5.2.9 (FADT),
//! §5.2.3.2 (Generic Address Structure), §4.8.3.7 (sleep control register).

use core::fmt;

use mote_boot::start_info::{OutOfReach, PhysicalMemory};

const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
const HEADER_SIZE: usize = 36;
/// FADT offsets (ACPI 6.5 table 5.9).
const FADT_DSDT: usize = 40;
const FADT_FLAGS: usize = 112;
const FADT_X_DSDT: usize = 140;
const FADT_SLEEP_CONTROL_REG: usize = 244;
/// FADT flag: the platform has no fixed hardware (PM1 blocks).
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// Sleep control register: SLP_EN, and SLP_TYPx in bits 2-4.
const SLEEP_CONTROL_SLP_EN: u8 = 1 << 5;
/// Most tables an XSDT may list before we call it corrupt.
const MAX_TABLES: usize = 64;
/// Largest DSDT searched for `\_S5`.
const MAX_DSDT: usize = 64 * 1024;

/// Generic Address Structure address spaces used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpace {
    Memory,
    Io,
}

/// How to enter S5 (soft off) on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepControl {
    pub space: AddressSpace,
    pub address: u64,
    /// The byte to write: SLP_TYP of `\_S5` and SLP_EN.
    pub value: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    Unreadable {
        what: &'static str,
        paddr: u64,
    },
    BadSignature {
        what: &'static str,
        paddr: u64,
    },
    BadChecksum {
        what: &'static str,
        paddr: u64,
    },
    NoFadt,
    /// Not hardware-reduced, or FADT older than 5.0: no sleep register.
    NoSleepControlRegister,
    NoS5,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { what, paddr } => {
                write!(f, "ACPI {what} at {paddr:#x} is unreadable")
            }
            Self::BadSignature { what, paddr } => {
                write!(f, "ACPI {what} at {paddr:#x} has a bad signature")
            }
            Self::BadChecksum { what, paddr } => {
                write!(f, "ACPI {what} at {paddr:#x} has a bad checksum")
            }
            Self::NoFadt => f.write_str("ACPI has no FADT"),
            Self::NoSleepControlRegister => {
                f.write_str("FADT describes no sleep control register (not hardware-reduced ACPI)")
            }
            Self::NoS5 => f.write_str("DSDT has no \\_S5 package"),
        }
    }
}

/// Finds the S5 sleep register starting from the RSDP at `rsdp`.
pub fn find_sleep_control(
    memory: &impl PhysicalMemory,
    rsdp: u64,
) -> Result<SleepControl, AcpiError> {
    let (bytes, length) = read_fadt(memory, rsdp)?;
    if length < FADT_SLEEP_CONTROL_REG + 12
        || le_u32(&bytes, FADT_FLAGS) & FADT_HW_REDUCED_ACPI == 0
    {
        return Err(AcpiError::NoSleepControlRegister);
    }
    let gas = &bytes[FADT_SLEEP_CONTROL_REG..FADT_SLEEP_CONTROL_REG + 12];
    let space = match gas[0] {
        0 => AddressSpace::Memory,
        1 => AddressSpace::Io,
        _ => return Err(AcpiError::NoSleepControlRegister),
    };
    let address = le_u64(gas, 4);
    if address == 0 {
        return Err(AcpiError::NoSleepControlRegister);
    }
    let slp_typ = s5_sleep_type(memory, dsdt_address(&bytes, length))?;
    Ok(SleepControl {
        space,
        address,
        value: ((slp_typ & 0x7) << 2) | SLEEP_CONTROL_SLP_EN,
    })
}

/// The DSDT's physical address and length, through the FADT.
pub fn find_dsdt(memory: &impl PhysicalMemory, rsdp: u64) -> Result<(u64, usize), AcpiError> {
    let (bytes, length) = read_fadt(memory, rsdp)?;
    let dsdt = dsdt_address(&bytes, length);
    let length = dsdt_length(memory, dsdt)?;
    if !(HEADER_SIZE..=MAX_DSDT).contains(&length) {
        return Err(AcpiError::BadSignature {
            what: "DSDT",
            paddr: dsdt,
        });
    }
    Ok((dsdt, length))
}

/// The FADT's first 256 bytes (all mote reads) and its length.
fn read_fadt(memory: &impl PhysicalMemory, rsdp: u64) -> Result<([u8; 256], usize), AcpiError> {
    let fadt = find_table(memory, rsdp, b"FACP")?.ok_or(AcpiError::NoFadt)?;
    let mut bytes = [0u8; 256];
    let length = read_table(memory, fadt, "FADT", &mut bytes)?;
    Ok((bytes, length))
}

/// The DSDT's address: X_DSDT when the FADT has a non-zero one, else DSDT.
fn dsdt_address(fadt: &[u8], length: usize) -> u64 {
    let x_dsdt = if length >= FADT_X_DSDT + 8 {
        le_u64(fadt, FADT_X_DSDT)
    } else {
        0
    };
    match x_dsdt {
        0 => u64::from(le_u32(fadt, FADT_DSDT)),
        x_dsdt => x_dsdt,
    }
}

/// Checks the signature of the DSDT at `dsdt` and returns the length its
/// header claims.
fn dsdt_length(memory: &impl PhysicalMemory, dsdt: u64) -> Result<usize, AcpiError> {
    let mut header = [0u8; HEADER_SIZE];
    read(memory, "DSDT", dsdt, &mut header)?;
    if &header[..4] != b"DSDT" {
        return Err(AcpiError::BadSignature {
            what: "DSDT",
            paddr: dsdt,
        });
    }
    Ok(le_u32(&header, 4) as usize)
}

/// An I/O APIC from the MADT (ACPI 6.5 §5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u64,
    pub gsi_base: u32,
}

/// Most I/O APICs kept (QEMU microvm has one or two).
pub const MAX_IO_APICS: usize = 8;

/// The I/O APICs the MADT lists, and how many interrupt source overrides
/// it has (QEMU microvm gives none; mote does not remap ISA IRQs).
pub fn find_io_apics(
    memory: &impl PhysicalMemory,
    rsdp: u64,
) -> Result<(arrayvec::ArrayVec<IoApic, MAX_IO_APICS>, usize), AcpiError> {
    const MADT_ENTRIES: usize = 44;
    const ENTRY_IO_APIC: u8 = 1;
    const ENTRY_SOURCE_OVERRIDE: u8 = 2;
    let madt = find_table(memory, rsdp, b"APIC")?.ok_or(AcpiError::Unreadable {
        what: "MADT",
        paddr: 0,
    })?;
    let mut bytes = [0u8; 1024];
    let length = read_table(memory, madt, "MADT", &mut bytes)?;
    let mut io_apics = arrayvec::ArrayVec::new();
    let mut overrides = 0;
    let mut at = MADT_ENTRIES;
    while at + 2 <= length {
        let (kind, entry_length) = (bytes[at], usize::from(bytes[at + 1]));
        if entry_length < 2 || at + entry_length > length {
            break;
        }
        let entry = &bytes[at..at + entry_length];
        match kind {
            ENTRY_IO_APIC if entry_length >= 12 => {
                let _ = io_apics.try_push(IoApic {
                    id: entry[2],
                    address: u64::from(le_u32(entry, 4)),
                    gsi_base: le_u32(entry, 8),
                });
            }
            ENTRY_SOURCE_OVERRIDE => overrides += 1,
            _ => {}
        }
        at += entry_length;
    }
    Ok((io_apics, overrides))
}

/// Physical address of the first table with `signature`, through the XSDT
/// (revision ≥ 2) or the RSDT.
pub fn find_table(
    memory: &impl PhysicalMemory,
    rsdp: u64,
    signature: &[u8; 4],
) -> Result<Option<u64>, AcpiError> {
    let mut head = [0u8; 36];
    read(memory, "RSDP", rsdp, &mut head[..20])?;
    if &head[..8] != RSDP_SIGNATURE {
        return Err(AcpiError::BadSignature {
            what: "RSDP",
            paddr: rsdp,
        });
    }
    if checksum(&head[..20]) != 0 {
        return Err(AcpiError::BadChecksum {
            what: "RSDP",
            paddr: rsdp,
        });
    }
    let (root, entry_size) = if head[15] >= 2 {
        read(memory, "RSDP", rsdp, &mut head)?;
        if checksum(&head) != 0 {
            return Err(AcpiError::BadChecksum {
                what: "RSDP",
                paddr: rsdp,
            });
        }
        (le_u64(&head, 24), 8)
    } else {
        (u64::from(le_u32(&head, 16)), 4)
    };
    let root_signature: &[u8; 4] = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
    let mut root_bytes = [0u8; HEADER_SIZE + 8 * MAX_TABLES];
    let length = read_table(memory, root, "root table", &mut root_bytes)?;
    if &root_bytes[..4] != root_signature {
        return Err(AcpiError::BadSignature {
            what: "root table",
            paddr: root,
        });
    }
    for entry in root_bytes[HEADER_SIZE..length].chunks_exact(entry_size) {
        let table = if entry_size == 8 {
            le_u64(entry, 0)
        } else {
            u64::from(le_u32(entry, 0))
        };
        let mut table_signature = [0u8; 4];
        read(memory, "table", table, &mut table_signature)?;
        if &table_signature == signature {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// SLP_TYPa of the `\_S5` package in the DSDT: `_S5_` NameOp target followed
/// by PackageOp, PkgLength, NumElements and the first element (a ByteConst,
/// Zero, One or a small integer).
fn s5_sleep_type(memory: &impl PhysicalMemory, dsdt: u64) -> Result<u8, AcpiError> {
    let length = dsdt_length(memory, dsdt)?.clamp(HEADER_SIZE, MAX_DSDT);
    let mut s5 = None;
    let mut window = [0u8; 16];
    // Scan in overlapping windows so a match across a boundary is seen.
    let mut offset = HEADER_SIZE;
    while offset < length && s5.is_none() {
        let take = window.len().min(length - offset);
        read(memory, "DSDT", dsdt + offset as u64, &mut window[..take])?;
        if let Some(at) = window[..take].windows(4).position(|w| w == b"_S5_") {
            let mut tail = [0u8; 8];
            let at = dsdt + (offset + at + 4) as u64;
            read(memory, "DSDT", at, &mut tail)?;
            s5 = parse_s5_package(&tail);
            break;
        }
        offset += take.saturating_sub(3).max(1);
    }
    s5.ok_or(AcpiError::NoS5)
}

/// `12 <pkglen> <count> <first element>`; returns SLP_TYPa.
fn parse_s5_package(bytes: &[u8]) -> Option<u8> {
    const PACKAGE_OP: u8 = 0x12;
    const ZERO_OP: u8 = 0x00;
    const ONE_OP: u8 = 0x01;
    const BYTE_PREFIX: u8 = 0x0a;
    if bytes.first() != Some(&PACKAGE_OP) {
        return None;
    }
    // PkgLength: bits 6-7 of the lead byte count the extra bytes.
    let extra = usize::from(bytes.get(1)? >> 6);
    let element = 1 + 1 + extra + 1;
    match *bytes.get(element)? {
        ZERO_OP => Some(0),
        ONE_OP => Some(1),
        BYTE_PREFIX => bytes.get(element + 1).copied(),
        _ => None,
    }
}

/// Reads a whole table (header length, clamped to `out`) and checks its sum.
fn read_table(
    memory: &impl PhysicalMemory,
    paddr: u64,
    what: &'static str,
    out: &mut [u8],
) -> Result<usize, AcpiError> {
    read(memory, what, paddr, &mut out[..HEADER_SIZE])?;
    let length = le_u32(out, 4) as usize;
    if length < HEADER_SIZE {
        return Err(AcpiError::BadSignature { what, paddr });
    }
    if length > out.len() {
        // Longer than we need: verify nothing, use the prefix.
        read(memory, what, paddr, out)?;
        return Ok(out.len());
    }
    read(memory, what, paddr, &mut out[..length])?;
    if checksum(&out[..length]) != 0 {
        return Err(AcpiError::BadChecksum { what, paddr });
    }
    Ok(length)
}

fn read(
    memory: &impl PhysicalMemory,
    what: &'static str,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), AcpiError> {
    if paddr == 0 {
        return Err(AcpiError::Unreadable { what, paddr });
    }
    memory
        .read(paddr, buf)
        .map_err(|OutOfReach| AcpiError::Unreadable { what, paddr })
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap_or([0; 4]))
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeMemory(Vec<u8>);

    impl PhysicalMemory for FakeMemory {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
            let start = paddr as usize;
            let source = self.0.get(start..start + buf.len()).ok_or(OutOfReach)?;
            buf.copy_from_slice(source);
            Ok(())
        }
    }

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
        memory[at + 4..at + 8].copy_from_slice(&(length as u32).to_le_bytes());
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

        let aml = b"\x08_S5_\x12\x06\x04\x0a\x05\x00\x00\x00";
        table(&mut m, DSDT, b"DSDT", 36 + 40 + aml.len());
        m[DSDT + 36 + 40..DSDT + 36 + 40 + aml.len()].copy_from_slice(aml);
        m
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
    fn s5_package_encodings() {
        assert_eq!(parse_s5_package(b"\x12\x06\x04\x0a\x05"), Some(5));
        assert_eq!(parse_s5_package(b"\x12\x05\x04\x00\x00"), Some(0));
        assert_eq!(
            parse_s5_package(b"\x12\x45\x01\x04\x01"),
            Some(1),
            "2-byte PkgLength"
        );
        assert_eq!(parse_s5_package(b"\x13\x06\x04\x0a\x05"), None);
        assert_eq!(parse_s5_package(b"\x12"), None);
    }

    #[test]
    fn dsdt_through_the_fadt() {
        let memory = FakeMemory(qemu_microvm());
        let (address, length) = find_dsdt(&memory, RSDP as u64).unwrap();
        assert_eq!(address, DSDT as u64);
        assert_eq!(length, 36 + 40 + 13, "header, padding, the _S5_ package");
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
