//! The current boot phase, so a panic or a fault can say where boot was.
//!
//! The name is one `&'static str` kept in a single atomic word (address in
//! the low 48 bits, length in the high 16), so a reader on any CPU sees a
//! whole name, never the address of one with the length of another.

use core::sync::atomic::{AtomicU64, Ordering};

const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
/// Shown for a name that cannot be packed (never for a literal in the image).
const UNNAMED: &str = "?";

static CURRENT: AtomicU64 = AtomicU64::new(0);

/// The atomic word for `name`, if its address and length fit.
fn pack(name: &'static str) -> Option<u64> {
    let address = name.as_ptr().expose_provenance() as u64;
    let length = u64::try_from(name.len()).ok()?;
    (length <= 0xffff && address <= ADDRESS_MASK).then_some((length << ADDRESS_BITS) | address)
}

/// Records that boot has entered `name`.
pub(crate) fn set(name: &'static str) {
    let word = pack(name).or_else(|| pack(UNNAMED)).unwrap_or(0);
    CURRENT.store(word, Ordering::Release);
}

/// The phase most recently entered (`entry` before the first).
pub(crate) fn current() -> &'static str {
    let word = CURRENT.load(Ordering::Acquire);
    if word == 0 {
        return "entry";
    }
    let address = usize::try_from(word & ADDRESS_MASK).unwrap_or(0);
    let length = usize::try_from(word >> ADDRESS_BITS).unwrap_or(0);
    // SAFETY: `word` was packed by `set` from one `&'static str`: the
    // address and length of bytes that live for the whole run and are
    // UTF-8 (checking them again cost 110 instructions a span).
    unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(
            core::ptr::with_exposed_provenance(address),
            length,
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_and_read() {
        super::set("memory");
        assert_eq!(super::current(), "memory");
        super::set("");
        assert_eq!(super::current(), "");
    }
}
