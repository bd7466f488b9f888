//! Networking: Linux's `ip=` parameter, a small HTTP/1.1 parser and router,
//! and the server that runs UDP echo and HTTP over any smoltcp device
//! (host-tested over smoltcp's loopback); on the target, the service loop
//! that drives it over virtio-net with interrupts and a one-shot timer.

pub(crate) mod http;
pub(crate) mod ip_config;
pub(crate) mod mac_address;
pub(crate) mod server;
#[cfg(target_os = "none")]
pub(crate) mod service;
