//! Just enough ACPI for a microVM: the RSDP (given or searched for,
//! [`rsdp`]), every table read and checksummed once into [`Acpi`], the S5
//! sleep register of a hardware-reduced machine, the I/O APICs of the MADT,
//! and one walk of the DSDT ([`DsdtFacts`]) for `\_S5` and the virtio
//! devices. Table layouts are in [`tables`]; docs/acpi.md says what VMMs
//! put in them. Everything reads through [`PhysicalMemory`], so it is all
//! tested on the host.
#![deny(unsafe_code)]

extern crate alloc;

pub(crate) mod aml;
pub(crate) mod dump;
pub(crate) mod resources;
pub(crate) mod rsdp;
mod tables;
pub(crate) mod vmm;

use alloc::vec;
use alloc::vec::Vec;

use arrayvec::ArrayVec;
use mote_boot::protocol::exit;
use mote_boot::start_info::PhysicalMemory;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

pub(crate) use self::rsdp::RootPointer;
use self::tables::{
    FADT_HW_REDUCED_ACPI, Fadt, HEADER_SIZE, MADT_IO_APIC, MADT_LOCAL_APIC, MADT_LOCAL_X2APIC,
    MADT_PROCESSOR_ENABLED, MADT_PROCESSOR_ONLINE_CAPABLE, MADT_SOURCE_OVERRIDE, MCFG_ALLOCATIONS,
    MadtHeader, MadtIoApic, MadtLocalApic, MadtLocalX2Apic, McfgAllocation, SdtHeader, checksum,
    read,
};
use crate::smp::Processors;
use crate::smp::processors::Source;
use crate::virtio::acpi::{DsdtScan, VIRTIO_MMIO_HID};

/// Largest DSDT read (Cloud Hypervisor's is the largest seen).
const MAX_DSDT: usize = 1024 * 1024;
/// Largest other table read.
const MAX_TABLE: usize = 64 * 1024;
/// Most tables a root table may list before the rest are ignored.
const MAX_TABLES: usize = 64;
/// Most I/O APICs kept (QEMU microvm has one or two).
pub(crate) const MAX_IO_APICS: usize = 8;
/// The `\_S5` object: the soft-off sleep state's package.
const S5_PATH: &[u8] = b"\\_S5_";

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
    #[error("ACPI has no MADT")]
    NoMadt,
    #[error("ACPI has no usable DSDT")]
    NoDsdt,
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

/// A table as read: its signature, where it was, and all of its bytes
/// (header included), checksum verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) signature: [u8; 4],
    pub(crate) paddr: u64,
    pub(crate) bytes: Vec<u8>,
}

/// Every table the RSDP leads to, each read and checksummed exactly once
/// at boot (the root table, each table it lists, and the DSDT the FADT
/// names); everything else reads these copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acpi {
    pub(crate) rsdp: RootPointer,
    /// The root table first, then the tables it lists, then the DSDT.
    pub(crate) tables: Vec<Table>,
    /// Tables that were listed but could not be used.
    pub(crate) unusable: Vec<AcpiError>,
}

impl Acpi {
    /// Reads everything reachable from the RSDP at `rsdp` (checked first).
    pub(crate) fn read(memory: &impl PhysicalMemory, rsdp: u64) -> Result<Self, AcpiError> {
        let rsdp = rsdp::check(memory, rsdp)?;
        let root_signature = if rsdp.root_is_xsdt { b"XSDT" } else { b"RSDT" };
        let root = read_whole_table(memory, rsdp.root, "root table", Some(root_signature))?;
        let entry_size = if rsdp.root_is_xsdt { 8 } else { 4 };
        let entries: Vec<u64> = root.bytes[HEADER_SIZE..]
            .chunks_exact(entry_size)
            .take(MAX_TABLES)
            .map(|entry| {
                entry
                    .iter()
                    .rev()
                    .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
            })
            .collect();
        let mut acpi = Self {
            rsdp,
            tables: vec![root],
            unusable: Vec::new(),
        };
        for paddr in entries {
            match read_whole_table(memory, paddr, "table", None) {
                Ok(table) => acpi.tables.push(table),
                Err(error) => acpi.unusable.push(error),
            }
        }
        if let Some((fadt, length)) = acpi.fadt() {
            let dsdt = dsdt_address(&fadt, length);
            match read_whole_table(memory, dsdt, "DSDT", Some(b"DSDT")) {
                Ok(table) => acpi.tables.push(table),
                Err(error) => acpi.unusable.push(error),
            }
        }
        Ok(acpi)
    }

    /// The RSDP's OEM id (`FIRECK` on Firecracker, `CLOUDH` on Cloud
    /// Hypervisor, `BOCHS ` on QEMU).
    pub(crate) fn oem_id(&self) -> &[u8; 6] {
        &self.rsdp.oem_id
    }

