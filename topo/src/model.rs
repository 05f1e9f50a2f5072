//! The topology schema: what a TOML topology file holds.
//!
//! Every type here derives `Deserialize` and `Serialize`; unknown fields are rejected so that a
//! typo is an error, not a silently ignored line. Timing defaults are the values seen in VMC on AWS.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A whole topology: one SDDC and its Connected VPC.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// A short name for the lab, used in reports.
    pub name: String,
    pub sddc: Sddc,
    pub vpc: Vpc,
    #[serde(default)]
    pub timing: Timing,
    /// Delay, rate and queue of each link, per kind and per link.
    #[serde(default)]
    pub links: crate::links::Links,
}

/// The SDDC side: clusters, the Edge pair and the segments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sddc {
    /// The management CIDR: a /16, /20 or /23. MGW segments and host TEPs live inside it.
    pub management_cidr: Ipv4Net,
    /// Clusters in order; the first one holds the management components and the Edges, and only
    /// its hosts map to ENIs.
    pub clusters: Vec<Cluster>,
    pub edges: EdgePair,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    /// Host names (`esxi-1`, …). At most 16 a cluster.
    pub hosts: Vec<String>,
}

/// The NSX Edge pair: the active one holds Tier-0 and the CGW/MGW gateways.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgePair {
    pub active: EdgeVm,
    pub standby: EdgeVm,
    /// The Edge's uplink address: a secondary private IP of the ENI of the host that runs the
    /// active Edge. It lies in the connected subnet.
    pub uplink_ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeVm {
    pub name: String,
    /// The cluster-1 host this Edge VM runs on.
    pub host: String,
}

/// Which gateway a segment hangs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gateway {
    /// Compute Gateway: workload segments.
    Cgw,
    /// Management Gateway: vCenter, NSX Manager; inside the management CIDR.
    Mgw,
}

/// An overlay segment with its VMs. The gateway address is the first host address of `cidr`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    pub gateway: Gateway,
    pub cidr: Ipv4Net,
    #[serde(default)]
    pub vms: Vec<Vm>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The host the VM runs on.
    pub host: String,
}

/// The customer's Connected VPC.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    /// The VPC id shown in tables, e.g. `vpc-0c0ffee1`.
    #[serde(default = "default_vpc_id")]
    pub id: String,
    /// The primary CIDR. SDDC segments may not overlap it.
    pub cidr: Ipv4Net,
    /// The subnet that holds the SDDC's ENIs (a /26 in VMC).
    pub connected_subnet: Subnet,
    /// Other subnets, where EC2 instances live.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// The cross-account ENIs, in order. Cluster-1 hosts take them in order ("in-use"); the rest
    /// are "available".
    pub enis: Vec<Eni>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    pub s3_endpoint: Option<S3Endpoint>,
    /// Custom route tables a user made and associated with subnets of their own. VMC programs
    /// only the main table: a route here that targets an SDDC ENI stays where it was put.
    #[serde(default)]
    pub route_tables: Vec<RouteTableSpec>,
}

/// A custom route table: its subnets take it instead of the main table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableSpec {
    /// `rtb-…`.
    pub id: String,
    /// Names of the subnets associated with it (not the connected subnet: VMC's own).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Its routes besides the local one.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// A route of a custom table: to a destination, through an SDDC ENI.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub destination: Ipv4Net,
    /// The id of one of `vpc.enis`.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub name: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Eni {
    /// e.g. `eni-1`.
    pub id: String,
    /// Primary private IP, in the connected subnet.
    pub ip: Ipv4Addr,
}

/// An EC2 instance with its own ENI in one of the VPC's subnets.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub name: String,
    pub subnet: String,
    pub ip: Ipv4Addr,
}

/// An S3 gateway endpoint in the VPC's main route table, with the S3 service behind it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Endpoint {
    /// Name of the S3 service node, e.g. `s3`.
    pub name: String,
    /// The prefix list the gateway endpoint's route carries.
    pub prefix_list: Vec<Ipv4Net>,
    /// The address of the S3 service node; inside the prefix list.
    pub ip: Ipv4Addr,
}

