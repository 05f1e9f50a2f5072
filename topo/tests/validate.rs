//! Validation of topology files: the default lab passes, and every rule rejects an edited copy of
//! it with the right field, line and message.

use std::path::Path;

use vmcnet_topo::{load, parse, TopoError, Topology, DEFAULT_TOPOLOGY};

const ORIGIN: &str = "lab.toml";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `text` with `from`, which must occur exactly once, replaced by `to`.
#[track_caller]
fn replace(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

/// The default lab with `from` replaced by `to`.
#[track_caller]
fn edit(from: &str, to: &str) -> String {
    replace(DEFAULT_TOPOLOGY, from, to)
}

/// The 1-based line of the first occurrence of `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Parse `text`, which must be rejected at `field` on `line` with a message holding `message`.
#[track_caller]
fn rejects(text: &str, field: &str, line: usize, message: &str) -> TopoError {
    let err = match parse(text, ORIGIN) {
        Ok(_) => panic!("accepted; expected {field}: {message}"),
        Err(err) => err,
    };
    assert_eq!(err.origin, ORIGIN);
    assert_eq!(err.field, field, "field of: {err}");
    assert_eq!(err.line, Some(line), "line of: {err}");
    assert!(
        err.message.contains(message),
        "message of: {err}; expected {message:?}"
    );
    err
}

/// Parse `text`, which must be accepted.
#[track_caller]
fn accepts(text: &str) -> Topology {
    parse(text, ORIGIN).unwrap_or_else(|err| panic!("rejected: {err}"))
}

/// The default lab with its cluster replaced by clusters of the given sizes; hosts are named
/// `esxi-1`, `esxi-2`, … across clusters, so cluster 1 keeps the Edges' hosts when it has 3.
fn with_clusters(sizes: &[usize]) -> String {
    let mut next = 0;
    let clusters: String = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let hosts: Vec<String> = (0..size)
                .map(|_| {
                    next += 1;
                    format!("\"esxi-{next}\"")
                })
                .collect();
            format!(
                "[[sddc.clusters]]\nname = \"cluster-{}\"\nhosts = [{}]\n\n",
                i + 1,
                hosts.join(", ")
            )
        })
        .collect();
    edit(
        "[[sddc.clusters]]\nname = \"cluster-1\"\nhosts = [\"esxi-1\", \"esxi-2\", \"esxi-3\"]\n\n",
        &clusters,
    )
}

/// The default lab with `count` ENIs, `eni-1` at 172.31.0.4 onwards.
fn with_enis(count: usize) -> String {
    let start = DEFAULT_TOPOLOGY.find("[[vpc.enis]]").unwrap();
    let end = DEFAULT_TOPOLOGY.find("[timing]").unwrap();
    let enis: String = (1..=count)
        .map(|i| {
            format!(
                "[[vpc.enis]]\nid = \"eni-{i}\"\nip = \"172.31.0.{}\"\n\n",
                i + 3
            )
        })
        .collect();
    format!(
        "{}{enis}{}",
        &DEFAULT_TOPOLOGY[..start],
        &DEFAULT_TOPOLOGY[end..]
    )
}

/// The default lab with a line appended to its `[timing]` table.
fn with_timing(line: &str) -> String {
    edit(
        "eni_reattach = \"30s\"\n",
        &format!("eni_reattach = \"30s\"\n{line}\n"),
    )
}

// ---------------------------------------------------------------------------------------------
// The default lab, loading and the error format
// ---------------------------------------------------------------------------------------------

#[test]
fn default_topology_is_valid() {
    let topo = accepts(DEFAULT_TOPOLOGY);
    assert_eq!(topo.validate(), Ok(()));
    assert_eq!(topo.hosts().count(), 3);
    assert_eq!(topo.vpc.enis.len(), 17);
    assert_eq!(topo.timing.route_table_quota, 50);
}

