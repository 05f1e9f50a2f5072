//! The NSX Edge: Tier-0 with the Compute and Management Gateways folded in. It routes between
//! the SDDC segments and its uplink into the Connected VPC.
//!
//! Ports: one per interface, in [`EdgeConfig::ifaces`] order (the uplink first, by convention).
//!
//! A router by RFC 1812: ARP on every interface, longest-prefix match over one route table, TTL
//! decrement with an incremental checksum update, ICMP time-exceeded, net- and host-unreachable,
//! echo replies for its own addresses, port-unreachable for UDP to them from the address probed
//! (so traceroute ends there). No ICMP error answers an ICMP error, a later fragment, or a
//! packet to or from a broadcast or multicast address (RFC 1812 §4.3.2.7). Broadcasts and
//! multicasts are not routed: there is no multicast routing, and directed broadcasts of the
//! connected networks are not forwarded (RFC 2644).
//!
//! Routes marked `snat` (S3's prefix list) leave with their source translated to the uplink
//! address; answers are translated back after their TTL is checked, and a packet that SNAT
//! translated but could not deliver is translated back before it is answered.
//!
//! A standby Edge forwards nothing and answers nothing until it is made active; a demoted Edge
//! drops what it held for ARP.
//!
//! In either role an Edge runs BFD ([`super::bfd`]) to the other Edge on its HA interface, which
//! nothing is routed on, and tells the control plane ([`super::Notice`]) when the session comes
//! up or finds its peer dead: the control plane decides what follows (NSX's failover).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;

use super::arp_cache::{ArpCache, Enqueued};
use super::bfd::{BfdConfig, BfdCounters, Session};
use super::route::RouteTable;
use super::{Change, Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::arp::{Arp, OP_REPLY, OP_REQUEST};
use crate::wire::icmp::{self, CODE_HOST_UNREACHABLE, CODE_NET_UNREACHABLE, CODE_PORT_UNREACHABLE};
use crate::wire::ipv4::{self, Ipv4View, Side, PROTO_ICMP, PROTO_UDP};
use crate::wire::{self, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// What an interface connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceRole {
    /// Tier-0's uplink into the Connected VPC.
    Uplink,
    /// A segment's gateway (CGW or MGW).
    Segment,
    /// The link to the other Edge that BFD runs on (NSX's HA interface): an overlay segment of
    /// its own, link-local addresses, nothing routed.
    Ha,
}

/// One interface of the Edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeIface {
    /// `uplink`, or the segment's name.
    pub name: String,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The connected network.
    pub net: Ipv4Net,
    pub role: IfaceRole,
    /// The largest IP packet the interface sends, in bytes (its link's MTU).
    pub mtu: usize,
}

/// How a route reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// On the interface's own network: ARP for the destination.
    Connected,
    /// Through a gateway on the interface's network.
    Gateway(Ipv4Addr),
}

/// A route of the Edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeRoute {
    pub iface: usize,
    pub next_hop: NextHop,
    /// Translate the source to the uplink address (S3 through the gateway endpoint).
    pub snat: bool,
}

impl EdgeRoute {
    /// The neighbour a packet for `dst` goes to on this route.
    pub fn next_hop_for(&self, dst: Ipv4Addr) -> Ipv4Addr {
        match self.next_hop {
            NextHop::Connected => dst,
            NextHop::Gateway(gw) => gw,
        }
    }
}

/// The Edge's configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub name: String,
    pub ifaces: Vec<EdgeIface>,
}

