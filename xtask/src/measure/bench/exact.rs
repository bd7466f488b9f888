//! Under `--accel icount`: the exact cost of a served mote boot, PVH entry
//! to ready, which its timed boots cannot give (the ready line has whole
//! microseconds, and a served boot prints no dump). Icount boots are
//! deterministic, so one more boot of each counts for all of them:
//!
//! - with `mote.tslog=1`, the dump read over `GET /tslog`: its entry to
//!   ready in TSC cycles, one per instruction under icount;
//! - with `mote.tslog=markers` and QEMU's memory-region trace: the device
//!   accesses QEMU dispatched between entry and ready (each a VM exit under
//!   KVM), as `cargo xtask trace --exits` attributes them. The markers'
//!   own writes are not counted, and they add instructions but no device
//!   access, which is why the instructions come from the other boot.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::configuration::{Configuration, Guest};
use super::runner::{self, Images, MOTE_POWER_OFF};
use super::served;
use crate::env::workspace;
use crate::guest_output::tslog::{self, Trace};
use crate::measure::trace::exits;
use crate::vm::accel::Accel;
use crate::vm::network::HostPorts;
use crate::vm::vmm::VmmKind;

/// The device that carries the console: its accesses are the serial
/// output, counted apart (issue-style "device exits" leave it out).
pub(crate) const CONSOLE_DEVICE: &str = "serial";

/// One served configuration's exact cost to ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExactCost {
    pub(crate) configuration: String,
    /// PVH entry to ready, instructions (markers off).
    pub(crate) instructions_to_ready: u64,
    /// Device accesses from entry to ready, by QEMU's device name.
    pub(crate) accesses_to_ready: BTreeMap<String, u64>,
}

impl ExactCost {
    /// Device accesses to ready other than the console's.
    pub(crate) fn device_exits(&self) -> u64 {
        self.accesses_to_ready
            .iter()
            .filter(|(device, _)| device.as_str() != CONSOLE_DEVICE)
            .map(|(_, &count)| count)
            .sum()
    }

    /// `virtio-mmio 52, ioapic 6, …` (the console last, marked apart).
    pub(crate) fn by_device(&self) -> String {
        let mut parts: Vec<String> = self
            .accesses_to_ready
            .iter()
            .filter(|(device, _)| device.as_str() != CONSOLE_DEVICE)
            .map(|(device, count)| format!("{device} {count}"))
            .collect();
        if let Some(console) = self.accesses_to_ready.get(CONSOLE_DEVICE) {
            parts.push(format!("not counted: {CONSOLE_DEVICE} {console}"));
        }
        parts.join(", ")
    }
}

/// Whether `configuration` gets the two counting boots.
pub(crate) fn counted(configuration: &Configuration) -> bool {
    configuration.guest == Guest::Mote
        && configuration.vmm == VmmKind::Qemu
        && configuration.accel == Accel::Icount
        && configuration.served
}

/// The two counting boots of every [`counted`] configuration.
pub(crate) fn measure(
    configurations: &[Configuration],
    images: &Images,
    timeout: Duration,
) -> Result<Vec<ExactCost>> {
    let mut costs = Vec::new();
    for configuration in configurations.iter().filter(|c| counted(c)) {
        let cost = measure_one(configuration, images, timeout)
            .with_context(|| format!("{}: counting its boot to ready", configuration.name))?;
        println!(
            "  {}: entry -> ready {} instructions, {} device exits ({})",
            configuration.name,
            cost.instructions_to_ready,
            cost.device_exits(),
            cost.by_device()
        );
        costs.push(cost);
    }
    Ok(costs)
}

fn measure_one(
    configuration: &Configuration,
    images: &Images,
    timeout: Duration,
) -> Result<ExactCost> {
    let plain = served_dump(configuration, images, timeout, "mote.tslog=1", None)?;
    let dump = tslog::parse_dump(&plain)?;
    let trace = Trace::build(&dump.records);
    if dump.tsc_hz != Some(1_000_000_000) {
        bail!(
            "the dump's TSC is {:?} Hz, not icount's 1 GHz: its cycles are not instructions",
            dump.tsc_hz
        );
    }
    let trace_path = workspace::target_dir()
        .join("bench")
        .join("exact-exits.trace");
    let marked = served_dump(
        configuration,
        images,
        timeout,
        "mote.tslog=markers",
        Some(&trace_path),
    )?;
    let marked_dump = tslog::parse_dump(&marked)?;
    let text = fs::read_to_string(&trace_path)
        .with_context(|| format!("reading QEMU's trace {}", trace_path.display()))?;
    let devices = exits::attribute(&marked_dump.records, &exits::parse_trace(&text))?;
    Ok(ExactCost {
        configuration: configuration.name.clone(),
        instructions_to_ready: trace.total(),
        accesses_to_ready: devices.total,
    })
}

/// A served boot of `configuration` with `option` added, its dump read
/// with `GET /tslog`; with `trace`, under QEMU's memory-region trace.
fn served_dump(
    configuration: &Configuration,
    images: &Images,
    timeout: Duration,
    option: &str,
    trace: Option<&Path>,
) -> Result<String> {
    let mut configuration = configuration.clone();
    configuration.kernel_args = format!("{} {option}", configuration.kernel_args)
        .trim()
        .to_owned();
    let ports = HostPorts::pick()?;
    let mut command = runner::qemu_command(&configuration, images, &ports.forwards());
    if let Some(path) = trace {
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        // A stale trace must never be read for this boot.
        let _ = fs::remove_file(path);
        command = command.args([
            "-trace".to_owned(),
            "memory_region_ops_*".to_owned(),
            "-D".to_owned(),
            path.display().to_string(),
        ]);
    }
    let run = served::boot_fetching(&command, &ports, timeout, Some("/tslog"), MOTE_POWER_OFF)?;
    let tail = || {
        run.finished
            .tail(20)
            .iter()
            .map(|line| format!("\n  | {line}"))
            .collect::<String>()
    };
    match run.fetched {
        Some(Ok(response)) if response.status == 200 => Ok(response.body_text()),
        Some(Ok(response)) => bail!(
            "GET /tslog: {} {}, expected 200{}",
            response.status,
            response.reason,
            tail()
        ),
        Some(Err(error)) => bail!("GET /tslog: {error}{}", tail()),
        None => bail!("GET /tslog was not sent{}", tail()),
    }
}
