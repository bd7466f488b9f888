//! Child processes that can neither hang xtask nor outlive it.
//!
//! Every child runs under a hard timeout (polled with `try_wait`, then killed
//! and reaped) and inside a [`ChildGuard`] that kills it on drop, which a
//! panic unwinds through too. Ctrl-C in a terminal reaches QEMU directly
//! (same process group), and QEMU quits on SIGINT.
//!
//! Output is read on one thread per pipe; the threads end at end-of-file,
//! which the kernel delivers when the child dies, and the waiting side gives
//! them a short grace period instead of joining them, so a pipe inherited by
//! some grandchild cannot hang us either.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often the runner checks whether the child has exited.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long to wait for the output pipes to reach end-of-file after the child exited.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Owns a running child and kills (then reaps) it when dropped.
pub(crate) struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl ChildGuard {
    pub(crate) fn spawn(command: &mut Command) -> io::Result<Self> {
        let child = command.spawn()?;
        Ok(Self {
            child,
            reaped: false,
        })
    }

    fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.mark_reaped();
        }
        Ok(status)
    }

    fn kill_and_wait(&mut self) -> io::Result<ExitStatus> {
        // `kill` fails only if the child already exited; `wait` reaps it either way.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.mark_reaped();
        Ok(status)
    }

    fn mark_reaped(&mut self) {
        self.reaped = true;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.kill_and_wait();
        }
    }
}

/// What to do with the child's stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Share the terminal (for cargo and apt-get progress).
    Inherit,
    /// Capture line by line; with `echo`, also copy each line to our stdout/stderr as it arrives.
    Capture { echo: bool },
}

/// How a child ended and what it printed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finished {
    pub(crate) stdout: Vec<String>,
    pub(crate) stderr: Vec<String>,
    /// The exit code, `None` if the child was ended by a signal.
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended the child, if any.
    pub(crate) signal: Option<i32>,
    pub(crate) elapsed: Duration,
    /// The child was killed because it ran past its timeout.
    pub(crate) timed_out: bool,
}

