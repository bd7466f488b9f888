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

use alloc::vec::Vec;
use core::ops::Range;

use super::resources;

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

/// The absolute path of an object (`\_SB_.VR23` style), as the table's
/// bytes: segments are not checked to be ASCII (a table from outside may
/// hold anything), and [`core::fmt::Display`] shows each byte as the
/// character of that code point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Path<'p>(&'p [u8]);

impl<'p> Path<'p> {
    pub(crate) fn as_bytes(&self) -> &'p [u8] {
        self.0
    }
}

impl core::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0
            .iter()
            .try_for_each(|&byte| core::fmt::Write::write_char(f, char::from(byte)))
    }
}

impl core::fmt::Debug for Path<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Told about what the walk finds, in table order.
pub(crate) trait Visitor<'a> {
    /// The last segments of the `Name`s [`Self::name`] is told about;
    /// `None`, every one. The walk builds a `Name`'s path only when it is
    /// told (50 instructions a name, most of a walk's).
    const NAMES: Option<&'static [[u8; 4]]> = None;
    /// A `Device` at `path`, after its body was read.
    fn device(&mut self, _path: Path<'_>, _objects: &DeviceObjects<'a>) {}
    /// A `Name` at `path` with constant data.
    fn name(&mut self, _path: Path<'_>, _data: Data<'a>) {}
}

/// Walks `aml` (a DSDT without its 36-byte header). Returns how many
/// packages were cut short by an opcode the reader does not know. The boot
/// uses [`walk_for`]; this full walk is what tests and fuzz targets hold
/// it against.
#[cfg(any(test, not(target_os = "none")))]
pub(crate) fn walk<'a>(aml: &'a [u8], visitor: &mut impl Visitor<'a>) -> Result<usize, AmlError> {
    Reader::new(aml, None).read_all(visitor)
}

/// Like [`walk`], but a `Scope` or `Device` whose bytes contain none of
/// `needles` is skipped whole, unread and unreported: what a visitor
/// looks for by name or `_HID` cannot be inside it. `Scope (\)` is read
/// whatever it holds, as is the root's own term list: that is where ACPI
/// puts the root's objects such as `\_S5`, so they need no needle. A
/// `Device` made only of plain `Name`s may be read and reported without
/// a search, whatever it holds, where reading it costs less.
/// The needles are searched for lazily, from each package asked about to
/// the first occurrence: bytes of packages that come after the last
/// occurrence found and are skipped or read are never searched, so on
/// QEMU's DSDT each transport costs a search of its first 20 bytes.
pub(crate) fn walk_for<'a>(
    aml: &'a [u8],
    needles: &[&[u8]],
    visitor: &mut impl Visitor<'a>,
) -> Result<usize, AmlError> {
    let needles = Needles {
        search: SetSearch::new(needles),
        from: 0,
        next: None,
    };
    Reader::new(aml, Some(needles)).read_all(visitor)
}

/// Appends the offset of every occurrence of any of `needles` in
/// `haystack`, in the order they end, in one pass ([`SetSearch`]).
pub(crate) fn find_any(haystack: &[u8], needles: &[&[u8]], out: &mut Vec<usize>) {
    if let Some(search) = SetSearch::new(needles) {
        search.each_from(haystack, 0, |start| {
            out.push(start);
            usize::MAX
        });
    }
}

/// Horspool's search for a set of needles: the window is the shortest
/// needle, and it moves by what the byte at its end allows for every
/// needle's last window of bytes. About `haystack.len() / shortest`
/// probes, not one per byte, nor one pass per needle: instructions are
/// what a boot under an emulating hypervisor pays for. A probe whose byte
/// ends no needle is a table load and an add; only the others compare
/// needles.
struct SetSearch<'n> {
    needles: &'n [&'n [u8]],
    window: usize,
    longest: usize,
    table: [u8; 256],
}

impl<'n> SetSearch<'n> {
    /// Set in a table entry when the byte ends some needle.
    const ENDS_A_NEEDLE: u8 = 0x80;

