//! Every vCPU the VMM gives: finding the processors (the MADT's local APIC
//! and x2APIC entries through `acpi`, or the Intel MP table, [`mp_table`])
//! into one list ([`processors`]), choosing the trampoline's page
//! ([`trampoline_page`]) — pure logic, host-tested — and, on the target,
//! starting them (`bring_up`) and giving them work (`dispatch`, through
//! the [`work::Workers`] the workloads take).

#[cfg(target_os = "none")]
pub(crate) mod bring_up;
pub(crate) mod discovery;
#[cfg(target_os = "none")]
pub(crate) mod dispatch;
pub(crate) mod mp_table;
pub(crate) mod processors;
pub(crate) mod trampoline_page;
pub(crate) mod work;

pub(crate) use processors::{MAX_CPUS, Processors};
