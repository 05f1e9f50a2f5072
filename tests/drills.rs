//! The failover drills shipped in scripts/drills, run as CI tests: each passes with its
//! expectations (formulas of the timing parameters), a change of behaviour makes it fail, a
//! change of one timing moves exactly the outages that depend on it, and two runs give the same
//! report.

mod common;
use common::{default_topo, root};

use std::time::Duration;

use vmcnet::control::action::Action;
use vmcnet::drill::{run_drill, DrillFile, DrillReport, RunOptions};
use vmcnet::node::endpoint::AppReport;
use vmcnet_topo::{edge_iface_end, link_name, LinkKind, Topology, EDGE_HA_IFACE, UNDERLAY};

fn drill(name: &str) -> DrillFile {
    DrillFile::load(&root().join(format!("scripts/drills/{name}.toml"))).unwrap()
}

fn run(topo: &Topology, d: &DrillFile) -> DrillReport {
    run_drill(topo, d, &RunOptions::default()).unwrap()
}

/// How long a BFD packet takes from one Edge to the other on the lab of `topo`: out of the
/// sender's HA vNIC, across both hosts' underlay links in Geneve, into the receiver's vNIC, each
/// link's delay plus the packet's serialization at its rate.
fn bfd_path(topo: &Topology) -> Duration {
    let e = &topo.sddc.edges;
    bfd_path_between(
        topo,
        (&e.active.name, &e.active.host),
        (&e.standby.name, &e.standby.host),
    )
}

/// How long a BFD packet takes from one Edge to the other, each `(edge, host)`: out of its
/// HA vNIC, across the underlay in Geneve when the hosts differ, into the other's.
fn bfd_path_between(topo: &Topology, a: (&str, &str), b: (&str, &str)) -> Duration {
    let bfd_frame = 14 + 20 + 8 + vmcnet::wire::bfd::LEN;
    let in_geneve = bfd_frame + vmcnet::wire::geneve::OVERHEAD;
    let mut path = Duration::ZERO;
    for (edge, host) in [a, b] {
        let vnic = link_name(&edge_iface_end(edge, EDGE_HA_IFACE), host);
        let vnic = topo.links.spec(&vnic, LinkKind::Vnic);
        path += vnic.delay + vnic.rate.serialization(bfd_frame);
        if a.1 != b.1 {
            let underlay = link_name(host, UNDERLAY);
            let underlay = topo.links.spec(&underlay, LinkKind::Underlay);
            path += underlay.delay + underlay.rate.serialization(in_geneve);
        }
    }
    path
}

/// The first instant at or after `t` that is a multiple of `interval`: when a BFD session
/// started (or a path healed) at `t` sends its next packet.
fn next_bfd_tx(t: vmcnet::time::Instant, interval: Duration) -> vmcnet::time::Instant {
    let i = interval.as_nanos() as u64;
    vmcnet::time::Instant::from_nanos(t.as_nanos().div_ceil(i) * i)
}

/// When the standby, cut off from the active Edge at `cut` (a BFD cut, or the active Edge's
/// host failing), takes the active role: the last packet sent before the cut (one sent at the
/// cut itself is lost, as the action goes first) arrives a path later; the peer is dead a
/// detection time after that, and the promotion lands `promotion` later.
fn promoted_after_cut(topo: &Topology, cut: vmcnet::time::Instant) -> vmcnet::time::Instant {
    let t = &topo.timing;
    let next = next_bfd_tx(cut, t.bfd_interval);
    let last_sent =
        vmcnet::time::Instant::from_nanos(next.as_nanos() - t.bfd_interval.as_nanos() as u64);
    last_sent + bfd_path(topo) + t.bfd_interval * t.bfd_multiplier + t.promotion
}

/// When sessions that are Down come Up once the path between them is whole again at `healed`:
/// the packets sent at the next interval (Down) make both Init, the next ones (Init) Up.
fn up_after_heal(topo: &Topology, healed: vmcnet::time::Instant) -> vmcnet::time::Instant {
    let i = topo.timing.bfd_interval;
    next_bfd_tx(healed, i) + i + bfd_path(topo)
}

/// `expected` as probes every `interval` see it: from `expected` to one interval more.
fn within_one_probe(outage: Duration, expected: Duration, interval: Duration) -> bool {
    outage >= expected && outage <= expected + interval
}

/// The outage there and back of the drill's first probe item.
fn outages(r: &DrillReport) -> [Duration; 2] {
    let p = r.steps[0].probe.as_ref().expect("a probe");
    [p.there.outage, p.back.outage]
}

#[test]
fn edge_vmotion_passes_and_fails_when_the_reconciler_is_off() {
    let topo = default_topo();
    let r = run(&topo, &drill("edge-vmotion"));
    assert!(r.passed, "{r}");
    let [there, back] = outages(&r);
    let t = &topo.timing;
    assert_eq!(there, t.vmotion_stun);
    assert_eq!(
        back,
        t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route)
    );
    // The TCP stream across the move survives, every byte intact, after a stall that covers
    // the outage back and ends within TCP's exponential backoff after it.
    let tcp = &r.steps[1];
    let AppReport::TcpSend(s) = &tcp.app else {
        panic!("a TCP stream: {r}")
    };
    assert!(tcp.passed, "{r}");
    let conn = tcp.server_connection.as_ref().unwrap();
    assert!(conn.pattern_ok && conn.bytes == s.requested);
    assert_eq!(s.requested, 10_000_000 / 8 * 12, "10 Mbit/s for 12 s");
    assert!(s.retransmits > 0);
    let stun = vmcnet::time::Instant::from_millis(1_000);
    let from = s.longest_stall_from.expect("a stall");
    let recovered = from + s.longest_stall;
    let back_again = stun + back;
    assert!(
        from <= stun + Duration::from_millis(110),
        "stalled at {from}"
    );
    assert!(recovered >= back_again, "recovered at {recovered}");
    // Each retransmission timeout at most doubles the one before (from smoltcp's 1 s
    // minimum): the first one after the outage comes within the time stalled so far, plus one.
    let bound = back_again + (back_again - from) + Duration::from_secs(1);
    assert!(
        recovered <= bound,
        "recovered at {recovered}, after {bound}"
    );

    // Nothing follows the Edge: traffic into the SDDC never comes back, and the drill says so;
    // the TCP stream gives up.
    let mut off = drill("edge-vmotion");
    off.reconciler = vmcnet::drill::file::Reconciler::Off;
    let r = run(&topo, &off);
    assert!(!r.passed, "{r}");
    assert!(
        r.steps[0]
            .failures
            .iter()
            .any(|f| f.contains("outage back")),
        "{r}"
    );
    assert!(
        r.steps[1]
            .failures
            .iter()
            .any(|f| f.contains("transfer failed")),
        "{r}"
    );
}

