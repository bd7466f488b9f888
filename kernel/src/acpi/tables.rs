//! ACPI table layouts and the walk from the RSDP to a table (ACPI 6.5
//! §5.2.5 RSDP, §5.2.6 system description table header, §5.2.7-8
//! RSDT/XSDT, §5.2.9 FADT, §5.2.12 MADT, §5.2.3.2 Generic Address
//! Structure). Fields are little-endian and unaligned; tables are read
//! through [`PhysicalMemory`], so the walk is tested on the host.
#![deny(unsafe_code)]

use mote_boot::start_info::{OutOfReach, PhysicalMemory};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::AcpiError;

pub(crate) const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Most tables an XSDT may list before we call it corrupt.
const MAX_TABLES: usize = 64;

/// Root System Description Pointer; revision 0 ends after `rsdt_address`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct Rsdp {
    pub(crate) signature: [u8; 8],
    pub(crate) checksum: u8,
    pub(crate) oem_id: [u8; 6],
    pub(crate) revision: u8,
    pub(crate) rsdt_address: U32,
    /// Revision 2 from here on.
    pub(crate) length: U32,
    pub(crate) xsdt_address: U64,
    pub(crate) extended_checksum: u8,
    pub(crate) reserved: [u8; 3],
}

/// Bytes of a revision-0 RSDP, covered by `checksum`.
pub(crate) const RSDP_V1_SIZE: usize = core::mem::offset_of!(Rsdp, length);

/// The header every system description table starts with.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct SdtHeader {
    pub(crate) signature: [u8; 4],
    pub(crate) length: U32,
    pub(crate) revision: u8,
    pub(crate) checksum: u8,
    pub(crate) oem_id: [u8; 6],
    pub(crate) oem_table_id: [u8; 8],
    pub(crate) oem_revision: U32,
    pub(crate) creator_id: U32,
    pub(crate) creator_revision: U32,
}

pub(crate) const HEADER_SIZE: usize = size_of::<SdtHeader>();

/// Generic Address Structure.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct GenericAddress {
    /// 0 system memory, 1 system I/O (ACPI 6.5 table 5.1).
    pub(crate) space_id: u8,
    pub(crate) bit_width: u8,
    pub(crate) bit_offset: u8,
    pub(crate) access_size: u8,
    pub(crate) address: U64,
}

/// The Fixed ACPI Description Table up to `HYPERVISOR_VENDOR_IDENTITY`
/// (ACPI 6.5 table 5.9); the blocks mote does not read are kept as bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct Fadt {
    pub(crate) header: SdtHeader,
    pub(crate) firmware_ctrl: U32,
    pub(crate) dsdt: U32,
    /// `INT_MODEL` … `CENTURY`, `IAPC_BOOT_ARCH`, reserved (offsets 44-111).
    pub(crate) legacy_fields: [u8; 68],
    pub(crate) flags: U32,
    pub(crate) reset_reg: GenericAddress,
    pub(crate) reset_value: u8,
    pub(crate) arm_boot_arch: U16,
    pub(crate) minor_version: u8,
    pub(crate) x_firmware_ctrl: U64,
    pub(crate) x_dsdt: U64,
    /// `X_PM1a_EVT_BLK` … `X_GPE1_BLK` (offsets 148-243).
    pub(crate) extended_blocks: [u8; 96],
    pub(crate) sleep_control_reg: GenericAddress,
    pub(crate) sleep_status_reg: GenericAddress,
    pub(crate) hypervisor_vendor_identity: U64,
}

/// FADT flag: the platform has no fixed hardware (PM1 blocks).
pub(crate) const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;

/// The MADT's fixed part; interrupt controller structures follow.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct MadtHeader {
    pub(crate) header: SdtHeader,
    pub(crate) local_apic_address: U32,
    pub(crate) flags: U32,
}

/// An I/O APIC structure of the MADT (ACPI 6.5 §5.2.12.3).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct MadtIoApic {
    pub(crate) kind: u8,
    pub(crate) length: u8,
    pub(crate) id: u8,
    pub(crate) reserved: u8,
    pub(crate) address: U32,
    pub(crate) gsi_base: U32,
}

