//! `cargo xtask bench --exit-cost`: boots mote under KVM with
//! `mote.bench=exits` and prints what one CPUID, port and MMIO exit cost
//! on this host, the per-exit cost to multiply a phase's exits by
//! (docs/bench.md). On a host that is itself a virtual machine the KVM is
//! nested, and the figures are that nested KVM's, which the table says.

use std::time::Duration;

use anyhow::{Result, bail};
use mote_boot::protocol::report::{ExitCost, ExitCostKind, Fact};

use crate::env::{build, images, workspace};
use crate::vm::accel::Accel;
use crate::vm::vmm::kvm_usable;
use crate::vm::vmm::qemu::{Disk, Machine, QemuCommand};

/// The kernel command line of the measurement.
const CMDLINE: &str = "console=ttyS0 mote.exit=ready mote.bench=exits";

/// The `exitcost` lines in a boot's output.
fn costs(output: &[String]) -> Vec<ExitCost> {
    output
        .iter()
        .filter_map(|line| match Fact::parse_line(line) {
            Some(Ok(Fact::ExitCost(cost))) => Some(cost),
            _ => None,
        })
        .collect()
}

/// Whether /proc/cpuinfo says this host runs under a hypervisor itself.
fn host_is_virtual() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|text| {
        text.lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| line.split_whitespace().any(|flag| flag == "hypervisor"))
    })
}

/// The table of one measurement.
fn render(costs: &[ExitCost], nested: bool) -> String {
    let mut out = String::from("exit   count   ns per exit\n");
    for cost in costs {
        out.push_str(&format!(
            "{:<6} {:>5} {:>13.1}\n",
            cost.kind.word(),
            cost.count,
            cost.nanos
        ));
    }
    out.push_str(
        "\ncpuid: answered inside KVM; port (COM1 scratch) and mmio (virtio-mmio magic value):\n\
         answered by QEMU's device models in user space. An estimate for a phase on this\n\
         host: its cpuid exits x the cpuid cost + its port exits x the port cost + its device\n\
         (mmio) accesses x the mmio cost (cargo xtask trace --accel icount --exits counts them).\n",
    );
    if nested {
        out.push_str(
            "\nTHIS HOST IS ITSELF A VIRTUAL MACHINE (cpuinfo flag `hypervisor`): its KVM is nested,\n\
             and these are the nested KVM's costs, not hardware KVM's; run this on the host you\n\
             deploy to.\n",
        );
    }
    out
}

pub(crate) fn measure(timeout: Duration) -> Result<bool> {
    if !kvm_usable() {
        bail!("--exit-cost measures KVM's exits: /dev/kvm cannot be opened");
    }
    let kernel = build::prebuilt_or_release(None)?;
    let disk = workspace::target_dir().join("exit-cost-disk.img");
    images::ensure_disk_image(&disk, 1024 * 1024)?;
    let qemu = QemuCommand::new(Machine::MicrovmNoAcpi, Accel::Kvm, &kernel)
        .append(CMDLINE)
        .virtio_blk(&Disk::read_only(&disk), "disk0");
    println!("{}", qemu.command_line());
    let finished = qemu.run(timeout, false)?;
    let costs = costs(&finished.stdout);
    if costs.len() != ExitCostKind::ALL.len() {
        for line in finished.tail(20) {
            eprintln!("  | {line}");
        }
        bail!("the guest printed {} of 3 exitcost lines", costs.len());
    }
    print!("\n{}", render(&costs, host_is_virtual()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_and_labels_a_nested_host() {
        let output = [
            "mote: ready 5 us after entry".to_owned(),
            "mote: exitcost cpuid 1000 x 812.5 ns".to_owned(),
            "mote: exitcost port 1000 x 30120.0 ns".to_owned(),
        ];
        let costs = costs(&output);
        assert_eq!(costs.len(), 2);
        assert_eq!(costs[1].kind, ExitCostKind::Port);
        let table = render(&costs, true);
        assert!(table.contains("port    1000       30120.0"), "{table}");
        assert!(table.contains("IS ITSELF A VIRTUAL MACHINE"), "{table}");
        assert!(!render(&costs, false).contains("VIRTUAL MACHINE"));
    }
}