#[test]
fn one_timing_moves_exactly_the_outages_that_depend_on_it() {
    let mut topo = default_topo();
    let before = outages(&run(&topo, &drill("edge-vmotion")));
    topo.timing.replace_route += Duration::from_secs(1);
    let r = run(&topo, &drill("edge-vmotion"));
    assert!(r.passed, "the formulas follow the timing: {r}");
    let after = outages(&r);
    assert_eq!(
        after[0], before[0],
        "SDDC -> VPC does not wait for the routes"
    );
    assert_eq!(after[1], before[1] + Duration::from_secs(1));
    topo.timing.vmotion_stun += Duration::from_millis(100);
    let both = outages(&run(&topo, &drill("edge-vmotion")));
    assert_eq!(both[0], after[0] + Duration::from_millis(100));
    assert_eq!(both[1], after[1] + Duration::from_millis(100));
}

#[test]
fn eni_reattach_passes_and_costs_several_times_the_ip_move_into_the_sddc() {
    let topo = default_topo();
    let slow = run(&topo, &drill("edge-vmotion-eni-reattach"));
    assert!(slow.passed, "{slow}");
    let fast = run(&topo, &drill("edge-vmotion"));
    let (s, f) = (outages(&slow)[1], outages(&fast)[1]);
    let t = &topo.timing;
    assert_eq!(s, t.vmotion_stun + t.control_plane_notice + t.eni_reattach);
    assert!(s > f * 4, "{s:?} vs {f:?}");
    // The report runs the drill again with ip-move and gives the ratio of the two, each way.
    let c = slow.strategies.as_ref().expect("a comparison");
    let ip_move_back =
        t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route);
    assert_eq!(c.items[0].ip_move_s[1], ip_move_back.as_secs_f64());
    assert_eq!(c.items[0].eni_reattach_s[1], s.as_secs_f64());
    let ratio = c.items[0].ratio[1].unwrap();
    assert!((ratio - s.as_secs_f64() / ip_move_back.as_secs_f64()).abs() < 1e-9);
    assert!(fast.strategies.is_none(), "ip-move runs once");
}

#[test]
fn a_timed_drill_gives_the_same_report_twice() {
    let topo = default_topo();
    let a = serde_json::to_string(&run(&topo, &drill("edge-vmotion"))).unwrap();
    let b = serde_json::to_string(&run(&topo, &drill("edge-vmotion"))).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_bad_formula_is_an_error_naming_the_item_and_field() {
    let topo = default_topo();
    // Caught when the file is read: the field and its own line.
    let path = root().join("scripts/drills/edge-vmotion.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    let bad = src.replacen(
        "outage_back = \"vmotion_stun +",
        "outage_back = \"stun +",
        1,
    );
    assert_ne!(bad, src);
    let line = bad.lines().position(|l| l.contains("\"stun +")).unwrap() + 1;
    let e = DrillFile::parse(&bad, "d.toml").unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("d.toml:{line}: traffic[0].expect.outage_back:"))
            && e.contains("`stun`"),
        "{e}"
    );
    // Set after reading, it is still caught before the drill runs.
    let mut d = drill("edge-vmotion");
    if let vmcnet::drill::Traffic::Probe { expect, .. } = &mut d.traffic[0] {
        expect.outage_back = Some("stun + 1s".into());
    }
    let e = run_drill(&topo, &d, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("traffic[0].expect.outage_back") && e.contains("`stun`"),
        "{e}"
    );
}

#[test]
fn drill_file_errors_name_the_field_on_its_own_line() {
    let topo = default_topo();
    let item = |body: &str| {
        format!("name = \"t\"\n\n[[traffic]]\nkind = \"ping\"\nfrom = \"web-1\"\n{body}\n")
    };
    // (the item's lines after `from`, the error's field, a word of its message)
    let cases = [
        (
            "to = \"ec2-1\"\ncount = 0",
            "traffic[0].count",
            "cannot fail",
        ),
        (
            "to = \"ec2-1\"\nexpect = { hops = [\"*\"] }",
            "traffic[0].expect.hops",
            "does not apply",
        ),
        (
            "to = \"ec2-1\"\ncount = 2\nexpect = { received = 3 }",
            "traffic[0].expect.received",
            "cannot pass",
        ),
    ];
    for (body, field, word) in cases {
        let src = item(body);
        let last = src.lines().count();
        let e = DrillFile::parse(&src, "d.toml").unwrap_err().to_string();
        assert!(e.starts_with(&format!("d.toml:{last}: {field}: ")), "{e}");
        assert!(e.contains(word), "{e}");
    }
    let tcp = "name = \"t\"\n[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nbytes = 10\nport = 0\n";
    let e = DrillFile::parse(tcp, "d.toml").unwrap_err().to_string();
    assert!(e.starts_with("d.toml:7: traffic[0].port: "), "{e}");
    let seg = "name = \"t\"\n[[action]]\nkind = \"add-segment\"\nat = \"1s\"\nname = \"../x\"\ncidr = \"192.168.9.0/24\"\n";
    let e = DrillFile::parse(seg, "d.toml").unwrap_err().to_string();
    assert!(e.starts_with("d.toml:5: action[0].name: "), "{e}");
    let probe = "name = \"t\"\n[[traffic]]\nkind = \"probe\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nduration = \"5ms\"\ninterval = \"10ms\"\n";
    let e = DrillFile::parse(probe, "d.toml").unwrap_err().to_string();
    assert!(e.starts_with("d.toml:6: traffic[0].duration: "), "{e}");
    // Names the topology lacks are found when the drill runs, at their own line too.
    let src = item("to = \"nowhere\"");
    let d = DrillFile::parse(&src, "d.toml").unwrap();
    let e = run_drill(&topo, &d, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("d.toml:6: traffic[0].to: `nowhere`"), "{e}");
}

