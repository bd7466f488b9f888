//! Which VMM wrote the ACPI tables, from the RSDP's OEM id. Only what a
//! VMM is known to do with it is decided from this (how to power off, the
//! Firecracker boot timer); docs/vmms.md lists each VMM's id and source.
#![deny(unsafe_code)]

/// A VMM mote knows by its ACPI OEM id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vmm {
    /// `FIRECK` (Firecracker `src/vmm/src/acpi/mod.rs`, `OEM_ID`).
    Firecracker,
    /// `CLOUDH` (Cloud Hypervisor `vmm/src/acpi.rs`).
    CloudHypervisor,
    /// `BOCHS ` (QEMU `include/hw/acpi/aml-build.h`, `ACPI_BUILD_APPNAME6`).
    Qemu,
}

impl Vmm {
    /// The VMM whose tables carry `oem_id`, if mote knows it.
    pub(crate) fn from_oem_id(oem_id: &[u8; 6]) -> Option<Self> {
        match oem_id {
            b"FIRECK" => Some(Self::Firecracker),
            b"CLOUDH" => Some(Self::CloudHypervisor),
            b"BOCHS " => Some(Self::Qemu),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oem_ids() {
        assert_eq!(Vmm::from_oem_id(b"FIRECK"), Some(Vmm::Firecracker));
        assert_eq!(Vmm::from_oem_id(b"CLOUDH"), Some(Vmm::CloudHypervisor));
        assert_eq!(Vmm::from_oem_id(b"BOCHS "), Some(Vmm::Qemu));
        assert_eq!(Vmm::from_oem_id(b"FIRECR"), None);
    }
}
