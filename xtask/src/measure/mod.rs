//! Measuring boots: the tslog trace of one boot (`trace`), the interleaved
//! boot-latency experiment (`bench`), and the statistics both use.

pub mod bench;
pub mod stats;
pub mod trace;
