//! The pattern `mote.blk.write=` writes to a disk and the host checks in the
//! image afterwards: each 8-byte word is splitmix64(seed ^ its absolute byte
//! offset), little-endian, so any range can be checked on its own.

/// Bytes per sector: virtio-blk counts capacity and addresses requests in
/// 512-byte sectors (virtio spec 1.2 §5.2.4, `capacity`).
pub const SECTOR_SIZE: usize = 512;

/// The seed when `mote.blk.seed=` is not given ("moteblk\0").
pub const DEFAULT_SEED: u64 = 0x6d6f_7465_626c_6b00;

/// Fills `buf` with the pattern for the bytes that start at sector `lba`.
pub fn fill(seed: u64, lba: u64, buf: &mut [u8]) {
    let base = lba.wrapping_mul(SECTOR_SIZE as u64);
    let mut offset = base;
    for word in buf.chunks_mut(8) {
        let value = splitmix64(seed ^ offset);
        word.copy_from_slice(&value.to_le_bytes()[..word.len()]);
        offset = offset.wrapping_add(8);
    }
}

/// Vigna's splitmix64 finaliser (the `java.util.SplittableRandom` mix).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_position_dependent_and_seeded() {
        let mut a = [0u8; 512];
        let mut b = [0u8; 512];
        fill(1, 0, &mut a);
        fill(1, 1, &mut b);
        assert_ne!(a, b);
        let mut whole = [0u8; 1024];
        fill(1, 0, &mut whole);
        assert_eq!(&whole[512..], &b[..], "a range checks on its own");
        fill(2, 0, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn first_words_are_fixed() {
        // splitmix64(0) from the reference implementation.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let mut word = [0u8; 8];
        fill(0, 0, &mut word);
        assert_eq!(u64::from_le_bytes(word), 0xe220_a839_7b1d_cdaf);
    }
}
