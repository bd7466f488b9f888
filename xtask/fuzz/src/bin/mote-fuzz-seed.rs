//! Turns a memory capture (from `corpus/capture-qemu.sh`, or any VMM's
//! dump in the same layout) into small seeds: runs the kernel's readers
//! over the whole capture, keeps only the bytes they read, and writes one
//! seed per target into `corpus/<target>/<label>`.
//!
//! Usage: `mote-fuzz-seed <capture-dir> <label>`; the directory holds
//! `ebx` (the start_info address, `0x…`) and `<paddr>.bin` dumps, the
//! dump's physical address in hex in its name (`0x6000.bin`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use mote_boot::start_info::BootInfo;
use mote_kernel::fuzzing::{self, PhysicalImage};

fn main() -> Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [capture, label] = arguments.as_slice() else {
        bail!("usage: mote-fuzz-seed <capture-dir> <label>");
    };
    let capture = Path::new(capture);
    let ebx = fs::read_to_string(capture.join("ebx")).context("reading ebx")?;
    let start_info = u64::from_str_radix(ebx.trim().trim_start_matches("0x"), 16)?;
    let mut dumps = Vec::new();
    for entry in fs::read_dir(capture)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(address) = name.strip_suffix(".bin").and_then(|n| n.strip_prefix("0x")) {
            dumps.push((u64::from_str_radix(address, 16)?, fs::read(&path)?));
        }
    }
    let chunks: Vec<(u64, &[u8])> = dumps.iter().map(|(a, b)| (*a, b.as_slice())).collect();
    let whole = PhysicalImage::encode(start_info, &chunks);

    let image = PhysicalImage::decode(&whole).context("empty capture")?;
    let info = BootInfo::from_start_info(&image, start_info)
        .map_err(|error| anyhow::anyhow!("the capture's start_info: {error}"))?;
    write(
        "start_info",
        label,
        &cut(&image, start_info, &image.reads()),
    )?;
    let cmdline = info.cmdline();
    write("cmdline_options", label, cmdline.as_bytes())?;
    write("virtio_mmio_cmdline", label, cmdline.as_bytes())?;
    if let Some(ip) = cmdline.split(' ').find_map(|word| word.strip_prefix("ip=")) {
        write("ip_config", label, ip.as_bytes())?;
    }
    if let Some(header) = image.bytes(start_info, 56) {
        let field = |at, width| mote_fuzz::little_endian_field(header, at, width);
        let (memmap, entries) = (field(40, 8), field(48, 4));
        if let Some(map) = image.bytes(memmap, 24 * usize::try_from(entries)?) {
            write("memory_map", label, map)?;
        }
    }
    let Some(rsdp) = info.rsdp else {
        println!("{label}: no RSDP (ACPI off)");
        return Ok(());
    };
    let tables = PhysicalImage::decode(&whole).context("empty capture")?;
    let reads = fuzzing::acpi_read_ranges(&tables, rsdp);
    let mut seed = vec![0u8];
    seed.extend(cut(&tables, rsdp, &reads));
    write("acpi_tables", label, &seed)?;
    let aml = fuzzing::dsdt_aml_of(&tables, rsdp).context("the capture's DSDT")?;
    write("dsdt_aml", label, &aml)?;
    for (index, template) in fuzzing::crs_templates(&aml).iter().enumerate() {
        write("aml_resources", &format!("{label}-{index}"), template)?;
    }
    Ok(())
}

/// The image with only the bytes of `reads` (merged where they touch).
fn cut(image: &PhysicalImage<'_>, entry: u64, reads: &[(u64, usize)]) -> Vec<u8> {
    let mut ranges: Vec<(u64, u64)> = reads
        .iter()
        .map(|&(paddr, length)| (paddr, paddr + length as u64))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let owned: Vec<(u64, &[u8])> = merged
        .iter()
        .filter_map(|&(start, end)| {
            Some((
                start,
                image.bytes(start, usize::try_from(end - start).ok()?)?,
            ))
        })
        .collect();
    PhysicalImage::encode(entry, &owned)
}

fn write(target: &str, label: &str, bytes: &[u8]) -> Result<()> {
    let dir = mote_fuzz::corpus_dir(target);
    fs::create_dir_all(&dir)?;
    let path = dir.join(label);
    fs::write(&path, bytes)?;
    println!("{}: {} bytes", path.display(), bytes.len());
    Ok(())
}
