//! Entry points for the fuzz targets in `xtask/fuzz`: each feeds fuzzer
//! bytes to the parser the kernel itself calls and panics when the result
//! breaks what that parser promises, so a wrong answer is a crash as well
//! as a panic is. Host only (the kernel's parsers are crate-private; these
//! functions are the one door to them). docs/fuzzing.md lists the targets
//! and their invariants.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::Ipv4Addr;

use mote_boot::protocol::exit;
use mote_boot::start_info::{OutOfReach, PhysicalMemory};

use crate::acpi::{self, Acpi, DsdtFacts, aml};
use crate::cmdline::Options;
use crate::net::http::{self, Method, Pages, Parse};
use crate::net::ip_config::{self, IpConfig};
use crate::smp::{MAX_CPUS, Processors, mp_table};
use crate::virtio::acpi::{VIRTIO_MMIO_HID, virtio_mmio_devices_from_dsdt};
use crate::virtio::cmdline::virtio_mmio_devices_from_cmdline;
use crate::virtio::{Discovery, MmioDevice};

/// An ACPI table header's size (ACPI 6.5 §5.2.6).
const SDT_HEADER_SIZE: usize = 36;

/// Most chunks a [`PhysicalImage`] keeps (more only slow each execution).
const MAX_CHUNKS: usize = 64;

/// A fuzzer-chosen physical memory: an entry address, then chunks placed at
/// chosen addresses. Encoded as `u64 entry`, then per chunk `u64 paddr,
/// u16 length, length bytes` (little-endian; the last chunk may be cut
/// short by the end of the input). A chunk that shares an address with an
/// earlier one is dropped, so every address holds one byte whatever the
/// length of the read that sees it, as a machine's memory does. A read
/// succeeds only inside one chunk, as the kernel's identity map refuses
/// what it does not map.
pub struct PhysicalImage<'a> {
    /// The start_info or RSDP address the parser starts from.
    pub entry: u64,
    chunks: Vec<(u64, &'a [u8])>,
    /// Every successful read, in order: `(paddr, length)`.
    reads: RefCell<Vec<(u64, usize)>>,
}

impl<'a> PhysicalImage<'a> {
    /// The image `data` encodes; `None` when it has no entry address.
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (entry, mut rest) = data.split_first_chunk::<8>()?;
        let mut chunks = Vec::new();
        while chunks.len() < MAX_CHUNKS {
            let Some((paddr, after)) = rest.split_first_chunk::<8>() else {
                break;
            };
            let Some((length, after)) = after.split_first_chunk::<2>() else {
                break;
            };
            let length = usize::from(u16::from_le_bytes(*length)).min(after.len());
            let (bytes, after) = after.split_at(length);
            let paddr = u64::from_le_bytes(*paddr);
            if !overlaps_any(&chunks, paddr, bytes.len()) {
                chunks.push((paddr, bytes));
            }
            rest = after;
        }
        Some(Self {
            entry: u64::from_le_bytes(*entry),
            chunks,
            reads: RefCell::new(Vec::new()),
        })
    }

    /// The encoding [`Self::decode`] reads (for seeds and tests). Chunks
    /// longer than `u16::MAX` bytes are split.
    pub fn encode(entry: u64, chunks: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = entry.to_le_bytes().to_vec();
        for &(paddr, bytes) in chunks {
            for (index, piece) in bytes.chunks(usize::from(u16::MAX)).enumerate() {
                let offset = (index * usize::from(u16::MAX)) as u64;
                out.extend_from_slice(&(paddr + offset).to_le_bytes());
                let length = u16::try_from(piece.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&length.to_le_bytes());
                out.extend_from_slice(piece);
            }
        }
        out
    }

    pub fn chunks(&self) -> &[(u64, &'a [u8])] {
        &self.chunks
    }

    /// The bytes at `[paddr, paddr + length)`, as a read would see them.
    pub fn bytes(&self, paddr: u64, length: usize) -> Option<&'a [u8]> {
        self.chunks.iter().find_map(|&(base, bytes)| {
            let offset = usize::try_from(paddr.checked_sub(base)?).ok()?;
            bytes.get(offset..offset.checked_add(length)?)
        })
    }

    /// Every successful read so far, in order.
    pub fn reads(&self) -> Vec<(u64, usize)> {
        self.reads.borrow().clone()
    }
}

/// Whether `[paddr, paddr + length)` shares an address with a chunk.
fn overlaps_any(chunks: &[(u64, &[u8])], paddr: u64, length: usize) -> bool {
    let end = paddr.saturating_add(length as u64);
    length > 0
        && chunks.iter().any(|&(base, bytes)| {
            let base_end = base.saturating_add(bytes.len() as u64);
            !bytes.is_empty() && base < end && paddr < base_end
        })
}

impl PhysicalMemory for PhysicalImage<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), OutOfReach> {
        let bytes = self.bytes(paddr, buf.len()).ok_or(OutOfReach)?;
        buf.copy_from_slice(bytes);
        self.reads.borrow_mut().push((paddr, buf.len()));
        Ok(())
    }
}

