//! The control planes: they turn a topology into a wired lab of nodes, and they read back the
//! state the CLI shows (ENIs, route tables, hosts, segments).
//!
//! Building a lab is what the SDDC and AWS control planes do when an SDDC is deployed: place
//! the VMs and Edges on hosts, map cluster-1 hosts to ENIs, give the active Edge's uplink address
//! to its host's ENI as a secondary IP, and fill the VPC's main route table with a route per
//! SDDC segment targeting that ENI. Failover actions (vMotion, HA, ENI moves) will change the
//! same state through the same nodes, each as an event at an instant.
//!
//! Addresses and names that the topology leaves implicit are fixed here:
//! - host TEPs: the second quarter of the management CIDR, host n at offset n (10.2.64.1, …);
//! - segment VNIs: 69632 + the segment's index (NSX's range); 69631 for the segment between
//!   the Edges' HA interfaces, with 169.254.0.0/30 on it;
//! - an EC2 instance's ENI: `eni-<instance>`; the S3 gateway endpoint: `vpce-s3`;
//! - MACs: locally administered, `02:<kind>:<index>`.

pub mod action;
pub mod model;
pub mod plan;
pub mod state;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vmcnet_topo::{
    edge_iface_end, link_name, nth_addr, vpc_router_ip, LinkKind, Topology, EDGE_HA_IFACE,
    EDGE_UPLINK_IFACE,
};

use crate::node::bfd::BfdConfig;
use crate::node::edge::{Edge, EdgeConfig, EdgeIface, IfaceRole};
use crate::node::endpoint::{Endpoint, EndpointConfig, EndpointKind};
use crate::node::eni::{self, Eni};
use crate::node::host::{self, Attachment, Host, Tep, Vnic};
use crate::node::underlay::Underlay;
use crate::node::vpc_router::{VpcRouter, VpcTarget};
use crate::node::Port;
use crate::runtime::sim::{LinkId, NodeId, Sim};
use crate::time::Instant;
use crate::wire::geneve::Vni;
use crate::wire::MacAddr;
use action::TimelineEvent;
use model::{
    CustomTableFact, EdgeFact, EdgeVnic, EdgeVnicIface, EniAttachmentFact, EniFact, HostFact,
    Model, RouteDest, RouteFact, SegmentFact, VmFact,
};
use plan::LabPlan;

pub use vmcnet_topo::{instance_eni_id, UNDERLAY, VPC_ROUTER};
/// Id of the S3 gateway endpoint.
pub const S3_ENDPOINT_ID: &str = "vpce-s3";
/// Id of the managed prefix list of S3's addresses.
pub const S3_PREFIX_LIST_ID: &str = "pl-s3";
/// First VNI handed to segments.
pub const FIRST_VNI: Vni = 69632;
/// The VNI of the overlay segment between the Edges' HA interfaces, which BFD runs on: below
/// the segments' range, never handed to a segment.
pub const HA_VNI: Vni = FIRST_VNI - 1;
/// The link-local network of the Edges' HA interfaces: the first Edge (the topology's active
/// one) takes its first address, the other its second.
pub const HA_NET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 30) {
    Ok(n) => n,
    Err(_) => panic!("a /30"),
};

pub(crate) mod mac_kind {
    pub const TEP: u8 = 0x10;
    pub const VM: u8 = 0x50;
    pub const ENI: u8 = 0xe0;
    pub const EC2_ENI: u8 = 0xe1;
    pub const EDGE: u8 = 0xed;
    pub const ROUTER: u8 = 0xaa;
}

/// A topology built into nodes and links in a simulation, with the control model that owns its
/// state and the timeline of every control action.
pub struct Lab {
    pub topo: Topology,
    pub sim: Sim,
    pub model: Model,
    /// Every control action requested, with when it took effect.
    timeline: Vec<TimelineEvent>,
    /// The VPC router's node.
    router: NodeId,
    /// VMC's reconciler, when it runs: it keeps the uplink address and the main route table on
    /// the active Edge's host.
    reconciler: Option<action::Strategy>,
    reconciler_broken: bool,
    /// NSX's and vSphere's own reactions run: BFD failover, vSphere HA, the replacement host.
    automation: bool,
    /// BFD between the Edges does not get through.
    bfd_cut: bool,
    /// Hosts on their way in that take an available ENI when they join.
    joining: Vec<String>,
    /// Hosts in maintenance.
    maintenance: Vec<Maintenance>,
    /// Host names handed out to hosts on their way in (`esxi-<n>`).
    host_names: usize,
}

