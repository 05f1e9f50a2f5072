//! Traffic apps on an endpoint: ping, a TCP bulk sender, a UDP traceroute and the TCP sink server.
//!
//! Each app is a small state machine over smoltcp sockets. The endpoint steps every app after each
//! interface poll and hands it the ICMP it saw on the wire (TTLs of echo replies, errors quoting a
//! probe), which smoltcp does not pass to sockets in a usable form. What an app saw is kept in a
//! serialisable report; the state that drives it stays private.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, IpEndpoint};

use crate::time::Instant;
use crate::wire::icmp::{CODE_PORT_UNREACHABLE, TYPE_DEST_UNREACHABLE, TYPE_TIME_EXCEEDED};

/// Index of an app in its endpoint's [`super::Endpoint::apps`].
pub type AppId = usize;

/// How long ping waits for replies after its last request.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long traceroute waits for an answer to each probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A TCP send fails after this long without progress (bytes acknowledged or a state change).
pub const TCP_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A paced TCP send checks its rate this often, as iperf3's pacing timer does.
pub const TCP_PACING_TICK: Duration = Duration::from_millis(1);
/// A paced TCP send writes blocks of this many bytes: iperf3's default for TCP.
pub const TCP_STREAM_BLOCK: u64 = 128 * 1024;
/// Destination port of traceroute probes is this plus the probe's TTL.
pub const TRACEROUTE_BASE_PORT: u16 = 33434;
/// Bytes of UDP payload in a traceroute probe.
const PROBE_LEN: usize = 32;
/// ICMP errors kept per TCP send (the first ones; a long outage would send many).
const MAX_TCP_ICMP_ERRORS: usize = 64;
/// Modulus of the payload pattern: byte `i` of a stream is `(i % 251) as u8`.
const PATTERN_MOD: u64 = 251;

/// What an app did, for tests, drill reports and the CLI.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "app", rename_all = "snake_case")]
pub enum AppReport {
    Ping(PingReport),
    TcpSend(TcpSendReport),
    Traceroute(TracerouteReport),
    Probe(super::probe::ProbeReport),
}

impl AppReport {
    /// The app has finished, successfully or not.
    pub fn done(&self) -> bool {
        match self {
            AppReport::Ping(r) => r.done,
            AppReport::TcpSend(r) => r.done,
            AppReport::Traceroute(r) => r.done,
            AppReport::Probe(r) => r.done,
        }
    }
}

/// An ICMP error that quoted one of an app's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IcmpErrorSeen {
    /// The router or host that sent the error.
    pub src: Ipv4Addr,
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
}

/// Echo requests sent and replies received.
#[derive(Debug, Clone, Serialize)]
pub struct PingReport {
    pub dst: Ipv4Addr,
    /// Requests asked for.
    pub count: u32,
    pub sent: u32,
    /// Distinct sequence numbers answered (duplicates are ignored).
    pub received: u32,
    /// Round-trip time of each reply, in the order the replies came.
    #[serde(rename = "rtts_us", serialize_with = "ser::durations")]
    pub rtts: Vec<Duration>,
    /// IP TTL of each reply, parallel to `rtts` (0 if it was not seen).
    pub reply_ttls: Vec<u8>,
    /// ICMP errors quoting one of the requests (unreachable, time exceeded).
    pub errors: Vec<IcmpErrorSeen>,
    pub done: bool,
}

