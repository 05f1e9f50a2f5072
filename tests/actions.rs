//! Control actions take effect at exactly the instant they are requested plus their latency: a
//! frame just before still takes the old path, a frame at that instant the new one. Each
//! latency is read from the topology's timing, never copied.

mod common;
use common::default_topo as topo;

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::BytesMut;
use vmcnet::control::action::Action;
use vmcnet::control::Lab;
use vmcnet::node::edge::IfaceRole;
use vmcnet::node::endpoint::{AppReport, Endpoint};
use vmcnet::node::host::{Attachment, Host};
use vmcnet::node::vpc_router::VpcRouter;
use vmcnet::time::Instant;
use vmcnet::wire::ipv4::{put_headers, Ipv4Params, PROTO_UDP};
use vmcnet::wire::{Frame, MacAddr};

const EC2_1: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);
const WEB_1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 30);

/// A UDP datagram from `src` to `dst` in an Ethernet frame.
fn udp(dst_mac: MacAddr, src_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
    let mut b = BytesMut::new();
    let p = Ipv4Params {
        src,
        dst,
        protocol: PROTO_UDP,
        ttl: 64,
        ident: 1,
    };
    put_headers(&mut b, dst_mac, src_mac, &p, 8 + 18);
    b.extend_from_slice(&[0x9c, 0x40, 0, 9, 0, 26, 0, 0]);
    b.resize(b.len() + 18, 0xab);
    Frame::from(b)
}

/// The SDDC ENI (`eni-N`) a frame for `dst` that reaches the VPC router now is sent to, or
/// `None` if the router drops it. The frame enters where eni-ec2-1 meets the router.
fn router_sends(lab: &mut Lab, dst: Ipv4Addr) -> Option<String> {
    let router = lab.id("vpc-router").unwrap();
    let router_mac = lab.sim.get::<VpcRouter>(router).unwrap().mac();
    let to_enis: Vec<(usize, String, u64)> = lab
        .sim
        .links()
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let eni = l.name.strip_suffix("--vpc-router")?;
            eni.starts_with("eni-")
                .then(|| (i, eni.to_string(), lab.sim.link_counters(i)[1].tx_frames))
        })
        .collect();
    let from = lab
        .sim
        .links()
        .iter()
        .find(|l| l.name == "eni-ec2-1--vpc-router")
        .unwrap()
        .b;
    let ec2_mac = MacAddr::local(0xe1, 1);
    lab.sim
        .inject(from.0, from.1, udp(router_mac, ec2_mac, EC2_1, dst));
    let now = lab.sim.now();
    lab.run_until(now);
    to_enis
        .into_iter()
        .find(|(i, _, before)| lab.sim.link_counters(*i)[1].tx_frames > *before)
        .map(|(_, eni, _)| eni)
}

/// Request `action` at `t` and run to just before it takes effect.
fn request_and_run_to_just_before(lab: &mut Lab, t: Instant, action: Action) -> Instant {
    let effect = t + action.latency(&lab.topo.timing);
    lab.request(t, action).unwrap();
    lab.run_until(Instant::from_nanos(effect.as_nanos() - 1));
    effect
}

#[test]
fn a_secondary_ip_moves_at_exactly_the_request_plus_its_latency() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(100);
    let action = Action::AssignSecondaryIp {
        eni: "eni-3".into(),
        ip: UPLINK_IP,
    };
    let effect = request_and_run_to_just_before(&mut lab, t, action);
    assert_eq!(effect - t, lab.topo.timing.move_secondary_ip);
    assert_eq!(router_sends(&mut lab, UPLINK_IP).as_deref(), Some("eni-2"));
    lab.run_until(effect);
    assert_eq!(router_sends(&mut lab, UPLINK_IP).as_deref(), Some("eni-3"));
    let enis = lab.enis();
    let holders: Vec<_> = enis
        .iter()
        .filter(|e| {
            e.private_ip_addresses
                .iter()
                .any(|p| !p.primary && p.private_ip_address == UPLINK_IP.to_string())
        })
        .map(|e| e.network_interface_id.as_str())
        .collect();
    assert_eq!(holders, vec!["eni-3"]);
    let tl = &lab.timeline()[0];
    assert_eq!((tl.requested_at, tl.took_effect_at), (t, Some(effect)));
}

#[test]
fn a_route_is_replaced_at_exactly_the_request_plus_its_latency() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(250);
    let dest = "192.168.1.0/24".parse().unwrap();
    let action = Action::ReplaceRoute {
        dest,
        eni: "eni-3".into(),
    };
    let effect = request_and_run_to_just_before(&mut lab, t, action);
    assert_eq!(effect - t, lab.topo.timing.replace_route);
    assert_eq!(router_sends(&mut lab, WEB_1).as_deref(), Some("eni-2"));
    lab.run_until(effect);
    assert_eq!(router_sends(&mut lab, WEB_1).as_deref(), Some("eni-3"));
    let row = lab
        .vpc_routes()
        .into_iter()
        .find(|r| r.destination_cidr_block.as_deref() == Some("192.168.1.0/24"))
        .unwrap();
    assert_eq!(row.network_interface_id.as_deref(), Some("eni-3"));
}

