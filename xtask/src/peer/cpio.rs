//! A `newc` cpio archive, the format Linux unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`): per
//! entry a 110-byte ASCII header (`070701` and thirteen 8-digit hex
//! fields), the NUL-terminated name and the data, each padded to 4 bytes;
//! `TRAILER!!!` ends it. Entries are written in order with mtime 0 and
//! owner 0, so the same inputs give the same bytes.

#![deny(unsafe_code)]

/// buffer-format.rst: the magic of the "new ASCII" format without checksums.
const NEWC_MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// `stat.h` file types.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Directory,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

/// An archive being built.
#[derive(Debug, Default)]
pub(crate) struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn directory(&mut self, path: &str) -> Result<(), String> {
        self.entry(path, 0o755, &Body::Directory)
    }

    pub(crate) fn file(&mut self, path: &str, permissions: u32, data: &[u8]) -> Result<(), String> {
        self.entry(path, permissions, &Body::File(data.to_vec()))
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.entry(path, 0o777, &Body::Symlink(target.to_owned()))
    }

    pub(crate) fn char_device(&mut self, path: &str, major: u32, minor: u32) -> Result<(), String> {
        self.entry(path, 0o600, &Body::CharDevice { major, minor })
    }

    /// Ends the archive.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.header(TRAILER, 0, 1, 0, (0, 0));
        self.bytes
    }

    fn entry(&mut self, path: &str, permissions: u32, body: &Body) -> Result<(), String> {
        if path.is_empty()
            || path.starts_with('/')
            || path.contains('\0')
            || path == TRAILER
            || path.split('/').any(|part| part.is_empty() || part == "..")
        {
            return Err(format!(
                "{path:?} is not a relative path inside the archive"
            ));
        }
        if permissions > 0o7777 {
            return Err(format!(
                "{path}: permissions {permissions:o} are not 0..=7777"
            ));
        }
        let (kind, data, rdev): (u32, &[u8], (u32, u32)) = match body {
            Body::Directory => (S_IFDIR, &[], (0, 0)),
            Body::File(data) => (S_IFREG, data, (0, 0)),
            Body::Symlink(target) => (S_IFLNK, target.as_bytes(), (0, 0)),
            Body::CharDevice { major, minor } => (S_IFCHR, &[], (*major, *minor)),
        };
        let size = u32::try_from(data.len())
            .map_err(|_| format!("{path}: {} bytes do not fit newc's 32-bit size", data.len()))?;
        let nlink = if kind == S_IFDIR { 2 } else { 1 };
        self.header(path, kind | permissions, nlink, size, rdev);
        self.bytes.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) {
        self.next_inode += 1;
        let inode = if name == TRAILER { 0 } else { self.next_inode };
        let name_size = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ];
        self.bytes.extend_from_slice(NEWC_MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry as read back: (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back, checking every header and the padding.
    fn read(mut bytes: &[u8]) -> Vec<Entry> {
        let align = |offset: usize| offset.div_ceil(4) * 4;
        let mut entries = Vec::new();
        let total = bytes.len();
        loop {
            let at = total - bytes.len();
            assert_eq!(at % 4, 0);
            assert_eq!(&bytes[..6], NEWC_MAGIC.as_bytes());
            let field = |index: usize| {
                let text = std::str::from_utf8(&bytes[6 + 8 * index..14 + 8 * index]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, name_size) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name_end = 110 + name_size;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end - 1], 0);
            let data_start = align(at + name_end) - at;
            let data = bytes[data_start..data_start + size].to_vec();
            let next = align(at + data_start + size) - at;
            bytes = &bytes[next.min(bytes.len())..];
            if name == TRAILER {
                assert!(bytes.is_empty());
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn writes_what_the_kernel_unpacks() {
        let mut archive = Archive::new();
        archive.directory("bin").unwrap();
        archive.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        archive.symlink("bin/sh", "busybox").unwrap();
        archive.char_device("dev/console", 5, 1).unwrap();
        archive.file("www/health", 0o644, b"ok\n").unwrap();
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read(&bytes);
        assert_eq!(
            entries,
            [
                ("bin".to_owned(), S_IFDIR | 0o755, (0, 0), Vec::new()),
                (
                    "init".to_owned(),
                    S_IFREG | 0o755,
                    (0, 0),
                    b"#!/bin/sh\n".to_vec()
                ),
                (
                    "bin/sh".to_owned(),
                    S_IFLNK | 0o777,
                    (0, 0),
                    b"busybox".to_vec()
                ),
                (
                    "dev/console".to_owned(),
                    S_IFCHR | 0o600,
                    (5, 1),
                    Vec::new()
                ),
                (
                    "www/health".to_owned(),
                    S_IFREG | 0o644,
                    (0, 0),
                    b"ok\n".to_vec()
                ),
            ]
        );
        // The first header, byte for byte: inode 1, a directory, two links.
        let first_header = [
            NEWC_MAGIC, "00000001", // inode
            "000041ed", // directory, 0755
            "00000000", // uid
            "00000000", // gid
            "00000002", // nlink
            "00000000", // mtime
            "00000000", // size
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000004", // "bin" and its NUL
            "00000000", // check
            "bin\0",
        ]
        .concat();
        assert!(bytes.starts_with(first_header.as_bytes()));
    }

    #[test]
    fn refuses_paths_that_escape_or_confuse_the_archive() {
        let mut archive = Archive::new();
        for path in [
            "",
            "/init",
            "a/../b",
            "a//b",
            "TRAILER!!!",
            "nul\0x",
            "bin/",
        ] {
            assert!(archive.file(path, 0o644, b"").is_err(), "{path:?}");
        }
        assert!(archive.file("x", 0o10000, b"").is_err());
        // Nothing was written by the refusals.
        assert_eq!(read(&archive.finish()), []);
    }
}
