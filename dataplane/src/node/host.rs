//! An ESXi host: the virtual switch for the VMs and Edge interfaces it runs, the Geneve tunnel
//! end point (TEP) to the other hosts, and the uplink to its ENI in the Connected VPC.
//!
//! Ports: [`UPLINK`] to the host's ENI (cluster-1 hosts only), [`OVERLAY`] to the underlay, and
//! one port per vNIC from [`FIRST_VNIC`] on.
//!
//! Switching is per segment (VNI), as NSX programs it. The central control plane gives every host
//! one [`Directory`]: where each VM's (and Edge interface's) MAC lives (its host's TEP), each
//! VM's address, the hosts with a vNIC on each segment, and the segments the distributed router
//! routes. A frame from a vNIC goes to the local vNIC that has its destination MAC, or over the
//! overlay to the TEP the directory names; an ARP request for an address the directory knows is
//! answered on the host (ARP suppression), so broadcasts are not flooded to every host. What is
//! still flooded (an unknown destination, other broadcasts) goes to the segment's local vNICs and,
//! by head-end replication, to the other hosts of the segment. Frames from the overlay are
//! delivered to local vNICs only (split horizon). Tunnels to other hosts are built when first
//! used.
//!
//! The distributed router: a VM's gateway on a CGW segment answers at [`DR_MAC`] on every host.
//! A packet to another CGW segment is routed right there (TTL − 1, time exceeded answered from
//! the gateway address) and switched on the destination segment; anything else (the MGW, the
//! VPC, S3) is handed to the Edge's interface on the segment, which routes it.
//!
//! The uplink carries the addresses of the host's ENI. In VMC the ENI is the host's NIC in the
//! Connected VPC: a vNIC attached to the uplink (the Edge's Tier-0 uplink) leaves with the ENI's
//! MAC, and a frame from the ENI goes to the local vNIC that owns its destination IP (the ARP
//! target for ARP); an IP packet for any other address (an SDDC segment, routed by the VPC to
//! this ENI) goes to the vNIC that owns an uplink address — the Edge, which routes it. When no
//! local vNIC owns an uplink address — the Edge left this host — the frame is dropped.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;

use super::{Change, Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::arp::{self, Arp, OP_REQUEST};
use crate::wire::geneve::{self, Outer, Tunnel, Vni};
use crate::wire::icmp::{self, CODE_TTL_EXCEEDED, TYPE_TIME_EXCEEDED};
use crate::wire::ipv4::Ipv4View;
use crate::wire::{self, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

pub const UPLINK: Port = 0;
pub const OVERLAY: Port = 1;
pub const FIRST_VNIC: Port = 2;
/// EtherType of RARP, which a host sends to announce a VM that moved to it.
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// RARP's "request reverse" operation.
const RARP_REQUEST_REVERSE: u8 = 3;

/// What a vNIC is plugged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// An overlay segment.
    Segment(Vni),
    /// The host's uplink to its ENI.
    Uplink,
}

/// A vNIC on the host's switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnic {
    /// `web-1`, `edge-1/uplink`, …
    pub name: String,
    pub mac: MacAddr,
    pub attach: Attachment,
}

/// Another host's TEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tep {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// A learned MAC is forgotten when not seen for this long (give or take half of it: entries are
/// swept by halves); ESXi's and Linux's bridges default to 300 s.
pub const MAC_AGING: std::time::Duration = std::time::Duration::from_secs(300);
/// MACs a host's table holds; a new one learned past that makes room first (see
/// `Host::make_room`; evictions are counted).
pub const MAX_LEARNED_MACS: usize = 16_384;
/// A full MAC table forgets this share of its entries (one over it) to make room.
const EVICT_SHARE: usize = 8;
const HALF_AGING_NS: u64 = MAC_AGING.as_nanos() as u64 / 2;

/// The MAC of the distributed router's interfaces, the same on every host (NSX's vMAC).
pub const DR_MAC: MacAddr = MacAddr([0x02, 0x50, 0x56, 0x56, 0x44, 0x52]);

/// What the central control plane programs into every host: one table for all of them, shared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    /// Every host's TEP.
    pub teps: Vec<Tep>,
    tep_index: FxHashMap<Ipv4Addr, usize>,
    /// (VNI, MAC) → index in `teps` of the host whose vNIC has it.
    macs: FxHashMap<u128, usize>,
    /// (VNI, IP) → MAC, for ARP suppression and the distributed router.
    arp: FxHashMap<u64, MacAddr>,
    /// Per VNI: the hosts (indices in `teps`) with a vNIC on it; a VNI missing here spans all.
    span: FxHashMap<Vni, Vec<usize>>,
    /// Segments the distributed router routes (the CGW's).
    routed: Vec<RoutedSegment>,
    /// Per VNI: the MAC of the Edge's interface, where the distributed router hands packets it
    /// does not route.
    edge_mac: FxHashMap<Vni, MacAddr>,
}

/// A segment the distributed router has an interface on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedSegment {
    pub vni: Vni,
    pub net: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl Directory {
    /// A directory of TEPs only: every host, nothing placed yet.
    pub fn with_teps(teps: Vec<Tep>) -> Directory {
        let tep_index = teps.iter().enumerate().map(|(i, t)| (t.ip, i)).collect();
        Directory {
            teps,
            tep_index,
            ..Directory::default()
        }
    }

    /// `mac` on segment `vni` is a vNIC of the host with TEP `tep`.
    pub fn place(&mut self, vni: Vni, mac: MacAddr, tep: Ipv4Addr) {
        if let Some(&i) = self.tep_index.get(&tep) {
            self.macs.insert(l2_key(vni, mac), i);
            let span = self.span.entry(vni).or_default();
            if !span.contains(&i) {
                span.push(i);
            }
        }
    }

    /// `ip` on segment `vni` answers at `mac`.
    pub fn address(&mut self, vni: Vni, ip: Ipv4Addr, mac: MacAddr) {
        self.arp.insert(arp_key(vni, ip), mac);
    }

    /// The distributed router routes segment `vni`.
    pub fn route(&mut self, seg: RoutedSegment) {
        self.routed.push(seg);
    }

    /// Packets the distributed router does not route leave segment `vni` for `mac`, the Edge.
    pub fn edge_interface(&mut self, vni: Vni, mac: MacAddr) {
        self.edge_mac.insert(vni, mac);
    }

    fn mac_of(&self, vni: Vni, ip: Ipv4Addr) -> Option<MacAddr> {
        if self.routed_gateway(vni) == Some(ip) {
            return Some(DR_MAC);
        }
        self.arp.get(&arp_key(vni, ip)).copied()
    }

    fn routed_gateway(&self, vni: Vni) -> Option<Ipv4Addr> {
        self.routed.iter().find(|s| s.vni == vni).map(|s| s.gateway)
    }
}

