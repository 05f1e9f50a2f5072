//! The VPC's implicit router: the main route table, delivery to the ENI that holds an address,
//! and gateway endpoints.
//!
//! Ports: one per ENI (SDDC ENIs and EC2 instances' ENIs) and one per gateway endpoint, in the
//! order they were added.
//!
//! As in AWS: longest-prefix match; the `local` route covers the VPC CIDR and delivers to the ENI
//! that holds the destination address (primary or secondary); a route may target an ENI, which
//! drops as `blackhole` while that ENI is detached; a gateway-endpoint route carries a prefix list
//! to a service. The router answers ARP for the router address of each subnet (base + 1), and
//! for any address an ENI holds, with its own MAC: the VPC fabric carries every frame, as AWS's
//! does. It does not decrement the TTL: it is not a hop that traceroute sees.

use std::fmt;
use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use super::route::RouteTable;
use super::{Change, Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::arp::{Arp, OP_REQUEST};
use crate::wire::ipv4::Ipv4View;
use crate::wire::{self, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// Index of an ENI in the router's table.
pub type EniIdx = usize;

/// What a route of the VPC points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpcTarget {
    /// The VPC CIDR: deliver to the ENI holding the address.
    Local,
    /// An ENI (by id).
    Eni(String),
    /// A gateway endpoint (by id, e.g. `vpce-s3`).
    GatewayEndpoint(String),
}

impl fmt::Display for VpcTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VpcTarget::Local => write!(f, "local"),
            VpcTarget::Eni(id) | VpcTarget::GatewayEndpoint(id) => write!(f, "{id}"),
        }
    }
}

/// Whether a route can carry traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    Active,
    /// The target ENI is detached (or gone): traffic is dropped.
    Blackhole,
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteState::Active => "active",
            RouteState::Blackhole => "blackhole",
        })
    }
}

/// The router's view of one ENI.
#[derive(Debug, Clone)]
struct EniSlot {
    id: String,
    mac: MacAddr,
    port: Port,
    attached: bool,
}

#[derive(Debug, Clone)]
struct Endpoint {
    id: String,
    port: Port,
    mac: MacAddr,
}

counters! {
    /// What the VPC router did with frames.
    pub struct VpcRouterCounters {
        pub forwarded,
        pub arp_replies_sent,
        /// Gratuitous ARPs heard and ignored: the VPC does not learn from them.
        pub rx_ignored_gratuitous_arp,
        pub rx_dropped_no_route,
        pub rx_dropped_blackhole,
        pub rx_dropped_no_eni_for_ip,
        pub rx_dropped_eni_detached,
        pub rx_dropped_bad_header,
        pub rx_dropped_not_for_router,
    }
}

/// The VPC router with its main route table.
#[derive(Debug)]
pub struct VpcRouter {
    name: String,
    mac: MacAddr,
    /// Addresses the router answers ARP for (base + 1 of each subnet and gateway network).
    router_ips: Vec<Ipv4Addr>,
    enis: Vec<EniSlot>,
    endpoints: Vec<Endpoint>,
    ip_to_eni: FxHashMap<Ipv4Addr, EniIdx>,
    /// The last address found in `ip_to_eni` and its ENI: a flow's packets skip the map.
    /// Changing the map forgets it.
    last_owner: Option<(Ipv4Addr, EniIdx)>,
    /// The last address routed to an ENI, with the custom table it was routed by (`None`: the
    /// main table) and that ENI: a flow's packets skip the search by ENI id. Changing a route
    /// table forgets it (ENIs are only ever added, so their indices hold).
    last_eni_route: Option<(Option<usize>, Ipv4Addr, EniIdx)>,
    main: RouteTable<VpcTarget>,
    /// Custom route tables, by index.
    custom: Vec<RouteTable<VpcTarget>>,
    /// By port: the custom table of the subnet of the ENI on it; `None` takes the main table.
    port_table: Vec<Option<usize>>,
    next_port: Port,
    pub counters: VpcRouterCounters,
}

