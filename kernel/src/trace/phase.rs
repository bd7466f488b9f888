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

fn pack(name: &'static str) -> u64 {
    let address = name.as_ptr().expose_provenance() as u64;
    match u64::try_from(name.len()) {
        Ok(length) if length <= 0xffff && address <= ADDRESS_MASK => {
            (length << ADDRESS_BITS) | address
        }
        _ => pack(UNNAMED),
    }
}

/// Records that boot has entered `name`.
pub(crate) fn set(name: &'static str) {
    CURRENT.store(pack(name), Ordering::Release);
}

/// The phase most recently entered (`entry` before the first).
pub(crate) fn current() -> &'static str {
    let word = CURRENT.load(Ordering::Acquire);
    if word == 0 {
        return "entry";
    }
    let address = usize::try_from(word & ADDRESS_MASK).unwrap_or(0);
    let length = usize::try_from(word >> ADDRESS_BITS).unwrap_or(0);
    let bytes: &'static [u8] =
        // SAFETY: `word` was packed by `set` from one `&'static str`: the
        // address and length of bytes that live for the whole run.
        unsafe { core::slice::from_raw_parts(core::ptr::with_exposed_provenance(address), length) };
    core::str::from_utf8(bytes).unwrap_or(UNNAMED)
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
