//! The instruction layer: the one place the kernel executes privileged
//! instructions (ports, MSRs, control registers, descriptor tables) and
//! drives the interrupt controllers. Other folders reach hardware only
//! through the safe types here or their own device type.

pub(crate) mod x86_64;
