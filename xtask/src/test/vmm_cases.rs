//! The boot cases that apply to every VMM, as run on Firecracker and Cloud
//! Hypervisor (QEMU runs its own, richer versions in `boot_cases`): the
//! report, the tslog dump, the failure path and the disk cases. The
//! expected command line is what each VMM hands the guest.

use std::time::Duration;

use mote_boot::protocol::exit::Status;
use mote_boot::protocol::report::{Discovery, DiskName, Fact, Line, Panic, WriteRefused};

use super::boot_case::{BootCase, ExpectedExit};
use super::boot_cases::{
    block_transport, complete_report, crc_line, disk_line, no_report_line_of, powered_off,
    start_info_line, tslog_dump_accounts_for_boot, written_region_is_exactly_the_pattern,
};
use super::checks::Check;
use super::fixtures::{Fixtures, WRITE_LBA, WRITE_SECTORS, WRITE_SEED, write_base_path};
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
    let write_cmdline = format!(
        "{READY_CMDLINE} mote.blk.write={WRITE_LBA}+{WRITE_SECTORS} mote.blk.seed={WRITE_SEED:#x}"
    );
    let verify_disk = &fixtures.three_disks[0];
    let mut verify = BootCase::new("blk-verify-8M", verify_cmdline.clone())
        .disk(Disk::writable(verify_disk))
        .timeout(Duration::from_secs(60))
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
    vec![
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
            .check(Check::reports("`PANIC in phase <phase> at <…src/…>:<line>:<column>: …`", |fact| {
                matches!(fact, Fact::Panic(panic) if !panic.phase.is_empty())
            }))
            .check(powered_off(Status::Failure)),
        verify,
        BootCase::new("blk-write-pattern", write_cmdline)
            .disk(Disk::writable(&fixtures.write_disk))
            .fresh_copy(write_base_path(), fixtures.write_disk.clone())
            .check(powered_off(Status::Success))
            .check(Check::Custom {
                description: "the image holds exactly the pattern in the range, and nothing else changed",
                check: written_region_is_exactly_the_pattern,
            }),
        BootCase::new("blk-readonly-refuses-write", format!("{READY_CMDLINE} mote.blk.write=16+8"))
            .disk(Disk::read_only(&fixtures.readonly_disk))
            .expect_exit(ExpectedExit::Failure)
            .check(disk_line(0, 4096, true))
            .check(Check::line_equals(Line(WriteRefused {
                index: 0,
                error: "the device is read-only",
            })))
            .check(no_report_line_of(Panic::<&str>::SHAPE.keyword))
            .check(powered_off(Status::Failure)),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn every_case_checks_something_and_names_are_unique() {
        let test = PathBuf::from("target/test");
        let fixtures = Fixtures {
            initrd: test.join("initrd.bin"),
            small_disk: test.join("small-disk.img"),
            random_disk: test.join("random-64M.img"),
            three_disks: ["8", "4", "2"].map(|mib| test.join(format!("random-{mib}M.img"))),
            write_disk: test.join("write.img"),
            modern_disk: test.join("modern-2M.img"),
            readonly_disk: test.join("readonly-2M.img"),
            bench_disk: test.join("bench-8M.img"),
            gzip_initrd: test.join("initrd.gz"),
            png_initrd: test.join("initrd.png"),
        };
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
