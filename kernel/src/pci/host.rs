//! The hardware shell: configuration space through ECAM (the MCFG's
//! window, PCI Express Base 4.0 §7.2.2) or configuration mechanism #1
//! (ports 0xCF8/0xCFC, PCI Local Bus 3.0 §3.2.2.3.2), with every access
//! counted (each is a VM exit). docs/virtio-pci.md says when each is used.

use core::fmt;
use core::ops::RangeInclusive;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::x86_64::cpu::Port;

use super::config::{Bdf, ConfigSpace, LEGACY_SPACE};
use crate::acpi::{Acpi, EcamWindow, PciHostBridge};
use crate::memory::physical::IdentityMapped;

/// Configuration mechanism #1's address and data ports.
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: the access is a configuration cycle.
const CONFIG_ENABLE: u32 = 1 << 31;

/// Configuration-space accesses since boot (a port access pair counts once).
static ACCESSES: AtomicU32 = AtomicU32::new(0);

/// Accesses so far.
pub(crate) fn accesses() -> u32 {
    ACCESSES.load(Ordering::Relaxed)
}

/// How configuration space is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Ecam,
    Ports,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ecam => "ecam",
            Self::Ports => "cf8",
        })
    }
}

/// Segment 0's configuration space. Copies reach the same space; they are
/// made only by [`HostBridge::find`], and boot is their one user.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostBridge {
    /// The address of bus 0's ECAM space, or `None` for the ports.
    ecam: Option<u64>,
    first_bus: u8,
    last_bus: u8,
}

impl HostBridge {
    /// Segment 0 when the DSDT declares a PCI host bridge: through its
    /// MCFG window when it has one inside the identity map, else through
    /// the window the host bridge's `_CBA` and `_CRS` bus range give (QEMU
    /// 7.2 `microvm,pcie=on` has no MCFG), else through the ports when
    /// they answer. No host bridge, no accesses at all (Firecracker lists
    /// an ECAM window even without `--enable-pci`). The host bridge's DSDT
    /// description comes back when it was read.
    pub(crate) fn find(
        tables: Option<&Acpi>,
        mapped: IdentityMapped,
    ) -> Option<(Self, Option<PciHostBridge>)> {
        let tables = tables.filter(|tables| tables.has_pci_host_bridge())?;
        let mut described = None;
        let mut window = tables
            .ecam_windows()
            .into_iter()
            .find(|window: &EcamWindow| window.segment == 0);
        if window.is_none() {
            let bridge = tables.pci_host_bridge();
            window = bridge.as_ref().and_then(EcamWindow::from_host_bridge);
            described = Some(bridge);
        }
        let found = Self::reach(window, mapped)?;
        Some((found, described.flatten()))
    }

    fn reach(window: Option<EcamWindow>, mapped: IdentityMapped) -> Option<Self> {
        if let Some(window) = window {
            if mapped.contains(window.start(), window.size()) {
                return Some(Self {
                    ecam: Some(window.base),
                    first_bus: window.start_bus,
                    last_bus: window.end_bus,
                });
            }
            log::warn!(
                "PCI: ECAM window at {:#x} is not identity mapped; trying ports",
                window.start()
            );
        }
        ports_answer().then_some(Self {
            ecam: None,
            first_bus: 0,
            last_bus: u8::MAX,
        })
    }

    pub(crate) fn mechanism(&self) -> Mechanism {
        if self.ecam.is_some() {
            Mechanism::Ecam
        } else {
            Mechanism::Ports
        }
    }

    /// The ECAM space of the buses it decodes: start and size; `None`
    /// for the ports.
    pub(crate) fn ecam_range(&self) -> Option<(u64, u64)> {
        let base = self.ecam?;
        let buses = u64::from(self.last_bus) - u64::from(self.first_bus) + 1;
        Some((base + (u64::from(self.first_bus) << 20), buses << 20))
    }

    pub(crate) fn buses(&self) -> RangeInclusive<u8> {
        self.first_bus..=self.last_bus
    }

    /// The ECAM address of `offset` of `bdf` (PCI Express Base 4.0 table
    /// 7-1: bus bits 27:20, device 19:15, function 14:12).
    fn ecam_address(base: u64, bdf: Bdf, offset: u16) -> u64 {
        base + (u64::from(bdf.bus) << 20)
            + (u64::from(bdf.device) << 15)
            + (u64::from(bdf.function) << 12)
            + u64::from(offset)
    }

    fn port_address(bdf: Bdf, offset: u16) -> u32 {
        CONFIG_ENABLE
            | u32::from(bdf.bus) << 16
            | u32::from(bdf.device) << 11
            | u32::from(bdf.function) << 8
            | u32::from(offset & 0xfc)
    }

    fn decodes(&self, bdf: Bdf, offset: u16) -> bool {
        self.buses().contains(&bdf.bus) && offset < LEGACY_SPACE && offset.is_multiple_of(4)
    }
}

/// Whether CONFIG_ADDRESS keeps what is written to it, as mechanism #1's
/// does (Linux's `pci_check_type1`); the old value is put back.
fn ports_answer() -> bool {
    let mut address: Port<u32> = Port::new(CONFIG_ADDRESS);
    // SAFETY: the DSDT declares a PCI host bridge, whose configuration
    // address register this is on x86; boot is its only user, and the old
    // value is restored.
    unsafe {
        let old = address.read();
        address.write(CONFIG_ENABLE);
        let kept = address.read() == CONFIG_ENABLE;
        address.write(old);
        kept
    }
}

impl ConfigSpace for HostBridge {
    fn read(&self, bdf: Bdf, offset: u16) -> u32 {
        if !self.decodes(bdf, offset) {
            return u32::MAX;
        }
        ACCESSES.fetch_add(1, Ordering::Relaxed);
        match self.ecam {
            Some(base) => {
                let address = Self::ecam_address(base, bdf, offset) as *const u32;
                // SAFETY: the address is inside the MCFG's window for a bus
                // it decodes (checked above), identity mapped (checked by
                // `find`), and dword-aligned; configuration reads have no
                // side effects on the memory model.
                unsafe { address.read_volatile() }
            }
            None => {
                let mut address: Port<u32> = Port::new(CONFIG_ADDRESS);
                let mut data: Port<u32> = Port::new(CONFIG_DATA);
                // SAFETY: mechanism #1 answered in `find`; boot is its only
                // user (no interrupt handler touches these ports), so the
                // address and data accesses are not interleaved.
                unsafe {
                    address.write(Self::port_address(bdf, offset));
                    data.read()
                }
            }
        }
    }

    fn write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if !self.decodes(bdf, offset) {
            return;
        }
        ACCESSES.fetch_add(1, Ordering::Relaxed);
        match self.ecam {
            Some(base) => {
                let address = Self::ecam_address(base, bdf, offset) as *mut u32;
                // SAFETY: as for `read`; the caller chose the register and
                // the value (the PCI logic writes only BARs, command and
                // MSI-X control).
                unsafe { address.write_volatile(value) }
            }
            None => {
                let mut address: Port<u32> = Port::new(CONFIG_ADDRESS);
                let mut data: Port<u32> = Port::new(CONFIG_DATA);
                // SAFETY: as for `read`.
                unsafe {
                    address.write(Self::port_address(bdf, offset));
                    data.write(value);
                }
            }
        }
    }
}