/// A host in maintenance and the spare host that takes its place.
#[derive(Debug, Clone)]
struct Maintenance {
    host: String,
    cluster: String,
    /// The host that takes its place, once its turn has come.
    spare: Option<String>,
    /// Its VMs and Edges were sent to the spare.
    evacuating: bool,
    /// Its ENI is being detached.
    detaching: bool,
}

/// The VNI of the segment with index `i`.
pub fn segment_vni(i: usize) -> Vni {
    FIRST_VNI + i as Vni
}

/// The TEP address of the host with (0-based, SDDC-wide) index `i`.
pub(crate) fn tep_ip(topo: &Topology, i: usize) -> Ipv4Addr {
    let m = topo.sddc.management_cidr;
    let quarter = 1u32 << (32 - m.prefix_len() - 2);
    nth_addr(m, quarter + 1 + i as u32)
}

impl Lab {
    /// Build the lab of a validated topology in the sim runtime. `seed` seeds every endpoint's
    /// TCP/IP stack.
    pub fn build(topo: &Topology, seed: u64) -> Lab {
        let (plan, model) = Lab::plan(topo, seed);
        Lab::from_plan(topo, plan, model)
    }

    /// The lab of a plan made by [`Lab::plan`], once a runtime has swapped nodes for its own
    /// (the live runtime puts a TAP where an endpoint was; names and ports stay).
    pub fn from_plan(topo: &Topology, plan: LabPlan, model: Model) -> Lab {
        let router = plan
            .node_id(VPC_ROUTER)
            .expect("the plan has the VPC router");
        Lab {
            topo: topo.clone(),
            sim: Sim::from_plan(plan),
            model,
            timeline: Vec::new(),
            router,
            reconciler: None,
            reconciler_broken: false,
            automation: false,
            bfd_cut: false,
            joining: Vec::new(),
            maintenance: Vec::new(),
            host_names: topo.hosts().count(),
        }
    }

    /// The runtime-neutral plan of a validated topology's lab (its nodes, configured, and its
    /// links with their parameters) and the control model that describes it.
    pub fn plan(topo: &Topology, seed: u64) -> (LabPlan, Model) {
        Builder::new(topo, seed).build()
    }

    /// A node's id by name.
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.sim.node_id(name)
    }

    /// The endpoint (VM, EC2, S3) called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.sim.get(self.id(name)?)
    }

    /// The address of an endpoint by node name, or a literal address.
    pub fn resolve(&self, name_or_ip: &str) -> Option<Ipv4Addr> {
        if let Ok(ip) = name_or_ip.parse() {
            return Some(ip);
        }
        self.endpoint(name_or_ip).map(|e| e.config().ip)
    }
}

struct Builder<'t> {
    topo: &'t Topology,
    seed: u64,
    plan: LabPlan,
    model: Model,
}

impl<'t> Builder<'t> {
    fn new(topo: &'t Topology, seed: u64) -> Self {
        Builder {
            topo,
            seed,
            plan: LabPlan::default(),
            model: Model {
                hosts: Vec::new(),
                vms: Vec::new(),
                edges: Vec::new(),
                enis: Vec::new(),
                main_table: Vec::new(),
                route_quota: topo.timing.route_table_quota,
                custom_tables: Vec::new(),
                promotions: 1,
                uplink_ip: topo.sddc.edges.uplink_ip,
                macs_used: 0,
                hosts_created: 0,
                next_vni: segment_vni(topo.sddc.segments.len()),
                segments: topo
                    .sddc
                    .segments
                    .iter()
                    .enumerate()
                    .map(|(i, s)| SegmentFact {
                        name: s.name.clone(),
                        gateway: s.gateway,
                        cidr: s.cidr,
                        gateway_ip: s.gateway_ip(),
                        vni: segment_vni(i),
                    })
                    .collect(),
            },
        }
    }

