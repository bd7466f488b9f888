//! What the VMM hands over besides `start_info`: its ACPI tables (the
//! loader's RSDP, or the one the ACPI search finds; every table read once,
//! the DSDT walked once), which VMM it is, and the Firecracker boot timer.
//! docs/vmms.md says what each VMM provides.

use core::fmt::Write;
use core::ptr::NonNull;

use mote_boot::start_info::BootInfo;
use spin::Once;
use volatile::VolatilePtr;

use super::poweroff;
use crate::acpi::vmm::Vmm;
use crate::acpi::{self, Acpi, AcpiError, DsdtFacts, SleepControl};
use crate::cmdline::BootTimer;
use crate::memory::physical::IdentityMapped;
use crate::trace;

/// The tables, read once at boot; every later reader borrows them.
static ACPI: Once<Acpi> = Once::new();

/// Firecracker's boot-timer device, present with `--boot-timer`
/// (`src/vmm/src/arch/x86_64/layout.rs`, `BOOT_DEVICE_MEM_START`).
const FIRECRACKER_BOOT_TIMER: u64 = 0xc000_0000;
/// The byte that makes it log `Guest-boot-time` (`MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE`,
/// `src/vmm/src/devices/pseudo/boot_timer.rs`).
const BOOT_TIMER_SIGNAL: u8 = 123;

pub(super) struct Platform {
    /// Where the RSDP was (given or found), when there is one.
    pub(super) rsdp: Option<u64>,
    pub(super) tables: Option<&'static Acpi>,
    pub(super) dsdt: Option<DsdtFacts>,
    pub(super) vmm: Option<Vmm>,
    sleep: Option<Result<SleepControl, AcpiError>>,
}

/// Finds and reads ACPI, tells power-off how to end this VMM.
pub(super) fn init(boot: &BootInfo) -> Platform {
    let memory = IdentityMapped::boot();
    let mut platform = Platform {
        rsdp: None,
        tables: None,
        dsdt: None,
        vmm: None,
        sleep: None,
    };
    // The search reads below 1 MiB, always inside the boot identity map.
    // Firmware would have passed its RSDP; only a VMM that loads the kernel
    // itself (Firecracker) leaves it for the guest to find.
    let rsdp = boot.rsdp.or_else(|| {
        if acpi::rsdp::firmware_present(&memory) {
            return None;
        }
        let _search = trace::span("rsdp_search");
        acpi::rsdp::search(&memory).map(|found| found.paddr)
    });
    let Some(rsdp) = rsdp else {
        return platform;
    };
    platform.rsdp = Some(rsdp);
    let read = trace::span("acpi_tables");
    let tables = match Acpi::read(&memory, rsdp) {
        Ok(tables) => ACPI.call_once(|| tables),
        Err(error) => {
            log::warn!("ACPI unusable: {error}");
            platform.sleep = Some(Err(error));
            return platform;
        }
    };
    drop(read);
    for problem in &tables.unusable {
        log::warn!("{problem}; skipped");
    }
    platform.tables = Some(tables);
    platform.vmm = Vmm::from_oem_id(tables.oem_id());
    poweroff::set_vmm(platform.vmm);
    let dsdt = {
        let _walk = trace::span("dsdt_walk");
        tables.dsdt_aml().and_then(DsdtFacts::scan)
    };
    let dsdt = dsdt
        .inspect_err(|error| log::warn!("DSDT unusable: {error}"))
        .ok();
    let sleep = tables.sleep_control(dsdt.as_ref().and_then(|facts| facts.s5));
    match &sleep {
        Ok(sleep) => poweroff::set_acpi_sleep(*sleep),
        Err(error) => log::warn!("ACPI power-off unavailable: {error}"),
    }
    platform.sleep = Some(sleep);
    platform.dsdt = dsdt;
    platform
}

impl Platform {
    /// The `acpi` report line's facts: the RSDP and the sleep register.
    pub(super) fn report(&self) -> Option<(u64, Result<SleepControl, AcpiError>)> {
        Some((self.rsdp?, self.sleep?))
    }

    /// `mote.acpi=dump`.
    pub(super) fn dump(&self, out: &mut impl Write) {
        match self.tables {
            Some(tables) => {
                let _ = acpi::dump::write(out, &IdentityMapped::boot(), tables);
            }
            None => log::warn!("mote.acpi=dump: no ACPI tables"),
        }
    }
}

/// Writes the boot-timer byte where `option` says (on Firecracker only,
/// unless an address was given). Returns the address written.
pub(super) fn signal_boot_timer(option: BootTimer, vmm: Option<Vmm>) -> Option<u64> {
    let address = match (option, vmm) {
        (BootTimer::At(address), _) => address,
        (BootTimer::WhenFirecracker, Some(Vmm::Firecracker)) => FIRECRACKER_BOOT_TIMER,
        _ => return None,
    };
    if !IdentityMapped::boot().contains(address, 1) {
        log::warn!("mote.boottimer={address:#x} is not identity mapped; not written");
        return None;
    }
    let register = NonNull::new(usize::try_from(address).ok()? as *mut u8)?;
    // SAFETY: the address is inside the boot identity map; it is
    // Firecracker's boot-timer MMIO byte (OEM id FIRECK), or the one the
    // user named on the command line for that purpose. A VMM with nothing
    // there ignores the write.
    unsafe { VolatilePtr::new(register) }.write(BOOT_TIMER_SIGNAL);
    Some(address)
}
