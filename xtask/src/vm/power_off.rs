//! How a boot ended, read from QEMU's exit status: the `isa-debug-exit`
//! statuses of the boot crate's protocol (`protocol::exit`), which the
//! kernel and the null guest power off through. Other VMMs exit 0 whatever
//! the guest's verdict; `vm::vmm` reads theirs from the report.

use std::fmt;
use std::time::Duration;

use mote_boot::protocol::exit::Status;

use super::process::Finished;

/// How the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PowerOff {
    /// isa-debug-exit with the success value.
    Success,
    /// isa-debug-exit with the failure value.
    Failure,
    /// Anything else: another exit code, a signal, or our timeout.
    Abnormal(String),
}

impl PowerOff {
    pub(crate) fn from_exit(finished: &Finished, timeout: Duration) -> Self {
        if finished.timed_out {
            return PowerOff::Abnormal(format!(
                "QEMU did not exit within {} s and was killed",
                timeout.as_secs_f64()
            ));
        }
        let success = Status::Success.qemu_exit_code();
        let failure = Status::Failure.qemu_exit_code();
        match finished.exit_code {
            Some(code) => match Status::from_qemu_exit_code(code) {
                Some(Status::Success) => PowerOff::Success,
                Some(Status::Failure) => PowerOff::Failure,
                None if code == 0 => PowerOff::Abnormal(format!(
                    "QEMU exited with code 0, not {success} (kernel success) or \
                     {failure} (kernel failure): an ACPI power-off, a triple \
                     fault under -no-reboot, or QEMU told to quit"
                )),
                None => PowerOff::Abnormal(format!(
                    "QEMU exited with code {code}, which is neither {success} \
                     (kernel success) nor {failure} (kernel failure)"
                )),
            },
            None => PowerOff::Abnormal(match finished.signal {
                Some(signal) => format!("QEMU was killed by signal {signal}"),
                None => "QEMU ended without an exit code".to_owned(),
            }),
        }
    }

    pub(crate) fn is_success(&self) -> bool {
        *self == PowerOff::Success
    }
}

impl fmt::Display for PowerOff {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // QEMU's exit status (isa-debug-exit) or, on another VMM, the
            // `mote: poweroff` line said so.
            PowerOff::Success => formatter.write_str("kernel powered off with success"),
            PowerOff::Failure => formatter.write_str("kernel powered off with failure"),
            PowerOff::Abnormal(reason) => formatter.write_str(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(exit_code: Option<i32>, timed_out: bool) -> Finished {
        Finished {
            exit_code,
            timed_out,
            signal: if exit_code.is_none() { Some(9) } else { None },
            ..Finished::default()
        }
    }

    #[test]
    fn maps_debug_exit_codes() {
        let timeout = Duration::from_secs(30);
        assert_eq!(
            PowerOff::from_exit(
                &finished(Some(Status::Success.qemu_exit_code()), false),
                timeout
            ),
            PowerOff::Success
        );
        assert_eq!(
            PowerOff::from_exit(
                &finished(Some(Status::Failure.qemu_exit_code()), false),
                timeout
            ),
            PowerOff::Failure
        );
        for (code, timed_out, expected) in [
            (Some(0), false, "code 0"),
            (Some(1), false, "code 1"),
            (None, false, "signal 9"),
            (None, true, "within 30 s"),
        ] {
            match PowerOff::from_exit(&finished(code, timed_out), timeout) {
                PowerOff::Abnormal(reason) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("{code:?} mapped to {other:?}"),
            }
        }
    }
}
