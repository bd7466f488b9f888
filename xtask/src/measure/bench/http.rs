//! `cargo xtask bench --http`: the served guest under load from `wrk`, over
//! a tap in a network namespace of its own (wrk runs in it, `ip netns
//! exec`), at a ladder of concurrencies; every step followed by the
//! guest's own counters (`GET /`: refused SYNs, peak connections, the
//! heap's low mark). One boot per VMM and accelerator, ended with
//! `POST /poweroff`. The run is written as JSON, re-rendered by `--render`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::host::HostMachine;
use super::wrk::{self, WrkReport};
use crate::guest_output::status_page::LoadCounters;
use crate::vm::accel::Accel;
use crate::vm::cmdline::{self, STATIC_IP_PARAMETER};
use crate::vm::http_client;
use crate::vm::power_off::PowerOff;
use crate::vm::process::{self, Finished, Output};
use crate::vm::served::{self, PeerGuest, ServedBoot, ServedNetwork, ServedVm};
use crate::vm::tap_namespace;
use crate::vm::vmm::qemu::Machine;
use crate::vm::vmm::{Vmm, VmmKind};

/// The `kind` of an HTTP bench's JSON (a boot bench's has none).
pub(crate) const HTTP_RUN_KIND: &str = "http";
const HTTP_FORMAT_VERSION: u32 = 1;

/// The default ladder of concurrencies.
pub(crate) const DEFAULT_LADDER: [usize; 5] = [1, 16, 64, 256, 1000];

/// From the VMM's start to `mote: listening` (about a second under TCG).
const LISTEN_WITHIN: Duration = Duration::from_secs(30);
/// From the VMM's start to the peer's ready line (Linux under TCG: about
/// 7 s on an idle host, several times that on a loaded one).
const PEER_LISTEN_WITHIN: Duration = Duration::from_secs(120);
/// The peer syncs and shuts its devices down before the ACPI sleep.
const PEER_POWER_OFF_WITHIN: Duration = Duration::from_secs(30);
/// `GET /` for the counters and `POST /poweroff`, each.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POWER_OFF_WITHIN: Duration = Duration::from_secs(10);
/// wrk is killed this long after its `-d` should have ended it.
const WRK_GRACE: Duration = Duration::from_secs(30);
/// A pause between steps: the previous step's connections close (the
/// guest holds each until its FIN is acknowledged) before the next opens.
const SETTLE: Duration = Duration::from_secs(1);

/// One step of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
    pub(crate) connections: usize,
    /// What wrk reported, or why it reported nothing.
    pub(crate) wrk: Result<WrkReport, String>,
    /// The guest's counters after the step, or why they could not be read.
    pub(crate) guest: Result<LoadCounters, String>,
}

/// One served boot, driven through the whole ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HttpConfiguration {
    pub(crate) name: String,
    pub(crate) vmm: VmmKind,
    pub(crate) vmm_version: String,
    pub(crate) accel: Accel,
    pub(crate) command_line: String,
    pub(crate) steps: Vec<Step>,
    /// Why the boot, or its end, fell short (empty when it was clean).
    pub(crate) problems: Vec<String>,
}

/// A whole `bench --http` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HttpRun {
    pub(crate) kind: String,
    pub(crate) format: u32,
    pub(crate) started_unix: u64,
    pub(crate) wall_seconds: f64,
    pub(crate) command: String,
    pub(crate) machine: HostMachine,
    /// `wrk -v`'s first line.
    pub(crate) wrk_version: String,
    pub(crate) path: String,
    pub(crate) duration_seconds: u64,
    pub(crate) wrk_timeout_seconds: u64,
    pub(crate) configurations: Vec<HttpConfiguration>,
}

impl HttpRun {
    pub(crate) fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(directory) = path.parent() {
            fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
        }
        fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The run in `text`, if it is an HTTP bench's JSON.
    pub(crate) fn from_json(text: &str) -> Result<Option<Self>> {
        let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
        if value.get("kind").and_then(serde_json::Value::as_str) != Some(HTTP_RUN_KIND) {
            return Ok(None);
        }
        let run: Self = serde_json::from_value(value).context("an HTTP bench run")?;
        if run.format != HTTP_FORMAT_VERSION {
            bail!(
                "HTTP bench format {}, this xtask reads {HTTP_FORMAT_VERSION}",
                run.format
            );
        }
        Ok(Some(run))
    }
}

