//! Opening virtio-mmio transports found on the command line or in ACPI:
//! empty slots, bad magic and unsupported versions are skipped with one log
//! line each. `virtio-drivers`' `MmioTransport` owns the registers;
//! [`InOrder`] wraps it so that the device status is raised one bit at a
//! time, as the virtio spec's initialisation sequence says and Firecracker
//! enforces (docs/virtio-mmio.md).

extern crate alloc;

use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use virtio_drivers::PhysAddr;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{
    DeviceStatus, DeviceType, InterruptStatus, SomeTransport, Transport,
};
use volatile::VolatilePtr;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::MmioDevice;
use super::pci::{CommonConfig, MsixPlace, QueueVectors};
use crate::memory::physical::IdentityMapped;

/// The smallest window that holds the registers and some config space.
const MIN_WINDOW: u64 = 0x100;

/// A transport that answered with a device behind it.
pub(crate) struct Probed {
    pub(crate) transport: InOrder<SomeTransport<'static>>,
    /// What the driver negotiated through `transport`, readable after the
    /// driver has taken the transport.
    pub(crate) negotiation: Arc<Negotiation>,
    pub(crate) kind: DeviceType,
    pub(crate) version: u32,
    /// The VendorID register, read for network devices only (one exit):
    /// it decides their receive buffer size (`net::receive_buffer_len`).
    pub(crate) vendor: Option<u32>,
    /// A virtio-pci function's MSI-X table, not yet programmed.
    pub(crate) msix: Option<MsixPlace>,
}

/// The word the boot report uses for a device type.
pub(crate) fn kind_name(kind: DeviceType) -> &'static str {
    match kind {
        DeviceType::Network => "network",
        DeviceType::Block => "block",
        DeviceType::Console => "console",
        DeviceType::EntropySource => "entropy",
        DeviceType::MemoryBallooning => "balloon",
        DeviceType::ScsiHost => "scsi",
        DeviceType::GPU => "gpu",
        DeviceType::Input => "input",
        DeviceType::Socket => "vsock",
        _ => "other",
    }
}

/// Opens the transport at `device`, or says in one log line why not.
pub(crate) fn probe(device: MmioDevice, mapped: IdentityMapped) -> Option<Probed> {
    let base = device.base;
    if device.size < MIN_WINDOW || !mapped.contains(base, device.size) {
        log::warn!(
            "virtio-mmio {base:#x}: window of {:#x} bytes is too small or not mapped; skipped",
            device.size
        );
        return None;
    }
    let header = NonNull::new(usize::try_from(base).ok()? as *mut VirtIOHeader)?;
    let size = usize::try_from(device.size).ok()?;
    // SAFETY: the window is inside the identity map, MMIO, and described by
    // the VMM as a virtio-mmio transport; this is its only user.
    match unsafe { MmioTransport::new(header, size) } {
        Ok(transport) => {
            let version = match transport.version() {
                MmioVersion::Legacy => 1,
                MmioVersion::Modern => 2,
            };
            let kind = transport.device_type();
            let vendor = (kind == DeviceType::Network).then(|| transport.vendor_id());
            let (mut transport, negotiation) = InOrder::new(SomeTransport::from(transport));
            if version == 1 {
                transport = transport.legacy_mmio(header.as_ptr() as usize);
            }
            Some(Probed {
                transport,
                negotiation,
                kind,
                version,
                vendor,
                msix: None,
            })
        }
        Err(MmioError::InvalidDeviceID(_)) => {
            log::debug!("virtio-mmio {base:#x}: empty slot (device ID 0); skipped");
            None
        }
        Err(error) => {
            log::warn!("virtio-mmio {base:#x}: {error}; skipped");
            None
        }
    }
}

