//! What a bench run records (every sample, raw), its JSON form, and the
//! figures tables and charts are made of.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::exact::ExactCost;

use super::configuration::{Configuration, Guest};
use super::host::HostMachine;
use crate::measure::stats::{self, Summary};

/// Bumped when the JSON changes shape.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// One whole bench run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BenchRun {
    pub(crate) format: u32,
    /// Seconds since the Unix epoch when the run began.
    pub(crate) started_unix: u64,
    /// Wall time of the whole run, builds excluded.
    pub(crate) wall_seconds: f64,
    /// The command that produced it, for the record.
    pub(crate) command: String,
    pub(crate) machine: HostMachine,
    pub(crate) runs: usize,
    pub(crate) warmups: usize,
    pub(crate) timeout_seconds: f64,
    pub(crate) configurations: Vec<ConfigurationRecord>,
    /// Every boot, warm-ups and failures included, in the order they ran.
    pub(crate) samples: Vec<Sample>,
    /// Under icount, each served mote configuration's exact instructions
    /// and device exits to ready, from two more boots (`exact.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exact: Vec<ExactCost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfigurationRecord {
    #[serde(flatten)]
    pub(crate) configuration: Configuration,
    /// The exact VMM command line (QEMU's paths relative to the workspace
    /// root; the name is kept from when QEMU was the only VMM).
    pub(crate) qemu_command: String,
}

/// One boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub(crate) configuration: String,
    /// 0-based; rounds below `warmups` are warm-ups.
    pub(crate) round: usize,
    pub(crate) warmup: bool,
    /// `None` when the boot counts; else why it does not.
    pub(crate) failure: Option<String>,
    pub(crate) exit_code: Option<i32>,
    /// Host side, microseconds from just before QEMU was spawned.
    pub(crate) start_to_first_byte_us: Option<f64>,
    pub(crate) start_to_ready_line_us: Option<f64>,
    /// Served boots only: the `mote: listening` line, and the first 200 for
    /// `GET /health`, as the host saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_to_listening_line_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_to_first_ok_us: Option<f64>,
    /// Served boots end with `POST /poweroff`, so this is no boot figure there.
    pub(crate) start_to_exit_us: f64,
    /// Guest side: the `mote: ready <us> us after entry` line.
    pub(crate) entry_to_ready_us: Option<f64>,
    /// VMM side: Firecracker's boot timer (`Guest-boot-time = <us> us`,
    /// from its own start to the guest's write at `ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) vmm_boot_time_us: Option<f64>,
    pub(crate) tsc_hz: Option<u64>,
    /// tslog spans inside entry → ready, in trace order.
    pub(crate) phases: Vec<PhaseTime>,
    /// The exits mote counted (every CPU's: the tslog records' `exits=`)
    /// from its first record to ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exits_to_ready: Option<f64>,
    /// Guest side, with more than one CPU online: the `cpus` line's time
    /// from the first INIT to the last CPU online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ap_bring_up_us: Option<f64>,
    /// With `mote.blk=verify`: blk0's `verify` line, the whole verify's
    /// rate and the CRC computation's (MiB/s, from the line's times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verify_mib_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verify_crc_mib_per_second: Option<f64>,
    /// mote only: how many `virtio-mmio … acpi` lines the boot printed,
    /// the transports its DSDT named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) acpi_transports: Option<usize>,
}

impl Sample {
    pub(crate) fn counts(&self) -> bool {
        !self.warmup && self.failure.is_none()
    }
}

/// One tslog span's duration (repeats of a path within a boot are summed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PhaseTime {
    /// `parent;child`, as in folded stacks.
    pub(crate) path: String,
    pub(crate) us: f64,
}

/// A row of the tables: one measured quantity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Figure {
    FirstByte,
    ReadyLine,
    ListeningLine,
    FirstOk,
    Exit,
    EntryToReady,
    VmmBootTime,
    ExitsToReady,
    ApBringUp,
    VerifyRate,
    VerifyCrcRate,
    Phase(String),
}

impl Figure {
    pub(crate) fn label(&self) -> String {
        match self {
            Figure::FirstByte => "host: start -> first byte".to_owned(),
            Figure::ReadyLine => "host: start -> ready line".to_owned(),
            Figure::ListeningLine => "host: start -> listening line".to_owned(),
            Figure::FirstOk => "host: start -> first GET /health 200".to_owned(),
            Figure::Exit => "host: start -> VMM exit".to_owned(),
            Figure::EntryToReady => "guest: entry -> ready".to_owned(),
            Figure::VmmBootTime => "vmm: Firecracker Guest-boot-time".to_owned(),
            Figure::ExitsToReady => "guest: exits entry -> ready".to_owned(),
            Figure::ApBringUp => "guest: AP bring-up (cpus line)".to_owned(),
            Figure::VerifyRate => "guest: blk0 verify".to_owned(),
            Figure::VerifyCrcRate => "guest: blk0 verify, CRC alone".to_owned(),
            Figure::Phase(path) => {
                let depth = path.matches(';').count();
                let name = path.rsplit(';').next().unwrap_or(path);
                format!("  {}{name}", "  ".repeat(depth))
            }
        }
    }

    /// Host figures are printed in milliseconds, guest ones in microseconds.
    pub(crate) fn unit(&self) -> Unit {
        match self {
            Figure::FirstByte
            | Figure::ReadyLine
            | Figure::ListeningLine
            | Figure::FirstOk
            | Figure::Exit
            | Figure::VmmBootTime => Unit::Milliseconds,
            Figure::EntryToReady | Figure::ApBringUp | Figure::Phase(_) => Unit::Microseconds,
            Figure::VerifyRate | Figure::VerifyCrcRate => Unit::MibPerSecond,
            Figure::ExitsToReady => Unit::Count,
        }
    }

