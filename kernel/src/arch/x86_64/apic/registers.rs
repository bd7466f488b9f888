//! APIC register layouts: local APIC register offsets and their x2APIC MSR
//! numbers, the LVT, SVR, APIC-base and redirection-entry bits (Intel SDM
//! vol. 3 chapter 11; the I/O APIC from Intel's 82093AA datasheet), and the
//! arithmetic around them. No hardware access: tested on the host.
#![deny(unsafe_code)]

use bitflags::bitflags;

use crate::clock::TscFrequency;

/// Local APIC registers used here, by xAPIC MMIO offset (SDM vol. 3 table 11-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum LocalRegister {
    /// This CPU's APIC id: bits 24-31 in xAPIC mode, all 32 bits as an MSR.
    Id = 0x20,
    TaskPriority = 0x80,
    /// The interrupt command register; in xAPIC mode writing this low half
    /// sends the IPI, the destination in the high half (0x310) first.
    InterruptCommand = 0x300,
    InterruptCommandHigh = 0x310,
    EndOfInterrupt = 0xb0,
    SpuriousVector = 0xf0,
    LvtTimer = 0x320,
    LvtLint0 = 0x350,
    LvtLint1 = 0x360,
    LvtError = 0x370,
    TimerInitialCount = 0x380,
    TimerCurrentCount = 0x390,
    TimerDivide = 0x3e0,
    /// Bits 224-255 of the interrupt request register: vectors the APIC
    /// accepted and has not delivered (the timer's among them).
    InterruptRequest7 = 0x270,
    /// The in-service register's words 1-7 (vectors 32-255, 32 a word):
    /// the vectors the CPU took and has not acknowledged with an EOI.
    InService1 = 0x110,
    InService2 = 0x120,
    InService3 = 0x130,
    InService4 = 0x140,
    InService5 = 0x150,
    InService6 = 0x160,
    InService7 = 0x170,
}

/// The in-service words of the external vectors, highest first.
pub(crate) const IN_SERVICE_HIGHEST_FIRST: [LocalRegister; 7] = [
    LocalRegister::InService7,
    LocalRegister::InService6,
    LocalRegister::InService5,
    LocalRegister::InService4,
    LocalRegister::InService3,
    LocalRegister::InService2,
    LocalRegister::InService1,
];

/// The highest vector set in in-service word `register` (read as `bits`).
pub(crate) fn highest_in_service(register: LocalRegister, bits: u32) -> Option<u8> {
    let word = (register as u32).checked_sub(0x100)? >> 4;
    let top = 31u32.checked_sub(bits.leading_zeros())?;
    u8::try_from(word * 32 + top).ok()
}

/// The bit of [`LocalRegister::InterruptRequest7`] for `vector`, if that
/// word holds it.
pub(crate) const fn irr7_bit(vector: u8) -> Option<u32> {
    match vector {
        224..=255 => Some(1 << (vector - 224)),
        _ => None,
    }
}

/// x2APIC registers are MSRs from 0x800, one per 16-byte xAPIC slot
/// (SDM vol. 3 §11.12.1.2).
const X2APIC_MSR_BASE: u32 = 0x800;

impl LocalRegister {
    /// The offset into the xAPIC page.
    pub(crate) fn offset(self) -> usize {
        self as usize
    }

    /// The MSR that holds it in x2APIC mode.
    pub(crate) fn msr(self) -> u32 {
        X2APIC_MSR_BASE + (self as u32 >> 4)
    }
}

/// `IA32_APIC_BASE` (SDM vol. 3 §11.4.4, x2APIC §11.12.1).
pub(crate) const MSR_APIC_BASE: u32 = 0x1b;
/// `IA32_TSC_DEADLINE` (SDM vol. 3 §11.5.4.1).
pub(crate) const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// Bits 12-31 of `IA32_APIC_BASE`: the xAPIC page (below 4 GiB on every VMM mote runs on).
pub(crate) const APIC_BASE_ADDRESS_MASK: u64 = 0xffff_f000;

bitflags! {
    /// `IA32_APIC_BASE` control bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct ApicBase: u64 {
        const X2APIC_ENABLE = 1 << 10;
        const GLOBAL_ENABLE = 1 << 11;
        const _ = !0;
    }
}

bitflags! {
    /// Local vector table entry bits above the vector (SDM vol. 3 figure 11-8).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Lvt: u32 {
        const MASKED = 1 << 16;
        /// Timer mode 0b10 in bits 17-18; 0 is one-shot.
        const TIMER_TSC_DEADLINE = 0b10 << 17;
    }
}

impl Lvt {
    /// An LVT entry delivering `vector` with these bits.
    pub(crate) fn entry(self, vector: u8) -> u32 {
        self.bits() | u32::from(vector)
    }
}

