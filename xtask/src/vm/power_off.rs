//! How a boot ended, read from QEMU's exit status: the `isa-debug-exit`
//! protocol the kernel and the null guest power off through.

use std::fmt;
use std::time::Duration;

use super::process::Finished;

/// QEMU's exit status for a write of `value` to isa-debug-exit is
/// `(value << 1) | 1` (hw/misc/debugexit.c). The kernel writes 0x10 for
/// success and 0x11 for failure.
pub(crate) const DEBUG_EXIT_SUCCESS: i32 = (0x10 << 1) | 1;
const DEBUG_EXIT_FAILURE: i32 = (0x11 << 1) | 1;

/// How the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PowerOff {
    /// isa-debug-exit with the success value (QEMU exit 33).
    Success,
    /// isa-debug-exit with the failure value (QEMU exit 35).
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
        match finished.exit_code {
            Some(DEBUG_EXIT_SUCCESS) => PowerOff::Success,
            Some(DEBUG_EXIT_FAILURE) => PowerOff::Failure,
            Some(0) => PowerOff::Abnormal(format!(
                "QEMU exited with code 0, not {DEBUG_EXIT_SUCCESS} (kernel success) or \
                 {DEBUG_EXIT_FAILURE} (kernel failure): an ACPI power-off, a triple \
                 fault under -no-reboot, or QEMU told to quit"
            )),
            Some(code) => PowerOff::Abnormal(format!(
                "QEMU exited with code {code}, which is neither {DEBUG_EXIT_SUCCESS} \
                 (kernel success) nor {DEBUG_EXIT_FAILURE} (kernel failure)"
            )),
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
            PowerOff::Success => write!(
                formatter,
                "kernel powered off with success (QEMU exit {DEBUG_EXIT_SUCCESS})"
            ),
            PowerOff::Failure => write!(
                formatter,
                "kernel powered off with failure (QEMU exit {DEBUG_EXIT_FAILURE})"
            ),
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
            PowerOff::from_exit(&finished(Some(33), false), timeout),
            PowerOff::Success
        );
        assert_eq!(
            PowerOff::from_exit(&finished(Some(35), false), timeout),
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
