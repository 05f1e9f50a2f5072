//! ICMP for IPv4 (RFC 792): echo, and the errors a router sends (RFC 1812 §4.3.2).

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::checksum;
use super::ipv4::{
    put_headers, replace_u16, replace_u32, Ipv4Params, Ipv4View, Side, PROTO_ICMP, PROTO_TCP,
    PROTO_UDP,
};
use super::{Frame, MacAddr};

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;

pub const CODE_NET_UNREACHABLE: u8 = 0;
pub const CODE_HOST_UNREACHABLE: u8 = 1;
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable: fragmentation needed and Don't Fragment set (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
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
    error_with(dst_mac, src_mac, src, (icmp_type, code, [0; 4]), offending)
}

/// An ICMP error whose header's second word is `rest` (fragmentation-needed carries the next
/// hop's MTU there, RFC 1191).
pub fn error_with(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    (icmp_type, code, rest): (u8, u8, [u8; 4]),
    offending: &Ipv4View<'_>,
) -> Frame {
    let pkt = offending.packet();
    let quoted = &pkt[..pkt.len().min(offending.header_len() + 8)];
    let mut body = BytesMut::with_capacity(8 + quoted.len());
    body.extend_from_slice(&[icmp_type, code, 0, 0]);
    body.extend_from_slice(&rest);
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

/// The port a NAT keys one side of a flow on, from the protocol and the first bytes of the L4
/// header: a TCP or UDP port, or the identifier of an echo request (its source side) or echo
/// reply (its destination side). `None` for other protocols and ICMP messages, or when `l4` is
/// too short.
pub fn flow_port(protocol: u8, l4: &[u8], side: Side) -> Option<u16> {
    match protocol {
        PROTO_TCP | PROTO_UDP if l4.len() >= 4 => Some(match side {
            Side::Src => u16::from_be_bytes([l4[0], l4[1]]),
            Side::Dst => u16::from_be_bytes([l4[2], l4[3]]),
        }),
        PROTO_ICMP if l4.len() >= 8 => {
            let want = match side {
                Side::Src => TYPE_ECHO_REQUEST,
                Side::Dst => TYPE_ECHO_REPLY,
            };
            (l4[0] == want).then(|| u16::from_be_bytes([l4[4], l4[5]]))
        }
        _ => None,
    }
}

/// In an ICMP error (a frame for which [`quoted`] is `Some`), rewrite the quoted packet's
/// address and port (see [`flow_port`]) on `side`, as a NAT does for the error of a packet it
/// translated (RFC 5508 §4.2). Fixes the quoted IP header checksum, the quoted TCP, UDP or ICMP
/// checksum when the quote holds it, and the error's own checksum.
pub fn rewrite_quoted(frame: &mut [u8], side: Side, addr: Ipv4Addr, port: u16) {
    let Some(v) = Ipv4View::parse(frame) else {
        return;
    };
    if quoted(&v).is_none() {
        return;
    }
    let icmp_off = v.l4_offset();
    let end = v.l4_offset() + v.payload().len();
    let q = icmp_off + 8;
    let q_ihl = (frame[q] & 0x0f) as usize * 4;
    let protocol = frame[q + 9];
    let l4 = q + q_ihl;
    // The quoted address, with the quoted IP header checksum.
    let a = q + if side == Side::Src { 12 } else { 16 };
    let new_addr = u32::from(addr);
    let old_addr = replace_u32(frame, a, new_addr);
    checksum::adjust32(frame, q + 10, old_addr, new_addr);
    // The quoted port, and the quoted L4 checksum where the quote holds it (TCP's lies past the
    // 8 bytes a router must quote; a UDP checksum of zero means none).
    let (field, check, pseudo) = match protocol {
        PROTO_TCP | PROTO_UDP => {
            let field = l4 + if side == Side::Src { 0 } else { 2 };
            let check = l4 + if protocol == PROTO_TCP { 16 } else { 6 };
            (field, check, true)
        }
        PROTO_ICMP => (l4 + 4, l4 + 2, false),
        _ => return finish(frame, icmp_off, end),
    };
    let old_port = replace_u16(frame, field, port);
    let udp_none = protocol == PROTO_UDP && frame[check] == 0 && frame[check + 1] == 0;
    if check + 2 <= end && !udp_none {
        if pseudo {
            checksum::adjust32(frame, check, old_addr, new_addr);
        }
        checksum::adjust16(frame, check, old_port, port);
    }
    finish(frame, icmp_off, end);

    /// The error's own checksum, over the whole ICMP message.
    fn finish(frame: &mut [u8], icmp_off: usize, end: usize) {
        frame[icmp_off + 2..icmp_off + 4].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&frame[icmp_off..end]);
        frame[icmp_off + 2..icmp_off + 4].copy_from_slice(&c.to_be_bytes());
    }
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

    /// The quoted packet of an error, as a frame of its own (an Ethernet header in front).
    fn quote_as_frame(e: &[u8]) -> Vec<u8> {
        let v = Ipv4View::parse(e).unwrap();
        let mut f = e[..14].to_vec();
        f.extend_from_slice(&v.payload()[8..]);
        f
    }

    #[test]
    fn rewriting_the_quote_keeps_every_checksum_right() {
        let inside = Ipv4Addr::new(192, 168, 1, 10);
        let external = Ipv4Addr::new(172, 31, 0, 30);
        let s3 = Ipv4Addr::new(198, 51, 100, 10);
        // A UDP probe as it left the NAT (no payload: the 8 quoted bytes are all of it, so the
        // quoted UDP checksum can be checked), and S3's port unreachable about it.
        let probe = udp_frame(external, s3, 1, 1024, 33435, &[]);
        let pv = Ipv4View::parse(&probe).unwrap();
        let mut e = error(
            MacAddr::local(1, 2),
            MacAddr::local(1, 1),
            s3,
            TYPE_DEST_UNREACHABLE,
            CODE_PORT_UNREACHABLE,
            &pv,
        );
        assert!(crate::wire::ipv4::l4_checksum_ok(&quote_as_frame(&e)));
        rewrite_quoted(&mut e, Side::Src, inside, 40000);
        let ev = Ipv4View::parse(&e).unwrap();
        assert!(
            crate::wire::ipv4::l4_checksum_ok(&e),
            "the error's checksum"
        );
        let q = quoted(&ev).unwrap();
        assert_eq!((q.src, q.dst), (inside, s3));
        assert_eq!(flow_port(q.protocol, q.l4, Side::Src), Some(40000));
        assert_eq!(flow_port(q.protocol, q.l4, Side::Dst), Some(33435));
        let inner = quote_as_frame(&e);
        let iv = Ipv4View::parse(&inner).unwrap();
        assert!(iv.checksum_ok(), "the quoted IP header's checksum");
        assert!(
            crate::wire::ipv4::l4_checksum_ok(&inner),
            "the quoted UDP checksum"
        );
        // A quoted echo request: its identifier is its port; its checksum is fixed too.
        let mut req = udp_frame(external, s3, 1, 0, 0, &[]);
        let ip = 14;
        req[ip + 9] = PROTO_ICMP;
        req[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&req[ip..ip + 20]);
        req[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        req[ip + 20..ip + 28].copy_from_slice(&[TYPE_ECHO_REQUEST, 0, 0, 0, 0x04, 0x00, 0, 1]);
        let c = checksum::checksum(&req[ip + 20..ip + 28]);
        req[ip + 22..ip + 24].copy_from_slice(&c.to_be_bytes());
        let rv = Ipv4View::parse(&req).unwrap();
        let mut e = error(MacAddr::local(1, 2), MacAddr::local(1, 1), s3, 11, 0, &rv);
        rewrite_quoted(&mut e, Side::Src, inside, 7);
        let ev = Ipv4View::parse(&e).unwrap();
        let q = quoted(&ev).unwrap();
        assert_eq!(
            (q.src, flow_port(q.protocol, q.l4, Side::Src)),
            (inside, Some(7))
        );
        assert!(crate::wire::ipv4::l4_checksum_ok(&e));
        assert!(crate::wire::ipv4::l4_checksum_ok(&quote_as_frame(&e)));
        // Not an error: left alone.
        let mut plain = probe.clone();
        rewrite_quoted(&mut plain, Side::Src, inside, 1);
        assert_eq!(plain, probe);
    }
}
