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
}

/// The accelerator a VM runs with (as bench results record it, too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
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