/// Whether `part` lies inside `whole` (is a sub-slice of it, not a copy).
fn is_slice_of(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let part_start = part.as_ptr() as usize;
    part.is_empty() || (start <= part_start && part_start + part.len() <= end)
}

/// The command line text the kernel parses: `BootInfo::cmdline` stops at
/// the first byte that is not UTF-8.
fn cmdline_text(data: &[u8]) -> &str {
    match core::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&data[..error.valid_up_to()]).unwrap_or(""),
    }
}

/// Linux's `next_arg` splitting written the plain way (a test per byte),
/// which the kernel's `lex::words` must match.
fn next_arg_reference(cmdline: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut rest = cmdline;
    loop {
        let bytes = rest.as_bytes();
        let Some(start) = bytes.iter().position(|byte| !byte.is_ascii_whitespace()) else {
            return words;
        };
        let mut in_quotes = false;
        let end = bytes[start..]
            .iter()
            .position(|&byte| {
                if byte == b'"' {
                    in_quotes = !in_quotes;
                }
                !in_quotes && byte.is_ascii_whitespace()
            })
            .map_or(bytes.len(), |length| start + length);
        words.push(&rest[start..end]);
        rest = &rest[end..];
    }
}

/// `strtoull(text, &end, 0)` written the plain way (find the digits, then
/// `from_str_radix`), which the kernel's one-pass `auto_radix` must match.
fn strtoull_reference(text: &str) -> Option<(u64, &str)> {
    let (radix, digits) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (16, hex)
        } else if text.len() > 1 && text.starts_with('0') && text.as_bytes()[1].is_ascii_digit() {
            (8, &text[1..])
        } else {
            (10, text)
        };
    let end = digits
        .bytes()
        .position(|byte| !char::from(byte).is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let value = u64::from_str_radix(&digits[..end], radix).ok()?;
    Some((value, &digits[end..]))
}

/// `mote.*`, `loglevel=`, `quiet`, `debug`, `ip=` on the command line.
/// Invariants: every borrowed field is a slice of the command line; each
/// unrecognised option starts `mote.`; a block-write range has sectors;
/// the `virtio_mmio.device` span holds the same entries as the whole line;
/// `auto_radix` agrees with a plain `strtoull` on every word, `words`
/// with a plain `next_arg`, and `split_key` with `split_once('=')`.
pub fn cmdline_options(data: &[u8]) {
    let cmdline = cmdline_text(data);
    let words: Vec<&str> = crate::cmdline::lex::words(cmdline).collect();
    assert_eq!(words, next_arg_reference(cmdline), "{cmdline:?}");
    for word in cmdline.split([' ', '=', '@', ':', ',']) {
        assert_eq!(
            crate::cmdline::lex::auto_radix(word),
            strtoull_reference(word),
            "{word:?}"
        );
    }
    let options = Options::parse(cmdline);
    if let Some(ip) = options.ip {
        assert!(is_slice_of(ip.as_bytes(), cmdline.as_bytes()), "ip= {ip:?}");
    }
    for unrecognised in &options.unrecognised {
        let option = unrecognised.option;
        assert!(is_slice_of(option.as_bytes(), cmdline.as_bytes()));
        assert!(option.starts_with("mote."), "{option:?}");
    }
    if let Some((_, sectors)) = options.blk_write {
        assert!(sectors > 0, "mote.blk.write= with no sectors");
    }
    // Device discovery reads only this span: it must hold every entry.
    let span = options.virtio_mmio_words;
    assert!(is_slice_of(span.as_bytes(), cmdline.as_bytes()), "{span:?}");
    let entries = |text| {
        let entries = core::cell::RefCell::new(Vec::new());
        crate::virtio::cmdline::virtio_mmio_devices_from_cmdline(
            text,
            |device| entries.borrow_mut().push(Ok(device)),
            |bad| entries.borrow_mut().push(Err(bad)),
        );
        entries.into_inner()
    };
    assert_eq!(
        entries(span),
        entries(cmdline),
        "{cmdline:?}: span {span:?}"
    );
    for word in crate::cmdline::lex::words(cmdline) {
        assert_eq!(
            crate::cmdline::lex::split_key(word),
            word.split_once('='),
            "{word:?}"
        );
    }
    let _ = options.max_log_level();
}

/// The `virtio_mmio.device=` value of `device` as Linux writes it.
fn format_device(device: &MmioDevice) -> String {
    let mut text = format!("{:#x}@{:#x}:{}", device.size, device.base, device.irq);
    if let Some(id) = device.id {
        text.push_str(&format!(":{id}"));
    }
    text
}