    /// `None` without needles, or with an empty one.
    fn new(needles: &'n [&'n [u8]]) -> Option<Self> {
        let window = needles.iter().map(|needle| needle.len()).min()?;
        if window == 0 {
            return None;
        }
        let longest = needles.iter().map(|needle| needle.len()).max()?;
        // A shift below the true one only costs probes: cap it to fit
        // beside the flag.
        let most = u8::try_from(window)
            .unwrap_or(u8::MAX)
            .min(!Self::ENDS_A_NEEDLE);
        let mut table = [most; 256];
        for needle in needles {
            let tail = &needle[needle.len() - window..];
            for (index, &byte) in tail[..window - 1].iter().enumerate() {
                let distance = u8::try_from(window - 1 - index).unwrap_or(u8::MAX);
                let entry = &mut table[usize::from(byte)];
                *entry =
                    (*entry & Self::ENDS_A_NEEDLE) | (*entry & !Self::ENDS_A_NEEDLE).min(distance);
            }
            table[usize::from(tail[window - 1])] |= Self::ENDS_A_NEEDLE;
        }
        Some(Self {
            needles,
            window,
            longest,
            table,
        })
    }

    /// Calls `found` with the start of every occurrence that starts at or
    /// after `from`, in the order they end; `found` returns the end below
    /// which the search is worth going on.
    fn each_from(&self, haystack: &[u8], from: usize, mut found: impl FnMut(usize) -> usize) {
        let Some(mut end) = from.checked_add(self.window - 1) else {
            return;
        };
        let mut limit = usize::MAX;
        while end < limit
            && let Some(&byte) = haystack.get(end)
        {
            let entry = self.table[usize::from(byte)];
            if entry & Self::ENDS_A_NEEDLE != 0 {
                let before = &haystack[..=end];
                for needle in self.needles {
                    if ends_with(before, needle) {
                        let start = before.len() - needle.len();
                        if start >= from {
                            limit = limit.min(found(start));
                        }
                    }
                }
            }
            end += usize::from(entry & !Self::ENDS_A_NEEDLE);
        }
    }

    /// The first start of an occurrence at or after `from`. Occurrences
    /// come in the order they end: after the first one, the search goes
    /// on only as far as a longer needle could end that starts before it.
    fn first_from(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let mut first = usize::MAX;
        self.each_from(haystack, from, |start| {
            first = first.min(start);
            first + self.longest - 1
        });
        (first != usize::MAX).then_some(first)
    }
}

/// `haystack.ends_with(needle)`, with one 8-byte compare for a needle of
/// 8 bytes (`LNRO0005`) instead of a call of `memcmp`.
fn ends_with(haystack: &[u8], needle: &[u8]) -> bool {
    match (haystack.last_chunk::<8>(), <&[u8; 8]>::try_from(needle)) {
        (Some(tail), Ok(needle)) => tail == needle,
        _ => haystack.ends_with(needle),
    }
}

/// The needles of a [`walk_for`] and what is known of them: the first
/// occurrence at or after `from` (`Some(None)`: there is none). Without
/// a needle to search for (none, or an empty one), no package holds one.
struct Needles<'n> {
    search: Option<SetSearch<'n>>,
    from: usize,
    next: Option<Option<usize>>,
}

impl Needles<'_> {
    /// Whether an occurrence starts in `[start, end)`. Packages are asked
    /// about in table order, so what was found for an earlier start
    /// answers for a later one until the walk passes it.
    fn any_in(&mut self, aml: &[u8], start: usize, end: usize) -> bool {
        if let Some(known) = self.known(start, end) {
            return known;
        }
        let next = self
            .search
            .as_ref()
            .and_then(|search| search.first_from(aml, start));
        self.from = start;
        self.next = Some(next);
        next.is_some_and(|next| next < end)
    }

    /// [`Self::any_in`] when what was found answers it; `None` when only
    /// a search can.
    fn known(&self, start: usize, end: usize) -> Option<bool> {
        if self.search.is_none() {
            return Some(false);
        }
        match self.next {
            Some(Some(next)) if next >= start && self.from <= start => Some(next < end),
            Some(None) if self.from <= start => Some(false),
            _ => None,
        }
    }
}

