//! Forwarding rate of the sim runtime on the full path between a VM and an EC2 instance of the
//! default lab, both ways, for 64-byte and 1500-byte frames, next to baselines measured in the
//! same run:
//!
//! - `direct`: the same number of hops as plain function calls that pass a frame along (the
//!   floor: what copying a frame in and moving it through nine calls costs);
//! - `sim-trivial`: nine do-nothing nodes in the sim runtime (what the runtime itself costs).
//!
//! VM → EC2: web-1's vNIC on esxi-1 → Geneve → underlay → esxi-2 → edge-1 (route, TTL) → esxi-2
//! uplink → eni-2 → VPC router → eni-ec2-1 → a counting sink in place of ec2-1. EC2 → VM: the
//! same hops back, from eni-ec2-1 to a sink in place of web-1.
//!
//! Run with `make bench` (or `cargo bench -p vmcnet --bench forward`). Set
//! `VMCNET_BENCH_SECS` to change the time per measurement (default 2; the measurements of a
//! frame size take turns in ten rounds, and each reports its best round). For a profile that
//! counts instructions, `VMCNET_BENCH_FRAMES=N` sends exactly N 64-byte frames down the VM → EC2
//! path (`VMCNET_BENCH_WAY=ec2-to-vm`: the other way) and nothing else:
//! `VMCNET_BENCH_FRAMES=100000 valgrind --tool=callgrind target/release/deps/forward-*`.
//!
//! Bulk TCP: 10 MiB from web-1 to ec2-1, over the default links and over links that take no
//! time. `VMCNET_BENCH_BULK_MIB=N` runs one transfer of N MiB and nothing else
//! (`VMCNET_BENCH_LINKS=instant`: over links that take no time); instructions per payload
//! byte are the difference of two sizes' counts under callgrind, divided by the bytes between.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant as WallClock};

use bytes::BytesMut;
use vmcnet::control::{Lab, VPC_ROUTER};
use vmcnet::node::edge::Edge;
use vmcnet::node::endpoint::{AppReport, Endpoint};
use vmcnet::node::eni::{self, Eni};
use vmcnet::node::host::Host;
use vmcnet::node::vpc_router::VpcRouter;
use vmcnet::node::{Counters, Node, Outbox, Port};
use vmcnet::runtime::sim::Sim;
use vmcnet::time::Instant;
use vmcnet::wire::ipv4::{put_headers, Ipv4Params, PROTO_UDP};
use vmcnet::wire::{Frame, MacAddr};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;
/// Node calls a frame takes on the full path.
const HOPS: usize = 9;

/// Counts what arrives.
struct Sink {
    frames: u64,
    bytes: u64,
}

impl Node for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    fn kind(&self) -> &'static str {
        "sink"
    }
    fn handle(&mut self, _now: Instant, _port: Port, frame: Frame, _out: &mut Outbox) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
    }
    fn counters(&self) -> Counters {
        vec![("frames", self.frames)]
    }
}

/// Passes every frame from port 0 to port 1, touching its first byte.
struct Relay;

impl Node for Relay {
    fn name(&self) -> &str {
        "relay"
    }
    fn kind(&self) -> &'static str {
        "relay"
    }
    fn handle(&mut self, _now: Instant, _port: Port, frame: Frame, out: &mut Outbox) {
        black_box(frame[0]);
        out.send(1, frame);
    }
    fn counters(&self) -> Counters {
        Vec::new()
    }
}

const WEB_1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const EC2_1: Ipv4Addr = Ipv4Addr::new(172, 31, 16, 10);

/// A UDP frame of `len` bytes from `src` to `dst`.
fn udp_frame(
    (dst_mac, src_mac): (MacAddr, MacAddr),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    len: usize,
) -> Frame {
    let payload = len - 14 - 20 - 8;
    let mut b = BytesMut::with_capacity(len);
    let p = Ipv4Params {
        src,
        dst,
        protocol: PROTO_UDP,
        ttl: 64,
        ident: 1,
    };
    put_headers(&mut b, dst_mac, src_mac, &p, 8 + payload);
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&9u16.to_be_bytes());
    b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.resize(len, 0xab);
    Frame::from(b)
}

