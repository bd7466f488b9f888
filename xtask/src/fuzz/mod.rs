//! `cargo xtask fuzz`: runs the fuzz targets of `xtask/fuzz` under AFL++
//! (through cargo-afl, on the pinned stable toolchain) for a bounded time
//! each, prints one line per target, and keeps every crash it finds under
//! `xtask/fuzz/crashes/<target>/`, where `cargo test` replays it.
//! docs/fuzzing.md says how the pieces fit.

mod engine;
mod stats;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::env::workspace;

/// `cargo xtask fuzz`'s command line.
#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// The target to fuzz (see --list).
    #[arg(required_unless_present_any = ["all", "list"], conflicts_with = "all")]
    target: Option<String>,
    /// Fuzz every target, one after the other.
    #[arg(long)]
    all: bool,
    /// List the targets and the parser each one calls.
    #[arg(long)]
    list: bool,
    /// Fuzzing time per target, in seconds (AFL++ `-V`).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// `cargo xtask fuzz`: `Ok(false)` when a target crashed.
pub(crate) fn fuzz(arguments: &FuzzArgs) -> Result<bool> {
    if arguments.list {
        for target in mote_fuzz::TARGETS {
            println!("{:<20} {}", target.name, target.parser);
        }
        return Ok(true);
    }
    let targets: Vec<&mote_fuzz::Target> = match &arguments.target {
        Some(name) => vec![mote_fuzz::target(name).with_context(|| {
            format!("no fuzz target {name:?} (cargo xtask fuzz --list names them)")
        })?],
        None => mote_fuzz::TARGETS.iter().collect(),
    };
    if arguments.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    engine::ensure_cargo_afl()?;
    let fuzzer = engine::build_fuzzer()?;
    let mut summaries = Vec::new();
    for target in targets {
        let summary = fuzz_one(&fuzzer, target.name, Duration::from_secs(arguments.seconds))?;
        println!("{summary}");
        summaries.push(summary);
    }
    let crashed: Vec<&stats::Summary> = summaries.iter().filter(|s| s.crashes > 0).collect();
    if summaries.len() > 1 {
        let execs: u64 = summaries.iter().map(|s| s.execs).sum();
        println!(
            "fuzz: {} targets, {execs} executions, {} crashed",
            summaries.len(),
            crashed.len()
        );
    }
    Ok(crashed.is_empty())
}

/// Fuzzes `target` for `duration`; its crashes go to the crashes folder.
fn fuzz_one(fuzzer: &Path, target: &str, duration: Duration) -> Result<stats::Summary> {
    let work = workspace::target_dir()
        .join("fuzz")
        .join("work")
        .join(target);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let inputs = work.join("in");
    fs::create_dir_all(&inputs)?;
    // The seeds and every crash ever found: a fixed crash is a good seed.
    let mut seeds = 0;
    for dir in [
        mote_fuzz::corpus_dir(target),
        mote_fuzz::crashes_dir(target),
    ] {
        for file in files_in(&dir)? {
            let name = file.file_name().context("a file has a name")?;
            fs::copy(&file, inputs.join(name))?;
            seeds += 1;
        }
    }
    if seeds == 0 {
        bail!(
            "target {target} has no seeds in {}",
            mote_fuzz::corpus_dir(target).display()
        );
    }
    let findings = work.join("out");
    engine::run_fuzzer(fuzzer, target, &inputs, &findings, duration)?;
    let instance = findings.join("default");
    let text = fs::read_to_string(instance.join("fuzzer_stats"))
        .with_context(|| format!("AFL++ wrote no fuzzer_stats in {}", instance.display()))?;
    let mut summary = stats::Summary::parse(target, &text)?;
    summary.kept = keep_crashes(target, &instance.join("crashes"))?;
    Ok(summary)
}

/// The inputs in `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    mote_fuzz::input_files(dir).with_context(|| format!("reading {}", dir.display()))
}

/// Most crash inputs kept per run: AFL++ saves one per new path, often
/// dozens for one bug; the smallest few reproduce it.
const MAX_KEPT_CRASHES: usize = 5;

/// Copies the smallest of AFL++'s crash inputs into the target's crashes
/// folder, named by their content (AFL++'s names hold `:` and `,`), and
/// returns the paths.
fn keep_crashes(target: &str, crashes: &Path) -> Result<Vec<PathBuf>> {
    // AFL++ names crash inputs `id:…` and leaves a README.txt beside them.
    let mut inputs: Vec<(u64, PathBuf)> = Vec::new();
    for file in files_in(crashes)? {
        let is_input = file
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("id:"));
        if is_input {
            inputs.push((fs::metadata(&file)?.len(), file));
        }
    }
    inputs.sort();
    if inputs.len() > MAX_KEPT_CRASHES {
        println!(
            "fuzz: {target}: keeping the {MAX_KEPT_CRASHES} smallest of {} crash inputs; all are in {}",
            inputs.len(),
            workspace::relative_to_root(crashes).display()
        );
    }
    let mut kept = Vec::new();
    for (_, file) in inputs.iter().take(MAX_KEPT_CRASHES) {
        let data = fs::read(file)?;
        let dir = mote_fuzz::crashes_dir(target);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("crash-{:016x}", fnv1a(&data)));
        fs::write(&path, &data)?;
        kept.push(workspace::relative_to_root(&path));
    }
    Ok(kept)
}

/// The 64-bit FNV-1a hash (a stable name for a crash input).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_names_are_stable_content_hashes() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn every_target_has_seeds() {
        for target in mote_fuzz::TARGETS {
            let seeds = files_in(&mote_fuzz::corpus_dir(target.name)).unwrap();
            assert!(!seeds.is_empty(), "{}", target.name);
        }
    }
}