    /// Link `a`'s port to `b`'s, named after the two nodes, with the parameters the topology
    /// gives the link.
    fn link(&mut self, kind: LinkKind, a: (&str, NodeId, Port), b: (&str, NodeId, Port)) -> LinkId {
        let name = link_name(a.0, b.0);
        let spec = self.topo.links.spec(&name, kind);
        self.plan.connect(&name, (a.1, a.2), (b.1, b.2), spec)
    }

    fn mac(&mut self, kind: u8) -> MacAddr {
        self.model.new_mac(kind)
    }

    fn build(mut self) -> (LabPlan, Model) {
        let underlay = self.plan.add_node(Box::new(Underlay::new(UNDERLAY)));
        let router_mac = self.mac(mac_kind::ROUTER);
        let router = self
            .plan
            .add_node(Box::new(VpcRouter::new(VPC_ROUTER, router_mac)));
        self.hosts(underlay);
        self.sddc_enis(router);
        self.vpc(router);
        self.vms();
        self.edges(router);
        let dir = std::sync::Arc::new(self.model.directory());
        let mut scratch = crate::node::Outbox::new();
        for h in &self.model.hosts {
            let change = crate::node::Change::HostDirectory(dir.clone());
            self.plan.nodes[h.node].configure(Instant::ZERO, &change, &mut scratch);
        }
        (self.plan, self.model)
    }

    fn hosts(&mut self, underlay: NodeId) {
        let t = self.topo;
        let clusters = t
            .sddc
            .clusters
            .iter()
            .flat_map(|c| c.hosts.iter().map(move |_| c.name.clone()));
        for ((i, name), cluster) in t.hosts().enumerate().zip(clusters) {
            let tep = Tep {
                ip: tep_ip(t, i),
                mac: self.mac(mac_kind::TEP),
            };
            let eni_mac = t.host_enis().position(|(h, _)| h == name).map(eni_mac);
            let id = self.plan.add_node(Box::new(Host::new(name, tep, eni_mac)));
            let port = i as u16;
            self.plan
                .get_mut::<Underlay>(underlay)
                .expect("underlay")
                .set_port(tep.mac, port);
            let underlay_link = self.link(
                LinkKind::Underlay,
                (name, id, host::OVERLAY),
                (UNDERLAY, underlay, port),
            );
            self.model.hosts.push(HostFact {
                name: name.to_string(),
                cluster,
                tep: tep.ip,
                tep_mac: tep.mac,
                node: id,
                vnics: Vec::new(),
                underlay_link,
                failed: false,
            });
            self.model.hosts_created += 1;
        }
    }

    fn sddc_enis(&mut self, router: NodeId) {
        let t = self.topo;
        for (j, e) in t.vpc.enis.iter().enumerate() {
            let mut node = Eni::new(&e.id, eni_mac(j), e.ip, false, "VMware VMC Interface");
            let host = t
                .host_enis()
                .find(|(_, he)| he.id == e.id)
                .map(|(h, _)| h.to_string());
            if let Some(h) = &host {
                node.attach(h);
            }
            let id = self.plan.add_node(Box::new(node));
            let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
            let port = r.add_eni(&e.id, eni_mac(j), host.is_some());
            r.assign_ip(&e.id, e.ip);
            self.link(
                LinkKind::Eni,
                (&e.id, id, eni::VPC),
                (VPC_ROUTER, router, port),
            );
            let host_link = host.as_ref().map(|h| {
                let hid = self.plan.node_id(h).expect("host");
                self.link(
                    LinkKind::Eni,
                    (h, hid, host::UPLINK),
                    (&e.id, id, eni::INSTANCE),
                )
            });
            self.model.enis.push(EniFact {
                id: e.id.clone(),
                mac: eni_mac(j),
                primary_ip: e.ip,
                secondary_ips: Vec::new(),
                attachment: host.map(|h| attachment(&e.id, 1, &h, 1)),
                sddc: true,
                subnet_id: t.vpc.connected_subnet.name.clone(),
                description: "VMware VMC Interface".into(),
                source_dest_check: false,
                node: id,
                attachments: u32::from(host_link.is_some()),
                host_link,
            });
        }
    }

