//! The current boot phase, so a panic or a fault can say where boot was.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static NAME: AtomicPtr<u8> = AtomicPtr::new(b"entry".as_ptr().cast_mut());
static LEN: AtomicUsize = AtomicUsize::new(5);

/// Records that boot has entered `name`.
pub fn set(name: &'static str) {
    // A reader between the two stores sees a mix of lengths; acceptable for
    // a diagnostic, and impossible on one CPU with interrupts off.
    LEN.store(0, Ordering::Relaxed);
    NAME.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
    LEN.store(name.len(), Ordering::Release);
}

/// The phase most recently entered.
pub fn current() -> &'static str {
    let len = LEN.load(Ordering::Acquire);
    let ptr = NAME.load(Ordering::Relaxed);
    // SAFETY: `ptr`/`len` always come from one `&'static str` passed to
    // `set` (len is zeroed while the pair is changed, giving "").
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_and_read() {
        super::set("memory");
        assert_eq!(super::current(), "memory");
    }
}
