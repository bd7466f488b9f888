//! The walk of a PCI segment: bus by bus from the first bus the host
//! bridge decodes, into the secondary bus of each type 1 header (a
//! bridge), never outside the bus range the segment has (MCFG's, or 0-255
//! for port access), never onto a bus twice. Functions 1-7 are read only
//! when function 0 says the device has them (PCI Local Bus 3.0 §6.2.1), so
//! a segment with one device on one bus costs about 32 + 4 accesses.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::ops::RangeInclusive;

use super::config::{
    BRIDGE_BUSES, Bdf, CLASS_REVISION, ConfigSpace, DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE,
    HEADER_MULTI_FUNCTION, HEADER_TYPE_BRIDGE, HEADER_TYPE_DWORD, NO_VENDOR, VENDOR_DEVICE,
};

/// A function that answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Function {
    pub(crate) bdf: Bdf,
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    /// Class, subclass, programming interface (bits 23:0 of dword 2).
    pub(crate) class: u32,
    /// The header layout (bits 6:0 of the header type byte).
    pub(crate) header_type: u8,
}

/// A bridge whose bus numbers cannot be followed; its bus is not walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BridgeError {
    #[error("bridge {bridge} forwards to bus {secondary:#04x}, outside the segment's buses")]
    OutsideSegment { bridge: Bdf, secondary: u8 },
    #[error("bridge {bridge} forwards to bus {secondary:#04x}, not below its own")]
    NotBelow { bridge: Bdf, secondary: u8 },
    #[error("bridge {bridge} forwards to bus {secondary:#04x}, which was already walked")]
    AlreadyWalked { bridge: Bdf, secondary: u8 },
    #[error(
        "bridge {bridge} has subordinate bus {subordinate:#04x} below its secondary {secondary:#04x}"
    )]
    Subordinate {
        bridge: Bdf,
        secondary: u8,
        subordinate: u8,
    },
}

/// What a walk found: every function, and the bridges it did not follow.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Enumeration {
    pub(crate) functions: Vec<Function>,
    pub(crate) skipped: Vec<BridgeError>,
    /// Buses walked, in order.
    pub(crate) buses: Vec<u8>,
}

/// Walks the segment whose host bridge decodes `buses`, starting at its
/// first bus.
pub(crate) fn enumerate(config: &impl ConfigSpace, buses: RangeInclusive<u8>) -> Enumeration {
    let mut found = Enumeration::default();
    if buses.is_empty() {
        // A window whose last bus comes before its first decodes none.
        return found;
    }
    let mut walked = [false; 256];
    let mut pending = Vec::new();
    pending.push(*buses.start());
    walked[usize::from(*buses.start())] = true;
    while let Some(bus) = pending.pop() {
        found.buses.push(bus);
        let before = pending.len();
        walk_bus(config, bus, &buses, &mut walked, &mut pending, &mut found);
        // Depth first, in the order the bridges were found.
        pending[before..].reverse();
    }
    found
}

fn walk_bus(
    config: &impl ConfigSpace,
    bus: u8,
    buses: &RangeInclusive<u8>,
    walked: &mut [bool; 256],
    pending: &mut Vec<u8>,
    found: &mut Enumeration,
) {
    for device in 0..DEVICES_PER_BUS {
        let Some(first) = Bdf::new(bus, device, 0) else {
            continue;
        };
        let Some(id) = present(config, first) else {
            continue;
        };
        let header = config.read_u8(first, HEADER_TYPE_DWORD + 2);
        let functions = if header & HEADER_MULTI_FUNCTION != 0 {
            FUNCTIONS_PER_DEVICE
        } else {
            1
        };
        for function in 0..functions {
            let Some(bdf) = Bdf::new(bus, device, function) else {
                continue;
            };
            let (id, header) = if function == 0 {
                (id, header)
            } else {
                let Some(id) = present(config, bdf) else {
                    continue;
                };
                (id, config.read_u8(bdf, HEADER_TYPE_DWORD + 2))
            };
            let header_type = header & !HEADER_MULTI_FUNCTION;
            let [vendor_low, vendor_high, device_low, device_high] = id.to_le_bytes();
            found.functions.push(Function {
                bdf,
                vendor: u16::from_le_bytes([vendor_low, vendor_high]),
                device: u16::from_le_bytes([device_low, device_high]),
                class: config.read(bdf, CLASS_REVISION) >> 8,
                header_type,
            });
            if header_type == HEADER_TYPE_BRIDGE {
                match follow_bridge(config, bdf, buses, walked) {
                    Ok(secondary) => pending.push(secondary),
                    Err(error) => found.skipped.push(error),
                }
            }
        }
    }
}

