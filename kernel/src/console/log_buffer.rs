//! Holds console output during boot so no serial byte (a VM exit each) is
//! spent before the ready mark; flushed at ready, or first thing on a crash.
#![deny(unsafe_code)]

/// Keeps the first `N` bytes written and counts what it drops.
pub(crate) struct LogBuffer<const N: usize> {
    /// This buffer's alone: taken by unique reference. Only bytes below
    /// `len` are ever read, so the storage needs no initial value.
    storage: &'static mut [u8; N],
    len: usize,
    dropped: usize,
}

impl<const N: usize> LogBuffer<N> {
    /// A buffer over `storage`, which it keeps.
    pub(crate) const fn new(storage: &'static mut [u8; N]) -> Self {
        Self {
            storage,
            len: 0,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, text: &[u8]) {
        let taken = text.len().min(N - self.len);
        self.storage[self.len..self.len + taken].copy_from_slice(&text[..taken]);
        self.len += taken;
        self.dropped += text.len() - taken;
    }

    /// The buffered bytes and how many were dropped; empties the buffer.
    pub(crate) fn take(&mut self) -> (&[u8], usize) {
        let (len, dropped) = (self.len, self.dropped);
        self.len = 0;
        self.dropped = 0;
        (&self.storage[..len], dropped)
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
        let mut buffer = LogBuffer::<8>::new(Box::leak(Box::new([0; 8])));
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
