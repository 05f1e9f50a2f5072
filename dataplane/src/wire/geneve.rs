//! Geneve (RFC 8926): the overlay between host tunnel end points (TEPs). An inner Ethernet frame
//! is carried in outer Ethernet + IPv4 + UDP (port 6081) + an 8-byte Geneve header with the
//! segment's VNI. The outer UDP checksum is zero, as RFC 8926 §3.3 allows over IPv4; the outer
//! source port carries a hash of the inner flow for ECMP entropy.

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::checksum;
use super::ipv4::{put_headers, Ipv4Params, Ipv4View, PROTO_UDP};
use super::{Frame, MacAddr, ETH_HEADER_LEN};

pub const UDP_PORT: u16 = 6081;
/// Geneve protocol type for an Ethernet payload (Transparent Ethernet Bridging).
const PROTO_ETHERNET: u16 = 0x6558;
const GENEVE_LEN: usize = 8;
const UDP_LEN: usize = 8;
/// Bytes the encapsulation adds in front of the inner frame.
pub const OVERHEAD: usize = ETH_HEADER_LEN + 20 + UDP_LEN + GENEVE_LEN;

/// A Virtual Network Identifier (24 bits).
pub type Vni = u32;

/// The outer addresses of a tunnel packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
}

/// The outer headers toward one peer TEP, built once: encapsulating a frame is then one copy
/// of these 50 bytes, three length fields, an incremental checksum update and the VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    hdr: [u8; OVERHEAD],
    /// IP header checksum with a total length of zero.
    check: u16,
}

const IP_OFF: usize = ETH_HEADER_LEN;
const UDP_OFF: usize = IP_OFF + 20;
const GENEVE_OFF: usize = UDP_OFF + UDP_LEN;

