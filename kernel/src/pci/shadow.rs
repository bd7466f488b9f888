//! What inspection already read of one function's configuration space,
//! answered again without touching the device. `virtio-drivers` opens a
//! `PciTransport` by walking the capability list and sizing the BAR of
//! every virtio structure itself (four sizings of the same BAR on QEMU),
//! each configuration access a VM exit. It also sizes a 64-bit BAR by
//! restoring the upper dword while the lower one still holds all ones,
//! which Cloud Hypervisor takes for a move of the BAR ("Failed moving
//! device BAR" in its log). [`Shadowed`] answers the dwords inspection
//! read from its record ([`Known`]), answers a sizing from the masks
//! [`super::bar::size_bars`] read with decoding off, and passes every other
//! access through (docs/virtio-pci.md).
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;

use super::bar::DEVICE_BARS;
use super::config::{BAR0, Bdf, COMMAND_IO, COMMAND_MEMORY, COMMAND_STATUS, ConfigSpace};

/// One function's dwords as inspection read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// Dwords read outside the BARs, by offset.
    pub(crate) dwords: Vec<(u16, u32)>,
    /// Per BAR dword: the value found and the mask read back after writing
    /// ones (decoding off), for the dwords that were sized.
    pub(crate) bars: [Option<(u32, u32)>; DEVICE_BARS as usize],
}

impl Known {
    fn dword(&self, offset: u16) -> Option<u32> {
        self.dwords
            .iter()
            .find(|&&(at, _)| at == offset)
            .map(|&(_, value)| value)
    }

    fn remember(&mut self, offset: u16, value: u32) {
        match self.dwords.iter_mut().find(|(at, _)| *at == offset) {
            Some(entry) => entry.1 = value,
            None => self.dwords.push((offset, value)),
        }
    }

    fn forget(&mut self, offset: u16) {
        self.dwords.retain(|&(at, _)| at != offset);
    }
}

fn bar_index(offset: u16) -> Option<usize> {
    let index = usize::from(offset.checked_sub(BAR0)? / 4);
    (index < usize::from(DEVICE_BARS)).then_some(index)
}

/// Records the dwords of `bdf` read through it (and forgets those written).
pub(crate) struct Recording<'a, C> {
    inner: &'a mut C,
    bdf: Bdf,
    known: RefCell<Known>,
}

impl<'a, C: ConfigSpace> Recording<'a, C> {
    pub(crate) fn new(inner: &'a mut C, bdf: Bdf, known: Known) -> Self {
        Self {
            inner,
            bdf,
            known: RefCell::new(known),
        }
    }

    pub(crate) fn into_known(self) -> Known {
        self.known.into_inner()
    }
}

impl<C: ConfigSpace> ConfigSpace for Recording<'_, C> {
    fn read(&self, bdf: Bdf, offset: u16) -> u32 {
        let value = self.inner.read(bdf, offset);
        if bdf == self.bdf && bar_index(offset).is_none() {
            self.known.borrow_mut().remember(offset, value);
        }
        value
    }

    fn write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if bdf == self.bdf {
            self.known.get_mut().forget(offset);
        }
        self.inner.write(bdf, offset, value);
    }
}

/// A configuration space in which `bdf` answers from what is [`Known`] of
/// it. Its command register is known once [`Shadowed::set_command`] wrote
/// it: the driver may then turn decoding off and on again around a sizing
/// (which never reaches the device, so its decoding need not drop) and is
/// shown what it wrote.
#[derive(Clone, Debug)]
pub(crate) struct Shadowed<C> {
    inner: C,
    bdf: Bdf,
    known: Known,
    /// Which BAR dwords the driver has written ones to.
    sizing: [bool; DEVICE_BARS as usize],
    /// The device's command register and what the driver last wrote.
    command: Option<(u16, u16)>,
    /// Writes answered here instead of by the device (for the tests).
    saved: u32,
}

impl<C: ConfigSpace> Shadowed<C> {
    pub(crate) fn new(inner: C, bdf: Bdf, known: Known) -> Self {
        Self {
            inner,
            bdf,
            known,
            sizing: [false; DEVICE_BARS as usize],
            command: None,
            saved: 0,
        }
    }

