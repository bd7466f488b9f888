//! Where things live: the workspace root, the target directory and the kernel image.

use std::env;
use std::path::{Path, PathBuf};

/// The bare-metal target the kernel is built for (see `rust-toolchain.toml`).
pub(crate) const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// The kernel image QEMU boots: `target/kernel`, a copy of the cargo artifact
/// so that a hand-typed `qemu-system-x86_64 -M microvm -kernel target/kernel` works.
pub(crate) fn kernel_image() -> PathBuf {
    target_dir().join("kernel")
}

/// Scratch files the boot tests create (initrd, small disk images).
pub(crate) fn test_fixture_dir() -> PathBuf {
    target_dir().join("test")
}

/// `path` relative to the workspace root when it lies below it, so printed
/// command lines stay short and can be pasted in the root directory.
pub(crate) fn relative_to_root(path: &Path) -> PathBuf {
    path.strip_prefix(root())
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Cargo as invoked by `cargo xtask` (the same toolchain), or `cargo` from `PATH`.
pub(crate) fn cargo() -> PathBuf {
    env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// The first executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
