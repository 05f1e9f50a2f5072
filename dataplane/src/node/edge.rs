//! The NSX Edge: Tier-0 with the Compute and Management Gateways folded in. It routes between
//! the SDDC segments and its uplink into the Connected VPC.
//!
//! Ports: one per interface, in [`EdgeConfig::ifaces`] order (the uplink first, by convention).
//!
//! A router by RFC 1812: ARP on every interface, longest-prefix match over one route table, TTL
//! decrement with an incremental checksum update, ICMP time-exceeded, net- and host-unreachable
//! (never in answer to an ICMP error), echo replies for its own addresses, port-unreachable for
//! UDP to them (so traceroute ends there). Routes marked `snat` (S3's prefix list) leave with
//! their source translated to the uplink address; answers are translated back.
//!
//! A standby Edge forwards nothing and answers nothing until it is made active.

use std::net::Ipv4Addr;

use bytes::BytesMut;
use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;

use super::arp_cache::{ArpCache, Enqueued};
use super::route::RouteTable;
use super::{Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::arp::{Arp, OP_REPLY, OP_REQUEST};
use crate::wire::icmp::{self, CODE_HOST_UNREACHABLE, CODE_NET_UNREACHABLE, CODE_PORT_UNREACHABLE};
use crate::wire::ipv4::{self, Ipv4View, Side, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{self, make_mut, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// What an interface connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceRole {
    /// Tier-0's uplink into the Connected VPC.
    Uplink,
    /// A segment's gateway (CGW or MGW).
    Segment,
}

/// One interface of the Edge.
#[derive(Debug, Clone)]
pub struct EdgeIface {
    /// `uplink`, or the segment's name.
    pub name: String,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The connected network.
    pub net: Ipv4Net,
    pub role: IfaceRole,
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
        pub icmp_errors_sent,
        pub snat_out,
        pub snat_in,
        pub rx_dropped_standby,
        pub rx_dropped_not_my_mac,
        pub rx_dropped_bad_header,
        pub rx_dropped_ttl_exceeded,
        pub rx_dropped_no_route,
        pub rx_dropped_not_handled,
        pub tx_dropped_arp_failed,
        pub tx_dropped_arp_queue_full,
        pub tx_dropped_nat_exhausted,
    }
}

/// Source NAT to one external address, endpoint-independent: one inside (address, port) maps to
/// one external port, whoever the peer. ICMP echo uses the identifier as the port.
#[derive(Debug, Default)]
struct Snat {
    external: Option<Ipv4Addr>,
    next_port: u16,
    outbound: FxHashMap<(u8, Ipv4Addr, u16), u16>,
    inbound: FxHashMap<(u8, u16), (Ipv4Addr, u16)>,
}

/// First external port handed out.
const NAT_FIRST_PORT: u16 = 1024;

impl Snat {
    /// The L4 "port" a packet is keyed on, by direction: source (outbound) or destination.
    fn port(v: &Ipv4View<'_>, side: Side) -> Option<u16> {
        match v.protocol() {
            PROTO_TCP | PROTO_UDP => v
                .ports()
                .map(|(s, d)| if side == Side::Src { s } else { d }),
            PROTO_ICMP => {
                let p = v.payload();
                let want = if side == Side::Src {
                    icmp::TYPE_ECHO_REQUEST
                } else {
                    icmp::TYPE_ECHO_REPLY
                };
                (p.len() >= 8 && p[0] == want).then(|| u16::from_be_bytes([p[4], p[5]]))
            }
            _ => None,
        }
    }

    /// Translate an outbound packet's source; false if it cannot be (no port free, no L4).
    fn translate_out(&mut self, f: &mut [u8]) -> bool {
        let Some(ext) = self.external else {
            return false;
        };
        let Some(v) = Ipv4View::parse(f) else {
            return false;
        };
        let Some(port) = Self::port(&v, Side::Src) else {
            return false;
        };
        let key = (v.protocol(), v.src(), port);
        let ext_port = match self.outbound.get(&key) {
            Some(&p) => p,
            None => {
                if self.next_port == 0 {
                    self.next_port = NAT_FIRST_PORT;
                }
                if self.inbound.len() >= (u16::MAX - NAT_FIRST_PORT) as usize {
                    return false;
                }
                let p = self.next_port;
                self.next_port = self.next_port.checked_add(1).unwrap_or(NAT_FIRST_PORT);
                self.outbound.insert(key, p);
                self.inbound.insert((key.0, p), (key.1, key.2));
                p
            }
        };
        ipv4::rewrite_addr(f, Side::Src, ext);
        ipv4::rewrite_port(f, Side::Src, ext_port);
        true
    }

    /// Translate an inbound answer's destination back; false if no mapping holds it.
    fn translate_in(&mut self, f: &mut [u8]) -> bool {
        let Some(v) = Ipv4View::parse(f) else {
            return false;
        };
        let Some(port) = Self::port(&v, Side::Dst) else {
            return false;
        };
        let Some(&(ip, p)) = self.inbound.get(&(v.protocol(), port)) else {
            return false;
        };
        ipv4::rewrite_addr(f, Side::Dst, ip);
        ipv4::rewrite_port(f, Side::Dst, p);
        true
    }
}

/// The Edge.
#[derive(Debug)]
pub struct Edge {
    name: String,
    active: bool,
    ifaces: Vec<EdgeIface>,
    routes: RouteTable<EdgeRoute>,
    arp: ArpCache,
    snat: Snat,
    pub counters: EdgeCounters,
}

impl Edge {
    /// A new Edge with a connected route per interface; standby until [`Edge::set_active`].
    pub fn new(cfg: EdgeConfig) -> Self {
        let mut routes = RouteTable::new();
        for (i, ifc) in cfg.ifaces.iter().enumerate() {
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
        Edge {
            name: cfg.name,
            active: false,
            ifaces: cfg.ifaces,
            routes,
            arp: ArpCache::default(),
            snat: Snat {
                external,
                ..Snat::default()
            },
            counters: EdgeCounters::default(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn set_active(&mut self, active: bool) {
        self.active = active;
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
        self.ifaces.iter().any(|i| i.ip == ip)
    }

    fn on_arp(&mut self, now: Instant, port: usize, frame: &Frame, out: &mut Outbox) {
        let Some(a) = Arp::parse(frame) else {
            self.counters.rx_dropped_bad_header += 1;
            return;
        };
        let ifc = &self.ifaces[port];
        let for_us = a.target_ip == ifc.ip;
        if a.op == OP_REQUEST && for_us {
            self.counters.arp_replies_sent += 1;
            out.send(port as Port, a.reply_from(ifc.mac).to_frame());
        }
        // Learn from requests for us and from every reply (RFC 826 merge), and from gratuitous
        // ARP of a neighbour already known.
        let known = self.arp.lookup(port, a.sender_ip).is_some();
        if (for_us || a.op == OP_REPLY || known) && ifc.net.contains(&a.sender_ip) {
            for f in self.arp.learn(port, a.sender_ip, a.sender_mac) {
                self.transmit_resolved(port, a.sender_mac, f, out);
            }
        }
        let _ = now;
    }

    /// Route a packet that this Edge forwards (TTL already checked and decremented).
    fn forward(&mut self, now: Instant, in_port: usize, f: BytesMut, out: &mut Outbox) {
        let Some((src, dst)) = Ipv4View::parse(&f).map(|v| (v.src(), v.dst())) else {
            return;
        };
        let Some(route) = self.routes.lookup(dst).map(|r| r.target) else {
            self.counters.rx_dropped_no_route += 1;
            self.icmp_error(
                now,
                in_port,
                icmp::TYPE_DEST_UNREACHABLE,
                CODE_NET_UNREACHABLE,
                &f,
                out,
            );
            return;
        };
        let mut f = f;
        if route.snat && src != self.snat.external.unwrap_or(Ipv4Addr::UNSPECIFIED) {
            if !self.snat.translate_out(&mut f) {
                self.counters.tx_dropped_nat_exhausted += 1;
                return;
            }
            self.counters.snat_out += 1;
        }
        self.counters.forwarded += 1;
        let nh = match route.next_hop {
            NextHop::Connected => dst,
            NextHop::Gateway(gw) => gw,
        };
        self.transmit(now, route.iface, nh, f.freeze(), out);
    }

    /// Send an IP frame out of `iface` to next hop `nh`, resolving its MAC.
    fn transmit(
        &mut self,
        now: Instant,
        iface: usize,
        nh: Ipv4Addr,
        frame: Frame,
        out: &mut Outbox,
    ) {
        if let Some(mac) = self.arp.lookup(iface, nh) {
            return self.transmit_resolved(iface, mac, frame, out);
        }
        match self.arp.enqueue(now, iface, nh, frame) {
            Enqueued::SendRequest => self.send_arp_request(iface, nh, out),
            Enqueued::Waiting => {}
            Enqueued::Dropped => self.counters.tx_dropped_arp_queue_full += 1,
        }
    }

    fn transmit_resolved(&mut self, iface: usize, mac: MacAddr, frame: Frame, out: &mut Outbox) {
        let mut f = make_mut(frame);
        wire::set_macs(&mut f, mac, self.ifaces[iface].mac);
        out.send(iface as Port, f.freeze());
    }

    fn send_arp_request(&mut self, iface: usize, ip: Ipv4Addr, out: &mut Outbox) {
        let ifc = &self.ifaces[iface];
        self.counters.arp_requests_sent += 1;
        out.send(iface as Port, Arp::request(ifc.mac, ifc.ip, ip).to_frame());
    }

    /// Answer `offending` with an ICMP error from the address of interface `from`.
    fn icmp_error(
        &mut self,
        now: Instant,
        from: usize,
        t: u8,
        code: u8,
        offending: &[u8],
        out: &mut Outbox,
    ) {
        let Some(v) = Ipv4View::parse(offending) else {
            return;
        };
        if icmp::is_error(&v) || v.src().is_unspecified() || v.src().is_broadcast() {
            return;
        }
        let src = self.ifaces[from].ip;
        let e = icmp::error(MacAddr::default(), MacAddr::default(), src, t, code, &v);
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
        let nh = match route.next_hop {
            NextHop::Connected => dst,
            NextHop::Gateway(gw) => gw,
        };
        self.transmit(now, route.iface, nh, frame, out);
    }

    /// A packet for one of the Edge's own addresses.
    fn deliver_local(&mut self, now: Instant, in_port: usize, frame: Frame, out: &mut Outbox) {
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
                self.counters.delivered_local += 1;
                self.icmp_error(
                    now,
                    in_port,
                    icmp::TYPE_DEST_UNREACHABLE,
                    CODE_PORT_UNREACHABLE,
                    &frame,
                    out,
                );
            }
            _ => self.counters.rx_dropped_not_handled += 1,
        }
    }

    fn on_ipv4(&mut self, now: Instant, port: usize, frame: Frame, out: &mut Outbox) {
        let (dst, ttl) = match Ipv4View::parse(&frame) {
            Some(v) if v.checksum_ok() => (v.dst(), v.ttl()),
            _ => {
                self.counters.rx_dropped_bad_header += 1;
                return;
            }
        };
        let mut f = make_mut(frame);
        if self.is_own_ip(dst) {
            let is_nat_answer = self.ifaces[port].role == IfaceRole::Uplink
                && Some(dst) == self.snat.external
                && self.snat.translate_in(&mut f);
            if !is_nat_answer {
                return self.deliver_local(now, port, f.freeze(), out);
            }
            self.counters.snat_in += 1;
        }
        if ttl <= 1 {
            self.counters.rx_dropped_ttl_exceeded += 1;
            let code = icmp::CODE_TTL_EXCEEDED;
            self.icmp_error(now, port, icmp::TYPE_TIME_EXCEEDED, code, &f, out);
            return;
        }
        ipv4::decrement_ttl(&mut f);
        self.forward(now, port, f, out);
    }
}

impl Node for Edge {
    fn name(&self) -> &str {
        &self.name
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
        let port = port as usize;
        if !self.active {
            self.counters.rx_dropped_standby += 1;
            return;
        }
        let Some(ifc) = self.ifaces.get(port) else {
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
            _ => self.counters.rx_dropped_not_handled += 1,
        }
    }

    fn poll(&mut self, now: Instant, out: &mut Outbox) {
        let ex = self.arp.expire(now);
        for (iface, ip) in ex.retry {
            self.send_arp_request(iface, ip, out);
        }
        for f in ex.failed {
            self.counters.tx_dropped_arp_failed += 1;
            let from = self.uplink().unwrap_or(0);
            let from = Ipv4View::parse(&f)
                .and_then(|v| self.routes.lookup(v.src()).map(|r| r.target.iface))
                .unwrap_or(from);
            self.icmp_error(
                now,
                from,
                icmp::TYPE_DEST_UNREACHABLE,
                CODE_HOST_UNREACHABLE,
                &f,
                out,
            );
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        self.arp.next_deadline()
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
