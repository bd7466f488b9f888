//! `cargo xtask bench`: measure (build, boot every configuration, write
//! JSON and SVG, print the report), measure load (`--http`), `--render` a
//! saved run of either kind, or `--compare` two boot runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::chart;
use regex::Regex;

use super::configuration::{
    self, AccelRequest, Configuration, ExternalGuest, Guest, HttpRequestLine, MatrixArgs, Switch,
};
use super::exact;
use super::host::HostMachine;
use super::http::{self, HttpPeer, HttpPlan, HttpRun};
use super::http_chart;
use super::results::{BenchRun, ConfigurationRecord, FORMAT_VERSION};
use super::runner::{self, Images};
use super::table;
use crate::env::boot_files;
use crate::env::{build, workspace};
use crate::measure::trace::cpu_instructions;
use crate::peer::{PeerKind, linux};
use crate::vm::accel::{self, Accel, AccelChoice};
use crate::vm::network::HostPorts;
use crate::vm::served::PeerGuest;
use crate::vm::vmm::{self, VmmKind, VmmPaths, qemu};

/// `cargo xtask bench`'s command line.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Counted boots per configuration.
    #[arg(long, value_name = "N", default_value_t = 20)]
    runs: usize,
    /// Uncounted warm-up rounds before them.
    #[arg(long, value_name = "N", default_value_t = 2)]
    warmup: usize,
    /// Kill a boot (and count it as failed) after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    matrix: MatrixArgs,
    #[command(flatten)]
    vmm_paths: VmmPaths,
    /// Named configurations from a file instead of the matrix flags (format below).
    #[arg(long, value_name = "FILE")]
    configs: Option<PathBuf>,
    /// Another PVH kernel to boot side by side (first serial byte, QEMU exit).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// The initrd for --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Words after `console=ttyS0` on --kernel's command line.
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    kernel_append: Option<String>,
    /// With --kernel: the line (a regular expression) that marks it ready;
    /// without it, its first serial byte stands in for ready.
    #[arg(long, value_name = "REGEX", requires = "kernel")]
    ready_line: Option<String>,
    /// With --kernel: ACPI on or off for it, whatever --acpi gives mote.
    #[arg(long, value_enum, value_name = "on|off", requires = "kernel")]
    kernel_acpi: Option<Switch>,
    /// A stock guest beside mote: `linux` is `cargo xtask peer linux`'s
    /// Debian kernel and busybox httpd (built here when missing), booted
    /// with ACPI on and tsc_early_khz=; mote and it are both booted served
    /// and timed to their ready line and first GET /health 200. With
    /// --http, it is driven through the same wrk ladder after mote on each
    /// QEMU target (its kernel has no virtio_mmio.device= for the others).
    #[arg(long, value_enum, conflicts_with_all = ["kernel", "configs"])]
    peer: Option<PeerKind>,
    /// Boot this prebuilt mote image instead of building target/kernel.
    #[arg(long, value_name = "PATH")]
    mote_kernel: Option<PathBuf>,
    /// Where to write the JSON (the SVG goes beside it).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the before/after table of two saved runs (B/A medians, Mann-Whitney U, p < 0.01).
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with = "render")]
    compare: Option<Vec<PathBuf>>,
    /// With --compare: pair configuration A_NAME of A with B_NAME of B (repeatable).
    #[arg(long, value_name = "A_NAME=B_NAME", requires = "compare")]
    pair: Vec<String>,
    /// Re-render the table and the SVG (beside the file) from a saved run.
    #[arg(long, value_name = "FILE.json")]
    render: Option<PathBuf>,
    /// Load instead of boot latency: boot the served guest over a tap in a
    /// network namespace (per --vmm and --accel) and drive it with wrk at
    /// each of --http-connections.
    #[arg(long, conflicts_with_all = ["compare", "configs", "kernel"])]
    http: bool,
    /// Measure what one CPUID, port and MMIO exit costs under this host's
    /// KVM (a guest loop, `mote.bench=exits`), to turn a phase's exit
    /// counts into an estimate for this host.
    #[arg(long, conflicts_with_all = ["compare", "render", "http"])]
    exit_cost: bool,
    /// With --http: seconds of wrk per step.
    #[arg(long, value_name = "SECS", default_value_t = 5, requires = "http")]
    http_duration: u64,
    /// With --http: the ladder of concurrencies.
    #[arg(
        long,
        value_name = "N,N,…",
        value_delimiter = ',',
        default_values_t = http::DEFAULT_LADDER,
        requires = "http"
    )]
    http_connections: Vec<usize>,
    /// With --http: the path wrk requests.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/health",
        requires = "http"
    )]
    http_path: String,
}

