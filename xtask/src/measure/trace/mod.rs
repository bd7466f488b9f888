//! `cargo xtask trace`: one boot's tslog dump as a per-phase table, folded
//! stacks and a flamechart. `command.rs` is the entry point.

mod command;
pub(crate) mod cpu_instructions;
pub(crate) mod exits;
mod flamechart;
mod phase_table;

pub(crate) use command::{TraceArgs, trace};
