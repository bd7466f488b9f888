//! `cargo xtask peer linux`: a stock Debian cloud kernel and a busybox
//! initramfs that serves `/health`, built from Debian's own packages and
//! cached under `target/peer/linux/` (rebuilt only when a package version or
//! this builder changes). `bench --peer linux` boots what this leaves.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::bzimage;
use super::cpio::Archive;
use super::modinfo;
use crate::env::workspace;
use crate::vm::process;

/// Debian's metapackage that depends on the current cloud kernel
/// (`linux-image-<abi>-cloud-amd64`): PVH note, virtio drivers as modules.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// A statically linked busybox: sh, insmod, ifconfig, httpd, wget, poweroff.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The virtio-mmio NIC driver and what it needs, in load order (each
/// module's `depends=` is checked against it when the initramfs is built).
/// `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` is off in this kernel, so the
/// transports come from microvm's ACPI DSDT.
pub(crate) const MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "failover",
    "net_failover",
    "virtio_net",
];

/// The busybox applets `/init` and the power-off CGI call, linked in `/bin`.
const APPLETS: [&str; 13] = [
    "sh", "mount", "insmod", "cat", "ip", "ifconfig", "route", "httpd", "wget", "sleep",
    "poweroff", "printf", "echo",
];

/// The line `/init` prints once httpd answers `GET /health` on loopback.
pub(crate) const READY_LINE: &str = "peer: ready";
/// The path that powers the peer off (a busybox httpd CGI; answers 202).
pub(crate) const POWER_OFF_PATH: &str = "/cgi-bin/poweroff";
/// The body of `GET /health`.
const HEALTH_BODY: &[u8] = b"ok\n";

const INIT_SCRIPT: &str = include_str!("init.sh");
const POWER_OFF_CGI: &str = include_str!("poweroff.cgi");

/// Bumped when the initramfs's layout changes in a way the scripts do not show.
const BUILDER_VERSION: u32 = 1;

const APT_TIMEOUT: Duration = Duration::from_secs(60);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const EXTRACT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A built peer: what bench boots.
#[derive(Debug, Clone)]
pub(crate) struct LinuxPeer {
    pub(crate) vmlinux: PathBuf,
    pub(crate) initramfs: PathBuf,
    /// `linux-image-6.1.0-48-cloud-amd64 6.1.172-1, busybox-static 1:1.35.0-…`.
    pub(crate) packages: String,
}

/// Where everything is kept.
fn directory() -> PathBuf {
    workspace::target_dir().join("peer").join("linux")
}

/// A Debian package pinned to the version apt would download.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    version: String,
}

impl Package {
    /// The file `apt-get download` writes (`:` in the epoch as `%3a`).
    fn file_name(&self) -> String {
        format!(
            "{}_{}_amd64.deb",
            self.name,
            self.version.replace(':', "%3a")
        )
    }
}

/// `apt-cache`'s answer, with the fix when apt has no lists yet.
fn apt_cache(arguments: &[&str]) -> Result<String> {
    if workspace::find_on_path("apt-cache").is_none() {
        bail!(
            "apt-cache is not on PATH: the Linux peer is built from Debian packages (a Debian or Ubuntu host)"
        );
    }
    process::query(Command::new("apt-cache").args(arguments), APT_TIMEOUT)
        .with_context(|| format!("apt-cache {}", arguments.join(" ")))
}

/// The candidate version of `name` (`apt-cache policy`).
fn candidate(name: &str) -> Result<Package> {
    let policy = apt_cache(&["policy", name])?;
    let version = policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|version| !version.is_empty() && *version != "(none)");
    match version {
        Some(version) => Ok(Package {
            name: name.to_owned(),
            version: version.to_owned(),
        }),
        None => bail!(
            "apt knows no candidate for {name}; refresh its lists (as root: apt-get update) and try again"
        ),
    }
}

