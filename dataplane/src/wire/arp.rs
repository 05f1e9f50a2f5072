//! ARP for IPv4 over Ethernet (RFC 826).

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::{put_eth_header, Frame, MacAddr, ETHERTYPE_ARP, ETH_HEADER_LEN};

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// Parse the ARP packet of an Ethernet frame; `None` unless it is Ethernet/IPv4 ARP.
    pub fn parse(frame: &[u8]) -> Option<Arp> {
        if super::ethertype(frame)? != ETHERTYPE_ARP || frame.len() < ETH_HEADER_LEN + ARP_LEN {
            return None;
        }
        let a = &frame[ETH_HEADER_LEN..];
        if a[0..6] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let ip = |o: usize| Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]);
        Some(Arp {
            op: u16::from_be_bytes([a[6], a[7]]),
            sender_mac: MacAddr::from_slice(&a[8..14]),
            sender_ip: ip(14),
            target_mac: MacAddr::from_slice(&a[18..24]),
            target_ip: ip(24),
        })
    }

    /// A broadcast who-has request.
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Arp {
        Arp {
            op: OP_REQUEST,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::default(),
            target_ip,
        }
    }

    /// A gratuitous ARP: `mac` announcing that it holds `ip` (a request for its own address).
    pub fn gratuitous(mac: MacAddr, ip: Ipv4Addr) -> Arp {
        Arp::request(mac, ip, ip)
    }

    /// A request that announces rather than asks (sender and target the same address): nobody
    /// answers it.
    pub fn is_gratuitous(&self) -> bool {
        self.op == OP_REQUEST && self.sender_ip == self.target_ip
    }

    /// The reply to this request, from `mac` which owns the target address.
    pub fn reply_from(&self, mac: MacAddr) -> Arp {
        Arp {
            op: OP_REPLY,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    /// The Ethernet frame: requests are broadcast, replies go to the target.
    pub fn to_frame(&self) -> Frame {
        let dst = if self.op == OP_REQUEST {
            MacAddr::BROADCAST
        } else {
            self.target_mac
        };
        let mut b = BytesMut::with_capacity(ETH_HEADER_LEN + ARP_LEN);
        put_eth_header(&mut b, dst, self.sender_mac, ETHERTYPE_ARP);
        b.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        b.extend_from_slice(&self.op.to_be_bytes());
        b.extend_from_slice(&self.sender_mac.0);
        b.extend_from_slice(&self.sender_ip.octets());
        b.extend_from_slice(&self.target_mac.0);
        b.extend_from_slice(&self.target_ip.octets());
        Frame::from(b)
    }
}

/// Rewrite the sender hardware address of an ARP frame in place (and the Ethernet source), as a
/// host does for a VM whose frames leave through its own NIC.
pub fn rewrite_sender_mac(frame: &mut [u8], mac: MacAddr) {
    if frame.len() >= ETH_HEADER_LEN + ARP_LEN {
        frame[6..12].copy_from_slice(&mac.0);
        frame[ETH_HEADER_LEN + 8..ETH_HEADER_LEN + 14].copy_from_slice(&mac.0);
    }
}

/// Rewrite the target hardware address of an ARP frame.
pub fn rewrite_target_mac(frame: &mut [u8], mac: MacAddr) {
    if frame.len() >= ETH_HEADER_LEN + ARP_LEN {
        frame[ETH_HEADER_LEN + 18..ETH_HEADER_LEN + 24].copy_from_slice(&mac.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_arp_is_a_request_for_the_senders_own_address() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let ip = Ipv4Addr::new(172, 31, 0, 30);
        let g = Arp::parse(&Arp::gratuitous(mac, ip).to_frame()).unwrap();
        assert!(g.is_gratuitous());
        assert_eq!((g.sender_mac, g.sender_ip, g.target_ip), (mac, ip, ip));
        assert!(!Arp::request(mac, ip, Ipv4Addr::new(172, 31, 0, 1)).is_gratuitous());
        // A reply about one's own address answers; it is not an announcement here.
        assert!(!g.reply_from(mac).is_gratuitous());
    }

    #[test]
    fn request_reply_roundtrip() {
        let a = MacAddr::local(1, 1);
        let b = MacAddr::local(1, 2);
        let req = Arp::request(a, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let f = req.to_frame();
        assert_eq!(super::super::eth_dst(&f), Some(MacAddr::BROADCAST));
        assert_eq!(Arp::parse(&f), Some(req));
        let rep = req.reply_from(b);
        let f = rep.to_frame();
        assert_eq!(super::super::eth_dst(&f), Some(a));
        let p = Arp::parse(&f).unwrap();
        assert_eq!(
            (p.op, p.sender_mac, p.sender_ip),
            (OP_REPLY, b, Ipv4Addr::new(10, 0, 0, 2))
        );
        // etherparse reads it the same way.
        let e = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        assert!(matches!(e.net, Some(etherparse::NetSlice::Arp(_))));
    }

    #[test]
    fn rejects_non_ipv4_arp_and_short_frames() {
        let f = Arp::request(
            MacAddr::local(1, 1),
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
        )
        .to_frame();
        assert!(Arp::parse(&f[..40]).is_none());
        let mut bad = f.to_vec();
        bad[17] = 0xdd;
        assert!(Arp::parse(&bad).is_none());
    }
}
