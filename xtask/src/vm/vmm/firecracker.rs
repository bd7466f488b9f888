//! Firecracker: a [`VmSpec`] as its `--config-file` JSON, started without
//! its API socket, with its log in a file apart from the serial console
//! (stdout), and its boot-timer device on.
//!
//! The JSON fields are those of Firecracker's `vmm_config` (upstream
//! `src/vmm/src/vmm_config/{boot_source,drive,machine_config,net}.rs`, as
//! the `PUT /boot-source`, `/drives`, `/machine-config` and
//! `/network-interfaces` bodies of `src/firecracker/swagger/firecracker.yaml`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Invocation, VmSpec, Vmm, shell_line};
use crate::env::workspace;

/// What Firecracker logs when a driver writes several virtio status bits at
/// once (`src/vmm/src/devices/virtio/transport/mmio.rs`): the device is then
/// never activated.
pub(crate) const STATUS_TRANSITION_COMPLAINT: &str = "invalid virtio driver status transition";

/// The `--show-level` mark of an error line (`[instance:thread:ERROR]`).
pub(crate) const ERROR_LEVEL: &str = ":ERROR]";
/// The mark of a warning, which fails a case too, except [`HOST_WARNINGS`].
pub(crate) const WARN_LEVEL: &str = ":WARN]";
/// Warnings of its vCPU threads racing the power-off the guest asked for
/// (`src/vmm/src/vstate/vcpu.rs`: a resume or run with `immediate_exit`
/// set), which say nothing of the guest.
pub(crate) const HOST_WARNINGS: [&str; 2] = [
    "message with immediate_exit enabled",
    "vCPU run with immediate_exit enabled",
];

/// What Firecracker appends to the boot arguments of a guest without PCI
/// (`src/vmm/src/builder.rs` and `device_manager/mmio.rs`): `pci=off`, then
/// one `virtio_mmio.device=4K@<base>:<irq>` per device, in the order
/// block devices then NICs were configured.
const NO_PCI_WORD: &str = "pci=off";
/// The first virtio-mmio window (the boot timer takes 0xc0000000 before it)
/// and the stride between windows (`arch/src/x86_64/layout.rs`, MMIO32 start).
pub(crate) const FIRST_MMIO_BASE: u64 = 0xc000_1000;
pub(crate) const MMIO_WINDOW: u64 = 0x1000;
/// The GSI of the first virtio-mmio device; the next ones count up (`IRQ_BASE`).
pub(crate) const FIRST_MMIO_IRQ: u32 = 5;

/// The kernel command line the guest sees when `cmdline` is given with
/// `devices` virtio devices.
pub(crate) fn guest_cmdline(cmdline: &str, devices: usize) -> String {
    let mut line = format!("{cmdline} {NO_PCI_WORD}");
    for index in 0..devices {
        line.push_str(&format!(
            " virtio_mmio.device=4K@{:#x}:{}",
            FIRST_MMIO_BASE + index as u64 * MMIO_WINDOW,
            FIRST_MMIO_IRQ + index as u32
        ));
    }
    line
}

/// The guest MAC of NIC `index`: locally administered (bit 1 of the first octet).
fn guest_mac(index: usize) -> String {
    format!("06:00:ac:10:00:{:02x}", index + 2)
}

/// The configuration file's contents for `spec`.
pub(crate) fn config_json(spec: &VmSpec) -> serde_json::Value {
    let absolute = |path: &std::path::Path| workspace::root().join(path).display().to_string();
    let drives: Vec<_> = spec
        .disks
        .iter()
        .enumerate()
        .map(|(index, disk)| {
            json!({
                "drive_id": format!("disk{index}"),
                "path_on_host": absolute(&disk.image),
                "is_root_device": false,
                "is_read_only": disk.read_only,
            })
        })
        .collect();
    let nics: Vec<_> = spec
        .taps
        .iter()
        .enumerate()
        .map(|(index, tap)| {
            json!({
                "iface_id": format!("net{index}"),
                "host_dev_name": tap,
                "guest_mac": guest_mac(index),
            })
        })
        .collect();
    json!({
        "boot-source": {
            "kernel_image_path": absolute(&spec.kernel),
            "boot_args": spec.cmdline,
        },
        "drives": drives,
        "machine-config": {
            "vcpu_count": spec.vcpus,
            "mem_size_mib": spec.memory_mib,
        },
        "network-interfaces": nics,
    })
}

