//! The lab's state as the CLI shows it: ENIs (shaped like `aws ec2
//! describe-network-interfaces`), route tables, hosts and segments. Read from the nodes, so what
//! is shown is what forwards.

use serde::Serialize;

use super::{segment_vni, Lab, VPC_ROUTER};
use crate::node::edge::{Edge, NextHop};
use crate::node::eni::Eni;
use crate::node::host::{Attachment, Host};
use crate::node::vpc_router::{VpcRouter, VpcTarget};
use crate::node::Node;

/// One ENI, with AWS's field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EniRow {
    pub network_interface_id: String,
    /// `in-use` or `available`.
    pub status: String,
    pub description: String,
    pub mac_address: String,
    pub private_ip_address: String,
    pub private_ip_addresses: Vec<PrivateIp>,
    pub source_dest_check: bool,
    pub subnet_id: String,
    pub vpc_id: String,
    pub attachment: Option<EniAttachment>,
    /// The ESXi host the ENI maps to (SDDC ENIs only).
    pub host: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrivateIp {
    pub primary: bool,
    pub private_ip_address: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EniAttachment {
    pub status: String,
    pub instance_id: String,
}

/// One route of the VPC's main route table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcRouteRow {
    pub destination_cidr_block: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
    /// `active` or `blackhole`.
    pub state: String,
}

/// One route of the active Edge (Tier-0 with CGW and MGW).
#[derive(Debug, Clone, Serialize)]
pub struct EdgeRouteRow {
    pub destination: String,
    /// `connected` or the gateway address.
    pub next_hop: String,
    pub interface: String,
    pub snat: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub cluster: String,
    pub tep: String,
    pub eni: Option<String>,
    pub vms: Vec<String>,
    pub edges: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentRow {
    pub segment: String,
    pub gateway: String,
    pub cidr: String,
    pub gateway_ip: String,
    pub vni: u32,
    pub vms: Vec<String>,
}

impl Lab {
    /// Every ENI: the SDDC's, then the EC2 instances'.
    pub fn enis(&self) -> Vec<EniRow> {
        let t = &self.topo;
        self.sim
            .nodes()
            .filter_map(|(id, _)| self.sim.get::<Eni>(id))
            .map(|e| {
                let sddc = t.vpc.enis.iter().any(|x| x.id == e.id());
                let subnet = if sddc {
                    t.vpc.connected_subnet.name.clone()
                } else {
                    let inst = t.vpc.instances.iter().find(|i| i.ip == e.primary_ip());
                    inst.map(|i| i.subnet.clone()).unwrap_or_default()
                };
                EniRow {
                    network_interface_id: e.id().to_string(),
                    status: if e.attached_to().is_some() {
                        "in-use"
                    } else {
                        "available"
                    }
                    .into(),
                    description: e.description().to_string(),
                    mac_address: e.mac().to_string(),
                    private_ip_address: e.primary_ip().to_string(),
                    private_ip_addresses: e
                        .ips()
                        .iter()
                        .enumerate()
                        .map(|(i, ip)| PrivateIp {
                            primary: i == 0,
                            private_ip_address: ip.to_string(),
                        })
                        .collect(),
                    source_dest_check: e.src_dst_check(),
                    subnet_id: subnet,
                    vpc_id: t.vpc.id.clone(),
                    attachment: e.attached_to().map(|a| EniAttachment {
                        status: "attached".into(),
                        instance_id: a.to_string(),
                    }),
                    host: if sddc {
                        e.attached_to().map(str::to_string)
                    } else {
                        None
                    },
                }
            })
            .collect()
    }