/// The integer constant an object starts with (ZeroOp, OneOp, OnesOp, or
/// a Byte/Word/DWord/QWord prefix and its value, ACPI 6.5 §20.2.3) and
/// its length. `None`: `bytes` starts with no such opcode; `Some(None)`:
/// the value runs past `bytes`.
fn integer_constant(bytes: &[u8]) -> Option<Option<(u64, usize)>> {
    let (&op, value) = bytes.split_first()?;
    let width = match op {
        opcode::ZERO => return Some(Some((0, 1))),
        opcode::ONE => return Some(Some((1, 1))),
        opcode::ONES => return Some(Some((u64::MAX, 1))),
        opcode::BYTE_PREFIX => 1,
        opcode::WORD_PREFIX => 2,
        opcode::DWORD_PREFIX => 4,
        opcode::QWORD_PREFIX => 8,
        _ => return None,
    };
    Some(resources::le(value, 0, width).map(|value| (value, 1 + width)))
}

/// Where the first NUL of `bytes` is, eight bytes a step: a word has a
/// zero byte where `(word - 0x01…01) & !word & 0x80…80` has a bit, and
/// the lowest such bit is the first zero byte's exactly (strings in AML
/// end with one).
fn first_nul(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(word) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + usize::try_from(zeros.trailing_zeros() / 8).unwrap_or(0));
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&byte| byte == 0)
        .map(|index| at + index)
}

/// A NameString as the table has it (ACPI 6.5 §20.2.2): whether it starts
/// at the root, how many `^` it has, and its 4-byte segments.
#[derive(Clone, Copy)]
struct Name<'a> {
    root: bool,
    parents: usize,
    segments: &'a [u8],
}

impl Name<'_> {
    /// Whether this is the one-segment relative name `segment` (`_HID`).
    fn is(&self, segment: &[u8; 4]) -> bool {
        // As arrays: a 4-byte compare, not a call of `memcmp`.
        !self.root
            && self.parents == 0
            && <&[u8; 4]>::try_from(self.segments).is_ok_and(|segments| segments == segment)
    }

    /// Whether a `V` is told about a `Name` with this name.
    fn is_one_of<'a, V: Visitor<'a>>(&self) -> bool {
        V::NAMES.is_none_or(|wanted| {
            self.segments
                .last_chunk::<4>()
                .is_some_and(|last| wanted.contains(last))
        })
    }
}

struct Reader<'a, 'n> {
    aml: &'a [u8],
    unknown_opcodes: usize,
    /// What the walk looks for; `None` walks everything.
    needles: Option<Needles<'n>>,
    /// The paths being walked: each scope's and object's path is a range
    /// of it, appended on the way in and cut off on the way out, so a
    /// name costs no allocation and a path is built once per object.
    paths: Vec<u8>,
}

impl<'a, 'n> Reader<'a, 'n> {
    fn new(aml: &'a [u8], needles: Option<Needles<'n>>) -> Self {
        let mut paths = Vec::with_capacity(64);
        paths.push(opcode::ROOT_CHAR);
        Self {
            aml,
            unknown_opcodes: 0,
            needles,
            paths,
        }
    }

