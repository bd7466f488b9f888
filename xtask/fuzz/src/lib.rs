//! mote's fuzz targets: one per parser of bytes from outside the kernel
//! (the VMM, its firmware, the network) or from outside xtask (the guest's
//! serial output). Each calls the very function the kernel or xtask calls
//! and checks what it promises. `cargo xtask fuzz` runs them under AFL++;
//! `tests/replay.rs` replays every corpus and crash input in `cargo test`.
//! docs/fuzzing.md describes each target's input and invariants.

mod boot_targets;
mod host_targets;

pub use boot_targets::field as little_endian_field;

use std::fs;
use std::path::{Path, PathBuf};

/// One fuzz target: a name, what it reads, and the function that runs one
/// input (it panics when the parser breaks a promise).
pub struct Target {
    pub name: &'static str,
    pub parser: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `cargo xtask fuzz --all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "start_info",
        parser: "mote_boot::start_info::BootInfo::from_start_info (start_info, memory map, modules, command lines)",
        run: boot_targets::start_info,
    },
    Target {
        name: "memory_map",
        parser: "the memory map normalisation inside BootInfo::from_start_info",
        run: boot_targets::memory_map,
    },
    Target {
        name: "cmdline_options",
        parser: "kernel cmdline::Options::parse (mote.*, loglevel=, quiet, debug, ip=)",
        run: mote_kernel::fuzzing::cmdline_options,
    },
    Target {
        name: "virtio_mmio_cmdline",
        parser: "kernel virtio::cmdline::virtio_mmio_devices_from_cmdline (virtio_mmio.device=)",
        run: mote_kernel::fuzzing::virtio_mmio_cmdline,
    },
    Target {
        name: "ip_config",
        parser: "kernel net::ip_config::parse (ip=)",
        run: mote_kernel::fuzzing::ip_config,
    },
    Target {
        name: "acpi_tables",
        parser: "kernel acpi::Acpi::read, then sleep_control, io_apics, processors and DsdtFacts::scan (RSDP, XSDT/RSDT, every table listed, FADT, MADT, DSDT, \\_S5)",
        run: mote_kernel::fuzzing::acpi_tables,
    },
    Target {
        name: "mp_table",
        parser: "kernel smp::mp_table::{find_floating_pointer, processors, read_table} (MP floating pointer search, configuration table, processor entries)",
        run: mote_kernel::fuzzing::mp_table,
    },
    Target {
        name: "dsdt_aml",
        parser: "kernel acpi::aml::walk, virtio::acpi::virtio_mmio_devices_from_dsdt and the boot's skipping DsdtFacts::scan",
        run: mote_kernel::fuzzing::dsdt_aml,
    },
    Target {
        name: "aml_resources",
        parser: "kernel acpi::resources::window_and_interrupt (_CRS templates)",
        run: mote_kernel::fuzzing::aml_resources,
    },
    Target {
        name: "pci_config",
        parser: "kernel pci::{enumerate::enumerate, bar::size_bars, capability::{capabilities, msix, Msix::check}} (a fake configuration space)",
        run: mote_kernel::fuzzing::pci_config,
    },
    Target {
        name: "http_request",
        parser: "kernel net::http::{parse_request, route, response}",
        run: mote_kernel::fuzzing::http_request,
    },
    Target {
        name: "tslog_dump",
        parser: "xtask guest_output::tslog::{parse_dump, Trace::build}",
        run: host_targets::tslog_dump,
    },
    Target {
        name: "boot_report",
        parser: "xtask guest_output::report (BootReport::parse, find_net_line, failure_lines)",
        run: host_targets::boot_report,
    },
    Target {
        name: "report_line",
        parser: "mote_boot::protocol::report::Fact::parse_line and every line's Display",
        run: host_targets::report_line,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}

/// This crate's directory (the corpora and crash inputs live under it).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The seed corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    crate_dir().join("corpus").join(target)
}

/// The inputs that once broke `target` (kept, fixed, replayed forever).
pub fn crashes_dir(target: &str) -> PathBuf {
    crate_dir().join("crashes").join(target)
}

/// The inputs in `dir`, sorted: its regular files but a `README.md`; none
/// when `dir` does not exist.
pub fn input_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_file() && path.file_name().is_some_and(|name| name != "README.md") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
