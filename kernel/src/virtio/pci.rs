//! virtio over PCI: `virtio-drivers`' `PciTransport` over mote's
//! configuration space ([`HostBridge`]), opened once the function's BARs
//! are known to be assigned, inside the identity map, and decoded, with
//! bus mastering on (virtio 1.2 §4.1; docs/virtio-pci.md). A driver that
//! waits for interrupts has the function's MSI-X table programmed for the
//! boot CPU ([`MsixPlace::program`]) and its queues' vectors set through
//! the common configuration ([`QueueVectors`]), beside `virtio-drivers`,
//! which leaves them at `NO_VECTOR`.

extern crate alloc;

use alloc::vec::Vec;
use core::ptr::NonNull;

use mote_boot::start_info::memory_map::MemoryMap;
use virtio_drivers::PhysAddr;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
use volatile::VolatilePtr;

use super::hal::KernelHal;
use super::transport::{InOrder, Probed};
use crate::arch::x86_64::apic::{local, vectors};
use crate::arch::x86_64::interrupts;
use crate::memory::mmio;
use crate::memory::physical::IdentityMapped;
use crate::pci::capability::{InBar, MSIX_ENTRY_SIZE};
use crate::pci::config::{Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY, COMMAND_STATUS, ConfigSpace};
use crate::pci::device::Inspected;
use crate::pci::host::HostBridge;
use crate::pci::msix::{self, Destination, MsixError, NO_VECTOR, Plan, Table};
use crate::pci::shadow::Shadowed;

/// `virtio-drivers` reaches configuration space through this: the
/// function's dwords inspection read, and its BAR sizings, are answered
/// from the record (`pci::shadow`).
struct Access(Shadowed<HostBridge>);

fn bdf(device_function: DeviceFunction) -> Option<Bdf> {
    Bdf::new(
        device_function.bus,
        device_function.device,
        device_function.function,
    )
}

