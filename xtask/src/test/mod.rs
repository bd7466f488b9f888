//! `cargo xtask test`: the host unit tests, the boot cases and the network
//! cases, and the assertions they make.

pub(crate) mod boot_case;
pub(crate) mod boot_cases;
pub(crate) mod boot_runner;
pub(crate) mod checks;
pub(crate) mod fixtures;
pub(crate) mod host_tests;
pub(crate) mod net_cases;
mod net_load;
pub(crate) mod proc_stat;
pub(crate) mod suite;
