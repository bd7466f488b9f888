//! `cargo xtask test`: the host unit tests, the boot cases and the network
//! cases, and the assertions they make.

mod boot_case;
mod boot_cases;
mod boot_runner;
mod budgets;
mod checks;
mod fixtures;
mod host_tests;
mod net_cases;
mod net_load;
mod proc_stat;
pub(crate) mod suite;
mod vmm_cases;
