//! The local APIC: enabled once, in x2APIC mode when the CPU offers it
//! (registers are MSRs) and else in xAPIC mode (registers are MMIO in a
//! page the identity map covers). The legacy PICs are masked on the way.

use core::ptr::NonNull;

use spin::Once;
use volatile::VolatilePtr;

use super::registers::{
    APIC_BASE_ADDRESS_MASK, ApicBase, Features, IN_SERVICE_HIGHEST_FIRST, InterruptCommand,
    LocalRegister, Lvt, MSR_APIC_BASE, Svr, highest_in_service,
};
use super::vectors;
use crate::arch::x86_64::cpu::{self, Msr, Port};

/// The 8259 PICs' data (mask) ports: all lines masked so nothing arrives
/// through LINT0 (IBM PC/AT layout, QEMU `hw/intc/i8259.c`).
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xa1;

#[derive(Clone, Copy)]
enum Access {
    X2Apic,
    /// The xAPIC page's address, checked to be in the identity map.
    XApic {
        base: usize,
    },
}

/// This CPU's local APIC, enabled. Only [`init`] makes one.
pub(crate) struct LocalApic {
    access: Access,
    tsc_deadline: bool,
}

/// The one `LocalApic`: written by [`init`] through `Once`, read lock-free
/// by the interrupt handler for EOI. (With SMP each CPU has its own APIC
/// at the same address or MSRs, so this holds the mode, not a CPU's state.)
static LOCAL_APIC: Once<Option<LocalApic>> = Once::new();

/// Enables the local APIC, masks the PICs and LINT pins. `None` without an
/// APIC; later calls return the first result.
pub(crate) fn init() -> Option<&'static LocalApic> {
    LOCAL_APIC.call_once(enable).as_ref()
}

/// Enables the local APIC of the CPU this runs on, in the mode [`init`]
/// chose for the boot CPU (an application processor's APIC starts in
/// xAPIC mode after INIT). Call after [`init`]; `false` without an APIC.
pub(crate) fn init_this_cpu() -> bool {
    enable().is_some()
}

fn enable() -> Option<LocalApic> {
    let leaf = cpu::cpuid(1, 0);
    let features = Features::from_cpuid(leaf.ecx, leaf.edx);
    if !features.contains(Features::APIC) {
        return None;
    }
    for port in [PIC1_DATA, PIC2_DATA] {
        // SAFETY: masking every line of a PIC only stops interrupts that
        // nothing here handles; no memory is involved.
        unsafe { Port::<u8>::new(port).write(0xff) };
    }
    let mut base_msr = Msr::new(MSR_APIC_BASE);
    // SAFETY: CPUID.1 said the APIC, hence IA32_APIC_BASE, exists.
    let base = ApicBase::from_bits_retain(unsafe { base_msr.read() });
    let access = if features.contains(Features::X2APIC) {
        // SAFETY: CPUID said x2APIC mode exists; enabling it only changes how
        // the APIC's registers are reached (MSRs instead of MMIO).
        unsafe {
            base_msr.write((base | ApicBase::GLOBAL_ENABLE | ApicBase::X2APIC_ENABLE).bits())
        };
        Access::X2Apic
    } else {
        // SAFETY: setting the global enable bit of an APIC the CPU has.
        unsafe { base_msr.write((base | ApicBase::GLOBAL_ENABLE).bits()) };
        let base = usize::try_from(base.bits() & APIC_BASE_ADDRESS_MASK).ok()?;
        Access::XApic { base }
    };
    let apic = LocalApic {
        access,
        tsc_deadline: features.contains(Features::TSC_DEADLINE),
    };
    apic.write(LocalRegister::TaskPriority, 0);
    apic.write(LocalRegister::LvtLint0, Lvt::MASKED.bits());
    apic.write(LocalRegister::LvtLint1, Lvt::MASKED.bits());
    apic.write(LocalRegister::LvtError, Lvt::MASKED.bits());
    apic.write(LocalRegister::LvtTimer, Lvt::MASKED.entry(vectors::TIMER));
    apic.write(
        LocalRegister::SpuriousVector,
        Svr::APIC_ENABLE.bits() | u32::from(vectors::SPURIOUS),
    );
    Some(apic)
}

/// End of interrupt from a handler, without waiting for anything.
pub(crate) fn eoi_from_handler() {
    if let Some(Some(apic)) = LOCAL_APIC.get() {
        apic.eoi();
    }
}