    /// The first table with `signature`.
    pub(crate) fn table(&self, signature: &[u8; 4]) -> Option<&Table> {
        self.tables
            .iter()
            .find(|table| &table.signature == signature)
    }

    /// The DSDT's AML (the table without its header).
    pub(crate) fn dsdt_aml(&self) -> Result<&[u8], AcpiError> {
        self.table(b"DSDT")
            .map(|table| &table.bytes[HEADER_SIZE..])
            .ok_or(AcpiError::NoDsdt)
    }

    /// The FADT (the fields past its length are zero) and its length.
    fn fadt(&self) -> Option<(Fadt, usize)> {
        let table = self.table(b"FACP")?;
        let mut fadt = Fadt::new_zeroed();
        let length = table.bytes.len().min(size_of::<Fadt>());
        fadt.as_mut_bytes()[..length].copy_from_slice(&table.bytes[..length]);
        Some((fadt, table.bytes.len()))
    }

    /// The S5 sleep register of a hardware-reduced FADT, with the SLP_TYP
    /// the DSDT's `\_S5` gave (`s5`, from [`DsdtFacts`]).
    pub(crate) fn sleep_control(&self, s5: Option<u8>) -> Result<SleepControl, AcpiError> {
        let (fadt, length) = self.fadt().ok_or(AcpiError::NoFadt)?;
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
        let sleep_type = s5.ok_or(AcpiError::NoS5)?;
        Ok(SleepControl {
            space,
            address,
            value: exit::sleep_control_value(sleep_type),
        })
    }

    /// The MADT's interrupt controller structures: `(type, bytes)` each,
    /// up to the first whose length is below 2 or runs past the table;
    /// the flag says whether the walk stopped at such an entry.
    fn madt_entries(&self) -> Result<(Vec<MadtEntry<'_>>, bool), AcpiError> {
        let bytes = &self.table(b"APIC").ok_or(AcpiError::NoMadt)?.bytes;
        let length = bytes.len();
        let mut entries = Vec::new();
        let mut at = size_of::<MadtHeader>();
        while at < length {
            let Some(&[kind, entry_length]) = bytes.get(at..at + 2) else {
                return Ok((entries, true));
            };
            let entry_length = usize::from(entry_length);
            if entry_length < 2 || at + entry_length > length {
                return Ok((entries, true));
            }
            entries.push((kind, &bytes[at..at + entry_length]));
            at += entry_length;
        }
        Ok((entries, false))
    }

    /// The I/O APICs the MADT lists, and how many interrupt source
    /// overrides it has (QEMU microvm gives none; mote does not remap ISA
    /// IRQs).
    pub(crate) fn io_apics(&self) -> Result<(ArrayVec<IoApic, MAX_IO_APICS>, usize), AcpiError> {
        let mut io_apics = ArrayVec::new();
        let mut overrides = 0;
        for (kind, entry) in self.madt_entries()?.0 {
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
        }
        Ok((io_apics, overrides))
    }

    /// The processors the MADT lists: its local APIC and x2APIC entries
    /// (ACPI 6.5 §5.2.12.2 and §5.2.12.12), enabled or online-capable as
    /// their flags say. An x2APIC entry for an id a local APIC entry had
    /// is a duplicate (ACPI lists ids below 255 as local APICs); a local
    /// APIC id of 0xff is no processor.
    pub(crate) fn processors(&self) -> Result<Processors, AcpiError> {
        let (entries, truncated) = self.madt_entries()?;
        let mut processors = Processors::new(Source::Madt);
        processors.truncated = truncated;
        for (kind, entry) in entries {
            let (apic_id, flags) = match kind {
                MADT_LOCAL_APIC => match MadtLocalApic::read_from_prefix(entry) {
                    Ok((apic, _)) if apic.apic_id != 0xff => {
                        (u32::from(apic.apic_id), apic.flags.get())
                    }
                    _ => continue,
                },
                MADT_LOCAL_X2APIC => match MadtLocalX2Apic::read_from_prefix(entry) {
                    Ok((apic, _)) => (apic.x2apic_id.get(), apic.flags.get()),
                    Err(_) => continue,
                },
                _ => continue,
            };
            processors.add(
                apic_id,
                flags & MADT_PROCESSOR_ENABLED != 0,
                flags & MADT_PROCESSOR_ONLINE_CAPABLE != 0,
            );
        }
        Ok(processors)
    }
}

