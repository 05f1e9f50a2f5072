//! End-to-end tests: the default lab in the sim runtime, the smoke drill, the pcaps it writes
//! (read back by tcpdump and tshark), and the `vmcnet` command line.

mod common;
use common::{default_topo, root};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmcnet::control::Lab;
use vmcnet::drill::{run_drill, DrillFile, DrillReport, RunOptions};
use vmcnet::node::endpoint::AppReport;

fn smoke() -> DrillFile {
    DrillFile::load(&root().join("scripts/drills/smoke.toml")).expect("smoke drill")
}

/// A scratch directory, new and empty, removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("vmcnet-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_smoke(pcap: Option<&Path>) -> DrillReport {
    let opts = RunOptions {
        pcap_dir: pcap.map(Path::to_path_buf),
        ..RunOptions::default()
    };
    run_drill(&default_topo(), &smoke(), &opts).expect("drill runs")
}

#[test]
fn smoke_drill_passes_with_the_expected_paths() {
    let r = run_smoke(None);
    assert!(r.passed, "{r}");
    assert_eq!(r.steps.len(), 8);
    // S3 saw the Edge's uplink address (SNAT), the EC2 server the VM's own address.
    let s3 = r.steps[4]
        .server_connection
        .as_ref()
        .expect("s3 connection");
    assert_eq!(*s3.peer.ip(), Ipv4Addr::new(172, 31, 0, 30));
    assert_eq!(s3.bytes, 1 << 20);
    let ec2 = r.steps[5]
        .server_connection
        .as_ref()
        .expect("ec2 connection");
    assert_eq!(*ec2.peer.ip(), Ipv4Addr::new(192, 168, 1, 10));
    assert_eq!(ec2.bytes, 10 << 20);
    assert!(ec2.pattern_ok);
    let gw = Ipv4Addr::new(192, 168, 1, 1);
    assert_reached(&r.steps[6].app, &[gw, Ipv4Addr::new(172, 31, 16, 10)]);
    // Through SNAT: S3's port unreachable came back to web-1, translated.
    assert_reached(&r.steps[7].app, &[gw, Ipv4Addr::new(198, 51, 100, 10)]);
}

/// A traceroute that answered at every hop of `hops` and reached the last.
fn assert_reached(app: &AppReport, hops: &[Ipv4Addr]) {
    match app {
        AppReport::Traceroute(t) => {
            let want: Vec<_> = hops.iter().copied().map(Some).collect();
            assert_eq!(t.hops, want);
            assert!(t.reached);
        }
        other => panic!("not a traceroute: {other:?}"),
    }
}

