//! BFD control packets (RFC 5880 §4.1) in single-hop UDP over IPv4 (RFC 5881): the mandatory
//! 24-byte section, no authentication, to UDP port 3784 with TTL 255.

use std::net::Ipv4Addr;

use super::ipv4::{self, Ipv4Params, Ipv4View, PROTO_UDP};
use super::{Frame, MacAddr};

/// The destination port of single-hop BFD control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// The source port a session sends from: in the range RFC 5881 §4 gives (49152–65535).
pub const SOURCE_PORT: u16 = 49152;
/// Single-hop BFD is sent, and must arrive, with TTL 255 (RFC 5881 §5, GTSM).
pub const TTL: u8 = 255;
/// Length of a control packet without authentication.
pub const LEN: usize = 24;
const UDP_LEN: usize = 8;

/// A session's state (RFC 5880 §4.1, the `Sta` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

/// Why a session last left Up (RFC 5880 §4.1, the `Diag` field): the values a session without
/// echo or administrative control gives.
pub const DIAG_NONE: u8 = 0;
pub const DIAG_DETECTION_TIME_EXPIRED: u8 = 1;
pub const DIAG_NEIGHBOR_DOWN: u8 = 3;

/// The fields of a control packet that a session without authentication, echo or demand mode
/// uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub diag: u8,
    pub state: State,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Desired minimum transmit interval, in microseconds.
    pub desired_min_tx_us: u32,
    /// Required minimum receive interval, in microseconds.
    pub required_min_rx_us: u32,
}

impl Control {
    /// The 24 bytes on the wire: version 1, no flags, no echo.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = (self.state as u8) << 6;
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b
    }

    /// A control packet as RFC 5880 §6.8.6 accepts it: version 1, a length that fits, a
    /// detect multiplier, a discriminator and a desired transmit interval not zero, no
    /// authentication, not multipoint; a zero "your discriminator" only in the Down and
    /// AdminDown states.
    pub fn parse(b: &[u8]) -> Option<Control> {
        if b.len() < LEN || b[0] >> 5 != 1 {
            return None;
        }
        let len = usize::from(b[3]);
        let flags = b[1] & 0x3f;
        // A (authentication) and M (multipoint) must be clear.
        if len < LEN || len > b.len() || flags & 0x04 != 0 || flags & 0x01 != 0 {
            return None;
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let c = Control {
            diag: b[0] & 0x1f,
            state: State::from_bits(b[1] >> 6),
            detect_mult: b[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
        };
        let your_ok =
            c.your_discriminator != 0 || matches!(c.state, State::Down | State::AdminDown);
        // A desired transmit interval of zero is reserved (§4.1).
        let tx_ok = c.desired_min_tx_us != 0;
        (c.detect_mult != 0 && c.my_discriminator != 0 && your_ok && tx_ok).then_some(c)
    }
}

/// A control packet in an Ethernet frame from `src` to `dst`, with its UDP checksum.
pub fn frame(src: (MacAddr, Ipv4Addr), dst: (MacAddr, Ipv4Addr), c: &Control) -> Frame {
    let p = Ipv4Params {
        src: src.1,
        dst: dst.1,
        protocol: PROTO_UDP,
        ttl: TTL,
        ident: 0,
    };
    let ports = (SOURCE_PORT, CONTROL_PORT);
    Frame::from(ipv4::udp(dst.0, src.0, &p, ports, &c.to_bytes()))
}

/// The control packet a frame carries, if it is one that single-hop BFD accepts: IPv4 with a
/// good header checksum, TTL 255, UDP to port 3784 with a good checksum, a valid packet.
pub fn parse(frame: &[u8]) -> Option<Control> {
    let v = Ipv4View::parse(frame).filter(|v| v.checksum_ok())?;
    if v.protocol() != PROTO_UDP || v.ttl() != TTL || v.is_later_fragment() {
        return None;
    }
    let (_, dport) = v.ports()?;
    if dport != CONTROL_PORT || !ipv4::l4_checksum_ok(frame) {
        return None;
    }
    Control::parse(v.payload().get(UDP_LEN..)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Control {
        Control {
            diag: DIAG_NONE,
            state: State::Init,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx_us: 500_000,
            required_min_rx_us: 500_000,
        }
    }

    fn ends() -> ((MacAddr, Ipv4Addr), (MacAddr, Ipv4Addr)) {
        (
            (MacAddr::local(0xed, 1), Ipv4Addr::new(169, 254, 0, 1)),
            (MacAddr::local(0xed, 2), Ipv4Addr::new(169, 254, 0, 2)),
        )
    }

    #[test]
    fn a_control_packet_goes_and_comes_back_as_etherparse_reads_it() {
        let (a, b) = ends();
        let f = frame(a, b, &control());
        assert_eq!(parse(&f), Some(control()));
        let p = etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("IPv4");
        };
        assert_eq!(ip.header().ttl(), 255);
        assert_eq!(ip.header().destination_addr(), b.1);
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("UDP");
        };
        assert_eq!(udp.destination_port(), 3784);
        let sum = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .expect("fits");
        assert_eq!(udp.checksum(), sum);
        // RFC 5880 §4.1: version 1 in the top three bits, state in the top two of byte 1.
        assert_eq!(udp.payload()[0] >> 5, 1);
        assert_eq!(udp.payload()[1] >> 6, State::Init as u8);
        assert_eq!(udp.payload()[3], 24);
    }

    #[test]
    fn packets_bfd_must_discard_are_not_read() {
        let (a, b) = ends();
        let good = frame(a, b, &control());
        // Not TTL 255: it may have come from off the link (RFC 5881 §5).
        let mut hop = good.clone();
        ipv4::decrement_ttl(&mut hop);
        assert_eq!(parse(&hop), None);
        // A payload byte changed: the UDP checksum no longer holds.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(parse(&bad), None);
        // RFC 5880 §6.8.6's checks on the packet itself.
        let raw = control().to_bytes();
        let with = |i: usize, v: u8| {
            let mut r = raw;
            r[i] = v;
            Control::parse(&r)
        };
        assert_eq!(with(0, 2 << 5), None, "version 2");
        assert_eq!(with(2, 0), None, "detect multiplier zero");
        assert_eq!(with(3, 20), None, "length too short");
        assert_eq!(with(3, 30), None, "length past the packet");
        assert_eq!(with(1, (2 << 6) | 0x04), None, "authentication present");
        assert_eq!(with(1, (2 << 6) | 0x01), None, "multipoint");
        assert_eq!(Control::parse(&raw[..23]), None, "short");
        // A packet whose fields say so.
        let changed = |change: fn(&mut Control)| {
            let mut c = control();
            change(&mut c);
            (c, Control::parse(&c.to_bytes()))
        };
        let init_without_yours = changed(|c| c.your_discriminator = 0).1;
        assert_eq!(init_without_yours, None, "Init without yours");
        let (down, parsed) = changed(|c| (c.your_discriminator, c.state) = (0, State::Down));
        assert_eq!(parsed, Some(down), "Down without yours");
        assert_eq!(
            changed(|c| c.desired_min_tx_us = 0).1,
            None,
            "interval zero"
        );
        assert_eq!(changed(|c| c.my_discriminator = 0).1, None, "mine zero");
    }
}