/// A bulk TCP transfer of a byte pattern.
#[derive(Debug, Clone, Serialize)]
pub struct TcpSendReport {
    pub dst: Ipv4Addr,
    pub port: u16,
    /// The local (ephemeral) port the connection came from.
    pub src_port: u16,
    /// Bytes to send.
    pub requested: u64,
    /// Bytes the peer acknowledged.
    pub acked: u64,
    #[serde(rename = "started_us", serialize_with = "ser::instant")]
    pub started: Instant,
    /// When the transfer ended, successfully (`error` is `None`) or not.
    #[serde(rename = "finished_us", serialize_with = "ser::opt_instant")]
    pub finished: Option<Instant>,
    pub error: Option<String>,
    /// ICMP errors quoting the connection's segments (at most 64 are kept).
    pub icmp_errors: Vec<IcmpErrorSeen>,
    /// Segments with data (or SYN, FIN) sent again: sequence space sent before.
    pub retransmits: u64,
    /// The rate the application writes at, in bit/s; `None`: as fast as TCP takes it.
    pub rate_bps: Option<u64>,
    /// The longest time data sent stayed unacknowledged with no acknowledgement advancing,
    /// and when it began.
    #[serde(rename = "longest_stall_us", serialize_with = "ser::micros")]
    pub longest_stall: Duration,
    #[serde(rename = "longest_stall_from_us", serialize_with = "ser::opt_instant")]
    pub longest_stall_from: Option<Instant>,
    pub done: bool,
}

/// A classic UDP traceroute.
#[derive(Debug, Clone, Serialize)]
pub struct TracerouteReport {
    pub dst: Ipv4Addr,
    pub max_hops: u8,
    /// One entry a probe, TTL 1 first: who answered, or `None` on timeout.
    pub hops: Vec<Option<Ipv4Addr>>,
    /// The destination answered with port unreachable.
    pub reached: bool,
    pub done: bool,
}

/// What a TCP sink server saw on one port.
#[derive(Debug, Clone, Serialize)]
pub struct TcpServerStats {
    pub port: u16,
    /// Connections in the order they were established.
    pub connections: Vec<TcpConnStats>,
}

/// One connection accepted by a TCP sink server.
#[derive(Debug, Clone, Serialize)]
pub struct TcpConnStats {
    /// The client's address and port as this server sees them (after any NAT).
    pub peer: SocketAddrV4,
    /// Bytes received.
    pub bytes: u64,
    /// Every byte matched the pattern `(i % 251) as u8`.
    pub pattern_ok: bool,
    /// The peer sent its FIN.
    pub peer_closed: bool,
}

/// The stream pattern from byte 0 on, long enough that any offset's next [`PATTERN_CHUNK`] bytes
/// are one slice of it: filling and checking are then `memcpy` and `memcmp`, a word at a time.
fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..PATTERN_MOD + PATTERN_CHUNK as u64)
            .map(|i| (i % PATTERN_MOD) as u8)
            .collect()
    })
}

/// Bytes of the pattern copied or compared in one slice operation.
const PATTERN_CHUNK: usize = 64 * 1024;

/// Fill `buf` with the stream pattern, `buf[0]` being byte `offset` of the stream.
pub(super) fn fill_pattern(buf: &mut [u8], offset: u64) {
    let table = pattern_table();
    let mut off = offset;
    for chunk in buf.chunks_mut(PATTERN_CHUNK) {
        let start = (off % PATTERN_MOD) as usize;
        chunk.copy_from_slice(&table[start..start + chunk.len()]);
        off += chunk.len() as u64;
    }
}

/// True if `buf` holds the stream pattern from byte `offset` on.
pub(super) fn check_pattern(buf: &[u8], offset: u64) -> bool {
    let table = pattern_table();
    let mut off = offset;
    buf.chunks(PATTERN_CHUNK).all(|chunk| {
        let start = (off % PATTERN_MOD) as usize;
        off += chunk.len() as u64;
        chunk == &table[start..start + chunk.len()]
    })
}

/// The private state of one app; `AppReport` holds what it saw.
pub(super) enum AppState {
    Ping(PingApp),
    TcpSend(TcpSendApp),
    Traceroute(TracerouteApp),
    Probe(super::probe::ProbeApp),
}