/// `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` entries. Invariants:
/// every window is non-empty, does not wrap and has a non-zero base and
/// IRQ; every refused value is a slice of the command line; formatting a
/// device and parsing it again gives the same device; after
/// `drop_overlapping` no two kept windows overlap.
pub fn virtio_mmio_cmdline(data: &[u8]) {
    let cmdline = cmdline_text(data);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    virtio_mmio_devices_from_cmdline(cmdline, |device| good.push(device), |entry| bad.push(entry));
    for device in &good {
        assert!(
            device.size > 0 && device.base > 0 && device.irq > 0,
            "{device:?}"
        );
        assert!(device.base.checked_add(device.size).is_some(), "{device:?}");
        assert_eq!(device.found_by, Discovery::Cmdline);
        let again = format!("virtio_mmio.device={}", format_device(device));
        let mut reparsed = Vec::new();
        virtio_mmio_devices_from_cmdline(&again, |d| reparsed.push(d), |b| panic!("{b:?}"));
        assert_eq!(reparsed, [*device], "{again}");
    }
    for entry in &bad {
        assert!(is_slice_of(entry.value.as_bytes(), cmdline.as_bytes()));
    }
    // What boot keeps: no two windows share a byte, and each dropped one
    // overlaps the kept one it names.
    let count = good.len();
    let dropped = crate::virtio::cmdline::drop_overlapping(&mut good);
    assert_eq!(good.len() + dropped.len(), count);
    let overlap = |a: &MmioDevice, b: &MmioDevice| {
        a.base < b.base.saturating_add(b.size) && b.base < a.base.saturating_add(a.size)
    };
    for (index, a) in good.iter().enumerate() {
        assert!(good[index + 1..].iter().all(|b| !overlap(a, b)), "{good:?}");
    }
    for (device, other) in &dropped {
        assert!(overlap(device, other) && good.contains(other));
    }
}

/// Linux's `ip=` value. Invariants: a static prefix is at most 32; a
/// static configuration written back in `ip=` form parses to itself;
/// `dotted_quad` reads every `:` field as `Ipv4Addr::from_str` does.
pub fn ip_config(data: &[u8]) {
    let value = cmdline_text(data);
    for field in value.split(':') {
        assert_eq!(
            ip_config::dotted_quad(field),
            field.parse::<Ipv4Addr>().ok(),
            "{field:?}"
        );
    }
    let Ok(Some(IpConfig::Static(config))) = ip_config::parse(value) else {
        return;
    };
    assert!(config.prefix <= 32, "{config:?}");
    let mask = Ipv4Addr::from_bits(
        u32::MAX
            .checked_shl(32 - u32::from(config.prefix))
            .unwrap_or(0),
    );
    let show = |address: Option<Ipv4Addr>| address.map(|a| format!("{a}")).unwrap_or_default();
    let again = format!(
        "{}:{}:{}:{mask}",
        config.client,
        show(config.server),
        show(config.gateway)
    );
    assert_eq!(
        ip_config::parse(&again),
        Ok(Some(IpConfig::Static(config))),
        "{value:?} -> {again:?}"
    );
}

/// What the `aml` walk told a visitor, checked against the input.
struct CheckedWalk<'a> {
    aml: &'a [u8],
    virtio_devices: usize,
    /// SLP_TYPa of every `\_S5_` package the walk saw.
    s5: Vec<u8>,
}

impl<'a> aml::Visitor<'a> for CheckedWalk<'a> {
    fn device(&mut self, path: aml::Path<'_>, objects: &aml::DeviceObjects<'a>) {
        assert!(path.as_bytes().starts_with(b"\\"), "device path {path:?}");
        if let Some(crs) = objects.crs {
            assert!(
                is_slice_of(crs, self.aml),
                "_CRS of {path} is not in the table"
            );
        }
        if let Some(aml::Hid::String(hid)) = objects.hid {
            assert!(
                is_slice_of(hid, self.aml),
                "_HID of {path} is not in the table"
            );
            if hid == VIRTIO_MMIO_HID {
                self.virtio_devices += 1;
            }
        }
    }

    fn name(&mut self, path: aml::Path<'_>, data: aml::Data<'a>) {
        assert!(path.as_bytes().starts_with(b"\\"), "name path {path:?}");
        if let (b"\\_S5_", aml::Data::Package { first: Some(first) }) = (path.as_bytes(), data) {
            self.s5.push(u8::try_from(first & 0x7).unwrap_or(0));
        }
        if let aml::Data::String(bytes) | aml::Data::Buffer(bytes) = data {
            assert!(
                is_slice_of(bytes, self.aml),
                "{path}'s data is not in the table"
            );
        }
    }
}

/// The DSDT's AML (without its header) as the virtio discovery reads it.
/// Invariants: every path is absolute and every string, buffer and `_CRS`
/// a slice of the table; each `LNRO0005` device is either a transport or
/// skipped with a reason; every transport window is non-empty, does not
/// wrap and has an interrupt; the walk is deterministic.
pub fn dsdt_aml(data: &[u8]) {
    let mut walk = CheckedWalk {
        aml: data,
        virtio_devices: 0,
        s5: Vec::new(),
    };
    let walked = aml::walk(data, &mut walk);
    let scan = virtio_mmio_devices_from_dsdt(data);
    // The boot's walk skips packages that cannot hold a transport (but
    // never the root's term list or `Scope (\)`); where the full walk
    // succeeds it must find the same devices, and a `\_S5` the full walk
    // saw too (it may miss one written inside a skipped scope).
    if let Ok(full) = &scan {
        let facts =
            DsdtFacts::scan(data).expect("the skipping walk fails where the full one succeeds");
        assert_eq!(
            facts.virtio_mmio.devices, full.devices,
            "the skipping walk missed transports"
        );
        if let Some(s5) = facts.s5 {
            assert!(
                walk.s5.contains(&s5),
                "a \\_S5 the full walk did not see: {s5} (it saw {:?})",
                walk.s5
            );
        }
    }
    match (&walked, &scan) {
        (Ok(unknown), Ok(scan)) => {
            assert_eq!(*unknown, scan.unknown_opcodes);
            assert_eq!(walk.virtio_devices, scan.devices.len() + scan.skipped.len());
            for device in &scan.devices {
                assert!(
                    device.size > 0 && device.base > 0 && device.irq > 0,
                    "{device:?}"
                );
                assert!(device.base.checked_add(device.size).is_some(), "{device:?}");
                assert_eq!(device.found_by, Discovery::Acpi);
            }
        }
        (Err(walk_error), Err(scan_error)) => {
            assert_eq!(walk_error, scan_error);
            assert!(
                walk_error.offset <= data.len(),
                "error offset {} is past the table's {} bytes",
                walk_error.offset,
                data.len()
            );
        }
        _ => panic!("two walks of the same AML disagree: {walked:?} / {scan:?}"),
    }
}

