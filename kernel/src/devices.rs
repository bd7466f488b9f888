//! Device bring-up during boot (virtio-mmio discovery, virtio-blk, `-initrd`
//! ramdisks) and, after the ready mark, the disk workloads the host can
//! check (`mote.blk=verify|bench`, `mote.blk.write=`).

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use mote_boot::{BootInfo, PhysicalMemory};

use crate::arch::physical::IdentityMapped;
use crate::block::{self, BlockDevice, Ramdisk};
use crate::drivers::virtio_blk::VirtioBlock;
use crate::drivers::virtio_mmio::{self, kind_name};
use crate::drivers::virtio_net::VirtioNetDevice;
use crate::options::Options;
use crate::tsc_frequency::cycles_to_ns;
use crate::virtio::{MmioDevice, acpi_dsdt, cmdline};
use crate::{acpi, console_println, tslog};

/// Bytes per request for verify and write.
const IO_CHUNK: usize = 64 * 1024;
/// Request sizes and queue depth of `mote.blk=bench`.
const BENCH_REQUEST_SIZES: [usize; 3] = [4096, 64 * 1024, 256 * 1024];
const BENCH_QUEUE_DEPTH: usize = 8;
/// Bytes read per request size (or the whole disk, if smaller).
const BENCH_BYTES: u64 = 64 * 1024 * 1024;

/// A transport as the report shows it.
pub struct TransportFact {
    pub device: MmioDevice,
    pub kind: &'static str,
    pub version: u32,
}

#[derive(Default)]
pub struct Devices {
    pub transports: Vec<TransportFact>,
    pub disks: Vec<VirtioBlock>,
    pub ramdisks: Vec<Ramdisk>,
    /// The first network device and its transport (more are not served).
    pub net: Option<(VirtioNetDevice, MmioDevice)>,
}

/// Finds transports (command line first; the DSDT when the command line
/// names none), starts a driver for each block device, and wraps each
/// module as a ramdisk.
pub fn init(boot: &BootInfo, mapped_end: u64, serve_network: bool) -> Devices {
    let mut devices = Devices::default();
    let found = {
        let _span = tslog::span("virtio_discovery");
        discover(boot)
    };
    for device in found {
        let Some(probed) = virtio_mmio::probe(device, mapped_end) else {
            continue;
        };
        devices.transports.push(TransportFact {
            device,
            kind: kind_name(probed.kind),
            version: probed.version,
        });
        if probed.kind == virtio_drivers::transport::DeviceType::Block {
            let _span = tslog::span("virtio_blk_init");
            match VirtioBlock::new(probed.transport) {
                Ok(disk) => devices.disks.push(disk),
                Err(error) => log::warn!("virtio-blk at {:#x}: {error}; skipped", device.base),
            }
        } else if probed.kind == virtio_drivers::transport::DeviceType::Network
            && serve_network
            && devices.net.is_none()
        {
            let _span = tslog::span("virtio_net_init");
            match VirtioNetDevice::new(probed.transport) {
                Ok(net) => devices.net = Some((net, device)),
                Err(error) => log::warn!("virtio-net at {:#x}: {error:?}; skipped", device.base),
            }
        } else {
            // Debug, not info: a message filtered out is never formatted,
            // and under TCG the first use of the formatter costs.
            log::debug!(
                "virtio-mmio {:#x}: {} device not started",
                device.base,
                kind_name(probed.kind)
            );
        }
    }
    for module in &boot.modules {
        let fits = module
            .paddr
            .checked_add(module.size)
            .is_some_and(|end| end <= mapped_end);
        match usize::try_from(module.size) {
            Ok(size) if fits => {
                // SAFETY: the module's range was validated against the
                // memory map, is identity mapped (checked above), and is
                // excluded from the frame allocator, so nothing writes it.
                let bytes = unsafe { core::slice::from_raw_parts(module.paddr as *const u8, size) };
                devices.ramdisks.push(Ramdisk::new(bytes));
            }
            _ => log::warn!("module at {:#x} is not mapped; no ramdisk", module.paddr),
        }
    }
    devices
}