impl BenchArgs {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

pub(crate) fn bench(arguments: &BenchArgs) -> Result<bool> {
    if let Some(paths) = &arguments.compare {
        return compare(&paths[0], &paths[1], &arguments.pair);
    }
    if let Some(path) = &arguments.render {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(run) = HttpRun::from_json(&text)? {
            print!("{}", http::render_report(&run));
            let svg = write_http_chart(&run, path)?;
            println!("\nchart: {}", workspace::relative_to_root(&svg).display());
            return Ok(true);
        }
        let run = BenchRun::read_json(path)?;
        print!("{}", table::render_report(&run));
        let svg = write_chart(&run, path)?;
        println!("\nchart: {}", workspace::relative_to_root(&svg).display());
        return Ok(true);
    }
    if arguments.exit_cost {
        return super::exit_cost::measure(Duration::from_secs(arguments.timeout));
    }
    if arguments.http {
        return measure_http(arguments);
    }
    measure(arguments)
}

/// Writes an HTTP run's SVG chart beside `json` and returns its path.
fn write_http_chart(run: &HttpRun, json: &Path) -> Result<PathBuf> {
    let svg = json.with_extension("svg");
    std::fs::write(&svg, http_chart::render_http_svg(run)?)
        .with_context(|| format!("writing {}", svg.display()))?;
    Ok(svg)
}

/// `--http`: one served boot per VMM and accelerator, through the ladder.
fn measure_http(options: &BenchArgs) -> Result<bool> {
    if options.http_connections.contains(&0) || options.http_duration == 0 {
        bail!("--http-connections and --http-duration must be at least 1");
    }
    let files = boot_files::prepare(options.mote_kernel.as_deref())?;
    let mut targets = Vec::new();
    for &kind in &options.matrix.vmm {
        let vmm = vmm::locate_single(kind, &options.vmm_paths)?;
        for request in &options.matrix.accel {
            let accel = match request {
                AccelRequest::Auto => working_accels(&files.kernel)[0],
                AccelRequest::Kvm => Accel::Kvm,
                AccelRequest::Tcg => Accel::Tcg,
                AccelRequest::Icount => Accel::Icount,
            };
            // As in the boot matrix, a KVM-only VMM skips the other accelerators.
            if (!kind.needs_kvm() || accel == Accel::Kvm)
                && !targets.contains(&(vmm.clone(), accel))
            {
                targets.push((vmm.clone(), accel));
            }
        }
        if !targets.iter().any(|(vmm, _)| vmm.kind == kind) {
            bail!("{kind} runs only under KVM: pass --accel kvm (or auto where KVM works)");
        }
    }
    let plan = HttpPlan {
        targets,
        ladder: options.http_connections.clone(),
        duration: Duration::from_secs(options.http_duration),
        path: options.http_path.clone(),
        kernel: files.kernel,
        command: invocation(),
        peer: match options.peer {
            Some(PeerKind::Linux) => Some(linux_http_peer()?),
            None => None,
        },
    };
    let run = http::measure(&plan)?;
    let json = options.out.clone().unwrap_or_else(|| {
        workspace::target_dir().join("bench").join(format!(
            "bench-http-{}.json",
            table::utc_timestamp(run.started_unix).1
        ))
    });
    run.write_json(&json)?;
    let svg = write_http_chart(&run, &json)?;
    println!();
    print!("{}", http::render_report(&run));
    println!(
        "\nresults: {}\nchart: {}",
        workspace::relative_to_root(&json).display(),
        workspace::relative_to_root(&svg).display()
    );
    Ok(http::complete(&run))
}

/// Writes the run's SVG chart beside `json` and returns its path.
fn write_chart(run: &BenchRun, json: &Path) -> Result<PathBuf> {
    let svg = json.with_extension("svg");
    std::fs::write(&svg, chart::render_svg(run)?)
        .with_context(|| format!("writing {}", svg.display()))?;
    Ok(svg)
}

/// How bench was invoked, recorded in the JSON.
fn invocation() -> String {
    std::iter::once("cargo xtask".to_owned())
        .chain(std::env::args().skip(1).map(|arg| qemu::shell_quote(&arg)))
        .collect::<Vec<_>>()
        .join(" ")
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
fn working_accels(kernel: &Path) -> Vec<Accel> {
    match accel::resolve(AccelChoice::Auto, kernel) {
        Accel::Kvm => vec![Accel::Kvm, Accel::Tcg],
        // The probe never picks icount: it is asked for by name.
        Accel::Tcg | Accel::Icount => vec![Accel::Tcg],
    }
}

/// The Linux peer as a bench guest (built first when missing or stale).
fn linux_peer() -> Result<ExternalGuest> {
    let peer = linux::prepare()?;
    println!("bench: the Linux peer: {}", peer.packages);
    Ok(ExternalGuest {
        prefix: "linux".to_owned(),
        kernel: peer.vmlinux,
        initrd: Some(peer.initramfs),
        kernel_args: linux::kernel_args(linux::host_tsc_khz()?),
        ready_line: Some(format!("^{}$", regex::escape(linux::READY_LINE))),
        acpi: Some(true),
        power_off: Some(HttpRequestLine {
            method: "GET".to_owned(),
            path: linux::POWER_OFF_PATH.to_owned(),
        }),
    })
}

/// The Linux peer for `--http`: served over the tap, with ACPI, powered off
/// by its CGI.
fn linux_http_peer() -> Result<HttpPeer> {
    let peer = linux_peer()?;
    let power_off = peer
        .power_off
        .expect("the Linux peer is powered off over HTTP");
    Ok(HttpPeer {
        prefix: peer.prefix,
        kernel: peer.kernel,
        kernel_args: peer.kernel_args,
        guest: PeerGuest {
            initrd: peer.initrd.expect("the Linux peer has an initramfs"),
            ready_line: linux::READY_LINE.to_owned(),
            acpi: peer.acpi.unwrap_or(true),
            power_off: (power_off.method, power_off.path),
        },
    })
}

fn configurations(arguments: &BenchArgs, mote: &Path) -> Result<Vec<Configuration>> {
    let base = match &arguments.configs {
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
            let mut accels = Vec::new();
            for request in &arguments.matrix.accel {
                match request {
                    AccelRequest::Auto => accels.extend(working_accels(mote)),
                    AccelRequest::Kvm => accels.push(Accel::Kvm),
                    AccelRequest::Tcg => accels.push(Accel::Tcg),
                    AccelRequest::Icount => accels.push(Accel::Icount),
                }
            }
            let mut matrix = arguments.matrix.clone();
            // The peer is compared serving: mote is booted served beside it.
            matrix.served |= arguments.peer.is_some();
            configuration::expand_matrix(&matrix, &accels)
        }
    };
    let external = match (&arguments.kernel, arguments.peer) {
        (Some(kernel), _) => {
            if let Some(pattern) = &arguments.ready_line {
                Regex::new(pattern).with_context(|| format!("--ready-line {pattern:?}"))?;
            }
            Some(ExternalGuest {
                prefix: "ext".to_owned(),
                kernel: kernel.clone(),
                initrd: arguments.initrd.clone(),
                kernel_args: arguments.kernel_append.clone().unwrap_or_default(),
                ready_line: arguments.ready_line.clone(),
                acpi: arguments.kernel_acpi.map(|switch| switch == Switch::On),
                power_off: None,
            })
        }
        (None, Some(PeerKind::Linux)) => Some(linux_peer()?),
        (None, None) => None,
    };
    configuration::add_twins(base, external)
}

fn measure(options: &BenchArgs) -> Result<bool> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let files = boot_files::prepare(options.mote_kernel.as_deref())?;
    let null = build::null_guest()?;
    let configurations = configurations(options, &files.kernel)?;
    let mut kinds: Vec<VmmKind> = configurations
        .iter()
        .map(|configuration| configuration.vmm)
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if options.configs.is_none() {
        for kind in &options.matrix.vmm {
            if !kinds.contains(kind) {
                bail!("{kind} runs only under KVM: pass --accel kvm (or auto where KVM works)");
            }
        }
    }
    let vmms = kinds
        .iter()
        .map(|&kind| vmm::locate_single(kind, &options.vmm_paths))
        .collect::<Result<Vec<_>>>()?;
    for configuration in &configurations {
        if let Guest::External { kernel, initrd, .. } = &configuration.guest {
            for path in std::iter::once(kernel).chain(initrd) {
                if !path.is_file() {
                    bail!("{}: no file at {}", configuration.name, path.display());
                }
            }
        }
    }
    // Served boots get fresh ports each boot; these only show the shape.
    let example_ports = HostPorts::pick()?;
    let images = Images {
        mote: files.kernel,
        null,
        disk: files.disk,
        vmms,
    };
    let commands: Vec<_> = configurations
        .iter()
        .map(|configuration| {
            let forwards = if configuration.served {
                example_ports.forwards()
            } else {
                Vec::new()
            };
            runner::command_line(configuration, &images, &forwards)
        })
        .collect::<Result<_>>()?;
    println!(
        "bench: {} configurations x ({} runs + {} warm-ups), interleaved; each boot killed after {} s",
        configurations.len(),
        options.runs,
        options.warmup,
        options.timeout().as_secs_f64()
    );
    for (configuration, command) in configurations.iter().zip(&commands) {
        println!("  {}: {command}", configuration.name);
    }
    if configurations
        .iter()
        .any(|configuration| configuration.served)
    {
        println!(
            "  (served: fresh host ports each boot; mote is polled with GET /health every 1 ms, then POST /poweroff)"
        );
    }

