//! Device bring-up during boot: virtio-pci functions on PCI segment 0, and
//! virtio-mmio discovery (command line first; the DSDT when the command
//! line names none), a driver for each block device and the first network
//! device, and a ramdisk for each module.

extern crate alloc;

use alloc::vec::Vec;

use mote_boot::start_info::BootInfo;
use mote_boot::start_info::memory_map::MemoryMap;
use virtio_drivers::transport::DeviceType;

use crate::block::Ramdisk;
use crate::memory::mmio;
use crate::memory::physical::IdentityMapped;
use crate::net::service::Interrupt;
use crate::pci::assign::{self, Assigned};
use crate::pci::config::Bdf;
use crate::pci::device::{Inspected, inspect, is_virtio};
use crate::pci::enumerate::enumerate;
use crate::pci::host::{self as pci_host, HostBridge, Mechanism};
use crate::trace;
use crate::virtio::blk::VirtioBlock;
use crate::virtio::net::{self as virtio_net, VirtioNetDevice};
use crate::virtio::transport::{self, Probed, kind_name};
use crate::virtio::{MmioDevice, cmdline, pci as virtio_pci};

use super::platform::Platform;

/// A transport as the report shows it.
pub(super) enum TransportFact {
    Mmio {
        device: MmioDevice,
        kind: &'static str,
        version: u32,
    },
    Pci {
        bdf: Bdf,
        kind: &'static str,
        /// MSI-X table entries; 0 when it has no usable table.
        vectors: u16,
        access: Mechanism,
    },
}

/// Where a started device sits, for its log lines and its interrupt.
#[derive(Clone, Copy, Debug)]
pub(super) enum Place {
    Mmio(MmioDevice),
    Pci(Bdf),
}

impl Place {
    /// A number that tells devices apart (a MAC for a NIC without one).
    fn number(self) -> u64 {
        match self {
            Self::Mmio(device) => device.base,
            Self::Pci(bdf) => {
                u64::from(bdf.bus) << 8 | u64::from(bdf.device) << 3 | u64::from(bdf.function)
            }
        }
    }
}

impl core::fmt::Display for Place {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Mmio(device) => write!(f, "virtio-mmio {:#x}", device.base),
            Self::Pci(bdf) => write!(f, "virtio-pci {bdf}"),
        }
    }
}

#[derive(Default)]
pub(super) struct Devices {
    pub(super) transports: Vec<TransportFact>,
    /// Memory BARs mote gave addresses (the firmware left them at 0).
    pub(super) assigned_bars: Vec<Assigned>,
    pub(super) disks: Vec<VirtioBlock>,
    pub(super) ramdisks: Vec<Ramdisk>,
    /// The first network device, where it is, and its interrupt (more
    /// devices are not served).
    pub(super) net: Option<(VirtioNetDevice, Place, Interrupt)>,
}

