//! virtio-net through `virtio-drivers`, as a smoltcp `Device`.
//!
//! smoltcp hands out a receive token and a transmit token at once, and the
//! receive token must give its buffer back to the device after use, so
//! both tokens share the device through a `RefCell`.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use core::cell::RefCell;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::SomeTransport;

use super::transport::{InOrder, Negotiation};

pub(crate) use super::net_buffers::receive_buffer_len;

use super::hal::KernelHal;

/// Receive and transmit queue size (a power of two; QEMU allows 256).
const QUEUE_SIZE: usize = 16;
/// Queues the driver sets up: receive (0) and transmit (1), as
/// `virtio-drivers` 0.13's `VirtIONet` numbers them (virtio v1.2 §5.1.2).
pub(crate) const QUEUES: u16 = 2;
/// VIRTIO_NET_F_MAC (virtio v1.2 §5.1.3): the config space holds a MAC.
const FEATURE_MAC: u64 = 1 << 5;
/// Ethernet MTU as smoltcp counts it (frame without the FCS).
const ETHERNET_MTU: usize = 1514;

type Net = VirtIONet<KernelHal, InOrder<SomeTransport<'static>>, QUEUE_SIZE>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    #[error("{0:?}")]
    Driver(virtio_drivers::Error),
    #[error("the device refused the features (cleared FEATURES_OK)")]
    FeaturesRefused,
}

/// A virtio-net device, ready for smoltcp.
pub(crate) struct VirtioNetDevice {
    /// Boxed: the driver's queues and buffer table are 2 KiB, and the
    /// device is moved from bring-up into the server (each move a memcpy).
    net: RefCell<Box<Net>>,
    mac: [u8; 6],
}

impl VirtioNetDevice {
    /// Starts the device with receive buffers of `buffer_len` bytes
    /// ([`receive_buffer_len`]); `base` (its transport's address, or its
    /// PCI bus:device.function) makes a MAC for a device that offers none.
    pub(crate) fn new(
        transport: InOrder<SomeTransport<'static>>,
        negotiation: &Negotiation,
        base: u64,
        buffer_len: usize,
    ) -> Result<Self, NetError> {
        // One notification for the receive buffers posted at start, not
        // one each: written by the acknowledgement below.
        negotiation.hold_notifications(true);
        let net = Net::new(transport, buffer_len).map(Box::new);
        negotiation.hold_notifications(false);
        let mut net = net.map_err(NetError::Driver)?;
        if negotiation.refused() {
            return Err(NetError::FeaturesRefused);
        }
        // Rings the held notification, and clears what the start raised
        // before the interrupt line is unmasked.
        let _ = net.ack_interrupt();
        net.enable_interrupts();
        let mac = if negotiation.driver_features() & FEATURE_MAC != 0 {
            net.mac_address()
        } else {
            let mac = crate::net::mac_address::locally_administered(base);
            log::warn!(
                "virtio-net at {base:#x}: the device offers no MAC; using {}",
                mote_boot::protocol::report::MacAddress(mac)
            );
            mac
        };
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
    net: &'a RefCell<Box<Net>>,
    buffer: RxBuffer,
}

pub(crate) struct TxToken<'a> {
    net: &'a RefCell<Box<Net>>,
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