    /// The VPC's main route table, longest prefix first.
    pub fn vpc_routes(&self) -> Vec<VpcRouteRow> {
        let Some(r) = self
            .id(VPC_ROUTER)
            .and_then(|id| self.sim.get::<VpcRouter>(id))
        else {
            return Vec::new();
        };
        r.main_table()
            .into_iter()
            .map(|(dest, target, state)| VpcRouteRow {
                destination_cidr_block: dest.to_string(),
                gateway_id: match &target {
                    VpcTarget::Local => Some("local".into()),
                    VpcTarget::GatewayEndpoint(id) => Some(id.clone()),
                    VpcTarget::Eni(_) => None,
                },
                network_interface_id: match target {
                    VpcTarget::Eni(id) => Some(id),
                    _ => None,
                },
                state: state.to_string(),
            })
            .collect()
    }

    /// The active Edge's route table, longest prefix first.
    pub fn edge_routes(&self) -> Vec<EdgeRouteRow> {
        let Some(e) = self.active_edge() else {
            return Vec::new();
        };
        e.routes()
            .iter()
            .map(|r| EdgeRouteRow {
                destination: r.dest.to_string(),
                next_hop: match r.target.next_hop {
                    NextHop::Connected => "connected".into(),
                    NextHop::Gateway(gw) => gw.to_string(),
                },
                interface: e.ifaces()[r.target.iface].name.clone(),
                snat: r.target.snat,
            })
            .collect()
    }

    /// The active Edge node.
    pub fn active_edge(&self) -> Option<&Edge> {
        self.sim
            .nodes()
            .filter_map(|(id, _)| self.sim.get::<Edge>(id))
            .find(|e| e.is_active())
    }

    /// Every ESXi host with what runs on it now: read from the hosts' vNICs, the ENIs'
    /// attachments and the Edges' state, so a VM or Edge that moved shows where it is.
    pub fn hosts(&self) -> Vec<HostRow> {
        let mut rows = Vec::new();
        for cluster in &self.topo.sddc.clusters {
            for name in &cluster.hosts {
                let Some(host) = self.id(name).and_then(|id| self.sim.get::<Host>(id)) else {
                    continue;
                };
                let mut vms = Vec::new();
                let mut edges = Vec::new();
                for (_, v) in host.vnics() {
                    match (v.attach, v.name.split_once('/')) {
                        (Attachment::Uplink, Some((edge, _))) => edges.push(self.edge_label(edge)),
                        (_, None) => vms.push(v.name.clone()),
                        _ => {}
                    }
                }
                let eni = self
                    .sim
                    .nodes()
                    .filter_map(|(id, _)| self.sim.get::<Eni>(id))
                    .find(|e| e.attached_to() == Some(name.as_str()))
                    .map(|e| e.id().to_string());
                rows.push(HostRow {
                    host: name.clone(),
                    cluster: cluster.name.clone(),
                    tep: host.tep().ip.to_string(),
                    eni,
                    vms,
                    edges,
                });
            }
        }
        rows
    }

    /// `edge-1 (active)` or `edge-1 (standby)`.
    fn edge_label(&self, edge: &str) -> String {
        let active = self
            .id(edge)
            .and_then(|id| self.sim.get::<Edge>(id))
            .is_some_and(Edge::is_active);
        format!("{edge} ({})", if active { "active" } else { "standby" })
    }

    /// The host whose switch has the vNIC `name`.
    fn host_of(&self, name: &str) -> Option<&str> {
        self.sim
            .nodes()
            .filter_map(|(id, _)| self.sim.get::<Host>(id))
            .find(|h| h.vnics().any(|(_, v)| v.name == name))
            .map(|h| h.name())
    }

    pub fn segments(&self) -> Vec<SegmentRow> {
        self.topo
            .sddc
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentRow {
                segment: s.name.clone(),
                gateway: format!("{:?}", s.gateway).to_uppercase(),
                cidr: s.cidr.to_string(),
                gateway_ip: s.gateway_ip().to_string(),
                vni: segment_vni(i),
                vms: s
                    .vms
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {} on {}",
                            v.name,
                            v.ip,
                            self.host_of(&v.name).unwrap_or("-")
                        )
                    })
                    .collect(),
            })
            .collect()
    }
}