impl AppState {
    /// Advance the app at `now`. True if it put something into a socket or changed a socket's
    /// state, so the interface should be polled again.
    pub(super) fn step(
        &mut self,
        report: &mut AppReport,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        match (self, report) {
            (AppState::Ping(a), AppReport::Ping(r)) => a.step(r, now, sockets),
            (AppState::TcpSend(a), AppReport::TcpSend(r)) => a.step(r, now, sockets),
            (AppState::Traceroute(a), AppReport::Traceroute(r)) => a.step(r, now, sockets),
            (AppState::Probe(a), AppReport::Probe(r)) => a.step(r, now, sockets),
            _ => unreachable!("app state and report kinds are created together"),
        }
    }

    /// When the app next needs a step without any frame arriving.
    pub(super) fn deadline(&self, report: &AppReport) -> Option<Instant> {
        match (self, report) {
            (AppState::Ping(a), AppReport::Ping(r)) => a.deadline(r),
            (AppState::TcpSend(a), AppReport::TcpSend(r)) => a.deadline(r),
            (AppState::Traceroute(a), AppReport::Traceroute(r)) => a.deadline(r),
            (AppState::Probe(a), AppReport::Probe(r)) => a.deadline(r),
            _ => None,
        }
    }
}

/// Ping: echo requests from an ICMP socket bound to its own identifier.
pub(super) struct PingApp {
    pub(super) socket: Option<SocketHandle>,
    pub(super) ident: u16,
    count: u32,
    interval: Duration,
    payload: Vec<u8>,
    next_send: Instant,
    last_send: Instant,
    /// Send time of request `i` (its sequence number is `i as u16`).
    sent_at: Vec<Instant>,
    answered: Vec<bool>,
    /// (sequence number, TTL) of echo replies seen on the wire, not yet matched.
    pending_ttls: Vec<(u16, u8)>,
}

impl PingApp {
    pub(super) fn new(
        socket: Option<SocketHandle>,
        ident: u16,
        count: u32,
        interval: Duration,
        payload_len: usize,
        now: Instant,
    ) -> Self {
        let mut payload = vec![0u8; payload_len];
        fill_pattern(&mut payload, 0);
        PingApp {
            socket,
            ident,
            count,
            interval,
            payload,
            next_send: now,
            last_send: now,
            sent_at: Vec::with_capacity(count.min(4096) as usize),
            answered: Vec::with_capacity(count.min(4096) as usize),
            pending_ttls: Vec::new(),
        }
    }

    /// An echo reply for this app was seen on the wire with this TTL.
    pub(super) fn reply_seen(&mut self, seq: u16, ttl: u8) {
        if self.pending_ttls.len() < 64 {
            self.pending_ttls.push((seq, ttl));
        }
    }

    /// The request index a sequence number stands for: the latest one sent with it.
    fn index_of(&self, seq: u16) -> Option<usize> {
        let n = self.sent_at.len();
        if n == 0 {
            return None;
        }
        let last = n - 1;
        let mut i = (last & !0xffff) | seq as usize;
        if i > last {
            i = i.checked_sub(0x1_0000)?;
        }
        Some(i)
    }

    fn step(&mut self, r: &mut PingReport, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let Some(h) = self.socket else {
            return false;
        };
        let sock = sockets.get_mut::<icmp::Socket>(h);
        let caps = ChecksumCapabilities::default();
        while let Ok((data, from)) = sock.recv() {
            let Ok(pkt) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) = Icmpv4Repr::parse(&pkt, &caps)
            else {
                continue;
            };
            if ident != self.ident || from != IpAddress::Ipv4(r.dst) {
                continue;
            }
            let Some(i) = self.index_of(seq_no) else {
                continue;
            };
            if self.answered[i] {
                continue;
            }
            self.answered[i] = true;
            r.received += 1;
            r.rtts.push(now - self.sent_at[i]);
            let ttl = self
                .pending_ttls
                .iter()
                .rev()
                .find(|(s, _)| *s == seq_no)
                .map_or(0, |(_, t)| *t);
            r.reply_ttls.push(ttl);
        }
        self.pending_ttls.clear();

