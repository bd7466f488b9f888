//! Bench configurations: what is booted, under which QEMU settings, and the
//! short name tables and `--compare` know it by. They come from a matrix of
//! flags or from a file of named lines; either way every mote (and external)
//! configuration gets a null-guest twin with the same QEMU settings.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::vm::accel::Accel;
use crate::vm::vmm::VmmKind;
use crate::vm::vmm::qemu::KVM_CPU;

/// The guest memory every configuration gets unless told otherwise
/// (what `cargo xtask run` uses).
pub(crate) const DEFAULT_MEMORY: &str = "256M";

/// Shown by `cargo xtask bench --help`.
pub(crate) const CONFIG_FILE_HELP: &str = "\
CONFIGURATION FILE (--configs FILE)
  One configuration per line: a short name, then key=value settings.
  `#` starts a comment; a value with spaces goes in double quotes.

    # name           settings (unset keys take the defaults shown below)
    mote-kvm         accel=kvm blk=on net=on
    mote-kvm-acpi    accel=kvm acpi=on
    mote-tcg-big     accel=tcg memory=2G smp=2 append=\"loglevel=3\"
    linux            guest=/path/to/vmlinux initrd=/path/to/initrd append=\"console=ttyS0 panic=-1\"

  keys: guest=mote|null|PATH (mote), initrd=PATH, accel=kvm|tcg|auto (auto),
        invtsc=on|off (on), acpi=on|off (off), virtio=legacy|modern (legacy),
        blk=on|off (on), net=on|off (on), memory=SIZE (256M), smp=N (1),
        served=on|off (off; needs net=on), append=\"kernel words\",
        qemu=\"QEMU arguments\"
  A PATH guest is another PVH kernel: judged by its first serial byte and
  QEMU's exit, booted with `console=ttyS0` plus append.

  Every mote or PATH configuration gets a null-guest twin with the same QEMU
  settings, named null-<name without mote->, unless the file has a null one.

MATRIX (without --configs)
  --accel, --invtsc, --acpi, --virtio, --blk, --net, --memory and --smp each
  take a comma-separated list; every combination is one mote configuration,
  named mote-<accel>[-noinvtsc][-acpi][-modern][-blk][-net][-<memory>]
  [-smp<N>][-served]. With --smp other than 1, configurations with a disk
  also get mote.blk=verify.
  --append, --qemu-arg and --served apply to all of them. Default: mote with
  blk and net under each working accelerator (KVM only if a probe boot
  succeeds), plus null twins.

FIGURES
  Host side, from just before QEMU is spawned: the first byte on QEMU's
  stdout (the serial console), the `mote: ready` line, QEMU's exit (its
  stdout closing). Guest side: entry -> ready from `mote: ready <us> us after
  entry`, and every tslog span (mote.tslog=1), nested as in `cargo xtask trace`.
  With more than one vCPU: the `cpus` line's AP bring-up time; with
  mote.blk=verify, blk0's verify and CRC rates (MiB/s).
  Served (--served, served=on): mote boots with a static ip= and without
  mote.exit=ready or the tslog dump; the host polls GET /health every 1 ms
  from QEMU's start and records the `mote: listening` line and the first
  200, then ends the VM with POST /poweroff. Its null twin gets the same
  forwarded ports, so the floor is measured in the same QEMU configuration.
  Runs are interleaved (A B C A B C ...), each round starting one
  configuration later, and the first --warmup rounds are not counted.

STATISTICS
  min, median, p90, max; spread as IQR and MAD; outliers are values beyond
  1.5 IQR outside the quartiles, counted and listed. --compare A.json B.json
  pairs configurations by name (or --pair A=B) and calls a difference
  significant when a two-sided Mann-Whitney U test gives p < 0.01.
";

/// What a configuration boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Guest {
    /// mote, built from this repository (or `--mote-kernel`).
    Mote,
    /// The null guest (`boot/src/bin/null_guest.rs`): QEMU's floor.
    Null,
    /// Another PVH kernel.
    External {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        /// A regular expression its ready line matches (`--ready-line`);
        /// without one, its first serial byte stands in for ready.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ready_line: Option<String>,
        /// Served: the request that powers it off (`GET /cgi-bin/poweroff`
        /// for the Linux peer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        power_off: Option<HttpRequestLine>,
    },
}

/// An HTTP method and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpRequestLine {
    pub(crate) method: String,
    pub(crate) path: String,
}

