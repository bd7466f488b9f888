//! Linux's `ip=` kernel parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>`,
//! or `ip=dhcp`. mote uses client, gateway and netmask for its address,
//! and `<server>` as the one host allowed to `POST /poweroff`.

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4([u8; 4]);

impl Ipv4 {
    pub const fn octets(self) -> [u8; 4] {
        self.0
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut octets = [0u8; 4];
        let mut parts = text.split('.');
        for octet in &mut octets {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *octet = part.parse().ok()?;
        }
        parts.next().is_none().then_some(Self(octets))
    }
}

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    pub client: Ipv4,
    pub prefix: u8,
    pub gateway: Option<Ipv4>,
    /// The host allowed to power the VM off over HTTP.
    pub server: Option<Ipv4>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfig {
    Static(StaticConfig),
    Dhcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfigError {
    BadAddress(&'static str),
    /// A netmask whose ones are not contiguous.
    BadNetmask,
    /// autoconf other than off/none/static/dhcp.
    Unsupported,
}

impl fmt::Display for IpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(field) => write!(f, "{field} is not an IPv4 address"),
            Self::BadNetmask => f.write_str("netmask is not a contiguous mask"),
            Self::Unsupported => f.write_str("only static addresses and dhcp are supported"),
        }
    }
}

/// The default prefix when `ip=` gives no netmask (Linux uses the class;
/// every VMM network mote targets is a /24).
const DEFAULT_PREFIX: u8 = 24;

/// Parses the value of `ip=`; `None` for `off`/`none`, which mean no network.
pub fn parse(value: &str) -> Result<Option<IpConfig>, IpConfigError> {
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
            Ipv4::parse(text)
                .map(Some)
                .ok_or(IpConfigError::BadAddress(field))
        }
    };
    let client = Ipv4::parse(client).ok_or(IpConfigError::BadAddress("client"))?;
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

fn prefix_of(mask: Ipv4) -> Option<u8> {
    let bits = u32::from_be_bytes(mask.0);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4 {
        Ipv4::parse(text).unwrap()
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
        assert_eq!(Ipv4::parse("+1.2.3.4"), None);
        assert_eq!(Ipv4::parse("0001.2.3.4"), None);
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of(ip("255.255.255.255")), Some(32));
        assert_eq!(prefix_of(ip("0.0.0.0")), Some(0));
        assert_eq!(prefix_of(ip("255.255.254.0")), Some(23));
        assert_eq!(prefix_of(ip("255.0.0.255")), None);
    }
}
