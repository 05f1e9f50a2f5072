//! An endpoint: a VM (web-1, app-1, vCenter), an EC2 instance or the S3 service.
//!
//! A smoltcp [`Interface`] and [`SocketSet`] sit behind an in-memory device: a frame handed to
//! [`Node::handle`] is queued for smoltcp, every frame smoltcp transmits goes out on port 0, the
//! endpoint's only NIC. Traffic [`apps`] run on top: ping, a TCP bulk sender, a UDP traceroute and
//! a TCP sink server. Time is always passed in and smoltcp's random seed comes from the
//! configuration, so two runs with the same inputs give the same frames, bit for bit.
//!
//! Before smoltcp sees a frame the endpoint reads its ICMP itself: the TTL of echo replies, and
//! time-exceeded and unreachable errors matched to the ping, probe or connection they quote.
//! smoltcp hands sockets neither.

mod apps;
pub mod probe;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;
use serde::Serialize;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

pub use apps::{
    AppId, AppReport, IcmpErrorSeen, PingReport, TcpConnStats, TcpSendReport, TcpServerStats,
    TracerouteReport, PING_TIMEOUT, PROBE_TIMEOUT, TCP_STALL_TIMEOUT, TRACEROUTE_BASE_PORT,
};
use apps::{AppState, PingApp, ServerSock, TcpSendApp, TcpServer, TracerouteApp};
use probe::{ProbeApp, ProbeArrival, ProbeReport, ProbeSink};

use super::{Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::arp::Arp;
use crate::wire::icmp::{is_error, quoted, type_code, TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST};
use crate::wire::ipv4::{l4_checksum_ok, Ipv4View, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{
    eth_dst, ethertype, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HEADER_LEN,
};

/// The endpoint's NIC.
pub const NIC_PORT: Port = 0;
/// Receive and send buffer of a TCP connection's data direction, in bytes: large enough that a
/// 10 MB transfer takes few round trips of virtual time.
pub const TCP_BUFFER: usize = 256 * 1024;
/// Buffer of the direction that carries no data (the sender's receive side, the sink's send side).
const TCP_SMALL_BUFFER: usize = 4 * 1024;
/// First local port of connections and traceroutes; later ones count up from it.
pub const EPHEMERAL_BASE: u16 = 49152;
/// Echo requests (and replies) an ICMP socket can queue.
const PING_QUEUE: usize = 16;
/// Rounds of interface poll + app step in one call; apps settle in two or three.
const MAX_ROUNDS: usize = 8;
/// When smoltcp still asks to be polled right after a full poll (it could not send what it
/// wanted), the next poll is this much later rather than at once, so a sim loop cannot spin.
const STALL_NUDGE: Duration = Duration::from_millis(1);

/// A neighbour the endpoint sends to is asked for its address again (unicast, to the MAC it
/// knows) this long after it last confirmed it, as Linux probes a neighbour in use whose entry went
/// stale (`base_reachable_time`, 30 s).
pub const ARP_REFRESH: Duration = Duration::from_secs(30);
/// How long smoltcp keeps a neighbour's address after it last heard from it; past that it drops
/// what it would send to it while it asks again.
pub const NEIGHBOR_LIFETIME: Duration = Duration::from_secs(60);
/// How long an arriving packet is held while the neighbour its answer goes to is resolved, and
/// how often the request is repeated meanwhile.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
const RESOLVE_RETRY: Duration = Duration::from_secs(1);
/// Arriving packets held at most, all neighbours together (Linux holds 3 a neighbour).
const MAX_HELD: usize = 16;

/// What an endpoint stands for; only tables and reports tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    Vm,
    Ec2,
    S3,
}

impl EndpointKind {
    /// `vm`, `ec2` or `s3`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Vm => "vm",
            EndpointKind::Ec2 => "ec2",
            EndpointKind::S3 => "s3",
        }
    }

    /// Where it sits: `SDDC` (a VM) or `VPC` (an EC2 instance, S3).
    pub fn side(self) -> &'static str {
        match self {
            EndpointKind::Vm => "SDDC",
            EndpointKind::Ec2 | EndpointKind::S3 => "VPC",
        }
    }
}

/// How an endpoint is set up.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub name: String,
    pub kind: EndpointKind,
    /// A unicast MAC (a group address makes [`Endpoint::new`] panic).
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Prefix length of the endpoint's subnet, 0–32.
    pub prefix_len: u8,
    /// Default gateway; `0.0.0.0` for none.
    pub gateway: Ipv4Addr,
    /// Seeds smoltcp (TCP initial sequence numbers, IP identifiers) and the ping identifiers.
    pub seed: u64,
    /// IP MTU in bytes (Ethernet MTU is +14)
    pub ip_mtu: usize,
}