counters! {
    /// What the Edge did with frames.
    pub struct EdgeCounters {
        pub forwarded,
        pub delivered_local,
        pub arp_requests_sent,
        pub arp_replies_sent,
        /// Gratuitous ARPs sent on becoming active, one per interface.
        pub garp_sent,
        pub icmp_errors_sent,
        /// Packets larger than the next hop's MTU with Don't Fragment set: answered with
        /// fragmentation needed.
        pub tx_frag_needed,
        /// Packets larger than the next hop's MTU, sent on in fragments.
        pub fragmented,
        pub snat_out,
        pub snat_in,
        /// Broadcast or multicast frames a standby Edge saw and left alone (ARP floods): not
        /// traffic lost.
        pub rx_ignored_standby_broadcast,
        /// RARP announcements of VMs that moved, left alone.
        pub rx_ignored_rarp,
        /// Frames sent to a standby Edge's own MAC: traffic lost until it is active.
        pub rx_dropped_standby,
        pub rx_dropped_not_my_mac,
        pub rx_dropped_bad_header,
        pub rx_dropped_ttl_exceeded,
        pub rx_dropped_no_route,
        /// Not for the Edge and not routed: a broadcast or multicast destination, or received as
        /// a link-layer broadcast or multicast.
        pub rx_dropped_not_routable,
        pub rx_dropped_not_handled,
        pub tx_dropped_arp_failed,
        pub tx_dropped_arp_queue_full,
        /// Held for ARP when the Edge was demoted to standby.
        pub tx_dropped_demoted,
        /// Every external port of the SNAT pool is taken.
        pub tx_dropped_nat_exhausted,
        /// On an SNAT route but nothing to key a mapping on (no port or echo identifier).
        pub tx_dropped_nat_untranslatable,
    }
}

/// Source NAT to one external address, endpoint-independent: one inside (address, port) maps to
/// one external port, whoever the peer. ICMP echo uses the identifier as the port.
#[derive(Debug)]
struct Snat {
    external: Option<Ipv4Addr>,
    /// The next external port to hand out; `None` once the pool is used up. Mappings last as
    /// long as the Edge, so the ports are handed out in order, each once.
    next_port: Option<u16>,
    outbound: FxHashMap<(u8, Ipv4Addr, u16), u16>,
    inbound: FxHashMap<(u8, u16), (Ipv4Addr, u16)>,
}

/// First external port handed out; the pool is `NAT_FIRST_PORT..=u16::MAX`.
const NAT_FIRST_PORT: u16 = 1024;

/// Why [`Snat::translate_out`] left a packet as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnatError {
    /// A new mapping was needed and every external port is taken.
    Exhausted,
    /// Nothing to key a mapping on (no TCP/UDP port or echo identifier, a later fragment), or
    /// no external address.
    Untranslatable,
}

/// An inside endpoint: (address, port or echo identifier).
type Inside = (Ipv4Addr, u16);

/// An inbound packet the NAT has a mapping for, and the inside endpoint it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NatAnswer {
    /// An answer (TCP, UDP, echo reply) to the endpoint.
    Reply(Inside),
    /// An ICMP error about a packet the endpoint sent.
    Error(Inside),
}

impl Snat {
    fn new(external: Option<Ipv4Addr>) -> Self {
        Snat {
            external,
            next_port: Some(NAT_FIRST_PORT),
            outbound: FxHashMap::default(),
            inbound: FxHashMap::default(),
        }
    }

    /// The L4 "port" a packet is keyed on, by direction: source (outbound) or destination.
    /// A later fragment has none (its payload holds no L4 header).
    fn port(v: &Ipv4View<'_>, side: Side) -> Option<u16> {
        if v.is_later_fragment() {
            return None;
        }
        icmp::flow_port(v.protocol(), v.payload(), side)
    }

    /// Translate an outbound packet's source, mapping its inside endpoint if new. An ICMP error
    /// about an answer the NAT translated in is translated back out: its source, and the
    /// destination of the packet it quotes; it never makes a mapping.
    fn translate_out(&mut self, f: &mut [u8]) -> Result<(), SnatError> {
        let ext = self.external.ok_or(SnatError::Untranslatable)?;
        let v = Ipv4View::parse(f).ok_or(SnatError::Untranslatable)?;
        if let Some(q) = icmp::quoted(&v) {
            let port =
                icmp::flow_port(q.protocol, q.l4, Side::Dst).ok_or(SnatError::Untranslatable)?;
            let ext_port = *self
                .outbound
                .get(&(q.protocol, q.dst, port))
                .ok_or(SnatError::Untranslatable)?;
            ipv4::rewrite_addr(f, Side::Src, ext);
            icmp::rewrite_quoted(f, Side::Dst, ext, ext_port);
            return Ok(());
        }
        let port = Self::port(&v, Side::Src).ok_or(SnatError::Untranslatable)?;
        let key = (v.protocol(), v.src(), port);
        let ext_port = match self.outbound.get(&key) {
            Some(&p) => p,
            None => self.map(key)?,
        };
        ipv4::rewrite_addr(f, Side::Src, ext);
        ipv4::rewrite_port(f, Side::Src, ext_port);
        Ok(())
    }

