//! The control model: every fact of the SDDC and AWS control planes, held once.
//!
//! Which host each VM and Edge runs on and whether it runs, the active Edge, each ENI's IPs and
//! attachment, the VPC's main route table, the segments. It changes only through typed
//! [`Action`](super::action::Action)s applied at their instant; nodes hold only what it programs
//! into them ([`crate::node::Change`]), and every view the CLI shows is read from here.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vmcnet_topo::{Gateway, LinkKind, EDGE_HA_IFACE, EDGE_UPLINK_IFACE};

use crate::node::host::{Attachment, Directory, RoutedSegment, Tep};
use crate::node::vpc_router::{RouteState, VpcTarget};
use crate::node::Port;
use crate::runtime::sim::{LinkId, NodeId};
use crate::wire::geneve::Vni;
use crate::wire::MacAddr;

/// The SDDC and AWS state of a lab.
#[derive(Debug, Clone)]
pub struct Model {
    pub hosts: Vec<HostFact>,
    pub vms: Vec<VmFact>,
    pub edges: Vec<EdgeFact>,
    pub enis: Vec<EniFact>,
    /// The VPC's main route table, in the order routes were created.
    pub main_table: Vec<RouteFact>,
    /// Routes the main table may hold (a prefix list counts its size).
    pub route_quota: u32,
    /// Custom route tables a user made; nothing in the lab changes them.
    pub custom_tables: Vec<CustomTableFact>,
    pub segments: Vec<SegmentFact>,
    /// The active Edge's uplink address: a secondary IP of the ENI of its host.
    pub uplink_ip: Ipv4Addr,
    /// MACs handed out so far (each node's is locally administered and numbered).
    pub macs_used: u32,
    /// Hosts ever added: the next one takes the next TEP address and underlay port.
    pub hosts_created: usize,
    /// The VNI the next segment takes: VNIs are never reused.
    pub next_vni: Vni,
    /// Edges made active so far: each takes the next number as its `promoted`.
    pub promotions: u64,
}

/// An ESXi host.
#[derive(Debug, Clone)]
pub struct HostFact {
    pub name: String,
    pub cluster: String,
    pub tep: Ipv4Addr,
    pub tep_mac: MacAddr,
    pub node: NodeId,
    /// What is plugged into each vNIC port, by port slot (port − [`crate::node::host::FIRST_VNIC`]).
    pub vnics: Vec<Option<String>>,
    /// Its TEP's link to the underlay.
    pub underlay_link: LinkId,
    /// Down: nothing on it runs, its links carry nothing.
    pub failed: bool,
}

/// A VM (vCenter included) on a segment.
#[derive(Debug, Clone)]
pub struct VmFact {
    pub name: String,
    /// Index into [`Model::segments`].
    pub segment: usize,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The host it runs on (or was stunned on).
    pub host: String,
    /// Stunned: a vMotion's switchover, until it resumes.
    pub stunned: bool,
    pub node: NodeId,
    /// Its vNIC's port on its host, and the link between them.
    pub port: Port,
    pub link: LinkId,
}

/// An NSX Edge VM.
#[derive(Debug, Clone)]
pub struct EdgeFact {
    pub name: String,
    pub host: String,
    pub active: bool,
    /// When it last became active, as a count of promotions: of two active Edges, the control
    /// plane follows the higher.
    pub promoted: u64,
    /// The Edge VM was stopped (it forwards nothing, active or not).
    pub stopped: bool,
    /// Stunned: a vMotion's switchover, until it resumes (it keeps its role).
    pub stunned: bool,
    pub node: NodeId,
    /// Its interfaces' vNICs: the uplink, one per segment by segment index, the HA interface,
    /// in that order (the order a vMotion plugs them in; the Edge's own ports need not follow
    /// it, as a segment added later takes the port after the HA interface's).
    pub(crate) vnics: Vec<EdgeVnic>,
    /// The port its next interface will take.
    pub next_port: Port,
    /// The address of its HA interface, on the overlay segment BFD runs on.
    pub ha_ip: Ipv4Addr,
}

