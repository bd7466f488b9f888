//! The network lines: the served interface and its address, and the
//! services listening on it.

use core::fmt;
use core::net::Ipv4Addr;

use super::parse_after;
use crate::protocol::fields::{Fields, ParseError};

/// An Ethernet address as Linux and QEMU print it: six lowercase hex bytes
/// joined by `:` (smoltcp's own `Display` joins them with `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    fn read(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let mut bytes = [0u8; 6];
        for (index, byte) in bytes.iter_mut().enumerate() {
            if index > 0 {
                fields.literal(":", "':'")?;
            }
            let at = *fields;
            *byte = u8::try_from(fields.fixed_hex(2)?).map_err(|_| at.error("a byte"))?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An IPv4 address with its prefix length: `a.b.c.d/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Cidr {
    fn read(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let at = *fields;
        let address = fields
            .until("/", "'/'")?
            .parse()
            .map_err(|_| at.error("an IPv4 address"))?;
        fields.literal("/", "'/'")?;
        let at = *fields;
        let prefix = fields.decimal()?;
        if prefix > 32 {
            return Err(at.error("a prefix length up to 32"));
        }
        Ok(Self { address, prefix })
    }
}

/// `net<index> mac <mac> ip <address/prefix>`: the served network device
/// (with DHCP, printed once the lease arrives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub index: usize,
    pub mac: MacAddress,
    pub address: Cidr,
}

line_shape! {
    impl[] Net, "net", "net<index> mac <xx:xx:xx:xx:xx:xx> ip <a.b.c.d>/<prefix>",
    |line, f| write!(f, "net{} mac {} ip {}", line.index, line.mac, line.address)
}

impl Net {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "net", "'net'", |fields| {
            let index = fields.decimal()?;
            fields.literal(" mac ", "' mac '")?;
            let mac = MacAddress::read(fields)?;
            fields.literal(" ip ", "' ip '")?;
            let address = Cidr::read(fields)?;
            Ok(Self {
                index,
                mac,
                address,
            })
        })
    }
}

/// `listening http <port> udp-echo <port>`: the services are up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    pub http: u16,
    pub udp_echo: u16,
}

line_shape! {
    impl[] Listening, "listening", "listening http <port> udp-echo <port>",
    |line, f| write!(f, "listening http {} udp-echo {}", line.http, line.udp_echo)
}

impl Listening {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "listening http ", "'listening http '", |fields| {
            let http = fields.decimal()?;
            fields.literal(" udp-echo ", "' udp-echo '")?;
            let udp_echo = fields.decimal()?;
            Ok(Self { http, udp_echo })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::Fact;
    use crate::protocol::report::testing::malformed;

    #[test]
    fn network_lines_round_trip() {
        let net = Net {
            index: 0,
            mac: MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            address: Cidr {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
            },
        };
        let text = net.to_string();
        assert_eq!(text, "net0 mac 52:54:00:12:34:56 ip 10.0.2.15/24");
        assert_eq!(Fact::parse(&text), Some(Ok(Fact::Net(net))));
        let listening = Listening {
            http: 80,
            udp_echo: 7,
        };
        let text = listening.to_string();
        assert_eq!(text, "listening http 80 udp-echo 7");
        assert_eq!(Fact::parse(&text), Some(Ok(Fact::Listening(listening))));
    }

    #[test]
    fn malformed_network_lines_are_errors() {
        malformed(&[
            "net0 mac 52:54:00:12:34 ip 10.0.2.15/24",
            "net0 mac 52-54-00-12-34-56 ip 10.0.2.15/24",
            "net0 mac 52:54:00:12:34:56 ip 10.0.2/24",
            "net0 mac 52:54:00:12:34:56 ip 10.0.2.15/33",
            "net0 mac 52:54:00:12:34:56 ip 10.0.2.15",
            "listening http 80",
            "listening http 80 udp-echo 70000",
        ]);
    }
}