    /// A new mapping for `(protocol, inside address, inside port)`: the next external port.
    fn map(&mut self, key: (u8, Ipv4Addr, u16)) -> Result<u16, SnatError> {
        let p = self.next_port.ok_or(SnatError::Exhausted)?;
        self.next_port = p.checked_add(1);
        self.outbound.insert(key, p);
        self.inbound.insert((key.0, p), (key.1, key.2));
        Ok(p)
    }

    /// What an inbound packet for the external address is, if the NAT translated its cause: an
    /// answer to an inside endpoint, or an ICMP error about a packet of one (RFC 5508 §4.2).
    fn lookup_in(&self, v: &Ipv4View<'_>) -> Option<NatAnswer> {
        if let Some(q) = icmp::quoted(v) {
            if Some(q.src) != self.external {
                return None;
            }
            let port = icmp::flow_port(q.protocol, q.l4, Side::Src)?;
            return self
                .inbound
                .get(&(q.protocol, port))
                .map(|&inside| NatAnswer::Error(inside));
        }
        let port = Self::port(v, Side::Dst)?;
        self.inbound
            .get(&(v.protocol(), port))
            .map(|&inside| NatAnswer::Reply(inside))
    }

    /// Rewrite an inbound packet to the inside endpoint it is for: an answer's destination; an
    /// error's destination and the source of the packet it quotes.
    fn translate_in(f: &mut [u8], answer: NatAnswer) {
        match answer {
            NatAnswer::Reply((ip, port)) => {
                ipv4::rewrite_addr(f, Side::Dst, ip);
                ipv4::rewrite_port(f, Side::Dst, port);
            }
            NatAnswer::Error((ip, port)) => {
                ipv4::rewrite_addr(f, Side::Dst, ip);
                icmp::rewrite_quoted(f, Side::Src, ip, port);
            }
        }
    }

    /// Undo [`Snat::translate_out`] on a packet that never left: its source back to the inside
    /// endpoint. False (and untouched) if its source is not a mapped external endpoint.
    fn untranslate_out(&self, f: &mut [u8]) -> bool {
        let Some(v) = Ipv4View::parse(f) else {
            return false;
        };
        if Some(v.src()) != self.external {
            return false;
        }
        let inside = Self::port(&v, Side::Src).and_then(|p| self.inbound.get(&(v.protocol(), p)));
        let Some(&(ip, port)) = inside else {
            return false;
        };
        ipv4::rewrite_addr(f, Side::Src, ip);
        ipv4::rewrite_port(f, Side::Src, port);
        true
    }
}

/// The header fields [`Edge::forward`] reads.
#[derive(Debug, Clone, Copy)]
struct Forwarded {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// The IP packet's total length.
    len: usize,
    /// Don't Fragment.
    df: bool,
}

impl Forwarded {
    #[inline]
    fn of(v: &Ipv4View<'_>) -> Forwarded {
        Forwarded {
            src: v.src(),
            dst: v.dst(),
            len: v.total_len(),
            df: v.dont_fragment(),
        }
    }
}

/// The Edge.
#[derive(Debug)]
pub struct Edge {
    name: String,
    active: bool,
    ifaces: Vec<EdgeIface>,
    /// The interfaces' addresses, and their networks' directed broadcasts (none on a /31 or
    /// /32): read for every packet, so kept apart from the interfaces.
    own_ips: Vec<Ipv4Addr>,
    directed_broadcasts: Vec<Ipv4Addr>,
    /// The last destination found to be neither an address of the Edge's nor a group's: a
    /// flow's packets skip those checks. Changing the interfaces forgets it.
    last_transit: Option<Ipv4Addr>,
    routes: RouteTable<EdgeRoute>,
    arp: ArpCache,
    snat: Snat,
    /// Ports whose interface was removed.
    removed: Vec<usize>,
    /// The port of the HA interface, if the Edge has one: BFD's, and nothing else's.
    ha_port: Option<Port>,
    /// The BFD session to the other Edge, while the Edge runs and has one.
    bfd: Option<Session>,
    /// The BFD counters of sessions past, carried into the next.
    bfd_counters: BfdCounters,
    pub counters: EdgeCounters,
}