/// What `bench --http` was asked for.
pub(crate) struct HttpPlan {
    pub(crate) targets: Vec<(Vmm, Accel)>,
    pub(crate) ladder: Vec<usize>,
    pub(crate) duration: Duration,
    pub(crate) path: String,
    pub(crate) kernel: PathBuf,
    pub(crate) command: String,
    /// A stock guest driven through the same ladder after mote, on each
    /// QEMU target (`--peer linux`).
    pub(crate) peer: Option<HttpPeer>,
}

/// The peer of an HTTP bench: its kernel, the words after `console=ttyS0
/// ip=…`, and how it is served.
pub(crate) struct HttpPeer {
    /// Its configurations' prefix (`linux`).
    pub(crate) prefix: String,
    pub(crate) kernel: PathBuf,
    pub(crate) kernel_args: String,
    pub(crate) guest: PeerGuest,
}

fn configuration_name(prefix: &str, vmm: VmmKind, accel: Accel) -> String {
    format!("{prefix}-{vmm}-{accel}-http")
}

/// Boots each target and runs the ladder against it.
pub(crate) fn measure(plan: &HttpPlan) -> Result<HttpRun> {
    tap_namespace::available().map_err(|reason| anyhow::anyhow!("bench --http: {reason}"))?;
    wrk::ensure_wrk()?;
    let wrk_version = process::run(
        Command::new(wrk::WRK_BINARY).arg("-v"),
        Duration::from_secs(10),
        Output::Capture { echo: false },
    )
    .ok()
    .and_then(|finished| {
        let first = finished.stdout.first()?.clone();
        // `wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer`
        Some(
            first
                .split(" Copyright")
                .next()
                .unwrap_or(&first)
                .trim()
                .to_owned(),
        )
    })
    .unwrap_or_else(|| "unknown".to_owned());
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let started = Instant::now();
    let mut configurations = Vec::new();
    for (vmm, accel) in &plan.targets {
        configurations.push(run_ladder(plan, vmm, *accel, None));
        if let Some(peer) = plan.peer.as_ref().filter(|_| vmm.kind == VmmKind::Qemu) {
            configurations.push(run_ladder(plan, vmm, *accel, Some(peer)));
        }
    }
    Ok(HttpRun {
        kind: HTTP_RUN_KIND.to_owned(),
        format: HTTP_FORMAT_VERSION,
        started_unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        command: plan.command.clone(),
        machine: HostMachine::current(),
        wrk_version,
        path: plan.path.clone(),
        duration_seconds: plan.duration.as_secs(),
        wrk_timeout_seconds: wrk::WRK_REQUEST_TIMEOUT.as_secs(),
        configurations,
    })
}

