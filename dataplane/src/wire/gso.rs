//! GSO super-frames: what a kernel hands a TAP that takes segmentation offload. One frame up to
//! 64 KiB stands for the run of TCP segments (or UDP datagrams) a NIC would cut it into: the
//! headers of the first, the payload of all, `size` payload bytes a segment, and an L4 checksum
//! that holds only the pseudo-header's sum, for the segmenter to complete.
//!
//! Nodes forward a super-frame whole; it is cut ([`segment`]) only where the path demands: a
//! link that takes time (its queue and serialization see real frames), an MTU a segment does not
//! fit, a NAT.

use super::checksum;
use super::ipv4::{Ipv4View, PROTO_TCP, PROTO_UDP};
use super::{Frame, ETH_HEADER_LEN};

/// What a super-frame is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4: segments of `size` bytes, sequence numbers advancing.
    Tcp4,
    /// UDP over IPv4 (USO): datagrams of `size` bytes each.
    Udp4,
}

/// A super-frame's metadata (the virtio-net header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    /// Payload bytes per segment (TCP's MSS).
    pub size: u16,
    /// Where the L4 checksum's coverage starts, from the frame's first byte (it follows the
    /// frame as headers are put on and taken off), and the checksum's offset from there.
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl GsoKind {
    /// Where the checksum sits in the L4 header: TCP's at 16, UDP's at 6.
    pub fn csum_offset(self) -> u16 {
        match self {
            GsoKind::Tcp4 => 16,
            GsoKind::Udp4 => 6,
        }
    }
}

impl Gso {
    /// The headers every segment carries (any encapsulation, Ethernet, IP, TCP or UDP), in
    /// bytes: up to the end of the L4 header that `csum_start` points at.
    pub fn header_len(&self, frame: &[u8]) -> Option<usize> {
        let l4 = self.csum_start as usize;
        let end = match self.kind {
            GsoKind::Tcp4 => {
                let thl = (*frame.get(l4 + 12)? >> 4) as usize * 4;
                (thl >= 20).then_some(l4 + thl)?
            }
            GsoKind::Udp4 => l4 + 8,
        };
        (end <= frame.len()).then_some(end)
    }

    /// The IP length of a full segment, as the outermost IP header would say: what an MTU must
    /// hold.
    pub fn segment_ip_len(&self, frame: &[u8]) -> Option<usize> {
        Some(self.header_len(frame)?.checked_sub(ETH_HEADER_LEN)? + self.size as usize)
    }
}

