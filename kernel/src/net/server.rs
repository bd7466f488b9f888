//! The network services over any smoltcp device: UDP echo on port 7 and
//! HTTP/1.1 on port 80, on a static `ip=` address or a DHCP lease. Each
//! [`Server::poll`] is one turn of the service loop; the caller supplies
//! the time and sleeps until the turn's wakeup. Host-tested over smoltcp's
//! loopback device.
//!
//! smoltcp has no listen backlog: a TCP socket in LISTEN takes one SYN and
//! becomes that connection. The server keeps exactly one socket listening
//! and feeds smoltcp one received frame at a time, handing the port to
//! another socket (an idle one, else a new one) before each frame, so a
//! burst of SYNs is served up to the pool's capacity, which is sized from
//! the heap. Beyond it a SYN is dropped before smoltcp sees it, and
//! counted: the client's TCP retries it with exponential backoff, whereas
//! a reset invites an immediate retry, and a storm of those left no time
//! for the connections being served.
//!
//! smoltcp also walks every socket of a set: to match each received
//! segment, to send, and to find the next deadline. So the HTTP sockets
//! are kept in groups of [`GROUP_SIZE`], each its own socket set: a frame
//! goes to the group that holds its connection (looked up by the peer's
//! address and port), and only groups that received something, or whose
//! deadline came, are walked. The cost of a request then no longer grows
//! with the number of connections that are open but quiet.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpEndpoint, IpProtocol, Ipv4Cidr, Ipv4Packet, TcpPacket,
};

use super::http::{self, Action, Pages, Parse};
use super::ip_config::IpConfig;
use crate::trace;

pub(crate) const HTTP_PORT: u16 = 80;
pub(crate) const UDP_ECHO_PORT: u16 = 7;
/// Upper bound of the connection pool whatever the heap.
const MAX_CONNECTIONS: usize = 2048;
/// HTTP sockets per socket set: what smoltcp walks for one frame.
const GROUP_SIZE: usize = 8;
/// Sockets opened before the ready mark: the listener and the one that
/// listens once it has taken a connection, so one client at a time never
/// waits for a socket to be made. Each costs about 640 instructions,
/// mostly zeroing its 5 KiB of buffers (~0.9 ms under an emulating KVM);
/// more are added on demand, one per connection beyond.
const INITIAL_CONNECTIONS: usize = 2;
/// A connection that sends nothing for this long, mid-request (answered
/// 408) or between requests (closed), is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests answered on one connection before it is closed (nginx's
/// `keepalive_requests` default): no client holds a slot forever.
const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// smoltcp resets a connection that shows no sign of life for this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the VM waits for the power-off response to be acknowledged.
const POWEROFF_GRACE: Duration = Duration::from_secs(1);
/// Frames taken from the device in one turn before the connections are
/// served: bounds a turn under a flood.
const FRAMES_PER_TURN: usize = 64;
/// Walks of a group's sockets per turn when they keep sending: a status
/// page is two segments, a trace dump more.
const EGRESS_WALKS: usize = 4;
/// Largest frame kept for the interface: the Ethernet MTU as smoltcp
/// counts it (no FCS).
const MAX_FRAME: usize = 1514;
/// Per connection: requests are small and responses are streamed out as
/// the window allows, so small buffers do.
const TCP_RX_BUFFER: usize = 1024;
const TCP_TX_BUFFER: usize = 4 * 1024;
/// Heap one connection may take: its socket, its slot in a socket set,
/// its buffers, its route, and a request and a response in flight.
const CONNECTION_BYTES: usize = TCP_RX_BUFFER
    + TCP_TX_BUFFER
    + size_of::<tcp::Socket<'static>>()
    + size_of::<SocketStorage<'static>>()
    + size_of::<Connection>()
    + 64
    + 2 * 1024;
/// Room a connection's request and response buffers keep between
/// requests: a usual request head's and a `/health` answer's (a status
/// page's or a trace dump's is given back once sent).
const REQUEST_KEPT: usize = 512;
const RESPONSE_KEPT: usize = 512;
const UDP_PACKETS: usize = 8;
const UDP_BUFFER: usize = 4 * 1024;

/// One HTTP connection slot, tied to one smoltcp socket.
struct Connection {
    handle: SocketHandle,
    /// Took a SYN: a connection until it closes. Otherwise the socket is
    /// idle or is the pool's listener.
    active: bool,
    /// The peer, while active: the key of its route.
    peer: Option<IpEndpoint>,
    /// Received bytes not yet answered (pipelined requests wait here).
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    /// Close once `response` is queued.
    close_after: bool,
    /// `close` was called: nothing more is read.
    closing: bool,
    action: Action,
    requests: u32,
    last_activity: Instant,
}

impl Connection {
    fn reset(&mut self, now: Instant) {
        self.active = false;
        self.peer = None;
        self.request.clear();
        self.response.clear();
        give_back(&mut self.request, REQUEST_KEPT);
        give_back(&mut self.response, RESPONSE_KEPT);
        self.sent = 0;
        self.close_after = false;
        self.closing = false;
        self.action = Action::None;
        self.requests = 0;
        self.last_activity = now;
    }

    /// When the connection is to be looked at even if nothing arrives.
    fn idle_deadline(&self) -> Option<Instant> {
        (self.active && self.response.is_empty() && !self.closing)
            .then_some(self.last_activity + IDLE_TIMEOUT)
    }
}

/// Swaps a buffer that grew past `room` (for a status page, a trace dump,
/// a long request head) for one of `room`: no connection keeps what a
/// thousand of them could not each hold.
fn give_back(buffer: &mut Vec<u8>, room: usize) {
    if buffer.capacity() > room {
        *buffer = Vec::with_capacity(room);
    }
}

/// A socket set and when it next needs a turn without a frame.
struct Group {
    sockets: SocketSet<'static>,
    /// A frame went to it, or a connection in it moved: walk it this turn.
    dirty: bool,
    /// It is in [`Walks::groups`]: dirty, or one of its deadlines came.
    listed: bool,
    /// smoltcp's next deadline for the set (retransmission, delayed ACK).
    stack_at: Option<Instant>,
    /// The earliest idle deadline of its connections.
    idle_at: Option<Instant>,
    /// Times its sockets were walked for sending.
    #[cfg(test)]
    walks: usize,
}

impl Group {
    fn new(capacity: usize) -> Self {
        Self {
            sockets: SocketSet::new(Vec::with_capacity(capacity)),
            dirty: false,
            listed: false,
            stack_at: None,
            idle_at: None,
            #[cfg(test)]
            walks: 0,
        }
    }
}