        let mut changed = false;
        while r.sent < self.count && now >= self.next_send {
            let repr = Icmpv4Repr::EchoRequest {
                ident: self.ident,
                seq_no: r.sent as u16,
                data: &self.payload,
            };
            // A full socket buffer (the gateway not resolved yet) loses the request, as a
            // kernel's full queue would; it still counts as sent.
            if let Ok(buf) = sock.send(repr.buffer_len(), IpAddress::Ipv4(r.dst)) {
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
            }
            self.sent_at.push(now);
            self.answered.push(false);
            r.sent += 1;
            self.last_send = now;
            self.next_send = now + self.interval;
            changed = true;
        }

        if r.sent == self.count
            && (r.received == self.count || now >= self.last_send + PING_TIMEOUT)
        {
            r.done = true;
            sockets.remove(h);
            self.socket = None;
        }
        changed
    }

    fn deadline(&self, r: &PingReport) -> Option<Instant> {
        if r.done {
            None
        } else if r.sent < self.count {
            Some(self.next_send)
        } else {
            Some(self.last_send + PING_TIMEOUT)
        }
    }
}

/// TCP send: connect, write the pattern, close; done when the FIN is acknowledged.
pub(super) struct TcpSendApp {
    pub(super) socket: Option<SocketHandle>,
    written: u64,
    close_called: bool,
    last_progress: Instant,
    last_state: tcp::State,
    started: Instant,
    /// Without progress for this long, it gives up.
    give_up: Duration,
    /// Since when sent data has waited with no acknowledgement advancing.
    waiting_since: Option<Instant>,
    /// The pacing tick that lets it write more, while its rate holds it back.
    pacing_wake: Option<Instant>,
}

impl TcpSendApp {
    pub(super) fn new(socket: Option<SocketHandle>, now: Instant, give_up: Duration) -> Self {
        TcpSendApp {
            socket,
            written: 0,
            close_called: false,
            last_progress: now,
            last_state: tcp::State::SynSent,
            started: now,
            give_up,
            waiting_since: None,
            pacing_wake: None,
        }
    }

    /// Bytes the application has handed over by `now`: all of them, or, paced, one more block
    /// while what it wrote falls behind its rate (iperf3's `-b`).
    fn allowance(&self, r: &TcpSendReport, now: Instant) -> u64 {
        match r.rate_bps {
            None => r.requested,
            Some(bps) => {
                let elapsed = now.saturating_since(self.started).as_nanos();
                let due = elapsed * u128::from(bps);
                let sent = u128::from(self.written) * 8 * 1_000_000_000;
                if sent < due {
                    (self.written + TCP_STREAM_BLOCK).min(r.requested)
                } else {
                    self.written
                }
            }
        }
    }

    /// The pacing tick at which what was written falls behind the rate, while there is more
    /// to write.
    fn next_tick(&self, r: &TcpSendReport) -> Option<Instant> {
        let bps = r.rate_bps?;
        if self.written >= r.requested {
            return None;
        }
        // Behind once rate × elapsed exceeds written × 8, checked at each tick.
        let behind_ns = u128::from(self.written) * 8 * 1_000_000_000 / u128::from(bps.max(1)) + 1;
        let tick = TCP_PACING_TICK.as_nanos();
        let at = behind_ns.div_ceil(tick) * tick;
        Some(self.started + Duration::from_nanos(at.min(u128::from(u64::MAX)) as u64))
    }

    /// Note how long acknowledgements have kept data waiting.
    fn track_stall(&mut self, r: &mut TcpSendReport, now: Instant, acked_advanced: bool) {
        let waited = |since: Instant, r: &mut TcpSendReport| {
            let d = now.saturating_since(since);
            if d > r.longest_stall {
                r.longest_stall = d;
                r.longest_stall_from = Some(since);
            }
        };
        if acked_advanced {
            if let Some(since) = self.waiting_since.take() {
                waited(since, r);
            }
        } else if let Some(since) = self.waiting_since {
            waited(since, r);
        }
        if self.waiting_since.is_none() && self.written > r.acked {
            self.waiting_since = Some(now);
        }
    }

