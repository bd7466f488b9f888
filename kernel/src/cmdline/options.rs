//! Kernel command-line options: Linux's console options (`quiet`, `debug`,
//! `loglevel=`) and mote's own, all under the `mote.` prefix.
//!
//! docs/command-line.md documents every option handled here (its tests below
//! check that in both directions).
#![deny(unsafe_code)]

use arrayvec::ArrayVec;
use mote_boot::protocol::disk_pattern;

use super::lex::{self, key_value, words};

/// Linux's default console log level (`CONFIG_CONSOLE_LOGLEVEL_DEFAULT`).
pub(crate) const DEFAULT_CONSOLE_LOGLEVEL: u8 = 7;
/// What `quiet` sets (`CONSOLE_LOGLEVEL_QUIET`).
pub(crate) const QUIET_CONSOLE_LOGLEVEL: u8 = 4;
/// What `debug` sets (`CONSOLE_LOGLEVEL_DEBUG`).
pub(crate) const DEBUG_CONSOLE_LOGLEVEL: u8 = 10;

/// When the kernel powers the VM off by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitPolicy {
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
pub(crate) enum Crash {
    PageFault,
    /// A page fault on the first application processor, as it comes up.
    ApPageFault,
    Panic,
    DivideError,
}

/// Where the Firecracker boot-timer byte goes at the ready mark
/// (`mote.boottimer=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BootTimer {
    /// Only on Firecracker (ACPI OEM id `FIRECK`), at its fixed address.
    WhenFirecracker,
    /// `mote.boottimer=<address>`: there, on any VMM.
    At(u64),
    /// `mote.boottimer=off`.
    Off,
}

/// Linux's `tsc_early_khz=`: the TSC frequency, taken before any other
/// source (Linux `arch/x86/kernel/tsc.c`, `tsc_early_khz_setup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TscEarlyKhz<'a> {
    /// A usable value, in Hz.
    Hz(u64),
    /// A value mote will not use, with the reason; reported and ignored.
    Rejected {
        value: &'a str,
        reason: &'static str,
    },
}

/// The highest `tsc_early_khz=` mote believes: 10 GHz, above any TSC
/// shipped (a value beyond it is a typo, such as Hz given for kHz).
pub(crate) const MAX_TSC_EARLY_KHZ: u64 = 10_000_000;

impl<'a> TscEarlyKhz<'a> {
    /// Reads the value as Linux does (`kstrtouint(buf, 0, ..)`: decimal,
    /// `0x` hex or `0` octal), refusing zero and anything above
    /// [`MAX_TSC_EARLY_KHZ`].
    pub(crate) fn parse(value: &'a str) -> Self {
        let rejected = |reason| Self::Rejected { value, reason };
        match lex::number(value) {
            None => rejected("not a number"),
            Some(0) => rejected("zero"),
            Some(khz) if khz > MAX_TSC_EARLY_KHZ => rejected("above 10 GHz"),
            Some(khz) => Self::Hz(khz * 1000),
        }
    }

    /// The frequency, when it is usable.
    pub(crate) fn hz(self) -> Option<u64> {
        match self {
            Self::Hz(hz) => Some(hz),
            Self::Rejected { .. } => None,
        }
    }
}

