//! The network services over any smoltcp device: UDP echo on port 7 and
//! HTTP/1.1 on port 80, on a static `ip=` address or a DHCP lease. Each
//! [`Server::poll`] is one turn of the service loop; the caller supplies
//! the time and sleeps until the turn's wakeup. Host-tested over smoltcp's
//! loopback device.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};

use super::http::{self, Action, Pages, Parse};
use super::ip_config::IpConfig;
use crate::trace;

pub(crate) const HTTP_PORT: u16 = 80;
pub(crate) const UDP_ECHO_PORT: u16 = 7;
/// Connections served at once; one more gets a TCP reset.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Sockets opened before the ready mark; the rest are added 8 per turn of
/// the service loop until there are 64 (each costs ~0.9 ms under an
/// emulating KVM, mostly zeroing its buffers).
const INITIAL_CONNECTIONS: usize = 8;
const GROW_BY: usize = 8;
/// A connection that sends nothing for this long mid-request is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// smoltcp resets a connection that shows no sign of life for this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the VM waits for the power-off response to be acknowledged.
const POWEROFF_GRACE: Duration = Duration::from_secs(1);
/// Per connection: requests are small and responses are streamed out as
/// the window allows, so small buffers do; 64 connections then take 320 KiB
/// to zero at boot, not 1.3 MiB.
const TCP_RX_BUFFER: usize = 1024;
const TCP_TX_BUFFER: usize = 4 * 1024;
const UDP_PACKETS: usize = 8;
const UDP_BUFFER: usize = 4 * 1024;

/// One HTTP connection slot, tied to one smoltcp socket.
struct Connection {
    handle: SocketHandle,
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    closing: bool,
    action: Action,
    /// The connection left LISTEN (its idle clock runs from then).
    active: bool,
    last_activity: Instant,
}

impl Connection {
    fn reset(&mut self, now: Instant) {
        self.request.clear();
        self.response.clear();
        self.sent = 0;
        self.closing = false;
        self.action = Action::None;
        self.active = false;
        self.last_activity = now;
    }
}

/// What one turn of the service loop came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Turn {
    /// An allowed `POST /poweroff` was answered and acknowledged (or its
    /// grace period ran out): stop serving.
    pub(crate) finished: bool,
    /// A DHCP lease arrived with this address.
    pub(crate) configured: Option<Ipv4Cidr>,
    /// When the next turn is due; `None` means only when a packet arrives.
    pub(crate) wakeup: Option<Duration>,
}

/// The interface, its sockets and the HTTP connections.
pub(crate) struct Server<D: Device> {
    device: D,
    iface: Interface,
    sockets: SocketSet<'static>,
    http: Vec<Connection>,
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    /// The only peer allowed to `POST /poweroff`.
    admin: Option<Ipv4Addr>,
    address: Option<Ipv4Cidr>,
    /// Set when an allowed `POST /poweroff` has been answered: the latest
    /// moment to stop, and whether the client has acknowledged the answer.
    poweroff_at: Option<Instant>,
    poweroff_acknowledged: bool,
}

impl<D: Device> Server<D> {
    /// Configures the interface (static address or DHCP) and opens the
    /// listening sockets. `random_seed` seeds smoltcp's port and sequence
    /// numbers.
    pub(crate) fn new(
        mut device: D,
        mac: [u8; 6],
        config: IpConfig,
        now: Instant,
        random_seed: u64,
    ) -> Self {
        let span = trace::span("smoltcp_interface");
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed = random_seed;
        let mut iface = Interface::new(iface_config, &mut device, now);
        // Sized once: growing would move every socket already added.
        let mut sockets = SocketSet::new(Vec::with_capacity(MAX_CONNECTIONS + 2));
        let (mut address, mut admin, mut dhcp) = (None, None, None);
        match config {
            IpConfig::Static(config) => {
                let cidr = Ipv4Cidr::new(config.client, config.prefix);
                iface.update_ip_addrs(|addresses| {
                    let _ = addresses.push(IpCidr::Ipv4(cidr));
                });
                if let Some(gateway) = config.gateway {
                    let _ = iface.routes_mut().add_default_ipv4_route(gateway);
                }
                address = Some(cidr);
                admin = config.server;
            }
            IpConfig::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        }
        let span = span.then("udp_socket");
        let packets = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        let udp = sockets.add(udp::Socket::new(packets(), packets()));
        let _ = sockets.get_mut::<udp::Socket>(udp).bind(UDP_ECHO_PORT);
        let span = span.then("tcp_sockets");
        let mut http = Vec::with_capacity(MAX_CONNECTIONS);
        add_listeners(&mut sockets, &mut http, INITIAL_CONNECTIONS, now);
        drop(span);
        Self {
            device,
            iface,
            sockets,
            http,
            udp,
            dhcp,
            admin,
            address,
            poweroff_at: None,
            poweroff_acknowledged: false,
        }
    }