impl Edge {
    /// A new Edge with a connected route per interface; standby until [`Edge::set_active`].
    pub fn new(cfg: EdgeConfig) -> Self {
        let mut routes = RouteTable::new();
        let routed = |i: &&EdgeIface| i.role != IfaceRole::Ha;
        for (i, ifc) in cfg.ifaces.iter().enumerate().filter(|(_, i)| routed(i)) {
            let r = EdgeRoute {
                iface: i,
                next_hop: NextHop::Connected,
                snat: false,
            };
            routes.insert(ifc.net, r);
        }
        let external = cfg
            .ifaces
            .iter()
            .find(|i| i.role == IfaceRole::Uplink)
            .map(|i| i.ip);
        let own_ips = cfg.ifaces.iter().filter(routed).map(|i| i.ip).collect();
        let directed_broadcasts = cfg
            .ifaces
            .iter()
            .filter(routed)
            .filter(|i| i.net.prefix_len() < 31)
            .map(|i| i.net.broadcast())
            .collect();
        let ha_port = cfg
            .ifaces
            .iter()
            .position(|i| i.role == IfaceRole::Ha)
            .map(|p| p as Port);
        Edge {
            name: cfg.name,
            active: false,
            ifaces: cfg.ifaces,
            own_ips,
            directed_broadcasts,
            last_transit: None,
            routes,
            arp: ArpCache::default(),
            snat: Snat::new(external),
            removed: Vec::new(),
            ha_port,
            bfd: None,
            bfd_counters: BfdCounters::default(),
            counters: EdgeCounters::default(),
        }
    }

    /// Start a new BFD session to the other Edge at `now` (Down, as a VM that starts), or
    /// (`None`) end the one running (the VM is dead).
    pub fn set_bfd(&mut self, now: Instant, cfg: Option<BfdConfig>) {
        if let Some(old) = self.bfd.take() {
            self.bfd_counters = old.counters;
        }
        self.bfd = cfg.map(|c| {
            let mut s = Session::new(c, now);
            s.counters = self.bfd_counters.clone();
            s
        });
    }

    /// The BFD session, if one runs.
    pub fn bfd(&self) -> Option<&Session> {
        self.bfd.as_ref()
    }

    /// A frame on the HA interface: BFD's, if a session runs.
    fn on_bfd(&mut self, now: Instant, frame: &Frame, out: &mut Outbox) {
        let Some(s) = self.bfd.as_mut() else {
            self.counters.rx_dropped_not_handled += 1;
            return;
        };
        if let Some(t) = s.receive(now, frame) {
            out.notify(t);
        }
    }

    /// The BFD session's timers: declare the peer dead, send the packet due.
    fn poll_bfd(&mut self, now: Instant, out: &mut Outbox) {
        let Some(s) = self.bfd.as_mut().filter(|s| s.poll_at() <= now) else {
            return;
        };
        let (frame, t) = s.poll(now);
        if let Some((f, port)) = frame.zip(self.ha_port) {
            out.send(port, f);
        }
        if let Some(t) = t {
            out.notify(t);
        }
    }

    /// A new interface on `port`, the one the control plane gave it, with its connected route.
    /// The control plane hands ports out in order, so `port` is the next one; any other is
    /// refused, and the Edge stays as it was.
    pub fn add_iface(&mut self, port: Port, ifc: EdgeIface) {
        let i = usize::from(port);
        if i != self.ifaces.len() {
            return;
        }
        if ifc.role == IfaceRole::Ha {
            // Nothing is routed on it: BFD alone runs there.
            self.ha_port = Some(i as Port);
            self.ifaces.push(ifc);
            return;
        }
        self.routes.insert(
            ifc.net,
            EdgeRoute {
                iface: i,
                next_hop: NextHop::Connected,
                snat: false,
            },
        );
        self.own_ips.push(ifc.ip);
        self.last_transit = None;
        if ifc.net.prefix_len() < 31 {
            self.directed_broadcasts.push(ifc.net.broadcast());
        }
        self.ifaces.push(ifc);
    }

