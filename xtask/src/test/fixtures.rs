//! The files the boot cases hand to QEMU (disk images, initrds), created
//! under `target/test/` before the run, and the write test's parameters.

use std::path::PathBuf;

use anyhow::Result;

use crate::env::images::{self, MIB};
use crate::env::workspace;

/// The initrd's size: odd, so that it is not page-aligned.
pub(crate) const INITRD_SIZE: u64 = 123_457;

/// Files the cases hand to QEMU, created under `target/test/` before the run.
pub(crate) struct Fixtures {
    pub(crate) initrd: PathBuf,
    pub(crate) small_disk: PathBuf,
    /// 64 MiB of pseudo-random data, for the verify checksum.
    pub(crate) random_disk: PathBuf,
    /// Three small random disks (8, 4 and 2 MiB), for ACPI discovery.
    pub(crate) three_disks: [PathBuf; 3],
    /// A fresh copy of `write_base` for the guest to write into.
    pub(crate) write_disk: PathBuf,
    /// One image per remaining disk case: cases run in parallel, and QEMU
    /// locks an image against a second opener.
    pub(crate) modern_disk: PathBuf,
    pub(crate) readonly_disk: PathBuf,
    pub(crate) bench_disk: PathBuf,
    /// The budget case's disk (1 MiB of zeroes, as `small_disk`).
    pub(crate) budget_disk: PathBuf,
    /// 8 MiB of pseudo-random data for the virtio-pci verify case.
    pub(crate) pci_disk: PathBuf,
    /// Pseudo-random disks for the `microvm,pcie=on` cases: 8 MiB on PCI
    /// for each of the two cases, and 2 MiB on virtio-mmio beside it.
    pub(crate) pcie_disks: [PathBuf; 2],
    pub(crate) pcie_mmio_disk: PathBuf,
    /// The disk of the case that names its transport twice.
    pub(crate) twice_disk: PathBuf,
    /// Two copies of 8 MiB of pseudo-random data for the verify cases
    /// whose CRC every CPU computes (`-smp 1` and `-smp 4`).
    pub(crate) smp_disks: [PathBuf; 2],
    pub(crate) gzip_initrd: PathBuf,
    pub(crate) png_initrd: PathBuf,
}

/// Where the write test's images live (checks re-read them after QEMU exits).
pub(crate) fn write_base_path() -> PathBuf {
    workspace::test_fixture_dir().join("write-base.img")
}

pub(crate) fn write_disk_path() -> PathBuf {
    workspace::test_fixture_dir().join("write.img")
}

/// The q35 write case's own copy (cases run in parallel).
pub(crate) fn q35_write_disk_path() -> PathBuf {
    workspace::test_fixture_dir().join("write-q35.img")
}

const WRITE_DISK_SIZE: u64 = 8 * MIB;
/// Where the write test writes (`mote.blk.write=<lba>+<sectors>`) and the
/// pattern's seed (`mote.blk.seed=`).
pub(crate) const WRITE_LBA: u64 = 2048;
pub(crate) const WRITE_SECTORS: u64 = 64;
pub(crate) const WRITE_SEED: u64 = 0x1234_5678;

/// A real gzip stream (the kernel only looks at its first bytes).
fn gzip_bytes() -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(&images::pseudo_random_bytes(10_000, 7));
    encoder.finish().unwrap_or_default()
}

/// A valid 1x1 grey PNG: signature, IHDR, IDAT (zlib), IEND, with CRCs.
fn png_bytes() -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(kind);
        hasher.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&hasher.finalize().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = zlib.write_all(&[0, 0x80]);
    chunk(&mut png, b"IDAT", &zlib.finish().unwrap_or_default());
    chunk(&mut png, b"IEND", &[]);
    png
}

impl Fixtures {
    pub(crate) fn create() -> Result<Self> {
        let directory = workspace::test_fixture_dir();
        let initrd = directory.join("initrd.bin");
        images::write_if_changed(
            &initrd,
            &images::pseudo_random_bytes(INITRD_SIZE, 0x6d6f_7465),
        )?;
        let small_disk = directory.join("small-disk.img");
        images::ensure_disk_image(&small_disk, MIB)?;
        let budget_disk = directory.join("budget-disk.img");
        images::ensure_disk_image(&budget_disk, MIB)?;
        let random_disk = directory.join("random-64M.img");
        images::write_if_changed(&random_disk, &images::pseudo_random_bytes(64 * MIB, 0x64))?;
        let three_disks = [8, 4, 2].map(|mib| directory.join(format!("random-{mib}M.img")));
        for (disk, mib) in three_disks.iter().zip([8u64, 4, 2]) {
            images::write_if_changed(disk, &images::pseudo_random_bytes(mib * MIB, mib))?;
        }
        let base = images::pseudo_random_bytes(WRITE_DISK_SIZE, 0x77);
        images::write_if_changed(&write_base_path(), &base)?;
        // Always a fresh copy: the guest writes into it.
        std::fs::write(write_disk_path(), &base)?;
        std::fs::write(q35_write_disk_path(), &base)?;
        let [
            modern_disk,
            readonly_disk,
            bench_disk,
            pci_disk,
            smp1_disk,
            smp4_disk,
            pcie1_disk,
            pcie2_disk,
            pcie_mmio_disk,
            twice_disk,
        ] = [
            ("modern", 2, 0x21),
            ("readonly", 2, 0x22),
            ("bench", 8, 0x23),
            ("pci", 8, 0x24),
            ("smp1", 8, 0x25),
            ("smp4", 8, 0x25),
            ("pcie1", 8, 0x26),
            ("pcie2", 8, 0x27),
            ("pcie-mmio", 2, 0x28),
            ("twice", 2, 0x29),
        ]
        .map(|(name, mib, seed)| {
            let disk = directory.join(format!("{name}-{mib}M.img"));
            images::write_if_changed(&disk, &images::pseudo_random_bytes(mib * MIB, seed))
                .map(|()| disk)
        });
        let (modern_disk, readonly_disk, bench_disk, pci_disk) =
            (modern_disk?, readonly_disk?, bench_disk?, pci_disk?);
        let smp_disks = [smp1_disk?, smp4_disk?];
        let pcie_disks = [pcie1_disk?, pcie2_disk?];
        let pcie_mmio_disk = pcie_mmio_disk?;
        let twice_disk = twice_disk?;
        let gzip_initrd = directory.join("initrd.gz");
        images::write_if_changed(&gzip_initrd, &gzip_bytes())?;
        let png_initrd = directory.join("initrd.png");
        images::write_if_changed(&png_initrd, &png_bytes())?;
        Ok(Self {
            initrd,
            small_disk,
            budget_disk,
            random_disk,
            three_disks,
            write_disk: write_disk_path(),
            modern_disk,
            readonly_disk,
            bench_disk,
            pci_disk,
            smp_disks,
            pcie_disks,
            pcie_mmio_disk,
            twice_disk,
            gzip_initrd,
            png_initrd,
        })
    }
}
