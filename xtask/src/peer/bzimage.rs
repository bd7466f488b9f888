//! The PVH `vmlinux` inside a distribution's `bzImage`: the boot header
//! says where the compressed kernel is, the payload is decompressed (LZ4
//! legacy frames or gzip) and the result must be an ELF with a PVH entry
//! note. Every field comes from outside bytes, so every read is checked.
//!
//! Sources: Linux `Documentation/arch/x86/boot.rst` (the header fields and
//! `payload_offset`/`payload_length`, protocol 2.08+), `lib/decompress_unlz4.c`
//! and `scripts/Makefile.lib` (`cmd_lz4`: `lz4 -l`, then `size_append`),
//! the LZ4 frame format's legacy section, and Xen's
//! `xen/include/public/elfnote.h` (`XEN_ELFNOTE_PHYS32_ENTRY` = 18, the note
//! QEMU and the other VMMs look for).

#![deny(unsafe_code)]

use std::io::Read;

/// boot.rst: `setup_sects` at 0x1f1 (0 means 4).
const SETUP_SECTS_OFFSET: usize = 0x1f1;
/// boot.rst: the `HdrS` magic at 0x202 and the protocol version at 0x206.
const HEADER_MAGIC_OFFSET: usize = 0x202;
const HEADER_MAGIC: &[u8; 4] = b"HdrS";
const VERSION_OFFSET: usize = 0x206;
/// boot.rst: `payload_offset` and `payload_length` exist from protocol 2.08.
const PAYLOAD_VERSION: u16 = 0x0208;
const PAYLOAD_OFFSET_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH_OFFSET: usize = 0x24c;
const SECTOR: usize = 512;

/// The LZ4 legacy frame's magic number (little-endian on disk).
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Each legacy block decompresses to at most 8 MiB (`LEGACY_BLOCKSIZE`).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// No kernel image decompresses to more than this; a header claiming more
/// is not believed.
const MAX_VMLINUX: usize = 512 << 20;

