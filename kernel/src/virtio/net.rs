//! virtio-net through `virtio-drivers`' `VirtIONetRaw`, as a smoltcp
//! `Device`.
//!
//! The buffers are mote's: receive buffers are allocated once and posted
//! again after each frame; a transmitted frame is written into a buffer
//! kept from an earlier one and handed to the device without waiting for
//! it (`VirtIONet::send` allocated two buffers, zeroed 1.5 KiB and spun
//! until the device had used each frame). A buffer the device has used
//! is taken back before the next frame is sent.
//!
//! smoltcp hands out a receive token and a transmit token at once, and the
//! receive token must give its buffer back to the device after use, so
//! both tokens share the device through a `RefCell`.

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::VirtIONetRaw;
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
/// The larger virtio-net header (`virtio_net_hdr` with `num_buffers`,
/// virtio v1.2 §5.1.6); a legacy device's is 10 bytes.
const NET_HEADER_MAX: usize = 12;
/// A transmit buffer: the header, then a frame of at most the MTU.
const TX_BUFFER_LEN: usize = NET_HEADER_MAX + ETHERNET_MTU;

type Raw = VirtIONetRaw<KernelHal, InOrder<SomeTransport<'static>>, QUEUE_SIZE>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    #[error("{0:?}")]
    Driver(virtio_drivers::Error),
    #[error("the device refused the features (cleared FEATURES_OK)")]
    FeaturesRefused,
}

/// The driver and the buffers the device holds.
struct Driver {
    /// First, so that its queues are unset before the buffers are freed.
    raw: Raw,
    /// The receive buffers posted, each under the token it was given.
    rx_posted: [Option<Box<[u8]>>; QUEUE_SIZE],
    /// Frames handed to the device and not yet given back, by token, with
    /// the length handed over.
    tx_in_flight: [Option<(Box<[u8]>, usize)>; QUEUE_SIZE],
    /// Transmit buffers given back, for the next frames; one is
    /// allocated when none is (at most one per descriptor).
    tx_free: Vec<Box<[u8]>>,
    /// The transport's: holds the queues' notifications for a turn.
    negotiation: Arc<Negotiation>,
}

impl Driver {
    fn new(
        transport: InOrder<SomeTransport<'static>>,
        negotiation: &Arc<Negotiation>,
        buffer_len: usize,
    ) -> Result<Self, NetError> {
        let raw = Raw::new(transport).map_err(NetError::Driver)?;
        let mut driver = Self {
            raw,
            rx_posted: [const { None }; QUEUE_SIZE],
            tx_in_flight: [const { None }; QUEUE_SIZE],
            tx_free: Vec::new(),
            negotiation: Arc::clone(negotiation),
        };
        for _ in 0..QUEUE_SIZE {
            driver
                .post_rx(vec![0; buffer_len].into_boxed_slice())
                .map_err(NetError::Driver)?;
        }
        Ok(driver)
    }

    /// Gives `buffer` to the device to receive into.
    fn post_rx(&mut self, mut buffer: Box<[u8]>) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer is kept in `rx_posted` under its token and not
        // touched until the device has used it and `receive_complete`
        // returned it; the queues are unset before it is freed (`raw` is
        // dropped first).
        let token = unsafe { self.raw.receive_begin(&mut buffer) }?;
        let slot = self
            .rx_posted
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)?;
        if slot.is_some() {
            return Err(virtio_drivers::Error::WrongToken);
        }
        *slot = Some(buffer);
        Ok(())
    }

    /// The next received frame's buffer and where its frame lies in it.
    fn receive(&mut self) -> Option<(Box<[u8]>, usize, usize)> {
        let token = self.raw.poll_receive()?;
        let Some(mut buffer) = self.rx_posted.get_mut(usize::from(token))?.take() else {
            log::warn!("virtio-net: a frame under token {token}, which holds no buffer");
            return None;
        };
        // SAFETY: `buffer` is the one posted under `token`.
        match unsafe { self.raw.receive_complete(token, &mut buffer) } {
            Ok((header, length)) => Some((buffer, header, header + length)),
            Err(error) => {
                log::warn!("virtio-net: receive failed: {error:?}");
                self.recycle(buffer);
                None
            }
        }
    }

    fn recycle(&mut self, buffer: Box<[u8]>) {
        if let Err(error) = self.post_rx(buffer) {
            log::warn!("virtio-net: receive buffer not recycled: {error:?}");
        }
    }

    /// Writes the held notifications, and holds again if `hold`. The
    /// transport writes them before its next access, and acknowledging
    /// the interrupt is the access `VirtIONetRaw` lets a driver make.
    fn write_held_notifications(&mut self, hold: bool) {
        self.negotiation.hold_notifications(false);
        if self.negotiation.notifications_held() {
            let _ = self.raw.ack_interrupt();
        }
        self.negotiation.hold_notifications(hold);
    }

    /// Takes back every frame the device has used.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some((buffer, length)) = self
                .tx_in_flight
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                log::warn!("virtio-net: a used frame under token {token}, which holds none");
                return;
            };
            // SAFETY: the same buffer and length as handed to
            // `transmit_begin` under `token`.
            if let Err(error) = unsafe { self.raw.transmit_complete(token, &buffer[..length]) } {
                log::warn!("virtio-net: transmit not completed: {error:?}");
                return;
            }
            self.tx_free.push(buffer);
        }
    }

    fn can_send(&mut self) -> bool {
        self.reclaim_tx();
        self.raw.can_send()
    }

    /// Writes a frame of `length` bytes with `fill` and hands it to the
    /// device.
    fn send<R>(&mut self, length: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        // The token came from `can_send`, which took back what the device
        // had used: a buffer is made only when every other is in flight.
        let mut buffer = self
            .tx_free
            .pop()
            .unwrap_or_else(|| vec![0; TX_BUFFER_LEN].into_boxed_slice());
        // Fails only for a buffer shorter than the header.
        let header = self
            .raw
            .fill_buffer_header(&mut buffer)
            .unwrap_or(NET_HEADER_MAX);
        let end = header + length;
        if buffer.len() < end {
            // Longer than the MTU smoltcp was given: not kept afterwards.
            buffer = vec![0; end].into_boxed_slice();
            let _ = self.raw.fill_buffer_header(&mut buffer);
        }
        let result = fill(&mut buffer[header..end]);
        // SAFETY: the buffer is kept in `tx_in_flight` under its token and
        // not touched until the device has used it and `transmit_complete`
        // returned it; the queues are unset before it is freed.
        match unsafe { self.raw.transmit_begin(&buffer[..end]) } {
            Ok(token) => {
                match self.tx_in_flight.get_mut(usize::from(token)) {
                    Some(slot @ None) => *slot = Some((buffer, end)),
                    _ => {
                        // The device reads it: leaked, never freed under it.
                        log::warn!("virtio-net: transmit token {token} already in flight");
                        Box::leak(buffer);
                    }
                }
                // A full ring while a turn holds the notifications: the
                // device is told now, so that it frees descriptors for the
                // rest of the turn's frames.
                if self.negotiation.holding() && !self.raw.can_send() {
                    self.write_held_notifications(true);
                }
            }
            Err(error) => {
                log::warn!("virtio-net: send failed: {error:?}");
                self.tx_free.push(buffer);
            }
        }
        result
    }
}

