use super::*;

use bytes::BytesMut;
use etherparse::{Icmpv4Header, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::time::Duration;

use crate::node::arp_cache::{MAX_QUEUED, MAX_TRIES, RETRY};
use crate::node::Notice;
use crate::wire::checksum;
use crate::wire::icmp::{
    TYPE_DEST_UNREACHABLE, TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST, TYPE_TIME_EXCEEDED,
};
use crate::wire::ipv4::tests::udp_frame;
use crate::wire::ipv4::PROTO_TCP;

// ---------------------------------------------------------------------------------------------
// The lab: the Edge's three interfaces and the neighbours on them.
// ---------------------------------------------------------------------------------------------

const UPLINK: Port = 0;
const SEG1: Port = 1;
const SEG2: Port = 2;

/// The Edge's interface MACs, by port.
const EMAC: [MacAddr; 3] = [
    MacAddr::local(0xed, 0),
    MacAddr::local(0xed, 1),
    MacAddr::local(0xed, 2),
];
/// The Edge's interface addresses, by port.
const EIP: [Ipv4Addr; 3] = [
    Ipv4Addr::new(172, 31, 0, 30),
    Ipv4Addr::new(192, 168, 1, 1),
    Ipv4Addr::new(192, 168, 2, 1),
];
const UPLINK_IP: Ipv4Addr = EIP[0];
const CGW1: Ipv4Addr = EIP[1];
const CGW2: Ipv4Addr = EIP[2];

/// The VPC router, the uplink's gateway.
const GW: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const GW_MAC: MacAddr = MacAddr::local(0xaa, 1);
/// VMs on segment 1 and segment 2.
const VM1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const VM1_MAC: MacAddr = MacAddr::local(0x10, 10);
const VM2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
const VM2_MAC: MacAddr = MacAddr::local(0x10, 11);
const VM3: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);
const VM3_MAC: MacAddr = MacAddr::local(0x20, 10);
/// An EC2 instance in the Connected VPC (reached through the gateway, no SNAT).
const EC2: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);
/// S3 (reached through the gateway with SNAT).
const S3: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const S3_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// Nothing routes here.
const NOWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

/// The MAC a frame arriving on `port` comes from, by default.
fn neighbour_mac(port: Port) -> MacAddr {
    match port {
        UPLINK => GW_MAC,
        SEG1 => VM1_MAC,
        _ => VM3_MAC,
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn lab_edge() -> Edge {
    let iface = |i: usize, name: &str, n: &str, role| EdgeIface {
        name: name.into(),
        mac: EMAC[i],
        ip: EIP[i],
        net: net(n),
        role,
        mtu: 1500,
    };
    let mut e = Edge::new(EdgeConfig {
        name: "edge-1".into(),
        ifaces: vec![
            iface(0, "uplink", "172.31.0.0/26", IfaceRole::Uplink),
            iface(
                1,
                "sddc-cgw-network-1",
                "192.168.1.0/24",
                IfaceRole::Segment,
            ),
            iface(
                2,
                "sddc-cgw-network-2",
                "192.168.2.0/24",
                IfaceRole::Segment,
            ),
        ],
    });
    e.set_active(true);
    e.add_static_route(net("172.31.0.0/16"), GW, false);
    e.add_static_route(net("198.51.100.0/24"), GW, true);
    e
}

type Out = Vec<(Port, Frame)>;

/// The Edge and a clock.
struct Lab {
    e: Edge,
    now: Instant,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            e: lab_edge(),
            now: Instant::ZERO,
        }
    }

    /// A frame arrives on `port`, as is.
    fn rx(&mut self, port: Port, f: impl Into<Frame>) -> Out {
        let mut out = Outbox::new();
        self.e.handle(self.now, port, f.into(), &mut out);
        out.drain().collect()
    }

    /// An IP frame arrives on `port` from the default neighbour there, addressed to the Edge.
    fn rx_ip(&mut self, port: Port, f: BytesMut) -> Out {
        self.rx_ip_from(port, neighbour_mac(port), f)
    }

    fn rx_ip_from(&mut self, port: Port, from: MacAddr, mut f: BytesMut) -> Out {
        wire::set_macs(&mut f, EMAC[port as usize], from);
        self.rx(port, f)
    }

    /// `ip` at `mac` answers the Edge's ARP request on `port`.
    fn arp_reply(&mut self, port: Port, ip: Ipv4Addr, mac: MacAddr) -> Out {
        let a = Arp {
            op: OP_REPLY,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: EMAC[port as usize],
            target_ip: EIP[port as usize],
        };
        self.rx(port, a.to_frame())
    }

    /// Teach the Edge the router's and the VMs' MACs.
    fn resolve_all(&mut self) {
        assert!(self.arp_reply(UPLINK, GW, GW_MAC).is_empty());
        assert!(self.arp_reply(SEG1, VM1, VM1_MAC).is_empty());
        assert!(self.arp_reply(SEG1, VM2, VM2_MAC).is_empty());
        assert!(self.arp_reply(SEG2, VM3, VM3_MAC).is_empty());
    }

    fn poll(&mut self) -> Out {
        let mut out = Outbox::new();
        self.e.poll(self.now, &mut out);
        out.drain().collect()
    }

    /// Move the clock to the Edge's next deadline and poll.
    fn poll_at_deadline(&mut self) -> Out {
        let at = self.e.poll_at().expect("a deadline");
        assert!(at >= self.now, "deadline in the past");
        self.now = at;
        self.poll()
    }
}

// ---------------------------------------------------------------------------------------------
// Frames to send.
// ---------------------------------------------------------------------------------------------

fn udp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, sport: u16, dport: u16) -> BytesMut {
    udp_frame(src, dst, ttl, sport, dport, b"vmcnet udp payload")
}

fn built(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> BytesMut {
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    BytesMut::from(&v[..])
}

fn ip_builder(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
        src.octets(),
        dst.octets(),
        ttl,
    )
}

/// A TCP SYN (or SYN-ACK when `ack` is given) with a correct checksum.
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    sport: u16,
    dport: u16,
    ack: Option<u32>,
) -> BytesMut {
    let mut b = ip_builder(src, dst, ttl)
        .tcp(sport, dport, 0x0102_0304, 64240)
        .syn();
    if let Some(a) = ack {
        b = b.ack(a);
    }
    built(b, b"")
}

fn tcp_syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> BytesMut {
    tcp(src, dst, 64, sport, dport, None)
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, id: u16, seq: u16, reply: bool) -> BytesMut {
    let b = ip_builder(src, dst, ttl);
    let b = if reply {
        b.icmpv4_echo_reply(id, seq)
    } else {
        b.icmpv4_echo_request(id, seq)
    };
    let mut v = Vec::new();
    b.write(&mut v, b"ping payload 0123456789").unwrap();
    BytesMut::from(&v[..])
}

/// An ICMP error (type `t`, code `c`) quoting `quoted` (an IP packet).
fn icmp_err(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, t: u8, c: u8, quoted: &[u8]) -> BytesMut {
    let b = ip_builder(src, dst, ttl).icmpv4_raw(t, c, [0; 4]);
    let mut v = Vec::new();
    b.write(&mut v, quoted).unwrap();
    BytesMut::from(&v[..])
}

/// Recompute the IPv4 header checksum of a frame after editing the header.
fn fix_ip_checksum(f: &mut [u8]) {
    let ihl = (f[14] & 0x0f) as usize * 4;
    f[24] = 0;
    f[25] = 0;
    let c = checksum::checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Set the fragment offset field (in 8-byte units) and the MF flag.
fn set_fragment(f: &mut [u8], offset: u16, more: bool) {
    let v = offset | if more { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&v.to_be_bytes());
    fix_ip_checksum(f);
}

/// The IP packet of a frame (header and payload).
fn ip_packet(f: &[u8]) -> &[u8] {
    Ipv4View::parse(f).unwrap().packet()
}

// ---------------------------------------------------------------------------------------------
// Checks on frames that come out.
// ---------------------------------------------------------------------------------------------

fn one(out: Out) -> (Port, Frame) {
    assert_eq!(out.len(), 1, "expected one frame, got {out:?}");
    out.into_iter().next().unwrap()
}

fn macs(f: &[u8]) -> (MacAddr, MacAddr) {
    (wire::eth_dst(f).unwrap(), wire::eth_src(f).unwrap())
}

fn arp_of(f: &[u8]) -> Arp {
    Arp::parse(f).expect("an ARP frame")
}

/// Assert the frame is the Edge's ARP request on `port` for `ip`.
fn assert_arp_request(p: Port, f: &[u8], port: Port, ip: Ipv4Addr) {
    assert_eq!(p, port);
    assert_eq!(macs(f), (MacAddr::BROADCAST, EMAC[port as usize]));
    let a = arp_of(f);
    assert_eq!(a.op, OP_REQUEST);
    assert_eq!(
        (a.sender_mac, a.sender_ip),
        (EMAC[port as usize], EIP[port as usize])
    );
    assert_eq!(a.target_ip, ip);
    let e = SlicedPacket::from_ethernet(f).unwrap();
    assert!(matches!(e.net, Some(NetSlice::Arp(_))));
}

/// Every checksum of an IPv4 frame holds, by this crate's checker and independently by
/// etherparse. Returns the view.
fn check_ipv4(f: &[u8]) -> Ipv4View<'_> {
    let v = Ipv4View::parse(f).expect("an IPv4 frame");
    assert!(v.checksum_ok(), "IP header checksum");
    assert!(ipv4::l4_checksum_ok(f), "L4 checksum");
    let e = SlicedPacket::from_ethernet(f).expect("etherparse parses it");
    let Some(NetSlice::Ipv4(ip)) = &e.net else {
        panic!("etherparse: not IPv4")
    };
    let h = ip.header();
    assert_eq!(
        h.header_checksum(),
        h.to_header().calc_header_checksum(),
        "etherparse: IP checksum"
    );
    let (s, d) = (h.source(), h.destination());
    match &e.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.calc_checksum_ipv4(s, d).unwrap(),
                "etherparse: TCP checksum"
            )
        }
        Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let c = u
                .to_header()
                .calc_checksum_ipv4_raw(s, d, u.payload())
                .unwrap();
            assert_eq!(u.checksum(), c, "etherparse: UDP checksum");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let c = Icmpv4Header::with_checksum(i.icmp_type(), i.payload()).checksum;
            assert_eq!(i.checksum(), c, "etherparse: ICMP checksum");
        }
        _ => {}
    }
    v
}

/// Type, code and the body after the 8-byte ICMP header (for an error: the quoted packet).
fn icmp_of(f: &[u8]) -> (u8, u8, &[u8]) {
    let v = Ipv4View::parse(f).unwrap();
    assert_eq!(v.protocol(), PROTO_ICMP);
    let p = v.payload();
    (p[0], p[1], &p[8..])
}

/// Assert `f` is an ICMP error of type `t` / code `code` from `src` to `dst`, leaving on
/// `port` to `dst_mac`, with every checksum valid and the TTL of a packet the Edge originates.
#[allow(clippy::too_many_arguments)]
fn assert_icmp_error(
    p: Port,
    f: &[u8],
    port: Port,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    t: u8,
    code: u8,
) {
    assert_eq!(p, port);
    assert_eq!(macs(f), (dst_mac, EMAC[port as usize]));
    let v = check_ipv4(f);
    assert_eq!((v.src(), v.dst()), (src, dst));
    assert_eq!(v.ttl(), icmp::DEFAULT_TTL);
    let (ty, c, _) = icmp_of(f);
    assert_eq!((ty, c), (t, code));
    assert!(icmp::is_error(&v));
}