fn secs() -> Duration {
    let s = std::env::var("VMCNET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

/// Rounds per measurement. The three measurements of a frame size take turns, round by round,
/// and each reports its best round: this machine is shared, and a disturbance then costs each
/// measurement one round rather than one of them all its rounds.
const ROUNDS: u32 = 10;

/// A measurement: sends one batch and returns the frames it sent.
type Batch<'a> = Box<dyn FnMut() -> u64 + 'a>;

/// Run each batch for `secs` in [`ROUNDS`] interleaved rounds; returns each one's best rate, in
/// frames per second.
fn measure(batches: &mut [Batch<'_>]) -> Vec<f64> {
    let round = secs() / ROUNDS;
    for b in batches.iter_mut() {
        for _ in 0..1000 {
            b();
        }
    }
    let mut best = vec![0f64; batches.len()];
    for _ in 0..ROUNDS {
        for (b, best) in batches.iter_mut().zip(best.iter_mut()) {
            let start = WallClock::now();
            let mut frames = 0u64;
            while start.elapsed() < round {
                for _ in 0..64 {
                    frames += b();
                }
            }
            *best = best.max(frames as f64 / start.elapsed().as_secs_f64());
        }
    }
    best
}

#[inline(never)]
fn hop(frame: Frame) -> Frame {
    black_box(frame[0]);
    frame
}

fn direct(template: &Frame) -> Batch<'_> {
    Box::new(move || {
        for _ in 0..BATCH {
            let mut f = template.clone();
            for _ in 0..HOPS {
                f = black_box(hop(f));
            }
            black_box(f.len());
        }
        BATCH as u64
    })
}

fn sim_trivial(template: &Frame) -> Batch<'_> {
    let mut sim = Sim::new();
    let relays: Vec<_> = (0..HOPS - 1)
        .map(|_| sim.add_node(Box::new(Relay)))
        .collect();
    let sink = sim.add_node(Box::new(Sink {
        frames: 0,
        bytes: 0,
    }));
    for w in relays.windows(2) {
        sim.connect("r", (w[0], 1), (w[1], 0));
    }
    sim.connect("s", (*relays.last().unwrap(), 1), (sink, 0));
    Box::new(move || {
        for _ in 0..BATCH {
            sim.inject(relays[0], 0, template.clone());
        }
        sim.settle();
        BATCH as u64
    })
}

/// Which way a frame crosses the full path.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// From web-1's vNIC on esxi-1 to ec2-1's ENI.
    VmToEc2,
    /// From ec2-1's ENI to web-1's vNIC on esxi-1.
    Ec2ToVm,
}

/// The default lab with ARP and MAC tables warm, the far end of `way` replaced by a sink.
/// Returns the lab, where frames go in, and a frame to send.
fn full_path_lab(way: Way, len: usize) -> (Lab, (usize, Port), Frame) {
    let mut topo = vmcnet_topo::parse(vmcnet_topo::DEFAULT_TOPOLOGY, "default").unwrap();
    // Links that take no time: this measures the forwarding path, on the sim's fast path.
    topo.links = vmcnet_topo::Links::instant();
    let mut lab = Lab::build(&topo, 1);
    // Warm ARP caches and MAC tables with a real ping.
    let web = lab.id("web-1").unwrap();
    let app = lab.sim.get_mut::<Endpoint>(web).unwrap().ping(
        Instant::ZERO,
        EC2_1,
        1,
        Duration::from_millis(10),
        56,
    );
    lab.run_until(Instant::ZERO + Duration::from_secs(2));
    match lab.endpoint("web-1").unwrap().app(app) {
        AppReport::Ping(p) => assert_eq!(p.received, 1, "warm-up ping"),
        _ => unreachable!(),
    }
    let web_mac = lab.endpoint("web-1").unwrap().config().mac;
    let edge = lab.model.active_edge().unwrap().node;
    let gw_mac = lab.sim.get::<Edge>(edge).unwrap().ifaces()[1].mac;
    let esxi1 = lab.id("esxi-1").unwrap();
    let web_port = lab
        .sim
        .get::<Host>(esxi1)
        .unwrap()
        .vnics()
        .find(|(_, v)| v.name == "web-1")
        .map(|(p, _)| p)
        .unwrap();
    let eni = lab.id("eni-ec2-1").unwrap();
    let ec2_mac = lab.sim.get::<Eni>(eni).unwrap().mac();
    let router_mac = lab
        .sim
        .get::<VpcRouter>(lab.id(VPC_ROUTER).unwrap())
        .unwrap()
        .mac();
    let sink = lab.sim.add_node(Box::new(Sink {
        frames: 0,
        bytes: 0,
    }));
    match way {
        Way::VmToEc2 => {
            lab.sim
                .connect("eni-ec2-1--sink", (eni, eni::INSTANCE), (sink, 0));
            let f = udp_frame((gw_mac, web_mac), (WEB_1, EC2_1), len);
            (lab, (esxi1, web_port), f)
        }
        Way::Ec2ToVm => {
            lab.sim
                .connect("esxi-1--sink", (esxi1, web_port), (sink, 0));
            let f = udp_frame((router_mac, ec2_mac), (EC2_1, WEB_1), len);
            (lab, (eni, eni::INSTANCE), f)
        }
    }
}

