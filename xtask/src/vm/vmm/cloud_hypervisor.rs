//! Cloud Hypervisor: a [`VmSpec`] as its command-line flags (upstream
//! `cloud-hypervisor/src/main.rs`, `--help`). Its serial console is the
//! terminal (`--serial tty`); its log, on stderr, is checked for errors.
//! It has virtio-pci only: disks and NICs are passed as asked, and mote
//! drives them through its virtio-pci transport (docs/virtio-pci.md).

use super::{Invocation, VmSpec, Vmm, shell_line};

/// How its logger marks an error (`<thread> ERROR:file:line -- message`).
pub(crate) const ERROR_LEVEL: &str = " ERROR:";
/// How it marks a warning. Warnings fail a case too (a guest that sizes a
/// 64-bit BAR in an order it takes for a move draws "Failed moving device
/// BAR"), except [`HOST_WARNINGS`].
pub(crate) const WARN_LEVEL: &str = " WARN:";
/// Warnings about the host or the invocation, not the guest: the host
/// kernel's scheduler, a tap the test made before the VMM opened it, and
/// `sparse=on` (its default) on a raw file that cannot punch holes.
pub(crate) const HOST_WARNINGS: [&str; 3] = [
    "Kernel lacks CONFIG_SCHED_CORE support",
    "IP configuration will not be overwritten",
    "sparse=on requested but backend does not support sparse operations",
];

/// The flags for `spec`.
pub(crate) fn arguments(spec: &VmSpec) -> Vec<String> {
    let mut arguments = vec![
        "--kernel".to_owned(),
        spec.kernel.display().to_string(),
        "--cmdline".to_owned(),
        spec.cmdline.clone(),
        "--memory".to_owned(),
        format!("size={}M", spec.memory_mib),
        "--cpus".to_owned(),
        format!("boot={}", spec.vcpus),
        "--serial".to_owned(),
        "tty".to_owned(),
        "--console".to_owned(),
        "off".to_owned(),
    ];
    for disk in &spec.disks {
        let read_only = if disk.read_only { ",readonly=on" } else { "" };
        arguments.push("--disk".to_owned());
        arguments.push(format!(
            "path={},image_type=raw{read_only}",
            disk.image.display()
        ));
    }
    for tap in &spec.taps {
        arguments.push("--net".to_owned());
        arguments.push(format!("tap={tap}"));
    }
    arguments
}

pub(crate) fn invocation(vmm: &Vmm, spec: &VmSpec) -> Invocation {
    let arguments = arguments(spec);
    let mut command = vmm.command();
    command.args(&arguments);
    Invocation {
        command,
        command_line: shell_line(vmm.command_prefix().into_iter().chain(arguments)),
        log: None,
        scratch: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::vm::vmm::Disk;

    #[test]
    fn flags_follow_the_spec() {
        let mut spec = VmSpec::new(Path::new("target/kernel"), "console=ttyS0 a");
        spec.memory_mib = 128;
        spec.disks = vec![Disk::read_only(Path::new("d.img"))];
        spec.taps = vec!["tap1".to_owned()];
        assert_eq!(
            arguments(&spec).join(" "),
            "--kernel target/kernel --cmdline console=ttyS0 a --memory size=128M --cpus boot=1 \
             --serial tty --console off --disk path=d.img,image_type=raw,readonly=on --net tap=tap1"
        );
    }
}