/// The quoted part of an ICMP error: the offending packet's header and first 8 payload bytes.
fn quote_of(original: &[u8]) -> &[u8] {
    let v = Ipv4View::parse(original).unwrap();
    &v.packet()[..v.header_len() + 8]
}

fn ports_of(f: &[u8]) -> (u16, u16) {
    Ipv4View::parse(f).unwrap().ports().unwrap()
}

fn echo_id(f: &[u8]) -> u16 {
    let p = Ipv4View::parse(f).unwrap().payload();
    u16::from_be_bytes([p[4], p[5]])
}

fn ttl_of(f: &[u8]) -> u8 {
    Ipv4View::parse(f).unwrap().ttl()
}

/// `out` holds only ARP frames (what may legitimately leave while nothing else should).
fn only_arp(out: &Out) -> bool {
    out.iter()
        .all(|(_, f)| wire::ethertype(f) == Some(ETHERTYPE_ARP))
}

/// Forwarded frames equal the original apart from MACs, TTL (one less) and header checksum.
fn assert_forwarded_intact(original: &[u8], fwd: &[u8]) {
    assert_eq!(original.len(), fwd.len());
    assert_eq!(
        ttl_of(fwd),
        ttl_of(original) - 1,
        "TTL decremented by exactly one"
    );
    assert_eq!(
        original[12..22],
        fwd[12..22],
        "ethertype, version, length, id, flags"
    );
    assert_eq!(original[23], fwd[23], "protocol");
    assert_eq!(original[26..], fwd[26..], "addresses and payload");
}

// ---------------------------------------------------------------------------------------------
// Construction and the Node trait.
// ---------------------------------------------------------------------------------------------

#[test]
fn new_edge_is_standby_and_describes_itself() {
    let mut e = lab_edge();
    assert!(e.is_active());
    e.set_active(false);
    assert!(!e.is_active());
    let fresh = Edge::new(EdgeConfig {
        name: "edge-2".into(),
        ifaces: lab_edge().ifaces().to_vec(),
    });
    assert!(!fresh.is_active(), "an Edge starts as standby");
    assert_eq!(fresh.name(), "edge-2");
    assert_eq!(fresh.kind(), "edge");
    assert_eq!(fresh.uplink(), Some(0));
    assert_eq!(fresh.port_name(0), "uplink");
    assert_eq!(fresh.port_name(2), "sddc-cgw-network-2");
    assert_eq!(fresh.port_name(7), "p7");
    assert_eq!(fresh.poll_at(), None);
    let names: Vec<_> = fresh.counters().iter().map(|c| c.0).collect();
    assert!(names.contains(&"rx_dropped_ttl_exceeded") && names.contains(&"snat_out"));
    assert!(fresh.counters().iter().all(|c| c.1 == 0));
    // A connected route per interface.
    assert_eq!(fresh.routes().len(), 3);
    let r = fresh.routes().lookup(VM3).unwrap();
    assert_eq!(
        r.target,
        EdgeRoute {
            iface: 2,
            next_hop: NextHop::Connected,
            snat: false
        }
    );
}

#[test]
fn static_routes_resolve_their_interface_and_replace_by_prefix() {
    let mut e = lab_edge();
    assert_eq!(e.routes().len(), 5);
    let r = e.routes().lookup(S3).unwrap().target;
    assert_eq!(
        r,
        EdgeRoute {
            iface: 0,
            next_hop: NextHop::Gateway(GW),
            snat: true
        }
    );
    let r = e.routes().lookup(EC2).unwrap().target;
    assert_eq!(
        r,
        EdgeRoute {
            iface: 0,
            next_hop: NextHop::Gateway(GW),
            snat: false
        }
    );
    // The connected /26 is more specific than the static /16.
    let r = e
        .routes()
        .lookup(Ipv4Addr::new(172, 31, 0, 5))
        .unwrap()
        .target;
    assert_eq!(r.next_hop, NextHop::Connected);
    // A gateway on no interface's network is refused.
    e.add_static_route(net("10.0.0.0/8"), Ipv4Addr::new(10, 9, 9, 9), false);
    assert!(e.routes().lookup(Ipv4Addr::new(10, 1, 1, 1)).is_none());
    // Same prefix again: replaced (SNAT turned off).
    e.add_static_route(net("198.51.100.0/24"), GW, false);
    assert_eq!(e.routes().len(), 5);
    assert!(!e.routes().lookup(S3).unwrap().target.snat);
}

// ---------------------------------------------------------------------------------------------
// 1. ARP.
// ---------------------------------------------------------------------------------------------

#[test]
fn arp_request_for_interface_address_gets_reply_with_interface_mac() {
    let mut lab = Lab::new();
    let req = Arp::request(VM1_MAC, VM1, CGW1).to_frame();
    let (p, f) = one(lab.rx(SEG1, req));
    assert_eq!(p, SEG1);
    assert_eq!(macs(&f), (VM1_MAC, EMAC[1]));
    let a = arp_of(&f);
    assert_eq!(
        a,
        Arp {
            op: OP_REPLY,
            sender_mac: EMAC[1],
            sender_ip: CGW1,
            target_mac: VM1_MAC,
            target_ip: VM1
        }
    );
    let e = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(NetSlice::Arp(ea)) = e.net else {
        panic!("etherparse: not ARP")
    };
    assert_eq!(ea.sender_hw_addr(), &EMAC[1].0[..]);
    assert_eq!(ea.sender_protocol_addr(), &CGW1.octets()[..]);
    assert_eq!(lab.e.counters.arp_replies_sent, 1);

    // The uplink answers for its own address too.
    let req = Arp::request(GW_MAC, GW, UPLINK_IP).to_frame();
    let (p, f) = one(lab.rx(UPLINK, req));
    assert_eq!(
        (p, arp_of(&f).sender_mac, arp_of(&f).sender_ip),
        (UPLINK, EMAC[0], UPLINK_IP)
    );

    // The request taught the Edge the asker's MAC: a packet to it leaves at once, no ARP.
    let (p, f) = one(lab.rx_ip(SEG2, udp(VM3, VM1, 64, 5000, 53)));
    assert_eq!((p, macs(&f)), (SEG1, (VM1_MAC, EMAC[1])));
    assert_eq!(lab.e.counters.arp_requests_sent, 0);
}

#[test]
fn arp_request_for_any_other_address_gets_nothing() {
    let mut lab = Lab::new();
    for target in [Ipv4Addr::new(192, 168, 1, 50), CGW2, UPLINK_IP, VM2] {
        let req = Arp::request(VM1_MAC, VM1, target).to_frame();
        assert!(
            lab.rx(SEG1, req).is_empty(),
            "answered ARP for {target} on segment 1"
        );
    }
    // Nor for a segment's gateway asked on the uplink (no proxy ARP).
    assert!(lab
        .rx(UPLINK, Arp::request(GW_MAC, GW, CGW1).to_frame())
        .is_empty());
    assert_eq!(lab.e.counters.arp_replies_sent, 0);
}

#[test]
fn arp_reply_is_not_answered_and_short_arp_is_a_bad_header() {
    let mut lab = Lab::new();
    // A reply for the Edge (unsolicited) is learned, never answered.
    assert!(lab.arp_reply(SEG1, VM1, VM1_MAC).is_empty());
    let req = Arp::request(VM1_MAC, VM1, CGW1).to_frame();
    assert!(lab.rx(SEG1, &req[..30]).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_bad_header, 1);
    // Hardware type other than Ethernet.
    let mut bad = req.to_vec();
    bad[15] = 6;
    assert!(lab.rx(SEG1, bad).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_bad_header, 2);
}

#[test]
fn frame_to_unknown_unicast_mac_is_dropped() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut f = udp(VM1, EC2, 64, 1000, 2000);
    wire::set_macs(&mut f, VM2_MAC, VM1_MAC);
    assert!(lab.rx(SEG1, f).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_not_my_mac, 1);
    // Another interface's MAC is not this port's MAC.
    let mut f = udp(VM1, EC2, 64, 1000, 2000);
    wire::set_macs(&mut f, EMAC[2], VM1_MAC);
    assert!(lab.rx(SEG1, f).is_empty());
    // An ARP request sent unicast to someone else.
    let mut a = Arp::request(VM1_MAC, VM1, CGW1).to_frame().to_vec();
    a[0..6].copy_from_slice(&VM2_MAC.0);
    assert!(lab.rx(SEG1, a).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_not_my_mac, 3);
    assert_eq!(lab.e.counters.forwarded, 0);
}

#[test]
fn other_ethertypes_are_not_handled() {
    let mut lab = Lab::new();
    let mut f = udp(VM1, EC2, 64, 1, 2).to_vec();
    f[0..6].copy_from_slice(&EMAC[1].0);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes()); // IPv6
    assert!(lab.rx(SEG1, f).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_not_handled, 1);
}

#[test]
fn gratuitous_arp_updates_a_known_neighbour_only() {
    let mut lab = Lab::new();
    let new_mac = MacAddr::local(0xaa, 2);
    let garp = |mac| Arp::request(mac, GW, GW).to_frame();
    // Unknown neighbour: a gratuitous ARP does not create an entry.
    assert!(lab.rx(UPLINK, garp(new_mac)).is_empty());
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, GW);
    let (_, f) = one(lab.arp_reply(UPLINK, GW, GW_MAC));
    assert_eq!(macs(&f).0, GW_MAC);
    // Known neighbour moved (failover, vMotion): the next packet follows the new MAC.
    assert!(lab.rx(UPLINK, garp(new_mac)).is_empty());
    let (_, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_eq!(macs(&f), (new_mac, EMAC[0]));
}

// ---------------------------------------------------------------------------------------------
// 2. Forwarding.
// ---------------------------------------------------------------------------------------------

#[test]
fn forwarding_holds_packet_until_next_hop_resolves() {
    let mut lab = Lab::new();
    let mut orig = udp(VM1, EC2, 64, 40000, 8080);
    wire::set_macs(&mut orig, EMAC[1], VM1_MAC);
    let (p, f) = one(lab.rx(SEG1, orig.clone()));
    assert_arp_request(p, &f, UPLINK, GW);
    assert_eq!(lab.e.counters.arp_requests_sent, 1);
    assert_eq!(lab.e.poll_at(), Some(Instant::ZERO + RETRY));

    let (p, f) = one(lab.arp_reply(UPLINK, GW, GW_MAC));
    assert_eq!(p, UPLINK);
    assert_eq!(macs(&f), (GW_MAC, EMAC[0]));
    let v = check_ipv4(&f);
    assert_eq!((v.src(), v.dst(), v.ttl()), (VM1, EC2, 63));
    assert_forwarded_intact(&orig, &f);
    assert_eq!(lab.e.poll_at(), None, "nothing left pending");
    assert_eq!(lab.e.counters.forwarded, 1);

    // Resolved now: the next packet leaves at once.
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 9, 40000, 8080)));
    assert_eq!((p, ttl_of(&f)), (UPLINK, 8));
    assert_eq!(lab.e.counters.arp_requests_sent, 1);
}

