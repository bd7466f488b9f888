//! The boot cases that apply to every VMM, as run on Firecracker and Cloud
//! Hypervisor (QEMU runs its own, richer versions in `boot_cases`): the
//! report, the tslog dump, the failure path and the disk cases. The
//! expected command line is what each VMM hands the guest.

use std::time::Duration;

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{ConfigAccess, Discovery, DiskName, Fact};

use super::boot_case::{BootCase, ExpectedExit};
use super::boot_cases::{
    block_transport, complete_report, crc_line, disk_line, every_ap_timer_fired_in_ap_online,
    every_cpu_online, pci_function, powered_off, readonly_refuses_write, start_info_line,
    tslog_dump_accounts_for_boot, write_pattern,
};
use super::checks::Check;
use super::fixtures::Fixtures;
use crate::env::images::MIB;
use crate::vm::cmdline::READY_CMDLINE;
use crate::vm::vmm::{Disk, VmmKind, firecracker};

/// The virtio-mmio transport version of Firecracker's devices (it
/// implements the modern interface only, `devices/virtio/transport/mmio.rs`).
const FIRECRACKER_MMIO_VERSION: u32 = 2;

/// The command line `kind` hands a guest booted with `cmdline` and `devices` devices.
fn guest_cmdline(kind: VmmKind, cmdline: &str, devices: usize) -> String {
    match kind {
        VmmKind::Firecracker => firecracker::guest_cmdline(cmdline, devices),
        VmmKind::Qemu | VmmKind::CloudHypervisor => cmdline.to_owned(),
    }
}

/// The `virtio-mmio` line of the first block device, where `kind` puts it.
fn first_block_transport(kind: VmmKind) -> Option<Check> {
    (kind == VmmKind::Firecracker).then(|| {
        block_transport(
            firecracker::FIRST_MMIO_BASE,
            firecracker::FIRST_MMIO_IRQ,
            FIRECRACKER_MMIO_VERSION,
            Discovery::Cmdline,
        )
    })
}

/// The cases for `kind` (Firecracker or Cloud Hypervisor).
pub(crate) fn vmm_cases(fixtures: &Fixtures, kind: VmmKind) -> Vec<BootCase> {
    let ready = guest_cmdline(kind, READY_CMDLINE, 0);
    let tslog_cmdline = format!("{READY_CMDLINE} mote.tslog=1");
    let verify_cmdline = format!("{READY_CMDLINE} mote.blk=verify");
    let verify_disk = &fixtures.three_disks[0];
    let mut verify = BootCase::new("blk-verify-8M", verify_cmdline.clone())
        .disk(Disk::writable(verify_disk))
        // A bound against hangs, not a speed target: a nested KVM that
        // emulates the guest runs the software CRC of 8 MiB in ~37 s when
        // idle, and took over 60 s with the host busy.
        .timeout(Duration::from_secs(240))
        .check(Check::cmdline_equals(guest_cmdline(
            kind,
            &verify_cmdline,
            1,
        )))
        .check(disk_line(0, 8 * MIB / 512, false))
        .check(crc_line(DiskName::Blk(0), verify_disk))
        .check(powered_off(Status::Success));
    if let Some(transport) = first_block_transport(kind) {
        verify = verify.check(transport);
    }
    // Firecracker's MP table and MADT, Cloud Hypervisor's MADT: every vCPU
    // found and online.
    let cpus = match kind {
        VmmKind::Firecracker => 2,
        VmmKind::Qemu | VmmKind::CloudHypervisor => 4,
    };
    let smp = BootCase::new(if cpus == 2 { "smp-2" } else { "smp-4" }, READY_CMDLINE)
        .vcpus(cpus)
        .check(every_cpu_online(cpus))
        .checks(complete_report(&ready));
    // Their timers, set from the frequency KVM gave the boot CPU.
    let smp_tslog = BootCase::new(
        if cpus == 2 {
            "smp-2-ap-timers"
        } else {
            "smp-4-ap-timers"
        },
        tslog_cmdline.clone(),
    )
    .vcpus(cpus)
    .check(every_cpu_online(cpus))
    .checks(complete_report(&guest_cmdline(kind, &tslog_cmdline, 0)))
    .check(Check::Custom {
        description: "every AP checked its timer inside ap_online",
        check: every_ap_timer_fired_in_ap_online,
    });
    let mut cases = vec![
        smp,
        smp_tslog,
        BootCase::new("default-report", READY_CMDLINE)
            .check(start_info_line(&ready))
            .checks(complete_report(&ready))
            .check(Check::UsableMemoryBetween {
                min: 200 * MIB,
                max: 256 * MIB,
            }),
        BootCase::new("tslog-dump", tslog_cmdline.clone())
            .checks(complete_report(&guest_cmdline(kind, &tslog_cmdline, 0)))
            .check(Check::Custom {
                description: "the tslog dump accounts for entry -> ready",
                check: tslog_dump_accounts_for_boot,
            }),
        BootCase::new("panic", "console=ttyS0 mote.crash=panic")
            .expect_exit(ExpectedExit::Failure)
            .must_finish_within(Duration::from_secs(20))
            .check(Check::reports(
                "`PANIC in phase <phase> at <…src/…>:<line>:<column>: …`",
                |fact| matches!(fact, Fact::Panic(panic) if !panic.phase.is_empty()),
            ))
            .check(powered_off(Status::Failure)),
        verify,
        write_pattern(fixtures),
        readonly_refuses_write(fixtures),
    ];
    if kind == VmmKind::Firecracker {
        // `--enable-pci`: the disk on virtio-pci, found through the MCFG,
        // nothing added to the command line.
        cases.push(
            BootCase::new("pci-blk-verify-8M", verify_cmdline.clone())
                .pci()
                .disk(Disk::read_only(&fixtures.pci_disk))
                .timeout(Duration::from_secs(240))
                .check(Check::cmdline_equals(verify_cmdline))
                .check(pci_function(0, 1, "block", 2, ConfigAccess::Ecam))
                .check(disk_line(0, 8 * MIB / 512, true))
                .check(crc_line(DiskName::Blk(0), &fixtures.pci_disk))
                .check(powered_off(Status::Success)),
        );
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_checks_something_and_names_are_unique() {
        let fixtures = crate::test::boot_cases::tests::fixtures();
        for kind in [VmmKind::Firecracker, VmmKind::CloudHypervisor] {
            let cases = vmm_cases(&fixtures, kind);
            let mut names: Vec<_> = cases.iter().map(|case| case.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cases.len());
            assert!(cases.iter().all(|case| !case.checks.is_empty()));
        }
        assert_eq!(
            guest_cmdline(VmmKind::Firecracker, READY_CMDLINE, 1),
            "console=ttyS0 mote.exit=ready pci=off virtio_mmio.device=4K@0xc0001000:5"
        );
        assert_eq!(guest_cmdline(VmmKind::CloudHypervisor, "a", 1), "a");
    }
}
