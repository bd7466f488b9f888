//! The kernel heap: one run of frames handed to `linked_list_allocator`.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the heap `[start, start + size)`.
///
/// # Safety
/// The range must be mapped, unused by anything else, and given only once.
pub unsafe fn init(start: u64, size: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { HEAP.lock().init(start as *mut u8, size) };
}

/// Bytes the heap manages.
pub fn size() -> usize {
    HEAP.lock().size()
}