#[test]
fn smoke_drill_is_deterministic_bit_for_bit() {
    let (a, b) = (TempDir::new("det-a"), TempDir::new("det-b"));
    let ra = run_smoke(Some(&a.0));
    let rb = run_smoke(Some(&b.0));
    assert!(ra.passed && rb.passed);
    let mut files: Vec<_> = std::fs::read_dir(&a.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    files.sort();
    assert!(files.len() > 20, "a pcap per link: {files:?}");
    let mut carried = std::collections::BTreeSet::new();
    for f in &files {
        let (x, y) = (
            std::fs::read(a.0.join(f)).unwrap(),
            std::fs::read(b.0.join(f)).unwrap(),
        );
        assert_eq!(x, y, "{f:?} differs between two runs");
        if x.len() > 24 {
            carried.insert(f.to_string_lossy().trim_end_matches(".pcap").to_string());
        }
    }
    // Every link on the smoke drill's paths carried frames.
    for link in [
        "web-1--esxi-1",
        "esxi-1--underlay",
        "esxi-2--underlay",
        "esxi-3--underlay",
        "edge-1.sddc-cgw-network-1--esxi-2",
        "edge-1.sddc-mgmt-infra--esxi-2",
        "edge-1.uplink--esxi-2",
        "esxi-2--eni-2",
        "eni-2--vpc-router",
        "eni-ec2-1--vpc-router",
        "ec2-1--eni-ec2-1",
        "s3--vpc-router",
        "app-1--esxi-3",
        "vcenter--esxi-1",
    ] {
        assert!(
            carried.contains(link),
            "{link} carried nothing: {carried:?}"
        );
    }
}

#[test]
fn pcaps_are_read_by_tcpdump_and_tshark_and_overlay_is_geneve() {
    for tool in ["tcpdump", "tshark"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .status()
            .unwrap()
            .success();
        assert!(
            found,
            "{tool} is needed: run `make deps` (scripts/install-deps.sh)"
        );
    }
    let dir = TempDir::new("pcap");
    assert!(run_smoke(Some(&dir.0)).passed);
    for name in [
        "web-1--esxi-1",
        "esxi-1--underlay",
        "esxi-2--eni-2",
        "eni-2--vpc-router",
        "s3--vpc-router",
    ] {
        let path = dir.0.join(format!("{name}.pcap"));
        assert!(
            !read_pcap("tcpdump", &path, &[]).is_empty(),
            "{name} has packets"
        );
        read_pcap("tshark", &path, &[]);
    }
    // The overlay link carries Geneve with the inner ICMP and TCP of web-1.
    let path = dir.0.join("esxi-1--underlay.pcap");
    let text = read_pcap(
        "tshark",
        &path,
        &[
            "-Y",
            "geneve.vni == 69632 && ip.src == 192.168.1.10",
            "-T",
            "fields",
            "-e",
            "geneve.vni",
            "-e",
            "ip.proto",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() > 100,
        "Geneve frames from web-1: {}",
        lines.len()
    );
    // Outer UDP (17) around web-1's ICMP (1) and TCP (6).
    assert!(lines.iter().all(|l| l.starts_with("0x011000\t")));
    assert!(lines.iter().any(|l| l.ends_with("\t17,1")), "ICMP inside");
    assert!(lines.iter().any(|l| l.ends_with("\t17,6")), "TCP inside");
    // The Edge routed web-1's pings onto the management segment (VNI 69634) to vcenter on esxi-1.
    let pings = read_pcap(
        "tshark",
        &path,
        &[
            "-Y",
            "geneve.vni == 69634 && icmp.type == 8 && ip.dst == 10.2.224.4",
        ],
    );
    assert_eq!(pings.lines().count(), 3);
}

/// Read a pcap with `tool` (tcpdump or tshark) and `args`: it must read to the end without
/// complaint (no cut-short record, nothing malformed). Returns what the tool printed.
fn read_pcap(tool: &str, path: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(["-n", "-r"])
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && !err.contains("truncated")
            && !err.contains("cut short")
            && !err.contains("malformed"),
        "{tool} -r {}: {err}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vmcnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmcnet"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn cli_pcap_links_captures_only_the_links_named() {
    let dir = TempDir::new("pcap-links");
    let pcaps = dir.0.join("dir");
    let smoke = "scripts/drills/smoke.toml";
    let chosen = ["esxi-2--eni-2", "eni-2--vpc-router"];
    let out = vmcnet(&[
        "drill",
        "default",
        smoke,
        "--pcap",
        pcaps.to_str().unwrap(),
        "--pcap-links",
        &chosen.join(","),
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<String> = std::fs::read_dir(&pcaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = chosen.iter().map(|l| format!("{l}.pcap")).collect();
    want.sort();
    assert_eq!(files, want);
    // Each holds the smoke pings between web-1 and ec2-1: three requests, three replies.
    for l in chosen {
        let text = read_pcap("tcpdump", &pcaps.join(format!("{l}.pcap")), &["icmp"]);
        let echo = |between: &str, what: &str| {
            text.lines()
                .filter(|x| x.contains(between) && x.contains(what))
                .count()
        };
        assert_eq!(
            (
                echo("192.168.1.10 > 172.31.16.10", "echo request"),
                echo("172.31.16.10 > 192.168.1.10", "echo reply"),
            ),
            (3, 3),
            "{l}: {text}"
        );
    }
    // One pcapng file: one interface, named after the link.
    let ng = dir.0.join("one.pcapng");
    let out = vmcnet(&[
        "drill",
        "default",
        smoke,
        "--pcap",
        ng.to_str().unwrap(),
        "--pcap-links",
        "eni-2--vpc-router",
    ]);
    assert!(out.status.success(), "{out:?}");
    let names = read_pcap(
        "tshark",
        &ng,
        &["-T", "fields", "-e", "frame.interface_name"],
    );
    let mut seen: Vec<&str> = names.lines().collect();
    seen.dedup();
    assert_eq!(seen, ["eni-2--vpc-router"]);
    // A name the lab does not have: an error before anything is written, with the links near it.
    let none = dir.0.join("none");
    let out = vmcnet(&[
        "drill",
        "default",
        smoke,
        "--pcap",
        none.to_str().unwrap(),
        "--pcap-links",
        "eni-2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no link \"eni-2\"; did you mean:")
            && err.contains("esxi-2--eni-2")
            && err.contains("eni-2--vpc-router"),
        "{err}"
    );
    assert!(!none.exists());
    // Without --pcap, it means nothing: refused.
    let out = vmcnet(&[
        "drill",
        "default",
        smoke,
        "--pcap-links",
        "eni-2--vpc-router",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pcap"));
}

#[test]
fn cli_show_eni_json_is_shaped_like_aws() {
    let out = vmcnet(&["show", "topo/default.toml", "eni", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let enis = v["NetworkInterfaces"].as_array().unwrap();
    let sddc: Vec<_> = enis
        .iter()
        .filter(|e| e["Description"] == "VMware VMC Interface")
        .collect();
    assert_eq!(sddc.len(), 17);
    assert_eq!(sddc.iter().filter(|e| e["Status"] == "in-use").count(), 3);
    assert_eq!(
        sddc.iter().filter(|e| e["Status"] == "available").count(),
        14
    );
    let eni2 = sddc
        .iter()
        .find(|e| e["NetworkInterfaceId"] == "eni-2")
        .unwrap();
    assert_eq!(eni2["Host"], "esxi-2");
    assert_eq!(eni2["SourceDestCheck"], false);
    let ips = eni2["PrivateIpAddresses"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert_eq!(
        (
            ips[1]["Primary"].as_bool(),
            ips[1]["PrivateIpAddress"].as_str()
        ),
        (Some(false), Some("172.31.0.30"))
    );
    let ec2 = enis
        .iter()
        .find(|e| e["NetworkInterfaceId"] == "eni-ec2-1")
        .unwrap();
    assert_eq!(ec2["SourceDestCheck"], true);
}

#[test]
fn cli_show_routes_lists_every_segment_on_the_edge_eni() {
    let out = vmcnet(&["show", "default", "routes"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for seg in ["192.168.1.0/24", "192.168.2.0/24", "10.2.224.0/20"] {
        let line = text
            .lines()
            .find(|l| l.contains(seg) && l.contains("eni-"))
            .unwrap_or_else(|| panic!("{seg} in {text}"));
        assert!(line.contains("eni-2") && line.contains("active"), "{line}");
    }
    assert!(text.contains("vpce-s3"));
}

#[test]
fn cli_validate_names_file_line_and_field() {
    let dir = TempDir::new("cli-validate");
    let bad = std::fs::read_to_string(root().join("topo/default.toml"))
        .unwrap()
        .replace("\"10.2.0.0/16\"", "\"10.2.0.0/24\"");
    let path = dir.0.join("bad.toml");
    let bad_text = bad.clone();
    std::fs::write(&path, bad).unwrap();
    let out = vmcnet(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = bad_text
        .lines()
        .position(|l| l.starts_with("management_cidr"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}: sddc.management_cidr")),
        "{err}"
    );
    let out = vmcnet(&["validate", "topo/default.toml"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 of 17 ENIs in use"));
}

#[test]
fn cli_drill_exit_status_follows_the_assertions() {
    let dir = TempDir::new("cli-drill");
    let wrong = "name = \"wrong\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"web-1\"\nto = \"ec2-1\"\ncount = 1\nexpect = { reply_ttl = 64 }\n";
    let path = dir.0.join("wrong.toml");
    std::fs::write(&path, wrong).unwrap();
    let out = vmcnet(&[
        "drill",
        "default",
        path.to_str().unwrap(),
        "--report",
        dir.0.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("TTL 63, expected 64"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    let unknown = "name = \"u\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"nobody\"\nto = \"ec2-1\"\n";
    std::fs::write(&path, unknown).unwrap();
    let out = vmcnet(&["drill", "default", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nobody` is not an endpoint"));
}

#[test]
fn cli_show_hosts_and_segments_as_json() {
    let out = vmcnet(&["show", "default", "hosts", "--json"]);
    assert!(out.status.success());
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let esxi2 = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "esxi-2")
        .unwrap();
    assert_eq!(
        (esxi2["eni"].as_str(), esxi2["edges"][0].as_str()),
        (Some("eni-2"), Some("edge-1 (active)"))
    );
    let out = vmcnet(&["show", "default", "segments", "--json"]);
    let segs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mgmt = segs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["gateway"] == "MGW")
        .unwrap();
    assert_eq!(
        (mgmt["cidr"].as_str(), mgmt["gateway_ip"].as_str()),
        (Some("10.2.224.0/20"), Some("10.2.224.1"))
    );
    let out = vmcnet(&["show", "default", "tables"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown view is a usage error"
    );
}

#[test]
fn cli_drill_json_report_carries_every_step() {
    let out = vmcnet(&["drill", "default", "scripts/drills/smoke.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["passed"], true);
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8);
    assert_eq!(
        steps[0]["app"]["reply_ttls"],
        serde_json::json!([63, 63, 63])
    );
    assert_eq!(
        steps[4]["server_connection"]["peer"]
            .as_str()
            .map(|p| p.starts_with("172.31.0.30:")),
        Some(true)
    );
}

#[test]
fn cluster_2_hosts_without_enis_reach_everything_through_the_overlay() {
    let topo = vmcnet_topo::load(&root().join("topo/examples/two-clusters.toml")).unwrap();
    let drill = DrillFile::load(&root().join("scripts/drills/two-clusters.toml")).unwrap();
    let r = run_drill(&topo, &drill, &RunOptions::default()).unwrap();
    assert!(r.passed, "{r}");
    let lab = Lab::build(&topo, 1);
    // Same segment across hosts: switched over the overlay, no router in between.
    let link = |name: &str| {
        lab.sim
            .links()
            .iter()
            .find(|l| l.name == name)
            .unwrap()
            .spec
    };
    let links = [
        "db-1--esxi-5",
        "esxi-5--underlay",
        "esxi-3--underlay",
        "app-1--esxi-3",
    ];
    let echo = links
        .iter()
        .map(|name| {
            let geneve = if name.ends_with("--underlay") { 50 } else { 0 };
            link(name).one_way(98 + geneve)
        })
        .sum::<std::time::Duration>()
        * 2;
    // ARP is answered by each VM's own host (ARP suppression): db-1 asks esxi-5 for app-1's
    // MAC, and app-1, holding the request, asks esxi-3 for db-1's. Each exchange crosses the
    // asker's vNIC link twice; nothing is flooded to other hosts. Later requests take the path
    // alone.
    let arp = 2 * link("db-1--esxi-5").one_way(42) + 2 * link("app-1--esxi-3").one_way(42);
    match &r.steps[1].app {
        AppReport::Ping(p) => assert_eq!(p.rtts, vec![arp + echo, echo, echo]),
        other => panic!("{other:?}"),
    }
    let esxi5 = lab
        .hosts()
        .into_iter()
        .find(|h| h.host == "esxi-5")
        .unwrap();
    assert_eq!(
        (esxi5.cluster.as_str(), esxi5.eni.as_deref()),
        ("cluster-2", None)
    );
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_stops_a_drill_with_a_report_and_whole_pcaps() {
    signal_stops_a_drill("INT", 130);
}

#[test]
fn sigterm_stops_a_drill_likewise_with_status_143() {
    signal_stops_a_drill("TERM", 143);
}

/// `kill -SIGNAL` in the middle of a drill: it stops where it is, prints its report, closes its
/// pcaps whole and exits with `code` (128 + the signal's number).
fn signal_stops_a_drill(signal: &str, code: i32) {
    let dir = TempDir::new(&format!("sig-{signal}"));
    let drill = dir.0.join("endless.toml");
    std::fs::write(
        &drill,
        "name = \"endless\"\n\
         [[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nport = 5201\n\
         bytes = 1000000000000\n\
         [[traffic]]\nkind = \"ping\"\nfrom = \"web-1\"\nto = \"ec2-1\"\n",
    )
    .unwrap();
    let pcaps = dir.0.join("pcap");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_vmcnet"))
            .current_dir(root())
            .args(["drill", "default"])
            .arg(&drill)
            .arg("--pcap")
            .arg(&pcaps)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The transfer has started once the pcaps exist; then Ctrl-C.
    let started = std::time::Instant::now();
    while !pcaps.join("eni-2--vpc-router.pcap").exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the drill never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // And frames are on their way to disk (captures are written in chunks): the transfer is
    // under way however slow the machine.
    let written = || -> u64 {
        std::fs::read_dir(&pcaps)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    while written() < 64 * 1024 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the capture never grew"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vmcnet did not stop on SIG{signal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(code), "{stdout}");
    assert!(stdout.contains("FAIL  tcp"), "{stdout}");
    assert!(stdout.contains("! interrupted after"), "{stdout}");
    assert!(
        stdout.contains("interrupted: 1 of 2 traffic items run"),
        "{stdout}"
    );
    // Every pcap is whole: tcpdump reads each one to its end without complaint.
    let mut frames = 0;
    for entry in std::fs::read_dir(&pcaps).unwrap() {
        let path = entry.unwrap().path();
        frames += read_pcap("tcpdump", &path, &[]).lines().count();
    }
    assert!(frames > 100, "the transfer was under way: {frames} lines");
}

/// Every key of a JSON value, at any depth, and whether any value is `null`.
fn keys_and_nulls(v: &serde_json::Value, keys: &mut std::collections::BTreeSet<String>) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.iter().fold(false, |n, x| keys_and_nulls(x, keys) | n),
        serde_json::Value::Object(o) => o.iter().fold(false, |n, (k, x)| {
            keys.insert(k.clone());
            keys_and_nulls(x, keys) | n
        }),
        _ => false,
    }
}

#[test]
fn cli_json_views_match_their_golden_files_and_speak_aws_and_nsx() {
    // Keys the AWS CLI and the NSX Policy API use for these objects; ours add `Host` (the ESXi
    // host of an SDDC ENI) and, on Tier-0 routes, `interface` and `snat`.
    let allowed: &[(&str, &[&str])] = &[
        (
            "eni",
            &[
                "NetworkInterfaces",
                "NetworkInterfaceId",
                "Status",
                "Description",
                "MacAddress",
                "PrivateIpAddress",
                "PrivateIpAddresses",
                "Primary",
                "SourceDestCheck",
                "SubnetId",
                "VpcId",
                "InterfaceType",
                "Attachment",
                "AttachmentId",
                "DeviceIndex",
                "InstanceId",
                "Host",
            ],
        ),
        (
            "routes",
            &[
                "RouteTables",
                "RouteTableId",
                "VpcId",
                "Associations",
                "Main",
                "RouteTableAssociationId",
                "Routes",
                "DestinationCidrBlock",
                "DestinationPrefixListId",
                "GatewayId",
                "NetworkInterfaceId",
                "Origin",
                "State",
            ],
        ),
        (
            "tier0",
            &[
                "results",
                "result_count",
                "edge_node",
                "route_entries",
                "count",
                "network",
                "next_hop",
                "route_type",
                "admin_distance",
                "interface",
                "snat",
            ],
        ),
    ];
    for (view, keys) in allowed {
        let out = vmcnet(&["show", "default", view, "--json"]);
        assert!(out.status.success(), "{view}");
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = root().join(format!("tests/golden/show-{view}.json"));
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            got,
            want,
            "`vmcnet show default {view} --json` differs from {} (if the change is meant, \
             write the new output there and review it)",
            path.display()
        );
        let mut seen = std::collections::BTreeSet::new();
        assert!(
            !keys_and_nulls(&got, &mut seen),
            "{view}: absent keys are left out, not null"
        );
        let unknown: Vec<_> = seen
            .iter()
            .filter(|k| !keys.contains(&k.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{view}: keys outside the API's shape: {unknown:?}"
        );
    }
    // The S3 route is one prefix-list route to the gateway endpoint.
    let routes: serde_json::Value =
        serde_json::from_slice(&vmcnet(&["show", "default", "routes", "--json"]).stdout).unwrap();
    let pl: Vec<_> = routes["RouteTables"][0]["Routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("DestinationPrefixListId").is_some())
        .collect();
    assert_eq!(pl.len(), 1);
    assert_eq!(pl[0]["GatewayId"], "vpce-s3");
    assert_eq!(routes["RouteTables"][0]["Associations"][0]["Main"], true);
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let tmp = TempDir::new("pipe");
    let dir = &tmp.0.join("report");
    // The JSON report is larger than a pipe holds: the writer meets the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmcnet"))
        .args([
            "drill",
            "default",
            "scripts/drills/edge-vmotion.toml",
            "--json",
        ])
        .arg("--report")
        .arg(dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"{");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}: {err}", out.status);
    assert!(err.is_empty(), "{err}");
    // The report files were written before the output began.
    let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(json.len() > 64 * 1024, "larger than a pipe");
}

#[test]
fn an_output_path_that_cannot_be_written_is_an_error_before_the_drill_runs() {
    let file = std::env::temp_dir().join(format!("vmcnet-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let out = vmcnet(&[
        "drill",
        "default",
        "scripts/drills/maintenance-rolling.toml",
        "--report",
        file.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--report") && err.contains("cannot create"),
        "{err}"
    );
    // Nothing was printed: the drill did not run.
    assert!(out.stdout.is_empty());
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn one_pcapng_file_captures_every_link_of_a_lab_with_more_links_than_open_files() {
    let tmp = TempDir::new("pcapng");
    let dir = &tmp.0;
    // 16 hosts and 300 VMs: far more links than the 64 files the drill may open.
    let topo = vmcnet_topo::scale::scaled(1, 16, 300);
    let links = Lab::build(&topo, 1).sim.links().len();
    assert!(links > 300, "{links} links");
    let topo_path = dir.join("lab.toml");
    std::fs::write(&topo_path, toml::to_string(&topo).unwrap()).unwrap();
    let drill_path = dir.join("ping.toml");
    std::fs::write(
        &drill_path,
        "name = \"ping\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"vm-1\"\nto = \"ec2-1\"\ncount = 2\n",
    )
    .unwrap();
    let under_ulimit = |pcap: &Path| {
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" drill \"$1\" \"$2\" --pcap \"$3\"")
            .arg(env!("CARGO_BIN_EXE_vmcnet"))
            .arg(&topo_path)
            .arg(&drill_path)
            .arg(pcap)
            .output()
            .unwrap()
    };
    // A file per link runs out of files: an error that says so once and names the way out,
    // and no half-made capture left behind...
    let out = under_ulimit(&dir.join("per-link"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("each of the lab's {links} links")),
        "{err}"
    );
    assert!(err.contains("FILE.pcapng"), "{err}");
    assert_eq!(err.matches("Too many open files").count(), 1, "{err}");
    let left = std::fs::read_dir(dir.join("per-link")).unwrap().count();
    assert_eq!(left, 0, "pcap files left behind");
    // ...one pcapng file does not.
    let file = dir.join("all.pcapng");
    let out = under_ulimit(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // An interface per link, named after it; the pings on vm-1's own link, both ways.
    let names = read_pcap(
        "tshark",
        &file,
        &["-T", "fields", "-e", "frame.interface_name"],
    );
    let seen: std::collections::BTreeSet<&str> = names.lines().collect();
    assert!(seen.contains("vm-1--esxi-1"), "{seen:?}");
    let pings = read_pcap(
        "tshark",
        &file,
        &["-Y", "frame.interface_name == \"vm-1--esxi-1\" && icmp"],
    );
    assert_eq!(pings.lines().count(), 4, "{pings}");
    // Nanosecond timestamps, and said so: the second echo request leaves 200 ms into the
    // drill, and the last frame shortly after (read as microseconds, it would be 200 s).
    let times = read_pcap(
        "tshark",
        &file,
        &["-T", "fields", "-e", "frame.time_relative"],
    );
    let last = times
        .lines()
        .map(|t| t.trim().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!((0.2..1.0).contains(&last), "last frame at {last} s");
}
