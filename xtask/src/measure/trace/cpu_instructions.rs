//! `cargo xtask trace --cpu-instructions`: the instructions each vCPU
//! executed from its first one to the ready line, counted by QEMU itself.
//! Under icount the guest's TSC counts the instructions of every vCPU as
//! one clock (the vCPUs take turns on one thread, and the clock also jumps
//! while they wait), so with several CPUs a span's ticks are not its CPU's
//! instructions. TCG with one instruction per block and `-d exec,nochain`
//! logs each instruction a vCPU executes as `Trace <cpu>: …`; the log
//! goes to the same file as the memory-region trace, in order, so the ready
//! line's first byte to the serial port (the first byte mote writes there:
//! everything before ready is buffered) cuts it.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::exits;
use crate::env::workspace;
use crate::vm::vmm::Vmm;
use crate::vm::vmm::qemu::QemuCommand;

/// The ready line's first byte, `m` of `mote: ready`. (Before it the
/// serial port is only programmed: its divisor latch, also at the data
/// register's address, is written with 1, 3 or 12, never this.)
const READY_FIRST_BYTE: u64 = b'm' as u64;

/// What the log says up to the ready line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuInstructions {
    /// Instructions per vCPU index before the boot CPU reached the kernel's
    /// PVH entry: the firmware's (SeaBIOS also wakes the APs to count them).
    pub(crate) firmware: BTreeMap<u32, u64>,
    /// Instructions per vCPU index from the PVH entry to the ready line.
    pub(crate) kernel: BTreeMap<u32, u64>,
    /// The boot CPU reached the entry.
    pub(crate) entered: bool,
    /// The ready line's first byte was seen (else the counts run to the
    /// log's end).
    pub(crate) cut: bool,
}

impl CpuInstructions {
    pub(crate) fn kernel_total(&self) -> u64 {
        self.kernel.values().sum()
    }

    pub(crate) fn firmware_total(&self) -> u64 {
        self.firmware.values().sum()
    }
}

/// One `Trace <cpu>: <host pointer> [<cs base>/<pc>/<flags>/<cflags>] <symbol>`
/// line (QEMU `accel/tcg/cpu-exec.c`, `log_cpu_exec`): the CPU index and
/// the guest PC.
fn parse_exec_line(line: &[u8]) -> Option<(u32, Option<u64>)> {
    let line = std::str::from_utf8(line.strip_prefix(b"Trace ")?).ok()?;
    let (cpu, rest) = line.split_once(':')?;
    if cpu.is_empty() || !cpu.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let pc = rest
        .split_once('[')
        .and_then(|(_, fields)| fields.split('/').nth(1))
        .and_then(|pc| u64::from_str_radix(pc, 16).ok());
    Some((cpu.parse().ok()?, pc))
}

/// Counts `Trace <cpu>:` lines per CPU, split at the boot CPU's first
/// instruction at `entry` (the PVH entry point), until the first write of
/// [`READY_FIRST_BYTE`] to the data register of the device named `serial`
/// (QEMU prints the ISA port, 0x3f8 for COM1; an 8-byte aligned address
/// is the data register of any 16550).
pub(crate) fn count(log: impl BufRead, entry: u64) -> Result<CpuInstructions> {
    let mut counts = CpuInstructions::default();
    for line in log.split(b'\n') {
        let line = line?;
        if let Some((cpu, pc)) = parse_exec_line(&line) {
            if !counts.entered && cpu == 0 && pc == Some(entry) {
                counts.entered = true;
            }
            let side = if counts.entered {
                &mut counts.kernel
            } else {
                &mut counts.firmware
            };
            *side.entry(cpu).or_insert(0) += 1;
        } else if is_ready_byte(&line) {
            counts.cut = true;
            break;
        }
    }
    Ok(counts)
}

fn is_ready_byte(line: &[u8]) -> bool {
    std::str::from_utf8(line)
        .ok()
        .and_then(exits::parse_ops_line)
        .is_some_and(|ops| {
            ops.write
                && ops.name == "serial"
                && ops.addr.is_some_and(|addr| addr % 8 == 0)
                && ops.value == Some(READY_FIRST_BYTE)
        })
}