/// The kernel package the metapackage points at today.
fn kernel_package() -> Result<Package> {
    let depends = apt_cache(&["depends", KERNEL_METAPACKAGE])?;
    let Some(name) = depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|name| name.starts_with("linux-image-") && name.ends_with("-cloud-amd64"))
    else {
        bail!(
            "{KERNEL_METAPACKAGE} depends on no linux-image-…-cloud-amd64 package here; refresh apt's lists (apt-get update)"
        );
    };
    candidate(name)
}

/// `debs/<file>`, downloaded with `apt-get download` unless it is there.
fn download(package: &Package, debs: &Path) -> Result<PathBuf> {
    let path = debs.join(package.file_name());
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(debs).with_context(|| format!("creating {}", debs.display()))?;
    let request = format!("{}={}", package.name, package.version);
    println!("xtask: apt-get download {request}");
    let finished = process::run(
        Command::new("apt-get")
            .args(["download", &request])
            .current_dir(debs),
        DOWNLOAD_TIMEOUT,
        process::Output::Capture { echo: true },
    )?;
    if !finished.succeeded() || !path.is_file() {
        bail!(
            "apt-get download {request} failed ({}): {}\n(the Linux peer needs Debian's package mirror once; afterwards it is cached in {})",
            finished.describe_end(DOWNLOAD_TIMEOUT),
            finished.stderr.join(" | "),
            workspace::relative_to_root(debs).display()
        );
    }
    Ok(path)
}

/// `dpkg-deb -x deb into` into a fresh directory.
fn unpack(deb: &Path, into: &Path) -> Result<()> {
    if into.exists() {
        fs::remove_dir_all(into).with_context(|| format!("removing {}", into.display()))?;
    }
    fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    process::run_inherited(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(into),
        EXTRACT_TIMEOUT,
        &format!("dpkg-deb -x {}", deb.display()),
    )
}

