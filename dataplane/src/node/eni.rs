//! An AWS elastic network interface: a MAC, a primary private IP and secondary ones, attached to
//! an instance (an ESXi host or an EC2 instance) or to nothing, with a source/destination check.
//!
//! Ports: [`INSTANCE`] to the attached instance, [`VPC`] to the VPC router.
//!
//! The source/destination check drops traffic that is neither from nor to one of the ENI's own
//! addresses. The SDDC's ENIs carry it disabled (the Edge routes for every segment); an EC2
//! instance's ENI has it enabled. A detached ENI passes nothing.

use std::net::Ipv4Addr;

use super::{Change, Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::ipv4::Ipv4View;
use crate::wire::{self, Frame, MacAddr, ETHERTYPE_ARP, ETHERTYPE_IPV4};

pub const INSTANCE: Port = 0;
pub const VPC: Port = 1;

counters! {
    /// What the ENI did with frames.
    pub struct EniCounters {
        pub to_vpc,
        pub to_instance,
        pub tx_dropped_src_dst_check,
        pub rx_dropped_src_dst_check,
        pub dropped_detached,
        pub dropped_not_ip,
    }
}

/// An ENI.
#[derive(Debug)]
pub struct Eni {
    id: String,
    mac: MacAddr,
    /// Primary first, then secondaries.
    ips: Vec<Ipv4Addr>,
    /// The instance it is attached to (a host or an EC2 instance name).
    attached_to: Option<String>,
    src_dst_check: bool,
    description: String,
    pub counters: EniCounters,
}

impl Eni {
    pub fn new(
        id: &str,
        mac: MacAddr,
        primary: Ipv4Addr,
        src_dst_check: bool,
        description: &str,
    ) -> Self {
        Eni {
            id: id.to_string(),
            mac,
            ips: vec![primary],
            attached_to: None,
            src_dst_check,
            description: description.to_string(),
            counters: EniCounters::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn mac(&self) -> MacAddr {
        self.mac
    }
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.ips[0]
    }
    pub fn ips(&self) -> &[Ipv4Addr] {
        &self.ips
    }
    pub fn attached_to(&self) -> Option<&str> {
        self.attached_to.as_deref()
    }
    pub fn src_dst_check(&self) -> bool {
        self.src_dst_check
    }
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn attach(&mut self, instance: &str) {
        self.attached_to = Some(instance.to_string());
    }

    pub fn detach(&mut self) {
        self.attached_to = None;
    }

    /// Assign a secondary private IP (no-op if already held).
    pub fn assign_secondary(&mut self, ip: Ipv4Addr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Unassign a secondary private IP; false if the ENI did not hold it.
    pub fn unassign_secondary(&mut self, ip: Ipv4Addr) -> bool {
        match self.ips.iter().skip(1).position(|a| *a == ip) {
            Some(i) => {
                self.ips.remove(i + 1);
                true
            }
            None => false,
        }
    }

    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.ips.contains(&ip)
    }
}

impl Node for Eni {
    fn name(&self) -> &str {
        &self.id
    }

    fn configure(&mut self, _now: Instant, change: &Change, _out: &mut Outbox) {
        match change {
            Change::EniAttachment(to) => self.attached_to = to.clone(),
            Change::EniSecondaryIp { ip, held: true } => self.assign_secondary(*ip),
            Change::EniSecondaryIp { ip, held: false } => {
                self.unassign_secondary(*ip);
            }
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        "eni"
    }

    fn has_timers(&self) -> bool {
        false
    }

    fn port_name(&self, port: Port) -> String {
        match port {
            INSTANCE => "instance".into(),
            _ => "vpc".into(),
        }
    }

    fn handle(&mut self, _now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
        if self.attached_to.is_none() {
            self.counters.dropped_detached += 1;
            return;
        }
        match wire::ethertype(&frame) {
            Some(ETHERTYPE_ARP) => {}
            Some(ETHERTYPE_IPV4) => {
                let Some(v) = Ipv4View::parse(&frame) else {
                    self.counters.dropped_not_ip += 1;
                    return;
                };
                if self.src_dst_check {
                    let ours = if port == INSTANCE { v.src() } else { v.dst() };
                    if !self.owns(ours) {
                        if port == INSTANCE {
                            self.counters.tx_dropped_src_dst_check += 1;
                        } else {
                            self.counters.rx_dropped_src_dst_check += 1;
                        }
                        return;
                    }
                }
            }
            _ => {
                self.counters.dropped_not_ip += 1;
                return;
            }
        }
        if port == INSTANCE {
            self.counters.to_vpc += 1;
            out.send(VPC, frame);
        } else {
            self.counters.to_instance += 1;
            out.send(INSTANCE, frame);
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

    const OWN: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);
    const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    fn eni(check: bool) -> Eni {
        let mut e = Eni::new("eni-x", MacAddr::local(0xe0, 1), OWN, check, "test");
        e.attach("ec2-1");
        e
    }

    fn send(e: &mut Eni, port: Port, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<(Port, Frame)> {
        let mut out = Outbox::new();
        e.handle(
            Instant::ZERO,
            port,
            udp_frame(src, dst, 64, 1, 2, b"x").into(),
            &mut out,
        );
        out.drain().collect()
    }

    #[test]
    fn src_dst_check_drops_foreign_traffic_both_ways() {
        let mut e = eni(true);
        assert_eq!(send(&mut e, INSTANCE, OWN, OTHER)[0].0, VPC);
        assert_eq!(send(&mut e, VPC, OTHER, OWN)[0].0, INSTANCE);
        assert!(send(&mut e, INSTANCE, OTHER, OWN).is_empty());
        assert!(send(&mut e, VPC, OWN, OTHER).is_empty());
        assert_eq!(
            (
                e.counters.tx_dropped_src_dst_check,
                e.counters.rx_dropped_src_dst_check
            ),
            (1, 1)
        );
        // A secondary IP counts as its own.
        e.assign_secondary(OTHER);
        assert_eq!(send(&mut e, VPC, OWN, OTHER).len(), 1);
        assert!(e.unassign_secondary(OTHER));
        assert!(!e.unassign_secondary(OWN), "the primary is not a secondary");
        assert!(send(&mut e, VPC, OWN, OTHER).is_empty());
    }

    #[test]
    fn disabled_check_forwards_and_detached_drops() {
        let mut e = eni(false);
        assert_eq!(send(&mut e, INSTANCE, OTHER, OTHER).len(), 1);
        e.detach();
        assert!(send(&mut e, INSTANCE, OWN, OTHER).is_empty());
        assert!(send(&mut e, VPC, OTHER, OWN).is_empty());
        assert_eq!(e.counters.dropped_detached, 2);
    }
}
