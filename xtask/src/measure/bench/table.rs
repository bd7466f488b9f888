//! The terminal tables: a run's report (made from its recorded data only,
//! so a saved JSON re-renders the same text) and the before/after comparison.

use std::fmt::Write as _;

use super::configuration::{Configuration, Guest, baseline_of};
use super::results::{BenchRun, Figure, FigureSeries, Sample, Unit};
use crate::measure::stats::{self, OUTLIER_FENCE_IQRS, SIGNIFICANCE_LEVEL};
use crate::vm::accel::Accel;

/// Target (a): entry → ready median of mote with blk and net under KVM.
const ENTRY_TO_READY_TARGET_US: f64 = 1000.0;
/// Target (b): mote's start → ready over the null guest's start → exit.
const FLOOR_RATIO_TARGET: f64 = 1.10;
/// Target (c): a served boot's instructions, entry to ready (issue #12).
const SERVED_INSTRUCTIONS_TARGET: u64 = 40_000;
/// Target (d): its device exits (the console's left out).
const SERVED_DEVICE_EXITS_TARGET: u64 = 70;
/// Target (e): discovering the DSDT's virtio-mmio transports, instructions.
const DSDT_DISCOVERY_TARGET: u64 = 5_000;
/// The DSDT target (e) is set on: QEMU microvm's transports, all taken.
const DSDT_DISCOVERY_TRANSPORTS: usize = 24;
/// Target (g): (b)'s ratio under TCG.
const TCG_FLOOR_RATIO_TARGET: f64 = 1.05;

/// `2025-11-22 17:30:05 UTC` and `20251122-173005` for a Unix time.
pub(crate) fn utc_timestamp(unix: u64) -> (String, String) {
    let days = (unix / 86_400) as i64;
    let seconds = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    (
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC"),
        format!("{year:04}{month:02}{day:02}-{hour:02}{minute:02}{second:02}"),
    )
}

fn header(run: &BenchRun) -> String {
    let mut out = String::new();
    let boots = run.samples.len();
    let _ = writeln!(
        out,
        "mote bench, {}: {} runs + {} warm-ups per configuration, interleaved; {boots} boots in {:.1} s",
        utc_timestamp(run.started_unix).0,
        run.runs,
        run.warmups,
        run.wall_seconds
    );
    let _ = writeln!(out, "machine: {}", run.machine.describe());
    let _ = writeln!(out, "command: {}", run.command);
    out
}

/// The full report of a run.
pub(crate) fn render_report(run: &BenchRun) -> String {
    let mut out = header(run);
    let mut outliers = Vec::new();
    for record in &run.configurations {
        let configuration = &record.configuration;
        let name = &configuration.name;
        let samples: Vec<_> = run.samples_of(name).filter(|s| !s.warmup).collect();
        let failed: Vec<_> = samples.iter().filter(|s| s.failure.is_some()).collect();
        let _ = writeln!(
            out,
            "\n== {name}: {}, {} ({} counted, {} failed)",
            configuration.guest.kind(),
            configuration.describe(),
            samples.len() - failed.len(),
            failed.len()
        );
        let _ = writeln!(
            out,
            "{:<36} {:>4} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>4}",
            "figure", "unit", "min", "median", "p90", "max", "IQR", "MAD", "out"
        );
        for series in run.series(name) {
            let unit = series.figure.unit();
            let summary = &series.summary;
            let _ = writeln!(
                out,
                "{:<36} {:>4} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>4}",
                series.figure.label(),
                unit.name(),
                unit.format(summary.min),
                unit.format(summary.median),
                unit.format(summary.p90),
                unit.format(summary.max),
                unit.format(summary.iqr),
                unit.format(summary.mad),
                summary.outliers.len()
            );
            if !summary.outliers.is_empty() {
                let values: Vec<String> = summary
                    .outliers
                    .iter()
                    .map(|&value| unit.format(value))
                    .collect();
                outliers.push(format!(
                    "{name} {}: {} {}",
                    series.figure.label().trim(),
                    values.join(", "),
                    unit.name()
                ));
            }
        }
        for sample in failed {
            let _ = writeln!(
                out,
                "  failed boot in round {}: {}",
                sample.round + 1,
                sample.failure.as_deref().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        out,
        "\noutliers (beyond {OUTLIER_FENCE_IQRS} IQR outside the quartiles): {}",
        if outliers.is_empty() { "none" } else { "" }
    );
    for line in outliers {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str(&floor_section(run));
    out.push_str(&targets_section(run));
    out
}

/// `value` over `floor`: the one ratio every table of the bench prints,
/// where the floor is the median start → exit of the null guest with the
/// same QEMU settings, measured in the same run.
fn ratio_to_floor(value: Option<f64>, floor: Option<f64>) -> Option<f64> {
    match (value, floor) {
        (Some(value), Some(floor)) if floor > 0.0 => Some(value / floor),
        _ => None,
    }
}

/// `ratio` as `1.23x`, or `-` without one.
fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}x"))
}

/// A median in microseconds as milliseconds, or `-`.
fn milliseconds_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |us| format!("{:.2}", us / 1000.0))
}