/// Enumerates segment 0 when the platform has PCI, and inspects its virtio
/// functions (BARs, capabilities, MSI-X). Problems are logged and skipped.
fn pci_virtio_functions(
    platform: &Platform,
    mapped: IdentityMapped,
    memory: &MemoryMap,
) -> Option<(HostBridge, Vec<Inspected>, Vec<Assigned>)> {
    let (mut bridge, mut described) = HostBridge::find(platform.tables, mapped)?;
    if let Some((start, size)) = bridge.ecam_range()
        && let Err(error) = mmio::uncache_boot_map(start, size, memory)
    {
        log::warn!("PCI: ECAM at {start:#x} stays write-back: {error}");
    }
    let found = enumerate(&bridge, bridge.buses());
    for skipped in &found.skipped {
        log::warn!("PCI: {skipped}; not walked");
    }
    let mut virtio = Vec::new();
    for &function in found
        .functions
        .iter()
        .filter(|function| is_virtio(function))
    {
        let inspected = inspect(&mut bridge, function);
        for error in &inspected.bars.errors {
            log::warn!("PCI {}: {error}; BAR ignored", function.bdf);
        }
        for problem in &inspected.problems {
            log::warn!("PCI {problem}");
        }
        log::debug!(
            "PCI {}: virtio {:04x}, {} BARs ({} unassigned), {} capabilities, MSI-X {:?}",
            function.bdf,
            function.device,
            inspected.bars.bars.len(),
            inspected
                .bars
                .bars
                .iter()
                .filter(|bar| !bar.is_assigned())
                .count(),
            inspected.capabilities.len(),
            inspected.msix.map(|msix| msix.vectors)
        );
        virtio.push(inspected);
    }
    let mut assigned = Vec::new();
    let unassigned = virtio.iter().any(|inspected| {
        inspected
            .bars
            .bars
            .iter()
            .any(|bar| bar.is_memory() && !bar.is_assigned())
    });
    if unassigned {
        let described = described
            .take()
            .or_else(|| platform.tables.and_then(|tables| tables.pci_host_bridge()));
        match described.as_ref().map(|bridge| &bridge.resources) {
            Some(Ok(resources)) => {
                for ignored in &resources.ignored {
                    log::warn!("PCI host bridge _CRS: {ignored} ignored");
                }
                let (done, failed) = assign::assign(&mut bridge, &mut virtio, &resources.memory);
                for (bdf, error) in failed {
                    log::warn!("PCI {bdf}: {error}; not assigned");
                }
                assigned = done;
            }
            Some(Err(error)) => log::warn!("PCI host bridge: {error}; no BAR assigned"),
            None => {
                log::warn!("PCI: BARs are unassigned and the DSDT describes no host bridge windows")
            }
        }
    }
    log::info!(
        "PCI: {} functions on {} buses through {}, {} virtio; {} configuration accesses",
        found.functions.len(),
        found.buses.len(),
        bridge.mechanism(),
        virtio.len(),
        pci_host::accesses()
    );
    Some((bridge, virtio, assigned))
}

/// Finds transports, starts a driver for each block device (and the first
/// network device when `serve_network`), and wraps each module as a ramdisk.
pub(super) fn init(
    boot: &BootInfo,
    virtio_mmio_words: &str,
    platform: &Platform,
    mapped: IdentityMapped,
    serve_network: bool,
) -> Devices {
    let mut devices = Devices::default();
    let pci = {
        let _span = trace::span("pci_enumeration");
        pci_virtio_functions(platform, mapped, &boot.memory_map)
    };
    if let Some((bridge, functions, assigned)) = pci {
        devices.assigned_bars = assigned;
        for inspected in &functions {
            let bdf = inspected.function.bdf;
            let kind = virtio_pci::kind_of(inspected.function.device).map_or("other", kind_name);
            let vectors = inspected.msix.map_or(0, |msix| msix.vectors);
            devices.transports.push(TransportFact::Pci {
                bdf,
                kind,
                vectors,
                access: bridge.mechanism(),
            });
            if vectors == 0 {
                log::warn!(
                    "virtio-pci {bdf}: no usable MSI-X table; not started (INTx needs _PRT, which mote does not read)"
                );
                continue;
            }
            let _span = trace::span("virtio_pci_init");
            let Some(probed) = virtio_pci::probe(bridge, inspected, mapped, &boot.memory_map)
            else {
                continue;
            };
            start_driver(&mut devices, probed, Place::Pci(bdf), serve_network);
        }
        log::info!(
            "PCI: {} configuration accesses up to the drivers' start",
            pci_host::accesses()
        );
    }
    let found = {
        let _span = trace::span("virtio_discovery");
        discover(virtio_mmio_words, platform)
    };
    for device in found {
        let Some(probed) = transport::probe(device, mapped) else {
            continue;
        };
        devices.transports.push(TransportFact::Mmio {
            device,
            kind: kind_name(probed.kind),
            version: probed.version,
        });
        start_driver(&mut devices, probed, Place::Mmio(device), serve_network);
    }
    for module in &boot.modules {
        let bytes = usize::try_from(module.size)
            .ok()
            .filter(|_| mapped.contains(module.paddr, module.size))
            .and_then(|size| Some((usize::try_from(module.paddr).ok()?, size)));
        match bytes {
            Some((start, size)) => {
                // SAFETY: the module's range was validated against the
                // memory map, is identity mapped (checked above), and is
                // excluded from the frame allocator, so nothing writes it.
                let bytes = unsafe { core::slice::from_raw_parts(start as *const u8, size) };
                devices.ramdisks.push(Ramdisk::new(bytes));
            }
            None => log::warn!(
                "module {} at {:#x} is not mapped; no ramdisk",
                module.index,
                module.paddr
            ),
        }
    }
    devices
}

