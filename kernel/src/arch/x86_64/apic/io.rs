//! The I/O APICs: where each GSI is routed, and the per-GSI handles the
//! interrupt handler masks through without a lock.
//!
//! An I/O APIC is reached through an index register and a data window, so
//! one access is two MMIO writes that must not interleave with another
//! access to the same chip. Routing, masking and unmasking all run on the
//! CPU the GSIs are routed to (CPU 0), the handler only inside the main
//! loop's halt: they never overlap. An SMP kernel that serves a GSI from
//! another CPU must keep that rule (route each chip's GSIs to one CPU).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use volatile::VolatilePtr;

use super::registers::{self, IO_REGISTER_SELECT, IO_VERSION, IO_WINDOW, Redirection};
use super::vectors;
use crate::acpi::MAX_IO_APICS;

const GSI_SLOTS: usize = vectors::MAX_GSI as usize + 1;

/// One I/O APIC's register window.
#[derive(Clone, Copy)]
struct Window(usize);

impl Window {
    fn register(self, offset: usize) -> VolatilePtr<'static, u32> {
        let address = NonNull::new((self.0 + offset) as *mut u32).unwrap_or(NonNull::dangling());
        // SAFETY: `self.0` is an I/O APIC's base (the `IoApic::new`
        // contract), identity mapped, and its select and window registers
        // are 32-bit at offsets 0 and 0x10.
        unsafe { VolatilePtr::new(address) }
    }

    fn write(self, register: u32, value: u32) {
        self.register(IO_REGISTER_SELECT).write(register);
        self.register(IO_WINDOW).write(value);
    }

    fn read(self, register: u32) -> u32 {
        self.register(IO_REGISTER_SELECT).write(register);
        self.register(IO_WINDOW).read()
    }
}

/// An I/O APIC and the GSIs it serves.
pub(crate) struct IoApic {
    window: Window,
    gsi_base: u32,
    pins: u32,
}

impl IoApic {
    /// The I/O APIC at `address`, serving GSIs from `gsi_base`.
    ///
    /// # Safety
    /// `address` must be an I/O APIC's register window inside the identity
    /// map (from the MADT or a platform constant), and nothing else may
    /// drive that chip.
    pub(crate) unsafe fn new(address: u64, gsi_base: u32) -> Option<Self> {
        let window = Window(usize::try_from(address).ok()?);
        let pins = registers::io_apic_pins(window.read(IO_VERSION));
        Some(Self {
            window,
            gsi_base,
            pins,
        })
    }

    fn pin_of(&self, gsi: u32) -> Option<u32> {
        gsi.checked_sub(self.gsi_base)
            .filter(|&pin| pin < self.pins)
    }
}

/// The platform's I/O APICs, owned by whoever routes device interrupts.
#[derive(Default)]
pub(crate) struct IoApics(ArrayVec<IoApic, MAX_IO_APICS>);

impl IoApics {
    /// Adds the chips; more than [`MAX_IO_APICS`] are ignored.
    fn extend(&mut self, chips: impl IntoIterator<Item = IoApic>) {
        for chip in chips {
            let _ = self.0.try_push(chip);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Routes `gsi` to CPU 0 as a level-triggered, active-high interrupt on
    /// its device vector, unmasked. `None` if no I/O APIC serves it or it
    /// has no vector.
    pub(crate) fn route_level(&self, gsi: u32) -> Option<GsiLine> {
        let vector = vectors::of_gsi(gsi)?;
        let (io_apic, pin) = self
            .0
            .iter()
            .find_map(|io_apic| Some((io_apic, io_apic.pin_of(gsi)?)))?;
        let slot = &SLOTS[usize::from(vectors::gsi_of(vector)?)];
        super::super::descriptors::open_gate(vector);
        let low = Redirection::LEVEL_TRIGGERED.entry(vector);
        let register = registers::redirection_low(pin);
        // High dword: destination APIC ID 0.
        io_apic.window.write(register + 1, 0);
        io_apic.window.write(register, low);
        slot.low.store(low, Ordering::Relaxed);
        slot.register.store(register, Ordering::Relaxed);
        slot.window.store(io_apic.window.0, Ordering::Release);
        Some(GsiLine { slot })
    }
}

/// What the handler needs to mask one GSI: the chip, the redirection
/// register and the entry's low dword. Written once by routing.
struct Slot {
    /// The I/O APIC's base; 0 while the GSI is not routed.
    window: AtomicUsize,
    register: AtomicU32,
    low: AtomicU32,
}

impl Slot {
    fn set_masked(&self, masked: bool) {
        let base = self.window.load(Ordering::Acquire);
        if base == 0 {
            return;
        }
        let mut low = Redirection::from_bits_retain(self.low.load(Ordering::Relaxed));
        low.set(Redirection::MASKED, masked);
        self.low.store(low.bits(), Ordering::Relaxed);
        Window(base).write(self.register.load(Ordering::Relaxed), low.bits());
    }
}

/// One slot per GSI with a vector. Only [`IoApics::route_level`] fills a
/// slot; the handler and [`GsiLine`] mask through it. (Masked initial
/// values keep the table out of the zeroed .bss.)
static SLOTS: [Slot; GSI_SLOTS] = [const {
    Slot {
        window: AtomicUsize::new(0),
        register: AtomicU32::new(0),
        low: AtomicU32::new(Redirection::MASKED.bits()),
    }
}; GSI_SLOTS];

/// From the interrupt handler: masks the level-triggered `gsi` until its
/// driver has acknowledged the device.
pub(crate) fn mask_from_handler(gsi: u8) {
    if let Some(slot) = SLOTS.get(usize::from(gsi)) {
        slot.set_masked(true);
    }
}

/// A routed GSI, for the driver loop to unmask once the device is acked.
pub(crate) struct GsiLine {
    slot: &'static Slot,
}

impl GsiLine {
    pub(crate) fn unmask(&self) {
        self.slot.set_masked(false);
    }
}

/// microvm's (and Firecracker's) I/O APIC with ACPI off: QEMU
/// `IO_APIC_DEFAULT_ADDRESS` (include/hw/i386/ioapic.h), GSIs from 0.
const DEFAULT_IO_APIC: u64 = 0xfec0_0000;

impl IoApics {
    /// The I/O APICs the MADT lists, or microvm's fixed one when there is
    /// no usable MADT.
    pub(crate) fn discover(acpi: Option<&crate::acpi::Acpi>) -> Self {
        let mut io_apics = Self::default();
        if let Some(acpi) = acpi {
            match acpi.io_apics() {
                Ok((found, _overrides)) => {
                    for io_apic in &found {
                        // SAFETY: the MADT names this window as an I/O APIC;
                        // its address is 32 bits, so in the boot map, and only
                        // this table drives it.
                        let chip = unsafe { IoApic::new(io_apic.address, io_apic.gsi_base) };
                        io_apics.extend(chip);
                    }
                }
                Err(error) => log::warn!("MADT unusable ({error}); assuming microvm's I/O APIC"),
            }
        }
        if io_apics.is_empty() {
            // SAFETY: QEMU microvm and Firecracker place an I/O APIC here
            // (docs/qemu-microvm.md), inside the boot map.
            let chip = unsafe { IoApic::new(DEFAULT_IO_APIC, 0) };
            io_apics.extend(chip);
        }
        io_apics
    }
}