/// Complete an L4 checksum a kernel left partial: the Internet checksum of the bytes from
/// `start` on (the field holding the pseudo-header's sum among them), stored at
/// `start + offset`, as a NIC does. False (untouched) if the offsets lie outside the frame.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if start >= frame.len() || at + 2 > frame.len() {
        return false;
    }
    let c = checksum::checksum(&frame[start..]);
    // UDP sends a computed zero as all ones (zero means "none").
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Cut a super-frame into the plain frames it stands for, each with its own IP length,
/// identifier and header checksum, and a complete L4 checksum; TCP segments with their sequence
/// numbers, FIN and PSH on the last only, CWR on the first only. A super-frame inside a Geneve
/// tunnel (outer Ethernet, IPv4, UDP) is cut inside, and each segment keeps the tunnel's
/// headers with its lengths and header checksum set. A frame that is not a well-formed
/// super-frame of its kind gives nothing.
pub fn segment(frame: &Frame) -> Vec<Frame> {
    let Some(g) = frame.gso() else {
        return Vec::new();
    };
    let l4 = g.csum_start as usize;
    let Some(hdr) = g.header_len(frame) else {
        return Vec::new();
    };
    // The inner IP header: right after an Ethernet header, or after a tunnel's headers and
    // the inner Ethernet header.
    let ip = if Ipv4View::parse(frame).is_some_and(|v| v.l4_offset() == l4) {
        ETH_HEADER_LEN
    } else {
        match inner_ip(frame, l4) {
            Some(ip) => ip,
            None => return Vec::new(),
        }
    };
    let Some(v) = Ipv4View::parse(&frame[ip - ETH_HEADER_LEN..]) else {
        return Vec::new();
    };
    let size = g.size as usize;
    let end = ip + v.total_len();
    if size == 0 || hdr > end || v.l4_offset() + ip - ETH_HEADER_LEN != l4 || end > frame.len() {
        return Vec::new();
    }
    let proto = match (g.kind, v.protocol()) {
        (GsoKind::Tcp4, PROTO_TCP) => PROTO_TCP,
        (GsoKind::Udp4, PROTO_UDP) => PROTO_UDP,
        _ => return Vec::new(),
    };
    let (src, dst) = (v.src().octets(), v.dst().octets());
    let id0 = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]);
    let payload = &frame[hdr..end];
    let count = payload.len().div_ceil(size);
    let mut out = Vec::with_capacity(count);
    for (i, chunk) in payload.chunks(size).enumerate() {
        let mut f = Frame::zeroed(hdr + chunk.len());
        f[..hdr].copy_from_slice(&frame[..hdr]);
        f[hdr..].copy_from_slice(chunk);
        let ip_len = (hdr - ip + chunk.len()) as u16;
        f[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
        f[ip + 4..ip + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        set_ip_checksum(&mut f, ip, l4);
        let l4_len = (hdr - l4 + chunk.len()) as u16;
        let csum_at = match g.kind {
            GsoKind::Tcp4 => {
                let seq0 = u32::from_be_bytes([
                    frame[l4 + 4],
                    frame[l4 + 5],
                    frame[l4 + 6],
                    frame[l4 + 7],
                ]);
                let seq = seq0.wrapping_add((i * size) as u32);
                f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
                const FIN: u8 = 0x01;
                const PSH: u8 = 0x08;
                const CWR: u8 = 0x80;
                if i + 1 < count {
                    f[l4 + 13] &= !(FIN | PSH);
                }
                if i > 0 {
                    f[l4 + 13] &= !CWR;
                }
                l4 + 16
            }
            GsoKind::Udp4 => {
                f[l4 + 4..l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
                l4 + 6
            }
        };
        f[csum_at..csum_at + 2].fill(0);
        let ph = checksum::pseudo_header(src, dst, proto, l4_len);
        let c = !(checksum::sum(&f[l4..], ph) as u16);
        let c = if c == 0 && proto == PROTO_UDP {
            0xffff
        } else {
            c
        };
        f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        if ip > ETH_HEADER_LEN {
            set_tunnel_lengths(&mut f);
        }
        out.push(f);
    }
    out
}

/// The inner IP header's offset in a tunnelled frame whose inner L4 header is at `l4`: the
/// outer IPv4 and UDP headers, 8 bytes of Geneve with its options, the inner Ethernet header.
fn inner_ip(frame: &[u8], l4: usize) -> Option<usize> {
    let outer = Ipv4View::parse(frame)?;
    if outer.protocol() != PROTO_UDP {
        return None;
    }
    let geneve = outer.l4_offset() + 8;
    let opt_len = (*frame.get(geneve)? & 0x3f) as usize * 4;
    let ip = geneve + 8 + opt_len + ETH_HEADER_LEN;
    (ip + 20 <= l4).then_some(ip)
}

/// The IPv4 header checksum of the header at `ip`, which ends at `end`.
fn set_ip_checksum(f: &mut [u8], ip: usize, end: usize) {
    f[ip + 10..ip + 12].fill(0);
    let c = checksum::checksum(&f[ip..end]);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

/// A tunnelled segment's outer IP total length and checksum and outer UDP length (its UDP
/// checksum is zero, as Geneve over IPv4 sends it).
fn set_tunnel_lengths(f: &mut [u8]) {
    let ip = ETH_HEADER_LEN;
    let ihl = (f[ip] & 0x0f) as usize * 4;
    let total = (f.len() - ip) as u16;
    f[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    set_ip_checksum(f, ip, ip + ihl);
    let udp = ip + ihl;
    f[udp + 4..udp + 6].copy_from_slice(&(total - ihl as u16).to_be_bytes());
    f[udp + 6..udp + 8].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// A TCP super-frame of `n` payload bytes (pattern `i % 251`), as a kernel hands it: IP
    /// length of the whole, a valid IP checksum, the pseudo-header's sum in the TCP checksum.
    fn super_frame(n: usize, mss: u16, flags: u8) -> Frame {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 1, 10], [172, 31, 16, 10], 64)
            .tcp(40000, 5201, 1_000_000, 64000);
        let b = if flags & 0x08 != 0 { b.psh() } else { b };
        let b = if flags & 0x01 != 0 { b.fin() } else { b };
        let mut bytes = Vec::new();
        b.write(&mut bytes, &payload).unwrap();
        let mut f = Frame::from(bytes);
        let l4 = 14 + 20;
        let ph = checksum::pseudo_header([192, 168, 1, 10], [172, 31, 16, 10], 6, (20 + n) as u16);
        f[l4 + 16..l4 + 18].copy_from_slice(&(ph as u16).to_be_bytes());
        f.set_gso(Some(Gso {
            kind: GsoKind::Tcp4,
            size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
        }));
        f
    }

    #[test]
    fn a_tcp_super_frame_becomes_segments_etherparse_reads_with_right_checksums() {
        let (n, mss) = (10_000, 1448);
        let f = super_frame(n, mss, 0x08 | 0x01);
        let segs = segment(&f);
        assert_eq!(segs.len(), n.div_ceil(mss as usize));
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.gso(), None);
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let h = ip.header();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            assert_eq!(h.identification(), i as u16);
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            let want = tcp
                .to_header()
                .calc_checksum_ipv4_raw(h.source(), h.destination(), tcp.payload())
                .unwrap();
            assert_eq!(tcp.checksum(), want, "segment {i}");
            assert_eq!(tcp.sequence_number(), 1_000_000 + (i * mss as usize) as u32);
            let last = i + 1 == segs.len();
            assert_eq!((tcp.fin(), tcp.psh()), (last, last), "segment {i}");
            assert!(tcp.payload().len() <= mss as usize);
            data.extend_from_slice(tcp.payload());
        }
        let want: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        assert_eq!(data, want);
    }

    #[test]
    fn complete_checksum_makes_a_partial_tcp_checksum_whole() {
        let mut f = super_frame(500, 1448, 0);
        let g = f.gso().unwrap();
        assert!(complete_checksum(
            &mut f,
            g.csum_start as usize,
            g.csum_offset as usize
        ));
        assert!(super::super::ipv4::l4_checksum_ok(&f));
        assert!(!complete_checksum(&mut f, 10_000, 16));
    }

    #[test]
    fn a_super_frame_follows_its_checksum_start_through_encapsulation() {
        let mut f = super_frame(3000, 1448, 0);
        let before = f.gso().unwrap().csum_start;
        f.prepend(50);
        assert_eq!(f.gso().unwrap().csum_start, before + 50);
        f.advance(50);
        assert_eq!(f.gso().unwrap().csum_start, before);
        assert_eq!(segment(&f).len(), 3);
    }

    #[test]
    fn a_super_frame_in_a_geneve_tunnel_is_cut_inside_and_keeps_the_tunnel() {
        use crate::wire::geneve::{decap, Outer, Tunnel};
        let inner = super_frame(4000, 1448, 0);
        let outer = Outer {
            src_mac: crate::wire::MacAddr([2, 0, 0, 0, 1, 1]),
            dst_mac: crate::wire::MacAddr([2, 0, 0, 0, 1, 2]),
            src_ip: std::net::Ipv4Addr::new(10, 2, 64, 1),
            dst_ip: std::net::Ipv4Addr::new(10, 2, 64, 2),
        };
        let tunnel = Tunnel::new(&outer).encap(inner.clone(), 5001).unwrap();
        assert_eq!(
            tunnel.gso().unwrap().csum_start,
            inner.gso().unwrap().csum_start + 50
        );
        let segs = segment(&tunnel);
        let plain = segment(&inner);
        assert_eq!(segs.len(), 3);
        for (s, p) in segs.into_iter().zip(&plain) {
            let v = Ipv4View::parse(&s).unwrap();
            assert!(v.checksum_ok());
            assert_eq!(v.total_len(), s.len() - ETH_HEADER_LEN);
            let d = decap(s).expect("a Geneve frame");
            assert_eq!(d.vni, 5001);
            assert_eq!(&d.inner[..], &p[..], "the inner segment is the plain one");
        }
    }

    #[test]
    fn malformed_super_frames_give_nothing() {
        let mut f = super_frame(3000, 0, 0);
        assert!(segment(&f).is_empty(), "size 0");
        f.set_gso(None);
        assert!(segment(&f).is_empty(), "not a super-frame");
        let mut g = super_frame(3000, 1448, 0);
        g.truncate(40);
        assert!(segment(&g).is_empty(), "truncated");
    }
}