/// Timing parameters of the SDDC and AWS control planes. Written as `"500ms"`, `"1.2s"`, `"30min"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    #[serde(with = "humantime_serde")]
    pub vmotion_stun: Duration,
    #[serde(with = "humantime_serde")]
    pub bfd_interval: Duration,
    pub bfd_multiplier: u32,
    #[serde(with = "humantime_serde")]
    pub promotion: Duration,
    #[serde(with = "humantime_serde")]
    pub control_plane_notice: Duration,
    #[serde(with = "humantime_serde")]
    pub move_secondary_ip: Duration,
    #[serde(with = "humantime_serde")]
    pub replace_route: Duration,
    #[serde(with = "humantime_serde")]
    pub eni_reattach: Duration,
    #[serde(with = "humantime_serde")]
    pub ha_host_dead: Duration,
    #[serde(with = "humantime_serde")]
    pub ha_restart: Duration,
    #[serde(with = "humantime_serde")]
    pub replacement_host: Duration,
    /// Routes the VPC main route table may hold.
    pub route_table_quota: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            vmotion_stun: Duration::from_millis(500),
            bfd_interval: Duration::from_millis(500),
            bfd_multiplier: 3,
            promotion: Duration::from_millis(200),
            control_plane_notice: Duration::from_secs(5),
            move_secondary_ip: Duration::from_millis(1200),
            replace_route: Duration::from_secs(2),
            eni_reattach: Duration::from_secs(30),
            ha_host_dead: Duration::from_secs(15),
            ha_restart: Duration::from_secs(120),
            replacement_host: Duration::from_secs(30 * 60),
            route_table_quota: 50,
        }
    }
}

/// Where a timing default comes from: a published figure, or an assumption a reader should
/// question (shared/DESIGN.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    Sourced(&'static str),
    Assumed,
}

/// One timing parameter as a report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimingRow {
    pub name: &'static str,
    /// Its value: seconds for a duration, a count otherwise.
    pub value: f64,
    /// `s` for a duration, empty for a count.
    pub unit: &'static str,
    /// The basis of the default; a value changed from the default is the user's.
    pub basis: Basis,
    pub is_default: bool,
}

impl Timing {
    /// Every parameter with its value and the basis of its default.
    pub fn rows(&self) -> Vec<TimingRow> {
        use Basis::*;
        let d = Timing::default();
        let dur = |name, v: Duration, def: Duration, basis| TimingRow {
            name,
            value: v.as_secs_f64(),
            unit: "s",
            basis,
            is_default: v == def,
        };
        let count = |name, v: u32, def: u32, basis| TimingRow {
            name,
            value: f64::from(v),
            unit: "",
            basis,
            is_default: v == def,
        };
        vec![
            dur(
                "vmotion_stun",
                self.vmotion_stun,
                d.vmotion_stun,
                Sourced("VMware's switchover goal"),
            ),
            dur(
                "bfd_interval",
                self.bfd_interval,
                d.bfd_interval,
                Sourced("NSX API defaults"),
            ),
            count(
                "bfd_multiplier",
                self.bfd_multiplier,
                d.bfd_multiplier,
                Sourced("NSX API defaults"),
            ),
            dur("promotion", self.promotion, d.promotion, Assumed),
            dur(
                "control_plane_notice",
                self.control_plane_notice,
                d.control_plane_notice,
                Assumed,
            ),
            dur(
                "move_secondary_ip",
                self.move_secondary_ip,
                d.move_secondary_ip,
                Sourced("one public measurement"),
            ),
            dur(
                "replace_route",
                self.replace_route,
                d.replace_route,
                Assumed,
            ),
            dur("eni_reattach", self.eni_reattach, d.eni_reattach, Assumed),
            dur(
                "ha_host_dead",
                self.ha_host_dead,
                d.ha_host_dead,
                Sourced("vSphere HA docs"),
            ),
            dur("ha_restart", self.ha_restart, d.ha_restart, Assumed),
            dur(
                "replacement_host",
                self.replacement_host,
                d.replacement_host,
                Assumed,
            ),
            count(
                "route_table_quota",
                self.route_table_quota,
                d.route_table_quota,
                Sourced("AWS quotas"),
            ),
        ]
    }
}

