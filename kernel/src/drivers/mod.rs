//! Device drivers (target only): virtio transports and the block driver.

pub mod virtio_blk;
pub mod virtio_hal;
pub mod virtio_mmio;
pub mod virtio_net;
