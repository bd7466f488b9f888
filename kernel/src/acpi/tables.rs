//! ACPI table layouts and the walk from the RSDP to a table (ACPI 6.5
//! §5.2.5 RSDP, §5.2.6 system description table header, §5.2.7-8
//! RSDT/XSDT, §5.2.9 FADT, §5.2.12 MADT, §5.2.3.2 Generic Address
//! Structure; PCI Firmware 3.2 §4.1.2 MCFG). Fields are little-endian and unaligned; tables are read
//! through [`PhysicalMemory`], so everything is tested on the host.
#![deny(unsafe_code)]

use mote_boot::start_info::{OutOfReach, PhysicalMemory};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::AcpiError;

pub(crate) const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";

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

/// One MCFG allocation (PCI Firmware 3.2 §4.1.2, table 4-3): an ECAM
/// window for `start_bus..=end_bus` of a segment. `base` is the address of
/// bus 0's space, even when `start_bus` is not 0.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct McfgAllocation {
    pub(crate) base: U64,
    pub(crate) segment: U16,
    pub(crate) start_bus: u8,
    pub(crate) end_bus: u8,
    pub(crate) reserved: U32,
}

/// The MCFG's header and 8 reserved bytes come before the allocations.
pub(crate) const MCFG_ALLOCATIONS: usize = HEADER_SIZE + 8;

/// A processor's local APIC structure of the MADT (ACPI 6.5 §5.2.12.2).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct MadtLocalApic {
    pub(crate) kind: u8,
    pub(crate) length: u8,
    pub(crate) processor_uid: u8,
    pub(crate) apic_id: u8,
    pub(crate) flags: U32,
}

/// A processor's local x2APIC structure of the MADT (ACPI 6.5 §5.2.12.12).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct MadtLocalX2Apic {
    pub(crate) kind: u8,
    pub(crate) length: u8,
    pub(crate) reserved: U16,
    pub(crate) x2apic_id: U32,
    pub(crate) flags: U32,
    pub(crate) processor_uid: U32,
}

pub(crate) const MADT_LOCAL_APIC: u8 = 0;
pub(crate) const MADT_IO_APIC: u8 = 1;
pub(crate) const MADT_SOURCE_OVERRIDE: u8 = 2;
pub(crate) const MADT_LOCAL_X2APIC: u8 = 9;
/// Local APIC flags (ACPI 6.5 table 5.23): usable now, or can be enabled
/// at run time (only meaningful when not enabled).
pub(crate) const MADT_PROCESSOR_ENABLED: u32 = 1 << 0;
pub(crate) const MADT_PROCESSOR_ONLINE_CAPABLE: u32 = 1 << 1;

const _: () = assert!(RSDP_V1_SIZE == 20 && size_of::<Rsdp>() == 36);
const _: () = assert!(HEADER_SIZE == 36);
const _: () = assert!(size_of::<GenericAddress>() == 12);
const _: () = assert!(core::mem::offset_of!(Fadt, flags) == 112);
const _: () = assert!(core::mem::offset_of!(Fadt, x_dsdt) == 140);
const _: () = assert!(core::mem::offset_of!(Fadt, sleep_control_reg) == 244);
const _: () = assert!(size_of::<Fadt>() == 276);
const _: () = assert!(size_of::<McfgAllocation>() == 16 && MCFG_ALLOCATIONS == 44);
const _: () = assert!(size_of::<MadtHeader>() == 44 && size_of::<MadtIoApic>() == 12);
const _: () = assert!(size_of::<MadtLocalApic>() == 8 && size_of::<MadtLocalX2Apic>() == 16);

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
