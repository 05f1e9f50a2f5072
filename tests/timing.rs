//! Links take time: round-trip times, transfer times and queue drops in the sim, each compared
//! with what the topology's link parameters imply.

mod common;
use common::{default_topo, root};

use std::time::Duration;

use vmcnet::control::Lab;
use vmcnet::drill::{run_drill, DrillFile, DrillReport, RunOptions};
use vmcnet::node::endpoint::AppReport;
use vmcnet::wire::geneve;
use vmcnet_topo::{ByteSize, LinkKind, LinkOpt, Topology};

fn drill(src: &str) -> DrillFile {
    DrillFile::parse(src, "test").expect("drill parses")
}

fn run(topo: &Topology, src: &str) -> DrillReport {
    run_drill(topo, &drill(src), &RunOptions::default()).expect("drill runs")
}

/// Ethernet frame of an echo request or reply with the default 56 bytes of data.
const PING_FRAME: usize = 14 + 20 + 8 + 56;

/// The time a frame of `len` bytes (as a VM sends it) takes along `links` on idle links: each
/// link's delay plus its serialization, the Geneve headers added on the underlay.
fn one_way(topo: &Topology, lab: &Lab, links: &[&str], len: usize) -> Duration {
    let plan = topo.link_plan();
    links
        .iter()
        .map(|name| {
            let link = lab
                .sim
                .links()
                .iter()
                .find(|l| l.name == *name)
                .unwrap_or_else(|| panic!("no link {name}"));
            let kind = plan.iter().find(|p| p.name == *name).unwrap().kind;
            let on_wire = if kind == LinkKind::Underlay {
                len + geneve::OVERHEAD
            } else {
                len
            };
            link.spec.one_way(on_wire)
        })
        .sum()
}

/// web-1 on esxi-1 to ec2-1: the overlay to the Edge on esxi-2, its uplink, eni-2, the VPC router.
const WEB1_TO_EC2: &[&str] = &[
    "web-1--esxi-1",
    "esxi-1--underlay",
    "esxi-2--underlay",
    "edge-1.sddc-cgw-network-1--esxi-2",
    "edge-1.uplink--esxi-2",
    "esxi-2--eni-2",
    "eni-2--vpc-router",
    "eni-ec2-1--vpc-router",
    "ec2-1--eni-ec2-1",
];