#[test]
fn edge_host_failure_fails_over_by_bfd_and_the_enis_go_3_2_3() {
    let topo = default_topo();
    let r = run(&topo, &drill("edge-host-failure"));
    assert!(r.passed, "{r}");
    let t = &topo.timing;
    // Probes go every millisecond.
    let failed = vmcnet::time::Instant::from_millis(1_000);
    let failover = promoted_after_cut(&topo, failed) - failed;
    let probe = Duration::from_millis(1);
    let [there, back] = outages(&r);
    assert!(within_one_probe(there, failover, probe), "{there:?}");
    let reconciled = failover + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route);
    assert!(within_one_probe(back, reconciled, probe), "{back:?}");
    assert_eq!(took(&r, "make edge-2 the active Edge"), failed + failover);
    // ENIs in use: 3, then 2 once vSphere HA declares esxi-2 dead and its ENI is detached, then
    // 3 when the replacement host takes an available one.
    assert_eq!(r.before.sddc_enis_in_use(), 3);
    assert_eq!(
        took(&r, "detach eni-2"),
        failed + t.ha_host_dead + t.eni_reattach / 2
    );
    assert_eq!(took(&r, "add esxi-4"), failed + t.replacement_host);
    assert_eq!(
        took(&r, "attach eni-2 to esxi-4"),
        failed + t.replacement_host + t.eni_reattach / 2
    );
    assert_eq!(
        took(&r, "HA restarts edge-1"),
        failed + t.ha_host_dead + t.ha_restart
    );
    assert_eq!(r.after.sddc_enis_in_use(), 3);
    let after: Vec<_> = r
        .after
        .network_interfaces
        .iter()
        .filter_map(|e| Some((e.network_interface_id.as_str(), e.host.as_deref()?)))
        .collect();
    // The replacement takes the first available ENI when it joins: by then, esxi-2's own.
    assert!(after.contains(&("eni-2", "esxi-4")) && !after.iter().any(|(_, h)| *h == "esxi-2"));
}

#[test]
fn standby_host_failure_loses_nothing_and_ha_restarts_what_ran_there() {
    let topo = default_topo();
    let r = run(&topo, &drill("standby-host-failure"));
    assert!(r.passed, "{r}");
    let p = r.steps[0].probe.as_ref().unwrap();
    assert_eq!((p.there.lost, p.back.lost), (0, 0));
    let restarted: Vec<String> = r
        .timeline
        .iter()
        .filter(|e| e.action.to_string().starts_with("HA restarts") && e.took_effect_at.is_some())
        .map(|e| e.object.clone())
        .collect();
    assert_eq!(restarted, vec!["app-1", "edge-2"]);
}

#[test]
fn segment_churn_programs_routes_up_to_the_quota_and_reports_the_rest() {
    let topo = vmcnet_topo::load(&root().join("topo/examples/small-quota.toml")).unwrap();
    let d = drill("segment-churn");
    let r = run(&topo, &d);
    assert!(r.passed, "{r}");
    assert_eq!(r.unprogrammed, vec!["churn-c"]);
    let full = r
        .timeline
        .iter()
        .filter(|e| e.error.as_deref().is_some_and(|w| w.contains("full")))
        .count();
    assert_eq!(
        full, 3,
        "churn-b and churn-c at first, churn-c once churn-a made room"
    );
    let routes = &r.after.route_tables[0].routes;
    assert_eq!(routes.len() as u32, topo.timing.route_table_quota);
    // The expectation can fail: on the default lab's quota every segment gets its route.
    let r = run(&default_topo(), &d);
    assert!(r.unprogrammed.is_empty());
    assert!(
        !r.passed && r.failures[0].contains("expected [churn-c]"),
        "{r}"
    );
}

#[test]
fn a_broken_reconciler_leaves_the_vpc_sending_to_the_old_host_until_healed() {
    let topo = default_topo();
    let r = run(&topo, &drill("reconciler-broken"));
    assert!(r.passed, "{r}");
    // While broken, the routes and the uplink address stayed on eni-2 (esxi-2's).
    let failed: Vec<_> = r
        .timeline
        .iter()
        .filter(|e| e.action.to_string() == "reconcile" && e.error.is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", r.timeline);
    let dropped_at_old_host: u64 = r
        .drops
        .iter()
        .filter(|d| d.node == "esxi-2" && d.counter == "rx_dropped_uplink_no_owner")
        .map(|d| d.count)
        .sum();
    let p = r.steps[0].probe.as_ref().unwrap();
    assert_eq!(
        dropped_at_old_host,
        u64::from(p.back.lost) - 50,
        "lost at esxi-2 but the stun's"
    );
}

/// When the first action whose text is `what` (or `what` and more words) took effect.
fn took(r: &DrillReport, what: &str) -> vmcnet::time::Instant {
    r.timeline
        .iter()
        .find(|e| {
            let s = e.action.to_string();
            s == what || s.starts_with(&format!("{what} "))
        })
        .and_then(|e| e.took_effect_at)
        .unwrap_or_else(|| panic!("{what} in {r}"))
}

/// ENIs of the SDDC in use after each attach or detach took effect, in the order they did,
/// starting from `start`.
fn enis_in_use_over_time(r: &DrillReport, start: usize) -> Vec<usize> {
    let mut changes: Vec<_> = r
        .timeline
        .iter()
        .filter_map(|e| {
            let step = match e.action {
                Action::AttachEni { .. } => 1,
                Action::DetachEni { .. } => -1,
                _ => return None,
            };
            Some((e.took_effect_at?, step))
        })
        .collect();
    changes.sort_by_key(|(at, _)| *at);
    let mut n = start as i64;
    let mut seen = vec![start];
    for (_, step) in changes {
        n += step;
        seen.push(n as usize);
    }
    seen
}

#[test]
fn maintenance_rolling_takes_a_spare_each_time_and_the_enis_go_3_4_3() {
    let topo = default_topo();
    let r = run(&topo, &drill("maintenance-rolling"));
    assert!(r.passed, "{r}");
    let t = &topo.timing;
    let [there, back] = outages(&r);
    assert_eq!(there, t.vmotion_stun);
    assert_eq!(
        back,
        t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route)
    );
    assert_eq!(r.before.sddc_enis_in_use(), 3);
    assert_eq!(enis_in_use_over_time(&r, 3), [3, 4, 3, 4, 3, 4, 3]);
    assert_eq!(r.after.sddc_enis_in_use(), 3);
    // Every original host left, each after its spare took an ENI.
    let first = vmcnet::time::Instant::from_millis(1_000);
    let spare_ready = first + t.replacement_host + t.eni_reattach / 2;
    assert_eq!(
        took(&r, "resume web-1 on esxi-4"),
        spare_ready + t.vmotion_stun
    );
    // esxi-1 held no Edge: its ENI goes as soon as it is empty.
    assert_eq!(
        took(&r, "remove esxi-1"),
        spare_ready + t.vmotion_stun + t.eni_reattach / 2
    );
    for old in ["esxi-1", "esxi-2", "esxi-3"] {
        assert!(
            !r.after
                .network_interfaces
                .iter()
                .any(|e| e.host.as_deref() == Some(old)),
            "{old} still has an ENI"
        );
    }
    // esxi-2 held the active Edge: its ENI is detached only once the reconciler has moved the
    // uplink IP and re-targeted every route, so no route is left on a detached ENI.
    let detach = r
        .timeline
        .iter()
        .find(|e| e.action.to_string() == "detach eni-2")
        .unwrap();
    let last_replace = r
        .timeline
        .iter()
        .filter(|e| matches!(e.action, Action::ReplaceRoute { .. }))
        .filter_map(|e| e.took_effect_at)
        .max()
        .unwrap();
    assert_eq!(detach.requested_at, last_replace);
    assert!(r.after.route_tables[0]
        .routes
        .iter()
        .all(|route| route.state == "active"));
}

