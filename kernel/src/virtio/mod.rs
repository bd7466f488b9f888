//! Finding virtio-mmio transports: from the kernel command line (Linux and
//! FreeBSD grammar) or from the ACPI DSDT (`LNRO0005` devices).

pub mod acpi_dsdt;
pub mod cmdline;

/// How a transport was found; printed in the boot report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    Cmdline,
    Acpi,
}

impl Discovery {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cmdline => "cmdline",
            Self::Acpi => "acpi",
        }
    }
}

/// One virtio-mmio transport window and its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
    /// The optional platform-device id (`:<id>`), or ACPI `_UID`.
    pub id: Option<i64>,
    pub found_by: Discovery,
}
