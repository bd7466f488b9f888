//! Physical memory management.

pub mod frames;

use frames::FrameAllocator;

/// The kernel's physical frames, filled once at boot (`boot::init_memory`);
/// the heap and virtio DMA memory come from here.
pub static FRAMES: spin::Mutex<FrameAllocator> = spin::Mutex::new(FrameAllocator::new_empty());
