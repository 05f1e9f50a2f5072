//! IPv4 in an Ethernet frame: a read-only view, validation and in-place edits that keep every
//! checksum right (IP header, and TCP/UDP through the pseudo-header).

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::checksum;
use super::{put_eth_header, Frame, MacAddr, ETHERTYPE_IPV4, ETH_HEADER_LEN};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// Minimum IPv4 header length.
pub const HEADER_LEN: usize = 20;
/// Offset of the IPv4 header in a frame.
const IP: usize = ETH_HEADER_LEN;

/// A validated IPv4 packet inside an Ethernet frame: version 4, header length ≥ 20, total length
/// within the frame. The header checksum is checked separately ([`Ipv4View::checksum_ok`]).
#[derive(Clone, Copy)]
pub struct Ipv4View<'a> {
    frame: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// The IPv4 packet of an Ethernet frame, if the frame carries a well-formed one.
    pub fn parse(frame: &'a [u8]) -> Option<Self> {
        if frame.len() < IP + HEADER_LEN || super::ethertype(frame)? != ETHERTYPE_IPV4 {
            return None;
        }
        let vihl = frame[IP];
        let ihl = (vihl & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]) as usize;
        if vihl >> 4 != 4 || ihl < HEADER_LEN || total < ihl || IP + total > frame.len() {
            return None;
        }
        Some(Ipv4View { frame })
    }

    pub fn header_len(&self) -> usize {
        (self.frame[IP] & 0x0f) as usize * 4
    }
    /// Total length of the IP packet (header + payload), in bytes.
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes([self.frame[IP + 2], self.frame[IP + 3]]) as usize
    }
    pub fn ttl(&self) -> u8 {
        self.frame[IP + 8]
    }
    pub fn protocol(&self) -> u8 {
        self.frame[IP + 9]
    }
    pub fn src(&self) -> Ipv4Addr {
        addr_at(self.frame, IP + 12)
    }
    pub fn dst(&self) -> Ipv4Addr {
        addr_at(self.frame, IP + 16)
    }
    /// The Don't Fragment flag is set.
    pub fn dont_fragment(&self) -> bool {
        self.frame[IP + 6] & 0x40 != 0
    }
    /// True if this is not the first fragment (so it carries no L4 header).
    pub fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes([self.frame[IP + 6], self.frame[IP + 7]]) & 0x1fff != 0
    }
    /// The header checksum verifies.
    pub fn checksum_ok(&self) -> bool {
        checksum::checksum(&self.frame[IP..IP + self.header_len()]) == 0
    }
    /// The IP packet: header and payload, without Ethernet padding.
    pub fn packet(&self) -> &'a [u8] {
        &self.frame[IP..IP + self.total_len()]
    }
    /// The L4 payload (after the IP header).
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[IP + self.header_len()..IP + self.total_len()]
    }
    /// Offset of the L4 header within the frame.
    pub fn l4_offset(&self) -> usize {
        IP + self.header_len()
    }
    /// Source and destination ports of a TCP or UDP first fragment.
    pub fn ports(&self) -> Option<(u16, u16)> {
        let p = self.payload();
        let l4 = matches!(self.protocol(), PROTO_TCP | PROTO_UDP);
        (l4 && !self.is_later_fragment() && p.len() >= 4).then(|| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        })
    }
}

fn addr_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