impl VpcRouter {
    pub fn new(name: &str, mac: MacAddr) -> Self {
        VpcRouter {
            name: name.to_string(),
            mac,
            router_ips: Vec::new(),
            enis: Vec::new(),
            endpoints: Vec::new(),
            ip_to_eni: FxHashMap::default(),
            last_owner: None,
            last_eni_route: None,
            main: RouteTable::new(),
            custom: Vec::new(),
            port_table: Vec::new(),
            next_port: 0,
            counters: VpcRouterCounters::default(),
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Answer ARP for `ip` (a subnet's router address).
    pub fn add_router_ip(&mut self, ip: Ipv4Addr) {
        if !self.router_ips.contains(&ip) {
            self.router_ips.push(ip);
        }
    }

    /// Connect an ENI; returns the port it hangs on. ENI ids are unique (the topology's names
    /// are): routes name ENIs by id.
    pub fn add_eni(&mut self, id: &str, mac: MacAddr, attached: bool) -> Port {
        debug_assert!(self.eni_idx(id).is_none(), "a second ENI {id}");
        let port = self.next_port;
        self.next_port += 1;
        self.enis.push(EniSlot {
            id: id.to_string(),
            mac,
            port,
            attached,
        });
        port
    }

    /// Connect a gateway endpoint whose service answers at `mac`; returns its port.
    pub fn add_gateway_endpoint(&mut self, id: &str, mac: MacAddr) -> Port {
        let port = self.next_port;
        self.next_port += 1;
        self.endpoints.push(Endpoint {
            id: id.to_string(),
            port,
            mac,
        });
        port
    }

    fn eni_idx(&self, id: &str) -> Option<EniIdx> {
        self.enis.iter().position(|e| e.id == id)
    }

    /// The ENI `id` now holds `ip` (a primary at creation, or a secondary assigned or moved).
    pub fn assign_ip(&mut self, id: &str, ip: Ipv4Addr) {
        if let Some(i) = self.eni_idx(id) {
            self.ip_to_eni.insert(ip, i);
            self.last_owner = None;
        }
    }

    /// No ENI holds `ip` any more.
    pub fn unassign_ip(&mut self, ip: Ipv4Addr) {
        self.ip_to_eni.remove(&ip);
        self.last_owner = None;
    }

    /// The ENI's attachment changed.
    pub fn set_eni_attached(&mut self, id: &str, attached: bool) {
        if let Some(i) = self.eni_idx(id) {
            self.enis[i].attached = attached;
        }
    }

    /// The main route table, to add, replace and delete routes.
    pub fn main_table_mut(&mut self) -> &mut RouteTable<VpcTarget> {
        self.last_eni_route = None;
        &mut self.main
    }

    /// Add a custom route table (its local route included in `routes`); returns its index.
    pub fn add_custom_table(&mut self, routes: &[(ipnet::Ipv4Net, VpcTarget)]) -> usize {
        let mut t = RouteTable::new();
        for (dest, target) in routes {
            t.insert(*dest, target.clone());
        }
        self.custom.push(t);
        self.last_eni_route = None;
        self.custom.len() - 1
    }

    /// Traffic arriving from the ENI `id` (one in a subnet associated with custom table
    /// `table`) is routed by that table.
    pub fn associate(&mut self, id: &str, table: usize) {
        if let Some(i) = self.eni_idx(id) {
            let port = usize::from(self.enis[i].port);
            if self.port_table.len() <= port {
                self.port_table.resize(port + 1, None);
            }
            self.port_table[port] = Some(table);
            self.last_eni_route = None;
        }
    }

    /// Custom table `i` with each route's state, longest prefix first.
    pub fn custom_table(&self, i: usize) -> Vec<(ipnet::Ipv4Net, VpcTarget, RouteState)> {
        self.custom.get(i).map_or(Vec::new(), |t| {
            t.iter()
                .map(|r| (r.dest, r.target.clone(), self.state(&r.target)))
                .collect()
        })
    }

    /// The main route table with each route's state, longest prefix first.
    pub fn main_table(&self) -> Vec<(ipnet::Ipv4Net, VpcTarget, RouteState)> {
        self.main
            .iter()
            .map(|r| (r.dest, r.target.clone(), self.state(&r.target)))
            .collect()
    }

    fn state(&self, target: &VpcTarget) -> RouteState {
        match target {
            VpcTarget::Eni(id) => match self.eni_idx(id) {
                Some(i) if self.enis[i].attached => RouteState::Active,
                _ => RouteState::Blackhole,
            },
            VpcTarget::GatewayEndpoint(id) if !self.endpoints.iter().any(|e| e.id == *id) => {
                RouteState::Blackhole
            }
            _ => RouteState::Active,
        }
    }

    fn answer_arp(&mut self, port: Port, frame: &Frame, out: &mut Outbox) {
        match Arp::parse(frame) {
            // A gratuitous ARP (an Edge announcing its address): the VPC learns nothing from
            // it, as AWS's does not, and must not answer it as a conflict.
            Some(a) if a.is_gratuitous() => {
                self.counters.rx_ignored_gratuitous_arp += 1;
            }
            Some(a)
                if a.op == OP_REQUEST
                    && (self.router_ips.contains(&a.target_ip)
                        || self.ip_to_eni.contains_key(&a.target_ip)) =>
            {
                self.counters.arp_replies_sent += 1;
                out.send(port, a.reply_from(self.mac).to_frame());
            }
            _ => self.counters.rx_dropped_not_for_router += 1,
        }
    }

    /// Where a packet for `dst` that came in on `port` leaves: (port, next MAC), or the
    /// counter to bump. The route table is that of the subnet it came from.
    fn resolve(&mut self, port: Port, dst: Ipv4Addr) -> Option<(Port, MacAddr)> {
        let table_id = self.port_table.get(usize::from(port)).copied().flatten();
        let table = match table_id {
            Some(i) => &self.custom[i],
            None => &self.main,
        };
        let Some(route) = table.lookup(dst) else {
            self.counters.rx_dropped_no_route += 1;
            return None;
        };
        match &route.target {
            VpcTarget::Local => {
                let i = match self.last_owner {
                    Some((ip, i)) if ip == dst => i,
                    _ => {
                        let Some(&i) = self.ip_to_eni.get(&dst) else {
                            self.counters.rx_dropped_no_eni_for_ip += 1;
                            return None;
                        };
                        self.last_owner = Some((dst, i));
                        i
                    }
                };
                let e = &self.enis[i];
                if !e.attached {
                    self.counters.rx_dropped_eni_detached += 1;
                    return None;
                }
                Some((e.port, e.mac))
            }
            VpcTarget::Eni(id) => {
                let i = match self.last_eni_route {
                    Some((t, ip, i)) if t == table_id && ip == dst => Some(i),
                    _ => {
                        let i = self.enis.iter().position(|e| e.id == *id);
                        self.last_eni_route = i.map(|i| (table_id, dst, i));
                        i
                    }
                };
                match i.map(|i| &self.enis[i]).filter(|e| e.attached) {
                    Some(e) => Some((e.port, e.mac)),
                    None => {
                        self.counters.rx_dropped_blackhole += 1;
                        None
                    }
                }
            }
            VpcTarget::GatewayEndpoint(id) => match self.endpoints.iter().find(|e| e.id == *id) {
                Some(e) => Some((e.port, e.mac)),
                None => {
                    self.counters.rx_dropped_blackhole += 1;
                    None
                }
            },
        }
    }
}

impl Node for VpcRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn configure(&mut self, _now: Instant, change: &Change, _out: &mut Outbox) {
        match change {
            Change::RouterIpOwner { ip, eni: Some(eni) } => self.assign_ip(eni, *ip),
            Change::RouterIpOwner { ip, eni: None } => self.unassign_ip(*ip),
            Change::RouterEniAttached { eni, attached } => self.set_eni_attached(eni, *attached),
            Change::RouterRoute {
                dest,
                target: Some(t),
            } => {
                self.main.insert(*dest, t.clone());
                self.last_eni_route = None;
            }
            Change::RouterRoute { dest, target: None } => {
                self.main.remove(*dest);
                self.last_eni_route = None;
            }
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        "vpc-router"
    }

    fn has_timers(&self) -> bool {
        false
    }

    fn port_name(&self, port: Port) -> String {
        self.enis
            .iter()
            .find(|e| e.port == port)
            .map(|e| e.id.clone())
            .or_else(|| {
                self.endpoints
                    .iter()
                    .find(|e| e.port == port)
                    .map(|e| e.id.clone())
            })
            .unwrap_or_else(|| format!("p{port}"))
    }

    fn handle(&mut self, _now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
        match wire::ethertype(&frame) {
            Some(ETHERTYPE_ARP) => return self.answer_arp(port, &frame, out),
            Some(ETHERTYPE_IPV4) => {}
            _ => {
                self.counters.rx_dropped_bad_header += 1;
                return;
            }
        }
        if wire::eth_dst(&frame) != Some(self.mac) {
            self.counters.rx_dropped_not_for_router += 1;
            return;
        }
        let dst = match Ipv4View::parse(&frame) {
            Some(v) if v.checksum_ok() => v.dst(),
            _ => {
                self.counters.rx_dropped_bad_header += 1;
                return;
            }
        };
        if let Some((out_port, mac)) = self.resolve(port, dst) {
            let mut f = frame;
            wire::set_macs(&mut f, mac, self.mac);
            self.counters.forwarded += 1;
            out.send(out_port, f);
        }
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::tests::udp_frame;

    const RMAC: MacAddr = MacAddr::local(0xaa, 1);
    const ENI1: MacAddr = MacAddr::local(0xe0, 1);
    const ENI2: MacAddr = MacAddr::local(0xe0, 2);
    const EC2: MacAddr = MacAddr::local(0xe0, 99);
    const UPLINK: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 30);
    const EC2_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);
    const WEB: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    fn router() -> VpcRouter {
        let mut r = VpcRouter::new("vpc-router", RMAC);
        r.add_router_ip(Ipv4Addr::new(172, 31, 0, 1));
        assert_eq!(r.add_eni("eni-1", ENI1, true), 0);
        assert_eq!(r.add_eni("eni-2", ENI2, true), 1);
        assert_eq!(r.add_eni("eni-ec2-1", EC2, true), 2);
        r.assign_ip("eni-2", UPLINK);
        r.assign_ip("eni-ec2-1", EC2_IP);
        r.main_table_mut()
            .insert("172.31.0.0/16".parse().unwrap(), VpcTarget::Local);
        r.main_table_mut().insert(
            "192.168.1.0/24".parse().unwrap(),
            VpcTarget::Eni("eni-2".into()),
        );
        r
    }

    fn send(r: &mut VpcRouter, port: Port, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<(Port, Frame)> {
        let mut f = udp_frame(src, dst, 64, 1, 2, b"x");
        wire::set_macs(&mut f, RMAC, MacAddr::local(9, 9));
        let mut out = Outbox::new();
        r.handle(Instant::ZERO, port, f.into(), &mut out);
        out.drain().collect()
    }

    #[test]
    fn local_route_delivers_to_the_eni_holding_the_ip_without_ttl_change() {
        let mut r = router();
        let got = send(&mut r, 1, WEB, EC2_IP);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 2);
        assert_eq!(wire::eth_dst(&got[0].1), Some(EC2));
        assert_eq!(wire::eth_src(&got[0].1), Some(RMAC));
        let v = Ipv4View::parse(&got[0].1).unwrap();
        assert_eq!(v.ttl(), 64);
        assert!(v.checksum_ok());
        // An address no ENI holds is dropped.
        assert!(send(&mut r, 1, WEB, Ipv4Addr::new(172, 31, 16, 99)).is_empty());
        assert_eq!(r.counters.rx_dropped_no_eni_for_ip, 1);
    }

    #[test]
    fn segment_route_follows_its_eni_and_blackholes_when_detached() {
        let mut r = router();
        assert_eq!(send(&mut r, 2, EC2_IP, WEB)[0].0, 1);
        r.set_eni_attached("eni-2", false);
        assert!(send(&mut r, 2, EC2_IP, WEB).is_empty());
        assert_eq!(r.counters.rx_dropped_blackhole, 1);
        let table = r.main_table();
        assert_eq!(table[0].2, RouteState::Blackhole);
        // Re-target to eni-1 (ReplaceRoute): traffic flows again, to the new ENI.
        r.main_table_mut().insert(
            "192.168.1.0/24".parse().unwrap(),
            VpcTarget::Eni("eni-1".into()),
        );
        let got = send(&mut r, 2, EC2_IP, WEB);
        assert_eq!((got[0].0, wire::eth_dst(&got[0].1)), (0, Some(ENI1)));
        assert_eq!(r.main_table()[0].2, RouteState::Active);
        // No route at all.
        assert!(send(&mut r, 2, EC2_IP, Ipv4Addr::new(203, 0, 113, 1)).is_empty());
        assert_eq!(r.counters.rx_dropped_no_route, 1);
    }

    #[test]
    fn a_subnet_with_a_custom_table_is_routed_by_it_and_the_rest_by_the_main_table() {
        let mut r = router();
        let custom = r.add_custom_table(&[
            ("172.31.0.0/16".parse().unwrap(), VpcTarget::Local),
            (
                "192.168.1.0/24".parse().unwrap(),
                VpcTarget::Eni("eni-1".into()),
            ),
        ]);
        r.associate("eni-ec2-1", custom);
        // From EC2 (port 2): the custom table's route, to eni-1; from eni-1 (port 0) to the
        // same segment: the main table's, to eni-2.
        assert_eq!(send(&mut r, 2, EC2_IP, WEB)[0].0, 0);
        assert_eq!(send(&mut r, 0, UPLINK, WEB)[0].0, 1);
        // The main table moves; the custom one does not.
        r.main_table_mut().insert(
            "192.168.1.0/24".parse().unwrap(),
            VpcTarget::Eni("eni-1".into()),
        );
        r.set_eni_attached("eni-1", false);
        assert!(send(&mut r, 2, EC2_IP, WEB).is_empty());
        assert_eq!(r.counters.rx_dropped_blackhole, 1);
        let seg: ipnet::Ipv4Net = "192.168.1.0/24".parse().unwrap();
        let state = r
            .custom_table(custom)
            .into_iter()
            .find(|x| x.0 == seg)
            .unwrap()
            .2;
        assert_eq!(state, RouteState::Blackhole);
        // No route in the custom table: dropped, though the main table has one.
        r.main_table_mut().insert(
            "198.51.100.0/24".parse().unwrap(),
            VpcTarget::Eni("eni-2".into()),
        );
        assert!(send(&mut r, 2, EC2_IP, Ipv4Addr::new(198, 51, 100, 10)).is_empty());
        assert_eq!(r.counters.rx_dropped_no_route, 1);
    }

    #[test]
    fn secondary_ip_move_redirects_local_delivery() {
        let mut r = router();
        assert_eq!(send(&mut r, 2, EC2_IP, UPLINK)[0].0, 1);
        r.assign_ip("eni-1", UPLINK);
        assert_eq!(send(&mut r, 2, EC2_IP, UPLINK)[0].0, 0);
        // Between unassign and assign, no ENI holds it: dropped.
        r.unassign_ip(UPLINK);
        assert!(send(&mut r, 2, EC2_IP, UPLINK).is_empty());
        assert_eq!(r.counters.rx_dropped_no_eni_for_ip, 1);
    }

    #[test]
    fn answers_arp_for_the_router_address_only_and_drops_bad_checksums() {
        let mut r = router();
        let mut out = Outbox::new();
        let req = Arp::request(ENI2, UPLINK, Ipv4Addr::new(172, 31, 0, 1));
        r.handle(Instant::ZERO, 1, req.to_frame(), &mut out);
        let (p, f) = out.drain().next().unwrap();
        let rep = Arp::parse(&f).unwrap();
        assert_eq!((p, rep.sender_mac, rep.target_mac), (1, RMAC, ENI2));
        // An address an ENI holds is answered too (with the router's MAC); DNS (.2) is not.
        let req = Arp::request(ENI2, UPLINK, EC2_IP);
        r.handle(Instant::ZERO, 1, req.to_frame(), &mut out);
        assert_eq!(
            Arp::parse(&out.drain().next().unwrap().1)
                .unwrap()
                .sender_mac,
            RMAC
        );
        let req = Arp::request(ENI2, UPLINK, Ipv4Addr::new(172, 31, 0, 2));
        r.handle(Instant::ZERO, 1, req.to_frame(), &mut out);
        assert!(out.is_empty());
        let mut f = udp_frame(WEB, EC2_IP, 64, 1, 2, b"x");
        wire::set_macs(&mut f, RMAC, ENI2);
        f[24] ^= 1; // break the header checksum
        r.handle(Instant::ZERO, 1, f.into(), &mut out);
        assert!(out.is_empty());
        assert_eq!(r.counters.rx_dropped_bad_header, 1);
    }
}
