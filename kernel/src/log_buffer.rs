//! Holds console output during boot so no serial byte (a VM exit each) is
//! spent before the ready mark; flushed at ready, or first thing on a crash.

/// A fixed buffer that keeps the first `N` bytes and counts what it drops.
pub struct LogBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
    dropped: usize,
}

impl<const N: usize> LogBuffer<N> {
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, text: &[u8]) {
        let room = N - self.len;
        let taken = text.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&text[..taken]);
        self.len += taken;
        self.dropped += text.len() - taken;
    }

    /// The buffered bytes and how many were dropped; empties the buffer.
    pub fn take(&mut self) -> (&[u8], usize) {
        let (len, dropped) = (self.len, self.dropped);
        self.len = 0;
        self.dropped = 0;
        (&self.bytes[..len], dropped)
    }
}

impl<const N: usize> Default for LogBuffer<N> {
    fn default() -> Self {
        Self::new()
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
        let mut buffer = LogBuffer::<8>::new();
        buffer.push(b"hello");
        buffer.push(b" world");
        let (bytes, dropped) = buffer.take();
        assert_eq!(bytes, b"hello wo");
        assert_eq!(dropped, 3);
        let (bytes, dropped) = buffer.take();
        assert_eq!((bytes.len(), dropped), (0, 0), "take empties the buffer");
    }
}