    /// The interface on `port` is gone: its connected route and addresses with it. The port
    /// stays unused, so that the others keep theirs.
    pub fn remove_iface(&mut self, port: usize) {
        let Some(ifc) = self.ifaces.get(port).cloned() else {
            return;
        };
        if self.removed.contains(&port) {
            return;
        }
        self.removed.push(port);
        self.last_transit = None;
        if self
            .routes
            .get(ifc.net)
            .is_some_and(|r| r.target.iface == port)
        {
            self.routes.remove(ifc.net);
        }
        if let Some(i) = self.own_ips.iter().position(|a| *a == ifc.ip) {
            self.own_ips.remove(i);
        }
        if let Some(i) = self
            .directed_broadcasts
            .iter()
            .position(|a| *a == ifc.net.broadcast())
        {
            self.directed_broadcasts.remove(i);
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Make the Edge active or standby. A demoted Edge drops the frames it held for ARP, so that
    /// nothing it took in as active leaves (or is answered) once it is standby.
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
        if !active {
            self.drop_pending();
        }
    }

    /// A gratuitous ARP for every interface's address, as an Edge that just became active
    /// sends, so that its neighbours learn where the addresses are now.
    fn announce(&mut self, out: &mut Outbox) {
        for (port, ifc) in self.ifaces.iter().enumerate() {
            if self.removed.contains(&port) || ifc.role == IfaceRole::Ha {
                continue;
            }
            out.send(port as Port, Arp::gratuitous(ifc.mac, ifc.ip).to_frame());
            self.counters.garp_sent += 1;
        }
    }

    pub fn ifaces(&self) -> &[EdgeIface] {
        &self.ifaces
    }

    /// The uplink interface's index, if the Edge has one.
    pub fn uplink(&self) -> Option<usize> {
        self.ifaces.iter().position(|i| i.role == IfaceRole::Uplink)
    }

    /// Add or replace a static route through a gateway on the uplink.
    pub fn add_static_route(&mut self, dest: Ipv4Net, gateway: Ipv4Addr, snat: bool) {
        let Some(iface) = self.ifaces.iter().position(|i| i.net.contains(&gateway)) else {
            return;
        };
        self.routes.insert(
            dest,
            EdgeRoute {
                iface,
                next_hop: NextHop::Gateway(gateway),
                snat,
            },
        );
    }

    pub fn routes(&self) -> &RouteTable<EdgeRoute> {
        &self.routes
    }

    fn is_own_ip(&self, ip: Ipv4Addr) -> bool {
        self.own_ips.contains(&ip)
    }

    /// An address that stands for a group, not a host: the limited broadcast, a multicast
    /// group, or the directed broadcast of a connected network (none on a /31 or /32).
    fn is_group_ip(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || ip.is_multicast() || self.directed_broadcasts.contains(&ip)
    }

    /// The frame was sent to a link-layer broadcast or multicast address.
    fn is_link_group(frame: &[u8]) -> bool {
        wire::eth_dst(frame).is_some_and(|m| m.is_group())
    }

    /// Drop every frame held for ARP, counting them.
    fn drop_pending(&mut self) {
        let dropped = self.arp.cancel_pending().len();
        self.counters.tx_dropped_demoted += dropped as u64;
    }

    fn on_arp(&mut self, now: Instant, port: usize, frame: &Frame, out: &mut Outbox) {
        let Some(a) = Arp::parse(frame) else {
            self.counters.rx_dropped_bad_header += 1;
            return;
        };
        let ifc = &self.ifaces[port];
        let for_us = a.target_ip == ifc.ip;
        if a.op == OP_REQUEST && for_us && !a.is_gratuitous() {
            self.counters.arp_replies_sent += 1;
            out.send(port as Port, a.reply_from(ifc.mac).to_frame());
        }
        // Learn from requests for us and from every reply (RFC 826 merge), and from gratuitous
        // ARP of a neighbour already known.
        let known = self.arp.lookup(port, a.sender_ip).is_some();
        if (for_us || a.op == OP_REPLY || known) && ifc.net.contains(&a.sender_ip) {
            for f in self.arp.learn(now, port, a.sender_ip, a.sender_mac) {
                self.transmit_resolved(port, a.sender_mac, f, out);
            }
        }
    }

    /// Route a packet that this Edge forwards (TTL already checked and decremented).
    fn forward(&mut self, now: Instant, in_port: usize, f: Frame, out: &mut Outbox) {
        let Some(h) = Ipv4View::parse(&f).map(|v| Forwarded::of(&v)) else {
            return;
        };
        self.forward_parsed(now, in_port, f, h, out);
    }

    /// [`Edge::forward`] with the packet's header fields already read.
    fn forward_parsed(
        &mut self,
        now: Instant,
        in_port: usize,
        mut f: Frame,
        Forwarded { src, dst, len, df }: Forwarded,
        out: &mut Outbox,
    ) {
        let Some(route) = self.routes.lookup(dst).map(|r| r.target) else {
            self.counters.rx_dropped_no_route += 1;
            let from = self.ifaces[in_port].ip;
            let (t, code) = (icmp::TYPE_DEST_UNREACHABLE, CODE_NET_UNREACHABLE);
            self.icmp_error(now, from, t, code, &f, out);
            return;
        };
        // A super-frame's packets are its segments.
        let len = f.gso().and_then(|g| g.segment_ip_len(&f)).unwrap_or(len);
        let mtu = self.ifaces[route.iface].mtu;
        if f.gso().is_some() && (route.snat || (len > mtu && !df)) {
            // The NAT rewrites each segment, and a router fragments each (a super-frame's
            // checksum covers no fragment): cut the super-frame here.
            for seg in crate::wire::gso::segment(&f) {
                self.forward(now, in_port, seg, out);
            }
            return;
        }
        if len > mtu && df {
            // RFC 1191: too big to forward whole, and not to be cut: say how big fits.
            self.counters.tx_frag_needed += 1;
            let from = self.ifaces[in_port].ip;
            let [hi, lo] = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
            let what = (
                icmp::TYPE_DEST_UNREACHABLE,
                icmp::CODE_FRAG_NEEDED,
                [0, 0, hi, lo],
            );
            self.icmp_error_with(now, from, what, &f, out);
            return;
        }
        if route.snat && Some(src) != self.snat.external {
            match self.snat.translate_out(&mut f) {
                Ok(()) => self.counters.snat_out += 1,
                Err(SnatError::Exhausted) => {
                    self.counters.tx_dropped_nat_exhausted += 1;
                    return;
                }
                Err(SnatError::Untranslatable) => {
                    self.counters.tx_dropped_nat_untranslatable += 1;
                    return;
                }
            }
        }
        self.counters.forwarded += 1;
        let nh = route.next_hop_for(dst);
        if len > mtu {
            self.counters.fragmented += 1;
            for frag in ipv4::fragment(&f, mtu) {
                self.transmit(now, route.iface, nh, frag, out);
            }
            return;
        }
        self.transmit(now, route.iface, nh, f, out);
    }

    /// Send an IP frame out of `iface` to next hop `nh`, resolving its MAC; the frame waits
    /// while ARP resolves it. Taking the frame mutable lets a forwarded packet go from TTL to
    /// MACs in one pass.
    fn transmit(
        &mut self,
        now: Instant,
        iface: usize,
        nh: Ipv4Addr,
        mut f: Frame,
        out: &mut Outbox,
    ) {
        if let Some((mac, ask)) = self.arp.lookup_for_use(now, iface, nh) {
            wire::set_macs(&mut f, mac, self.ifaces[iface].mac);
            out.send(iface as Port, f);
            if ask {
                self.send_arp_request(iface, nh, out);
            }
            return;
        }
        match self.arp.enqueue(now, iface, nh, f) {
            Enqueued::SendRequest => self.send_arp_request(iface, nh, out),
            Enqueued::Waiting => {}
            Enqueued::Dropped => self.counters.tx_dropped_arp_queue_full += 1,
        }
    }

    /// Send a frame that waited for ARP, now that `mac` answered.
    fn transmit_resolved(&mut self, iface: usize, mac: MacAddr, mut f: Frame, out: &mut Outbox) {
        wire::set_macs(&mut f, mac, self.ifaces[iface].mac);
        out.send(iface as Port, f);
    }

    fn send_arp_request(&mut self, iface: usize, ip: Ipv4Addr, out: &mut Outbox) {
        let ifc = &self.ifaces[iface];
        self.counters.arp_requests_sent += 1;
        out.send(iface as Port, Arp::request(ifc.mac, ifc.ip, ip).to_frame());
    }

    /// Answer `offending` (a frame with the Ethernet header it arrived with) with an ICMP error
    /// from `src`. Never about an ICMP error, a later fragment, a packet to a broadcast or
    /// multicast address, IP or link-layer, or from an address that names no single host
    /// (RFC 1812 §4.3.2.7); nor about a packet of the Edge's own.
    fn icmp_error(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        t: u8,
        code: u8,
        offending: &[u8],
        out: &mut Outbox,
    ) {
        self.icmp_error_with(now, src, (t, code, [0; 4]), offending, out);
    }

    /// [`Edge::icmp_error`] with the ICMP header's second word (fragmentation-needed's MTU).
    fn icmp_error_with(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        what: (u8, u8, [u8; 4]),
        offending: &[u8],
        out: &mut Outbox,
    ) {
        let Some(v) = Ipv4View::parse(offending) else {
            return;
        };
        let (to, about) = (v.src(), v.dst());
        if icmp::is_error(&v)
            || v.is_later_fragment()
            || Self::is_link_group(offending)
            || self.is_group_ip(about)
            || to.is_unspecified()
            || self.is_group_ip(to)
            || self.is_own_ip(to)
        {
            return;
        }
        let e = icmp::error_with(MacAddr::default(), MacAddr::default(), src, what, &v);
        self.counters.icmp_errors_sent += 1;
        self.originate(now, e, out);
    }

    /// Send a packet the Edge itself built (its MACs are filled in here).
    fn originate(&mut self, now: Instant, frame: Frame, out: &mut Outbox) {
        let Some(dst) = Ipv4View::parse(&frame).map(|v| v.dst()) else {
            return;
        };
        let Some(route) = self.routes.lookup(dst).map(|r| r.target) else {
            self.counters.rx_dropped_no_route += 1;
            return;
        };
        self.transmit(now, route.iface, route.next_hop_for(dst), frame, out);
    }

    /// A packet for one of the Edge's own addresses.
    fn deliver_local(&mut self, now: Instant, frame: Frame, out: &mut Outbox) {
        let Some(v) = Ipv4View::parse(&frame) else {
            return;
        };
        match (v.protocol(), icmp::type_code(&v)) {
            (PROTO_ICMP, Some((icmp::TYPE_ECHO_REQUEST, 0))) => {
                self.counters.delivered_local += 1;
                let reply = icmp::echo_reply(MacAddr::default(), MacAddr::default(), &v);
                self.originate(now, reply, out);
            }
            (PROTO_UDP, _) => {
                // No UDP service: the address probed says so.
                self.counters.delivered_local += 1;
                let (t, code) = (icmp::TYPE_DEST_UNREACHABLE, CODE_PORT_UNREACHABLE);
                self.icmp_error(now, v.dst(), t, code, &frame, out);
            }
            _ => self.counters.rx_dropped_not_handled += 1,
        }
    }

    /// The inside endpoint a packet to one of the Edge's addresses is an SNAT answer (or error)
    /// for: it came in on the uplink, for the external address, and a mapping holds it.
    fn nat_answer(&self, port: usize, v: &Ipv4View<'_>) -> Option<NatAnswer> {
        let for_external =
            self.ifaces[port].role == IfaceRole::Uplink && Some(v.dst()) == self.snat.external;
        for_external.then(|| self.snat.lookup_in(v)).flatten()
    }

    fn on_ipv4(&mut self, now: Instant, port: usize, frame: Frame, out: &mut Outbox) {
        let Some(v) = Ipv4View::parse(&frame).filter(|v| v.checksum_ok()) else {
            self.counters.rx_dropped_bad_header += 1;
            return;
        };
        let (dst, ttl) = (v.dst(), v.ttl());
        let h = Forwarded::of(&v);
        let mut nat_answer = None;
        let known_transit = self.last_transit == Some(dst);
        if !known_transit && self.is_own_ip(dst) {
            nat_answer = self.nat_answer(port, &v);
            if nat_answer.is_none() {
                return self.deliver_local(now, frame, out);
            }
        } else if (!known_transit && self.is_group_ip(dst)) || Self::is_link_group(&frame) {
            // No multicast routing, no broadcast forwarding (RFC 1812 §5.3.4, RFC 2644).
            self.counters.rx_dropped_not_routable += 1;
            return;
        } else {
            self.last_transit = Some(dst);
        }
        // The TTL is checked on the packet as received, so that an expired SNAT answer is
        // quoted as its sender sent it, and is not counted as translated.
        if ttl <= 1 {
            self.counters.rx_dropped_ttl_exceeded += 1;
            let from = self.ifaces[port].ip;
            let (t, code) = (icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED);
            self.icmp_error(now, from, t, code, &frame, out);
            return;
        }
        let mut f = frame;
        if let Some(answer) = nat_answer {
            Snat::translate_in(&mut f, answer);
            self.counters.snat_in += 1;
            ipv4::decrement_ttl(&mut f);
            // The translation changed the destination: read the header again.
            return self.forward(now, port, f, out);
        }
        // The TTL is all that changes: the fields read above hold.
        ipv4::decrement_ttl(&mut f);
        self.forward_parsed(now, port, f, h, out);
    }

    /// Answer a packet whose next hop never answered ARP with host-unreachable, from the
    /// address facing its source. A packet SNAT translated is translated back first, so that
    /// the error goes to the inside host and quotes what it sent.
    fn host_unreachable(&mut self, now: Instant, mut f: Frame, out: &mut Outbox) {
        let via_snat = Ipv4View::parse(&f)
            .and_then(|v| self.routes.lookup(v.dst()))
            .is_some_and(|r| r.target.snat);
        if via_snat {
            self.snat.untranslate_out(&mut f);
        }
        let Some(src) = Ipv4View::parse(&f).map(|v| v.src()) else {
            return;
        };
        let iface = self
            .routes
            .lookup(src)
            .map(|r| r.target.iface)
            .or_else(|| self.uplink())
            .unwrap_or(0);
        let from = self.ifaces[iface].ip;
        let (t, code) = (icmp::TYPE_DEST_UNREACHABLE, CODE_HOST_UNREACHABLE);
        self.icmp_error(now, from, t, code, &f, out);
    }
}

impl Node for Edge {
    fn name(&self) -> &str {
        &self.name
    }

