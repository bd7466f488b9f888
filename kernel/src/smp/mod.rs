//! Every vCPU the VMM gives: finding the processors (the MADT's local APIC
//! and x2APIC entries through `acpi`, or the Intel MP table, [`mp_table`])
//! into one list ([`processors`]). Pure logic, host-tested.

pub(crate) mod discovery;
pub(crate) mod mp_table;
pub(crate) mod processors;

pub(crate) use processors::{MAX_CPUS, Processors};
