//! What the guest prints, parsed: the boot report and the tslog dump.

pub(crate) mod report;
pub(crate) mod tslog;