/// A `mote.` option the kernel did not understand; reported, not fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unrecognised<'a> {
    pub(crate) option: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options<'a> {
    /// Linux semantics: messages of priority below this are printed.
    pub(crate) console_loglevel: u8,
    pub(crate) exit: ExitPolicy,
    pub(crate) crash: Option<Crash>,
    /// `mote.inject=stray-interrupt`: before serving, interrupt this CPU
    /// on a vector nothing routes, which it must count and survive.
    pub(crate) stray_interrupt: bool,
    /// The part of the command line from the first `virtio_mmio.device`
    /// word to the end of the last (empty without one): device discovery
    /// reads only these words, not the whole line a second time.
    pub(crate) virtio_mmio_words: &'a str,
    /// `mote.tslog=1`: dump the boot trace after the ready mark.
    pub(crate) tslog: bool,
    /// `mote.tslog=markers`: the dump, and each record's index written to
    /// I/O port 0x80 as it is recorded, for `cargo xtask trace --exits`.
    pub(crate) tslog_markers: bool,
    /// `mote.blk=verify`: CRC-32 of every sector of every disk.
    pub(crate) blk_verify: bool,
    /// `mote.blk=bench`: sequential read throughput of every disk.
    pub(crate) blk_bench: bool,
    /// `mote.blk.write=<lba>+<sectors>`: write the seeded pattern there.
    pub(crate) blk_write: Option<(u64, u64)>,
    /// `mote.blk.seed=<n>`: the pattern's seed.
    pub(crate) blk_seed: u64,
    /// Linux's `ip=` (see `net::ip_config`); DHCP when absent.
    pub(crate) ip: Option<&'a str>,
    /// `mote.acpi=dump`: every ACPI table as hex on the console.
    pub(crate) acpi_dump: bool,
    /// `mote.smp=off`: the boot CPU only (`on`, the default: every CPU).
    pub(crate) smp: bool,
    /// Linux's `maxcpus=<n>`: at most n CPUs online, the boot CPU one of
    /// them (0 means the boot CPU only, as in Linux).
    pub(crate) max_cpus: Option<u32>,
    /// `mote.bench=exits`: time a loop of CPUID, port and MMIO exits.
    pub(crate) exit_cost: bool,
    pub(crate) boot_timer: BootTimer,
    /// Linux's `tsc_early_khz=`, when given.
    pub(crate) tsc_early_khz: Option<TscEarlyKhz<'a>>,
    pub(crate) unrecognised: ArrayVec<Unrecognised<'a>, 8>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            console_loglevel: DEFAULT_CONSOLE_LOGLEVEL,
            exit: ExitPolicy::WhenIdle,
            crash: None,
            stray_interrupt: false,
            tslog: false,
            tslog_markers: false,
            blk_verify: false,
            blk_bench: false,
            blk_write: None,
            blk_seed: disk_pattern::DEFAULT_SEED,
            ip: None,
            acpi_dump: false,
            smp: true,
            max_cpus: None,
            exit_cost: false,
            boot_timer: BootTimer::WhenFirecracker,
            tsc_early_khz: None,
            virtio_mmio_words: "",
            unrecognised: ArrayVec::new(),
        }
    }
}

/// The part of `cmdline` from the start of `span` (or of `word`, when
/// `span` is empty) to the end of `word`; both are subslices of `cmdline`.
fn span_through<'a>(cmdline: &'a str, span: &'a str, word: &'a str) -> &'a str {
    let offset = |part: &str| part.as_ptr() as usize - cmdline.as_ptr() as usize;
    let start = if span.is_empty() {
        offset(word)
    } else {
        offset(span)
    };
    cmdline
        .get(start..offset(word) + word.len())
        .unwrap_or(word)
}