/// The full path; every frame sent must reach the sink, which the batch checks as it goes.
fn full_path(way: Way, len: usize) -> Batch<'static> {
    let (mut lab, (node, port), template) = full_path_lab(way, len);
    let sink = lab.sim.node_id("sink").unwrap();
    let mut sent = 0u64;
    Box::new(move || {
        for _ in 0..BATCH {
            lab.sim.inject(node, port, template.clone());
        }
        lab.sim.settle();
        sent += BATCH as u64;
        let arrived = lab.sim.get::<Sink>(sink).unwrap().frames;
        assert_eq!(arrived, sent, "every frame reached the sink");
        BATCH as u64
    })
}

/// Exactly `n` 64-byte frames down the full path, VM to EC2 (or, with
/// `VMCNET_BENCH_WAY=ec2-to-vm`, EC2 to VM), for instruction counting.
fn fixed_work(n: u64) {
    let way = match std::env::var("VMCNET_BENCH_WAY").as_deref() {
        Ok("ec2-to-vm") => Way::Ec2ToVm,
        _ => Way::VmToEc2,
    };
    let (mut lab, (node, port), template) = full_path_lab(way, 64);
    let sink = lab.sim.node_id("sink").unwrap();
    for _ in 0..n.div_ceil(BATCH as u64) {
        for _ in 0..BATCH {
            lab.sim.inject(node, port, template.clone());
        }
        lab.sim.settle();
    }
    println!(
        "{} frames reached the sink",
        lab.sim.get::<Sink>(sink).unwrap().frames
    );
}

fn main() {
    if let Some(n) = std::env::var("VMCNET_BENCH_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return fixed_work(n);
    }
    if let Ok(mib) = std::env::var("VMCNET_BENCH_BULK_MIB") {
        let mib: u64 = mib
            .parse()
            .expect("VMCNET_BENCH_BULK_MIB: a whole number of MiB");
        let links = match std::env::var("VMCNET_BENCH_LINKS").as_deref() {
            Ok("instant") => BulkLinks::Instant,
            Ok("default") | Err(_) => BulkLinks::Default,
            Ok(other) => panic!("VMCNET_BENCH_LINKS: `default` or `instant`, not `{other}`"),
        };
        bulk_transfer(links, mib << 20);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run briefly then.
    if !std::env::args().any(|a| a == "--bench") {
        std::env::set_var("VMCNET_BENCH_SECS", "0.05");
    }
    println!("vmcnet forwarding bench: {HOPS} node calls a frame, batches of {BATCH}, one thread");
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "", "Mpps", "Gbit/s", "vs direct"
    );
    for len in [64usize, 1500] {
        let template = udp_frame(
            (MacAddr::local(1, 1), MacAddr::local(1, 2)),
            (WEB_1, EC2_1),
            len,
        );
        let rates = measure(&mut [
            direct(&template),
            sim_trivial(&template),
            full_path(Way::VmToEc2, len),
            full_path(Way::Ec2ToVm, len),
        ]);
        let d = rates[0];
        let gbps = |pps: f64| pps * len as f64 * 8.0 / 1e9;
        for (what, rate) in [
            ("direct calls", d),
            ("sim, trivial nodes", rates[1]),
            ("sim, full VM -> EC2 path", rates[2]),
            ("sim, full EC2 -> VM path", rates[3]),
        ] {
            println!(
                "{:<34} {:>10.2} {:>10.2} {:>12.3}",
                format!("{what}, {len} B"),
                rate / 1e6,
                gbps(rate),
                rate / d
            );
        }
    }
    println!("target: >= 5 Mpps for 64 B frames on the full VM -> EC2 path");
    bulk_tcp();
    scale(20, 15, 3_000);
    scale(20, 15, 10_000);
    println!(
        "targets: 3,000 VMs: 15 pings carry <= 20,000 frames; 10,000 VMs: build < 1 s, \
         peak memory < 512 MiB"
    );
}

