//! How large virtio-net's receive buffers are, by what the device is
//! known to need: the spec's size where it follows the spec, Firecracker's
//! otherwise. Pure logic, host-tested; `net.rs` allocates them.
#![deny(unsafe_code)]

/// Receive buffer length for a device not known to follow the spec.
/// Without VIRTIO_NET_F_MRG_RXBUF (which virtio-drivers 0.13 does not
/// offer) Firecracker drops every frame whose buffer is smaller than a
/// 64 KiB TSO/GSO frame plus its header, 65 562 bytes, whatever the
/// features negotiated (its `src/vmm/src/devices/virtio/net/device.rs`,
/// docs/vmms.md). 68 KiB each.
const LARGE_BUFFER_LEN: usize = 68 * 1024;
/// Receive buffer length where the device follows virtio v1.2 §5.1.6.3.1:
/// with neither MRG_RXBUF nor a guest offload negotiated, buffers of at
/// least 1 526 bytes (a 12-byte header and a 1 514-byte frame). Rounded up
/// to a multiple of 64: virtio-drivers keeps a buffer as words.
const SPEC_BUFFER_LEN: usize = 1536;
/// QEMU's virtio-mmio VendorID, `QEMU` in little-endian ASCII (QEMU
/// `hw/virtio/virtio-mmio.c`, `VIRT_VENDOR`). QEMU's virtio-net
/// (`hw/net/virtio-net.c`, `virtio_net_receive_rcu`) places a frame in the
/// buffers it is given as the spec says.
pub(crate) const QEMU_MMIO_VENDOR: u32 = 0x554D_4551;

/// The receive buffer length for a NIC whose transport gives `vendor`:
/// the spec's size where the device is known to follow it, else
/// Firecracker's. Zeroing 16 buffers of 68 KiB was 136 000 of the served
/// boot's 203 000 instructions under QEMU (docs/measurements.md).
pub(crate) fn receive_buffer_len(vendor: Option<u32>) -> usize {
    match vendor {
        Some(QEMU_MMIO_VENDOR) => SPEC_BUFFER_LEN,
        _ => LARGE_BUFFER_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemu_gets_the_specs_buffer_size() {
        assert_eq!(receive_buffer_len(Some(QEMU_MMIO_VENDOR)), 1536);
        assert_eq!(&QEMU_MMIO_VENDOR.to_le_bytes(), b"QEMU");
        // Firecracker, anything unknown, and a transport that gives none.
        assert_eq!(receive_buffer_len(Some(0)), 68 * 1024);
        assert_eq!(receive_buffer_len(None), 68 * 1024);
        const { assert!(SPEC_BUFFER_LEN >= 1526 && SPEC_BUFFER_LEN.is_multiple_of(64)) };
        const { assert!(LARGE_BUFFER_LEN >= 65_562) };
    }
}
