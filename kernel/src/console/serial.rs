//! COM1, the 16550 UART every microVM VMM emulates (QEMU isa-serial,
//! Firecracker), at its PC address.
//!
//! Initialised as `uart_16550` 0.4 initialises it (38400 8N1, FIFOs on) and
//! written by hand, because every port access is a VM exit: the line status
//! is read once per FIFO load rather than once per byte as
//! `SerialPort::send` does, half the exits. Every access goes through
//! `cpu::Port`, so the boot trace counts them.

use core::fmt;

use crate::arch::x86_64::cpu::Port;

/// COM1's base port (IBM PC/AT layout).
const COM1: u16 = 0x3f8;
/// Line status register and its "transmitter holding register empty" bit:
/// with FIFOs on, the whole transmit FIFO is empty (16550 datasheet, LSR bit 5).
const COM1_LSR: u16 = COM1 + 5;
/// The other registers `new` programs (16550 datasheet, register map):
/// interrupt enable (the divisor's high byte while DLAB is set), FIFO
/// control, line control, modem control.
const COM1_IER: u16 = COM1 + 1;
const COM1_FCR: u16 = COM1 + 2;
const COM1_LCR: u16 = COM1 + 3;
const COM1_MCR: u16 = COM1 + 4;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// The 16550's transmit FIFO depth.
const TX_FIFO_DEPTH: usize = 16;

/// COM1, initialised.
pub(super) struct Com1 {
    data: Port<u8>,
    line_status: Port<u8>,
    /// Bytes that can be written before the FIFO must be checked again.
    fifo_room: usize,
}

impl Com1 {
    /// Initialises COM1.
    ///
    /// # Safety
    /// COM1 must exist at its PC address (it does on every supported VMM)
    /// and nothing else may drive it while this value lives.
    pub(super) unsafe fn new() -> Self {
        // `uart_16550::SerialPort::init`'s sequence: interrupts off, the
        // divisor 3 (38400 baud) under DLAB, 8N1, FIFOs on and cleared
        // (14-byte trigger), DTR/RTS/OUT2, then the receive interrupt on.
        for (register, value) in [
            (COM1_IER, 0x00),
            (COM1_LCR, 0x80),
            (COM1, 0x03),
            (COM1_IER, 0x00),
            (COM1_LCR, 0x03),
            (COM1_FCR, 0xc7),
            (COM1_MCR, 0x0b),
            (COM1_IER, 0x01),
        ] {
            // SAFETY: forwarded from this function's contract: COM1 is
            // there and this code alone drives it.
            unsafe { Port::<u8>::new(register).write(value) };
        }
        Self {
            data: Port::new(COM1),
            line_status: Port::new(COM1_LSR),
            fifo_room: 0,
        }
    }

    /// Writes `byte`, with a carriage return before each line feed.
    pub(super) fn put(&mut self, byte: u8) {
        if byte == b'\n' {
            self.put_raw(b'\r');
        }
        self.put_raw(byte);
    }

    fn put_raw(&mut self, byte: u8) {
        if self.fifo_room == 0 {
            // SAFETY: COM1 is this value's alone (`new`); reading the line
            // status has no effect on memory.
            while unsafe { self.line_status.read() } & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            self.fifo_room = TX_FIFO_DEPTH;
        }
        // SAFETY: as above; the FIFO has room for this byte.
        unsafe { self.data.write(byte) };
        self.fifo_room -= 1;
    }
}

impl fmt::Write for Com1 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(|byte| self.put(byte));
        Ok(())
    }
}
