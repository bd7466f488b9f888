//! virtio: finding virtio-mmio transports (from the kernel command line,
//! Linux and FreeBSD grammar, or from the ACPI DSDT's `LNRO0005` devices),
//! opening them and virtio-pci functions (`pci.rs`, over `crate::pci`),
//! the block and network drivers both transports share, and the
//! `virtio-drivers` HAL. Discovery is host-tested logic; the rest is the
//! hardware shell over `virtio-drivers` (docs/virtio-mmio.md,
//! docs/virtio-pci.md).

pub(crate) mod acpi;
pub(crate) mod cmdline;

#[cfg(target_os = "none")]
pub(crate) mod blk;
#[cfg(target_os = "none")]
mod hal;
#[cfg(target_os = "none")]
pub(crate) mod net;
pub(crate) mod net_buffers;
#[cfg(target_os = "none")]
pub(crate) mod pci;
#[cfg(target_os = "none")]
pub(crate) mod transport;

pub(crate) use mote_boot::protocol::report::Discovery;

/// One virtio-mmio transport window and its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioDevice {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) irq: u32,
    /// The optional platform-device id (`:<id>`), or ACPI `_UID`.
    pub(crate) id: Option<i64>,
    pub(crate) found_by: Discovery,
}