    fn vpc(&mut self, router: NodeId) {
        let t = self.topo;
        let edge_eni = t
            .eni_of_host(&t.sddc.edges.active.host)
            .map(|e| e.id.clone());
        {
            let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
            for s in std::iter::once(&t.vpc.connected_subnet).chain(&t.vpc.subnets) {
                r.add_router_ip(vpc_router_ip(s.cidr));
            }
            let table = r.main_table_mut();
            table.insert(t.vpc.cidr, VpcTarget::Local);
            if let Some(eni) = &edge_eni {
                for s in &t.sddc.segments {
                    table.insert(s.cidr, VpcTarget::Eni(eni.clone()));
                }
            }
        }
        self.model.main_table.push(RouteFact {
            dest: RouteDest::Cidr(t.vpc.cidr),
            target: VpcTarget::Local,
            origin: "CreateRouteTable",
        });
        if let Some(eni) = &edge_eni {
            for s in &t.sddc.segments {
                self.model.main_table.push(RouteFact {
                    dest: RouteDest::Cidr(s.cidr),
                    target: VpcTarget::Eni(eni.clone()),
                    origin: "CreateRoute",
                });
            }
        }
        for (k, inst) in t.vpc.instances.iter().enumerate() {
            let Some(subnet) = t.subnet(&inst.subnet) else {
                continue;
            };
            let mac = MacAddr::local(mac_kind::EC2_ENI, k as u32 + 1);
            let eni_id = instance_eni_id(&inst.name);
            let mut e = Eni::new(
                &eni_id,
                mac,
                inst.ip,
                true,
                &format!("Primary network interface of {}", inst.name),
            );
            e.attach(&inst.name);
            let eni = self.plan.add_node(Box::new(e));
            self.model.enis.push(EniFact {
                id: eni_id.clone(),
                mac,
                primary_ip: inst.ip,
                secondary_ips: Vec::new(),
                attachment: Some(attachment(&eni_id, 1, &inst.name, 0)),
                sddc: false,
                subnet_id: inst.subnet.clone(),
                description: format!("Primary network interface of {}", inst.name),
                source_dest_check: true,
                node: eni,
                host_link: None,
                attachments: 1,
            });
            let link = link_name(&inst.name, &eni_id);
            let ep = self.endpoint(
                &inst.name,
                EndpointKind::Ec2,
                mac,
                inst.ip,
                subnet.cidr,
                (&link, LinkKind::Ec2),
            );
            let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
            let port = r.add_eni(&eni_id, mac, true);
            r.assign_ip(&eni_id, inst.ip);
            self.link(
                LinkKind::Ec2,
                (&inst.name, ep, 0),
                (&eni_id, eni, eni::INSTANCE),
            );
            self.link(
                LinkKind::Ec2,
                (&eni_id, eni, eni::VPC),
                (VPC_ROUTER, router, port),
            );
        }
        self.custom_tables(router);
        if let Some(s3) = &t.vpc.s3_endpoint {
            let net = s3
                .prefix_list
                .iter()
                .find(|p| p.contains(&s3.ip))
                .copied()
                .unwrap_or(Ipv4Net::new(s3.ip, 32).expect("/32"));
            let mac = self.mac(mac_kind::VM);
            let link = link_name(&s3.name, VPC_ROUTER);
            let ep = self.endpoint(
                &s3.name,
                EndpointKind::S3,
                mac,
                s3.ip,
                net,
                (&link, LinkKind::S3),
            );
            let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
            r.add_router_ip(vpc_router_ip(net));
            let port = r.add_gateway_endpoint(S3_ENDPOINT_ID, mac);
            for p in &s3.prefix_list {
                r.main_table_mut()
                    .insert(*p, VpcTarget::GatewayEndpoint(S3_ENDPOINT_ID.into()));
            }
            self.model.main_table.push(RouteFact {
                dest: RouteDest::PrefixList {
                    id: S3_PREFIX_LIST_ID.into(),
                    cidrs: s3.prefix_list.clone(),
                },
                target: VpcTarget::GatewayEndpoint(S3_ENDPOINT_ID.into()),
                origin: "CreateRoute",
            });
            self.link(LinkKind::S3, (&s3.name, ep, 0), (VPC_ROUTER, router, port));
        }
    }