    /// Writes the command register of the function, which is then known.
    pub(crate) fn set_command(&mut self, command: u16) {
        let bdf = self.bdf;
        self.inner.write_command(bdf, command);
        self.command = Some((command, command));
    }

    /// Configuration writes answered without the device.
    #[cfg(test)]
    pub(crate) fn saved(&self) -> u32 {
        self.saved
    }

    fn answer(&self, offset: u16) -> Option<u32> {
        if offset == COMMAND_STATUS {
            let (_, shown) = self.command?;
            let status = self.known.dword(COMMAND_STATUS)? & 0xffff_0000;
            return Some(status | u32::from(shown));
        }
        if let Some(index) = bar_index(offset) {
            let (found, mask) = self.known.bars[index]?;
            return Some(if self.sizing[index] { mask } else { found });
        }
        self.known.dword(offset)
    }

    /// Whether a write need not reach the device; updates the record.
    fn absorb(&mut self, offset: u16, value: u32) -> bool {
        if offset == COMMAND_STATUS {
            let Some((device, _)) = self.command else {
                return false;
            };
            let decode = COMMAND_IO | COMMAND_MEMORY;
            // The status half is write-one-to-clear: a write that clears
            // nothing and differs from the device only in decoding bits
            // turned off is the driver's sizing bracket.
            let [low, high, 0, 0] = value.to_le_bytes() else {
                self.command = None;
                return false;
            };
            let written = u16::from_le_bytes([low, high]);
            if written == device || written == device & !decode {
                self.command = Some((device, written));
                return true;
            }
            self.command = Some((written, written));
            return false;
        }
        if let Some(index) = bar_index(offset) {
            let Some((found, _)) = self.known.bars[index] else {
                return false;
            };
            if value == u32::MAX {
                self.sizing[index] = true;
                return true;
            }
            if value == found {
                self.sizing[index] = false;
                return true;
            }
            // A BAR moved: no longer known.
            self.known.bars[index] = None;
            self.sizing[index] = false;
            return false;
        }
        self.known.forget(offset);
        false
    }
}

impl<C: ConfigSpace> ConfigSpace for Shadowed<C> {
    fn read(&self, bdf: Bdf, offset: u16) -> u32 {
        if bdf == self.bdf
            && let Some(value) = self.answer(offset)
        {
            return value;
        }
        self.inner.read(bdf, offset)
    }