bitflags! {
    /// Spurious-interrupt vector register bits above the vector (SDM vol. 3 §11.9).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Svr: u32 {
        const APIC_ENABLE = 1 << 8;
    }
}

bitflags! {
    /// Interrupt command register bits (SDM vol. 3 §11.6.1, figure 11-12):
    /// delivery mode in bits 8-10, the level and trigger mode an INIT
    /// needs, and the xAPIC's delivery status.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct InterruptCommand: u32 {
        /// Delivery mode 0b101: INIT.
        const INIT = 0b101 << 8;
        /// Delivery mode 0b110: STARTUP, the vector naming the start page.
        const STARTUP = 0b110 << 8;
        /// xAPIC only: the IPI has not been accepted yet.
        const SEND_PENDING = 1 << 12;
        const ASSERT = 1 << 14;
        const LEVEL_TRIGGERED = 1 << 15;
    }
}

impl InterruptCommand {
    /// INIT, level-triggered and asserted, then the same deasserted (the
    /// pair Linux's `wakeup_secondary_cpu_via_init` sends).
    pub(crate) const INIT_ASSERT: Self =
        Self::INIT.union(Self::ASSERT).union(Self::LEVEL_TRIGGERED);
    pub(crate) const INIT_DEASSERT: Self = Self::INIT.union(Self::LEVEL_TRIGGERED);

    /// A STARTUP IPI that starts the CPU at `vector << 12`.
    pub(crate) fn startup(vector: u8) -> u32 {
        Self::STARTUP.bits() | u32::from(vector)
    }

    /// A fixed-delivery, edge-triggered IPI of `vector` (delivery mode
    /// 0b000; the level bit set, as the SDM asks of every mode but an INIT
    /// de-assert).
    pub(crate) fn fixed(vector: u8) -> u32 {
        Self::ASSERT.bits() | u32::from(vector)
    }

    /// The x2APIC ICR MSR value (SDM vol. 3 §11.12.9): the destination's
    /// 32-bit x2APIC id in the high half.
    pub(crate) fn x2apic_value(low: u32, destination: u32) -> u64 {
        (u64::from(destination) << 32) | u64::from(low)
    }

    /// The xAPIC ICR high half: the 8-bit destination in bits 24-31.
    pub(crate) fn xapic_high(destination: u32) -> u32 {
        (destination & 0xff) << 24
    }
}

/// Timer divide configuration for "divide by 1" (SDM vol. 3 figure 11-10).
pub(crate) const TIMER_DIVIDE_BY_1: u32 = 0b1011;

bitflags! {
    /// CPUID.1 bits that matter here (SDM vol. 2A table 3-10/3-11).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Features: u64 {
        /// EDX bit 9, shifted up by 32: an on-chip APIC.
        const APIC = 1 << (32 + 9);
        /// ECX bit 21: x2APIC mode.
        const X2APIC = 1 << 21;
        /// ECX bit 24: the TSC-deadline timer.
        const TSC_DEADLINE = 1 << 24;
        const _ = !0;
    }
}

impl Features {
    pub(crate) fn from_cpuid(ecx: u32, edx: u32) -> Self {
        Self::from_bits_retain((u64::from(edx) << 32) | u64::from(ecx))
    }
}

/// I/O APIC register select and window, as offsets from its base.
pub(crate) const IO_REGISTER_SELECT: usize = 0x00;
pub(crate) const IO_WINDOW: usize = 0x10;
/// I/O APIC version register: bits 16-23 hold the last redirection entry.
pub(crate) const IO_VERSION: u32 = 0x01;
/// The redirection table: two 32-bit registers per pin from here.
const IO_REDIRECTION_TABLE: u32 = 0x10;

/// How many pins an I/O APIC has, from its version register.
pub(crate) fn io_apic_pins(version: u32) -> u32 {
    ((version >> 16) & 0xff) + 1
}

/// The low register of `pin`'s redirection entry (the high one follows).
pub(crate) fn redirection_low(pin: u32) -> u32 {
    IO_REDIRECTION_TABLE + 2 * pin
}

bitflags! {
    /// Redirection entry bits above the vector (82093AA §3.2.4), low dword.
    /// Clear bits mean fixed delivery, physical destination, active high,
    /// edge triggered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Redirection: u32 {
        const LEVEL_TRIGGERED = 1 << 15;
        const MASKED = 1 << 16;
    }
}

impl Redirection {
    pub(crate) fn entry(self, vector: u8) -> u32 {
        self.bits() | u32::from(vector)
    }
}