/// The groups a turn walks, kept beside them so that a turn costs what
/// its groups do: the pool's groups (126 at 1 000 connections) are all
/// looked at only when the earliest deadline among them comes, not three
/// times a turn.
#[derive(Default)]
struct Walks {
    /// The groups to walk this turn, each once (`Group::listed`); never
    /// group 0, which every turn walks.
    groups: Vec<usize>,
    /// No HTTP group's deadline comes before it (`None`: none has one;
    /// group 0's is its own, as every turn walks it). Only
    /// when it comes are all groups looked at, for those whose deadline
    /// came; it may be early, as a group's deadline can move later
    /// unseen, and that look sets it exact.
    earliest: Option<Instant>,
    /// Times all groups were looked at.
    #[cfg(test)]
    looks: usize,
}

impl Walks {
    /// Marks group `index` dirty and lists it for this turn.
    fn mark(&mut self, groups: &mut [Group], index: usize) {
        let group = &mut groups[index];
        group.dirty = true;
        self.list(group, index);
    }

    fn list(&mut self, group: &mut Group, index: usize) {
        if index != 0 && !group.listed {
            group.listed = true;
            self.groups.push(index);
        }
    }

    /// Lowers [`Self::earliest`] to `at`.
    fn note(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.earliest = Some(self.earliest.map_or(at, |earliest| earliest.min(at)));
        }
    }

    /// Once [`Self::earliest`] has come: lists the groups whose deadline
    /// came and sets it to the others' earliest. The listed ones note
    /// theirs when they are walked.
    fn list_due(&mut self, groups: &mut [Group], now: Instant) {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return;
        }
        self.earliest = None;
        #[cfg(test)]
        {
            self.looks += 1;
        }
        for (index, group) in groups.iter_mut().enumerate().skip(1) {
            let due = [group.stack_at, group.idle_at].into_iter().flatten().min();
            match due {
                Some(at) if at <= now => self.list(group, index),
                due => self.note(due),
            }
        }
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

/// Counters of the HTTP service, shown on the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Load {
    /// Connections the pool may hold (from the heap).
    pub(crate) capacity: usize,
    /// Sockets allocated so far (they are reused, never freed).
    pub(crate) sockets: usize,
    /// Connections open now, and the most at once.
    pub(crate) open: usize,
    pub(crate) peak: usize,
    pub(crate) accepted: u64,
    pub(crate) requests: u64,
    /// SYNs dropped because the pool was full.
    pub(crate) refused: u64,
    /// Heap bytes free at the last turn, and the fewest seen at the end
    /// of a turn: what the load cost in memory at its peak.
    pub(crate) heap_free: Option<usize>,
    pub(crate) heap_low: Option<usize>,
}

/// TSC cycles since the service loop started, and of them those spent
/// halted waiting for an interrupt (the service loop says). Their
/// difference over the requests of a load step is the guest's cost per
/// request, which under `--accel icount` is its instructions, whatever the
/// host's load.
pub(crate) type Cycles = fn() -> (u64, u64);

/// The status page with the load counters after it.
struct PagesWithLoad<'a> {
    pages: &'a dyn Pages,
    load: Load,
    /// Read only when a status page is written (a TSC read can be a VM
    /// exit: not once a turn).
    cycles: Option<Cycles>,
}

impl Pages for PagesWithLoad<'_> {
    fn status(&self) -> Vec<u8> {
        let mut page = self.pages.status();
        let load = self.load;
        let mut line = String::new();
        let _ = writeln!(
            line,
            "http connections {} open, {} peak, {} sockets of {}; {} accepted, {} requests, {} refused",
            load.open,
            load.peak,
            load.sockets,
            load.capacity,
            load.accepted,
            load.requests,
            load.refused
        );
        if let (Some(free), Some(low)) = (load.heap_free, load.heap_low) {
            let _ = writeln!(line, "heap {free} bytes free, {low} at the least");
        }
        if let Some((elapsed, halted)) = self.cycles.map(|cycles| cycles()) {
            let _ = writeln!(
                line,
                "tsc {elapsed} cycles serving, {halted} halted, {} busy",
                elapsed.saturating_sub(halted)
            );
        }
        page.extend_from_slice(line.as_bytes());
        page
    }

    fn tslog(&self) -> Vec<u8> {
        self.pages.tslog()
    }
}

/// The device as smoltcp's ingress sees it: the one frame the server took
/// from the real device and routed, then nothing; sending goes to the
/// real device.
struct OneFrame<'a, D: Device> {
    frame: Option<&'a [u8]>,
    device: &'a mut D,
}

struct FrameToken<'a>(&'a [u8]);

impl<D: Device> Device for OneFrame<'_, D> {
    type RxToken<'a>
        = FrameToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.frame.take()?;
        let tx = self.device.transmit(timestamp)?;
        Some((FrameToken(frame), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.device.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

impl phy::RxToken for FrameToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

/// What a received frame is, as far as routing it to a group goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    /// A TCP segment to the HTTP port from this peer; `syn` for a SYN
    /// without ACK (a new connection).
    Http { peer: IpEndpoint, syn: bool },
    /// Anything else (ARP, ICMP, UDP, other TCP ports).
    Other,
}

fn classify(frame: &[u8]) -> Segment {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return Segment::Other;
    };
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return Segment::Other;
    }
    let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
        return Segment::Other;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return Segment::Other;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return Segment::Other;
    };
    if tcp.dst_port() != HTTP_PORT {
        return Segment::Other;
    }
    Segment::Http {
        peer: IpEndpoint::new(IpAddress::Ipv4(ip.src_addr()), tcp.src_port()),
        syn: tcp.syn() && !tcp.ack(),
    }
}

/// The group of socket sets that holds connection `index` (group 0 holds
/// UDP and DHCP).
fn group_of(index: usize) -> usize {
    1 + index / GROUP_SIZE
}

/// The interface, its sockets and the HTTP connections.
pub(crate) struct Server<D: Device> {
    device: D,
    /// The frame being routed (reused).
    frame: Vec<u8>,
    iface: Interface,
    /// Group 0: UDP echo and DHCP; then the HTTP sockets, GROUP_SIZE each.
    groups: Vec<Group>,
    http: Vec<Connection>,
    /// Which groups this turn walks, and when one is next due.
    walks: Walks,
    /// Active connections by peer.
    routes: BTreeMap<IpEndpoint, usize>,
    /// Indices into `http` of the idle sockets, and of the listening one.
    idle: Vec<usize>,
    listener: Option<usize>,
    capacity: usize,
    load: Load,
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    /// The only peer allowed to `POST /poweroff`.
    admin: Option<Ipv4Addr>,
    address: Option<Ipv4Cidr>,
    poweroff: PowerOff,
    /// Reads the heap's free bytes, when the caller has a heap to watch.
    heap_free: Option<fn() -> usize>,
    cycles: Option<Cycles>,
}