#[test]
fn default_file_loads_and_a_missing_file_is_an_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let topo = load(&dir.join("default.toml")).expect("default.toml loads");
    assert_eq!(topo, accepts(DEFAULT_TOPOLOGY));
    let err = load(&dir.join("no-such-file.toml")).unwrap_err();
    assert_eq!(err.line, None);
    assert!(
        err.to_string().contains("no-such-file.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn error_displays_origin_line_field_message() {
    let err = TopoError {
        origin: "lab.toml".into(),
        line: Some(10),
        field: "sddc.clusters[0].hosts".into(),
        message: "cluster-1 has 17 hosts; a cluster holds at most 16".into(),
    };
    assert_eq!(
        err.to_string(),
        "lab.toml:10: sddc.clusters[0].hosts: cluster-1 has 17 hosts; a cluster holds at most 16"
    );
    let bare = TopoError {
        line: None,
        field: String::new(),
        ..err
    };
    assert_eq!(
        bare.to_string(),
        "lab.toml: cluster-1 has 17 hosts; a cluster holds at most 16"
    );

    let text = edit("vmotion_stun = \"500ms\"", "vmotion_stun = \"0s\"");
    let line = line_of(&text, "vmotion_stun");
    let err = rejects(&text, "timing.vmotion_stun", line, "longer than zero");
    assert_eq!(
        err.to_string(),
        format!("lab.toml:{line}: timing.vmotion_stun: must be longer than zero")
    );
}

// ---------------------------------------------------------------------------------------------
// Syntax and schema
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_syntax_error_at_its_line() {
    let text = edit("ip = \"172.31.0.10\"", "ip = \"172.31.0.10");
    let err = parse(&text, ORIGIN).unwrap_err();
    assert_eq!(err.line, Some(line_of(&text, "ip = \"172.31.0.10")));
    assert_eq!(err.field, "");
    assert!(err.message.contains("string"), "{err}");
    assert!(!err.message.contains('\n'), "{err}");
}

#[test]
fn rejects_an_unknown_field() {
    let text = edit("hosts = [", "hostz = [");
    rejects(&text, "sddc.clusters[0].hostz", 10, "unknown field `hostz`");
}

#[test]
fn rejects_a_wrong_type() {
    let text = with_timing("bfd_multiplier = \"three\"");
    let line = line_of(&text, "bfd_multiplier");
    rejects(&text, "timing.bfd_multiplier", line, "invalid type");
}

#[test]
fn rejects_a_bad_cidr_and_a_bad_address() {
    let text = edit("10.2.0.0/16", "10.2.0.0/33");
    rejects(&text, "sddc.management_cidr", 6, "invalid");
    let text = edit("\"172.31.0.30\"", "\"172.31.0.300\"");
    rejects(
        &text,
        "sddc.edges.uplink_ip",
        line_of(&text, "uplink_ip"),
        "invalid",
    );
}

#[test]
fn rejects_a_missing_field_at_its_table() {
    let text = edit("uplink_ip = \"172.31.0.30\"\n", "");
    rejects(
        &text,
        "sddc.edges",
        line_of(&text, "[sddc.edges]"),
        "missing field `uplink_ip`",
    );
    let text = edit("name = \"default\"\n", "");
    let err = parse(&text, ORIGIN).unwrap_err();
    assert_eq!((err.field.as_str(), err.line), ("", Some(1)));
    assert!(err.message.contains("missing field `name`"), "{err}");
}

#[test]
fn rejects_an_unknown_gateway() {
    let text = edit("gateway = \"mgw\"", "gateway = \"xgw\"");
    rejects(
        &text,
        "sddc.segments[2].gateway",
        line_of(&text, "xgw"),
        "unknown variant",
    );
}

#[test]
fn never_panics_on_garbage() {
    let mut inputs: Vec<String> = [
        "",
        "garbage",
        "\0\u{1}\u{7f}",
        "[[[",
        "]]",
        "name = ",
        "name = 1",
        "sddc = 5\nvpc = []",
        "[sddc]\n[sddc]",
        "a.b.c.d = { e = [ { f = 1 } ] }",
        "name = \"x\"\n[sddc]\nmanagement_cidr = \"::1/128\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push(format!("a = {}", "[".repeat(10_000)));
    inputs.push(format!("a = {}", "{ b = ".repeat(10_000)));
    inputs.push("x".repeat(100_000));
    // Pseudo-random bytes (a fixed linear congruential sequence), read as UTF-8 lossily.
    let mut state: u32 = 0x2545_f491;
    for _ in 0..64 {
        let bytes: Vec<u8> = (0..256)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for input in &inputs {
        let err = parse(input, ORIGIN).expect_err("garbage is rejected");
        assert!(err.to_string().starts_with(ORIGIN), "{err}");
        assert!(!err.message.is_empty(), "{err}");
    }
}

#[test]
fn never_panics_on_a_truncated_or_mangled_default() {
    for (end, _) in DEFAULT_TOPOLOGY.char_indices() {
        let _ = parse(&DEFAULT_TOPOLOGY[..end], ORIGIN);
    }
    let lines: Vec<&str> = DEFAULT_TOPOLOGY.lines().collect();
    for skip in 0..lines.len() {
        let text: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != skip)
            .map(|(_, line)| *line)
            .collect();
        if let Err(err) = parse(&text.join("\n"), ORIGIN) {
            assert!(!err.message.is_empty(), "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clusters, hosts and ENIs
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_cluster_of_more_than_16_hosts() {
    let text = with_clusters(&[17]);
    rejects(
        &text,
        "sddc.clusters[0].hosts",
        10,
        "cluster-1 has 17 hosts; a cluster holds at most 16",
    );
    let text = with_clusters(&[3, 17]);
    let line = line_of(&text, "name = \"cluster-2\"") + 1;
    rejects(
        &text,
        "sddc.clusters[1].hosts",
        line,
        "cluster-2 has 17 hosts",
    );
    accepts(&with_clusters(&[16, 16]));
}

#[test]
fn rejects_more_than_20_clusters() {
    let text = with_clusters(&[3; 21]);
    rejects(
        &text,
        "sddc.clusters",
        8,
        "21 clusters; an SDDC holds at most 20",
    );
    accepts(&with_clusters(&[3; 20]));
}

#[test]
fn rejects_more_than_300_hosts() {
    let text = with_clusters(&[16; 19]);
    rejects(
        &text,
        "sddc.clusters",
        8,
        "304 hosts in all; an SDDC holds at most 300",
    );
    accepts(&with_clusters(&[15; 20]));
}

#[test]
fn rejects_no_cluster() {
    let text = edit(
        "[[sddc.clusters]]\nname = \"cluster-1\"\nhosts = [\"esxi-1\", \"esxi-2\", \"esxi-3\"]\n",
        "clusters = []\n",
    );
    rejects(
        &text,
        "sddc.clusters",
        line_of(&text, "clusters = []"),
        "no cluster",
    );
}

#[test]
fn rejects_an_empty_cluster_1() {
    let text = edit("hosts = [\"esxi-1\", \"esxi-2\", \"esxi-3\"]", "hosts = []");
    rejects(&text, "sddc.clusters[0].hosts", 10, "cluster-1 has no host");
}

#[test]
fn rejects_fewer_enis_than_cluster_1_hosts() {
    let text = with_enis(2);
    let line = line_of(&text, "[[vpc.enis]]");
    rejects(
        &text,
        "vpc.enis",
        line,
        "2 ENIs for the 3 hosts of cluster-1",
    );
    accepts(&with_enis(3));
}

#[test]
fn rejects_more_than_17_enis() {
    let text = with_enis(18);
    let line = line_of(&text, "[[vpc.enis]]");
    rejects(&text, "vpc.enis", line, "18 ENIs; VMC creates at most 17");
}

// ---------------------------------------------------------------------------------------------
// CIDRs: management, VPC subnets, segments, S3
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_management_cidr_of_the_wrong_size() {
    for (cidr, prefix) in [("10.2.0.0/22", 22), ("10.2.0.0/24", 24), ("10.0.0.0/8", 8)] {
        let text = edit("10.2.0.0/16", cidr);
        let message =
            format!("{cidr} is a /{prefix}; the management CIDR must be a /16, /20 or /23");
        rejects(&text, "sddc.management_cidr", 6, &message);
    }
    accepts(&edit("10.2.0.0/16", "10.2.224.0/20"));
}

#[test]
fn rejects_a_management_cidr_overlapping_reserved_ranges() {
    for (cidr, reserved) in [
        ("10.1.0.0/16", "10.0.0.0/15"),
        ("172.31.0.0/16", "172.31.0.0/16"),
        ("192.168.0.0/23", "192.168.1.0/24"),
    ] {
        let text = edit("10.2.0.0/16", cidr);
        let message = format!("{cidr} overlaps {reserved}, which VMC reserves");
        rejects(&text, "sddc.management_cidr", 6, &message);
    }
}

#[test]
fn rejects_a_management_cidr_overlapping_the_vpc() {
    let text = edit("cidr = \"172.31.0.0/16\"", "cidr = \"10.2.0.0/16\"");
    rejects(
        &text,
        "sddc.management_cidr",
        6,
        "overlaps the VPC CIDR 10.2.0.0/16",
    );
}

#[test]
fn rejects_cidrs_with_host_bits_set() {
    let cases = [
        (
            "\"10.2.0.0/16\"",
            "\"10.2.0.5/16\"",
            "sddc.management_cidr",
            "10.2.0.0/16",
        ),
        (
            "\"192.168.2.0/24\"",
            "\"192.168.2.7/24\"",
            "sddc.segments[1].cidr",
            "192.168.2.0/24",
        ),
        (
            "\"172.31.0.0/16\"",
            "\"172.31.0.1/16\"",
            "vpc.cidr",
            "172.31.0.0/16",
        ),
        (
            "\"172.31.0.0/26\"",
            "\"172.31.0.9/26\"",
            "vpc.connected_subnet.cidr",
            "172.31.0.0/26",
        ),
        (
            "\"172.31.16.0/20\"",
            "\"172.31.17.0/20\"",
            "vpc.subnets[0].cidr",
            "172.31.16.0/20",
        ),
        (
            "\"198.51.100.0/24\"",
            "\"198.51.100.1/24\"",
            "vpc.s3_endpoint.prefix_list[0]",
            "198.51.100.0/24",
        ),
    ];
    for (from, to, field, network) in cases {
        let text = edit(from, to);
        let message = format!(
            "{} has host bits set; the network is {network}",
            to.trim_matches('"')
        );
        rejects(&text, field, line_of(&text, to), &message);
    }
}

#[test]
fn rejects_vpc_subnets_outside_the_vpc_cidr() {
    let text = edit("\"172.31.0.0/26\"", "\"172.32.0.0/26\"");
    let message =
        "172.32.0.0/26 of subnet subnet-connected is not inside the VPC CIDR 172.31.0.0/16";
    rejects(&text, "vpc.connected_subnet.cidr", 39, message);
    let text = edit("\"172.31.16.0/20\"", "\"172.32.16.0/20\"");
    rejects(
        &text,
        "vpc.subnets[0].cidr",
        40,
        "is not inside the VPC CIDR 172.31.0.0/16",
    );
}

#[test]
fn rejects_overlapping_vpc_subnets() {
    let text = edit("\"172.31.16.0/20\"", "\"172.31.0.0/20\"");
    let message = "172.31.0.0/20 overlaps subnet subnet-connected (172.31.0.0/26)";
    rejects(&text, "vpc.subnets[0].cidr", 40, message);
    let text = edit(
        "subnets = [{ name = \"subnet-ec2\", cidr = \"172.31.16.0/20\" }]",
        "subnets = [\n  { name = \"subnet-ec2\", cidr = \"172.31.16.0/20\" },\n  { name = \"subnet-b\", cidr = \"172.31.20.0/24\" },\n]",
    );
    let line = line_of(&text, "subnet-b");
    rejects(
        &text,
        "vpc.subnets[1].cidr",
        line,
        "overlaps subnet subnet-ec2 (172.31.16.0/20)",
    );
}

#[test]
fn rejects_a_segment_overlapping_the_vpc_cidr() {
    let text = edit("\"192.168.2.0/24\"", "\"172.31.200.0/24\"");
    let message = "172.31.200.0/24 overlaps the VPC CIDR 172.31.0.0/16";
    rejects(&text, "sddc.segments[1].cidr", 27, message);
}

#[test]
fn rejects_overlapping_segments() {
    let text = edit("\"192.168.2.0/24\"", "\"192.168.1.128/25\"");
    let message = "overlaps segment sddc-cgw-network-1 (192.168.1.0/24)";
    rejects(&text, "sddc.segments[1].cidr", 27, message);
}

#[test]
fn rejects_a_cgw_segment_overlapping_the_management_cidr() {
    let text = edit("\"192.168.2.0/24\"", "\"10.2.5.0/24\"");
    let message = "overlaps the management CIDR 10.2.0.0/16; a CGW segment may not";
    rejects(&text, "sddc.segments[1].cidr", 27, message);
}

#[test]
fn rejects_an_mgw_segment_outside_the_management_cidr() {
    let text = edit("\"10.2.224.0/20\"", "\"10.3.224.0/20\"");
    let message = "10.3.224.0/20 is not inside the management CIDR 10.2.0.0/16";
    rejects(&text, "sddc.segments[2].cidr", 33, message);
}

#[test]
fn rejects_an_s3_address_outside_its_prefix_list() {
    let text = edit("ip = \"198.51.100.10\"", "ip = \"198.51.101.10\"");
    let message = "198.51.101.10 is not inside the S3 prefix list [198.51.100.0/24]";
    rejects(&text, "vpc.s3_endpoint.ip", 42, message);
}

#[test]
fn rejects_an_s3_prefix_list_overlapping_the_vpc_or_the_sddc() {
    let cases = [
        (
            "[\"172.31.128.0/24\"]",
            "vpc.s3_endpoint.prefix_list[0]",
            "overlaps the VPC CIDR",
        ),
        (
            "[\"198.51.100.0/24\", \"192.168.2.0/24\"]",
            "vpc.s3_endpoint.prefix_list[1]",
            "overlaps segment sddc-cgw-network-2 (192.168.2.0/24)",
        ),
        (
            "[\"10.2.100.0/24\"]",
            "vpc.s3_endpoint.prefix_list[0]",
            "overlaps the management CIDR",
        ),
    ];
    for (list, field, message) in cases {
        let text = edit("[\"198.51.100.0/24\"]", list);
        rejects(&text, field, 42, message);
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_an_eni_ip_outside_the_connected_subnet() {
    let text = edit("ip = \"172.31.0.10\"", "ip = \"172.31.1.10\"");
    let message = "172.31.1.10 is outside subnet subnet-connected (172.31.0.0/26)";
    rejects(
        &text,
        "vpc.enis[6].ip",
        line_of(&text, "172.31.1.10"),
        message,
    );
}

#[test]
fn rejects_an_uplink_ip_outside_the_connected_subnet() {
    let text = edit("\"172.31.0.30\"", "\"172.31.0.100\"");
    let message = "172.31.0.100 is outside subnet subnet-connected (172.31.0.0/26)";
    rejects(&text, "sddc.edges.uplink_ip", 16, message);
}

#[test]
fn rejects_an_instance_ip_outside_its_subnet() {
    let text = edit("\"172.31.16.10\"", "\"172.31.32.10\"");
    let message = "172.31.32.10 is outside subnet subnet-ec2 (172.31.16.0/20)";
    rejects(&text, "vpc.instances[0].ip", 41, message);
}

#[test]
fn rejects_an_instance_on_an_unknown_subnet() {
    let text = edit("subnet = \"subnet-ec2\"", "subnet = \"subnet-ec3\"");
    let message = "instance ec2-1 is on subnet-ec3, which is not a subnet of the VPC";
    rejects(&text, "vpc.instances[0].subnet", 41, message);
}

#[test]
fn rejects_vpc_addresses_that_aws_reserves() {
    let cases = [
        (
            "\"172.31.0.4\"",
            "\"172.31.0.0\"",
            "vpc.enis[0].ip",
            "network address",
        ),
        (
            "\"172.31.0.4\"",
            "\"172.31.0.1\"",
            "vpc.enis[0].ip",
            "VPC router (base+1)",
        ),
        (
            "\"172.31.0.4\"",
            "\"172.31.0.2\"",
            "vpc.enis[0].ip",
            "DNS server (base+2)",
        ),
        (
            "\"172.31.0.4\"",
            "\"172.31.0.3\"",
            "vpc.enis[0].ip",
            "reserved address (base+3)",
        ),
        (
            "\"172.31.0.30\"",
            "\"172.31.0.63\"",
            "sddc.edges.uplink_ip",
            "broadcast address",
        ),
        (
            "\"172.31.16.10\"",
            "\"172.31.16.1\"",
            "vpc.instances[0].ip",
            "VPC router (base+1)",
        ),
        (
            "\"172.31.16.10\"",
            "\"172.31.31.255\"",
            "vpc.instances[0].ip",
            "broadcast address",
        ),
    ];
    for (from, to, field, role) in cases {
        let text = edit(from, to);
        let message = format!("{} is the {role} of subnet", to.trim_matches('"'));
        rejects(&text, field, line_of(&text, to), &message);
    }
}

#[test]
fn rejects_duplicate_vpc_addresses() {
    let text = edit("\"172.31.0.5\"", "\"172.31.0.4\"");
    let line = line_of(&text, "id = \"eni-2\"") + 1;
    rejects(
        &text,
        "vpc.enis[1].ip",
        line,
        "172.31.0.4 is already the address of vpc.enis[0].ip",
    );

    let text = edit("\"172.31.0.30\"", "\"172.31.0.20\"");
    rejects(
        &text,
        "sddc.edges.uplink_ip",
        16,
        "already the address of vpc.enis[16].ip",
    );

    let text = edit(
        "subnet = \"subnet-ec2\", ip = \"172.31.16.10\"",
        "subnet = \"subnet-connected\", ip = \"172.31.0.30\"",
    );
    rejects(
        &text,
        "vpc.instances[0].ip",
        41,
        "already the address of sddc.edges.uplink_ip",
    );
}

#[test]
fn rejects_a_vm_outside_its_segment() {
    let text = edit("\"192.168.1.10\"", "\"192.168.3.10\"");
    let message = "192.168.3.10 is outside segment sddc-cgw-network-1 (192.168.1.0/24)";
    rejects(&text, "sddc.segments[0].vms[0].ip", 22, message);
}

#[test]
fn rejects_a_vm_on_the_network_gateway_or_broadcast_address() {
    for (ip, role) in [
        ("192.168.1.0", "network address"),
        ("192.168.1.1", "gateway address"),
        ("192.168.1.255", "broadcast address"),
    ] {
        let text = edit("\"192.168.1.10\"", &format!("\"{ip}\""));
        let message = format!("{ip} is the {role} of segment sddc-cgw-network-1");
        rejects(&text, "sddc.segments[0].vms[0].ip", 22, &message);
    }
}

#[test]
fn rejects_two_vms_with_one_address() {
    let text = edit(
        "vms = [{ name = \"web-1\", ip = \"192.168.1.10\", host = \"esxi-1\" }]",
        "vms = [\n  { name = \"web-1\", ip = \"192.168.1.10\", host = \"esxi-1\" },\n  { name = \"web-2\", ip = \"192.168.1.10\", host = \"esxi-2\" },\n]",
    );
    let line = line_of(&text, "web-2");
    let message = "192.168.1.10 is already the address of sddc.segments[0].vms[0].ip";
    rejects(&text, "sddc.segments[0].vms[1].ip", line, message);
}

// ---------------------------------------------------------------------------------------------
// Hosts of VMs and Edges
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_vm_on_an_unknown_host() {
    let text = edit(
        "ip = \"192.168.2.10\", host = \"esxi-3\"",
        "ip = \"192.168.2.10\", host = \"esxi-9\"",
    );
    let message = "VM app-1 runs on esxi-9, which is not a host of the SDDC";
    rejects(&text, "sddc.segments[1].vms[0].host", 28, message);
}

#[test]
fn rejects_the_edge_pair_on_one_host() {
    let text = edit(
        "name = \"edge-2\", host = \"esxi-3\"",
        "name = \"edge-2\", host = \"esxi-2\"",
    );
    let message = "edge-2 runs on esxi-2 like edge-1; the Edge pair needs two hosts";
    rejects(&text, "sddc.edges.standby.host", 14, message);
}

#[test]
fn rejects_an_edge_outside_cluster_1() {
    let text = replace(
        &with_clusters(&[3, 2]),
        "host = \"esxi-2\" }",
        "host = \"esxi-4\" }",
    );
    let line = line_of(&text, "active =");
    let message =
        "edge-1 runs on esxi-4, which is not a host of cluster-1; the Edges run in cluster 1";
    rejects(&text, "sddc.edges.active.host", line, message);

    let text = edit(
        "name = \"edge-2\", host = \"esxi-3\"",
        "name = \"edge-2\", host = \"esxi-9\"",
    );
    rejects(
        &text,
        "sddc.edges.standby.host",
        14,
        "edge-2 runs on esxi-9, which is not a host of cluster-1",
    );
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_segment_named_after_an_edge_interface() {
    for reserved in ["uplink", "ha"] {
        let text = edit(
            "name = \"sddc-cgw-network-2\"",
            &format!("name = \"{reserved}\""),
        );
        rejects(
            &text,
            "sddc.segments[1].name",
            25,
            &format!("`{reserved}` names an interface of every Edge; a segment may not take it"),
        );
    }
}

#[test]
fn rejects_duplicate_names() {
    let unique = "every name must be unique";
    let text = edit("name = \"web-1\"", "name = \"esxi-1\"");
    let message = format!("`esxi-1` already names sddc.clusters[0].hosts[0]; {unique}");
    rejects(&text, "sddc.segments[0].vms[0].name", 22, &message);

    let text = edit("\"esxi-3\"]", "\"esxi-1\"]");
    rejects(
        &text,
        "sddc.clusters[0].hosts[2]",
        10,
        "`esxi-1` already names sddc.clusters[0].hosts[0]",
    );

    let text = replace(&with_clusters(&[3, 2]), "\"esxi-4\"", "\"esxi-2\"");
    let line = line_of(&text, "name = \"cluster-2\"") + 1;
    rejects(
        &text,
        "sddc.clusters[1].hosts[0]",
        line,
        "`esxi-2` already names sddc.clusters[0].hosts[1]",
    );

    let text = edit("name = \"cluster-1\"", "name = \"esxi-3\"");
    rejects(
        &text,
        "sddc.clusters[0].hosts[2]",
        10,
        "`esxi-3` already names sddc.clusters[0].name",
    );

    let text = edit("name = \"edge-2\"", "name = \"web-1\"");
    rejects(
        &text,
        "sddc.segments[0].vms[0].name",
        22,
        "`web-1` already names sddc.edges.standby.name",
    );

    let text = edit("name = \"subnet-ec2\"", "name = \"sddc-mgmt-infra\"");
    rejects(
        &text,
        "vpc.subnets[0].name",
        40,
        "`sddc-mgmt-infra` already names sddc.segments[2].name",
    );

    let text = edit("id = \"eni-7\"", "id = \"eni-6\"");
    rejects(
        &text,
        "vpc.enis[6].id",
        line_of(&text, "ip = \"172.31.0.10\"") - 1,
        "`eni-6` already names vpc.enis[5].id",
    );

    let text = edit("name = \"ec2-1\"", "name = \"eni-5\"");
    rejects(
        &text,
        "vpc.instances[0].name",
        41,
        "`eni-5` already names vpc.enis[4].id",
    );

    let text = edit("name = \"s3\"", "name = \"edge-1\"");
    rejects(
        &text,
        "vpc.s3_endpoint.name",
        42,
        "`edge-1` already names sddc.edges.active.name",
    );
}

#[test]
fn rejects_empty_names() {
    let cases = [
        ("name = \"default\"", "name = \"  \"", "name", 3),
        (
            "name = \"cluster-1\"",
            "name = \"\"",
            "sddc.clusters[0].name",
            9,
        ),
        ("[\"esxi-1\",", "[\"\",", "sddc.clusters[0].hosts[0]", 10),
        (
            "name = \"web-1\"",
            "name = \"\"",
            "sddc.segments[0].vms[0].name",
            22,
        ),
        (
            "name = \"sddc-mgmt-infra\"",
            "name = \"\"",
            "sddc.segments[2].name",
            31,
        ),
        (
            "name = \"subnet-connected\"",
            "name = \"\"",
            "vpc.connected_subnet.name",
            39,
        ),
        ("id = \"eni-1\"", "id = \"\"", "vpc.enis[0].id", 46),
        ("name = \"s3\"", "name = \"\"", "vpc.s3_endpoint.name", 42),
        ("id = \"vpc-0c0ffee1\"", "id = \"\"", "vpc.id", 37),
    ];
    for (from, to, field, line) in cases {
        rejects(&edit(from, to), field, line, "empty name");
    }
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

#[test]
fn rejects_a_zero_stun_or_bfd_interval() {
    let text = edit("vmotion_stun = \"500ms\"", "vmotion_stun = \"0s\"");
    rejects(
        &text,
        "timing.vmotion_stun",
        line_of(&text, "vmotion_stun"),
        "must be longer than zero",
    );
    let text = with_timing("bfd_interval = \"0ms\"");
    rejects(
        &text,
        "timing.bfd_interval",
        line_of(&text, "bfd_interval"),
        "must be longer than zero",
    );
}

#[test]
fn rejects_a_bfd_interval_outside_1ms_to_60s() {
    // An interval is a timer and a packet each way: 1 ns would stall a drill, 10^14 days
    // would overflow the detection time.
    for (interval, message) in [
        ("999us", "999µs is outside 1ms..=60s"),
        ("61s", "61s is outside 1ms..=60s"),
        ("100000000000000d", "is outside 1ms..=60s"),
    ] {
        let text = with_timing(&format!("bfd_interval = \"{interval}\""));
        let line = line_of(&text, "bfd_interval");
        rejects(&text, "timing.bfd_interval", line, message);
    }
    for interval in ["1ms", "60s"] {
        accepts(&with_timing(&format!("bfd_interval = \"{interval}\"")));
    }
}

#[test]
fn rejects_a_bfd_multiplier_outside_2_to_16() {
    for multiplier in [0, 1, 17, 1000] {
        let text = with_timing(&format!("bfd_multiplier = {multiplier}"));
        let line = line_of(&text, "bfd_multiplier");
        rejects(
            &text,
            "timing.bfd_multiplier",
            line,
            &format!("{multiplier} is outside 2..=16"),
        );
    }
    for multiplier in [2, 16] {
        accepts(&with_timing(&format!("bfd_multiplier = {multiplier}")));
    }
}

#[test]
fn rejects_a_route_table_quota_of_zero() {
    let text = with_timing("route_table_quota = 0");
    let line = line_of(&text, "route_table_quota");
    rejects(
        &text,
        "timing.route_table_quota",
        line,
        "0 routes; the main route table needs the local route",
    );
}

#[test]
fn rejects_a_route_table_quota_below_the_segments() {
    let text = with_timing("route_table_quota = 3");
    let line = line_of(&text, "route_table_quota");
    let message = "3 routes cannot hold the 4 of the main route table: one per SDDC segment (3) and the local route";
    rejects(&text, "timing.route_table_quota", line, message);
    accepts(&with_timing("route_table_quota = 4"));
}

#[test]
fn a_defaulted_field_is_placed_at_its_table() {
    // 50 more segments need 54 routes; the default quota of 50 is not written in the file.
    let segments: String = (3..53)
        .map(|i| {
            format!("[[sddc.segments]]\nname = \"seg-{i}\"\ngateway = \"cgw\"\ncidr = \"192.168.{i}.0/24\"\n\n")
        })
        .collect();
    let text = edit("[vpc]\n", &format!("{segments}[vpc]\n"));
    let message = "50 routes cannot hold the 54 of the main route table";
    rejects(
        &text,
        "timing.route_table_quota",
        line_of(&text, "[timing]"),
        message,
    );
}

#[test]
fn summary_counts_the_default_lab() {
    let summary = accepts(DEFAULT_TOPOLOGY).summary();
    assert_eq!(
        (summary.hosts, summary.enis_in_use, summary.enis),
        (3, 3, 17)
    );
    assert_eq!(
        summary.to_string(),
        "1 cluster, 3 hosts, 3 of 17 ENIs in use, 3 segments, 3 VMs, 2 subnets, 1 instance"
    );
}

// ---------------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------------

/// The default lab with `lines` in its `[links]` table.
fn with_links(lines: &str) -> String {
    edit("[links]\n", &format!("[links]\n{lines}\n"))
}

#[test]
fn links_take_kind_defaults_and_what_the_topology_sets() {
    let t = accepts(&with_links(
        "ec2 = { rate = \"10Gbit/s\" }\n[links.overrides]\n\"esxi-1--underlay\" = { delay = \"80us\" }",
    ));
    let ec2 = t.links.spec("ec2-1--eni-ec2-1", vmcnet_topo::LinkKind::Ec2);
    assert_eq!(ec2.rate, vmcnet_topo::Rate::gbit(10));
    let u = t
        .links
        .spec("esxi-1--underlay", vmcnet_topo::LinkKind::Underlay);
    assert_eq!(u.delay, std::time::Duration::from_micros(80));
    assert_eq!(u.rate, vmcnet_topo::LinkKind::Underlay.default_spec().rate);
}

#[test]
fn rejects_a_bad_rate_a_tiny_queue_a_long_delay_and_an_unknown_link() {
    let text = with_links("vnic = { rate = \"fast\" }");
    rejects(
        &text,
        "links.vnic.rate",
        line_of(&text, "vnic ="),
        "not a rate",
    );
    let text = with_links("eni = { queue = \"1KiB\" }");
    rejects(
        &text,
        "links.eni.queue",
        line_of(&text, "eni ="),
        "cannot hold one full frame",
    );
    let text = with_links("s3 = { delay = \"1min\" }");
    rejects(
        &text,
        "links.s3.delay",
        line_of(&text, "s3 ="),
        "longer than",
    );
    let text = with_links("[links.overrides]\n\"web-1--esxi-9\" = { rate = \"1Gbit/s\" }");
    rejects(
        &text,
        "links.overrides.web-1--esxi-9",
        line_of(&text, "\"web-1--esxi-9\""),
        "no link is named `web-1--esxi-9`",
    );
    let text = with_links("eni = { queue = \"2KiB\" }");
    rejects(
        &text,
        "links.eni.queue",
        line_of(&text, "eni ="),
        "cannot hold one full frame",
    );
    let text = with_links("ec2 = { mtu = 100 }");
    rejects(
        &text,
        "links.ec2.mtu",
        line_of(&text, "ec2 ="),
        "outside 576..=9216",
    );
    let text = with_links("underlay = { mtu = 1500 }");
    rejects(
        &text,
        "links.underlay.mtu",
        line_of(&text, "underlay ="),
        "too small for",
    );
    let text = with_links("vnic = { speed = \"1Gbit/s\" }");
    rejects(
        &text,
        "links.vnic.speed",
        line_of(&text, "speed"),
        "unknown field",
    );
}

// ---------------------------------------------------------------------------------------------
// Custom route tables
// ---------------------------------------------------------------------------------------------

/// The default lab with a second subnet and a custom route table written as `table`.
fn with_route_table(table: &str) -> String {
    let text = edit(
        r#"subnets = [{ name = "subnet-ec2", cidr = "172.31.16.0/20" }]"#,
        r#"subnets = [{ name = "subnet-ec2", cidr = "172.31.16.0/20" }, { name = "subnet-app", cidr = "172.31.32.0/20" }]"#,
    );
    format!("{text}\n[[vpc.route_tables]]\n{table}\n")
}

#[test]
fn a_custom_route_table_is_accepted() {
    let t = accepts(&with_route_table(
        "id = \"rtb-app\"\nsubnets = [\"subnet-app\"]\nroutes = [{ destination = \"192.168.1.0/24\", target = \"eni-2\" }]",
    ));
    assert_eq!(t.vpc.route_tables[0].routes[0].target, "eni-2");
    accepts(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom-route-table.toml"),
        )
        .unwrap(),
    );
}

#[test]
fn rejects_a_custom_route_table_that_breaks_a_rule() {
    let cases = [
        ("id = \"main\"", "vpc.route_tables[0].id", "rtb-"),
        ("id = \"rtb-main\"", "vpc.route_tables[0].id", "main table"),
        (
            "id = \"rtb-a\"\nsubnets = [\"subnet-connected\"]",
            "vpc.route_tables[0].subnets[0]",
            "connected subnet",
        ),
        (
            "id = \"rtb-a\"\nsubnets = [\"subnet-nope\"]",
            "vpc.route_tables[0].subnets[0]",
            "no subnet named",
        ),
        (
            "id = \"rtb-a\"\nroutes = [{ destination = \"172.31.0.0/16\", target = \"eni-1\" }]",
            "vpc.route_tables[0].routes[0].destination",
            "local route",
        ),
        (
            "id = \"rtb-a\"\nroutes = [{ destination = \"192.168.1.0/24\", target = \"eni-99\" }]",
            "vpc.route_tables[0].routes[0].target",
            "none of vpc.enis",
        ),
        (
            "id = \"rtb-a\"\nroutes = [{ destination = \"192.168.1.0/24\", target = \"eni-1\" }, { destination = \"192.168.1.0/24\", target = \"eni-2\" }]",
            "vpc.route_tables[0].routes[1].destination",
            "two routes",
        ),
        (
            "id = \"rtb-a\"\nroutes = [{ destination = \"192.168.1.1/24\", target = \"eni-1\" }]",
            "vpc.route_tables[0].routes[0].destination",
            "host bits",
        ),
    ];
    for (table, field, message) in cases {
        let text = with_route_table(table);
        let line = line_of(&text, table.lines().find(|l| !l.is_empty()).unwrap());
        let err = match parse(&text, ORIGIN) {
            Ok(_) => panic!("accepted {table}"),
            Err(e) => e,
        };
        assert_eq!(err.field, field, "{err}");
        assert!(err.message.contains(message), "{err}");
        // The line is that of the value, or of the table holding it.
        assert!(
            err.line.is_some_and(|l| l >= line - 1),
            "{err} (table at line {line})"
        );
    }
    let two = with_route_table("id = \"rtb-a\"\nsubnets = [\"subnet-app\"]");
    let twice =
        format!("{two}\n[[vpc.route_tables]]\nid = \"rtb-b\"\nsubnets = [\"subnet-app\"]\n");
    rejects(
        &twice,
        "vpc.route_tables[1].subnets[0]",
        line_of(&twice, "id = \"rtb-b\"") + 1,
        "associated with rtb-a already",
    );
    let dup = format!("{two}\n[[vpc.route_tables]]\nid = \"rtb-a\"\n");
    rejects(
        &dup,
        "vpc.route_tables[1].id",
        dup[..dup.rfind("id = \"rtb-a\"").unwrap()]
            .matches('\n')
            .count()
            + 1,
        "names two route tables",
    );
}

#[test]
fn rejects_names_that_are_not_safe_or_that_the_lab_takes() {
    let field = "sddc.segments[0].vms[0].name";
    for bad in [
        "../../../escaped",
        "a/b",
        "-lead",
        ".hidden",
        "tab\\there",
        "esc\\u001b[31m",
        "sp ace",
    ] {
        let text = edit("name = \"web-1\"", &format!("name = \"{bad}\""));
        rejects(&text, field, 22, "a name is 1 to 63 letters");
    }
    let long = "a".repeat(64);
    let text = edit("name = \"web-1\"", &format!("name = \"{long}\""));
    rejects(&text, field, 22, "a name is 1 to 63 letters");
    accepts(&edit(
        "name = \"web-1\"",
        &format!("name = \"{}\"", &long[1..]),
    ));
    accepts(&edit("name = \"web-1\"", "name = \"Web_1.a-b\""));

    // Names every lab gives its own nodes.
    for reserved in ["underlay", "vpc-router"] {
        let text = edit("\"esxi-3\"]", &format!("\"{reserved}\"]"));
        rejects(
            &text,
            "sddc.clusters[0].hosts[2]",
            10,
            &format!("`{reserved}` already names a node of every lab"),
        );
    }
    // An instance's ENI is `eni-<instance>`: it may not clash with an ENI id or another name.
    let text = edit("id = \"eni-1\"", "id = \"eni-ec2-1\"");
    let line = line_of(&text, "instances = [");
    rejects(
        &text,
        "vpc.instances[0].name",
        line,
        "instance `ec2-1` has an ENI named `eni-ec2-1`, which already names vpc.enis[0].id",
    );
}

#[test]
fn rejects_vpc_and_subnet_sizes_aws_does_not_allow_an_empty_cluster_and_a_tiny_segment() {
    let text = edit("cidr = \"172.31.0.0/16\"", "cidr = \"172.0.0.0/8\"");
    rejects(
        &text,
        "vpc.cidr",
        line_of(&text, "cidr = \"172.0.0.0/8\""),
        "a /16 to a /28",
    );
    let text = edit(
        "{ name = \"subnet-ec2\", cidr = \"172.31.16.0/20\" }",
        "{ name = \"subnet-ec2\", cidr = \"172.31.16.0/29\" }",
    );
    rejects(
        &text,
        "vpc.subnets[0].cidr",
        line_of(&text, "subnet-ec2\", cidr"),
        "a subnet is a /16 to a /28",
    );
    let text = edit(
        "hosts = [\"esxi-1\", \"esxi-2\", \"esxi-3\"]",
        "hosts = [\"esxi-1\", \"esxi-2\", \"esxi-3\"]\n\n[[sddc.clusters]]\nname = \"cluster-2\"\nhosts = []",
    );
    rejects(
        &text,
        "sddc.clusters[1].hosts",
        line_of(&text, "hosts = []"),
        "cluster-2 has no host",
    );
    let text = edit("cidr = \"192.168.1.0/24\"", "cidr = \"192.168.1.0/32\"");
    rejects(
        &text,
        "sddc.segments[0].cidr",
        line_of(&text, "192.168.1.0/32"),
        "no room for its gateway",
    );
}

#[test]
fn an_overlap_names_both_values_and_both_lines_and_a_duplicate_key_is_named() {
    let text = edit("cidr = \"172.31.0.0/16\"", "cidr = \"10.2.0.0/16\"");
    let vpc_line = line_of(&text, "\ncidr = \"10.2.0.0/16\"") + 1;
    let err = rejects(
        &text,
        "sddc.management_cidr",
        line_of(&text, "management_cidr"),
        "10.2.0.0/16 overlaps the VPC CIDR 10.2.0.0/16",
    );
    assert!(
        err.message
            .ends_with(&format!("(vpc.cidr, line {vpc_line})")),
        "{err}"
    );
    // Two segments: the second names the first, and its line.
    let text = edit("cidr = \"192.168.2.0/24\"", "cidr = \"192.168.1.0/25\"");
    let err = rejects(
        &text,
        "sddc.segments[1].cidr",
        line_of(&text, "192.168.1.0/25"),
        "overlaps segment sddc-cgw-network-1 (192.168.1.0/24)",
    );
    let first = line_of(&text, "cidr = \"192.168.1.0/24\"");
    assert!(
        err.message
            .ends_with(&format!("(sddc.segments[0].cidr, line {first})")),
        "{err}"
    );
    let text = edit("name = \"default\"", "name = \"default\"\nname = \"again\"");
    rejects(
        &text,
        "",
        line_of(&text, "name = \"again\""),
        "duplicate key `name`",
    );
}
