//! virtio over PCI: `virtio-drivers`' `PciTransport` over mote's
//! configuration space ([`HostBridge`]), opened once the function's BARs
//! are known to be assigned, inside the identity map, and decoded, with
//! bus mastering on (virtio 1.2 §4.1; docs/virtio-pci.md).

use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};

use super::hal::KernelHal;
use super::transport::{InOrder, Probed};
use crate::memory::mmio;
use crate::memory::physical::IdentityMapped;
use crate::pci::config::{Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY, COMMAND_STATUS, ConfigSpace};
use crate::pci::device::Inspected;
use crate::pci::host::HostBridge;
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
/// line why not. Its memory BARs must be assigned; those above the
/// identity map are mapped uncached (`memory::mmio`). Memory decoding and
/// bus mastering are turned on here.
pub(crate) fn probe(
    bridge: HostBridge,
    inspected: &Inspected,
    mapped: IdentityMapped,
) -> Option<Probed> {
    let at = inspected.function.bdf;
    let memory_bars = inspected.bars.bars.iter().filter(|bar| bar.is_memory());
    for bar in memory_bars {
        if !bar.is_assigned() {
            log::warn!("virtio-pci {at}: BAR{} is unassigned; skipped", bar.index);
            return None;
        }
        if mapped.contains(bar.address, bar.size) {
            continue;
        }
        if let Err(error) = mmio::map_uncached(bar.address, bar.size) {
            log::warn!(
                "virtio-pci {at}: BAR{} not mapped: {error}; skipped",
                bar.index
            );
            return None;
        }
    }
    let mut shadowed = Shadowed::new(bridge, at, inspected.known.clone());
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
            let (transport, negotiation) = InOrder::new(SomeTransport::from(transport));
            Some(Probed {
                transport,
                negotiation,
                kind,
                version: 2,
                vendor: None,
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