/// A `_CRS` resource template, read as a virtio-mmio device's and as a
/// PCI host bridge's. Invariants: a window found is non-empty, with a
/// non-zero base and interrupt; a bridge's bus range is ordered; its
/// memory windows are non-empty, do not wrap, and number at most
/// `MAX_WINDOWS`; BARs planned into them (every power-of-two size from
/// 4 KiB to 4 GiB, 32- and 64-bit) are naturally aligned, inside one
/// window of their width, and never overlap.
pub fn aml_resources(data: &[u8]) {
    use crate::pci::assign;
    use crate::pci::bar::{Bar, BarKind};
    use crate::pci::config::Bdf;

    if let Ok(window) = acpi::resources::window_and_interrupt(data) {
        assert!(
            window.base > 0 && window.size > 0 && window.irq > 0,
            "{window:?}"
        );
    }
    let Ok(bridge) = acpi::resources::bridge_resources(data) else {
        return;
    };
    if let Some((first, last)) = bridge.buses {
        assert!(first <= last, "{bridge:?}");
    }
    assert!(bridge.memory.len() <= acpi::resources::MAX_WINDOWS);
    for window in &bridge.memory {
        assert!(window.size > 0 && window.base.checked_add(window.size - 1).is_some());
    }
    let Some(bdf) = Bdf::new(0, 1, 0) else {
        return;
    };
    let wanted: Vec<(Bdf, Bar)> = (12..=32)
        .flat_map(|shift| {
            [BarKind::Memory32, BarKind::Memory64].map(|kind| {
                let bar = Bar {
                    index: 0,
                    kind,
                    prefetchable: false,
                    address: 0,
                    size: 1 << shift,
                };
                (bdf, bar)
            })
        })
        .collect();
    let placed = assign::plan(&bridge.memory, &[], &wanted);
    assert_eq!(placed.len(), wanted.len());
    let mut taken: Vec<(u64, u64)> = Vec::new();
    for ((_, bar), place) in wanted.iter().zip(&placed) {
        let Ok(address) = *place else { continue };
        let end = address + bar.size;
        assert!(address.is_multiple_of(bar.size), "{address:#x} {bar:?}");
        assert!(
            bridge
                .memory
                .iter()
                .any(|window| window.base <= address && end <= window.end()),
            "{address:#x} {bar:?} outside {:?}",
            bridge.memory
        );
        if bar.kind == BarKind::Memory32 {
            assert!(end <= 1 << 32, "a 32-bit BAR at {address:#x}");
        }
        assert!(
            taken.iter().all(|&(from, to)| end <= from || to <= address),
            "{address:#x} {bar:?} overlaps {taken:x?}"
        );
        taken.push((address, end));
    }
}

/// Sets an ACPI table's checksum byte so its bytes sum to zero.
fn repair_checksum(table: &mut [u8], checksum_at: usize, length: usize) {
    let length = length.min(table.len());
    if checksum_at >= length {
        return;
    }
    table[checksum_at] = 0;
    let sum = table[..length]
        .iter()
        .fold(0u8, |sum, &b| sum.wrapping_add(b));
    table[checksum_at] = 0u8.wrapping_sub(sum);
}

/// Repairs the checksums of every RSDP and table at the start of a chunk,
/// so the fuzzer reaches the code behind them.
fn repair_checksums(data: &mut [u8]) {
    let mut at = 8;
    while at + 10 <= data.len() {
        let length = usize::from(u16::from_le_bytes([data[at + 8], data[at + 9]]));
        let start = at + 10;
        let end = (start + length).min(data.len());
        let chunk = &mut data[start..end];
        if chunk.starts_with(b"RSD PTR ") {
            repair_checksum(chunk, 8, 20);
            let extended = chunk
                .get(20..24)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            repair_checksum(chunk, 32, usize::try_from(extended).unwrap_or(0).max(36));
        } else if chunk.len() >= 36 {
            let declared = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            repair_checksum(chunk, 9, usize::try_from(declared).unwrap_or(usize::MAX));
        }
        at = end;
    }
}