fn rtts(r: &DrillReport, step: usize) -> Vec<Duration> {
    match &r.steps[step].app {
        AppReport::Ping(p) => p.rtts.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn smoke_ping_rtts_are_the_sum_of_the_paths_delays_and_serialization_both_ways() {
    let topo = default_topo();
    let lab = Lab::build(&topo, 1);
    let r = run_drill(
        &topo,
        &DrillFile::load(&root().join("scripts/drills/smoke.toml")).unwrap(),
        &RunOptions::default(),
    )
    .unwrap();
    assert!(r.passed, "{r}");
    let vm_ec2 = 2 * one_way(&topo, &lab, WEB1_TO_EC2, PING_FRAME);
    // web-1 to vcenter (esxi-1, MGW) goes through the Edge on esxi-2 and back.
    let via_edge = |seg: &str, to_host: &str, vm: &str| {
        let edge_in = "edge-1.sddc-cgw-network-1--esxi-2".to_string();
        let edge_out = format!("edge-1.{seg}--esxi-2");
        let to_host_underlay = format!("{to_host}--underlay");
        let vm_link = format!("{vm}--{to_host}");
        let links = [
            "web-1--esxi-1",
            "esxi-1--underlay",
            "esxi-2--underlay",
            &edge_in,
            &edge_out,
            "esxi-2--underlay",
            &to_host_underlay,
            &vm_link,
        ];
        2 * one_way(&topo, &lab, &links, PING_FRAME)
    };
    // web-1 to app-1 (CGW to CGW) is routed on esxi-1 by the distributed router: straight
    // across the overlay to esxi-3, and back the same way.
    let routed_on_host = 2 * one_way(
        &topo,
        &lab,
        &[
            "web-1--esxi-1",
            "esxi-1--underlay",
            "esxi-3--underlay",
            "app-1--esxi-3",
        ],
        PING_FRAME,
    );
    let want = [
        (0, vm_ec2),
        (1, vm_ec2),
        (2, routed_on_host),
        (3, via_edge("sddc-mgmt-infra", "esxi-1", "vcenter")),
    ];
    for (step, rtt) in want {
        let got = rtts(&r, step);
        assert_eq!(got.len(), 3, "step {step}");
        // The first request may wait for a router's ARP; every later one takes the path alone.
        assert!(got[0] >= rtt, "step {step}: {got:?} vs {rtt:?}");
        assert_eq!(&got[1..], &[rtt, rtt], "step {step}");
    }
    assert!(
        vm_ec2 > Duration::from_micros(100),
        "links take time: {vm_ec2:?}"
    );
}

#[test]
fn a_bulk_transfer_takes_at_least_bytes_over_the_bottleneck_rate_and_arrives_intact() {
    let topo = default_topo();
    let bytes = 10u64 << 20;
    let r = run(
        &topo,
        &format!(
            "name = \"bulk\"\n[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nbytes = {bytes}\n"
        ),
    );
    assert!(r.passed, "{r}");
    let bottleneck = LinkKind::ALL
        .iter()
        .filter(|k| !matches!(k, LinkKind::S3))
        .map(|k| topo.links.kind_spec(*k).rate.bits_per_sec())
        .min()
        .unwrap();
    let floor = Duration::from_secs_f64(bytes as f64 * 8.0 / bottleneck as f64);
    let AppReport::TcpSend(t) = &r.steps[0].app else {
        panic!("tcp");
    };
    let took = t.finished.unwrap() - t.started;
    assert!(took >= floor, "{took:?} < {floor:?}");
    let c = r.steps[0].server_connection.as_ref().unwrap();
    assert_eq!((c.bytes, c.pattern_ok), (bytes, true));
    assert_eq!(t.retransmits, 0, "no queue overflows on default links");
}

#[test]
fn a_small_queue_drops_yet_tcp_completes_by_retransmitting() {
    let mut topo = default_topo();
    // Where the VPC router's 25 Gbit/s meets the instance's 5 Gbit/s: a queue of ten frames.
    let bottleneck = "eni-ec2-1--vpc-router";
    topo.links.overrides.insert(
        bottleneck.into(),
        LinkOpt {
            queue: Some(ByteSize(15_000)),
            ..LinkOpt::default()
        },
    );
    topo.validate().unwrap();
    let bytes = 4u64 << 20;
    let src = format!(
        "name = \"small-queue\"\n[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nbytes = {bytes}\n"
    );
    let r = run(&topo, &src);
    assert!(r.passed, "{r}");
    let AppReport::TcpSend(t) = &r.steps[0].app else {
        panic!("tcp");
    };
    let c = r.steps[0].server_connection.as_ref().unwrap();
    assert_eq!((c.bytes, c.pattern_ok), (bytes, true));
    assert!(t.retransmits > 0, "{r}");
    let dropped: u64 = r
        .drops
        .iter()
        .filter(|d| {
            d.node == "link vpc-router -> eni-ec2-1" && d.counter == "tx_dropped_queue_full"
        })
        .map(|d| d.count)
        .sum();
    assert!(dropped > 0, "{:?}", r.drops);
    // Every drop was at the small queue.
    assert!(r
        .drops
        .iter()
        .filter(|d| d.counter == "tx_dropped_queue_full")
        .all(|d| d.node == "link vpc-router -> eni-ec2-1"));
}

#[test]
fn every_link_of_the_lab_is_in_the_plan_with_its_kinds_parameters() {
    for path in ["topo/default.toml", "topo/examples/two-clusters.toml"] {
        let topo = vmcnet_topo::load(&root().join(path)).unwrap();
        let lab = Lab::build(&topo, 1);
        let plan = topo.link_plan();
        let built: Vec<_> = lab.sim.links().iter().map(|l| l.name.clone()).collect();
        let planned: Vec<_> = plan.iter().map(|p| p.name.clone()).collect();
        assert_eq!(built, planned, "{path}");
        for (l, p) in lab.sim.links().iter().zip(&plan) {
            assert_eq!(l.spec, topo.links.kind_spec(p.kind), "{}", l.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Long runs: neighbour entries are refreshed and aged as real stacks do.
// ---------------------------------------------------------------------------------------------

/// The number of whole `interval`s in `d`, rounded up.
fn intervals_in(d: Duration, interval: Duration) -> u32 {
    d.as_nanos().div_ceil(interval.as_nanos()) as u32
}

#[test]
fn a_ping_every_61_s_for_ten_minutes_loses_nothing() {
    let topo = default_topo();
    // Past smoltcp's 60 s neighbour lifetime between any two requests.
    let interval = vmcnet::node::endpoint::NEIGHBOR_LIFETIME + Duration::from_secs(1);
    let count = intervals_in(Duration::from_secs(600), interval) + 1;
    let item = |from: &str, to: &str| {
        format!(
            "[[traffic]]\nkind = \"ping\"\nfrom = \"{from}\"\nto = \"{to}\"\ncount = {count}\ninterval = \"{}s\"\n",
            interval.as_secs()
        )
    };
    let src = format!(
        "name = \"every-61s\"\n{}{}{}",
        item("web-1", "ec2-1"),
        item("ec2-1", "web-1"),
        item("web-1", "app-1")
    );
    let r = run(&topo, &src);
    assert!(r.passed, "{r}");
    for s in &r.steps {
        let AppReport::Ping(p) = &s.app else {
            panic!("ping")
        };
        assert_eq!(p.received, count);
    }
    assert!(r.virtual_time_s >= 3.0 * 600.0, "{}", r.virtual_time_s);
}

#[test]
fn an_idle_hour_then_the_first_ping_each_way_is_answered() {
    let topo = default_topo();
    let mut lab = Lab::build(&topo, 1);
    let hour = vmcnet::time::Instant::from_millis(3_600_000);
    lab.run_until(hour);
    let web = lab.id("web-1").unwrap();
    let ec2 = lab.id("ec2-1").unwrap();
    let (web_ip, ec2_ip) = (lab.resolve("web-1").unwrap(), lab.resolve("ec2-1").unwrap());
    let a = lab
        .sim
        .get_mut::<vmcnet::node::endpoint::Endpoint>(ec2)
        .unwrap()
        .ping(hour, web_ip, 1, Duration::from_secs(1), 56);
    let done = |lab: &Lab, id, app| {
        lab.sim
            .get::<vmcnet::node::endpoint::Endpoint>(id)
            .unwrap()
            .app(app)
            .done()
    };
    lab.run_until(hour + Duration::from_secs(10));
    assert!(done(&lab, ec2, a));
    let now = lab.sim.now();
    let b = lab
        .sim
        .get_mut::<vmcnet::node::endpoint::Endpoint>(web)
        .unwrap()
        .ping(now, ec2_ip, 1, Duration::from_secs(1), 56);
    lab.run_until(hour + Duration::from_secs(20));
    for (id, app) in [(ec2, a), (web, b)] {
        match lab.endpoint(lab.sim.node(id).name()).unwrap().app(app) {
            AppReport::Ping(p) => assert_eq!(p.received, 1, "{p:?}"),
            other => panic!("{other:?}"),
        }
    }
    for name in ["web-1", "ec2-1"] {
        let c = lab.endpoint(name).unwrap().endpoint_counters();
        assert_eq!(c.rx_dropped_neighbor_unresolved, 0, "{name}");
    }
}

#[test]
fn a_spoofed_arp_reply_at_the_edge_heals_within_the_aging_time() {
    use vmcnet::node::arp_cache::REACHABLE;
    use vmcnet::node::edge::Edge;
    use vmcnet::node::endpoint::Endpoint;
    use vmcnet::wire::arp::{Arp, OP_REPLY};
    use vmcnet::wire::MacAddr;

    let topo = default_topo();
    let mut lab = Lab::build(&topo, 1);
    let interval = Duration::from_secs(1);
    let count = 2 * intervals_in(REACHABLE, interval) + 20;
    // EC2 to web-1 crosses the Edge, which resolves web-1 on its segment.
    let ec2 = lab.id("ec2-1").unwrap();
    let web_ip = lab.resolve("web-1").unwrap();
    let ping = lab.sim.get_mut::<Endpoint>(ec2).unwrap().ping(
        vmcnet::time::Instant::ZERO,
        web_ip,
        count,
        interval,
        56,
    );
    // Ten answered pings, then a forged reply tells edge-1 that web-1 is at another MAC.
    lab.run_until(vmcnet::time::Instant::from_millis(10_500));
    let edge = lab.id("edge-1").unwrap();
    let (port, iface) = lab
        .sim
        .get::<Edge>(edge)
        .unwrap()
        .ifaces()
        .iter()
        .enumerate()
        .find(|(_, i)| i.net.contains(&web_ip))
        .map(|(p, i)| (p as u16, i.clone()))
        .unwrap();
    let spoof = Arp {
        op: OP_REPLY,
        sender_mac: MacAddr([0x02, 0x66, 0x66, 0x66, 0x66, 0x66]),
        sender_ip: web_ip,
        target_mac: iface.mac,
        target_ip: iface.ip,
    };
    lab.sim.inject(edge, port, spoof.to_frame());
    let deadline =
        vmcnet::time::Instant::from_millis(10_500) + interval * count + Duration::from_secs(10);
    lab.run_while(deadline, |sim| {
        sim.get::<Endpoint>(ec2).unwrap().app(ping).done()
    });
    let AppReport::Ping(p) = lab.endpoint("ec2-1").unwrap().app(ping) else {
        panic!("ping")
    };
    let lost = count - p.received;
    assert!(lost >= 1, "the spoof took effect: {p:?}");
    assert!(
        lost <= intervals_in(REACHABLE, interval) + 1,
        "healed within {REACHABLE:?}: lost {lost}"
    );
}

#[test]
fn a_jumbo_ping_into_a_1500_byte_segment_is_answered_fragmentation_needed_by_the_edge() {
    let mut topo = default_topo();
    // AWS's own default for an instance in a VPC.
    topo.links.ec2.mtu = Some(9001);
    topo.validate().unwrap();
    let segment_mtu = topo.links.kind_spec(LinkKind::Vnic).mtu;
    let r = run(
        &topo,
        "name = \"jumbo\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"ec2-1\"\nto = \"web-1\"\ncount = 2\nsize = 3000\nexpect = { received = 0 }\n",
    );
    assert!(r.passed, "{r}");
    let AppReport::Ping(p) = &r.steps[0].app else {
        panic!("ping")
    };
    assert_eq!(p.errors.len(), 2, "{p:?}");
    for e in &p.errors {
        assert_eq!((e.icmp_type, e.code), (3, 4), "fragmentation needed");
        assert_eq!(e.src, topo.sddc.edges.uplink_ip);
    }
    // Just fits: a 1500-byte packet crosses whole.
    let fits = segment_mtu as usize - 28;
    let r = run(
        &topo,
        &format!("name = \"fits\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"ec2-1\"\nto = \"web-1\"\ncount = 2\nsize = {fits}\n"),
    );
    assert!(r.passed, "{r}");
}