    fn configure(&mut self, now: Instant, change: &Change, out: &mut Outbox) {
        match change {
            Change::EdgeActive(active) => {
                let promoted = *active && !self.active;
                self.set_active(*active);
                if promoted {
                    self.announce(out);
                }
            }
            Change::EdgeAddIface { port, iface } => self.add_iface(*port, iface.clone()),
            Change::EdgeRemoveIface { port } => self.remove_iface(usize::from(*port)),
            Change::EdgeBfd(cfg) => self.set_bfd(now, cfg.clone()),
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        "edge"
    }

    fn port_name(&self, port: Port) -> String {
        self.ifaces
            .get(port as usize)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| format!("p{port}"))
    }

    fn handle(&mut self, now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
        // BFD runs in either role, and nothing else on the HA interface.
        if self.ha_port == Some(port) {
            return self.on_bfd(now, &frame, out);
        }
        let port = port as usize;
        if !self.active {
            if wire::eth_dst(&frame).is_some_and(|d| d.is_group()) {
                self.counters.rx_ignored_standby_broadcast += 1;
            } else {
                self.counters.rx_dropped_standby += 1;
            }
            return;
        }
        let Some(ifc) = self
            .ifaces
            .get(port)
            .filter(|_| !self.removed.contains(&port))
        else {
            return;
        };
        match wire::eth_dst(&frame) {
            Some(d) if d == ifc.mac || d.is_group() => {}
            _ => {
                self.counters.rx_dropped_not_my_mac += 1;
                return;
            }
        }
        match wire::ethertype(&frame) {
            Some(ETHERTYPE_ARP) => self.on_arp(now, port, &frame, out),
            Some(ETHERTYPE_IPV4) => self.on_ipv4(now, port, frame, out),
            // A host announcing a VM that moved: for switches.
            Some(crate::node::host::ETHERTYPE_RARP) => self.counters.rx_ignored_rarp += 1,
            _ => self.counters.rx_dropped_not_handled += 1,
        }
    }

    fn poll(&mut self, now: Instant, out: &mut Outbox) {
        self.poll_bfd(now, out);
        if !self.active {
            // Demotion dropped what was held; should anything remain, it goes, unsent.
            self.drop_pending();
            return;
        }
        let ex = self.arp.expire(now);
        for (iface, ip) in ex.retry {
            self.send_arp_request(iface, ip, out);
        }
        for f in ex.failed {
            self.counters.tx_dropped_arp_failed += 1;
            self.host_unreachable(now, f, out);
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        let arp = self.arp.next_deadline();
        match self.bfd.as_ref().map(Session::poll_at) {
            Some(b) => Some(arp.map_or(b, |a| a.min(b))),
            None => arp,
        }
    }

    fn counters(&self) -> Counters {
        let mut c = self.counters.list();
        let bfd = self
            .bfd
            .as_ref()
            .map_or(&self.bfd_counters, |s| &s.counters);
        c.extend(bfd.list());
        c
    }
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
