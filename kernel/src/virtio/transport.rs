//! Opening virtio-mmio transports found on the command line or in ACPI:
//! empty slots, bad magic and unsupported versions are skipped with one log
//! line each. `virtio-drivers`' `MmioTransport` owns the registers.

use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use super::MmioDevice;
use crate::memory::physical::IdentityMapped;

/// The smallest window that holds the registers and some config space.
const MIN_WINDOW: u64 = 0x100;

/// A transport that answered with a device behind it.
pub(crate) struct Probed {
    pub(crate) transport: MmioTransport<'static>,
    pub(crate) kind: DeviceType,
    pub(crate) version: u32,
}

/// The word the boot report uses for a device type.
pub(crate) fn kind_name(kind: DeviceType) -> &'static str {
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
pub(crate) fn probe(device: MmioDevice, mapped: IdentityMapped) -> Option<Probed> {
    let base = device.base;
    if device.size < MIN_WINDOW || !mapped.contains(base, device.size) {
        log::warn!(
            "virtio-mmio {base:#x}: window of {:#x} bytes is too small or not mapped; skipped",
            device.size
        );
        return None;
    }
    let header = NonNull::new(usize::try_from(base).ok()? as *mut VirtIOHeader)?;
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
