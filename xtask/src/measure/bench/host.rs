//! The facts about the host a bench result is only valid for: which
//! machine, which CPU, which kernel, which QEMU.

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vm::process;
use crate::vm::vmm::qemu::QEMU_BINARY;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostMachine {
    pub(crate) hostname: String,
    pub(crate) cpu_model: String,
    /// Logical CPUs the bench could use.
    pub(crate) cores: usize,
    /// `uname -r`, then `uname -v`.
    pub(crate) kernel: String,
    /// The first line of `qemu-system-x86_64 --version`.
    pub(crate) qemu_version: String,
}

impl HostMachine {
    /// Reads the facts; what cannot be read is recorded as `unknown`.
    pub(crate) fn current() -> Self {
        let read = |path: &str| {
            fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let qemu_version = process::query(
            Command::new(QEMU_BINARY).arg("--version"),
            Duration::from_secs(10),
        )
        .ok()
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
        Self {
            hostname: read("/proc/sys/kernel/hostname"),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: format!(
                "{} {}",
                read("/proc/sys/kernel/osrelease"),
                read("/proc/sys/kernel/version")
            ),
            qemu_version,
        }
    }

    /// One line for the report header.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: {}, {} cores, Linux {}; {}",
            self.hostname, self.cpu_model, self.cores, self.kernel, self.qemu_version
        )
    }
}
