//! A static whose value is built in place and handed out once, mutably:
//! the boot fills its one `BootInfo` (7.8 KiB) where it stays, since a
//! value moved into a `spin::Once` is copied on the way (2 700
//! instructions of copies, under icount). What `static_cell`'s
//! `ConstStaticCell` does, for one user.
//!
//! The value's bytes live in a [`Storage`] outside the zeroed .bss
//! (`linker.ld` `.noinit`): the stub's `rep stosq` costs one instruction
//! per 8 bytes under icount, and `BootInfo`'s were 974 of them. The value
//! is written when it is taken, so no byte is read before it is written.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// Room for a [`Slot`]'s value, with no initial value: it may sit in
/// `.bss.noinit`, which nothing zeroes.
pub(super) struct Storage<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: only the `Slot` made from it reaches the storage, and that slot
// hands out its one `&mut` once.
unsafe impl<T: Sync> Sync for Storage<T> {}

impl<T> Storage<T> {
    pub(super) const fn uninit() -> Self {
        Self(UnsafeCell::new(MaybeUninit::uninit()))
    }
}

pub(super) struct Slot<T: 'static> {
    taken: AtomicBool,
    storage: &'static Storage<T>,
}

impl<T: Sync> Slot<T> {
    /// A slot for the value `storage` will hold. `storage` must be used by
    /// no other slot.
    pub(super) const fn new(storage: &'static Storage<T>) -> Self {
        Self {
            taken: AtomicBool::new(false),
            storage,
        }
    }

    /// The value `init` writes, the first time; `None` after (and `init`
    /// is not called).
    #[allow(
        clippy::mut_from_ref,
        reason = "the flag hands the one `&mut` out once, as `static_cell` does"
    )]
    pub(super) fn take(
        &'static self,
        init: impl FnOnce(&'static mut MaybeUninit<T>) -> &'static mut T,
    ) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned false exactly once, so this is
        // the only reference to the storage there will ever be (its slot
        // is its only user); both are static, so it lives as long as the
        // reference.
        let storage = unsafe { &mut *self.storage.0.get() };
        Some(init(storage))
    }
}
