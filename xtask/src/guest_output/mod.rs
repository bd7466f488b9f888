//! What the guest prints, parsed: the boot report and the tslog dump.

pub mod report;
pub mod tslog;