#[test]
fn packets_waiting_for_one_next_hop_share_one_request_and_leave_in_order() {
    let mut lab = Lab::new();
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 100)));
    assert_arp_request(p, &f, UPLINK, GW);
    assert!(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 101)).is_empty());
    assert!(lab.rx_ip(SEG2, udp(VM3, S3, 64, 1, 102)).is_empty());
    let out = lab.arp_reply(UPLINK, GW, GW_MAC);
    assert_eq!(out.len(), 3);
    let dports: Vec<u16> = out.iter().map(|(_, f)| ports_of(f).1).collect();
    assert_eq!(dports, vec![100, 101, 102]);
    for (p, f) in &out {
        assert_eq!((*p, macs(f)), (UPLINK, (GW_MAC, EMAC[0])));
        check_ipv4(f);
    }
    assert_eq!(lab.e.counters.arp_requests_sent, 1);
}

#[test]
fn arp_queue_overflow_drops_the_excess() {
    let mut lab = Lab::new();
    for i in 0..MAX_QUEUED + 3 {
        let out = lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, i as u16));
        assert!(only_arp(&out));
    }
    assert_eq!(lab.e.counters.tx_dropped_arp_queue_full, 3);
    let out = lab.arp_reply(UPLINK, GW, GW_MAC);
    assert_eq!(out.len(), MAX_QUEUED);
    let dports: Vec<u16> = out.iter().map(|(_, f)| ports_of(f).1).collect();
    assert_eq!(dports, (0..MAX_QUEUED as u16).collect::<Vec<_>>());
}

#[test]
fn connected_destinations_are_resolved_directly() {
    let mut lab = Lab::new();
    // Segment to segment.
    let orig = udp(VM1, VM3, 64, 1234, 80);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_arp_request(p, &f, SEG2, VM3);
    let (p, f) = one(lab.arp_reply(SEG2, VM3, VM3_MAC));
    assert_eq!((p, macs(&f)), (SEG2, (VM3_MAC, EMAC[2])));
    check_ipv4(&f);
    assert_forwarded_intact(&orig, &f);
    // A host on the uplink's own /26 is not sent to the gateway (longest prefix wins).
    let near = Ipv4Addr::new(172, 31, 0, 5);
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, near, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, near);
}

#[test]
fn inbound_traffic_from_the_vpc_reaches_the_segments() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = tcp(EC2, VM3, 128, 443, 50000, Some(7));
    let (p, f) = one(lab.rx_ip(UPLINK, orig.clone()));
    assert_eq!((p, macs(&f)), (SEG2, (VM3_MAC, EMAC[2])));
    let v = check_ipv4(&f);
    assert_eq!((v.src(), v.dst(), v.ttl()), (EC2, VM3, 127));
    assert_eq!(ports_of(&f), (443, 50000), "no NAT on a non-SNAT route");
    assert_eq!(ip_packet(&f)[20..], ip_packet(&orig)[20..]);
    assert_eq!(lab.e.counters.snat_in, 0);
}

#[test]
fn ttl_two_is_forwarded_with_ttl_one() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 2, 1, 2)));
    assert_eq!((p, ttl_of(&f)), (UPLINK, 1));
    check_ipv4(&f);
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 255, 1, 2)));
    assert_eq!((p, ttl_of(&f)), (UPLINK, 254));
    check_ipv4(&f);
}

#[test]
fn broadcast_mac_carrying_unicast_ip_to_the_edge_is_accepted() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut f = echo(VM1, CGW1, 64, 1, 1, false);
    wire::set_macs(&mut f, MacAddr::BROADCAST, VM1_MAC);
    let (p, r) = one(lab.rx(SEG1, f));
    assert_eq!((p, icmp_of(&r).0), (SEG1, TYPE_ECHO_REPLY));
}

/// The frame with 4 bytes of IP options (record route stub: NOP, NOP, NOP, EOL) added.
fn with_ip_options(f: &[u8]) -> BytesMut {
    let mut g = BytesMut::from(&f[..34]);
    g.extend_from_slice(&[1, 1, 1, 0]);
    g.extend_from_slice(&f[34..]);
    g[14] = 0x46;
    let total = u16::from_be_bytes([g[16], g[17]]) + 4;
    g[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut g);
    g
}

#[test]
fn ip_options_are_carried_quoted_and_skipped_by_snat() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = with_ip_options(&udp(VM1, EC2, 64, 1000, 2000));
    check_ipv4(&orig);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_eq!(p, UPLINK);
    check_ipv4(&f);
    assert_forwarded_intact(&orig, &f);
    // Time exceeded quotes the whole header, options included, and 8 bytes after it.
    let orig = with_ip_options(&udp(VM1, EC2, 1, 1000, 2000));
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    assert_eq!(icmp_of(&f).2.len(), 24 + 8);
    // SNAT finds the ports after the options.
    let out = snat_out(&mut lab, with_ip_options(&tcp_syn(VM1, 40000, S3, 443)));
    let (ext, dport) = ports_of(&out);
    assert!(ext >= 1024);
    assert_eq!(dport, 443);
    let (p, f) = one(lab.rx_ip(
        UPLINK,
        with_ip_options(&tcp(S3, UPLINK_IP, 64, 443, ext, Some(1))),
    ));
    assert_eq!(p, SEG1);
    check_ipv4(&f);
    assert_eq!(ports_of(&f), (443, 40000));
}

#[test]
fn error_toward_an_unroutable_source_goes_nowhere() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let stranger = Ipv4Addr::new(10, 9, 9, 9);
    assert!(lab.rx_ip(UPLINK, udp(stranger, VM1, 1, 1, 2)).is_empty());
    assert!(lab
        .rx_ip(UPLINK, echo(stranger, UPLINK_IP, 64, 1, 1, false))
        .is_empty());
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 1);
    assert_eq!(lab.e.poll_at(), None, "nothing queued");
}

// ---------------------------------------------------------------------------------------------
// 3. TTL exceeded.
// ---------------------------------------------------------------------------------------------

#[test]
fn ttl_one_gets_time_exceeded_from_the_ingress_address() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = udp(VM1, EC2, 1, 33434, 33435);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(
        icmp_of(&f).2,
        quote_of(&orig),
        "quotes the header as received and 8 bytes"
    );
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 1);
    assert_eq!(lab.e.counters.icmp_errors_sent, 1);
    assert_eq!(lab.e.counters.forwarded, 0);

    // From segment 2, the error comes from segment 2's gateway.
    let orig = udp(VM3, S3, 1, 33434, 33436);
    let (p, f) = one(lab.rx_ip(SEG2, orig.clone()));
    assert_icmp_error(p, &f, SEG2, VM3_MAC, CGW2, VM3, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    assert_eq!(
        lab.e.counters.snat_out, 0,
        "nothing translated for a dropped packet"
    );
}

#[test]
fn ttl_zero_gets_time_exceeded_once_the_source_is_resolved() {
    let mut lab = Lab::new();
    let orig = tcp(VM1, EC2, 0, 40000, 22, None);
    // The source's MAC is unknown: the error waits for ARP.
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_arp_request(p, &f, SEG1, VM1);
    let (p, f) = one(lab.arp_reply(SEG1, VM1, VM1_MAC));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 1);
}

#[test]
fn ttl_exceeded_on_the_uplink_answers_from_the_uplink_address() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = echo(EC2, VM1, 1, 9, 1, false);
    let (p, f) = one(lab.rx_ip(UPLINK, orig.clone()));
    assert_icmp_error(p, &f, UPLINK, GW_MAC, UPLINK_IP, EC2, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
}

// ---------------------------------------------------------------------------------------------
// 4. No route, and no error about an error.
// ---------------------------------------------------------------------------------------------

#[test]
fn no_route_gets_net_unreachable_from_the_ingress_address() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = udp(VM1, NOWHERE, 64, 5000, 53);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_DEST_UNREACHABLE, 0);
    let q = icmp_of(&f).2;
    let o = quote_of(&orig);
    assert_eq!(q.len(), 28);
    // The quote may carry the header before or after the TTL decrement; all else is as sent.
    assert_eq!(q[..8], o[..8]);
    assert!(q[8] == 64 || q[8] == 63);
    assert_eq!(q[9], o[9]);
    assert_eq!(q[12..], o[12..]);
    assert_eq!(lab.e.counters.rx_dropped_no_route, 1);
    assert_eq!(lab.e.counters.icmp_errors_sent, 1);
    assert_eq!(lab.e.counters.forwarded, 0);
}

#[test]
fn no_icmp_error_is_sent_about_an_icmp_error() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let inner = udp(EC2, VM1, 60, 53, 5000);
    let inner = &ip_packet(&inner)[..28];
    // Time exceeded with TTL 1.
    let te = icmp_err(VM1, EC2, 1, TYPE_TIME_EXCEEDED, 0, inner);
    check_ipv4(&te);
    assert!(lab.rx_ip(SEG1, te).is_empty());
    // Destination unreachable (each code) with TTL 0 and to nowhere.
    for code in 0..16 {
        assert!(lab
            .rx_ip(
                SEG1,
                icmp_err(VM1, EC2, 0, TYPE_DEST_UNREACHABLE, code, inner)
            )
            .is_empty());
        let out = lab.rx_ip(
            SEG1,
            icmp_err(VM1, NOWHERE, 64, TYPE_DEST_UNREACHABLE, code, inner),
        );
        assert!(out.is_empty());
    }
    // Source quench, redirect, parameter problem with TTL 1.
    for t in [4, 5, 12] {
        assert!(lab
            .rx_ip(SEG1, icmp_err(VM1, EC2, 1, t, 0, inner))
            .is_empty());
    }
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 20);
    assert_eq!(lab.e.counters.rx_dropped_no_route, 16);

    // Unresolved source: not even an ARP request goes out for it.
    let mut lab = Lab::new();
    let out = lab.rx_ip(SEG1, icmp_err(VM1, EC2, 1, TYPE_TIME_EXCEEDED, 0, inner));
    assert!(out.is_empty(), "{out:?}");

    // An ICMP error that is not expired is forwarded like anything else.
    let mut lab = Lab::new();
    lab.resolve_all();
    let (p, f) = one(lab.rx_ip(
        SEG1,
        icmp_err(VM1, EC2, 64, TYPE_DEST_UNREACHABLE, 3, inner),
    ));
    assert_eq!((p, ttl_of(&f)), (UPLINK, 63));
    check_ipv4(&f);
}

#[test]
fn expired_echo_request_gets_time_exceeded() {
    // An echo request is not an error: traceroute -I gets its answer.
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = echo(VM1, EC2, 1, 0x77, 3, false);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_TIME_EXCEEDED, 0);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
}

#[test]
fn no_icmp_error_toward_an_unspecified_or_broadcast_source() {
    let mut lab = Lab::new();
    lab.resolve_all();
    for src in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST] {
        assert!(lab.rx_ip(SEG1, udp(src, EC2, 1, 68, 67)).is_empty());
        assert!(lab.rx_ip(SEG1, udp(src, NOWHERE, 64, 68, 67)).is_empty());
    }
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
}

