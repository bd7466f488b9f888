//! The one AML reader: walks the static part of a DSDT (ACPI 6.5 §20) and
//! tells a [`Visitor`] about every `Device` (with its `_HID`, `_UID`,
//! `_CRS` and `_CBA`) and every `Name` with constant data. `Scope`,
//! `Device` and `Name` are read; `Method`, `Field` and every other object
//! with a PkgLength are skipped whole; an opcode it does not know ends only
//! the package it is in. Nothing is executed: a device's `_CBA` method is
//! read only in the one form QEMU's PCI Express host bridge has, a body
//! that is `Return` of an integer constant (hw/pci-host/gpex-acpi.c).
//!
//! Hand-written because the rust-osdev AML interpreters (`aml` 0.16, `acpi`
//! 6 and 7) need nightly Rust, which mote does not use, and VMMs emit only
//! this static subset (QEMU `hw/i386/acpi-microvm.c`, Firecracker's DSDT).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// Deepest Scope/Device nesting followed (QEMU's is 2).
const MAX_DEPTH: usize = 16;

/// AML opcodes read or skipped here (ACPI 6.5 §20.2).
mod opcode {
    pub(super) const ZERO: u8 = 0x00;
    pub(super) const ONE: u8 = 0x01;
    pub(super) const NAME: u8 = 0x08;
    pub(super) const BYTE_PREFIX: u8 = 0x0a;
    pub(super) const WORD_PREFIX: u8 = 0x0b;
    pub(super) const DWORD_PREFIX: u8 = 0x0c;
    pub(super) const STRING_PREFIX: u8 = 0x0d;
    pub(super) const QWORD_PREFIX: u8 = 0x0e;
    pub(super) const SCOPE: u8 = 0x10;
    pub(super) const BUFFER: u8 = 0x11;
    pub(super) const PACKAGE: u8 = 0x12;
    pub(super) const VAR_PACKAGE: u8 = 0x13;
    pub(super) const METHOD: u8 = 0x14;
    pub(super) const DUAL_NAME_PREFIX: u8 = 0x2e;
    pub(super) const MULTI_NAME_PREFIX: u8 = 0x2f;
    pub(super) const EXT_PREFIX: u8 = 0x5b;
    pub(super) const ROOT_CHAR: u8 = b'\\';
    pub(super) const PARENT_PREFIX: u8 = b'^';
    pub(super) const IF: u8 = 0xa0;
    pub(super) const RETURN: u8 = 0xa4;
    pub(super) const ELSE: u8 = 0xa1;
    pub(super) const WHILE: u8 = 0xa2;
    pub(super) const ONES: u8 = 0xff;
    /// After [`EXT_PREFIX`].
    pub(super) const EXT_OPERATION_REGION: u8 = 0x80;
    pub(super) const EXT_DEVICE: u8 = 0x82;
    /// Field, Processor, PowerResource, ThermalZone, IndexField, BankField.
    pub(super) const EXT_WITH_PKG_LENGTH: [u8; 6] = [0x81, 0x83, 0x84, 0x85, 0x86, 0x87];
}

/// A PkgLength or string runs past the end of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DSDT's AML is truncated at offset {offset:#x}")]
pub(crate) struct AmlError {
    pub(crate) offset: usize,
}

/// Constant data of a `Name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Data<'a> {
    Integer(u64),
    /// A string's bytes, without the NUL.
    String(&'a [u8]),
    /// A buffer's bytes (a `_CRS` resource template, say).
    Buffer(&'a [u8]),
    /// A package and its first element when that is an integer constant
    /// (how `\_S5` carries SLP_TYPa).
    Package {
        first: Option<u64>,
    },
    Other,
}

/// A `_HID`: an EISA ID (an integer) or a string such as `LNRO0005`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hid<'a> {
    String(&'a [u8]),
    Eisa(u64),
}

/// What a Device's own `Name` objects said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceObjects<'a> {
    pub(crate) hid: Option<Hid<'a>>,
    pub(crate) uid: Option<u64>,
    pub(crate) crs: Option<&'a [u8]>,
    /// A `_CBA` method that returns a constant: the ECAM base of a PCI
    /// Express host bridge (PCI Firmware 3.2 §4.1.3).
    pub(crate) cba: Option<u64>,
}