    /// The user's custom route tables: each with the local route and its own, taken by the
    /// instances of its subnets.
    fn custom_tables(&mut self, router: NodeId) {
        let t = self.topo;
        for spec in &t.vpc.route_tables {
            let local = RouteFact {
                dest: RouteDest::Cidr(t.vpc.cidr),
                target: VpcTarget::Local,
                origin: "CreateRouteTable",
            };
            let routes: Vec<RouteFact> = std::iter::once(local)
                .chain(spec.routes.iter().map(|r| RouteFact {
                    dest: RouteDest::Cidr(r.destination),
                    target: VpcTarget::Eni(r.target.clone()),
                    origin: "CreateRoute",
                }))
                .collect();
            let pairs: Vec<_> = routes
                .iter()
                .flat_map(|r| r.dest.cidrs().into_iter().map(|c| (c, r.target.clone())))
                .collect();
            let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
            let index = r.add_custom_table(&pairs);
            for inst in t
                .vpc
                .instances
                .iter()
                .filter(|i| spec.subnets.contains(&i.subnet))
            {
                r.associate(&instance_eni_id(&inst.name), index);
            }
            self.model.custom_tables.push(CustomTableFact {
                id: spec.id.clone(),
                subnets: spec.subnets.clone(),
                routes,
            });
        }
    }

    /// Add an endpoint node whose gateway is base + 1 of `net`; its IP MTU is that of its
    /// link, `link` of kind `kind`.
    fn endpoint(
        &mut self,
        name: &str,
        kind: EndpointKind,
        mac: MacAddr,
        ip: Ipv4Addr,
        net: Ipv4Net,
        link: (&str, LinkKind),
    ) -> NodeId {
        let n = self.plan.nodes.len() as u64;
        let ip_mtu = self.topo.links.spec(link.0, link.1).mtu as usize;
        let cfg = EndpointConfig {
            name: name.to_string(),
            kind,
            mac,
            ip,
            prefix_len: net.prefix_len(),
            gateway: nth_addr(net, 1),
            seed: self
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(n),
            ip_mtu,
        };
        self.plan.add_node(Box::new(Endpoint::new(cfg)))
    }

    fn vms(&mut self) {
        let t = self.topo;
        for (i, seg) in t.sddc.segments.iter().enumerate() {
            for vm in &seg.vms {
                let mac = self.mac(mac_kind::VM);
                let link = link_name(&vm.name, &vm.host);
                let ep = self.endpoint(
                    &vm.name,
                    EndpointKind::Vm,
                    mac,
                    vm.ip,
                    seg.cidr,
                    (&link, LinkKind::Vnic),
                );
                let hid = self
                    .plan
                    .node_id(&vm.host)
                    .expect("validated: VM on a known host");
                let vnic = Vnic {
                    name: vm.name.clone(),
                    mac,
                    attach: Attachment::Segment(segment_vni(i)),
                };
                let port = self.plan.get_mut::<Host>(hid).expect("host").add_vnic(vnic);
                let link = self.link(LinkKind::Vnic, (&vm.name, ep, 0), (&vm.host, hid, port));
                self.model.set_vnic(&vm.host, port, Some(vm.name.clone()));
                self.model.vms.push(VmFact {
                    name: vm.name.clone(),
                    segment: i,
                    ip: vm.ip,
                    mac,
                    host: vm.host.clone(),
                    stunned: false,
                    node: ep,
                    port,
                    link,
                });
            }
        }
    }