impl Tunnel {
    pub fn new(outer: &Outer) -> Tunnel {
        let mut b = BytesMut::with_capacity(OVERHEAD);
        let p = Ipv4Params {
            src: outer.src_ip,
            dst: outer.dst_ip,
            protocol: PROTO_UDP,
            ttl: 64,
            ident: 0,
        };
        put_headers(&mut b, outer.dst_mac, outer.src_mac, &p, 0);
        b[IP_OFF + 2..IP_OFF + 4].copy_from_slice(&[0, 0]);
        b[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&[0, 0]);
        let check = checksum::checksum(&b[IP_OFF..UDP_OFF]);
        b.extend_from_slice(&[0; UDP_LEN]);
        b[UDP_OFF + 2..UDP_OFF + 4].copy_from_slice(&UDP_PORT.to_be_bytes());
        b.extend_from_slice(&[0, 0]); // version 0, no options, no flags
        b.extend_from_slice(&PROTO_ETHERNET.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        let mut hdr = [0u8; OVERHEAD];
        hdr.copy_from_slice(&b);
        Tunnel { hdr, check }
    }

    /// Encapsulate an inner Ethernet frame for segment `vni`: the outer headers go into the
    /// frame's headroom. `None` (the frame dropped) if the outer IPv4 packet would exceed 65,535
    /// bytes: an inner frame longer than [`MAX_INNER_LEN`].
    pub fn encap(&self, mut frame: Frame, vni: Vni) -> Option<Frame> {
        let inner_len = frame.len();
        let ip_len = u16::try_from(OVERHEAD - ETH_HEADER_LEN + inner_len).ok()?;
        let udp_len = ip_len - 20;
        let port = entropy_port(&frame);
        let b = frame.prepend(OVERHEAD);
        b.copy_from_slice(&self.hdr);
        b[IP_OFF + 2..IP_OFF + 4].copy_from_slice(&ip_len.to_be_bytes());
        let check = checksum::update16(self.check, 0, ip_len);
        b[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&check.to_be_bytes());
        b[UDP_OFF..UDP_OFF + 2].copy_from_slice(&port.to_be_bytes());
        b[UDP_OFF + 4..UDP_OFF + 6].copy_from_slice(&udp_len.to_be_bytes());
        b[GENEVE_OFF + 4..GENEVE_OFF + 8].copy_from_slice(&(vni << 8).to_be_bytes());
        Some(frame)
    }
}

/// The longest inner Ethernet frame Geneve can carry: the outer IPv4 packet holds at most
/// 65,535 bytes.
pub const MAX_INNER_LEN: usize = u16::MAX as usize - (OVERHEAD - ETH_HEADER_LEN);

/// Encapsulate an inner Ethernet frame for segment `vni` (builds the [`Tunnel`] each time; a
/// host keeps one per peer instead).
///
/// # Panics
/// If `inner` is longer than [`MAX_INNER_LEN`].
pub fn encap(inner: &[u8], outer: &Outer, vni: Vni) -> Frame {
    Tunnel::new(outer)
        .encap(Frame::copy_from_slice(inner), vni)
        .expect("an inner frame Geneve can carry")
}

/// A decapsulated tunnel packet.
#[derive(Debug, Clone)]
pub struct Decapsulated {
    pub vni: Vni,
    pub outer_src: Ipv4Addr,
    /// The inner Ethernet frame, in the outer frame's buffer (the outer headers became
    /// headroom).
    pub inner: Frame,
}

/// Decapsulate a Geneve frame; `None` if the frame is not Geneve-over-UDP-over-IPv4 with an
/// Ethernet payload.
pub fn decap(frame: Frame) -> Option<Decapsulated> {
    let v = Ipv4View::parse(&frame)?;
    if v.protocol() != PROTO_UDP || v.is_later_fragment() {
        return None;
    }
    let u = v.l4_offset();
    let end = ETH_HEADER_LEN + v.total_len();
    if end < u + UDP_LEN + GENEVE_LEN
        || u16::from_be_bytes([frame[u + 2], frame[u + 3]]) != UDP_PORT
    {
        return None;
    }
    let g = &frame[u + UDP_LEN..];
    let opt_len = (g[0] & 0x3f) as usize * 4;
    let version = g[0] >> 6;
    let start = u + UDP_LEN + GENEVE_LEN + opt_len;
    if version != 0
        || u16::from_be_bytes([g[2], g[3]]) != PROTO_ETHERNET
        || start + ETH_HEADER_LEN > end
    {
        return None;
    }
    let vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
    let outer_src = v.src();
    let mut inner = frame;
    if end < inner.len() {
        inner.truncate(end);
    }
    inner.advance(start);
    Some(Decapsulated {
        vni,
        outer_src,
        inner,
    })
}

/// A source port in 49152..=65535 from the inner flow (IPv4 addresses and the first four bytes
/// of L4, else the MACs), so one flow keeps one path.
#[inline]
fn entropy_port(inner: &[u8]) -> u16 {
    let word = |o: usize| {
        inner.get(o..o + 8).map_or(0, |b| {
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        })
    };
    let is_ipv4 = inner.len() >= ETH_HEADER_LEN + 20 && inner[12..14] == [0x08, 0x00];
    let (a, b) = if is_ipv4 {
        (word(26), word(30))
    } else {
        (word(0), word(4))
    };
    let h = (a ^ b.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    0xc000 | ((h >> 50) as u16 & 0x3fff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::tests::udp_frame;

    fn outer() -> Outer {
        Outer {
            src_mac: MacAddr::local(9, 1),
            dst_mac: MacAddr::local(9, 2),
            src_ip: Ipv4Addr::new(10, 2, 64, 1),
            dst_ip: Ipv4Addr::new(10, 2, 64, 2),
        }
    }

    #[test]
    fn encap_decap_roundtrip() {
        let inner: Frame = udp_frame(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(192, 168, 2, 10),
            64,
            1,
            2,
            b"abc",
        )
        .into();
        let f = encap(&inner, &outer(), 5001);
        assert_eq!(f.len(), inner.len() + OVERHEAD);
        let v = Ipv4View::parse(&f).unwrap();
        assert!(v.checksum_ok());
        assert_eq!(v.ports().map(|p| p.1), Some(UDP_PORT));
        let d = decap(f.clone()).unwrap();
        assert_eq!(d.vni, 5001);
        assert_eq!(d.outer_src, Ipv4Addr::new(10, 2, 64, 1));
        assert_eq!(d.inner, inner);
    }

    #[test]
    fn etherparse_reads_the_outer_udp() {
        let f = encap(&[0u8; 60], &outer(), 7);
        let e = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        match e.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!(u.destination_port(), UDP_PORT);
                assert_eq!(u.payload()[4..7], [0, 0, 7]);
            }
            _ => panic!("no udp"),
        }
    }

    #[test]
    fn tunnel_checksums_hold_for_every_length_and_flows_keep_their_port() {
        let t = Tunnel::new(&outer());
        for len in [14, 60, 61, 1514, 9000, MAX_INNER_LEN] {
            let f = t.encap(Frame::from(vec![0x5a; len]), 4242).unwrap();
            let v = Ipv4View::parse(&f).unwrap();
            assert!(v.checksum_ok(), "len {len}");
            assert_eq!(v.total_len(), len + OVERHEAD - ETH_HEADER_LEN);
            assert_eq!(decap(f).unwrap().vni, 4242);
        }
        let flow = |sport: u16| {
            let inner = udp_frame(
                Ipv4Addr::new(192, 168, 1, 10),
                Ipv4Addr::new(172, 31, 16, 10),
                64,
                sport,
                443,
                b"x",
            );
            let f = t.encap(inner.into(), 1).unwrap();
            let port = u16::from_be_bytes([f[UDP_OFF], f[UDP_OFF + 1]]);
            assert!(port >= 0xc000);
            port
        };
        assert_eq!(flow(40000), flow(40000));
        // One byte more than the outer packet can hold: dropped, not wrapped.
        assert!(t
            .encap(Frame::from(vec![0; MAX_INNER_LEN + 1]), 1)
            .is_none());
        let ports: std::collections::BTreeSet<u16> = (40000..40064).map(flow).collect();
        assert!(
            ports.len() > 48,
            "flows spread over source ports: {}",
            ports.len()
        );
    }

    #[test]
    fn decap_rejects_non_geneve() {
        let plain = udp_frame(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            64,
            1,
            53,
            &[0u8; 40],
        )
        .into();
        assert!(decap(plain).is_none());
        let f = encap(&[0u8; 20], &outer(), 7);
        for n in 0..f.len() {
            let _ = decap(Frame::copy_from_slice(&f[..n]));
        }
        let mut bad = f[..].to_vec();
        bad[OVERHEAD - 6] = 0x08; // protocol type 0x0800
        assert!(decap(Frame::from(bad)).is_none());
    }
}
