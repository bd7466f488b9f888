//! virtio-net through `virtio-drivers`, as a smoltcp `Device`.
//!
//! smoltcp hands out a receive token and a transmit token at once, and the
//! receive token must give its buffer back to the device after use, so
//! both tokens share the device through a `RefCell`.
#![deny(unsafe_code)]

use core::cell::RefCell;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::mmio::MmioTransport;

use super::hal::KernelHal;

/// Receive and transmit queue size (a power of two; QEMU allows 256).
const QUEUE_SIZE: usize = 16;
/// Receive buffer length: an Ethernet frame plus the virtio-net header
/// (virtio-drivers' minimum is 1526).
const BUFFER_LEN: usize = 1536;
/// Ethernet MTU as smoltcp counts it (frame without the FCS).
const ETHERNET_MTU: usize = 1514;

type Net = VirtIONet<KernelHal, MmioTransport<'static>, QUEUE_SIZE>;

/// A virtio-net device, ready for smoltcp.
pub(crate) struct VirtioNetDevice {
    net: RefCell<Net>,
    mac: [u8; 6],
}

impl VirtioNetDevice {
    pub(crate) fn new(transport: MmioTransport<'static>) -> Result<Self, virtio_drivers::Error> {
        let mut net = Net::new(transport, BUFFER_LEN)?;
        net.enable_interrupts();
        let mac = net.mac_address();
        Ok(Self {
            net: RefCell::new(net),
            mac,
        })
    }

    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Frames received and not yet taken.
    pub(crate) fn has_pending_rx(&self) -> bool {
        self.net.borrow().can_recv()
    }

    /// Acknowledges the device's interrupt (before the I/O APIC pin is
    /// unmasked again).
    pub(crate) fn ack_interrupt(&self) {
        let _ = self.net.borrow_mut().ack_interrupt();
    }
}

pub(crate) struct RxToken<'a> {
    net: &'a RefCell<Net>,
    buffer: RxBuffer,
}

pub(crate) struct TxToken<'a> {
    net: &'a RefCell<Net>,
}

impl phy::Device for VirtioNetDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let mut net = self.net.borrow_mut();
        if !net.can_recv() || !net.can_send() {
            return None;
        }
        let buffer = net.receive().ok()?;
        Some((
            RxToken {
                net: &self.net,
                buffer,
            },
            TxToken { net: &self.net },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        self.net
            .borrow()
            .can_send()
            .then_some(TxToken { net: &self.net })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = ETHERNET_MTU;
        capabilities
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let result = f(self.buffer.packet());
        if let Err(error) = self.net.borrow_mut().recycle_rx_buffer(self.buffer) {
            log::warn!("virtio-net: receive buffer not recycled: {error:?}");
        }
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut net = self.net.borrow_mut();
        let mut buffer = net.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        if let Err(error) = net.send(buffer) {
            log::warn!("virtio-net: send failed: {error:?}");
        }
        result
    }
}