impl Acpi {
    /// The ECAM windows the MCFG lists (none without an MCFG). An entry
    /// whose bus range is reversed, whose base is not 1 MiB-aligned, or
    /// whose window would wrap the address space is left out.
    pub(crate) fn ecam_windows(&self) -> Vec<EcamWindow> {
        let Some(table) = self.table(b"MCFG") else {
            return Vec::new();
        };
        let Some(allocations) = table.bytes.get(MCFG_ALLOCATIONS..) else {
            return Vec::new();
        };
        allocations
            .chunks_exact(size_of::<McfgAllocation>())
            .filter_map(|entry| McfgAllocation::read_from_bytes(entry).ok())
            .map(|entry| EcamWindow {
                base: entry.base.get(),
                segment: entry.segment.get(),
                start_bus: entry.start_bus,
                end_bus: entry.end_bus,
            })
            .filter(EcamWindow::is_sound)
            .collect()
    }
}

/// `DWordConst` of the compressed EISA IDs `PNP0A03` (PCI host bridge) and
/// `PNP0A08` (PCI Express root bridge), as `EisaId ()` puts them in AML
/// (ACPI 6.5 §19.6.35, §20.2.3; PCI Firmware 3.2 §4.1.5): the prefix both
/// share, then the last byte of each.
const PCI_HOST_BRIDGE_ID_PREFIX: [u8; 4] = [0x0c, 0x41, 0xd0, 0x0a];
const PCI_HOST_BRIDGE_ID_LAST: [u8; 2] = [0x03, 0x08];
/// The same IDs as AML strings (`String` prefix 0x0D, ACPI 6.5 §20.2.3),
/// as QEMU's GPEX host bridge names its `_HID` (hw/pci-host/gpex-acpi.c,
/// used by `microvm,pcie=on`): `\x0dPNP0A0`, then `3` or `8` and the NUL.
const PCI_HOST_BRIDGE_STRING_STEM: &[u8] = b"PNP0A0";
const STRING_PREFIX: u8 = 0x0d;

impl Acpi {
    /// Whether the DSDT names a PCI host bridge anywhere (a byte search:
    /// the `_HID` `PNP0A03` or `PNP0A08`, as an EISA ID or a string). Without one, mote does not
    /// probe the configuration ports. One skipping search
    /// ([`aml::find_any`]) for what the four IDs share, not a comparison
    /// at every byte for each: on QEMU microvm's 24-device DSDT that was
    /// 7 000 instructions, most of `pci_enumeration`.
    pub(crate) fn has_pci_host_bridge(&self) -> bool {
        self.dsdt_aml().is_ok_and(|aml| {
            let mut found = Vec::new();
            aml::find_any(
                aml,
                &[&PCI_HOST_BRIDGE_ID_PREFIX, PCI_HOST_BRIDGE_STRING_STEM],
                &mut found,
            );
            found.iter().any(|&at| {
                let eisa = aml[at..].starts_with(&PCI_HOST_BRIDGE_ID_PREFIX)
                    && aml
                        .get(at + PCI_HOST_BRIDGE_ID_PREFIX.len())
                        .is_some_and(|last| PCI_HOST_BRIDGE_ID_LAST.contains(last));
                let end = at + PCI_HOST_BRIDGE_STRING_STEM.len();
                let string = aml[at..].starts_with(PCI_HOST_BRIDGE_STRING_STEM)
                    && at > 0
                    && aml[at - 1] == STRING_PREFIX
                    && matches!(aml.get(end..end + 2), Some([b'3' | b'8', 0]));
                eisa || string
            })
        })
    }
}

/// The PCI host bridge as the DSDT describes it: the first device whose
/// `_HID` is `PNP0A08` or `PNP0A03` (an EISA ID or a string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PciHostBridge {
    /// Its `_CBA`: the ECAM base, read when the MCFG has no window (QEMU
    /// 7.2 `microvm,pcie=on`).
    pub(crate) ecam_base: Option<u64>,
    /// What its `_CRS` produces; `Err` says why it could not be read.
    pub(crate) resources: Result<resources::BridgeResources, &'static str>,
}

/// `PNP0A03` and `PNP0A08` as `EisaId ()` compresses them, read as the
/// little-endian integer the walk reports.
const PCI_HOST_BRIDGE_EISA: [u64; 2] = [0x030a_d041, 0x080a_d041];

#[derive(Default)]
struct HostBridgeSearch {
    found: Option<PciHostBridge>,
}

impl<'a> aml::Visitor<'a> for HostBridgeSearch {
    // Devices only: no `Name`'s path is built.
    const NAMES: Option<&'static [[u8; 4]]> = Some(&[]);

    fn device(&mut self, _path: aml::Path<'_>, objects: &aml::DeviceObjects<'a>) {
        let is_host_bridge = match objects.hid {
            Some(aml::Hid::Eisa(id)) => PCI_HOST_BRIDGE_EISA.contains(&id),
            Some(aml::Hid::String(text)) => text == b"PNP0A08" || text == b"PNP0A03",
            None => false,
        };
        if !is_host_bridge || self.found.is_some() {
            return;
        }
        self.found = Some(PciHostBridge {
            ecam_base: objects.cba,
            resources: objects
                .crs
                .ok_or("the host bridge has no _CRS buffer")
                .and_then(resources::bridge_resources),
        });
    }
}

