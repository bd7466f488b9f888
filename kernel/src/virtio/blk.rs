//! virtio-blk through `virtio-drivers`, behind [`BlockDevice`]: every
//! request is validated first (the crate asserts on unaligned lengths), and
//! device errors come back as [`BlockError`], never as panics.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::SomeTransport;

use super::transport::{InOrder, Negotiation};

use super::hal::KernelHal;
use crate::arch::x86_64::cpu;
use crate::block::{BlockDevice, BlockError, QueuedRead, check_request, check_write};

/// A virtio-blk disk.
pub(crate) struct VirtioBlock {
    device: VirtIOBlk<KernelHal, InOrder<SomeTransport<'static>>>,
    sectors: u64,
    read_only: bool,
}

fn device_error(error: virtio_drivers::Error) -> BlockError {
    BlockError::Device(match error {
        virtio_drivers::Error::IoError => "I/O error status",
        virtio_drivers::Error::Unsupported => "request not supported by the device",
        virtio_drivers::Error::QueueFull => "queue full",
        virtio_drivers::Error::DmaError => "DMA allocation failed",
        virtio_drivers::Error::NotReady => "device not ready",
        _ => "transport error",
    })
}

/// `virtio-drivers` numbers blocks with `usize`.
fn block_id(lba: u64) -> Result<usize, BlockError> {
    usize::try_from(lba).map_err(|_| BlockError::Device("block number out of range"))
}

impl VirtioBlock {
    pub(crate) fn new(
        transport: InOrder<SomeTransport<'static>>,
        negotiation: &Negotiation,
    ) -> Result<Self, BlockError> {
        let device = VirtIOBlk::new(transport).map_err(device_error)?;
        if negotiation.refused() {
            return Err(BlockError::Device(
                "the device refused the features (cleared FEATURES_OK)",
            ));
        }
        Ok(Self {
            sectors: device.capacity(),
            read_only: device.readonly(),
            device,
        })
    }
}

impl QueuedRead for VirtioBlock {
    /// Through the non-blocking API, polled.
    fn queued_read(&mut self, request: usize, depth: usize, total: u64) -> Result<u64, BlockError> {
        let per_request = check_request(self.sectors, 0, request)?;
        let mut slots: Vec<Slot> = (0..depth.max(1))
            .map(|_| Slot {
                buffer: vec![0u8; request],
                request: BlkReq::default(),
                response: BlkResp::default(),
                token: None,
            })
            .collect();
        let result = self.run_bench(&mut slots, per_request, total.div_ceil(request as u64));
        // Whatever happened, no buffer is freed while the device may write it.
        if !self.drain(&mut slots) {
            core::mem::forget(slots);
            return Err(BlockError::Device(
                "requests still in flight after an error",
            ));
        }
        result
    }
}

impl VirtioBlock {
    fn run_bench(
        &mut self,
        slots: &mut [Slot],
        per_request: u64,
        count: u64,
    ) -> Result<u64, BlockError> {
        let positions = self.sectors / per_request;
        let mut issued = 0u64;
        let mut completed = 0u64;
        let start = cpu::rdtsc();
        for slot in slots
            .iter_mut()
            .take(usize::try_from(count).unwrap_or(usize::MAX))
        {
            self.submit(slot, (issued % positions) * per_request)?;
            issued += 1;
        }
        while completed < count {
            let Some(token) = self.device.peek_used() else {
                core::hint::spin_loop();
                continue;
            };
            let slot = slots
                .iter_mut()
                .find(|slot| slot.token == Some(token))
                .ok_or(BlockError::Device("completion for an unknown request"))?;
            self.complete(slot, token)?;
            completed += 1;
            if issued < count {
                self.submit(slot, (issued % positions) * per_request)?;
                issued += 1;
            }
        }
        Ok(cpu::rdtsc() - start)
    }

    fn submit(&mut self, slot: &mut Slot, lba: u64) -> Result<(), BlockError> {
        let block = block_id(lba)?;
        // SAFETY: the slot's request, buffer and response are owned by a
        // vector that is neither moved nor dropped until `drain` has seen
        // this request complete.
        let token = unsafe {
            self.device.read_blocks_nb(
                block,
                &mut slot.request,
                &mut slot.buffer,
                &mut slot.response,
            )
        }
        .map_err(device_error)?;
        slot.token = Some(token);
        Ok(())
    }

    fn complete(&mut self, slot: &mut Slot, token: u16) -> Result<(), BlockError> {
        slot.token = None;
        // SAFETY: `token` was returned by read_blocks_nb for exactly this
        // slot's request, buffer and response, which have not moved.
        unsafe {
            self.device.complete_read_blocks(
                token,
                &slot.request,
                &mut slot.buffer,
                &mut slot.response,
            )
        }
        .map_err(device_error)
    }

    /// Completes every request still in flight; false if the device stops
    /// answering first.
    fn drain(&mut self, slots: &mut [Slot]) -> bool {
        let mut patience = 100_000_000u64;
        while slots.iter().any(|slot| slot.token.is_some()) {
            match self.device.peek_used() {
                Some(token) => match slots.iter_mut().find(|slot| slot.token == Some(token)) {
                    Some(slot) => {
                        let _ = self.complete(slot, token);
                    }
                    None => return false,
                },
                None if patience == 0 => return false,
                None => patience -= 1,
            }
        }
        true
    }
}

/// One in-flight read of the bench.
struct Slot {
    buffer: Vec<u8>,
    request: BlkReq,
    response: BlkResp,
    token: Option<u16>,
}

impl BlockDevice for VirtioBlock {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self.sectors, lba, buf.len())?;
        self.device
            .read_blocks(block_id(lba)?, buf)
            .map_err(device_error)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_write(self, lba, buf.len())?;
        self.device
            .write_blocks(block_id(lba)?, buf)
            .map_err(device_error)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.device.flush().map_err(device_error)
    }
}