/// Another kernel to boot beside mote (`--kernel`, or `--peer linux`):
/// what it is and the machine settings it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExternalGuest {
    /// Its configurations' names start with this (`ext`, `linux`).
    pub(crate) prefix: String,
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: Option<PathBuf>,
    pub(crate) kernel_args: String,
    pub(crate) ready_line: Option<String>,
    /// ACPI on or off whatever mote's configuration says (`None`: as mote's).
    pub(crate) acpi: Option<bool>,
    /// Served beside served mote (needs `power_off`); else never served.
    pub(crate) power_off: Option<HttpRequestLine>,
}

impl Guest {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Guest::Mote => "mote",
            Guest::Null => "null",
            Guest::External { .. } => "external",
        }
    }
}

/// An accelerator as asked for: `auto` is resolved once, by a probe boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AccelRequest {
    /// Every accelerator that works here: KVM (if a probe boot succeeds) and TCG.
    Auto,
    Kvm,
    Tcg,
    /// TCG counting instructions: exact figures (see `--accel icount` of `run`).
    Icount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

impl Switch {
    fn is_on(self) -> bool {
        self == Switch::On
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum VirtioMode {
    /// QEMU microvm's default: virtio-mmio version 1 (legacy).
    Legacy,
    /// `-global virtio-mmio.force-legacy=false`: virtio-mmio version 2.
    Modern,
}

/// One bench configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Configuration {
    pub(crate) name: String,
    pub(crate) guest: Guest,
    /// The VMM it boots on (runs from before VMMs were a dimension: QEMU).
    #[serde(default = "qemu")]
    pub(crate) vmm: VmmKind,
    pub(crate) accel: Accel,
    /// KVM: `-cpu host,+invtsc,…` vs `host,…`; TCG: `-cpu max` vs `max,-invtsc`.
    pub(crate) invtsc: bool,
    pub(crate) acpi: bool,
    pub(crate) modern_virtio: bool,
    pub(crate) blk: bool,
    pub(crate) net: bool,
    /// Boots mote served and times the first HTTP answer (see `served.rs`).
    #[serde(default)]
    pub(crate) served: bool,
    pub(crate) memory: String,
    /// vCPUs (QEMU `-smp`, Firecracker `vcpu_count`, Cloud Hypervisor
    /// `--cpus boot=`).
    #[serde(default = "one_cpu")]
    pub(crate) cpus: u32,
    /// Words added to the guest's command line.
    pub(crate) kernel_args: String,
    /// Added to QEMU's arguments after everything else.
    pub(crate) qemu_args: Vec<String>,
}

fn qemu() -> VmmKind {
    VmmKind::Qemu
}

/// Runs from before `--smp` booted one vCPU.
fn one_cpu() -> u32 {
    1
}

impl Configuration {
    fn new(name: &str, guest: Guest, accel: Accel) -> Self {
        Self {
            name: name.to_owned(),
            guest,
            vmm: VmmKind::Qemu,
            accel,
            invtsc: true,
            acpi: false,
            modern_virtio: false,
            blk: true,
            net: true,
            served: false,
            memory: DEFAULT_MEMORY.to_owned(),
            cpus: 1,
            kernel_args: String::new(),
            qemu_args: Vec::new(),
        }
    }

    /// The `-cpu` model.
    pub(crate) fn cpu_model(&self) -> &'static str {
        match (self.accel, self.invtsc) {
            (Accel::Kvm, true) => KVM_CPU,
            (Accel::Kvm, false) => "host,-arch-capabilities",
            (Accel::Tcg | Accel::Icount, true) => "max",
            (Accel::Tcg | Accel::Icount, false) => "max,-invtsc",
        }
    }

    /// Everything about the VM except the guest image and its command line:
    /// two configurations with the same shape differ only in what they boot.
    fn qemu_shape(&self) -> impl PartialEq + '_ {
        (
            self.vmm,
            self.accel,
            self.invtsc,
            self.acpi,
            self.modern_virtio,
            self.blk,
            self.net,
            self.served,
            &self.memory,
            self.cpus,
            &self.qemu_args,
        )
    }

    /// One line for table headers: `kvm, invtsc, no ACPI, legacy virtio, blk, net, 256M`.
    pub(crate) fn describe(&self) -> String {
        if self.vmm != VmmKind::Qemu {
            let mut parts = vec![self.vmm.to_string(), self.accel.to_string()];
            if self.blk {
                parts.push("blk".to_owned());
            }
            parts.push(self.memory.clone());
            if self.cpus != 1 {
                parts.push(format!("{} vCPUs", self.cpus));
            }
            if !self.kernel_args.is_empty() {
                parts.push(format!("append {:?}", self.kernel_args));
            }
            return parts.join(", ");
        }
        let mut parts = vec![
            self.accel.to_string(),
            format!("-cpu {}", self.cpu_model()),
            if self.acpi { "ACPI" } else { "no ACPI" }.to_owned(),
            if self.modern_virtio {
                "modern virtio"
            } else {
                "legacy virtio"
            }
            .to_owned(),
        ];
        if self.blk {
            parts.push("blk".to_owned());
        }
        if self.net {
            parts.push("net".to_owned());
        }
        if self.served {
            parts.push("served".to_owned());
        }
        parts.push(self.memory.clone());
        if self.cpus != 1 {
            parts.push(format!("-smp {}", self.cpus));
        }
        if !self.kernel_args.is_empty() {
            parts.push(format!("append {:?}", self.kernel_args));
        }
        if !self.qemu_args.is_empty() {
            parts.push(format!("qemu {:?}", self.qemu_args.join(" ")));
        }
        if let Guest::External { kernel, .. } = &self.guest {
            parts.insert(0, kernel.display().to_string());
        }
        parts.join(", ")
    }
}