// ---------------------------------------------------------------------------------------------
// RFC 1812 §4.3.2.7 / RFC 1122 §3.2.2: more datagrams that must never draw an ICMP error.
// ---------------------------------------------------------------------------------------------

#[test]
fn no_icmp_error_about_a_non_initial_fragment() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut f = udp(VM1, EC2, 1, 1, 2);
    set_fragment(&mut f, 185, false);
    let out = lab.rx_ip(SEG1, f);
    assert!(
        out.is_empty(),
        "time exceeded about a later fragment: {out:?}"
    );
    let mut f = udp(VM1, NOWHERE, 64, 1, 2);
    set_fragment(&mut f, 185, true);
    let out = lab.rx_ip(SEG1, f);
    assert!(
        out.is_empty(),
        "net unreachable about a later fragment: {out:?}"
    );
}

#[test]
fn no_icmp_error_about_a_multicast_datagram() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    let llmnr = Ipv4Addr::new(224, 0, 0, 252);
    let ssdp = Ipv4Addr::new(239, 255, 255, 250);
    for (dst, ttl) in [(mdns, 255), (llmnr, 1), (ssdp, 2), (ssdp, 1)] {
        let o = dst.octets();
        let group = MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]);
        let mut f = udp(VM1, dst, ttl, 5353, 5353);
        wire::set_macs(&mut f, group, VM1_MAC);
        let out = lab.rx(SEG1, f);
        assert!(
            out.is_empty(),
            "ICMP error about a datagram to {dst} (TTL {ttl}): {out:?}"
        );
    }
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
    // Not routed either: there is no multicast routing.
    assert_eq!(lab.e.counters.rx_dropped_not_routable, 4);
    assert_eq!(lab.e.counters.forwarded, 0);
}

#[test]
fn limited_broadcast_is_neither_forwarded_nor_answered() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut f = udp(VM1, Ipv4Addr::BROADCAST, 64, 137, 137);
    wire::set_macs(&mut f, MacAddr::BROADCAST, VM1_MAC);
    let out = lab.rx(SEG1, f);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
    assert_eq!(lab.e.counters.rx_dropped_not_routable, 1);
    assert_eq!(lab.e.counters.rx_dropped_no_route, 0);
}

#[test]
fn directed_broadcasts_are_not_forwarded() {
    // RFC 2644: a router does not forward a directed broadcast (smurf amplification).
    let mut lab = Lab::new();
    lab.resolve_all();
    let seg2_bcast = Ipv4Addr::new(192, 168, 2, 255);
    let uplink_bcast = Ipv4Addr::new(172, 31, 0, 63);
    for (port, dst, ttl) in [
        (SEG1, seg2_bcast, 64),
        (UPLINK, seg2_bcast, 64),
        (SEG1, seg2_bcast, 1),
        (SEG1, Ipv4Addr::new(192, 168, 1, 255), 64),
        (SEG1, uplink_bcast, 64),
    ] {
        let src = if port == UPLINK { EC2 } else { VM1 };
        let out = lab.rx_ip(port, echo(src, dst, ttl, 1, 1, false));
        assert!(out.is_empty(), "to {dst} from port {port}: {out:?}");
    }
    assert_eq!(lab.e.counters.rx_dropped_not_routable, 5);
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
    assert_eq!(lab.e.counters.forwarded, 0);
    // The address below the broadcast is an ordinary host.
    let (p, _) = one(lab.rx_ip(SEG1, udp(VM1, Ipv4Addr::new(192, 168, 2, 254), 64, 1, 2)));
    assert_eq!(p, SEG2);
}

#[test]
fn unicast_packets_sent_as_link_layer_broadcast_are_neither_routed_nor_answered() {
    // RFC 1812 §5.3.4 and §4.3.2.7: a link-layer broadcast is not routed, nor answered with an
    // error, whatever its IP destination.
    let mut lab = Lab::new();
    lab.resolve_all();
    for (dst, ttl) in [(EC2, 64), (EC2, 1), (NOWHERE, 64), (VM3, 64)] {
        let mut f = udp(VM1, dst, ttl, 1, 2);
        wire::set_macs(&mut f, MacAddr::BROADCAST, VM1_MAC);
        let out = lab.rx(SEG1, f);
        assert!(out.is_empty(), "to {dst} (TTL {ttl}): {out:?}");
    }
    // Nor UDP to the Edge's own address: no port unreachable about a broadcast frame.
    let mut f = udp(VM1, CGW1, 64, 1, 2);
    wire::set_macs(&mut f, MacAddr::BROADCAST, VM1_MAC);
    assert!(lab.rx(SEG1, f).is_empty());
    let c = &lab.e.counters;
    assert_eq!((c.rx_dropped_not_routable, c.delivered_local), (4, 1));
    assert_eq!((c.forwarded, c.icmp_errors_sent), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 5. The Edge's own addresses.
// ---------------------------------------------------------------------------------------------

fn assert_echo_reply(p: Port, f: &[u8], req: &[u8], port: Port, dst_mac: MacAddr) {
    assert_eq!(p, port);
    assert_eq!(macs(f), (dst_mac, EMAC[port as usize]));
    let v = check_ipv4(f);
    let r = Ipv4View::parse(req).unwrap();
    assert_eq!((v.src(), v.dst()), (r.dst(), r.src()));
    assert_eq!(v.ttl(), icmp::DEFAULT_TTL);
    let (t, c, _) = icmp_of(f);
    assert_eq!((t, c), (TYPE_ECHO_REPLY, 0));
    // Identifier, sequence and data as sent.
    assert_eq!(v.payload()[4..], r.payload()[4..]);
}

#[test]
fn echo_request_to_interface_address_gets_echo_reply() {
    let mut lab = Lab::new();
    let req = echo(VM1, CGW1, 64, 0x1234, 7, false);
    // Source unresolved: ARP first.
    let (p, f) = one(lab.rx_ip(SEG1, req.clone()));
    assert_arp_request(p, &f, SEG1, VM1);
    let (p, f) = one(lab.arp_reply(SEG1, VM1, VM1_MAC));
    assert_echo_reply(p, &f, &req, SEG1, VM1_MAC);
    assert_eq!(lab.e.counters.delivered_local, 1);
    assert_eq!(lab.e.counters.forwarded, 0);
    // Again, resolved.
    let req = echo(VM1, CGW1, 64, 0x1234, 8, false);
    let (p, f) = one(lab.rx_ip(SEG1, req.clone()));
    assert_echo_reply(p, &f, &req, SEG1, VM1_MAC);
}

#[test]
fn every_interface_address_answers_echo_from_anywhere() {
    let mut lab = Lab::new();
    lab.resolve_all();
    for target in EIP {
        let req = echo(VM1, target, 64, 1, 1, false);
        let (p, f) = one(lab.rx_ip(SEG1, req.clone()));
        assert_echo_reply(p, &f, &req, SEG1, VM1_MAC);
    }
    // From the VPC, through the gateway.
    let req = echo(EC2, CGW2, 64, 2, 2, false);
    let (p, f) = one(lab.rx_ip(UPLINK, req.clone()));
    assert_echo_reply(p, &f, &req, UPLINK, GW_MAC);
    // Local delivery does not look at the TTL.
    let req = echo(VM3, CGW2, 1, 3, 3, false);
    let (p, f) = one(lab.rx_ip(SEG2, req.clone()));
    assert_echo_reply(p, &f, &req, SEG2, VM3_MAC);
    assert_eq!(lab.e.counters.delivered_local, 5);
}

#[test]
fn udp_to_interface_address_gets_port_unreachable() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let orig = udp(VM1, CGW1, 1, 33434, 33434);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_DEST_UNREACHABLE, 3);
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    assert_eq!(lab.e.counters.delivered_local, 1);
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 0);
}

#[test]
fn port_unreachable_comes_from_the_address_probed() {
    // `traceroute 192.168.2.1` from segment 1 should end at 192.168.2.1, as on any router.
    let mut lab = Lab::new();
    lab.resolve_all();
    for target in [CGW2, UPLINK_IP] {
        let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, target, 64, 33434, 33434)));
        assert_icmp_error(p, &f, SEG1, VM1_MAC, target, VM1, TYPE_DEST_UNREACHABLE, 3);
    }
}

#[test]
fn other_traffic_to_the_edge_is_not_handled() {
    let mut lab = Lab::new();
    lab.resolve_all();
    // TCP (no listener, no reset), an echo reply, an ICMP error.
    assert!(lab.rx_ip(SEG1, tcp_syn(VM1, 40000, CGW1, 22)).is_empty());
    assert!(lab.rx_ip(SEG1, echo(VM1, CGW1, 64, 1, 1, true)).is_empty());
    let inner = udp(CGW1, VM1, 64, 1, 2);
    let e = icmp_err(
        VM1,
        CGW1,
        64,
        TYPE_DEST_UNREACHABLE,
        3,
        &ip_packet(&inner)[..28],
    );
    assert!(lab.rx_ip(SEG1, e).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_not_handled, 3);
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
}

// ---------------------------------------------------------------------------------------------
// 6. Bad headers, truncated frames, garbage.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_ip_header_checksum_is_dropped() {
    let mut lab = Lab::new();
    lab.resolve_all();
    for (port, dst) in [(SEG1, EC2), (SEG1, CGW1), (UPLINK, VM1), (SEG2, NOWHERE)] {
        let mut f = udp(VM1, dst, 1, 1, 2);
        f[24] ^= 0x40;
        assert!(lab.rx_ip(port, f).is_empty());
    }
    assert_eq!(lab.e.counters.rx_dropped_bad_header, 4);
    assert_eq!(lab.e.counters.icmp_errors_sent, 0);
    assert_eq!(lab.e.counters.forwarded, 0);
}

#[test]
fn malformed_ip_headers_are_dropped() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let good = udp(VM1, EC2, 64, 1, 2);
    let edits: [fn(&mut BytesMut); 4] = [
        |f| f[14] = 0x65,                                      // version 6
        |f| f[14] = 0x44,                                      // header shorter than 20
        |f| f[16..18].copy_from_slice(&2000u16.to_be_bytes()), // total length beyond the frame
        |f| f[16..18].copy_from_slice(&10u16.to_be_bytes()),   // total length below the header
    ];
    for edit in edits {
        let mut f = good.clone();
        edit(&mut f);
        fix_ip_checksum(&mut f[..]);
        assert!(lab.rx_ip(SEG1, f).is_empty());
    }
    assert_eq!(lab.e.counters.rx_dropped_bad_header, 4);
    // Ethernet padding after the IP packet is fine; it is forwarded as received.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 6]);
    let (p, f) = one(lab.rx_ip(SEG1, padded));
    assert_eq!(p, UPLINK);
    check_ipv4(&f);
}