/// One boot through the ladder: mote, or `peer` when given.
fn run_ladder(
    plan: &HttpPlan,
    vmm: &Vmm,
    accel: Accel,
    peer: Option<&HttpPeer>,
) -> HttpConfiguration {
    let name = configuration_name(peer.map_or("mote", |peer| &peer.prefix), vmm.kind, accel);
    println!("bench --http: {name}: booting");
    let vm = ServedVm {
        vmm: vmm.clone(),
        machine: Machine::MicrovmNoAcpi,
        accel,
        network: ServedNetwork::Tap,
        peer: peer.map(|peer| peer.guest.clone()),
        qemu_args: Vec::new(),
        pci: false,
    };
    let listen_within = if peer.is_some() {
        PEER_LISTEN_WITHIN
    } else {
        LISTEN_WITHIN
    };
    let per_step = plan.duration + WRK_GRACE + SETTLE + REQUEST_TIMEOUT;
    let timeout = listen_within + per_step * plan.ladder.len() as u32 + POWER_OFF_WITHIN;
    let served = cmdline::served_cmdline(STATIC_IP_PARAMETER);
    let (kernel, cmdline) = match peer {
        None => (&plan.kernel, served),
        Some(peer) => (
            &peer.kernel,
            cmdline::with_append(&served, Some(&peer.kernel_args)),
        ),
    };
    let mut configuration = HttpConfiguration {
        name,
        vmm: vmm.kind,
        vmm_version: vmm.version.clone(),
        accel,
        command_line: String::new(),
        steps: Vec::new(),
        problems: Vec::new(),
    };
    let mut boot = match ServedBoot::start(&vm, kernel, &cmdline, timeout, listen_within) {
        Ok(boot) => boot,
        Err(failure) => {
            configuration.command_line = failure.command_line;
            configuration.problems.push(failure.reason);
            return configuration;
        }
    };
    configuration.command_line = boot.command_line.clone();
    let address = boot.http_address();
    for &connections in &plan.ladder {
        let mut command = boot.where_reachable(&wrk::command(
            address,
            &plan.path,
            connections,
            plan.duration,
        ));
        let wrk = process::run(
            &mut command,
            plan.duration + WRK_GRACE,
            Output::Capture { echo: false },
        )
        .map_err(|error| format!("{error:#}"))
        .and_then(|finished| {
            if !finished.succeeded() {
                return Err(format!(
                    "wrk: {}: {}",
                    finished.describe_end(plan.duration + WRK_GRACE),
                    finished.stderr.join(" | ")
                ));
            }
            wrk::parse_report(&finished.stdout.join("\n")).map_err(|error| format!("{error:#}"))
        });
        std::thread::sleep(SETTLE);
        let guest = if peer.is_some() {
            Err(NO_PEER_COUNTERS.to_owned())
        } else {
            boot.reachable(|_| http_client::get(address, "/", REQUEST_TIMEOUT))
                .map_err(|error| format!("{error:#}"))
                .and_then(|response| response)
                .and_then(|response| {
                    LoadCounters::parse(&response.body_text())
                        .ok_or_else(|| "GET /: no `http connections` line".to_owned())
                })
        };
        let step = Step {
            connections,
            wrk,
            guest,
        };
        println!("  {}", step_summary(&step));
        configuration.steps.push(step);
    }
    match peer {
        None => match boot.power_off(REQUEST_TIMEOUT, POWER_OFF_WITHIN) {
            Ok(run) => {
                configuration.problems.extend(served::judge_power_off(
                    &run.response,
                    &run.finished,
                    &run.ending,
                ));
                configuration.problems.extend(run.log_problems);
            }
            Err(error) => configuration.problems.push(format!("{error:#}")),
        },
        Some(peer) => {
            let (method, path) = &peer.guest.power_off;
            match boot.power_off_with((method, path), REQUEST_TIMEOUT, PEER_POWER_OFF_WITHIN) {
                Ok(run) => configuration
                    .problems
                    .extend(judge_peer_power_off(&run.finished, PEER_POWER_OFF_WITHIN)),
                Err(error) => configuration.problems.push(format!("{error:#}")),
            }
        }
    }
    configuration
}

/// What a peer step's counters say: only mote has a status page with them.
const NO_PEER_COUNTERS: &str = "not mote: no counters";

/// A peer powers off through ACPI, after which QEMU exits 0 (it has no
/// isa-debug-exit verdict to give); its answer to the request may be lost
/// as it goes down, so only the exit is judged.
fn judge_peer_power_off(finished: &Finished, within: Duration) -> Vec<String> {
    if finished.timed_out {
        return vec![format!(
            "the peer did not power off within {} s of its power-off request and was killed",
            within.as_secs()
        )];
    }
    match finished.exit_code {
        Some(0) => Vec::new(),
        _ => vec![format!(
            "after its power-off request: {}",
            PowerOff::from_exit(finished, within)
        )],
    }
}

fn milliseconds(us: Option<f64>) -> String {
    us.map_or_else(|| "—".to_owned(), |us| format!("{:.2}", us / 1e3))
}

