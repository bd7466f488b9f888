//! `cargo xtask bench`: measure (build, boot every configuration, write
//! JSON and SVG, print the report), `--render` a saved run, or `--compare`
//! two runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::chart;
use super::configuration::{
    self, AccelRequest, BenchAccel, Configuration, Guest, Matrix, Switch, VirtioMode,
};
use super::host::Machine;
use super::results::{BenchRun, ConfigurationRecord, FORMAT_VERSION};
use super::runner::{self, Images};
use super::table;
use crate::env::build;
use crate::env::deps;
use crate::env::images::{self, RUN_DISK_SIZE};
use crate::env::null_guest;
use crate::env::workspace;
use crate::vm::accel::{self, Accel, AccelChoice};
use crate::vm::qemu;

/// `cargo xtask bench`'s command line.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Counted boots per configuration.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,
    /// Uncounted warm-up rounds before them.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub warmup: usize,
    /// Kill a boot (and count it as failed) after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Accelerators (auto: KVM if a probe boot works, and TCG).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub accel: Vec<AccelRequest>,
    /// +invtsc in the CPU model.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub invtsc: Vec<Switch>,
    /// ACPI tables (microvm acpi=on/off).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off")]
    pub acpi: Vec<Switch>,
    /// virtio-mmio legacy (version 1) or modern (force-legacy=false).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "legacy")]
    pub virtio: Vec<VirtioMode>,
    /// A virtio-blk disk (target/disk.img).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub blk: Vec<Switch>,
    /// A virtio-net card (user-mode network).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub net: Vec<Switch>,
    /// Guest memory sizes, QEMU -m syntax.
    #[arg(
        long,
        value_name = "SIZE",
        value_delimiter = ',',
        default_value = "256M"
    )]
    pub memory: Vec<String>,
    /// Words added to mote's command line `console=ttyS0 mote.exit=ready mote.tslog=1`.
    #[arg(long)]
    pub append: Option<String>,
    /// A QEMU argument for every configuration (repeat it; or put them after `--`).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_arg: Vec<String>,
    /// Named configurations from a file instead of the matrix flags (format below).
    #[arg(long, value_name = "FILE")]
    pub configs: Option<PathBuf>,
    /// Another PVH kernel to boot side by side (first serial byte, QEMU exit).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The initrd for --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Words after `console=ttyS0` on --kernel's command line.
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    pub kernel_append: Option<String>,
    /// Boot this prebuilt mote image instead of building target/kernel.
    #[arg(long, value_name = "PATH")]
    pub mote_kernel: Option<PathBuf>,
    /// Where to write the JSON (the SVG goes beside it).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the before/after table of two saved runs (B/A medians, Mann-Whitney U, p < 0.01).
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with = "render")]
    pub compare: Option<Vec<PathBuf>>,
    /// With --compare: pair configuration A_NAME of A with B_NAME of B (repeatable).
    #[arg(long, value_name = "A_NAME=B_NAME", requires = "compare")]
    pub pair: Vec<String>,
    /// Re-render the table and the SVG (beside the file) from a saved run.
    #[arg(long, value_name = "FILE.json")]
    pub render: Option<PathBuf>,
    /// Extra QEMU arguments for every configuration, after `--`.
    #[arg(last = true)]
    pub qemu_args: Vec<String>,
}

