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
    let mut rest = Some(value);
    // `split(':')` by a byte loop: its `memchr` cost more than the fields.
    let mut next = || {
        let text = rest?;
        match text.bytes().position(|byte| byte == b':') {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    };
    let mut next = || next().unwrap_or("");
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
            dotted_quad(text)
                .map(Some)
                .ok_or(IpConfigError::BadAddress(field))
        }
    };
    let client = dotted_quad(client).ok_or(IpConfigError::BadAddress("client"))?;
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

/// `Ipv4Addr::from_str` in one pass over the bytes: four decimal octets
/// of one to three digits, at most 255, no leading zero but in `0`, joined
/// by dots. `core`'s general address parser cost ~170 instructions an
/// address; the `ip_config` fuzz target holds the two to the same answers.
pub(crate) fn dotted_quad(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut bytes = text.bytes();
    for (index, octet) in octets.iter_mut().enumerate() {
        let mut value: u16 = 0;
        let mut digits = 0;
        loop {
            match bytes.next() {
                Some(byte @ b'0'..=b'9') => {
                    if digits == 3 || (digits == 1 && value == 0) {
                        return None;
                    }
                    value = value * 10 + u16::from(byte - b'0');
                    digits += 1;
                }
                Some(b'.') if index < 3 && digits > 0 => break,
                None if index == 3 && digits > 0 => break,
                _ => return None,
            }
        }
        *octet = u8::try_from(value).ok()?;
    }
    Some(Ipv4Addr::from(octets))
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
    fn dotted_quads_as_core_reads_them() {
        for text in [
            "10.0.2.15",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.02.3.4",
            "1.2.3.00",
            "1.2.3.0",
            "1..3.4",
            ".1.2.3",
            "1.2.3.4.",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.999",
            "1000.2.3.4",
            "",
            "a.b.c.d",
            "1.2.3.4a",
            "001.2.3.4",
            "10.0.2.2\u{e9}",
        ] {
            assert_eq!(dotted_quad(text), text.parse().ok(), "{text:?}");
        }
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