    fn edges(&mut self, router: NodeId) {
        let t = self.topo;
        let e = &t.sddc.edges;
        for (vm, active) in [(&e.active, true), (&e.standby, false)] {
            // Each interface's MTU is its link's.
            let mtu = |iface: &str, kind| {
                let name = link_name(&edge_iface_end(&vm.name, iface), &vm.host);
                t.links.spec(&name, kind).mtu as usize
            };
            let mut ifaces = vec![EdgeIface {
                name: EDGE_UPLINK_IFACE.into(),
                mac: self.mac(mac_kind::EDGE),
                ip: e.uplink_ip,
                net: t.vpc.connected_subnet.cidr,
                role: IfaceRole::Uplink,
                mtu: mtu(EDGE_UPLINK_IFACE, LinkKind::Uplink),
            }];
            for s in &t.sddc.segments {
                ifaces.push(EdgeIface {
                    name: s.name.clone(),
                    mac: self.mac(mac_kind::EDGE),
                    ip: s.gateway_ip(),
                    net: s.cidr,
                    role: IfaceRole::Segment,
                    mtu: mtu(&s.name, LinkKind::Vnic),
                });
            }
            // After the segments: interfaces of segments added later take the ports after it.
            let ha_ip = nth_addr(HA_NET, 1 + self.model.edges.len() as u32);
            ifaces.push(EdgeIface {
                name: EDGE_HA_IFACE.into(),
                mac: self.mac(mac_kind::EDGE),
                ip: ha_ip,
                net: HA_NET,
                role: IfaceRole::Ha,
                mtu: mtu(EDGE_HA_IFACE, LinkKind::Vnic),
            });
            let mut edge = Edge::new(EdgeConfig {
                name: vm.name.clone(),
                ifaces: ifaces.clone(),
            });
            for r in tier0_static_routes(t) {
                edge.add_static_route(r.dest, r.gateway, r.snat);
            }
            edge.set_active(active);
            let eid = self.plan.add_node(Box::new(edge));
            let hid = self
                .plan
                .node_id(&vm.host)
                .expect("validated: Edge on a known host");
            let mut vnics = Vec::new();
            for (k, ifc) in ifaces.iter().enumerate() {
                let which = match ifc.role {
                    IfaceRole::Uplink => EdgeVnicIface::Uplink,
                    IfaceRole::Segment => EdgeVnicIface::Segment(k - 1),
                    IfaceRole::Ha => EdgeVnicIface::Ha,
                };
                let (attach, kind, _) = self.model.edge_vnic_plug(which);
                let vnic = Vnic {
                    name: format!("{}/{}", vm.name, ifc.name),
                    mac: ifc.mac,
                    attach,
                };
                let vnic_name = vnic.name.clone();
                let h: &mut Host = self.plan.get_mut(hid).expect("host");
                let port = h.add_vnic(vnic);
                if active && ifc.role == IfaceRole::Uplink {
                    h.set_uplink_owner(e.uplink_ip, port);
                }
                let iface = edge_iface_end(&vm.name, &ifc.name);
                let link = self.link(kind, (&iface, eid, k as u16), (&vm.host, hid, port));
                vnics.push(EdgeVnic {
                    iface: which,
                    mac: ifc.mac,
                    edge_port: k as Port,
                    host_port: port,
                    link,
                });
                self.model.set_vnic(&vm.host, port, Some(vnic_name));
            }
            self.model.edges.push(EdgeFact {
                name: vm.name.clone(),
                host: vm.host.clone(),
                active,
                promoted: u64::from(active),
                stopped: false,
                stunned: false,
                node: eid,
                vnics,
                next_port: ifaces.len() as Port,
                ha_ip,
            });
            if active {
                self.assign_uplink_ip(router, &vm.host);
            }
        }
        // Both Edges run: each starts its BFD session to the other.
        for e in &self.model.edges {
            let cfg = bfd_config(&self.model, e, &t.timing);
            let edge: &mut Edge = self.plan.get_mut(e.node).expect("edge");
            edge.set_bfd(Instant::ZERO, cfg);
        }
    }

    /// The uplink address becomes a secondary IP of the ENI of the active Edge's host.
    fn assign_uplink_ip(&mut self, router: NodeId, host: &str) {
        let t = self.topo;
        let Some(eni) = t.eni_of_host(host) else {
            return;
        };
        let id = self.plan.node_id(&eni.id).expect("eni");
        self.plan
            .get_mut::<Eni>(id)
            .expect("eni")
            .assign_secondary(t.sddc.edges.uplink_ip);
        if let Some(f) = self.model.eni_mut(&eni.id) {
            f.secondary_ips.push(t.sddc.edges.uplink_ip);
        }
        let r: &mut VpcRouter = self.plan.get_mut(router).expect("router");
        r.assign_ip(&eni.id, t.sddc.edges.uplink_ip);
    }
}