/// Frames of every kind the Edge handles, to cut and corrupt.
fn sample_frames() -> Vec<BytesMut> {
    let inner = udp(VM1, S3, 60, 40000, 53);
    let inner = ip_packet(&inner)[..28].to_vec();
    let arp = |a: Arp| BytesMut::from(&a.to_frame()[..]);
    vec![
        udp(VM1, EC2, 64, 1, 2),
        udp(VM1, CGW1, 64, 1, 2),
        udp(VM1, EC2, 1, 1, 2),
        udp(VM1, NOWHERE, 64, 1, 2),
        udp(VM1, S3, 64, 40000, 53),
        udp(S3, UPLINK_IP, 64, 53, 1024),
        tcp_syn(VM1, 40000, S3, 443),
        tcp(S3, UPLINK_IP, 64, 443, 1024, Some(1)),
        tcp(EC2, VM1, 64, 443, 1024, Some(1)),
        echo(VM1, CGW1, 64, 1, 1, false),
        echo(VM1, S3, 64, 1, 1, false),
        echo(S3, UPLINK_IP, 64, 1024, 1, true),
        icmp_err(VM1, EC2, 1, TYPE_TIME_EXCEEDED, 0, &inner),
        icmp_err(S3, UPLINK_IP, 64, TYPE_DEST_UNREACHABLE, 3, &inner),
        arp(Arp::request(VM1_MAC, VM1, CGW1)),
        arp(Arp::request(GW_MAC, GW, UPLINK_IP)),
        arp(Arp {
            op: OP_REPLY,
            sender_mac: GW_MAC,
            sender_ip: GW,
            target_mac: EMAC[0],
            target_ip: UPLINK_IP,
        }),
    ]
}

/// Feed `f` on every port, addressed to that port's MAC and as a broadcast; returns nothing
/// but must not panic.
fn feed_everywhere(lab: &mut Lab, f: &[u8]) -> usize {
    let mut sent = 0;
    for port in [0, 1, 2, 3, Port::MAX] {
        let mut g = f.to_vec();
        if g.len() >= 12 {
            let dst = EMAC
                .get(port as usize)
                .copied()
                .unwrap_or(MacAddr::BROADCAST);
            wire::set_macs(&mut g, dst, neighbour_mac(port));
        }
        for (_, out) in lab.rx(port, g.clone()) {
            // Whatever comes out is well formed.
            assert!(out.len() >= wire::ETH_HEADER_LEN);
            if wire::ethertype(&out) == Some(ETHERTYPE_IPV4) {
                let v = Ipv4View::parse(&out).expect("the Edge sends valid IPv4");
                assert!(v.checksum_ok());
            }
            sent += 1;
        }
        if g.len() >= 6 {
            g[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
        }
        sent += lab.rx(port, g).len();
    }
    sent
}

/// Run the fuzz corpus against a lab; returns how many frames came out.
fn fuzz(lab: &mut Lab) -> usize {
    let mut sent = 0;
    let samples = sample_frames();
    for s in &samples {
        for n in 0..=s.len() {
            // The frame cut short, as is.
            sent += feed_everywhere(lab, &s[..n]);
            // Cut short with the IP total length and checksum made to match the cut, so that the
            // IP layer accepts it and the L4 parsers see a short payload.
            if n >= 34 && wire::ethertype(s) == Some(ETHERTYPE_IPV4) {
                let mut g = s[..n].to_vec();
                g[16..18].copy_from_slice(&((n - 14) as u16).to_be_bytes());
                fix_ip_checksum(&mut g);
                sent += feed_everywhere(lab, &g);
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x5ddc);
    // Random bytes, with a plausible Ethernet/IP start half the time.
    for i in 0..3000 {
        let len = (rng.next_u32() % 120) as usize;
        let mut g = vec![0u8; len];
        rng.fill_bytes(&mut g);
        if i % 2 == 0 && len >= 34 {
            g[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            g[14] = 0x45 + (rng.next_u32() % 3) as u8;
            let total = (rng.next_u32() as usize % (len - 13)) as u16;
            g[16..18].copy_from_slice(&total.max(20).to_be_bytes());
            if i % 4 == 0 {
                g[23] = [PROTO_ICMP, PROTO_TCP, PROTO_UDP][(rng.next_u32() % 3) as usize];
            }
            if (g[14] & 0x0f) as usize * 4 + 14 <= len {
                fix_ip_checksum(&mut g);
            }
        } else if i % 3 == 0 && len >= 14 {
            g[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        }
        sent += feed_everywhere(lab, &g);
    }
    // Valid frames with a few bytes changed, checksum fixed or not.
    for (k, s) in samples.iter().enumerate() {
        for j in 0..300 {
            let mut g = s.to_vec();
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = 12 + (rng.next_u32() as usize % (g.len() - 12));
                g[at] = rng.next_u32() as u8;
            }
            if (k + j) % 2 == 0 && Ipv4View::parse(&g).is_some() {
                fix_ip_checksum(&mut g);
            }
            sent += feed_everywhere(lab, &g);
        }
    }
    // Let every timer run out.
    for _ in 0..10 {
        lab.now += RETRY;
        sent += lab.poll().len();
    }
    sent
}

#[test]
fn truncated_and_garbage_frames_never_panic() {
    // Active, with neighbours and a NAT mapping, so that every path is reachable.
    let mut lab = Lab::new();
    lab.resolve_all();
    assert_eq!(one(lab.rx_ip(SEG1, udp(VM1, S3, 64, 40000, 53))).0, UPLINK);
    assert_eq!(one(lab.rx_ip(SEG1, tcp_syn(VM1, 40000, S3, 443))).0, UPLINK);
    assert_eq!(
        one(lab.rx_ip(SEG1, echo(VM1, S3, 64, 1, 1, false))).0,
        UPLINK
    );
    assert!(fuzz(&mut lab) > 0);
    // Active with nothing resolved (everything queues and times out).
    let mut lab = Lab::new();
    fuzz(&mut lab);
    // Standby: nothing at all comes out.
    let mut lab = Lab::new();
    lab.e.set_active(false);
    assert_eq!(fuzz(&mut lab), 0);
    assert!(lab.e.counters.rx_dropped_standby + lab.e.counters.rx_ignored_standby_broadcast > 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Standby.
// ---------------------------------------------------------------------------------------------

#[test]
fn standby_edge_forwards_and_answers_nothing() {
    let mut lab = Lab::new();
    lab.e.set_active(false);
    assert!(lab.arp_reply(UPLINK, GW, GW_MAC).is_empty());
    let frames: Vec<(Port, Frame)> = vec![
        (SEG1, Arp::request(VM1_MAC, VM1, CGW1).to_frame()),
        (SEG1, Arp::request(VM1_MAC, VM1, GW).to_frame()),
    ];
    for (p, f) in frames {
        assert!(lab.rx(p, f).is_empty());
    }
    assert!(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)).is_empty());
    assert!(lab.rx_ip(SEG1, udp(VM1, EC2, 1, 1, 2)).is_empty());
    assert!(lab.rx_ip(SEG1, udp(VM1, NOWHERE, 64, 1, 2)).is_empty());
    assert!(lab.rx_ip(SEG1, echo(VM1, CGW1, 64, 1, 1, false)).is_empty());
    assert!(lab.rx_ip(SEG1, tcp_syn(VM1, 40000, S3, 443)).is_empty());
    assert!(lab.rx_ip(UPLINK, udp(EC2, VM1, 64, 1, 2)).is_empty());
    assert_eq!(lab.e.counters.rx_dropped_standby, 7, "unicast: lost");
    assert_eq!(
        lab.e.counters.rx_ignored_standby_broadcast, 2,
        "ARP broadcasts: left alone"
    );
    assert_eq!(lab.e.poll_at(), None);
    assert!(lab.poll().is_empty());
    let c = &lab.e.counters;
    assert_eq!(
        (
            c.forwarded,
            c.arp_replies_sent,
            c.icmp_errors_sent,
            c.snat_out
        ),
        (0, 0, 0, 0)
    );

    // Made active, it works; the ARP reply it saw as standby was not learned.
    lab.e.set_active(true);
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, GW);
    assert_eq!(one(lab.arp_reply(UPLINK, GW, GW_MAC)).0, UPLINK);
}

#[test]
fn demoted_edge_stays_silent_on_poll() {
    let mut lab = Lab::new();
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, GW);
    lab.e.set_active(false);
    // The held frame is dropped with the demotion; no timer is left to fire.
    assert_eq!(lab.e.counters.tx_dropped_demoted, 1);
    assert_eq!(lab.e.poll_at(), None);
    let mut out = Vec::new();
    for _ in 0..10 {
        lab.now += RETRY;
        out.extend(lab.poll());
    }
    assert!(out.is_empty(), "a standby Edge sent {out:?}");
    let c = &lab.e.counters;
    assert_eq!((c.tx_dropped_arp_failed, c.icmp_errors_sent), (0, 0));
    // Made active again, it starts afresh: a new packet asks for the router again.
    lab.e.set_active(true);
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, GW);
    let (p, _) = one(lab.arp_reply(UPLINK, GW, GW_MAC));
    assert_eq!(p, UPLINK);
}

// ---------------------------------------------------------------------------------------------
// 8. SNAT.
// ---------------------------------------------------------------------------------------------

/// Send a frame from its source's segment that should leave the uplink translated; returns it.
fn snat_out(lab: &mut Lab, f: BytesMut) -> Frame {
    let port = if Ipv4View::parse(&f).unwrap().src().octets()[2] == 2 {
        SEG2
    } else {
        SEG1
    };
    let (p, out) = one(lab.rx_ip(port, f));
    assert_eq!(p, UPLINK);
    assert_eq!(macs(&out), (GW_MAC, EMAC[0]));
    let v = check_ipv4(&out);
    assert_eq!(v.src(), UPLINK_IP);
    out
}

#[test]
fn snat_tcp_syn_out_and_answer_back() {
    let mut lab = Lab::new();
    assert!(lab.arp_reply(UPLINK, GW, GW_MAC).is_empty());
    let syn = tcp_syn(VM1, 40000, S3, 443);
    check_ipv4(&syn);
    let out = snat_out(&mut lab, syn.clone());
    let v = Ipv4View::parse(&out).unwrap();
    assert_eq!((v.dst(), v.ttl()), (S3, 63));
    let (ext_port, dport) = ports_of(&out);
    assert!(ext_port >= 1024);
    assert_eq!(dport, 443);
    // The rest of the TCP header (sequence, flags, window, options) is untouched.
    assert_eq!(
        ip_packet(&out)[20 + 4..20 + 16],
        ip_packet(&syn)[20 + 4..20 + 16]
    );
    assert_eq!(ip_packet(&out)[20 + 18..], ip_packet(&syn)[20 + 18..]);
    assert_eq!(lab.e.counters.snat_out, 1);
    assert_eq!(lab.e.counters.forwarded, 1);

    // The SYN-ACK comes back to the uplink address.
    let synack = tcp(S3, UPLINK_IP, 250, 443, ext_port, Some(0x0102_0305));
    // VM1's MAC is not known yet: the Edge asks on segment 1.
    let (p, f) = one(lab.rx_ip(UPLINK, synack.clone()));
    assert_arp_request(p, &f, SEG1, VM1);
    let (p, f) = one(lab.arp_reply(SEG1, VM1, VM1_MAC));
    assert_eq!((p, macs(&f)), (SEG1, (VM1_MAC, EMAC[1])));
    let v = check_ipv4(&f);
    assert_eq!((v.src(), v.dst(), v.ttl()), (S3, VM1, 249));
    assert_eq!(ports_of(&f), (443, 40000));
    assert_eq!(
        ip_packet(&f)[20 + 4..20 + 16],
        ip_packet(&synack)[20 + 4..20 + 16]
    );
    assert_eq!(lab.e.counters.snat_in, 1);
    assert_eq!(lab.e.counters.delivered_local, 0);
    assert_eq!(lab.e.counters.forwarded, 2);
}

#[test]
fn snat_gives_each_inside_endpoint_its_own_port_and_keeps_it() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let p1 = ports_of(&snat_out(&mut lab, tcp_syn(VM1, 40000, S3, 443))).0;
    let p2 = ports_of(&snat_out(&mut lab, tcp_syn(VM2, 40000, S3, 443))).0;
    let p3 = ports_of(&snat_out(&mut lab, tcp_syn(VM1, 40001, S3, 443))).0;
    assert!(p1 >= 1024 && p2 >= 1024 && p3 >= 1024);
    assert_eq!(HashSet::from([p1, p2, p3]).len(), 3, "{p1} {p2} {p3}");
    // The same flow keeps its port; so does the same inside endpoint to another peer
    // (endpoint-independent mapping).
    assert_eq!(
        ports_of(&snat_out(&mut lab, tcp_syn(VM1, 40000, S3, 443))).0,
        p1
    );
    assert_eq!(
        ports_of(&snat_out(&mut lab, tcp_syn(VM1, 40000, S3_B, 80))).0,
        p1
    );
    // A host on segment 2 too.
    let p4 = ports_of(&snat_out(&mut lab, tcp_syn(VM3, 40000, S3, 443))).0;
    assert!(![p1, p2, p3].contains(&p4));
    // Answers go to the right host each.
    for (ext, host, mac, port) in [
        (p1, VM1, VM1_MAC, SEG1),
        (p2, VM2, VM2_MAC, SEG1),
        (p4, VM3, VM3_MAC, SEG2),
    ] {
        let (p, f) = one(lab.rx_ip(UPLINK, tcp(S3, UPLINK_IP, 64, 443, ext, Some(1))));
        assert_eq!((p, macs(&f).0), (port, mac));
        let v = check_ipv4(&f);
        assert_eq!((v.dst(), v.ttl()), (host, 63));
        assert_eq!(ports_of(&f), (443, 40000));
    }
    assert_eq!(lab.e.counters.snat_out, 6);
    assert_eq!(lab.e.counters.snat_in, 3);
}