/// Connections that fit in `memory_budget` bytes of heap, within bounds.
fn pool_capacity(memory_budget: usize) -> usize {
    (memory_budget / CONNECTION_BYTES).clamp(1, MAX_CONNECTIONS)
}

impl<D: Device> Server<D> {
    /// Configures the interface (static address or DHCP) and opens the
    /// first sockets. `random_seed` seeds smoltcp's port and sequence
    /// numbers; the connection pool may take `memory_budget` bytes of heap.
    pub(crate) fn new(
        mut device: D,
        mac: [u8; 6],
        config: IpConfig,
        now: Instant,
        random_seed: u64,
        memory_budget: usize,
    ) -> Self {
        let span = trace::span("smoltcp_interface");
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        iface_config.random_seed = random_seed;
        let mut iface = Interface::new(iface_config, &mut device, now);
        let capacity = pool_capacity(memory_budget);
        let mut services = Group::new(2);
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
            IpConfig::Dhcp => dhcp = Some(services.sockets.add(dhcpv4::Socket::new())),
        }
        let span = span.then("udp_socket");
        let packets = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        let udp = services.sockets.add(udp::Socket::new(packets(), packets()));
        let _ = services
            .sockets
            .get_mut::<udp::Socket>(udp)
            .bind(UDP_ECHO_PORT);
        let span = span.then("tcp_sockets");
        let mut groups = Vec::with_capacity(1 + capacity.div_ceil(GROUP_SIZE));
        groups.push(services);
        let mut server = Self {
            device,
            frame: Vec::with_capacity(MAX_FRAME),
            iface,
            groups,
            http: Vec::with_capacity(capacity),
            walks: Walks::default(),
            routes: BTreeMap::new(),
            idle: Vec::with_capacity(capacity),
            listener: None,
            capacity,
            load: Load {
                capacity,
                ..Load::default()
            },
            udp,
            dhcp,
            admin,
            address,
            poweroff: PowerOff::default(),
            heap_free: None,
            cycles: None,
        };
        for _ in 0..INITIAL_CONNECTIONS.min(capacity) {
            let index = server.add_socket(now);
            server.idle.push(index);
        }
        server.hand_over_listener(now);
        drop(span);
        server
    }

    pub(crate) fn device(&self) -> &D {
        &self.device
    }

    /// The interface's address, once it has one.
    pub(crate) fn address(&self) -> Option<Ipv4Cidr> {
        self.address
    }

    /// Reports `heap_free()` (the heap's free bytes) and its low mark on
    /// the status page, read after every turn.
    pub(crate) fn watch_heap(&mut self, heap_free: fn() -> usize) {
        self.heap_free = Some(heap_free);
    }

    /// Reports `cycles()` (the service loop's TSC cycles since it
    /// started, and those halted) on the status page, read when a page is
    /// written.
    pub(crate) fn watch_cycles(&mut self, cycles: Cycles) {
        self.cycles = Some(cycles);
    }

    /// The HTTP counters.
    pub(crate) fn load(&self) -> Load {
        Load {
            sockets: self.http.len(),
            ..self.load
        }
    }

    /// One turn: takes the frames that have arrived (one at a time, each
    /// routed to its group, the port handed to a fresh socket before
    /// each), answers what is complete, sends, and says when the next turn
    /// is due.
    pub(crate) fn poll(&mut self, now: Instant, pages: &dyn Pages) -> Turn {
        self.iface.poll_maintenance(now);
        for _ in 0..FRAMES_PER_TURN {
            self.hand_over_listener(now);
            if !self.ingress_one(now) {
                break;
            }
        }
        self.hand_over_listener(now);
        let configured = self.dhcp_step();
        self.udp_step();
        let pages = PagesWithLoad {
            pages,
            load: self.load(),
            cycles: self.cycles,
        };
        self.walks.list_due(&mut self.groups, now);
        self.http_step(now, &pages);
        self.egress(now);
        if let Some(heap_free) = self.heap_free {
            let free = heap_free();
            self.load.heap_free = Some(free);
            self.load.heap_low = Some(self.load.heap_low.map_or(free, |low| low.min(free)));
        }
        let finished = self
            .poweroff
            .deadline
            .is_some_and(|deadline| now >= deadline || self.poweroff_response_done());
        Turn {
            finished,
            configured,
            wakeup: self.next_wakeup(now),
        }
    }

    /// Takes one frame from the device and gives it to the socket set
    /// that holds its connection; returns whether there was one.
    fn ingress_one(&mut self, now: Instant) -> bool {
        // The transmit token that comes with the frame is dropped unused;
        // `OneFrame` asks the device again, and nothing is sent between,
        // so the room it stood for is still there.
        let Some((rx, _)) = self.device.receive(now) else {
            return false;
        };
        let frame = &mut self.frame;
        phy::RxToken::consume(rx, |bytes| {
            frame.clear();
            frame.extend_from_slice(&bytes[..bytes.len().min(MAX_FRAME)]);
        });
        let mut routed = None;
        let group = match classify(&self.frame) {
            Segment::Http { peer, syn } => match self.routes.get(&peer).copied() {
                Some(index) if !syn || self.in_handshake(index) => {
                    routed = Some(index);
                    group_of(index)
                }
                // A new connection, also from a port the peer used for one
                // we still hold: the peer has forgotten that one.
                held if syn => match self.listener {
                    Some(index) => {
                        if let Some(stale) = held {
                            self.forget(stale, peer);
                        }
                        group_of(index)
                    }
                    None => {
                        // The pool is full: drop it, the client retries.
                        self.load.refused += 1;
                        return true;
                    }
                },
                // No connection: group 0's smoltcp answers with a reset.
                _ => 0,
            },
            Segment::Other => 0,
        };
        self.walks.mark(&mut self.groups, group);
        let mut one = OneFrame {
            frame: Some(&self.frame),
            device: &mut self.device,
        };
        self.iface
            .poll_ingress_single(now, &mut one, &mut self.groups[group].sockets);
        // A reset in SYN-RECEIVED puts smoltcp's socket back to LISTEN:
        // close it before it takes a SYN meant for the pool's listener.
        if let Some(index) = routed
            && self.socket(index).is_listening()
        {
            self.socket_mut(index).abort();
        }
        true
    }

    /// Aborts connection `index`, which `peer` has given up, so that no
    /// socket but the listener matches the peer's new SYN; the connection
    /// is recycled when its group is next served.
    fn forget(&mut self, index: usize, peer: IpEndpoint) {
        self.socket_mut(index).abort();
        self.walks.mark(&mut self.groups, group_of(index));
        self.routes.remove(&peer);
    }

    /// The socket of connection `index`.
    fn socket(&self, index: usize) -> &tcp::Socket<'static> {
        self.groups[group_of(index)]
            .sockets
            .get::<tcp::Socket>(self.http[index].handle)
    }

    fn socket_mut(&mut self, index: usize) -> &mut tcp::Socket<'static> {
        self.groups[group_of(index)]
            .sockets
            .get_mut::<tcp::Socket>(self.http[index].handle)
    }

    /// Connection `index` has answered a SYN and waits for the ACK: a
    /// SYN from its peer is a retransmission.
    fn in_handshake(&self, index: usize) -> bool {
        self.socket(index).state() == tcp::State::SynReceived
    }

    /// Sends what the walked groups have to send and notes their next
    /// deadlines. Group 0 is always walked: UDP answers are queued there.
    /// A group walked only because a timer came due is served next turn
    /// too: the timer may have closed a connection.
    fn egress(&mut self, now: Instant) {
        let mut walked = core::mem::take(&mut self.walks.groups);
        for &index in [0].iter().chain(&walked) {
            let group = &mut self.groups[index];
            let due = group.stack_at.is_some_and(|at| at <= now);
            #[cfg(test)]
            {
                group.walks += 1;
            }
            // Each walk sends at most one segment per socket.
            for _ in 0..EGRESS_WALKS {
                let sent = self
                    .iface
                    .poll_egress(now, &mut self.device, &mut group.sockets);
                if sent == PollResult::None {
                    break;
                }
            }
            group.stack_at = self.iface.poll_at(now, &group.sockets);
            // Walked only because its timer came: again next turn.
            let again = index != 0 && !group.dirty && due;
            group.dirty = again;
            group.listed = again;
            if index != 0 {
                self.walks.note(group.stack_at);
                self.walks.note(group.idle_at);
            }
        }
        walked.retain(|&index| self.groups[index].listed);
        self.walks.groups = walked;
    }

    /// Opens one more pooled socket, closed; returns its index.
    fn add_socket(&mut self, now: Instant) -> usize {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]),
        );
        // No TCP state may pin a slot: reset after 10 s without a sign of life.
        socket.set_timeout(Some(TCP_TIMEOUT));
        // Every response is written whole: holding its last segment back
        // until the first is acknowledged (Nagle) only waits out the
        // client's delayed ACK.
        socket.set_nagle_enabled(false);
        let index = self.http.len();
        if group_of(index) == self.groups.len() {
            // Not walked until a frame comes for it: its sockets have
            // nothing to send.
            self.groups.push(Group::new(GROUP_SIZE));
        }
        let handle = self.groups[group_of(index)].sockets.add(socket);
        self.http.push(Connection {
            handle,
            active: false,
            peer: None,
            // Given their room when the socket first takes a connection.
            request: Vec::new(),
            response: Vec::new(),
            sent: 0,
            close_after: false,
            closing: false,
            action: Action::None,
            requests: 0,
            last_activity: now,
        });
        index
    }

    /// Makes sure one socket listens, unless the pool is full: the one
    /// that listened may have taken a SYN with the last frame.
    fn hand_over_listener(&mut self, now: Instant) {
        if let Some(index) = self.listener {
            let socket = self.socket(index);
            if socket.is_listening() {
                return;
            }
            let peer = socket.remote_endpoint();
            let connection = &mut self.http[index];
            // Room taken once, not grown on the first request: growing
            // left a trail of small holes per connection, which every
            // later allocation (a transmitted frame's, in virtio-drivers)
            // walked, first fit: 3 000 instructions an allocation at 1 000
            // connections. Not before the ready mark: only once needed.
            connection.request.reserve_exact(REQUEST_KEPT);
            connection.response.reserve_exact(RESPONSE_KEPT);
            connection.active = true;
            connection.last_activity = now;
            connection.peer = peer;
            if let Some(peer) = connection.peer {
                self.routes.insert(peer, index);
            }
            self.listener = None;
            self.load.accepted += 1;
            self.load.open += 1;
            self.load.peak = self.load.peak.max(self.load.open);
        }
        let index = match self.idle.pop() {
            Some(index) => index,
            None if self.http.len() < self.capacity => self.add_socket(now),
            None => return,
        };
        if self.socket_mut(index).listen(HTTP_PORT).is_ok() {
            self.listener = Some(index);
        } else {
            // Not closed after all (cannot happen for an idle socket):
            // keep it out of the pool rather than loop on it.
            log::warn!("http socket {index} would not listen");
        }
    }

    fn next_wakeup(&self, now: Instant) -> Option<Duration> {
        if !self.walks.groups.is_empty() {
            return Some(Duration::ZERO);
        }
        self.walks
            .earliest
            .into_iter()
            .chain(self.groups[0].stack_at)
            .chain(self.poweroff.deadline)
            .min()
            .map(|at| if at > now { at - now } else { Duration::ZERO })
    }

    /// Applies a DHCP event; returns the address of a new lease.
    fn dhcp_step(&mut self) -> Option<Ipv4Cidr> {
        let handle = self.dhcp?;
        let event = self.groups[0]
            .sockets
            .get_mut::<dhcpv4::Socket>(handle)
            .poll();
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
        let socket = self.groups[0].sockets.get_mut::<udp::Socket>(self.udp);
        let mut buffer = [0u8; 2048];
        while socket.can_send() {
            let Ok((length, meta)) = socket.recv_slice(&mut buffer) else {
                break;
            };
            let _ = socket.send_slice(&buffer[..length], meta.endpoint);
        }
    }

    /// Serves the connections of the groups that received something or
    /// whose idle deadline came.
    fn http_step(&mut self, now: Instant, pages: &dyn Pages) {
        for &number in &self.walks.groups {
            let group = &mut self.groups[number];
            let due = group.idle_at.is_some_and(|at| at <= now);
            if !group.dirty && !due {
                continue;
            }
            group.dirty = true;
            let first = (number - 1) * GROUP_SIZE;
            let last = self.http.len().min(first + GROUP_SIZE);
            let mut idle_at: Option<Instant> = None;
            for index in first..last {
                let connection = &mut self.http[index];
                if connection.active {
                    let socket = group.sockets.get_mut::<tcp::Socket>(connection.handle);
                    if step_connection(
                        connection,
                        socket,
                        now,
                        self.admin,
                        pages,
                        &mut self.load.requests,
                        &mut self.poweroff,
                    ) {
                        // A newer connection from the same peer port may
                        // have taken the route.
                        if let Some(peer) = connection.peer
                            && self.routes.get(&peer) == Some(&index)
                        {
                            self.routes.remove(&peer);
                        }
                        connection.reset(now);
                        self.idle.push(index);
                        self.load.open -= 1;
                    }
                }
                if let Some(at) = connection.idle_deadline() {
                    idle_at = Some(idle_at.map_or(at, |earliest| earliest.min(at)));
                }
            }
            group.idle_at = idle_at;
        }
    }

    /// The power-off answer has been acknowledged by the client.
    fn poweroff_response_done(&self) -> bool {
        self.poweroff.acknowledged
            || self.http.iter().enumerate().any(|(index, connection)| {
                connection.action == Action::PowerOff
                    && connection.closing
                    && self.socket(index).send_queue() == 0
            })
    }
}

