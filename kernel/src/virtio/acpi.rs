//! virtio-mmio transports described in the DSDT, as QEMU's microvm does
//! with ACPI on (`hw/i386/acpi-microvm.c`): `Device (VRnn)` with `_HID
//! "LNRO0005"`, `_UID` the slot, and `_CRS` holding `Memory32Fixed(base,
//! 0x200)` and `Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive)
//! {gsi}`. The AML is read by [`crate::acpi::aml`], the one reader.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{Discovery, MmioDevice};
#[cfg(any(test, not(target_os = "none")))]
use crate::acpi::aml::AmlError;
use crate::acpi::aml::{self, DeviceObjects, Hid};
use crate::acpi::resources;

/// The `_HID` Linux's virtio-mmio driver matches on ACPI systems
/// (`drivers/virtio/virtio_mmio.c`, `virtio_mmio_acpi_match`).
pub(crate) const VIRTIO_MMIO_HID: &[u8; 8] = b"LNRO0005";

/// A device that names itself `LNRO0005` but whose `_CRS` is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkippedDevice {
    pub(crate) path: String,
    pub(crate) reason: &'static str,
}

/// Everything found: transports, unusable virtio devices, and how many
/// packages were cut short by an opcode the reader does not know.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DsdtScan {
    pub(crate) devices: Vec<MmioDevice>,
    pub(crate) skipped: Vec<SkippedDevice>,
    pub(crate) unknown_opcodes: usize,
}

impl aml::Visitor<'_> for DsdtScan {
    // Devices only: no `Name`'s path is built.
    const NAMES: Option<&'static [[u8; 4]]> = Some(&[]);

    fn device(&mut self, path: aml::Path<'_>, objects: &DeviceObjects<'_>) {
        // As an array: an 8-byte compare, not a call of `memcmp`.
        let Some(Hid::String(hid)) = objects.hid else {
            return;
        };
        if !<&[u8; 8]>::try_from(hid).is_ok_and(|hid| hid == VIRTIO_MMIO_HID) {
            return;
        }
        let transport = match objects.crs {
            Some(template) => resources::window_and_interrupt(template),
            None => Err("no _CRS"),
        };
        match transport {
            Ok(window) => self.devices.push(MmioDevice {
                base: window.base,
                size: window.size,
                irq: window.irq,
                id: objects.uid.and_then(|uid| i64::try_from(uid).ok()),
                found_by: Discovery::Acpi,
            }),
            Err(reason) => self.skipped.push(SkippedDevice {
                path: path.to_string(),
                reason,
            }),
        }
    }
}

/// Finds every `LNRO0005` device in `aml` (the DSDT without its 36-byte
/// header), in table order. The boot finds them with `\\_S5` in one walk
/// (`crate::acpi::DsdtFacts`); tests and fuzz targets hold that walk
/// against this one.
#[cfg(any(test, not(target_os = "none")))]
pub(crate) fn virtio_mmio_devices_from_dsdt(aml: &[u8]) -> Result<DsdtScan, AmlError> {
    let mut scan = DsdtScan::default();
    scan.unknown_opcodes = aml::walk(aml, &mut scan)?;
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::aml::build::{device, name, scope, virtio_device};

    #[test]
    fn finds_qemu_microvm_transports() {
        // A COM1 device that is not virtio.
        let com1 = device("COM1", &[name("_HID", &[0x0c, 0x41, 0xd0, 0x05, 0x01])]);
        let aml = scope(
            b"_SB_",
            &[
                com1,
                virtio_device(22, 0xfeb0_2c00, 46),
                virtio_device(23, 0xfeb0_2e00, 47),
            ],
        );
        let scan = virtio_mmio_devices_from_dsdt(&aml).unwrap();
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert_eq!(scan.unknown_opcodes, 0);
        assert_eq!(
            scan.devices,
            [
                MmioDevice {
                    base: 0xfeb0_2c00,
                    size: 0x200,
                    irq: 46,
                    id: Some(22),
                    found_by: Discovery::Acpi
                },
                MmioDevice {
                    base: 0xfeb0_2e00,
                    size: 0x200,
                    irq: 47,
                    id: Some(23),
                    found_by: Discovery::Acpi
                },
            ]
        );
    }

    #[test]
    fn twenty_four_slots_like_qemu_default() {
        let slots: Vec<Vec<u8>> = (0..24u8)
            .map(|slot| {
                virtio_device(
                    slot,
                    0xfeb0_0000 + u32::from(slot) * 0x200,
                    24 + u32::from(slot),
                )
            })
            .collect();
        let devices = virtio_mmio_devices_from_dsdt(&scope(b"_SB_", &slots))
            .unwrap()
            .devices;
        assert_eq!(devices.len(), 24);
        assert_eq!(devices[23].irq, 47);
        assert_eq!(devices[23].base, 0xfeb0_2e00);
    }

    #[test]
    fn device_without_a_window_is_skipped_with_a_reason() {
        let mut hid = vec![0x0d];
        hid.extend_from_slice(b"LNRO0005\0");
        let aml = scope(b"_SB_", &[device("VR00", &[name("_HID", &hid)])]);
        let scan = virtio_mmio_devices_from_dsdt(&aml).unwrap();
        assert!(scan.devices.is_empty());
        assert_eq!(scan.skipped[0].reason, "no _CRS");
        assert_eq!(scan.skipped[0].path, "\\_SB_.VR00");
    }

    #[test]
    fn methods_regions_and_fields_are_skipped_not_misread() {
        // A GED-like device: OperationRegion, Field and Method before the
        // virtio device in the same scope.
        let mut ged = name(
            "_HID",
            &[0x0d, b'A', b'C', b'P', b'I', b'0', b'0', b'1', b'3', 0],
        );
        ged.extend([0x5b, 0x80]);
        ged.extend(b"EREG");
        ged.extend([0x00, 0x0c, 0x00, 0x00, 0xa0, 0xfe, 0x0a, 0x04]);
        // Field (EREG, ByteAcc, NoLock, WriteAsZeros) { ESEL, 8 }
        ged.extend([0x5b, 0x81, 0x0b]);
        ged.extend(b"EREG");
        ged.push(0x41);
        ged.extend(b"ESEL");
        ged.push(0x08);
        ged.extend([0x14, 0x08]);
        ged.extend(b"_EVT");
        ged.extend([0x01, 0xa3, 0xa3]);
        let aml = scope(
            b"_SB_",
            &[device("GED_", &[ged]), virtio_device(7, 0xfeb0_0e00, 12)],
        );
        let scan = virtio_mmio_devices_from_dsdt(&aml).unwrap();
        assert_eq!(scan.unknown_opcodes, 0);
        assert_eq!(scan.devices.len(), 1);
        assert_eq!(scan.devices[0].irq, 12);
    }
}