/// The BFD session `edge` runs to the other Edge, if there is one: on its HA interface, every
/// `bfd_interval`, down after `bfd_multiplier` missed.
pub(crate) fn bfd_config(m: &Model, edge: &EdgeFact, t: &vmcnet_topo::Timing) -> Option<BfdConfig> {
    let (k, _) = m
        .edges
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == edge.name)?;
    let peer = m.edges.iter().find(|e| e.name != edge.name)?;
    Some(BfdConfig {
        local: (edge.ha().mac, edge.ha_ip),
        peer: (peer.ha().mac, peer.ha_ip),
        interval: t.bfd_interval,
        multiplier: u8::try_from(t.bfd_multiplier).unwrap_or(u8::MAX),
        discriminator: k as u32 + 1,
    })
}

/// A static route of Tier-0.
pub struct StaticRoute {
    pub dest: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Source-NAT to the uplink address (S3).
    pub snat: bool,
}

/// Tier-0's static routes: the Connected VPC through the VPC router, and S3's prefix list the
/// same way, source-NATed.
pub fn tier0_static_routes(t: &Topology) -> Vec<StaticRoute> {
    let gateway = vpc_router_ip(t.vpc.connected_subnet.cidr);
    let s3 = t.vpc.s3_endpoint.iter().flat_map(|s| &s.prefix_list);
    std::iter::once((t.vpc.cidr, false))
        .chain(s3.map(|p| (*p, true)))
        .map(|(dest, snat)| StaticRoute {
            dest,
            gateway,
            snat,
        })
        .collect()
}

/// An attachment of ENI `eni`, the `n`th it has had, to `instance` at `device_index`.
fn attachment(eni: &str, n: u32, instance: &str, device_index: u32) -> EniAttachmentFact {
    EniAttachmentFact {
        id: format!("eni-attach-{}-{n}", eni.trim_start_matches("eni-")),
        instance: instance.to_string(),
        device_index,
    }
}