/// Set once an allowed `POST /poweroff` has been answered.
#[derive(Clone, Copy, Debug, Default)]
struct PowerOff {
    /// The latest moment to stop.
    deadline: Option<Instant>,
    /// The client has acknowledged the answer.
    acknowledged: bool,
}

/// One active connection's turn, counting the requests it answers;
/// returns whether it is over and its socket free again.
fn step_connection(
    connection: &mut Connection,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    admin: Option<Ipv4Addr>,
    pages: &dyn Pages,
    requests: &mut u64,
    poweroff: &mut PowerOff,
) -> bool {
    match socket.state() {
        tcp::State::SynReceived => return false,
        tcp::State::Closed => return true,
        // Put back to LISTEN by a reset in SYN-RECEIVED (`ingress_one`
        // closes such a socket at once; this is the backstop).
        tcp::State::Listen => {
            socket.abort();
            return true;
        }
        // Our FIN was acknowledged, so the peer has the whole response and
        // its end of file: waiting out FIN_WAIT_2 (for its FIN) and
        // TIME_WAIT (10 s in smoltcp) would only hold the slot. Recycle it
        // now.
        tcp::State::FinWait2 | tcp::State::TimeWait if connection.closing => {
            if connection.action == Action::PowerOff {
                // The client acknowledged our FIN: it has the answer.
                poweroff.acknowledged = true;
            }
            socket.abort();
            return true;
        }
        _ => {}
    }
    *requests += serve(connection, socket, now, admin, pages);
    if connection.closing && connection.action == Action::PowerOff && poweroff.deadline.is_none() {
        poweroff.deadline = Some(now + POWEROFF_GRACE);
    }
    false
}