    fn step(
        &mut self,
        r: &mut TcpSendReport,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let Some(h) = self.socket else {
            return false;
        };
        let s = sockets.get_mut::<tcp::Socket>(h);
        if r.done {
            // Linger through TIME-WAIT (or until the RST of an abort is out), then free it.
            if s.state() == tcp::State::Closed && s.remote_endpoint().is_none() {
                sockets.remove(h);
                self.socket = None;
            }
            return false;
        }

        let mut changed = false;
        let allowed = self.allowance(r, now);
        while s.may_send() && self.written < allowed {
            let off = self.written;
            let left = allowed - off;
            let n = s
                .send(|buf| {
                    let n = (buf.len() as u64).min(left) as usize;
                    fill_pattern(&mut buf[..n], off);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            self.written += n as u64;
            changed = true;
        }
        if !self.close_called
            && self.written == r.requested
            && matches!(s.state(), tcp::State::Established | tcp::State::CloseWait)
        {
            s.close();
            self.close_called = true;
            changed = true;
        }

        let mut progress = false;
        let acked = self.written - (s.send_queue() as u64).min(self.written);
        let advanced = acked != r.acked;
        if advanced {
            r.acked = acked;
            progress = true;
        }
        self.track_stall(r, now, advanced);
        self.pacing_wake = self.next_tick(r);
        let state = s.state();
        if state != self.last_state {
            progress = true;
            use tcp::State::*;
            let fin_acked = matches!(state, FinWait2 | TimeWait)
                || (self.last_state == LastAck && state == Closed);
            if self.close_called && fin_acked && acked == r.requested {
                r.done = true;
                r.finished = Some(now);
            } else if state == Closed {
                r.error = Some(if self.last_state == SynSent {
                    "connection refused (RST)".to_string()
                } else {
                    format!("connection reset in state {}", self.last_state)
                });
                r.done = true;
                r.finished = Some(now);
            }
            self.last_state = state;
        }
        // An application held back by its rate is not stalled.
        if progress || (self.written == r.acked && self.written < r.requested) {
            self.last_progress = now;
        } else if now >= self.last_progress + self.give_up {
            s.abort();
            r.error = Some(format!(
                "no progress for {} s in state {}",
                self.give_up.as_secs(),
                state
            ));
            r.done = true;
            r.finished = Some(now);
            changed = true;
        }
        changed
    }

    fn deadline(&self, r: &TcpSendReport) -> Option<Instant> {
        if r.done {
            return None;
        }
        let give_up = self.last_progress + self.give_up;
        Some(self.pacing_wake.map_or(give_up, |t| t.min(give_up)))
    }

    /// An ICMP error quoted one of this connection's segments.
    pub(super) fn icmp_error(&mut self, r: &mut TcpSendReport, e: IcmpErrorSeen) {
        if !r.done && r.icmp_errors.len() < MAX_TCP_ICMP_ERRORS {
            r.icmp_errors.push(e);
        }
    }
}

/// Traceroute: one UDP probe a TTL, each waiting for its answer or a timeout.
pub(super) struct TracerouteApp {
    pub(super) socket: Option<SocketHandle>,
    pub(super) sport: u16,
    /// TTL of the last probe sent (0 before the first).
    ttl: u8,
    /// When the outstanding probe times out; `None` when no probe is outstanding.
    probe_deadline: Option<Instant>,
}

impl TracerouteApp {
    pub(super) fn new(socket: Option<SocketHandle>, sport: u16) -> Self {
        TracerouteApp {
            socket,
            sport,
            ttl: 0,
            probe_deadline: None,
        }
    }

    /// An ICMP error from `src` quoted a UDP datagram of ours from `sport` to `dport`.
    pub(super) fn icmp_error(
        &mut self,
        r: &mut TracerouteReport,
        e: IcmpErrorSeen,
        sport: u16,
        dport: u16,
    ) {
        let probe_port = TRACEROUTE_BASE_PORT.wrapping_add(self.ttl as u16);
        if r.done || self.probe_deadline.is_none() || sport != self.sport || dport != probe_port {
            return;
        }
        match e.icmp_type {
            TYPE_TIME_EXCEEDED => {
                r.hops.push(Some(e.src));
                self.probe_deadline = None;
                if self.ttl >= r.max_hops {
                    r.done = true;
                }
            }
            TYPE_DEST_UNREACHABLE => {
                r.hops.push(Some(e.src));
                self.probe_deadline = None;
                r.reached = e.src == r.dst && e.code == CODE_PORT_UNREACHABLE;
                r.done = true;
            }
            _ => {}
        }
    }

    fn step(
        &mut self,
        r: &mut TracerouteReport,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let Some(h) = self.socket else {
            return false;
        };
        if let Some(deadline) = self.probe_deadline {
            if now < deadline {
                return false;
            }
            r.hops.push(None);
            self.probe_deadline = None;
            if self.ttl >= r.max_hops {
                r.done = true;
            }
        }
        if r.done || self.ttl >= r.max_hops {
            r.done = true;
            sockets.remove(h);
            self.socket = None;
            return false;
        }
        self.ttl += 1;
        let s = sockets.get_mut::<udp::Socket>(h);
        if s.send_queue() > 0 {
            // The last probe never left (no ARP answer): drop it rather than send it later
            // with this probe's TTL.
            s.close();
            let _ = s.bind(self.sport);
        }
        s.set_hop_limit(Some(self.ttl));
        let mut probe = [0u8; PROBE_LEN];
        fill_pattern(&mut probe, 0);
        let to = IpEndpoint::new(
            IpAddress::Ipv4(r.dst),
            TRACEROUTE_BASE_PORT.wrapping_add(self.ttl as u16),
        );
        let _ = s.send_slice(&probe, to);
        self.probe_deadline = Some(now + PROBE_TIMEOUT);
        true
    }

    fn deadline(&self, r: &TracerouteReport) -> Option<Instant> {
        // Between probes (only before the first) the next step sends one at once.
        (!r.done).then_some(self.probe_deadline.unwrap_or(Instant::ZERO))
    }
}

/// A sink server on one port: TCP sockets, one listening, the rest connections.
pub(super) struct TcpServer {
    pub(super) stats: TcpServerStats,
    pub(super) socks: Vec<ServerSock>,
}

/// A socket of a sink server; `conn` indexes `stats.connections` once established.
pub(super) struct ServerSock {
    pub(super) handle: SocketHandle,
    pub(super) conn: Option<usize>,
}

/// What one server step did.
#[derive(Default)]
pub(super) struct ServerStep {
    /// Data was read or a socket was closed: poll the interface again.
    pub(super) changed: bool,
    pub(super) accepted: u64,
}

impl TcpServer {
    /// Read, check and count what arrived; close connections the peer closed; free closed
    /// sockets; keep exactly one socket listening (`new_listener` makes one).
    pub(super) fn step(
        &mut self,
        sockets: &mut SocketSet<'static>,
        new_listener: impl Fn(u16) -> tcp::Socket<'static>,
    ) -> ServerStep {
        use tcp::State::*;
        let mut out = ServerStep::default();
        let mut listening = 0;
        let mut i = 0;
        while i < self.socks.len() {
            let ss = &mut self.socks[i];
            let s = sockets.get_mut::<tcp::Socket>(ss.handle);
            let state = s.state();
            if ss.conn.is_none() && !matches!(state, Listen | SynReceived | Closed) {
                if let Some(IpEndpoint {
                    addr: IpAddress::Ipv4(a),
                    port,
                }) = s.remote_endpoint()
                {
                    ss.conn = Some(self.stats.connections.len());
                    self.stats.connections.push(TcpConnStats {
                        peer: SocketAddrV4::new(a, port),
                        bytes: 0,
                        pattern_ok: true,
                        peer_closed: false,
                    });
                    out.accepted += 1;
                }
            }
            if let Some(c) = ss.conn {
                let st = &mut self.stats.connections[c];
                while s.can_recv() {
                    let offset = st.bytes;
                    let Ok((n, ok)) =
                        s.recv(|buf| (buf.len(), (buf.len(), check_pattern(buf, offset))))
                    else {
                        break;
                    };
                    st.bytes += n as u64;
                    st.pattern_ok &= ok;
                    out.changed = true;
                }
                if matches!(state, CloseWait | LastAck | Closing | TimeWait) {
                    st.peer_closed = true;
                }
                if state == CloseWait {
                    s.close();
                    out.changed = true;
                }
            }
            if state == Closed && s.remote_endpoint().is_none() {
                sockets.remove(ss.handle);
                self.socks.remove(i);
                continue;
            }
            if state == Listen {
                listening += 1;
                if listening > 1 {
                    sockets.remove(ss.handle);
                    self.socks.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        if listening == 0 {
            let handle = sockets.add(new_listener(self.stats.port));
            self.socks.push(ServerSock { handle, conn: None });
        }
        out
    }

    /// Indices (in `socks`) of the sockets listening now.
    pub(super) fn listeners(&self, sockets: &SocketSet<'static>) -> Vec<usize> {
        (0..self.socks.len())
            .filter(|&i| {
                sockets
                    .get::<tcp::Socket>(self.socks[i].handle)
                    .is_listening()
            })
            .collect()
    }

    /// True if a connection socket talks to `peer`.
    pub(super) fn has_peer(&self, sockets: &SocketSet<'static>, peer: IpEndpoint) -> bool {
        self.socks.iter().any(|ss| {
            let s = sockets.get::<tcp::Socket>(ss.handle);
            !s.is_listening() && s.remote_endpoint() == Some(peer)
        })
    }
}

/// Serialising times as microseconds.
mod ser {
    use std::time::Duration;

    use serde::ser::SerializeSeq;
    use serde::Serializer;

    use crate::time::Instant;

    pub fn micros<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn instant<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.as_micros())
    }

    pub fn opt_instant<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.as_micros()),
            None => s.serialize_none(),
        }
    }