#[test]
fn maintenance_on_a_full_cluster_uses_the_17th_eni_and_waits_for_a_free_one() {
    let topo = vmcnet_topo::scale::scaled(1, 16, 10);
    let maintenance = |at: &str, host: &str| {
        format!("[[action]]\nkind = \"maintenance\"\nat = \"{at}\"\nhost = \"{host}\"\n")
    };
    let src = format!(
        "name = \"full\"\n{}{}",
        maintenance("1s", "esxi-5"),
        maintenance("2s", "esxi-6")
    );
    let d = DrillFile::parse(&src, "full").unwrap();
    let r = run(&topo, &d);
    assert!(r.passed, "{r}");
    assert_eq!(r.before.sddc_enis_in_use(), 16);
    // Two maintenances asked for at once: VMC takes one host of a cluster at a time, so the
    // first spare takes the 17th ENI, and esxi-6's spare is asked for once esxi-5 has left,
    // and takes the ENI esxi-5 gave back.
    assert_eq!(enis_in_use_over_time(&r, 16), [16, 17, 16, 17, 16], "{r}");
    assert_eq!(r.after.sddc_enis_in_use(), 16);
    let t = &topo.timing;
    // What ran on esxi-5 moves to the spare once it has its ENI; then esxi-5's ENI goes.
    let evacuated = took(&r, "attach eni-17") + t.vmotion_stun;
    assert_eq!(took(&r, "resume vm-5 on esxi-17"), evacuated);
    assert_eq!(took(&r, "detach eni-5"), evacuated + t.eni_reattach / 2);
    assert_eq!(took(&r, "remove esxi-5"), took(&r, "detach eni-5"));
    assert_eq!(
        took(&r, "add esxi-18"),
        took(&r, "remove esxi-5") + t.replacement_host
    );
    assert_eq!(
        took(&r, "attach eni-5 to esxi-18"),
        took(&r, "add esxi-18") + t.eni_reattach / 2
    );
    assert!(r.timeline.iter().all(|e| e.error.is_none()), "{r}");
}

#[test]
fn a_tcp_item_must_say_what_it_sends_and_start_only_in_a_timed_drill() {
    let topo = default_topo();
    let item = |fields: &str, timed: bool| {
        let action = if timed {
            "[[action]]\nkind = \"vmotion\"\nat = \"1s\"\nvm = \"edge-1\"\nto = \"esxi-3\"\n"
        } else {
            ""
        };
        let src = format!(
            "name = \"t\"\n{action}[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\n{fields}\n"
        );
        let d = DrillFile::parse(&src, "t.toml").map_err(|e| e.to_string())?;
        run_drill(&topo, &d, &RunOptions::default())
            .map(|r| r.passed)
            .map_err(|e| e.to_string())
    };
    let err = |fields: &str, timed: bool| item(fields, timed).unwrap_err();
    assert!(err("", false).contains("bytes: missing"));
    assert!(err("bytes = 0", false).contains("bytes: sends nothing"));
    assert!(err("duration = \"5s\"", true).contains("duration: needs `rate`"));
    assert!(err("rate = \"unlimited\"\nbytes = 10", false).contains("rate:"));
    assert!(err("rate = \"1Mbit/s\"\nduration = \"1s\"\nbytes = 10", true).contains("bytes:"));
    assert!(err("bytes = 1000\nstart = \"1s\"", false).contains("start: applies only"));
    // A rate-paced stream runs in a plain drill too, and at its rate: 1 Mbit/s for 2 s.
    assert!(item("rate = \"1Mbit/s\"\nduration = \"2s\"", false).unwrap());
    assert!(item("bytes = 100000\nstart = \"2s\"", true).unwrap());
}

#[test]
fn a_paced_stream_takes_as_long_as_its_rate_says() {
    let topo = default_topo();
    let src = "name = \"t\"\n[[traffic]]\nkind = \"tcp\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nrate = \"4Mbit/s\"\nduration = \"3s\"\n";
    let r = run(&topo, &DrillFile::parse(src, "t.toml").unwrap());
    assert!(r.passed, "{r}");
    let AppReport::TcpSend(s) = &r.steps[0].app else {
        panic!("{r}")
    };
    assert_eq!(s.requested, 4_000_000 / 8 * 3);
    // The last block is written once what came before falls behind the rate, then crosses a
    // lab whose links take microseconds: it ends past 3 s minus one block's time at the rate,
    // and not long after 3 s.
    let took = s.finished.unwrap() - s.started;
    let block = Duration::from_secs_f64(128.0 * 1024.0 * 8.0 / 4e6);
    assert!(took >= Duration::from_secs(3) - block, "took {took:?}");
    assert!(
        took < Duration::from_secs(3) + Duration::from_millis(100),
        "took {took:?}"
    );
}

