//! `cargo xtask trace`: boot with the boot tracer's dump on (or read a dump
//! captured elsewhere), print the per-phase table, write folded stacks and a
//! flamechart SVG under `target/`.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mote_boot::protocol::report::{self, Fact};

use super::cpu_instructions;
use super::exits;
use super::flamechart::{flamechart_svg, folded_stacks};
use super::phase_table::{Columns, phase_table};
use crate::env::workspace;
use crate::guest_output::tslog::{self, Trace};
use crate::vm::accel::Accel;
use crate::vm::args::BootArgs;
use crate::vm::cmdline;
use crate::vm::run;
use crate::vm::vmm::VmmKind;

/// `cargo xtask trace`'s command line.
#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    boot: BootArgs,
    /// Analyse a dump captured elsewhere (a saved log, another VMM) instead of booting.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// TSC frequency, for a dump without mote's `tslog begin` line.
    #[arg(long, value_name = "HZ")]
    tsc_hz: Option<u64>,
    /// Also count device accesses per phase (QEMU only): boots with
    /// `mote.tslog=markers` and QEMU's memory-region trace.
    #[arg(long, conflicts_with = "from")]
    exits: bool,
    /// Then boot once more without the dump and count each vCPU's
    /// instructions to the ready line from QEMU's own instruction log
    /// (QEMU under `--accel icount` only; add `-- -smp N` for more CPUs).
    #[arg(long, conflicts_with = "from")]
    cpu_instructions: bool,
}

pub(crate) fn trace(options: &TraceArgs) -> Result<bool> {
    // Under icount the TSC counts instructions; a saved dump does not say.
    let (text, source, icount) = match &options.from {
        Some(path) => (
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
            false,
        ),
        None => boot_with_dump(&options.boot, options.exits)?,
    };
    let dump = tslog::parse_dump(&text)?;
    let Some(tsc_hz) = dump.tsc_hz.or(options.tsc_hz) else {
        bail!("the dump does not give the TSC frequency: pass --tsc-hz");
    };
    if !dump.complete {
        eprintln!("xtask: warning: the dump has no end line; the capture was cut short");
    }
    if dump.dropped > 0 {
        eprintln!(
            "xtask: warning: the kernel dropped {} records (buffer full)",
            dump.dropped
        );
    }
    if let Some(announced) = dump.announced.filter(|&n| n != dump.records.len()) {
        eprintln!(
            "xtask: warning: {announced} records announced, {} read",
            dump.records.len()
        );
    }
    for line in &dump.garbage {
        eprintln!("xtask: skipped a line that is not a record: {line:?}");
    }

    let trace = Trace::build(&dump.records);
    for problem in &trace.problems {
        eprintln!("xtask: warning: {problem}");
    }
    let devices = if options.exits {
        let path = exits_trace_path();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading QEMU's trace {}", path.display()))?;
        let accesses = exits::parse_trace(&text);
        Some(exits::attribute(&dump.records, &accesses)?)
    } else {
        None
    };
    println!("\nboot trace from {source} (TSC {tsc_hz} Hz):\n");
    print!(
        "{}",
        phase_table(
            &trace,
            tsc_hz,
            Columns {
                instructions: icount,
                devices: devices.as_ref(),
            }
        )
    );

    let out = workspace::target_dir();
    fs::create_dir_all(&out)?;
    let folded = folded_stacks(&trace);
    let folded_path = out.join("tslog.folded");
    fs::write(&folded_path, folded.join("\n") + "\n")?;
    let title = format!(
        "mote boot: entry to ready, {:.1} us",
        trace.total() as f64 * 1e6 / tsc_hz as f64
    );
    let svg_path = out.join("tslog.svg");
    fs::write(&svg_path, flamechart_svg(&folded, &title)?)?;
    let dump_path = out.join("tslog.txt");
    if options.from.is_none() {
        fs::write(&dump_path, &text)?;
        println!(
            "\nraw output: {}",
            workspace::relative_to_root(&dump_path).display()
        );
    }
    println!(
        "folded stacks: {}\nflamechart: {}",
        workspace::relative_to_root(&folded_path).display(),
        workspace::relative_to_root(&svg_path).display()
    );
    if options.cpu_instructions {
        count_cpu_instructions(&options.boot)?;
    }
    Ok(true)
}

/// Where `--cpu-instructions` has QEMU write its instruction log.
/// `--cpu-instructions`: the same boot without the dump, under QEMU's
/// instruction log, and each vCPU's count to the ready line.
fn count_cpu_instructions(boot: &BootArgs) -> Result<()> {
    let setup = run::Setup::prepare(boot)?;
    if setup.vmm.kind != VmmKind::Qemu || setup.accel != Accel::Icount {
        bail!(
            "--cpu-instructions reads QEMU's instruction log: it needs --vmm qemu --accel icount"
        );
    }
    let cmdline = cmdline::with_append(cmdline::READY_CMDLINE, boot.append.as_deref());
    let qemu = setup.command(&cmdline, &[], &boot.qemu_args);
    let counts =
        cpu_instructions::count_boot(qemu, &setup.vmm, &setup.files.kernel, boot.timeout())?;
    println!(
        "\ninstructions per vCPU to the ready line (QEMU's log of each, {}):\n",
        setup.vmm.label()
    );
    print!("{}", cpu_instructions::table(&counts));
    Ok(())
}

/// Where `--exits` has QEMU write its memory-region trace.
fn exits_trace_path() -> PathBuf {
    workspace::target_dir().join("tslog-exits.trace")
}

/// Boots like `cargo xtask run`, with `mote.tslog=1`, and returns the output.
fn boot_with_dump(boot: &BootArgs, exits: bool) -> Result<(String, String, bool)> {
    let setup = run::Setup::prepare(boot)?;
    let base = if exits {
        cmdline::traced_cmdline_with_markers()
    } else {
        cmdline::traced_cmdline()
    };
    let cmdline = cmdline::with_append(&base, boot.append.as_deref());
    let accel = setup.accel;
    let mut qemu_args = boot.qemu_args.clone();
    if exits {
        if setup.vmm.kind != VmmKind::Qemu {
            bail!("--exits reads QEMU's memory-region trace: it needs --vmm qemu");
        }
        let path = exits_trace_path();
        fs::create_dir_all(workspace::target_dir())?;
        // A stale trace must never be read for this boot.
        let _ = fs::remove_file(&path);
        qemu_args.extend([
            "-trace".to_owned(),
            "memory_region_ops_*".to_owned(),
            "-D".to_owned(),
            path.display().to_string(),
        ]);
    }
    let booted = setup.boot(&cmdline, &[], &qemu_args, boot.timeout(), false)?;
    let finished = booted.finished;
    // The report without the dump's frame lines (the table below shows the dump).
    for line in finished.stdout.iter().filter(|line| {
        report::body(line).is_some()
            && !matches!(
                Fact::parse_line(line),
                Some(Ok(Fact::TslogBegin(_) | Fact::TslogEnd(_)))
            )
    }) {
        println!("{line}");
    }
    let power_off = booted.ending;
    if !power_off.is_success() {
        for line in finished.tail(30) {
            eprintln!("  | {line}");
        }
        bail!("the traced boot failed: {power_off}");
    }
    Ok((
        finished.stdout.join("\n"),
        format!("{} {accel} boot", setup.vmm.label()),
        accel == Accel::Icount,
    ))
}