/// A 20-cluster SDDC: build the lab, then 15 pings from vm-1 to ec2-1; the wall time of the
/// build, the frames the lab carried in all (every VM's link-up ARP included) and the
/// process's peak memory.
fn scale(clusters: usize, hosts_per_cluster: usize, vms: usize) {
    let topo = vmcnet_topo::scale::scaled(clusters, hosts_per_cluster, vms);
    let t = WallClock::now();
    let mut lab = Lab::build(&topo, 1);
    let built = t.elapsed();
    let vm = lab.id("vm-1").unwrap();
    let now = lab.sim.now();
    let app = lab.sim.get_mut::<Endpoint>(vm).unwrap().ping(
        now,
        EC2_1,
        15,
        Duration::from_millis(100),
        56,
    );
    let t = WallClock::now();
    lab.run_until(now + Duration::from_secs(3));
    let ran = t.elapsed();
    let received = match lab.endpoint("vm-1").unwrap().app(app) {
        AppReport::Ping(p) => p.received,
        _ => unreachable!(),
    };
    assert_eq!(received, 15, "the pings were answered");
    println!(
        "scale, {} hosts, {vms} VMs: build {:.3} s, 15 pings in {:.3} s wall carried {} frames, \
         peak memory {} MiB",
        topo.hosts().count(),
        built.as_secs_f64(),
        ran.as_secs_f64(),
        lab.sim.counters.delivered,
        peak_memory_kib() / 1024
    );
}

/// The process's peak resident memory (VmHWM), in KiB; 0 where /proc does not say.
fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The links a bulk TCP transfer crosses: the default lab's, or links that take no time.
#[derive(Debug, Clone, Copy)]
enum BulkLinks {
    Default,
    Instant,
}

impl BulkLinks {
    /// The default lab; for [`BulkLinks::Instant`], with every link kind at no delay and an
    /// unlimited rate (MTUs and queues as they are).
    fn topology(self) -> vmcnet_topo::Topology {
        let mut topo = vmcnet_topo::parse(vmcnet_topo::DEFAULT_TOPOLOGY, "default").unwrap();
        if let BulkLinks::Instant = self {
            let l = &mut topo.links;
            for kind in [
                &mut l.vnic,
                &mut l.uplink,
                &mut l.underlay,
                &mut l.eni,
                &mut l.ec2,
                &mut l.s3,
            ] {
                kind.delay = Some(Duration::ZERO);
                kind.rate = Some(vmcnet_topo::Rate::UNLIMITED);
            }
            assert!(l.overrides.is_empty(), "the default lab overrides no link");
        }
        topo
    }
}

/// One bulk transfer of `bytes` from web-1 to ec2-1 over `links`, a real smoltcp sender and a
/// sink that checks every byte; returns the wall time and the virtual seconds it took.
fn bulk_transfer(links: BulkLinks, bytes: u64) -> (Duration, f64) {
    let topo = links.topology();
    let src = format!(
        "name = \"bulk\"\n[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nbytes = {bytes}\n"
    );
    let drill = vmcnet::drill::DrillFile::parse(&src, "bench").unwrap();
    let t = WallClock::now();
    let r = vmcnet::drill::run_drill(&topo, &drill, &Default::default()).unwrap();
    let wall = t.elapsed();
    assert!(r.passed, "{r}");
    (wall, r.steps[0].duration_s)
}

/// Bulk TCP in the sim: 10 MiB from web-1 to ec2-1, over the default lab's links (each hop its
/// own instant on the timeline) and over links that take no time (the fast path: what
/// smoltcp and the nodes cost alone). Payload bits per wall second, best of three.
fn bulk_tcp() {
    const BYTES: u64 = 10 << 20;
    let rounds = if secs() < Duration::from_millis(500) {
        1
    } else {
        3
    };
    for (links, what) in [
        (BulkLinks::Default, "default links"),
        (BulkLinks::Instant, "links taking no time"),
    ] {
        let mut best = Duration::MAX;
        let mut virtual_s = 0.0;
        for _ in 0..rounds {
            let (wall, v) = bulk_transfer(links, BYTES);
            best = best.min(wall);
            virtual_s = v;
        }
        println!(
            "sim, bulk TCP {} MiB web-1 -> ec2-1, {what}: {:.2} payload Gbit/s per wall second \
             ({:.3} s wall, {:.3} s virtual)",
            BYTES >> 20,
            BYTES as f64 * 8.0 / best.as_secs_f64() / 1e9,
            best.as_secs_f64(),
            virtual_s
        );
    }
}