/// The ACPI tables from the RSDP, as the boot reads them: RSDP →
/// XSDT/RSDT → every table listed, and the DSDT the FADT names, each read
/// once ([`Acpi::read`]); then the one DSDT walk, the sleep register and the
/// MADT's I/O APICs from those copies. The first input byte's bit 0 asks to
/// repair every checksum first. Invariants: every table kept is the bytes
/// at its address, whole, with its own signature; the DSDT's AML is those
/// bytes after the header; the sleep value has SLP_EN set and a non-zero
/// register; the I/O APICs fit in the MADT; the same image gives the same
/// answers.
pub fn acpi_tables(data: &[u8]) {
    let Some((&flags, image)) = data.split_first() else {
        return;
    };
    let mut image = image.to_vec();
    if flags & 1 != 0 {
        repair_checksums(&mut image);
    }
    let Some(memory) = PhysicalImage::decode(&image) else {
        return;
    };
    let rsdp = memory.entry;

    let Ok(tables) = Acpi::read(&memory, rsdp) else {
        return;
    };
    for table in &tables.tables {
        let at = memory
            .bytes(table.paddr, table.bytes.len())
            .expect("a table's range was readable");
        assert_eq!(at, table.bytes.as_slice(), "table at {:#x}", table.paddr);
        assert_eq!(table.bytes[..4], table.signature);
    }
    let facts = tables.dsdt_aml().ok().and_then(|aml| {
        dsdt_aml(aml);
        DsdtFacts::scan(aml).ok()
    });
    let sleep = tables.sleep_control(facts.as_ref().and_then(|facts| facts.s5));
    if let Ok(sleep) = &sleep {
        assert_ne!(sleep.address, 0);
        assert_eq!(
            sleep.value & exit::sleep_control_value(0),
            exit::sleep_control_value(0)
        );
        assert!(facts.is_some(), "a sleep register without a readable DSDT");
    }
    let io_apics = tables.io_apics();
    if let Ok((io_apics, overrides)) = &io_apics {
        assert!(io_apics.len() <= acpi::MAX_IO_APICS);
        let madt = tables.table(b"APIC").expect("the MADT was read");
        // Each entry is at least 2 bytes, after the 44-byte MADT header.
        assert!(2 * (io_apics.len() + overrides) <= madt.bytes.len().saturating_sub(44));
    }
    let windows = tables.ecam_windows();
    if !windows.is_empty() {
        let mcfg = tables.table(b"MCFG").expect("the MCFG was read");
        // 16 bytes each, after the header and 8 reserved bytes.
        assert!(44 + 16 * windows.len() <= mcfg.bytes.len());
    }
    for window in &windows {
        assert!(window.start_bus <= window.end_bus, "{window:?}");
        assert_eq!(window.base % acpi::ECAM_BUS_SIZE, 0, "{window:?}");
        assert!(
            window.start().checked_add(window.size()).is_some(),
            "{window:?}"
        );
    }

    if let Ok(processors) = tables.processors() {
        let madt = tables.table(b"APIC").expect("the MADT was read");
        // Each processor entry is at least 8 bytes, after the 44-byte header.
        check_processors(&processors, madt.bytes.len().saturating_sub(44) / 8);
    }

    let again = PhysicalImage::decode(&image).expect("decoded once");
    assert_eq!(Acpi::read(&again, rsdp).as_ref(), Ok(&tables));
}

/// What every processor list promises: each APIC id once, at most
/// [`MAX_CPUS`], and no more entries accounted for than the table has room
/// for (`entries`); the boot processor, when named, is one of the CPUs.
fn check_processors(processors: &Processors, entries: usize) {
    let ids = processors.apic_ids();
    assert!(ids.len() <= MAX_CPUS);
    for (index, id) in ids.iter().enumerate() {
        assert!(!ids[..index].contains(id), "APIC id {id} twice");
    }
    let accounted =
        ids.len() + processors.duplicates + processors.disabled + processors.beyond_limit;
    assert!(
        accounted <= entries,
        "{accounted} entries in room for {entries}"
    );
    assert!(processors.online_capable <= processors.disabled);
    if let Some(boot) = processors.boot_processor {
        assert!(ids.contains(&boot), "boot processor {boot} is not a CPU");
    }
}

/// Repairs the checksum of every MP floating pointer and configuration
/// table at the start of a chunk, so the fuzzer reaches the entries.
fn repair_mp_checksums(data: &mut [u8]) {
    let mut at = 8;
    while at + 10 <= data.len() {
        let length = usize::from(u16::from_le_bytes([data[at + 8], data[at + 9]]));
        let start = at + 10;
        let end = (start + length).min(data.len());
        let chunk = &mut data[start..end];
        if chunk.starts_with(b"_MP_") {
            repair_checksum(chunk, 10, 16);
        } else if chunk.starts_with(b"PCMP") && chunk.len() >= 8 {
            let declared = usize::from(u16::from_le_bytes([chunk[4], chunk[5]]));
            repair_checksum(chunk, 7, declared);
        }
        at = end;
    }
}

