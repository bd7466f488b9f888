//! `--qemu 10.0`: a QEMU release unpacked from Debian's packages under
//! `target/qemu/<version>/root`, beside the system QEMU and without
//! installing over it (`apt-get download` + `dpkg -x`). It runs with its
//! own libraries, modules and firmware directories; microvm's ACPI-on
//! firmware (`bios-microvm.bin`) comes from the system's SeaBIOS package,
//! which QEMU 10's data package does not ship.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Vmm, VmmKind, microvm_firmware_is_seabios};
use crate::env::workspace;
use crate::vm::process;

/// The suite that carries current QEMU releases for this Debian release.
const BACKPORTS_SUITE: &str = "bookworm-backports";
/// The binary and data packages of QEMU (the libraries it links are the
/// system's; `ldd` checks that none is missing).
const PACKAGES: [&str; 2] = ["qemu-system-x86", "qemu-system-data"];
/// Where Debian's SeaBIOS package puts its images, `bios-microvm.bin` among them.
const SEABIOS_DIR: &str = "/usr/share/seabios";
const APT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// `10.0`, `10.0.2`: a version, not a path.
pub(crate) fn is_version(given: &str) -> bool {
    let parts: Vec<&str> = given.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
}

/// The upstream part of a Debian version: `1:10.0.2+ds-2~bpo12+1` → `10.0.2`.
fn upstream_version(debian: &str) -> &str {
    let without_epoch = debian.split_once(':').map_or(debian, |(_, rest)| rest);
    without_epoch
        .split(['+', '-', '~'])
        .next()
        .unwrap_or(without_epoch)
}

/// The newest Debian version of `qemu-system-x86` in `madison` output
/// (`package | version | source`, newest first) whose upstream version is
/// `wanted` or starts with `wanted.`.
fn pick_version(madison: &str, wanted: &str) -> Option<String> {
    madison.lines().find_map(|line| {
        let version = line.split('|').nth(1)?.trim();
        let upstream = upstream_version(version);
        (upstream == wanted || upstream.starts_with(&format!("{wanted}.")))
            .then(|| version.to_owned())
    })
}

/// The Debian mirror this machine already uses (its `URIs:` or `deb` line).
fn configured_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(entries.filter_map(|entry| entry.ok().map(|entry| entry.path())));
    }
    files
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .find_map(|line| {
            let line = line.trim();
            let uri = line.strip_prefix("URIs:").map(str::trim).or_else(|| {
                line.strip_prefix("deb ")
                    .and_then(|rest| rest.split_whitespace().next())
            })?;
            (uri.ends_with("/debian") || uri.ends_with("/debian/")).then(|| uri.to_owned())
        })
}

/// Whether some apt source names the backports suite.
fn backports_configured() -> bool {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        texts.extend(
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".list") || name.ends_with(".sources")
                })
                .filter_map(|entry| std::fs::read_to_string(entry.path()).ok()),
        );
    }
    texts.iter().any(|text| {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .any(|line| line.contains(BACKPORTS_SUITE))
    })
}

/// Adds the backports suite on the configured mirror and updates the lists.
fn add_backports() -> Result<()> {
    let mirror = configured_mirror().context(
        "no Debian mirror found in /etc/apt/sources.list{,.d} to add bookworm-backports to",
    )?;
    let file = Path::new("/etc/apt/sources.list.d/mote-backports.list");
    println!("xtask: adding {BACKPORTS_SUITE} to {}", file.display());
    std::fs::write(file, format!("deb {mirror} {BACKPORTS_SUITE} main\n"))
        .with_context(|| format!("writing {} (as root)", file.display()))?;
    process::run_inherited(
        Command::new("apt-get").args(["update", "-qq"]),
        APT_TIMEOUT,
        "`apt-get update`",
    )
}

