//! A network namespace xtask creates for one served boot and removes
//! itself: a tap device inside it with the host's address, the VMM started
//! in it (`ip netns exec`), and the host-side client run on a thread that
//! joined it (`setns(2)`). Needs root. Removed when the guard drops (every
//! return, error, timeout and panic), on Ctrl-C, and, if xtask was killed,
//! by the sweep the next run does at its start.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::process;

/// The prefix of every namespace xtask makes: `mote-<pid>-<n>`.
const PREFIX: &str = "mote-";
/// The tap device inside the namespace.
pub(crate) const TAP_NAME: &str = "tap0";
/// The host's address on the tap: the guest's gateway and the only client
/// its `POST /poweroff` accepts (see `cmdline::STATIC_IP_PARAMETER`).
const HOST_ADDRESS: &str = "10.0.2.2/24";
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Namespaces alive now and the VMMs running in them, for the Ctrl-C handler.
static LIVE: Mutex<Vec<(String, Vec<u32>)>> = Mutex::new(Vec::new());

/// One namespace with a configured tap; deleted on drop.
#[derive(Debug)]
pub(crate) struct TapNamespace {
    name: String,
}

fn ip(arguments: &[&str]) -> Result<String> {
    process::query(Command::new("ip").args(arguments), IP_TIMEOUT)
}

impl TapNamespace {
    /// Creates `mote-<pid>-<n>` with `tap0` at 10.0.2.2/24, up.
    pub(crate) fn create() -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        install_interrupt_cleanup();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]).context("creating a network namespace (needs root)")?;
        lock_live().push((name.clone(), Vec::new()));
        let namespace = Self { name };
        let name = namespace.name.as_str();
        for step in [
            &["-n", name, "tuntap", "add", TAP_NAME, "mode", "tap"][..],
            &["-n", name, "addr", "add", HOST_ADDRESS, "dev", TAP_NAME],
            &["-n", name, "link", "set", TAP_NAME, "up"],
            &["-n", name, "link", "set", "lo", "up"],
        ] {
            ip(step).with_context(|| format!("ip {}", step.join(" ")))?;
        }
        Ok(namespace)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Records the VMM started in the namespace, so that Ctrl-C kills it
    /// before removing the namespace (its guard is not dropped then).
    pub(crate) fn adopt(&self, pid: u32) {
        if let Some((_, pids)) = lock_live().iter_mut().find(|(name, _)| *name == self.name) {
            pids.push(pid);
        }
    }

    /// `command` run inside the namespace: `ip netns exec <name> program args…`,
    /// with its environment and directory (the PID is the program's: `ip` execs it).
    pub(crate) fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(directory) = command.get_current_dir() {
            wrapped.current_dir(directory);
        }
        wrapped
    }

    /// Runs `work` on a thread that joined the namespace (so its sockets,
    /// and those of threads it starts, live there).
    pub(crate) fn run_inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> Result<T> {
                    // SAFETY: `handle` is an open namespace file; setns only
                    // changes this thread's network namespace.
                    let status = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    if status != 0 {
                        bail!("setns({path}): {}", std::io::Error::last_os_error());
                    }
                    Ok(work())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for TapNamespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
        lock_live().retain(|(name, _)| *name != self.name);
    }
}

fn lock_live() -> std::sync::MutexGuard<'static, Vec<(String, Vec<u32>)>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// On Ctrl-C (SIGINT, also SIGTERM): kill the VMMs in live namespaces,
/// delete the namespaces, then exit as SIGINT would (130). Other children
/// share the terminal's process group and got the same SIGINT.
fn install_interrupt_cleanup() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            for (name, pids) in lock_live().drain(..) {
                for pid in pids {
                    // SAFETY: kill(2) only sends a signal; the PID is a child
                    // we started and have not reaped (its guard still lives).
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                let _ = ip(&["netns", "delete", &name]);
            }
            eprintln!("xtask: interrupted; network namespaces removed");
            std::process::exit(130);
        });
    });
}

/// The PID in a namespace name xtask made, if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, counter) = rest.split_once('-')?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Deletes `mote-<pid>-*` namespaces whose xtask no longer runs (it was
/// killed before its guards ran), after killing the VMMs still in them
/// (`ip netns pids`): their xtask cannot. Returns how many were removed.
pub(crate) fn sweep_stale() -> usize {
    let Ok(list) = ip(&["netns", "list"]) else {
        return 0;
    };
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            owner_pid(name)
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .filter(|name| {
            let orphans = ip(&["netns", "pids", name]).unwrap_or_default();
            for pid in orphans
                .lines()
                .filter_map(|line| line.trim().parse::<i32>().ok())
            {
                // SAFETY: kill(2) only sends a signal, to a process inside a
                // namespace a dead xtask made for its VMM.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            ip(&["netns", "delete", name]).is_ok()
        })
        .count()
}

/// Whether namespaces can be made here (root with `ip`).
pub(crate) fn available() -> Result<(), String> {
    let uid = process::query(Command::new("id").arg("-u"), IP_TIMEOUT).unwrap_or_default();
    if uid != "0" {
        return Err("tap networking needs root (ip netns add)".to_owned());
    }
    if crate::env::workspace::find_on_path("ip").is_none() {
        return Err("tap networking needs `ip` (apt-get install iproute2)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_xtask_made_have_an_owner() {
        assert_eq!(owner_pid("mote-1234-0"), Some(1234));
        assert_eq!(owner_pid("mote-1234-x"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
        assert_eq!(owner_pid("mote-abc-1"), None);
    }

    #[test]
    fn wraps_a_command_in_ip_netns_exec() {
        let namespace = TapNamespace {
            name: "mote-test-never-created".to_owned(),
        };
        let mut command = Command::new("firecracker");
        command.args(["--no-api"]).env("A", "b").current_dir("/tmp");
        let wrapped = namespace.wrap(&command);
        let arguments: Vec<_> = wrapped
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            arguments,
            [
                "netns",
                "exec",
                "mote-test-never-created",
                "firecracker",
                "--no-api"
            ]
        );
        assert_eq!(
            wrapped.get_current_dir(),
            Some(std::path::Path::new("/tmp"))
        );
        // Dropping deletes it with `ip`; deleting a namespace that never existed just fails.
        std::mem::forget(namespace);
    }
}
