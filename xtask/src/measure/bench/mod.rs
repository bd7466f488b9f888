//! `cargo xtask bench`: the boot-latency experiment runner. This file only
//! wires the parts together; `command.rs` is the entry point.

mod chart;
mod command;
mod configuration;
mod exact;
mod exit_cost;
mod host;
mod http;
mod http_chart;
mod results;
mod runner;
mod served;
mod table;
mod wrk;

pub(crate) use command::{BenchArgs, bench};
pub(crate) use configuration::CONFIG_FILE_HELP;
