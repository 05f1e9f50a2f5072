//! Two endpoints wired back to back, driven by a small deterministic loop.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use super::*;
use crate::wire::eth_src;
use crate::wire::icmp::{error, TYPE_TIME_EXCEEDED};
use crate::wire::ipv4::decrement_ttl;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const ROUTER_MAC: MacAddr = MacAddr::local(0x30, 254);
const CAP: usize = 200_000;

fn endpoint(name: &str, n: u32, ip: Ipv4Addr) -> Endpoint {
    Endpoint::new(EndpointConfig {
        name: name.to_string(),
        kind: EndpointKind::Vm,
        mac: MacAddr::local(0x20, n),
        ip,
        prefix_len: 24,
        gateway: ROUTER_IP,
        seed: n as u64,
        ip_mtu: 1500,
    })
}

fn pair() -> [Endpoint; 2] {
    [endpoint("a", 1, A_IP), endpoint("b", 2, B_IP)]
}

/// What sits on the wire: given the sender's index and a frame, the frames to deliver and to
/// whom.
type Middle<'a> = &'a mut dyn FnMut(usize, Frame) -> Vec<(usize, Frame)>;

fn direct(from: usize, f: Frame) -> Vec<(usize, Frame)> {
    vec![(1 - from, f)]
}

/// Deliver frames in order at the current instant; when none are in flight, advance to the
/// earliest `poll_at` and poll. Stops when `until` holds or both endpoints are idle. Every frame
/// an endpoint sends is appended to `log`.
fn drive(
    eps: &mut [Endpoint; 2],
    now: &mut Instant,
    until: &dyn Fn(&[Endpoint; 2]) -> bool,
    middle: Middle<'_>,
    log: &mut Vec<Frame>,
) {
    let mut q: VecDeque<(usize, Frame)> = VecDeque::new();
    let mut out = Outbox::new();
    for _ in 0..CAP {
        if let Some((to, f)) = q.pop_front() {
            eps[to].handle(*now, NIC_PORT, f, &mut out);
            for (_, f) in out.drain() {
                log.push(f.clone());
                q.extend(middle(to, f));
            }
            continue;
        }
        if until(eps) {
            return;
        }
        let Some(t) = eps.iter().filter_map(|e| e.poll_at()).min() else {
            return;
        };
        *now = (*now).max(t);
        for (i, ep) in eps.iter_mut().enumerate() {
            if ep.poll_at().is_some_and(|t| t <= *now) {
                ep.poll(*now, &mut out);
                for (_, f) in out.drain() {
                    log.push(f.clone());
                    q.extend(middle(i, f));
                }
            }
        }
    }
    panic!("no end after {CAP} iterations");
}

fn a_done(eps: &[Endpoint; 2]) -> bool {
    eps[0].all_apps_done()
}

#[test]
fn ping_three_of_three_with_ttl_64() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].ping(now, B_IP, 3, Duration::from_secs(1), 56);
    drive(&mut eps, &mut now, &a_done, &mut direct, &mut Vec::new());
    let AppReport::Ping(r) = eps[0].app(id) else {
        panic!("not a ping")
    };
    assert!(r.done);
    assert_eq!((r.sent, r.received), (3, 3));
    assert_eq!(r.reply_ttls, vec![64; 3]);
    assert_eq!(r.rtts.len(), 3);
    assert!(r.errors.is_empty());
    // The last reply came at once, so the ping ended without waiting out its timeout.
    assert_eq!(now, Instant::from_millis(2000));
    assert_eq!(eps[0].endpoint_counters().rx_echo_replies, 3);
    let json = serde_json::to_value(eps[0].apps()).unwrap();
    assert_eq!(json[0]["app"], "ping");
    assert_eq!(json[0]["rtts_us"].as_array().unwrap().len(), 3);
}

#[test]
fn tcp_send_one_megabyte_to_a_sink() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    eps[1].tcp_listen(5001);
    let first = eps[0].tcp_send(now, B_IP, 5001, 1_000_000);
    drive(&mut eps, &mut now, &a_done, &mut direct, &mut Vec::new());
    let AppReport::TcpSend(r) = eps[0].app(first).clone() else {
        panic!("not a tcp send")
    };
    assert_eq!(r.error, None);
    assert!(r.done);
    assert_eq!(r.acked, 1_000_000);
    assert_eq!(r.src_port, EPHEMERAL_BASE);
    assert!(r.finished.unwrap() < Instant::from_millis(1000), "{r:?}");

    // The server keeps listening: a second connection is accepted too.
    let second = eps[0].tcp_send(now, B_IP, 5001, 1000);
    drive(&mut eps, &mut now, &|_| false, &mut direct, &mut Vec::new());
    assert!(matches!(eps[0].app(second), AppReport::TcpSend(r) if r.done && r.error.is_none()));
    let s = eps[1].tcp_server(5001).unwrap();
    assert_eq!(s.connections.len(), 2);
    let c = &s.connections[0];
    assert_eq!(c.bytes, 1_000_000);
    assert!(c.pattern_ok);
    assert!(c.peer_closed);
    assert_eq!(c.peer, SocketAddrV4::new(A_IP, EPHEMERAL_BASE));
    assert_eq!(s.connections[1].bytes, 1000);
    assert_eq!(s.connections[1].peer.port(), EPHEMERAL_BASE + 1);
    assert_eq!(eps[1].endpoint_counters().tcp_accepted, 2);
    // Everything closed and TIME-WAIT over: both endpoints idle, one listener left.
    assert_eq!(eps[0].poll_at(), None);
    assert_eq!(eps[1].poll_at(), None);
    assert_eq!(eps[0].sockets.iter().count(), 0);
    assert_eq!(eps[1].sockets.iter().count(), 1);
}