    fn write(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if bdf == self.bdf && self.absorb(offset, value) {
            self.saved += 1;
            return;
        }
        self.inner.write(bdf, offset, value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::bar::size_bars;
    use super::super::fake::{FakeConfigSpace, bdf};
    use super::*;

    /// A virtio-net-like function: a 64-bit BAR4 of 16 KiB at 0xfe000000
    /// and a 32-bit BAR1 of 4 KiB, memory decoding on, a capability list.
    fn device() -> (FakeConfigSpace, Bdf) {
        let mut config = FakeConfigSpace::default();
        let at = bdf(0, 2, 0);
        config.add(at, 0x1af4, 0x1041, 0x02_00_00, 0);
        config.set_bar(at, 1, 0xfebd_1000, 0xffff_f000);
        config.set_bar(at, 4, 0xfe00_000c, 0xffff_c000);
        config.set_bar(at, 5, 0, 0xffff_ffff);
        config.set_capability_pointer(at, 0x40);
        config.set_bytes(at, 0x40, &[0x09, 0, 16, 1, 4, 0, 0, 0]);
        config.set_bytes(at, 4, &COMMAND_MEMORY.to_le_bytes());
        (config, at)
    }

    fn known(config: &mut FakeConfigSpace, at: Bdf) -> Known {
        let bars = size_bars(config, at, DEVICE_BARS);
        let recording = Recording::new(
            config,
            at,
            Known {
                bars: bars.raw,
                ..Known::default()
            },
        );
        recording.read(at, COMMAND_STATUS);
        recording.read(at, 0x34);
        recording.read(at, 0x40);
        recording.into_known()
    }

    /// virtio-drivers 0.13's order for a 64-bit BAR: ones to the lower
    /// dword, read, ones to the upper, read, restore the upper, restore
    /// the lower (with decoding off around it).
    fn size_as_virtio_drivers(config: &mut impl ConfigSpace, at: Bdf, index: u16) -> (u32, u32) {
        let command = config.read(at, COMMAND_STATUS);
        config.write(
            at,
            COMMAND_STATUS,
            command & 0xffff & !u32::from(COMMAND_MEMORY),
        );
        let low = BAR0 + 4 * index;
        let original = config.read(at, low);
        config.write(at, low, u32::MAX);
        let mask_low = config.read(at, low);
        let original_high = config.read(at, low + 4);
        config.write(at, low + 4, u32::MAX);
        let mask_high = config.read(at, low + 4);
        config.write(at, low + 4, original_high);
        config.write(at, low, original);
        config.write(at, COMMAND_STATUS, command & 0xffff);
        (mask_low, mask_high)
    }

    #[test]
    fn a_sizing_is_answered_from_the_record_without_a_write() {
        let (mut config, at) = device();
        let known = known(&mut config, at);
        let mut reference = device().0;
        let expected = size_as_virtio_drivers(&mut reference, at, 4);
        assert_eq!(expected, (0xffff_c00c, 0xffff_ffff));

        let writes_before = config.writes;
        let mut shadowed = Shadowed::new(config, at, known);
        shadowed.set_command(COMMAND_MEMORY | 0x4);
        let reads_before = shadowed.inner.reads.get();
        assert_eq!(size_as_virtio_drivers(&mut shadowed, at, 4), expected);
        assert_eq!(shadowed.inner.reads.get(), reads_before, "no device read");
        // set_command's one write, and nothing of the sizing.
        assert_eq!(shadowed.inner.writes, writes_before + 1);
        assert_eq!(shadowed.saved(), 6);
        // The BAR and the command register are as they were.
        assert_eq!(shadowed.inner.read(at, BAR0 + 16), 0xfe00_000c);
        assert_eq!(shadowed.read(at, BAR0 + 16), 0xfe00_000c);
        assert_eq!(shadowed.inner.read(at, COMMAND_STATUS) & 0xffff, 0x6);
        // Capability dwords come from the record too.
        assert_eq!(shadowed.read(at, 0x40), u32::from_le_bytes([9, 0, 16, 1]));
    }

    #[test]
    fn other_writes_reach_the_device_and_are_forgotten() {
        let (mut config, at) = device();
        let known = known(&mut config, at);
        let mut shadowed = Shadowed::new(config, at, known);
        shadowed.set_command(COMMAND_MEMORY);
        // A BAR moved for real.
        shadowed.write(at, BAR0 + 4, 0xfebd_2000);
        assert_eq!(shadowed.inner.read(at, BAR0 + 4), 0xfebd_2000);
        assert_eq!(shadowed.read(at, BAR0 + 4), 0xfebd_2000);
        // Bus mastering turned on: not a sizing bracket.
        shadowed.write(at, COMMAND_STATUS, 0x6);
        assert_eq!(shadowed.inner.read(at, COMMAND_STATUS) & 0xffff, 0x6);
        // A capability dword written is read from the device again.
        shadowed.write(at, 0x40, 0x1234_0009);
        assert_eq!(shadowed.read(at, 0x40), 0x1234_0009);
        // Another function is not shadowed.
        assert_eq!(shadowed.read(bdf(0, 3, 0), 0), u32::MAX);
        assert_eq!(shadowed.saved(), 0);
    }

    #[test]
    fn without_a_known_command_register_it_is_read_from_the_device() {
        let (mut config, at) = device();
        let known = known(&mut config, at);
        let mut shadowed = Shadowed::new(config, at, known);
        let reads = shadowed.inner.reads.get();
        assert_eq!(shadowed.read(at, COMMAND_STATUS) & 0xffff, 0x2);
        assert_eq!(shadowed.inner.reads.get(), reads + 1);
        shadowed.write(at, COMMAND_STATUS, 0);
        assert_eq!(shadowed.inner.read(at, COMMAND_STATUS) & 0xffff, 0);
    }
}
