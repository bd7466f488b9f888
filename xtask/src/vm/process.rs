//! Child processes that can neither hang xtask nor outlive it.
//!
//! Every child lives in a [`ChildGuard`], which kills and reaps it when
//! dropped: on every return, every `?` and every panic (xtask unwinds). Every
//! wait has a hard limit: `wait-timeout` sleeps until the child exits
//! (SIGCHLD) or the limit passes, and then the child is killed. Ctrl-C in a
//! terminal reaches the children directly (one process group), and QEMU quits
//! on SIGINT.
//!
//! Output is read on one thread per pipe, each line stamped with the arrival
//! of its first byte. The threads end at end-of-file, which the kernel
//! delivers when the child dies; the waiting side gives them a short grace
//! period instead of joining them, so a pipe inherited by some grandchild
//! cannot hang us either.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wait_timeout::ChildExt;

/// How long to wait for the output pipes to reach end-of-file after the child exited.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Owns a running child and kills (then reaps) it when dropped.
struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    fn spawn(command: &mut Command) -> Result<Self> {
        let child = command.spawn().with_context(|| {
            format!(
                "failed to start `{}`",
                command.get_program().to_string_lossy()
            )
        })?;
        Ok(Self { child })
    }

    /// Waits up to `within` (`None`: without limit) for the child to exit.
    fn wait_for(&mut self, within: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        match within {
            Some(within) => self.child.wait_timeout(within),
            None => self.child.wait().map(Some),
        }
    }

    fn kill_and_wait(&mut self) -> io::Result<ExitStatus> {
        // `kill` fails only if the child already exited; `wait` reaps it either way.
        let _ = self.child.kill();
        self.child.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // A child already reaped is not signalled again: `Child` keeps its
        // status and `kill` returns at once, so no recycled PID is hit.
        let _ = self.kill_and_wait();
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
    /// Per line of `stdout`, when its first byte was read, counted from
    /// just before the child was spawned.
    pub(crate) stdout_arrivals: Vec<Duration>,
    /// When stdout reached end-of-file: the child closed it, normally by
    /// exiting.
    pub(crate) stdout_closed: Option<Duration>,
    /// The exit code, `None` if the child was ended by a signal.
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended the child, if any.
    pub(crate) signal: Option<i32>,
    /// From spawning the child to reaping it.
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

    /// The start → exit time: stdout closing when that came first (a
    /// closer mark of the exit than the reaping), else the reaping.
    pub(crate) fn exit_time(&self) -> Duration {
        self.stdout_closed.unwrap_or(self.elapsed).min(self.elapsed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

enum PipeEvent {
    Line(Stream, Instant, String),
    Closed(Stream, Instant),
}

/// A spawned child, its pipe readers' events and what has been collected.
struct Running {
    child: ChildGuard,
    events: Receiver<PipeEvent>,
    open_pipes: usize,
    /// Just before the child was spawned: the origin of every stamp.
    start: Instant,
    exited: bool,
    finished: Finished,
}

impl Running {
    /// Spawns `command` with stdin closed and its output as `output` says.
    fn spawn(command: &mut Command, output: Output) -> Result<Self> {
        command.stdin(Stdio::null());
        let echo = match output {
            Output::Inherit => {
                command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
                false
            }
            Output::Capture { echo } => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                echo
            }
        };
        let start = Instant::now();
        let mut child = ChildGuard::spawn(command)?;
        let (sender, events) = mpsc::channel();
        let mut open_pipes = 0;
        if let Some(stdout) = child.child.stdout.take() {
            spawn_pipe_reader(stdout, Stream::Stdout, echo, sender.clone());
            open_pipes += 1;
        }
        if let Some(stderr) = child.child.stderr.take() {
            spawn_pipe_reader(stderr, Stream::Stderr, echo, sender);
            open_pipes += 1;
        }
        Ok(Self {
            child,
            events,
            open_pipes,
            start,
            exited: false,
            finished: Finished::default(),
        })
    }

    fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    fn collect(&mut self, event: PipeEvent) {
        match event {
            PipeEvent::Line(Stream::Stdout, at, line) => {
                self.finished.stdout.push(line);
                let arrival = self.since_start(at);
                self.finished.stdout_arrivals.push(arrival);
            }
            PipeEvent::Line(Stream::Stderr, _, line) => self.finished.stderr.push(line),
            PipeEvent::Closed(stream, at) => {
                self.open_pipes = self.open_pipes.saturating_sub(1);
                if stream == Stream::Stdout {
                    self.finished.stdout_closed = Some(self.since_start(at));
                }
            }
        }
    }

    /// Collects every event already queued, without waiting.
    fn collect_queued(&mut self) {
        while self.open_pipes > 0 {
            match self.events.try_recv() {
                Ok(event) => self.collect(event),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => self.open_pipes = 0,
            }
        }
    }

    /// Waits up to `within` for one event, then takes whatever else is queued.
    fn collect_within(&mut self, within: Duration) {
        match self.events.recv_timeout(within) {
            Ok(event) => {
                self.collect(event);
                self.collect_queued();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.open_pipes = 0,
        }
    }

    fn reaped(&mut self, status: ExitStatus, timed_out: bool) {
        self.exited = true;
        self.finished.exit_code = status.code();
        self.finished.signal = status.signal();
        self.finished.elapsed = self.start.elapsed();
        self.finished.timed_out = timed_out;
    }

    /// Waits up to `within` (`None`: without limit) for the child to exit,
    /// and kills it if it does not.
    fn wait_or_kill(&mut self, within: Option<Duration>) -> io::Result<()> {
        if self.exited {
            return Ok(());
        }
        match self.child.wait_for(within)? {
            Some(status) => self.reaped(status, false),
            None => {
                let status = self.child.kill_and_wait()?;
                self.reaped(status, true);
            }
        }
        Ok(())
    }

    /// Notices an exit without waiting.
    fn try_reap(&mut self) -> io::Result<()> {
        if !self.exited
            && let Some(status) = self.child.child.try_wait()?
        {
            self.reaped(status, false);
        }
        Ok(())
    }

    /// After the exit: collects output until the pipes close or the grace passes.
    fn drain(&mut self) {
        let grace_end = Instant::now() + PIPE_DRAIN_GRACE;
        while self.open_pipes > 0 {
            let left = grace_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.collect_within(left);
        }
        self.collect_queued();
    }
}

/// Runs `command` to completion or until `timeout`, whichever comes first.
///
/// Stdin is always null. A timed-out child is killed and reaped, and the
/// result says `timed_out`; that is not an `Err`, which is kept for failing
/// to start the child at all.
pub(crate) fn run(command: &mut Command, timeout: Duration, output: Output) -> Result<Finished> {
    let mut running = Running::spawn(command, output)?;
    running.wait_or_kill(Some(timeout))?;
    running.drain();
    Ok(running.finished)
}

/// Forwards `pipe` as lines (lossy UTF-8, `\r\n` or `\n` stripped), each
/// stamped with the instant its first byte was read, until end-of-file;
/// with `echo`, copies each line to our own stream as it completes. Reads
/// raw chunks, not lines: a line's first byte, not its newline, is the
/// moment that matters for "first serial output".
fn spawn_pipe_reader(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    echo: bool,
    sender: Sender<PipeEvent>,
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
            if echo {
                match stream {
                    Stream::Stdout => println!("{text}"),
                    Stream::Stderr => eprintln!("{text}"),
                }
            }
            sender.send(PipeEvent::Line(stream, started, text)).is_ok()
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
        let _ = sender.send(PipeEvent::Closed(stream, closed));
    });
}

/// A child the caller talks to while it runs (a VM serving HTTP): output is
/// collected in the background and read on demand. The hard deadline is
/// enforced whenever the caller waits on it; every other wait the caller
/// does (a socket read, a sleep) must be bounded by its own timeout. Killed
/// on drop, like every child.
pub(crate) struct LiveChild {
    running: Running,
    /// `None`: no limit (an interactive session the user ends).
    deadline: Option<Instant>,
    /// When the exit was noticed, for the drain's grace period.
    exit_seen: Option<Instant>,
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
    /// `echo`, each line is copied to our stdout/stderr as it arrives.
    pub(crate) fn spawn(
        command: &mut Command,
        timeout: Option<Duration>,
        echo: bool,
    ) -> Result<Self> {
        let running = Running::spawn(command, Output::Capture { echo })?;
        let deadline = timeout.and_then(|timeout| running.start.checked_add(timeout));
        Ok(Self {
            running,
            deadline,
            exit_seen: None,
        })
    }

    /// The child's process ID (for `/proc/<pid>/stat`).
    pub(crate) fn id(&self) -> u32 {
        self.running.child.child.id()
    }

    /// Just before the child was spawned: the origin of every stamp.
    pub(crate) fn started(&self) -> Instant {
        self.running.start
    }

    /// Stdout lines collected so far.
    pub(crate) fn stdout(&self) -> &[String] {
        &self.running.finished.stdout
    }

    pub(crate) fn stderr(&self) -> &[String] {
        &self.running.finished.stderr
    }

    /// Whether the child has been reaped (it exited or was killed).
    pub(crate) fn has_exited(&self) -> bool {
        self.running.exited
    }

    /// Collects what has arrived without waiting, notices an exit, and
    /// kills the child if its hard deadline has passed.
    pub(crate) fn poll(&mut self) -> Result<()> {
        self.running.collect_queued();
        self.running.try_reap()?;
        if !self.running.exited && self.left_until_deadline() == Some(Duration::ZERO) {
            self.running.wait_or_kill(Some(Duration::ZERO))?;
        }
        self.note_exit();
        Ok(())
    }

    fn left_until_deadline(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    fn note_exit(&mut self) {
        if self.running.exited && self.exit_seen.is_none() {
            self.exit_seen = Some(Instant::now());
        }
    }

    /// Output is over: the child was reaped and its pipes closed (or the
    /// grace for them passed).
    fn output_over(&self) -> bool {
        self.exit_seen
            .is_some_and(|seen| self.running.open_pipes == 0 || seen.elapsed() >= PIPE_DRAIN_GRACE)
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
            let lines = self.stdout();
            if let Some(offset) = lines[searched..].iter().position(|line| matches(line)) {
                return Ok(Ok(searched + offset));
            }
            searched = lines.len();
            if self.output_over() {
                return Ok(Err(LineWait::Exited));
            }
            let left = limit.map(|limit| limit.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(Err(LineWait::TimedOut));
            }
            let left = match (left, self.left_until_deadline()) {
                (Some(left), Some(deadline)) => Some(left.min(deadline)),
                (left, deadline) => left.or(deadline),
            };
            self.step(left)?;
        }
    }

    /// Waits up to `within` (`None`: without limit) for something to happen:
    /// output, the pipes closing, the exit; kills the child at its deadline.
    fn step(&mut self, within: Option<Duration>) -> Result<()> {
        if self.running.open_pipes > 0 {
            // The pipes close when the child exits: that wakes us too.
            self.running
                .collect_within(within.unwrap_or(PIPE_DRAIN_GRACE));
            self.running.try_reap()?;
        } else if !self.running.exited {
            // Its output closed but it still runs: wait for the exit itself.
            if let Some(status) = self.running.child.wait_for(within)? {
                self.running.reaped(status, false);
            }
        }
        if !self.running.exited && self.left_until_deadline() == Some(Duration::ZERO) {
            self.running.wait_or_kill(Some(Duration::ZERO))?;
        }
        self.note_exit();
        Ok(())
    }

    /// Waits up to `within` (`None`: until the hard deadline, if any) for
    /// the child to exit, kills it if it does not (`timed_out`), drains its
    /// pipes and returns everything it printed.
    pub(crate) fn finish(mut self, within: Option<Duration>) -> Result<Finished> {
        let limit = match (within, self.left_until_deadline()) {
            (Some(within), Some(deadline)) => Some(within.min(deadline)),
            (within, deadline) => within.or(deadline),
        };
        self.running.wait_or_kill(limit)?;
        self.running.drain();
        Ok(std::mem::take(&mut self.running.finished))
    }
}

/// Runs `command` sharing the terminal (a build, an install) and fails,
/// naming `what` and how it ended, unless it exits 0 within `timeout`.
pub(crate) fn run_inherited(command: &mut Command, timeout: Duration, what: &str) -> Result<()> {
    let finished = run(command, timeout, Output::Inherit)?;
    if !finished.succeeded() {
        anyhow::bail!("{what} failed ({})", finished.describe_end(timeout));
    }
    Ok(())
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

    fn live(script: &str, timeout: Option<Duration>) -> LiveChild {
        LiveChild::spawn(&mut shell(script), timeout, false).unwrap()
    }

    fn capture(script: &str, timeout: Duration) -> Finished {
        run(&mut shell(script), timeout, Output::Capture { echo: false }).unwrap()
    }

    #[test]
    fn captures_lines_and_exit_code() {
        let finished = capture(
            "printf 'one\\r\\ntwo\\nthree'; echo oops >&2; exit 3",
            Duration::from_secs(10),
        );
        assert_eq!(finished.stdout, ["one", "two", "three"]);
        assert_eq!(finished.stderr, ["oops"]);
        assert_eq!(finished.exit_code, Some(3));
        assert!(!finished.timed_out);
    }

    #[test]
    fn kills_a_child_that_runs_past_its_timeout() {
        let finished = capture("echo started; exec sleep 30", Duration::from_millis(300));
        assert!(finished.timed_out);
        assert_eq!(finished.stdout, ["started"]);
        assert_eq!(finished.signal, Some(9));
        assert!(finished.elapsed < Duration::from_secs(5));
    }

    #[test]
    fn stamps_each_line_in_order() {
        let finished = capture(
            "printf 'one\\r\\n'; sleep 0.2; printf 'tw'; sleep 0.1; printf 'o\\nend'",
            Duration::from_secs(10),
        );
        assert_eq!(finished.stdout, ["one", "two", "end"]);
        assert_eq!(finished.stdout_arrivals.len(), 3);
        let [one, two, end] = finished.stdout_arrivals[..] else {
            unreachable!()
        };
        // "two" is stamped when "tw" arrived, before the 0.1 s pause.
        assert!(two >= one + Duration::from_millis(150), "{one:?} {two:?}");
        assert!(end >= two + Duration::from_millis(80), "{two:?} {end:?}");
        let closed = finished.stdout_closed.unwrap();
        assert!(closed >= end && closed <= finished.elapsed + Duration::from_millis(50));
        assert!(finished.exit_time() <= finished.elapsed);
        assert_eq!(finished.exit_code, Some(0));
    }

    /// Whether `pid` still names a process (a zombie counts: not reaped).
    fn process_exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_panic_kills_and_reaps_the_child() {
        let mut pid = 0;
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let child = live("exec sleep 30", None);
            pid = child.id();
            assert!(process_exists(pid));
            panic!("a failing check while the child runs");
        }));
        assert!(unwound.is_err());
        assert_ne!(pid, 0);
        assert!(!process_exists(pid), "process {pid} outlived the panic");
    }

    #[test]
    fn live_child_waits_for_a_line_then_for_the_exit() {
        let mut child = live(
            "echo booting; sleep 0.2; echo listening; sleep 0.2; echo bye; exit 33",
            Some(Duration::from_secs(10)),
        );
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
        let finished = child.finish(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(finished.stdout, ["booting", "listening", "bye"]);
        assert!(finished.stdout_arrivals[1] >= Duration::from_millis(150));
        assert_eq!(finished.exit_code, Some(33));
        assert!(!finished.timed_out);
    }

    #[test]
    fn live_child_reports_an_exit_before_the_line() {
        let mut child = live("echo only; exit 1", Some(Duration::from_secs(10)));
        let wait = child
            .wait_for_stdout(|line| line == "listening", Duration::from_secs(5))
            .unwrap();
        assert_eq!(wait, Err(LineWait::Exited));
        assert!(child.has_exited());
        assert_eq!(child.stdout(), ["only"]);
    }

    #[test]
    fn live_child_is_killed_at_its_deadline_or_by_finish() {
        let mut child = live(
            "echo started; exec sleep 30",
            Some(Duration::from_millis(300)),
        );
        let wait = child
            .wait_for_stdout(|line| line == "never", Duration::from_secs(5))
            .unwrap();
        assert_eq!(wait, Err(LineWait::Exited));
        let finished = child.finish(None).unwrap();
        assert!(finished.timed_out);
        assert!(finished.elapsed < Duration::from_secs(3));

        let child = live("exec sleep 30", None);
        let start = Instant::now();
        let finished = child.finish(Some(Duration::from_millis(200))).unwrap();
        assert!(finished.timed_out);
        assert_eq!(finished.signal, Some(9));
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn live_child_poll_kills_at_the_deadline() {
        let mut child = live("exec sleep 30", Some(Duration::from_millis(100)));
        thread::sleep(Duration::from_millis(150));
        child.poll().unwrap();
        assert!(child.has_exited());
        assert!(child.finish(None).unwrap().timed_out);
    }

    #[test]
    fn does_not_hang_when_a_grandchild_keeps_the_pipe_open() {
        let start = Instant::now();
        let finished = capture("sleep 5 & exit 0", Duration::from_secs(10));
        assert_eq!(finished.exit_code, Some(0));
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
