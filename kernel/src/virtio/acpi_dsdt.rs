//! virtio-mmio transports described in the DSDT, as QEMU's microvm does with
//! ACPI on (`hw/i386/acpi-microvm.c`): `Device (VRnn)` with `_HID
//! "LNRO0005"`, `_UID` the slot, and `_CRS` holding `Memory32Fixed(base,
//! 0x200)` and `Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive)
//! {gsi}`.
//!
//! The rust-osdev AML interpreters (`aml` 0.16, `acpi` 6 and 7) need nightly
//! Rust, which mote does not use, so this is a small reader for the static
//! AML subset VMMs emit (ACPI 6.5 §20): `Scope`, `Device` and `Name` with
//! constant data are read; `Method`, `Field` and every other object with a
//! PkgLength is skipped whole; an opcode it does not know ends only the
//! package it is in. Nothing is executed.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{Discovery, MmioDevice};

/// The `_HID` Linux's virtio-mmio driver matches on ACPI systems.
pub const VIRTIO_MMIO_HID: &str = "LNRO0005";
/// Deepest Scope/Device nesting followed (QEMU's is 2).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsdtError {
    /// A PkgLength or string runs past the end of the table.
    Truncated { offset: usize },
}

impl fmt::Display for DsdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset } => {
                write!(f, "the DSDT's AML is truncated at offset {offset:#x}")
            }
        }
    }
}

/// A device that names itself `LNRO0005` but whose `_CRS` is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDevice {
    pub path: String,
    pub reason: &'static str,
}

/// Everything found: transports, unusable virtio devices, and how many
/// packages were cut short by an opcode the reader does not know.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DsdtScan {
    pub devices: Vec<MmioDevice>,
    pub skipped: Vec<SkippedDevice>,
    pub unknown_opcodes: usize,
}

/// Finds every `LNRO0005` device in `aml` (the DSDT without its 36-byte
/// header), in table order.
pub fn virtio_mmio_devices_from_dsdt(aml: &[u8]) -> Result<DsdtScan, DsdtError> {
    let mut reader = Reader {
        aml,
        scan: DsdtScan::default(),
    };
    reader.term_list(0, aml.len(), "\\", None, 0)?;
    Ok(reader.scan)
}

/// What a Device's `Name` objects said.
#[derive(Default)]
struct DeviceObjects {
    hid: Option<Hid>,
    uid: Option<u64>,
    crs: Option<(usize, usize)>,
}

enum Hid {
    String(usize, usize),
    Eisa,
}

enum Data {
    Integer(u64),
    String(usize, usize),
    Buffer(usize, usize),
    Other,
}

struct Reader<'a> {
    aml: &'a [u8],
    scan: DsdtScan,
}

