//! Geneve (RFC 8926): the overlay between host tunnel end points (TEPs). An inner Ethernet frame
//! is carried in outer Ethernet + IPv4 + UDP (port 6081) + an 8-byte Geneve header with the
//! segment's VNI. The outer UDP checksum is zero, as RFC 8926 §3.3 allows over IPv4; the outer
//! source port carries a hash of the inner flow for ECMP entropy.

use std::net::Ipv4Addr;

use bytes::BytesMut;

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

/// Encapsulate an inner Ethernet frame for segment `vni`.
pub fn encap(inner: &[u8], outer: &Outer, vni: Vni) -> Frame {
    let mut b = BytesMut::with_capacity(OVERHEAD + inner.len());
    let p = Ipv4Params {
        src: outer.src_ip,
        dst: outer.dst_ip,
        protocol: PROTO_UDP,
        ttl: 64,
        ident: 0,
    };
    let udp_len = UDP_LEN + GENEVE_LEN + inner.len();
    put_headers(&mut b, outer.dst_mac, outer.src_mac, &p, udp_len);
    b.extend_from_slice(&entropy_port(inner).to_be_bytes());
    b.extend_from_slice(&UDP_PORT.to_be_bytes());
    b.extend_from_slice(&(udp_len as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&[0, 0]); // version 0, no options, no flags
    b.extend_from_slice(&PROTO_ETHERNET.to_be_bytes());
    b.extend_from_slice(&(vni << 8).to_be_bytes());
    b.extend_from_slice(inner);
    b.freeze()
}

/// A decapsulated tunnel packet.
#[derive(Debug, Clone)]
pub struct Decapsulated {
    pub vni: Vni,
    pub outer_src: Ipv4Addr,
    /// The inner Ethernet frame (a slice of the outer one: no copy).
    pub inner: Frame,
}

/// Decapsulate a Geneve frame; `None` if the frame is not Geneve-over-UDP-over-IPv4 with an
/// Ethernet payload.
pub fn decap(frame: &Frame) -> Option<Decapsulated> {
    let v = Ipv4View::parse(frame)?;
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
    Some(Decapsulated {
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        outer_src: v.src(),
        inner: frame.slice(start..end),
    })
}

/// A source port in 49152..=65535 from the inner addresses, so one flow keeps one path.
fn entropy_port(inner: &[u8]) -> u16 {
    let n = inner.len().min(ETH_HEADER_LEN + 20);
    let mut h: u32 = 0x811c_9dc5;
    for &b in &inner[..n] {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    0xc000 | (h as u16 & 0x3fff)
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
        let inner = udp_frame(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(192, 168, 2, 10),
            64,
            1,
            2,
            b"abc",
        )
        .freeze();
        let f = encap(&inner, &outer(), 5001);
        assert_eq!(f.len(), inner.len() + OVERHEAD);
        let v = Ipv4View::parse(&f).unwrap();
        assert!(v.checksum_ok());
        assert_eq!(v.ports().map(|p| p.1), Some(UDP_PORT));
        let d = decap(&f).unwrap();
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
    fn decap_rejects_non_geneve() {
        let plain = udp_frame(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            64,
            1,
            53,
            &[0u8; 40],
        )
        .freeze();
        assert!(decap(&plain).is_none());
        let f = encap(&[0u8; 20], &outer(), 7);
        for n in 0..f.len() {
            let _ = decap(&f.slice(..n));
        }
        let mut bad = f.to_vec();
        bad[OVERHEAD - 6] = 0x08; // protocol type 0x0800
        assert!(decap(&Frame::from(bad)).is_none());
    }
}
