//! The local APIC (x2APIC when the CPU has it, else xAPIC MMIO), the I/O
//! APICs, and a one-shot timer (TSC-deadline when present, else the LAPIC
//! timer in one-shot mode). Register layouts are in [`registers`], the
//! host-tested half; the rest touches the hardware.
//!
//! Device interrupts are level-triggered (virtio-mmio on microvm, as the
//! DSDT says): the handler masks the pin and sends EOI; the driver acks the
//! device and unmasks, so a line still high fires again rather than storm.

#[cfg(target_os = "none")]
pub(crate) mod io;
#[cfg(target_os = "none")]
pub(crate) mod local;
pub(crate) mod registers;
#[cfg(target_os = "none")]
pub(crate) mod timer;

/// The interrupt vectors mote uses.
pub(crate) mod vectors {
    /// Spurious-interrupt vector (SVR); needs no EOI.
    pub(crate) const SPURIOUS: u8 = 0xff;
    /// The one-shot timer's vector.
    pub(crate) const TIMER: u8 = 0xef;
    /// The IPI that wakes a halted application processor for work
    /// (`smp::dispatch`).
    pub(crate) const WORK: u8 = 0xee;
    /// Device interrupts: vector = base + GSI, for GSIs up to [`MAX_GSI`].
    pub(crate) const DEVICE_BASE: u8 = 0x40;
    pub(crate) const MAX_GSI: u8 = 63;
    /// MSI-X messages: vector = base + slot, for [`MSI_SLOTS`] slots
    /// handed out by `interrupts::allocate_msi`.
    pub(crate) const MSI_BASE: u8 = 0x80;
    pub(crate) const MSI_SLOTS: u8 = 64;
    // The ranges do not overlap, and stay below the work IPI and the timer.
    const _: () = assert!(DEVICE_BASE + MAX_GSI < MSI_BASE && MSI_BASE + MSI_SLOTS <= WORK);

    /// The vector GSI `gsi` is routed to, if it has one.
    pub(crate) fn of_gsi(gsi: u32) -> Option<u8> {
        u8::try_from(gsi)
            .ok()
            .filter(|&gsi| gsi <= MAX_GSI)
            .map(|gsi| DEVICE_BASE + gsi)
    }

    /// The GSI a device vector stands for.
    pub(crate) fn gsi_of(vector: u8) -> Option<u8> {
        vector
            .checked_sub(DEVICE_BASE)
            .filter(|&gsi| gsi <= MAX_GSI)
    }

    /// The MSI slot a vector stands for.
    pub(crate) fn msi_slot_of(vector: u8) -> Option<u8> {
        vector
            .checked_sub(MSI_BASE)
            .filter(|&slot| slot < MSI_SLOTS)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn device_vectors_map_to_gsis_and_back() {
            assert_eq!(of_gsi(12), Some(0x4c));
            assert_eq!(gsi_of(0x4c), Some(12));
            assert_eq!(of_gsi(64), None);
            assert_eq!(gsi_of(0x3f), None);
            assert_eq!(gsi_of(TIMER), None);
            assert_eq!(gsi_of(WORK), None);
            assert_eq!(gsi_of(SPURIOUS), None);
            assert_eq!(msi_slot_of(MSI_BASE + 5), Some(5));
            assert_eq!(msi_slot_of(0x7f), None);
            assert_eq!(msi_slot_of(0xc0), None);
            assert_eq!(msi_slot_of(TIMER), None);
        }
    }
}
