//! Deterministic files handed to the guest: disk images and initrd payloads.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

pub(crate) const MIB: u64 = 1024 * 1024;

/// The size of `target/disk.img`, the disk `cargo xtask run` attaches.
pub(crate) const RUN_DISK_SIZE: u64 = 16 * MIB;

/// The byte at `offset` of every disk image: `offset % 251 + 1`. Never zero
/// (an unread buffer is told apart from data), and 251 is prime, so no two
/// 512-byte sectors within 251 sectors look alike: a read of the wrong sector shows.
fn disk_pattern_byte(offset: u64) -> u8 {
    u8::try_from(offset % 251).expect("a remainder of 251 fits in a byte") + 1
}

/// Creates a disk image of `size` bytes filled with [`disk_pattern_byte`],
/// unless a file already exists at `path` (the guest may have written to it).
pub(crate) fn ensure_disk_image(path: &Path, size: u64) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    println!(
        "xtask: creating {} ({} MiB disk image)",
        path.display(),
        size / MIB
    );
    let mut image = Vec::with_capacity(usize::try_from(size)?);
    image.extend((0..size).map(disk_pattern_byte));
    write_atomically(path, &image)
}

/// `length` bytes of xorshift64* output from `seed`: the same bytes on every machine.
pub(crate) fn pseudo_random_bytes(length: u64, seed: u64) -> Vec<u8> {
    let length = usize::try_from(length).expect("a test file fits in memory");
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Writes `contents` to `path` unless the file already holds exactly that.
pub(crate) fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    write_atomically(path, contents)
}

/// Writes through a temporary file and a rename, so an interrupted run leaves
/// no half-written image behind for the next run to trust.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(directory) = path.parent() {
        fs::create_dir_all(directory)
            .with_context(|| format!("failed to create {}", directory.display()))?;
    }
    let partial = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut writer = BufWriter::new(File::create(&partial)?);
        writer.write_all(contents)?;
        writer.into_inner()?.sync_all()?;
        fs::rename(&partial, path)
    };
    write().with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_pattern_is_never_zero_and_differs_between_sectors() {
        assert!((0..4096).map(disk_pattern_byte).all(|byte| byte != 0));
        let sector = |index: u64| {
            (index * 512..(index + 1) * 512)
                .map(disk_pattern_byte)
                .collect::<Vec<_>>()
        };
        assert_ne!(sector(0), sector(1));
        assert_eq!(disk_pattern_byte(0), 1);
        assert_eq!(disk_pattern_byte(250), 251);
        assert_eq!(disk_pattern_byte(251), 1);
    }

    #[test]
    fn pseudo_random_bytes_are_deterministic() {
        let first = pseudo_random_bytes(123_457, 7);
        assert_eq!(first.len(), 123_457);
        assert_eq!(first, pseudo_random_bytes(123_457, 7));
        assert_ne!(first, pseudo_random_bytes(123_457, 8));
        assert_eq!(&pseudo_random_bytes(5, 7)[..], &first[..5]);
        // Not a constant fill: every byte value shows up.
        let mut seen = [false; 256];
        first
            .iter()
            .for_each(|&byte| seen[usize::from(byte)] = true);
        assert!(seen.iter().all(|&value| value));
    }
}