#[test]
fn tcp_send_to_a_closed_port_is_refused() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].tcp_send(now, B_IP, 9, 100);
    drive(&mut eps, &mut now, &a_done, &mut direct, &mut Vec::new());
    let AppReport::TcpSend(r) = eps[0].app(id) else {
        panic!("not a tcp send")
    };
    assert!(r.done);
    assert_eq!(r.error.as_deref(), Some("connection refused (RST)"));
    assert_eq!(r.acked, 0);
}

#[test]
fn tcp_send_into_the_void_times_out() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    eps[1].tcp_listen(80);
    let id = eps[0].tcp_send(now, B_IP, 80, 100_000);
    let mut drop_data = |from: usize, f: Frame| {
        // Let the handshake through, then lose everything a sends with a payload.
        let big = f.len() > 100;
        if from == 0 && big {
            vec![]
        } else {
            vec![(1 - from, f)]
        }
    };
    drive(&mut eps, &mut now, &a_done, &mut drop_data, &mut Vec::new());
    let AppReport::TcpSend(r) = eps[0].app(id) else {
        panic!("not a tcp send")
    };
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .starts_with("no progress for 10 s"),
        "{r:?}"
    );
    assert_eq!(r.acked, 0);
    assert!(now >= Instant::from_millis(10_000));
}

#[test]
fn traceroute_to_the_neighbour_is_one_hop() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].traceroute(now, B_IP, 30);
    drive(&mut eps, &mut now, &a_done, &mut direct, &mut Vec::new());
    let AppReport::Traceroute(r) = eps[0].app(id) else {
        panic!("not a traceroute")
    };
    assert!(r.done && r.reached);
    assert_eq!(r.hops, vec![Some(B_IP)]);
}

/// A router faked on the wire: it answers TTL-1 packets with time exceeded from 10.0.0.254 and
/// forwards the rest with the TTL decremented.
fn router(from: usize, f: Frame) -> Vec<(usize, Frame)> {
    let Some(v) = Ipv4View::parse(&f) else {
        return vec![(1 - from, f)];
    };
    if v.ttl() <= 1 {
        let back = eth_src(&f).unwrap();
        return vec![(
            from,
            error(back, ROUTER_MAC, ROUTER_IP, TYPE_TIME_EXCEEDED, 0, &v),
        )];
    }
    let mut m = f;
    decrement_ttl(&mut m);
    vec![(1 - from, m)]
}

#[test]
fn traceroute_through_a_router_is_two_hops() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].traceroute(now, B_IP, 30);
    drive(&mut eps, &mut now, &a_done, &mut router, &mut Vec::new());
    let AppReport::Traceroute(r) = eps[0].app(id) else {
        panic!("not a traceroute")
    };
    assert!(r.done && r.reached, "{r:?}");
    assert_eq!(r.hops, vec![Some(ROUTER_IP), Some(B_IP)]);
    assert_eq!(eps[0].endpoint_counters().rx_icmp_errors, 2);
}

#[test]
fn ping_through_a_router_sees_ttl_63() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].ping(now, B_IP, 2, Duration::from_millis(10), 8);
    drive(&mut eps, &mut now, &a_done, &mut router, &mut Vec::new());
    let AppReport::Ping(r) = eps[0].app(id) else {
        panic!("not a ping")
    };
    assert_eq!(r.received, 2);
    assert_eq!(r.reply_ttls, vec![63, 63]);
}

#[test]
fn silence_times_everything_out() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let ping = eps[0].ping(now, B_IP, 2, Duration::from_secs(1), 56);
    let trace = eps[0].traceroute(now, B_IP, 3);
    let mut void = |_: usize, _: Frame| vec![];
    drive(&mut eps, &mut now, &a_done, &mut void, &mut Vec::new());
    let AppReport::Ping(p) = eps[0].app(ping) else {
        panic!("not a ping")
    };
    assert_eq!((p.sent, p.received, p.done), (2, 0, true));
    let AppReport::Traceroute(t) = eps[0].app(trace) else {
        panic!("not a traceroute")
    };
    assert_eq!(t.hops, vec![None, None, None]);
    assert!(t.done && !t.reached);
    assert_eq!(now, Instant::from_millis(3000));
}