#[test]
fn a_detached_eni_blackholes_its_routes_at_exactly_the_request_plus_its_latency() {
    let mut lab = Lab::build(&topo(), 7);
    let t = Instant::from_millis(10);
    let action = Action::DetachEni {
        eni: "eni-2".into(),
    };
    let effect = request_and_run_to_just_before(&mut lab, t, action);
    assert_eq!(effect - t, lab.topo.timing.eni_reattach / 2);
    assert_eq!(router_sends(&mut lab, WEB_1).as_deref(), Some("eni-2"));
    lab.run_until(effect);
    let router = lab.id("vpc-router").unwrap();
    let blackholed = |lab: &Lab| {
        lab.sim
            .get::<VpcRouter>(router)
            .unwrap()
            .counters
            .rx_dropped_blackhole
    };
    let before = blackholed(&lab);
    assert_eq!(router_sends(&mut lab, WEB_1), None);
    assert_eq!(blackholed(&lab), before + 1);
    // Both views say so: the route is a blackhole, the ENI available with no attachment.
    let routes = lab.vpc_routes();
    let seg = routes
        .iter()
        .find(|r| r.destination_cidr_block.as_deref() == Some("192.168.1.0/24"))
        .unwrap();
    assert_eq!(
        (seg.network_interface_id.as_deref(), seg.state.as_str()),
        (Some("eni-2"), "blackhole")
    );
    let eni2 = lab
        .enis()
        .into_iter()
        .find(|e| e.network_interface_id == "eni-2")
        .unwrap();
    assert_eq!(
        (eni2.status.as_str(), eni2.attachment.is_none()),
        ("available", true)
    );
    // EC2 -> web-1 is cut.
    let ec2 = lab.id("ec2-1").unwrap();
    let now = lab.sim.now();
    let app = lab.sim.get_mut::<Endpoint>(ec2).unwrap().ping(
        now,
        WEB_1,
        2,
        Duration::from_millis(100),
        56,
    );
    lab.run_until(now + Duration::from_secs(5));
    let AppReport::Ping(p) = lab.endpoint("ec2-1").unwrap().app(app).clone() else {
        panic!()
    };
    assert_eq!((p.sent, p.received), (2, 0));
}

#[test]
fn a_vm_moves_between_hosts_at_exactly_the_request_plus_the_stun() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(500);
    let web = lab.model.vm("web-1").unwrap().clone();
    let (esxi1, esxi3) = (lab.id("esxi-1").unwrap(), lab.id("esxi-3").unwrap());
    lab.request(t, Action::StunVm { vm: "web-1".into() })
        .unwrap();
    let resume = Action::ResumeVm {
        vm: "web-1".into(),
        host: "esxi-3".into(),
    };
    let effect = request_and_run_to_just_before(&mut lab, t, resume);
    assert_eq!(effect - t, lab.topo.timing.vmotion_stun);
    let new_port = lab.model.free_port("esxi-3").unwrap();
    // A frame from web-1's vNIC, as each host's switch would take it now.
    let from_web = |lab: &mut Lab, host, port| {
        let counters = |lab: &Lab| lab.sim.get::<Host>(host).unwrap().counters.clone();
        let before = counters(lab);
        let f = udp(MacAddr::BROADCAST, web.mac, WEB_1, EC2_1);
        lab.sim.inject(host, port, f);
        let now = lab.sim.now();
        lab.run_until(now);
        let after = counters(lab);
        after.flooded > before.flooded
    };
    assert!(from_web(&mut lab, esxi1, web.port), "still on esxi-1");
    assert!(!from_web(&mut lab, esxi3, new_port), "not yet on esxi-3");
    lab.run_until(effect);
    assert!(!from_web(&mut lab, esxi1, web.port), "gone from esxi-1");
    assert!(from_web(&mut lab, esxi3, new_port), "on esxi-3");
    assert_eq!(lab.model.vm("web-1").unwrap().host, "esxi-3");
    assert_eq!(lab.sim.get::<Host>(esxi3).unwrap().counters.announced, 1);
}

/// The directory the control plane reprograms on resume is what sends traffic to the new host;
/// the host's RARP announcement (as ESXi sends it) is what a capture shows.
#[test]
fn a_moved_vm_is_reached_at_its_new_host_before_it_sends_anything() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(500);
    lab.request(t, Action::StunVm { vm: "web-1".into() })
        .unwrap();
    lab.request(
        t,
        Action::ResumeVm {
            vm: "web-1".into(),
            host: "esxi-3".into(),
        },
    )
    .unwrap();
    let resumed = t + lab.topo.timing.vmotion_stun;
    lab.run_until(resumed + Duration::from_millis(1));
    // Nothing was sent by web-1 itself since it resumed.
    let ec2 = lab.id("ec2-1").unwrap();
    let now = lab.sim.now();
    let app = lab.sim.get_mut::<Endpoint>(ec2).unwrap().ping(
        now,
        WEB_1,
        3,
        Duration::from_millis(100),
        56,
    );
    lab.run_until(now + Duration::from_secs(5));
    let AppReport::Ping(p) = lab.endpoint("ec2-1").unwrap().app(app).clone() else {
        panic!()
    };
    assert_eq!(p.received, 3, "{p:?}");
    let esxi1 = lab.id("esxi-1").unwrap();
    assert_eq!(
        lab.sim
            .get::<Host>(esxi1)
            .unwrap()
            .counters
            .rx_dropped_no_vnic,
        0,
        "nothing went to the old host"
    );
}