counters! {
    /// What an endpoint's NIC and stack saw.
    pub struct EndpointCounters {
        pub rx_frames,
        pub rx_bytes,
        /// Not to our MAC (or broadcast), or an IPv4 packet not to our address.
        pub rx_dropped_not_for_me,
        /// Shorter than an Ethernet header, a malformed IPv4 header or a bad header checksum.
        pub rx_dropped_malformed,
        /// An EtherType other than IPv4, ARP and RARP.
        pub rx_dropped_unsupported,
        /// RARP announcements of VMs that moved (meant for switches), left alone.
        pub rx_ignored_rarp,
        /// Arrived on a port other than the NIC.
        pub rx_dropped_bad_port,
        /// ICMP errors addressed to us (time exceeded, unreachable, …).
        pub rx_icmp_errors,
        pub rx_echo_replies,
        pub tx_frames,
        pub tx_bytes,
        /// Connections accepted by TCP sink servers.
        pub tcp_accepted,
        /// TCP segments sent again (sequence space already sent on that connection).
        pub tx_tcp_retransmits,
        /// Packets held while the neighbour their answer goes to was asked for its address, and
        /// dropped when it did not answer.
        pub rx_dropped_neighbor_unresolved,
    }
}

/// An endpoint node. Port 0 is its NIC.
pub struct Endpoint {
    cfg: EndpointConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    nic: Nic,
    reports: Vec<AppReport>,
    states: Vec<AppState>,
    servers: Vec<TcpServer>,
    sinks: Vec<ProbeSink>,
    counters: EndpointCounters,
    /// The latest instant seen; smoltcp never sees time go back.
    now: Instant,
    next_poll: Option<Instant>,
    next_ephemeral: u16,
    ident_base: u16,
    /// The link came up: the gateway was asked for its MAC.
    link_up: bool,
    /// Per TCP connection sent from here (see [`tcp_key`]): the end of the sequence space sent.
    tcp_sent_end: FxHashMap<u64, u32>,
    /// On-link neighbours: what smoltcp's neighbour cache knows of them, mirrored from the ARP
    /// and IP packets it is given, and whether this endpoint uses them.
    neighbors: BTreeMap<Ipv4Addr, Neighbor>,
    /// Arriving packets whose answer would go to a neighbour smoltcp no longer knows: held while
    /// it is asked again, as Linux holds the answer. (next hop, held since, frame)
    held: Vec<Held>,
}

/// An arriving packet held until smoltcp knows the neighbour its answer goes to.
#[derive(Debug)]
struct Held {
    next_hop: Ipv4Addr,
    since: Instant,
    /// What [`Endpoint::admit`] said of it.
    park: Option<u16>,
    frame: Frame,
}

/// An on-link neighbour, as the endpoint tracks it.
#[derive(Debug, Clone, Copy, Default)]
struct Neighbor {
    /// When smoltcp last heard from it (an ARP packet to us, or an IP packet once known).
    confirmed: Option<Instant>,
    /// Its MAC, when known.
    mac: Option<MacAddr>,
    /// When a frame last went to it.
    used: Option<Instant>,
    /// When it was last asked for its address.
    asked: Option<Instant>,
}

impl Neighbor {
    /// smoltcp still has its address at `now`.
    fn known(&self, now: Instant) -> bool {
        self.confirmed.is_some_and(|c| now < c + NEIGHBOR_LIFETIME)
    }

    /// When it should next be asked for its address, if ever: a neighbour in use whose
    /// confirmation is [`ARP_REFRESH`] old, again each [`RESOLVE_RETRY`] until it answers.
    fn refresh_at(&self, now: Instant) -> Option<Instant> {
        let confirmed = self.confirmed?;
        let used = self.used?;
        if now - used >= NEIGHBOR_LIFETIME {
            return None;
        }
        match self.asked {
            Some(a) if a >= confirmed + ARP_REFRESH => Some(a + RESOLVE_RETRY),
            _ => Some(confirmed + ARP_REFRESH),
        }
    }
}

/// What a TCP stream sends: how many bytes, at what rate, and how long it keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpStream {
    pub bytes: u64,
    /// Bits per second the application writes at; `None`: as fast as TCP takes them.
    pub rate_bps: Option<u64>,
    /// It gives up after this long without progress.
    pub give_up: Duration,
}