/// Every configuration but the null guests, each with its floor's median exit.
fn with_floors(run: &BenchRun) -> Vec<(&Configuration, &Configuration, Option<f64>)> {
    let owned: Vec<Configuration> = run
        .configurations
        .iter()
        .map(|record| record.configuration.clone())
        .collect();
    run.configurations
        .iter()
        .map(|record| &record.configuration)
        .filter(|configuration| configuration.guest != Guest::Null)
        .filter_map(|configuration| {
            let baseline = baseline_of(configuration, &owned)?;
            let baseline = run.configuration(&baseline.name)?;
            Some((
                configuration,
                baseline,
                run.median(&baseline.name, &Figure::Exit),
            ))
        })
        .collect()
}

/// One row of a floor table: the configuration, its floor, then cells, each
/// right-aligned to its column's width.
fn write_floor_row(
    out: &mut String,
    width: usize,
    name: &str,
    floor: &str,
    cells: &[(String, usize)],
) {
    let _ = write!(out, "{name:<width$} {floor:<width$}");
    for (cell, cell_width) in cells {
        let _ = write!(out, " {cell:>cell_width$}");
    }
    out.push('\n');
}

/// A floor table's title line, column headings, rows and footnote.
fn write_floor_table(
    out: &mut String,
    width: usize,
    title: &str,
    columns: &[(&str, usize)],
    rows: &[(&str, &str, Vec<String>)],
    footnote: &str,
) {
    let _ = writeln!(out, "\n== {title}");
    let headings: Vec<(String, usize)> = columns
        .iter()
        .map(|&(heading, width)| (heading.to_owned(), width))
        .collect();
    write_floor_row(out, width, "configuration", "floor", &headings);
    for (name, floor, cells) in rows {
        let cells: Vec<(String, usize)> = cells
            .iter()
            .cloned()
            .zip(columns.iter().map(|&(_, width)| width))
            .collect();
        write_floor_row(out, width, name, floor, &cells);
    }
    let _ = writeln!(out, "({footnote})");
}

/// mote (and external kernels) against the null guest with the same QEMU
/// settings, then the served boots' section when there are any.
fn floor_section(run: &BenchRun) -> String {
    let width = run
        .configurations
        .iter()
        .map(|record| record.configuration.name.len())
        .max()
        .unwrap_or(0)
        .max("configuration".len());
    let floors = with_floors(run);
    let rows: Vec<(&str, &str, Vec<String>)> = floors
        .iter()
        .map(|(configuration, baseline, floor)| {
            let name = &configuration.name;
            let first_byte = run.median(name, &Figure::FirstByte);
            let ready = run.median(name, &Figure::ReadyLine);
            let exit = run.median(name, &Figure::Exit);
            // A kernel without a ready line is timed to its first byte:
            // the last column says which line each ready/fl is taken to.
            let (ready_value, ready_is) = match (&configuration.guest, ready) {
                (Guest::Mote, _) => (ready, "mote: ready".to_owned()),
                (
                    Guest::External {
                        ready_line: Some(pattern),
                        ..
                    },
                    _,
                ) => (ready, format!("/{pattern}/")),
                _ => (first_byte, "first byte".to_owned()),
            };
            let cells = vec![
                milliseconds_cell(first_byte),
                milliseconds_cell(ready),
                milliseconds_cell(exit),
                milliseconds_cell(*floor),
                ratio_cell(ratio_to_floor(ready_value, *floor)),
                ratio_cell(ratio_to_floor(exit, *floor)),
                format!("  {ready_is}"),
            ];
            (name.as_str(), baseline.name.as_str(), cells)
        })
        .collect();
    let mut out = String::new();
    write_floor_table(
        &mut out,
        width,
        "cost above the VMM's floor (medians, ms; floor = null guest, same VMM and settings, same run)",
        &[
            ("first byte", 10),
            ("ready", 10),
            ("exit", 10),
            ("floor exit", 10),
            ("ready/fl", 9),
            ("exit/fl", 9),
            ("  ready/fl is taken to", 0),
        ],
        &rows,
        "ready/fl: start -> the line named last (mote's ready line, the line matching another \
         kernel's --ready-line, or its first serial byte without one) over the floor's start -> \
         exit; exit/fl: start -> exit over the same",
    );
    let served: Vec<(&str, &str, Vec<String>)> = floors
        .iter()
        .filter(|(configuration, _, _)| configuration.served)
        .map(|(configuration, baseline, floor)| {
            let name = &configuration.name;
            let first_ok = run.median(name, &Figure::FirstOk);
            let cells = vec![
                milliseconds_cell(run.median(name, &Figure::ListeningLine)),
                milliseconds_cell(first_ok),
                milliseconds_cell(*floor),
                ratio_cell(ratio_to_floor(first_ok, *floor)),
            ];
            (name.as_str(), baseline.name.as_str(), cells)
        })
        .collect();
    if !served.is_empty() {
        write_floor_table(
            &mut out,
            width,
            "served boots: first GET /health 200 over the VMM's floor (medians, ms)",
            &[
                ("listening", 10),
                ("first 200", 10),
                ("floor exit", 10),
                ("200/fl", 9),
            ],
            &served,
            "served: no mote.exit=ready, a static ip=; GET /health every 1 ms from QEMU's start, \
             then POST /poweroff (the Linux peer: GET /cgi-bin/poweroff), so exit is not a boot \
             figure there; listening is mote's `mote: listening` line",
        );
    }
    out.push_str(&beside_mote_section(run));
    out
}