impl Acpi {
    /// The DSDT's PCI host bridge, or `None` when it names none. A walk of
    /// only the devices whose bytes hold one of the IDs' stems; called
    /// only where the MCFG has no ECAM window or a BAR is unassigned.
    pub(crate) fn pci_host_bridge(&self) -> Option<PciHostBridge> {
        let aml = self.dsdt_aml().ok()?;
        let mut search = HostBridgeSearch::default();
        aml::walk_for(
            aml,
            &[&PCI_HOST_BRIDGE_ID_PREFIX, PCI_HOST_BRIDGE_STRING_STEM],
            &mut search,
        )
        .ok()?;
        search.found
    }
}

/// Bytes of ECAM space per bus: 32 devices x 8 functions x 4 KiB (PCI
/// Express Base 4.0 §7.2.2).
pub(crate) const ECAM_BUS_SIZE: u64 = 1 << 20;

/// An ECAM window of one PCI segment, as the MCFG gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EcamWindow {
    /// The address bus 0 would have (PCI Firmware 3.2 table 4-3).
    pub(crate) base: u64,
    pub(crate) segment: u16,
    pub(crate) start_bus: u8,
    pub(crate) end_bus: u8,
}

impl EcamWindow {
    /// Where the first decoded bus's space starts.
    pub(crate) fn start(&self) -> u64 {
        self.base + u64::from(self.start_bus) * ECAM_BUS_SIZE
    }

    /// Bytes from [`Self::start`] to the end of the last bus's space.
    pub(crate) fn size(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) * ECAM_BUS_SIZE
    }

    /// The window a host bridge's `_CBA` gives for the bus range of its
    /// `_CRS` (bus 0 alone when it names none), unless unsound.
    pub(crate) fn from_host_bridge(bridge: &PciHostBridge) -> Option<Self> {
        let (start_bus, end_bus) = bridge
            .resources
            .as_ref()
            .ok()
            .and_then(|resources| resources.buses)
            .unwrap_or((0, 0));
        Some(Self {
            base: bridge.ecam_base?,
            segment: 0,
            start_bus,
            end_bus,
        })
        .filter(Self::is_sound)
    }

    fn is_sound(&self) -> bool {
        self.start_bus <= self.end_bus
            && self.base.is_multiple_of(ECAM_BUS_SIZE)
            && self
                .base
                .checked_add((u64::from(self.end_bus) + 1) * ECAM_BUS_SIZE)
                .is_some()
    }
}

/// One interrupt controller structure of the MADT: its type and its bytes.
type MadtEntry<'a> = (u8, &'a [u8]);

/// What the boot needs from the DSDT, found in one walk: `\_S5`'s SLP_TYP
/// and the virtio-mmio transports.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DsdtFacts {
    pub(crate) s5: Option<u8>,
    pub(crate) virtio_mmio: DsdtScan,
}

impl<'a> aml::Visitor<'a> for DsdtFacts {
    const NAMES: Option<&'static [[u8; 4]]> = Some(&[*b"_S5_"]);

    fn device(&mut self, path: aml::Path<'_>, objects: &aml::DeviceObjects<'a>) {
        self.virtio_mmio.device(path, objects);
    }

    fn name(&mut self, path: aml::Path<'_>, data: aml::Data<'a>) {
        // SLP_TYPa of `\_S5`: the first element of its package.
        if let (S5_PATH, aml::Data::Package { first: Some(first) }) = (path.as_bytes(), data) {
            self.s5
                .get_or_insert(u8::try_from(first & 0x7).unwrap_or(0));
        }
    }
}

impl DsdtFacts {
    /// Walks `aml` once, skipping every Scope and Device whose bytes do
    /// not hold `LNRO0005`: they cannot contain a transport, and on a large
    /// DSDT (Cloud Hypervisor's PCI hierarchy) they are almost all of it.
    /// `\_S5` is read where ACPI puts the root's objects, the root's term
    /// list and `Scope (\)` (QEMU, Firecracker and Cloud Hypervisor all
    /// do), which the walk always reads; a `Name (\_S5_, …)` inside any
    /// other scope is seen only if that scope holds a transport. A
    /// second needle for it cost 1 100 instructions of the search (a
    /// 4-byte window instead of 8).
    pub(crate) fn scan(aml: &[u8]) -> Result<Self, AcpiError> {
        let mut facts = Self::default();
        // Room for QEMU microvm's 24 transports: one allocation, not five.
        facts.virtio_mmio.devices.reserve_exact(24);
        facts.virtio_mmio.unknown_opcodes = aml::walk_for(aml, &[VIRTIO_MMIO_HID], &mut facts)?;
        Ok(facts)
    }
}