impl Endpoint {
    /// An endpoint with its address configured and no apps running.
    ///
    /// # Panics
    /// If `cfg.mac` is not unicast or `cfg.prefix_len` is above 32.
    pub fn new(cfg: EndpointConfig) -> Self {
        assert!(
            cfg.prefix_len <= 32,
            "{}: prefix length {}",
            cfg.name,
            cfg.prefix_len
        );
        let mut nic = Nic {
            rx: None,
            tx: Vec::with_capacity(64),
            ip_mtu: cfg.ip_mtu,
        };
        let mut config = Config::new(HardwareAddress::Ethernet(cfg.mac.into()));
        config.random_seed = splitmix64(cfg.seed);
        let mut iface = Interface::new(config, &mut nic, Instant::ZERO.to_smoltcp());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix_len));
        });
        if !cfg.gateway.is_unspecified() {
            let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway);
        }
        let cfg_gateway_unspecified = cfg.gateway.is_unspecified();
        Endpoint {
            ident_base: splitmix64(cfg.seed ^ 0x1c3f_u64) as u16,
            cfg,
            iface,
            sockets: SocketSet::new(Vec::new()),
            nic,
            reports: Vec::new(),
            states: Vec::new(),
            servers: Vec::new(),
            sinks: Vec::new(),
            counters: EndpointCounters::default(),
            now: Instant::ZERO,
            next_poll: (!cfg_gateway_unspecified).then_some(Instant::ZERO),
            next_ephemeral: 0,
            link_up: false,
            tcp_sent_end: FxHashMap::default(),
            neighbors: BTreeMap::new(),
            held: Vec::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// The counters as a struct (for tests and code that wants one by field).
    pub fn endpoint_counters(&self) -> &EndpointCounters {
        &self.counters
    }

    /// Ping `dst` `count` times, one request every `interval` from `now` on, each carrying
    /// `payload_len` bytes of data (at most the IP MTU − 28). Done when every request is answered
    /// or [`PING_TIMEOUT`] after the last one.
    pub fn ping(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        count: u32,
        interval: Duration,
        payload_len: usize,
    ) -> AppId {
        let id = self.reports.len();
        let ident = self.ident_base.wrapping_add(id as u16);
        let payload_len = payload_len.min(self.cfg.ip_mtu.saturating_sub(28));
        let socket = (count > 0).then(|| {
            let slot = payload_len + 8;
            let buffer = || {
                icmp::PacketBuffer::new(
                    vec![icmp::PacketMetadata::EMPTY; PING_QUEUE],
                    vec![0u8; PING_QUEUE * slot],
                )
            };
            let mut s = icmp::Socket::new(buffer(), buffer());
            s.bind(icmp::Endpoint::Ident(ident))
                .expect("a new socket binds");
            self.sockets.add(s)
        });
        self.reports.push(AppReport::Ping(PingReport {
            dst,
            count,
            sent: 0,
            received: 0,
            rtts: Vec::new(),
            reply_ttls: Vec::new(),
            errors: Vec::new(),
            done: count == 0,
        }));
        self.states.push(AppState::Ping(PingApp::new(
            socket,
            ident,
            count,
            interval,
            payload_len,
            now,
        )));
        self.resolve_neighbor(dst);
        self.wake_at(now);
        id
    }

    /// Start a TCP sink server on `port`: it accepts any number of connections, reads and counts
    /// everything, checks the byte pattern, and closes its side once the peer has closed. A second
    /// call for the same port does nothing.
    pub fn tcp_listen(&mut self, port: u16) {
        if self.servers.iter().any(|s| s.stats.port == port) {
            return;
        }
        let handle = self.sockets.add(listener(port));
        self.servers.push(TcpServer {
            stats: TcpServerStats {
                port,
                connections: Vec::new(),
            },
            socks: vec![ServerSock { handle, conn: None }],
        });
    }

    /// Record every probe that arrives on UDP `port` (see [`probe`]). A second call for the same
    /// port does nothing.
    pub fn probe_listen(&mut self, port: u16) {
        if self.sinks.iter().any(|s| s.port == port) {
            return;
        }
        let handle = self.sockets.add(ProbeSink::socket(port));
        self.sinks.push(ProbeSink {
            port,
            handle,
            arrivals: Vec::new(),
        });
    }

    /// The probes that arrived on `port`, if a sink listens there.
    pub fn probe_arrivals(&self, port: u16) -> Option<&[ProbeArrival]> {
        self.sinks
            .iter()
            .find(|s| s.port == port)
            .map(|s| s.arrivals.as_slice())
    }

    /// Send `count` probes to `dst:port`, one every `interval` from `now` on, from the next
    /// ephemeral port. Done when the last is sent.
    pub fn probe(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        port: u16,
        count: u32,
        interval: Duration,
    ) -> AppId {
        let id = self.reports.len();
        let sport = self.ephemeral_port();
        let socket = (count > 0).then(|| {
            let buffer = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; 16],
                    vec![0u8; 16 * probe::PROBE_PAYLOAD],
                )
            };
            let mut s = udp::Socket::new(buffer(), buffer());
            s.bind(sport).expect("ephemeral port is nonzero");
            self.sockets.add(s)
        });
        self.reports.push(AppReport::Probe(ProbeReport {
            dst,
            port,
            src_port: sport,
            stream: probe::stream_id(self.cfg.ip, sport),
            count,
            interval,
            started: now,
            sent: 0,
            done: count == 0,
        }));
        self.states
            .push(AppState::Probe(ProbeApp::new(socket, now)));
        self.resolve_neighbor(dst);
        self.wake_at(now);
        id
    }

    /// Connect to `dst:port` from the next ephemeral port and send `bytes` bytes of the pattern
    /// `(i % 251) as u8`, then close. Done when the data and the FIN are acknowledged; failed on
    /// a reset or after [`TCP_STALL_TIMEOUT`] without progress.
    pub fn tcp_send(&mut self, now: Instant, dst: Ipv4Addr, port: u16, bytes: u64) -> AppId {
        self.tcp_stream(
            now,
            dst,
            port,
            TcpStream {
                bytes,
                rate_bps: None,
                give_up: TCP_STALL_TIMEOUT,
            },
        )
    }

    /// Like [`Endpoint::tcp_send`], written at `spec.rate_bps` if set (what the rate allows at
    /// each [`apps::TCP_PACING_TICK`]), failing after `spec.give_up` without progress.
    pub fn tcp_stream(&mut self, now: Instant, dst: Ipv4Addr, port: u16, spec: TcpStream) -> AppId {
        let TcpStream {
            bytes,
            rate_bps,
            give_up,
        } = spec;
        let id = self.reports.len();
        let sport = self.ephemeral_port();
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_SMALL_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        let connected = s.connect(
            self.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(dst), port),
            sport,
        );
        let (socket, error) = match connected {
            Ok(()) => (Some(self.sockets.add(s)), None),
            Err(e) => (None, Some(format!("connect: {e}"))),
        };
        self.reports.push(AppReport::TcpSend(TcpSendReport {
            dst,
            port,
            src_port: sport,
            requested: bytes,
            acked: 0,
            started: now,
            finished: error.is_some().then_some(now),
            done: error.is_some(),
            error,
            icmp_errors: Vec::new(),
            retransmits: 0,
            rate_bps,
            longest_stall: Duration::ZERO,
            longest_stall_from: None,
        }));
        self.states
            .push(AppState::TcpSend(TcpSendApp::new(socket, now, give_up)));
        self.resolve_neighbor(dst);
        self.wake_at(now);
        id
    }

    /// Trace the route to `dst` with one UDP probe a TTL, 1 to `max_hops`, to port
    /// [`TRACEROUTE_BASE_PORT`] + TTL, each waiting up to [`PROBE_TIMEOUT`].
    pub fn traceroute(&mut self, now: Instant, dst: Ipv4Addr, max_hops: u8) -> AppId {
        let id = self.reports.len();
        let sport = self.ephemeral_port();
        let socket = (max_hops > 0).then(|| {
            let buffer =
                || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0u8; 1024]);
            let mut s = udp::Socket::new(buffer(), buffer());
            s.bind(sport).expect("ephemeral port is nonzero");
            self.sockets.add(s)
        });
        self.reports.push(AppReport::Traceroute(TracerouteReport {
            dst,
            max_hops,
            hops: Vec::new(),
            reached: false,
            done: max_hops == 0,
        }));
        self.states
            .push(AppState::Traceroute(TracerouteApp::new(socket, sport)));
        self.resolve_neighbor(dst);
        self.wake_at(now);
        id
    }

    /// # Panics
    /// If `id` was not returned by this endpoint.
    pub fn app(&self, id: AppId) -> &AppReport {
        &self.reports[id]
    }

    /// Every app's report, by [`AppId`].
    pub fn apps(&self) -> &[AppReport] {
        &self.reports
    }

    pub fn all_apps_done(&self) -> bool {
        self.reports.iter().all(AppReport::done)
    }

    /// What the sink server on `port` saw, if one was started.
    pub fn tcp_server(&self, port: u16) -> Option<&TcpServerStats> {
        self.servers
            .iter()
            .find(|s| s.stats.port == port)
            .map(|s| &s.stats)
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = EPHEMERAL_BASE + self.next_ephemeral % (u16::MAX - EPHEMERAL_BASE + 1);
        self.next_ephemeral = self.next_ephemeral.wrapping_add(1);
        port
    }

    /// Ask for an on-link destination's MAC now, as Linux does on the first packet to a new
    /// neighbour. smoltcp rate-limits its own ARP requests to one a second across all
    /// neighbours, so without this the first packets to a second neighbour wait up to a second.
    /// The reply is addressed to us, so smoltcp caches it.
    fn resolve_neighbor(&mut self, dst: Ipv4Addr) {
        let on_link = self.subnet().contains(&dst);
        if on_link && dst != self.cfg.ip && dst != self.cfg.gateway {
            let req = Arp::request(self.cfg.mac, self.cfg.ip, dst);
            self.nic.tx.push(req.to_frame());
        }
    }

    /// The endpoint's subnet.
    fn subnet(&self) -> Ipv4Net {
        Ipv4Net::new(self.cfg.ip, self.cfg.prefix_len).expect("prefix length checked in new")
    }

    fn wake_at(&mut self, t: Instant) {
        self.next_poll = Some(self.next_poll.map_or(t, |p| p.min(t)));
    }

    /// Decide whether a received frame goes to smoltcp, reading its ICMP on the way. For a
    /// bare SYN to a sink server from a peer it already has a connection with, returns the port
    /// whose listeners must sit out this frame (see [`Endpoint::run`]).
    fn admit(&mut self, frame: &[u8]) -> Result<Option<u16>, ()> {
        let broadcast = self.subnet().broadcast();
        let c = &mut self.counters;
        let (Some(dst), Some(et)) = (eth_dst(frame), ethertype(frame)) else {
            c.rx_dropped_malformed += 1;
            return Err(());
        };
        if dst != self.cfg.mac && !dst.is_broadcast() {
            c.rx_dropped_not_for_me += 1;
            return Err(());
        }
        match et {
            ETHERTYPE_ARP => return Ok(None),
            ETHERTYPE_IPV4 => {}
            crate::node::host::ETHERTYPE_RARP => {
                // A host announcing a VM that moved: for switches, not for us.
                c.rx_ignored_rarp += 1;
                return Err(());
            }
            _ => {
                c.rx_dropped_unsupported += 1;
                return Err(());
            }
        }
        let Some(v) = Ipv4View::parse(frame).filter(|v| v.checksum_ok()) else {
            c.rx_dropped_malformed += 1;
            return Err(());
        };
        let ip_dst = v.dst();
        if ip_dst != self.cfg.ip && !ip_dst.is_broadcast() && ip_dst != broadcast {
            c.rx_dropped_not_for_me += 1;
            return Err(());
        }
        match v.protocol() {
            PROTO_ICMP => {
                self.inspect_icmp(frame, &v);
                Ok(None)
            }
            PROTO_TCP => Ok(self.duplicate_syn_port(&v)),
            _ => Ok(None),
        }
    }

    /// Match an ICMP packet to us against the apps: echo reply TTLs for ping, errors for the
    /// ping, traceroute probe or TCP connection whose packet they quote.
    fn inspect_icmp(&mut self, frame: &[u8], v: &Ipv4View<'_>) {
        let Some((icmp_type, code)) = type_code(v) else {
            return;
        };
        if !l4_checksum_ok(frame) || v.is_later_fragment() {
            return;
        }
        let p = v.payload();
        if icmp_type == TYPE_ECHO_REPLY {
            self.counters.rx_echo_replies += 1;
            let ident = u16::from_be_bytes([p[4], p[5]]);
            let seq = u16::from_be_bytes([p[6], p[7]]);
            for st in &mut self.states {
                if let AppState::Ping(a) = st {
                    if a.socket.is_some() && a.ident == ident {
                        a.reply_seen(seq, v.ttl());
                    }
                }
            }
            return;
        }
        if !is_error(v) {
            return;
        }
        self.counters.rx_icmp_errors += 1;
        let Some(q) = quoted(v).filter(|q| q.src == self.cfg.ip) else {
            return;
        };
        let l4 = q.l4;
        let e = IcmpErrorSeen {
            src: v.src(),
            icmp_type,
            code,
        };
        let word = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
        for (st, r) in self.states.iter_mut().zip(&mut self.reports) {
            match (st, r, q.protocol) {
                (AppState::Ping(a), AppReport::Ping(r), PROTO_ICMP)
                    if l4[0] == TYPE_ECHO_REQUEST && word(4) == a.ident && a.socket.is_some() =>
                {
                    r.errors.push(e);
                }
                (AppState::Traceroute(a), AppReport::Traceroute(r), PROTO_UDP) => {
                    a.icmp_error(r, e, word(0), word(2));
                }
                (AppState::TcpSend(a), AppReport::TcpSend(r), PROTO_TCP)
                    if word(0) == r.src_port && word(2) == r.port =>
                {
                    a.icmp_error(r, e);
                }
                _ => {}
            }
        }
    }

    /// A SYN without ACK to a sink server from a peer that server already has a connection
    /// with (a retransmitted SYN). smoltcp gives a segment to the first socket that accepts it,
    /// and a listener placed in a lower slot would take the duplicate and open a second
    /// connection on the same 4-tuple.
    fn duplicate_syn_port(&self, v: &Ipv4View<'_>) -> Option<u16> {
        let p = v.payload();
        if v.is_later_fragment() || p.len() < 20 || p[13] & 0x12 != 0x02 {
            return None;
        }
        let (sport, dport) = v.ports()?;
        let server = self.servers.iter().find(|s| s.stats.port == dport)?;
        let peer = IpEndpoint::new(IpAddress::Ipv4(v.src()), sport);
        server.has_peer(&self.sockets, peer).then_some(dport)
    }

    /// Poll smoltcp and step the apps until they settle, then send what smoltcp transmitted.
    /// With `park`, that server's listeners leave the socket set while the received frame is
    /// processed.
    fn run(&mut self, now: Instant, park: Option<u16>, out: &mut Outbox) {
        let now = now.max(self.now);
        self.now = now;
        let ts = now.to_smoltcp();

        let mut parked = Vec::new();
        if let Some(port) = park {
            if let Some(si) = self.servers.iter().position(|s| s.stats.port == port) {
                for i in self.servers[si].listeners(&self.sockets) {
                    let h = self.servers[si].socks[i].handle;
                    parked.push((si, i, self.sockets.remove(h)));
                }
            }
        }
        self.iface.poll(ts, &mut self.nic, &mut self.sockets);
        for (si, i, s) in parked {
            self.servers[si].socks[i].handle = self.sockets.add(s);
        }

        for _ in 0..MAX_ROUNDS {
            if !self.step_apps(now) {
                break;
            }
            // Poll again only if a socket now has something to send: smoltcp's poll_at
            // mirrors what its dispatch would do, and a poll with nothing to send (an app
            // that only read what arrived) costs as much as one that sends.
            if self.iface.poll_at(ts, &self.sockets).is_none_or(|t| t > ts) {
                break;
            }
            self.iface.poll(ts, &mut self.nic, &mut self.sockets);
        }

        if !self.link_up {
            // As a booted OS does when its link comes up: resolve the gateway before any
            // traffic, so that the first packet (or an automatic echo reply, which smoltcp
            // drops while its neighbour is unresolved) is not lost to ARP.
            self.link_up = true;
            if !self.cfg.gateway.is_unspecified() {
                let req = Arp::request(self.cfg.mac, self.cfg.ip, self.cfg.gateway);
                self.nic.tx.insert(0, req.to_frame());
            }
        }
        self.refresh_neighbors(now);
        let mut tx = std::mem::take(&mut self.nic.tx);
        for f in tx.drain(..) {
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += f.len() as u64;
            self.note_sent(now, &f);
            out.send(NIC_PORT, f);
        }
        self.nic.tx = tx;
        self.next_poll = self.next_deadline();
    }

    /// Ask the neighbours in use whose confirmation is getting old for their address again,
    /// unicast; ask again for those that arriving packets wait for; give up on packets that
    /// waited [`RESOLVE_TIMEOUT`].
    fn refresh_neighbors(&mut self, now: Instant) {
        let before = self.held.len();
        self.held.retain(|h| now - h.since < RESOLVE_TIMEOUT);
        self.counters.rx_dropped_neighbor_unresolved += (before - self.held.len()) as u64;
        let (mac, me) = (self.cfg.mac, self.cfg.ip);
        for (ip, n) in self.neighbors.iter_mut() {
            let waited_for = self.held.iter().any(|h| h.next_hop == *ip)
                && n.asked.is_none_or(|a| a + RESOLVE_RETRY <= now);
            let refresh = n.refresh_at(now).is_some_and(|t| t <= now);
            if waited_for || refresh {
                let mut req = Arp::request(mac, me, *ip).to_frame();
                if let (Some(m), false) = (n.mac, waited_for) {
                    req[0..6].copy_from_slice(&m.0);
                }
                self.nic.tx.push(req);
                n.asked = Some(now);
            }
        }
    }

    /// When [`Endpoint::refresh_neighbors`] has something to do next.
    fn neighbors_deadline(&self, now: Instant) -> Option<Instant> {
        let held = self.held.iter().map(|h| {
            let asked = self.neighbors.get(&h.next_hop).and_then(|n| n.asked);
            let retry = asked.map_or(now, |a| a + RESOLVE_RETRY);
            retry.min(h.since + RESOLVE_TIMEOUT)
        });
        let refresh = self.neighbors.values().filter_map(|n| n.refresh_at(now));
        held.chain(refresh).min()
    }

    /// Mirror what smoltcp learns from an arriving frame: from an ARP packet aimed at us, the
    /// sender; from an IP packet to us, a fresh confirmation of a sender it knows.
    fn heard(&mut self, now: Instant, frame: &[u8]) {
        if let Some(a) = Arp::parse(frame) {
            if a.target_ip == self.cfg.ip
                && self.subnet().contains(&a.sender_ip)
                && !a.sender_mac.is_group()
            {
                let n = self.neighbors.entry(a.sender_ip).or_default();
                n.confirmed = Some(now);
                n.mac = Some(a.sender_mac);
            }
        } else if let Some(v) = Ipv4View::parse(frame) {
            if let Some(n) = self.neighbors.get_mut(&v.src()) {
                if n.confirmed.is_some() {
                    n.confirmed = Some(now);
                }
            }
        }
    }

    /// The on-link neighbour an answer to a packet from `src` goes to: `src` itself, or the
    /// gateway.
    fn next_hop(&self, src: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.subnet().contains(&src) {
            Some(src)
        } else {
            (!self.cfg.gateway.is_unspecified()).then_some(self.cfg.gateway)
        }
    }

    /// Look at a frame sent: note the on-link next hop of an IP packet (and the MAC it went to)
    /// as in use, and count a
    /// TCP segment that carries sequence space its connection already sent (a retransmission).
    fn note_sent(&mut self, now: Instant, frame: &[u8]) {
        let Some(v) = Ipv4View::parse(frame) else {
            return;
        };
        let dst = v.dst();
        if dst != self.subnet().broadcast() && !dst.is_broadcast() && !dst.is_multicast() {
            let next_hop = if self.subnet().contains(&dst) {
                dst
            } else {
                self.cfg.gateway
            };
            let n = self.neighbors.entry(next_hop).or_default();
            n.used = Some(now);
            n.mac = eth_dst(frame).or(n.mac);
        }
        if v.protocol() != PROTO_TCP || v.is_later_fragment() {
            return;
        }
        let p = v.payload();
        if p.len() < 20 {
            return;
        }
        let word = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
        let (sport, dport) = (word(0), word(2));
        let seq = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let header = usize::from(p[12] >> 4) * 4;
        let flags = p[13];
        let len = p.len().saturating_sub(header) as u32
            + u32::from(flags & TCP_SYN != 0)
            + u32::from(flags & TCP_FIN != 0);
        if len == 0 {
            return;
        }
        let end = seq.wrapping_add(len);
        let key = tcp_key(sport, v.dst(), dport);
        match self.tcp_sent_end.get_mut(&key) {
            // At or before what was sent already (sequence numbers wrap).
            Some(sent) if (end.wrapping_sub(*sent) as i32) <= 0 => {
                self.counters.tx_tcp_retransmits += 1;
                let dst = v.dst();
                for r in &mut self.reports {
                    if let AppReport::TcpSend(r) = r {
                        if r.src_port == sport && r.dst == dst && r.port == dport {
                            r.retransmits += 1;
                        }
                    }
                }
            }
            Some(sent) => *sent = end,
            None => {
                self.tcp_sent_end.insert(key, end);
            }
        }
    }

    /// Step every app and server once; true if any wants the interface polled again.
    fn step_apps(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for (st, r) in self.states.iter_mut().zip(&mut self.reports) {
            changed |= st.step(r, now, &mut self.sockets);
        }
        for server in &mut self.servers {
            let s = server.step(&mut self.sockets, listener);
            self.counters.tcp_accepted += s.accepted;
            changed |= s.changed;
        }
        for sink in &mut self.sinks {
            sink.step(now, &mut self.sockets);
        }
        changed
    }

    /// Hand smoltcp one received frame and run.
    fn give_smoltcp(&mut self, now: Instant, park: Option<u16>, frame: Frame, out: &mut Outbox) {
        self.nic.rx = Some(frame);
        self.run(now, park, out);
        // smoltcp takes the frame in its first poll; never let one linger into a later call.
        self.nic.rx = None;
    }

    /// The earliest of smoltcp's and the apps' timers, never at or before the instant just
    /// polled.
    fn next_deadline(&mut self) -> Option<Instant> {
        let smol = self
            .iface
            .poll_at(self.now.to_smoltcp(), &self.sockets)
            .map(|t| Instant::from_micros(t.total_micros().max(0) as u64));
        let apps = self
            .states
            .iter()
            .zip(&self.reports)
            .filter_map(|(s, r)| s.deadline(r))
            .min();
        let next = smol
            .into_iter()
            .chain(apps)
            .chain(self.neighbors_deadline(self.now))
            .min()?;
        Some(if next <= self.now {
            self.now + STALL_NUDGE
        } else {
            next
        })
    }
}