/// One line while the run goes on.
fn step_summary(step: &Step) -> String {
    match &step.wrk {
        Ok(report) => format!(
            "c={}: {:.0} req/s, p50 {} ms, p99 {} ms, {} socket errors",
            step.connections,
            report.requests_per_second,
            milliseconds(report.p50_us),
            milliseconds(report.p99_us),
            report.errors.total()
        ),
        Err(reason) => format!("c={}: {reason}", step.connections),
    }
}

/// The report of a run, from its JSON alone (so `--render` prints the same).
pub(crate) fn render_report(run: &HttpRun) -> String {
    let mut text = String::new();
    let (when, _) = super::table::utc_timestamp(run.started_unix);
    text.push_str(&format!(
        "bench --http, {when}: GET {} over a tap in a network namespace, {} (-t2 at most, --latency, --timeout {} s), {} s per step; {:.0} s in all\n",
        run.path, run.wrk_version, run.wrk_timeout_seconds, run.duration_seconds, run.wall_seconds
    ));
    text.push_str(&format!("host: {}\n", run.machine.describe()));
    text.push_str(&format!("command: {}\n", run.command));
    for configuration in &run.configurations {
        text.push_str(&format!(
            "\n{} ({} {}, {}):\n  {}\n\n",
            configuration.name,
            configuration.vmm,
            configuration.vmm_version,
            configuration.accel,
            configuration.command_line
        ));
        text.push_str(
            "| connections | req/s | p50 ms | p99 ms | max ms | requests | errors connect/read/write/timeout | non-2xx | refused (guest) | peak open | heap low mark | guest cycles/request |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let mut before = Before::default();
        for step in &configuration.steps {
            let (wrk_cells, guest_cells) = step_cells(step, &mut before);
            text.push_str(&format!(
                "| {} | {wrk_cells} | {guest_cells} |\n",
                step.connections
            ));
        }
        for step in &configuration.steps {
            if let Err(reason) = &step.wrk {
                text.push_str(&format!("  c={}: wrk: {reason}\n", step.connections));
            }
            match &step.guest {
                Err(reason) if reason != NO_PEER_COUNTERS => {
                    text.push_str(&format!("  c={}: counters: {reason}\n", step.connections));
                }
                _ => {}
            }
        }
        for problem in &configuration.problems {
            text.push_str(&format!("  problem: {problem}\n"));
        }
    }
    text.push_str(&side_by_side(run));
    text.push_str(
        "\nrefused (guest): SYNs the guest dropped with its pool full during the step (its status page's counter, before and after); \
         peak open: the most connections it held at once since boot; heap low mark: its fewest free heap bytes since boot; \
         guest cycles/request: TSC cycles its service loop was not halted during the step over the requests it answered \
         (under --accel icount, instructions: what a request costs the guest, whatever the host's load) \
         (mote only: a peer has no such counters).\n",
    );
    if !run
        .configurations
        .iter()
        .any(|configuration| !configuration.name.starts_with("mote-"))
    {
        text.push_str(
            "--peer linux drives the Linux peer (cargo xtask peer linux: Debian's kernel, busybox httpd) through the same ladder on each QEMU target.\n",
        );
    }
    text
}

/// Each peer configuration beside mote's of the same VMM and accelerator:
/// req/s, p99 and socket errors per step.
fn side_by_side(run: &HttpRun) -> String {
    let mut text = String::new();
    for peer in &run.configurations {
        let Some((prefix, rest)) = peer.name.split_once('-') else {
            continue;
        };
        if prefix == "mote" {
            continue;
        }
        let mote_name = format!("mote-{rest}");
        let Some(mote) = run
            .configurations
            .iter()
            .find(|configuration| configuration.name == mote_name)
        else {
            continue;
        };
        text.push_str(&format!(
            "\n{mote_name} beside {}:\n\n\
             | connections | mote req/s | {prefix} req/s | mote p99 ms | {prefix} p99 ms | mote errors | {prefix} errors |\n\
             |---|---|---|---|---|---|---|\n",
            peer.name
        ));
        for step in &mote.steps {
            let other = peer
                .steps
                .iter()
                .find(|other| other.connections == step.connections);
            let figures = |step: Option<&Step>| match step.map(|step| &step.wrk) {
                Some(Ok(report)) => (
                    format!("{:.0}", report.requests_per_second),
                    milliseconds(report.p99_us),
                    report.errors.total().to_string(),
                ),
                Some(Err(_)) => ("failed".to_owned(), "—".to_owned(), "—".to_owned()),
                None => ("—".to_owned(), "—".to_owned(), "—".to_owned()),
            };
            let (mote_rate, mote_p99, mote_errors) = figures(Some(step));
            let (peer_rate, peer_p99, peer_errors) = figures(other);
            text.push_str(&format!(
                "| {} | {mote_rate} | {peer_rate} | {mote_p99} | {peer_p99} | {mote_errors} | {peer_errors} |\n",
                step.connections
            ));
        }
    }
    text
}

/// The table cells of one step; `refused_before` carries the guest's
/// refused counter from step to step (it counts from boot).
/// The guest's counters after the previous step (zero before the first).
#[derive(Default)]
struct Before {
    refused: u64,
    requests: u64,
    busy_cycles: u64,
}

fn step_cells(step: &Step, before: &mut Before) -> (String, String) {
    let wrk_cells = match &step.wrk {
        Ok(report) => format!(
            "{:.0} | {} | {} | {} | {} | {}/{}/{}/{} | {}",
            report.requests_per_second,
            milliseconds(report.p50_us),
            milliseconds(report.p99_us),
            milliseconds(report.max_us),
            report.requests,
            report.errors.connect,
            report.errors.read,
            report.errors.write,
            report.errors.timeout,
            report.non_success
        ),
        Err(_) => "failed | — | — | — | — | — | —".to_owned(),
    };
    let guest_cells = match &step.guest {
        Ok(counters) => {
            let refused = counters.refused.saturating_sub(before.refused);
            let requests = counters.requests.saturating_sub(before.requests);
            let per_request = counters.busy_cycles.and_then(|busy| {
                let cycles = busy.saturating_sub(before.busy_cycles);
                before.busy_cycles = busy;
                (requests > 0).then(|| format!("{}", cycles / requests))
            });
            before.refused = counters.refused;
            before.requests = counters.requests;
            format!(
                "{refused} | {} | {} | {}",
                counters.peak,
                counters
                    .heap_low
                    .map_or_else(|| "—".to_owned(), |low| format!("{low} B")),
                per_request.unwrap_or_else(|| "—".to_owned())
            )
        }
        Err(_) => "— | — | — | —".to_owned(),
    };
    (wrk_cells, guest_cells)
}

/// Whether every step has figures (the run fails otherwise).
pub(crate) fn complete(run: &HttpRun) -> bool {
    run.configurations.iter().all(|configuration| {
        configuration.problems.is_empty()
            && !configuration.steps.is_empty()
            && configuration.steps.iter().all(|step| step.wrk.is_ok())
    })
}

/// A run with two good steps and a failed one, for the table and chart tests.
#[cfg(test)]
pub(super) fn sample_run() -> HttpRun {
    use crate::measure::bench::wrk::SocketErrors;
    let report = |rps: f64, timeout| WrkReport {
        requests: (rps * 5.0) as u64,
        seconds: 5.0,
        requests_per_second: rps,
        p50_us: Some(1800.0),
        p99_us: Some(30_000.0),
        max_us: Some(120_000.0),
        errors: SocketErrors {
            timeout,
            ..SocketErrors::default()
        },
        non_success: 0,
    };
    let counters = |refused, peak: u64| LoadCounters {
        open: 0,
        peak,
        sockets: 1008,
        capacity: 1520,
        accepted: 5000,
        requests: 40 * peak,
        refused,
        heap_free: Some(200_000_000),
        heap_low: Some(190_000_000),
        busy_cycles: Some(peak * peak * 1000),
    };
    HttpRun {
        kind: HTTP_RUN_KIND.to_owned(),
        format: HTTP_FORMAT_VERSION,
        started_unix: 1_764_686_400,
        wall_seconds: 30.0,
        command: "cargo xtask bench --http".to_owned(),
        machine: HostMachine {
            hostname: "h".to_owned(),
            cpu_model: "cpu".to_owned(),
            cores: 2,
            kernel: "6.1".to_owned(),
            qemu_version: "QEMU emulator version 7.2.22".to_owned(),
        },
        wrk_version: "wrk 4.1.0".to_owned(),
        path: "/health".to_owned(),
        duration_seconds: 5,
        wrk_timeout_seconds: 2,
        configurations: vec![HttpConfiguration {
            name: configuration_name("mote", VmmKind::Qemu, Accel::Tcg),
            vmm: VmmKind::Qemu,
            vmm_version: "7.2.22".to_owned(),
            accel: Accel::Tcg,
            command_line: "ip netns exec mote-1-0 qemu-system-x86_64 …".to_owned(),
            steps: vec![
                Step {
                    connections: 16,
                    wrk: Ok(report(8000.0, 0)),
                    guest: Ok(counters(2, 16)),
                },
                Step {
                    connections: 1000,
                    wrk: Ok(report(7000.0, 3)),
                    guest: Ok(counters(7, 1000)),
                },
                Step {
                    connections: 1,
                    wrk: Err("wrk: killed".to_owned()),
                    guest: Err("GET /: refused".to_owned()),
                },
            ],
            problems: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_round_trips_and_is_told_from_a_boot_bench() {
        let run = sample_run();
        let text = serde_json::to_string_pretty(&run).unwrap();
        assert_eq!(HttpRun::from_json(&text).unwrap(), Some(run));
        assert_eq!(HttpRun::from_json("{\"format\": 1}").unwrap(), None);
        assert!(HttpRun::from_json("not json").is_err());
    }

    #[test]
    fn the_table_shows_each_step_and_the_refused_of_each_step() {
        let run = sample_run();
        let text = render_report(&run);
        assert!(
            text.contains(
                "| 16 | 8000 | 1.80 | 30.00 | 120.00 | 40000 | 0/0/0/0 | 0 | 2 | 16 | 190000000 B | 400 |"
            ),
            "{text}"
        );
        // The guest's counters are since boot: 7 - 2 refused in the second
        // step, and (10^9 - 256 000) busy cycles over 40 000 - 640 requests.
        assert!(
            text.contains(
                "| 1000 | 7000 | 1.80 | 30.00 | 120.00 | 35000 | 0/0/0/3 | 0 | 5 | 1000 | 190000000 B | 25400 |"
            ),
            "{text}"
        );
        assert!(text.contains("c=1: wrk: wrk: killed"), "{text}");
        assert!(
            text.contains("--peer linux drives the Linux peer"),
            "{text}"
        );
        assert!(!complete(&run));
        // Rendering is a function of the JSON alone.
        let again = HttpRun::from_json(&serde_json::to_string(&run).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(render_report(&again), text);
    }

    #[test]
    fn a_peer_ladder_is_shown_beside_motes_without_counters() {
        let mut run = sample_run();
        let mut peer = run.configurations[0].clone();
        peer.name = configuration_name("linux", VmmKind::Qemu, Accel::Tcg);
        for step in &mut peer.steps {
            step.guest = Err(NO_PEER_COUNTERS.to_owned());
        }
        peer.steps[0].wrk = Ok(WrkReport {
            requests_per_second: 120.0,
            p99_us: Some(1_900_000.0),
            ..peer.steps[1].wrk.clone().unwrap()
        });
        peer.steps.truncate(2);
        run.configurations.push(peer);
        let text = render_report(&run);
        assert!(
            text.contains("mote-qemu-tcg-http beside linux-qemu-tcg-http:"),
            "{text}"
        );
        assert!(
            text.contains("| 16 | 8000 | 120 | 30.00 | 1900.00 | 0 | 3 |"),
            "{text}"
        );
        // Mote's failed step, and a step the peer never ran.
        assert!(
            text.contains("| 1 | failed | — | — | — | — | — |"),
            "{text}"
        );
        assert!(!text.contains("counters: not mote"), "{text}");
        assert!(!text.contains("--peer linux drives"), "{text}");
    }
}