/// Boots `qemu` (a command of mote under `--accel icount`, which must
/// power off after ready) once under QEMU's instruction log and counts each
/// vCPU's instructions; `vmm` is the QEMU it runs, `kernel` the ELF it
/// boots (for its PVH entry).
pub(crate) fn count_boot(
    qemu: QemuCommand,
    vmm: &Vmm,
    kernel: &Path,
    timeout: Duration,
) -> Result<CpuInstructions> {
    let entry = fs::read(kernel)
        .with_context(|| format!("reading {}", kernel.display()))
        .and_then(|elf| crate::peer::pvh_entry(&elf).map_err(anyhow::Error::msg))?;
    let path = log_path();
    fs::create_dir_all(workspace::target_dir())?;
    let _ = fs::remove_file(&path);
    // One instruction per translation block, so each is logged. QEMU 8.1
    // moved -singlestep into the accelerator (`-accel tcg,one-insn-per-tb=on`).
    let mut version = vmm.version.split('.').map(str::parse::<u32>);
    let old_qemu = matches!(
        (version.next(), version.next()),
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) < (8, 1)
    );
    let mut qemu = if old_qemu {
        qemu.args(["-singlestep"])
    } else {
        qemu.accel_options("one-insn-per-tb=on")
    };
    qemu = qemu.args([
        "-d",
        "exec,nochain",
        "-trace",
        "memory_region_ops_write",
        "-D",
        &path.display().to_string(),
    ]);
    // QEMU logs every instruction (some 70 MB a second): the log is a FIFO
    // counted as it is written, never a file on disk.
    make_fifo(&path)?;
    let counter = {
        let path = path.clone();
        std::thread::spawn(move || -> Result<CpuInstructions> {
            let log =
                fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut log = std::io::BufReader::with_capacity(1 << 20, log);
            let counts = count(&mut log, u64::from(entry))?;
            if counts.cut {
                // Nothing after ready is counted, and work after it (a
                // disk's verify) would take minutes under the log.
                kill_writers(&path);
            }
            // Drain the rest so QEMU never blocks on a full pipe.
            std::io::copy(&mut log, &mut std::io::sink())?;
            Ok(counts)
        })
    };
    println!("{}", qemu.command_line());
    let finished = qemu.run(timeout, false);
    // The guest has stopped, so QEMU has closed the log. If QEMU never
    // opened it (it failed first), the thread still waits in open():
    // opening the write end and closing it releases it with an empty log.
    if !counter.is_finished() {
        drop(fs::OpenOptions::new().write(true).open(&path));
    }
    let counts = counter
        .join()
        .map_err(|_| anyhow::anyhow!("the instruction counter panicked"));
    let _ = fs::remove_file(&path);
    let finished = finished?;
    let counts = counts??;
    // Killed at the ready line when it was reached; else how it ended.
    let ending = vmm.ending(&finished, timeout);
    if !counts.cut && !ending.is_success() {
        for line in finished.tail(30) {
            eprintln!("  | {line}");
        }
        bail!("the counted boot failed: {ending}");
    }
    if !counts.entered {
        bail!("QEMU's log never shows the boot CPU at the PVH entry {entry:#x}");
    }
    if !counts.cut {
        bail!("QEMU's log has no write of the ready line to the serial port");
    }
    Ok(counts)
}

/// Kills every other process with `path` open: the QEMU writing the log.
fn kill_writers(path: &Path) {
    let own = std::process::id().to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return;
    };
    for process in processes.flatten() {
        let name = process.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|pid| *pid != own)
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(descriptors) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        if descriptors
            .flatten()
            .any(|descriptor| fs::read_link(descriptor.path()).is_ok_and(|target| target == path))
        {
            // SAFETY: kill(2) on a pid; the worst case is a process that
            // just exited.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn make_fifo(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(name.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("making the FIFO {}", path.display()));
    }
    Ok(())
}

/// This process's FIFO (a trace and a bench may run side by side).
fn log_path() -> PathBuf {
    workspace::target_dir().join(format!("cpu-instructions-{}.fifo", std::process::id()))
}