/// Moves one connection on: queues what is left of its response; once a
/// response is queued, closes or parses the next (pipelined) request;
/// reads what has arrived. Returns the requests answered.
fn serve(
    connection: &mut Connection,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    admin: Option<Ipv4Addr>,
    pages: &dyn Pages,
) -> u64 {
    let mut answered = 0;
    while !connection.closing {
        if !connection.response.is_empty() {
            while connection.sent < connection.response.len() && socket.can_send() {
                match socket.send_slice(&connection.response[connection.sent..]) {
                    Ok(0) | Err(_) => break,
                    Ok(sent) => connection.sent += sent,
                }
            }
            if connection.sent < connection.response.len() {
                break;
            }
            if connection.close_after {
                socket.close();
                connection.closing = true;
                break;
            }
            connection.response.clear();
            give_back(&mut connection.response, RESPONSE_KEPT);
            connection.sent = 0;
            // The keep-alive idle clock runs from the answer.
            connection.last_activity = now;
        }
        receive(connection, socket, now);
        if !answer(connection, socket, now, admin, pages) {
            break;
        }
        answered += 1;
    }
    answered
}

/// Appends what has arrived to the connection's request bytes, bounded.
fn receive(connection: &mut Connection, socket: &mut tcp::Socket<'_>, now: Instant) {
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
}

/// Prepares the response to the first request in the connection's bytes,
/// if it is complete, bad or too slow; returns whether it did. A peer
/// that closed or stayed silent between requests is closed quietly.
fn answer(
    connection: &mut Connection,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    admin: Option<Ipv4Addr>,
    pages: &dyn Pages,
) -> bool {
    let silent = now >= connection.last_activity + IDLE_TIMEOUT;
    // Written into the connection's buffer, which keeps its room: a
    // request costs no allocation.
    let response = &mut connection.response;
    response.clear();
    let (keep_open, consumed) = match http::parse_request(&connection.request) {
        Parse::Incomplete if !socket.may_recv() || (silent && connection.request.is_empty()) => {
            // The peer closed (or idled) without starting another request.
            socket.close();
            connection.closing = true;
            return false;
        }
        Parse::Incomplete if silent => {
            http::write_error_response(response, 408);
            (false, 0)
        }
        Parse::Incomplete => return false,
        Parse::Reject(status) => {
            http::write_error_response(response, status);
            (false, 0)
        }
        Parse::Request {
            method,
            path,
            has_body,
            keep_alive,
            head_length,
        } => {
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
            connection.requests += 1;
            let keep_open = keep_alive
                && !has_body
                && action == Action::None
                && connection.requests < MAX_REQUESTS_PER_CONNECTION;
            let head_only = method == http::Method::Head;
            http::write_response(response, status, &body, head_only, keep_open);
            (keep_open, head_length)
        }
    };
    connection.request.drain(..consumed);
    connection.sent = 0;
    connection.close_after = !keep_open;
    true
}

#[cfg(test)]
mod tests {
    use smoltcp::phy::{Loopback, Medium};

    use super::*;
    use crate::net::http::TestPages;
    use crate::net::ip_config;

    const CLIENT_PORT: u16 = 40_000;
    /// Heap for the pool in most tests: room for far more than they open.
    const BUDGET: usize = 64 * 1024 * 1024;

    /// A server on 127.0.0.1/8 over the loopback device, 127.0.0.1 allowed
    /// to power off, with a clock the test moves. The clients' sockets live
    /// in the server's socket set, on the same interface.
    struct Harness {
        server: Server<Loopback>,
        now: Instant,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_budget(BUDGET)
        }