    pub(crate) fn device(&self) -> &D {
        &self.device
    }

    /// The interface's address, once it has one.
    pub(crate) fn address(&self) -> Option<Ipv4Cidr> {
        self.address
    }

    /// One turn: moves packets, answers what is complete, grows the
    /// connection pool, and says when the next turn is due.
    pub(crate) fn poll(&mut self, now: Instant, pages: &dyn Pages) -> Turn {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        let configured = self.dhcp_step();
        self.udp_step();
        self.http_step(now, pages);
        if self.http.len() < MAX_CONNECTIONS {
            // Until the pool is full, every turn adds a batch, busy or
            // idle: waiting for idle turns left a burst arriving during
            // steady load with too few listeners (RSTs under a slow KVM).
            add_listeners(&mut self.sockets, &mut self.http, GROW_BY, now);
        }
        let finished = self
            .poweroff_at
            .is_some_and(|deadline| now >= deadline || self.poweroff_response_done());
        Turn {
            finished,
            configured,
            wakeup: self.next_wakeup(now),
        }
    }

    fn next_wakeup(&mut self, now: Instant) -> Option<Duration> {
        let stack = self.iface.poll_delay(now, &self.sockets);
        let idle = self
            .http
            .iter()
            .filter(|connection| {
                connection.active && connection.response.is_empty() && !connection.closing
            })
            .map(|connection| {
                (connection.last_activity + IDLE_TIMEOUT)
                    - now.min(connection.last_activity + IDLE_TIMEOUT)
            })
            .min();
        let poweroff = self
            .poweroff_at
            .map(|deadline| deadline - now.min(deadline));
        [stack, idle, poweroff].into_iter().flatten().min()
    }

