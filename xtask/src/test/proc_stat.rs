//! CPU time of a process from Linux's `/proc/<pid>/stat` (proc(5)).

use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::vm::process;

/// `sysconf(_SC_CLK_TCK)` on every Linux architecture that matters; used
/// only if `getconf CLK_TCK` cannot be run.
const FALLBACK_CLOCK_TICKS_PER_SECOND: u64 = 100;

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks: fields 14 and
/// 15 (1-based). Field 2, the command name, is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after its last `)`.
fn cpu_ticks_from_stat(line: &str) -> Result<u64> {
    let after_name = line
        .rfind(')')
        .map(|end| &line[end + 1..])
        .context("no `)` closing the command name")?;
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("field {number} missing"))?;
        text.parse()
            .with_context(|| format!("field {number} {text:?} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// The CPU time `pid` has used so far (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let line = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cpu_ticks_from_stat(&line).with_context(|| format!("parsing {path}"))
}

/// Clock ticks per second (`getconf CLK_TCK`), asked once per process.
pub(crate) fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let mut getconf = Command::new("getconf");
        getconf.arg("CLK_TCK");
        process::query(&mut getconf, Duration::from_secs(5))
            .ok()
            .and_then(|text| text.parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(FALLBACK_CLOCK_TICKS_PER_SECOND)
    })
}

/// CPU used over a wall-clock window, as a percentage of one core.
pub(crate) fn percent_of_one_core(
    ticks: u64,
    ticks_per_second: u64,
    wall: Duration,
) -> Result<f64> {
    if ticks_per_second == 0 || wall.is_zero() {
        bail!("no clock rate or no time elapsed");
    }
    Ok(ticks as f64 / ticks_per_second as f64 / wall.as_secs_f64() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        // From a real QEMU: utime 1234, stime 56.
        let line = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 20000 0 0 0 \
                    1234 56 0 0 20 0 5 0 123456 1000000 5000 18446744073709551615\n";
        assert_eq!(cpu_ticks_from_stat(line).unwrap(), 1290);
    }

    #[test]
    fn counts_fields_after_a_name_with_spaces_and_parentheses() {
        let line = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_ticks_from_stat(line).unwrap(), 30);
    }

    #[test]
    fn rejects_short_or_garbled_lines() {
        assert!(cpu_ticks_from_stat("7 no parenthesis").is_err());
        assert!(cpu_ticks_from_stat("7 (x) S 1 2").is_err());
        assert!(cpu_ticks_from_stat("7 (x) S 1 7 7 0 -1 0 0 0 0 0 ten 20").is_err());
    }

    #[test]
    fn reads_this_process() {
        let ticks = cpu_ticks(std::process::id()).unwrap();
        // The test binary has run for a while; whatever it used, it parsed.
        assert!(ticks < u64::MAX);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn converts_to_percent_of_a_core() {
        let percent = percent_of_one_core(5, 100, Duration::from_secs(5)).unwrap();
        assert!((percent - 1.0).abs() < 1e-9);
        assert!(percent_of_one_core(5, 100, Duration::ZERO).is_err());
    }
}