/// Starts the block driver, or the network driver for the first network
/// device when `serve_network`; other devices are left alone.
fn start_driver(devices: &mut Devices, mut probed: Probed, place: Place, serve_network: bool) {
    if probed.kind == DeviceType::Block {
        let _span = trace::span("virtio_blk_init");
        match VirtioBlock::new(probed.transport, &probed.negotiation) {
            Ok(disk) => devices.disks.push(disk),
            Err(error) => log::warn!("{place}: virtio-blk: {error}; skipped"),
        }
    } else if probed.kind == DeviceType::Network && serve_network && devices.net.is_none() {
        let _span = trace::span("virtio_net_init");
        let buffer_len = virtio_net::receive_buffer_len(probed.vendor);
        // A PCI function's MSI-X, programmed before the driver sets the
        // queues up (each queue's vector is set as it is).
        let lines = probed.msix.take().and_then(|msix| {
            msix.program(virtio_net::QUEUES)
                .inspect_err(|error| log::warn!("{place}: MSI-X not programmed: {error}"))
                .ok()
        });
        let lines = lines.map(|(vectors, lines)| {
            probed.transport.set_queue_vectors(vectors);
            lines
        });
        match VirtioNetDevice::new(
            probed.transport,
            &probed.negotiation,
            place.number(),
            buffer_len,
        ) {
            Ok(net) => {
                let refused = probed.negotiation.vectors_refused();
                let interrupt = match (place, lines) {
                    (Place::Mmio(device), _) => Interrupt::Gsi(device.irq),
                    (Place::Pci(_), Some(lines)) if refused == 0 => Interrupt::Msix(lines),
                    (Place::Pci(_), Some(_)) => {
                        log::warn!(
                            "{place}: the device took no MSI-X vector for queues {refused:#b}"
                        );
                        Interrupt::None
                    }
                    (Place::Pci(_), None) => Interrupt::None,
                };
                devices.net = Some((net, place, interrupt));
            }
            Err(error) => log::warn!("{place}: virtio-net: {error}; skipped"),
        }
    } else {
        // Debug, not info: a message filtered out is never formatted,
        // and under TCG the first use of the formatter costs.
        log::debug!("{place}: {} device not started", kind_name(probed.kind));
    }
}

/// `virtio_mmio_words`: the command line's `virtio_mmio.device` words
/// ([`crate::cmdline::Options::virtio_mmio_words`]).
fn discover(virtio_mmio_words: &str, platform: &Platform) -> Vec<MmioDevice> {
    let mut found = Vec::new();
    cmdline::virtio_mmio_devices_from_cmdline(
        virtio_mmio_words,
        |device| found.push(device),
        |bad| log::warn!("virtio_mmio.device={}: {}; skipped", bad.value, bad.error),
    );
    for (device, other) in cmdline::drop_overlapping(&mut found) {
        if device == other {
            log::debug!(
                "virtio_mmio.device at {:#x} named twice; driven once",
                device.base
            );
        } else {
            log::warn!(
                "virtio_mmio.device at {:#x} overlaps the one at {:#x}; skipped",
                device.base,
                other.base
            );
        }
    }
    if !found.is_empty() {
        return found;
    }
    // The DSDT was walked once, at acpi_init.
    let Some(scan) = platform.dsdt.as_ref().map(|facts| &facts.virtio_mmio) else {
        return found;
    };
    for skipped in &scan.skipped {
        log::warn!("ACPI {}: {}; skipped", skipped.path, skipped.reason);
    }
    if scan.unknown_opcodes > 0 {
        log::debug!(
            "DSDT: {} packages with AML this reader skips",
            scan.unknown_opcodes
        );
    }
    found.clone_from(&scan.devices);
    // QEMU gives the first -device the highest slot, and lists transports
    // from the top on the command line: number disks the same way whichever
    // way they were found. (Firecracker's slots grow upwards from its
    // command line's first device; the same order holds for them reversed,
    // which mote accepts: only QEMU's numbering is relied on by tests.)
    found.sort_by_key(|device| core::cmp::Reverse(device.base));
    found
}
