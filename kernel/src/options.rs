//! Kernel command-line options: Linux's console options (`quiet`, `debug`,
//! `loglevel=`) and mote's own, all under the `mote.` prefix.
//!
//! Parsing is pure so it is tested on the host; the README's "Command line"
//! section documents every option handled here.

use arrayvec::ArrayVec;

/// Linux's default console log level (`CONFIG_CONSOLE_LOGLEVEL_DEFAULT`).
pub const DEFAULT_CONSOLE_LOGLEVEL: u8 = 7;
/// What `quiet` sets (`CONSOLE_LOGLEVEL_QUIET`).
pub const QUIET_CONSOLE_LOGLEVEL: u8 = 4;
/// What `debug` sets (`CONSOLE_LOGLEVEL_DEBUG`).
pub const DEBUG_CONSOLE_LOGLEVEL: u8 = 10;

/// When the kernel powers the VM off by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitPolicy {
    /// After the boot report, when there is nothing left to serve (default).
    WhenIdle,
    /// `mote.exit=ready`: right after the ready mark and its report, even
    /// with devices to serve.
    Ready,
    /// `mote.exit=never`: halt and wait for the VMM to stop the VM.
    Never,
}

/// Deliberate failures, to prove the failure paths (`mote.crash=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    PageFault,
    Panic,
    DivideError,
}

/// A `mote.` option the kernel did not understand; reported, not fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unrecognised<'a> {
    pub option: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// Linux semantics: messages of priority below this are printed.
    pub console_loglevel: u8,
    pub exit: ExitPolicy,
    pub crash: Option<Crash>,
    /// `mote.tslog=1`: dump the boot trace after the ready mark.
    pub tslog: bool,
    /// `mote.blk=verify`: CRC-32 of every sector of every disk.
    pub blk_verify: bool,
    /// `mote.blk=bench`: sequential read throughput of every disk.
    pub blk_bench: bool,
    /// `mote.blk.write=<lba>+<sectors>`: write the seeded pattern there.
    pub blk_write: Option<(u64, u64)>,
    /// `mote.blk.seed=<n>`: the pattern's seed.
    pub blk_seed: u64,
    /// Linux's `ip=` (see `net::ip_config`); DHCP when absent.
    pub ip: Option<&'a str>,
    pub unrecognised: ArrayVec<Unrecognised<'a>, 8>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            console_loglevel: DEFAULT_CONSOLE_LOGLEVEL,
            exit: ExitPolicy::WhenIdle,
            crash: None,
            tslog: false,
            blk_verify: false,
            blk_bench: false,
            blk_write: None,
            blk_seed: crate::block::DEFAULT_PATTERN_SEED,
            ip: None,
            unrecognised: ArrayVec::new(),
        }
    }
}

impl<'a> Options<'a> {
    /// Reads every word of the command line, later words overriding earlier
    /// ones as in Linux. Words that are not ours are ignored.
    pub fn parse(cmdline: &'a str) -> Self {
        let mut options = Self::default();
        for word in words(cmdline) {
            let (key, value) = match word.split_once('=') {
                Some((key, value)) => (key, Some(unquote(value))),
                None => (word, None),
            };
            match (key, value) {
                ("quiet", None) => options.console_loglevel = QUIET_CONSOLE_LOGLEVEL,
                ("debug", None) => options.console_loglevel = DEBUG_CONSOLE_LOGLEVEL,
                ("loglevel", Some(level)) => {
                    // Linux ignores a value it cannot parse; so do we.
                    if let Ok(level) = level.parse::<u8>() {
                        options.console_loglevel = level;
                    }
                }
                ("ip", Some(value)) => options.ip = Some(value),
                ("mote.exit", Some("ready")) => options.exit = ExitPolicy::Ready,
                ("mote.exit", Some("never")) => options.exit = ExitPolicy::Never,
                ("mote.exit", Some("idle")) => options.exit = ExitPolicy::WhenIdle,
                ("mote.crash", Some("page-fault")) => options.crash = Some(Crash::PageFault),
                ("mote.crash", Some("panic")) => options.crash = Some(Crash::Panic),
                ("mote.crash", Some("divide-error")) => options.crash = Some(Crash::DivideError),
                ("mote.tslog", Some("1" | "on" | "yes")) => options.tslog = true,
                ("mote.tslog", Some("0" | "off" | "no")) => options.tslog = false,
                ("mote.blk", Some(list))
                    if list
                        .split(',')
                        .all(|item| matches!(item, "verify" | "bench")) =>
                {
                    options.blk_verify = list.split(',').any(|item| item == "verify");
                    options.blk_bench = list.split(',').any(|item| item == "bench");
                }
                ("mote.blk.write", Some(range)) if crate::block::parse_range(range).is_some() => {
                    options.blk_write = crate::block::parse_range(range);
                }
                ("mote.blk.seed", Some(seed))
                    if crate::virtio::cmdline::auto_radix(seed)
                        .is_some_and(|(_, rest)| rest.is_empty()) =>
                {
                    options.blk_seed =
                        crate::virtio::cmdline::auto_radix(seed).map_or(0, |(n, _)| n);
                }
                _ if key.starts_with("mote.") => {
                    // Keep the first few; more are as unhelpful as eight.
                    let _ = options.unrecognised.try_push(Unrecognised { option: word });
                }
                _ => {}
            }
        }
        options
    }