    /// Applies a DHCP event; returns the address of a new lease.
    fn dhcp_step(&mut self) -> Option<Ipv4Cidr> {
        let handle = self.dhcp?;
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(config)) => {
                let cidr = config.address;
                self.iface.update_ip_addrs(|addresses| {
                    addresses.clear();
                    let _ = addresses.push(IpCidr::Ipv4(cidr));
                });
                if let Some(router) = config.router {
                    let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                }
                self.address = Some(cidr);
                self.admin = Some(config.server.address);
                Some(cidr)
            }
            Some(dhcpv4::Event::Deconfigured) => {
                log::warn!("DHCP lease lost");
                self.iface.update_ip_addrs(|addresses| addresses.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.address = None;
                None
            }
            None => None,
        }
    }

    fn udp_step(&mut self) {
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        let mut buffer = [0u8; 2048];
        while socket.can_send() {
            let Ok((length, meta)) = socket.recv_slice(&mut buffer) else {
                break;
            };
            let _ = socket.send_slice(&buffer[..length], meta.endpoint);
        }
    }

    fn http_step(&mut self, now: Instant, pages: &dyn Pages) {
        for connection in &mut self.http {
            let socket = self.sockets.get_mut::<tcp::Socket>(connection.handle);
            match socket.state() {
                tcp::State::Listen | tcp::State::SynReceived => continue,
                tcp::State::Closed => {
                    connection.reset(now);
                    let _ = socket.listen(HTTP_PORT);
                    continue;
                }
                // Our FIN was acknowledged, so the peer has the whole
                // response and its end of file: waiting out FIN_WAIT_2 (for
                // its FIN) and TIME_WAIT (10 s in smoltcp) would only hold
                // the slot. Recycle it now.
                tcp::State::FinWait2 | tcp::State::TimeWait if connection.closing => {
                    if connection.action == Action::PowerOff {
                        // The client acknowledged our FIN: it has the answer.
                        self.poweroff_acknowledged = true;
                    }
                    socket.abort();
                    connection.reset(now);
                    let _ = socket.listen(HTTP_PORT);
                    continue;
                }
                _ => {}
            }
            if !connection.active {
                connection.active = true;
                connection.last_activity = now;
            }
            if connection.response.is_empty() && !connection.closing {
                read_request(connection, socket, now, self.admin, pages);
            }
            if !connection.response.is_empty() {
                while connection.sent < connection.response.len() && socket.can_send() {
                    match socket.send_slice(&connection.response[connection.sent..]) {
                        Ok(0) | Err(_) => break,
                        Ok(sent) => connection.sent += sent,
                    }
                }
                if connection.sent == connection.response.len() && !connection.closing {
                    socket.close();
                    connection.closing = true;
                    if connection.action == Action::PowerOff {
                        self.poweroff_at = Some(now + POWEROFF_GRACE);
                    }
                }
            }
        }
    }

    /// The power-off answer has been acknowledged by the client.
    fn poweroff_response_done(&self) -> bool {
        self.poweroff_acknowledged
            || self.http.iter().any(|connection| {
                connection.action == Action::PowerOff
                    && connection.closing
                    && self
                        .sockets
                        .get::<tcp::Socket>(connection.handle)
                        .send_queue()
                        == 0
            })
    }
}

/// Opens up to `count` more listening sockets, within `MAX_CONNECTIONS`.
fn add_listeners(
    sockets: &mut SocketSet<'static>,
    http: &mut Vec<Connection>,
    count: usize,
    now: Instant,
) {
    for _ in 0..count.min(MAX_CONNECTIONS - http.len()) {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]),
        );
        // No TCP state may pin a slot: reset after 10 s without a sign of life.
        socket.set_timeout(Some(TCP_TIMEOUT));
        let _ = socket.listen(HTTP_PORT);
        http.push(Connection {
            handle: sockets.add(socket),
            request: Vec::new(),
            response: Vec::new(),
            sent: 0,
            closing: false,
            action: Action::None,
            active: false,
            last_activity: now,
        });
    }
}

/// Reads what has arrived on `socket` and, once the head is complete or
/// bad or too slow, prepares the response.
fn read_request(
    connection: &mut Connection,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    admin: Option<Ipv4Addr>,
    pages: &dyn Pages,
) {
    let mut chunk = [0u8; 1024];
    while socket.can_recv() && connection.request.len() <= http::MAX_HEAD {
        match socket.recv_slice(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(received) => {
                connection.request.extend_from_slice(&chunk[..received]);
                connection.last_activity = now;
            }
        }
    }
    let response = match http::parse_request(&connection.request) {
        Parse::Incomplete if !socket.may_recv() => {
            // The peer closed without finishing a request.
            socket.close();
            connection.closing = true;
            return;
        }
        Parse::Incomplete if now >= connection.last_activity + IDLE_TIMEOUT => {
            http::error_response(408)
        }
        Parse::Incomplete => return,
        Parse::Reject(status) => http::error_response(status),
        Parse::Request { method, path, .. } => {
            let from_admin = match (socket.remote_endpoint(), admin) {
                (
                    Some(IpEndpoint {
                        addr: IpAddress::Ipv4(peer),
                        ..
                    }),
                    Some(admin),
                ) => peer == admin,
                _ => false,
            };
            let (status, body, action) = http::route(method, path, from_admin, pages);
            connection.action = action;
            http::response(status, &body, method == http::Method::Head)
        }
    };
    connection.response = response;
    connection.sent = 0;
}