#[test]
fn snat_udp_round_trip() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let q = udp(VM3, S3, 64, 5353, 53);
    let out = snat_out(&mut lab, q.clone());
    let (ext, dport) = ports_of(&out);
    assert!(ext >= 1024);
    assert_eq!(dport, 53);
    assert_eq!(
        ip_packet(&out)[28..],
        ip_packet(&q)[28..],
        "payload unchanged"
    );
    let (p, f) = one(lab.rx_ip(UPLINK, udp(S3, UPLINK_IP, 64, 53, ext)));
    assert_eq!((p, macs(&f).0), (SEG2, VM3_MAC));
    let v = check_ipv4(&f);
    assert_eq!(v.dst(), VM3);
    assert_eq!(ports_of(&f), (53, 5353));
}

#[test]
fn snat_keeps_a_zero_udp_checksum_zero() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut q = udp(VM1, S3, 64, 5000, 53);
    q[40] = 0;
    q[41] = 0;
    let out = snat_out(&mut lab, q);
    assert_eq!(
        ip_packet(&out)[26..28],
        [0, 0],
        "no checksum stays no checksum"
    );
}

#[test]
fn non_snat_routes_keep_the_inside_source() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let (_, f) = one(lab.rx_ip(SEG1, tcp_syn(VM1, 40000, EC2, 443)));
    let v = check_ipv4(&f);
    assert_eq!(v.src(), VM1);
    assert_eq!(ports_of(&f), (40000, 443));
    assert_eq!(lab.e.counters.snat_out, 0);
}

#[test]
fn inbound_to_the_uplink_address_without_mapping_is_delivered_locally() {
    let mut lab = Lab::new();
    lab.resolve_all();
    // UDP to an unmapped port: the Edge itself answers port unreachable.
    let orig = udp(S3, UPLINK_IP, 64, 53, 5555);
    let (p, f) = one(lab.rx_ip(UPLINK, orig.clone()));
    assert_icmp_error(
        p,
        &f,
        UPLINK,
        GW_MAC,
        UPLINK_IP,
        S3,
        TYPE_DEST_UNREACHABLE,
        3,
    );
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    // Ping to the uplink address: answered, even with a mapping for the same identifier.
    snat_out(&mut lab, echo(VM1, S3, 64, 1024, 1, false));
    let req = echo(S3, UPLINK_IP, 64, 1024, 1, false);
    let (p, f) = one(lab.rx_ip(UPLINK, req.clone()));
    assert_echo_reply(p, &f, &req, UPLINK, GW_MAC);
    // TCP to a port never mapped: not forwarded.
    assert!(lab
        .rx_ip(UPLINK, tcp(S3, UPLINK_IP, 64, 443, 60000, Some(1)))
        .is_empty());
    assert_eq!(lab.e.counters.snat_in, 0);
    assert_eq!(lab.e.counters.delivered_local, 2);
    assert_eq!(lab.e.counters.forwarded, 1);
}

#[test]
fn snat_answers_are_taken_only_from_the_uplink() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let ext = ports_of(&snat_out(&mut lab, udp(VM1, S3, 64, 40000, 53))).0;
    // VM2 aims at VM1's mapping from inside: the Edge keeps it, and the address probed says
    // the port is unreachable.
    let orig = udp(VM2, UPLINK_IP, 64, 53, ext);
    let (p, f) = one(lab.rx_ip_from(SEG1, VM2_MAC, orig));
    assert_icmp_error(
        p,
        &f,
        SEG1,
        VM2_MAC,
        UPLINK_IP,
        VM2,
        TYPE_DEST_UNREACHABLE,
        3,
    );
    assert_eq!(lab.e.counters.snat_in, 0);
    // A mapping is per protocol: TCP to the UDP mapping's port is not translated.
    assert!(lab
        .rx_ip(UPLINK, tcp(S3, UPLINK_IP, 64, 53, ext, Some(1)))
        .is_empty());
    assert_eq!(lab.e.counters.snat_in, 0);
}

#[test]
fn snat_icmp_echo_uses_the_identifier() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let req = echo(VM1, S3, 64, 0x4242, 9, false);
    let out = snat_out(&mut lab, req.clone());
    let (t, c, _) = icmp_of(&out);
    assert_eq!((t, c), (TYPE_ECHO_REQUEST, 0));
    let ext_id = echo_id(&out);
    assert!(ext_id >= 1024);
    let r = Ipv4View::parse(&req).unwrap();
    let o = Ipv4View::parse(&out).unwrap();
    assert_eq!(
        o.payload()[6..],
        r.payload()[6..],
        "sequence and data unchanged"
    );
    // A second host pinging with the same identifier gets another.
    let out2 = snat_out(&mut lab, echo(VM2, S3, 64, 0x4242, 1, false));
    assert_ne!(echo_id(&out2), ext_id);
    // The reply comes back translated.
    let rep = echo(S3, UPLINK_IP, 61, ext_id, 9, true);
    let (p, f) = one(lab.rx_ip(UPLINK, rep.clone()));
    assert_eq!((p, macs(&f)), (SEG1, (VM1_MAC, EMAC[1])));
    let v = check_ipv4(&f);
    assert_eq!((v.src(), v.dst(), v.ttl()), (S3, VM1, 60));
    let (t, c, _) = icmp_of(&f);
    assert_eq!((t, c), (TYPE_ECHO_REPLY, 0));
    assert_eq!(echo_id(&f), 0x4242);
    assert_eq!(
        v.payload()[6..],
        Ipv4View::parse(&rep).unwrap().payload()[6..]
    );
    assert_eq!(lab.e.counters.snat_in, 1);
}

/// An ICMP error's quoted packet: its IP header checksum holds, and its addresses and the
/// port its `side` uses.
fn quoted_fields(f: &[u8], side: Side) -> (Ipv4Addr, Ipv4Addr, Option<u16>) {
    let v = Ipv4View::parse(f).unwrap();
    let q = icmp::quoted(&v).expect("an ICMP error with a quote");
    let hdr = &v.payload()[8..8 + 20];
    assert_eq!(checksum::checksum(hdr), 0, "quoted IP header checksum");
    (q.src, q.dst, icmp::flow_port(q.protocol, q.l4, side))
}

#[test]
fn snat_translates_icmp_errors_about_translated_packets_both_ways() {
    let mut lab = Lab::new();
    lab.resolve_all();
    // A traceroute-style UDP probe leaves translated; S3 answers port unreachable, quoting it
    // as it arrived. The error goes to the inside host, quoting what that host sent.
    let probe = udp(VM1, S3, 64, 40000, 33435);
    let out = snat_out(&mut lab, probe.clone());
    let (ext, _) = ports_of(&out);
    let err = icmp_err(
        S3,
        UPLINK_IP,
        64,
        TYPE_DEST_UNREACHABLE,
        CODE_PORT_UNREACHABLE,
        &ip_packet(&out)[..28],
    );
    let (p, f) = one(lab.rx_ip(UPLINK, err));
    assert_eq!((p, macs(&f)), (SEG1, (VM1_MAC, EMAC[1])));
    let v = check_ipv4(&f);
    assert_eq!((v.src(), v.dst(), v.ttl()), (S3, VM1, 63));
    let (t, c, quote) = icmp_of(&f);
    assert_eq!((t, c), (TYPE_DEST_UNREACHABLE, CODE_PORT_UNREACHABLE));
    assert_eq!(quoted_fields(&f, Side::Src), (VM1, S3, Some(40000)));
    assert_eq!(
        quote[20..],
        ip_packet(&probe)[20..28],
        "the quoted UDP header is the probe's again, checksum included"
    );
    assert_eq!(lab.e.counters.snat_in, 1);

    // Time exceeded about a translated echo request: the identifier goes back too.
    let req = snat_out(&mut lab, echo(VM2, S3, 64, 0x77, 1, false));
    let ext_id = echo_id(&req);
    let err = icmp_err(S3, UPLINK_IP, 64, 11, 0, &ip_packet(&req)[..28]);
    let (p, f) = one(lab.rx_ip(UPLINK, err));
    assert_eq!((p, macs(&f).0), (SEG1, VM2_MAC));
    check_ipv4(&f);
    assert_eq!(quoted_fields(&f, Side::Src), (VM2, S3, Some(0x77)));
    assert_ne!(ext_id, 0x77);

    // An error about a port the NAT never handed out is not forwarded.
    let mut stray = ip_packet(&out)[..28].to_vec();
    stray[20..22].copy_from_slice(&(ext + 100).to_be_bytes());
    let err = icmp_err(S3, UPLINK_IP, 64, TYPE_DEST_UNREACHABLE, 3, &stray);
    assert!(lab.rx_ip(UPLINK, err).is_empty());
    assert_eq!(lab.e.counters.snat_in, 2);

    // Inside -> out: VM1 reports port unreachable about an answer that reached it through the
    // NAT. The error leaves from the external address, quoting the answer as S3 sent it.
    let answer = udp(S3, VM1, 60, 53, 40000);
    let err = icmp_err(
        VM1,
        S3,
        64,
        TYPE_DEST_UNREACHABLE,
        3,
        &ip_packet(&answer)[..28],
    );
    let out = snat_out(&mut lab, err);
    check_ipv4(&out);
    assert_eq!(quoted_fields(&out, Side::Dst), (S3, UPLINK_IP, Some(ext)));
    assert_eq!(lab.e.counters.snat_out, 3, "probe, echo request, error");
}