#[test]
fn s3_flow_keeps_its_nat_across_the_move_and_waits_only_for_the_ip() {
    let topo = default_topo();
    let r = run(&topo, &drill("s3-during-vmotion"));
    assert!(r.passed, "{r}");
    let tcp = &r.steps[0];
    let AppReport::TcpSend(s) = &tcp.app else {
        panic!("{r}")
    };
    let conn = tcp.server_connection.as_ref().unwrap();
    assert_eq!(
        *conn.peer.ip(),
        topo.sddc.edges.uplink_ip,
        "SNAT to the uplink"
    );
    assert!(conn.pattern_ok && conn.bytes == s.requested);
    // Replies to the uplink address flow again once the IP has moved: the stall covers that,
    // and ends within TCP's backoff after it.
    let t = &topo.timing;
    let stun = vmcnet::time::Instant::from_millis(1_000);
    let ip_moved = stun + t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip;
    let from = s.longest_stall_from.expect("a stall");
    let recovered = from + s.longest_stall;
    assert!(
        from <= stun + Duration::from_millis(110),
        "stalled at {from}"
    );
    assert!(recovered >= ip_moved, "recovered at {recovered}");
    let bound = ip_moved + (ip_moved - from) + Duration::from_secs(1);
    assert!(
        recovered <= bound,
        "recovered at {recovered}, after {bound}"
    );
}

#[test]
fn a_custom_route_table_stays_on_the_old_eni_while_the_main_table_follows_the_edge() {
    let topo = vmcnet_topo::load(&root().join("topo/examples/custom-route-table.toml")).unwrap();
    let d = drill("custom-route-table");
    let r = run(&topo, &d);
    assert!(r.passed, "{r}");
    // Into ec2-1's subnet (the main table): back after the reconciler; into ec2-2's (rtb-app):
    // still out when the probes end, every probe from the stun on lost.
    let t = &topo.timing;
    let main = r.steps[0].probe.as_ref().unwrap();
    assert_eq!(
        main.back.outage,
        t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route)
    );
    let custom = r.steps[1].probe.as_ref().unwrap();
    let vmcnet::node::endpoint::AppReport::Probe(p) = &r.steps[1].app else {
        panic!("{r}")
    };
    let stun = vmcnet::time::Instant::from_millis(1_000);
    assert_eq!(custom.back.first_lost_sent, Some(stun));
    assert_eq!(custom.back.last_lost_sent, Some(p.sent_at(p.sent - 1)));
    assert_eq!(
        custom.there.outage, t.vmotion_stun,
        "SDDC -> VPC does not use the VPC's tables"
    );

    // The checks can fail: the custom table does not follow the Edge, and an outage that ends
    // is not open.
    let mut wrong = d.clone();
    wrong.expect.routes[1].target = Some("eni-3".into());
    let r = run(&topo, &wrong);
    assert!(!r.passed);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("rtb-app: 192.168.1.0/24 targets eni-2 at the end, expected eni-3")),
        "{r}"
    );
    let mut closed = drill("edge-vmotion");
    if let vmcnet::drill::Traffic::Probe { expect, .. } = &mut closed.traffic[0] {
        expect.outage_back = Some("open".into());
    }
    let r = run(&default_topo(), &closed);
    assert!(
        r.steps[0]
            .failures
            .iter()
            .any(|f| f.contains("the outage ended")),
        "{r}"
    );
    // An expectation that names nothing the lab has is an error before the drill runs.
    let mut nothing = d.clone();
    nothing.expect.routes[1].table = "rtb-nope".into();
    let err = run_drill(&topo, &nothing, &RunOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("expect.routes[1]: no route table `rtb-nope`"),
        "{err}"
    );
    let mut idle = d;
    idle.expect.enis[0].status = None;
    idle.expect.enis[0].host = None;
    let err = run_drill(&topo, &idle, &RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("checks nothing"), "{err}");
}

#[test]
fn a_ping_in_a_timed_drill_loses_what_the_outages_cover() {
    let topo = default_topo();
    let src = std::fs::read_to_string(root().join("scripts/drills/edge-vmotion.toml")).unwrap();
    let src = format!(
        "{src}\n[[traffic]]\nkind = \"ping\"\nfrom = \"web-1\"\nto = \"ec2-1\"\nstart = \"500ms\"\ncount = 100\ninterval = \"100ms\"\nexpect = {{ received = 25 }}\n"
    );
    let r = run(&topo, &DrillFile::parse(&src, "d.toml").unwrap());
    let ping = r.steps.iter().find(|s| s.kind == "ping").unwrap();
    let AppReport::Ping(p) = &ping.app else {
        panic!("{r}")
    };
    // A request sent from the stun until the routes come back loses itself or its reply: one
    // every interval of the outage back, from the stun at 1 s (a multiple of the interval
    // past the start).
    let t = &topo.timing;
    let back = t.vmotion_stun + t.control_plane_notice + t.move_secondary_ip.max(t.replace_route);
    let lost = (back.as_nanos() / Duration::from_millis(100).as_nanos()) as u32;
    assert_eq!(p.count - p.received, lost, "{r}");
    assert_eq!(p.received, 25, "the file's figure is that one");
    assert!(ping.passed, "{r}");
    // Its replies that came back took a real round trip.
    assert!(p.rtts.iter().all(|d| !d.is_zero()));
}

#[test]
fn bfd_split_brain_makes_both_edges_active_until_healed() {
    let topo = default_topo();
    let r = run(&topo, &drill("bfd-split-brain"));
    assert!(r.passed, "{r}");
    let t = &topo.timing;
    let cut = vmcnet::time::Instant::from_millis(1_000);
    let promoted = promoted_after_cut(&topo, cut);
    assert_eq!(took(&r, "edge-2 takes the active role"), promoted);
    // Nothing made edge-1 step down until BFD came back up after the heal.
    let healed = vmcnet::time::Instant::from_millis(20_000);
    assert_eq!(
        took(&r, "edge-1 steps down to standby"),
        up_after_heal(&topo, healed)
    );
    assert!(!r
        .timeline
        .iter()
        .any(|e| e.action.to_string().contains("make edge-")));
    // The reconciler followed the newer active Edge.
    assert_eq!(
        took(&r, "assign secondary IP 172.31.0.30 to eni-3"),
        promoted + t.control_plane_notice + t.move_secondary_ip
    );
    // The gap between the two calls, off the probes' millisecond grid by the BFD path.
    let [there, back] = outages(&r);
    assert_eq!(there, Duration::ZERO);
    let gap = t.replace_route - t.move_secondary_ip;
    assert!(
        within_one_probe(back, gap, Duration::from_millis(1)),
        "{back:?}"
    );
    // With the IP and the routes moving at once, split brain costs nothing either way but
    // what is in flight at that instant: a probe the VPC router sent to the old host's ENI
    // just before, which finds the address gone when it gets there.
    let mut even = topo.clone();
    even.timing.move_secondary_ip = even.timing.replace_route;
    let [there, back] = outages(&run(&even, &drill("bfd-split-brain")));
    assert_eq!(there, Duration::ZERO);
    assert!(
        within_one_probe(back, Duration::ZERO, Duration::from_millis(1)),
        "{back:?}"
    );
}