#[test]
fn cgw_to_cgw_is_routed_on_the_host_and_survives_both_edges_stopping() {
    let mut lab = Lab::build(&topo(), 1);
    for edge in ["edge-1", "edge-2"] {
        lab.request(Instant::ZERO, Action::StopEdge { edge: edge.into() })
            .unwrap();
    }
    lab.run_until(Instant::from_millis(1));
    assert!(lab.model.active_edge().is_none());
    let web = lab.id("web-1").unwrap();
    let app_ip = lab.resolve("app-1").unwrap();
    let now = lab.sim.now();
    let (to_app, to_ec2, trace) = {
        let ep = lab.sim.get_mut::<Endpoint>(web).unwrap();
        (
            ep.ping(now, app_ip, 3, Duration::from_millis(100), 56),
            ep.ping(now, EC2_1, 3, Duration::from_millis(100), 56),
            ep.traceroute(now, app_ip, 8),
        )
    };
    lab.run_until(now + Duration::from_secs(30));
    let ep = lab.endpoint("web-1").unwrap();
    let AppReport::Ping(p) = ep.app(to_app).clone() else {
        panic!()
    };
    // One routed hop, on web-1's own host: TTL 64 - 1.
    assert_eq!((p.received, p.reply_ttls.clone()), (3, vec![63; 3]));
    let AppReport::Ping(p) = ep.app(to_ec2).clone() else {
        panic!()
    };
    assert_eq!(p.received, 0, "the VPC is reached only through an Edge");
    let AppReport::Traceroute(t) = ep.app(trace).clone() else {
        panic!()
    };
    let gateway = lab.model.segments[lab.model.vm("web-1").unwrap().segment].gateway_ip;
    assert_eq!(t.hops, vec![Some(gateway), Some(app_ip)]);
    assert!(t.reached);
    let esxi1 = lab.id("esxi-1").unwrap();
    let c = &lab.sim.get::<Host>(esxi1).unwrap().counters;
    assert!(c.dr_routed >= 3 && c.dr_ttl_exceeded >= 1, "{c:?}");
}

#[test]
fn a_large_sddc_costs_vms_plus_hosts_not_their_product() {
    let (clusters, per_cluster, vms) = (20, 15, 3_000);
    let topo = vmcnet_topo::scale::scaled(clusters, per_cluster, vms);
    let hosts = topo.hosts().count();
    let mut lab = Lab::build(&topo, 1);
    let vm = lab.id("vm-1").unwrap();
    let pings = 15;
    let app = lab.sim.get_mut::<Endpoint>(vm).unwrap().ping(
        Instant::ZERO,
        EC2_1,
        pings,
        Duration::from_millis(100),
        56,
    );
    lab.run_until(Instant::from_millis(3_000));
    let AppReport::Ping(p) = lab.endpoint("vm-1").unwrap().app(app).clone() else {
        panic!()
    };
    assert_eq!(p.received, pings);
    // Each VM resolves its gateway once at link-up: a request to its host, answered there (2
    // frames); each ping crosses the same 9 links both ways; the Edge and routers resolve each
    // other a few times. Flooding each VM's ARP to every host would cost VMs x hosts.
    let frames = lab.sim.counters.delivered;
    let bound = 2 * vms as u64 + u64::from(pings) * 2 * 9 + 100;
    assert!(
        frames >= 2 * vms as u64,
        "every VM resolved its gateway: {frames}"
    );
    assert!(
        frames <= bound,
        "{frames} frames, bound {bound} ({} with flooding)",
        vms * hosts
    );
}

/// Ping `dst` from endpoint `from` `count` times, one every 100 ms, from now; the replies.
fn ping(lab: &mut Lab, from: &str, dst: Ipv4Addr, count: u32) -> u32 {
    let id = lab.id(from).unwrap();
    let now = lab.sim.now();
    let app = lab.sim.get_mut::<Endpoint>(id).unwrap().ping(
        now,
        dst,
        count,
        Duration::from_millis(100),
        56,
    );
    lab.run_until(now + Duration::from_millis(100) * count + Duration::from_secs(5));
    match lab.endpoint(from).unwrap().app(app) {
        AppReport::Ping(p) => p.received,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_host_takes_its_vms_down_until_it_recovers() {
    let mut lab = Lab::build(&topo(), 1);
    let app_1 = lab.resolve("app-1").unwrap();
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 3), 3);
    let t = lab.sim.now();
    lab.request(
        t,
        Action::FailHost {
            host: "esxi-1".into(),
        },
    )
    .unwrap();
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 3), 0, "web-1 runs on esxi-1");
    assert_eq!(
        ping(&mut lab, "ec2-1", app_1, 3),
        3,
        "app-1 on esxi-3 is untouched"
    );
    assert!(lab.hosts()[0].failed);
    assert_eq!(lab.timeline()[0].took_effect_at, Some(t));
    let t = lab.sim.now();
    lab.request(
        t,
        Action::RecoverHost {
            host: "esxi-1".into(),
        },
    )
    .unwrap();
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 3), 3);
    assert!(!lab.hosts()[0].failed);
}