/// The status bits a driver sets during initialisation, in the order the
/// virtio spec (v1.2 §3.1.1) sets them; `FAILED` may come at any point.
const STATUS_ORDER: [DeviceStatus; 5] = [
    DeviceStatus::ACKNOWLEDGE,
    DeviceStatus::DRIVER,
    DeviceStatus::FEATURES_OK,
    DeviceStatus::DRIVER_OK,
    DeviceStatus::FAILED,
];

/// VIRTIO_F_VERSION_1 (virtio v1.2 §6): without it the device is legacy,
/// which has no FEATURES_OK step to read back (§3.1.2).
const FEATURE_VERSION_1: u64 = 1 << 32;

/// Queue `queue`'s bit in [`InOrder`]'s set (queues past 31 are not kept).
fn queue_bit(queue: u16) -> u32 {
    1u32.checked_shl(u32::from(queue)).unwrap_or(0)
}

/// What initialisation through an [`InOrder`] transport ended with.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    driver_features: AtomicU64,
    refused: AtomicBool,
    /// Notifications are held (see [`Negotiation::hold_notifications`]).
    holding: AtomicBool,
    /// The queues with a held notification (queue `n` is bit `n`).
    held: AtomicU32,
    /// The queues whose MSI-X vector the device did not take (bit `n`).
    vectors_refused: AtomicU32,
}

impl Negotiation {
    /// The feature bits the driver accepted.
    pub(crate) fn driver_features(&self) -> u64 {
        self.driver_features.load(Ordering::Relaxed)
    }

    /// The device cleared FEATURES_OK: it does not accept those features,
    /// and the driver must not use it (virtio v1.2 §3.1.1 step 6).
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// While `hold` is on, the transport's notifications are recorded per
    /// queue instead of written; once it is off, the transport's next
    /// `notify` or `ack_interrupt` writes one per queue that had any. A
    /// notification tells the device to look at the queue's available ring
    /// (virtio v1.2 §2.7.13), so one after a burst of buffers stands for
    /// all of them: `virtio-drivers` notifies after each of the receive
    /// buffers it posts at start, 16 VM exits where one does.
    pub(crate) fn hold_notifications(&self, hold: bool) {
        self.holding.store(hold, Ordering::Relaxed);
    }

    /// Notifications are being held.
    pub(crate) fn holding(&self) -> bool {
        self.holding.load(Ordering::Relaxed)
    }

    /// Some queue's notification is held, to be written at the
    /// transport's next access once holding is off.
    pub(crate) fn notifications_held(&self) -> bool {
        self.held.load(Ordering::Relaxed) != 0
    }

    /// The queues (bit `n` for queue `n`) whose MSI-X vector the device
    /// read back as `NO_VECTOR`, when [`InOrder::set_queue_vectors`] set
    /// them.
    pub(crate) fn vectors_refused(&self) -> u32 {
        self.vectors_refused.load(Ordering::Relaxed)
    }
}

/// A transport whose status register only ever gains one bit per write.
///
/// `virtio-drivers` 0.13 writes ACKNOWLEDGE|DRIVER in one go (its
/// `Transport::begin_init`), which the spec's sequence does not allow and
/// Firecracker rejects (`invalid virtio driver status transition`), leaving
/// the device inactive. It also answers, without a register access (each is
/// a VM exit), two questions whose answer it knows: whether a queue is in
/// use since the reset it wrote, and a legacy device's configuration
/// generation. Given [`QueueVectors`], it sets each virtio-pci queue's
/// MSI-X vector before the queue is set up, which `virtio-drivers` never
/// does. Everything else is delegated unchanged.
pub(crate) struct InOrder<T> {
    inner: T,
    /// The last status written (not read back: each read is a VM exit).
    written: DeviceStatus,
    /// The queues set since this transport reset the device (queue `n`
    /// is bit `n`); `None` before that reset, when only the device knows.
    queues_set: Option<u32>,
    negotiation: Arc<Negotiation>,
    /// Sets each queue's MSI-X vector as the queue is set up.
    vectors: Option<QueueVectors>,
    /// A legacy virtio-mmio window's address: its features are read and
    /// written as the one 32-bit word a legacy device has.
    legacy_mmio: Option<usize>,
    /// A virtio-pci function's common configuration: its queues are set
    /// up here, each 64-bit address written as two 32-bit halves.
    pci_common: Option<CommonConfig>,
}