/// The one file under `root` whose name satisfies `wanted`.
fn find_file(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in
            fs::read_dir(&directory).with_context(|| format!("reading {}", directory.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if wanted(&entry.file_name().to_string_lossy()) {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

/// What the cache was built from: a change in any of it rebuilds.
fn inputs(kernel: &Package, busybox: &Package) -> String {
    let script_hash = crc32fast::hash(format!("{INIT_SCRIPT}{POWER_OFF_CGI}").as_bytes());
    format!(
        "builder {BUILDER_VERSION}\nkernel {} {}\nbusybox {} {}\nscripts crc32 {script_hash:08x}\nmodules {}\n",
        kernel.name,
        kernel.version,
        busybox.name,
        busybox.version,
        MODULES.join(",")
    )
}

/// The `/init` script with the module list filled in.
pub(crate) fn init_script() -> String {
    INIT_SCRIPT.replace("@MODULES@", &MODULES.join(" "))
}

/// Builds the peer (or finds it built) and returns it.
pub(crate) fn prepare() -> Result<LinuxPeer> {
    let directory = directory();
    let vmlinux = directory.join("vmlinux");
    let initramfs = directory.join("initramfs.cpio");
    let stamp = directory.join("inputs.txt");
    let kernel = kernel_package()?;
    let busybox = candidate(BUSYBOX_PACKAGE)?;
    let packages = format!(
        "{} {}, {} {}",
        kernel.name, kernel.version, busybox.name, busybox.version
    );
    let wanted = inputs(&kernel, &busybox);
    if vmlinux.is_file()
        && initramfs.is_file()
        && fs::read_to_string(&stamp).is_ok_and(|built| built == wanted)
    {
        return Ok(LinuxPeer {
            vmlinux,
            initramfs,
            packages,
        });
    }
    let debs = directory.join("debs");
    let kernel_deb = download(&kernel, &debs)?;
    let busybox_deb = download(&busybox, &debs)?;
    let kernel_root = directory.join("kernel-package");
    let busybox_root = directory.join("busybox-package");
    unpack(&kernel_deb, &kernel_root)?;
    unpack(&busybox_deb, &busybox_root)?;

    let Some(bzimage_path) = find_file(&kernel_root.join("boot"), &|name| {
        name.starts_with("vmlinuz-")
    })?
    else {
        bail!("{} holds no boot/vmlinuz-*", kernel_deb.display());
    };
    let bzimage =
        fs::read(&bzimage_path).with_context(|| format!("reading {}", bzimage_path.display()))?;
    let found = bzimage::extract_vmlinux(&bzimage)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", bzimage_path.display()))?;
    println!(
        "xtask: {}: {}-compressed payload, {} bytes of ELF, PVH entry {:#x}",
        workspace::relative_to_root(&bzimage_path).display(),
        found.compression,
        found.elf.len(),
        found.pvh_entry
    );

    let mut modules = Vec::new();
    for name in MODULES {
        let file = format!("{name}.ko");
        let Some(path) = find_file(&kernel_root.join("lib").join("modules"), &|found| {
            found == file
        })?
        else {
            bail!(
                "{} has no {file} (is it built in, or compressed as {file}.xz?)",
                kernel_deb.display()
            );
        };
        modules.push((
            name,
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    modinfo::check_order(
        modules
            .iter()
            .map(|(name, bytes)| (*name, bytes.as_slice())),
    )
    .map_err(|reason| anyhow::anyhow!("the module load order: {reason}"))?;

    let busybox_binary = busybox_root.join("bin").join("busybox");
    let busybox_bytes = fs::read(&busybox_binary)
        .with_context(|| format!("reading {}", busybox_binary.display()))?;
    let archive = initramfs_archive(&busybox_bytes, &modules)
        .map_err(|reason| anyhow::anyhow!("building the initramfs: {reason}"))?;

    fs::write(&vmlinux, &found.elf).with_context(|| format!("writing {}", vmlinux.display()))?;
    fs::write(&initramfs, &archive).with_context(|| format!("writing {}", initramfs.display()))?;
    fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    // The unpacked packages are only a step: the .debs stay as the cache.
    for root in [kernel_root, busybox_root] {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(LinuxPeer {
        vmlinux,
        initramfs,
        packages,
    })
}

/// The initramfs: busybox and its applet links, the modules, `/init`, the
/// web root, `/dev/console` (the kernel opens it for init before any
/// devtmpfs is mounted).
fn initramfs_archive(busybox: &[u8], modules: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut archive = Archive::new();
    for directory in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib/modules",
        "www",
        "www/cgi-bin",
    ] {
        archive.directory(directory)?;
    }
    archive.char_device("dev/console", 5, 1)?;
    archive.file("bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    for (name, bytes) in modules {
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, bytes)?;
    }
    archive.file("init", 0o755, init_script().as_bytes())?;
    archive.file("www/health", 0o644, HEALTH_BODY)?;
    archive.file("www/cgi-bin/poweroff", 0o755, POWER_OFF_CGI.as_bytes())?;
    Ok(archive.finish())
}

/// The peer's words after `console=ttyS0` (and, served, `ip=`): the TSC
/// frequency, since microvm has no port 0x61 and Linux's PIT calibration
/// would hang (`tsc_early_khz=`, Documentation/admin-guide/kernel-parameters.txt),
/// and `panic=-1` so a panic ends the VM at once (QEMU runs with -no-reboot).
pub(crate) fn kernel_args(tsc_khz: u64) -> String {
    format!("tsc_early_khz={tsc_khz} panic=-1")
}

/// The host's TSC frequency in kHz: what the guest's TSC runs at under TCG
/// (QEMU reads the host's counter) and KVM alike.
pub(crate) fn host_tsc_khz() -> Result<u64> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
    tsc_khz_from_cpuinfo(&cpuinfo).ok_or_else(|| {
        anyhow::anyhow!(
            "/proc/cpuinfo gives no `cpu MHz` with constant_tsc: pass the peer's frequency by hand (--kernel … --kernel-append tsc_early_khz=N)"
        )
    })
}

/// `cpu MHz` of the first processor, in kHz, when its flags say the TSC
/// runs at a constant rate (Linux reports the TSC frequency there then).
fn tsc_khz_from_cpuinfo(cpuinfo: &str) -> Option<u64> {
    let first = cpuinfo.split("\n\n").next()?;
    let field = |name: &str| {
        first.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    };
    if !field("flags")?
        .split_whitespace()
        .any(|flag| flag == "constant_tsc")
    {
        return None;
    }
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    (1.0..100_000.0)
        .contains(&mhz)
        .then(|| (mhz * 1000.0).round() as u64)
}

/// `cargo xtask peer linux`.
pub(crate) fn build() -> Result<bool> {
    let peer = prepare()?;
    println!("peer linux: {}", peer.packages);
    println!(
        "  kernel    {}\n  initramfs {}",
        workspace::relative_to_root(&peer.vmlinux).display(),
        workspace::relative_to_root(&peer.initramfs).display()
    );
    println!("  boot it beside mote: cargo xtask bench --peer linux --accel tcg");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_script_loads_every_module_and_calls_only_linked_applets() {
        let script = init_script();
        assert!(!script.contains('@'), "{script}");
        assert!(script.contains(&format!("for module in {};", MODULES.join(" "))));
        assert!(script.contains(&format!("echo \"{READY_LINE}\"")));
        assert!(script.contains("echo \"peer: failed: $*\""));
        assert!(script.contains("peer.exit=*) exit_at="));
        assert!(POWER_OFF_CGI.contains("Status: 202"));
        // Every command at the start of a line is a shell word or a linked applet.
        let shell_words = [
            "fail",
            "for",
            "do",
            "done",
            "if",
            "then",
            "fi",
            "case",
            "esac",
            "while",
            "until",
            "tries",
            "saved_ifs",
            "IFS",
            "set",
            "client",
            "gateway",
            "netmask",
            "device",
            "ip_parameter",
            "exit_at",
            "httpd_pid",
            "[",
            "wait",
            "}",
            "peer.exit",
        ];
        for line in script.lines().chain(POWER_OFF_CGI.lines()) {
            let line = line.trim();
            let Some(word) = line.split([' ', '=', '(']).next() else {
                continue;
            };
            if word.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                APPLETS.contains(&word) || shell_words.contains(&word),
                "{word:?} in {line:?} is neither an applet linked in /bin nor a shell word"
            );
        }
    }

    #[test]
    fn reads_the_tsc_frequency_only_when_it_is_constant() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2595.124\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n\nprocessor\t: 1\ncpu MHz\t\t: 800.000\n";
        assert_eq!(tsc_khz_from_cpuinfo(cpuinfo), Some(2_595_124));
        assert_eq!(
            tsc_khz_from_cpuinfo(&cpuinfo.replace("constant_tsc", "")),
            None
        );
        assert_eq!(
            tsc_khz_from_cpuinfo(&cpuinfo.replace("2595.124", "fast")),
            None
        );
        assert_eq!(
            tsc_khz_from_cpuinfo(&cpuinfo.replace("2595.124", "1e9")),
            None
        );
        assert_eq!(
            tsc_khz_from_cpuinfo(&cpuinfo.replace("2595.124", "NaN")),
            None
        );
        assert_eq!(tsc_khz_from_cpuinfo(""), None);
        assert_eq!(kernel_args(2_000_000), "tsc_early_khz=2000000 panic=-1");
    }

    #[test]
    fn package_files_are_named_as_apt_get_download_names_them() {
        let package = Package {
            name: "busybox-static".to_owned(),
            version: "1:1.35.0-4+deb12u1+b1".to_owned(),
        };
        assert_eq!(
            package.file_name(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
    }

    #[test]
    fn the_initramfs_holds_init_busybox_and_the_modules() {
        let modules = vec![("virtio", b"\0depends=\0".to_vec())];
        let archive = initramfs_archive(b"\x7fELF busybox", &modules).unwrap();
        let text = String::from_utf8_lossy(&archive);
        for name in [
            "dev/console",
            "bin/busybox",
            "bin/sh",
            "lib/modules/virtio.ko",
            "init",
            "www/health",
            "www/cgi-bin/poweroff",
            "TRAILER!!!",
        ] {
            assert!(text.contains(&format!("{name}\0")), "{name}");
        }
        // The same inputs give the same bytes (the cache compares nothing else).
        assert_eq!(
            archive,
            initramfs_archive(b"\x7fELF busybox", &modules).unwrap()
        );
    }
}