    /// Reads the whole table as the root scope. A read past the end names
    /// the offset it tried, which can lie beyond the table; the error says
    /// the table is truncated at its end at the latest.
    fn read_all(mut self, visitor: &mut impl Visitor<'a>) -> Result<usize, AmlError> {
        self.term_list(0, self.aml.len(), 0..1, None, 0, visitor)
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

    /// The NameString at `at` and the offset after it.
    fn name_string(&self, mut at: usize) -> Result<(Name<'a>, usize), AmlError> {
        let mut root = false;
        let mut parents = 0;
        loop {
            match self.byte(at)? {
                opcode::ROOT_CHAR => root = true,
                opcode::PARENT_PREFIX => parents += 1,
                _ => break,
            }
            at += 1;
        }
        let (segments, start) = match self.byte(at)? {
            opcode::ZERO => (0, at + 1),
            opcode::DUAL_NAME_PREFIX => (2, at + 1),
            opcode::MULTI_NAME_PREFIX => (usize::from(self.byte(at + 1)?), at + 2),
            _ => (1, at),
        };
        let end = start + 4 * segments;
        let segments = self.bytes(start, end)?;
        Ok((
            Name {
                root,
                parents,
                segments,
            },
            end,
        ))
    }

    /// Appends the absolute path of `name`, used in the scope at `scope`
    /// (a range of [`Self::paths`] that ends it), and returns its range.
    /// A name without prefixes extends the scope's path in place; `\` and
    /// `^` keep a prefix of it (the root, or the scope cut at a dot per
    /// `^`), copied after it. Cut off again with [`Self::leave`].
    fn enter(&mut self, scope: &Range<usize>, name: &Name<'_>) -> Range<usize> {
        debug_assert_eq!(self.paths.len(), scope.end);
        let start = if name.root || name.parents > 0 {
            let path = &self.paths[scope.clone()];
            let mut base = if name.root { 1 } else { path.len() };
            for _ in 0..name.parents {
                base = path[..base]
                    .iter()
                    .rposition(|&byte| byte == b'.')
                    .unwrap_or(1)
                    .max(1);
            }
            let start = self.paths.len();
            self.paths
                .extend_from_within(scope.start..scope.start + base);
            start
        } else {
            scope.start
        };
        for segment in name.segments.chunks_exact(4) {
            if self.paths.len() - start > 1 {
                self.paths.push(b'.');
            }
            self.paths.extend_from_slice(segment);
        }
        start..self.paths.len()
    }

    /// Cuts the paths back to the scope an object was in.
    fn leave(&mut self, scope: &Range<usize>) {
        self.paths.truncate(scope.end);
    }

    fn path(&self, range: Range<usize>) -> Path<'_> {
        Path(&self.paths[range])
    }