/// Legacy virtio-mmio feature registers (virtio 1.2 §4.2.4: the legacy
/// layout keeps the offsets of §4.2.2).
const MMIO_DEVICE_FEATURES: usize = 0x010;
const MMIO_DEVICE_FEATURES_SEL: usize = 0x014;
const MMIO_DRIVER_FEATURES: usize = 0x020;
const MMIO_DRIVER_FEATURES_SEL: usize = 0x024;

impl<T: Transport> InOrder<T> {
    pub(super) fn new(inner: T) -> (Self, Arc<Negotiation>) {
        let negotiation = Arc::new(Negotiation::default());
        let transport = Self {
            inner,
            written: DeviceStatus::empty(),
            queues_set: None,
            negotiation: Arc::clone(&negotiation),
            vectors: None,
            legacy_mmio: None,
            pci_common: None,
        };
        (transport, negotiation)
    }

    /// The transport is the legacy virtio-mmio window at `base`. A legacy
    /// device has 32 feature bits (virtio 0.9.5; QEMU answers 0 for any
    /// other word), so only word 0 is read and written: `MmioTransport`
    /// selects and moves both halves, 8 accesses (VM exits) where 4 do.
    fn legacy_mmio(mut self, base: usize) -> Self {
        self.legacy_mmio = Some(base);
        self
    }

    /// The transport is virtio-pci with this common configuration: its
    /// queues are set up through [`CommonConfig::set_queue`].
    pub(super) fn pci_common_config(mut self, common: CommonConfig) -> Self {
        self.pci_common = Some(common);
        self
    }

    /// Writes `value` to the legacy window's register at `offset`.
    fn legacy_write(base: usize, offset: usize, value: u32) {
        let register = NonNull::new((base + offset) as *mut u32).expect("a window is not at 0");
        // SAFETY: `base` is this transport's own virtio-mmio window, in the
        // identity map (checked by `probe`), and `offset` one of its
        // 32-bit registers; the MmioTransport beside it never holds a
        // reference into the window, only volatile pointers.
        unsafe { VolatilePtr::new(register) }.write(value);
    }

    fn legacy_read(base: usize, offset: usize) -> u32 {
        let register = NonNull::new((base + offset) as *mut u32).expect("a window is not at 0");
        // SAFETY: as in `legacy_write`.
        unsafe { VolatilePtr::new(register) }.read()
    }

    /// From now on each queue the driver sets up gets its MSI-X vector
    /// from `vectors` first (virtio-pci; `virtio-drivers` sets none).
    pub(crate) fn set_queue_vectors(&mut self, vectors: QueueVectors) {
        self.vectors = Some(vectors);
    }

    /// Writes the notifications held while holding was on, once it is off.
    fn write_held_notifications(&mut self) {
        if self.negotiation.holding.load(Ordering::Relaxed) {
            return;
        }
        let mut held = self.negotiation.held.swap(0, Ordering::Relaxed);
        while held != 0 {
            let queue = held.trailing_zeros();
            held &= held - 1;
            // At most 31: a `u32` has 32 bits.
            if let Ok(queue) = u16::try_from(queue) {
                self.inner.notify(queue);
            }
        }
    }

    /// Adds `bit` to the status, and after FEATURES_OK of a modern device
    /// checks that the device kept it.
    fn raise(&mut self, bit: DeviceStatus) {
        if bit == DeviceStatus::DRIVER_OK && self.negotiation.refused() {
            // Never tell a device that refused its features to go live.
            return;
        }
        self.written |= bit;
        self.inner.set_status(self.written);
        let modern = self.negotiation.driver_features() & FEATURE_VERSION_1 != 0;
        if bit == DeviceStatus::FEATURES_OK
            && modern
            && !self.inner.get_status().contains(DeviceStatus::FEATURES_OK)
        {
            self.negotiation.refused.store(true, Ordering::Relaxed);
            self.written |= DeviceStatus::FAILED;
            self.inner.set_status(self.written);
        }
    }
}