/// Every shipped drill file, cut short anywhere, missing any line, or with any value replaced
/// by a hostile one: read without a panic, and what is accepted runs without one.
#[test]
fn hostile_drill_files_are_errors_or_drills_never_panics() {
    let dir = root().join("scripts/drills");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let topo = default_topo();
    let mut accepted = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        for (end, _) in src.char_indices().step_by(7) {
            let _ = DrillFile::parse(&src[..end], "d.toml");
        }
        let lines: Vec<&str> = src.lines().collect();
        for skip in 0..lines.len() {
            let text: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != skip)
                .map(|(_, l)| *l)
                .collect();
            if let Err(e) = DrillFile::parse(&text.join("\n"), "d.toml") {
                assert!(!e.message.is_empty());
            }
        }
        // Each `key = value` line's value replaced by a hostile one.
        let hostile = [
            "0",
            "-1",
            "4294967296",
            "1e309",
            "\"\"",
            "\"0s\"",
            "\"../x\"",
            "\"18446744073709551615s\"",
            "[]",
            "{}",
        ];
        for (i, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.starts_with('#') || key.contains('{') {
                continue;
            }
            for h in hostile {
                let mut text = lines.clone();
                let new = format!("{key} = {h}");
                text[i] = &new;
                let Ok(d) = DrillFile::parse(&text.join("\n"), "d.toml") else {
                    continue;
                };
                // Accepted: kept to run below if it acts at 0 s (where underflows hide).
                if h == "\"0s\"" && key == "at" {
                    accepted.push(d);
                }
            }
        }
    }
    // Every action moved to 0 s, on the default lab, probes shortened: runs to a report
    // (cut-bfd at 0 s once underflowed the BFD arithmetic).
    for mut d in accepted {
        for t in &mut d.traffic {
            if let vmcnet::drill::Traffic::Probe { duration, .. } = t {
                *duration = (*duration).min(Duration::from_secs(2));
            }
        }
        d.traffic
            .retain(|t| matches!(t, vmcnet::drill::Traffic::Probe { .. }));
        let _ = run_drill(&topo, &d, &RunOptions::default());
    }
}

/// BFD runs as packets: control packets cross the overlay between the Edges' hosts in Geneve
/// on the HA segment's VNI, one an interval each way, with TTL 255 to UDP 3784.
#[test]
fn bfd_crosses_the_overlay_between_the_edges_hosts_once_an_interval_each_way() {
    use common::capture_in_memory;
    use vmcnet::control::{Lab, HA_VNI};
    let topo = default_topo();
    let mut lab = Lab::build(&topo, 1);
    let standby = &topo.sddc.edges.standby;
    let link = capture_in_memory(&mut lab.sim, &link_name(&standby.host, UNDERLAY));
    let end = vmcnet::time::Instant::from_millis(10_000);
    lab.run_until(end);
    let mem = common::take_memory_capture(&mut lab.sim, link);
    let mut from = std::collections::BTreeMap::new();
    for (_, f) in &mem.frames {
        let outer = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::TransportSlice::Udp(udp)) = outer.transport else {
            continue;
        };
        let geneve = udp.payload();
        let vni = u32::from_be_bytes([0, geneve[4], geneve[5], geneve[6]]);
        let inner = &geneve[8 + usize::from(geneve[0] & 0x3f) * 4..];
        let Ok(inner) = etherparse::SlicedPacket::from_ethernet(inner) else {
            continue;
        };
        let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(u))) =
            (inner.net, inner.transport)
        else {
            continue;
        };
        if u.destination_port() != 3784 {
            continue;
        }
        assert_eq!(vni, HA_VNI, "BFD rides the HA segment");
        assert_eq!(ip.header().ttl(), 255);
        *from.entry(ip.header().source_addr()).or_insert(0u64) += 1;
    }
    // Sent at 0, 0.5, …, 10 s: each direction's last may still be in flight at the end.
    let sent = end.as_nanos() / topo.timing.bfd_interval.as_nanos() as u64 + 1;
    assert_eq!(from.len(), 2, "{from:?}");
    for (src, n) in from {
        assert!(n == sent || n == sent - 1, "{src}: {n} of {sent}");
    }
}

/// The standby reacts to what BFD's packets tell it, not to the action that stopped them:
/// unplugging its HA vNIC alone makes it take the active role, after the detection time
/// counted from the last packet to arrive; a slower underlay moves that instant by exactly
/// the extra delay.
#[test]
fn losing_the_ha_link_alone_promotes_the_standby_when_bfd_says_so() {
    let unplug_at = vmcnet::time::Instant::from_millis(3_200);
    let promoted_at = |topo: &Topology| {
        let mut lab = automated(topo, &[]);
        lab.run_until(unplug_at);
        let standby = lab.model.edge(&topo.sddc.edges.standby.name).unwrap();
        lab.sim.disconnect(standby.ha().link);
        lab.run_until(unplug_at + Duration::from_secs(5));
        let roles = role_changes(lab.timeline());
        let took = format!("{} takes the active role", topo.sddc.edges.standby.name);
        assert_eq!(roles.len(), 1, "{roles:?}");
        assert_eq!(roles[0].0, took);
        roles[0].1
    };
    let topo = default_topo();
    let t = &topo.timing;
    // The last packet through left at 3.0 s.
    let last = vmcnet::time::Instant::from_millis(3_000) + bfd_path(&topo);
    let detect = t.bfd_interval * t.bfd_multiplier;
    assert_eq!(promoted_at(&topo), last + detect + t.promotion);
    let mut slow = topo.clone();
    let extra = Duration::from_micros(700);
    let name = link_name(&slow.sddc.edges.active.host, UNDERLAY);
    let spec = vmcnet_topo::LinkOpt {
        delay: Some(slow.links.spec(&name, LinkKind::Underlay).delay + extra),
        ..Default::default()
    };
    slow.links.overrides.insert(name, spec);
    assert_eq!(bfd_path(&slow), bfd_path(&topo) + extra);
    assert_eq!(promoted_at(&slow), last + extra + detect + t.promotion);
}

