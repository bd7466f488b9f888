//! The host side of a guest's network: the guest's service ports and
//! address under QEMU user networking, and the free loopback ports
//! forwarded to them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};

use anyhow::{Context, Result};
use mote_boot::protocol::report::{Line, Listening};

/// The guest's HTTP port (the kernel's contract).
pub(crate) const GUEST_HTTP_PORT: u16 = 80;
/// The guest's UDP echo port (RFC 862's echo service).
pub(crate) const GUEST_UDP_ECHO_PORT: u16 = 7;

/// The report line that says the kernel's services are up on those ports.
pub(crate) const LISTENING_LINE: Line<Listening> = Line(Listening {
    http: GUEST_HTTP_PORT,
    udp_echo: GUEST_UDP_ECHO_PORT,
});

/// The guest address under slirp, static or from its DHCP server, as the
/// kernel reports it.
pub(crate) const EXPECTED_GUEST_ADDRESS: &str = "10.0.2.15/24";

/// The transport of a [`HostForward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

/// One forwarding rule: connections to `127.0.0.1:<host_port>` on the host
/// reach `<guest_port>` on the guest's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostForward {
    pub(crate) transport: Transport,
    pub(crate) host_port: u16,
    pub(crate) guest_port: u16,
}

/// The host ports forwarded to the guest's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPorts {
    pub(crate) http: u16,
    /// More host ports to the same guest port 80.
    pub(crate) extra_http: Vec<u16>,
    pub(crate) udp_echo: u16,
}

impl HostPorts {
    /// One TCP and one UDP port free right now on 127.0.0.1 (the OS picks;
    /// there is a small window before QEMU binds them, which served boots
    /// retry).
    pub(crate) fn pick() -> Result<Self> {
        Self::pick_with_extra_http(0)
    }

    /// Like [`pick`](Self::pick), with `extra` more forwards to guest port
    /// 80 (for bursts of connections; see `served::EXTRA_HTTP_FORWARDS`).
    pub(crate) fn pick_with_extra_http(extra: usize) -> Result<Self> {
        // Hold every picked listener until all are picked, so no port is
        // handed out twice.
        let listeners = (0..=extra)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<std::io::Result<Vec<_>>>()
            .context("picking free TCP ports on 127.0.0.1")?;
        let mut http = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .collect::<std::io::Result<Vec<u16>>>()
            .context("reading picked TCP ports")?;
        let extra_http = http.split_off(1);
        let udp_echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|socket| socket.local_addr())
            .context("picking a free UDP port on 127.0.0.1")?
            .port();
        Ok(Self {
            http: http[0],
            extra_http,
            udp_echo,
        })
    }

    /// Every HTTP port to guest port 80, then the UDP echo port to port 7.
    pub(crate) fn forwards(&self) -> Vec<HostForward> {
        let mut forwards: Vec<HostForward> = std::iter::once(self.http)
            .chain(self.extra_http.iter().copied())
            .map(|host_port| HostForward {
                transport: Transport::Tcp,
                host_port,
                guest_port: GUEST_HTTP_PORT,
            })
            .collect();
        forwards.push(HostForward {
            transport: Transport::Udp,
            host_port: self.udp_echo,
            guest_port: GUEST_UDP_ECHO_PORT,
        });
        forwards
    }

    /// Every host address that reaches guest port 80.
    pub(crate) fn http_addresses(&self) -> Vec<SocketAddr> {
        std::iter::once(self.http)
            .chain(self.extra_http.iter().copied())
            .map(loopback)
            .collect()
    }

    pub(crate) fn http_address(&self) -> SocketAddr {
        loopback(self.http)
    }

    pub(crate) fn udp_echo_address(&self) -> SocketAddr {
        loopback(self.udp_echo)
    }

    /// `http://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.http_address())
    }

    /// The line `run` prints before booting: where the guest's services are reachable.
    pub(crate) fn describe(&self) -> String {
        format!(
            "xtask: guest http {GUEST_HTTP_PORT} at {}, guest udp echo {GUEST_UDP_ECHO_PORT} at {}",
            self.url(),
            self.udp_echo_address()
        )
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// A TCP port nothing listens on now: bind port 0, read it, let it go.
#[cfg(test)]
pub(crate) fn pick_free_tcp_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_ports_that_can_be_bound_again() {
        const EXTRA: usize = 7;
        let ports = HostPorts::pick_with_extra_http(EXTRA).unwrap();
        assert_ne!(ports.http, 0);
        assert_ne!(ports.udp_echo, 0);
        TcpListener::bind(ports.http_address()).unwrap();
        UdpSocket::bind(ports.udp_echo_address()).unwrap();
        assert_eq!(ports.url(), format!("http://127.0.0.1:{}/", ports.http));
        let forwards = ports.forwards();
        assert_eq!(forwards.len(), 1 + EXTRA + 1);
        assert_eq!(
            forwards[0],
            HostForward {
                transport: Transport::Tcp,
                host_port: ports.http,
                guest_port: 80
            }
        );
        assert_eq!(
            *forwards.last().unwrap(),
            HostForward {
                transport: Transport::Udp,
                host_port: ports.udp_echo,
                guest_port: 7
            }
        );
        let mut http_ports: Vec<u16> = ports.http_addresses().iter().map(|a| a.port()).collect();
        assert_eq!(http_ports.len(), 1 + EXTRA);
        http_ports.sort_unstable();
        http_ports.dedup();
        assert_eq!(http_ports.len(), 1 + EXTRA, "no port picked twice");
        assert!(forwards[1..=EXTRA].iter().all(|f| f.guest_port == 80));
        assert!(ports.describe().contains(&ports.url()));
    }
}