/// `set_status`, `write_driver_features`, the queue bookkeeping and the
/// legacy configuration generation differ from the inner transport; the
/// trait's own `begin_init` and `finish_init` call them.
impl<T: Transport> Transport for InOrder<T> {
    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            // A reset: every queue is unused after it (virtio v1.2 §2.1.2,
            // §4.2.2.1 for QueueReady and §4.2.4 for QueuePFN).
            self.queues_set = Some(0);
            if let Some(vectors) = self.vectors.as_mut() {
                vectors.reset();
            }
        }
        if status.is_empty() || !status.contains(self.written) {
            // A reset, or a request to drop bits (which only a reset may
            // do): written as asked.
            self.written = status;
            self.inner.set_status(status);
            return;
        }
        for bit in STATUS_ORDER {
            if status.contains(bit) && !self.written.contains(bit) {
                self.raise(bit);
            }
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.negotiation
            .driver_features
            .store(driver_features, Ordering::Relaxed);
        match (self.legacy_mmio, u32::try_from(driver_features)) {
            (Some(base), Ok(word)) => {
                Self::legacy_write(base, MMIO_DRIVER_FEATURES_SEL, 0);
                Self::legacy_write(base, MMIO_DRIVER_FEATURES, word);
            }
            _ => self.inner.write_driver_features(driver_features),
        }
    }

    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        let Some(base) = self.legacy_mmio else {
            return self.inner.read_device_features();
        };
        Self::legacy_write(base, MMIO_DEVICE_FEATURES_SEL, 0);
        u64::from(Self::legacy_read(base, MMIO_DEVICE_FEATURES))
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        if self.negotiation.holding.load(Ordering::Relaxed) && queue < 32 {
            self.negotiation
                .held
                .fetch_or(queue_bit(queue), Ordering::Relaxed);
            return;
        }
        self.write_held_notifications();
        self.inner.notify(queue);
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size);
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if let Some(vectors) = self.vectors.as_mut()
            && !vectors.assign(queue)
        {
            self.negotiation
                .vectors_refused
                .fetch_or(queue_bit(queue), Ordering::Relaxed);
        }
        match (self.pci_common, u16::try_from(size)) {
            (Some(common), Ok(size)) => common.set_queue(
                // `assign` leaves the queue selected.
                self.vectors.is_some(),
                queue,
                size,
                [descriptors, driver_area, device_area],
            ),
            _ => self
                .inner
                .queue_set(queue, size, descriptors, driver_area, device_area),
        }
        self.queues_set = self.queues_set.map(|set| set | queue_bit(queue));
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue);
        self.queues_set = self.queues_set.map(|set| set & !queue_bit(queue));
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        match self.queues_set {
            Some(set) if queue < 32 => set & queue_bit(queue) != 0,
            _ => self.inner.queue_used(queue),
        }
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.write_held_notifications();
        if self.vectors.is_some() {
            // With MSI-X the ISR status is not used for queue interrupts
            // (virtio 1.2 §4.1.4.5), and the configuration change has no
            // vector here: reading it is an exit for nothing, which
            // Firecracker logs ("read access to unsupported ISR status
            // field").
            return InterruptStatus::empty();
        }
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        // A legacy device has no ConfigGeneration register (virtio v1.2
        // §4.2.4, the legacy layout; §2.5.1: a generation that never
        // changes is what a device without one amounts to).
        if self.inner.requires_legacy_layout() {
            return 0;
        }
        self.inner.read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.inner.write_config_space(offset, value)
    }
}
