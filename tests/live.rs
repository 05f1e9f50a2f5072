//! The live lab, end to end: `vmcnet up` on the default topology, real ping, iperf3,
//! traceroute and tcpdump in its namespaces, and nothing left behind afterwards, even after a
//! `kill -9`.
//!
//! These need root and /dev/net/tun; where either is missing, each test says so and returns.
//! Every lab is named `tNNNNN` (unique to this process and test), so its namespaces are
//! `vmc-tNNNNN-*`; every test removes its lab, and checks that nothing of it is left.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vmcnet::control::Lab;

const VMCNET: &str = env!("CARGO_BIN_EXE_vmcnet");

/// Why this machine cannot run a live lab, if it cannot.
fn cannot_run() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for tool in ["ip", "ping", "iperf3", "tcpdump", "traceroute", "tshark"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Some(format!("{tool} is not installed (make deps installs it)"));
        }
    }
    None
}

macro_rules! live_or_skip {
    () => {
        if let Some(why) = cannot_run() {
            eprintln!("SKIPPED: the live lab needs root, /dev/net/tun and its tools: {why}");
            return;
        }
    };
}

/// A unique lab name: `t`, this process's id and a counter, in base 36 (6 characters).
fn lab_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = (std::process::id() as usize % 36usize.pow(3)) * 36 * 36
        + N.fetch_add(1, Ordering::Relaxed) % (36 * 36);
    let mut s = String::new();
    let mut v = n;
    for _ in 0..5 {
        s.insert(0, char::from_digit((v % 36) as u32, 36).unwrap());
        v /= 36;
    }
    format!("t{s}")
}

/// What of lab `name` the kernel and /run/vmcnet still hold.
fn leftovers(name: &str) -> Vec<String> {
    let prefix = format!("vmc-{name}-");
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&ns.stdout).lines() {
        if line.starts_with(&prefix) {
            left.push(format!("netns {line}"));
        }
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        if line.contains(&prefix) {
            left.push(format!("link {line}"));
        }
    }
    for f in ["json", "sock", "lock", "drill"].map(|ext| format!("/run/vmcnet/{name}.{ext}")) {
        if std::path::Path::new(&f).exists() {
            left.push(f);
        }
    }
    left
}

/// A lab served by a `vmcnet up` child; ended and removed on drop, even when a test fails.
struct LiveLab {
    name: String,
    child: Option<Child>,
}

impl LiveLab {
    /// The default topology's lab.
    fn up() -> LiveLab {
        LiveLab::up_with(&common::root().join("topo/default.toml"))
    }

    /// The lab of a topology file.
    fn up_with(topo: &std::path::Path) -> LiveLab {
        LiveLab::start(lab_name(), &[topo.to_str().unwrap()])
    }