#[test]
fn untranslatable_packets_never_leave_with_an_inside_source() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let inner = udp(S3, VM1, 60, 53, 40000);
    let inner = &ip_packet(&inner)[..28];
    let mut later = udp(VM1, S3, 64, 1, 2);
    set_fragment(&mut later, 100, false);
    let frames = [
        icmp_err(VM1, S3, 64, TYPE_DEST_UNREACHABLE, 3, inner),
        echo(VM1, S3, 64, 1, 1, true),
        later,
    ];
    for f in frames {
        for (p, out) in lab.rx_ip(SEG1, f) {
            if p == UPLINK && wire::ethertype(&out) == Some(ETHERTYPE_IPV4) {
                assert_eq!(
                    Ipv4View::parse(&out).unwrap().src(),
                    UPLINK_IP,
                    "leaked inside source"
                );
            }
        }
    }
    assert_eq!(lab.e.counters.snat_out, 0);
    // Dropped for what they are, not for a pool that still has every port free.
    assert_eq!(lab.e.counters.tx_dropped_nat_untranslatable, 3);
    assert_eq!(lab.e.counters.tx_dropped_nat_exhausted, 0);
}

#[test]
fn snat_port_pool_runs_out_without_reusing_a_port() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let mut seen = HashSet::new();
    let mut first = None;
    let attempts = 65_000u32;
    for i in 0..attempts {
        let host = Ipv4Addr::new(192, 168, 1, 100 + (i / 60_000) as u8);
        let sport = (i % 60_000) as u16 + 1;
        let out = lab.rx_ip(SEG1, udp(host, S3, 64, sport, 53));
        match out.as_slice() {
            [(UPLINK, f)] => {
                let ext = ports_of(f).0;
                assert!(ext >= 1024, "port {ext}");
                assert!(seen.insert(ext), "port {ext} handed out twice");
                first.get_or_insert(ext);
            }
            [] => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every port of 1024..=65535 handed out, each once, then none.
    let translated = seen.len() as u64;
    assert_eq!(translated, 65_536 - 1024, "only {translated} ports");
    assert!(seen.contains(&1024) && seen.contains(&65_535));
    assert_eq!(
        lab.e.counters.tx_dropped_nat_exhausted,
        attempts as u64 - translated
    );
    assert_eq!(lab.e.counters.tx_dropped_nat_untranslatable, 0);
    // An existing mapping still works when the pool is empty.
    let out = lab.rx_ip(SEG1, udp(Ipv4Addr::new(192, 168, 1, 100), S3, 64, 1, 53));
    assert_eq!(ports_of(&one(out).1).0, first.unwrap());
}

#[test]
fn expired_snat_answer_quotes_the_packet_as_received() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let ext = ports_of(&snat_out(&mut lab, udp(VM1, S3, 64, 40000, 53))).0;
    let orig = udp(S3, UPLINK_IP, 1, 53, ext);
    let (p, f) = one(lab.rx_ip(UPLINK, orig.clone()));
    assert_icmp_error(p, &f, UPLINK, GW_MAC, UPLINK_IP, S3, TYPE_TIME_EXCEEDED, 0);
    // The peer must recognise its own packet, and the inside address must not leak.
    assert_eq!(icmp_of(&f).2, quote_of(&orig));
    assert_eq!(
        lab.e.counters.snat_in, 0,
        "nothing translated for a dropped packet"
    );
    assert_eq!(lab.e.counters.rx_dropped_ttl_exceeded, 1);
}

#[test]
fn arp_failure_after_snat_reports_to_the_inside_host() {
    let mut lab = Lab::new();
    assert!(lab.arp_reply(SEG1, VM1, VM1_MAC).is_empty());
    let orig = udp(VM1, S3, 64, 40000, 53);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_arp_request(p, &f, UPLINK, GW);
    for _ in 1..MAX_TRIES {
        assert!(only_arp(&lab.poll_at_deadline()));
    }
    let out = lab.poll_at_deadline();
    assert_eq!(lab.e.counters.tx_dropped_arp_failed, 1);
    let (p, f) = one(out);
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_DEST_UNREACHABLE, 1);
    // The quote holds VM1's own source address and port, with its checksums as they were
    // (less the TTL the Edge took).
    let q = icmp_of(&f).2;
    let v = Ipv4View::parse(&f).unwrap();
    assert!(icmp::quoted(&v).is_some_and(|q| (q.src, q.dst) == (VM1, S3)));
    let o = quote_of(&orig);
    assert_eq!(q.len(), o.len());
    assert_eq!(q[..8], o[..8]);
    assert_eq!((q[8], q[9]), (63, o[9]));
    assert_eq!(q[12..], o[12..]);
}

// ---------------------------------------------------------------------------------------------
// 9. ARP failure.
// ---------------------------------------------------------------------------------------------

#[test]
fn unresolved_next_hop_is_retried_then_host_unreachable() {
    let mut lab = Lab::new();
    let orig = udp(VM1, EC2, 64, 40000, 8080);
    let (p, f) = one(lab.rx_ip(SEG1, orig.clone()));
    assert_arp_request(p, &f, UPLINK, GW);
    // Nothing before the deadline.
    lab.now = Instant::ZERO + RETRY / 2;
    assert!(lab.poll().is_empty());
    // Retries, one per RETRY, up to MAX_TRIES requests in all.
    for i in 1..MAX_TRIES as u32 {
        let (p, f) = one(lab.poll_at_deadline());
        assert_eq!(lab.now, Instant::ZERO + RETRY * i);
        assert_arp_request(p, &f, UPLINK, GW);
    }
    assert_eq!(lab.e.counters.arp_requests_sent, MAX_TRIES as u64);
    assert_eq!(lab.e.counters.tx_dropped_arp_failed, 0);
    // Then the packet is dropped; host unreachable goes back, after ARP for the source.
    let (p, f) = one(lab.poll_at_deadline());
    assert_eq!(lab.now, Instant::ZERO + RETRY * MAX_TRIES as u32);
    assert_arp_request(p, &f, SEG1, VM1);
    assert_eq!(lab.e.counters.tx_dropped_arp_failed, 1);
    assert_eq!(lab.e.counters.icmp_errors_sent, 1);
    let (p, f) = one(lab.arp_reply(SEG1, VM1, VM1_MAC));
    assert_icmp_error(p, &f, SEG1, VM1_MAC, CGW1, VM1, TYPE_DEST_UNREACHABLE, 1);
    let q = icmp_of(&f).2;
    let o = quote_of(&orig);
    assert_eq!(q.len(), o.len());
    assert_eq!(q[..8], o[..8]);
    assert_eq!(
        (q[8], q[9]),
        (63, o[9]),
        "the held packet had its TTL decremented"
    );
    assert_eq!(q[12..], o[12..]);
    assert_eq!(lab.e.poll_at(), None);
    // No more requests for the router after it failed... until a new packet wants it.
    lab.now += RETRY * 5;
    assert!(lab.poll().is_empty());
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2)));
    assert_arp_request(p, &f, UPLINK, GW);
}

#[test]
fn every_failed_packet_gets_its_own_host_unreachable() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let ghost = Ipv4Addr::new(192, 168, 2, 99);
    let (p, f) = one(lab.rx_ip(SEG1, udp(VM1, ghost, 64, 1, 2)));
    assert_arp_request(p, &f, SEG2, ghost);
    assert!(lab.rx_ip(UPLINK, udp(EC2, ghost, 64, 1, 3)).is_empty());
    let mut out = Vec::new();
    while lab.e.poll_at().is_some() {
        out = lab.poll_at_deadline();
    }
    assert_eq!(lab.e.counters.arp_requests_sent, MAX_TRIES as u64);
    assert_eq!(lab.e.counters.tx_dropped_arp_failed, 2);
    assert_eq!(out.len(), 2);
    let (p, f) = &out[0];
    assert_icmp_error(*p, f, SEG1, VM1_MAC, CGW1, VM1, TYPE_DEST_UNREACHABLE, 1);
    let (p, f) = &out[1];
    assert_icmp_error(
        *p,
        f,
        UPLINK,
        GW_MAC,
        UPLINK_IP,
        EC2,
        TYPE_DEST_UNREACHABLE,
        1,
    );
}

#[test]
fn late_arp_reply_before_the_last_try_still_delivers() {
    let mut lab = Lab::new();
    assert_eq!(one(lab.rx_ip(SEG1, udp(VM1, EC2, 64, 1, 2))).0, UPLINK);
    assert_eq!(one(lab.poll_at_deadline()).0, UPLINK);
    assert_eq!(one(lab.poll_at_deadline()).0, UPLINK);
    let (p, f) = one(lab.arp_reply(UPLINK, GW, GW_MAC));
    assert_eq!((p, macs(&f).0), (UPLINK, GW_MAC));
    assert_eq!(lab.e.poll_at(), None);
    assert_eq!(lab.e.counters.tx_dropped_arp_failed, 0);
}

// ---------------------------------------------------------------------------------------------
// MTU: a packet larger than the next hop's MTU is fragmented, or answered with
// fragmentation-needed when Don't Fragment is set (RFC 791, RFC 1191).
// ---------------------------------------------------------------------------------------------

/// A UDP datagram of `payload` bytes from EC2 to VM3, with Don't Fragment as given.
fn big_udp(payload: usize, df: bool) -> BytesMut {
    let mut f = udp_frame(EC2, VM3, 64, 4000, 5000, &vec![0x5a; payload]);
    f[20] = if df { 0x40 } else { 0 };
    f[21] = 0;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn a_packet_over_the_next_hops_mtu_is_cut_into_fragments_that_reassemble() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let payload = 3000;
    let original = big_udp(payload, false);
    let out = lab.rx_ip(UPLINK, original.clone());
    let mtu = 1500;
    let per_fragment = (mtu - 20) / 8 * 8;
    let udp_len = 8 + payload;
    assert_eq!(out.len(), udp_len.div_ceil(per_fragment));
    let mut reassembled = Vec::new();
    for (k, (port, f)) in out.iter().enumerate() {
        assert_eq!(*port, SEG2);
        assert!(f.len() - 14 <= mtu, "fragment {k} fits the MTU");
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("ipv4")
        };
        let h = ip.header();
        let hdr = h.to_header();
        assert_eq!(
            hdr.header_checksum,
            hdr.calc_header_checksum(),
            "fragment {k}"
        );
        assert_eq!(h.ttl(), 63);
        assert_eq!(
            (
                h.fragments_offset().value() as usize * 8,
                h.more_fragments()
            ),
            (k * per_fragment, k + 1 < out.len())
        );
        reassembled.extend_from_slice(ip.payload().payload);
    }
    assert_eq!(reassembled, &original[34..]);
    assert_eq!(lab.e.counters.fragmented, 1);
}

