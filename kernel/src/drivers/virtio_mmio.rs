//! Probing virtio-mmio transports found on the command line or in ACPI:
//! empty slots, bad magic and unsupported versions are skipped with one log
//! line each.

use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::virtio::MmioDevice;

/// The smallest window that holds the registers and some config space.
const MIN_WINDOW: u64 = 0x100;

/// A transport that answered with a device behind it.
pub struct Probed {
    pub device: MmioDevice,
    pub transport: MmioTransport<'static>,
    pub kind: DeviceType,
    pub version: u32,
}

/// The word the boot report uses for a device type.
pub fn kind_name(kind: DeviceType) -> &'static str {
    match kind {
        DeviceType::Network => "network",
        DeviceType::Block => "block",
        DeviceType::Console => "console",
        DeviceType::EntropySource => "entropy",
        DeviceType::MemoryBallooning => "balloon",
        DeviceType::ScsiHost => "scsi",
        DeviceType::GPU => "gpu",
        DeviceType::Input => "input",
        DeviceType::Socket => "vsock",
        _ => "other",
    }
}

/// Opens the transport at `device`, or says in one log line why not.
/// `mapped_end` is the end of the identity map.
pub fn probe(device: MmioDevice, mapped_end: u64) -> Option<Probed> {
    let base = device.base;
    if device.size < MIN_WINDOW
        || base
            .checked_add(device.size)
            .is_none_or(|end| end > mapped_end)
    {
        log::warn!(
            "virtio-mmio {base:#x}: window of {:#x} bytes is too small or not mapped; skipped",
            device.size
        );
        return None;
    }
    let header = NonNull::new(base as *mut VirtIOHeader)?;
    let size = usize::try_from(device.size).ok()?;
    // SAFETY: the window is inside the identity map, MMIO, and described by
    // the VMM as a virtio-mmio transport; this is its only user.
    match unsafe { MmioTransport::new(header, size) } {
        Ok(transport) => {
            let version = match transport.version() {
                MmioVersion::Legacy => 1,
                MmioVersion::Modern => 2,
            };
            let kind = transport.device_type();
            Some(Probed {
                device,
                transport,
                kind,
                version,
            })
        }
        Err(MmioError::InvalidDeviceID(_)) => {
            log::debug!("virtio-mmio {base:#x}: empty slot (device ID 0); skipped");
            None
        }
        Err(error) => {
            log::warn!("virtio-mmio {base:#x}: {error}; skipped");
            None
        }
    }
}