/// Unpacks QEMU `wanted` (once; later calls find it) and describes it.
pub(crate) fn ensure(wanted: &str) -> Result<Vmm> {
    let mut madison = process::query(
        Command::new("apt-cache").args(["madison", PACKAGES[0]]),
        QUERY_TIMEOUT,
    )
    .unwrap_or_default();
    if pick_version(&madison, wanted).is_none() && !backports_configured() {
        add_backports()?;
        madison = process::query(
            Command::new("apt-cache").args(["madison", PACKAGES[0]]),
            QUERY_TIMEOUT,
        )?;
    }
    let Some(debian_version) = pick_version(&madison, wanted) else {
        bail!(
            "apt knows no {} {wanted}.* (apt-cache madison {})",
            PACKAGES[0],
            PACKAGES[0]
        );
    };
    let upstream = upstream_version(&debian_version).to_owned();
    let base = workspace::target_dir().join("qemu").join(&upstream);
    let root = base.join("root");
    let binary = root.join("usr/bin/qemu-system-x86_64");
    if !binary.is_file() {
        unpack(&base, &root, &debian_version)?;
    }
    let libraries = root.join("usr/lib/x86_64-linux-gnu");
    let environment = vec![
        (
            "LD_LIBRARY_PATH".to_owned(),
            libraries.display().to_string(),
        ),
        (
            "QEMU_MODULE_DIR".to_owned(),
            libraries.join("qemu").display().to_string(),
        ),
    ];
    check_libraries(&binary, &environment)?;
    let mut firmware = vec![root.join("usr/share/qemu")];
    if Path::new(SEABIOS_DIR).is_dir() {
        firmware.push(PathBuf::from(SEABIOS_DIR));
    }
    let leading_args = firmware
        .iter()
        .flat_map(|directory| ["-L".to_owned(), directory.display().to_string()])
        .collect();
    let seabios_microvm = microvm_firmware_is_seabios(&firmware);
    let mut vmm = Vmm {
        kind: VmmKind::Qemu,
        program: binary,
        version: upstream,
        environment,
        leading_args,
        seabios_microvm,
    };
    // Asks the binary itself, with its environment, so a broken unpack shows here.
    let output = process::query(vmm.command().arg("--version"), QUERY_TIMEOUT)?;
    vmm.version = super::parse_version(VmmKind::Qemu, &output)
        .with_context(|| format!("the unpacked QEMU printed {output:?}"))?;
    Ok(vmm)
}

/// `apt-get download` the packages at `version` into `base/debs`, then `dpkg -x` them into `root`.
fn unpack(base: &Path, root: &Path, version: &str) -> Result<()> {
    let debs = base.join("debs");
    std::fs::create_dir_all(&debs)?;
    std::fs::create_dir_all(root)?;
    println!(
        "xtask: unpacking QEMU {version} into {}",
        workspace::relative_to_root(root).display()
    );
    let wanted: Vec<String> = PACKAGES
        .iter()
        .map(|package| format!("{package}={version}"))
        .collect();
    process::run_inherited(
        Command::new("apt-get")
            .arg("download")
            .args(&wanted)
            .current_dir(&debs),
        APT_TIMEOUT,
        &format!("`apt-get download {}`", wanted.join(" ")),
    )?;
    for entry in std::fs::read_dir(&debs)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "deb") {
            process::run_inherited(
                Command::new("dpkg").arg("-x").arg(&path).arg(root),
                APT_TIMEOUT,
                &format!("`dpkg -x {}`", path.display()),
            )?;
        }
    }
    Ok(())
}

/// Fails, naming them, if the binary links libraries this machine lacks.
fn check_libraries(binary: &Path, environment: &[(String, String)]) -> Result<()> {
    let mut ldd = Command::new("ldd");
    ldd.arg(binary)
        .envs(environment.iter().map(|(key, value)| (key, value)));
    let output = process::query(&mut ldd, QUERY_TIMEOUT)?;
    let missing: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("not found"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} needs libraries this machine lacks: {} (install their Debian packages from {BACKPORTS_SUITE})",
            binary.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_paths_are_told_apart() {
        assert!(is_version("10.0"));
        assert!(is_version("10.0.2"));
        assert!(!is_version("qemu-system-x86_64"));
        assert!(!is_version("/usr/bin/qemu-system-x86_64"));
        assert!(!is_version("10"));
        assert!(!is_version("10..2"));
    }

    #[test]
    fn picks_the_newest_matching_debian_version() {
        let madison = "\
qemu-system-x86 | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://mirror/debian bookworm-backports/main amd64 Packages
qemu-system-x86 | 1:7.2+dfsg-7+deb12u18+b3 | http://mirror/debian bookworm/main amd64 Packages";
        assert_eq!(
            pick_version(madison, "10.0").as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(
            pick_version(madison, "7.2").as_deref(),
            Some("1:7.2+dfsg-7+deb12u18+b3")
        );
        assert_eq!(pick_version(madison, "9.2"), None);
        assert_eq!(upstream_version("1:10.0.2+ds-2+deb13u1~bpo12+1"), "10.0.2");
    }
}
