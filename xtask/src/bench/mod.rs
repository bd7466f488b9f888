//! `cargo xtask bench`: the boot-latency experiment runner. This file only
//! wires the parts together; `task.rs` is the entry point.

mod chart;
mod configuration;
mod machine;
pub mod null_guest;
mod results;
mod runner;
mod table;
mod task;

pub use configuration::CONFIG_FILE_HELP;
pub use task::{BenchArgs, bench};
