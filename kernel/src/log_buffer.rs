//! Holds console output during boot so no serial byte (a VM exit each) is
//! spent before the ready mark; flushed at ready, or first thing on a crash.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

/// Byte storage for a [`LogBuffer`]. It needs no initial value, so the
/// kernel keeps it out of the zeroed .bss.
pub struct LogStorage<const N: usize>(UnsafeCell<MaybeUninit<[u8; N]>>);

// SAFETY: only the one `LogBuffer` given this storage touches it, and every
// `LogBuffer` method takes `&mut self`.
unsafe impl<const N: usize> Sync for LogStorage<N> {}

impl<const N: usize> LogStorage<N> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new(MaybeUninit::uninit()))
    }
}

impl<const N: usize> Default for LogStorage<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps the first `N` bytes written and counts what it drops.
pub struct LogBuffer<const N: usize> {
    storage: &'static LogStorage<N>,
    len: usize,
    dropped: usize,
}

impl<const N: usize> LogBuffer<N> {
    /// A buffer over `storage`; give each storage to one buffer only.
    pub const fn new(storage: &'static LogStorage<N>) -> Self {
        Self {
            storage,
            len: 0,
            dropped: 0,
        }
    }

    fn base(&self) -> *mut u8 {
        self.storage.0.get().cast()
    }

    pub fn push(&mut self, text: &[u8]) {
        let taken = text.len().min(N - self.len);
        // SAFETY: `len + taken <= N`, the storage is this buffer's alone, and
        // `&mut self` excludes any other access.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), self.base().add(self.len), taken);
        }
        self.len += taken;
        self.dropped += text.len() - taken;
    }

    /// The buffered bytes and how many were dropped; empties the buffer.
    pub fn take(&mut self) -> (&[u8], usize) {
        let (len, dropped) = (self.len, self.dropped);
        self.len = 0;
        self.dropped = 0;
        // SAFETY: the first `len` bytes were written by `push`.
        let bytes = unsafe { core::slice::from_raw_parts(self.base(), len) };
        (bytes, dropped)
    }
}

impl<const N: usize> core::fmt::Write for LogBuffer<N> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.push(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_counts_the_rest() {
        let mut buffer = LogBuffer::<8>::new(Box::leak(Box::default()));
        buffer.push(b"hello");
        buffer.push(b" world");
        let (bytes, dropped) = buffer.take();
        assert_eq!(bytes, b"hello wo");
        assert_eq!(dropped, 3);
        let (bytes, dropped) = buffer.take();
        assert_eq!((bytes.len(), dropped), (0, 0), "take empties the buffer");
        buffer.push(b"again");
        assert_eq!(buffer.take().0, b"again");
    }
}
