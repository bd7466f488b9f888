//! Replays every seed and every input that ever broke a target through
//! that target, deterministically, so `cargo test` catches a regression
//! without running the fuzzer.

use std::fs;
use std::panic;
use std::path::Path;

/// The inputs in `dir`.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    mote_fuzz::input_files(dir).unwrap()
}

/// Runs `target` on each of `files`; the failures, with the panic message.
fn replay(target: &mote_fuzz::Target, files: &[std::path::PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = fs::read(file).unwrap();
        if let Err(payload) = panic::catch_unwind(|| (target.run)(&data)) {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{} {}: {message}", target.name, file.display()));
        }
    }
    failures
}

#[test]
fn every_target_has_a_seed_corpus_that_passes() {
    let mut failures = Vec::new();
    for target in mote_fuzz::TARGETS {
        let seeds = inputs(&mote_fuzz::corpus_dir(target.name));
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
        failures.extend(replay(target, &seeds));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    let mut failures = Vec::new();
    for target in mote_fuzz::TARGETS {
        failures.extend(replay(
            target,
            &inputs(&mote_fuzz::crashes_dir(target.name)),
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn crash_directories_name_only_targets() {
    let Ok(entries) = fs::read_dir(mote_fuzz::crate_dir().join("crashes")) else {
        return;
    };
    for entry in entries.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            mote_fuzz::target(&name).is_some(),
            "crashes/{name} is no target"
        );
    }
}
