//! Networking logic that is not hardware: the `ip=` parameter, the HTTP
//! request parser and router, and the pages the services serve.

pub mod http;
pub mod ip_config;