impl ConfigurationAccess for Access {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        bdf(device_function).map_or(u32::MAX, |bdf| {
            self.0.read(bdf, u16::from(register_offset) & !3)
        })
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        if let Some(bdf) = bdf(device_function) {
            self.0.write(bdf, u16::from(register_offset) & !3, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// Opens the virtio function `inspected` describes, or says in one log
/// line why not. Its memory BARs must be assigned; they are mapped
/// uncached (`memory::mmio`): above the identity map in pages of their
/// own, below it by turning the boot map's pages uncached (never over
/// memory `memory` lists). Memory decoding and bus mastering are turned
/// on here.
pub(crate) fn probe(
    bridge: HostBridge,
    inspected: &Inspected,
    mapped: IdentityMapped,
    memory: &MemoryMap,
) -> Option<Probed> {
    let at = inspected.function.bdf;
    let memory_bars = inspected.bars.bars.iter().filter(|bar| bar.is_memory());
    for bar in memory_bars {
        if !bar.is_assigned() {
            log::warn!("virtio-pci {at}: BAR{} is unassigned; skipped", bar.index);
            return None;
        }
        let uncached = if mapped.contains(bar.address, bar.size) {
            mmio::uncache_boot_map(bar.address, bar.size, memory)
        } else {
            mmio::map_uncached(bar.address, bar.size)
        };
        if let Err(error) = uncached {
            log::warn!(
                "virtio-pci {at}: BAR{} not mapped: {error}; skipped",
                bar.index
            );
            return None;
        }
    }
    let mut shadowed = Shadowed::new(bridge, at, inspected.known.clone());
    let msix = MsixPlace::new(bridge, inspected, &shadowed);
    let command = shadowed.read_u16(at, COMMAND_STATUS);
    shadowed.set_command(command | COMMAND_MEMORY | COMMAND_BUS_MASTER);
    let mut root = PciRoot::new(Access(shadowed));
    let device_function = DeviceFunction {
        bus: at.bus,
        device: at.device,
        function: at.function,
    };
    match PciTransport::new::<KernelHal, _>(&mut root, device_function) {
        Ok(transport) => {
            let kind = transport.device_type();
            let (mut transport, negotiation) = InOrder::new(SomeTransport::from(transport));
            // PciTransport::new found the common configuration too, so
            // inspection's record of it is there.
            if let Some(base) = inspected
                .common_config
                .and_then(|place| address_of(inspected, place))
            {
                transport = transport.pci_common_config(CommonConfig { base });
            }
            Some(Probed {
                transport,
                negotiation,
                kind,
                version: 2,
                vendor: None,
                msix,
            })
        }
        Err(error) => {
            log::warn!("virtio-pci {at}: {error}; skipped");
            None
        }
    }
}

/// The kind a function's PCI device ID names (virtio 1.2 §4.1.2.1), for
/// the report of a function that is not opened.
pub(crate) fn kind_of(device: u16) -> Option<DeviceType> {
    let id = match device {
        0x1040..=0x107f => device - 0x1040,
        // Transitional IDs (§4.1.2.3).
        0x1000 => 1,
        0x1001 => 2,
        0x1002 => 5,
        0x1003 => 3,
        0x1004 => 8,
        0x1005 => 4,
        0x1009 => 9,
        _ => return None,
    };
    DeviceType::try_from(u32::from(id)).ok()
}

/// The address of `place` in `inspected`'s BARs (checked to fit at
/// inspection; the BARs were checked to be mapped by [`probe`]).
fn address_of(inspected: &Inspected, place: InBar) -> Option<usize> {
    let bar = inspected.bars.get(place.bar)?;
    usize::try_from(bar.address + u64::from(place.offset)).ok()
}

/// A function's MSI-X table and common configuration, found at probe and
/// not yet used: MSI-X stays off until [`MsixPlace::program`].
pub(crate) struct MsixPlace {
    bridge: HostBridge,
    bdf: Bdf,
    /// The capability's offset and its first dword (ID, next, control).
    capability: u16,
    header: u32,
    table: MmioTable,
    entries: u16,
    common: CommonConfig,
}

impl MsixPlace {
    fn new(
        bridge: HostBridge,
        inspected: &Inspected,
        shadowed: &Shadowed<HostBridge>,
    ) -> Option<Self> {
        let found = inspected.msix?;
        let bdf = inspected.function.bdf;
        Some(Self {
            bridge,
            bdf,
            capability: found.offset,
            // Answered from inspection's record: no access.
            header: shadowed.read(bdf, found.offset),
            table: MmioTable {
                base: address_of(inspected, found.table)?,
            },
            entries: found.vectors,
            common: CommonConfig {
                base: address_of(inspected, inspected.common_config?)?,
            },
        })
    }

    /// Programs table entries for a driver of `queues` queues (one per
    /// queue when the table and the CPU vectors allow, else one shared),
    /// all to the boot CPU and left masked, then enables MSI-X. The queues'
    /// vectors are set by the returned [`QueueVectors`] when the driver
    /// sets the queues up; [`MsixLines::unmask`] lets the entries send.
    pub(crate) fn program(mut self, queues: u16) -> Result<(QueueVectors, MsixLines), MsixError> {
        let apic = local::init().ok_or(MsixError::NoLocalApic)?;
        let destination = if apic.is_x2apic() {
            Destination::X2Apic(apic.id())
        } else {
            Destination::XApic(u8::try_from(apic.id()).unwrap_or(u8::MAX))
        };
        let plan = Plan::new(self.entries, queues, interrupts::free_msi_slots())
            .ok_or(MsixError::NoVectorsLeft)?;
        let used = u8::try_from(plan.entries()).map_err(|_| MsixError::NoVectorsLeft)?;
        let first = interrupts::allocate_msi(used).ok_or(MsixError::NoVectorsLeft)?;
        let mut controls = Vec::with_capacity(usize::from(used));
        for entry in 0..plan.entries() {
            let slot = first + u8::try_from(entry).unwrap_or(0);
            let message = msix::message(destination, vectors::MSI_BASE + slot)?;
            controls.push(msix::program(&mut self.table, entry, message));
        }
        // One configuration write: the entries are masked by their own bits.
        self.bridge
            .write(self.bdf, self.capability, msix::enabled(self.header));
        log::info!(
            "virtio-pci {}: MSI-X {} of {} entries ({}) to APIC id {}, vectors {:#x}..={:#x}",
            self.bdf,
            plan.entries(),
            self.entries,
            match plan {
                Plan::PerQueue { .. } => "one per queue",
                Plan::Shared => "shared",
            },
            apic.id(),
            vectors::MSI_BASE + first,
            vectors::MSI_BASE + first + used - 1,
        );
        Ok((
            QueueVectors {
                common: self.common,
                plan,
                config_written: false,
            },
            MsixLines {
                table: self.table,
                controls,
            },
        ))
    }
}

/// The MSI-X table in a mapped BAR.
struct MmioTable {
    base: usize,
}

impl MmioTable {
    fn dword(&self, entry: u16, dword: u8) -> *mut u32 {
        let offset = u64::from(entry) * MSIX_ENTRY_SIZE + u64::from(dword) * 4;
        (self.base + usize::try_from(offset).unwrap_or(0)) as *mut u32
    }
}

impl Table for MmioTable {
    fn read(&self, entry: u16, dword: u8) -> u32 {
        // SAFETY: the table lies inside a memory BAR (checked at
        // inspection) that is mapped and decoded (`probe`); entries are
        // below the table's size (`Plan`), dwords below 4.
        unsafe { self.dword(entry, dword).read_volatile() }
    }

    fn write(&mut self, entry: u16, dword: u8, value: u32) {
        // SAFETY: as in `read`; the table is this driver's alone.
        unsafe { self.dword(entry, dword).write_volatile(value) }
    }
}

/// The entries a started driver's interrupts come through.
pub(crate) struct MsixLines {
    table: MmioTable,
    /// Vector control of entry `n`, mask bit clear.
    controls: Vec<u32>,
}

impl MsixLines {
    /// Lets every entry send; one write each.
    pub(crate) fn unmask(&mut self) {
        for (entry, &control) in (0u16..).zip(&self.controls) {
            msix::unmask(&mut self.table, entry, control);
        }
    }

    /// Stops every entry from sending; one write each.
    pub(crate) fn mask(&mut self) {
        for (entry, &control) in (0u16..).zip(&self.controls) {
            msix::mask(&mut self.table, entry, control);
        }
    }
}

/// Offsets in the common configuration structure (virtio 1.2 §4.1.4.3).
const COMMON_CONFIG_MSIX_VECTOR: usize = 0x10;
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_SIZE: usize = 0x18;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;
const COMMON_QUEUE_ENABLE: usize = 0x1c;
const COMMON_QUEUE_DESC: usize = 0x20;
const COMMON_QUEUE_DRIVER: usize = 0x28;
const COMMON_QUEUE_DEVICE: usize = 0x30;

/// A function's common configuration structure, beside `virtio-drivers`'
/// own view of it: the queue vectors ([`QueueVectors`]) and the queue
/// setup (`InOrder`) go through it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommonConfig {
    base: usize,
}

impl CommonConfig {
    fn register<T>(self, offset: usize) -> NonNull<T> {
        NonNull::new((self.base + offset) as *mut T).expect("a structure is not at 0")
    }

    fn write16(self, offset: usize, value: u16) {
        // SAFETY: the common configuration lies inside a memory BAR
        // (checked at inspection to hold the 0x38 bytes of its layout),
        // mapped and decoded (`probe`); `offset` is one of its 16-bit
        // registers.
        unsafe { VolatilePtr::new(self.register(offset)) }.write(value);
    }

    fn read16(self, offset: usize) -> u16 {
        // SAFETY: as in `write16`.
        unsafe { VolatilePtr::new(self.register(offset)) }.read()
    }

    fn write32(self, offset: usize, value: u32) {
        // SAFETY: as in `write16`; `offset` is a 32-bit register or a
        // 32-bit half of a 64-bit one.
        unsafe { VolatilePtr::new(self.register(offset)) }.write(value);
    }

    /// Sets queue `queue` up (selected already when `selected`), each
    /// 64-bit address written as two 32-bit halves. `virtio-drivers`
    /// writes them with one 8-byte access each, which Firecracker refuses
    /// (`pci: invalid data length for virtio write: len 8`, and the queue
    /// is never set up); the spec lets a driver write the two halves one
    /// after the other (virtio 1.2 §4.1.3.1), which every VMM takes.
    pub(crate) fn set_queue(
        self,
        selected: bool,
        queue: u16,
        size: u16,
        [descriptors, driver, device]: [PhysAddr; 3],
    ) {
        if !selected {
            self.write16(COMMON_QUEUE_SELECT, queue);
        }
        self.write16(COMMON_QUEUE_SIZE, size);
        for (offset, address) in [
            (COMMON_QUEUE_DESC, descriptors),
            (COMMON_QUEUE_DRIVER, driver),
            (COMMON_QUEUE_DEVICE, device),
        ] {
            let (low, high) = (address & 0xffff_ffff, address >> 32);
            self.write32(offset, u32::try_from(low).unwrap_or(0));
            self.write32(offset + 4, u32::try_from(high).unwrap_or(0));
        }
        self.write16(COMMON_QUEUE_ENABLE, 1);
    }
}

/// Sets the queues' MSI-X vectors as the driver sets the queues up:
/// `InOrder` calls [`QueueVectors::assign`] before each queue's
/// configuration is written, so the vector is in place before
/// `queue_enable` (virtio 1.2 §4.1.5.1.3).
pub(crate) struct QueueVectors {
    common: CommonConfig,
    plan: Plan,
    /// `config_msix_vector` was set since the last reset.
    config_written: bool,
}

impl QueueVectors {
    /// The device was reset: its vectors are `NO_VECTOR` again.
    pub(crate) fn reset(&mut self) {
        self.config_written = false;
    }

    /// Points queue `queue` at its table entry; `false` when the device
    /// read back `NO_VECTOR` (it could not map it). Configuration changes
    /// get no vector (mote does not act on them). Three accesses, four for
    /// the first queue.
    pub(crate) fn assign(&mut self, queue: u16) -> bool {
        if !self.config_written {
            self.common.write16(COMMON_CONFIG_MSIX_VECTOR, NO_VECTOR);
            self.config_written = true;
        }
        let entry = self.plan.entry_of(queue);
        self.common.write16(COMMON_QUEUE_SELECT, queue);
        self.common.write16(COMMON_QUEUE_MSIX_VECTOR, entry);
        entry == NO_VECTOR || self.common.read16(COMMON_QUEUE_MSIX_VECTOR) == entry
    }
}