/// A virtio-net device, ready for smoltcp.
pub(crate) struct VirtioNetDevice {
    /// Boxed: the driver's queues and buffer tables are 2 KiB, and the
    /// device is moved from bring-up into the server (each move a memcpy).
    net: RefCell<Box<Driver>>,
    mac: [u8; 6],
}

impl VirtioNetDevice {
    /// Starts the device with receive buffers of `buffer_len` bytes
    /// ([`receive_buffer_len`]); `base` (its transport's address, or its
    /// PCI bus:device.function) makes a MAC for a device that offers none.
    pub(crate) fn new(
        transport: InOrder<SomeTransport<'static>>,
        negotiation: &Arc<Negotiation>,
        base: u64,
        buffer_len: usize,
    ) -> Result<Self, NetError> {
        // One notification for the receive buffers posted at start, not
        // one each: written by the acknowledgement below.
        negotiation.hold_notifications(true);
        let net = Driver::new(transport, negotiation, buffer_len).map(Box::new);
        negotiation.hold_notifications(false);
        let mut net = net?;
        if negotiation.refused() {
            return Err(NetError::FeaturesRefused);
        }
        // Rings the held notification, and clears what the start raised
        // before the interrupt line is unmasked.
        let _ = net.raw.ack_interrupt();
        net.raw.enable_interrupts();
        let mac = if negotiation.driver_features() & FEATURE_MAC != 0 {
            net.raw.mac_address()
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
        self.net.borrow().raw.poll_receive().is_some()
    }

    /// Acknowledges the device's interrupt (before the I/O APIC pin is
    /// unmasked again).
    pub(crate) fn ack_interrupt(&self) {
        let _ = self.net.borrow_mut().raw.ack_interrupt();
    }

    /// Holds the queues' notifications until
    /// [`Self::release_notifications`]: a turn's frames and reposted
    /// receive buffers are then announced with one write per queue, not
    /// one each (every write is a VM exit, and QEMU's virtio-net wakes its
    /// I/O thread for each).
    pub(crate) fn hold_notifications(&self) {
        self.net.borrow().negotiation.hold_notifications(true);
    }

    /// Writes the notifications held since [`Self::hold_notifications`].
    /// The transport writes them before its next access, and acknowledging
    /// the interrupt is the access `VirtIONetRaw` lets a driver make (the
    /// ISR over virtio-mmio; none with MSI-X): the turn that follows sees
    /// every frame received so far anyway.
    pub(crate) fn release_notifications(&self) {
        self.net.borrow_mut().write_held_notifications(false);
    }
}

pub(crate) struct RxToken<'a> {
    net: &'a RefCell<Box<Driver>>,
    buffer: Box<[u8]>,
    /// Where the frame lies in `buffer`, after the header.
    frame: core::ops::Range<usize>,
}

pub(crate) struct TxToken<'a> {
    net: &'a RefCell<Box<Driver>>,
}

impl phy::Device for VirtioNetDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let mut net = self.net.borrow_mut();
        if !net.can_send() {
            return None;
        }
        let (buffer, start, end) = net.receive()?;
        Some((
            RxToken {
                net: &self.net,
                buffer,
                frame: start..end,
            },
            TxToken { net: &self.net },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        self.net
            .borrow_mut()
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
        // The frame is read with the device unborrowed: smoltcp sends its
        // answer with the transmit token from inside `f`.
        let result = f(self.buffer.get(self.frame).unwrap_or_default());
        self.net.borrow_mut().recycle(self.buffer);
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.net.borrow_mut().send(len, f)
    }
}
