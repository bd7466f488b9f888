//! What the guest prints, parsed: the boot report, the tslog dump, and the
//! load counters of its status page.

pub(crate) mod report;
pub(crate) mod status_page;
pub(crate) mod tslog;
