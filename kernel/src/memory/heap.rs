//! The kernel heap: one run of frames handed to `linked_list_allocator`.

use linked_list_allocator::LockedHeap;

/// The global allocator; [`init`] gives it its memory, once.
#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the heap `[start, start + size)`.
///
/// # Safety
/// The range must be mapped, unused by anything else, and given only once.
pub(super) unsafe fn init(start: u64, size: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { HEAP.lock().init(start as *mut u8, size) };
}

/// Bytes the heap manages.
pub(super) fn size() -> usize {
    HEAP.lock().size()
}

/// Bytes of the heap not allocated now.
pub(crate) fn free_bytes() -> usize {
    HEAP.lock().free()
}