        fn with_budget(budget: usize) -> Self {
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
                budget,
            );
            Self { server, now }
        }

        fn turn(&mut self) -> Turn {
            let turn = self.server.poll(self.now, &TestPages);
            self.now += Duration::from_millis(1);
            turn
        }

        /// How many times each group was walked so far.
        fn walks(&self) -> Vec<usize> {
            self.server.groups.iter().map(|group| group.walks).collect()
        }

        /// The groups walked since [`Self::walks`] gave `before`.
        fn walked_since(&self, before: &[usize]) -> Vec<usize> {
            let now = self.walks();
            (0..now.len())
                .filter(|&number| before.get(number) != Some(&now[number]))
                .collect()
        }

        /// `count` clients from ports `first..`, each answered once and
        /// kept alive.
        fn kept_alive(&mut self, first: u16, count: usize) -> Vec<SocketHandle> {
            let quiet: Vec<SocketHandle> = (first..)
                .take(count)
                .map(|port| self.established(port))
                .collect();
            for &handle in &quiet {
                self.client(handle)
                    .send_slice(b"GET /health HTTP/1.1\r\n\r\n")
                    .unwrap();
            }
            for &handle in &quiet {
                let received = self.await_responses(handle, 1, 50);
                assert_eq!(responses(&received)[0].connection, "keep-alive");
            }
            quiet
        }

        /// A client socket with `buffer`-byte buffers, connecting from `port`.
        fn connect_with(&mut self, port: u16, buffer: usize) -> SocketHandle {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; buffer]),
                tcp::SocketBuffer::new(vec![0; buffer]),
            );
            socket
                .connect(
                    self.server.iface.context(),
                    (Ipv4Addr::LOCALHOST, HTTP_PORT),
                    port,
                )
                .unwrap();
            self.server.groups[0].sockets.add(socket)
        }

        fn connect(&mut self, port: u16) -> SocketHandle {
            self.connect_with(port, 64 * 1024)
        }

        /// A client connected from `port`, the handshake done.
        fn established(&mut self, port: u16) -> SocketHandle {
            let handle = self.connect(port);
            for _ in 0..20 {
                if self.client(handle).may_send() {
                    break;
                }
                self.turn();
            }
            assert!(self.client(handle).may_send(), "connected");
            handle
        }

        fn client(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
            self.server.groups[0].sockets.get_mut::<tcp::Socket>(handle)
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

        /// Turns until the client has received `count` whole responses or
        /// the server closed; returns what it received.
        fn await_responses(&mut self, handle: SocketHandle, count: usize, turns: usize) -> Vec<u8> {
            let mut received = Vec::new();
            for _ in 0..turns {
                self.turn();
                self.receive(handle, &mut received);
                if responses(&received).len() >= count || !self.client(handle).may_recv() {
                    break;
                }
            }
            received
        }

        /// Sends `request` from a new connection and returns everything
        /// received until one response is whole or the server closes, in
        /// at most `turns` turns; then closes the client.
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
                if sent && (!responses(&received).is_empty() || !self.client(handle).may_recv()) {
                    break;
                }
            }
            self.client(handle).close();
            // Let both ends finish the close, then drop the client.
            for _ in 0..5 {
                self.turn();
            }
            self.server.groups[0].sockets.remove(handle);
            received
        }

        fn listeners(&self) -> usize {
            (0..self.server.http.len())
                .filter(|&index| self.server.socket(index).is_listening())
                .count()
        }
    }

    /// One response as the client sees it.
    #[derive(Debug)]
    struct Response {
        status_line: String,
        connection: String,
        body: Vec<u8>,
    }

    /// The whole responses at the start of `bytes`, framed by their
    /// `Content-Length` (every mote response has one).
    fn responses(mut bytes: &[u8]) -> Vec<Response> {
        let mut found = Vec::new();
        while let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = core::str::from_utf8(&bytes[..end]).unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or("")
                    .to_owned()
            };
            let length: usize = header("Content-Length: ").parse().unwrap();
            if bytes.len() < end + 4 + length {
                break;
            }
            found.push(Response {
                status_line: head.lines().next().unwrap().to_owned(),
                connection: header("Connection: "),
                body: bytes[end + 4..end + 4 + length].to_vec(),
            });
            bytes = &bytes[end + 4 + length..];
        }
        found
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
        let status = core::str::from_utf8(body(&status)).unwrap();
        assert!(status.starts_with("status"), "{status}");
        assert!(
            status.contains("http connections 1 open, 1 peak"),
            "the load counters follow the page: {status}"
        );
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
    fn sockets_are_reused_and_one_listens() {
        let mut harness = Harness::new();
        for index in 0..70 {
            let port = CLIENT_PORT + u16::try_from(index).unwrap();
            let response = harness.exchange(port, b"GET /health HTTP/1.1\r\n\r\n", 50);
            assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "request {index}");
        }
        let load = harness.server.load();
        assert_eq!(load.accepted, 70);
        assert_eq!(load.open, 0, "every connection was closed");
        assert_eq!(
            load.sockets, INITIAL_CONNECTIONS,
            "one connection at a time needs no new socket"
        );
        assert_eq!(harness.listeners(), 1, "exactly one socket listens");
    }

    #[test]
    fn keep_alive_serves_a_thousand_requests_on_one_connection() {
        let mut harness = Harness::new();
        let handle = harness.established(CLIENT_PORT);
        let mut answered = Vec::new();
        for index in 0..MAX_REQUESTS_PER_CONNECTION {
            let client = harness.client(handle);
            assert!(client.may_send(), "open before request {index}");
            client.send_slice(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
            let received = harness.await_responses(handle, 1, 50);
            let mut response = responses(&received);
            assert_eq!(response.len(), 1, "request {index}");
            answered.push(response.remove(0));
        }
        assert!(
            answered
                .iter()
                .all(|response| response.status_line == "HTTP/1.1 200 OK"
                    && response.body == b"ok\n")
        );
        let kept = answered
            .iter()
            .filter(|response| response.connection == "keep-alive")
            .count();
        assert_eq!(kept, 999, "all but the last keep the connection");
        assert_eq!(answered.last().unwrap().connection, "close");
        harness.await_responses(handle, 1, 20);
        assert!(!harness.client(handle).may_recv(), "closed after the cap");
        let load = harness.server.load();
        assert_eq!((load.accepted, load.requests), (1, 1000));
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut harness = Harness::new();
        let handle = harness.established(CLIENT_PORT);
        harness
            .client(handle)
            .send_slice(
                b"GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /tslog HTTP/1.1\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
            )
            .unwrap();
        let received = harness.await_responses(handle, 5, 200);
        let answered = responses(&received);
        let summary: Vec<(&str, &[u8], &str)> = answered
            .iter()
            .map(|response| {
                (
                    response.status_line.as_str(),
                    &response.body[..response.body.len().min(6)],
                    response.connection.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("HTTP/1.1 200 OK", &b"ok\n"[..], "keep-alive"),
                ("HTTP/1.1 404 Not Found", b"not fo", "keep-alive"),
                ("HTTP/1.1 200 OK", b"status", "keep-alive"),
                ("HTTP/1.1 200 OK", b"dump", "close"),
            ],
            "answered in order; nothing after the request that asked to close"
        );
        assert!(!harness.client(handle).may_recv(), "the server closed");
    }

    #[test]
    fn http_1_0_closes_unless_asked_and_idle_keep_alive_closes() {
        let mut harness = Harness::new();
        let old = harness.exchange(CLIENT_PORT, b"GET /health HTTP/1.0\r\n\r\n", 50);
        assert_eq!(responses(&old)[0].connection, "close");

        let handle = harness.established(CLIENT_PORT + 1);
        harness
            .client(handle)
            .send_slice(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let received = harness.await_responses(handle, 1, 50);
        assert_eq!(responses(&received)[0].connection, "keep-alive");
        for _ in 0..50 {
            harness.turn();
        }
        assert!(
            harness.client(handle).may_recv(),
            "still open while not idle"
        );
        harness.now += IDLE_TIMEOUT;
        let after = harness.await_responses(handle, 1, 50);
        assert!(after.is_empty(), "closed without a word: {after:?}");
        assert!(!harness.client(handle).may_recv(), "closed once idle");
    }

    #[test]
    fn a_burst_of_a_thousand_connections_is_served_beside_bad_clients() {
        const BURST: usize = 1000;
        let mut harness = Harness::new();
        let clients: Vec<SocketHandle> = (0..BURST)
            .map(|index| harness.connect_with(CLIENT_PORT + u16::try_from(index).unwrap(), 2048))
            .collect();
        let garbage = harness.connect(CLIENT_PORT - 1);
        let slow = harness.connect(CLIENT_PORT - 2);
        let silent = harness.connect(CLIENT_PORT - 3);
        let slow_request = b"GET /health HTTP/1.1\r\n\r\n";
        let mut slow_sent = 0;
        let mut sent = vec![false; BURST];
        let mut received = vec![Vec::new(); BURST];
        let mut done = 0;
        let mut garbage_received = Vec::new();
        let mut slow_received = Vec::new();
        for _ in 0..5000 {
            harness.turn();
            for (index, &handle) in clients.iter().enumerate() {
                if !sent[index] && harness.client(handle).may_send() {
                    harness
                        .client(handle)
                        .send_slice(b"GET /health HTTP/1.1\r\n\r\n")
                        .unwrap();
                    sent[index] = true;
                }
                if harness.client(handle).can_recv() {
                    harness.receive(handle, &mut received[index]);
                    if responses(&received[index]).len() == 1 {
                        // The client is done: it closes, the server follows.
                        harness.client(handle).close();
                        done += 1;
                    }
                }
            }
            let client = harness.client(garbage);
            if client.may_send() && client.send_queue() == 0 && garbage_received.is_empty() {
                let _ = client.send_slice(b"\x16\x03\x01 not http\r\n");
            }
            harness.receive(garbage, &mut garbage_received);
            let client = harness.client(slow);
            if client.may_send() && slow_sent < slow_request.len() {
                slow_sent += client
                    .send_slice(&slow_request[slow_sent..=slow_sent])
                    .unwrap();
            }
            harness.receive(slow, &mut slow_received);
            let client = harness.client(silent);
            if client.may_send() && client.send_queue() == 0 && slow_sent == 1 {
                client.send_slice(b"GET / HT").unwrap();
            }
            if done == BURST && !garbage_received.is_empty() && responses(&slow_received).len() == 1
            {
                break;
            }
        }
        let load = harness.server.load();
        assert_eq!(done, BURST, "every client got its answer");
        assert!(received.iter().all(|bytes| {
            let answered = responses(bytes);
            answered.len() == 1 && answered[0].status_line == "HTTP/1.1 200 OK"
        }));
        assert_eq!(load.refused, 0);
        assert_eq!(load.accepted, u64::try_from(BURST).unwrap() + 3);
        assert_eq!(load.peak, BURST + 3, "all held open at once");
        assert_eq!(status_line(&garbage_received), "HTTP/1.1 400 Bad Request");
        assert_eq!(responses(&slow_received)[0].body, b"ok\n", "slow but whole");
        assert_eq!(harness.client(silent).recv_queue(), 0, "no answer yet");
        harness.now += IDLE_TIMEOUT;
        let late = harness.await_responses(silent, 1, 50);
        assert_eq!(status_line(&late), "HTTP/1.1 408 Request Timeout");
    }

    #[test]
    fn a_full_pool_drops_syns_counts_them_and_serves_the_retries() {
        let capacity = 4;
        let mut harness = Harness::with_budget(capacity * CONNECTION_BYTES);
        assert_eq!(harness.server.load().capacity, capacity);
        let clients: Vec<SocketHandle> = (0..6)
            .map(|index| harness.connect(CLIENT_PORT + index))
            .collect();
        // Well inside the clients' first SYN retransmission timeout.
        for _ in 0..100 {
            harness.turn();
        }
        let established = clients
            .iter()
            .filter(|&&handle| harness.client(handle).state() == tcp::State::Established)
            .count();
        assert_eq!(established, capacity);
        assert_eq!(
            harness.server.load().refused,
            2,
            "one SYN per client left out"
        );
        // The held connections ask, are answered and close; the two that
        // were dropped retry on their own.
        let mut answered = vec![Vec::new(); clients.len()];
        let mut asked = vec![false; clients.len()];
        for _ in 0..10_000 {
            harness.turn();
            for (index, &handle) in clients.iter().enumerate() {
                let client = harness.client(handle);
                if !asked[index] && client.may_send() {
                    client
                        .send_slice(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    asked[index] = true;
                }
                harness.receive(handle, &mut answered[index]);
            }
            if answered.iter().all(|bytes| responses(bytes).len() == 1) {
                break;
            }
        }
        assert!(answered.iter().all(|bytes| responses(bytes).len() == 1));
        assert_eq!(harness.server.load().accepted, 6);
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
    fn a_quiet_group_times_out_beside_a_busy_one_and_a_turn_looks_at_its_groups_only() {
        let mut harness = Harness::new();
        let quiet = harness.kept_alive(CLIENT_PORT + 100, 3 * GROUP_SIZE);
        let busy = harness.established(CLIENT_PORT);
        let exchange = |harness: &mut Harness| {
            harness
                .client(busy)
                .send_slice(b"GET /health HTTP/1.1\r\n\r\n")
                .unwrap();
            let received = harness.await_responses(busy, 1, 50);
            assert_eq!(responses(&received)[0].body, b"ok\n");
        };
        exchange(&mut harness);
        // The clients' delayed ACKs go out.
        harness.now += Duration::from_millis(100);
        for _ in 0..10 {
            harness.turn();
        }
        // Settled: no deadline comes within an exchange, so its turns
        // walk the busy group and look at no other.
        let looks = harness.server.walks.looks;
        exchange(&mut harness);
        assert_eq!(
            harness.server.walks.looks, looks,
            "no group's deadline came"
        );
        let walks = harness.walks();
        exchange(&mut harness);
        let walked = harness.walked_since(&walks);
        assert_eq!(walked, [0, group_of(3 * GROUP_SIZE)]);
        // The quiet groups' idle deadlines still come while the busy one
        // keeps the turns going.
        for _ in 0..6 {
            harness.now += Duration::from_secs(1);
            exchange(&mut harness);
            assert!(harness.client(busy).may_recv(), "the busy one stays open");
        }
        for _ in 0..20 {
            harness.turn();
        }
        assert!(
            quiet
                .iter()
                .all(|&handle| !harness.client(handle).may_recv()),
            "every idle connection closed"
        );
        assert_eq!(harness.server.load().open, 1);
    }

    #[test]
    fn a_request_walks_only_the_group_of_its_connection() {
        let mut harness = Harness::new();
        let quiet = harness.kept_alive(CLIENT_PORT + 100, 100);
        for _ in 0..20 {
            harness.turn();
        }
        // The quiet clients leave the interface: nothing they would send
        // can wake their server-side groups.
        let mut parked = SocketSet::new(Vec::new());
        for handle in quiet {
            parked.add(harness.server.groups[0].sockets.remove(handle));
        }
        let groups = harness.server.groups.len();
        assert_eq!(groups, 1 + 101_usize.div_ceil(GROUP_SIZE));
        let before = harness.walks();
        let response = harness.exchange(CLIENT_PORT, b"GET /health HTTP/1.1\r\n\r\n", 50);
        assert_eq!(responses(&response)[0].body, b"ok\n");
        let walked = harness.walked_since(&before);
        assert_eq!(harness.server.load().open, 100, "the quiet ones stay open");
        // Sockets 0..100 hold the quiet connections; the new one took the
        // listener, socket 100.
        assert_eq!(
            walked,
            [0, group_of(100)],
            "only the services and the new connection's group"
        );
    }

    #[test]
    fn a_peer_port_reused_while_its_old_connection_is_held_gets_a_new_one() {
        let mut harness = Harness::new();
        let old = harness.established(CLIENT_PORT);
        harness
            .client(old)
            .send_slice(b"GET /health HTTP/1.1\r\n\r\n")
            .unwrap();
        let received = harness.await_responses(old, 1, 50);
        assert_eq!(responses(&received)[0].connection, "keep-alive");
        // The client forgets the connection without a word and reuses
        // its port, as a busy client's TCP does.
        harness.server.groups[0].sockets.remove(old);
        let response = harness.exchange(CLIENT_PORT, b"GET /health HTTP/1.1\r\n\r\n", 10);
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 200 OK",
            "at the first SYN"
        );
        let load = harness.server.load();
        assert_eq!(
            (load.accepted, load.open),
            (2, 0),
            "the old one is gone too"
        );
    }

    #[test]
    fn a_reset_during_the_handshake_frees_the_socket() {
        let mut harness = Harness::new();
        let client = harness.connect(CLIENT_PORT);
        // The SYN goes out, the server answers it; the client gives up
        // before it sees the SYN-ACK, and resets.
        for _ in 0..10 {
            if harness.server.load().accepted == 1 {
                break;
            }
            harness.turn();
        }
        assert_eq!(harness.server.load().accepted, 1, "in SYN-RECEIVED");
        assert_eq!(harness.client(client).state(), tcp::State::SynSent);
        harness.client(client).abort();
        for _ in 0..5 {
            harness.turn();
        }
        harness.server.groups[0].sockets.remove(client);
        let load = harness.server.load();
        assert_eq!(load.open, 0, "the half-open connection was recycled");
        assert_eq!(harness.listeners(), 1);
        let response = harness.exchange(CLIENT_PORT + 1, b"GET /health HTTP/1.1\r\n\r\n", 20);
        assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
    }

    #[test]
    fn the_status_page_reports_the_heap_low_mark() {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static FREE: AtomicUsize = AtomicUsize::new(9000);
        let mut harness = Harness::new();
        harness.server.watch_heap(|| FREE.load(Ordering::Relaxed));
        harness.turn();
        FREE.store(4000, Ordering::Relaxed);
        harness.turn();
        FREE.store(7000, Ordering::Relaxed);
        let status = harness.exchange(CLIENT_PORT, b"GET / HTTP/1.1\r\n\r\n", 50);
        let status = core::str::from_utf8(body(&status)).unwrap();
        assert!(
            status.ends_with("heap 7000 bytes free, 4000 at the least\n"),
            "{status}"
        );
    }
    #[test]
    fn udp_echo() {
        let mut harness = Harness::new();
        let packets = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]);
        let mut socket = udp::Socket::new(packets(), packets());
        socket.bind(CLIENT_PORT).unwrap();
        let handle = harness.server.groups[0].sockets.add(socket);
        harness.server.groups[0]
            .sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(b"echo me", (Ipv4Addr::LOCALHOST, UDP_ECHO_PORT))
            .unwrap();
        let mut echoed = Vec::new();
        for _ in 0..20 {
            harness.turn();
            let socket = harness.server.groups[0]
                .sockets
                .get_mut::<udp::Socket>(handle);
            if let Ok((bytes, _)) = socket.recv() {
                echoed.extend_from_slice(bytes);
                break;
            }
        }
        assert_eq!(echoed, b"echo me");
    }
}