#[test]
fn dont_fragment_over_the_mtu_is_answered_with_fragmentation_needed_and_the_mtu() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let out = lab.rx_ip(UPLINK, big_udp(3000, true));
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, UPLINK);
    let v = Ipv4View::parse(f).unwrap();
    assert_eq!((v.src(), v.dst()), (UPLINK_IP, EC2));
    let icmp = v.payload();
    assert_eq!((icmp[0], icmp[1]), (TYPE_DEST_UNREACHABLE, 4));
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1500,
        "the next hop's MTU"
    );
    assert!(checksum::checksum(icmp) == 0);
    assert_eq!(lab.e.counters.tx_frag_needed, 1);
    // At the MTU exactly: forwarded whole.
    let out = lab.rx_ip(UPLINK, big_udp(1500 - 28, true));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, SEG2);
}

// ---------------------------------------------------------------------------------------------
// GSO super-frames from a kernel: forwarded whole when each segment fits the next hop, cut
// where a router must touch each packet (fragmentation, SNAT).
// ---------------------------------------------------------------------------------------------

/// A TCP super-frame of `n` payload bytes from VM1 to `dst`, segments of `mss`, as a kernel
/// hands it: the pseudo-header's sum in the TCP checksum, Don't Fragment as given.
fn super_frame(dst: Ipv4Addr, n: usize, mss: u16, df: bool) -> Frame {
    let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut f = built(
        ip_builder(VM1, dst, 64).tcp(40000, 5201, 7, 64000).ack(1),
        &payload,
    );
    wire::set_macs(&mut f, EMAC[SEG1 as usize], VM1_MAC);
    if !df {
        f[20] &= !0x40;
        fix_ip_checksum(&mut f);
    }
    let l4 = 34;
    let ph = checksum::pseudo_header(VM1.octets(), dst.octets(), PROTO_TCP, (20 + n) as u16);
    f[l4 + 16..l4 + 18].copy_from_slice(&(ph as u16).to_be_bytes());
    let mut f = Frame::from(f);
    f.set_gso(Some(crate::wire::gso::Gso {
        kind: crate::wire::gso::GsoKind::Tcp4,
        size: mss,
        csum_start: l4 as u16,
        csum_offset: 16,
    }));
    f
}

/// Every frame is a plain TCP segment with a right checksum; their payloads in order.
fn tcp_payloads(out: &Out) -> Vec<u8> {
    let mut data = Vec::new();
    for (_, f) in out {
        assert_eq!(f.gso(), None);
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport)
        else {
            panic!("not TCP over IPv4: {f:?}")
        };
        let h = ip.header();
        let want = t
            .to_header()
            .calc_checksum_ipv4_raw(h.source(), h.destination(), t.payload())
            .unwrap();
        assert_eq!(t.checksum(), want);
        data.extend_from_slice(t.payload());
    }
    data
}

#[test]
fn a_super_frame_whose_segments_fit_the_next_hop_is_forwarded_whole() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let f = super_frame(EC2, 10_000, 1448, true);
    let out = lab.rx(SEG1, f.clone());
    assert_eq!(out.len(), 1);
    let (port, fwd) = &out[0];
    assert_eq!(*port, UPLINK);
    assert_eq!(fwd.gso(), f.gso(), "still a super-frame");
    assert_eq!(ttl_of(fwd), 63);
    assert!(Ipv4View::parse(fwd).unwrap().checksum_ok());
    assert_eq!(lab.e.counters.tx_frag_needed, 0);
}

#[test]
fn a_super_frame_without_dont_fragment_over_the_mtu_is_cut_then_fragmented() {
    let mut lab = Lab::new();
    lab.resolve_all();
    // Segments of 3,000 bytes do not fit the uplink's 1,500.
    let out = lab.rx(SEG1, super_frame(EC2, 9_000, 3_000, false));
    assert!(out
        .iter()
        .all(|(p, f)| *p == UPLINK && f.gso().is_none() && f.len() <= 1514));
    assert_eq!(out.len(), 3 * 3, "three segments, each in three fragments");
    assert_eq!(lab.e.counters.fragmented, 3);
}

#[test]
fn a_super_frame_to_s3_is_cut_and_each_segment_source_natted() {
    let mut lab = Lab::new();
    lab.resolve_all();
    let n = 5_000;
    let out = lab.rx(SEG1, super_frame(S3, n, 1448, true));
    assert_eq!(out.len(), n.div_ceil(1448));
    for (port, f) in &out {
        assert_eq!(*port, UPLINK);
        assert_eq!(Ipv4View::parse(f).unwrap().src(), UPLINK_IP);
    }
    let want: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    assert_eq!(tcp_payloads(&out), want);
    assert_eq!(lab.e.counters.snat_out, out.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// BFD between two Edges, on their HA interfaces.
// ---------------------------------------------------------------------------------------------

/// An Edge with an uplink and an HA interface (port 1), running BFD to its peer; `me` is 1 or 2.
fn ha_edge(me: u8, active: bool) -> Edge {
    let ha = |n: u8| {
        (
            MacAddr::local(0x4a, n.into()),
            Ipv4Addr::new(169, 254, 0, n),
        )
    };
    let mut ifaces = vec![EdgeIface {
        name: "uplink".into(),
        mac: MacAddr::local(0xed, me.into()),
        ip: UPLINK_IP,
        net: "172.31.0.0/24".parse().unwrap(),
        role: IfaceRole::Uplink,
        mtu: 1500,
    }];
    ifaces.push(EdgeIface {
        name: "ha".into(),
        mac: ha(me).0,
        ip: ha(me).1,
        net: "169.254.0.0/30".parse().unwrap(),
        role: IfaceRole::Ha,
        mtu: 1500,
    });
    let mut e = Edge::new(EdgeConfig {
        name: format!("edge-{me}"),
        ifaces,
    });
    e.set_active(active);
    let cfg = BfdConfig {
        local: ha(me),
        peer: ha(3 - me),
        interval: Duration::from_millis(500),
        multiplier: 3,
        discriminator: me.into(),
    };
    e.set_bfd(Instant::ZERO, Some(cfg));
    e
}

/// Poll `e` at `now`: the frames it sent (port, frame) and what it told the control plane.
fn poll_edge(e: &mut Edge, now: Instant) -> (Vec<(Port, Frame)>, Vec<Notice>) {
    let mut out = Outbox::new();
    if e.poll_at().is_some_and(|t| t <= now) {
        e.poll(now, &mut out);
    }
    let notices = out.take_notices();
    (out.drain().collect(), notices)
}

#[test]
fn a_standby_edge_runs_bfd_and_tells_when_its_peer_goes_silent() {
    let mut active = ha_edge(1, true);
    let mut standby = ha_edge(2, false);
    let mut told = Vec::new();
    // Both send at every half second; the active one falls silent after 3 s.
    let silent = Instant::from_millis(3_000);
    for k in 0..=12u64 {
        let now = Instant::from_millis(k * 500);
        let (from_active, _) = poll_edge(&mut active, now);
        let (from_standby, n) = poll_edge(&mut standby, now);
        told.extend(n.into_iter().map(|n| (now, n)));
        assert_eq!(from_standby.len(), 1, "one BFD packet an interval");
        let (port, f) = &from_standby[0];
        assert_eq!(*port, 1, "out of the HA interface");
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("IPv4")
        };
        assert_eq!(ip.header().ttl(), 255);
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(169, 254, 0, 2));
        let mut out = Outbox::new();
        active.handle(now, 1, f.clone(), &mut out);
        told.extend(out.take_notices().into_iter().map(|n| (now, n)));
        if now < silent {
            for (port, f) in from_active {
                let mut out = Outbox::new();
                standby.handle(now, port, f, &mut out);
                told.extend(out.take_notices().into_iter().map(|n| (now, n)));
            }
        }
    }
    // Up at the second exchange (Down, then Init); the standby declares its peer dead three
    // intervals after the last packet it heard, at 2.5 s.
    let up = Instant::from_millis(500);
    let dead = Instant::from_millis(2_500) + Duration::from_millis(1_500);
    // The active one hears the standby say Down: its session goes down too, but its peer is
    // alive, so it says nothing.
    assert_eq!(
        told,
        vec![
            (up, Notice::BfdUp),
            (up, Notice::BfdUp),
            (dead, Notice::BfdPeerDead),
        ],
    );
    assert_eq!(active.bfd().unwrap().state(), crate::wire::bfd::State::Init);
    assert!(!active.bfd().unwrap().peer_dead());
    assert!(standby.bfd().unwrap().peer_dead());
    assert!(
        !standby.is_active(),
        "the Edge only tells; the control plane decides"
    );
    let c: std::collections::HashMap<_, _> = standby.counters().into_iter().collect();
    assert_eq!(c["bfd_up"], 1);
    assert_eq!(c["bfd_down"], 1);
    assert_eq!(c["bfd_peer_dead"], 1);
    assert_eq!(c["bfd_tx"], 13);
    // The HA interface is not routed: nothing for 169.254.0.0/30 in the Edge's table, and its
    // address is not the Edge's to answer.
    assert!(active
        .routes()
        .lookup(Ipv4Addr::new(169, 254, 0, 2))
        .is_none());
    assert!(!active.is_own_ip(Ipv4Addr::new(169, 254, 0, 1)));
    // With no session (the Edge VM died and came back without one yet), what arrives on the
    // HA interface is dropped, not routed.
    active.set_bfd(Instant::ZERO, None);
    let before = active.counters.rx_dropped_not_handled;
    let stray = udp_frame(Ipv4Addr::new(169, 254, 0, 2), VM1, 64, 1, 2, b"x");
    let mut out = Outbox::new();
    active.handle(Instant::from_millis(7_000), 1, stray.into(), &mut out);
    assert!(out.is_empty());
    assert_eq!(active.counters.rx_dropped_not_handled, before + 1);
}

/// An interface the control plane adds goes on the port it was given, the next one; a port out
/// of turn is refused and changes nothing.
#[test]
fn an_added_interface_takes_the_port_the_control_plane_gives_it() {
    let mut e = lab_edge();
    let seg3 = EdgeIface {
        name: "sddc-cgw-network-3".into(),
        mac: MacAddr::local(0xed, 3),
        ip: Ipv4Addr::new(192, 168, 3, 1),
        net: net("192.168.3.0/24"),
        role: IfaceRole::Segment,
        mtu: 1500,
    };
    let vm = Ipv4Addr::new(192, 168, 3, 10);
    let mut out = Outbox::new();
    for port in [2, 4] {
        let add = Change::EdgeAddIface {
            port,
            iface: seg3.clone(),
        };
        e.configure(Instant::ZERO, &add, &mut out);
        assert!(e.routes().lookup(vm).is_none(), "port {port} refused");
        assert_eq!(e.ifaces().len(), 3);
    }
    let add = Change::EdgeAddIface {
        port: 3,
        iface: seg3,
    };
    e.configure(Instant::ZERO, &add, &mut out);
    assert_eq!(e.port_name(3), "sddc-cgw-network-3");
    assert_eq!(e.routes().lookup(vm).unwrap().target.iface, 3);
    // A promotion announces it with the others.
    e.set_active(false);
    e.configure(Instant::ZERO, &Change::EdgeActive(true), &mut out);
    let announced: Vec<Port> = out.drain().map(|(p, _)| p).collect();
    assert_eq!(announced, vec![0, 1, 2, 3]);
}