/// The flag matrix: every combination is one mote configuration.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MatrixArgs {
    /// VMMs, each with its own null-guest floor. Firecracker and Cloud
    /// Hypervisor run under KVM only, with a disk but no NIC, and ignore
    /// the QEMU-only dimensions (invtsc, acpi, virtio).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "qemu")]
    pub(crate) vmm: Vec<VmmKind>,
    /// Accelerators (auto: KVM if a probe boot works, and TCG).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub(crate) accel: Vec<AccelRequest>,
    /// +invtsc in the CPU model.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub(crate) invtsc: Vec<Switch>,
    /// ACPI tables (microvm acpi=on/off).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off")]
    pub(crate) acpi: Vec<Switch>,
    /// virtio-mmio legacy (version 1) or modern (force-legacy=false).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "legacy")]
    pub(crate) virtio: Vec<VirtioMode>,
    /// A virtio-blk disk (target/disk.img).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub(crate) blk: Vec<Switch>,
    /// A virtio-net card (user-mode network).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on")]
    pub(crate) net: Vec<Switch>,
    /// Boot mote served (static ip=, no mote.exit=ready) and time the first
    /// `GET /health` 200 from the host; needs --net on.
    #[arg(long)]
    pub(crate) served: bool,
    /// Guest memory sizes, QEMU -m syntax.
    #[arg(
        long,
        value_name = "SIZE",
        value_delimiter = ',',
        default_value = "256M"
    )]
    pub(crate) memory: Vec<String>,
    /// vCPU counts. More than one value (or one other than 1) names each
    /// configuration `-smp<N>` and adds `mote.blk=verify` to those with a
    /// disk, so the table has the CPUs' bring-up time and the verify rates.
    #[arg(long, value_name = "N", value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) smp: Vec<u32>,
    /// Words added to mote's command line `console=ttyS0 mote.exit=ready mote.tslog=1`.
    #[arg(long)]
    pub(crate) append: Option<String>,
    /// A QEMU argument for every configuration (repeat it; or put them after `--`).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub(crate) qemu_arg: Vec<String>,
    /// Extra QEMU arguments for every configuration, after `--`.
    #[arg(last = true)]
    pub(crate) qemu_args: Vec<String>,
}

/// What `--smp` adds to mote's command line when it has a disk: the CRC
/// every CPU computes, whose rate the table shows per vCPU count.
pub(crate) const SMP_VERIFY: &str = "mote.blk=verify";

/// Removes repeats, keeping the first of each.
fn unique<T: PartialEq + Clone>(values: &[T]) -> Vec<T> {
    let mut kept: Vec<T> = Vec::new();
    for value in values {
        if !kept.contains(value) {
            kept.push(value.clone());
        }
    }
    kept
}