#[cfg(test)]
mod tests {
    use smoltcp::phy::{Loopback, Medium};

    use super::*;
    use crate::net::http::TestPages;
    use crate::net::ip_config;

    const CLIENT_PORT: u16 = 40_000;

    /// A server on 127.0.0.1/8 over the loopback device, 127.0.0.1 allowed
    /// to power off, with a clock the test moves.
    struct Harness {
        server: Server<Loopback>,
        now: Instant,
        turns: usize,
    }

    impl Harness {
        fn new() -> Self {
            let config = ip_config::parse("127.0.0.1:127.0.0.1::255.0.0.0")
                .unwrap()
                .unwrap();
            let now = Instant::from_secs(1);
            let server = Server::new(
                Loopback::new(Medium::Ethernet),
                [0x02, 0, 0, 0, 0, 1],
                config,
                now,
                42,
            );
            Self {
                server,
                now,
                turns: 0,
            }
        }

        fn turn(&mut self) -> Turn {
            self.turns += 1;
            let turn = self.server.poll(self.now, &TestPages);
            self.now += Duration::from_millis(1);
            turn
        }

        /// A client socket, connecting from `port`.
        fn connect(&mut self, port: u16) -> SocketHandle {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 64 * 1024]),
                tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            );
            socket
                .connect(
                    self.server.iface.context(),
                    (Ipv4Addr::LOCALHOST, HTTP_PORT),
                    port,
                )
                .unwrap();
            self.server.sockets.add(socket)
        }

        fn client(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
            self.server.sockets.get_mut::<tcp::Socket>(handle)
        }

        /// Appends what the client has received to `received`.
        fn receive(&mut self, handle: SocketHandle, received: &mut Vec<u8>) {
            let client = self.client(handle);
            while client.can_recv() {
                client
                    .recv(|bytes| {
                        received.extend_from_slice(bytes);
                        (bytes.len(), ())
                    })
                    .unwrap();
            }
        }

        /// Sends `request` from a new connection and returns everything
        /// received until the server closes, in at most `turns` turns.
        fn exchange(&mut self, port: u16, request: &[u8], turns: usize) -> Vec<u8> {
            let handle = self.connect(port);
            let mut sent = false;
            let mut received = Vec::new();
            for _ in 0..turns {
                self.turn();
                let client = self.client(handle);
                if !sent && client.may_send() {
                    client.send_slice(request).unwrap();
                    sent = true;
                }
                self.receive(handle, &mut received);
                let client = self.client(handle);
                if sent && !client.may_recv() {
                    client.close();
                    break;
                }
            }
            // Let both ends finish the close, then drop the client.
            for _ in 0..5 {
                self.turn();
            }
            self.server.sockets.remove(handle);
            received
        }

        fn listeners(&self) -> usize {
            self.server
                .http
                .iter()
                .filter(|connection| {
                    self.server
                        .sockets
                        .get::<tcp::Socket>(connection.handle)
                        .state()
                        == tcp::State::Listen
                })
                .count()
        }
    }

    fn status_line(response: &[u8]) -> &str {
        let text = core::str::from_utf8(response).unwrap_or("");
        text.lines().next().unwrap_or("")
    }

    fn body(response: &[u8]) -> &[u8] {
        let end = response
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        &response[end..]
    }

    #[test]
    fn routes_over_loopback() {
        let mut harness = Harness::new();
        let health = harness.exchange(CLIENT_PORT, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 50);
        assert_eq!(status_line(&health), "HTTP/1.1 200 OK");
        assert_eq!(body(&health), b"ok\n");
        let status = harness.exchange(CLIENT_PORT + 1, b"GET / HTTP/1.1\r\n\r\n", 50);
        assert_eq!(body(&status), b"status");
        let head = harness.exchange(CLIENT_PORT + 2, b"HEAD /tslog HTTP/1.0\r\n\r\n", 50);
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
        assert!(body(&head).is_empty(), "HEAD has no body");
        let missing = harness.exchange(CLIENT_PORT + 3, b"GET /nope HTTP/1.1\r\n\r\n", 50);
        assert_eq!(status_line(&missing), "HTTP/1.1 404 Not Found");
    }

    #[test]
    fn bad_requests_get_400_and_431() {
        let mut harness = Harness::new();
        let garbage = harness.exchange(CLIENT_PORT, b"GARBAGE\r\n\r\n", 50);
        assert_eq!(status_line(&garbage), "HTTP/1.1 400 Bad Request");
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(9 * 1024, b'a');
        let too_large = harness.exchange(CLIENT_PORT + 1, &huge, 200);
        assert_eq!(
            status_line(&too_large),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn a_silent_client_times_out_with_408() {
        let mut harness = Harness::new();
        let handle = harness.connect(CLIENT_PORT);
        for _ in 0..20 {
            harness.turn();
            let client = harness.client(handle);
            if client.may_send() && client.send_queue() == 0 {
                client.send_slice(b"GET / HT").unwrap();
            }
        }
        assert!(harness.client(handle).recv_queue() == 0, "no answer yet");
        harness.now += IDLE_TIMEOUT;
        let mut received = Vec::new();
        for _ in 0..20 {
            harness.turn();
            harness.receive(handle, &mut received);
        }
        assert_eq!(status_line(&received), "HTTP/1.1 408 Request Timeout");
    }

    #[test]
    fn idle_connection_sets_the_wakeup() {
        let mut harness = Harness::new();
        let handle = harness.connect(CLIENT_PORT);
        for _ in 0..10 {
            harness.turn();
        }
        assert_eq!(harness.client(handle).state(), tcp::State::Established);
        let wakeup = harness.turn().wakeup.unwrap();
        assert!(wakeup <= IDLE_TIMEOUT, "{wakeup}");
    }

    #[test]
    fn connections_are_recycled_beyond_the_pool_size() {
        let mut harness = Harness::new();
        let requests = MAX_CONNECTIONS + 6;
        for index in 0..requests {
            let port = CLIENT_PORT + u16::try_from(index).unwrap();
            let response = harness.exchange(port, b"GET /health HTTP/1.1\r\n\r\n", 50);
            assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "request {index}");
        }
        assert_eq!(
            harness.server.http.len(),
            MAX_CONNECTIONS,
            "the pool grew to its size"
        );
        assert_eq!(
            harness.listeners(),
            MAX_CONNECTIONS,
            "every slot listens again"
        );
    }

    #[test]
    fn poweroff_only_for_the_admin_and_finishes_once_acknowledged() {
        let mut harness = Harness::new();
        let response = harness.exchange(CLIENT_PORT, b"POST /poweroff HTTP/1.1\r\n\r\n", 50);
        assert_eq!(status_line(&response), "HTTP/1.1 202 Accepted");
        assert!(harness.turn().finished);

        let mut stranger = Harness::new();
        stranger.server.admin = Some(Ipv4Addr::new(10, 0, 2, 2));
        let response = stranger.exchange(CLIENT_PORT, b"POST /poweroff HTTP/1.1\r\n\r\n", 50);
        assert_eq!(status_line(&response), "HTTP/1.1 403 Forbidden");
        assert!(!stranger.turn().finished);
    }

    #[test]
    fn udp_echo() {
        let mut harness = Harness::new();
        let packets = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
        let mut socket = udp::Socket::new(packets(), packets());
        socket.bind(CLIENT_PORT).unwrap();
        let handle = harness.server.sockets.add(socket);
        harness
            .server
            .sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(b"echo me", (Ipv4Addr::LOCALHOST, UDP_ECHO_PORT))
            .unwrap();
        let mut echoed = Vec::new();
        for _ in 0..20 {
            harness.turn();
            let socket = harness.server.sockets.get_mut::<udp::Socket>(handle);
            if let Ok((bytes, _)) = socket.recv() {
                echoed.extend_from_slice(bytes);
                break;
            }
        }
        assert_eq!(echoed, b"echo me");
    }
}