/// The table: one row per vCPU, and the sum.
pub(crate) fn table(counts: &CpuInstructions) -> String {
    let mut out = String::from(
        "| vCPU | firmware, before the PVH entry | kernel, entry to ready |\n|---|---|---|\n",
    );
    let cpus: std::collections::BTreeSet<u32> = counts
        .firmware
        .keys()
        .chain(counts.kernel.keys())
        .copied()
        .collect();
    for cpu in cpus {
        let role = if cpu == 0 { " (boot CPU)" } else { "" };
        let of = |side: &BTreeMap<u32, u64>| side.get(&cpu).copied().unwrap_or(0);
        out.push_str(&format!(
            "| {cpu}{role} | {} | {} |\n",
            of(&counts.firmware),
            of(&counts.kernel)
        ));
    }
    out.push_str(&format!(
        "| all | {} | {} |\n",
        counts.firmware_total(),
        counts.kernel_total()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL_M: &str =
        "memory_region_ops_write cpu 0 mr 0x55d1 addr 0x3f8 value 0x6d size 1 name 'serial'";

    #[test]
    fn counts_each_cpu_from_the_entry_up_to_the_ready_byte() {
        let log = [
            "Trace 0: 0x7f00 [00000000/00000000000fe05b/00000000/00000000] firmware",
            "Trace 1: 0x7f00 [00000000/00000000000f0000/00000000/00000000] firmware",
            // Another CPU at the entry's address does not cut.
            "Trace 1: 0x7f00 [00000000/0000000000100000/00000000/00000000]",
            "Trace 0: 0x7f00 [00000000/0000000000100000/00000000/00000000] pvh_entry",
            "Trace 0: 0x7f01 [00000000/0000000000100003/00000000/00000000]",
            "memory_region_ops_write cpu 0 mr 0x55d1 addr 0x3f8 value 0x3 size 1 name 'serial'",
            // The interrupt-enable register, written with `m`'s value: no cut.
            "memory_region_ops_write cpu 0 mr 0x55d1 addr 0x3f9 value 0x6d size 1 name 'serial'",
            "Trace 1: 0x7f02 [00000000/000000000009e000/00000000/00000000]",
            "Trace 12: 0x7f03 [00000000/000000000009e000/00000000/00000000]",
            SERIAL_M,
            "Trace 0: 0x7f04 [00000000/0000000000100006/00000000/00000000]",
        ]
        .join("\n");
        let counts = count(log.as_bytes(), 0x10_0000).unwrap();
        assert!(counts.entered && counts.cut);
        assert_eq!(counts.firmware, BTreeMap::from([(0, 1), (1, 2)]));
        assert_eq!(counts.kernel, BTreeMap::from([(0, 2), (1, 1), (12, 1)]));
        assert_eq!((counts.firmware_total(), counts.kernel_total()), (3, 4));
        let table = table(&counts);
        assert!(table.contains("| 0 (boot CPU) | 1 | 2 |"), "{table}");
        assert!(table.contains("| 12 | 0 | 1 |"), "{table}");
        assert!(table.contains("| all | 3 | 4 |"), "{table}");
    }

    #[test]
    fn garbage_is_not_counted_and_a_log_without_ready_is_not_cut() {
        let log = "Trace x: 1\nTrace : 2\nTrace 3 4\nTrace -1: [0/100000/0/0]\nmemory_region_ops_write addr 0x3f8 value 0x6d size 1 name 'serial2'\nmemory_region_ops_read cpu 0 mr 0x1 addr 0x3f8 value 0x6d size 1 name 'serial'\n\u{fffd}\n";
        let counts = count(log.as_bytes(), 0x10_0000).unwrap();
        assert!(!counts.cut && !counts.entered);
        assert!(counts.kernel.is_empty() && counts.firmware.is_empty());
    }

    #[test]
    fn a_line_without_a_pc_still_counts() {
        let counts = count("Trace 0: 0x7f00 [garbage]\n".as_bytes(), 0).unwrap();
        assert_eq!(counts.firmware, BTreeMap::from([(0, 1)]));
    }
}
