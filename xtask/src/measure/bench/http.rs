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
use crate::vm::process::{self, Output};
use crate::vm::served::{self, ServedBoot, ServedNetwork, ServedVm};
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
}

fn configuration_name(vmm: VmmKind, accel: Accel) -> String {
    format!("mote-{vmm}-{accel}-http")
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
    let configurations = plan
        .targets
        .iter()
        .map(|(vmm, accel)| run_ladder(plan, vmm, *accel))
        .collect();
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

fn run_ladder(plan: &HttpPlan, vmm: &Vmm, accel: Accel) -> HttpConfiguration {
    let name = configuration_name(vmm.kind, accel);
    println!("bench --http: {name}: booting");
    let vm = ServedVm {
        vmm: vmm.clone(),
        machine: Machine::MicrovmNoAcpi,
        accel,
        network: ServedNetwork::Tap,
    };
    let per_step = plan.duration + WRK_GRACE + SETTLE + REQUEST_TIMEOUT;
    let timeout = LISTEN_WITHIN + per_step * plan.ladder.len() as u32 + POWER_OFF_WITHIN;
    let cmdline = cmdline::served_cmdline(STATIC_IP_PARAMETER);
    let mut configuration = HttpConfiguration {
        name,
        vmm: vmm.kind,
        vmm_version: vmm.version.clone(),
        accel,
        command_line: String::new(),
        steps: Vec::new(),
        problems: Vec::new(),
    };
    let mut boot = match ServedBoot::start(&vm, &plan.kernel, &cmdline, timeout, LISTEN_WITHIN) {
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
        let guest = boot
            .reachable(|_| http_client::get(address, "/", REQUEST_TIMEOUT))
            .map_err(|error| format!("{error:#}"))
            .and_then(|response| response)
            .and_then(|response| {
                LoadCounters::parse(&response.body_text())
                    .ok_or_else(|| "GET /: no `http connections` line".to_owned())
            });
        let step = Step {
            connections,
            wrk,
            guest,
        };
        println!("  {}", step_summary(&step));
        configuration.steps.push(step);
    }
    match boot.power_off(REQUEST_TIMEOUT, POWER_OFF_WITHIN) {
        Ok(run) => {
            configuration.problems.extend(served::judge_power_off(
                &run.response,
                &run.finished,
                &run.ending,
            ));
            configuration.problems.extend(run.log_problems);
        }
        Err(error) => configuration.problems.push(format!("{error:#}")),
    }
    configuration
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
            "| connections | req/s | p50 ms | p99 ms | max ms | requests | errors connect/read/write/timeout | non-2xx | refused (guest) | peak open | heap low mark |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let mut refused_before = 0;
        for step in &configuration.steps {
            let (wrk_cells, guest_cells) = step_cells(step, &mut refused_before);
            text.push_str(&format!(
                "| {} | {wrk_cells} | {guest_cells} |\n",
                step.connections
            ));
        }
        for step in &configuration.steps {
            if let Err(reason) = &step.wrk {
                text.push_str(&format!("  c={}: wrk: {reason}\n", step.connections));
            }
            if let Err(reason) = &step.guest {
                text.push_str(&format!("  c={}: counters: {reason}\n", step.connections));
            }
        }
        for problem in &configuration.problems {
            text.push_str(&format!("  problem: {problem}\n"));
        }
    }
    text.push_str(
        "\nrefused (guest): SYNs the guest dropped with its pool full during the step (its status page's counter, before and after); \
         peak open: the most connections it held at once since boot; heap low mark: its fewest free heap bytes since boot.\n\
         No Linux peer column: the Linux peer (cargo xtask peer linux) is timed to its first 200 by bench --peer linux, not yet loaded by wrk here.\n",
    );
    text
}

/// The table cells of one step; `refused_before` carries the guest's
/// refused counter from step to step (it counts from boot).
fn step_cells(step: &Step, refused_before: &mut u64) -> (String, String) {
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
            let refused = counters.refused.saturating_sub(*refused_before);
            *refused_before = counters.refused;
            format!(
                "{refused} | {} | {}",
                counters.peak,
                counters
                    .heap_low
                    .map_or_else(|| "—".to_owned(), |low| format!("{low} B"))
            )
        }
        Err(_) => "— | — | —".to_owned(),
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
    let counters = |refused, peak| LoadCounters {
        open: 0,
        peak,
        sockets: 1008,
        capacity: 1520,
        accepted: 5000,
        requests: 40000,
        refused,
        heap_free: Some(200_000_000),
        heap_low: Some(190_000_000),
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
            name: configuration_name(VmmKind::Qemu, Accel::Tcg),
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
                "| 16 | 8000 | 1.80 | 30.00 | 120.00 | 40000 | 0/0/0/0 | 0 | 2 | 16 | 190000000 B |"
            ),
            "{text}"
        );
        // The guest's counter is since boot: 7 - 2 in the second step.
        assert!(
            text.contains(
                "| 1000 | 7000 | 1.80 | 30.00 | 120.00 | 35000 | 0/0/0/3 | 0 | 5 | 1000 |"
            ),
            "{text}"
        );
        assert!(text.contains("c=1: wrk: wrk: killed"), "{text}");
        assert!(text.contains("No Linux peer column"), "{text}");
        assert!(!complete(&run));
        // Rendering is a function of the JSON alone.
        let again = HttpRun::from_json(&serde_json::to_string(&run).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(render_report(&again), text);
    }
}
