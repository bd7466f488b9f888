//! Which accelerator a VM runs under: the user's choice and, for `auto`, a
//! probe boot that decides whether KVM really works here.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::cmdline::READY_CMDLINE;
use super::power_off::PowerOff;
use super::vmm::qemu::{Machine, QemuCommand};

/// The accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AccelChoice {
    /// KVM if /dev/kvm is usable and a probe boot succeeds, else TCG.
    Auto,
    /// KVM (`-cpu host,+invtsc,-arch-capabilities`).
    Kvm,
    /// QEMU's emulator (`-cpu max`); works everywhere.
    Tcg,
    /// TCG counting instructions (`-icount shift=0,sleep=off`, the kernel
    /// told `tsc_early_khz=1000000`): one guest instruction is one TSC tick
    /// and one nanosecond, so every figure is exact and repeats.
    Icount,
}

/// The accelerator a VM runs with (as bench results record it, too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Accel {
    Kvm,
    Tcg,
    /// TCG with QEMU's instruction counting ([`ICOUNT_ARGUMENTS`]).
    Icount,
}

/// QEMU's instruction counting: `shift=0` advances the virtual clock 2^0 ns
/// per guest instruction, `sleep=off` lets it jump over idle time instead
/// of waiting for the host's (QEMU `qemu-options.hx`, `-icount`). It needs
/// TCG; QEMU then runs one vCPU thread.
pub(crate) const ICOUNT_ARGUMENTS: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// Under icount the guest's TSC reads the virtual clock in nanoseconds
/// (QEMU `softmmu/cpu-timers.c`, `cpu_get_ticks`: `icount_get()`), so it
/// ticks at exactly 1 GHz; the kernel is told so as Linux is, which spares
/// it the PIT calibration (a PIT-calibrated boot measured 1 000 024 421 Hz).
pub(crate) const ICOUNT_TSC_EARLY_KHZ: &str = "tsc_early_khz=1000000";

impl Accel {
    /// The kernel command line with what this accelerator adds: under
    /// icount, [`ICOUNT_TSC_EARLY_KHZ`] last, so it overrides any earlier
    /// one (Linux and mote take the last).
    pub(crate) fn kernel_cmdline(self, cmdline: &str) -> String {
        match self {
            Accel::Icount if cmdline.is_empty() => ICOUNT_TSC_EARLY_KHZ.to_owned(),
            Accel::Icount => format!("{cmdline} {ICOUNT_TSC_EARLY_KHZ}"),
            Accel::Kvm | Accel::Tcg => cmdline.to_owned(),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Icount => "icount",
        })
    }
}

/// How long the KVM probe boot may take.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Turns the user's choice into an accelerator. `Auto` probes KVM once per
/// process by booting `kernel` with `mote.exit=ready`: a nested KVM may open
/// /dev/kvm and still fail to run a guest, so the device alone proves nothing.
pub(crate) fn resolve(choice: AccelChoice, kernel: &Path) -> Accel {
    static AUTO: OnceLock<Accel> = OnceLock::new();
    match choice {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Icount => Accel::Icount,
        AccelChoice::Auto => *AUTO.get_or_init(|| {
            let (accel, reason) = probe_kvm(kernel);
            println!("xtask: --accel auto chose {accel}: {reason}");
            accel
        }),
    }
}

fn probe_kvm(kernel: &Path) -> (Accel, String) {
    if OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (
            Accel::Tcg,
            "/dev/kvm is not readable and writable".to_owned(),
        );
    }
    let probe = QemuCommand::new(Machine::MicrovmNoAcpi, Accel::Kvm, kernel).append(READY_CMDLINE);
    match probe.run(KVM_PROBE_TIMEOUT, false) {
        Ok(finished) => match PowerOff::from_exit(&finished, KVM_PROBE_TIMEOUT) {
            PowerOff::Success => (
                Accel::Kvm,
                format!(
                    "a probe boot under KVM succeeded in {:.2} s",
                    finished.elapsed.as_secs_f64()
                ),
            ),
            outcome => {
                let detail = finished
                    .stderr
                    .last()
                    .map(|line| format!(" ({line})"))
                    .unwrap_or_default();
                (
                    Accel::Tcg,
                    format!("a probe boot under KVM failed: {outcome}{detail}"),
                )
            }
        },
        Err(error) => (
            Accel::Tcg,
            format!("could not start the KVM probe: {error:#}"),
        ),
    }
}