    /// `vmcnet up ARGS… --lab NAME`, once it says the lab is up.
    fn start(name: String, args: &[&str]) -> LiveLab {
        let mut child = Command::new(VMCNET)
            .arg("up")
            .args(args)
            .args(["--lab", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vmcnet up");
        let stdout = child.stdout.take().unwrap();
        let lab = LiveLab {
            name,
            child: Some(child),
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = String::new();
        loop {
            match lines.next() {
                Some(Ok(l)) => {
                    seen += &l;
                    seen.push('\n');
                    if l.starts_with(&format!("lab {} is up", lab.name)) {
                        break;
                    }
                }
                _ => panic!("vmcnet up ended before the lab was up:\n{seen}"),
            }
        }
        // Keep reading its stdout, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        // Up means served: a `ctl` sent now finds the control socket.
        let sock = format!("/run/vmcnet/{}.sock", lab.name);
        assert!(std::path::Path::new(&sock).exists(), "{sock} after: {seen}");
        lab
    }

    fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let out = Command::new(VMCNET)
            .args(["exec", &self.name, node, "--"])
            .args(cmd)
            .output()
            .expect("vmcnet exec");
        eprintln!(
            "$ vmcnet exec {} {node} -- {}\n{}{}",
            self.name,
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn exec_ok(&self, node: &str, cmd: &[&str]) -> String {
        let out = self.exec(node, cmd);
        assert!(out.status.success(), "{node}: {cmd:?}: {}", out.status);
        String::from_utf8(out.stdout).unwrap()
    }

    fn spawn(&self, node: &str, cmd: &[&str]) -> Child {
        Command::new(VMCNET)
            .args(["exec", &self.name, node, "--"])
            .args(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vmcnet exec")
    }

    /// Send `sig` to `vmcnet up`, wait for it to end, and return how it ended.
    fn signal(&mut self, sig: nix::sys::signal::Signal) -> ExitStatus {
        let mut child = self.child.take().expect("the lab runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        wait_for(&mut child, Duration::from_secs(20))
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            panic!("pid {} still runs after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for LiveLab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
        // Whatever the test did, nothing of the lab stays.
        let _ = Command::new(VMCNET)
            .args(["down", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The address of a default-topology endpoint, from the topology.
fn ip(name: &str) -> String {
    let lab = Lab::build(&common::default_topo(), 1);
    lab.resolve(name).expect(name).to_string()
}

/// Routers between a VM of a compute segment and an EC2 instance of the default topology: the
/// segment's gateway (the distributed router and Tier-0, one routed hop as NSX shows it); the
/// VPC router does not decrement the TTL, as AWS's does not. A Linux reply leaves with TTL 64.
const ROUTED_HOPS: u8 = 1;
const LINUX_TTL: u8 = 64;

/// The TTLs of the replies in ping's output.
fn reply_ttls(out: &str) -> Vec<u8> {
    out.lines()
        .filter_map(|l| l.split("ttl=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn ping_crosses_both_ways_with_one_routed_hop() {
    live_or_skip!();
    let lab = LiveLab::up();
    let (web, ec2) = (ip("web-1"), ip("ec2-1"));
    let out = lab.exec_ok("web-1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ec2]);
    assert_eq!(reply_ttls(&out), vec![LINUX_TTL - ROUTED_HOPS; 3], "{out}");
    let out = lab.exec_ok("ec2-1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &web]);
    assert_eq!(reply_ttls(&out), vec![LINUX_TTL - ROUTED_HOPS; 3], "{out}");
    // A 3,000-byte ping crosses as fragments and comes back whole.
    let out = lab.exec_ok(
        "web-1",
        &[
            "ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000", &ec2,
        ],
    );
    assert!(out.contains("3008 bytes from"), "{out}");
    assert_eq!(reply_ttls(&out).len(), 2, "{out}");
}

#[test]
fn traceroute_shows_the_gateway_hop_then_the_instance() {
    live_or_skip!();
    let lab = LiveLab::up();
    let ec2 = ip("ec2-1");
    let gw = common::default_topo().sddc.segments[0]
        .gateway_ip()
        .to_string();
    let out = lab.exec_ok(
        "web-1",
        &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", &ec2],
    );
    let hops: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(hops, vec![gw.as_str(), ec2.as_str()], "{out}");
}

#[test]
fn iperf3_moves_data_from_a_vm_to_an_instance() {
    live_or_skip!();
    let lab = LiveLab::up();
    let j = lab.iperf3(2);
    let sent = j["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let received = j["end"]["sum_received"]["bytes"].as_u64().unwrap();
    let bps = j["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    eprintln!(
        "iperf3 web-1 -> ec2-1: {received} B, {:.2} Gbit/s",
        bps / 1e9
    );
    assert!(
        received > 0 && received <= sent,
        "sent {sent}, received {received}"
    );
}

#[test]
fn tcpdump_in_a_vm_sees_the_echo_requests_an_instance_sends_it() {
    live_or_skip!();
    let lab = LiveLab::up();
    let (web, ec2) = (ip("web-1"), ip("ec2-1"));
    let tap = lab_tap(&lab, "web-1");
    let mut dump = lab.spawn(
        "web-1",
        &[
            "tcpdump",
            "-n",
            "-l",
            "-c",
            "3",
            "-i",
            &tap,
            "icmp[icmptype] == icmp-echo",
        ],
    );
    // tcpdump says "listening on" once it captures.
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening on") {
        assert!(
            err.read_line(&mut said).unwrap() > 0,
            "tcpdump ended: {said}"
        );
    }
    lab.exec_ok("ec2-1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &web]);
    let st = wait_for(&mut dump, Duration::from_secs(10));
    assert!(st.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut dump.stdout.take().unwrap(), &mut out).unwrap();
    let requests = out
        .lines()
        .filter(|l| l.contains(&format!("IP {ec2} > {web}: ICMP echo request")))
        .count();
    assert_eq!(requests, 3, "{out}");
}

/// The TAP of an endpoint: the one interface of its namespace besides `lo`.
fn lab_tap(lab: &LiveLab, node: &str) -> String {
    let out = lab.exec_ok(node, &["ip", "-o", "link", "show"]);
    let prefix = format!("vmc-{}-", lab.name);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no TAP in {node}:\n{out}"))
}

#[test]
fn each_namespace_holds_the_topologys_address_mac_mtu_and_route() {
    live_or_skip!();
    let lab = LiveLab::up();
    let t = common::default_topo();
    let built = Lab::build(&t, 1);
    for node in ["web-1", "app-1", "vcenter", "ec2-1", "s3"] {
        let cfg = built.endpoint(node).unwrap().config().clone();
        let tap = lab_tap(&lab, node);
        let link = lab.exec_ok(node, &["ip", "-o", "link", "show", &tap]);
        assert!(link.contains(&format!("mtu {} ", cfg.ip_mtu)), "{link}");
        assert!(link.contains(&cfg.mac.to_string()), "{link}");
        let addr = lab.exec_ok(node, &["ip", "-o", "-4", "addr", "show", &tap]);
        assert!(
            addr.contains(&format!("inet {}/{} ", cfg.ip, cfg.prefix_len)),
            "{addr}"
        );
        let route = lab.exec_ok(node, &["ip", "route", "show", "default"]);
        assert!(
            route.contains(&format!("default via {} ", cfg.gateway)),
            "{route}"
        );
    }
}

#[test]
fn sigterm_ends_the_lab_with_143_and_sigint_with_130_leaving_nothing() {
    live_or_skip!();
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGTERM, 143),
        (nix::sys::signal::Signal::SIGINT, 130),
    ] {
        let mut lab = LiveLab::up();
        assert!(!leftovers(&lab.name).is_empty(), "the lab is up");
        // A process left running in a namespace goes with it.
        let mut sleeper = lab.spawn("web-1", &["sleep", "300"]);
        // Once it is `sleep`, it runs in the namespace.
        let comm = format!("/proc/{}/comm", sleeper.id());
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(sleeper.try_wait().unwrap().is_none(), "exec failed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = lab.signal(sig);
        assert_eq!(st.code(), Some(code), "{sig}");
        let slept = wait_for(&mut sleeper, Duration::from_secs(5));
        assert_eq!(slept.signal(), Some(libc::SIGKILL), "{slept}");
        assert_eq!(leftovers(&lab.name), Vec::<String>::new(), "after {sig}");
    }
}

#[test]
fn down_after_kill_9_removes_everything() {
    live_or_skip!();
    let mut lab = LiveLab::up();
    let st = lab.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(!st.success());
    let left = leftovers(&lab.name);
    assert!(
        left.iter().any(|l| l.starts_with("netns")),
        "a killed lab leaves its namespaces: {left:?}"
    );
    // Its TAPs went with its file descriptors: in each namespace only `lo` is left.
    let namespaces: Vec<String> = left
        .iter()
        .filter_map(|l| l.strip_prefix("netns "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(namespaces.len(), 5, "{left:?}");
    for ns in &namespaces {
        let links = Command::new("ip")
            .args(["-n", ns, "-o", "link"])
            .output()
            .unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
        assert_eq!(names, vec!["lo"], "{ns}: {links}");
    }
    // exec refuses a lab whose process is gone.
    let out = lab.exec("web-1", &["true"]);
    assert_eq!(out.status.code(), Some(2));
    let down = Command::new(VMCNET)
        .args(["down", &lab.name])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());
    // And once more: nothing to remove is an error that says so.
    let again = Command::new(VMCNET)
        .args(["down", &lab.name])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not up"));
}

#[test]
fn up_after_a_killed_owner_takes_the_lab_over() {
    live_or_skip!();
    let mut lab = LiveLab::up();
    lab.signal(nix::sys::signal::Signal::SIGKILL);
    let name = lab.name.clone();
    // A new `up` of the same name removes what the dead one left, then serves it.
    let topo = common::root().join("topo/default.toml");
    let mut child = Command::new(VMCNET)
        .args(["up", topo.to_str().unwrap(), "--lab", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with(&format!("lab {name} is up"))));
    lab.child = Some(child);
    let ec2 = ip("ec2-1");
    lab.exec_ok("web-1", &["ping", "-c", "1", "-W", "2", &ec2]);
    // A second `up` while it runs is refused, and touches nothing.
    let busy = Command::new(VMCNET)
        .args(["up", topo.to_str().unwrap(), "--lab", &name])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("is up already"));
    lab.exec_ok("web-1", &["ping", "-c", "1", "-W", "2", &ec2]);
    let mut child = lab.child.take().unwrap();
    let err = child.stderr.take().unwrap();
    lab.child = Some(child);
    let st = lab.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(st.code(), Some(143));
    let mut msg = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(err), &mut msg).unwrap();
    assert!(msg.contains("its last owner died"), "{msg}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

impl LiveLab {
    /// `vmcnet ctl LAB ARGS…`: its status and output.
    fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(VMCNET)
            .args(["ctl", &self.name])
            .args(args)
            .output()
            .expect("vmcnet ctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }
}

#[test]
fn ctl_shows_the_views_of_vmcnet_show_in_the_same_shapes() {
    live_or_skip!();
    let lab = LiveLab::up();
    let topo = common::root().join("topo/default.toml");
    for what in ["eni", "routes", "tier0", "hosts", "segments"] {
        let offline = Command::new(VMCNET)
            .args(["show", topo.to_str().unwrap(), what, "--json"])
            .output()
            .unwrap();
        let (code, live) = lab.ctl(&["show", what, "--json"]);
        assert_eq!(code, 0, "{live}");
        let a: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
        let b: serde_json::Value = serde_json::from_str(&live).unwrap();
        assert_eq!(
            a, b,
            "show {what} --json: the live lab, untouched, is the topology"
        );
    }
    let (code, text) = lab.ctl(&["show", "nothing"]);
    assert_eq!(code, 2);
    assert!(text.contains("possible values"), "{text}");
    let (code, text) = lab.ctl(&["vmotion", "nobody", "to", "esxi-1"]);
    assert_eq!(code, 2);
    assert!(text.contains("nobody"), "{text}");
}

/// The ENI of the host the active Edge runs on, and whether it holds the uplink address, from
/// `ctl show eni --json`.
fn uplink_eni(lab: &LiveLab) -> Option<String> {
    let uplink = common::default_topo().sddc.edges.uplink_ip.to_string();
    let (code, out) = lab.ctl(&["show", "eni", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ctl show eni --json: status {code}, {e}: {out}"));
    v["NetworkInterfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["PrivateIpAddresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|ip| ip["PrivateIpAddress"] == uplink.as_str())
        })
        .map(|e| e["NetworkInterfaceId"].as_str().unwrap().to_string())
}

#[test]
fn an_edge_vmotion_by_ctl_moves_the_uplink_ip_and_traffic_follows() {
    live_or_skip!();
    let lab = LiveLab::up();
    let t = common::default_topo();
    let ec2 = ip("ec2-1");
    let built = Lab::build(&t, 1);
    let eni_of = |host: &str| built.model.eni_of_host(host).unwrap().id.clone();
    let edge = &t.sddc.edges.active;
    assert_eq!(uplink_eni(&lab), Some(eni_of(&edge.host)));
    // To a cluster-1 host other than the Edge's own.
    let to = t
        .hosts()
        .map(|h| h.to_string())
        .find(|h| *h != edge.host)
        .unwrap();
    let (code, out) = lab.ctl(&["vmotion", &edge.name, "to", &to]);
    assert_eq!(code, 0, "{out}");
    // The reconciler notices, moves the address, re-targets the routes: the sum of their
    // latencies, and then some.
    let tm = &t.timing;
    let settle = tm.vmotion_stun
        + tm.control_plane_notice
        + tm.move_secondary_ip.max(tm.replace_route)
        + Duration::from_secs(3);
    let since = Instant::now();
    while uplink_eni(&lab) != Some(eni_of(&to)) {
        assert!(since.elapsed() < settle, "the uplink never moved to {to}");
        std::thread::sleep(Duration::from_millis(100));
    }
    while lab.ctl(&["show", "timeline"]).1.contains("pending") {
        assert!(
            since.elapsed() < settle,
            "{}",
            lab.ctl(&["show", "timeline"]).1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, routes) = lab.ctl(&["show", "routes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let main = &v["RouteTables"][0]["Routes"];
    for seg in &t.sddc.segments {
        let r = main
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["DestinationCidrBlock"] == seg.cidr.to_string().as_str())
            .unwrap_or_else(|| panic!("no route to {}: {routes}", seg.cidr));
        assert_eq!(r["NetworkInterfaceId"], eni_of(&to).as_str(), "{routes}");
    }
    let out = lab.exec_ok("web-1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ec2]);
    assert_eq!(reply_ttls(&out).len(), 3, "{out}");
}

#[test]
fn capture_of_the_active_eni_is_a_pcap_tshark_reads() {
    live_or_skip!();
    let lab = LiveLab::up();
    let t = common::default_topo();
    let built = Lab::build(&t, 1);
    let eni = built
        .model
        .eni_of_host(&t.sddc.edges.active.host)
        .unwrap()
        .id
        .clone();
    let link = format!("{}--{eni}", t.sddc.edges.active.host);
    let file = std::env::temp_dir().join(format!("vmcnet-{}-eni.pcap", lab.name));
    let mut cap = lab.capture(&link, &file);
    let (web, ec2) = (ip("web-1"), ip("ec2-1"));
    lab.exec_ok("web-1", &["ping", "-c", "4", "-i", "0.2", "-W", "2", &ec2]);
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cap.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = cap.wait();
    let text = tshark_fields(&file, &["ip.src", "ip.dst", "icmp.type", "ip.ttl"]);
    let _ = std::fs::remove_file(&file);
    // Requests cross the ENI after the Tier-0 hop; replies before it.
    let requests = text
        .lines()
        .filter(|l| *l == format!("{web}\t{ec2}\t8\t{}", LINUX_TTL - ROUTED_HOPS))
        .count();
    let replies = text
        .lines()
        .filter(|l| *l == format!("{ec2}\t{web}\t0\t{LINUX_TTL}"))
        .count();
    assert_eq!((requests, replies), (4, 4), "{text}");
    // A link the lab does not have is refused.
    let (code, _) = lab.ctl(&["capture", "no-such-link"]);
    assert_eq!(code, 2);
    // The link is free again once its idle capture's client has gone; while a capture runs,
    // a second one is refused.
    let again = || {
        Command::new(VMCNET)
            .args(["capture", &lab.name, &link, "-w", "/dev/null"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let since = Instant::now();
    let mut second = loop {
        let mut c = again();
        std::thread::sleep(Duration::from_millis(300));
        match c.try_wait().unwrap() {
            None => break c,
            Some(_) => assert!(since.elapsed() < Duration::from_secs(5), "never released"),
        }
    };
    let mut third = again();
    let st = wait_for(&mut third, Duration::from_secs(5));
    assert_eq!(st.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut third.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("captured already"), "{err}");
    let _ = second.kill();
    let _ = second.wait();
}

/// `vmcnet drill default FILE --live --json` in a lab of its own: its exit status and its
/// report. Nothing of the lab is left afterwards.
fn live_drill(file: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let lab = lab_name();
    let out = Command::new(VMCNET)
        .args(["drill", "default", file.to_str().unwrap()])
        .args(["--live", "--json", "--lab", &lab])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    let r = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), r)
}

#[test]
fn edge_vmotion_live_keeps_tcp_alive_and_its_outages_match_the_sims() {
    live_or_skip!();
    let file = common::root().join("scripts/drills/edge-vmotion.toml");
    let drill = vmcnet::drill::DrillFile::load(&file).unwrap();
    let topo = common::default_topo();
    let sim = vmcnet::drill::run_drill(&topo, &drill, &Default::default()).unwrap();
    assert!(sim.passed);
    let (code, r) = live_drill(&file);
    let steps = r["steps"].as_array().unwrap();
    let probe = steps.iter().find(|s| s["kind"] == "probe").unwrap();
    let sim_probe = sim.steps.iter().find(|s| s.kind == "probe").unwrap();
    let sim_probe = sim_probe.probe.as_ref().unwrap();
    for (way, sim_outage) in [
        ("there", sim_probe.there.outage),
        ("back", sim_probe.back.outage),
    ] {
        let live_us = probe["probe"][way]["outage_us"].as_u64().unwrap();
        let live_outage = Duration::from_micros(live_us);
        eprintln!("outage {way}: live {live_outage:?}, sim {sim_outage:?}");
        assert!(
            live_outage.abs_diff(sim_outage) <= Duration::from_millis(50),
            "{way}: live {live_outage:?}, sim {sim_outage:?}"
        );
    }
    // The sim's outages are themselves the parameters' (the drill file says so); both runs
    // passed them.
    assert_eq!(probe["passed"], true, "{probe}");
    let tcp = steps.iter().find(|s| s["kind"] == "tcp").unwrap();
    assert_eq!(tcp["passed"], true, "{tcp}");
    assert!(tcp["app"]["retransmits"].as_u64().unwrap() > 0, "{tcp}");
    assert!(
        tcp["server_connection"]["bytes"].as_u64().unwrap() > 0,
        "{tcp}"
    );
    // iperf3's intervals: the stream stalled during the outage back, then moved again.
    let intervals = tcp["intervals"].as_array().unwrap();
    let moved = |i: &serde_json::Value| i["bytes"].as_u64().unwrap() > 0;
    let first_stall = intervals.iter().position(|i| !moved(i)).expect("a stall");
    assert!(intervals[first_stall..].iter().any(moved), "{tcp}");
    assert_eq!(code, Some(0), "the drill passed");
    // The same actions took effect, at the same instants of the drill.
    let live_effects: Vec<f64> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["took_effect_at"].as_f64().unwrap())
        .collect();
    let sim_effects: Vec<f64> = sim
        .timeline
        .iter()
        .map(|e| e.took_effect_at.unwrap().as_secs_f64())
        .collect();
    assert_eq!(live_effects, sim_effects);
}

#[test]
fn up_cpu_runs_a_busy_engine_on_that_cpu_and_refuses_one_it_cannot_have() {
    live_or_skip!();
    // A CPU this process may not run on: an error before anything is built.
    let name = lab_name();
    let mut up = Command::new(VMCNET)
        .args(["up", "default", "--lab", &name, "--cpu", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should it be taken, the lab must still go: SIGTERM, then the failure.
    let since = Instant::now();
    while up.try_wait().unwrap().is_none() && since.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if up.try_wait().unwrap().is_none() {
        let pid = nix::unistd::Pid::from_raw(up.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = up.wait();
        panic!("vmcnet up --cpu 100000 ran a lab");
    }
    let out = up.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cpu 100000") && err.contains("may run on CPUs"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // The engine is `vmcnet up`'s main thread. It runs on the CPU asked for while a stream
    // keeps it busy, and anywhere the test may run while traffic only comes now and then.
    let any = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpus: Vec<usize> = (0..1024)
        .filter(|&c| any.is_set(c).unwrap_or(false))
        .collect();
    let cpu = *cpus.last().expect("a CPU");
    let lab = LiveLab::start(lab_name(), &["default", "--cpu", &cpu.to_string()]);
    let pid = lab.child.as_ref().unwrap().id();
    let allowed_of = |status: &str| {
        let status = std::fs::read_to_string(status).unwrap();
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|l| l.trim().to_string())
            .unwrap();
        // `0-1` or `0,1` or `1`: the CPUs it names.
        let mut set = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => set.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
                None => set.push(part.parse::<usize>().unwrap()),
            }
        }
        set
    };
    let allowed = || allowed_of(&format!("/proc/{pid}/status"));
    assert_eq!(allowed(), cpus, "idle, the engine runs anywhere");
    if cpus.len() < 2 {
        eprintln!("one CPU only: pinned and not pinned look the same here");
        return;
    }
    // A flood ping keeps the engine busy: it moves to its CPU. (Quiet: nobody reads its pipe.)
    let ec2 = ip("ec2-1");
    let flood_args = ["ping", "-f", "-q", "-c", "20000", "-w", "30", &ec2];
    let mut flood = lab.spawn("web-1", &flood_args);
    let mut seen = Vec::new();
    while flood.try_wait().unwrap().is_none() && seen != [cpu] {
        seen = allowed();
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = flood.kill();
    let _ = flood.wait();
    assert_eq!(seen, vec![cpu], "busy, the engine runs on CPU {cpu}");
    // Idle again (a sleep of a second or more), it leaves it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while allowed() != cpus && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(allowed(), cpus, "idle again, the engine runs anywhere");
    // Pings now and then, over links that take time (S3's): the engine sleeps on the links'
    // timers between frames, which is no stream. It stays off its CPU.
    let mut pings = lab.spawn(
        "web-1",
        &["ping", "-c", "6", "-i", "0.2", "-W", "2", &ip("s3")],
    );
    let mut pinned = 0;
    while pings.try_wait().unwrap().is_none() {
        pinned += usize::from(allowed() == [cpu]);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pings.wait().unwrap().success());
    assert_eq!(pinned, 0, "pings now and then pinned the engine");
    // And it forwards.
    let out = lab.exec_ok("web-1", &["ping", "-c", "1", "-W", "2", &ip("ec2-1")]);
    assert_eq!(reply_ttls(&out), vec![LINUX_TTL - ROUTED_HOPS], "{out}");
    // A capture's writer thread, started by the engine, keeps off the engine's CPU.
    let file = std::env::temp_dir().join(format!("vmcnet-{}-cpu.pcap", lab.name));
    let mut cap = lab.capture("eni-2--vpc-router", &file);
    let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.path())
        .find(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "vmcnet-capture")
        });
    let _ = cap.kill();
    let _ = cap.wait();
    let _ = std::fs::remove_file(&file);
    let writer = writer.expect("the capture's writer thread");
    let others: Vec<usize> = cpus.iter().copied().filter(|&c| c != cpu).collect();
    let writer_cpus = allowed_of(writer.join("status").to_str().unwrap());
    assert_eq!(writer_cpus, others, "the writer runs off CPU {cpu}");
}

#[test]
fn a_live_drill_refuses_what_it_cannot_run_before_building_anything() {
    live_or_skip!();
    let lab = lab_name();
    let out = Command::new(VMCNET)
        .args([
            "drill",
            "default",
            "scripts/drills/smoke.toml",
            "--live",
            "--lab",
            &lab,
        ])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("smoke.toml:") && err.contains("kind") && err.contains("traceroute"),
        "{err}"
    );
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    // A CPU the process may not run on, likewise; and --cpu means nothing without --live.
    let drill = |extra: &[&str]| {
        Command::new(VMCNET)
            .args(["drill", "default", "scripts/drills/edge-vmotion.toml"])
            .args(extra)
            .current_dir(common::root())
            .output()
            .unwrap()
    };
    let out = drill(&["--live", "--lab", &lab, "--cpu", "100000"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpu 100000"), "{err}");
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    let out = drill(&["--cpu", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--live"));
}

impl LiveLab {
    /// A counter of a node, from `ctl show stats --json`.
    fn counter(&self, node: &str, counter: &str) -> u64 {
        let (code, out) = self.ctl(&["show", "stats", "--json"]);
        assert_eq!(code, 0, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[node][counter].as_u64().unwrap_or(0)
    }

    /// iperf3 from web-1 to ec2-1 for `seconds`: its JSON report. The client retries until
    /// the server listens.
    fn iperf3(&self, seconds: u32) -> serde_json::Value {
        let ec2 = ip("ec2-1");
        let mut server = self.spawn("ec2-1", &["iperf3", "-s", "-1", "-B", &ec2]);
        let mut out = String::new();
        for _ in 0..50 {
            let o = self.exec(
                "web-1",
                &["iperf3", "-c", &ec2, "-t", &seconds.to_string(), "-J"],
            );
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            // iperf3 -J exits 0 even when it could not connect; its JSON says so.
            if o.status.success() && !out.contains("\"error\"") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = wait_for(&mut server, Duration::from_secs(10));
        serde_json::from_str(&out).expect("iperf3 -J")
    }

    /// Bytes an iperf3 of one second moved from web-1 to ec2-1.
    fn iperf3_bytes(&self) -> u64 {
        self.iperf3(1)["end"]["sum_received"]["bytes"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn super_frames_cross_links_that_take_no_time_whole_and_are_cut_where_links_take_time() {
    live_or_skip!();
    let t = common::default_topo();
    let built = Lab::build(&t, 1);
    let mtu = built.endpoint("ec2-1").unwrap().config().ip_mtu as u64 + 14;
    // Links that take no time: web-1's TSO super-frames reach ec2-1's kernel whole.
    let lab = LiveLab::up_with(&common::root().join("topo/examples/bench-live.toml"));
    assert!(lab.iperf3_bytes() > 0);
    let largest = lab.counter("ec2-1", "tx_max_frame_bytes");
    assert!(
        largest > mtu,
        "the longest frame to ec2-1 was {largest} B: no super-frame"
    );
    assert_eq!(lab.counter("ec2-1", "rx_dropped_offload"), 0);
    drop(lab);
    // The default lab's links take time: each super-frame is cut at the first of them, and
    // every frame ec2-1's kernel gets fits its MTU (none dropped as too big on the way).
    let lab = LiveLab::up();
    assert!(lab.iperf3_bytes() > 0);
    let largest = lab.counter("ec2-1", "tx_max_frame_bytes");
    assert!(
        largest > 0 && largest <= mtu,
        "the longest frame to ec2-1 was {largest} B"
    );
    let (_, links) = lab.ctl(&["show", "links"]);
    let lines: Vec<&str> = links.lines().filter(|l| l.contains("--")).collect();
    assert!(lines.len() > 20, "{links}");
    // A queue may drop (TCP fills it); nothing is too big for its link.
    for line in lines {
        let too_big = line.split('┆').nth(4).unwrap().trim();
        assert_eq!(too_big, "0", "{line}");
    }
}

#[test]
fn a_live_drills_ping_across_a_vm_vmotion_loses_what_the_sims_loses() {
    live_or_skip!();
    // Pings every 200 ms from 100 ms; web-1 is stunned from 500 ms for `vmotion_stun`.
    let text = "name = \"ping-vmotion\"\n\
        [[action]]\nkind = \"vmotion\"\nat = \"500ms\"\nvm = \"web-1\"\nto = \"esxi-2\"\n\
        [[traffic]]\nkind = \"ping\"\nfrom = \"ec2-1\"\nto = \"web-1\"\ncount = 5\n\
        interval = \"200ms\"\nstart = \"100ms\"\nexpect = { received = 2 }\n";
    let file =
        std::env::temp_dir().join(format!("vmcnet-ping-vmotion-{}.toml", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let drill = vmcnet::drill::DrillFile::load(&file).unwrap();
    let topo = common::default_topo();
    // The expectation is the parameters': the pings sent at 500, 700 and 900 ms fall in the
    // stun.
    let stun = topo.timing.vmotion_stun;
    let lost = (0..5)
        .map(|k| Duration::from_millis(100 + 200 * k))
        .filter(|t| *t >= Duration::from_millis(500) && *t < Duration::from_millis(500) + stun)
        .count();
    assert_eq!(
        5 - lost,
        2,
        "the drill file's expectation matches the parameters"
    );
    let sim = vmcnet::drill::run_drill(&topo, &drill, &Default::default()).unwrap();
    assert!(sim.passed, "{sim}");
    let (code, r) = live_drill(&file);
    let _ = std::fs::remove_file(&file);
    // The ping's own report: the replies the parameters imply, each after one routed hop.
    let ping = &r["steps"][0];
    assert_eq!(ping["kind"], "ping", "{r}");
    assert_eq!(ping["app"]["sent"], 5, "{ping}");
    assert_eq!(ping["app"]["received"], (5 - lost) as u64, "{ping}");
    let ttls = ping["app"]["reply_ttls"].as_array().unwrap();
    assert_eq!(ttls.len(), 5 - lost, "{ping}");
    assert!(
        ttls.iter()
            .all(|t| *t == u64::from(LINUX_TTL - ROUTED_HOPS)),
        "{ping}"
    );
    assert_eq!(code, Some(0), "the drill passed: {ping}");
}

#[test]
fn only_the_endpoints_asked_for_go_live_and_they_reach_the_sims_endpoints() {
    live_or_skip!();
    let name = lab_name();
    let topo = common::root().join("topo/default.toml");
    let bad = Command::new(VMCNET)
        .args([
            "up",
            topo.to_str().unwrap(),
            "--lab",
            &name,
            "--only",
            "web-1,nobody",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"nobody\" is not an endpoint"));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    let lab = LiveLab::start(name.clone(), &[topo.to_str().unwrap(), "--only", "web-1"]);
    let namespaces: Vec<String> = leftovers(&name)
        .into_iter()
        .filter(|l| l.starts_with("netns"))
        .collect();
    assert_eq!(namespaces, vec![format!("netns vmc-{name}-web-1")]);
    // ec2-1 is the sim's endpoint (smoltcp), and answers with its TTL of 64, less the hop.
    let out = lab.exec_ok(
        "web-1",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", &ip("ec2-1")],
    );
    assert_eq!(reply_ttls(&out), vec![LINUX_TTL - ROUTED_HOPS; 2], "{out}");
}

#[test]
fn capture_of_the_overlay_between_two_hosts_holds_their_geneve_packets_only() {
    live_or_skip!();
    let lab = LiveLab::up();
    let t = common::default_topo();
    let built = Lab::build(&t, 1);
    // web-1's host, and the active Edge's: web-1's traffic to EC2 crosses between them.
    let web_host = built.model.vm("web-1").unwrap().host.clone();
    let edge_host = t.sddc.edges.active.host.clone();
    assert_ne!(web_host, edge_host);
    let teps = [&web_host, &edge_host].map(|h| built.model.host(h).unwrap().tep.to_string());
    let file = std::env::temp_dir().join(format!("vmcnet-{}-overlay.pcap", lab.name));
    let mut cap = lab.capture(&format!("{web_host}--{edge_host}"), &file);
    // web-1 also pings app-1, on a third host: those packets leave web-1's host on the same
    // underlay link, but not between these two hosts.
    let app_host = &built.model.vm("app-1").unwrap().host;
    assert!(app_host != &web_host && app_host != &edge_host);
    let ping = |to: &str| ["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip(to)].map(String::from);
    for to in ["ec2-1", "app-1"] {
        let args = ping(to);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.exec_ok("web-1", &args);
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = cap.kill();
    let _ = cap.wait();
    let text = tshark_fields(&file, &["ip.src", "ip.dst", "icmp.type"]);
    let _ = std::fs::remove_file(&file);
    let mut requests = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        // Outer, then inner addresses; the outer pair is the two TEPs.
        let outer_src = f[0].split(',').next().unwrap();
        let outer_dst = f[1].split(',').next().unwrap();
        let pair = [outer_src, outer_dst];
        assert!(
            pair == [teps[0].as_str(), teps[1].as_str()]
                || pair == [teps[1].as_str(), teps[0].as_str()],
            "{line}"
        );
        requests += usize::from(f[2] == "8");
    }
    assert_eq!(requests, 3, "web-1's three echo requests: {text}");
}

/// The Edges' BFD, as tshark's own dissector reads it on the standby's HA link: control
/// packets both ways, TTL 255, the session up. Then `ctl cut-bfd` makes the standby take the
/// active role once BFD's detection time has passed, in wall time, and `ctl heal-bfd` leaves
/// one active Edge again.
#[test]
fn tshark_reads_the_edges_bfd_and_cut_bfd_fails_over_live() {
    live_or_skip!();
    let lab = LiveLab::up();
    let t = common::default_topo();
    let (tm, edges) = (&t.timing, &t.sddc.edges);
    let ha = vmcnet_topo::edge_iface_end(&edges.standby.name, vmcnet_topo::EDGE_HA_IFACE);
    let link = vmcnet_topo::link_name(&ha, &edges.standby.host);
    let file = std::env::temp_dir().join(format!("vmcnet-{}-ha.pcap", lab.name));
    // The session comes up an interval after the lab starts (Down, Init, Up).
    std::thread::sleep(tm.bfd_interval * 2);
    let mut cap = lab.capture(&link, &file);
    std::thread::sleep(tm.bfd_interval * 4);
    let _ = cap.kill();
    let _ = cap.wait();
    let text = tshark_fields(&file, &["ip.src", "ip.ttl", "udp.dstport", "bfd.sta"]);
    let _ = std::fs::remove_file(&file);
    let mut from = std::collections::BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(&f[1..], ["255", "3784", "0x03"], "{line}");
        *from.entry(f[0].to_string()).or_insert(0) += 1;
    }
    // Both Edges' packets, about one an interval each (four intervals captured).
    assert_eq!(from.len(), 2, "{text}");
    assert!(from.values().all(|n| (3..=5).contains(n)), "{from:?}");

    let timeline = || lab.ctl(&["show", "timeline"]).1;
    let (code, out) = lab.ctl(&["cut-bfd"]);
    assert_eq!(code, 0, "{out}");
    let cut = Instant::now();
    let promoted = format!("{} takes the active role", edges.standby.name);
    let took = |tl: &str, what: &str| {
        tl.lines()
            .any(|l| l.contains(what) && l.contains("took effect"))
    };
    let detect = tm.bfd_interval * tm.bfd_multiplier;
    while !took(&timeline(), &promoted) {
        assert!(
            cut.elapsed() < detect + tm.promotion + Duration::from_secs(5),
            "{}",
            timeline()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not before BFD could have noticed: the last packet through, then the detection time.
    assert!(
        cut.elapsed() >= detect - tm.bfd_interval + tm.promotion,
        "promoted after {:?}",
        cut.elapsed()
    );
    let (code, out) = lab.ctl(&["heal-bfd"]);
    assert_eq!(code, 0, "{out}");
    let stepped = format!("{} steps down to standby", edges.active.name);
    let healed = Instant::now();
    while !took(&timeline(), &stepped) {
        assert!(healed.elapsed() < Duration::from_secs(5), "{}", timeline());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!timeline().contains("failed"), "{}", timeline());
}

/// The fields of every packet of a capture, as tshark reads them: a line a packet, tab-separated.
fn tshark_fields(file: &std::path::Path, fields: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl LiveLab {
    /// `vmcnet capture LAB LINK -w FILE`, once the capture has begun (its pcap header written).
    fn capture(&self, link: &str, file: &std::path::Path) -> Child {
        let cap = Command::new(VMCNET)
            .args(["capture", &self.name, link, "-w", file.to_str().unwrap()])
            .spawn()
            .unwrap();
        let since = Instant::now();
        while std::fs::metadata(file).map_or(0, |m| m.len()) < 24 {
            assert!(since.elapsed() < Duration::from_secs(10), "no pcap header");
            std::thread::sleep(Duration::from_millis(10));
        }
        cap
    }
}