fn eni_mac(j: usize) -> MacAddr {
    MacAddr::local(mac_kind::ENI, j as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::vpc_router::RouteState;
    use crate::time::Instant;

    fn lab() -> Lab {
        let topo = vmcnet_topo::parse(vmcnet_topo::DEFAULT_TOPOLOGY, "default").unwrap();
        Lab::build(&topo, 1)
    }

    #[test]
    fn default_lab_is_wired_as_the_design_says() {
        let lab = lab();
        // Every link joins two distinct nodes, and no port carries two links.
        let mut ends = std::collections::BTreeSet::new();
        for l in lab.sim.links() {
            assert_ne!(l.a.0, l.b.0, "{}", l.name);
            assert!(ends.insert(l.a), "{} reuses a port", l.name);
            assert!(ends.insert(l.b), "{} reuses a port", l.name);
        }
        // Cluster-1 hosts reach their ENIs; the spare ENIs hang on the router only.
        for (h, e) in [
            ("esxi-1", "eni-1"),
            ("esxi-2", "eni-2"),
            ("esxi-3", "eni-3"),
        ] {
            assert!(lab.sim.link_by_name(&format!("{h}--{e}")).is_some());
        }
        assert!(lab.sim.link_by_name("eni-4--vpc-router").is_some());
        assert!(!lab.sim.links().iter().any(|l| l.name.ends_with("--eni-4")));
        // The active Edge's uplink address is a secondary IP of its host's ENI, nowhere else.
        let holders: Vec<_> = lab
            .enis()
            .into_iter()
            .filter(|e| {
                e.private_ip_addresses
                    .iter()
                    .any(|ip| ip.private_ip_address == "172.31.0.30")
            })
            .map(|e| e.network_interface_id)
            .collect();
        assert_eq!(holders, vec!["eni-2"]);
        let standby = lab
            .id("edge-2")
            .and_then(|id| lab.sim.get::<Edge>(id))
            .unwrap();
        assert!(!standby.is_active());
        assert_eq!(lab.model.active_edge().unwrap().name, "edge-1");
    }

    #[test]
    fn vpc_main_table_has_local_a_route_per_segment_and_the_prefix_list() {
        let lab = lab();
        let r = lab
            .id(VPC_ROUTER)
            .and_then(|id| lab.sim.get::<VpcRouter>(id))
            .unwrap();
        let table = r.main_table();
        assert_eq!(table.len(), 1 + 3 + 1);
        for (dest, target, state) in &table {
            assert_eq!(*state, RouteState::Active, "{dest}");
            let want = match dest.to_string().as_str() {
                "172.31.0.0/16" => VpcTarget::Local,
                "198.51.100.0/24" => VpcTarget::GatewayEndpoint(S3_ENDPOINT_ID.into()),
                _ => VpcTarget::Eni("eni-2".into()),
            };
            assert_eq!(*target, want, "{dest}");
        }
    }

    #[test]
    fn teps_and_vnis_follow_the_plan() {
        let lab = lab();
        let hosts = lab.hosts();
        let teps: Vec<_> = hosts.iter().map(|h| h.tep.as_str()).collect();
        assert_eq!(teps, vec!["10.2.64.1", "10.2.64.2", "10.2.64.3"]);
        assert_eq!(hosts[1].edges, vec!["edge-1 (active)"]);
        assert_eq!(hosts[2].edges, vec!["edge-2 (standby)"]);
        assert_eq!(hosts[0].vms, vec!["web-1", "vcenter"]);
        let vnis: Vec<_> = lab.segments().iter().map(|s| s.vni).collect();
        assert_eq!(vnis, vec![69632, 69633, 69634]);
        assert_eq!(lab.resolve("app-1"), Some(Ipv4Addr::new(192, 168, 2, 10)));
        assert_eq!(lab.resolve("10.9.9.9"), Some(Ipv4Addr::new(10, 9, 9, 9)));
        assert_eq!(lab.resolve("nobody"), None);
    }

    #[test]
    fn actions_change_the_model_and_what_is_shown() {
        let mut lab = lab();
        let t0 = Instant::ZERO;
        lab.request(t0, action::Action::StunVm { vm: "web-1".into() })
            .unwrap();
        lab.request(
            t0,
            action::Action::ResumeVm {
                vm: "web-1".into(),
                host: "esxi-3".into(),
            },
        )
        .unwrap();
        lab.request(
            t0,
            action::Action::SetActiveEdge {
                edge: "edge-2".into(),
            },
        )
        .unwrap();
        assert_eq!(
            lab.request(
                t0,
                action::Action::StunVm {
                    vm: "nobody".into()
                }
            ),
            Err(action::ActionError::UnknownVm("nobody".into()))
        );
        lab.run_until(Instant::from_millis(10_000));
        let hosts = lab.hosts();
        assert_eq!(hosts[0].vms, vec!["vcenter"]);
        assert_eq!(hosts[2].vms, vec!["web-1", "app-1"]);
        assert_eq!(hosts[1].edges, vec!["edge-1 (standby)"]);
        assert_eq!(hosts[2].edges, vec!["edge-2 (active)"]);
        assert_eq!(lab.segments()[0].vms, vec!["web-1 192.168.1.10 on esxi-3"]);
        assert_eq!(lab.model.active_edge().unwrap().name, "edge-2");
        // The nodes were programmed: esxi-3's switch has web-1's vNIC, esxi-1's has not, and
        // edge-2 forwards.
        let has = |host: &str| {
            lab.sim
                .get::<Host>(lab.id(host).unwrap())
                .unwrap()
                .vnics()
                .any(|(_, v)| v.name == "web-1")
        };
        assert!(!has("esxi-1") && has("esxi-3"));
        assert!(lab
            .sim
            .get::<Edge>(lab.id("edge-2").unwrap())
            .unwrap()
            .is_active());
        let tl = lab.timeline();
        assert_eq!(tl.len(), 3);
        let stun = lab.topo.timing.vmotion_stun;
        let took: Vec<_> = tl.iter().map(|e| e.took_effect_at).collect();
        assert_eq!(
            took,
            vec![
                Some(t0),
                Some(t0 + stun),
                Some(t0 + lab.topo.timing.promotion)
            ]
        );
    }
}