/// Told about what the walk finds, in table order.
pub(crate) trait Visitor<'a> {
    /// A `Device` at `path` (`\_SB_.VR23` style), after its body was read.
    fn device(&mut self, _path: &str, _objects: &DeviceObjects<'a>) {}
    /// A `Name` at `path` with constant data.
    fn name(&mut self, _path: &str, _data: Data<'a>) {}
}

/// Walks `aml` (a DSDT without its 36-byte header). Returns how many
/// packages were cut short by an opcode the reader does not know. The boot
/// uses [`walk_for`]; this full walk is what tests and fuzz targets hold
/// it against.
#[cfg(any(test, not(target_os = "none")))]
pub(crate) fn walk<'a>(aml: &'a [u8], visitor: &mut impl Visitor<'a>) -> Result<usize, AmlError> {
    Reader {
        aml,
        unknown_opcodes: 0,
        needles: None,
        buffers: Vec::new(),
    }
    .read_all(visitor)
}

/// Like [`walk`], but a `Scope` or `Device` whose bytes contain none of
/// `needles` is skipped whole, unread and unreported: what a visitor
/// looks for by name or `_HID` cannot be inside it. Finding the needles
/// is one pass over the table; each package then costs a binary search.
pub(crate) fn walk_for<'a>(
    aml: &'a [u8],
    needles: &[&[u8]],
    visitor: &mut impl Visitor<'a>,
) -> Result<usize, AmlError> {
    let mut offsets: Vec<usize> = Vec::new();
    find_any(aml, needles, &mut offsets);
    offsets.sort_unstable();
    Reader {
        aml,
        unknown_opcodes: 0,
        needles: Some(offsets),
        buffers: Vec::new(),
    }
    .read_all(visitor)
}

/// Appends the offset of every occurrence of any of `needles` in
/// `haystack`, in the order they end, in one pass (Horspool's search for a
/// set of needles: the window is the shortest needle, and it moves by what
/// the byte at its end allows for every needle's last window of bytes).
/// About `haystack.len() / shortest` probes, not one per byte, nor one pass
/// per needle: instructions are what a boot under an emulating hypervisor
/// pays for, and the DSDT's needles are searched two at a time.
pub(crate) fn find_any(haystack: &[u8], needles: &[&[u8]], out: &mut Vec<usize>) {
    let Some(window) = needles.iter().map(|needle| needle.len()).min() else {
        return;
    };
    if window == 0 {
        return;
    }
    // A shift below the true one only costs probes: cap it to fit a byte.
    let most = u8::try_from(window).unwrap_or(u8::MAX);
    let mut shift = [most; 256];
    for needle in needles {
        let tail = &needle[needle.len() - window..];
        for (index, &byte) in tail[..window - 1].iter().enumerate() {
            let distance = u8::try_from(window - 1 - index).unwrap_or(u8::MAX);
            let entry = &mut shift[usize::from(byte)];
            *entry = (*entry).min(distance);
        }
    }
    let mut end = window - 1;
    while let Some(&byte) = haystack.get(end) {
        for needle in needles {
            if needle.last() == Some(&byte)
                && let Some(start) = (end + 1).checked_sub(needle.len())
                && &haystack[start..=end] == *needle
            {
                out.push(start);
            }
        }
        end += usize::from(shift[usize::from(byte)]);
    }
}

struct Reader<'a> {
    aml: &'a [u8],
    unknown_opcodes: usize,
    /// Sorted offsets of what the walk looks for; `None` walks everything.
    needles: Option<Vec<usize>>,
    /// Name and path buffers per nesting depth, reused by every object at
    /// that depth: a walk reads a name per object, and allocating (then
    /// freeing) two strings for each was most of its instructions.
    buffers: Vec<NameBuffers>,
}

/// The name read and the path it resolves to, at one depth of the walk.
#[derive(Default)]
struct NameBuffers {
    name: String,
    path: String,
}