/// `elf.h`: `PT_NOTE`, and the ELF64 header and program-header offsets.
const PT_NOTE: u32 = 4;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
/// `xen/include/public/elfnote.h`.
const XEN_NOTE_NAME: &[u8] = b"Xen";
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// A kernel found in a bzImage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vmlinux {
    pub(crate) elf: Vec<u8>,
    /// The payload's compression, as named in the kernel's `CONFIG_KERNEL_*`.
    pub(crate) compression: &'static str,
    /// The 32-bit PVH entry point from the note.
    pub(crate) pvh_entry: u32,
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The compressed kernel of a bzImage (boot protocol 2.08 or later).
pub(crate) fn payload(bzimage: &[u8]) -> Result<&[u8], String> {
    if bzimage.get(HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4) != Some(HEADER_MAGIC) {
        return Err("no `HdrS` boot header at 0x202: not a bzImage".to_owned());
    }
    let version = read_u16(bzimage, VERSION_OFFSET).ok_or("the header is cut short")?;
    if version < PAYLOAD_VERSION {
        return Err(format!(
            "boot protocol {}.{:02}: payload fields need 2.08 or later",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match bzimage[SETUP_SECTS_OFFSET] {
        0 => 4,
        count => usize::from(count),
    };
    let protected_mode = (setup_sects + 1) * SECTOR;
    let offset = read_u32(bzimage, PAYLOAD_OFFSET_OFFSET).ok_or("the header is cut short")?;
    let length = read_u32(bzimage, PAYLOAD_LENGTH_OFFSET).ok_or("the header is cut short")?;
    let start = protected_mode
        .checked_add(offset as usize)
        .ok_or("payload offset overflows")?;
    let end = start
        .checked_add(length as usize)
        .ok_or("payload length overflows")?;
    bzimage.get(start..end).ok_or_else(|| {
        format!(
            "the payload (bytes {start:#x}..{end:#x}) lies outside the {}-byte image",
            bzimage.len()
        )
    })
}

/// Decompresses `bzimage`'s payload and checks it is a PVH-bootable ELF.
pub(crate) fn extract_vmlinux(bzimage: &[u8]) -> Result<Vmlinux, String> {
    let payload = payload(bzimage)?;
    let (elf, compression) = if read_u32(payload, 0) == Some(LZ4_LEGACY_MAGIC) {
        (decompress_lz4_legacy(payload)?, "LZ4")
    } else if payload.starts_with(&GZIP_MAGIC) {
        (decompress_gzip(payload)?, "GZIP")
    } else if payload.starts_with(&XZ_MAGIC) {
        return Err("the payload is XZ-compressed; this xtask reads LZ4 and gzip".to_owned());
    } else if payload.starts_with(&ZSTD_MAGIC) {
        return Err("the payload is zstd-compressed; this xtask reads LZ4 and gzip".to_owned());
    } else {
        return Err(format!(
            "the payload starts {:02x?}: no compression this xtask knows",
            &payload[..payload.len().min(6)]
        ));
    };
    let pvh_entry = pvh_entry(&elf)?;
    Ok(Vmlinux {
        elf,
        compression,
        pvh_entry,
    })
}

/// The size `size_append` put after the compressed stream (the last four bytes).
fn appended_size(payload: &[u8]) -> Result<(usize, &[u8]), String> {
    let split = payload
        .len()
        .checked_sub(4)
        .ok_or("the payload is shorter than its size trailer")?;
    let size = read_u32(payload, split).ok_or("no size trailer")? as usize;
    if size > MAX_VMLINUX {
        return Err(format!(
            "the payload claims {size} bytes decompressed, more than {MAX_VMLINUX}"
        ));
    }
    Ok((size, &payload[..split]))
}

/// LZ4 legacy frames (`lz4 -l`): the magic, then blocks of a 32-bit
/// compressed length and an LZ4 block of up to 8 MiB; the magic may repeat
/// (concatenated frames). The decompressed size must match the trailer.
pub(crate) fn decompress_lz4_legacy(payload: &[u8]) -> Result<Vec<u8>, String> {
    let (expected, mut stream) = appended_size(payload)?;
    let mut output = Vec::with_capacity(expected);
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while !stream.is_empty() {
        let word = read_u32(stream, 0).ok_or("a block length is cut short")?;
        stream = &stream[4..];
        if word == LZ4_LEGACY_MAGIC {
            continue;
        }
        let length = word as usize;
        let Some(compressed) = stream.get(..length) else {
            return Err(format!(
                "a block of {length} bytes runs past the payload's end ({} bytes left)",
                stream.len()
            ));
        };
        stream = &stream[length..];
        let produced = lz4_flex::block::decompress_into(compressed, &mut block)
            .map_err(|error| format!("LZ4 block at output byte {}: {error}", output.len()))?;
        if output.len() + produced > expected {
            return Err(format!(
                "the stream decompresses past the {expected} bytes its trailer gives"
            ));
        }
        output.extend_from_slice(&block[..produced]);
    }
    if output.len() != expected {
        return Err(format!(
            "decompressed {} bytes, the trailer gives {expected}",
            output.len()
        ));
    }
    Ok(output)
}

fn decompress_gzip(payload: &[u8]) -> Result<Vec<u8>, String> {
    let (expected, _) = appended_size(payload)?;
    let mut output = Vec::with_capacity(expected);
    flate2::read::GzDecoder::new(payload)
        .take(MAX_VMLINUX as u64 + 1)
        .read_to_end(&mut output)
        .map_err(|error| format!("gzip: {error}"))?;
    if output.len() != expected {
        return Err(format!(
            "decompressed {} bytes, the trailer gives {expected}",
            output.len()
        ));
    }
    Ok(output)
}

/// The PVH entry of an ELF64 little-endian image: the `Xen` note of type
/// `XEN_ELFNOTE_PHYS32_ENTRY` in a `PT_NOTE` segment.
pub(crate) fn pvh_entry(elf: &[u8]) -> Result<u32, String> {
    if elf.get(..4) != Some(ELF_MAGIC) {
        return Err("the kernel is not an ELF image".to_owned());
    }
    if elf.get(4) != Some(&ELFCLASS64) || elf.get(5) != Some(&ELFDATA2LSB) {
        return Err("the kernel is not a 64-bit little-endian ELF".to_owned());
    }
    let truncated = || "the ELF header is cut short".to_owned();
    let phoff = read_u64(elf, 0x20).ok_or_else(truncated)?;
    let phentsize = usize::from(read_u16(elf, 0x36).ok_or_else(truncated)?);
    let phnum = usize::from(read_u16(elf, 0x38).ok_or_else(truncated)?);
    if phentsize < 0x38 {
        return Err(format!(
            "program headers of {phentsize} bytes, ELF64 needs 56"
        ));
    }
    for index in 0..phnum {
        let header = usize::try_from(phoff)
            .ok()
            .and_then(|phoff| phoff.checked_add(index * phentsize))
            .ok_or("program header offset overflows")?;
        let field = |at: usize| read_u64(elf, header + at).ok_or("a program header is cut short");
        if read_u32(elf, header).ok_or("a program header is cut short")? != PT_NOTE {
            continue;
        }
        let (offset, size) = (field(8)?, field(32)?);
        let notes = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(offset, size)| elf.get(offset..offset.checked_add(size)?))
            .ok_or("a note segment lies outside the image")?;
        if let Some(entry) = find_pvh_note(notes)? {
            return Ok(entry);
        }
    }
    Err("no PVH entry note (Xen, XEN_ELFNOTE_PHYS32_ENTRY): the kernel was built without CONFIG_PVH".to_owned())
}

/// Walks the notes of one segment (each: name size, descriptor size, type,
/// the name and the descriptor, both padded to 4 bytes).
fn find_pvh_note(mut notes: &[u8]) -> Result<Option<u32>, String> {
    let padded = |size: u32| (size as usize).checked_add(3).map(|size| size & !3);
    while notes.len() >= 12 {
        let name_size = read_u32(notes, 0).unwrap_or_default();
        let descriptor_size = read_u32(notes, 4).unwrap_or_default();
        let kind = read_u32(notes, 8).unwrap_or_default();
        let name_end = padded(name_size)
            .and_then(|size| size.checked_add(12))
            .ok_or("a note's name size overflows")?;
        let end = padded(descriptor_size)
            .and_then(|size| size.checked_add(name_end))
            .ok_or("a note's size overflows")?;
        let (Some(name), Some(descriptor)) = (
            notes.get(12..12 + name_size as usize),
            notes.get(name_end..name_end + descriptor_size as usize),
        ) else {
            return Err("a note runs past its segment".to_owned());
        };
        if name.strip_suffix(b"\0") == Some(XEN_NOTE_NAME) && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            return read_u32(descriptor, 0)
                .map(Some)
                .ok_or_else(|| "the PVH note's descriptor is shorter than 4 bytes".to_owned());
        }
        notes = notes.get(end..).unwrap_or_default();
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[5] = ELFDATA2LSB;
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&PT_NOTE.to_le_bytes());
        let offset = elf.len() as u64;
        elf[0x48..0x50].copy_from_slice(&offset.to_le_bytes());
        elf[0x60..0x68].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf.extend_from_slice(notes);
        elf
    }

    fn note(name: &[u8], kind: u32, descriptor: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        note.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(name);
        note.push(0);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend_from_slice(descriptor);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note
    }

    /// A bzImage header around `payload` (one setup sector plus the boot sector).
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 2 * SECTOR];
        image[SETUP_SECTS_OFFSET] = 1;
        image[HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4].copy_from_slice(HEADER_MAGIC);
        image[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        image[PAYLOAD_OFFSET_OFFSET..PAYLOAD_OFFSET_OFFSET + 4]
            .copy_from_slice(&16u32.to_le_bytes());
        image[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(&[0xcc; 16]);
        image.extend_from_slice(payload);
        image
    }

    /// What `lz4 -l` and `size_append` make of `data`, in blocks of `block` bytes.
    fn lz4_legacy(data: &[u8], block: usize) -> Vec<u8> {
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(block) {
            let compressed = lz4_flex::block::compress(chunk);
            stream.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            stream.extend_from_slice(&compressed);
        }
        stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
        stream
    }

    fn pvh_elf() -> Vec<u8> {
        let mut notes = note(b"Linux", 6, b"6.1\0");
        notes.extend(note(
            XEN_NOTE_NAME,
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x0100_0000u32.to_le_bytes(),
        ));
        elf_with_notes(&notes)
    }

    #[test]
    fn finds_the_pvh_kernel_in_an_lz4_bzimage() {
        let elf = pvh_elf();
        let image = bzimage(&lz4_legacy(&elf, 64));
        let vmlinux = extract_vmlinux(&image).unwrap();
        assert_eq!(vmlinux.elf, elf);
        assert_eq!(vmlinux.compression, "LZ4");
        assert_eq!(vmlinux.pvh_entry, 0x0100_0000);
    }

    #[test]
    fn reads_a_gzip_payload_and_names_the_ones_it_cannot() {
        use std::io::Write;
        let elf = pvh_elf();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&elf).unwrap();
        let mut payload = encoder.finish().unwrap();
        payload.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        let vmlinux = extract_vmlinux(&bzimage(&payload)).unwrap();
        assert_eq!((vmlinux.compression, vmlinux.elf), ("GZIP", elf));
        let xz = extract_vmlinux(&bzimage(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2])).unwrap_err();
        assert!(xz.contains("XZ"), "{xz}");
        let zstd = extract_vmlinux(&bzimage(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])).unwrap_err();
        assert!(zstd.contains("zstd"), "{zstd}");
        let unknown = extract_vmlinux(&bzimage(b"plain text")).unwrap_err();
        assert!(unknown.contains("no compression"), "{unknown}");
    }

    #[test]
    fn rejects_hostile_headers() {
        assert!(payload(b"short").unwrap_err().contains("HdrS"));
        let mut old = bzimage(b"x");
        old[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(payload(&old).unwrap_err().contains("2.08"));
        let mut outside = bzimage(b"x");
        outside[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&outside).unwrap_err().contains("outside"));
        let mut zero_sects = bzimage(b"x");
        zero_sects[SETUP_SECTS_OFFSET] = 0; // means 4: the payload is past the end now
        assert!(payload(&zero_sects).is_err());
    }

    #[test]
    fn rejects_hostile_lz4_streams() {
        let elf = pvh_elf();
        let good = lz4_legacy(&elf, 32);
        // A wrong trailer, either way.
        let mut short = good.clone();
        let at = short.len() - 4;
        short[at..].copy_from_slice(&((elf.len() - 1) as u32).to_le_bytes());
        assert!(decompress_lz4_legacy(&short).is_err());
        let mut long = good.clone();
        long[at..].copy_from_slice(&((elf.len() + 1) as u32).to_le_bytes());
        assert!(decompress_lz4_legacy(&long).is_err());
        let mut huge = good.clone();
        huge[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress_lz4_legacy(&huge).unwrap_err().contains("claims"));
        // A block length past the end, a cut length, a corrupt block.
        let mut past = good.clone();
        past[4..8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert!(decompress_lz4_legacy(&past).unwrap_err().contains("past"));
        assert!(decompress_lz4_legacy(&good[..6]).is_err());
        let mut corrupt = good.clone();
        for byte in &mut corrupt[8..20] {
            *byte = 0xff;
        }
        assert!(decompress_lz4_legacy(&corrupt).is_err());
        assert!(decompress_lz4_legacy(&[]).is_err());
        // Every truncation fails without panicking.
        for end in 0..good.len() {
            let _ = decompress_lz4_legacy(&good[..end]);
        }
    }

    #[test]
    fn rejects_kernels_without_a_usable_pvh_note() {
        let no_note = elf_with_notes(&note(b"Linux", 6, b"6.1\0"));
        assert!(pvh_entry(&no_note).unwrap_err().contains("CONFIG_PVH"));
        let short = elf_with_notes(&note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, b"\x01"));
        assert!(pvh_entry(&short).unwrap_err().contains("shorter"));
        let mut overrun = note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]);
        overrun[4..8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(pvh_entry(&elf_with_notes(&overrun)).is_err());
        assert!(pvh_entry(b"MZ not elf").unwrap_err().contains("not an ELF"));
        let mut elf32 = pvh_elf();
        elf32[4] = 1;
        assert!(pvh_entry(&elf32).unwrap_err().contains("64-bit"));
        let good = pvh_elf();
        for end in 0..good.len() {
            let _ = pvh_entry(&good[..end]);
        }
        let mut far = good.clone();
        far[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(pvh_entry(&far).is_err());
    }
}
