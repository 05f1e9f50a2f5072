//! The lab's state as the CLI shows it, read from the control model: ENIs shaped like `aws ec2
//! describe-network-interfaces`, route tables like `aws ec2 describe-route-tables`, the Tier-0
//! routing table like NSX's Policy API `routing-table`, hosts and segments. Absent keys are left
//! out, not `null`, as the AWS CLI prints them.

use serde::Serialize;

use super::model::{RouteDest, RouteFact};
use super::Lab;
use crate::node::vpc_router::VpcTarget;

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
    pub interface_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<EniAttachment>,
    /// The ESXi host the ENI maps to (SDDC ENIs only; not an AWS field).
    #[serde(skip_serializing_if = "Option::is_none")]
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
    pub attachment_id: String,
    pub device_index: u32,
    pub instance_id: String,
    pub status: String,
}

/// A route table, with AWS's field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTableRow {
    pub route_table_id: String,
    pub vpc_id: String,
    pub associations: Vec<Association>,
    pub routes: Vec<VpcRouteRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Association {
    pub main: bool,
    pub route_table_association_id: String,
    pub route_table_id: String,
    /// The subnet a custom table is associated with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
}

/// One route of a VPC route table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcRouteRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_cidr_block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_prefix_list_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
    /// `CreateRouteTable` or `CreateRoute`.
    pub origin: String,
    /// `active` or `blackhole`.
    pub state: String,
}

impl VpcRouteRow {
    /// The destination as a table shows it: the CIDR, or the prefix list.
    pub fn destination(&self) -> String {
        self.destination_cidr_block
            .clone()
            .or_else(|| self.destination_prefix_list_id.clone())
            .unwrap_or_default()
    }

    /// The target as a table shows it: the ENI or the gateway.
    pub fn target(&self) -> String {
        self.network_interface_id
            .clone()
            .or_else(|| self.gateway_id.clone())
            .unwrap_or_default()
    }
}

/// One route of the active Edge's Tier-0 (with the CGW and MGW), in the shape of NSX's Policy
/// API `routing-table` entries.
#[derive(Debug, Clone, Serialize)]
pub struct Tier0Route {
    pub network: String,
    /// The gateway address; empty for a connected network.
    pub next_hop: String,
    /// `t0c` connected to Tier-0 (the uplink), `t1c` connected to a Tier-1 (the CGW's and MGW's
    /// segments), `t0s` static.
    pub route_type: &'static str,
    pub admin_distance: u8,
    /// The interface the route leaves by (not an NSX field).
    pub interface: String,
    /// Source-NATed to the uplink address (S3; not an NSX field).
    pub snat: bool,
}