    let machine = HostMachine::current();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let started = Instant::now();
    let samples = runner::run_rounds(
        &configurations,
        &images,
        options.runs,
        options.warmup,
        options.timeout(),
    )?;
    let exact = if configurations.iter().any(exact::counted) {
        println!("\nexact cost to ready (icount, one boot with the dump, one with markers):");
        exact::measure(&configurations, &images, options.timeout())?
    } else {
        Vec::new()
    };
    let run = BenchRun {
        format: FORMAT_VERSION,
        started_unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        command: invocation(),
        machine,
        runs: options.runs,
        warmups: options.warmup,
        timeout_seconds: options.timeout().as_secs_f64(),
        configurations: configurations
            .into_iter()
            .zip(&commands)
            .map(|(configuration, command)| ConfigurationRecord {
                configuration,
                qemu_command: command.clone(),
            })
            .collect(),
        samples,
        exact,
    };

    let json = options.out.clone().unwrap_or_else(|| {
        workspace::target_dir().join("bench").join(format!(
            "bench-{}.json",
            table::utc_timestamp(started_unix).1
        ))
    });
    run.write_json(&json)?;
    let svg = write_chart(&run, &json)?;
    println!();
    print!("{}", table::render_report(&run));
    println!(
        "\nresults: {}\nchart: {}",
        workspace::relative_to_root(&json).display(),
        workspace::relative_to_root(&svg).display()
    );
    let mote_configurations: Vec<&Configuration> = run
        .configurations
        .iter()
        .map(|record| &record.configuration)
        .collect();
    print_cpu_instructions(&mote_configurations, &images, options.timeout())?;
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

/// Under `--accel icount` with more than one vCPU count: one more boot of
/// each mote QEMU configuration that powers off by itself, under QEMU's
/// per-vCPU instruction log (deterministic, so one is enough), and the
/// instructions each vCPU executed from the PVH entry to ready. The icount
/// clock cannot give these: it also moves while the vCPUs wait for their
/// turn on QEMU's one thread.
fn print_cpu_instructions(
    configurations: &[&Configuration],
    images: &Images,
    timeout: Duration,
) -> Result<()> {
    let counted: Vec<&Configuration> = configurations
        .iter()
        .copied()
        .filter(|configuration| {
            configuration.guest == Guest::Mote
                && configuration.vmm == VmmKind::Qemu
                && configuration.accel == Accel::Icount
                && !configuration.served
        })
        .collect();
    if !counted.iter().any(|configuration| configuration.cpus > 1) {
        return Ok(());
    }
    let Some(qemu) = images.vmms.iter().find(|vmm| vmm.kind == VmmKind::Qemu) else {
        return Ok(());
    };
    println!(
        "\ninstructions per vCPU, PVH entry to ready (one boot each under QEMU's instruction log):"
    );
    let mut rows = Vec::new();
    for configuration in counted {
        let command = runner::qemu_command(configuration, images, &[]);
        let counts = cpu_instructions::count_boot(command, qemu, &images.mote, timeout)
            .with_context(|| {
                format!("{}: counting each vCPU's instructions", configuration.name)
            })?;
        rows.push((configuration, counts));
    }
    println!(
        "\n| configuration | boot CPU | APs | all vCPUs | added to one vCPU's |\n|---|---|---|---|---|"
    );
    for (configuration, counts) in &rows {
        let boot_cpu = counts.kernel.get(&0).copied().unwrap_or(0);
        let all = counts.kernel_total();
        let single = configuration
            .name
            .strip_suffix(&format!("smp{}", configuration.cpus))
            .map(|stem| format!("{stem}smp1"))
            .and_then(|name| rows.iter().find(|(other, _)| other.name == name))
            .map(|(_, counts)| counts.kernel_total());
        let added = match single {
            Some(single) if configuration.cpus > 1 => {
                format!("{:+}", i128::from(all) - i128::from(single))
            }
            _ => "-".to_owned(),
        };
        println!(
            "| {} | {boot_cpu} | {} | {all} | {added} |",
            configuration.name,
            all - boot_cpu
        );
    }
    Ok(())
}