impl Finished {
    pub(crate) fn succeeded(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// "exit code 3", "signal 9", "timed out after 30 s"; for error messages.
    pub(crate) fn describe_end(&self, timeout: Duration) -> String {
        if self.timed_out {
            format!("timed out after {} s and was killed", timeout.as_secs_f64())
        } else if let Some(code) = self.exit_code {
            format!("exit code {code}")
        } else if let Some(signal) = self.signal {
            format!("killed by signal {signal}")
        } else {
            "unknown exit status".to_owned()
        }
    }

    /// The last `count` lines of stdout followed by the last `count` of stderr.
    pub(crate) fn tail(&self, count: usize) -> Vec<String> {
        let last = |lines: &[String]| lines[lines.len().saturating_sub(count)..].to_vec();
        let mut tail = last(&self.stdout);
        tail.extend(
            last(&self.stderr)
                .into_iter()
                .map(|line| format!("stderr: {line}")),
        );
        tail
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Runs `command` to completion or until `timeout`, whichever comes first.
///
/// Stdin is always null. A timed-out child is killed and reaped, and the
/// result says `timed_out`; that is not an `Err`, which is kept for failing
/// to start the child at all.
pub(crate) fn run(command: &mut Command, timeout: Duration, output: Output) -> Result<Finished> {
    let echo = matches!(output, Output::Capture { echo: true });
    // Inherit: no pipes to read, but the sender stays alive so the wait
    // loop sleeps between polls instead of seeing a closed channel.
    let (mut child, receiver, open_pipes, start, _sender) = match output {
        Output::Inherit => {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
            let program = command.get_program().to_string_lossy().into_owned();
            let start = Instant::now();
            let child = ChildGuard::spawn(command)
                .with_context(|| format!("failed to start `{program}`"))?;
            let (sender, receiver) = mpsc::channel();
            (child, receiver, 0, start, Some(sender))
        }
        Output::Capture { .. } => {
            let (child, receiver, open_pipes, start) = spawn_with_timed_readers(command)?;
            (child, receiver, open_pipes, start, None)
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let waited = wait_and_collect(
        &mut child,
        &receiver,
        open_pipes,
        start,
        timeout,
        POLL_INTERVAL,
        |stream, _, line| match stream {
            Stream::Stdout => {
                if echo {
                    println!("{line}");
                }
                stdout.push(line);
            }
            Stream::Stderr => {
                if echo {
                    eprintln!("{line}");
                }
                stderr.push(line);
            }
        },
    )?;
    Ok(Finished {
        stdout,
        stderr,
        exit_code: waited.status.code(),
        signal: waited.status.signal(),
        elapsed: waited.elapsed,
        timed_out: waited.timed_out,
    })
}

/// A captured run with arrival times, for measurements (`cargo xtask bench`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TimedFinished {
    pub(crate) finished: Finished,
    /// Per line of `finished.stdout`, when its first byte was read, counted
    /// from just before the child was spawned.
    pub(crate) stdout_arrivals: Vec<Duration>,
    /// When stdout reached end-of-file: the child closed it, normally by
    /// exiting. Closer to the real exit than `finished.elapsed`, which is
    /// when a poll noticed it.
    pub(crate) stdout_closed: Option<Duration>,
}

enum TimedPipeEvent {
    Line(Stream, Instant, String),
    Closed(Stream, Instant),
}

/// Spawns `command` with stdin closed and stdout and stderr each read by a
/// timed pipe reader; returns the guarded child, the readers' events, how
/// many pipes are open and when the child was spawned.
fn spawn_with_timed_readers(
    command: &mut Command,
) -> Result<(ChildGuard, mpsc::Receiver<TimedPipeEvent>, usize, Instant)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = command.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child =
        ChildGuard::spawn(command).with_context(|| format!("failed to start `{program}`"))?;
    let (sender, events) = mpsc::channel();
    let mut open_pipes = 0;
    if let Some(stdout) = child.take_stdout() {
        spawn_timed_pipe_reader(stdout, Stream::Stdout, sender.clone());
        open_pipes += 1;
    }
    if let Some(stderr) = child.take_stderr() {
        spawn_timed_pipe_reader(stderr, Stream::Stderr, sender);
        open_pipes += 1;
    }
    Ok((child, events, open_pipes, start))
}

/// Like [`run`] with `Output::Capture { echo: false }`, but stamps each
/// output line with the arrival of its first byte and polls the child every
/// `poll` (a short one, e.g. 1 ms, so the exit is noticed promptly).
///
/// A separate loop from [`run`] because its pipe readers read raw chunks
/// instead of whole lines: a line's first byte, not its newline, is the moment
/// that matters for "first serial output".
pub(crate) fn run_timed(
    command: &mut Command,
    timeout: Duration,
    poll: Duration,
) -> Result<TimedFinished> {
    let (mut child, receiver, open_pipes, start) = spawn_with_timed_readers(command)?;
    let mut timed = TimedFinished::default();
    let waited = wait_and_collect(
        &mut child,
        &receiver,
        open_pipes,
        start,
        timeout,
        poll,
        |stream, at, line| match stream {
            Stream::Stdout => {
                timed.finished.stdout.push(line);
                timed
                    .stdout_arrivals
                    .push(at.saturating_duration_since(start));
            }
            Stream::Stderr => timed.finished.stderr.push(line),
        },
    )?;
    timed.finished.exit_code = waited.status.code();
    timed.finished.signal = waited.status.signal();
    timed.finished.elapsed = waited.elapsed;
    timed.finished.timed_out = waited.timed_out;
    timed.stdout_closed = waited.stdout_closed;
    Ok(timed)
}

/// How a child ended, as [`wait_and_collect`] saw it.
struct Waited {
    status: ExitStatus,
    timed_out: bool,
    /// When a poll found the child reaped, from `start`.
    elapsed: Duration,
    /// When stdout reached end-of-file, from `start`.
    stdout_closed: Option<Duration>,
}

/// Waits for `child`, killing it at `start + timeout`, and hands each line
/// the pipe readers send to `on_line` with the moment its first byte was
/// read. After the child is reaped the pipes get `PIPE_DRAIN_GRACE` to
/// close, so a grandchild holding one cannot hang the caller.
fn wait_and_collect(
    child: &mut ChildGuard,
    receiver: &mpsc::Receiver<TimedPipeEvent>,
    mut open_pipes: usize,
    start: Instant,
    timeout: Duration,
    poll: Duration,
    mut on_line: impl FnMut(Stream, Instant, String),
) -> Result<Waited> {
    let deadline = start + timeout;
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut elapsed = Duration::ZERO;
    let mut stdout_closed = None;
    let mut drain_deadline = None;
    loop {
        let now = Instant::now();
        if status.is_none() {
            if let Some(exited) = child.try_wait()? {
                status = Some(exited);
            } else if now >= deadline {
                status = Some(child.kill_and_wait()?);
                timed_out = true;
            }
            if status.is_some() {
                elapsed = start.elapsed();
                drain_deadline = Some(Instant::now() + PIPE_DRAIN_GRACE);
            }
        }
        if let Some(drain_deadline) = drain_deadline
            && (open_pipes == 0 || Instant::now() >= drain_deadline)
        {
            break;
        }
        let wait = if status.is_some() {
            poll
        } else {
            poll.min(deadline.saturating_duration_since(now))
        };
        match receiver.recv_timeout(wait) {
            Ok(TimedPipeEvent::Line(stream, at, line)) => on_line(stream, at, line),
            Ok(TimedPipeEvent::Closed(stream, at)) => {
                open_pipes = open_pipes.saturating_sub(1);
                if stream == Stream::Stdout {
                    stdout_closed = Some(at.saturating_duration_since(start));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open_pipes = 0,
        }
    }
    Ok(Waited {
        status: status.expect("the loop only ends after the child was reaped"),
        timed_out,
        elapsed,
        stdout_closed,
    })
}

/// Forwards `pipe` as lines (lossy UTF-8, `\r\n` or `\n` stripped), each
/// stamped with the instant its first byte was read, until end-of-file.
fn spawn_timed_pipe_reader(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    sender: Sender<TimedPipeEvent>,
) {
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        let mut line = Vec::new();
        let mut line_started: Option<Instant> = None;
        let send_line = |line: &mut Vec<u8>, started: Instant| {
            let text = String::from_utf8_lossy(line);
            let text = text
                .trim_end_matches('\n')
                .trim_end_matches('\r')
                .to_owned();
            line.clear();
            sender
                .send(TimedPipeEvent::Line(stream, started, text))
                .is_ok()
        };
        loop {
            let count = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let arrived = Instant::now();
            for &byte in &chunk[..count] {
                let started = *line_started.get_or_insert(arrived);
                line.push(byte);
                if byte == b'\n' {
                    line_started = None;
                    if !send_line(&mut line, started) {
                        return;
                    }
                }
            }
        }
        let closed = Instant::now();
        if let Some(started) = line_started
            && !send_line(&mut line, started)
        {
            return;
        }
        let _ = sender.send(TimedPipeEvent::Closed(stream, closed));
    });
}

/// A child the caller talks to while it runs (a VM serving HTTP): output is
/// collected in the background and read on demand, each stdout line stamped
/// like [`run_timed`]'s. The hard deadline is enforced whenever the caller
/// waits on it; every other wait the caller does (a socket read, a sleep)
/// must be bounded by its own timeout. Killed on drop, like every child.
pub(crate) struct LiveChild {
    child: ChildGuard,
    events: mpsc::Receiver<TimedPipeEvent>,
    start: Instant,
    /// `None`: no limit (an interactive session the user ends).
    deadline: Option<Instant>,
    echo: bool,
    open_pipes: usize,
    status: Option<ExitStatus>,
    timed: TimedFinished,
}

/// Why [`LiveChild::wait_for_stdout`] returned without a matching line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineWait {
    /// The child exited (or was killed at its hard deadline) first.
    Exited,
    /// The wait's own limit passed; the child is still running.
    TimedOut,
}

impl LiveChild {
    /// Spawns `command` with stdin null and stdout/stderr captured; with
    /// `echo`, each line is copied to our stdout/stderr as it is collected.
    pub(crate) fn spawn(
        command: &mut Command,
        timeout: Option<Duration>,
        echo: bool,
    ) -> Result<Self> {
        let (child, events, open_pipes, start) = spawn_with_timed_readers(command)?;
        Ok(Self {
            child,
            events,
            start,
            deadline: timeout.and_then(|timeout| start.checked_add(timeout)),
            echo,
            open_pipes,
            status: None,
            timed: TimedFinished::default(),
        })
    }

    /// The child's process ID (for `/proc/<pid>/stat`).
    pub(crate) fn id(&self) -> u32 {
        self.child.child.id()
    }

    /// Just before the child was spawned: the origin of every stamp.
    pub(crate) fn started(&self) -> Instant {
        self.start
    }

    /// Stdout lines collected so far.
    pub(crate) fn stdout(&self) -> &[String] {
        &self.timed.finished.stdout
    }

    pub(crate) fn stderr(&self) -> &[String] {
        &self.timed.finished.stderr
    }

    /// Whether the child has been reaped (it exited or was killed).
    pub(crate) fn has_exited(&self) -> bool {
        self.status.is_some()
    }

    /// Collects what has arrived without waiting and notices an exit.
    pub(crate) fn poll(&mut self) -> Result<()> {
        self.pump(Duration::ZERO)
    }

    /// Waits up to `within` for a stdout line (already collected or new)
    /// that `matches`; returns its index in [`Self::stdout`].
    pub(crate) fn wait_for_stdout(
        &mut self,
        matches: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Result<std::result::Result<usize, LineWait>> {
        // `None`: so far away that it does not fit in an `Instant`.
        let limit = Instant::now().checked_add(within);
        let mut searched = 0;
        loop {
            let lines = &self.timed.finished.stdout;
            if let Some(offset) = lines[searched..].iter().position(|line| matches(line)) {
                return Ok(Ok(searched + offset));
            }
            searched = lines.len();
            if self.status.is_some() && self.open_pipes == 0 {
                return Ok(Err(LineWait::Exited));
            }
            let now = Instant::now();
            if limit.is_some_and(|limit| now >= limit) {
                return Ok(Err(LineWait::TimedOut));
            }
            let left = limit.map_or(POLL_INTERVAL, |limit| limit - now);
            self.pump(POLL_INTERVAL.min(left))?;
            if self.status.is_some() && self.drain_expired() {
                self.open_pipes = 0;
            }
        }
    }

    /// Waits up to `within` (`None`: until the hard deadline, if any) for
    /// the child to exit, kills it if it does not (`timed_out`), drains its
    /// pipes and returns everything it printed.
    pub(crate) fn finish(mut self, within: Option<Duration>) -> Result<TimedFinished> {
        let limit = within.and_then(|within| Instant::now().checked_add(within));
        while self.status.is_none() {
            if limit.is_some_and(|limit| Instant::now() >= limit) {
                self.kill_for_timeout()?;
                break;
            }
            self.pump(POLL_INTERVAL)?;
        }
        while self.open_pipes > 0 && !self.drain_expired() {
            self.pump(POLL_INTERVAL)?;
        }
        let status = self
            .status
            .expect("the loop only ends after the child was reaped");
        self.timed.finished.exit_code = status.code();
        self.timed.finished.signal = status.signal();
        Ok(std::mem::take(&mut self.timed))
    }

    fn drain_expired(&self) -> bool {
        // `finished.elapsed` is set when the exit was noticed.
        self.start.elapsed() >= self.timed.finished.elapsed + PIPE_DRAIN_GRACE
    }

    fn kill_for_timeout(&mut self) -> Result<()> {
        self.status = Some(self.child.kill_and_wait()?);
        self.timed.finished.timed_out = true;
        self.timed.finished.elapsed = self.start.elapsed();
        Ok(())
    }

    /// Collects output for up to `wait` (returning early on a line), and
    /// notices the child's exit or kills it at its hard deadline.
    fn pump(&mut self, wait: Duration) -> Result<()> {
        if self.status.is_none() {
            if let Some(exited) = self.child.try_wait()? {
                self.status = Some(exited);
                self.timed.finished.elapsed = self.start.elapsed();
            } else if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.kill_for_timeout()?;
            }
        }
        if self.open_pipes == 0 {
            return Ok(());
        }
        let event = if wait.is_zero() {
            self.events.try_recv().map_err(|error| match error {
                mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            self.events.recv_timeout(wait)
        };
        match event {
            Ok(TimedPipeEvent::Line(stream, at, line)) => {
                if self.echo {
                    match stream {
                        Stream::Stdout => println!("{line}"),
                        Stream::Stderr => eprintln!("{line}"),
                    }
                }
                match stream {
                    Stream::Stdout => {
                        self.timed.finished.stdout.push(line);
                        self.timed
                            .stdout_arrivals
                            .push(at.saturating_duration_since(self.start));
                    }
                    Stream::Stderr => self.timed.finished.stderr.push(line),
                }
                // Take whatever else is already queued, without waiting.
                if !wait.is_zero() {
                    self.pump(Duration::ZERO)?;
                }
            }
            Ok(TimedPipeEvent::Closed(stream, at)) => {
                self.open_pipes -= 1;
                if stream == Stream::Stdout {
                    self.timed.stdout_closed = Some(at.saturating_duration_since(self.start));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.open_pipes = 0,
        }
        Ok(())
    }
}

/// Runs a short query (e.g. `id -u`) and returns its trimmed stdout if it exited 0.
pub(crate) fn query(command: &mut Command, timeout: Duration) -> Result<String> {
    let finished = run(command, timeout, Output::Capture { echo: false })?;
    if !finished.succeeded() {
        anyhow::bail!(
            "`{}` failed ({}): {}",
            command.get_program().to_string_lossy(),
            finished.describe_end(timeout),
            finished.stderr.join("\n")
        );
    }
    Ok(finished.stdout.join("\n").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn captures_lines_and_exit_code() {
        let finished = run(
            &mut shell("printf 'one\\r\\ntwo\\nthree'; echo oops >&2; exit 3"),
            Duration::from_secs(10),
            Output::Capture { echo: false },
        )
        .unwrap();
        assert_eq!(finished.stdout, ["one", "two", "three"]);
        assert_eq!(finished.stderr, ["oops"]);
        assert_eq!(finished.exit_code, Some(3));
        assert!(!finished.timed_out);
    }

    #[test]
    fn kills_a_child_that_runs_past_its_timeout() {
        let finished = run(
            &mut shell("echo started; exec sleep 30"),
            Duration::from_millis(300),
            Output::Capture { echo: false },
        )
        .unwrap();
        assert!(finished.timed_out);
        assert_eq!(finished.stdout, ["started"]);
        assert_eq!(finished.signal, Some(9));
        assert!(finished.elapsed < Duration::from_secs(5));
    }

    #[test]
    fn timed_run_stamps_each_line_in_order() {
        let timed = run_timed(
            &mut shell("printf 'one\\r\\n'; sleep 0.2; printf 'tw'; sleep 0.1; printf 'o\\nend'"),
            Duration::from_secs(10),
            Duration::from_millis(1),
        )
        .unwrap();
        assert_eq!(timed.finished.stdout, ["one", "two", "end"]);
        assert_eq!(timed.stdout_arrivals.len(), 3);
        let [one, two, end] = timed.stdout_arrivals[..] else {
            unreachable!()
        };
        // "two" is stamped when "tw" arrived, before the 0.1 s pause.
        assert!(two >= one + Duration::from_millis(150), "{one:?} {two:?}");
        assert!(end >= two + Duration::from_millis(80), "{two:?} {end:?}");
        let closed = timed.stdout_closed.unwrap();
        assert!(closed >= end && closed <= timed.finished.elapsed + Duration::from_millis(50));
        assert_eq!(timed.finished.exit_code, Some(0));
    }

    #[test]
    fn timed_run_kills_at_its_timeout() {
        let timed = run_timed(
            &mut shell("echo started; exec sleep 30"),
            Duration::from_millis(300),
            Duration::from_millis(1),
        )
        .unwrap();
        assert!(timed.finished.timed_out);
        assert_eq!(timed.finished.stdout, ["started"]);
    }

    #[test]
    fn live_child_waits_for_a_line_then_for_the_exit() {
        let mut child = LiveChild::spawn(
            &mut shell("echo booting; sleep 0.2; echo listening; sleep 0.2; echo bye; exit 33"),
            Some(Duration::from_secs(10)),
            false,
        )
        .unwrap();
        assert!(child.id() > 0);
        let index = child
            .wait_for_stdout(|line| line == "listening", Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(index, 1);
        assert_eq!(
            child
                .wait_for_stdout(|line| line == "never", Duration::from_millis(50))
                .unwrap(),
            Err(LineWait::TimedOut)
        );
        let timed = child.finish(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(timed.finished.stdout, ["booting", "listening", "bye"]);
        assert!(timed.stdout_arrivals[1] >= Duration::from_millis(150));
        assert_eq!(timed.finished.exit_code, Some(33));
        assert!(!timed.finished.timed_out);
    }

    #[test]
    fn live_child_reports_an_exit_before_the_line() {
        let mut child = LiveChild::spawn(
            &mut shell("echo only; exit 1"),
            Some(Duration::from_secs(10)),
            false,
        )
        .unwrap();
        let wait = child
            .wait_for_stdout(|line| line == "listening", Duration::from_secs(5))
            .unwrap();
        assert_eq!(wait, Err(LineWait::Exited));
        assert!(child.has_exited());
        assert_eq!(child.stdout(), ["only"]);
    }

    #[test]
    fn live_child_is_killed_at_its_deadline_or_by_finish() {
        let mut child = LiveChild::spawn(
            &mut shell("echo started; exec sleep 30"),
            Some(Duration::from_millis(300)),
            false,
        )
        .unwrap();
        let wait = child
            .wait_for_stdout(|line| line == "never", Duration::from_secs(5))
            .unwrap();
        assert_eq!(wait, Err(LineWait::Exited));
        let timed = child.finish(None).unwrap();
        assert!(timed.finished.timed_out);
        assert!(timed.finished.elapsed < Duration::from_secs(3));

        let child = LiveChild::spawn(&mut shell("exec sleep 30"), None, false).unwrap();
        let start = Instant::now();
        let timed = child.finish(Some(Duration::from_millis(200))).unwrap();
        assert!(timed.finished.timed_out);
        assert_eq!(timed.finished.signal, Some(9));
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn does_not_hang_when_a_grandchild_keeps_the_pipe_open() {
        let start = Instant::now();
        let finished = run(
            &mut shell("sleep 5 & exit 0"),
            Duration::from_secs(10),
            Output::Capture { echo: false },
        )
        .unwrap();
        assert_eq!(finished.exit_code, Some(0));
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