impl Reader<'_> {
    fn byte(&self, at: usize) -> Result<u8, DsdtError> {
        self.aml
            .get(at)
            .copied()
            .ok_or(DsdtError::Truncated { offset: at })
    }

    /// PkgLength at `at`: returns (end of the package, start of its body).
    fn pkg_length(&self, at: usize, limit: usize) -> Result<(usize, usize), DsdtError> {
        let lead = self.byte(at)?;
        let extra = usize::from(lead >> 6);
        let mut length = if extra == 0 {
            usize::from(lead & 0x3f)
        } else {
            usize::from(lead & 0x0f)
        };
        for index in 0..extra {
            length |= usize::from(self.byte(at + 1 + index)?) << (4 + 8 * index);
        }
        let end = at + length;
        if end > limit || length < 1 + extra {
            return Err(DsdtError::Truncated { offset: at });
        }
        Ok((end, at + 1 + extra))
    }

    /// A NameString at `at`: returns the text ("\\_SB_.VR23" style, "^"
    /// and root prefixes kept) and the offset after it.
    fn name_string(&self, mut at: usize) -> Result<(String, usize), DsdtError> {
        let mut name = String::new();
        while matches!(self.byte(at)?, b'\\' | b'^') {
            name.push(char::from(self.byte(at)?));
            at += 1;
        }
        let segments = match self.byte(at)? {
            0x00 => {
                at += 1;
                0
            }
            0x2e => {
                at += 1;
                2
            }
            0x2f => {
                at += 2;
                usize::from(self.byte(at - 1)?)
            }
            _ => 1,
        };
        for index in 0..segments {
            let segment = self
                .aml
                .get(at..at + 4)
                .ok_or(DsdtError::Truncated { offset: at })?;
            if index > 0 {
                name.push('.');
            }
            name.extend(segment.iter().map(|&b| char::from(b)));
            at += 4;
        }
        Ok((name, at))
    }

    /// Reads objects in `[at, end)` in scope `scope`. Returns nothing: what
    /// it finds goes to `self.scan`, and to `device` for Names inside one.
    fn term_list(
        &mut self,
        mut at: usize,
        end: usize,
        scope: &str,
        mut device: Option<&mut DeviceObjects>,
        depth: usize,
    ) -> Result<(), DsdtError> {
        while at < end {
            let opcode = self.byte(at)?;
            at = match opcode {
                // ScopeOp / DeviceOp: PkgLength NameString TermList
                0x10 => self.scoped(at + 1, end, scope, false, depth)?,
                0x5b if self.byte(at + 1)? == 0x82 => {
                    self.scoped(at + 2, end, scope, true, depth)?
                }
                // NameOp NameString DataRefObject
                0x08 => {
                    let (name, after) = self.name_string(at + 1)?;
                    let (data, after) = self.data(after, end)?;
                    if let Some(objects) = device.as_deref_mut() {
                        match (name.as_str(), data) {
                            ("_HID", Data::String(start, stop)) => {
                                objects.hid = Some(Hid::String(start, stop))
                            }
                            ("_HID", Data::Integer(_)) => objects.hid = Some(Hid::Eisa),
                            ("_UID", Data::Integer(uid)) => objects.uid = Some(uid),
                            ("_CRS", Data::Buffer(start, stop)) => {
                                objects.crs = Some((start, stop))
                            }
                            _ => {}
                        }
                    }
                    after
                }
                // Objects with a PkgLength right after the opcode: skipped whole.
                // Method, If, Else, While, Buffer, Package, VarPackage.
                0x14 | 0xa0 | 0xa1 | 0xa2 | 0x11 | 0x12 | 0x13 => self.pkg_length(at + 1, end)?.0,
                // Field, Processor, PowerResource, ThermalZone, IndexField,
                // BankField: ExtOp + PkgLength.
                0x5b if matches!(self.byte(at + 1)?, 0x81 | 0x83 | 0x84 | 0x85 | 0x86 | 0x87) => {
                    self.pkg_length(at + 2, end)?.0
                }
                // OperationRegion NameString RegionSpace Offset Length.
                0x5b if self.byte(at + 1)? == 0x80 => {
                    let (_, after) = self.name_string(at + 2)?;
                    let after = after + 1;
                    let (_, after) = self
                        .integer(after)?
                        .ok_or(DsdtError::Truncated { offset: after })?;
                    let (_, after) = self
                        .integer(after)?
                        .ok_or(DsdtError::Truncated { offset: after })?;
                    after
                }
                _ => {
                    // Unknown: the rest of this package cannot be walked.
                    self.scan.unknown_opcodes += 1;
                    return Ok(());
                }
            };
        }
        Ok(())
    }

    fn scoped(
        &mut self,
        at: usize,
        limit: usize,
        scope: &str,
        is_device: bool,
        depth: usize,
    ) -> Result<usize, DsdtError> {
        let (end, body) = self.pkg_length(at, limit)?;
        let (name, body) = self.name_string(body)?;
        let path = resolve(scope, &name);
        if depth >= MAX_DEPTH {
            return Ok(end);
        }
        if is_device {
            let mut objects = DeviceObjects::default();
            self.term_list(body, end, &path, Some(&mut objects), depth + 1)?;
            self.device_found(&path, &objects);
        } else {
            self.term_list(body, end, &path, None, depth + 1)?;
        }
        Ok(end)
    }

    fn device_found(&mut self, path: &str, objects: &DeviceObjects) {
        let is_virtio = match objects.hid {
            Some(Hid::String(start, stop)) => &self.aml[start..stop] == VIRTIO_MMIO_HID.as_bytes(),
            _ => false,
        };
        if !is_virtio {
            return;
        }
        let result = match objects.crs {
            Some((start, stop)) => transport_from_crs(&self.aml[start..stop]),
            None => Err("no _CRS"),
        };
        match result {
            Ok((base, size, irq)) => self.scan.devices.push(MmioDevice {
                base,
                size,
                irq,
                id: objects.uid.and_then(|uid| i64::try_from(uid).ok()),
                found_by: Discovery::Acpi,
            }),
            Err(reason) => self.scan.skipped.push(SkippedDevice {
                path: path.into(),
                reason,
            }),
        }
    }

    /// An integer constant (ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWord).
    fn integer(&self, at: usize) -> Result<Option<(u64, usize)>, DsdtError> {
        let width = match self.byte(at)? {
            0x00 => return Ok(Some((0, at + 1))),
            0x01 => return Ok(Some((1, at + 1))),
            0xff => return Ok(Some((u64::MAX, at + 1))),
            0x0a => 1,
            0x0b => 2,
            0x0c => 4,
            0x0e => 8,
            _ => return Ok(None),
        };
        let bytes = self
            .aml
            .get(at + 1..at + 1 + width)
            .ok_or(DsdtError::Truncated { offset: at })?;
        let value = bytes
            .iter()
            .rev()
            .fold(0u64, |value, &b| (value << 8) | u64::from(b));
        Ok(Some((value, at + 1 + width)))
    }

    /// A DataRefObject: integer, string, buffer (its bytes), or something
    /// skipped by its length (package).
    fn data(&self, at: usize, limit: usize) -> Result<(Data, usize), DsdtError> {
        if let Some((value, after)) = self.integer(at)? {
            return Ok((Data::Integer(value), after));
        }
        match self.byte(at)? {
            0x0d => {
                let text = at + 1;
                let length = self.aml[text..limit.min(self.aml.len())]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(DsdtError::Truncated { offset: at })?;
                Ok((Data::String(text, text + length), text + length + 1))
            }
            0x11 => {
                let (end, body) = self.pkg_length(at + 1, limit)?;
                // BufferSize is a TermArg, an integer constant in practice.
                let (size, bytes) = self
                    .integer(body)?
                    .ok_or(DsdtError::Truncated { offset: body })?;
                let stop = bytes
                    .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
                    .min(end);
                Ok((Data::Buffer(bytes, stop), end))
            }
            0x12 | 0x13 => Ok((Data::Other, self.pkg_length(at + 1, limit)?.0)),
            _ => Ok((Data::Other, limit)),
        }
    }
}