fn arp_key(vni: Vni, ip: Ipv4Addr) -> u64 {
    (u64::from(vni) << 32) | u64::from(u32::from(ip))
}

/// Where a MAC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L2Dest {
    Local(Port),
    /// Behind another host's TEP (its index in the directory's `teps`).
    Remote(usize),
}

/// A one-entry cache of where a MAC on a segment is, as integers a frame compares in a few
/// instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cached {
    /// The MAC's six bytes as read, or [`Cached::EMPTY`] (more than 48 bits) for none.
    mac: u64,
    vni: Vni,
    /// A local port, or a remote host's index with [`Cached::REMOTE`] set.
    at: u64,
}

impl Cached {
    const EMPTY: u64 = u64::MAX;
    const REMOTE: u64 = 1 << 63;
    const NONE: Cached = Cached {
        mac: Self::EMPTY,
        vni: 0,
        at: 0,
    };

    #[inline]
    fn mac(mac: MacAddr) -> u64 {
        let m = mac.0;
        u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
    }

    #[inline]
    fn new(vni: Vni, mac: MacAddr, at: L2Dest) -> Cached {
        let at = match at {
            L2Dest::Local(p) => u64::from(p),
            L2Dest::Remote(i) => i as u64 | Self::REMOTE,
        };
        Cached {
            mac: Self::mac(mac),
            vni,
            at,
        }
    }

    /// Where `mac` on `vni` is, if it is the MAC cached.
    #[inline]
    fn get(&self, vni: Vni, mac: MacAddr) -> Option<L2Dest> {
        if self.mac != Self::mac(mac) || self.vni != vni {
            return None;
        }
        Some(if self.at & Self::REMOTE != 0 {
            L2Dest::Remote((self.at & !Self::REMOTE) as usize)
        } else {
            L2Dest::Local(self.at as Port)
        })
    }
}

counters! {
    /// What the host's switch did with frames.
    pub struct HostCounters {
        pub switched_local,
        pub tx_encapsulated,
        pub rx_decapsulated,
        pub flooded,
        pub uplink_out,
        pub uplink_in,
        pub rx_dropped_not_geneve,
        /// Geneve from an address that is not a peer TEP.
        pub rx_dropped_unknown_tep,
        /// A flooded frame (broadcast, multicast or unknown unicast) from the overlay, for a
        /// segment with no vNIC here: head-end replication sends every host a copy.
        pub rx_flood_no_local_vnic,
        pub rx_dropped_no_vnic,
        pub rx_dropped_uplink_no_owner,
        pub rx_dropped_no_uplink,
        pub rx_dropped_runt,
        /// An inner frame too large for the outer IPv4 packet (over 65,535 bytes in all).
        pub tx_dropped_too_big_for_geneve,
        /// Learned MACs forgotten, not seen for the aging time.
        pub mac_aged_out,
        /// Learned MACs evicted to make room in a full table.
        pub mac_evicted,
        /// RARP announcements sent for vNICs that arrived (vMotion).
        pub announced,
        /// ARP requests answered on the host from the directory (ARP suppression).
        pub arp_suppressed,
        /// Packets the distributed router routed between segments.
        pub dr_routed,
        /// Packets the distributed router handed to the Edge.
        pub dr_to_edge,
        /// Packets the distributed router could not route: no address for the destination.
        pub dr_dropped_unknown_dst,
        /// Packets for the Edge (the MGW, the VPC, S3) while no Edge is active.
        pub dr_dropped_no_edge,
        /// Time exceeded answered by the distributed router.
        pub dr_ttl_exceeded,
    }
}

/// An ESXi host.
#[derive(Debug)]
pub struct Host {
    name: String,
    tep: Tep,
    /// The MAC of the host's ENI, if it has one.
    eni_mac: Option<MacAddr>,
    vnics: Vec<Option<Vnic>>,
    dir: Arc<Directory>,
    /// This host's index in the directory's TEPs.
    me: Option<usize>,
    /// Outer headers toward each TEP used so far, by index in the directory.
    tunnels: Vec<Option<Tunnel>>,
    /// The last TEP address a tunnel packet came from and its index in the directory: a
    /// flow's packets skip the directory's table.
    last_tep: Option<(Ipv4Addr, usize)>,
    /// MAC table, keyed by [`l2_key`].
    l2: FxHashMap<u128, (L2Dest, u32)>,
    /// The current half-aging period (now / (MAC_AGING / 2)); entries carry the one they were
    /// last seen in and are forgotten two periods later.
    epoch: u32,
    /// When the current aging period ends, in nanoseconds.
    epoch_end: u64,
    /// The last MAC learned and where, in the current aging period (moving to the next one
    /// forgets it): a flow's frames skip the table to re-learn it.
    last_learned: Cached,
    /// The last destination looked up and where it is, while the table is unchanged: a
    /// flow's frames skip the table to find it.
    last_found: Cached,
    /// IPs of the host's ENI and the local vNIC port that owns each.
    uplink_owners: Vec<(Ipv4Addr, Port)>,
    pub counters: HostCounters,
}

impl Host {
    pub fn new(name: &str, tep: Tep, eni_mac: Option<MacAddr>) -> Self {
        Host {
            name: name.to_string(),
            tep,
            eni_mac,
            vnics: Vec::new(),
            dir: Arc::default(),
            me: None,
            tunnels: Vec::new(),
            last_tep: None,
            l2: FxHashMap::default(),
            epoch: 0,
            epoch_end: HALF_AGING_NS,
            last_learned: Cached::NONE,
            last_found: Cached::NONE,
            uplink_owners: Vec::new(),
            counters: HostCounters::default(),
        }
    }

    pub fn tep(&self) -> Tep {
        self.tep
    }

    pub fn eni_mac(&self) -> Option<MacAddr> {
        self.eni_mac
    }

    /// Plug a vNIC in; returns its port.
    pub fn add_vnic(&mut self, vnic: Vnic) -> Port {
        let slot = match self.vnics.iter().position(Option::is_none) {
            Some(i) => {
                self.vnics[i] = Some(vnic);
                i
            }
            None => {
                self.vnics.push(Some(vnic));
                self.vnics.len() - 1
            }
        };
        FIRST_VNIC + slot as Port
    }

    /// Plug a vNIC into `port` (a free one).
    pub fn plug_vnic(&mut self, port: Port, vnic: Vnic) {
        let Some(slot) = port.checked_sub(FIRST_VNIC).map(usize::from) else {
            return;
        };
        if self.vnics.len() <= slot {
            self.vnics.resize(slot + 1, None);
        }
        self.vnics[slot] = Some(vnic);
    }

