//! A static whose value is built in place and handed out once, mutably:
//! the boot fills its one `BootInfo` (7.8 KiB) where it stays, since a
//! value moved into a `spin::Once` is copied on the way (2 700
//! instructions of copies, under icount). What `static_cell`'s
//! `ConstStaticCell` does, for one user.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub(super) struct Slot<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through the one `&mut` that `take`
// hands out (the flag makes a second call fail), so sharing the slot
// shares no access; what the taker then shares is `T`'s to allow.
unsafe impl<T: Sync> Sync for Slot<T> {}

impl<T> Slot<T> {
    pub(super) const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the first time; `None` after.
    #[allow(
        clippy::mut_from_ref,
        reason = "the flag hands the one `&mut` out once, as `static_cell` does"
    )]
    pub(super) fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned false exactly once, so this is
        // the only reference to the value there will ever be; the slot is
        // static, so it lives as long as the reference.
        Some(unsafe { &mut *self.value.get() })
    }
}