impl EdgeFact {
    /// The vNIC of one of its interfaces.
    pub fn vnic(&self, iface: EdgeVnicIface) -> Option<&EdgeVnic> {
        self.vnics.iter().find(|v| v.iface == iface)
    }

    /// Its uplink interface's vNIC.
    pub fn uplink(&self) -> &EdgeVnic {
        self.vnic(EdgeVnicIface::Uplink)
            .expect("every Edge has an uplink")
    }

    /// Its HA interface's vNIC.
    pub fn ha(&self) -> &EdgeVnic {
        self.vnic(EdgeVnicIface::Ha)
            .expect("every Edge has an HA interface")
    }

    /// Its interfaces' vNICs on the segments, by segment index.
    pub fn segment_vnics(&self) -> impl Iterator<Item = &EdgeVnic> {
        self.vnics
            .iter()
            .filter(|v| matches!(v.iface, EdgeVnicIface::Segment(_)))
    }

    /// The links of its interfaces' vNICs.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.vnics.iter().map(|v| v.link)
    }

    /// Add a vNIC in its place among the others (see [`EdgeFact::vnics`]).
    pub fn insert_vnic(&mut self, v: EdgeVnic) {
        let at = self.vnics.partition_point(|o| o.iface < v.iface);
        self.vnics.insert(at, v);
    }
}

/// Which of an Edge's interfaces a vNIC is. Ordered as [`EdgeFact::vnics`] keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeVnicIface {
    Uplink,
    /// On the segment of this index.
    Segment(usize),
    Ha,
}

/// One of an Edge's interfaces as its host sees it: its MAC, its port on the Edge and on the
/// host, its link.
#[derive(Debug, Clone, Copy)]
pub struct EdgeVnic {
    pub iface: EdgeVnicIface,
    pub mac: MacAddr,
    pub edge_port: Port,
    pub host_port: Port,
    pub link: LinkId,
}

/// An ENI of the VPC: the SDDC's cross-account ENIs and the EC2 instances'.
#[derive(Debug, Clone)]
pub struct EniFact {
    pub id: String,
    pub mac: MacAddr,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub attachment: Option<EniAttachmentFact>,
    /// One of the SDDC's ENIs (attached to an ESXi host), not an instance's.
    pub sddc: bool,
    pub subnet_id: String,
    pub description: String,
    pub source_dest_check: bool,
    pub node: NodeId,
    /// The link from its host or instance, while one is plugged in.
    pub host_link: Option<LinkId>,
    /// Attachments it has had: the next one's id counts on from here.
    pub attachments: u32,
}

/// An ENI's attachment to a host or an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniAttachmentFact {
    /// `eni-attach-…`, new at each attachment.
    pub id: String,
    /// The ESXi host or EC2 instance.
    pub instance: String,
    pub device_index: u32,
}

/// A custom route table and the subnets associated with it.
#[derive(Debug, Clone)]
pub struct CustomTableFact {
    pub id: String,
    pub subnets: Vec<String>,
    /// The local route, then the user's, in file order.
    pub routes: Vec<RouteFact>,
}

/// A route of a VPC route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFact {
    pub dest: RouteDest,
    pub target: VpcTarget,
    /// `CreateRouteTable` for the local route, `CreateRoute` for the others.
    pub origin: &'static str,
}

/// Where a route goes to: a CIDR, or a managed prefix list (S3's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDest {
    Cidr(Ipv4Net),
    PrefixList { id: String, cidrs: Vec<Ipv4Net> },
}

impl RouteDest {
    /// The CIDRs the route covers.
    pub fn cidrs(&self) -> Vec<Ipv4Net> {
        match self {
            RouteDest::Cidr(c) => vec![*c],
            RouteDest::PrefixList { cidrs, .. } => cidrs.clone(),
        }
    }