/// Each other kernel against the mote configuration with the same VMM,
/// accelerator and serving: the same figures, and their ratio.
fn beside_mote_section(run: &BenchRun) -> String {
    let mut out = String::new();
    for external in run
        .configurations
        .iter()
        .map(|record| &record.configuration)
        .filter(|configuration| matches!(configuration.guest, Guest::External { .. }))
    {
        let Some(mote) = run.mote_configurations().find(|mote| {
            mote.vmm == external.vmm
                && mote.accel == external.accel
                && mote.served == external.served
        }) else {
            continue;
        };
        let _ = writeln!(
            out,
            "\n== {} beside {} (medians, same run; ratio = {} over mote)",
            external.name, mote.name, external.name
        );
        let ready_is = match &external.guest {
            Guest::External {
                ready_line: Some(pattern),
                ..
            } => format!("its line matching /{pattern}/ vs `mote: ready`"),
            _ => "its first serial byte (no --ready-line) vs `mote: ready`".to_owned(),
        };
        for (figure, what) in [
            (Figure::ReadyLine, ready_is),
            (
                Figure::FirstOk,
                "the host's first 200 for GET /health".to_owned(),
            ),
            (Figure::Exit, "the VMM's exit".to_owned()),
        ] {
            let (Some(theirs), Some(ours)) = (
                run.median(&external.name, &figure),
                run.median(&mote.name, &figure),
            ) else {
                continue;
            };
            if figure == Figure::Exit && external.served {
                continue; // ended by a request, not a boot figure
            }
            let _ = writeln!(
                out,
                "{:<38} {:>10} ms vs {:>9} ms = {:>8}  ({what})",
                figure.label(),
                format!("{:.2}", theirs / 1000.0),
                format!("{:.2}", ours / 1000.0),
                ratio_cell(ratio_to_floor(Some(theirs), Some(ours)))
            );
        }
    }
    out
}

/// The performance targets, as figures with PASS/MISS; never asserted.
fn targets_section(run: &BenchRun) -> String {
    let mut out = String::new();
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let _ = writeln!(out, "\n== targets (printed, never asserted)");
    let mut any = false;
    for configuration in run
        .mote_configurations()
        .filter(|c| c.accel == Accel::Kvm && c.blk && c.net)
    {
        if let Some(median) = run.median(&configuration.name, &Figure::EntryToReady) {
            any = true;
            let _ = writeln!(
                out,
                "(a) entry -> ready, {}: median {median:.0} us, target <= {ENTRY_TO_READY_TARGET_US:.0} us \
                 ({:.2}x the target): {}",
                configuration.name,
                median / ENTRY_TO_READY_TARGET_US,
                verdict(median <= ENTRY_TO_READY_TARGET_US)
            );
        }
    }
    if !any {
        let _ = writeln!(
            out,
            "(a) entry -> ready: not measured (no mote configuration with blk and net under KVM)"
        );
    }
    for (configuration, ready, floor, ratio) in mote_floor_ratios(run) {
        let _ = writeln!(
            out,
            "(b) start -> ready / null start -> exit, {}: {:.2} ms / {:.2} ms = {ratio:.2}, \
             target <= {FLOOR_RATIO_TARGET:.2}: {}",
            configuration.name,
            ready / 1000.0,
            floor / 1000.0,
            verdict(ratio <= FLOOR_RATIO_TARGET)
        );
    }
    out.push_str(&cost_targets(run));
    out
}

/// Each mote configuration with a floor: its start -> ready median, the
/// floor's start -> exit median and their ratio (targets (b) and (g)).
fn mote_floor_ratios(run: &BenchRun) -> Vec<(&Configuration, f64, f64, f64)> {
    with_floors(run)
        .into_iter()
        .filter(|(configuration, _, _)| configuration.guest == Guest::Mote)
        .filter_map(|(configuration, _, floor)| {
            let ready = run.median(&configuration.name, &Figure::ReadyLine);
            let ratio = ratio_to_floor(ready, floor)?;
            Some((configuration, ready?, floor?, ratio))
        })
        .collect()
}

