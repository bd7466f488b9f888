//! The x86_64 hardware shell: everything here touches ports, MSRs, control
//! registers or raw physical memory, and runs only on the target.

pub mod apic;
pub mod console;
pub mod cpu;
pub mod heap;
pub mod interrupts;
pub mod paging;
pub mod physical;
pub mod poweroff;
pub mod tsc;
