//! Instruction and exit budgets per boot phase, from `xtask/budgets.txt`,
//! and the check that a boot under icount keeps to them. Under icount a
//! boot's figures are exact, so a budget is the measured value plus a
//! stated headroom of at most 10 %, and a change that costs more fails
//! with the phase and both numbers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::env::workspace;
use crate::guest_output::tslog::{self, Trace};
use crate::measure::trace::exits::{self, DeviceExits};

/// The table, as committed.
pub(crate) const TABLE: &str = include_str!("../../budgets.txt");
/// Where the table lives, for messages.
const TABLE_PATH: &str = "xtask/budgets.txt";
/// The largest headroom a row may state.
const MAX_HEADROOM_PERCENT: u64 = 10;
/// The phase name of the whole boot.
pub(crate) const WHOLE_BOOT: &str = "entry->ready";

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) case: String,
    pub(crate) phase: String,
    pub(crate) instructions: u64,
    pub(crate) instruction_headroom_percent: u64,
    pub(crate) exits: u64,
    pub(crate) exit_headroom_percent: u64,
}

impl Budget {
    fn allowed(measured: u64, percent: u64) -> u64 {
        measured + measured * percent / 100
    }

    pub(crate) fn instructions_allowed(&self) -> u64 {
        Self::allowed(self.instructions, self.instruction_headroom_percent)
    }

    pub(crate) fn exits_allowed(&self) -> u64 {
        Self::allowed(self.exits, self.exit_headroom_percent)
    }
}

fn percent(word: &str) -> Result<u64> {
    let value: u64 = word
        .strip_suffix('%')
        .with_context(|| format!("headroom {word:?} is not `<n>%`"))?
        .parse()
        .with_context(|| format!("headroom {word:?}"))?;
    if value > MAX_HEADROOM_PERCENT {
        bail!("headroom {value} % is above {MAX_HEADROOM_PERCENT} %");
    }
    Ok(value)
}

/// Reads the table: `#` comments, then `case phase instructions headroom%
/// exits headroom%` rows.
pub(crate) fn parse(text: &str) -> Result<Vec<Budget>> {
    let mut budgets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let row = || -> Result<Budget> {
            let [
                case,
                phase,
                instructions,
                instruction_headroom,
                exits,
                exit_headroom,
            ] = words[..]
            else {
                bail!("expected `case phase instructions headroom% exits headroom%`");
            };
            Ok(Budget {
                case: case.to_owned(),
                phase: phase.to_owned(),
                instructions: instructions.parse().context("instructions")?,
                instruction_headroom_percent: percent(instruction_headroom)?,
                exits: exits.parse().context("exits")?,
                exit_headroom_percent: percent(exit_headroom)?,
            })
        };
        budgets.push(row().with_context(|| format!("{TABLE_PATH} line {}", number + 1))?);
    }
    Ok(budgets)
}

/// What one phase of a boot cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) instructions: u64,
    pub(crate) exits: u64,
}

/// `phase`'s cost in a traced boot: its cycles (instructions under
/// icount) and its counted plus device exits.
pub(crate) fn cost(trace: &Trace, devices: &DeviceExits, phase: &str) -> Option<Cost> {
    if phase == WHOLE_BOOT {
        let counted = trace.exits?.total();
        return Some(Cost {
            instructions: trace.total(),
            exits: counted + devices.total.values().sum::<u64>(),
        });
    }
    let (index, span) = trace
        .spans
        .iter()
        .enumerate()
        .find(|(_, span)| span.name == phase && span.end <= trace.end)?;
    let counted = span.exits?.total();
    let device: u64 = devices.spans.get(index)?.as_ref()?.values().sum();
    Some(Cost {
        instructions: span.end - span.start,
        exits: counted + device,
    })
}

/// Every way `case`'s boot breaks its rows of `budgets`, one message each.
pub(crate) fn violations(
    budgets: &[Budget],
    case: &str,
    trace: &Trace,
    devices: &DeviceExits,
) -> Vec<String> {
    let mut failures = Vec::new();
    for budget in budgets.iter().filter(|budget| budget.case == case) {
        let Some(cost) = cost(trace, devices, &budget.phase) else {
            failures.push(format!(
                "phase {} (in {TABLE_PATH}) is not in the trace, or has no counts",
                budget.phase
            ));
            continue;
        };
        if cost.instructions > budget.instructions_allowed() {
            failures.push(format!(
                "phase {}: {} instructions, over its budget of {} (measured {} + {} % in {TABLE_PATH})",
                budget.phase,
                cost.instructions,
                budget.instructions_allowed(),
                budget.instructions,
                budget.instruction_headroom_percent
            ));
        }
        if cost.exits > budget.exits_allowed() {
            failures.push(format!(
                "phase {}: {} exits, over its budget of {} (measured {} + {} % in {TABLE_PATH})",
                budget.phase,
                cost.exits,
                budget.exits_allowed(),
                budget.exits,
                budget.exit_headroom_percent
            ));
        }
    }
    failures
}

/// Where a budget case has QEMU write its memory-region trace.
pub(crate) fn trace_path(case: &str) -> PathBuf {
    workspace::target_dir()
        .join("test")
        .join(format!("{case}.trace"))
}