/// Issue #12's boot-cost targets: exact figures under icount (served boot,
/// DSDT discovery), the calibration's place and the floor ratio under TCG.
fn cost_targets(run: &BenchRun) -> String {
    let mut out = String::new();
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let _ = writeln!(out, "boot cost:");
    if run.exact.is_empty() {
        let _ = writeln!(
            out,
            "(c) served entry -> ready instructions, (d) its device exits: not measured \
             (no served mote configuration under --accel icount on QEMU)"
        );
    }
    for cost in &run.exact {
        let _ = writeln!(
            out,
            "(c) served entry -> ready, {}: {} instructions, target <= {SERVED_INSTRUCTIONS_TARGET}: {}",
            cost.configuration,
            cost.instructions_to_ready,
            verdict(cost.instructions_to_ready <= SERVED_INSTRUCTIONS_TARGET)
        );
        let exits = cost.device_exits();
        let _ = writeln!(
            out,
            "(d) served entry -> ready, {}: {exits} device exits ({}), target <= {SERVED_DEVICE_EXITS_TARGET}: {}",
            cost.configuration,
            cost.by_device(),
            verdict(exits <= SERVED_DEVICE_EXITS_TARGET)
        );
    }
    let mut discovery = false;
    for configuration in run
        .mote_configurations()
        .filter(|c| c.accel == Accel::Icount && c.acpi && !c.served)
    {
        // The DSDT is walked in `acpi_init` (`dsdt_walk`), its transports
        // probed in `virtio_discovery`: discovery is both.
        let sums: Vec<f64> = run
            .samples_of(&configuration.name)
            .filter(|sample| sample.counts())
            .filter_map(|sample| {
                let spans: Vec<f64> = sample
                    .phases
                    .iter()
                    .filter(|phase| {
                        matches!(
                            phase.path.rsplit(';').next(),
                            Some("dsdt_walk" | "virtio_discovery")
                        )
                    })
                    .map(|phase| phase.us)
                    .collect();
                (!spans.is_empty()).then(|| spans.iter().sum())
            })
            .collect();
        if sums.is_empty() {
            continue;
        }
        let us = stats::median(&sums);
        let transports = run
            .samples_of(&configuration.name)
            .filter(|sample| sample.counts())
            .filter_map(|sample| sample.acpi_transports)
            .max();
        discovery = true;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an icount span: a whole, positive instruction count"
        )]
        let instructions = (us * ICOUNT_INSTRUCTIONS_PER_US).round() as u64;
        // The target is the DSDT at its largest: QEMU microvm's 24
        // transports, all taken. A smaller one is measured, not judged.
        let found = transports
            .map(|count| format!(", {count} transports"))
            .unwrap_or_default();
        let judged = match transports {
            Some(count) if count != DSDT_DISCOVERY_TRANSPORTS => format!(
                "not judged (the target is for {DSDT_DISCOVERY_TRANSPORTS}; the budget-acpi \
                 case boots them)"
            ),
            _ => verdict(instructions <= DSDT_DISCOVERY_TARGET).to_owned(),
        };
        let _ = writeln!(
            out,
            "(e) DSDT discovery (dsdt_walk + virtio_discovery, ACPI on), {}{found}: {instructions} instructions, \
             target <= {DSDT_DISCOVERY_TARGET} for {DSDT_DISCOVERY_TRANSPORTS} transports: {judged}",
            configuration.name,
        );
    }
    if !discovery {
        let _ = writeln!(
            out,
            "(e) DSDT discovery: not measured (no mote configuration with ACPI on under --accel icount)"
        );
    }
    for configuration in run
        .mote_configurations()
        .filter(|c| c.accel == Accel::Tcg && !c.served)
    {
        let counted: Vec<&Sample> = run
            .samples_of(&configuration.name)
            .filter(|sample| sample.counts())
            .collect();
        if counted.is_empty() {
            continue;
        }
        let calibrating: Vec<f64> = counted
            .iter()
            .filter_map(|sample| {
                sample
                    .phases
                    .iter()
                    .find(|phase| phase.path.rsplit(';').next() == Some("tsc_calibration"))
                    .map(|phase| phase.us)
            })
            .collect();
        let line = if calibrating.is_empty() {
            format!(
                "no PIT calibration before ready in {} boots: PASS",
                counted.len()
            )
        } else {
            format!(
                "a PIT calibration before ready in {} of {} boots (median {:.0} us): MISS",
                calibrating.len(),
                counted.len(),
                stats::median(&calibrating)
            )
        };
        let _ = writeln!(
            out,
            "(f) calibration off the path to ready (TCG), {}: {line}",
            configuration.name
        );
    }
    for (configuration, ready, floor, ratio) in mote_floor_ratios(run) {
        if configuration.accel == Accel::Tcg {
            let _ = writeln!(
                out,
                "(g) start -> ready / null start -> exit (TCG), {}: {:.2} ms / {:.2} ms = {ratio:.3}, \
                 target <= {TCG_FLOOR_RATIO_TARGET:.2}: {}",
                configuration.name,
                ready / 1000.0,
                floor / 1000.0,
                verdict(ratio <= TCG_FLOOR_RATIO_TARGET)
            );
        }
    }
    out
}