/// TCP flags.
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;

/// A TCP connection from this endpoint, by its local port and remote address and port.
fn tcp_key(sport: u16, dst: Ipv4Addr, dport: u16) -> u64 {
    (u64::from(sport) << 48) | (u64::from(u32::from(dst)) << 16) | u64::from(dport)
}

/// A sink server's listening socket.
fn listener(port: u16) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TCP_SMALL_BUFFER]),
    );
    s.listen(port).expect("listen on a closed socket");
    s
}

/// A 64-bit mix, so that neighbouring seeds give unrelated smoltcp seeds and identifiers.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Node for Endpoint {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        self.cfg.kind.as_str()
    }

    fn port_name(&self, port: Port) -> String {
        if port == NIC_PORT {
            "eth0".to_string()
        } else {
            format!("p{port}")
        }
    }

    fn handle(&mut self, now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        if port != NIC_PORT {
            self.counters.rx_dropped_bad_port += 1;
            return;
        }
        let Ok(park) = self.admit(&frame) else {
            return;
        };
        let is_arp = ethertype(&frame) == Some(ETHERTYPE_ARP);
        if !is_arp {
            // An answer to this packet would go to a neighbour smoltcp has forgotten: it would
            // drop the answer. Hold the packet and ask, as Linux holds the answer.
            let src = Ipv4View::parse(&frame).map(|v| v.src());
            let wait_for = src
                .and_then(|src| self.next_hop(src))
                .filter(|nh| !self.neighbors.get(nh).is_some_and(|n| n.known(now)));
            if let Some(next_hop) = wait_for {
                self.neighbors.entry(next_hop).or_default();
                if self.held.len() < MAX_HELD {
                    self.held.push(Held {
                        next_hop,
                        since: now,
                        park,
                        frame,
                    });
                } else {
                    self.counters.rx_dropped_neighbor_unresolved += 1;
                }
                self.run(now, None, out);
                return;
            }
        }
        self.heard(now, &frame);
        self.give_smoltcp(now, park, frame, out);
        if is_arp && !self.held.is_empty() {
            let (ready, wait): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.held).into_iter().partition(|h| {
                    self.neighbors
                        .get(&h.next_hop)
                        .is_some_and(|n| n.known(now))
                });
            self.held = wait;
            for h in ready {
                self.heard(now, &h.frame);
                self.give_smoltcp(now, h.park, h.frame, out);
            }
        }
    }

    fn poll(&mut self, now: Instant, out: &mut Outbox) {
        self.run(now, None, out);
    }

    fn poll_at(&self) -> Option<Instant> {
        self.next_poll
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}

/// The in-memory NIC smoltcp talks to: at most one received frame at a time, transmitted
/// frames collected until the endpoint sends them out.
struct Nic {
    rx: Option<Frame>,
    tx: Vec<Frame>,
    /// IP MTU in bytes.
    ip_mtu: usize,
}

struct NicRx(Frame);

struct NicTx<'a> {
    tx: &'a mut Vec<Frame>,
}

impl Device for Nic {
    type RxToken<'a> = NicRx;
    type TxToken<'a> = NicTx<'a>;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.take()?;
        Some((NicRx(frame), NicTx { tx: &mut self.tx }))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(NicTx { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.ip_mtu + ETH_HEADER_LEN;
        caps
    }
}

impl RxToken for NicRx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl TxToken for NicTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = Frame::zeroed(len);
        let r = f(&mut frame);
        self.tx.push(frame);
        r
    }
}

#[cfg(test)]
mod tests;