    /// Reads objects in `[at, end)` in the scope whose path is `scope` (a
    /// range of [`Self::paths`]), telling `visitor`; Names inside a device
    /// also go to `device`.
    fn term_list<V: Visitor<'a>>(
        &mut self,
        mut at: usize,
        end: usize,
        scope: Range<usize>,
        mut device: Option<&mut DeviceObjects<'a>>,
        depth: usize,
        visitor: &mut V,
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
                (opcode::SCOPE, _) => self.scoped(at + 1, end, &scope, false, depth, visitor)?,
                (_, Some(opcode::EXT_DEVICE)) => {
                    self.scoped(at + 2, end, &scope, true, depth, visitor)?
                }
                // NameOp NameString DataRefObject
                (opcode::NAME, _) => {
                    let (name, after) = self.name_string(at + 1)?;
                    let (data, after) = self.data(after, end)?;
                    if let Some(objects) = device.as_deref_mut() {
                        match data {
                            Data::String(text) if name.is(b"_HID") => {
                                objects.hid = Some(Hid::String(text));
                            }
                            Data::Integer(id) if name.is(b"_HID") => {
                                objects.hid = Some(Hid::Eisa(id));
                            }
                            Data::Integer(uid) if name.is(b"_UID") => objects.uid = Some(uid),
                            Data::Buffer(bytes) if name.is(b"_CRS") => objects.crs = Some(bytes),
                            _ => {}
                        }
                    }
                    if name.is_one_of::<V>() {
                        let path = self.enter(&scope, &name);
                        visitor.name(self.path(path), data);
                        self.leave(&scope);
                    }
                    after
                }
                // MethodOp PkgLength NameString MethodFlags TermList: a
                // device's `_CBA` is read when it returns a constant.
                (opcode::METHOD, _) if device.is_some() => {
                    let (after, cba) = self.method(at + 1, end)?;
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
                    let after = self.name_string(at + 2)?.1 + 1;
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

    fn scoped<V: Visitor<'a>>(
        &mut self,
        at: usize,
        limit: usize,
        scope: &Range<usize>,
        is_device: bool,
        depth: usize,
        visitor: &mut V,
    ) -> Result<usize, AmlError> {
        let (end, body) = self.pkg_length(at, limit)?;
        let (name, body) = self.name_string(body)?;
        // A name without segments is the root or an ancestor (`Scope (\)`,
        // `Scope (^)`): the root's is read whatever it holds.
        let aliases_a_scope = name.segments.is_empty();
        if depth >= MAX_DEPTH {
            return Ok(end);
        }
        // A device of plain `Name`s that the needles found so far say
        // nothing about is read before any search: reading it costs less
        // than searching it, and a visitor is told no more than a full
        // walk tells it.
        let known = self.needle_known(at, end);
        if is_device
            && !aliases_a_scope
            && known != Some(false)
            && let Some(objects) = self.plain_names::<V>(body, end)
        {
            let path = self.enter(scope, &name);
            visitor.device(self.path(path), &objects);
            self.leave(scope);
            return Ok(end);
        }
        if !(aliases_a_scope || known.unwrap_or_else(|| self.holds_a_needle(at, end))) {
            return Ok(end);
        }
        let path = self.enter(scope, &name);
        if aliases_a_scope && path.len() > 1 && !self.holds_a_needle(at, end) {
            self.leave(scope);
            return Ok(end);
        }
        let walked = if is_device {
            let mut objects = DeviceObjects::default();
            let walked = self.term_list(
                body,
                end,
                path.clone(),
                Some(&mut objects),
                depth + 1,
                visitor,
            );
            if walked.is_ok() {
                visitor.device(self.path(path), &objects);
            }
            walked
        } else {
            self.term_list(body, end, path, None, depth + 1, visitor)
        };
        self.leave(scope);
        walked.map(|()| end)
    }

    /// A device body `[at, end)` made only of `Name`s of one segment with
    /// an integer, a string or a buffer, none of them a name `V` is told
    /// about: what every VMM's virtio-mmio transport is (`_HID`, `_UID`,
    /// `_CCA`, `_CRS`). Read in one tight loop, what [`Self::term_list`]
    /// would read from it; `None` leaves anything else, or anything
    /// malformed, to that general reader.
    fn plain_names<V: Visitor<'a>>(&self, at: usize, end: usize) -> Option<DeviceObjects<'a>> {
        // Segments as integers: one compare each, not four.
        const HID: u32 = u32::from_le_bytes(*b"_HID");
        const UID: u32 = u32::from_le_bytes(*b"_UID");
        const CRS: u32 = u32::from_le_bytes(*b"_CRS");
        let mut objects = DeviceObjects::default();
        let mut rest = self.aml.get(at..end)?;
        while let &[op, lead, b, c, d, kind, ref tail @ ..] = rest {
            // A lead byte that is no prefix: one NameSeg (`name_string`).
            if op != opcode::NAME
                || matches!(
                    lead,
                    opcode::ROOT_CHAR
                        | opcode::PARENT_PREFIX
                        | opcode::ZERO
                        | opcode::DUAL_NAME_PREFIX
                        | opcode::MULTI_NAME_PREFIX
                )
            {
                return None;
            }
            let segment = [lead, b, c, d];
            if V::NAMES.is_none_or(|wanted| wanted.contains(&segment)) {
                return None;
            }
            let object = &rest[5..];
            let (data, after) = match (integer_constant(object), kind) {
                (Some(integer), _) => {
                    let (value, length) = integer?;
                    (Data::Integer(value), &object[length..])
                }
                (None, opcode::STRING_PREFIX) => {
                    let length = first_nul(tail)?;
                    (Data::String(&tail[..length]), &tail[length + 1..])
                }
                (None, opcode::BUFFER) => {
                    let buffer = end - object.len();
                    let (data, after) = self.data(buffer, end).ok()?;
                    (data, self.aml.get(after..end)?)
                }
                (None, _) => return None,
            };
            match (u32::from_le_bytes(segment), data) {
                (HID, Data::String(text)) => objects.hid = Some(Hid::String(text)),
                (HID, Data::Integer(id)) => objects.hid = Some(Hid::Eisa(id)),
                (UID, Data::Integer(uid)) => objects.uid = Some(uid),
                (CRS, Data::Buffer(bytes)) => objects.crs = Some(bytes),
                _ => {}
            }
            rest = after;
        }
        // A tail too short for a `Name` is the general reader's to judge.
        rest.is_empty().then_some(objects)
    }