fn discover(boot: &BootInfo) -> Vec<MmioDevice> {
    let mut found = Vec::new();
    cmdline::virtio_mmio_devices_from_cmdline(
        boot.cmdline(),
        |device| found.push(device),
        |bad| log::warn!("virtio_mmio.device={}: {}; skipped", bad.value, bad.error),
    );
    if !found.is_empty() {
        return found;
    }
    let Some(rsdp) = boot.rsdp else {
        return found;
    };
    let memory = IdentityMapped::boot();
    let (address, length) = match acpi::find_dsdt(&memory, rsdp) {
        Ok(dsdt) => dsdt,
        Err(error) => {
            log::warn!("no virtio-mmio devices from ACPI: {error}");
            return found;
        }
    };
    let mut table = vec![0u8; length];
    if memory.read(address, &mut table).is_err() {
        log::warn!("DSDT at {address:#x} is unreadable");
        return found;
    }
    match acpi_dsdt::virtio_mmio_devices_from_dsdt(&table[36..]) {
        Ok(scan) => {
            for skipped in &scan.skipped {
                log::warn!("ACPI {}: {}; skipped", skipped.path, skipped.reason);
            }
            if scan.unknown_opcodes > 0 {
                log::debug!(
                    "DSDT: {} packages with AML this reader skips",
                    scan.unknown_opcodes
                );
            }
            found = scan.devices;
            // QEMU gives the first -device the highest slot, and lists
            // transports from the top on the command line: number disks
            // the same way whichever way they were found.
            found.sort_by_key(|device| core::cmp::Reverse(device.base));
        }
        Err(error) => log::warn!("no virtio-mmio devices from ACPI: {error}"),
    }
    found
}

/// The device lines of the boot report, each after `prefix`.
pub fn write_lines(
    devices: &Devices,
    out: &mut dyn core::fmt::Write,
    prefix: &str,
) -> core::fmt::Result {
    for fact in &devices.transports {
        writeln!(
            out,
            "{prefix}virtio-mmio {:#x} irq {} {} v{} {}",
            fact.device.base,
            fact.device.irq,
            fact.kind,
            fact.version,
            fact.device.found_by.name()
        )?;
    }
    for (index, disk) in devices.disks.iter().enumerate() {
        writeln!(
            out,
            "{prefix}blk{index} {} sectors {}",
            disk.sectors(),
            if disk.read_only() { "ro" } else { "rw" }
        )?;
    }
    for (index, ramdisk) in devices.ramdisks.iter().enumerate() {
        writeln!(
            out,
            "{prefix}ramdisk{index} {} bytes {}",
            ramdisk.bytes().len(),
            block::probe_kind(ramdisk.bytes())
        )?;
    }
    Ok(())
}

/// The device lines of the boot report.
pub fn report(devices: &Devices) {
    crate::arch::console::with_writer(|out| {
        let _ = write_lines(devices, out, "mote: ");
    });
}

/// Runs the disk workloads the options ask for. Returns false if any
/// failed (a refused write included), for the power-off status.
pub fn run_workloads(devices: &mut Devices, options: &Options<'_>, tsc_hz: u64) -> bool {
    let mut ok = true;
    let mut buffer = vec![0u8; IO_CHUNK];
    if options.blk_verify {
        for (index, disk) in devices.disks.iter_mut().enumerate() {
            match block::crc32_of_device(disk, &mut buffer) {
                Ok(crc) => console_println!("mote: blk{index} crc32 {crc:08x}"),
                Err(error) => {
                    console_println!("mote: blk{index} verify failed: {error}");
                    ok = false;
                }
            }
        }
        for (index, ramdisk) in devices.ramdisks.iter().enumerate() {
            console_println!(
                "mote: ramdisk{index} crc32 {:08x}",
                crc32fast::hash(ramdisk.bytes())
            );
        }
    }
    if let Some((lba, sectors)) = options.blk_write {
        for (index, disk) in devices.disks.iter_mut().enumerate() {
            match block::write_pattern(disk, options.blk_seed, lba, sectors, &mut buffer) {
                Ok(crc) => console_println!(
                    "mote: blk{index} wrote {sectors} sectors at {lba} crc32 {crc:08x}"
                ),
                Err(error) => {
                    console_println!("mote: blk{index} write refused: {error}");
                    ok = false;
                }
            }
        }
    }
    if options.blk_bench {
        for (index, disk) in devices.disks.iter_mut().enumerate() {
            for request in BENCH_REQUEST_SIZES {
                let total = BENCH_BYTES.min(disk.sectors() * block::SECTOR_SIZE as u64);
                match disk.bench_read(request, BENCH_QUEUE_DEPTH, total) {
                    Ok(cycles) => {
                        let ns = cycles_to_ns(cycles, tsc_hz).max(1);
                        let mib = total as f64 / (1024.0 * 1024.0);
                        console_println!(
                            "mote: blk{index} bench read {request} bytes qd {BENCH_QUEUE_DEPTH}: {:.1} MiB/s ({mib:.0} MiB in {:.1} ms)",
                            mib * 1e9 / ns as f64,
                            ns as f64 / 1e6
                        );
                    }
                    Err(error) => {
                        console_println!(
                            "mote: blk{index} bench read {request} bytes failed: {error}"
                        );
                        ok = false;
                    }
                }
            }
        }
    }
    ok
}