    /// Entries it takes of the route table's quota.
    pub fn quota_cost(&self) -> usize {
        match self {
            RouteDest::Cidr(_) => 1,
            RouteDest::PrefixList { cidrs, .. } => cidrs.len(),
        }
    }
}

/// An overlay segment.
#[derive(Debug, Clone)]
pub struct SegmentFact {
    pub name: String,
    pub gateway: Gateway,
    pub cidr: Ipv4Net,
    pub gateway_ip: Ipv4Addr,
    /// Stable for the segment's life: given at creation, never renumbered.
    pub vni: Vni,
}

impl Model {
    /// What the central control plane programs into every host: where each VM's and Edge
    /// interface's MAC lives, each VM's address, the CGW segments the distributed router routes,
    /// and the active Edge's interface on each segment.
    pub fn directory(&self) -> Directory {
        // The Edge the control plane programs as the gateway: of the active ones (running or
        // not: traffic to a stopped one is lost until another takes over), the newest.
        let gateway = self
            .edges
            .iter()
            .filter(|e| e.active)
            .max_by_key(|e| e.promoted)
            .map(|e| e.name.as_str());
        let tep_of = |host: &str| self.host(host).map(|h| h.tep);
        let teps = self
            .hosts
            .iter()
            .map(|h| Tep {
                ip: h.tep,
                mac: h.tep_mac,
            })
            .collect();
        let mut d = Directory::with_teps(teps);
        for v in &self.vms {
            let vni = self.segments[v.segment].vni;
            if let Some(tep) = tep_of(&v.host) {
                d.place(vni, v.mac, tep);
            }
            d.address(vni, v.ip, v.mac);
        }
        for e in &self.edges {
            let tep = tep_of(&e.host);
            for v in &e.vnics {
                match v.iface {
                    EdgeVnicIface::Uplink => {}
                    EdgeVnicIface::Ha => {
                        if let Some(tep) = tep {
                            d.place(super::HA_VNI, v.mac, tep);
                        }
                    }
                    EdgeVnicIface::Segment(i) => {
                        let seg = &self.segments[i];
                        if let Some(tep) = tep {
                            d.place(seg.vni, v.mac, tep);
                        }
                        if gateway == Some(e.name.as_str()) {
                            d.edge_interface(seg.vni, v.mac);
                            d.address(seg.vni, seg.gateway_ip, v.mac);
                        }
                    }
                }
            }
        }
        for s in self.segments.iter().filter(|s| s.gateway == Gateway::Cgw) {
            d.route(RoutedSegment {
                vni: s.vni,
                net: s.cidr,
                gateway: s.gateway_ip,
            });
        }
        d
    }

    pub fn host(&self, name: &str) -> Option<&HostFact> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn vm(&self, name: &str) -> Option<&VmFact> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn edge(&self, name: &str) -> Option<&EdgeFact> {
        self.edges.iter().find(|e| e.name == name)
    }

    pub fn eni(&self, id: &str) -> Option<&EniFact> {
        self.enis.iter().find(|e| e.id == id)
    }

    pub(crate) fn vm_mut(&mut self, name: &str) -> Option<&mut VmFact> {
        self.vms.iter_mut().find(|v| v.name == name)
    }

    pub(crate) fn edge_mut(&mut self, name: &str) -> Option<&mut EdgeFact> {
        self.edges.iter_mut().find(|e| e.name == name)
    }

    pub(crate) fn eni_mut(&mut self, id: &str) -> Option<&mut EniFact> {
        self.enis.iter_mut().find(|e| e.id == id)
    }

    /// The active Edge, if one runs; of two (BFD lost between them), the newer.
    pub fn active_edge(&self) -> Option<&EdgeFact> {
        self.edges
            .iter()
            .filter(|e| e.active && self.edge_runs(e))
            .max_by_key(|e| e.promoted)
    }