    /// Announce the vNIC on `port` to its segment: a broadcast RARP request from its MAC, as
    /// ESXi sends for a VM that resumed after a vMotion. Every host on the segment learns where
    /// the MAC is now.
    fn announce(&mut self, port: Port, out: &mut Outbox) {
        let Some(v) = self.vnic(port).cloned() else {
            return;
        };
        let mut f = bytes::BytesMut::with_capacity(wire::ETH_HEADER_LEN + arp::ARP_LEN);
        wire::put_eth_header(&mut f, MacAddr::BROADCAST, v.mac, ETHERTYPE_RARP);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, RARP_REQUEST_REVERSE]);
        for _ in 0..2 {
            f.extend_from_slice(&v.mac.0);
            f.extend_from_slice(&[0; 4]);
        }
        self.counters.announced += 1;
        self.vnic_in(port, v.attach, Frame::from(f), out);
    }

    /// Unplug a vNIC (the VM left the host); forgets what was learned on it.
    pub fn remove_vnic(&mut self, port: Port) -> Option<Vnic> {
        let v = self
            .vnics
            .get_mut(port.checked_sub(FIRST_VNIC)? as usize)?
            .take();
        self.l2.retain(|_, (d, _)| *d != L2Dest::Local(port));
        self.last_learned = Cached::NONE;
        self.last_found = Cached::NONE;
        self.uplink_owners.retain(|(_, p)| *p != port);
        v
    }

    /// The vNICs plugged in, with their ports.
    pub fn vnics(&self) -> impl Iterator<Item = (Port, &Vnic)> {
        self.vnics
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (FIRST_VNIC + i as Port, v)))
    }

    /// Every host's TEP (this one's among them), and nothing placed: a directory of TEPs only.
    pub fn set_peers(&mut self, teps: Vec<Tep>) {
        self.set_directory(Arc::new(Directory::with_teps(teps)));
    }

    /// The directory the control plane programs. Forgets the MACs learned behind other hosts
    /// when the TEPs change.
    pub fn set_directory(&mut self, dir: Arc<Directory>) {
        if dir.teps != self.dir.teps {
            self.tunnels.clear();
            self.l2.retain(|_, (d, _)| matches!(d, L2Dest::Local(_)));
        }
        self.me = dir.tep_index.get(&self.tep.ip).copied();
        self.last_tep = None;
        self.dir = dir;
        self.last_learned = Cached::NONE;
        self.last_found = Cached::NONE;
    }

    /// `ip`, an address of this host's ENI, belongs to the vNIC on `port`.
    pub fn set_uplink_owner(&mut self, ip: Ipv4Addr, port: Port) {
        self.uplink_owners.retain(|(a, _)| *a != ip);
        self.uplink_owners.push((ip, port));
    }

    /// `ip` no longer belongs to any local vNIC.
    pub fn clear_uplink_owner(&mut self, ip: Ipv4Addr) {
        self.uplink_owners.retain(|(a, _)| *a != ip);
    }

    fn vnic(&self, port: Port) -> Option<&Vnic> {
        self.vnics
            .get(port.checked_sub(FIRST_VNIC)? as usize)?
            .as_ref()
    }

    #[inline(always)]
    fn encap_to(&mut self, peer: usize, vni: Vni, inner: Frame, out: &mut Outbox) {
        if !matches!(self.tunnels.get(peer), Some(Some(_))) {
            self.add_tunnel(peer);
        }
        let Some(Some(tunnel)) = self.tunnels.get(peer) else {
            return;
        };
        // A super-frame too long for one Geneve packet (its stack ignored the lab's GSO size)
        // goes as its segments.
        if inner.len() > geneve::MAX_INNER_LEN && inner.gso().is_some() {
            for seg in crate::wire::gso::segment(&inner) {
                encap_one(&mut self.counters, tunnel, seg, vni, out);
            }
            return;
        }
        encap_one(&mut self.counters, tunnel, inner, vni, out);
    }

    /// Build the outer headers toward the TEP with index `peer` in the directory.
    #[cold]
    fn add_tunnel(&mut self, peer: usize) {
        let (me, to) = (self.tep, self.dir.teps[peer]);
        if self.tunnels.len() <= peer {
            self.tunnels.resize(peer + 1, None);
        }
        self.tunnels[peer] = Some(Tunnel::new(&Outer {
            src_mac: me.mac,
            dst_mac: to.mac,
            src_ip: me.ip,
            dst_ip: to.ip,
        }));
    }

    /// The other hosts a flood on `vni` goes to: those of its span, or every host.
    fn flood_peers(&self, vni: Vni) -> Vec<usize> {
        let me = self.me;
        match self.dir.span.get(&vni) {
            Some(span) => span.iter().copied().filter(|i| Some(*i) != me).collect(),
            None => (0..self.dir.teps.len())
                .filter(|i| Some(*i) != me)
                .collect(),
        }
    }

    /// Local vNIC ports on segment `vni`, except `except`.
    fn flood_local(&mut self, vni: Vni, except: Option<Port>, frame: &Frame, out: &mut Outbox) {
        for (i, v) in self.vnics.iter().enumerate() {
            let port = FIRST_VNIC + i as Port;
            if matches!(v, Some(v) if v.attach == Attachment::Segment(vni)) && Some(port) != except
            {
                out.send(port, frame.clone());
            }
        }
    }

    /// Learn that `src` on segment `vni` is at `at`. A flow's frames find it learned last and
    /// stop at the first test.
    #[inline]
    fn learn(&mut self, vni: Vni, src: MacAddr, at: L2Dest) {
        if src.is_group() || self.last_learned == Cached::new(vni, src, at) {
            return;
        }
        self.learn_in_table(vni, src, at);
    }

    /// [`Host::learn`] for a MAC other than the last one learned.
    #[inline(never)]
    fn learn_in_table(&mut self, vni: Vni, src: MacAddr, at: L2Dest) {
        let key = l2_key(vni, src);
        let epoch = self.epoch;
        match self.l2.get_mut(&key) {
            Some(e) if e.0 == at => e.1 = epoch,
            Some(e) => {
                *e = (at, epoch);
                self.last_found = Cached::NONE;
            }
            None => {
                if self.l2.len() >= MAX_LEARNED_MACS {
                    self.make_room();
                }
                self.l2.insert(key, (at, epoch));
                self.last_found = Cached::NONE;
            }
        }
        self.last_learned = Cached::new(vni, src, at);
    }

    /// The MAC table is full: forget an eighth of it at once (so that a flood of new MACs pays
    /// for this once every so many frames), the entries seen longest ago first and, of those
    /// seen as recently, MACs behind other hosts before the local vNICs' (what a flood from
    /// the overlay or a vNIC brings in goes before the host's own VMs). Ties go by key, so
    /// that which entries go does not depend on the table's order.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        let mut ranked: Vec<(u32, bool, u128)> = self
            .l2
            .iter()
            .map(|(k, (at, seen))| (*seen, matches!(at, L2Dest::Local(_)), *k))
            .collect();
        let n = (MAX_LEARNED_MACS / EVICT_SHARE).min(ranked.len());
        ranked.select_nth_unstable(n.saturating_sub(1));
        for (_, _, k) in &ranked[..n] {
            self.l2.remove(k);
        }
        self.counters.mac_evicted += n as u64;
        self.last_found = Cached::NONE;
        self.last_learned = Cached::NONE;
    }

    /// Move to the aging period of `now`; forget entries two periods old.
    #[inline]
    fn age(&mut self, now: Instant) {
        if now.as_nanos() < self.epoch_end {
            return;
        }
        let epoch = (now.as_nanos() / HALF_AGING_NS) as u32;
        self.epoch_end = (u64::from(epoch) + 1).saturating_mul(HALF_AGING_NS);
        self.epoch = epoch;
        let before = self.l2.len();
        self.l2.retain(|_, (_, seen)| epoch < *seen + 2);
        self.counters.mac_aged_out += (before - self.l2.len()) as u64;
        self.last_learned = Cached::NONE;
        self.last_found = Cached::NONE;
    }

    /// Where `mac` on segment `vni` is: a local vNIC that sent from it, the host the directory
    /// names, or a host it was learned behind.
    #[inline]
    fn find(&mut self, vni: Vni, mac: MacAddr) -> Option<L2Dest> {
        if let Some(d) = self.last_found.get(vni, mac) {
            return Some(d);
        }
        self.find_in_table(vni, mac)
    }

    /// [`Host::find`] for a MAC other than the last one found.
    #[inline(never)]
    fn find_in_table(&mut self, vni: Vni, mac: MacAddr) -> Option<L2Dest> {
        let key = l2_key(vni, mac);
        let d = match self.l2.get(&key).map(|e| e.0) {
            Some(L2Dest::Local(p)) => L2Dest::Local(p),
            learned => match self.dir.macs.get(&key) {
                Some(&i) if Some(i) != self.me => L2Dest::Remote(i),
                _ => learned?,
            },
        };
        self.last_found = Cached::new(vni, mac, d);
        Some(d)
    }

    /// Answer an ARP request from the vNIC on `port` if the directory knows the address.
    fn suppress_arp(&mut self, port: Port, vni: Vni, frame: &Frame, out: &mut Outbox) -> bool {
        // A gratuitous ARP (sender and target the same address) announces; it asks nothing.
        let Some(a) = Arp::parse(frame).filter(|a| a.op == OP_REQUEST && !a.is_gratuitous()) else {
            return false;
        };
        let Some(mac) = self.dir.mac_of(vni, a.target_ip) else {
            return false;
        };
        if mac == a.sender_mac {
            return false;
        }
        self.counters.arp_suppressed += 1;
        out.send(port, a.reply_from(mac).to_frame());
        true
    }

    /// Send `frame` to `dst` on segment `vni`: to a local vNIC, over the overlay, or flooded.
    #[inline(always)]
    fn switch(
        &mut self,
        vni: Vni,
        dst: MacAddr,
        from: Option<Port>,
        frame: Frame,
        out: &mut Outbox,
    ) {
        match self.find(vni, dst) {
            Some(L2Dest::Local(p)) if !dst.is_group() => {
                if Some(p) != from {
                    self.counters.switched_local += 1;
                    out.send(p, frame);
                }
            }
            Some(L2Dest::Remote(peer)) if !dst.is_group() => self.encap_to(peer, vni, frame, out),
            _ => self.flood(vni, from, frame, out),
        }
    }

    /// Flood `frame` on segment `vni`: to the local vNICs but `from`, and to the other hosts
    /// of the segment.
    #[inline(never)]
    fn flood(&mut self, vni: Vni, from: Option<Port>, frame: Frame, out: &mut Outbox) {
        self.counters.flooded += 1;
        self.flood_local(vni, from, &frame, out);
        // Head-end replication: a copy per host of the segment, the frame to the last.
        let peers = self.flood_peers(vni);
        if let Some((&last, rest)) = peers.split_last() {
            for &peer in rest {
                self.encap_to(peer, vni, frame.clone(), out);
            }
            self.encap_to(last, vni, frame, out);
        }
    }

    /// The distributed router: a packet from segment `vni` sent to its gateway ([`DR_MAC`]).
    fn route(&mut self, vni: Vni, frame: Frame, out: &mut Outbox) {
        let Some(v) = Ipv4View::parse(&frame) else {
            self.counters.rx_dropped_runt += 1;
            return;
        };
        let (dst, ttl) = (v.dst(), v.ttl());
        let to = self
            .dir
            .routed
            .iter()
            .find(|s| s.net.contains(&dst))
            .copied();
        let Some(to) = to.filter(|s| s.vni != vni) else {
            // Not between two routed segments: the Edge routes it.
            let Some(&edge) = self.dir.edge_mac.get(&vni) else {
                self.counters.dr_dropped_no_edge += 1;
                return;
            };
            let mut f = frame;
            f[0..6].copy_from_slice(&edge.0);
            self.counters.dr_to_edge += 1;
            return self.switch(vni, edge, None, f, out);
        };
        if ttl <= 1 {
            let Some(gateway) = self.dir.routed_gateway(vni) else {
                return;
            };
            let Some(src_mac) = wire::eth_src(&frame) else {
                return;
            };
            if icmp::is_error(&v) || v.is_later_fragment() {
                return;
            }
            let e = icmp::error(
                src_mac,
                DR_MAC,
                gateway,
                TYPE_TIME_EXCEEDED,
                CODE_TTL_EXCEEDED,
                &v,
            );
            self.counters.dr_ttl_exceeded += 1;
            return self.switch(vni, src_mac, None, e, out);
        }
        let Some(mac) = self.dir.arp.get(&arp_key(to.vni, dst)).copied() else {
            self.counters.dr_dropped_unknown_dst += 1;
            return;
        };
        let mut f = frame;
        crate::wire::ipv4::decrement_ttl(&mut f);
        wire::set_macs(&mut f, mac, DR_MAC);
        self.counters.dr_routed += 1;
        self.switch(to.vni, mac, None, f, out);
    }

    #[inline(always)]
    fn vnic_in(&mut self, port: Port, vnic_attach: Attachment, frame: Frame, out: &mut Outbox) {
        let (Some(dst), Some(src)) = (wire::eth_dst(&frame), wire::eth_src(&frame)) else {
            self.counters.rx_dropped_runt += 1;
            return;
        };
        let vni = match vnic_attach {
            Attachment::Uplink => return self.uplink_out(frame, out),
            Attachment::Segment(vni) => vni,
        };
        self.learn(vni, src, L2Dest::Local(port));
        // ARP, broadcast or to the gateway (a neighbour's refresh), is answered here when the
        // directory knows the address.
        if (dst.is_broadcast() || dst == DR_MAC)
            && wire::ethertype(&frame) == Some(ETHERTYPE_ARP)
            && self.suppress_arp(port, vni, &frame, out)
        {
            return;
        }
        if dst == DR_MAC {
            return self.route(vni, frame, out);
        }
        self.switch(vni, dst, Some(port), frame, out);
    }

    fn uplink_out(&mut self, frame: Frame, out: &mut Outbox) {
        let Some(eni_mac) = self.eni_mac else {
            self.counters.rx_dropped_no_uplink += 1;
            return;
        };
        let mut f = frame;
        if wire::ethertype(&f) == Some(ETHERTYPE_ARP) {
            arp::rewrite_sender_mac(&mut f, eni_mac);
        } else {
            f[6..12].copy_from_slice(&eni_mac.0);
        }
        self.counters.uplink_out += 1;
        out.send(UPLINK, f);
    }

    fn uplink_in(&mut self, frame: Frame, out: &mut Outbox) {
        let target = match wire::ethertype(&frame) {
            Some(ETHERTYPE_IPV4) => Ipv4View::parse(&frame).map(|v| v.dst()),
            Some(ETHERTYPE_ARP) => Arp::parse(&frame).map(|a| a.target_ip),
            _ => None,
        };
        // The vNIC that owns the address; for an IP packet to any other address (a segment the
        // VPC routes to this ENI), the vNIC that owns an uplink address: the Edge, which routes.
        let exact = target.and_then(|ip| self.uplink_owners.iter().find(|(a, _)| *a == ip));
        let routed = || {
            self.uplink_owners
                .first()
                .filter(|_| wire::ethertype(&frame) == Some(ETHERTYPE_IPV4))
        };
        let Some(&(_, port)) = exact.or_else(routed) else {
            // AWS answers an instance's ARP for the subnet's router at the ENI itself, whatever
            // addresses the ENI holds: the answer reaches the vNICs on the uplink (a standby
            // Edge ignores it).
            if Arp::parse(&frame).is_some_and(|a| a.op == arp::OP_REPLY) {
                return self.arp_reply_to_uplink_vnics(frame, out);
            }
            self.counters.rx_dropped_uplink_no_owner += 1;
            return;
        };
        let Some(mac) = self.vnic(port).map(|v| v.mac) else {
            self.counters.rx_dropped_uplink_no_owner += 1;
            return;
        };
        let mut f = frame;
        f[0..6].copy_from_slice(&mac.0);
        self.counters.uplink_in += 1;
        out.send(port, f);
    }

    /// Hand an ARP reply from the ENI to every vNIC on the uplink, addressed to each.
    fn arp_reply_to_uplink_vnics(&mut self, frame: Frame, out: &mut Outbox) {
        let ports: Vec<(Port, MacAddr)> = self
            .vnics()
            .filter(|(_, v)| v.attach == Attachment::Uplink)
            .map(|(p, v)| (p, v.mac))
            .collect();
        if ports.is_empty() {
            self.counters.rx_dropped_uplink_no_owner += 1;
        }
        for (port, mac) in ports {
            let mut f = frame.clone();
            f[0..6].copy_from_slice(&mac.0);
            arp::rewrite_target_mac(&mut f, mac);
            self.counters.uplink_in += 1;
            out.send(port, f);
        }
    }

    fn overlay_in(&mut self, frame: Frame, out: &mut Outbox) {
        let Some(d) = geneve::decap(frame) else {
            self.counters.rx_dropped_not_geneve += 1;
            return;
        };
        let (Some(dst), Some(src)) = (wire::eth_dst(&d.inner), wire::eth_src(&d.inner)) else {
            self.counters.rx_dropped_runt += 1;
            return;
        };
        self.counters.rx_decapsulated += 1;
        let peer = match self.last_tep {
            Some((ip, peer)) if ip == d.outer_src => peer,
            _ => {
                let Some(&peer) = self.dir.tep_index.get(&d.outer_src) else {
                    self.counters.rx_dropped_unknown_tep += 1;
                    return;
                };
                self.last_tep = Some((d.outer_src, peer));
                peer
            }
        };
        self.learn(d.vni, src, L2Dest::Remote(peer));
        match self.find(d.vni, dst) {
            Some(L2Dest::Local(p)) if !dst.is_group() => out.send(p, d.inner),
            Some(L2Dest::Remote(_)) if !dst.is_group() => self.counters.rx_dropped_no_vnic += 1,
            _ => {
                let before = out.len();
                self.flood_local(d.vni, None, &d.inner, out);
                if out.len() == before {
                    self.counters.rx_flood_no_local_vnic += 1;
                }
            }
        }
    }
}