impl<'a> Reader<'a> {
    /// Reads the whole table as the root scope. A read past the end names
    /// the offset it tried, which can lie beyond the table; the error says
    /// the table is truncated at its end at the latest.
    fn read_all(mut self, visitor: &mut impl Visitor<'a>) -> Result<usize, AmlError> {
        self.term_list(0, self.aml.len(), "\\", None, 0, visitor)
            .map_err(|error| AmlError {
                offset: error.offset.min(self.aml.len()),
            })?;
        Ok(self.unknown_opcodes)
    }

    fn byte(&self, at: usize) -> Result<u8, AmlError> {
        self.aml.get(at).copied().ok_or(AmlError { offset: at })
    }

    fn bytes(&self, start: usize, end: usize) -> Result<&'a [u8], AmlError> {
        self.aml.get(start..end).ok_or(AmlError { offset: start })
    }

    /// PkgLength at `at`: returns (end of the package, start of its body).
    /// Bits 6-7 of the lead byte count the bytes that follow; with none,
    /// bits 0-5 are the length, else bits 0-3 and then 8 bits per byte.
    fn pkg_length(&self, at: usize, limit: usize) -> Result<(usize, usize), AmlError> {
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
            return Err(AmlError { offset: at });
        }
        Ok((end, at + 1 + extra))
    }

    /// The buffers of `depth`, taken out of the reader while in use.
    fn take_buffers(&mut self, depth: usize) -> NameBuffers {
        if self.buffers.len() <= depth {
            self.buffers.resize_with(depth + 1, NameBuffers::default);
        }
        core::mem::take(&mut self.buffers[depth])
    }

    fn put_buffers(&mut self, depth: usize, buffers: NameBuffers) {
        self.buffers[depth] = buffers;
    }

    /// A NameString at `at`, written to `name` ("\\_SB_.VR23" style, "^"
    /// and root prefixes kept); returns the offset after it.
    fn name_string(&self, mut at: usize, name: &mut String) -> Result<usize, AmlError> {
        name.clear();
        while matches!(self.byte(at)?, opcode::ROOT_CHAR | opcode::PARENT_PREFIX) {
            name.push(char::from(self.byte(at)?));
            at += 1;
        }
        let segments = match self.byte(at)? {
            opcode::ZERO => {
                at += 1;
                0
            }
            opcode::DUAL_NAME_PREFIX => {
                at += 1;
                2
            }
            opcode::MULTI_NAME_PREFIX => {
                at += 2;
                usize::from(self.byte(at - 1)?)
            }
            _ => 1,
        };
        for index in 0..segments {
            let segment = self.bytes(at, at + 4)?;
            if index > 0 {
                name.push('.');
            }
            name.extend(segment.iter().map(|&b| char::from(b)));
            at += 4;
        }
        Ok(at)
    }

    /// Reads objects in `[at, end)` in scope `scope`, telling `visitor`;
    /// Names inside a device also go to `device`.
    fn term_list(
        &mut self,
        mut at: usize,
        end: usize,
        scope: &str,
        mut device: Option<&mut DeviceObjects<'a>>,
        depth: usize,
        visitor: &mut impl Visitor<'a>,
    ) -> Result<(), AmlError> {
        while at < end {
            let op = self.byte(at)?;
            let extended = if op == opcode::EXT_PREFIX {
                Some(self.byte(at + 1)?)
            } else {
                None
            };
            at = match (op, extended) {
                // ScopeOp / DeviceOp: PkgLength NameString TermList
                (opcode::SCOPE, _) => self.scoped(at + 1, end, scope, false, depth, visitor)?,
                (_, Some(opcode::EXT_DEVICE)) => {
                    self.scoped(at + 2, end, scope, true, depth, visitor)?
                }
                // NameOp NameString DataRefObject
                (opcode::NAME, _) => {
                    let mut buffers = self.take_buffers(depth);
                    let after = self.name_string(at + 1, &mut buffers.name)?;
                    let (data, after) = self.data(after, end)?;
                    if let Some(objects) = device.as_deref_mut() {
                        match (buffers.name.as_str(), data) {
                            ("_HID", Data::String(text)) => objects.hid = Some(Hid::String(text)),
                            ("_HID", Data::Integer(id)) => objects.hid = Some(Hid::Eisa(id)),
                            ("_UID", Data::Integer(uid)) => objects.uid = Some(uid),
                            ("_CRS", Data::Buffer(bytes)) => objects.crs = Some(bytes),
                            _ => {}
                        }
                    }
                    resolve_into(scope, &buffers.name, &mut buffers.path);
                    visitor.name(&buffers.path, data);
                    self.put_buffers(depth, buffers);
                    after
                }
                // MethodOp PkgLength NameString MethodFlags TermList: a
                // device's `_CBA` is read when it returns a constant.
                (opcode::METHOD, _) if device.is_some() => {
                    let (after, cba) = self.method(at + 1, end, depth)?;
                    if let (Some(objects), Some(cba)) = (device.as_deref_mut(), cba) {
                        objects.cba = Some(cba);
                    }
                    after
                }
                // Objects with a PkgLength right after the opcode: skipped whole.
                (
                    opcode::METHOD
                    | opcode::IF
                    | opcode::ELSE
                    | opcode::WHILE
                    | opcode::BUFFER
                    | opcode::PACKAGE
                    | opcode::VAR_PACKAGE,
                    _,
                ) => self.pkg_length(at + 1, end)?.0,
                (_, Some(ext)) if opcode::EXT_WITH_PKG_LENGTH.contains(&ext) => {
                    self.pkg_length(at + 2, end)?.0
                }
                // OperationRegion NameString RegionSpace Offset Length.
                (_, Some(opcode::EXT_OPERATION_REGION)) => {
                    let mut buffers = self.take_buffers(depth);
                    let after = self.name_string(at + 2, &mut buffers.name)? + 1;
                    self.put_buffers(depth, buffers);
                    let (_, after) = self.integer(after)?.ok_or(AmlError { offset: after })?;
                    let (_, after) = self.integer(after)?.ok_or(AmlError { offset: after })?;
                    after
                }
                _ => {
                    // Unknown: the rest of this package cannot be walked.
                    self.unknown_opcodes += 1;
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
        visitor: &mut impl Visitor<'a>,
    ) -> Result<usize, AmlError> {
        let (end, body) = self.pkg_length(at, limit)?;
        if !self.holds_a_needle(at, end) {
            return Ok(end);
        }
        let mut buffers = self.take_buffers(depth);
        let body = self.name_string(body, &mut buffers.name)?;
        if depth >= MAX_DEPTH {
            self.put_buffers(depth, buffers);
            return Ok(end);
        }
        resolve_into(scope, &buffers.name, &mut buffers.path);
        if is_device {
            let mut objects = DeviceObjects::default();
            self.term_list(
                body,
                end,
                &buffers.path,
                Some(&mut objects),
                depth + 1,
                visitor,
            )?;
            visitor.device(&buffers.path, &objects);
        } else {
            self.term_list(body, end, &buffers.path, None, depth + 1, visitor)?;
        }
        self.put_buffers(depth, buffers);
        Ok(end)
    }

    /// A method at `at` (its PkgLength): the offset after it, and the
    /// constant it returns when it is `_CBA` and its whole body is
    /// `Return (constant)`.
    fn method(
        &mut self,
        at: usize,
        limit: usize,
        depth: usize,
    ) -> Result<(usize, Option<u64>), AmlError> {
        let (end, body) = self.pkg_length(at, limit)?;
        let mut buffers = self.take_buffers(depth);
        let named = self.name_string(body, &mut buffers.name);
        let is_cba = buffers.name == "_CBA";
        self.put_buffers(depth, buffers);
        // MethodFlags, then the TermList.
        let statement = named? + 1;
        if !is_cba || self.aml.get(statement) != Some(&opcode::RETURN) {
            return Ok((end, None));
        }
        let value = self
            .integer(statement + 1)?
            .filter(|&(_, after)| after == end)
            .map(|(value, _)| value);
        Ok((end, value))
    }

    /// Whether `[start, end)` holds one of the needles (always, without).
    fn holds_a_needle(&self, start: usize, end: usize) -> bool {
        self.needles.as_ref().is_none_or(|offsets| {
            let first = offsets.partition_point(|&offset| offset < start);
            offsets.get(first).is_some_and(|&offset| offset < end)
        })
    }

    /// An integer constant (ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWord).
    fn integer(&self, at: usize) -> Result<Option<(u64, usize)>, AmlError> {
        let width = match self.byte(at)? {
            opcode::ZERO => return Ok(Some((0, at + 1))),
            opcode::ONE => return Ok(Some((1, at + 1))),
            opcode::ONES => return Ok(Some((u64::MAX, at + 1))),
            opcode::BYTE_PREFIX => 1,
            opcode::WORD_PREFIX => 2,
            opcode::DWORD_PREFIX => 4,
            opcode::QWORD_PREFIX => 8,
            _ => return Ok(None),
        };
        let bytes = self
            .aml
            .get(at + 1..at + 1 + width)
            .ok_or(AmlError { offset: at })?;
        let value = bytes
            .iter()
            .rev()
            .fold(0u64, |value, &b| (value << 8) | u64::from(b));
        Ok(Some((value, at + 1 + width)))
    }

    /// A DataRefObject: integer, string, buffer (its bytes), package (its
    /// first element), or something skipped to the end of the enclosing list.
    fn data(&self, at: usize, limit: usize) -> Result<(Data<'a>, usize), AmlError> {
        if let Some((value, after)) = self.integer(at)? {
            return Ok((Data::Integer(value), after));
        }
        match self.byte(at)? {
            opcode::STRING_PREFIX => {
                let text = at + 1;
                let length = self
                    .bytes(text, limit.min(self.aml.len()))?
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(AmlError { offset: at })?;
                Ok((
                    Data::String(self.bytes(text, text + length)?),
                    text + length + 1,
                ))
            }
            opcode::BUFFER => {
                let (end, body) = self.pkg_length(at + 1, limit)?;
                // BufferSize is a TermArg, an integer constant in practice.
                let (size, bytes) = self.integer(body)?.ok_or(AmlError { offset: body })?;
                let stop = bytes
                    .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
                    .min(end);
                Ok((Data::Buffer(self.bytes(bytes, stop)?), end))
            }
            opcode::PACKAGE => {
                let (end, body) = self.pkg_length(at + 1, limit)?;
                // NumElements, then the elements.
                let first = if body + 1 < end {
                    self.integer(body + 1)?.map(|(value, _)| value)
                } else {
                    None
                };
                Ok((Data::Package { first }, end))
            }
            opcode::VAR_PACKAGE => Ok((Data::Other, self.pkg_length(at + 1, limit)?.0)),
            _ => Ok((Data::Other, limit)),
        }
    }
}

/// The absolute path of `name` used in `scope`, written to `path`.
fn resolve_into(scope: &str, name: &str, path: &mut String) {
    path.clear();
    if name.starts_with('\\') {
        path.push_str(name);
        return;
    }
    // The scope is cut, not copied, for each `^`.
    let mut base = scope;
    let mut rest = name;
    while let Some(stripped) = rest.strip_prefix('^') {
        rest = stripped;
        base = match base.rfind('.') {
            Some(dot) => &base[..dot],
            None => "\\",
        };
    }
    path.push_str(base);
    if !base.ends_with('\\') {
        path.push('.');
    }
    path.push_str(rest);
}

/// AML built the way QEMU's `hw/i386/acpi-microvm.c` builds it, for tests
/// of the reader and of what reads it.
#[cfg(test)]
pub(crate) mod build {
    /// PkgLength encoding for a body of `len` bytes (the length byte(s)
    /// count themselves).
    pub(crate) fn pkg_length(len: usize) -> Vec<u8> {
        if len + 1 < 0x40 {
            vec![u8::try_from(len + 1).unwrap()]
        } else {
            let total = len + 2;
            assert!(total < 0x1000);
            vec![
                0x40 | u8::try_from(total & 0xf).unwrap(),
                u8::try_from(total >> 4).unwrap(),
            ]
        }
    }

    /// `Name (name, value)`.
    pub(crate) fn name(name: &str, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x08];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value);
        out
    }

    /// `opcode PkgLength body`.
    pub(crate) fn package_like(opcode: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = opcode.to_vec();
        out.extend(pkg_length(body.len()));
        out.extend_from_slice(body);
        out
    }

    /// `Device (name) { children }`.
    pub(crate) fn device(name: &str, children: &[Vec<u8>]) -> Vec<u8> {
        let mut body = name.as_bytes().to_vec();
        children
            .iter()
            .for_each(|child| body.extend_from_slice(child));
        package_like(&[0x5b, 0x82], &body)
    }

    /// `Scope (name) { children }`; `name` may be `\` (root).
    pub(crate) fn scope(name: &[u8], children: &[Vec<u8>]) -> Vec<u8> {
        let mut body = name.to_vec();
        children
            .iter()
            .for_each(|child| body.extend_from_slice(child));
        package_like(&[0x10], &body)
    }

    /// `Device (VRnn)` exactly as QEMU's acpi-microvm.c builds it.
    pub(crate) fn virtio_device(slot: u8, base: u32, gsi: u32) -> Vec<u8> {
        let mut hid = vec![0x0d];
        hid.extend_from_slice(b"LNRO0005\0");
        let mut template = vec![0x86, 0x09, 0x00, 0x01];
        template.extend_from_slice(&base.to_le_bytes());
        template.extend_from_slice(&0x200u32.to_le_bytes());
        // Extended interrupt: consumer, level, active-high, exclusive; one GSI.
        template.extend_from_slice(&[0x89, 0x06, 0x00, 0x01, 0x01]);
        template.extend_from_slice(&gsi.to_le_bytes());
        template.extend_from_slice(&[0x79, 0x00]);
        let mut buffer = vec![0x0a, u8::try_from(template.len()).unwrap()];
        buffer.extend(template);
        device(
            &format!("VR{slot:02}"),
            &[
                name("_HID", &hid),
                name("_UID", &[0x0a, slot]),
                name("_CCA", &[0x01]),
                name("_CRS", &package_like(&[0x11], &buffer)),
            ],
        )
    }

    /// `Scope (\) { Name (_S5, Package (4) { 5, 0, 0, 0 }) }`, QEMU's `\_S5`.
    pub(crate) fn s5_scope(sleep_type: u8) -> Vec<u8> {
        let package = package_like(&[0x12], &[0x04, 0x0a, sleep_type, 0x00, 0x00, 0x00]);
        scope(b"\\\0", &[name("_S5_", &package)])
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    /// Everything the walk reports, as text.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl<'a> Visitor<'a> for Record {
        fn device(&mut self, path: &str, objects: &DeviceObjects<'a>) {
            self.0.push(format!(
                "device {path} {:?} uid {:?}",
                objects.hid, objects.uid
            ));
        }
        fn name(&mut self, path: &str, data: Data<'a>) {
            self.0.push(format!("name {path} {data:?}"));
        }
    }

    fn walked(aml: &[u8]) -> (Vec<String>, usize) {
        let mut record = Record::default();
        let unknown = walk(aml, &mut record).unwrap();
        (record.0, unknown)
    }

    #[test]
    fn names_and_devices_with_their_paths() {
        let aml = [
            s5_scope(5),
            scope(b"_SB_", &[virtio_device(23, 0xfeb0_2e00, 47)]),
        ]
        .concat();
        let (seen, unknown) = walked(&aml);
        assert_eq!(unknown, 0);
        assert_eq!(seen[0], "name \\_S5_ Package { first: Some(5) }");
        assert!(
            seen.contains(&"name \\_SB_.VR23._UID Integer(23)".to_owned()),
            "{seen:?}"
        );
        assert_eq!(
            seen.last().unwrap(),
            "device \\_SB_.VR23 Some(String([76, 78, 82, 79, 48, 48, 48, 53])) uid Some(23)"
        );
    }

    #[test]
    fn package_first_elements() {
        let first = |package: &[u8]| {
            let (seen, _) = walked(&name("_S5_", package));
            seen[0].clone()
        };
        assert_eq!(
            first(b"\x12\x06\x04\x0a\x05\x00\x00"),
            "name \\_S5_ Package { first: Some(5) }"
        );
        assert_eq!(
            first(b"\x12\x05\x04\x00\x00\x00"),
            "name \\_S5_ Package { first: Some(0) }"
        );
        assert_eq!(
            first(b"\x12\x04\x04\x01\x00"),
            "name \\_S5_ Package { first: Some(1) }"
        );
        let two_byte = [&[0x12, 0x45, 0x01, 0x04, 0x01][..], &[0; 17]].concat();
        assert_eq!(
            first(&two_byte),
            "name \\_S5_ Package { first: Some(1) }",
            "2-byte PkgLength"
        );
        assert_eq!(
            first(b"\x12\x02\x00"),
            "name \\_S5_ Package { first: None }"
        );
    }

    #[test]
    fn every_occurrence_is_found() {
        let haystack = b"xxLNRO0005LNRO0005_S5_LNRO000LNRO0005";
        let mut found = Vec::new();
        find_any(haystack, &[b"LNRO0005"], &mut found);
        assert_eq!(found, [2, 10, 29]);
        found.clear();
        find_any(haystack, &[b"LNRO0005", b"_S5_"], &mut found);
        assert_eq!(found, [2, 10, 18, 29]);
        found.clear();
        find_any(b"_S5__S5_", &[b"_S5_"], &mut found);
        assert_eq!(found, [0, 4]);
        found.clear();
        find_any(b"aaaa", &[b"aa"], &mut found);
        assert_eq!(found, [0, 1, 2], "overlapping");
        find_any(b"a", &[b""], &mut found);
        find_any(b"", &[b"ab"], &mut found);
        find_any(b"ab", &[], &mut found);
        assert_eq!(found.len(), 3);
    }

    /// Every start a naive search finds for any needle, and no other, over
    /// inputs of a small alphabet (many partial matches, needles of
    /// several lengths sharing bytes).
    #[test]
    fn the_set_search_finds_what_a_naive_one_does() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % 1024).unwrap()
        };
        let alphabet = b"ab_5";
        for _ in 0..2000 {
            let length = next() % 40;
            let haystack: Vec<u8> = (0..length).map(|_| alphabet[next() % 4]).collect();
            let count = 1 + next() % 3;
            let needles: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let length = 1 + next() % 5;
                    (0..length).map(|_| alphabet[next() % 4]).collect()
                })
                .collect();
            let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
            let mut found = Vec::new();
            find_any(&haystack, &needles, &mut found);
            found.sort_unstable();
            let mut naive: Vec<usize> = Vec::new();
            for needle in &needles {
                naive.extend(
                    (0..=haystack.len().saturating_sub(needle.len()))
                        .filter(|&at| haystack[at..].starts_with(needle)),
                );
            }
            naive.sort_unstable();
            assert_eq!(found, naive, "{haystack:?} {needles:?}");
        }
    }

    #[test]
    fn walk_for_skips_scopes_without_a_needle() {
        let aml = [
            scope(b"PCI0", &[device("DEV0", &[name("_UID", &[0x01])])]),
            s5_scope(5),
            scope(b"_SB_", &[virtio_device(3, 0xfeb0_0600, 8)]),
        ]
        .concat();
        let mut record = Record::default();
        assert_eq!(walk_for(&aml, &[b"LNRO0005", b"_S5_"], &mut record), Ok(0));
        assert!(
            !record.0.iter().any(|line| line.contains("PCI0")),
            "{:?}",
            record.0
        );
        assert!(record.0.iter().any(|line| line.starts_with("name \\_S5_")));
        assert!(
            record
                .0
                .iter()
                .any(|line| line.starts_with("device \\_SB_.VR03"))
        );
        let (everything, _) = walked(&aml);
        assert!(everything.iter().any(|line| line.contains("PCI0.DEV0")));
    }

    #[test]
    fn parent_prefixes_and_multi_segment_names_resolve() {
        let resolve = |scope: &str, name: &str| {
            // A used buffer: what it held before must not show.
            let mut path = String::from("\\OLD_.PATH");
            resolve_into(scope, name, &mut path);
            path
        };
        assert_eq!(resolve("\\_SB_.PCI0", "^DEV0"), "\\_SB_.DEV0");
        assert_eq!(resolve("\\_SB_", "^^X"), "\\X");
        assert_eq!(resolve("\\", "_S5_"), "\\_S5_");
        assert_eq!(resolve("\\_SB_", "\\_GPE"), "\\_GPE");
        assert_eq!(resolve("\\_SB_", "DEV1"), "\\_SB_.DEV1");
        let reader = Reader {
            aml: b"\x2f\x03_SB_PCI0DEV0",
            unknown_opcodes: 0,
            needles: None,
            buffers: Vec::new(),
        };
        let mut name = String::from("stale");
        assert_eq!(reader.name_string(0, &mut name), Ok(14));
        assert_eq!(name, "_SB_.PCI0.DEV0");
    }

    /// `Method (_CBA) { Return (value) }` inside a device, as QEMU's GPEX
    /// host bridge has it; every other method body, or a `_CBA` outside a
    /// device, gives nothing (no method is executed).
    #[test]
    fn a_constant_cba_is_read_and_nothing_else() {
        #[derive(Default)]
        struct Cba(Vec<Option<u64>>);
        impl<'a> Visitor<'a> for Cba {
            fn device(&mut self, _path: &str, objects: &DeviceObjects<'a>) {
                self.0.push(objects.cba);
            }
        }
        let method = |name: &[u8], body: &[u8]| {
            let mut inner = name.to_vec();
            inner.push(0x00);
            inner.extend_from_slice(body);
            package_like(&[0x14], &inner)
        };
        let returns = [0xa4, 0x0c, 0x00, 0x00, 0x00, 0xe0];
        let cases: [(Vec<u8>, Option<u64>); 5] = [
            (method(b"_CBA", &returns), Some(0xe000_0000)),
            (
                method(b"_CBA", &[0xa4, 0x0e, 1, 0, 0, 0, 0, 0, 0, 0]),
                Some(1),
            ),
            // Return then more code: not the constant form.
            (method(b"_CBA", &[0xa4, 0x01, 0xa3]), None),
            // Return of a name, not a constant.
            (method(b"_CBA", &[0xa4, b'B', b'A', b'S', b'E']), None),
            (method(b"_CRS", &returns), None),
        ];
        for (object, expected) in cases {
            let aml = scope(b"_SB_", &[device("PCI0", &[object])]);
            let mut found = Cba::default();
            walk(&aml, &mut found).unwrap();
            assert_eq!(found.0, [expected]);
        }
        // A truncated method is an error, not a panic.
        let aml = scope(b"_SB_", &[device("PCI0", &[method(b"_CBA", &returns)])]);
        for cut in 0..aml.len() {
            let _ = walk(&aml[..cut], &mut Cba::default());
        }
    }

    #[test]
    fn unknown_opcode_ends_only_its_package() {
        let weird = device("WRD_", &[vec![0x70]]);
        let aml = scope(b"_SB_", &[weird, virtio_device(3, 0xfeb0_0600, 8)]);
        let (seen, unknown) = walked(&aml);
        assert_eq!(unknown, 1);
        assert!(
            seen.iter()
                .any(|line| line.starts_with("device \\_SB_.VR03")),
            "{seen:?}"
        );
    }

    #[test]
    fn truncated_and_garbage_aml_are_errors_not_panics() {
        let mut record = Record::default();
        assert!(walk(&[0x5b, 0x82, 0xff, 0xff, 0x00], &mut record).is_err());
        assert!(walk(&[0x10, 0x4f], &mut record).is_err());
        assert_eq!(
            walk(&[0x08, b'_', b'H'], &mut record),
            Err(AmlError { offset: 1 })
        );
        assert_eq!(walk(&[], &mut record), Ok(0));
        // Every prefix of a real table: never a panic.
        let aml = [
            s5_scope(5),
            scope(b"_SB_", &[virtio_device(23, 0xfeb0_2e00, 47)]),
        ]
        .concat();
        for cut in 0..aml.len() {
            let _ = walk(&aml[..cut], &mut record);
        }
    }
}