pub(crate) const MADT_IO_APIC: u8 = 1;
pub(crate) const MADT_SOURCE_OVERRIDE: u8 = 2;

const _: () = assert!(RSDP_V1_SIZE == 20 && size_of::<Rsdp>() == 36);
const _: () = assert!(HEADER_SIZE == 36);
const _: () = assert!(size_of::<GenericAddress>() == 12);
const _: () = assert!(core::mem::offset_of!(Fadt, flags) == 112);
const _: () = assert!(core::mem::offset_of!(Fadt, x_dsdt) == 140);
const _: () = assert!(core::mem::offset_of!(Fadt, sleep_control_reg) == 244);
const _: () = assert!(size_of::<Fadt>() == 276);
const _: () = assert!(size_of::<MadtHeader>() == 44 && size_of::<MadtIoApic>() == 12);

/// Physical address of the first table with `signature`, through the XSDT
/// (revision ≥ 2) or the RSDT.
pub(crate) fn find_table(
    memory: &impl PhysicalMemory,
    rsdp_paddr: u64,
    signature: &[u8; 4],
) -> Result<Option<u64>, AcpiError> {
    let mut rsdp = Rsdp::new_zeroed();
    read(
        memory,
        "RSDP",
        rsdp_paddr,
        &mut rsdp.as_mut_bytes()[..RSDP_V1_SIZE],
    )?;
    let bad = |make: fn(&'static str, u64) -> AcpiError| make("RSDP", rsdp_paddr);
    if &rsdp.signature != RSDP_SIGNATURE {
        return Err(bad(AcpiError::bad_signature));
    }
    if checksum(&rsdp.as_bytes()[..RSDP_V1_SIZE]) != 0 {
        return Err(bad(AcpiError::bad_checksum));
    }
    let (root, entry_size, root_signature) = if rsdp.revision >= 2 {
        read(memory, "RSDP", rsdp_paddr, rsdp.as_mut_bytes())?;
        if checksum(rsdp.as_bytes()) != 0 {
            return Err(bad(AcpiError::bad_checksum));
        }
        (rsdp.xsdt_address.get(), 8, b"XSDT")
    } else {
        (u64::from(rsdp.rsdt_address.get()), 4, b"RSDT")
    };
    let mut root_bytes = [0u8; HEADER_SIZE + 8 * MAX_TABLES];
    let length = read_table(memory, root, "root table", &mut root_bytes)?;
    if &root_bytes[..4] != root_signature {
        return Err(AcpiError::bad_signature("root table", root));
    }
    for entry in root_bytes[HEADER_SIZE..length].chunks_exact(entry_size) {
        let table = match *entry {
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            _ => U64::read_from_bytes(entry).map_or(0, U64::get),
        };
        let mut table_signature = [0u8; 4];
        read(memory, "table", table, &mut table_signature)?;
        if &table_signature == signature {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// Reads a whole table (its header's length, clamped to `out`) and checks
/// its sum. Returns the bytes read.
pub(crate) fn read_table(
    memory: &impl PhysicalMemory,
    paddr: u64,
    what: &'static str,
    out: &mut [u8],
) -> Result<usize, AcpiError> {
    let mut header = SdtHeader::new_zeroed();
    read(memory, what, paddr, header.as_mut_bytes())?;
    let length = usize::try_from(header.length.get()).unwrap_or(usize::MAX);
    if length < HEADER_SIZE {
        return Err(AcpiError::bad_signature(what, paddr));
    }
    if length > out.len() {
        // Longer than we need: verify nothing, use the prefix.
        read(memory, what, paddr, out)?;
        return Ok(out.len());
    }
    read(memory, what, paddr, &mut out[..length])?;
    if checksum(&out[..length]) != 0 {
        return Err(AcpiError::bad_checksum(what, paddr));
    }
    Ok(length)
}

/// Reads `buf.len()` bytes at `paddr`; address 0 is never a table.
pub(crate) fn read(
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

/// The byte sum ACPI tables zero with their checksum field.
pub(crate) fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}
