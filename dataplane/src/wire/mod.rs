//! Frames on the wire: Ethernet, ARP, IPv4, ICMP, UDP/TCP checksums and Geneve. No I/O.
//!
//! A frame is a [`Frame`]: an owned buffer behind one pointer, with headroom for a tunnel header.
//! A node owns the frame it holds and edits it in place. Readers take `&[u8]` and read fields at
//! fixed offsets after a length check; writers build new frames into `BytesMut`. Every reader
//! tolerates any input: a short or malformed frame yields `None`, never a panic.
//!
//! - [`checksum`]: the Internet checksum and its incremental update (RFC 1624).
//! - [`ipv4`]: header view, validation, TTL decrement, address rewrite.
//! - [`arp`]: Ethernet/IPv4 ARP requests and replies.
//! - [`bfd`]: BFD control packets (RFC 5880) over single-hop UDP (RFC 5881).
//! - [`icmp`]: echo, time exceeded and destination unreachable.
//! - [`geneve`]: the overlay encapsulation between host TEPs (RFC 8926).
//! - [`gso`]: GSO super-frames from a kernel: their metadata, and segmentation.

pub mod arp;
pub mod bfd;
pub mod checksum;
mod frame;
pub mod geneve;
pub mod gso;
pub mod icmp;
pub mod ipv4;

use std::fmt;

use bytes::BytesMut;

pub use frame::{Frame, HEADROOM};

/// Length of an Ethernet II header.
pub const ETH_HEADER_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Largest frame the sim carries (a 64 KiB GSO super-frame plus headers); also the pcap snaplen.
pub const MAX_FRAME_LEN: usize = 65_535 + 2 * ETH_HEADER_LEN + 64;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// A locally administered unicast MAC made from a 32-bit number (02:xx:…).
    pub const fn local(prefix: u8, n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x02, prefix, b[0], b[1], b[2], b[3]])
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Broadcast or multicast (the group bit).
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The address as a number (for hashing: one multiplication instead of six bytes).
    #[inline]
    pub fn to_u64(self) -> u64 {
        let m = self.0;
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }

    pub fn from_slice(b: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<MacAddr> for smoltcp::wire::EthernetAddress {
    fn from(m: MacAddr) -> Self {
        smoltcp::wire::EthernetAddress(m.0)
    }
}

/// Destination MAC; `None` if the frame is shorter than an Ethernet header.
pub fn eth_dst(frame: &[u8]) -> Option<MacAddr> {
    (frame.len() >= ETH_HEADER_LEN).then(|| MacAddr::from_slice(&frame[0..6]))
}

/// Source MAC; `None` if the frame is shorter than an Ethernet header.
pub fn eth_src(frame: &[u8]) -> Option<MacAddr> {
    (frame.len() >= ETH_HEADER_LEN).then(|| MacAddr::from_slice(&frame[6..12]))
}

/// EtherType; `None` if the frame is shorter than an Ethernet header.
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    (frame.len() >= ETH_HEADER_LEN).then(|| u16::from_be_bytes([frame[12], frame[13]]))
}

/// Rewrite both MACs of a frame already known to hold an Ethernet header.
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

/// Write an Ethernet header at the start of `buf`.
pub fn put_eth_header(buf: &mut BytesMut, dst: MacAddr, src: MacAddr, ethertype: u16) {
    buf.extend_from_slice(&dst.0);
    buf.extend_from_slice(&src.0);
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_helpers() {
        let m = MacAddr::local(0x10, 0x0102_0304);
        assert_eq!(m.to_string(), "02:10:01:02:03:04");
        assert!(!m.is_group());
        assert!(MacAddr::BROADCAST.is_group());
        assert_eq!(eth_dst(&[0u8; 13]), None);
        let mut b = BytesMut::new();
        put_eth_header(&mut b, MacAddr::BROADCAST, m, ETHERTYPE_ARP);
        assert_eq!(eth_dst(&b), Some(MacAddr::BROADCAST));
        assert_eq!(eth_src(&b), Some(m));
        assert_eq!(ethertype(&b), Some(ETHERTYPE_ARP));
    }
}