/// The vendor/device dword of `bdf`, when a function answers there.
fn present(config: &impl ConfigSpace, bdf: Bdf) -> Option<u32> {
    let id = config.read(bdf, VENDOR_DEVICE);
    let vendor = id.to_le_bytes();
    let vendor = u16::from_le_bytes([vendor[0], vendor[1]]);
    // Vendor 0 is not assigned either: a function reading as zeros is not
    // a device.
    (vendor != NO_VENDOR && vendor != 0).then_some(id)
}

/// The secondary bus of the bridge at `bridge`, when it is one to walk.
fn follow_bridge(
    config: &impl ConfigSpace,
    bridge: Bdf,
    buses: &RangeInclusive<u8>,
    walked: &mut [bool; 256],
) -> Result<u8, BridgeError> {
    let [_, secondary, subordinate, _] = config.read(bridge, BRIDGE_BUSES).to_le_bytes();
    if !buses.contains(&secondary) {
        return Err(BridgeError::OutsideSegment { bridge, secondary });
    }
    if secondary <= bridge.bus {
        return Err(BridgeError::NotBelow { bridge, secondary });
    }
    if subordinate < secondary {
        return Err(BridgeError::Subordinate {
            bridge,
            secondary,
            subordinate,
        });
    }
    let seen = &mut walked[usize::from(secondary)];
    if *seen {
        return Err(BridgeError::AlreadyWalked { bridge, secondary });
    }
    *seen = true;
    Ok(secondary)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    const VIRTIO: u16 = 0x1af4;

    /// Two devices on bus 0, one of them multi-function.
    fn flat() -> FakeConfigSpace {
        let mut config = FakeConfigSpace::default();
        config.add(bdf(0, 0, 0), 0x8086, 0x29c0, 0x06_00_00, 0);
        config.add(
            bdf(0, 2, 0),
            VIRTIO,
            0x1042,
            0x01_00_00,
            HEADER_MULTI_FUNCTION,
        );
        config.add(bdf(0, 2, 3), VIRTIO, 0x1041, 0x02_00_00, 0);
        config
    }

    fn addresses(found: &Enumeration) -> Vec<Bdf> {
        found
            .functions
            .iter()
            .map(|function| function.bdf)
            .collect()
    }

    #[test]
    fn finds_functions_and_reads_others_only_when_multi_function() {
        let config = flat();
        let found = enumerate(&config, 0..=0);
        assert_eq!(
            addresses(&found),
            [bdf(0, 0, 0), bdf(0, 2, 0), bdf(0, 2, 3)]
        );
        assert_eq!(found.functions[1].vendor, VIRTIO);
        assert_eq!(found.functions[1].device, 0x1042);
        assert_eq!(found.functions[1].class, 0x01_00_00);
        assert_eq!(found.buses, [0]);
        assert!(found.skipped.is_empty());
        // 32 vendor reads, 2 header + 2 class reads for the two devices,
        // 7 vendor reads, 1 header and 1 class read for functions 1-7.
        assert_eq!(config.accesses(), 32 + 4 + 7 + 2);
    }

    #[test]
    fn a_one_bus_segment_is_walked_once_whatever_its_number() {
        let mut config = FakeConfigSpace::default();
        config.add(bdf(0x10, 1, 0), VIRTIO, 0x1042, 0x01_00_00, 0);
        let found = enumerate(&config, 0x10..=0x10);
        assert_eq!(addresses(&found), [bdf(0x10, 1, 0)]);
        assert_eq!(found.buses, [0x10]);
        assert_eq!(config.accesses(), 32 + 2);
    }

    #[test]
    #[allow(
        clippy::reversed_empty_ranges,
        reason = "the hostile window under test"
    )]
    fn a_window_that_ends_before_it_starts_decodes_nothing() {
        let config = flat();
        let found = enumerate(&config, 1..=0);
        assert!(found.buses.is_empty() && found.functions.is_empty());
        assert_eq!(config.accesses(), 0);
    }

    #[test]
    fn walks_behind_bridges_depth_first() {
        let mut config = flat();
        config.add_bridge(bdf(0, 3, 0), 1, 2);
        config.add_bridge(bdf(0, 4, 0), 3, 3);
        config.add_bridge(bdf(1, 0, 0), 2, 2);
        config.add(bdf(2, 0, 0), VIRTIO, 0x1042, 0x01_00_00, 0);
        config.add(bdf(3, 0, 0), VIRTIO, 0x1041, 0x02_00_00, 0);
        let found = enumerate(&config, 0..=255);
        assert_eq!(found.buses, [0, 1, 2, 3]);
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
        assert!(addresses(&found).contains(&bdf(2, 0, 0)));
        assert!(addresses(&found).contains(&bdf(3, 0, 0)));
    }

    #[test]
    fn a_bridge_back_to_its_own_bus_is_skipped() {
        let mut config = flat();
        config.add_bridge(bdf(0, 3, 0), 0, 0);
        let found = enumerate(&config, 0..=255);
        assert_eq!(found.buses, [0]);
        assert_eq!(
            found.skipped,
            [BridgeError::NotBelow {
                bridge: bdf(0, 3, 0),
                secondary: 0
            }]
        );
    }

    #[test]
    fn a_bridge_loop_or_two_bridges_to_one_bus_walk_it_once() {
        let mut config = flat();
        config.add_bridge(bdf(0, 3, 0), 1, 1);
        config.add_bridge(bdf(0, 4, 0), 1, 1);
        // Behind bus 1, a bridge back up to bus 1.
        config.add_bridge(bdf(1, 0, 0), 1, 1);
        let found = enumerate(&config, 0..=255);
        assert_eq!(found.buses, [0, 1]);
        assert_eq!(
            found.skipped,
            [
                BridgeError::AlreadyWalked {
                    bridge: bdf(0, 4, 0),
                    secondary: 1
                },
                BridgeError::NotBelow {
                    bridge: bdf(1, 0, 0),
                    secondary: 1
                },
            ]
        );
    }

    #[test]
    fn absurd_bus_numbers_are_skipped() {
        let mut config = flat();
        // Outside what MCFG says the segment decodes.
        config.add_bridge(bdf(0, 3, 0), 0x80, 0x80);
        // Subordinate below secondary.
        config.add_bridge(bdf(0, 4, 0), 5, 2);
        config.add(bdf(0x80, 0, 0), VIRTIO, 0x1042, 0x01_00_00, 0);
        let found = enumerate(&config, 0..=0x0f);
        assert_eq!(found.buses, [0]);
        assert_eq!(
            found.skipped,
            [
                BridgeError::OutsideSegment {
                    bridge: bdf(0, 3, 0),
                    secondary: 0x80
                },
                BridgeError::Subordinate {
                    bridge: bdf(0, 4, 0),
                    secondary: 5,
                    subordinate: 2
                },
            ]
        );
    }

    #[test]
    fn a_chain_of_bridges_to_bus_255_ends() {
        let mut config = FakeConfigSpace::default();
        for bus in 0..=254u8 {
            config.add_bridge(bdf(bus, 0, 0), bus + 1, 255);
        }
        config.add_bridge(bdf(255, 0, 0), 0, 255);
        let found = enumerate(&config, 0..=255);
        assert_eq!(found.buses.len(), 256);
        assert_eq!(found.skipped.len(), 1);
    }
}