fn resolve(scope: &str, name: &str) -> String {
    if name.starts_with('\\') {
        return name.into();
    }
    let mut base = String::from(scope);
    let mut rest = name;
    while let Some(stripped) = rest.strip_prefix('^') {
        rest = stripped;
        match base.rfind('.') {
            Some(dot) => base.truncate(dot),
            None => base = "\\".into(),
        }
    }
    if base.ends_with('\\') {
        base + rest
    } else {
        base + "." + rest
    }
}

/// The first memory window and the first interrupt of a resource template
/// (ACPI 6.5 §6.4): Memory32Fixed, DWord or QWord memory; Extended
/// Interrupt or legacy IRQ.
pub fn transport_from_crs(template: &[u8]) -> Result<(u64, u64, u32), &'static str> {
    let mut window = None;
    let mut irq = None;
    let mut at = 0;
    while at < template.len() {
        let tag = template[at];
        let (kind, body, next) = if tag & 0x80 == 0 {
            let length = usize::from(tag & 0x07);
            ((tag >> 3) & 0x0f, at + 1, at + 1 + length)
        } else {
            let length = template
                .get(at + 1..at + 3)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .ok_or("resource template truncated")?;
            (0x80 | (tag & 0x7f), at + 3, at + 3 + length)
        };
        let body = template
            .get(body..next)
            .ok_or("resource template truncated")?;
        let le = |offset: usize, width: usize| -> Option<u64> {
            body.get(offset..offset + width).map(|b| {
                b.iter()
                    .rev()
                    .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
            })
        };
        match kind {
            // End tag.
            0x0f => break,
            // IRQ (small): a 16-bit mask.
            0x04 if irq.is_none() => {
                let mask = le(0, 2).ok_or("IRQ descriptor truncated")?;
                if mask != 0 {
                    irq = Some(mask.trailing_zeros());
                }
            }
            // Memory32Fixed: info, base, length.
            0x86 if window.is_none() => {
                window = Some((
                    le(1, 4).ok_or("Memory32Fixed truncated")?,
                    le(5, 4).ok_or("Memory32Fixed truncated")?,
                ));
            }
            // DWord / QWord address space, memory type (0).
            0x87 | 0x8a if window.is_none() && body.first() == Some(&0) => {
                let width = if kind == 0x87 { 4 } else { 8 };
                let minimum = le(3 + width, width).ok_or("address descriptor truncated")?;
                let length = le(3 + 4 * width, width).ok_or("address descriptor truncated")?;
                window = Some((minimum, length));
            }
            // Extended Interrupt: flags, count, interrupts.
            0x89 if irq.is_none() && body.get(1).copied().unwrap_or(0) > 0 => {
                let first = le(2, 4).ok_or("interrupt descriptor truncated")?;
                irq = Some(u32::try_from(first).unwrap_or(0));
            }
            _ => {}
        }
        at = next;
    }
    let (base, size) = window.ok_or("_CRS has no memory window")?;
    let irq = irq.ok_or("_CRS has no interrupt")?;
    if base == 0 || size == 0 || irq == 0 {
        return Err("_CRS window or interrupt is zero");
    }
    Ok((base, size, irq))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AML PkgLength encoding for a body of `len` bytes (the length byte(s)
    /// count themselves).
    fn pkg_length(len: usize) -> Vec<u8> {
        if len + 1 < 0x40 {
            vec![(len + 1) as u8]
        } else {
            let total = len + 2;
            assert!(total < 0x1000);
            vec![0x40 | (total & 0xf) as u8, (total >> 4) as u8]
        }
    }

    fn name_string(name: &str, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x08];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value);
        out
    }

    /// `Device (VRnn)` exactly as QEMU's acpi-microvm.c builds it.
    fn qemu_virtio_device(slot: u8, base: u32, gsi: u32) -> Vec<u8> {
        let mut body = format!("VR{slot:02}").into_bytes();
        let mut hid = vec![0x0d];
        hid.extend_from_slice(b"LNRO0005\0");
        body.extend(name_string("_HID", &hid));
        body.extend(name_string("_UID", &[0x0a, slot]));
        body.extend(name_string("_CCA", &[0x01]));
        let mut template = vec![0x86, 0x09, 0x00, 0x01];
        template.extend_from_slice(&base.to_le_bytes());
        template.extend_from_slice(&0x200u32.to_le_bytes());
        // Extended interrupt: consumer, level, active-high, exclusive; one GSI.
        template.extend_from_slice(&[0x89, 0x06, 0x00, 0x01, 0x01]);
        template.extend_from_slice(&gsi.to_le_bytes());
        template.extend_from_slice(&[0x79, 0x00]);
        let mut buffer = vec![0x0a, template.len() as u8];
        buffer.extend(template);
        let mut crs = vec![0x11];
        crs.extend(pkg_length(buffer.len()));
        crs.extend(buffer);
        body.extend(name_string("_CRS", &crs));
        let mut device = vec![0x5b, 0x82];
        device.extend(pkg_length(body.len()));
        device.extend(body);
        device
    }

    fn scope_sb(children: &[Vec<u8>]) -> Vec<u8> {
        let mut body = b"_SB_".to_vec();
        for child in children {
            body.extend_from_slice(child);
        }
        let mut scope = vec![0x10];
        scope.extend(pkg_length(body.len()));
        scope.extend(body);
        scope
    }

    #[test]
    fn finds_qemu_microvm_transports() {
        let other = {
            // A COM1 device that is not virtio.
            let mut body = b"COM1".to_vec();
            body.extend(name_string("_HID", &[0x0c, 0x41, 0xd0, 0x05, 0x01]));
            let mut device = vec![0x5b, 0x82];
            device.extend(pkg_length(body.len()));
            device.extend(body);
            device
        };
        let aml = scope_sb(&[
            other,
            qemu_virtio_device(22, 0xfeb0_2c00, 46),
            qemu_virtio_device(23, 0xfeb0_2e00, 47),
        ]);
        let scan = virtio_mmio_devices_from_dsdt(&aml).unwrap();
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert_eq!(scan.unknown_opcodes, 0);
        let devices = scan.devices;
        assert_eq!(
            devices,
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
                qemu_virtio_device(
                    slot,
                    0xfeb0_0000 + u32::from(slot) * 0x200,
                    24 + u32::from(slot),
                )
            })
            .collect();
        let devices = virtio_mmio_devices_from_dsdt(&scope_sb(&slots))
            .unwrap()
            .devices;
        assert_eq!(devices.len(), 24);
        assert_eq!(devices[23].irq, 47);
        assert_eq!(devices[23].base, 0xfeb0_2e00);
    }

    #[test]
    fn device_without_a_window_is_skipped_with_a_reason() {
        let mut body = b"VR00".to_vec();
        let mut hid = vec![0x0d];
        hid.extend_from_slice(b"LNRO0005\0");
        body.extend(name_string("_HID", &hid));
        let mut device = vec![0x5b, 0x82];
        device.extend(pkg_length(body.len()));
        device.extend(body);
        let scan = virtio_mmio_devices_from_dsdt(&scope_sb(&[device])).unwrap();
        assert!(scan.devices.is_empty());
        assert_eq!(scan.skipped[0].reason, "no _CRS");
        assert_eq!(scan.skipped[0].path, "\\_SB_.VR00");
    }

    #[test]
    fn methods_regions_and_fields_are_skipped_not_misread() {
        // A GED-like device: OperationRegion, Field and Method before the
        // virtio device in the same scope.
        let mut ged = b"GED_".to_vec();
        ged.extend(name_string(
            "_HID",
            &[0x0d, b'A', b'C', b'P', b'I', b'0', b'0', b'1', b'3', 0],
        ));
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
        let mut device = vec![0x5b, 0x82];
        device.extend(pkg_length(ged.len()));
        device.extend(ged);
        let scan = virtio_mmio_devices_from_dsdt(&scope_sb(&[
            device,
            qemu_virtio_device(7, 0xfeb0_0e00, 12),
        ]))
        .unwrap();
        assert_eq!(scan.unknown_opcodes, 0);
        assert_eq!(scan.devices.len(), 1);
        assert_eq!(scan.devices[0].irq, 12);
    }

    #[test]
    fn unknown_opcode_ends_only_its_package() {
        let mut weird = b"WRD_".to_vec();
        weird.push(0x70); // StoreOp: not understood, ends this device's body
        let mut device = vec![0x5b, 0x82];
        device.extend(pkg_length(weird.len()));
        device.extend(weird);
        let scan = virtio_mmio_devices_from_dsdt(&scope_sb(&[
            device,
            qemu_virtio_device(3, 0xfeb0_0600, 8),
        ]))
        .unwrap();
        assert_eq!(scan.unknown_opcodes, 1);
        assert_eq!(scan.devices.len(), 1, "the next device is still found");
    }

    #[test]
    fn truncated_and_garbage_aml_are_errors_not_panics() {
        assert!(virtio_mmio_devices_from_dsdt(&[0x5b, 0x82, 0xff, 0xff, 0x00]).is_err());
        assert!(virtio_mmio_devices_from_dsdt(&[0x10, 0x4f]).is_err());
        assert!(virtio_mmio_devices_from_dsdt(&[0x08, b'_', b'H']).is_err());
        assert_eq!(
            virtio_mmio_devices_from_dsdt(&[]).unwrap(),
            DsdtScan::default()
        );
        // Every prefix of a real table: never a panic.
        let aml = scope_sb(&[qemu_virtio_device(23, 0xfeb0_2e00, 47)]);
        for cut in 0..aml.len() {
            let _ = virtio_mmio_devices_from_dsdt(&aml[..cut]);
        }
    }

    #[test]
    fn resource_templates() {
        // Firecracker-style: Memory32Fixed + legacy IRQ mask.
        let template = [
            0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, 0x22, 0x20,
            0x00, 0x79, 0x00,
        ];
        assert_eq!(transport_from_crs(&template), Ok((0xc000_1000, 0x1000, 5)));
        assert_eq!(
            transport_from_crs(&[0x79, 0x00]),
            Err("_CRS has no memory window")
        );
        assert_eq!(
            transport_from_crs(&[0x86, 0x09]),
            Err("resource template truncated")
        );
    }
}
