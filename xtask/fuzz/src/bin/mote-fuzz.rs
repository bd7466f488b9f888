//! The AFL++ fuzzer binary: `mote-fuzz <target>` runs that target in
//! AFL++'s persistent mode. Built and run by `cargo xtask fuzz`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = mote_fuzz::target(&name) else {
        let names: Vec<&str> = mote_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: mote-fuzz <target>; targets: {}", names.join(", "));
        return ExitCode::FAILURE;
    };
    afl::fuzz(true, |data: &[u8]| (target.run)(data));
    ExitCode::SUCCESS
}
