//! The network services (target only): smoltcp over virtio-net, UDP echo on
//! port 7 and HTTP/1.1 on port 80, driven by interrupts. With nothing to do
//! the CPU halts until the device or the one-shot timer wakes it.

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use core::net::Ipv4Addr;
use core::sync::atomic::Ordering;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};

use crate::arch::{apic, tsc};
use crate::drivers::virtio_net::VirtioNetDevice;
use crate::net::http::{self, Action, Pages, Parse};
use crate::net::ip_config::{self, IpConfig};
use crate::{console_println, tsc_frequency, tslog};

pub const HTTP_PORT: u16 = 80;
pub const UDP_ECHO_PORT: u16 = 7;
/// Connections served at once; one more gets a TCP reset.
pub const MAX_CONNECTIONS: usize = 64;
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

/// What `/` and `/tslog` show.
pub struct StatusPages {
    /// Facts fixed at the ready mark (TSC source, devices, phase table).
    pub facts: String,
    pub tsc_hz: u64,
}

impl Pages for StatusPages {
    fn status(&self) -> Vec<u8> {
        let (ns, clock) = tsc::monotonic_ns(self.tsc_hz);
        let mut page = String::new();
        let _ = writeln!(
            page,
            "mote\nuptime {} ms ({})",
            ns / 1_000_000,
            clock.name()
        );
        page.push_str(&self.facts);
        page.into_bytes()
    }

    fn tslog(&self) -> Vec<u8> {
        let mut dump = String::new();
        let _ = tslog::write_dump(&mut dump, self.tsc_hz);
        dump.into_bytes()
    }
}

pub struct Network {
    device: VirtioNetDevice,
    gsi: Option<u32>,
    iface: Interface,
    sockets: SocketSet<'static>,
    http: Vec<Connection>,
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    /// The only peer allowed to `POST /poweroff`.
    admin: Option<Ipv4Addr>,
    address: Option<Ipv4Cidr>,
    tsc_hz: u64,
    /// Set when an allowed `POST /poweroff` has been answered: the latest
    /// moment to stop, and whether the client has acknowledged the answer.
    poweroff_at: Option<Instant>,
    poweroff_acknowledged: bool,
}

/// The interface's clock: the monotonic clock in microseconds.
fn now(tsc_hz: u64) -> Instant {
    Instant::from_micros((tsc::monotonic_ns(tsc_hz).0 / 1000) as i64)
}