    /// Read off the guest's TSC: under icount, an instruction count (a
    /// rate: MiB per 10^9 instructions).
    pub(crate) fn is_guest_clock(&self) -> bool {
        matches!(
            self,
            Figure::EntryToReady
                | Figure::ExitsToReady
                | Figure::ApBringUp
                | Figure::VerifyRate
                | Figure::VerifyCrcRate
                | Figure::Phase(_)
        )
    }

    /// The value in its unit's base (microseconds, or MiB/s), if this
    /// sample has it.
    pub(crate) fn value(&self, sample: &Sample) -> Option<f64> {
        match self {
            Figure::FirstByte => sample.start_to_first_byte_us,
            Figure::ReadyLine => sample.start_to_ready_line_us,
            Figure::ListeningLine => sample.start_to_listening_line_us,
            Figure::FirstOk => sample.start_to_first_ok_us,
            Figure::Exit => Some(sample.start_to_exit_us),
            Figure::EntryToReady => sample.entry_to_ready_us,
            Figure::VmmBootTime => sample.vmm_boot_time_us,
            Figure::ExitsToReady => sample.exits_to_ready,
            Figure::ApBringUp => sample.ap_bring_up_us,
            Figure::VerifyRate => sample.verify_mib_per_second,
            Figure::VerifyCrcRate => sample.verify_crc_mib_per_second,
            Figure::Phase(path) => sample
                .phases
                .iter()
                .find(|phase| phase.path == *path)
                .map(|phase| phase.us),
        }
    }

    pub(crate) fn is_top_level_phase(&self) -> bool {
        matches!(self, Figure::Phase(path) if !path.contains(';'))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Milliseconds,
    Microseconds,
    MibPerSecond,
    Count,
}

impl Unit {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Milliseconds => "ms",
            Unit::Microseconds => "us",
            Unit::MibPerSecond => "MiB/s",
            Unit::Count => "n",
        }
    }

    /// Formats a value given in microseconds (MiB/s for a rate, a number
    /// for a count).
    pub(crate) fn format(self, us: f64) -> String {
        match self {
            Unit::Milliseconds => format!("{:.2}", us / 1000.0),
            Unit::Microseconds => format!("{us:.1}"),
            Unit::MibPerSecond => format!("{us:.2}"),
            Unit::Count => format!("{us:.0}"),
        }
    }
}

/// One figure of one configuration: its counted values and their summary.
#[derive(Debug, Clone)]
pub(crate) struct FigureSeries {
    pub(crate) figure: Figure,
    pub(crate) values: Vec<f64>,
    pub(crate) summary: Summary,
}

impl BenchRun {
    pub(crate) fn configuration(&self, name: &str) -> Option<&Configuration> {
        self.configurations
            .iter()
            .map(|record| &record.configuration)
            .find(|configuration| configuration.name == name)
    }

    pub(crate) fn samples_of<'run>(
        &'run self,
        name: &'run str,
    ) -> impl Iterator<Item = &'run Sample> {
        self.samples
            .iter()
            .filter(move |sample| sample.configuration == name)
    }

    /// Every figure of `name` that at least one counted boot has, host
    /// figures first, phases in trace order.
    pub(crate) fn series(&self, name: &str) -> Vec<FigureSeries> {
        let counted: Vec<&Sample> = self.samples_of(name).filter(|s| s.counts()).collect();
        let mut figures = vec![
            Figure::FirstByte,
            Figure::ReadyLine,
            Figure::ListeningLine,
            Figure::FirstOk,
            Figure::Exit,
            Figure::EntryToReady,
            Figure::VmmBootTime,
            Figure::ExitsToReady,
            Figure::ApBringUp,
            Figure::VerifyRate,
            Figure::VerifyCrcRate,
        ];
        for sample in &counted {
            for phase in &sample.phases {
                let figure = Figure::Phase(phase.path.clone());
                if !figures.contains(&figure) {
                    figures.push(figure);
                }
            }
        }
        figures
            .into_iter()
            .filter_map(|figure| {
                let values: Vec<f64> = counted
                    .iter()
                    .filter_map(|sample| figure.value(sample))
                    .collect();
                let summary = stats::summarize(&values)?;
                Some(FigureSeries {
                    figure,
                    values,
                    summary,
                })
            })
            .collect()
    }

    /// The counted values of one figure.
    pub(crate) fn values(&self, name: &str, figure: &Figure) -> Vec<f64> {
        self.samples_of(name)
            .filter(|sample| sample.counts())
            .filter_map(|sample| figure.value(sample))
            .collect()
    }

    pub(crate) fn median(&self, name: &str, figure: &Figure) -> Option<f64> {
        let values = self.values(name, figure);
        (!values.is_empty()).then(|| stats::median(&values))
    }

    pub(crate) fn mote_configurations(&self) -> impl Iterator<Item = &Configuration> {
        self.configurations
            .iter()
            .map(|record| &record.configuration)
            .filter(|configuration| configuration.guest == Guest::Mote)
    }

    pub(crate) fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub(crate) fn read_json(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let run: BenchRun = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench result", path.display()))?;
        if run.format != FORMAT_VERSION {
            bail!(
                "{} has format {}, this xtask reads {FORMAT_VERSION}",
                path.display(),
                run.format
            );
        }
        Ok(run)
    }
}