/// An Edge vMotion whose stun outlasts BFD's detection time fails over, as NSX does: the
/// standby takes the role while the active one is stunned, and when the moved Edge resumes and
/// BFD comes back up, the one active longer steps down. A stun within the detection time
/// changes no role.
#[test]
fn an_edge_vmotion_stun_longer_than_bfd_dead_fails_over() {
    let topo = default_topo();
    let roles = |stun: Duration| {
        let mut topo = topo.clone();
        topo.timing.vmotion_stun = stun;
        role_changes(&run(&topo, &drill("edge-vmotion")).timeline)
    };
    let t = &topo.timing;
    let dead = t.bfd_interval * t.bfd_multiplier;
    assert_eq!(roles(dead - t.bfd_interval), []);
    let stun = dead + t.bfd_interval * 2;
    // The stun at 1 s comes before that instant's packet: edge-2 last heard edge-1 half a
    // second in, and declares it dead a detection time later.
    let at = |ms| vmcnet::time::Instant::from_millis(ms);
    let promoted = at(500) + bfd_path(&topo) + dead + t.promotion;
    // edge-1 resumes on esxi-3, edge-2's host, at 1 s + stun, itself on a BFD instant: both
    // sessions are Down, so Init then, Up an interval later, across the two vNICs of one host.
    let bfd_frame = 14 + 20 + 8 + vmcnet::wire::bfd::LEN;
    let hop = |edge: &str| {
        let end = edge_iface_end(edge, EDGE_HA_IFACE);
        let vnic = topo.links.spec(&link_name(&end, "esxi-3"), LinkKind::Vnic);
        vnic.delay + vnic.rate.serialization(bfd_frame)
    };
    let same_host = hop("edge-1") + hop("edge-2");
    let stepped = at(1_000) + stun + t.bfd_interval + same_host;
    assert_eq!(
        roles(stun),
        [
            ("edge-2 takes the active role".to_string(), promoted),
            ("edge-1 steps down to standby".to_string(), stepped),
        ]
    );
}

/// BFD back up before the standby's promotion takes effect (a promotion slower than an
/// interval): no notice comes once the promotion lands, so the control plane checks the
/// session then, and the Edge active longer steps down at once rather than staying split.
#[test]
fn bfd_healed_while_a_promotion_is_under_way_leaves_one_active_edge() {
    let mut topo = default_topo();
    topo.timing.promotion = topo.timing.bfd_interval * 3;
    let src = r#"
name = "flap"
description = "BFD cut, then healed before the promotion lands"
seed = 1

[[action]]
kind = "cut-bfd"
at = "1s"

[[action]]
kind = "heal-bfd"
at = "2100ms"

[[traffic]]
kind = "probe"
from = "web-1"
to = "ec2-1"
start = "500ms"
duration = "6s"
interval = "10ms"
"#;
    let d = DrillFile::parse(src, "flap.toml").unwrap();
    let r = run(&topo, &d);
    let (cut, healed) = (
        vmcnet::time::Instant::from_millis(1_000),
        vmcnet::time::Instant::from_millis(2_100),
    );
    // The session came back up before the promotion landed (checked below): the older Edge
    // steps down as it lands.
    let promoted = promoted_after_cut(&topo, cut);
    assert_eq!(took(&r, "edge-2 takes the active role"), promoted, "{r}");
    assert_eq!(took(&r, "edge-1 steps down to standby"), promoted, "{r}");
    let up = up_after_heal(&topo, healed);
    assert!(up < promoted);
    let mut lab = automated(&topo, &[(1_000, Action::CutBfd), (2_100, Action::HealBfd)]);
    let standby = lab.id(&topo.sddc.edges.standby.name).unwrap();
    let state = |lab: &vmcnet::control::Lab| {
        let edge = lab.sim.get::<vmcnet::node::edge::Edge>(standby).unwrap();
        edge.bfd().map(|s| s.state())
    };
    lab.run_until(vmcnet::time::Instant::from_nanos(up.as_nanos() - 1));
    assert_eq!(state(&lab), Some(vmcnet::wire::bfd::State::Init));
    lab.run_until(up);
    assert_eq!(state(&lab), Some(vmcnet::wire::bfd::State::Up));
}

/// The drills the benches run are valid drill files; the hour-long one, cut to 20 s of traffic,
/// passes (its host failure, failover and replacement host all still happen).
#[test]
fn the_bench_drills_load_and_the_hour_passes_cut_short() {
    let dir = root().join("scripts/bench");
    DrillFile::load(&dir.join("bulk-52mb.toml")).unwrap();
    let hour = std::fs::read_to_string(dir.join("hour.toml")).unwrap();
    assert!(hour.contains("3600s"), "an hour of traffic");
    let short = DrillFile::parse(&hour.replace("3600s", "20s"), "hour.toml").unwrap();
    let r = run(&default_topo(), &short);
    assert!(r.passed, "{r}");
    took(&r, "make edge-2 the active Edge");
    took(&r, "attach eni-2 to esxi-4");
}

/// A lab with NSX's and vSphere's reactions on, and the given actions requested.
fn automated(topo: &Topology, actions: &[(u64, Action)]) -> vmcnet::control::Lab {
    let mut lab = vmcnet::control::Lab::build(topo, 1);
    lab.set_sddc_automation(true);
    for (ms, a) in actions {
        lab.request(vmcnet::time::Instant::from_millis(*ms), a.clone())
            .unwrap();
    }
    lab
}

/// When each role change took effect, and that none failed.
fn role_changes(
    timeline: &[vmcnet::control::action::TimelineEvent],
) -> Vec<(String, vmcnet::time::Instant)> {
    let roles = timeline.iter().filter(|e| {
        matches!(
            e.action,
            Action::SetActiveEdge { .. } | Action::PromoteEdge { .. } | Action::StandbyEdge { .. }
        )
    });
    roles
        .map(|e| {
            assert!(e.error.is_none(), "{} failed: {:?}", e.action, e.error);
            (e.action.to_string(), e.took_effect_at.expect("took effect"))
        })
        .collect()
}

fn active_edges(lab: &vmcnet::control::Lab) -> Vec<String> {
    let m = &lab.model;
    m.edges
        .iter()
        .filter(|e| e.active && m.edge_runs(e))
        .map(|e| e.name.clone())
        .collect()
}

