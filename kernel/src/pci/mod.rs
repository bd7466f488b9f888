//! PCI: configuration space behind one trait ([`config::ConfigSpace`]),
//! the walk of the buses a host bridge decodes ([`enumerate`]), BAR sizing
//! and decoding ([`bar`]), and the capability list with MSI-X
//! ([`capability`]), and MSI-X messages and the order a table is written
//! in ([`msix`]). All of it is logic over that trait, tested on the host
//! against fake configuration spaces, hostile ones included; ECAM and port
//! access are the hardware shell (docs/virtio-pci.md).

pub(crate) mod assign;
pub(crate) mod bar;
pub(crate) mod capability;
pub(crate) mod config;
pub(crate) mod device;
pub(crate) mod enumerate;
#[cfg(test)]
pub(crate) mod fake;
#[cfg(target_os = "none")]
pub(crate) mod host;
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "used by the kernel's virtio-pci probe")
)]
pub(crate) mod msix;
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "used by the kernel's virtio-pci probe")
)]
pub(crate) mod shadow;