/// Writes the JSON into `scratch` and builds the command.
pub(crate) fn invocation(vmm: &Vmm, spec: &VmSpec, scratch: PathBuf) -> Result<Invocation> {
    let config = scratch.join("vm.json");
    let log = scratch.join("firecracker.log");
    let text = serde_json::to_string_pretty(&config_json(spec))?;
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    // Firecracker opens the log for appending; it must exist.
    std::fs::write(&log, "").with_context(|| format!("creating {}", log.display()))?;
    let mut arguments = arguments(&config, &log);
    if spec.pci {
        // `src/firecracker/src/main.rs`: virtio-pci devices, ACPI's MCFG
        // and no `virtio_mmio.device=` words on the command line.
        arguments.push("--enable-pci".to_owned());
    }
    let mut command = vmm.command();
    command.args(&arguments);
    let command_line = shell_line(vmm.command_prefix().into_iter().chain(arguments));
    Ok(Invocation {
        command,
        command_line,
        log: Some(log),
        scratch: Some(scratch),
    })
}

fn arguments(config: &std::path::Path, log: &std::path::Path) -> Vec<String> {
    [
        "--no-api",
        "--no-seccomp",
        "--config-file",
        &config.display().to_string(),
        "--level",
        "Info",
        "--show-level",
        "--log-path",
        &log.display().to_string(),
        "--boot-timer",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The `Guest-boot-time = <us> us` figure its boot timer logged, if any
/// (`src/vmm/src/devices/pseudo/boot_timer.rs`).
pub(crate) fn guest_boot_time_us(log: &[String]) -> Option<u64> {
    const MARK: &str = "Guest-boot-time = ";
    log.iter().find_map(|line| {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::vmm::Disk;

    #[test]
    fn the_json_carries_every_part_of_the_spec() {
        let mut spec = VmSpec::new(std::path::Path::new("target/kernel"), "console=ttyS0");
        spec.memory_mib = 128;
        spec.disks = vec![
            Disk::writable(std::path::Path::new("a.img")),
            Disk::read_only(std::path::Path::new("b.img")),
        ];
        spec.taps = vec!["tap0".to_owned()];
        let json = config_json(&spec);
        assert_eq!(json["boot-source"]["boot_args"], "console=ttyS0");
        assert!(
            json["boot-source"]["kernel_image_path"]
                .as_str()
                .unwrap()
                .ends_with("/target/kernel")
        );
        assert_eq!(json["machine-config"]["mem_size_mib"], 128);
        assert_eq!(json["machine-config"]["vcpu_count"], 1);
        assert_eq!(json["drives"][0]["is_read_only"], false);
        assert_eq!(json["drives"][1]["is_read_only"], true);
        assert_eq!(json["drives"][1]["is_root_device"], false);
        assert_eq!(json["network-interfaces"][0]["host_dev_name"], "tap0");
        assert_eq!(
            json["network-interfaces"][0]["guest_mac"],
            "06:00:ac:10:00:02"
        );
    }

    #[test]
    fn appends_what_firecracker_appends() {
        assert_eq!(guest_cmdline("console=ttyS0", 0), "console=ttyS0 pci=off");
        assert_eq!(
            guest_cmdline("a", 2),
            "a pci=off virtio_mmio.device=4K@0xc0001000:5 virtio_mmio.device=4K@0xc0002000:6"
        );
    }

    #[test]
    fn reads_the_boot_timer_line() {
        let log = [
            "2026-12-02T14:00:35 [anonymous-instance:main:INFO] Running Firecracker".to_owned(),
            "2026-12-02T14:00:35 [anonymous-instance:fc_vcpu 0:INFO] Guest-boot-time =  31830 us 31 ms, 30990 CPU us 30 CPU ms".to_owned(),
        ];
        assert_eq!(guest_boot_time_us(&log), Some(31830));
        assert_eq!(guest_boot_time_us(&log[..1]), None);
    }
}