/// The MP table reader (`smp::mp_table`): the floating pointer search over
/// the image, and the configuration table at the image's entry address.
/// The first byte's bit 0 asks to repair every checksum first. Invariants:
/// a floating pointer found is a checksummed `_MP_` paragraph of the image
/// inside a search area; every processor list keeps each APIC id once,
/// accounts for no more entries than the table holds, and names a boot
/// processor among its CPUs; the same image gives the same answers.
pub fn mp_table(data: &[u8]) {
    let Some((&flags, image)) = data.split_first() else {
        return;
    };
    let mut image = image.to_vec();
    if flags & 1 != 0 {
        repair_mp_checksums(&mut image);
    }
    let Some(memory) = PhysicalImage::decode(&image) else {
        return;
    };
    if let Some(pointer) = mp_table::find_floating_pointer(&memory) {
        let bytes = memory
            .bytes(pointer.paddr, 16)
            .expect("the pointer was read");
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)), 0);
        assert_eq!(pointer.paddr % 16, 0);
        let inside = mp_table::search_areas(&memory)
            .into_iter()
            .flatten()
            .any(|(start, length)| (start..start + length as u64).contains(&pointer.paddr));
        assert!(
            inside,
            "pointer at {:#x} outside the search areas",
            pointer.paddr
        );
    }
    let searched = mp_table::processors(&memory);
    let direct = mp_table::read_table(&memory, memory.entry);
    for processors in [&searched, &direct].into_iter().flatten() {
        // A processor entry is 20 bytes; a table is at most 64 KiB.
        check_processors(processors, usize::from(u16::MAX) / 20);
    }
    if let Ok(processors) = &direct {
        let header = memory.bytes(memory.entry, 44).expect("the header was read");
        let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
        check_processors(processors, length.saturating_sub(44) / 20);
    }
    let again = PhysicalImage::decode(&image).expect("decoded once");
    assert_eq!(mp_table::processors(&again), searched);
    assert_eq!(mp_table::read_table(&again, again.entry), direct);
}

/// Pages with fixed bodies.
struct FixedPages;

impl Pages for FixedPages {
    fn status(&self) -> Vec<u8> {
        b"status\n".to_vec()
    }
    fn tslog(&self) -> Vec<u8> {
        b"tslog\n".to_vec()
    }
}