impl BenchArgs {
    pub fn into_options(self) -> BenchOptions {
        BenchOptions {
            runs: self.runs,
            warmup: self.warmup,
            timeout: Duration::from_secs(self.timeout),
            matrix: MatrixOptions {
                accel: self.accel,
                invtsc: self.invtsc,
                acpi: self.acpi,
                virtio: self.virtio,
                blk: self.blk,
                net: self.net,
                memory: self.memory,
                append: self.append,
                qemu_args: self.qemu_arg.into_iter().chain(self.qemu_args).collect(),
            },
            configs: self.configs,
            kernel: self.kernel,
            initrd: self.initrd,
            kernel_append: self.kernel_append,
            mote_kernel: self.mote_kernel,
            out: self.out,
            compare: self
                .compare
                .map(|paths| (paths[0].clone(), paths[1].clone())),
            pairs: self.pair,
            render: self.render,
            command: std::iter::once("cargo xtask".to_owned())
                .chain(std::env::args().skip(1).map(|arg| qemu::shell_quote(&arg)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The flag matrix as given on the command line.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub accel: Vec<AccelRequest>,
    pub invtsc: Vec<Switch>,
    pub acpi: Vec<Switch>,
    pub virtio: Vec<VirtioMode>,
    pub blk: Vec<Switch>,
    pub net: Vec<Switch>,
    pub memory: Vec<String>,
    pub append: Option<String>,
    pub qemu_args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    pub warmup: usize,
    pub timeout: Duration,
    pub matrix: MatrixOptions,
    pub configs: Option<PathBuf>,
    /// Another PVH kernel to boot side by side.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub kernel_append: Option<String>,
    /// A prebuilt mote image instead of a fresh build.
    pub mote_kernel: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub compare: Option<(PathBuf, PathBuf)>,
    pub pairs: Vec<String>,
    pub render: Option<PathBuf>,
    /// How bench was invoked, recorded in the JSON.
    pub command: String,
}

pub fn bench(options: BenchOptions) -> Result<bool> {
    if let Some((before, after)) = &options.compare {
        return compare(before, after, &options.pairs);
    }
    if let Some(path) = &options.render {
        let run = BenchRun::read_json(path)?;
        print!("{}", table::render_report(&run));
        let svg = path.with_extension("svg");
        std::fs::write(&svg, chart::render_svg(&run)?)
            .with_context(|| format!("writing {}", svg.display()))?;
        println!("\nchart: {}", workspace::relative_to_root(&svg).display());
        return Ok(true);
    }
    measure(&options)
}

fn compare(before: &Path, after: &Path, pairs: &[String]) -> Result<bool> {
    let before = BenchRun::read_json(before)?;
    let after = BenchRun::read_json(after)?;
    let pairs = pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
            None => bail!("--pair takes A_NAME=B_NAME, got {pair:?}"),
        })
        .collect::<Result<Vec<_>>>()?;
    match table::render_comparison(&before, &after, &pairs) {
        Ok(text) => {
            print!("{text}");
            Ok(true)
        }
        Err(reason) => bail!(reason),
    }
}

/// KVM and TCG when KVM works here (a probe boot of `kernel`), else TCG.
fn working_accels(kernel: &Path) -> Vec<BenchAccel> {
    match accel::resolve(AccelChoice::Auto, kernel) {
        Accel::Kvm => vec![BenchAccel::Kvm, BenchAccel::Tcg],
        Accel::Tcg => vec![BenchAccel::Tcg],
    }
}

fn configurations(options: &BenchOptions, mote: &Path) -> Result<Vec<Configuration>> {
    let base = match &options.configs {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parsed = configuration::parse_config_file(&text)
                .with_context(|| format!("in {}", path.display()))?;
            parsed
                .into_iter()
                .map(|entry| {
                    let mut configuration = entry.configuration;
                    if entry.accel_auto {
                        configuration.accel = working_accels(mote)[0];
                    }
                    configuration
                })
                .collect()
        }
        None => {
            let matrix = &options.matrix;
            let mut accels = Vec::new();
            for request in &matrix.accel {
                match request {
                    AccelRequest::Auto => accels.extend(working_accels(mote)),
                    AccelRequest::Kvm => accels.push(BenchAccel::Kvm),
                    AccelRequest::Tcg => accels.push(BenchAccel::Tcg),
                }
            }
            configuration::expand_matrix(&Matrix {
                accels,
                invtsc: matrix.invtsc.clone(),
                acpi: matrix.acpi.clone(),
                virtio: matrix.virtio.clone(),
                blk: matrix.blk.clone(),
                net: matrix.net.clone(),
                memory: matrix.memory.clone(),
                kernel_args: matrix.append.clone().unwrap_or_default(),
                qemu_args: matrix.qemu_args.clone(),
            })
        }
    };
    let external = options.kernel.clone().map(|kernel| {
        (
            kernel,
            options.initrd.clone(),
            options.kernel_append.clone().unwrap_or_default(),
        )
    });
    if external.is_none() && options.initrd.is_some() {
        bail!("--initrd goes with --kernel");
    }
    configuration::add_twins(base, external)
}

fn measure(options: &BenchOptions) -> Result<bool> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    deps::ensure_all()?;
    let mote = build::prebuilt_or_release(options.mote_kernel.as_deref())?;
    let null = null_guest::build()?;
    let disk = workspace::target_dir().join("disk.img");
    images::ensure_disk_image(&disk, RUN_DISK_SIZE)?;
    let configurations = configurations(options, &mote)?;
    for configuration in &configurations {
        if let Guest::External { kernel, initrd } = &configuration.guest {
            for path in std::iter::once(kernel).chain(initrd) {
                if !path.is_file() {
                    bail!("{}: no file at {}", configuration.name, path.display());
                }
            }
        }
    }
    let images = Images { mote, null, disk };
    let commands: Vec<_> = configurations
        .iter()
        .map(|configuration| runner::qemu_command(configuration, &images))
        .collect();
    println!(
        "bench: {} configurations x ({} runs + {} warm-ups), interleaved; each boot killed after {} s",
        configurations.len(),
        options.runs,
        options.warmup,
        options.timeout.as_secs_f64()
    );
    for (configuration, command) in configurations.iter().zip(&commands) {
        println!("  {}: {}", configuration.name, command.command_line());
    }

    let machine = Machine::current();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let started = Instant::now();
    let samples = runner::run_rounds(
        &configurations,
        &commands,
        options.runs,
        options.warmup,
        options.timeout,
    )?;
    let run = BenchRun {
        format: FORMAT_VERSION,
        started_unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        command: options.command.clone(),
        machine,
        runs: options.runs,
        warmups: options.warmup,
        timeout_seconds: options.timeout.as_secs_f64(),
        configurations: configurations
            .into_iter()
            .zip(&commands)
            .map(|(configuration, command)| ConfigurationRecord {
                configuration,
                qemu_command: command.command_line(),
            })
            .collect(),
        samples,
    };

    let json = options.out.clone().unwrap_or_else(|| {
        workspace::target_dir().join("bench").join(format!(
            "bench-{}.json",
            table::utc_timestamp(started_unix).1
        ))
    });
    run.write_json(&json)?;
    let svg = json.with_extension("svg");
    std::fs::write(&svg, chart::render_svg(&run)?)
        .with_context(|| format!("writing {}", svg.display()))?;
    println!();
    print!("{}", table::render_report(&run));
    println!(
        "\nresults: {}\nchart: {}",
        workspace::relative_to_root(&json).display(),
        workspace::relative_to_root(&svg).display()
    );
    // Failing boots are in the table; the run fails only if a configuration
    // produced nothing to measure.
    let empty: Vec<&str> = run
        .configurations
        .iter()
        .map(|record| record.configuration.name.as_str())
        .filter(|name| !run.samples_of(name).any(|sample| sample.counts()))
        .collect();
    if !empty.is_empty() {
        eprintln!("xtask: no boot counted for {}", empty.join(", "));
    }
    Ok(empty.is_empty())
}
