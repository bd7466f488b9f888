//! COM1 console behind the `log` facade.
//!
//! Until the ready mark, output is kept in RAM ([`LogBuffer`]): each serial
//! byte is a VM exit, and none may slow the boot being measured. `go_live`
//! flushes it; a crash flushes it first.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use uart_16550::SerialPort;

use super::cpu;
use crate::log_buffer::{LogBuffer, LogStorage};

/// COM1, the port every microVM VMM emulates (QEMU isa-serial, Firecracker).
const COM1: u16 = 0x3f8;
/// Line status register and its "transmitter holding register empty" bit:
/// with FIFOs on (`SerialPort::init` enables them), the whole transmit FIFO
/// is empty (16550 datasheet, LSR bit 5).
const COM1_LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// The 16550's transmit FIFO depth.
const TX_FIFO_DEPTH: usize = 16;
const BOOT_LOG_SIZE: usize = 32 * 1024;

static SERIAL: Mutex<Option<Com1>> = Mutex::new(None);
#[unsafe(link_section = ".bss.noinit.boot_log")]
static BOOT_LOG_STORAGE: LogStorage<BOOT_LOG_SIZE> = LogStorage::new();
static BOOT_LOG: Mutex<LogBuffer<BOOT_LOG_SIZE>> = Mutex::new(LogBuffer::new(&BOOT_LOG_STORAGE));
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
pub fn init(level: log::LevelFilter) {
    // Fails only if called twice; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Prints, to the boot buffer before the ready mark and to COM1 after.
pub fn print(args: fmt::Arguments<'_>) {
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
pub fn print_now(args: fmt::Arguments<'_>) {
    with_serial(|serial| {
        let _ = serial.write_fmt(args);
    });
}

/// Runs `f` with COM1 as a `fmt::Write` (after the ready mark).
pub fn with_writer(f: impl FnOnce(&mut dyn Write)) {
    with_serial(|serial| f(serial));
}

/// Flushes the boot buffer and sends everything straight to COM1 from now on.
pub fn go_live() {
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

/// For the crash path: makes the console usable whatever state it was in
/// (a panic may strike while a lock is held), then goes live.
pub fn recover_for_crash() {
    // SAFETY: called only on the crash path, after which nothing that held
    // these locks runs again; one CPU, interrupts off.
    unsafe {
        SERIAL.force_unlock();
        BOOT_LOG.force_unlock();
    }
    go_live();
}

fn with_serial(f: impl FnOnce(&mut Com1)) {
    let mut serial = SERIAL.lock();
    let port = serial.get_or_insert_with(|| {
        // SAFETY: COM1 is a 16550 at 0x3f8 on every supported VMM, and this
        // is its only user.
        let mut port = unsafe { SerialPort::new(COM1) };
        port.init();
        Com1 { fifo_room: 0 }
    });
    f(port);
}

/// COM1 after `uart_16550` has initialised it (FIFOs on). Every port access
/// is a VM exit, so the line status is read once per FIFO load rather than
/// once per byte as `SerialPort::send` does: half the exits.
struct Com1 {
    /// Bytes that can be written before the FIFO must be checked again.
    fifo_room: usize,
}

impl Com1 {
    fn put(&mut self, byte: u8) {
        if byte == b'\n' {
            self.put_raw(b'\r');
        }
        self.put_raw(byte);
    }

    fn put_raw(&mut self, byte: u8) {
        if self.fifo_room == 0 {
            while cpu::inb(COM1_LSR) & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            self.fifo_room = TX_FIFO_DEPTH;
        }
        cpu::outb(COM1, byte);
        self.fifo_room -= 1;
    }
}

impl Write for Com1 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(|byte| self.put(byte));
        Ok(())
    }
}

/// `println!` for the boot report and crash messages.
#[macro_export]
macro_rules! console_println {
    ($($arg:tt)*) => {
        $crate::arch::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