/// The HTTP request head parser and the router, as the server calls them
/// on what a connection has received. Invariants: a request's path is a
/// slice of the input starting `/`, found only once the head is complete
/// within the size limit; a rejection is a 4xx status; only an admin's
/// `POST /poweroff` powers off; every response states its body's length
/// and whether the connection stays open; a pipelined next request starts
/// right after the head.
pub fn http_request(data: &[u8]) {
    let parsed = http::parse_request(data);
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n");
    match parsed {
        Parse::Incomplete => assert!(head_end.is_none() && data.len() < http::MAX_HEAD),
        Parse::Reject(status) => {
            assert!((400..500).contains(&status), "{status}");
            let response = http::error_response(status);
            assert!(response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
        Parse::Request {
            method,
            path,
            keep_alive,
            head_length,
            ..
        } => {
            let end = head_end.expect("a request has a complete head");
            assert!(end + 4 <= http::MAX_HEAD);
            // A pipelined next request starts right after this head.
            assert_eq!(head_length, end + 4);
            assert!(is_slice_of(path.as_bytes(), &data[..end]), "{path:?}");
            assert!(path.starts_with('/'), "{path:?}");
            for from_admin in [false, true] {
                let (status, body, action) = http::route(method, path, from_admin, &FixedPages);
                let powers_off = action == http::Action::PowerOff;
                assert_eq!(
                    powers_off,
                    from_admin
                        && method == Method::Post
                        && path.split('?').next() == Some("/poweroff"),
                    "{method:?} {path:?}"
                );
                let head_only = method == Method::Head;
                let response = http::response(status, &body, head_only, keep_alive);
                let length = format!("Content-Length: {}\r\n", body.len());
                let connection = if keep_alive { "keep-alive" } else { "close" };
                let connection = format!("Connection: {connection}\r\n");
                assert!(
                    response
                        .windows(connection.len())
                        .any(|w| w == connection.as_bytes())
                );
                assert!(
                    response
                        .windows(length.len())
                        .any(|w| w == length.as_bytes())
                );
                let expected = if head_only { 0 } else { body.len() };
                assert!(response.ends_with(&body[body.len() - expected..]));
            }
        }
    }
}

/// The ranges the ACPI reader reads from `memory`, starting at `rsdp`
/// (for cutting a captured memory down to a small seed).
pub fn acpi_read_ranges(memory: &PhysicalImage<'_>, rsdp: u64) -> Vec<(u64, usize)> {
    let _ = Acpi::read(memory, rsdp);
    memory.reads()
}

/// The DSDT's AML the kernel would read from `memory`.
pub fn dsdt_aml_of(memory: &PhysicalImage<'_>, rsdp: u64) -> Option<Vec<u8>> {
    let tables = Acpi::read(memory, rsdp).ok()?;
    tables.dsdt_aml().ok().map(<[u8]>::to_vec)
}

/// Every `_CRS` template in `aml`, in table order.
pub fn crs_templates(aml: &[u8]) -> Vec<Vec<u8>> {
    struct Templates(Vec<Vec<u8>>);
    impl<'a> aml::Visitor<'a> for Templates {
        fn device(&mut self, _path: aml::Path<'_>, objects: &aml::DeviceObjects<'a>) {
            if let Some(crs) = objects.crs {
                self.0.push(crs.to_vec());
            }
        }
    }
    let mut templates = Templates(Vec::new());
    let _ = aml::walk(aml, &mut templates);
    templates.0
}

/// A fuzzer-chosen PCI segment, as [`pci_config`] reads it: first and last
/// bus, then per function `bus, device-function (device << 3 | function),
/// 24 bytes of BAR size masks, up to 256 bytes of configuration space`
/// (zero-padded; at most [`MAX_PCI_FUNCTIONS`] functions, a later record
/// for the same function replacing the earlier). A write of all ones to a
/// BAR reads back that BAR's mask and the flag bits, as hardware does; any
/// other write is stored, but for the status register (read-only here).
pub struct FuzzConfigSpace {
    functions: alloc::collections::BTreeMap<crate::pci::config::Bdf, ([u8; 256], [u32; 6])>,
    accesses: core::cell::Cell<usize>,
}

/// Most functions a [`FuzzConfigSpace`] holds.
const MAX_PCI_FUNCTIONS: usize = 64;

impl FuzzConfigSpace {
    fn decode(data: &[u8]) -> Option<(Self, core::ops::RangeInclusive<u8>)> {
        let (&[start, end], mut rest) = data.split_first_chunk::<2>()?;
        let mut functions = alloc::collections::BTreeMap::new();
        let mut records = 0;
        while let Some((&[bus, device_function], after)) = rest.split_first_chunk::<2>() {
            if records == MAX_PCI_FUNCTIONS {
                break;
            }
            records += 1;
            let mut masks = [0u32; 6];
            let mut after = after;
            for mask in &mut masks {
                let Some((bytes, tail)) = after.split_first_chunk::<4>() else {
                    break;
                };
                *mask = u32::from_le_bytes(*bytes);
                after = tail;
            }
            let length = after.len().min(256);
            let mut bytes = [0u8; 256];
            bytes[..length].copy_from_slice(&after[..length]);
            rest = &after[length..];
            let bdf = crate::pci::config::Bdf::new(bus, device_function >> 3, device_function & 7)?;
            functions.insert(bdf, (bytes, masks));
        }
        let config = Self {
            functions,
            accesses: core::cell::Cell::new(0),
        };
        Some((config, start..=end))
    }
}

impl crate::pci::config::ConfigSpace for FuzzConfigSpace {
    fn read(&self, bdf: crate::pci::config::Bdf, offset: u16) -> u32 {
        assert!(
            offset.is_multiple_of(4) && offset < 256,
            "read at {offset:#x}"
        );
        self.accesses.set(self.accesses.get() + 1);
        let at = usize::from(offset);
        self.functions.get(&bdf).map_or(u32::MAX, |(bytes, _)| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        })
    }

    fn write(&mut self, bdf: crate::pci::config::Bdf, offset: u16, value: u32) {
        assert!(
            offset.is_multiple_of(4) && offset < 256,
            "write at {offset:#x}"
        );
        self.accesses.set(self.accesses.get() + 1);
        let Some((bytes, masks)) = self.functions.get_mut(&bdf) else {
            return;
        };
        let at = usize::from(offset);
        let old = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let value = match at {
            0x04 => (value & 0xffff) | (old & 0xffff_0000),
            0x10..0x28 => {
                let mask = masks[(at - 0x10) / 4];
                (value & mask) | (old & !mask & 0xf)
            }
            _ => value,
        };
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
}

/// Enumerates a fuzzer-chosen segment, then sizes each function's BARs and
/// walks its capabilities, as boot does. Checks: only buses of the range
/// are walked, each once, the first first; functions are distinct, on
/// walked buses, and answer; every BAR is a power of two, aligned and not
/// wrapping, and sizing leaves the BAR registers as they were; a
/// capability list has distinct offsets past the header, at most 48; an
/// MSI-X capability that passes its check has its table and pending bits
/// inside a memory BAR; the accesses stay below a bound linear in the
/// buses walked.
pub fn pci_config(data: &[u8]) {
    use crate::pci::bar::{BRIDGE_BARS, DEVICE_BARS, size_bars};
    use crate::pci::capability::{CAPABILITY_MSIX, MSIX_ENTRY_SIZE, capabilities, msix};
    use crate::pci::config::{ConfigSpace, HEADER_TYPE_BRIDGE, HEADER_TYPE_DEVICE};
    use crate::pci::enumerate::enumerate;

    let Some((mut config, buses)) = FuzzConfigSpace::decode(data) else {
        return;
    };
    let found = enumerate(&config, buses.clone());
    let walked = found.buses.len();
    assert!(walked <= 256);
    assert!(
        config.accesses.get() <= walked * (32 + 32 * 8 * 3),
        "{walked} buses"
    );
    if buses.is_empty() {
        assert!(found.buses.is_empty() && found.functions.is_empty());
        assert_eq!(config.accesses.get(), 0, "accesses for an empty bus range");
        return;
    }
    assert_eq!(found.buses.first(), Some(buses.start()));
    let mut seen = [false; 256];
    for &bus in &found.buses {
        assert!(buses.contains(&bus), "bus {bus} outside {buses:?}");
        assert!(
            !core::mem::replace(&mut seen[usize::from(bus)], true),
            "bus {bus} twice"
        );
    }
    let mut addresses: Vec<_> = found
        .functions
        .iter()
        .map(|function| function.bdf)
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), found.functions.len(), "a function twice");
    for function in &found.functions {
        assert!(seen[usize::from(function.bdf.bus)]);
        assert!(config.functions.contains_key(&function.bdf));
        let count = match function.header_type {
            HEADER_TYPE_DEVICE => DEVICE_BARS,
            HEADER_TYPE_BRIDGE => BRIDGE_BARS,
            _ => continue,
        };
        let before: Vec<u32> = (0..count)
            .map(|index| config.read(function.bdf, 0x10 + 4 * u16::from(index)))
            .collect();
        let bars = size_bars(&mut config, function.bdf, count);
        for bar in &bars.bars {
            assert!(bar.size.is_power_of_two(), "{bar:?}");
            assert_eq!(bar.address % bar.size, 0, "{bar:?}");
            assert!(bar.address.checked_add(bar.size).is_some(), "{bar:?}");
        }
        let after: Vec<u32> = (0..count)
            .map(|index| config.read(function.bdf, 0x10 + 4 * u16::from(index)))
            .collect();
        // Sizing restores what it read, up to the bits a write cannot set.
        let masks = &config.functions[&function.bdf].1;
        for (index, (before, after)) in before.iter().zip(&after).enumerate() {
            let keep = masks[index] | 0xf;
            assert_eq!(before & keep, after & keep, "BAR{index} changed by sizing");
        }
        let (list, _) = capabilities(&config, function.bdf);
        assert!(list.len() <= 48);
        let mut offsets: Vec<u16> = list.iter().map(|capability| capability.offset).collect();
        assert!(
            offsets
                .iter()
                .all(|&offset| (0x40..=0xfc).contains(&offset))
        );
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), list.len(), "a capability twice");
        for capability in list.iter().filter(|c| c.id == CAPABILITY_MSIX) {
            let Ok(table) = msix(&config, function.bdf, *capability) else {
                continue;
            };
            assert!((1..=2048).contains(&table.vectors));
            if table.check(function.bdf, &bars).is_ok() {
                let bar = bars.get(table.table.bar).unwrap();
                assert!(bar.is_memory());
                let end =
                    u64::from(table.table.offset) + u64::from(table.vectors) * MSIX_ENTRY_SIZE;
                assert!(end <= bar.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FuzzConfigSpace, PhysicalImage};
    use crate::pci::bar::{DEVICE_BARS, size_bars};
    use crate::pci::capability::{capabilities, msix};
    use crate::pci::enumerate::enumerate;

    /// One address, one byte: a chunk that overlaps an earlier one is
    /// dropped, so a 1-byte and a 64-byte read at one address agree (CI's
    /// start_info and mp_table crashes read through two chunks).
    #[test]
    fn an_image_keeps_one_byte_per_address() {
        let wide = [b'a'; 64];
        let encoded = PhysicalImage::encode(
            0x1000,
            &[(0x2000, &wide), (0x2010, b"zz"), (0x2040, b"b\0")],
        );
        let image = PhysicalImage::decode(&encoded).unwrap();
        assert_eq!(image.chunks().len(), 2, "the overlapping chunk dropped");
        assert_eq!(image.bytes(0x2010, 1), Some(&b"a"[..]));
        assert_eq!(image.bytes(0x2010, 2), Some(&b"aa"[..]));
        assert_eq!(image.bytes(0x2040, 2), Some(&b"b\0"[..]));
        assert_eq!(image.bytes(0x203f, 2), None, "no read across two chunks");
    }

    /// The hand-written seeds reach what they were written for.
    #[test]
    fn pci_seeds_describe_what_they_say() {
        let seed = include_bytes!("../../xtask/fuzz/corpus/pci_config/q35-like-by-hand");
        let (mut config, buses) = FuzzConfigSpace::decode(seed).unwrap();
        let found = enumerate(&config, buses);
        assert_eq!(found.buses, [0, 1]);
        assert_eq!(found.functions.len(), 4);
        let blk = found.functions[1].bdf;
        let bars = size_bars(&mut config, blk, DEVICE_BARS);
        assert_eq!(bars.bars.len(), 3, "{bars:?}");
        let (list, stopped) = capabilities(&config, blk);
        assert_eq!((list.len(), stopped), (6, None));
        let table = msix(&config, blk, list[0]).unwrap();
        assert_eq!(table.vectors, 2);
        assert_eq!(table.check(blk, &bars), Ok(()));

        let seed = include_bytes!("../../xtask/fuzz/corpus/pci_config/hostile-loops-by-hand");
        let (config, buses) = FuzzConfigSpace::decode(seed).unwrap();
        let found = enumerate(&config, buses);
        assert_eq!((found.buses.len(), found.skipped.len()), (2, 1));
        let (list, stopped) = capabilities(&config, found.functions[0].bdf);
        assert_eq!(list.len(), 2);
        assert!(stopped.is_some());
    }
}