impl<'a> Options<'a> {
    /// Reads every word of the command line, later words overriding earlier
    /// ones as in Linux. Words that are not ours are ignored.
    pub(crate) fn parse(cmdline: &'a str) -> Self {
        let mut options = Self::default();
        for word in words(cmdline) {
            let (key, value) = key_value(word);
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
                ("tsc_early_khz", Some(value)) => {
                    options.tsc_early_khz = Some(TscEarlyKhz::parse(value));
                }
                ("mote.exit", Some("ready")) => options.exit = ExitPolicy::Ready,
                ("mote.exit", Some("never")) => options.exit = ExitPolicy::Never,
                ("mote.exit", Some("idle")) => options.exit = ExitPolicy::WhenIdle,
                ("mote.crash", Some("page-fault")) => options.crash = Some(Crash::PageFault),
                ("mote.crash", Some("ap-page-fault")) => options.crash = Some(Crash::ApPageFault),
                ("mote.crash", Some("panic")) => options.crash = Some(Crash::Panic),
                ("mote.crash", Some("divide-error")) => options.crash = Some(Crash::DivideError),
                ("mote.inject", Some("stray-interrupt")) => options.stray_interrupt = true,
                ("mote.tslog", Some("1" | "on" | "yes")) => {
                    (options.tslog, options.tslog_markers) = (true, false);
                }
                ("mote.tslog", Some("markers")) => {
                    (options.tslog, options.tslog_markers) = (true, true)
                }
                ("mote.tslog", Some("0" | "off" | "no")) => {
                    (options.tslog, options.tslog_markers) = (false, false);
                }
                ("mote.blk", Some(list))
                    if list
                        .split(',')
                        .all(|item| matches!(item, "verify" | "bench")) =>
                {
                    options.blk_verify = list.split(',').any(|item| item == "verify");
                    options.blk_bench = list.split(',').any(|item| item == "bench");
                }
                ("mote.blk.write", Some(range)) if parse_range(range).is_some() => {
                    options.blk_write = parse_range(range);
                }
                ("mote.blk.seed", Some(seed)) if lex::number(seed).is_some() => {
                    options.blk_seed = lex::number(seed).unwrap_or(disk_pattern::DEFAULT_SEED);
                }
                ("mote.acpi", Some("dump")) => options.acpi_dump = true,
                ("mote.smp", Some("off")) => options.smp = false,
                ("mote.smp", Some("on")) => options.smp = true,
                // Linux ignores a value it cannot parse; so do we.
                ("maxcpus", Some(count)) => {
                    if let Some(count) = lex::number(count).and_then(|n| u32::try_from(n).ok()) {
                        options.max_cpus = Some(count);
                    }
                }
                ("mote.bench", Some("exits")) => options.exit_cost = true,
                ("mote.boottimer", Some("off")) => options.boot_timer = BootTimer::Off,
                ("mote.boottimer", Some(address)) if lex::number(address).is_some() => {
                    options.boot_timer = lex::number(address).map_or(BootTimer::Off, BootTimer::At);
                }
                _ if crate::virtio::cmdline::is_device_key(key) => {
                    options.virtio_mmio_words =
                        span_through(cmdline, options.virtio_mmio_words, word);
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
    pub(crate) fn max_log_level(&self) -> log::LevelFilter {
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

/// `<lba>+<sectors>` (auto-radix numbers), as `mote.blk.write=` takes it.
fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (lba, rest) = lex::auto_radix(text)?;
    let sectors = lex::number(rest.strip_prefix('+')?)?;
    (sectors > 0).then_some((lba, sectors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_mmio_words_span_every_device_word_and_lex_the_same() {
        use crate::virtio::cmdline::virtio_mmio_devices_from_cmdline;
        extern crate alloc;
        use alloc::vec::Vec;
        let devices = |text: &str| {
            let mut found = Vec::new();
            let mut bad = Vec::new();
            virtio_mmio_devices_from_cmdline(
                text,
                |d| found.push(d),
                |b| bad.push(alloc::string::String::from(b.value)),
            );
            (found, bad)
        };
        for cmdline in [
            "",
            "console=ttyS0 quiet",
            "virtio_mmio.device=512@0xfeb00e00:12",
            "a virtio_mmio.device=512@0xfeb00e00:12 b=\"c virtio_mmio.device=1@2:3\" virtio_mmio.device_3=bad x",
            "virtio_mmio.device=\"512@0x1000:5 y\"  virtio_mmio.device_1=4K@0x2000:6\tz",
            "virtio_mmio.devicex=1@2:3 virtio_mmio.device_=1@2:3 virtio_mmio.device_7=1@0x3000:2",
        ] {
            let words = Options::parse(cmdline).virtio_mmio_words;
            assert_eq!(devices(words), devices(cmdline), "{cmdline:?}: {words:?}");
        }
        let words = Options::parse("a virtio_mmio.device=1@2:3 b virtio_mmio.device=4@5:6 c")
            .virtio_mmio_words;
        assert_eq!(words, "virtio_mmio.device=1@2:3 b virtio_mmio.device=4@5:6");
        assert_eq!(Options::parse("quiet").virtio_mmio_words, "");
    }

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
        assert!(!options.tslog_markers);
        let markers = Options::parse("mote.tslog=markers");
        assert!(markers.tslog && markers.tslog_markers);
        let off = Options::parse("mote.tslog=markers mote.tslog=0");
        assert!(!off.tslog && !off.tslog_markers);
        assert_eq!(options.crash, Some(Crash::Panic));
        assert_eq!(
            Options::parse("mote.crash=ap-page-fault").crash,
            Some(Crash::ApPageFault)
        );
        assert_eq!(
            Options::parse("mote.crash=page-fault").crash,
            Some(Crash::PageFault)
        );
        assert_eq!(Options::parse("mote.exit=never").exit, ExitPolicy::Never);
        assert!(Options::parse("").smp);
        assert!(!Options::parse("mote.smp=off").smp);
        assert!(Options::parse("mote.smp=off mote.smp=on").smp);
        assert_eq!(Options::parse("").max_cpus, None);
        assert_eq!(Options::parse("maxcpus=2").max_cpus, Some(2));
        assert_eq!(Options::parse("maxcpus=0x10").max_cpus, Some(16));
        assert_eq!(Options::parse("maxcpus=junk").max_cpus, None);
        assert_eq!(
            Options::parse("mote.smp=maybe").unrecognised[0].option,
            "mote.smp=maybe"
        );
        assert!(Options::parse("mote.acpi=dump").acpi_dump);
        assert!(Options::parse("mote.bench=exits").exit_cost);
        assert!(!Options::parse("mote.bench=other").exit_cost);
        assert_eq!(Options::parse("").boot_timer, BootTimer::WhenFirecracker);
        assert_eq!(
            Options::parse("mote.boottimer=0xd0000000").boot_timer,
            BootTimer::At(0xd000_0000)
        );
        assert_eq!(
            Options::parse("mote.boottimer=off").boot_timer,
            BootTimer::Off
        );
        assert_eq!(
            Options::parse("mote.exit=\"ready\"").exit,
            ExitPolicy::Ready
        );
    }

    #[test]
    fn tsc_early_khz_as_linux_reads_it() {
        let hz = |cmdline| {
            Options::parse(cmdline)
                .tsc_early_khz
                .and_then(TscEarlyKhz::hz)
        };
        assert_eq!(hz("tsc_early_khz=1000000"), Some(1_000_000_000));
        assert_eq!(hz("tsc_early_khz=0x10"), Some(16_000));
        assert_eq!(hz("tsc_early_khz=10000000"), Some(10_000_000_000));
        assert_eq!(
            hz("tsc_early_khz=5 tsc_early_khz=7"),
            Some(7000),
            "the last wins"
        );
        assert_eq!(Options::parse("").tsc_early_khz, None);
        for (bad, reason) in [
            ("0", "zero"),
            ("0x0", "zero"),
            ("10000001", "above 10 GHz"),
            ("18446744073709551615", "above 10 GHz"),
            ("18446744073709551616", "not a number"),
            ("", "not a number"),
            ("-1", "not a number"),
            ("1e6", "not a number"),
            ("1000000kHz", "not a number"),
            ("0x", "not a number"),
            ("\u{0}", "not a number"),
        ] {
            let cmdline = std::format!("tsc_early_khz={bad}");
            assert_eq!(
                Options::parse(&cmdline).tsc_early_khz,
                Some(TscEarlyKhz::Rejected { value: bad, reason }),
                "{cmdline}"
            );
        }
        assert_eq!(
            Options::parse("tsc_early_khz").tsc_early_khz,
            None,
            "no value: not the option"
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
        assert_eq!(bad.blk_seed, disk_pattern::DEFAULT_SEED);
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
    fn write_ranges() {
        assert_eq!(parse_range("2048+16"), Some((2048, 16)));
        assert_eq!(parse_range("0x800+0x10"), Some((2048, 16)));
        assert_eq!(parse_range("1+0"), None);
        assert_eq!(parse_range("1-2"), None);
        assert_eq!(parse_range("1+2x"), None);
    }
}

/// docs/command-line.md against this parser, in both directions.
#[cfg(test)]
mod documentation {
    extern crate alloc;
    extern crate std;

    use alloc::string::String;
    use alloc::vec::Vec;

    use super::Options;

    const PAGE: &str = include_str!("../../../docs/command-line.md");
    /// This file up to its tests: the parser's match arms.
    const PARSER: &str = include_str!("options.rs");

    /// `key` or `key=value` for every arm of [`Options::parse`] that names
    /// a literal `mote.` key (and its first literal value, if any).
    fn accepted() -> Vec<String> {
        let parser = &PARSER[..PARSER.find("#[cfg(test)]").unwrap()];
        parser
            .match_indices("(\"mote.")
            .map(|(at, _)| {
                let arm = &parser[at + 2..];
                let key = &arm[..arm.find('"').unwrap()];
                let rest = &arm[key.len() + 1..];
                match rest.strip_prefix(", Some(\"") {
                    Some(value) => alloc::format!("{key}={}", &value[..value.find('"').unwrap()]),
                    None => String::from(key),
                }
            })
            .collect()
    }

    /// Every `mote.` option named in a code span of the page, as
    /// `key=value` without the backticks.
    fn documented() -> Vec<&'static str> {
        PAGE.split('`')
            .skip(1)
            .step_by(2)
            .filter(|span| span.starts_with("mote.") && *span != "mote.")
            .collect()
    }

    #[test]
    fn every_accepted_option_is_documented() {
        let documented = documented();
        let missing: Vec<String> = accepted()
            .into_iter()
            .filter(|option| {
                !documented
                    .iter()
                    .any(|span| span.starts_with(option.as_str()))
            })
            .collect();
        assert!(
            !accepted().is_empty() && missing.is_empty(),
            "docs/command-line.md does not document {missing:?}"
        );
    }

    #[test]
    fn every_documented_option_is_accepted() {
        let unknown: Vec<&str> = documented()
            .into_iter()
            .filter(|span| {
                // A bare `key=` names an option whose values are listed elsewhere.
                if let Some(key) = span.strip_suffix('=') {
                    return !accepted().iter().any(|option| option.starts_with(key));
                }
                // A placeholder (`<n>`) stands for a value the parser checks; use one it takes.
                let word = span.replace("<lba>+<sectors>", "8+8").replace("<n>", "42");
                !Options::parse(&word).unrecognised.is_empty()
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/command-line.md documents options the parser rejects: {unknown:?}"
        );
    }
}
