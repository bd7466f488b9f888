//! Linux's `ip=` kernel parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>`,
//! or `ip=dhcp`. mote uses client, gateway and netmask for its address,
//! and `<server>` as the one host allowed to `POST /poweroff`. Addresses
//! are `core::net::Ipv4Addr`'s dotted quads (which, unlike Linux's
//! `in_aton`, refuse leading zeros: they mean octal elsewhere).
#![deny(unsafe_code)]

use core::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StaticConfig {
    pub(crate) client: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Option<Ipv4Addr>,
    /// The host allowed to power the VM off over HTTP.
    pub(crate) server: Option<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpConfig {
    Static(StaticConfig),
    Dhcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IpConfigError {
    #[error("{0} is not an IPv4 address")]
    BadAddress(&'static str),
    /// A netmask whose ones are not contiguous.
    #[error("netmask is not a contiguous mask")]
    BadNetmask,
    /// autoconf other than off/none/static/dhcp.
    #[error("only static addresses and dhcp are supported")]
    Unsupported,
}

/// The default prefix when `ip=` gives no netmask (Linux uses the class;
/// every VMM network mote targets is a /24).
const DEFAULT_PREFIX: u8 = 24;

/// Parses the value of `ip=`; `None` for `off`/`none`, which mean no network.
pub(crate) fn parse(value: &str) -> Result<Option<IpConfig>, IpConfigError> {
    match value {
        "dhcp" | "on" | "any" | "both" => return Ok(Some(IpConfig::Dhcp)),
        "off" | "none" => return Ok(None),
        _ => {}
    }
    let mut fields = value.split(':');
    let mut next = || fields.next().unwrap_or("");
    let (client, server, gateway, netmask) = (next(), next(), next(), next());
    let (_hostname, _device, autoconf) = (next(), next(), next());
    match autoconf {
        "" | "off" | "none" | "static" => {}
        "dhcp" | "on" | "any" => return Ok(Some(IpConfig::Dhcp)),
        _ => return Err(IpConfigError::Unsupported),
    }
    if client.is_empty() {
        return Ok(Some(IpConfig::Dhcp));
    }
    let optional = |text: &str, field| {
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse()
                .map(Some)
                .map_err(|_| IpConfigError::BadAddress(field))
        }
    };
    let client = client
        .parse()
        .map_err(|_| IpConfigError::BadAddress("client"))?;
    let prefix = match optional(netmask, "netmask")? {
        Some(mask) => prefix_of(mask).ok_or(IpConfigError::BadNetmask)?,
        None => DEFAULT_PREFIX,
    };
    Ok(Some(IpConfig::Static(StaticConfig {
        client,
        prefix,
        gateway: optional(gateway, "gateway")?,
        server: optional(server, "server")?,
    })))
}

fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = mask.to_bits();
    let prefix = bits.leading_ones();
    let contiguous = bits.checked_shl(prefix).unwrap_or(0) == 0;
    contiguous.then(|| u8::try_from(prefix).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn static_slirp_configuration() {
        assert_eq!(
            parse("10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:mote:eth0:off"),
            Ok(Some(IpConfig::Static(StaticConfig {
                client: ip("10.0.2.15"),
                prefix: 24,
                gateway: Some(ip("10.0.2.2")),
                server: Some(ip("10.0.2.2")),
            })))
        );
    }

    #[test]
    fn short_forms_and_dhcp() {
        assert_eq!(
            parse("192.168.1.5"),
            Ok(Some(IpConfig::Static(StaticConfig {
                client: ip("192.168.1.5"),
                prefix: 24,
                gateway: None,
                server: None,
            })))
        );
        assert_eq!(
            parse("10.1.2.3:::255.255.0.0"),
            Ok(Some(IpConfig::Static(StaticConfig {
                client: ip("10.1.2.3"),
                prefix: 16,
                gateway: None,
                server: None
            })))
        );
        assert_eq!(parse("dhcp"), Ok(Some(IpConfig::Dhcp)));
        assert_eq!(parse(":::::eth0:dhcp"), Ok(Some(IpConfig::Dhcp)));
        assert_eq!(parse("off"), Ok(None));
    }

    #[test]
    fn hostile_values() {
        assert_eq!(parse("10.0.2"), Err(IpConfigError::BadAddress("client")));
        assert_eq!(
            parse("10.0.2.256"),
            Err(IpConfigError::BadAddress("client"))
        );
        assert_eq!(
            parse("10.0.2.1.1"),
            Err(IpConfigError::BadAddress("client"))
        );
        assert_eq!(
            parse("1.2.3.4::x"),
            Err(IpConfigError::BadAddress("gateway"))
        );
        assert_eq!(
            parse("1.2.3.4:::255.0.255.0"),
            Err(IpConfigError::BadNetmask)
        );
        assert_eq!(parse("1.2.3.4::::::rarp"), Err(IpConfigError::Unsupported));
        assert_eq!(parse("+1.2.3.4"), Err(IpConfigError::BadAddress("client")));
        assert_eq!(
            parse("0001.2.3.4"),
            Err(IpConfigError::BadAddress("client"))
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of(ip("255.255.255.255")), Some(32));
        assert_eq!(prefix_of(ip("0.0.0.0")), Some(0));
        assert_eq!(prefix_of(ip("255.255.254.0")), Some(23));
        assert_eq!(prefix_of(ip("255.0.0.255")), None);
    }
}