    /// Whether a VM runs: not stunned, its host up.
    pub fn vm_runs(&self, v: &VmFact) -> bool {
        !v.stunned && self.host(&v.host).is_some_and(|h| !h.failed)
    }

    /// Whether an Edge runs: not stopped, its host up (a stunned Edge runs, but forwards
    /// nothing until it resumes).
    pub fn edge_runs(&self, e: &EdgeFact) -> bool {
        !e.stopped && self.host(&e.host).is_some_and(|h| !h.failed)
    }

    /// How an Edge's interface is plugged into its host: the vNIC's attachment, its link's
    /// kind, and the interface's name.
    pub fn edge_vnic_plug(&self, iface: EdgeVnicIface) -> (Attachment, LinkKind, String) {
        match iface {
            EdgeVnicIface::Uplink => (
                Attachment::Uplink,
                LinkKind::Uplink,
                EDGE_UPLINK_IFACE.to_string(),
            ),
            EdgeVnicIface::Segment(i) => {
                let s = &self.segments[i];
                (Attachment::Segment(s.vni), LinkKind::Vnic, s.name.clone())
            }
            EdgeVnicIface::Ha => (
                Attachment::Segment(super::HA_VNI),
                LinkKind::Vnic,
                EDGE_HA_IFACE.to_string(),
            ),
        }
    }

    /// Whether an Edge's links are plugged in: it runs and is not stunned.
    pub fn edge_links_up(&self, e: &EdgeFact) -> bool {
        self.edge_runs(e) && !e.stunned
    }

    /// The ENI attached to `host`, if any.
    pub fn eni_of_host(&self, host: &str) -> Option<&EniFact> {
        self.enis
            .iter()
            .find(|e| e.sddc && e.attachment.as_ref().is_some_and(|a| a.instance == host))
    }

    /// The ENI holding `ip` (primary or secondary).
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<&EniFact> {
        self.enis
            .iter()
            .find(|e| e.primary_ip == ip || e.secondary_ips.contains(&ip))
    }

    /// A route's state: `blackhole` when it targets an ENI that is not attached.
    pub fn route_state(&self, r: &RouteFact) -> RouteState {
        match &r.target {
            VpcTarget::Eni(id) if self.eni(id).is_none_or(|e| e.attachment.is_none()) => {
                RouteState::Blackhole
            }
            _ => RouteState::Active,
        }
    }

    /// The main table's route to exactly `dest`.
    pub fn route(&self, dest: Ipv4Net) -> Option<&RouteFact> {
        self.main_table
            .iter()
            .find(|r| r.dest == RouteDest::Cidr(dest))
    }

    /// Entries of the quota the main table uses.
    pub fn routes_used(&self) -> usize {
        self.main_table.iter().map(|r| r.dest.quota_cost()).sum()
    }

    /// A new MAC of kind `kind` (see the lab's MAC plan).
    pub(crate) fn new_mac(&mut self, kind: u8) -> MacAddr {
        self.macs_used += 1;
        MacAddr::local(kind, self.macs_used)
    }

    /// The first free vNIC port of a host.
    pub fn free_port(&self, host: &str) -> Option<Port> {
        let h = self.host(host)?;
        let slot = h
            .vnics
            .iter()
            .position(Option::is_none)
            .unwrap_or(h.vnics.len());
        Some(crate::node::host::FIRST_VNIC + slot as Port)
    }

    /// Note what is plugged into (or, with `None`, unplugged from) a host's port.
    pub(crate) fn set_vnic(&mut self, host: &str, port: Port, name: Option<String>) {
        let Some(h) = self.hosts.iter_mut().find(|h| h.name == host) else {
            return;
        };
        let slot = usize::from(port - crate::node::host::FIRST_VNIC);
        if h.vnics.len() <= slot {
            h.vnics.resize(slot + 1, None);
        }
        h.vnics[slot] = name;
    }
}