/// Split brain healed with nothing else on the links: both sessions come up at the same
/// instant, and edge-1 steps down once.
#[test]
fn a_heal_with_no_traffic_makes_the_older_edge_step_down_once() {
    let topo = default_topo();
    let mut lab = automated(&topo, &[(1_000, Action::CutBfd), (20_000, Action::HealBfd)]);
    lab.run_until(vmcnet::time::Instant::from_millis(30_000));
    let cut = vmcnet::time::Instant::from_millis(1_000);
    let healed = vmcnet::time::Instant::from_millis(20_000);
    assert_eq!(
        role_changes(lab.timeline()),
        vec![
            (
                "edge-2 takes the active role".to_string(),
                promoted_after_cut(&topo, cut)
            ),
            (
                "edge-1 steps down to standby".to_string(),
                up_after_heal(&topo, healed)
            ),
        ]
    );
    assert_eq!(active_edges(&lab), ["edge-2"]);
}

/// BFD cut before the session ever came up: the standby heard only the first packets, and
/// declares its peer dead a detection time after them.
#[test]
fn a_cut_before_bfd_came_up_still_promotes_the_standby() {
    let topo = default_topo();
    let mut lab = automated(&topo, &[(200, Action::CutBfd)]);
    lab.run_until(vmcnet::time::Instant::from_millis(5_000));
    let t = &topo.timing;
    let first = vmcnet::time::Instant::ZERO + bfd_path(&topo);
    assert_eq!(
        role_changes(lab.timeline()),
        [(
            "edge-2 takes the active role".to_string(),
            first + t.bfd_interval * t.bfd_multiplier + t.promotion
        )]
    );
}

/// The active Edge stops while the standby is stunned by its own vMotion: the standby's
/// session declares the peer dead during the stun, and the standby takes the role when it
/// resumes.
#[test]
fn a_standby_stunned_when_its_peer_died_takes_over_when_it_resumes() {
    let mut topo = default_topo();
    topo.timing.vmotion_stun = std::time::Duration::from_secs(3);
    let (standby, active) = (topo.sddc.edges.standby.name.clone(), "edge-1".to_string());
    let vmotion = Action::vmotion(&standby, "esxi-1");
    let mut lab = automated(
        &topo,
        &[
            (1_000, vmotion[0].clone()),
            (1_000, vmotion[1].clone()),
            (1_200, Action::StopEdge { edge: active }),
        ],
    );
    lab.run_until(vmcnet::time::Instant::from_millis(8_000));
    let resumed = vmcnet::time::Instant::from_millis(1_000) + topo.timing.vmotion_stun;
    assert_eq!(
        role_changes(lab.timeline()),
        [(
            format!("make {standby} the active Edge"),
            resumed + topo.timing.promotion
        )]
    );
    assert_eq!(active_edges(&lab), [standby]);
}

/// Both Edges' hosts fail: vSphere HA restarts both Edges, as standby; once their sessions are
/// up, the one that was active takes the role again.
#[test]
fn both_edges_restarted_as_standby_elect_one_active() {
    let topo = default_topo();
    let mut lab = automated(
        &topo,
        &[
            (
                1_000,
                Action::FailHost {
                    host: "esxi-2".into(),
                },
            ),
            (
                1_000,
                Action::FailHost {
                    host: "esxi-3".into(),
                },
            ),
        ],
    );
    let t = &topo.timing;
    let restarted = vmcnet::time::Instant::from_millis(1_000) + t.ha_host_dead + t.ha_restart;
    lab.run_until(restarted + std::time::Duration::from_secs(10));
    // vSphere HA restarts both on the one host of the cluster left: BFD between them stays
    // on that host.
    let e = &topo.sddc.edges;
    let left = "esxi-1";
    for edge in [&e.active.name, &e.standby.name] {
        assert_eq!(lab.model.edge(edge).unwrap().host, left);
    }
    let path = bfd_path_between(&topo, (&e.active.name, left), (&e.standby.name, left));
    // Both sessions start Down at the restart and send at the next multiple of the interval:
    // Down, then Init; Up as the Init arrives. Then the Edge active last takes the role.
    let up = next_bfd_tx(restarted, t.bfd_interval) + t.bfd_interval + path;
    assert_eq!(
        role_changes(lab.timeline()),
        [("make edge-1 the active Edge".to_string(), up + t.promotion)]
    );
    assert_eq!(active_edges(&lab), ["edge-1"]);
}

/// NSX's reactions turned on after BFD found the active Edge dead: the standby takes the role
/// then, from what its session knows, not from a notice long gone.
#[test]
fn automation_turned_on_late_acts_on_what_bfd_knows() {
    let topo = default_topo();
    let mut lab = vmcnet::control::Lab::build(&topo, 1);
    let stop = Action::StopEdge {
        edge: "edge-1".into(),
    };
    lab.request(vmcnet::time::Instant::from_millis(1_000), stop)
        .unwrap();
    let late = vmcnet::time::Instant::from_millis(5_000);
    lab.run_until(late);
    assert_eq!(role_changes(lab.timeline()), []);
    lab.set_sddc_automation(true);
    lab.run_until(late + std::time::Duration::from_secs(1));
    assert_eq!(
        role_changes(lab.timeline()),
        [(
            "make edge-2 the active Edge".to_string(),
            late + topo.timing.promotion
        )]
    );
}

/// A BFD cut holds while an Edge moves: the moved Edge's HA link is plugged in dark, and only
/// the heal lights it (and the split brain it caused ends then).
#[test]
fn a_bfd_cut_holds_across_an_edge_vmotion_until_healed() {
    let topo = default_topo();
    let standby = topo.sddc.edges.standby.name.clone();
    let vmotion = Action::vmotion(&standby, "esxi-1");
    let mut lab = automated(
        &topo,
        &[
            (1_000, Action::CutBfd),
            (5_000, vmotion[0].clone()),
            (5_000, vmotion[1].clone()),
            (10_000, Action::HealBfd),
        ],
    );
    let ha = |lab: &vmcnet::control::Lab| lab.model.edge(&standby).unwrap().ha().link;
    lab.run_until(vmcnet::time::Instant::from_millis(9_000));
    assert_eq!(lab.model.edge(&standby).unwrap().host, "esxi-1", "it moved");
    assert!(!lab.sim.is_connected(ha(&lab)), "cut, after the move too");
    lab.run_until(vmcnet::time::Instant::from_millis(15_000));
    assert!(lab.sim.is_connected(ha(&lab)), "healed");
    let roles: Vec<String> = role_changes(lab.timeline())
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        roles,
        [
            format!("{standby} takes the active role"),
            "edge-1 steps down to standby".to_string()
        ]
    );
}
