//! A MAC address for a NIC whose device offers none (Firecracker without
//! `guest_mac`): locally administered, unicast, and the same on every boot
//! for the same transport, so a host can predict it.
#![deny(unsafe_code)]

/// Bit 1 of the first byte: locally administered; bit 0 clear: unicast
/// (IEEE 802-2014 §8.2.2).
const LOCALLY_ADMINISTERED_UNICAST: u8 = 0x02;

/// `02:6d:6f:74:xx:yy`: "mot" after the flag byte, then 16 bits folded
/// from the transport's address `base`.
pub(crate) fn locally_administered(base: u64) -> [u8; 6] {
    let folded = (base ^ (base >> 16) ^ (base >> 32) ^ (base >> 48)) & 0xffff;
    let [low, high] = u16::try_from(folded).unwrap_or(0).to_le_bytes();
    [LOCALLY_ADMINISTERED_UNICAST, b'm', b'o', b't', high, low]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_locally_administered_and_per_transport() {
        let first = locally_administered(0xc000_1000);
        let second = locally_administered(0xc000_2000);
        assert_eq!(first, [0x02, 0x6d, 0x6f, 0x74, 0xd0, 0x00]);
        assert_eq!(second, [0x02, 0x6d, 0x6f, 0x74, 0xe0, 0x00]);
        assert_eq!(first[0] & 0x03, 0x02, "local bit set, group bit clear");
        assert_eq!(first, locally_administered(0xc000_1000), "stable");
    }
}