#[test]
fn the_active_edges_host_failing_cuts_the_vpc_until_another_edge_is_made_active() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(1);
    lab.request(
        t,
        Action::FailHost {
            host: "esxi-2".into(),
        },
    )
    .unwrap();
    lab.run_until(t);
    assert!(lab.model.active_edge().is_none());
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 2), 0);
    // What NSX and AWS would do: edge-2 active, the uplink IP to esxi-3's ENI, routes to it.
    let t = lab.sim.now();
    lab.request(
        t,
        Action::SetActiveEdge {
            edge: "edge-2".into(),
        },
    )
    .unwrap();
    lab.request(
        t,
        Action::AssignSecondaryIp {
            eni: "eni-3".into(),
            ip: UPLINK_IP,
        },
    )
    .unwrap();
    for seg in ["192.168.1.0/24", "192.168.2.0/24", "10.2.224.0/20"] {
        lab.request(
            t,
            Action::ReplaceRoute {
                dest: seg.parse().unwrap(),
                eni: "eni-3".into(),
            },
        )
        .unwrap();
    }
    let timing = lab.topo.timing.clone();
    let all_done = t + timing
        .replace_route
        .max(timing.move_secondary_ip)
        .max(timing.promotion);
    lab.run_until(all_done);
    assert_eq!(
        ping(&mut lab, "ec2-1", WEB_1, 3),
        3,
        "through edge-2 on esxi-3"
    );
    assert!(lab.timeline().iter().all(|e| e.took_effect_at.is_some()));
}

#[test]
fn segments_come_and_go_with_stable_vnis_and_the_edges_interfaces() {
    let mut lab = Lab::build(&topo(), 1);
    let vnis = |lab: &Lab| -> Vec<(String, u32)> {
        lab.segments()
            .into_iter()
            .map(|s| (s.segment, s.vni))
            .collect()
    };
    let before = vnis(&lab);
    let cidr: ipnet::Ipv4Net = "192.168.3.0/24".parse().unwrap();
    let gateway = Ipv4Addr::new(192, 168, 3, 1);
    let t = lab.sim.now();
    lab.request(
        t,
        Action::AddSegment {
            name: "sddc-cgw-network-3".into(),
            cidr,
            gateway: vmcnet_topo::Gateway::Cgw,
        },
    )
    .unwrap();
    // The VPC's route to it, as the reconciler would add it.
    lab.request(
        t,
        Action::CreateRoute {
            dest: cidr,
            eni: "eni-2".into(),
        },
    )
    .unwrap();
    lab.run_until(t + lab.topo.timing.replace_route);
    let after = vnis(&lab);
    let max_before = before.iter().map(|(_, v)| *v).max().unwrap();
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(
        after.last().unwrap(),
        &("sddc-cgw-network-3".to_string(), max_before + 1)
    );
    // The Edge answers at the new gateway: from the SDDC (through the distributed router)
    // and from the VPC.
    assert_eq!(ping(&mut lab, "web-1", gateway, 2), 2);
    assert_eq!(ping(&mut lab, "ec2-1", gateway, 2), 2);
    assert!(lab
        .tier0_routes()
        .iter()
        .any(|r| r.network == cidr.to_string()));
    // A segment with a VM on it stays; an empty one goes, and its gateway with it.
    let t = lab.sim.now();
    lab.request(
        t,
        Action::RemoveSegment {
            name: "sddc-cgw-network-2".into(),
        },
    )
    .unwrap();
    lab.request(
        t,
        Action::RemoveSegment {
            name: "sddc-cgw-network-3".into(),
        },
    )
    .unwrap();
    lab.run_until(t);
    let tl = lab.timeline();
    assert!(
        tl[2].error.as_deref().is_some_and(|e| e.contains("app-1")),
        "{:?}",
        tl[2]
    );
    assert_eq!(tl[3].took_effect_at, Some(t));
    assert_eq!(vnis(&lab), before, "the other segments keep their VNIs");
    assert_eq!(ping(&mut lab, "web-1", gateway, 2), 0);
    // A segment added again takes a VNI never used before, not the removed one's.
    let t = lab.sim.now();
    lab.request(
        t,
        Action::AddSegment {
            name: "sddc-cgw-network-4".into(),
            cidr: "192.168.4.0/24".parse().unwrap(),
            gateway: vmcnet_topo::Gateway::Cgw,
        },
    )
    .unwrap();
    // A segment may not take the name of an Edge's interface (its HA one here).
    let ha = lab
        .request(
            t,
            Action::AddSegment {
                name: "ha".into(),
                cidr: "192.168.9.0/24".parse().unwrap(),
                gateway: vmcnet_topo::Gateway::Cgw,
            },
        )
        .unwrap();
    lab.run_until(t);
    assert_eq!(vnis(&lab).last().unwrap().1, max_before + 2);
    let refused = lab.timeline()[ha].error.as_deref().unwrap_or_default();
    assert!(refused.contains("interface of every Edge"), "{refused}");
    let app_1 = lab.resolve("app-1").unwrap();
    assert_eq!(ping(&mut lab, "web-1", app_1, 2), 2);
}

/// A CGW segment of `192.168.<n>.0/24` named `sddc-cgw-network-<n>`, with its VPC route.
fn add_segment(lab: &mut Lab, t: Instant, n: u8) {
    let cidr: ipnet::Ipv4Net = format!("192.168.{n}.0/24").parse().unwrap();
    let add = Action::AddSegment {
        name: format!("sddc-cgw-network-{n}"),
        cidr,
        gateway: vmcnet_topo::Gateway::Cgw,
    };
    lab.request(t, add).unwrap();
    let route = Action::CreateRoute {
        dest: cidr,
        eni: "eni-2".into(),
    };
    lab.request(t, route).unwrap();
}