    /// A method at `at` (its PkgLength): the offset after it, and the
    /// constant it returns when it is `_CBA` and its whole body is
    /// `Return (constant)`.
    fn method(&self, at: usize, limit: usize) -> Result<(usize, Option<u64>), AmlError> {
        let (end, body) = self.pkg_length(at, limit)?;
        let (name, after) = self.name_string(body)?;
        // MethodFlags, then the TermList.
        let statement = after + 1;
        if !name.is(b"_CBA") || self.aml.get(statement) != Some(&opcode::RETURN) {
            return Ok((end, None));
        }
        let value = self
            .integer(statement + 1)?
            .filter(|&(_, after)| after == end)
            .map(|(value, _)| value);
        Ok((end, value))
    }

    /// Whether `[start, end)` holds one of the needles (always, without).
    fn holds_a_needle(&mut self, start: usize, end: usize) -> bool {
        match &mut self.needles {
            Some(needles) => needles.any_in(self.aml, start, end),
            None => true,
        }
    }

    /// [`Self::holds_a_needle`] when it is known without a search.
    fn needle_known(&self, start: usize, end: usize) -> Option<bool> {
        match &self.needles {
            Some(needles) => needles.known(start, end),
            None => Some(true),
        }
    }

    /// An integer constant (ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWord).
    fn integer(&self, at: usize) -> Result<Option<(u64, usize)>, AmlError> {
        let bytes = self
            .aml
            .get(at..)
            .filter(|bytes| !bytes.is_empty())
            .ok_or(AmlError { offset: at })?;
        match integer_constant(bytes) {
            None => Ok(None),
            Some(None) => Err(AmlError { offset: at }),
            Some(Some((value, length))) => Ok(Some((value, at + length))),
        }
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
                let length = first_nul(self.bytes(text, limit.min(self.aml.len()))?)
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
        fn device(&mut self, path: Path<'_>, objects: &DeviceObjects<'a>) {
            self.0.push(format!(
                "device {path} {:?} uid {:?}",
                objects.hid, objects.uid
            ));
        }
        fn name(&mut self, path: Path<'_>, data: Data<'a>) {
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

    /// A transport as QEMU writes it is read by the plain-`Name` loop,
    /// to what the general reader finds in it.
    #[test]
    fn a_transport_is_plain_names() {
        let aml = virtio_device(3, 0xfeb0_0600, 8);
        // DeviceOp (2 bytes), a 2-byte PkgLength, the name.
        let body = 2 + 2 + 4;
        struct Devices;
        impl Visitor<'_> for Devices {
            const NAMES: Option<&'static [[u8; 4]]> = Some(&[*b"_S5_"]);
        }
        let reader = Reader::new(&aml, None);
        let plain = reader.plain_names::<Devices>(body, aml.len());
        let mut general = DeviceObjects::default();
        Reader::new(&aml, None)
            .term_list(
                body,
                aml.len(),
                0..1,
                Some(&mut general),
                1,
                &mut Record::default(),
            )
            .unwrap();
        assert_eq!(plain, Some(general));
        assert!(general.crs.is_some() && general.uid == Some(3));
    }

    #[test]
    fn the_first_nul_is_found_in_every_position() {
        for length in 0..20 {
            for nul in 0..=length {
                let mut bytes = vec![0xffu8; length];
                let mut expected = None;
                if nul < length {
                    bytes[nul] = 0;
                    expected = Some(nul);
                    // Bytes past it do not matter, a 0x01 after a zero
                    // included (the trick's false positives lie above).
                    if nul + 1 < length {
                        bytes[nul + 1] = 0x01;
                    }
                }
                assert_eq!(first_nul(&bytes), expected, "{bytes:?}");
                bytes
                    .iter_mut()
                    .for_each(|byte| *byte = if *byte == 0xff { 0x80 } else { *byte });
                assert_eq!(first_nul(&bytes), expected, "{bytes:?}");
            }
        }
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
            let search = SetSearch::new(&needles).unwrap();
            for from in 0..=haystack.len() + 1 {
                let first = naive.iter().copied().find(|&start| start >= from);
                assert_eq!(
                    search.first_from(&haystack, from),
                    first,
                    "from {from}: {haystack:?} {needles:?}"
                );
            }
        }
    }