/// The Tier-0 routing table, as `GET …/tier-0s/vmc/routing-table` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Tier0RoutingTable {
    pub results: Vec<Tier0Result>,
    pub result_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tier0Result {
    /// The Edge whose table this is.
    pub edge_node: String,
    pub route_entries: Vec<Tier0Route>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub cluster: String,
    /// The host is down.
    pub failed: bool,
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

/// The id of the VPC's main route table.
pub const MAIN_ROUTE_TABLE_ID: &str = "rtb-main";

impl Lab {
    /// Every ENI: the SDDC's, then the EC2 instances'.
    pub fn enis(&self) -> Vec<EniRow> {
        self.model
            .enis
            .iter()
            .map(|e| EniRow {
                network_interface_id: e.id.clone(),
                status: if e.attachment.is_some() {
                    "in-use"
                } else {
                    "available"
                }
                .into(),
                description: e.description.clone(),
                mac_address: e.mac.to_string(),
                private_ip_address: e.primary_ip.to_string(),
                private_ip_addresses: std::iter::once((true, e.primary_ip))
                    .chain(e.secondary_ips.iter().map(|ip| (false, *ip)))
                    .map(|(primary, ip)| PrivateIp {
                        primary,
                        private_ip_address: ip.to_string(),
                    })
                    .collect(),
                source_dest_check: e.source_dest_check,
                subnet_id: e.subnet_id.clone(),
                vpc_id: self.topo.vpc.id.clone(),
                interface_type: "interface",
                attachment: e.attachment.as_ref().map(|a| EniAttachment {
                    attachment_id: a.id.clone(),
                    device_index: a.device_index,
                    instance_id: a.instance.clone(),
                    status: "attached".into(),
                }),
                host: e
                    .attachment
                    .as_ref()
                    .filter(|_| e.sddc)
                    .map(|a| a.instance.clone()),
            })
            .collect()
    }

    /// The VPC's main route table, in the order its routes were created.
    pub fn vpc_routes(&self) -> Vec<VpcRouteRow> {
        self.model
            .main_table
            .iter()
            .map(|r| self.route_row(r))
            .collect()
    }

    fn route_row(&self, r: &RouteFact) -> VpcRouteRow {
        let (cidr, prefix_list) = match &r.dest {
            RouteDest::Cidr(c) => (Some(c.to_string()), None),
            RouteDest::PrefixList { id, .. } => (None, Some(id.clone())),
        };
        let (gateway, eni) = match &r.target {
            VpcTarget::Local => (Some("local".to_string()), None),
            VpcTarget::GatewayEndpoint(id) => (Some(id.clone()), None),
            VpcTarget::Eni(id) => (None, Some(id.clone())),
        };
        VpcRouteRow {
            destination_cidr_block: cidr,
            destination_prefix_list_id: prefix_list,
            gateway_id: gateway,
            network_interface_id: eni,
            origin: r.origin.to_string(),
            state: self.model.route_state(r).to_string(),
        }
    }

    /// The VPC's route tables, the main one first, then the custom ones, as
    /// `aws ec2 describe-route-tables` lists them.
    pub fn route_tables(&self) -> Vec<RouteTableRow> {
        let main = RouteTableRow {
            route_table_id: MAIN_ROUTE_TABLE_ID.into(),
            vpc_id: self.topo.vpc.id.clone(),
            associations: vec![Association {
                main: true,
                route_table_association_id: format!("rtbassoc-{MAIN_ROUTE_TABLE_ID}"),
                route_table_id: MAIN_ROUTE_TABLE_ID.into(),
                subnet_id: None,
            }],
            routes: self.vpc_routes(),
        };
        let custom = self.model.custom_tables.iter().map(|t| RouteTableRow {
            route_table_id: t.id.clone(),
            vpc_id: self.topo.vpc.id.clone(),
            associations: t
                .subnets
                .iter()
                .enumerate()
                .map(|(k, subnet)| Association {
                    main: false,
                    route_table_association_id: format!("rtbassoc-{}-{}", t.id, k + 1),
                    route_table_id: t.id.clone(),
                    subnet_id: Some(subnet.clone()),
                })
                .collect(),
            routes: t.routes.iter().map(|r| self.route_row(r)).collect(),
        });
        std::iter::once(main).chain(custom).collect()
    }

    /// The active Edge's Tier-0 routes: the uplink's and the segments' connected networks, the
    /// static route to the Connected VPC and, source-NATed, to S3's prefix list.
    pub fn tier0_routes(&self) -> Vec<Tier0Route> {
        let t = &self.topo;
        let connected = |net: String, route_type, interface: &str| Tier0Route {
            network: net,
            next_hop: String::new(),
            route_type,
            admin_distance: 0,
            interface: interface.to_string(),
            snat: false,
        };
        let mut v = vec![connected(
            t.vpc.connected_subnet.cidr.to_string(),
            "t0c",
            "uplink",
        )];
        for s in &self.model.segments {
            v.push(connected(s.cidr.to_string(), "t1c", &s.name));
        }
        for r in super::tier0_static_routes(t) {
            v.push(Tier0Route {
                network: r.dest.to_string(),
                next_hop: r.gateway.to_string(),
                route_type: "t0s",
                admin_distance: 1,
                interface: "uplink".into(),
                snat: r.snat,
            });
        }
        v
    }

    /// The Tier-0 routing table in the NSX Policy API's shape.
    pub fn tier0_routing_table(&self) -> Tier0RoutingTable {
        let entries = self.tier0_routes();
        let edge = self
            .model
            .active_edge()
            .map(|e| e.name.clone())
            .unwrap_or_default();
        Tier0RoutingTable {
            results: vec![Tier0Result {
                edge_node: edge,
                count: entries.len(),
                route_entries: entries,
            }],
            result_count: 1,
        }
    }

    /// Every ESXi host with what runs on it now.
    pub fn hosts(&self) -> Vec<HostRow> {
        self.model
            .hosts
            .iter()
            .map(|h| HostRow {
                host: h.name.clone(),
                cluster: h.cluster.clone(),
                failed: h.failed,
                tep: h.tep.to_string(),
                eni: self.model.eni_of_host(&h.name).map(|e| e.id.clone()),
                vms: self
                    .model
                    .vms
                    .iter()
                    .filter(|v| v.host == h.name)
                    .map(|v| match (h.failed, v.stunned) {
                        (true, _) => format!("{} (host down)", v.name),
                        (false, true) => format!("{} (stunned)", v.name),
                        (false, false) => v.name.clone(),
                    })
                    .collect(),
                edges: self
                    .model
                    .edges
                    .iter()
                    .filter(|e| e.host == h.name)
                    .map(|e| {
                        let role = match (self.model.edge_runs(e), e.active) {
                            (false, _) => "stopped",
                            (true, true) => "active",
                            (true, false) => "standby",
                        };
                        format!("{} ({role})", e.name)
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn segments(&self) -> Vec<SegmentRow> {
        self.model
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentRow {
                segment: s.name.clone(),
                gateway: format!("{:?}", s.gateway).to_uppercase(),
                cidr: s.cidr.to_string(),
                gateway_ip: s.gateway_ip.to_string(),
                vni: s.vni,
                vms: self
                    .model
                    .vms
                    .iter()
                    .filter(|v| v.segment == i)
                    .map(|v| format!("{} {} on {}", v.name, v.ip, v.host))
                    .collect(),
            })
            .collect()
    }
}