impl Network {
    /// Configures the interface (static `ip=` or DHCP) and opens the
    /// listening sockets. `gsi` is the device's interrupt, already routed.
    pub fn new(
        mut device: VirtioNetDevice,
        gsi: Option<u32>,
        ip: Option<&str>,
        tsc_hz: u64,
    ) -> Result<Self, ip_config::IpConfigError> {
        let config = match ip {
            Some(value) => ip_config::parse(value)?.unwrap_or(IpConfig::Dhcp),
            None => IpConfig::Dhcp,
        };
        let span = tslog::span("smoltcp_interface");
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(device.mac)));
        iface_config.random_seed = tslog::rdtsc();
        let start = now(tsc_hz);
        let mut iface = Interface::new(iface_config, &mut device, start);
        // Sized once: growing would move every socket already added.
        let mut sockets = SocketSet::new(Vec::with_capacity(MAX_CONNECTIONS + 2));
        let (mut address, mut admin, mut dhcp) = (None, None, None);
        match config {
            IpConfig::Static(config) => {
                let cidr = Ipv4Cidr::new(Ipv4Addr::from(config.client.octets()), config.prefix);
                iface.update_ip_addrs(|addresses| {
                    let _ = addresses.push(IpCidr::Ipv4(cidr));
                });
                if let Some(gateway) = config.gateway {
                    let _ = iface
                        .routes_mut()
                        .add_default_ipv4_route(Ipv4Addr::from(gateway.octets()));
                }
                address = Some(cidr);
                admin = config.server.map(|server| Ipv4Addr::from(server.octets()));
            }
            IpConfig::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        }
        let span = span.then("udp_socket");
        let udp = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            ),
        ));
        let _ = sockets.get_mut::<udp::Socket>(udp).bind(UDP_ECHO_PORT);
        let span = span.then("tcp_sockets");
        let mut http = Vec::with_capacity(MAX_CONNECTIONS);
        add_listeners(&mut sockets, &mut http, INITIAL_CONNECTIONS, start);
        drop(span);
        Ok(Self {
            device,
            gsi,
            iface,
            sockets,
            http,
            udp,
            dhcp,
            admin,
            address,
            tsc_hz,
            poweroff_at: None,
            poweroff_acknowledged: false,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.device.mac
    }

    /// The report lines: the address (once known) and the services.
    pub fn report(&self) {
        let [a, b, c, d, e, f] = self.device.mac;
        match self.address {
            Some(cidr) => {
                console_println!(
                    "mote: net0 mac {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x} ip {cidr}"
                );
                console_println!("mote: listening http {HTTP_PORT} udp-echo {UDP_ECHO_PORT}");
            }
            // The report line waits for the lease (`dhcp_step`).
            None => {
                log::info!("net0 {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}: waiting for DHCP")
            }
        }
    }

    /// Serves until an allowed `POST /poweroff` has been answered.
    pub fn serve(&mut self, pages: &StatusPages) {
        loop {
            let now = now(self.tsc_hz);
            let pending = apic::PENDING_GSIS.swap(0, Ordering::AcqRel);
            apic::TIMER_FIRED.store(false, Ordering::Release);
            let device_irq = self.gsi.is_some_and(|gsi| pending & (1 << gsi) != 0);
            if device_irq {
                self.device.ack_interrupt();
            }
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            self.dhcp_step();
            self.udp_step();
            self.http_step(now, pages);
            if self.http.len() < MAX_CONNECTIONS {
                // Until the pool is full, every turn adds a batch, busy or
                // idle: waiting for idle turns left a burst arriving during
                // steady load with too few listeners (RSTs under a slow KVM).
                add_listeners(&mut self.sockets, &mut self.http, GROW_BY, now);
            }
            if let Some(gsi) = self.gsi.filter(|_| device_irq) {
                apic::unmask_gsi(gsi);
            }
            if let Some(deadline) = self.poweroff_at
                && (now >= deadline || self.poweroff_response_done())
            {
                return;
            }
            let delay = self.next_wakeup(now);
            if delay == Some(Duration::ZERO) || self.device_has_work() {
                continue;
            }
            if let Some(delay) = delay {
                let cycles = tsc_frequency::cycles_for_micros(delay.total_micros(), self.tsc_hz);
                apic::arm_timer(cycles, self.tsc_hz);
            }
            apic::wait_for_interrupt();
            self.log_odd_interrupts();
        }
    }

    /// Received frames still waiting: their interrupt was acknowledged
    /// already, so they must be taken without sleeping.
    fn device_has_work(&self) -> bool {
        self.device.has_pending_rx()
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
        let poll_fallback = self.gsi.is_none().then_some(Duration::from_millis(1));
        let poweroff = self
            .poweroff_at
            .map(|deadline| deadline - now.min(deadline));
        [stack, idle, poll_fallback, poweroff]
            .into_iter()
            .flatten()
            .min()
    }

    fn log_odd_interrupts(&self) {
        let unexpected = apic::UNEXPECTED.swap(0, Ordering::Relaxed);
        if unexpected > 0 {
            log::warn!(
                "{unexpected} unexpected interrupt(s), last vector {:#x}",
                apic::LAST_UNEXPECTED_VECTOR.load(Ordering::Relaxed)
            );
        }
        let spurious = apic::SPURIOUS.swap(0, Ordering::Relaxed);
        if spurious > 0 {
            log::debug!("{spurious} spurious interrupt(s)");
        }
    }

    fn dhcp_step(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(config)) => {
                let cidr = config.address;
                let router = config.router;
                let server = config.server.address;
                self.iface.update_ip_addrs(|addresses| {
                    addresses.clear();
                    let _ = addresses.push(IpCidr::Ipv4(cidr));
                });
                if let Some(router) = router {
                    let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                }
                self.address = Some(cidr);
                self.admin = Some(server);
                self.report();
            }
            Some(dhcpv4::Event::Deconfigured) => {
                log::warn!("DHCP lease lost");
                self.iface.update_ip_addrs(|addresses| addresses.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.address = None;
            }
            None => {}
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

    fn http_step(&mut self, now: Instant, pages: &StatusPages) {
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
    fn poweroff_response_done(&mut self) -> bool {
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
    pages: &StatusPages,
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