/// Every combination of the matrix under `accels` (its `--accel` list,
/// resolved), as mote configurations.
pub(crate) fn expand_matrix(matrix: &MatrixArgs, accels: &[Accel]) -> Vec<Configuration> {
    let kernel_args = matrix.append.clone().unwrap_or_default();
    let qemu_args: Vec<String> = matrix
        .qemu_arg
        .iter()
        .chain(&matrix.qemu_args)
        .cloned()
        .collect();
    let smp_values = unique(&matrix.smp);
    let smp_named = smp_values != [1];
    let mut configurations: Vec<Configuration> = Vec::new();
    for &vmm in &unique(&matrix.vmm) {
        let qemu_only = |values: &[Switch], other: Switch| -> Vec<Switch> {
            if vmm == VmmKind::Qemu {
                unique(values)
            } else {
                vec![other]
            }
        };
        let invtsc_values = qemu_only(&matrix.invtsc, Switch::On);
        let acpi_values = qemu_only(&matrix.acpi, Switch::Off);
        let net_values = qemu_only(&matrix.net, Switch::Off);
        let virtio_values = if vmm == VmmKind::Qemu {
            unique(&matrix.virtio)
        } else {
            vec![VirtioMode::Legacy]
        };
        for &accel in &unique(accels) {
            if vmm.needs_kvm() && accel != Accel::Kvm {
                continue;
            }
            for &invtsc in &invtsc_values {
                for &acpi in &acpi_values {
                    for &virtio in &virtio_values {
                        for &blk in &unique(&matrix.blk) {
                            for &net in &net_values {
                                for (memory, &cpus) in
                                    unique(&matrix.memory).iter().flat_map(|memory| {
                                        smp_values.iter().map(move |cpus| (memory, cpus))
                                    })
                                {
                                    let mut name = if vmm == VmmKind::Qemu {
                                        format!("mote-{accel}")
                                    } else {
                                        format!("mote-{vmm}-{accel}")
                                    };
                                    let mut configuration =
                                        Configuration::new("", Guest::Mote, accel);
                                    configuration.vmm = vmm;
                                    configuration.invtsc = invtsc.is_on();
                                    configuration.acpi = acpi.is_on();
                                    configuration.modern_virtio = virtio == VirtioMode::Modern;
                                    configuration.blk = blk.is_on();
                                    configuration.net = net.is_on();
                                    configuration.served = matrix.served && vmm == VmmKind::Qemu;
                                    configuration.memory = memory.clone();
                                    configuration.cpus = cpus;
                                    configuration.kernel_args = kernel_args.clone();
                                    if smp_named && configuration.blk {
                                        configuration.kernel_args =
                                            format!("{} {SMP_VERIFY}", configuration.kernel_args)
                                                .trim_start()
                                                .to_owned();
                                    }
                                    configuration.qemu_args = qemu_args.clone();
                                    for (part, wanted) in [
                                        ("-noinvtsc", !configuration.invtsc),
                                        ("-acpi", configuration.acpi),
                                        ("-modern", configuration.modern_virtio),
                                        ("-blk", configuration.blk),
                                        ("-net", configuration.net),
                                    ] {
                                        if wanted {
                                            name.push_str(part);
                                        }
                                    }
                                    if memory != DEFAULT_MEMORY {
                                        name.push('-');
                                        name.push_str(&memory.to_ascii_lowercase());
                                    }
                                    if smp_named {
                                        name.push_str(&format!("-smp{cpus}"));
                                    }
                                    if configuration.served {
                                        name.push_str("-served");
                                    }
                                    configuration.name = name;
                                    configurations.push(configuration);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    configurations
}

/// A configuration line's accelerator before `auto` is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileConfiguration {
    pub(crate) configuration: Configuration,
    /// `accel=auto` (or no accel key): take KVM if it works, else TCG.
    pub(crate) accel_auto: bool,
}

/// Parses a configuration file (format in [`CONFIG_FILE_HELP`]).
pub(crate) fn parse_config_file(text: &str) -> Result<Vec<FileConfiguration>> {
    let mut parsed: Vec<FileConfiguration> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = match line.find('#') {
            Some(comment) if !line[..comment].contains('"') => &line[..comment],
            _ => line,
        };
        let words = split_words(line).with_context(|| format!("line {number}"))?;
        let Some((name, settings)) = words.split_first() else {
            continue;
        };
        if name.contains('=') || name.is_empty() {
            bail!("line {number}: a configuration starts with its name, got {name:?}");
        }
        if parsed.iter().any(|entry| entry.configuration.name == *name) {
            bail!("line {number}: the name {name:?} is used twice");
        }
        let mut configuration = Configuration::new(name, Guest::Mote, Accel::Tcg);
        let mut accel_auto = true;
        let mut initrd = None;
        for setting in settings {
            let Some((key, value)) = setting.split_once('=') else {
                bail!("line {number}: expected key=value, got {setting:?}");
            };
            let switch = || match value {
                "on" | "yes" | "true" => Ok(true),
                "off" | "no" | "false" => Ok(false),
                _ => bail!("line {number}: {key} takes on or off, got {value:?}"),
            };
            match key {
                "guest" => {
                    configuration.guest = match value {
                        "mote" => Guest::Mote,
                        "null" => Guest::Null,
                        path => Guest::External {
                            kernel: PathBuf::from(path),
                            initrd: None,
                            ready_line: None,
                            power_off: None,
                        },
                    }
                }
                "initrd" => initrd = Some(PathBuf::from(value)),
                "accel" => {
                    (accel_auto, configuration.accel) = match value {
                        "auto" => (true, Accel::Tcg),
                        "kvm" => (false, Accel::Kvm),
                        "tcg" => (false, Accel::Tcg),
                        "icount" => (false, Accel::Icount),
                        _ => bail!(
                            "line {number}: accel takes kvm, tcg, icount or auto, got {value:?}"
                        ),
                    }
                }
                "invtsc" => configuration.invtsc = switch()?,
                "acpi" => configuration.acpi = switch()?,
                "blk" => configuration.blk = switch()?,
                "net" => configuration.net = switch()?,
                "served" => configuration.served = switch()?,
                "virtio" => {
                    configuration.modern_virtio = match value {
                        "legacy" => false,
                        "modern" => true,
                        _ => bail!("line {number}: virtio takes legacy or modern, got {value:?}"),
                    }
                }
                "memory" if !value.is_empty() => configuration.memory = value.to_owned(),
                "smp" => {
                    configuration.cpus = value
                        .parse()
                        .ok()
                        .filter(|cpus| (1..=64).contains(cpus))
                        .with_context(|| {
                            format!("line {number}: smp takes 1 to 64 vCPUs, got {value:?}")
                        })?;
                }
                "append" => configuration.kernel_args = value.to_owned(),
                "qemu" => {
                    configuration.qemu_args = value.split_whitespace().map(str::to_owned).collect()
                }
                _ => bail!("line {number}: unknown setting {key:?}"),
            }
        }
        if let Some(initrd) = initrd {
            match &mut configuration.guest {
                Guest::External { initrd: slot, .. } => *slot = Some(initrd),
                _ => bail!("line {number}: initrd= needs guest=PATH"),
            }
        }
        parsed.push(FileConfiguration {
            configuration,
            accel_auto,
        });
    }
    if parsed.is_empty() {
        bail!("the configuration file names no configuration");
    }
    Ok(parsed)
}

/// Splits on whitespace outside double quotes; the quotes are removed.
fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for character in line.chars() {
        match character {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            space if space.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if quoted {
        bail!("a double quote is not closed");
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The name of the twin of `name` booting another guest: `mote-kvm-blk` →
/// `null-kvm-blk`; `fast` → `null-fast`.
fn twin_name(prefix: &str, name: &str) -> String {
    format!("{prefix}-{}", name.strip_prefix("mote-").unwrap_or(name))
}

/// Adds `--kernel` twins (when given) and null-guest twins, so that every
/// mote and external configuration has a null guest with the same QEMU
/// settings, and returns the list with names checked for uniqueness.
pub(crate) fn add_twins(
    mut configurations: Vec<Configuration>,
    external: Option<ExternalGuest>,
) -> Result<Vec<Configuration>> {
    if let Some(external) = external {
        let motes: Vec<Configuration> = configurations
            .iter()
            .filter(|configuration| configuration.guest == Guest::Mote)
            .cloned()
            .collect();
        let mut added: Vec<Configuration> = Vec::new();
        for mote in motes {
            // Only QEMU boots another kernel with an initrd and its own machine settings.
            if mote.vmm != VmmKind::Qemu {
                continue;
            }
            let mut twin = mote.clone();
            twin.guest = Guest::External {
                kernel: external.kernel.clone(),
                initrd: external.initrd.clone(),
                ready_line: external.ready_line.clone(),
                power_off: external.power_off.clone(),
            };
            twin.kernel_args = external.kernel_args.clone();
            twin.served = mote.served && external.power_off.is_some();
            let mut name = twin_name(&external.prefix, &mote.name);
            if mote.served && !twin.served {
                name = name.replace("-served", "");
            }
            if let Some(acpi) = external.acpi
                && acpi != twin.acpi
            {
                twin.acpi = acpi;
                name = name.replace("-acpi", "");
                if acpi {
                    let at = ["-modern", "-blk", "-net", "-served"]
                        .iter()
                        .filter_map(|part| name.find(part))
                        .min()
                        .unwrap_or(name.len());
                    name.insert_str(at, "-acpi");
                }
            }
            twin.name = name;
            if added
                .iter()
                .any(|other| other.qemu_shape() == twin.qemu_shape())
            {
                continue;
            }
            added.push(twin);
        }
        configurations.extend(added);
    }
    let mut nulls: Vec<Configuration> = Vec::new();
    for configuration in &configurations {
        let has_null = |list: &[Configuration]| {
            list.iter().any(|other| {
                other.guest == Guest::Null && other.qemu_shape() == configuration.qemu_shape()
            })
        };
        if configuration.guest == Guest::Null || has_null(&configurations) || has_null(&nulls) {
            continue;
        }
        let mut twin = configuration.clone();
        twin.name = twin_name("null", &configuration.name);
        twin.guest = Guest::Null;
        nulls.push(twin);
    }
    configurations.extend(nulls);
    if let Some(unserved) = configurations
        .iter()
        .find(|configuration| configuration.served && !configuration.net)
    {
        bail!(
            "{}: a served boot needs a network card (net=on)",
            unserved.name
        );
    }
    let mut seen = BTreeSet::new();
    for configuration in &configurations {
        if !seen.insert(configuration.name.as_str()) {
            bail!(
                "two configurations are named {:?}: give them distinct names",
                configuration.name
            );
        }
    }
    Ok(configurations)
}

/// The null guest with the same QEMU settings as `configuration`, if any.
pub(crate) fn baseline_of<'list>(
    configuration: &Configuration,
    configurations: &'list [Configuration],
) -> Option<&'list Configuration> {
    configurations.iter().find(|other| {
        other.guest == Guest::Null && other.qemu_shape() == configuration.qemu_shape()
    })
}

/// The default matrix (`cargo xtask bench` without flags), for tests.
#[cfg(test)]
pub(crate) fn test_matrix() -> MatrixArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        matrix: MatrixArgs,
    }
    Wrapper::parse_from(["bench"]).matrix
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default matrix under KVM and TCG.
    fn matrix() -> (MatrixArgs, Vec<Accel>) {
        (test_matrix(), vec![Accel::Kvm, Accel::Tcg])
    }

    fn names(configurations: &[Configuration]) -> Vec<&str> {
        configurations
            .iter()
            .map(|configuration| configuration.name.as_str())
            .collect()
    }

    #[test]
    fn every_vmm_gets_its_own_floor_and_only_kvm_outside_qemu() {
        let (mut matrix, accels) = matrix();
        matrix.vmm = vec![
            VmmKind::Qemu,
            VmmKind::Firecracker,
            VmmKind::CloudHypervisor,
        ];
        matrix.acpi = vec![Switch::On, Switch::Off];
        let configurations = add_twins(expand_matrix(&matrix, &accels), None).unwrap();
        let others: Vec<&str> = names(&configurations)
            .into_iter()
            .filter(|name| name.contains("firecracker") || name.contains("cloud-hypervisor"))
            .collect();
        // No TCG, no NIC, one ACPI setting outside QEMU; a null twin each.
        assert_eq!(
            others,
            [
                "mote-firecracker-kvm-blk",
                "mote-cloud-hypervisor-kvm-blk",
                "null-firecracker-kvm-blk",
                "null-cloud-hypervisor-kvm-blk"
            ]
        );
        let firecracker = &configurations
            .iter()
            .find(|c| c.name == "mote-firecracker-kvm-blk")
            .unwrap();
        assert_eq!(
            baseline_of(firecracker, &configurations).map(|c| c.name.as_str()),
            Some("null-firecracker-kvm-blk")
        );
        assert_eq!(firecracker.describe(), "firecracker, kvm, blk, 256M");
    }

    #[test]
    fn default_matrix_is_mote_and_null_per_accelerator() {
        let (matrix, accels) = matrix();
        let configurations = add_twins(expand_matrix(&matrix, &accels), None).unwrap();
        assert_eq!(
            names(&configurations),
            [
                "mote-kvm-blk-net",
                "mote-tcg-blk-net",
                "null-kvm-blk-net",
                "null-tcg-blk-net"
            ]
        );
        let null = &configurations[2];
        assert_eq!(null.guest, Guest::Null);
        assert_eq!(null.accel, Accel::Kvm);
        assert!(null.blk && null.net && null.invtsc && !null.acpi);
        assert_eq!(
            baseline_of(&configurations[1], &configurations).map(|c| c.name.as_str()),
            Some("null-tcg-blk-net")
        );
    }

    #[test]
    fn smp_names_each_vcpu_count_and_verifies_where_there_is_a_disk() {
        let (mut matrix, _) = matrix();
        matrix.smp = vec![1, 2, 4, 2];
        matrix.blk = vec![Switch::On, Switch::Off];
        matrix.net = vec![Switch::Off];
        let configurations = add_twins(expand_matrix(&matrix, &[Accel::Tcg]), None).unwrap();
        assert_eq!(
            names(&configurations),
            [
                "mote-tcg-blk-smp1",
                "mote-tcg-blk-smp2",
                "mote-tcg-blk-smp4",
                "mote-tcg-smp1",
                "mote-tcg-smp2",
                "mote-tcg-smp4",
                "null-tcg-blk-smp1",
                "null-tcg-blk-smp2",
                "null-tcg-blk-smp4",
                "null-tcg-smp1",
                "null-tcg-smp2",
                "null-tcg-smp4",
            ]
        );
        let [smp1, smp4] = [0, 2].map(|index| &configurations[index]);
        assert_eq!((smp1.cpus, smp4.cpus), (1, 4));
        assert_eq!(smp4.kernel_args, SMP_VERIFY);
        assert_eq!(configurations[5].kernel_args, "", "no disk, no verify");
        assert!(
            smp4.describe()
                .ends_with(", -smp 4, append \"mote.blk=verify\"")
        );
        // Each vCPU count has a floor of its own.
        assert_eq!(
            baseline_of(smp4, &configurations).map(|c| c.name.as_str()),
            Some("null-tcg-blk-smp4")
        );
        // Only 1: named and booted as before.
        matrix.smp = vec![1];
        let configurations = expand_matrix(&matrix, &[Accel::Tcg]);
        assert_eq!(names(&configurations), ["mote-tcg-blk", "mote-tcg"]);
        assert_eq!(configurations[0].kernel_args, "");
    }

    #[test]
    fn matrix_expands_every_combination_once() {
        let (mut matrix, _) = matrix();
        let accels = [Accel::Kvm, Accel::Kvm];
        matrix.invtsc = vec![Switch::On, Switch::Off];
        matrix.acpi = vec![Switch::Off, Switch::On];
        matrix.virtio = vec![VirtioMode::Modern];
        matrix.blk = vec![Switch::Off];
        matrix.net = vec![Switch::On, Switch::Off];
        matrix.memory = vec!["256M".into(), "1G".into()];
        matrix.append = Some("quiet".into());
        let configurations = expand_matrix(&matrix, &accels);
        assert_eq!(configurations.len(), 2 * 2 * 2 * 2);
        assert_eq!(configurations[0].name, "mote-kvm-modern-net");
        assert_eq!(configurations[1].name, "mote-kvm-modern-net-1g");
        assert!(
            configurations
                .iter()
                .any(|c| c.name == "mote-kvm-noinvtsc-acpi-modern")
        );
        assert!(configurations.iter().all(|c| c.kernel_args == "quiet"));
        let noinvtsc = configurations.iter().find(|c| !c.invtsc).unwrap();
        assert_eq!(noinvtsc.cpu_model(), "host,-arch-capabilities");
        // Kernel arguments do not change the QEMU shape: one null per shape.
        let all = add_twins(configurations, None).unwrap();
        assert_eq!(all.len(), 32);
        assert!(all.iter().any(|c| c.name == "null-kvm-modern-net-1g"));
    }

    #[test]
    fn served_configurations_are_named_twinned_and_need_a_nic() {
        let (mut matrix, _) = matrix();
        matrix.served = true;
        let all = add_twins(expand_matrix(&matrix, &[Accel::Tcg]), None).unwrap();
        assert_eq!(
            names(&all),
            ["mote-tcg-blk-net-served", "null-tcg-blk-net-served"]
        );
        assert!(all.iter().all(|configuration| configuration.served));
        assert!(all[0].describe().contains("served"));
        matrix.net = vec![Switch::Off];
        let error = add_twins(expand_matrix(&matrix, &[Accel::Tcg]), None).unwrap_err();
        assert!(format!("{error:#}").contains("net=on"), "{error:#}");
        let parsed = parse_config_file("web accel=tcg served=on").unwrap();
        assert!(parsed[0].configuration.served);
    }

    #[test]
    fn external_kernel_gets_one_twin_per_qemu_shape() {
        let (matrix, accels) = matrix();
        let external = ExternalGuest {
            prefix: "ext".to_owned(),
            kernel: PathBuf::from("/k/vmlinux"),
            initrd: Some(PathBuf::from("/k/initrd")),
            kernel_args: "console=ttyS0".into(),
            ready_line: None,
            acpi: None,
            power_off: None,
        };
        let all = add_twins(expand_matrix(&matrix, &accels), Some(external)).unwrap();
        assert_eq!(
            names(&all),
            [
                "mote-kvm-blk-net",
                "mote-tcg-blk-net",
                "ext-kvm-blk-net",
                "ext-tcg-blk-net",
                "null-kvm-blk-net",
                "null-tcg-blk-net"
            ]
        );
        assert_eq!(all[2].kernel_args, "console=ttyS0");
    }

    #[test]
    fn a_peer_that_needs_acpi_gets_it_its_own_floor_and_is_served_beside_served_mote() {
        let (mut matrix, _) = matrix();
        matrix.served = true;
        let power_off = HttpRequestLine {
            method: "GET".to_owned(),
            path: "/cgi-bin/poweroff".to_owned(),
        };
        let peer = ExternalGuest {
            prefix: "linux".to_owned(),
            kernel: PathBuf::from("target/peer/linux/vmlinux"),
            initrd: None,
            kernel_args: "tsc_early_khz=2000000".into(),
            ready_line: Some("^peer: ready$".to_owned()),
            acpi: Some(true),
            power_off: Some(power_off.clone()),
        };
        let all = add_twins(expand_matrix(&matrix, &[Accel::Tcg]), Some(peer.clone())).unwrap();
        assert_eq!(
            names(&all),
            [
                "mote-tcg-blk-net-served",
                "linux-tcg-acpi-blk-net-served",
                "null-tcg-blk-net-served",
                "null-linux-tcg-acpi-blk-net-served"
            ]
        );
        let linux = &all[1];
        assert!(linux.acpi && linux.served);
        assert_eq!(
            baseline_of(linux, &all).map(|c| c.name.as_str()),
            Some("null-linux-tcg-acpi-blk-net-served")
        );
        // Unserved mote: the peer is not served either (it powers itself off).
        let unserved = ExternalGuest {
            power_off: None,
            ..peer
        };
        let all = add_twins(expand_matrix(&matrix, &[Accel::Tcg]), Some(unserved)).unwrap();
        assert_eq!(all[1].name, "linux-tcg-acpi-blk-net");
        assert!(!all[1].served);
        // Parsed back from JSON written before the field existed.
        let old: Guest =
            serde_json::from_str(r#"{"external":{"kernel":"/k","initrd":null}}"#).unwrap();
        assert_eq!(
            old,
            Guest::External {
                kernel: "/k".into(),
                initrd: None,
                ready_line: None,
                power_off: None
            }
        );
    }

    #[test]
    fn parses_a_configuration_file() {
        let text = r#"
# two accelerators and an odd one
fast   accel=kvm   blk=off net=off   # trailing comment
slow   accel=tcg invtsc=off acpi=on virtio=modern memory=1G append="loglevel=3 mote.exit=ready" qemu="-smp 2"
plain
floor  guest=null accel=kvm blk=off net=off
linux  guest=/boot/vmlinux initrd=/boot/initrd.img accel=tcg
"#;
        let parsed = parse_config_file(text).unwrap();
        assert_eq!(parsed.len(), 5);
        let fast = &parsed[0];
        assert!(!fast.accel_auto);
        assert_eq!(fast.configuration.accel, Accel::Kvm);
        assert!(!fast.configuration.blk && !fast.configuration.net);
        let slow = &parsed[1].configuration;
        assert!(!slow.invtsc && slow.acpi && slow.modern_virtio);
        assert_eq!(slow.memory, "1G");
        assert_eq!(slow.kernel_args, "loglevel=3 mote.exit=ready");
        assert_eq!(slow.qemu_args, ["-smp", "2"]);
        assert_eq!(slow.cpu_model(), "max,-invtsc");
        let plain = &parsed[2];
        assert!(plain.accel_auto);
        assert_eq!(plain.configuration.memory, DEFAULT_MEMORY);
        assert!(plain.configuration.blk && plain.configuration.net);
        assert_eq!(parsed[3].configuration.guest, Guest::Null);
        assert_eq!(
            parsed[4].configuration.guest,
            Guest::External {
                kernel: "/boot/vmlinux".into(),
                initrd: Some("/boot/initrd.img".into()),
                ready_line: None,
                power_off: None
            }
        );

        // The file's own null serves `fast`; the others get twins, and
        // `linux` shares `plain`'s (both TCG with the default devices here).
        let all = add_twins(
            parsed
                .into_iter()
                .map(|entry| entry.configuration)
                .collect(),
            None,
        )
        .unwrap();
        assert_eq!(
            names(&all),
            [
                "fast",
                "slow",
                "plain",
                "floor",
                "linux",
                "null-slow",
                "null-plain"
            ]
        );
    }

    #[test]
    fn rejects_bad_configuration_files() {
        for (text, expected) in [
            ("a accel=arm", "accel takes"),
            ("a blk=maybe", "on or off"),
            ("a colour=red", "unknown setting"),
            ("a blk", "key=value"),
            ("a\na", "used twice"),
            ("a append=\"open", "not closed"),
            ("a initrd=/x", "needs guest=PATH"),
            ("# nothing\n\n", "no configuration"),
            ("accel=kvm", "starts with its name"),
        ] {
            let error = format!("{:#}", parse_config_file(text).unwrap_err());
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let clash = vec![
            Configuration::new("null-x", Guest::Null, Accel::Kvm),
            Configuration::new("null-x", Guest::Mote, Accel::Tcg),
        ];
        assert!(add_twins(clash, None).is_err());
    }
}