/// The highest vector this CPU has in service (taken, not yet
/// acknowledged), from a handler: the vector that is being handled, since
/// handlers do not nest. `None` without a local APIC or with nothing in
/// service (an `int n`, not an interrupt).
pub(crate) fn in_service_from_handler() -> Option<u8> {
    let Some(Some(apic)) = LOCAL_APIC.get() else {
        return None;
    };
    IN_SERVICE_HIGHEST_FIRST
        .iter()
        .find_map(|&register| highest_in_service(register, apic.read(register)))
}

impl LocalApic {
    /// Whether the timer can fire at a TSC deadline.
    pub(crate) fn has_tsc_deadline(&self) -> bool {
        self.tsc_deadline
    }

    /// The word the status page uses for the timer this APIC drives.
    pub(crate) fn timer_kind(&self) -> &'static str {
        if self.tsc_deadline {
            "tsc-deadline"
        } else {
            "lapic-oneshot"
        }
    }

    /// The APIC id of the CPU this runs on (SDM vol. 3 §11.4.6, §11.12.5.1).
    pub(crate) fn id(&self) -> u32 {
        let id = self.read(LocalRegister::Id);
        match self.access {
            Access::X2Apic => id,
            Access::XApic { .. } => id >> 24,
        }
    }

    /// Whether the registers are MSRs (x2APIC mode).
    pub(crate) fn is_x2apic(&self) -> bool {
        matches!(self.access, Access::X2Apic)
    }

    /// Sends the IPI `command` (the ICR's low half: delivery mode, level,
    /// vector) to the CPU with APIC id `destination`. In xAPIC mode it
    /// waits, at most about `spins` reads, for the previous IPI to be
    /// accepted first; `false` if it was not.
    pub(crate) fn send_ipi(&self, destination: u32, command: u32, spins: u32) -> bool {
        match self.access {
            Access::X2Apic => {
                let value = InterruptCommand::x2apic_value(command, destination);
                // SAFETY: x2APIC mode is on, so the ICR MSR exists; an INIT
                // or STARTUP IPI touches only the CPU it is sent to.
                unsafe { Msr::new(LocalRegister::InterruptCommand.msr()).write(value) };
                true
            }
            Access::XApic { .. } => {
                let pending = InterruptCommand::SEND_PENDING.bits();
                let idle = (0..spins).any(|_| {
                    let busy = self.read(LocalRegister::InterruptCommand) & pending != 0;
                    core::hint::spin_loop();
                    !busy
                });
                if !idle {
                    return false;
                }
                self.write(
                    LocalRegister::InterruptCommandHigh,
                    InterruptCommand::xapic_high(destination),
                );
                self.write(LocalRegister::InterruptCommand, command);
                true
            }
        }
    }

    /// End of interrupt, for every vector except the spurious one.
    pub(crate) fn eoi(&self) {
        self.write(LocalRegister::EndOfInterrupt, 0);
    }

    pub(super) fn write(&self, register: LocalRegister, value: u32) {
        match self.access {
            // SAFETY: x2APIC mode is on, so the register's MSR exists; the
            // values written are the SDM's for that register.
            Access::X2Apic => unsafe { Msr::new(register.msr()).write(u64::from(value)) },
            Access::XApic { base } => self.mmio(base, register).write(value),
        }
    }

    pub(super) fn read(&self, register: LocalRegister) -> u32 {
        match self.access {
            // SAFETY: as in `write`; x2APIC registers are 32 bits in the
            // MSR's low half, so truncating drops nothing.
            #[allow(clippy::cast_possible_truncation)]
            Access::X2Apic => unsafe { Msr::new(register.msr()).read() as u32 },
            Access::XApic { base } => self.mmio(base, register).read(),
        }
    }

    fn mmio(&self, base: usize, register: LocalRegister) -> VolatilePtr<'_, u32> {
        let address =
            NonNull::new((base + register.offset()) as *mut u32).unwrap_or(NonNull::dangling());
        // SAFETY: `base` is the xAPIC page from IA32_APIC_BASE, below 4 GiB
        // and so identity mapped, and `register` one of its 16-byte aligned
        // 32-bit registers.
        unsafe { VolatilePtr::new(address) }
    }

    /// Programs the timer: divide, LVT, then the count (0 stops it).
    pub(super) fn set_timer(&self, lvt: u32, divide: u32, initial_count: u32) {
        self.write(LocalRegister::TimerDivide, divide);
        self.write(LocalRegister::LvtTimer, lvt);
        self.write(LocalRegister::TimerInitialCount, initial_count);
    }
}