#[test]
fn segment_vnics_renumbered_after_a_removal_survive_an_edge_vmotion() {
    let mut lab = Lab::build(&topo(), 1);
    let mut t = lab.sim.now();
    add_segment(&mut lab, t, 4);
    add_segment(&mut lab, t, 5);
    t += lab.topo.timing.replace_route;
    lab.run_until(t);
    // The earlier of the two goes: the later one's interfaces now sit on a lower index.
    let remove = Action::RemoveSegment {
        name: "sddc-cgw-network-4".into(),
    };
    lab.request(t, remove).unwrap();
    lab.run_until(t);
    // The active Edge moves to another host: every interface is plugged in again there.
    for a in Action::vmotion("edge-1", "esxi-3") {
        lab.request(t, a).unwrap();
    }
    t += lab.topo.timing.vmotion_stun;
    lab.run_until(t);
    assert!(lab.timeline().iter().all(|e| e.error.is_none()));
    // What esxi-3 has plugged in for each of the Edge's segment interfaces: the vNIC named
    // after that segment, on that segment's VNI.
    let edge = lab.model.edge("edge-1").unwrap();
    assert_eq!(edge.host, "esxi-3");
    let host = lab.sim.get::<Host>(lab.id("esxi-3").unwrap()).unwrap();
    let plugged: Vec<(String, Attachment)> = edge
        .segment_vnics()
        .map(|v| {
            let (_, vnic) = host.vnics().find(|(p, _)| *p == v.host_port).unwrap();
            (vnic.name.clone(), vnic.attach)
        })
        .collect();
    let expected: Vec<(String, Attachment)> = lab
        .model
        .segments
        .iter()
        .map(|s| (format!("edge-1/{}", s.name), Attachment::Segment(s.vni)))
        .collect();
    assert_eq!(plugged, expected);
    assert!(expected
        .iter()
        .any(|(n, _)| n == "edge-1/sddc-cgw-network-5"));
    // On its new host the Edge answers at the remaining segment's gateway, and no longer at
    // the removed one's.
    assert_eq!(ping(&mut lab, "web-1", Ipv4Addr::new(192, 168, 5, 1), 2), 2);
    assert_eq!(ping(&mut lab, "web-1", Ipv4Addr::new(192, 168, 4, 1), 2), 0);
}

/// A segment added while an Edge is stunned: its new interface's link stays dark like the
/// Edge's others until the vMotion resumes it, then the Edge answers on it.
#[test]
fn a_segment_added_during_an_edge_vmotion_is_dark_until_the_edge_resumes() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::from_millis(1_000);
    for a in Action::vmotion("edge-1", "esxi-3") {
        lab.request(t, a).unwrap();
    }
    add_segment(&mut lab, t, 4);
    lab.run_until(t);
    let link = |lab: &Lab, edge: &str| {
        let e = lab.model.edge(edge).unwrap();
        e.segment_vnics().last().unwrap().link
    };
    assert!(!lab.sim.is_connected(link(&lab, "edge-1")), "stunned: dark");
    assert!(lab.sim.is_connected(link(&lab, "edge-2")), "running: lit");
    lab.run_until(t + lab.topo.timing.vmotion_stun);
    assert!(lab.sim.is_connected(link(&lab, "edge-1")), "resumed: lit");
    assert_eq!(ping(&mut lab, "web-1", Ipv4Addr::new(192, 168, 4, 1), 2), 2);
}

#[test]
fn a_host_joins_takes_an_available_eni_and_runs_a_vm_then_leaves() {
    let mut lab = Lab::build(&topo(), 1);
    let in_use = |lab: &Lab| lab.enis().iter().filter(|e| e.host.is_some()).count();
    assert_eq!(in_use(&lab), 3);
    let t = Instant::ZERO;
    lab.request(
        t,
        Action::AddHost {
            host: "esxi-4".into(),
            cluster: "cluster-1".into(),
        },
    )
    .unwrap();
    let joined = t + lab.topo.timing.replacement_host;
    lab.run_until(Instant::from_nanos(joined.as_nanos() - 1));
    assert!(
        lab.hosts().iter().all(|h| h.host != "esxi-4"),
        "not before its latency"
    );
    lab.run_until(joined);
    assert_eq!(lab.hosts().last().unwrap().host, "esxi-4");
    // It takes the first available ENI; web-1 moves onto it.
    let now = lab.sim.now();
    for a in [
        Action::AttachEni {
            eni: "eni-4".into(),
            host: "esxi-4".into(),
        },
        Action::StunVm { vm: "web-1".into() },
        Action::ResumeVm {
            vm: "web-1".into(),
            host: "esxi-4".into(),
        },
    ] {
        lab.request(now, a).unwrap();
    }
    let timing = lab.topo.timing.clone();
    lab.run_until(now + (timing.eni_reattach / 2).max(timing.vmotion_stun));
    assert_eq!(
        in_use(&lab),
        4,
        "cluster 1 holds a 17th-style extra host on its ENI"
    );
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 3), 3, "web-1 on esxi-4");
    let t = lab.sim.now();
    lab.request(
        t,
        Action::RemoveHost {
            host: "esxi-4".into(),
        },
    )
    .unwrap();
    lab.run_until(t);
    assert!(
        lab.timeline().last().unwrap().error.is_some(),
        "web-1 is still on it"
    );
    // Back to three: web-1 home, the ENI detached, the host gone.
    let t = lab.sim.now();
    lab.request(t, Action::StunVm { vm: "web-1".into() })
        .unwrap();
    lab.request(
        t,
        Action::ResumeVm {
            vm: "web-1".into(),
            host: "esxi-1".into(),
        },
    )
    .unwrap();
    lab.request(
        t,
        Action::DetachEni {
            eni: "eni-4".into(),
        },
    )
    .unwrap();
    let done = t + (timing.eni_reattach / 2).max(timing.vmotion_stun);
    lab.request(
        done,
        Action::RemoveHost {
            host: "esxi-4".into(),
        },
    )
    .unwrap();
    lab.run_until(done);
    assert!(
        lab.timeline()
            .iter()
            .rev()
            .take(4)
            .all(|e| e.took_effect_at.is_some()),
        "{:?}",
        lab.timeline()
    );
    assert_eq!(in_use(&lab), 3);
    assert!(lab.hosts().iter().all(|h| h.host != "esxi-4"));
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 3), 3, "web-1 back on esxi-1");
}