/// Reads the table at `paddr` whole and checks its signature (when one is
/// `expected`), its length (a DSDT may be larger than other tables) and
/// its checksum.
fn read_whole_table(
    memory: &impl PhysicalMemory,
    paddr: u64,
    what: &'static str,
    expected: Option<&[u8; 4]>,
) -> Result<Table, AcpiError> {
    let mut header = SdtHeader::new_zeroed();
    read(memory, what, paddr, header.as_mut_bytes())?;
    let length = usize::try_from(header.length.get()).unwrap_or(usize::MAX);
    let limit = if &header.signature == b"DSDT" {
        MAX_DSDT
    } else {
        MAX_TABLE
    };
    if expected.is_some_and(|signature| signature != &header.signature)
        || !(HEADER_SIZE..=limit).contains(&length)
    {
        return Err(AcpiError::bad_signature(what, paddr));
    }
    let mut bytes = vec![0u8; length];
    read(memory, what, paddr, &mut bytes)?;
    if checksum(&bytes) != 0 {
        return Err(AcpiError::bad_checksum(what, paddr));
    }
    Ok(Table {
        signature: header.signature,
        paddr,
        bytes,
    })
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

/// An I/O APIC from the MADT (ACPI 6.5 §5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoApic {
    pub(crate) id: u8,
    pub(crate) address: u64,
    pub(crate) gsi_base: u32,
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use mote_boot::start_info::OutOfReach;

    use super::tables::RSDP_SIGNATURE;
    use super::*;

    /// Guest memory from address 0, readable where it has bytes (the RSDP
    /// search's tests use it too).
    pub(super) struct FakeMemory(pub(super) Vec<u8>);

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
        fix_checksum(&mut m[DSDT..DSDT + 36 + aml.len()], 9);
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

    /// What the boot does: read the tables, walk the DSDT, take S5.
    fn find_sleep_control(
        memory: &impl PhysicalMemory,
        rsdp: u64,
    ) -> Result<SleepControl, AcpiError> {
        let acpi = Acpi::read(memory, rsdp)?;
        let facts = DsdtFacts::scan(acpi.dsdt_aml()?)?;
        acpi.sleep_control(facts.s5)
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
        let acpi = Acpi::read(&memory, RSDP as u64).unwrap();
        assert_eq!(
            acpi.dsdt_aml(),
            Ok(&qemu_dsdt_aml()[..]),
            "the AML after the header"
        );
        let signatures: Vec<&[u8; 4]> = acpi.tables.iter().map(|t| &t.signature).collect();
        assert_eq!(signatures, [b"XSDT", b"APIC", b"FACP", b"DSDT"]);
        assert!(acpi.unusable.is_empty(), "{:?}", acpi.unusable);
        let mut bytes = qemu_microvm();
        bytes[DSDT] = b'X';
        let acpi = Acpi::read(&FakeMemory(bytes), RSDP as u64).unwrap();
        assert_eq!(acpi.dsdt_aml(), Err(AcpiError::NoDsdt));
        assert_eq!(
            acpi.unusable,
            [AcpiError::BadSignature {
                what: "DSDT",
                paddr: DSDT as u64
            }]
        );
    }

    #[test]
    fn io_apics_from_the_madt() {
        let memory = FakeMemory(qemu_microvm());
        let (io_apics, overrides) = Acpi::read(&memory, RSDP as u64)
            .unwrap()
            .io_apics()
            .unwrap();
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

    /// The QEMU microvm tables with the MADT's entries replaced by
    /// `entries` (its header kept, its length and checksum fixed).
    fn with_madt_entries(entries: &[&[u8]]) -> Acpi {
        let mut m = qemu_microvm();
        let mut madt = m[0x600..0x600 + 44].to_vec();
        for entry in entries {
            madt.extend_from_slice(entry);
        }
        assert!(0x600 + madt.len() <= DSDT);
        m[0x600..0x600 + madt.len()].copy_from_slice(&madt);
        table(&mut m, 0x600, b"APIC", madt.len());
        fix_checksum(&mut m[0x600..0x600 + madt.len()], 9);
        Acpi::read(&FakeMemory(m), RSDP as u64).unwrap()
    }

    fn local_apic(apic_id: u8, flags: u32) -> [u8; 8] {
        let mut entry = [0, 8, apic_id, apic_id, 0, 0, 0, 0];
        entry[4..].copy_from_slice(&flags.to_le_bytes());
        entry
    }

    fn local_x2apic(apic_id: u32, flags: u32) -> [u8; 16] {
        let mut entry = [0u8; 16];
        entry[..2].copy_from_slice(&[9, 16]);
        entry[4..8].copy_from_slice(&apic_id.to_le_bytes());
        entry[8..12].copy_from_slice(&flags.to_le_bytes());
        entry
    }

    #[test]
    fn processors_from_the_madt() {
        let memory = FakeMemory(qemu_microvm());
        let processors = Acpi::read(&memory, RSDP as u64)
            .unwrap()
            .processors()
            .unwrap();
        assert_eq!(processors.source, Source::Madt);
        assert_eq!(processors.apic_ids(), [0]);
        assert!(!processors.truncated);

        let io_apic = [1u8, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0];
        let acpi = with_madt_entries(&[
            &local_apic(0, 1),
            &io_apic,
            &local_apic(1, 1),
            &local_apic(2, 0b10),
            &local_apic(3, 0),
            &local_apic(0xff, 1),
            &local_x2apic(300, 1),
            &local_x2apic(301, 0b10),
        ]);
        let processors = acpi.processors().unwrap();
        assert_eq!(processors.apic_ids(), [0, 1, 300]);
        assert_eq!((processors.disabled, processors.online_capable), (3, 2));
        assert_eq!(acpi.io_apics().unwrap().0.len(), 1, "the walk is shared");
    }

    #[test]
    fn duplicate_apic_ids_in_the_madt_count_once() {
        let acpi = with_madt_entries(&[
            &local_apic(0, 1),
            &local_apic(1, 1),
            &local_x2apic(1, 1),
            &local_apic(0, 1),
        ]);
        let processors = acpi.processors().unwrap();
        assert_eq!(processors.apic_ids(), [0, 1]);
        assert_eq!(processors.duplicates, 2);
    }

    #[test]
    fn a_zero_or_overlong_madt_entry_ends_the_walk() {
        let zero = [0u8, 0, 5, 5, 1, 0, 0, 0];
        let acpi = with_madt_entries(&[&local_apic(0, 1), &zero, &local_apic(1, 1)]);
        let processors = acpi.processors().unwrap();
        assert_eq!(processors.apic_ids(), [0]);
        assert!(processors.truncated);
        let overlong = [0u8, 200, 1, 1, 1, 0, 0, 0];
        let acpi = with_madt_entries(&[&local_apic(0, 1), &overlong]);
        let processors = acpi.processors().unwrap();
        assert_eq!(processors.apic_ids(), [0]);
        assert!(processors.truncated);
        // Short entries (a 2-byte local APIC) are skipped, not misread.
        let short = [0u8, 2];
        let acpi = with_madt_entries(&[&short, &local_apic(4, 1), &[9u8, 4, 0, 0]]);
        assert_eq!(acpi.processors().unwrap().apic_ids(), [4]);
    }

    #[test]
    fn missing_s5() {
        let mut bytes = qemu_microvm();
        let at = bytes.windows(4).position(|w| w == b"_S5_").unwrap();
        bytes[at + 2] = b'4';
        let length = 36 + qemu_dsdt_aml().len();
        fix_checksum(&mut bytes[DSDT..DSDT + length], 9);
        assert_eq!(
            find_sleep_control(&FakeMemory(bytes), RSDP as u64),
            Err(AcpiError::NoS5)
        );
    }
}

/// The tables of real VMMs, dumped from booted guests with `mote.acpi=dump`
/// (kernel/tests/fixtures/acpi/README.md says how).
#[cfg(test)]
mod fixtures {
    use super::dump::fixture::DumpedMemory;
    use super::*;

    const CLOUD_HYPERVISOR: &str =
        include_str!("../../tests/fixtures/acpi/cloud-hypervisor-v54.dump");
    const FIRECRACKER: &str = include_str!("../../tests/fixtures/acpi/firecracker-v1.17.dump");
    const QEMU_MICROVM_PCIE: &str =
        include_str!("../../tests/fixtures/acpi/qemu-7.2-microvm-pcie.dump");

    fn read(dump: &str, rsdp: u64) -> (DumpedMemory, Acpi) {
        let memory = DumpedMemory::parse(dump).unwrap();
        let acpi = Acpi::read(&memory, rsdp).unwrap();
        assert!(acpi.unusable.is_empty(), "{:?}", acpi.unusable);
        (memory, acpi)
    }

    fn signatures(acpi: &Acpi) -> Vec<&[u8; 4]> {
        acpi.tables.iter().map(|table| &table.signature).collect()
    }

    /// Firecracker leaves `rsdp_paddr` 0: the search finds its RSDP; its
    /// DSDT lists the one virtio-mmio disk the guest was booted with.
    #[test]
    fn firecracker_tables() {
        let memory = DumpedMemory::parse(FIRECRACKER).unwrap();
        let found = rsdp::search(&memory).unwrap();
        assert_eq!((found.paddr, &found.oem_id), (0xe0000, b"FIRECK"));
        let (_, acpi) = read(FIRECRACKER, found.paddr);
        assert_eq!(
            vmm::Vmm::from_oem_id(acpi.oem_id()),
            Some(vmm::Vmm::Firecracker)
        );
        assert_eq!(
            signatures(&acpi),
            [b"XSDT", b"FACP", b"APIC", b"MCFG", b"DSDT"]
        );
        // Without --enable-pci, Firecracker still lists an ECAM window,
        // but its DSDT has no host bridge: mote does not enumerate.
        assert_eq!(acpi.ecam_windows().len(), 1);
        assert_eq!(acpi.ecam_windows()[0].base, 0xeec0_0000);
        assert!(!acpi.has_pci_host_bridge());
        let (io_apics, overrides) = acpi.io_apics().unwrap();
        assert_eq!(overrides, 0);
        assert_eq!(
            io_apics.as_slice(),
            [IoApic {
                id: 0,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        let processors = acpi.processors().unwrap();
        assert_eq!(processors.apic_ids(), [0], "booted with one vCPU");
        // Not hardware-reduced: no sleep register; the i8042 powers off.
        let facts = DsdtFacts::scan(acpi.dsdt_aml().unwrap()).unwrap();
        assert_eq!(
            acpi.sleep_control(facts.s5),
            Err(AcpiError::NoSleepControlRegister)
        );
        let scan = &facts.virtio_mmio;
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        let windows: Vec<(u64, u64, u32)> = scan
            .devices
            .iter()
            .map(|device| (device.base, device.size, device.irq))
            .collect();
        assert_eq!(windows, [(0xc000_1000, 0x1000, 5)]);
    }

    /// Cloud Hypervisor: sleep control in I/O space at 0x600, a PCI
    /// segment in the MCFG, and no virtio-mmio device in its DSDT.
    /// An MCFG table with `allocations` (base, segment, start, end).
    fn mcfg(allocations: &[(u64, u16, u8, u8)]) -> Acpi {
        let mut bytes = vec![0u8; MCFG_ALLOCATIONS];
        bytes[..4].copy_from_slice(b"MCFG");
        for &(base, segment, start, end) in allocations {
            bytes.extend_from_slice(&base.to_le_bytes());
            bytes.extend_from_slice(&segment.to_le_bytes());
            bytes.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        // A truncated allocation at the end is not one.
        bytes.extend_from_slice(&[0xff; 9]);
        Acpi {
            rsdp: RootPointer {
                paddr: 0xf_0000,
                oem_id: *b"BOCHS ",
                revision: 2,
                root: 0,
                root_is_xsdt: true,
            },
            tables: vec![Table {
                signature: *b"MCFG",
                paddr: 0x1000,
                bytes,
            }],
            unusable: Vec::new(),
        }
    }

    #[test]
    fn a_host_bridge_named_by_eisa_id_or_string() {
        let with_dsdt = |aml: &[u8]| {
            let mut acpi = mcfg(&[]);
            let mut bytes = vec![0u8; HEADER_SIZE];
            bytes[..4].copy_from_slice(b"DSDT");
            bytes.extend_from_slice(aml);
            acpi.tables.push(Table {
                signature: *b"DSDT",
                paddr: 0x2000,
                bytes,
            });
            acpi
        };
        // Name (_HID, EisaId ("PNP0A08")), as Cloud Hypervisor writes it.
        assert!(with_dsdt(b"\x08_HID\x0c\x41\xd0\x0a\x08").has_pci_host_bridge());
        // Name (_HID, "PNP0A08"), as QEMU's GPEX (microvm, pcie=on) does.
        assert!(with_dsdt(b"\x08_HID\x0dPNP0A08\0").has_pci_host_bridge());
        assert!(!with_dsdt(b"\x08_HID\x0dLNRO0005\0").has_pci_host_bridge());
        assert!(!mcfg(&[]).has_pci_host_bridge());
        // PNP0A03 both ways, and near misses: another EISA ID of the
        // family, the stem cut off by the end of the table or at its start
        // (no string prefix), a string without its NUL.
        assert!(with_dsdt(b"\x0c\x41\xd0\x0a\x03").has_pci_host_bridge());
        assert!(with_dsdt(b"\x08_CID\x0dPNP0A03\0\x08").has_pci_host_bridge());
        assert!(!with_dsdt(b"\x0c\x41\xd0\x0a\x05").has_pci_host_bridge());
        assert!(!with_dsdt(b"\x0c\x41\xd0\x0a").has_pci_host_bridge());
        assert!(!with_dsdt(b"PNP0A08\0").has_pci_host_bridge());
        assert!(!with_dsdt(b"\x0dPNP0A08").has_pci_host_bridge());
        assert!(!with_dsdt(b"\x0dPNP0A08X").has_pci_host_bridge());
    }

    #[test]
    fn ecam_windows_from_the_mcfg() {
        // q35: 256 buses at 0xb000_0000; a second segment from bus 0x10.
        let acpi = mcfg(&[
            (0xb000_0000, 0, 0, 0xff),
            (0x1_0000_0000, 1, 0x10, 0x1f),
            // Reversed bus range, misaligned base, a window that wraps.
            (0xc000_0000, 2, 5, 4),
            (0xc008_0000, 3, 0, 0),
            (u64::MAX - (1 << 20) + 1, 4, 0, 1),
        ]);
        let windows = acpi.ecam_windows();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].start(), 0xb000_0000);
        assert_eq!(windows[0].size(), 256 << 20);
        assert_eq!(windows[1].start(), 0x1_0100_0000);
        assert_eq!(windows[1].size(), 16 << 20);
        assert!(mcfg(&[]).ecam_windows().is_empty());
    }

    /// QEMU 7.2 `microvm,pcie=on`: no MCFG; the host bridge's `_CBA` and
    /// `_CRS` say where ECAM is and which windows BARs go in.
    #[test]
    fn qemu_microvm_pcie_tables() {
        let (_, acpi) = read(QEMU_MICROVM_PCIE, 0xf34d0);
        assert_eq!(signatures(&acpi), [b"XSDT", b"FACP", b"APIC", b"DSDT"]);
        assert!(acpi.ecam_windows().is_empty());
        assert!(acpi.has_pci_host_bridge());
        let bridge = acpi.pci_host_bridge().unwrap();
        assert_eq!(bridge.ecam_base, Some(0xe000_0000));
        let resources = bridge.resources.unwrap();
        assert_eq!(resources.buses, Some((0, 255)));
        assert_eq!(
            resources.memory,
            [
                resources::MemoryWindow {
                    base: 0xc000_0000,
                    size: 0x2000_0000
                },
                resources::MemoryWindow {
                    base: 0xc0_0000_0000,
                    size: 0x40_0000_0000
                },
            ]
        );
        assert!(resources.ignored.is_empty(), "{:?}", resources.ignored);
        // The boot's own walk is not misled by the bridge's methods.
        let facts = DsdtFacts::scan(acpi.dsdt_aml().unwrap()).unwrap();
        assert_eq!(facts.s5, Some(5));
    }

    #[test]
    fn cloud_hypervisor_tables() {
        let (_, acpi) = read(CLOUD_HYPERVISOR, 0xa0000);
        assert_eq!(
            vmm::Vmm::from_oem_id(acpi.oem_id()),
            Some(vmm::Vmm::CloudHypervisor)
        );
        assert_eq!(
            signatures(&acpi),
            [b"XSDT", b"FACP", b"APIC", b"MCFG", b"DSDT"]
        );
        let facts = DsdtFacts::scan(acpi.dsdt_aml().unwrap()).unwrap();
        assert_eq!(facts.s5, Some(5));
        assert_eq!(
            acpi.sleep_control(facts.s5),
            Ok(SleepControl {
                space: AddressSpace::Io,
                address: 0x600,
                value: 0x34
            })
        );
        assert!(facts.virtio_mmio.devices.is_empty());
        assert!(acpi.has_pci_host_bridge());
        let bridge = acpi.pci_host_bridge().unwrap();
        // Its host bridge has no _CBA (the MCFG says where ECAM is) and
        // produces one bus and a window below and above 4 GiB.
        assert_eq!(bridge.ecam_base, None, "{bridge:x?}");
        let resources = bridge.resources.unwrap();
        assert_eq!(resources.buses, Some((0, 0)));
        assert_eq!(
            resources.memory,
            [
                resources::MemoryWindow {
                    base: 0xc000_0000,
                    size: 0x2800_0000
                },
                resources::MemoryWindow {
                    base: 0x1_0000_0000,
                    size: 0x3ffe_ffef_0000
                },
            ]
        );
        // One segment, one bus: enumeration walks bus 0 only.
        assert_eq!(
            acpi.ecam_windows(),
            [EcamWindow {
                base: 0xe800_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0
            }]
        );
        // The full walk sees the same: the skipping walk lost nothing.
        let mut everything = DsdtFacts::default();
        aml::walk(acpi.dsdt_aml().unwrap(), &mut everything).unwrap();
        assert_eq!(everything.s5, facts.s5);
        assert_eq!(everything.virtio_mmio.devices, facts.virtio_mmio.devices);
    }

    /// A dump of one VMM's tables, one bit flipped: refused, not misread.
    #[test]
    fn corrupt_fixture_table_is_reported() {
        // The DSDT's OEM table id, "FCVMDSDT" -> "FCVMDSDU".
        let corrupt = FIRECRACKER.replacen("4643564d4453445400", "4643564d4453445500", 1);
        assert_ne!(corrupt, FIRECRACKER);
        let memory = DumpedMemory::parse(&corrupt).unwrap();
        let acpi = Acpi::read(&memory, 0xe0000).unwrap();
        assert_eq!(
            acpi.unusable,
            [AcpiError::BadChecksum {
                what: "DSDT",
                paddr: 0x9fd30
            }]
        );
    }
}
