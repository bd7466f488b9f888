//! The `virtio-drivers` HAL over mote's frame allocator. Memory is identity
//! mapped, so a buffer's physical address is its virtual address, and every
//! buffer the kernel hands a device (heap, stack, image) is physically
//! contiguous.

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::memory::FRAMES;
use crate::memory::frames::FRAME_BYTES;

/// The HAL the drivers are instantiated with.
pub(crate) struct KernelHal;

// SAFETY: DMA regions come from the frame allocator, are zeroed, page
// aligned, identity mapped and never handed out twice; `share` returns the
// identity-mapped physical address of memory the caller keeps alive.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Ok(paddr) = FRAMES.lock().allocate(pages as u64, 1) else {
            // virtio-drivers treats physical address 0 as failure.
            return (0, NonNull::dangling());
        };
        let vaddr = paddr as *mut u8;
        // SAFETY: the frames were just allocated for this caller and are
        // identity mapped; the Hal contract wants them zeroed.
        unsafe { core::ptr::write_bytes(vaddr, 0, pages * FRAME_BYTES) };
        (paddr, NonNull::new(vaddr).unwrap_or(NonNull::dangling()))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match FRAMES.lock().deallocate(paddr, pages as u64) {
            Ok(()) => 0,
            Err(error) => {
                log::error!("virtio DMA free of {pages} pages at {paddr:#x} failed: {error:?}");
                -1
            }
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