#[test]
fn an_action_whose_object_is_gone_when_it_comes_due_fails_without_harm() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::ZERO;
    lab.request(
        t,
        Action::AddHost {
            host: "esxi-4".into(),
            cluster: "cluster-1".into(),
        },
    )
    .unwrap();
    let joined = t + lab.topo.timing.replacement_host;
    lab.run_until(joined);
    // The resume comes due after the host is gone; the second removal finds nothing.
    lab.request(joined, Action::StunVm { vm: "web-1".into() })
        .unwrap();
    let resume = Action::ResumeVm {
        vm: "web-1".into(),
        host: "esxi-4".into(),
    };
    lab.request(joined, resume).unwrap();
    lab.request(
        joined,
        Action::RemoveHost {
            host: "esxi-4".into(),
        },
    )
    .unwrap();
    lab.request(
        joined,
        Action::RemoveHost {
            host: "esxi-4".into(),
        },
    )
    .unwrap();
    lab.run_until(joined + lab.topo.timing.vmotion_stun);
    let tl = lab.timeline();
    assert_eq!(tl[3].took_effect_at, Some(joined), "the first removal");
    assert!(
        tl[2].error.as_deref().is_some_and(|e| e.contains("esxi-4")),
        "{:?}",
        tl[2]
    );
    assert!(tl[4].error.is_some(), "{:?}", tl[4]);
    assert!(
        lab.model.vm("web-1").unwrap().stunned,
        "web-1 waits, stunned on esxi-1"
    );
}

#[test]
fn a_stunned_vm_stays_stunned_through_its_hosts_failure_and_recovery() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::ZERO;
    for a in [
        Action::StunVm { vm: "web-1".into() },
        Action::FailHost {
            host: "esxi-1".into(),
        },
        Action::RecoverHost {
            host: "esxi-1".into(),
        },
    ] {
        lab.request(t, a).unwrap();
    }
    lab.run_until(t);
    assert!(lab.timeline().iter().all(|e| e.took_effect_at == Some(t)));
    assert_eq!(lab.hosts()[0].vms[0], "web-1 (stunned)");
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 2), 0, "still stunned");
    let now = lab.sim.now();
    lab.request(
        now,
        Action::ResumeVm {
            vm: "web-1".into(),
            host: "esxi-1".into(),
        },
    )
    .unwrap();
    lab.run_until(now + lab.topo.timing.vmotion_stun);
    assert_eq!(ping(&mut lab, "ec2-1", WEB_1, 2), 2);
}

#[test]
fn the_local_route_and_a_prefix_lists_cidrs_take_no_route_of_their_own() {
    let mut lab = Lab::build(&topo(), 1);
    let t = Instant::ZERO;
    let s3: ipnet::Ipv4Net = "198.51.100.0/24".parse().unwrap();
    let vpc = lab.topo.vpc.cidr;
    lab.request(
        t,
        Action::CreateRoute {
            dest: s3,
            eni: "eni-2".into(),
        },
    )
    .unwrap();
    lab.request(t, Action::DeleteRoute { dest: vpc }).unwrap();
    lab.run_until(t + lab.topo.timing.replace_route);
    let tl = lab.timeline();
    assert!(
        tl[0].error.as_deref().is_some_and(|e| e.contains("pl-s3")),
        "{:?}",
        tl[0]
    );
    assert!(
        tl[1].error.as_deref().is_some_and(|e| e.contains("local")),
        "{:?}",
        tl[1]
    );
    // S3 still answers through its endpoint.
    let s3_ip = lab.resolve("s3").unwrap();
    assert_eq!(ping(&mut lab, "ec2-1", s3_ip, 1), 1);
}

#[test]
fn an_edge_failover_by_hand_costs_each_direction_what_its_calls_imply() {
    let mut t = topo();
    edge_failover_outages(&t);
    // Change one timing: exactly the outages that depend on it move.
    t.timing.replace_route = Duration::from_secs(3);
    t.timing.promotion = Duration::from_millis(300);
    edge_failover_outages(&t);
}