    /// `\_S5` found with no needle of its own, at the root and inside
    /// `Scope (\)`, while a scope without a needle that holds a `_S5_`
    /// of its own is skipped.
    #[test]
    fn the_roots_objects_need_no_needle() {
        let package = package_like(&[0x12], &[0x04, 0x0a, 0x05, 0x00, 0x00, 0x00]);
        for aml in [
            [
                s5_scope(5),
                scope(b"_SB_", &[virtio_device(3, 0xfeb0_0600, 8)]),
            ]
            .concat(),
            [name("_S5_", &package), scope(b"_SB_", &[])].concat(),
            scope(b"\\\0", &[scope(b"_SB_", &[]), name("_S5_", &package)]),
        ] {
            let mut record = Record::default();
            assert_eq!(walk_for(&aml, &[b"LNRO0005"], &mut record), Ok(0));
            assert!(
                record.0.iter().any(|line| line.starts_with("name \\_S5_")),
                "{:?}",
                record.0
            );
        }
        let aml = scope(b"PCI0", &[name("_S5_", &package)]);
        let mut record = Record::default();
        assert_eq!(walk_for(&aml, &[b"LNRO0005"], &mut record), Ok(0));
        assert_eq!(record.0, Vec::<String>::new());
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

    /// Paths of objects named with `^`, `\` and several segments, and the
    /// paths of what follows them (a prefix's copy must not leak into the
    /// next object's path).
    #[test]
    fn parent_prefixes_and_multi_segment_names_resolve() {
        let aml = scope(
            b"_SB_",
            &[scope(
                b"PCI0",
                &[
                    name("^DV0_", &[0x01]),
                    name("^^X___", &[0x01]),
                    name("\\_GPE", &[0x01]),
                    name("\x2f\x03_SB_PCI0DEV0", &[0x01]),
                    name("\x2eAAAABBBB", &[0x01]),
                    name("DEV1", &[0x01]),
                    scope(b"^\0", &[name("INSD", &[0x01])]),
                    name("LAST", &[0x01]),
                ],
            )],
        );
        let (seen, unknown) = walked(&aml);
        assert_eq!(unknown, 0);
        let paths: Vec<&str> = seen
            .iter()
            .map(|line| line.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "\\_SB_.DV0_",
                "\\X___",
                "\\_GPE",
                "\\_SB_.PCI0._SB_.PCI0.DEV0",
                "\\_SB_.PCI0.AAAA.BBBB",
                "\\_SB_.PCI0.DEV1",
                "\\_SB_.INSD",
                "\\_SB_.PCI0.LAST",
            ]
        );
    }

    /// `Method (_CBA) { Return (value) }` inside a device, as QEMU's GPEX
    /// host bridge has it; every other method body, or a `_CBA` outside a
    /// device, gives nothing (no method is executed).
    #[test]
    fn a_constant_cba_is_read_and_nothing_else() {
        #[derive(Default)]
        struct Cba(Vec<Option<u64>>);
        impl<'a> Visitor<'a> for Cba {
            fn device(&mut self, _path: Path<'_>, objects: &DeviceObjects<'a>) {
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