/// Where a budget case keeps the guest's tslog dump, for
/// `cargo xtask trace --from`.
pub(crate) fn dump_path(case: &str) -> PathBuf {
    trace_path(case).with_extension("tslog")
}

/// The QEMU arguments that make a budget case's trace.
pub(crate) fn trace_arguments(case: &str) -> Vec<String> {
    vec![
        "-trace".to_owned(),
        "memory_region_ops_*".to_owned(),
        "-D".to_owned(),
        trace_path(case).display().to_string(),
    ]
}

/// The check of case `case`: its dump (in `output`) and its QEMU trace
/// against its rows of the table.
pub(crate) fn check(case: &str, output: &[String]) -> Result<(), String> {
    check_with_figures(case, output).map(drop)
}

/// [`check`], and on success this boot's figure for each of the case's
/// rows (`phase N instructions M exits, …`), for the case's note.
pub(crate) fn check_with_figures(case: &str, output: &[String]) -> Result<String, String> {
    let budgets = parse(TABLE).map_err(|error| format!("{error:#}"))?;
    if !budgets.iter().any(|budget| budget.case == case) {
        return Err(format!("{TABLE_PATH} has no row for {case}"));
    }
    let text = output.join("\n");
    let dump = tslog::parse_dump(&text).map_err(|error| format!("{error:#}"))?;
    let trace = Trace::build(&dump.records);
    let path = trace_path(case);
    let qemu_trace = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    let devices = exits::attribute(&dump.records, &exits::parse_trace(&qemu_trace))
        .map_err(|error| format!("{error:#}"))?;
    let failures = violations(&budgets, case, &trace, &devices);
    // Every row's figure of this boot, to update the table with when the
    // cost is meant (or lower it when a change spends less).
    let now: Vec<String> = budgets
        .iter()
        .filter(|budget| budget.case == case)
        .filter_map(|budget| {
            let cost = cost(&trace, &devices, &budget.phase)?;
            Some(format!(
                "{} {} instructions {} exits",
                budget.phase, cost.instructions, cost.exits
            ))
        })
        .collect();
    if failures.is_empty() {
        return Ok(now.join(", "));
    }
    Err(format!(
        "{}; this boot: {}",
        failures.join("; "),
        now.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_output::tslog::{framed_dump, parse_dump};
    use crate::measure::trace::exits::{Access, attribute};

    #[test]
    fn the_committed_table_parses_and_keeps_to_the_limit() {
        let budgets = parse(TABLE).unwrap();
        assert!(budgets.iter().any(|b| b.phase == WHOLE_BOOT));
        assert!(budgets.iter().all(|b| b.instruction_headroom_percent <= 10));
    }

    #[test]
    fn malformed_rows_say_where() {
        let error = parse("# c\nbudget-x a 10 5% 3\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        let over = parse("budget-x a 10 11% 3 0%\n").unwrap_err();
        assert!(format!("{over:#}").contains("above 10 %"), "{over:#}");
    }

    fn boot(a_tsc_end: u64, a_device_reads: usize) -> (Trace, DeviceExits) {
        let text = framed_dump(&format!(
            "0x1000 0 ENTER a exits=0,0,0,0,0,0,1\n\
             0x1000 {a_tsc_end} EXIT a exits=1,0,0,0,0,0,2\n\
             0x1000 {a_tsc_end} EVENT ready exits=1,0,0,0,0,0,3\n"
        ));
        let dump = parse_dump(&text).unwrap();
        let mut accesses = vec![Access::Marker(0)];
        accesses.extend((0..a_device_reads).map(|_| Access::Device("virtio-mmio".into())));
        accesses.extend([Access::Marker(1), Access::Marker(2)]);
        let devices = attribute(&dump.records, &accesses).unwrap();
        (Trace::build(&dump.records), devices)
    }

    #[test]
    fn over_budget_names_the_phase_and_both_numbers() {
        let budgets =
            parse("budget-x a 1000 5% 4 0%\nbudget-x entry->ready 1000 5% 5 0%\n").unwrap();
        let (trace, devices) = boot(1000, 2);
        assert_eq!(
            cost(&trace, &devices, "a"),
            Some(Cost {
                instructions: 1000,
                exits: 4
            })
        );
        assert!(violations(&budgets, "budget-x", &trace, &devices).is_empty());
        let (trace, devices) = boot(1051, 3);
        let failures = violations(&budgets, "budget-x", &trace, &devices);
        assert!(
            failures.contains(&"phase a: 1051 instructions, over its budget of 1050 (measured 1000 + 5 % in xtask/budgets.txt)".to_owned()),
            "{failures:?}"
        );
        assert!(
            failures.contains(
                &"phase a: 5 exits, over its budget of 4 (measured 4 + 0 % in xtask/budgets.txt)"
                    .to_owned()
            ),
            "{failures:?}"
        );
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with("phase entry->ready: 6 exits")),
            "{failures:?}"
        );
        let missing = violations(
            &parse("budget-x nowhere 1 0% 1 0%\n").unwrap(),
            "budget-x",
            &trace,
            &devices,
        );
        assert!(missing[0].contains("nowhere"), "{missing:?}");
    }
}