/// edge-1 stops; edge-2 is made active, the uplink IP moved to eni-3 and the routes
/// re-targeted, each after its latency. Probes every 1 ms each way between web-1 and ec2-1
/// measure each direction's outage, which must be what the calls imply.
fn edge_failover_outages(topo: &vmcnet_topo::Topology) {
    use vmcnet::node::endpoint::probe;
    let mut lab = Lab::build(topo, 1);
    let interval = Duration::from_millis(1);
    let (start, t) = (Instant::from_millis(500), Instant::from_millis(1_000));
    let count = 4_000;
    let port = 7000;
    let (web, ec2) = (lab.id("web-1").unwrap(), lab.id("ec2-1").unwrap());
    let mut streams = Vec::new();
    for (from, to, dst) in [(web, ec2, EC2_1), (ec2, web, WEB_1)] {
        lab.sim.get_mut::<Endpoint>(to).unwrap().probe_listen(port);
        let app = lab
            .sim
            .get_mut::<Endpoint>(from)
            .unwrap()
            .probe(start, dst, port, count, interval);
        streams.push((from, to, app));
    }
    // edge-1 dies; what NSX and AWS then do, each after its latency.
    lab.request(
        t,
        Action::StopEdge {
            edge: "edge-1".into(),
        },
    )
    .unwrap();
    lab.request(
        t,
        Action::SetActiveEdge {
            edge: "edge-2".into(),
        },
    )
    .unwrap();
    lab.request(
        t,
        Action::AssignSecondaryIp {
            eni: "eni-3".into(),
            ip: UPLINK_IP,
        },
    )
    .unwrap();
    for seg in ["192.168.1.0/24", "192.168.2.0/24", "10.2.224.0/20"] {
        let dest = seg.parse().unwrap();
        lab.request(
            t,
            Action::ReplaceRoute {
                dest,
                eni: "eni-3".into(),
            },
        )
        .unwrap();
    }
    lab.run_until(start + interval * count + Duration::from_secs(1));
    let timing = lab.topo.timing.clone();
    let expected = [
        // SDDC -> VPC: the distributed router hands web-1's probes to the active Edge, whichever
        // it is, and any ENI carries them out: back when edge-2 is active.
        timing.promotion,
        // VPC -> SDDC: the routes must point at eni-3 and eni-3 hold the uplink address, with
        // edge-2 active.
        timing
            .promotion
            .max(timing.move_secondary_ip)
            .max(timing.replace_route),
    ];
    for ((from, to, app), want) in streams.into_iter().zip(expected) {
        let sender = lab.sim.get::<Endpoint>(from).unwrap();
        let AppReport::Probe(r) = sender.app(app).clone() else {
            panic!("probe")
        };
        let arrivals = lab
            .sim
            .get::<Endpoint>(to)
            .unwrap()
            .probe_arrivals(port)
            .unwrap();
        let l = probe::loss(&r, arrivals);
        assert_eq!(l.sent, count);
        assert_eq!(l.first_lost_sent, Some(t), "{l:?}");
        assert!(
            l.outage.abs_diff(want) <= interval,
            "outage {:?}, expected {want:?} within {interval:?}",
            l.outage
        );
        assert_eq!(
            l.lost as u128,
            l.outage.as_nanos() / interval.as_nanos(),
            "one outage"
        );
    }
}

/// Probes every `interval` each way between web-1 and ec2-1 from `start` for `span`; edge-1
/// is moved to esxi-3 by vMotion at `t`, the reconciler following with `strategy`. The outage
/// of each direction: [SDDC -> VPC, VPC -> SDDC].
fn edge_vmotion_outages(
    strategy: vmcnet::control::action::Strategy,
    interval: Duration,
    span: Duration,
) -> (Lab, [Duration; 2]) {
    use vmcnet::node::endpoint::probe;
    let mut lab = Lab::build(&topo(), 1);
    lab.set_reconciler(Some(strategy));
    let (start, t) = (Instant::from_millis(500), Instant::from_millis(1_000));
    let count = (span.as_nanos() / interval.as_nanos()) as u32;
    let port = 7000;
    let (web, ec2) = (lab.id("web-1").unwrap(), lab.id("ec2-1").unwrap());
    let mut streams = Vec::new();
    for (from, to, dst) in [(web, ec2, EC2_1), (ec2, web, WEB_1)] {
        lab.sim.get_mut::<Endpoint>(to).unwrap().probe_listen(port);
        let ep = lab.sim.get_mut::<Endpoint>(from).unwrap();
        streams.push((from, to, ep.probe(start, dst, port, count, interval)));
    }
    for a in Action::vmotion("edge-1", "esxi-3") {
        lab.request(t, a).unwrap();
    }
    lab.run_until(start + interval * count + Duration::from_secs(1));
    let mut out = [Duration::ZERO; 2];
    for (k, (from, to, app)) in streams.into_iter().enumerate() {
        let sender = lab.sim.get::<Endpoint>(from).unwrap();
        let AppReport::Probe(r) = sender.app(app).clone() else {
            panic!("probe")
        };
        let arrivals = lab
            .sim
            .get::<Endpoint>(to)
            .unwrap()
            .probe_arrivals(port)
            .unwrap();
        let l = probe::loss(&r, arrivals);
        assert_eq!(l.first_lost_sent, Some(t), "direction {k}: {l:?}");
        out[k] = l.outage;
    }
    (lab, out)
}