    pub fn durations<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&(d.as_micros() as u64))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_round_trip_across_offsets() {
        let mut buf = vec![0u8; 1000];
        fill_pattern(&mut buf, 0);
        assert_eq!(buf[250], 250);
        assert_eq!(buf[251], 0);
        assert!(check_pattern(&buf[300..], 300));
        assert!(!check_pattern(&buf[300..], 301));
        let mut tail = [0u8; 10];
        fill_pattern(&mut tail, 1_000_000);
        assert_eq!(tail[0], (1_000_000u64 % 251) as u8);
    }

    #[test]
    fn pattern_over_many_chunks_is_byte_i_mod_251_and_one_bad_byte_shows() {
        let offset = 123_456_789u64;
        let mut buf = vec![0u8; 3 * PATTERN_CHUNK + 777];
        fill_pattern(&mut buf, offset);
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(*b, ((offset + i as u64) % 251) as u8, "byte {i}");
        }
        assert!(check_pattern(&buf, offset));
        buf[2 * PATTERN_CHUNK + 5] ^= 1;
        assert!(!check_pattern(&buf, offset));
    }

    #[test]
    fn ping_sequence_numbers_map_to_the_latest_request() {
        let mut p = PingApp::new(None, 1, 70_000, Duration::ZERO, 8, Instant::ZERO);
        assert_eq!(p.index_of(0), None);
        p.sent_at.resize(65_540, Instant::ZERO);
        assert_eq!(p.index_of(3), Some(65_539));
        assert_eq!(p.index_of(4), Some(4));
        p.reply_seen(4, 64);
        assert_eq!(p.pending_ttls, vec![(4, 64)]);
    }
}
