//! COM1, the 16550 UART every microVM VMM emulates (QEMU isa-serial,
//! Firecracker), at its PC address.
//!
//! `uart_16550` initialises it (FIFOs on); bytes are then written by hand,
//! because every port access is a VM exit: the line status is read once per
//! FIFO load rather than once per byte as `SerialPort::send` does, half the
//! exits. That batching is why this is not the crate's writer.

use core::fmt;

use uart_16550::SerialPort;
use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};

/// COM1's base port (IBM PC/AT layout).
const COM1: u16 = 0x3f8;
/// Line status register and its "transmitter holding register empty" bit:
/// with FIFOs on, the whole transmit FIFO is empty (16550 datasheet, LSR bit 5).
const COM1_LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// The 16550's transmit FIFO depth.
const TX_FIFO_DEPTH: usize = 16;

/// COM1 after `uart_16550` has initialised it.
pub(super) struct Com1 {
    data: PortWriteOnly<u8>,
    line_status: PortReadOnly<u8>,
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
        // SAFETY: forwarded from this function's contract.
        let mut port = unsafe { SerialPort::new(COM1) };
        port.init();
        Self {
            data: PortWriteOnly::new(COM1),
            line_status: PortReadOnly::new(COM1_LSR),
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