#[test]
fn an_edge_vmotion_costs_the_stun_one_way_and_the_reconcilers_calls_the_other() {
    use vmcnet::control::action::Strategy;
    let interval = Duration::from_millis(1);
    let (lab, [out, back]) =
        edge_vmotion_outages(Strategy::IpMove, interval, Duration::from_secs(10));
    let t = lab.topo.timing.clone();
    // SDDC -> VPC: the Edge forwards nothing while stunned; on esxi-3 it leaves by eni-3 at once.
    assert!(out.abs_diff(t.vmotion_stun) <= interval, "{out:?}");
    // VPC -> SDDC: stun, the reconciler's notice, then the IP move and the route replacements.
    let want = t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route);
    assert!(back.abs_diff(want) <= interval, "{back:?} vs {want:?}");
    // Afterwards the uplink address and every segment's route are on esxi-3's ENI.
    let holder = lab.model.holder_of(lab.model.uplink_ip).unwrap().id.clone();
    assert_eq!(holder, "eni-3");
    for s in &lab.model.segments {
        let r = lab.model.route(s.cidr).unwrap();
        assert_eq!(
            r.target,
            vmcnet::node::vpc_router::VpcTarget::Eni("eni-3".into())
        );
    }
}

#[test]
fn an_edge_vmotion_with_eni_reattach_costs_its_reattach_latency() {
    use vmcnet::control::action::Strategy;
    let interval = Duration::from_millis(10);
    let t = topo().timing;
    let span = t.vmotion_stun + t.control_plane_notice + t.eni_reattach + Duration::from_secs(3);
    let (lab, [out, back]) = edge_vmotion_outages(Strategy::EniReattach, interval, span);
    // VPC -> SDDC: the routes stay on eni-2, which is detached and attached again to esxi-3.
    let want_back = t.vmotion_stun + t.control_plane_notice + t.eni_reattach;
    assert!(
        back.abs_diff(want_back) <= interval,
        "{back:?} vs {want_back:?}"
    );
    // SDDC -> VPC: the stun, then esxi-3 has no ENI from when its own is detached to make way
    // until eni-2 is attached.
    let want_out = t.vmotion_stun.max(t.eni_reattach / 2);
    assert!(
        out.abs_diff(want_out) <= interval,
        "{out:?} vs {want_out:?}"
    );
    assert_eq!(
        lab.model.eni_of_host("esxi-3").map(|e| e.id.as_str()),
        Some("eni-2")
    );
    // The design's reason: moving the IP is this many times faster for traffic into the SDDC.
    let ip_move =
        t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route);
    assert!(want_back.as_secs_f64() / ip_move.as_secs_f64() > 4.0);
}

#[test]
fn an_edge_made_active_announces_each_of_its_addresses_with_a_gratuitous_arp() {
    use common::capture_in_memory;
    use vmcnet::node::edge::Edge;
    use vmcnet::wire::arp::Arp;
    use vmcnet_topo::{edge_iface_end, link_name, EDGE_UPLINK_IFACE};
    let t = topo();
    let mut lab = Lab::build(&t, 1);
    let standby = &t.sddc.edges.standby;
    let end = |iface: &str| link_name(&edge_iface_end(&standby.name, iface), &standby.host);
    let link = capture_in_memory(&mut lab.sim, &end(EDGE_UPLINK_IFACE));
    let segment = capture_in_memory(&mut lab.sim, &end(&t.sddc.segments[0].name));
    let at = Instant::from_millis(1_000);
    lab.request(
        at,
        Action::SetActiveEdge {
            edge: standby.name.clone(),
        },
    )
    .unwrap();
    lab.run_until(at + Duration::from_secs(1));
    let took = lab
        .timeline()
        .iter()
        .find(|e| matches!(e.action, Action::SetActiveEdge { .. }))
        .and_then(|e| e.took_effect_at)
        .expect("the promotion took effect");
    assert_eq!(took, at + t.timing.promotion);
    let mem = common::take_memory_capture(&mut lab.sim, link);
    let garps: Vec<_> = mem
        .frames
        .iter()
        .filter_map(|(when, f)| Some((*when, Arp::parse(f)?)))
        .filter(|(_, a)| a.sender_ip == a.target_ip)
        .collect();
    assert_eq!(garps.len(), 1, "{garps:?}");
    let (when, a) = garps[0];
    assert_eq!(when, took);
    assert_eq!(a.sender_ip, t.sddc.edges.uplink_ip);
    let edge: &Edge = lab.sim.get(lab.id(&standby.name).unwrap()).unwrap();
    let uplink = &edge.ifaces()[edge.uplink().unwrap()];
    assert_eq!(a.sender_mac, uplink.mac);
    // One for each of its interfaces but the HA one, which BFD alone uses.
    let addressed = edge.ifaces().iter().filter(|i| i.role != IfaceRole::Ha);
    assert_eq!(edge.counters.garp_sent, addressed.count() as u64);
    // On a segment, its host's ARP suppression does not answer the announcement either: the
    // link carries the GARP and nothing back.
    let mem = common::take_memory_capture(&mut lab.sim, segment);
    let arps: Vec<Arp> = mem
        .frames
        .iter()
        .filter_map(|(_, f)| Arp::parse(f))
        .collect();
    assert_eq!(arps.len(), 1, "{arps:?}");
    assert_eq!(arps[0].sender_ip, arps[0].target_ip);
    // The VPC router heard the uplink's, and neither learned from it nor answered it.
    let router = lab.sim.node(lab.id("vpc-router").unwrap());
    let ignored = router
        .counters()
        .into_iter()
        .find(|(name, _)| *name == "rx_ignored_gratuitous_arp")
        .map(|(_, n)| n);
    assert_eq!(ignored, Some(1));
}