/// LAPIC timer ticks for `cycles` TSC cycles: at least 1, at most `u32::MAX`.
pub(crate) fn timer_ticks(cycles: u64, timer_hz: u64, tsc: TscFrequency) -> u32 {
    let ticks = u128::from(cycles) * u128::from(timer_hz) / u128::from(tsc.hz());
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

/// The LAPIC timer's frequency from `elapsed` ticks counted over `cycles`
/// TSC cycles; at least 1.
pub(crate) fn timer_hz(elapsed: u32, cycles: u64, tsc: TscFrequency) -> u64 {
    let hz = u128::from(elapsed) * u128::from(tsc.hz()) / u128::from(cycles.max(1));
    u64::try_from(hz).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_service_words_name_their_vectors() {
        assert_eq!(
            highest_in_service(LocalRegister::InService1, 1 << 16),
            Some(0x30)
        );
        assert_eq!(
            highest_in_service(LocalRegister::InService7, 1 << 31),
            Some(0xff)
        );
        assert_eq!(
            highest_in_service(LocalRegister::InService2, 0b101),
            Some(0x42)
        );
        assert_eq!(highest_in_service(LocalRegister::InService3, 0), None);
        // Not an in-service word.
        assert_eq!(highest_in_service(LocalRegister::EndOfInterrupt, 1), None);
        let offsets: Vec<u32> = IN_SERVICE_HIGHEST_FIRST.iter().map(|r| *r as u32).collect();
        assert_eq!(offsets, [0x170, 0x160, 0x150, 0x140, 0x130, 0x120, 0x110]);
    }

    #[test]
    fn x2apic_msrs_follow_the_xapic_offsets() {
        assert_eq!(LocalRegister::EndOfInterrupt.msr(), 0x80b);
        assert_eq!(LocalRegister::SpuriousVector.msr(), 0x80f);
        assert_eq!(LocalRegister::LvtTimer.msr(), 0x832);
        assert_eq!(LocalRegister::TimerDivide.msr(), 0x83e);
        assert_eq!(LocalRegister::TimerCurrentCount.offset(), 0x390);
        assert_eq!(LocalRegister::InterruptRequest7.msr(), 0x827);
        assert_eq!(irr7_bit(0xef), Some(1 << 15));
        assert_eq!(irr7_bit(223), None);
    }

    #[test]
    fn entries_carry_vector_and_bits() {
        assert_eq!(Lvt::MASKED.entry(0xef), 0x1_00ef);
        assert_eq!(Lvt::TIMER_TSC_DEADLINE.entry(0xef), 0x4_00ef);
        assert_eq!(Lvt::empty().entry(0xef), 0xef);
        assert_eq!(Redirection::LEVEL_TRIGGERED.entry(0x4c), 0x804c);
        assert_eq!(
            (Redirection::LEVEL_TRIGGERED | Redirection::MASKED).entry(0x4c),
            0x1_804c
        );
        assert_eq!(Svr::APIC_ENABLE.bits() | 0xff, 0x1ff);
    }

    #[test]
    fn interrupt_commands() {
        assert_eq!(LocalRegister::InterruptCommand.msr(), 0x830);
        assert_eq!(InterruptCommand::INIT_ASSERT.bits(), 0xc500);
        assert_eq!(InterruptCommand::INIT_DEASSERT.bits(), 0x8500);
        assert_eq!(InterruptCommand::startup(0x9e), 0x069e);
        assert_eq!(InterruptCommand::fixed(0xee), 0x40ee);
        assert_eq!(
            InterruptCommand::x2apic_value(0x069e, 300),
            0x0000_012c_0000_069e
        );
        assert_eq!(InterruptCommand::xapic_high(3), 0x0300_0000);
    }

    #[test]
    fn cpuid_features() {
        let features = Features::from_cpuid(1 << 21 | 1 << 24, 1 << 9);
        assert!(features.contains(Features::APIC | Features::X2APIC | Features::TSC_DEADLINE));
        assert!(!Features::from_cpuid(0, 0).contains(Features::APIC));
    }

    #[test]
    fn io_apic_layout() {
        // QEMU's I/O APIC: version 0x20, 24 pins (entries 0-23).
        assert_eq!(io_apic_pins(0x0017_0020), 24);
        assert_eq!(redirection_low(0), 0x10);
        assert_eq!(redirection_low(12), 0x28);
    }

    #[test]
    fn timer_arithmetic() {
        use mote_boot::protocol::report::TscSource;
        let tsc = TscFrequency::new(2_300_000_000, TscSource::Cpuid40000010).unwrap();
        let slow = TscFrequency::new(1, TscSource::Calibrated).unwrap();
        // 1 ms of a 2.3 GHz TSC on a 1 GHz LAPIC bus.
        assert_eq!(timer_ticks(2_300_000, 1_000_000_000, tsc), 1_000_000);
        assert_eq!(
            timer_ticks(0, 1_000_000_000, tsc),
            1,
            "never 0: 0 stops the timer"
        );
        assert_eq!(timer_ticks(u64::MAX, u64::MAX, slow), u32::MAX);
        assert_eq!(timer_hz(1_000_000, 2_300_000, tsc), 1_000_000_000);
        assert_eq!(timer_hz(0, 0, slow), 1);
    }
}
