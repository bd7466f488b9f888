//! What boot needs to know of a function before a driver takes it: its
//! BARs, its capabilities and its MSI-X table, each problem kept as a
//! reason. Only virtio functions are inspected (vendor 0x1af4, device IDs
//! 0x1000-0x107f: virtio v1.2 §4.1.2); sizing every other function's BARs
//! would cost accesses for nothing.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use super::bar::{BRIDGE_BARS, Bars, DEVICE_BARS, size_bars};
use super::capability::{
    CAPABILITY_MSIX, Capability, CapabilityError, InBar, Msix, capabilities, msix,
    virtio_common_config,
};
use super::config::{ConfigSpace, HEADER_TYPE_BRIDGE, HEADER_TYPE_DEVICE};
use super::enumerate::Function;
use super::shadow::{Known, Recording};

/// The PCI vendor ID of virtio devices (virtio v1.2 §4.1.2).
pub(crate) const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio's device IDs: 0x1000-0x103f transitional, 0x1040-0x107f modern.
const VIRTIO_DEVICES: core::ops::RangeInclusive<u16> = 0x1000..=0x107f;

pub(crate) fn is_virtio(function: &Function) -> bool {
    function.vendor == VIRTIO_VENDOR && VIRTIO_DEVICES.contains(&function.device)
}

/// A function with its BARs and capabilities.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inspected {
    pub(crate) function: Function,
    pub(crate) bars: Bars,
    pub(crate) capabilities: Vec<Capability>,
    /// The MSI-X capability when it has one that fits its BARs.
    pub(crate) msix: Option<Msix>,
    /// The virtio common configuration structure, where MSI-X vectors are
    /// assigned to queues (read here so that the driver's own reads of the
    /// same dwords are answered from the record).
    pub(crate) common_config: Option<InBar>,
    /// Why the capability walk stopped early, or MSI-X was refused.
    pub(crate) problems: Vec<CapabilityError>,
    /// The dwords read on the way, for a driver to be answered from.
    pub(crate) known: Known,
}

/// Sizes `function`'s BARs and walks its capabilities.
pub(crate) fn inspect(config: &mut impl ConfigSpace, function: Function) -> Inspected {
    let count = match function.header_type {
        HEADER_TYPE_DEVICE => DEVICE_BARS,
        HEADER_TYPE_BRIDGE => BRIDGE_BARS,
        _ => 0,
    };
    let bars = size_bars(config, function.bdf, count);
    let dwords = alloc::vec![(
        0,
        u32::from(function.device) << 16 | u32::from(function.vendor),
    )];
    let known = Known {
        dwords,
        bars: bars.raw,
    };
    let recording = Recording::new(config, function.bdf, known);
    let config = &recording;
    let (capabilities, stopped) = capabilities(config, function.bdf);
    let mut problems: Vec<CapabilityError> = stopped.into_iter().collect();
    let msix = capabilities
        .iter()
        .find(|capability| capability.id == CAPABILITY_MSIX)
        .and_then(|&capability| {
            msix(config, function.bdf, capability)
                .and_then(|msix| msix.check(function.bdf, &bars).map(|()| msix))
                .inspect_err(|&error| problems.push(error))
                .ok()
        });
    let common_config = virtio_common_config(config, function.bdf, &capabilities, &bars);
    let known = recording.into_known();
    Inspected {
        function,
        bars,
        capabilities,
        msix,
        common_config,
        problems,
        known,
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::Bdf;
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    fn virtio_net(config: &mut FakeConfigSpace, at: Bdf) -> Function {
        config.add(at, VIRTIO_VENDOR, 0x1041, 0x02_00_00, 0);
        config.set_capability_pointer(at, 0x40);
        config.set_bytes(at, 0x40, &[0x11, 0, 1, 0, 1, 0, 0, 0, 1, 8, 0, 0]);
        config.set_bar(at, 1, 0xfebd_1000, 0xffff_f000);
        Function {
            bdf: at,
            vendor: VIRTIO_VENDOR,
            device: 0x1041,
            class: 0x02_00_00,
            header_type: 0,
        }
    }

    #[test]
    fn a_virtio_function_with_msix() {
        let mut config = FakeConfigSpace::default();
        let function = virtio_net(&mut config, bdf(0, 3, 0));
        assert!(is_virtio(&function));
        let inspected = inspect(&mut config, function);
        assert_eq!(inspected.bars.bars.len(), 1);
        assert_eq!(inspected.msix.map(|msix| msix.vectors), Some(2));
        assert!(inspected.problems.is_empty());
    }

    #[test]
    fn msix_outside_its_bar_is_a_problem_not_a_table() {
        let mut config = FakeConfigSpace::default();
        let at = bdf(0, 3, 0);
        let function = virtio_net(&mut config, at);
        // The table in BAR2, which does not exist.
        config.set_bytes(at, 0x44, &[2]);
        let inspected = inspect(&mut config, function);
        assert_eq!(inspected.msix, None);
        assert_eq!(inspected.problems.len(), 1);
        assert!(!is_virtio(&Function {
            vendor: 0x8086,
            ..function
        }));
        assert!(!is_virtio(&Function {
            device: 0x1100,
            ..function
        }));
    }
}