/// Cut the IPv4 packet of `frame` (a valid one, Don't Fragment clear) into fragments of at
/// most `mtu` bytes each, as a router does (RFC 791): every fragment carries the Ethernet and
/// IP headers (options included), a payload that is a multiple of 8 bytes but for the last,
/// its offset, More Fragments on all but the last (which keeps the original's), and a fresh
/// header checksum. An `mtu` too small for the header and 8 bytes of payload gives nothing.
pub fn fragment(frame: &[u8], mtu: usize) -> Vec<Frame> {
    let Some(v) = Ipv4View::parse(frame) else {
        return Vec::new();
    };
    let ihl = v.header_len();
    let chunk = mtu.saturating_sub(ihl) / 8 * 8;
    if chunk == 0 {
        return Vec::new();
    }
    let flags_offset = u16::from_be_bytes([frame[IP + 6], frame[IP + 7]]);
    let (more_after, base) = (flags_offset & 0x2000 != 0, flags_offset & 0x1fff);
    let payload = v.payload();
    let head = &frame[..IP + ihl];
    let mut frags = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (k, part) in payload.chunks(chunk).enumerate() {
        let last = (k + 1) * chunk >= payload.len();
        let mut b = BytesMut::with_capacity(head.len() + part.len());
        b.extend_from_slice(head);
        b.extend_from_slice(part);
        let total = (ihl + part.len()) as u16; // at most the original's total length
        b[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        let offset = base + (k * chunk / 8) as u16;
        let mf = if last { more_after } else { true };
        let fo = (u16::from(mf) << 13) | offset;
        b[IP + 6..IP + 8].copy_from_slice(&fo.to_be_bytes());
        b[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[IP..IP + ihl]);
        b[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        frags.push(Frame::from(b));
    }
    frags
}

/// Decrement the TTL of a frame that holds a valid IPv4 header, updating the header checksum
/// incrementally (RFC 1624). The caller has checked that the TTL is above 1.
pub fn decrement_ttl(frame: &mut [u8]) {
    // TTL, protocol, header checksum: one bounds check for the four bytes.
    let h = &mut frame[IP + 8..IP + 12];
    let old = u16::from_be_bytes([h[0], h[1]]);
    h[0] -= 1;
    let new = u16::from_be_bytes([h[0], h[1]]);
    let c = u16::from_be_bytes([h[2], h[3]]);
    h[2..4].copy_from_slice(&checksum::update16(c, old, new).to_be_bytes());
}

/// Which address of the header to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Rewrite the source or destination address (NAT), fixing the IP checksum and, for a first
/// fragment, the TCP or UDP checksum (their pseudo-header holds the address).
pub fn rewrite_addr(frame: &mut [u8], side: Side, new: Ipv4Addr) {
    let off = IP + if side == Side::Src { 12 } else { 16 };
    let new = u32::from(new);
    let old = replace_u32(frame, off, new);
    checksum::adjust32(frame, IP + 10, old, new);
    if let Some(coff) = l4_checksum_offset(frame) {
        checksum::adjust32(frame, coff, old, new);
    }
}

/// Rewrite the TCP/UDP source or destination port (or the ICMP echo identifier, as `Src` or
/// `Dst` alike), fixing the L4 checksum.
pub fn rewrite_port(frame: &mut [u8], side: Side, new: u16) {
    let Some(v) = Ipv4View::parse(frame) else {
        return;
    };
    let l4 = v.l4_offset();
    let (field, coff) = match v.protocol() {
        PROTO_TCP | PROTO_UDP => (
            l4 + if side == Side::Src { 0 } else { 2 },
            l4_checksum_offset(frame),
        ),
        PROTO_ICMP => (l4 + 4, Some(l4 + 2)),
        _ => return,
    };
    if field + 2 > frame.len() {
        return;
    }
    let old = replace_u16(frame, field, new);
    if let Some(coff) = coff.filter(|c| c + 2 <= frame.len()) {
        checksum::adjust16(frame, coff, old, new);
    }
}

/// Write `new` over the big-endian 16-bit field at `at`; returns what it held.
pub(crate) fn replace_u16(buf: &mut [u8], at: usize, new: u16) -> u16 {
    let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
    buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
    old
}

/// Write `new` over the big-endian 32-bit field at `at`; returns what it held.
pub(crate) fn replace_u32(buf: &mut [u8], at: usize, new: u32) -> u32 {
    let old = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
    old
}

/// Offset of a TCP or UDP checksum that covers the pseudo-header; `None` for other protocols,
/// later fragments, truncated headers and a UDP checksum of zero (none sent).
fn l4_checksum_offset(frame: &[u8]) -> Option<usize> {
    let v = Ipv4View::parse(frame)?;
    if v.is_later_fragment() {
        return None;
    }
    let l4 = v.l4_offset();
    let off = match v.protocol() {
        PROTO_TCP => l4 + 16,
        PROTO_UDP => l4 + 6,
        _ => return None,
    };
    if off + 2 > frame.len() {
        return None;
    }
    let zero_udp = v.protocol() == PROTO_UDP && frame[off] == 0 && frame[off + 1] == 0;
    (!zero_udp).then_some(off)
}

/// Verify the L4 checksum of a TCP, UDP or ICMP packet (for tests and diagnostics).
pub fn l4_checksum_ok(frame: &[u8]) -> bool {
    let Some(v) = Ipv4View::parse(frame) else {
        return false;
    };
    let p = v.payload();
    match v.protocol() {
        PROTO_ICMP => checksum::checksum(p) == 0,
        PROTO_TCP | PROTO_UDP => {
            if v.protocol() == PROTO_UDP && p.len() >= 8 && p[6] == 0 && p[7] == 0 {
                return true;
            }
            let ph = checksum::pseudo_header(
                v.src().octets(),
                v.dst().octets(),
                v.protocol(),
                p.len() as u16,
            );
            !(checksum::sum(p, ph) as u16) == 0
        }
        _ => true,
    }
}

/// Header fields of an IPv4 packet to build.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Params {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
}

/// Append an Ethernet + IPv4 header for a payload of `payload_len` bytes (checksum filled in).
/// The caller appends the payload.
pub fn put_headers(
    buf: &mut BytesMut,
    dst: MacAddr,
    src: MacAddr,
    p: &Ipv4Params,
    payload_len: usize,
) {
    put_eth_header(buf, dst, src, ETHERTYPE_IPV4);
    let start = buf.len();
    let total = (HEADER_LEN + payload_len) as u16;
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&p.ident.to_be_bytes());
    buf.extend_from_slice(&[0x40, 0]); // DF
    buf.extend_from_slice(&[p.ttl, p.protocol, 0, 0]);
    buf.extend_from_slice(&p.src.octets());
    buf.extend_from_slice(&p.dst.octets());
    let c = checksum::checksum(&buf[start..start + HEADER_LEN]);
    buf[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// A UDP datagram from port `sport` to `dport` in an Ethernet frame from `src` to `dst`, its
/// checksums filled in (`p.protocol` is taken as UDP). The caller keeps the payload short
/// enough for IPv4.
pub fn udp(
    dst: MacAddr,
    src: MacAddr,
    p: &Ipv4Params,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> BytesMut {
    const UDP_HEADER: usize = 8;
    let udp_len = (UDP_HEADER + payload.len()) as u16;
    let p = Ipv4Params {
        protocol: PROTO_UDP,
        ..*p
    };
    let mut b = BytesMut::with_capacity(ETH_HEADER_LEN + HEADER_LEN + usize::from(udp_len));
    put_headers(&mut b, dst, src, &p, usize::from(udp_len));
    let l4 = b.len();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&udp_len.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    let ph = checksum::pseudo_header(p.src.octets(), p.dst.octets(), PROTO_UDP, udp_len);
    let c = !(checksum::sum(&b[l4..], ph) as u16);
    // A computed zero is sent as all ones: zero means "no checksum" (RFC 768).
    let c = if c == 0 { 0xffff } else { c };
    b[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP frame with correct checksums, for tests across the crate.
    pub(crate) fn udp_frame(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> BytesMut {
        let p = Ipv4Params {
            src,
            dst,
            protocol: PROTO_UDP,
            ttl,
            ident: 7,
        };
        let macs = (MacAddr::local(1, 1), MacAddr::local(1, 2));
        udp(macs.0, macs.1, &p, (sport, dport), payload)
    }

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const B: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);

    #[test]
    fn view_reads_fields_and_etherparse_agrees() {
        let f = udp_frame(A, B, 64, 1000, 2000, b"hello");
        let v = Ipv4View::parse(&f).unwrap();
        assert_eq!(
            (v.src(), v.dst(), v.ttl(), v.protocol()),
            (A, B, 64, PROTO_UDP)
        );
        assert_eq!(v.ports(), Some((1000, 2000)));
        assert!(v.checksum_ok());
        assert!(l4_checksum_ok(&f));
        let e = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        match e.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(ip.header().source_addr(), A);
                assert_eq!(
                    ip.header().header_checksum(),
                    ip.header().to_header().calc_header_checksum()
                );
            }
            _ => panic!("not ipv4"),
        }
    }

    #[test]
    fn rejects_malformed() {
        let f = udp_frame(A, B, 64, 1, 2, b"x");
        assert!(Ipv4View::parse(&f[..30]).is_none());
        let mut bad = f.clone();
        bad[14] = 0x65; // version 6
        assert!(Ipv4View::parse(&bad).is_none());
        let mut bad = f.clone();
        bad[14] = 0x44; // ihl 16 bytes
        assert!(Ipv4View::parse(&bad).is_none());
        let mut bad = f.clone();
        bad[16] = 0xff; // total length beyond the frame
        assert!(Ipv4View::parse(&bad).is_none());
        let mut bad = f;
        bad[24] ^= 0xff;
        assert!(!Ipv4View::parse(&bad).unwrap().checksum_ok());
    }

    #[test]
    fn ttl_decrement_keeps_checksum() {
        let mut f = udp_frame(A, B, 2, 1, 2, b"x");
        decrement_ttl(&mut f);
        let v = Ipv4View::parse(&f).unwrap();
        assert_eq!(v.ttl(), 1);
        assert!(v.checksum_ok());
    }

    #[test]
    fn nat_rewrite_keeps_all_checksums() {
        let mut f = udp_frame(A, B, 64, 40000, 443, b"payload!");
        rewrite_addr(&mut f, Side::Src, Ipv4Addr::new(172, 31, 0, 30));
        rewrite_port(&mut f, Side::Src, 1024);
        let v = Ipv4View::parse(&f).unwrap();
        assert_eq!(v.src(), Ipv4Addr::new(172, 31, 0, 30));
        assert_eq!(v.ports(), Some((1024, 443)));
        assert!(v.checksum_ok());
        assert!(l4_checksum_ok(&f));
    }
}