#[test]
fn ping_records_unreachable_errors() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let id = eps[0].ping(now, B_IP, 2, Duration::from_millis(100), 8);
    let mut unreachable = |from: usize, f: Frame| match Ipv4View::parse(&f) {
        Some(v) if from == 0 => {
            let back = eth_src(&f).unwrap();
            vec![(0, error(back, ROUTER_MAC, ROUTER_IP, 3, 1, &v))]
        }
        _ => vec![(1 - from, f)],
    };
    drive(
        &mut eps,
        &mut now,
        &a_done,
        &mut unreachable,
        &mut Vec::new(),
    );
    let AppReport::Ping(r) = eps[0].app(id) else {
        panic!("not a ping")
    };
    assert_eq!((r.sent, r.received), (2, 0));
    let e = IcmpErrorSeen {
        src: ROUTER_IP,
        icmp_type: 3,
        code: 1,
    };
    assert_eq!(r.errors, vec![e, e]);
    assert_eq!(now, Instant::from_millis(1100));
}

#[test]
fn retransmitted_syn_reaches_its_connection_not_a_listener() {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    eps[1].tcp_listen(80);
    eps[0].tcp_send(now, B_IP, 80, 10_000);
    drive(&mut eps, &mut now, &|_| false, &mut direct, &mut Vec::new());
    // The first connection's socket is gone, leaving a free slot below the listener; the next
    // listener lands there. Lose the SYN-ACK so that the client sends its SYN again.
    let id = eps[0].tcp_send(now, B_IP, 80, 10_000);
    let mut synacks = 0;
    let mut lose_first_synack = |from: usize, f: Frame| {
        let v = Ipv4View::parse(&f);
        let synack = v.is_some_and(|v| v.protocol() == PROTO_TCP && v.payload()[13] & 0x12 == 0x12);
        if from == 1 && synack {
            synacks += 1;
            if synacks == 1 {
                return vec![];
            }
        }
        vec![(1 - from, f)]
    };
    drive(
        &mut eps,
        &mut now,
        &a_done,
        &mut lose_first_synack,
        &mut Vec::new(),
    );
    let AppReport::TcpSend(r) = eps[0].app(id) else {
        panic!("not a tcp send")
    };
    assert_eq!(r.error, None, "{r:?}");
    let s = eps[1].tcp_server(80).unwrap();
    assert_eq!(s.connections.len(), 2);
    assert_eq!(s.connections[1].bytes, 10_000);
    assert_eq!(eps[1].endpoint_counters().tcp_accepted, 2);
}

/// Ping, a transfer and a traceroute at once; every frame either endpoint sent.
fn scenario() -> Vec<Frame> {
    let mut eps = pair();
    let mut now = Instant::ZERO;
    let mut log = Vec::new();
    eps[1].tcp_listen(443);
    eps[0].ping(now, B_IP, 3, Duration::from_millis(200), 100);
    eps[0].tcp_send(now, B_IP, 443, 300_000);
    eps[1].traceroute(now + Duration::from_millis(5), A_IP, 5);
    drive(&mut eps, &mut now, &|_| false, &mut router, &mut log);
    assert!(eps[0].all_apps_done() && eps[1].all_apps_done());
    log
}

#[test]
fn identical_runs_give_identical_frames() {
    let first = scenario();
    let second = scenario();
    assert!(first.len() > 200);
    assert_eq!(first, second);
}

#[test]
fn garbage_frames_do_not_panic() {
    let mut eps = pair();
    let mut out = Outbox::new();
    let mac = MacAddr::local(0x20, 1);
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) as u8
    };
    let now = Instant::from_millis(1);
    for len in 0..200usize {
        for prefix in 0..4 {
            let mut f: Vec<u8> = (0..len).map(|_| next()).collect();
            // Some frames look plausible: our MAC, then IPv4 or ARP, then noise.
            if prefix > 0 && len >= 14 {
                f[..6].copy_from_slice(&mac.0);
                let et = if prefix == 1 {
                    ETHERTYPE_IPV4
                } else {
                    ETHERTYPE_ARP
                };
                f[12..14].copy_from_slice(&et.to_be_bytes());
                if prefix == 3 && len >= 34 {
                    f[14] = 0x45;
                }
            }
            eps[0].handle(now, NIC_PORT, Frame::from(f), &mut out);
            out.drain().for_each(drop);
        }
    }
    eps[0].handle(now, 7, Frame::copy_from_slice(b"wrong port"), &mut out);
    let c = eps[0].endpoint_counters();
    assert_eq!(c.rx_frames, 801);
    assert!(c.rx_dropped_malformed > 0 && c.rx_dropped_not_for_me > 0);
    assert_eq!(c.rx_dropped_bad_port, 1);
    // Still works afterwards.
    let mut now = now;
    let id = eps[0].ping(now, B_IP, 1, Duration::ZERO, 8);
    drive(&mut eps, &mut now, &a_done, &mut direct, &mut Vec::new());
    assert!(matches!(eps[0].app(id), AppReport::Ping(r) if r.received == 1));
}
