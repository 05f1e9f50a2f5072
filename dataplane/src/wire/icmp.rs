//! ICMP for IPv4 (RFC 792): echo, and the errors a router sends (RFC 1812 §4.3.2).

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::checksum;
use super::ipv4::{put_headers, Ipv4Params, Ipv4View, PROTO_ICMP};
use super::{Frame, MacAddr};

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;

pub const CODE_NET_UNREACHABLE: u8 = 0;
pub const CODE_HOST_UNREACHABLE: u8 = 1;
pub const CODE_PORT_UNREACHABLE: u8 = 3;
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// TTL of packets a node originates.
pub const DEFAULT_TTL: u8 = 64;

/// Type and code of an ICMP packet.
pub fn type_code(v: &Ipv4View<'_>) -> Option<(u8, u8)> {
    let p = v.payload();
    (v.protocol() == PROTO_ICMP && p.len() >= 8).then(|| (p[0], p[1]))
}

/// True if the packet is an ICMP error (never answer one with another, RFC 1812 §4.3.2.7).
pub fn is_error(v: &Ipv4View<'_>) -> bool {
    matches!(type_code(v), Some((t, _)) if matches!(t, 3 | 4 | 5 | 11 | 12))
}

/// Build an ICMP error about `offending` (a frame holding a valid IPv4 packet): the IP header
/// and the first 8 bytes of its payload are quoted. Sent from `src` to the offender's source.
pub fn error(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    offending: &Ipv4View<'_>,
) -> Frame {
    let pkt = offending.packet();
    let quoted = &pkt[..pkt.len().min(offending.header_len() + 8)];
    let mut body = BytesMut::with_capacity(8 + quoted.len());
    body.extend_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(quoted);
    build(dst_mac, src_mac, src, offending.src(), &mut body)
}

/// An echo reply to an echo request (same identifier, sequence and data).
pub fn echo_reply(dst_mac: MacAddr, src_mac: MacAddr, request: &Ipv4View<'_>) -> Frame {
    let mut body = BytesMut::from(request.payload());
    body[0] = TYPE_ECHO_REPLY;
    body[1] = 0;
    build(dst_mac, src_mac, request.dst(), request.src(), &mut body)
}

fn build(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    body: &mut BytesMut,
) -> Frame {
    body[2] = 0;
    body[3] = 0;
    let c = checksum::checksum(body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let mut b = BytesMut::with_capacity(34 + body.len());
    let p = Ipv4Params {
        src,
        dst,
        protocol: PROTO_ICMP,
        ttl: DEFAULT_TTL,
        ident: 0,
    };
    put_headers(&mut b, dst_mac, src_mac, &p, body.len());
    b.extend_from_slice(body);
    Frame::from(b)
}

/// What an ICMP error quotes of the packet it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// The first 8 bytes of the quoted packet's payload (ports, or ICMP type and identifier).
    pub l4: &'a [u8],
}

/// For an ICMP error, the packet it quotes; `None` unless the quote holds an IPv4 header and
/// 8 bytes of payload (RFC 792).
pub fn quoted<'a>(v: &Ipv4View<'a>) -> Option<Quoted<'a>> {
    if !is_error(v) {
        return None;
    }
    let q = v.payload().get(8..)?;
    let ihl = (*q.first()? & 0x0f) as usize * 4;
    if q[0] >> 4 != 4 || ihl < 20 || q.len() < ihl + 8 {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(q[o], q[o + 1], q[o + 2], q[o + 3]);
    Some(Quoted {
        src: ip(12),
        dst: ip(16),
        protocol: q[9],
        l4: &q[ihl..ihl + 8],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::tests::udp_frame;

    #[test]
    fn time_exceeded_quotes_the_offender() {
        let src = Ipv4Addr::new(192, 168, 1, 10);
        let dst = Ipv4Addr::new(172, 31, 16, 10);
        let f = udp_frame(src, dst, 1, 33434, 33435, &[0u8; 32]);
        let v = Ipv4View::parse(&f).unwrap();
        let gw = Ipv4Addr::new(192, 168, 1, 1);
        let e = error(
            MacAddr::local(1, 2),
            MacAddr::local(1, 1),
            gw,
            TYPE_TIME_EXCEEDED,
            0,
            &v,
        );
        let ev = Ipv4View::parse(&e).unwrap();
        assert_eq!((ev.src(), ev.dst()), (gw, src));
        assert!(ev.checksum_ok());
        assert!(crate::wire::ipv4::l4_checksum_ok(&e));
        assert_eq!(type_code(&ev), Some((TYPE_TIME_EXCEEDED, 0)));
        assert_eq!(ev.payload().len(), 8 + 20 + 8);
        let q = quoted(&ev).unwrap();
        assert_eq!((q.src, q.dst, q.protocol), (src, dst, 17));
        assert_eq!(&q.l4[..4], &[0x82, 0x9a, 0x82, 0x9b]); // ports 33434, 33435
        assert!(is_error(&ev));
    }
}
