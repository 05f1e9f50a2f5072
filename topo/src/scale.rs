//! Large topologies built in code, for scale runs and benchmarks: the default lab's VPC with
//! many clusters, hosts and VMs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{Cluster, Gateway, Segment, Topology, Vm};
use crate::validate::MAX_HOSTS_PER_CLUSTER;

/// VMs a generated CGW segment holds: a /22 less its network, gateway and broadcast addresses.
pub const VMS_PER_SEGMENT: usize = 1021;

/// The default lab grown to `clusters` clusters of `hosts_per_cluster` hosts (`esxi-1`, …;
/// cluster 1 at most 16) and `vms` VMs (`vm-1`, …) spread over the hosts in turn, on CGW
/// segments of 192.168.0.0/16 cut in /22s (`seg-1`, …; 1,021 VMs each). The Edges, vCenter,
/// the VPC, EC2 and S3 stay as in the default lab; `web-1` and `app-1` go.
///
/// # Panics
/// If the figures cannot make a valid topology (more than 63 segments' worth of VMs, no host,
/// or fewer than 3 hosts in cluster 1, where the default lab's Edges run).
pub fn scaled(clusters: usize, hosts_per_cluster: usize, vms: usize) -> Topology {
    let mut t = crate::parse(crate::DEFAULT_TOPOLOGY, "default").expect("the default lab is valid");
    assert!(clusters >= 1 && hosts_per_cluster >= 3);
    let mut n = 0;
    t.sddc.clusters = (1..=clusters)
        .map(|c| Cluster {
            name: format!("cluster-{c}"),
            hosts: (0..hosts_per_cluster.min(if c == 1 {
                MAX_HOSTS_PER_CLUSTER
            } else {
                usize::MAX
            }))
                .map(|_| {
                    n += 1;
                    format!("esxi-{n}")
                })
                .collect(),
        })
        .collect();
    let hosts: Vec<String> = t.hosts().map(str::to_string).collect();
    t.sddc.segments.retain(|s| s.gateway == Gateway::Mgw);
    let segments = vms.div_ceil(VMS_PER_SEGMENT);
    assert!(
        segments <= 63,
        "{vms} VMs need more than 63 segments of 192.168.0.0/16"
    );
    for s in 0..segments {
        let base = u32::from(Ipv4Addr::new(192, 168, 0, 0)) + (s as u32) * 1024;
        let cidr = Ipv4Net::new(Ipv4Addr::from(base), 22).expect("/22");
        let first = s * VMS_PER_SEGMENT;
        let count = VMS_PER_SEGMENT.min(vms - first);
        t.sddc.segments.push(Segment {
            name: format!("seg-{}", s + 1),
            gateway: Gateway::Cgw,
            cidr,
            vms: (0..count)
                .map(|k| Vm {
                    name: format!("vm-{}", first + k + 1),
                    ip: Ipv4Addr::from(base + 2 + k as u32),
                    host: hosts[(first + k) % hosts.len()].clone(),
                })
                .collect(),
        });
    }
    t.name = format!("scale-{clusters}x{hosts_per_cluster}-{vms}");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_sddc_with_ten_thousand_vms_is_valid() {
        let t = scaled(20, 15, 10_000);
        t.validate().unwrap();
        let s = t.summary();
        assert_eq!((s.clusters, s.hosts, s.vms), (20, 300, 10_000 + 1));
        assert_eq!(s.segments, 10 + 1);
    }
}