/// Put one inner frame in `tunnel` and send it over the overlay.
#[inline]
fn encap_one(
    counters: &mut HostCounters,
    tunnel: &Tunnel,
    inner: Frame,
    vni: Vni,
    out: &mut Outbox,
) {
    match tunnel.encap(inner, vni) {
        Some(f) => {
            counters.tx_encapsulated += 1;
            out.send(OVERLAY, f);
        }
        None => counters.tx_dropped_too_big_for_geneve += 1,
    }
}

/// A segment's MAC as one integer: hashing it is two multiplications, not a walk over a tuple.
#[inline]
fn l2_key(vni: Vni, mac: MacAddr) -> u128 {
    ((vni as u128) << 48) | mac.to_u64() as u128
}

impl Node for Host {
    fn name(&self) -> &str {
        &self.name
    }

    fn configure(&mut self, _now: Instant, change: &Change, out: &mut Outbox) {
        match change {
            Change::HostPlug { port, vnic } => self.plug_vnic(*port, vnic.clone()),
            Change::HostUnplug { port } => {
                self.remove_vnic(*port);
            }
            Change::HostEniMac(mac) => self.eni_mac = *mac,
            Change::HostUplinkOwner { ip, port: Some(p) } => self.set_uplink_owner(*ip, *p),
            Change::HostUplinkOwner { ip, port: None } => self.clear_uplink_owner(*ip),
            Change::HostAnnounce { port } => self.announce(*port, out),
            Change::HostDirectory(dir) => self.set_directory(dir.clone()),
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        "host"
    }

    fn port_name(&self, port: Port) -> String {
        match port {
            UPLINK => "uplink".into(),
            OVERLAY => "overlay".into(),
            p => match self.vnic(p) {
                Some(v) => format!("vnic:{}", v.name),
                None => format!("vnic{}", p - FIRST_VNIC),
            },
        }
    }

    fn handle(&mut self, now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
        self.age(now);
        match port {
            UPLINK => self.uplink_in(frame, out),
            OVERLAY => self.overlay_in(frame, out),
            p => match self.vnic(p).map(|v| v.attach) {
                Some(a) => self.vnic_in(p, a, frame, out),
                None => self.counters.rx_dropped_no_vnic += 1,
            },
        }
    }

    fn poll(&mut self, now: Instant, _out: &mut Outbox) {
        self.age(now);
    }

    /// The next aging period, while something is learned.
    fn poll_at(&self) -> Option<Instant> {
        (!self.l2.is_empty())
            .then(|| Instant::from_nanos((u64::from(self.epoch) + 1) * HALF_AGING_NS))
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::tests::udp_frame;

    const VNI: Vni = 5001;

    fn tep(n: u8) -> Tep {
        Tep {
            ip: Ipv4Addr::new(10, 2, 64, n),
            mac: MacAddr::local(0x70, n as u32),
        }
    }

    /// The outer headers from host `from`'s TEP to host `to`'s.
    fn outer(from: u8, to: u8) -> Outer {
        Outer {
            src_mac: tep(from).mac,
            dst_mac: tep(to).mac,
            src_ip: tep(from).ip,
            dst_ip: tep(to).ip,
        }
    }

    fn frame(dst: MacAddr, src: MacAddr) -> Frame {
        let mut f = udp_frame(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(192, 168, 1, 20),
            64,
            1,
            2,
            b"hi",
        );
        wire::set_macs(&mut f, dst, src);
        f.into()
    }

    fn host_with_two_vms() -> (Host, Port, Port, MacAddr, MacAddr) {
        let mut h = Host::new("esxi-1", tep(1), Some(MacAddr::local(0xe0, 1)));
        h.set_peers(vec![tep(1), tep(2), tep(3)]);
        let (ma, mb) = (MacAddr::local(1, 1), MacAddr::local(1, 2));
        let a = h.add_vnic(Vnic {
            name: "a".into(),
            mac: ma,
            attach: Attachment::Segment(VNI),
        });
        let b = h.add_vnic(Vnic {
            name: "b".into(),
            mac: mb,
            attach: Attachment::Segment(VNI),
        });
        (h, a, b, ma, mb)
    }

    #[test]
    fn broadcast_floods_locally_and_to_every_peer_tep() {
        let (mut h, a, b, ma, _) = host_with_two_vms();
        let mut out = Outbox::new();
        h.handle(Instant::ZERO, a, frame(MacAddr::BROADCAST, ma), &mut out);
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 3, "vm b + two peer TEPs (not itself)");
        assert_eq!(sent[0].0, b);
        let mut teps = vec![];
        for (p, f) in &sent[1..] {
            assert_eq!(*p, OVERLAY);
            let d = geneve::decap(f.clone()).unwrap();
            assert_eq!(d.vni, VNI);
            assert_eq!(d.inner, frame(MacAddr::BROADCAST, ma));
            teps.push(Ipv4View::parse(f).unwrap().dst());
            assert_eq!(
                wire::eth_dst(f),
                Some(if teps.len() == 1 {
                    tep(2).mac
                } else {
                    tep(3).mac
                })
            );
        }
        assert_eq!(teps, vec![tep(2).ip, tep(3).ip]);
    }

    #[test]
    fn learns_local_and_remote_macs() {
        let (mut h, a, b, ma, mb) = host_with_two_vms();
        let mut out = Outbox::new();
        h.handle(Instant::ZERO, b, frame(MacAddr::BROADCAST, mb), &mut out);
        out.clear();
        // a → b is now switched locally, not flooded.
        h.handle(Instant::ZERO, a, frame(mb, ma), &mut out);
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, b);
        // A frame from a remote VM teaches its TEP: the reply is unicast-encapsulated to it.
        let remote = MacAddr::local(1, 9);
        let outer = outer(3, 1);
        h.handle(
            Instant::ZERO,
            OVERLAY,
            geneve::encap(&frame(ma, remote), &outer, VNI),
            &mut out,
        );
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, a);
        h.handle(Instant::ZERO, a, frame(remote, ma), &mut out);
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(Ipv4View::parse(&sent[0].1).unwrap().dst(), tep(3).ip);
        assert_eq!(h.counters.rx_decapsulated, 1);
    }

    #[test]
    fn a_mac_that_moves_is_followed_at_once() {
        // b's MAC is learned locally, and a's frames to it are switched locally; then b moves
        // to host 3 (vMotion) and speaks from there: a's next frame follows it over the overlay.
        let (mut h, a, b, ma, mb) = host_with_two_vms();
        let mut out = Outbox::new();
        h.handle(Instant::ZERO, b, frame(MacAddr::BROADCAST, mb), &mut out);
        out.clear();
        for _ in 0..2 {
            h.handle(Instant::ZERO, a, frame(mb, ma), &mut out);
            assert_eq!(out.drain().map(|(p, _)| p).collect::<Vec<_>>(), vec![b]);
        }
        h.handle(
            Instant::ZERO,
            OVERLAY,
            geneve::encap(&frame(MacAddr::BROADCAST, mb), &outer(3, 1), VNI),
            &mut out,
        );
        out.clear();
        h.handle(Instant::ZERO, a, frame(mb, ma), &mut out);
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, OVERLAY);
        assert_eq!(Ipv4View::parse(&sent[0].1).unwrap().dst(), tep(3).ip);
        // And back: b's vNIC is unplugged and plugged again here; it speaks, a follows.
        h.remove_vnic(b);
        let b2 = h.add_vnic(Vnic {
            name: "b".into(),
            mac: mb,
            attach: Attachment::Segment(VNI),
        });
        h.handle(Instant::ZERO, b2, frame(MacAddr::BROADCAST, mb), &mut out);
        out.clear();
        h.handle(Instant::ZERO, a, frame(mb, ma), &mut out);
        assert_eq!(out.drain().map(|(p, _)| p).collect::<Vec<_>>(), vec![b2]);
    }

    #[test]
    fn overlay_frames_for_another_vni_or_not_geneve_are_dropped() {
        let (mut h, _, _, ma, _) = host_with_two_vms();
        let mut out = Outbox::new();
        let outer = outer(2, 1);
        h.handle(
            Instant::ZERO,
            OVERLAY,
            geneve::encap(&frame(MacAddr::BROADCAST, ma), &outer, 999),
            &mut out,
        );
        h.handle(Instant::ZERO, OVERLAY, frame(ma, ma), &mut out);
        assert!(out.is_empty());
        assert_eq!(h.counters.rx_flood_no_local_vnic, 1);
        assert_eq!(h.counters.rx_dropped_not_geneve, 1);
    }

    #[test]
    fn uplink_rewrites_macs_and_delivers_by_owner_ip() {
        let eni = MacAddr::local(0xe0, 1);
        let mut h = Host::new("esxi-2", tep(2), Some(eni));
        let edge_mac = MacAddr::local(0xed, 1);
        let up = h.add_vnic(Vnic {
            name: "edge-1/uplink".into(),
            mac: edge_mac,
            attach: Attachment::Uplink,
        });
        let uplink_ip = Ipv4Addr::new(172, 31, 0, 30);
        let mut out = Outbox::new();
        // Edge → VPC: leaves with the ENI's MAC, ARP sender rewritten too.
        let req = Arp::request(edge_mac, uplink_ip, Ipv4Addr::new(172, 31, 0, 1)).to_frame();
        h.handle(Instant::ZERO, up, req, &mut out);
        let (p, f) = out.drain().next().unwrap();
        assert_eq!(p, UPLINK);
        assert_eq!(wire::eth_src(&f), Some(eni));
        assert_eq!(Arp::parse(&f).unwrap().sender_mac, eni);
        // VPC → Edge: dropped until the Edge owns the IP on this host, then delivered.
        let mut f = udp_frame(Ipv4Addr::new(172, 31, 16, 10), uplink_ip, 64, 1, 2, b"x");
        wire::set_macs(&mut f, eni, MacAddr::local(0xaa, 1));
        let f: Frame = f.into();
        h.handle(Instant::ZERO, UPLINK, f.clone(), &mut out);
        assert!(out.is_empty());
        assert_eq!(h.counters.rx_dropped_uplink_no_owner, 1);
        let mut routed = udp_frame(
            Ipv4Addr::new(172, 31, 16, 10),
            Ipv4Addr::new(192, 168, 1, 10),
            64,
            1,
            2,
            b"x",
        );
        wire::set_macs(&mut routed, eni, MacAddr::local(0xaa, 1));
        let routed: Frame = routed.into();
        h.handle(Instant::ZERO, UPLINK, routed.clone(), &mut out);
        assert!(
            out.is_empty(),
            "no Edge here yet: a segment's traffic has nowhere to go"
        );
        h.set_uplink_owner(uplink_ip, up);
        h.handle(Instant::ZERO, UPLINK, f, &mut out);
        let (p, f) = out.drain().next().unwrap();
        assert_eq!((p, wire::eth_dst(&f)), (up, Some(edge_mac)));
        // A segment's traffic routed to this ENI goes to the Edge, which routes it.
        h.handle(Instant::ZERO, UPLINK, routed, &mut out);
        let (p, _) = out.drain().next().unwrap();
        assert_eq!(p, up);
        // ARP for an address nobody here owns is not answered by the Edge.
        let req = Arp::request(
            MacAddr::local(0xaa, 1),
            Ipv4Addr::new(172, 31, 0, 1),
            Ipv4Addr::new(172, 31, 0, 9),
        );
        h.handle(Instant::ZERO, UPLINK, req.to_frame(), &mut out);
        assert!(out.is_empty());
        // The control plane takes the address away (the IP moved to another ENI).
        h.clear_uplink_owner(uplink_ip);
        h.handle(Instant::ZERO, UPLINK, f.clone(), &mut out);
        assert!(out.is_empty());
        h.set_uplink_owner(uplink_ip, up);
        // After the Edge leaves, the IP has no owner again.
        h.remove_vnic(up);
        h.handle(Instant::ZERO, UPLINK, f, &mut out);
        assert!(out.is_empty());
        assert_eq!(h.counters.rx_dropped_uplink_no_owner, 5);
    }

    /// esxi-1 with vNIC `a` on VNI (192.168.1.0/24, routed), and a directory that places
    /// `remote` (192.168.2.20 on VNI + 1, routed) behind host 2 and the Edge's interface on VNI
    /// behind host 3.
    fn host_with_directory() -> (Host, Port, MacAddr, MacAddr, MacAddr) {
        let (mut h, a, _, ma, _) = host_with_two_vms();
        let (remote, edge) = (MacAddr::local(1, 9), MacAddr::local(0xed, 1));
        let mut d = Directory::with_teps(vec![tep(1), tep(2), tep(3)]);
        d.place(VNI, ma, tep(1).ip);
        d.address(VNI, Ipv4Addr::new(192, 168, 1, 10), ma);
        d.place(VNI + 1, remote, tep(2).ip);
        d.address(VNI + 1, Ipv4Addr::new(192, 168, 2, 20), remote);
        d.place(VNI, edge, tep(3).ip);
        d.edge_interface(VNI, edge);
        for (vni, n) in [(VNI, 1), (VNI + 1, 2)] {
            d.route(RoutedSegment {
                vni,
                net: format!("192.168.{n}.0/24").parse().unwrap(),
                gateway: Ipv4Addr::new(192, 168, n, 1),
            });
        }
        h.set_directory(Arc::new(d));
        (h, a, ma, remote, edge)
    }

    fn ip_frame(dst_mac: MacAddr, src_mac: MacAddr, dst: Ipv4Addr, ttl: u8) -> Frame {
        let mut f = udp_frame(Ipv4Addr::new(192, 168, 1, 10), dst, ttl, 1, 2, b"hi");
        wire::set_macs(&mut f, dst_mac, src_mac);
        f.into()
    }

    #[test]
    fn arp_for_a_known_address_is_answered_on_the_host_and_not_flooded() {
        let (mut h, a, ma, _, _) = host_with_directory();
        let mut out = Outbox::new();
        for (target, want) in [
            (Ipv4Addr::new(192, 168, 1, 1), DR_MAC),
            (Ipv4Addr::new(192, 168, 1, 99), MacAddr::BROADCAST),
        ] {
            let req = Arp::request(ma, Ipv4Addr::new(192, 168, 1, 10), target).to_frame();
            h.handle(Instant::ZERO, a, req, &mut out);
            let sent: Vec<_> = out.drain().collect();
            if want == DR_MAC {
                assert_eq!(sent.len(), 1, "answered, nothing flooded");
                assert_eq!(sent[0].0, a);
                let reply = Arp::parse(&sent[0].1).unwrap();
                assert_eq!((reply.sender_ip, reply.sender_mac), (target, DR_MAC));
            } else {
                assert!(sent.len() > 1, "an unknown address is flooded");
            }
        }
        assert_eq!(h.counters.arp_suppressed, 1);
    }

    #[test]
    fn the_distributed_router_routes_between_cgw_segments_and_hands_the_rest_to_the_edge() {
        let (mut h, a, ma, remote, edge) = host_with_directory();
        let mut out = Outbox::new();
        let to_remote = Ipv4Addr::new(192, 168, 2, 20);
        h.handle(
            Instant::ZERO,
            a,
            ip_frame(DR_MAC, ma, to_remote, 64),
            &mut out,
        );
        let (p, f) = out.drain().next().unwrap();
        assert_eq!(p, OVERLAY);
        assert_eq!(Ipv4View::parse(&f).unwrap().dst(), tep(2).ip);
        let d = geneve::decap(f).unwrap();
        assert_eq!(d.vni, VNI + 1, "switched on the destination segment");
        let inner = Ipv4View::parse(&d.inner).unwrap();
        assert_eq!((inner.ttl(), inner.checksum_ok()), (63, true));
        assert_eq!(wire::eth_dst(&d.inner), Some(remote));
        assert_eq!(wire::eth_src(&d.inner), Some(DR_MAC));
        // TTL 1: time exceeded from the gateway, back to the sender.
        h.handle(
            Instant::ZERO,
            a,
            ip_frame(DR_MAC, ma, to_remote, 1),
            &mut out,
        );
        let (p, f) = out.drain().next().unwrap();
        assert_eq!(p, a);
        let v = Ipv4View::parse(&f).unwrap();
        assert_eq!(v.src(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(
            icmp::type_code(&v),
            Some((TYPE_TIME_EXCEEDED, CODE_TTL_EXCEEDED))
        );
        // To the VPC: to the Edge's interface, TTL untouched (the Edge routes it).
        let vpc = Ipv4Addr::new(172, 31, 16, 10);
        h.handle(Instant::ZERO, a, ip_frame(DR_MAC, ma, vpc, 64), &mut out);
        let (_, f) = out.drain().next().unwrap();
        let d = geneve::decap(f).unwrap();
        assert_eq!((d.vni, wire::eth_dst(&d.inner)), (VNI, Some(edge)));
        assert_eq!(Ipv4View::parse(&d.inner).unwrap().ttl(), 64);
        assert_eq!(
            (
                h.counters.dr_routed,
                h.counters.dr_ttl_exceeded,
                h.counters.dr_to_edge
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_frame_too_large_for_geneve_is_dropped_and_counted() {
        let (mut h, a, b, ma, _) = host_with_two_vms();
        let mut out = Outbox::new();
        let mut big = vec![0u8; geneve::MAX_INNER_LEN + 1];
        big[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
        big[6..12].copy_from_slice(&ma.0);
        h.handle(Instant::ZERO, a, Frame::from(big), &mut out);
        let sent: Vec<_> = out.drain().map(|(p, _)| p).collect();
        assert_eq!(sent, vec![b], "switched locally, not encapsulated");
        assert_eq!(
            h.counters.tx_dropped_too_big_for_geneve, 2,
            "one per peer TEP"
        );
    }

    #[test]
    fn a_learned_mac_ages_out_and_a_spoofed_one_heals_within_the_aging_time() {
        let (mut h, a, b, ma, _) = host_with_directory_and_b();
        let mut out = Outbox::new();
        // b sends from the MAC the directory places behind host 3 (a spoof, or a VM that left).
        let victim = MacAddr::local(0xed, 1);
        let t0 = Instant::from_millis(1);
        h.handle(t0, b, frame(MacAddr::BROADCAST, victim), &mut out);
        out.clear();
        h.handle(t0, a, frame(victim, ma), &mut out);
        assert_eq!(out.drain().map(|(p, _)| p).collect::<Vec<_>>(), vec![b]);
        // Nothing more from b: within the aging time the entry is gone, and the directory's
        // answer (host 2, over the overlay) holds again.
        let healed = t0 + MAC_AGING;
        h.poll(healed, &mut out);
        h.handle(healed, a, frame(victim, ma), &mut out);
        let (p, f) = out.drain().next().unwrap();
        assert_eq!(p, OVERLAY);
        assert_eq!(Ipv4View::parse(&f).unwrap().dst(), tep(3).ip);
        assert!(h.counters.mac_aged_out >= 1);
        assert!(
            h.poll_at().is_some(),
            "a's MAC is still learned, so aging goes on"
        );
    }

    #[test]
    fn a_full_mac_table_forgets_the_oldest_then_remote_entries_and_keeps_its_vms() {
        let (mut h, a, b, ma, mb) = host_with_two_vms();
        let mut out = Outbox::new();
        // In the first aging period: a's VM sends, and a MAC is learned behind host 2.
        let old = MacAddr::local(0x66, 1);
        h.handle(Instant::ZERO, a, frame(MacAddr::BROADCAST, ma), &mut out);
        h.learn(VNI, old, L2Dest::Remote(1));
        // In the next (both still fresh): a's VM sends again, then a flood of new MACs from
        // the overlay, as many as the table holds.
        let next = Instant::from_nanos(HALF_AGING_NS + 1);
        h.poll(next, &mut out);
        h.handle(next, a, frame(MacAddr::BROADCAST, ma), &mut out);
        out.clear();
        for i in 0..MAX_LEARNED_MACS as u32 {
            h.learn(VNI, MacAddr::local(0x77, i), L2Dest::Remote(2));
        }
        // One eviction made room for the rest: an eighth of the table, the older MAC first.
        assert_eq!(
            h.counters.mac_evicted,
            (MAX_LEARNED_MACS / EVICT_SHARE) as u64
        );
        assert!(h.l2.len() <= MAX_LEARNED_MACS);
        assert_eq!(h.find(VNI, old), None);
        // a's VM, as fresh as the flood but local, is kept: b reaches it without a flood.
        assert_eq!(h.find(VNI, ma), Some(L2Dest::Local(a)));
        h.handle(next, b, frame(ma, mb), &mut out);
        let to: Vec<Port> = out.drain().map(|(p, _)| p).collect();
        assert_eq!(to, vec![a]);
    }

    /// Like [`host_with_directory`], with vNIC `b` too.
    fn host_with_directory_and_b() -> (Host, Port, Port, MacAddr, MacAddr) {
        let (h, a, ma, _, _) = host_with_directory();
        let b = FIRST_VNIC + 1;
        (h, a, b, ma, MacAddr::local(1, 2))
    }
}