/// Before/after: configurations paired by name (or by `pairs`, `A=B`), every
/// figure both have, B/A medians and the Mann-Whitney verdict.
pub(crate) fn render_comparison(
    before: &BenchRun,
    after: &BenchRun,
    pairs: &[(String, String)],
) -> Result<String, String> {
    let pairs: Vec<(String, String)> = if pairs.is_empty() {
        before
            .configurations
            .iter()
            .map(|record| record.configuration.name.clone())
            .filter(|name| after.configuration(name).is_some())
            .map(|name| (name.clone(), name))
            .collect()
    } else {
        pairs.to_vec()
    };
    let names = |run: &BenchRun| {
        run.configurations
            .iter()
            .map(|record| record.configuration.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if pairs.is_empty() {
        return Err(format!(
            "the runs share no configuration name (A: {}; B: {}): pass --pair A_NAME=B_NAME",
            names(before),
            names(after)
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A: {} ({})\nB: {} ({})",
        utc_timestamp(before.started_unix).0,
        before.command,
        utc_timestamp(after.started_unix).0,
        after.command
    );
    if before.machine != after.machine {
        let _ = writeln!(
            out,
            "warning: the runs come from different machines or QEMU versions:\n  A: {}\n  B: {}",
            before.machine.describe(),
            after.machine.describe()
        );
    }
    let _ = writeln!(
        out,
        "test: two-sided Mann-Whitney U over the counted boots (normal approximation, tie and \
         continuity corrected); a difference is significant when p < {SIGNIFICANCE_LEVEL}; \
         guest figures of two icount configurations are instruction counts, compared exactly"
    );
    for (name_a, name_b) in &pairs {
        let (Some(config_a), Some(config_b)) =
            (before.configuration(name_a), after.configuration(name_b))
        else {
            return Err(format!(
                "no configuration {name_a:?} in A ({}) or {name_b:?} in B ({})",
                names(before),
                names(after)
            ));
        };
        let title = if name_a == name_b {
            name_a.clone()
        } else {
            format!("{name_a} -> {name_b}")
        };
        let _ = writeln!(
            out,
            "\n== {title}\n   A: {}\n   B: {}",
            config_a.describe(),
            config_b.describe()
        );
        let _ = writeln!(
            out,
            "{:<36} {:>4} {:>4} {:>4} {:>10} {:>10} {:>7} {:>8}  verdict",
            "figure", "unit", "n A", "n B", "median A", "median B", "B/A", "p"
        );
        let both_icount = config_a.accel == Accel::Icount && config_b.accel == Accel::Icount;
        for series in &before.series(name_a) {
            let values_b = after.values(name_b, &series.figure);
            if both_icount
                && series.figure.is_guest_clock()
                && let (Some(a), Some(b)) = (exact_value(&series.values), exact_value(&values_b))
            {
                let row = CompareRow {
                    figure: series,
                    count_b: values_b.len(),
                    value_a: a,
                    value_b: b,
                };
                row.write(&mut out, "exact", &exact_difference(a, b));
                continue;
            }
            let Some(test) = stats::mann_whitney_u(&series.values, &values_b) else {
                continue;
            };
            let row = CompareRow {
                figure: series,
                count_b: values_b.len(),
                value_a: series.summary.median,
                value_b: stats::median(&values_b),
            };
            let verdict = if !test.significant() {
                "within noise"
            } else if row.value_b > row.value_a {
                "SLOWER (significant)"
            } else {
                "FASTER (significant)"
            };
            row.write(&mut out, &format!("{:.4}", test.p_value), verdict);
        }
    }
    Ok(out)
}

/// Instructions in a microsecond of an icount guest's clock (1 GHz TSC).
const ICOUNT_INSTRUCTIONS_PER_US: f64 = 1000.0;

/// One figure's row of the `--compare` table: A's series against B's value.
struct CompareRow<'a> {
    figure: &'a FigureSeries,
    count_b: usize,
    value_a: f64,
    value_b: f64,
}

impl CompareRow<'_> {
    /// Writes the row; `test` fills the `p` column (a p-value, or `exact`).
    fn write(&self, out: &mut String, test: &str, verdict: &str) {
        let unit: Unit = self.figure.figure.unit();
        let ratio = if self.value_a > 0.0 {
            format!("{:.3}", self.value_b / self.value_a)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<36} {:>4} {:>4} {:>4} {:>10} {:>10} {:>7} {:>8}  {verdict}",
            self.figure.figure.label(),
            unit.name(),
            self.figure.values.len(),
            self.count_b,
            unit.format(self.value_a),
            unit.format(self.value_b),
            ratio,
            test
        );
    }
}

/// The one value every boot gave, when they all agree (icount's guest
/// figures do); `None` for a spread or no boot.
fn exact_value(values: &[f64]) -> Option<f64> {
    let first = *values.first()?;
    values.iter().all(|&value| value == first).then_some(first)
}

/// B - A of two icount guest figures, in instructions.
fn exact_difference(a: f64, b: f64) -> String {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "icount figures are whole instruction counts well inside i64"
    )]
    let instructions = ((b - a) * ICOUNT_INSTRUCTIONS_PER_US).round() as i64;
    if instructions == 0 {
        "same (exact)".to_owned()
    } else {
        format!("{instructions:+} instructions (exact)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::bench::chart;
    use crate::measure::bench::configuration as config;
    use crate::measure::bench::host::HostMachine;
    use crate::measure::bench::results::{ConfigurationRecord, FORMAT_VERSION, PhaseTime, Sample};

    /// A counted boot that exited 33 and recorded no figure but a zero exit time.
    fn bare_sample(configuration: &str, round: usize) -> Sample {
        Sample {
            configuration: configuration.into(),
            round,
            warmup: false,
            failure: None,
            exit_code: Some(33),
            start_to_first_byte_us: None,
            start_to_ready_line_us: None,
            start_to_listening_line_us: None,
            start_to_first_ok_us: None,
            start_to_exit_us: 0.0,
            vmm_boot_time_us: None,
            entry_to_ready_us: None,
            tsc_hz: None,
            phases: Vec::new(),
            exits_to_ready: None,
            ap_bring_up_us: None,
            verify_mib_per_second: None,
            verify_crc_mib_per_second: None,
            acpi_transports: None,
        }
    }

    /// A run of mote and its null twin under KVM; `slowdown` scales mote's
    /// guest figures, `seed` varies the noise.
    fn fixture(slowdown: f64, seed: u64) -> BenchRun {
        let configurations = config::add_twins(
            config::expand_matrix(&config::test_matrix(), &[Accel::Kvm]),
            None,
        )
        .unwrap();
        let mut samples = Vec::new();
        for round in 0..22 {
            // A cheap deterministic spread, with an outlier in round 7.
            let noise = ((round as u64 * 7919 + seed * 104_729) % 97) as f64 / 97.0;
            let spike = if round == 7 { 30_000.0 } else { 0.0 };
            let entry = 16_000.0 * slowdown + 400.0 * noise;
            samples.push(Sample {
                configuration: "mote-kvm-blk-net".into(),
                round,
                warmup: round < 2,
                failure: (round == 12).then(|| "timed out after 30 s and was killed".into()),
                exit_code: Some(33),
                start_to_first_byte_us: Some(60_000.0 + entry + 1000.0 * noise),
                start_to_ready_line_us: Some(60_000.0 + entry + 1000.0 * noise + spike),
                start_to_listening_line_us: None,
                start_to_first_ok_us: None,
                start_to_exit_us: 150_000.0 + 3000.0 * noise,
                vmm_boot_time_us: None,
                entry_to_ready_us: Some(entry.round()),
                tsc_hz: Some(2_300_000_000),
                exits_to_ready: Some(60.0),
                ap_bring_up_us: Some(2000.0 + 100.0 * noise),
                verify_mib_per_second: Some(75.0 + noise),
                verify_crc_mib_per_second: Some(96.0 + noise),
                acpi_transports: None,
                phases: vec![
                    PhaseTime {
                        path: "pvh_entry".into(),
                        us: 1000.0 + 50.0 * noise,
                    },
                    PhaseTime {
                        path: "pvh_entry;zero_bss".into(),
                        us: 900.0 + 50.0 * noise,
                    },
                    PhaseTime {
                        path: "memory_init".into(),
                        us: entry - 1100.0,
                    },
                ],
            });
            samples.push(Sample {
                warmup: round < 2,
                start_to_exit_us: 45_000.0 + 2000.0 * noise,
                ..bare_sample("null-kvm-blk-net", round)
            });
        }
        BenchRun {
            format: FORMAT_VERSION,
            started_unix: 1_763_832_605,
            wall_seconds: 12.5,
            command: "cargo xtask bench".into(),
            machine: HostMachine {
                hostname: "box".into(),
                cpu_model: "Some CPU @ 2.30GHz".into(),
                cores: 2,
                kernel: "6.1.0 #1 SMP".into(),
                qemu_version: "QEMU emulator version 7.2.22".into(),
            },
            runs: 20,
            warmups: 2,
            timeout_seconds: 30.0,
            configurations: configurations
                .into_iter()
                .map(|configuration| ConfigurationRecord {
                    configuration,
                    qemu_command: "qemu-system-x86_64 …".into(),
                })
                .collect(),
            samples,
            exact: Vec::new(),
        }
    }

    /// A served run: mote's first 200 at 40, 44 and 42 ms, its listening
    /// line at 30, 32 and 34 ms, the null twin's exit at 20, 21 and 22 ms.
    fn served_fixture() -> BenchRun {
        let mut matrix = config::test_matrix();
        matrix.served = true;
        let mut run = fixture(1.0, 1);
        let configurations =
            config::add_twins(config::expand_matrix(&matrix, &[Accel::Tcg]), None).unwrap();
        run.configurations = configurations
            .into_iter()
            .map(|configuration| ConfigurationRecord {
                configuration,
                qemu_command: "qemu-system-x86_64 …".into(),
            })
            .collect();
        run.samples = (0..3)
            .flat_map(|round| {
                let ms = |values: [f64; 3]| values[round] * 1000.0;
                [
                    Sample {
                        start_to_ready_line_us: Some(ms([25.0, 26.0, 27.0])),
                        start_to_listening_line_us: Some(ms([30.0, 32.0, 34.0])),
                        start_to_first_ok_us: Some(ms([40.0, 44.0, 42.0])),
                        start_to_exit_us: ms([90.0, 95.0, 99.0]),
                        ..bare_sample("mote-tcg-blk-net-served", round)
                    },
                    Sample {
                        start_to_exit_us: ms([20.0, 21.0, 22.0]),
                        ..bare_sample("null-tcg-blk-net-served", round)
                    },
                ]
            })
            .collect();
        run
    }

    #[test]
    fn cost_targets_print_measured_target_and_verdict() {
        use crate::measure::bench::exact::ExactCost;
        let mut run = fixture(1.0, 1);
        let text = cost_targets(&run);
        assert!(
            text.contains(
                "(c) served entry -> ready instructions, (d) its device exits: not measured"
            ),
            "{text}"
        );
        assert!(text.contains("(e) DSDT discovery: not measured"), "{text}");
        // No TCG configuration: neither (f) nor (g).
        assert!(!text.contains("(f)") && !text.contains("(g)"), "{text}");

        let accesses = [
            ("virtio-mmio", 52),
            ("ioapic", 6),
            ("apic-msi", 6),
            ("io", 2),
            ("serial", 19),
        ]
        .into_iter()
        .map(|(device, count)| (device.to_owned(), count))
        .collect();
        run.exact = vec![ExactCost {
            configuration: "mote-icount-blk-net-served".into(),
            instructions_to_ready: 44_561,
            accesses_to_ready: accesses,
        }];
        for record in &mut run.configurations {
            record.configuration.accel = Accel::Tcg;
        }
        let text = cost_targets(&run);
        assert!(
            text.contains(
                "(c) served entry -> ready, mote-icount-blk-net-served: 44561 instructions, \
                 target <= 40000: MISS"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "(d) served entry -> ready, mote-icount-blk-net-served: 66 device exits \
                 (apic-msi 6, io 2, ioapic 6, virtio-mmio 52, not counted: serial 19), target <= 70: PASS"
            ),
            "{text}"
        );
        assert!(
            text.contains("(f) calibration off the path to ready (TCG), mote-kvm-blk-net: no PIT calibration before ready in 19 boots: PASS"),
            "{text}"
        );
        assert!(
            text.contains("(g) start -> ready / null start -> exit (TCG), mote-kvm-blk-net: "),
            "{text}"
        );
        assert!(text.contains("target <= 1.05: MISS"), "{text}");

        run.exact[0].instructions_to_ready = 40_000;
        let calibrated = run
            .samples
            .iter_mut()
            .find(|s| s.counts() && s.configuration == "mote-kvm-blk-net")
            .unwrap();
        calibrated.phases.push(PhaseTime {
            path: "net_init;tsc_calibration".into(),
            us: 1300.0,
        });
        let text = cost_targets(&run);
        assert!(
            !text.contains("44561") && text.contains("40000 instructions, target <= 40000: PASS"),
            "{text}"
        );
        assert!(
            text.contains("a PIT calibration before ready in 1 of 19 boots (median 1300 us): MISS"),
            "{text}"
        );

        let mut acpi = icount_fixture(1031.0);
        for record in &mut acpi.configurations {
            record.configuration.acpi = true;
        }
        for sample in acpi.samples.iter_mut().filter(|s| !s.phases.is_empty()) {
            sample.phases.push(PhaseTime {
                path: "acpi_init;dsdt_walk".into(),
                us: 13.083,
            });
            sample.phases.push(PhaseTime {
                path: "devices_init;virtio_discovery".into(),
                us: 1.454,
            });
        }
        let text = cost_targets(&acpi);
        assert!(
            text.contains(
                "(e) DSDT discovery (dsdt_walk + virtio_discovery, ACPI on), mote-kvm-blk-net: 14537 instructions, \
                 target <= 5000 for 24 transports: MISS"
            ),
            "{text}"
        );
        // A DSDT of two transports is measured, not judged; one of 24 is.
        for (transports, said) in [
            (
                2,
                "mote-kvm-blk-net, 2 transports: 14537 instructions, target <= 5000 for 24 transports: not judged",
            ),
            (
                24,
                "mote-kvm-blk-net, 24 transports: 14537 instructions, target <= 5000 for 24 transports: MISS",
            ),
        ] {
            for sample in &mut acpi.samples {
                sample.acpi_transports = Some(transports);
            }
            let text = cost_targets(&acpi);
            assert!(text.contains(said), "{text}");
        }
    }

    #[test]
    fn served_boots_show_the_first_answer_over_the_floor() {
        let report = render_report(&served_fixture());
        let row = |label: &str| {
            report
                .lines()
                .find(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} row in\n{report}"))
                .to_owned()
        };
        let listening = row("host: start -> listening line");
        assert!(
            listening.contains("     30.00     32.00     33.60     34.00"),
            "{listening}"
        );
        assert!(row("host: start -> first GET /health 200").contains(" 42.00 "));
        assert!(
            report.contains("== served boots: first GET /health 200 over the VMM's floor"),
            "{report}"
        );
        let served = report
            .lines()
            .skip_while(|line| !line.starts_with("== served boots"))
            .find(|line| line.starts_with("mote-tcg-blk-net-served null-tcg-blk-net-served"))
            .unwrap_or_else(|| panic!("no served row in\n{report}"));
        assert!(
            served.ends_with("     32.00      42.00      21.00     2.00x"),
            "{served}"
        );
        // An unserved run has no served section and no served rows.
        let plain = render_report(&fixture(1.0, 1));
        assert!(!plain.contains("served boots") && !plain.contains("listening line"));
    }

    #[test]
    fn ratio_to_the_floor_needs_both_medians() {
        assert_eq!(ratio_to_floor(Some(50.0), Some(25.0)), Some(2.0));
        assert_eq!(ratio_to_floor(None, Some(25.0)), None);
        assert_eq!(ratio_to_floor(Some(1.0), None), None);
        assert_eq!(ratio_to_floor(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio_cell(Some(1.834)), "1.83x");
        assert_eq!(ratio_cell(None), "-");
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(
            utc_timestamp(1_763_832_605),
            (
                "2025-11-22 17:30:05 UTC".to_owned(),
                "20251122-173005".to_owned()
            )
        );
        assert_eq!(utc_timestamp(0).0, "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400).1, "20000229-000000");
    }

    #[test]
    fn report_states_figures_outliers_failures_floor_and_targets() {
        let report = render_report(&fixture(1.0, 1));
        for expected in [
            "== mote-kvm-blk-net: mote, kvm",
            "(19 counted, 1 failed)",
            "host: start -> ready line",
            "guest: entry -> ready",
            "  pvh_entry",
            "    zero_bss",
            "failed boot in round 13: timed out",
            "mote-kvm-blk-net host: start -> ready line: ",
            "== null-kvm-blk-net: null",
            "(a) entry -> ready, mote-kvm-blk-net: median ",
            "target <= 1000 us",
            ": MISS",
            "(b) start -> ready / null start -> exit, mote-kvm-blk-net",
        ] {
            assert!(report.contains(expected), "{expected:?} missing:\n{report}");
        }
        // The CPUs' figures: bring-up in microseconds, the rates in MiB/s.
        let row = |label: &str| {
            report
                .lines()
                .find(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} row:\n{report}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(row("guest: AP bring-up (cpus line)").contains(" us 20"));
        assert!(row("guest: exits entry -> ready").contains(" n 60 60 60 60 0 0 0"));
        assert!(row("guest: blk0 verify, CRC alone").contains(" MiB/s 96."));
        assert!(row("guest: blk0 verify ").contains(" MiB/s 7"));
        // The floor ratio is printed: (60 + 16.2) ms over ~46 ms.
        let floor_line = report
            .lines()
            .find(|line| line.starts_with("mote-kvm-blk-net ") && line.contains("null-kvm"))
            .unwrap();
        assert!(
            floor_line.trim_end().ends_with("x   mote: ready"),
            "{floor_line}"
        );
    }

    #[test]
    fn json_round_trip_gives_the_same_data_and_the_same_table() {
        let run = fixture(1.0, 3);
        let directory = std::env::temp_dir().join(format!("mote-bench-{}", std::process::id()));
        let path = directory.join("run.json");
        run.write_json(&path).unwrap();
        let read = BenchRun::read_json(&path).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
        assert_eq!(read, run);
        assert_eq!(render_report(&read), render_report(&run));
        assert_eq!(
            chart::render_svg(&read).unwrap(),
            chart::render_svg(&run).unwrap()
        );
    }

    #[test]
    fn chart_draws_text_without_font_files() {
        let svg = chart::render_svg(&fixture(1.0, 1)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("<text"));
        assert!(svg.contains("\nmote-kvm-blk-net\n</text>"));
        assert!(svg.contains("\nnull-kvm-blk-net\n</text>"));
        assert!(svg.contains("memory_init"));
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn comparison_tells_a_real_difference_from_noise() {
        let before = fixture(1.0, 1);
        let slower = fixture(1.5, 2);
        let table = render_comparison(&before, &slower, &[]).unwrap();
        let entry = table
            .lines()
            .find(|line| line.starts_with("guest: entry -> ready"))
            .unwrap();
        assert!(entry.contains("SLOWER (significant)"), "{table}");
        assert!(entry.contains(" 1.49"), "{entry}");
        // The null guest did not change: within the noise.
        let same = render_comparison(&before, &fixture(1.0, 1), &[]).unwrap();
        assert!(!same.contains("significant)"), "{same}");
        assert!(same.contains("p < 0.01"));
        let paired = render_comparison(
            &before,
            &slower,
            &[("mote-kvm-blk-net".into(), "mote-kvm-blk-net".into())],
        )
        .unwrap();
        assert!(!paired.contains("== null"));
        let error = render_comparison(&before, &slower, &[("x".into(), "y".into())]).unwrap_err();
        assert!(error.contains("no configuration"), "{error}");
    }

    /// `fixture` as icount runs it: the guest's figures the same every boot.
    fn icount_fixture(entry_us: f64) -> BenchRun {
        let mut run = fixture(1.0, 1);
        for record in &mut run.configurations {
            record.configuration.accel = Accel::Icount;
        }
        for sample in &mut run.samples {
            if sample.entry_to_ready_us.is_some() {
                sample.entry_to_ready_us = Some(entry_us);
                for phase in &mut sample.phases {
                    phase.us = if phase.path == "memory_init" {
                        entry_us - 1000.0
                    } else {
                        500.0
                    };
                }
            }
        }
        run
    }

    #[test]
    fn icount_guest_figures_are_compared_exactly() {
        let table =
            render_comparison(&icount_fixture(1031.0), &icount_fixture(1033.5), &[]).unwrap();
        let line = |start: &str| {
            table
                .lines()
                .find(|line| line.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in {table}"))
                .to_owned()
        };
        assert!(
            line("guest: entry -> ready").ends_with("+2500 instructions (exact)"),
            "{table}"
        );
        assert!(
            line("memory_init").ends_with("+2500 instructions (exact)"),
            "{table}"
        );
        assert!(line("zero_bss").ends_with("same (exact)"), "{table}");
        // Host figures are wall-clock time even under icount: still tested.
        assert!(
            !line("host: start -> ready line").contains("exact"),
            "{table}"
        );
        // A spread (not icount's) falls back to the test.
        let mut spread = icount_fixture(1031.0);
        spread.samples[4].entry_to_ready_us = Some(1040.0);
        let table = render_comparison(&spread, &icount_fixture(1031.0), &[]).unwrap();
        let entry = table
            .lines()
            .find(|line| line.starts_with("guest: entry -> ready"))
            .unwrap();
        assert!(!entry.contains("exact"), "{table}");
    }
}
