//! The console: COM1 behind the `log` facade, and the report's output.
//!
//! Until the ready mark, output is kept in RAM ([`LogBuffer`]): each serial
//! byte is a VM exit, and none may slow the boot being measured. `go_live`
//! flushes it; a crash flushes it first.

pub(crate) mod log_buffer;
#[cfg(target_os = "none")]
mod serial;

#[cfg(target_os = "none")]
pub(crate) use machine::{Writer, go_live, init, print, print_now, recover_for_crash};

/// `println!` for the boot report and crash messages.
#[macro_export]
macro_rules! console_println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(target_os = "none")]
mod machine {
    use core::fmt::{self, Write};
    use core::sync::atomic::{AtomicBool, Ordering};

    use spin::Mutex;

    use super::log_buffer::LogBuffer;
    use super::serial::Com1;

    const BOOT_LOG_SIZE: usize = 32 * 1024;

    /// COM1, opened on first use; the one owner of the UART.
    static SERIAL: Mutex<Option<Com1>> = Mutex::new(None);
    /// The boot log's bytes; [`BOOT_LOG`] is their one owner. Needs no
    /// initial value: not zeroed (`linker.ld` `.noinit`).
    #[unsafe(link_section = ".bss.noinit.boot_log")]
    static mut BOOT_LOG_STORAGE: [u8; BOOT_LOG_SIZE] = [0; BOOT_LOG_SIZE];
    static BOOT_LOG: Mutex<LogBuffer<BOOT_LOG_SIZE>> = Mutex::new(LogBuffer::new(
        #[allow(
            clippy::deref_addrof,
            reason = "a `static mut` is reached through a raw pointer"
        )]
        // SAFETY: the one reference to `BOOT_LOG_STORAGE` ever made.
        unsafe {
            &mut *(&raw mut BOOT_LOG_STORAGE)
        },
    ));
    static LIVE: AtomicBool = AtomicBool::new(false);
    static LOGGER: Console = Console;

    struct Console;

    impl log::Log for Console {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &log::Record<'_>) {
            // Libraries' info messages (virtio-drivers' feature negotiation…)
            // are detail for mote's console: shown as debug.
            let level = match record.level() {
                log::Level::Info if !record.target().starts_with("mote") => log::Level::Debug,
                level => level,
            };
            if level <= log::max_level() {
                let level = match level {
                    log::Level::Error => "ERROR",
                    log::Level::Warn => "WARN ",
                    log::Level::Info => "INFO ",
                    log::Level::Debug => "DEBUG",
                    log::Level::Trace => "TRACE",
                };
                print(format_args!("[{level}] {}\n", record.args()));
            }
        }

        fn flush(&self) {}
    }

    /// Installs the logger with the level the command line asked for.
    pub(crate) fn init(level: log::LevelFilter) {
        // Fails only if called twice; the first logger stays.
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(level);
    }

    /// Prints, to the boot buffer before the ready mark and to COM1 after.
    pub(crate) fn print(args: fmt::Arguments<'_>) {
        if LIVE.load(Ordering::Acquire) {
            with_serial(|serial| {
                let _ = serial.write_fmt(args);
            });
        } else {
            let _ = BOOT_LOG.lock().write_fmt(args);
        }
    }

    /// Writes straight to COM1 even before [`go_live`]: for the ready line,
    /// which the host times, so it goes out before the buffered boot log.
    pub(crate) fn print_now(args: fmt::Arguments<'_>) {
        with_serial(|serial| {
            let _ = serial.write_fmt(args);
        });
    }

    /// The console as a `fmt::Write`: every write goes through [`print`],
    /// so no lock is held between writes.
    pub(crate) struct Writer;

    impl Write for Writer {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            print(format_args!("{text}"));
            Ok(())
        }
    }

    /// Flushes the boot buffer and sends everything straight to COM1 from now on.
    pub(crate) fn go_live() {
        let mut log = BOOT_LOG.lock();
        let (bytes, dropped) = log.take();
        with_serial(|serial| {
            bytes.iter().for_each(|&byte| serial.put(byte));
            if dropped > 0 {
                let _ = writeln!(serial, "[WARN ] {dropped} bytes of boot log dropped");
            }
        });
        LIVE.store(true, Ordering::Release);
    }

    /// The first CPU on the crash path; any later one stops.
    static CRASHING: AtomicBool = AtomicBool::new(false);
    /// How many times the crash path tries a lock before forcing it:
    /// enough for another CPU to finish a line (a FIFO's worth of bytes).
    const CRASH_LOCK_TRIES: u32 = 1_000_000;

    /// For the crash path: makes the console usable whatever state it was in
    /// (a panic may strike while a lock is held), then goes live. Only the
    /// first CPU to crash gets through; a CPU that crashes after it halts
    /// here, so one failure report is printed, whole.
    pub(crate) fn recover_for_crash() {
        if CRASHING.swap(true, Ordering::AcqRel) {
            crate::arch::x86_64::cpu::halt_forever();
        }
        // Another CPU may be printing: give it the time to let go.
        let free = (0..CRASH_LOCK_TRIES).any(|_| {
            let free = !SERIAL.is_locked() && !BOOT_LOG.is_locked();
            core::hint::spin_loop();
            free
        });
        if !free {
            // SAFETY: the crash path, once (CRASHING): a lock still held
            // is held by this CPU (a panic inside a print) or by another
            // that did not let go in the tries above; forcing it may
            // interleave that CPU's bytes with the report, which is the
            // price of never hanging before the power-off.
            unsafe {
                SERIAL.force_unlock();
                BOOT_LOG.force_unlock();
            }
        }
        go_live();
    }

    fn with_serial(f: impl FnOnce(&mut Com1)) {
        let mut serial = SERIAL.lock();
        // SAFETY: COM1 is at its PC address on every supported VMM, and
        // this mutex is its only way in: the port is opened once.
        let port = serial.get_or_insert_with(|| unsafe { Com1::new() });
        f(port);
    }
}