    /// The most verbose `log` level the console prints, mapping Linux's
    /// priorities: error 3, warning 4, info 6, debug 7, and trace as 8.
    pub fn max_log_level(&self) -> log::LevelFilter {
        match self.console_loglevel {
            0..=3 => log::LevelFilter::Off,
            4 => log::LevelFilter::Error,
            5..=6 => log::LevelFilter::Warn,
            7 => log::LevelFilter::Info,
            8 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

/// Splits a command line into words the way Linux's `next_arg` does:
/// whitespace separates, double quotes group (`a="b c"` is one word).
pub fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    let mut rest = cmdline;
    core::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                !in_quotes && c.is_ascii_whitespace()
            })
            .map_or(rest.len(), |(index, _)| index);
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let options = Options::parse("");
        assert_eq!(options, Options::default());
        assert_eq!(options.max_log_level(), log::LevelFilter::Info);
    }

    #[test]
    fn linux_console_levels_in_order() {
        assert_eq!(
            Options::parse("quiet").max_log_level(),
            log::LevelFilter::Error
        );
        assert_eq!(
            Options::parse("debug").max_log_level(),
            log::LevelFilter::Trace
        );
        assert_eq!(
            Options::parse("loglevel=8").max_log_level(),
            log::LevelFilter::Debug
        );
        assert_eq!(
            Options::parse("loglevel=5").max_log_level(),
            log::LevelFilter::Warn
        );
        assert_eq!(
            Options::parse("loglevel=0").max_log_level(),
            log::LevelFilter::Off
        );
        assert_eq!(Options::parse("quiet loglevel=7").console_loglevel, 7);
        assert_eq!(Options::parse("loglevel=7 quiet").console_loglevel, 4);
        assert_eq!(Options::parse("loglevel=junk").console_loglevel, 7);
        assert_eq!(Options::parse("loglevel=300").console_loglevel, 7);
    }

    #[test]
    fn mote_options() {
        let options = Options::parse("console=ttyS0 mote.exit=ready mote.tslog=1 mote.crash=panic");
        assert_eq!(options.exit, ExitPolicy::Ready);
        assert!(options.tslog);
        assert_eq!(options.crash, Some(Crash::Panic));
        assert_eq!(
            Options::parse("mote.crash=page-fault").crash,
            Some(Crash::PageFault)
        );
        assert_eq!(Options::parse("mote.exit=never").exit, ExitPolicy::Never);
        assert_eq!(
            Options::parse("mote.exit=\"ready\"").exit,
            ExitPolicy::Ready
        );
    }

    #[test]
    fn block_options() {
        let options =
            Options::parse("mote.blk=verify,bench mote.blk.write=2048+16 mote.blk.seed=0x2a");
        assert!(options.blk_verify && options.blk_bench);
        assert_eq!(options.blk_write, Some((2048, 16)));
        assert_eq!(options.blk_seed, 42);
        let options = Options::parse("mote.blk=verify");
        assert!(options.blk_verify && !options.blk_bench);
        let bad = Options::parse("mote.blk=fast mote.blk.write=12 mote.blk.seed=x");
        assert!(!bad.blk_verify && bad.blk_write.is_none());
        assert_eq!(bad.blk_seed, crate::block::DEFAULT_PATTERN_SEED);
        assert_eq!(bad.unrecognised.len(), 3, "each bad value is reported");
    }

    #[test]
    fn unknown_mote_options_are_collected_and_others_ignored() {
        let options = Options::parse("root=/dev/vda mote.exit=soon mote.frobnicate");
        assert_eq!(options.exit, ExitPolicy::WhenIdle);
        let names: Vec<&str> = options.unrecognised.iter().map(|u| u.option).collect();
        assert_eq!(names, ["mote.exit=soon", "mote.frobnicate"]);
    }

    #[test]
    fn many_unknown_options_do_not_overflow() {
        let line = "mote.x ".repeat(100);
        assert_eq!(Options::parse(&line).unrecognised.len(), 8);
    }

    #[test]
    fn words_split_on_whitespace_and_respect_quotes() {
        let parts: Vec<&str> = words("  a  b=\"c d\"\te \"f g\" h=\"unterminated i").collect();
        assert_eq!(
            parts,
            ["a", "b=\"c d\"", "e", "\"f g\"", "h=\"unterminated i"]
        );
        assert_eq!(words("").count(), 0);
        assert_eq!(words(" \t\n").count(), 0);
    }
}
