//! `cargo xtask test`: the host unit tests, the boot cases and the network
//! cases, and the assertions they make.

pub mod boot_cases;
pub mod boot_runner;
pub mod checks;
pub mod host_tests;
pub mod net_cases;
pub mod proc_stat;
pub mod suite;
