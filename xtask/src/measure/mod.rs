//! Measuring boots: the tslog trace of one boot (`trace`), the interleaved
//! boot-latency experiment (`bench`), and the statistics both use.

pub(crate) mod bench;
pub(crate) mod stats;
pub(crate) mod trace;