fn default_vpc_id() -> String {
    "vpc-0c0ffee1".to_string()
}

impl Topology {
    /// The first cluster, where the Edges run and whose hosts map to ENIs.
    pub fn cluster1(&self) -> Option<&Cluster> {
        self.sddc.clusters.first()
    }

    /// Every host name, cluster by cluster.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.sddc
            .clusters
            .iter()
            .flat_map(|c| c.hosts.iter().map(String::as_str))
    }

    /// The ENI each cluster-1 host maps to, in order: `(host, eni)`.
    pub fn host_enis(&self) -> impl Iterator<Item = (&str, &Eni)> {
        self.cluster1()
            .into_iter()
            .flat_map(|c| c.hosts.iter().map(String::as_str))
            .zip(self.vpc.enis.iter())
    }

    /// The ENI of a host, if it maps to one.
    pub fn eni_of_host(&self, host: &str) -> Option<&Eni> {
        self.host_enis().find(|(h, _)| *h == host).map(|(_, e)| e)
    }

    /// All VMs with their segment.
    pub fn vms(&self) -> impl Iterator<Item = (&Segment, &Vm)> {
        self.sddc
            .segments
            .iter()
            .flat_map(|s| s.vms.iter().map(move |v| (s, v)))
    }

    /// A VPC subnet (connected or other) by name.
    pub fn subnet(&self, name: &str) -> Option<&Subnet> {
        std::iter::once(&self.vpc.connected_subnet)
            .chain(self.vpc.subnets.iter())
            .find(|s| s.name == name)
    }
}

/// The size of a topology at a glance, e.g. for a report header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub clusters: usize,
    pub hosts: usize,
    /// ENIs mapped to a cluster-1 host.
    pub enis_in_use: usize,
    pub enis: usize,
    pub segments: usize,
    pub vms: usize,
    /// VPC subnets, the connected one included.
    pub subnets: usize,
    pub instances: usize,
}

impl Topology {
    /// Counts of clusters, hosts, ENIs, segments, VMs, subnets and instances.
    pub fn summary(&self) -> Summary {
        Summary {
            clusters: self.sddc.clusters.len(),
            hosts: self.hosts().count(),
            enis_in_use: self.host_enis().count(),
            enis: self.vpc.enis.len(),
            segments: self.sddc.segments.len(),
            vms: self.vms().count(),
            subnets: 1 + self.vpc.subnets.len(),
            instances: self.vpc.instances.len(),
        }
    }
}

impl std::fmt::Display for Summary {
    /// `1 cluster, 3 hosts, 3 of 17 ENIs in use, 3 segments, 3 VMs, 2 subnets, 1 instance`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{}, {}, {} of {} in use, {}, {}, {}, {}",
            count(self.clusters, "cluster"),
            count(self.hosts, "host"),
            self.enis_in_use,
            count(self.enis, "ENI"),
            count(self.segments, "segment"),
            count(self.vms, "VM"),
            count(self.subnets, "subnet"),
            count(self.instances, "instance"),
        )
    }
}

impl Segment {
    /// The gateway address of the segment: the first host address of its network.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        nth_addr(self.cidr, 1)
    }
}

/// The VPC router of a subnet: base + 1 (AWS).
pub fn vpc_router_ip(subnet: Ipv4Net) -> Ipv4Addr {
    nth_addr(subnet, 1)
}

/// The address `n` past a network's base.
pub fn nth_addr(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    #[test]
    fn every_timing_parameter_has_a_row_with_its_basis() {
        let written = toml::to_string(&Timing::default()).unwrap();
        let keys: Vec<String> = written
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
            .collect();
        let t = Timing {
            promotion: Duration::from_secs(1),
            ..Timing::default()
        };
        let rows = t.rows();
        let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
        assert_eq!(names, keys);
        let promotion = rows.iter().find(|r| r.name == "promotion").unwrap();
        assert_eq!((promotion.value, promotion.is_default), (1.0, false));
        assert_eq!(promotion.basis, Basis::Assumed);
        assert!(rows
            .iter()
            .filter(|r| r.name != "promotion")
            .all(|r| r.is_default));
    }
}
