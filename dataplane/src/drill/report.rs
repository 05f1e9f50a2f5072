//! Drill reports: a text summary for people, JSON for machines.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::file::Traffic;
use crate::node::endpoint::{AppReport, TcpConnStats};
use crate::time::Instant;

/// What a drill run found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill: String,
    pub topology: String,
    pub seed: u64,
    pub passed: bool,
    /// Stopped early (Ctrl-C): `steps` holds the items run, the last one cut short.
    pub interrupted: bool,
    /// Traffic items in the drill file.
    pub planned_steps: usize,
    pub steps: Vec<StepResult>,
    /// Virtual time at the end of the drill, in seconds.
    pub virtual_time_s: f64,
    /// Frames carried across links.
    pub frames_delivered: u64,
    /// Every non-zero drop counter, node by node.
    pub drops: Vec<DropCount>,
    /// Every control action, requested and taken effect.
    pub timeline: Vec<crate::control::action::TimelineEvent>,
    /// Segments with no route in the VPC's main route table at the end.
    pub unprogrammed: Vec<String>,
    /// What the drill-level expectations found wrong.
    pub failures: Vec<String>,
    /// The ENIs and route tables before and after, in the `show --json` shapes.
    pub before: Tables,
    pub after: Tables,
    /// Every timing parameter the lab ran with, and the basis of its default.
    pub timing: Vec<vmcnet_topo::TimingRow>,
    /// The timing parameters the drill's expected outages are written in.
    pub timing_used: Vec<String>,
    /// An `eni-reattach` drill, run again with `ip-move`: the two strategies' outages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategies: Option<StrategyComparison>,
}

/// The outages of each probe item under both strategies, each way, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyComparison {
    pub items: Vec<StrategyOutages>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyOutages {
    pub index: usize,
    /// There and back.
    pub eni_reattach_s: [f64; 2],
    pub ip_move_s: [f64; 2],
    /// eni-reattach's outage over ip-move's, each way (`None` where ip-move lost nothing).
    pub ratio: [Option<f64>; 2],
}

impl StrategyComparison {
    /// Pair the probe items of an `eni-reattach` run and an `ip-move` run of one drill.
    pub fn of(reattach: &DrillReport, ip_move: &DrillReport) -> StrategyComparison {
        let outages = |s: &StepResult| {
            s.probe
                .as_ref()
                .map(|p| [p.there.outage.as_secs_f64(), p.back.outage.as_secs_f64()])
        };
        let items = reattach
            .steps
            .iter()
            .zip(&ip_move.steps)
            .filter_map(|(a, b)| {
                let (a, b, index) = (outages(a)?, outages(b)?, a.index);
                let ratio = |k: usize| (b[k] > 0.0).then(|| a[k] / b[k]);
                Some(StrategyOutages {
                    index,
                    eni_reattach_s: a,
                    ip_move_s: b,
                    ratio: [ratio(0), ratio(1)],
                })
            })
            .collect();
        StrategyComparison { items }
    }
}

/// The lab's ENIs and VPC route tables at one instant.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tables {
    pub network_interfaces: Vec<crate::control::state::EniRow>,
    pub route_tables: Vec<crate::control::state::RouteTableRow>,
}

impl Tables {
    pub fn of(lab: &crate::control::Lab) -> Tables {
        Tables {
            network_interfaces: lab.enis(),
            route_tables: lab.route_tables(),
        }
    }

    /// The SDDC's ENIs in use.
    pub fn sddc_enis_in_use(&self) -> usize {
        self.network_interfaces
            .iter()
            .filter(|e| e.host.is_some())
            .count()
    }
}

/// An outage a drill file expects: a formula and its value, or `open`: still out when the
/// probes end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedOutage {
    pub formula: String,
    /// Seconds; `None` for `open`.
    pub seconds: Option<f64>,
}

impl std::fmt::Display for ExpectedOutage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seconds {
            Some(s) => write!(f, "{s:.3} s = {}", self.formula),
            None => f.write_str("open: still out when the probes end"),
        }
    }
}

/// A probe item's loss, each way.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// From `from` to `to`.
    pub there: crate::node::endpoint::probe::ProbeLoss,
    /// From `to` back to `from`.
    pub back: crate::node::endpoint::probe::ProbeLoss,
    /// The outage expected each way.
    pub expected: Vec<Option<ExpectedOutage>>,
    /// What `from` and `to` are: a VM sits in the SDDC, an EC2 instance or S3 in the VPC.
    pub kinds: [crate::node::endpoint::EndpointKind; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct DropCount {
    pub node: String,
    pub counter: String,
    pub count: u64,
}

/// One traffic item's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub index: usize,
    pub kind: String,
    pub from: String,
    pub to: String,
    pub dst: Ipv4Addr,
    pub passed: bool,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
    pub started_s: f64,
    pub duration_s: f64,
    pub app: AppReport,
    /// TCP: the connection as the server saw it.
    pub server_connection: Option<TcpConnStats>,
    /// Probe: the loss each way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    /// TCP run live: what iperf3 reported, interval by interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<TcpInterval>>,
}

/// One of iperf3's intervals of a live TCP item, on the drill's clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TcpInterval {
    pub from_s: f64,
    pub to_s: f64,
    /// Bytes the sender handed TCP in the interval.
    pub bytes: u64,
    /// Segments it sent again.
    pub retransmits: u64,
}

impl StepResult {
    pub(crate) fn new(
        index: usize,
        t: &Traffic,
        dst: Ipv4Addr,
        start: Instant,
        took: Duration,
        app: AppReport,
    ) -> Self {
        StepResult {
            index,
            kind: t.kind().into(),
            from: t.from().into(),
            to: t.to().into(),
            dst,
            passed: false,
            failures: Vec::new(),
            started_s: start.as_secs_f64(),
            duration_s: took.as_secs_f64(),
            app,
            server_connection: None,
            probe: None,
            intervals: None,
        }
    }

    /// One line on what happened.
    pub fn summary(&self) -> String {
        match &self.app {
            AppReport::Probe(p) => match &self.probe {
                Some(r) => {
                    let way = |l: &crate::node::endpoint::probe::ProbeLoss,
                               want: Option<&ExpectedOutage>| {
                        let mut s = format!("{} of {} lost", l.lost, l.sent);
                        if let (Some(a), Some(b)) = (l.first_lost_sent, l.last_lost_sent) {
                            s += &format!(" (sent {a} to {b})");
                        }
                        s += &format!(", outage {:.3} s", l.outage.as_secs_f64());
                        if let Some(want) = want {
                            s += &format!(", expected {want}");
                        }
                        s
                    };
                    let want = |k: usize| r.expected.get(k).and_then(Option::as_ref);
                    format!(
                        "every {:.3} ms\n             there: {}\n             back:  {}",
                        ms(p.interval),
                        way(&r.there, want(0)),
                        way(&r.back, want(1))
                    )
                }
                None => format!("{} of {} probes sent", p.sent, p.count),
            },
            AppReport::Ping(p) => {
                let mut s = format!("{}/{} replies", p.received, p.count);
                if let (Some(min), Some(max)) = (p.rtts.iter().min(), p.rtts.iter().max()) {
                    s += &format!(", rtt {:.3}/{:.3} ms", ms(*min), ms(*max));
                }
                let mut ttls = p.reply_ttls.clone();
                ttls.dedup();
                if !ttls.is_empty() {
                    let ttls: Vec<String> = ttls.iter().map(u8::to_string).collect();
                    s += &format!(", ttl {}", ttls.join(","));
                }
                if let Some(e) = p.errors.first() {
                    s += &format!(
                        ", {} ICMP errors (first: type {} code {} from {})",
                        p.errors.len(),
                        e.icmp_type,
                        e.code,
                        e.src
                    );
                }
                s
            }
            AppReport::TcpSend(t) => {
                let secs = t.finished.map(|f| (f - t.started).as_secs_f64());
                let mut s = format!("{} of {} bytes acknowledged", t.acked, t.requested);
                if let Some(secs) = secs.filter(|s| *s > 0.0) {
                    s += &format!(
                        " in {secs:.3} s ({:.1} Mbit/s)",
                        t.acked as f64 * 8.0 / secs / 1e6
                    );
                }
                if let Some(bps) = t.rate_bps {
                    s += &format!(", written at {:.1} Mbit/s", bps as f64 / 1e6);
                }
                if t.retransmits > 0 {
                    s += &format!(", {} retransmitted", t.retransmits);
                }
                if let Some(from) = t.longest_stall_from {
                    s += &format!(
                        ", longest stall {:.3} s from {from}",
                        t.longest_stall.as_secs_f64()
                    );
                }
                if let Some(c) = &self.server_connection {
                    s += &format!(
                        ", server saw {} ({} bytes{})",
                        c.peer,
                        c.bytes,
                        if c.pattern_ok {
                            ", intact"
                        } else {
                            ", CORRUPTED"
                        }
                    );
                }
                if let Some(e) = &t.error {
                    s += &format!(", error: {e}");
                }
                s
            }
            AppReport::Traceroute(tr) => {
                let hops: Vec<String> = hop_strings(&tr.hops)
                    .iter()
                    .enumerate()
                    .map(|(i, h)| format!("{} {h}", i + 1))
                    .collect();
                format!(
                    "{}{}",
                    hops.join(", "),
                    if tr.reached {
                        " (reached)"
                    } else {
                        " (not reached)"
                    }
                )
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Hops as text: the address, or `*` for no answer.
pub fn hop_strings(hops: &[Option<Ipv4Addr>]) -> Vec<String> {
    hops.iter()
        .map(|h| h.map_or("*".to_string(), |a| a.to_string()))
        .collect()
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "drill {} on topology {} (seed {})",
            self.drill, self.topology, self.seed
        )?;
        if !self.timeline.is_empty() {
            writeln!(f, "  timeline:")?;
            f.write_str(&timeline_text(&self.timeline, "    "))?;
        }
        for s in &self.steps {
            let verdict = if s.passed { "PASS" } else { "FAIL" };
            let to = if s.to == s.dst.to_string() {
                s.to.clone()
            } else {
                format!("{} ({})", s.to, s.dst)
            };
            writeln!(
                f,
                "  {verdict}  {:<10} {} -> {}: {}",
                s.kind,
                s.from,
                to,
                s.summary()
            )?;
            for why in &s.failures {
                writeln!(f, "        ! {why}")?;
            }
        }
        if !self.unprogrammed.is_empty() {
            writeln!(
                f,
                "  segments without a route in the main table: {}",
                self.unprogrammed.join(", ")
            )?;
        }
        for why in &self.failures {
            writeln!(f, "  FAIL  {why}")?;
        }
        if !self.drops.is_empty() {
            writeln!(f, "  drops:")?;
            for d in &self.drops {
                writeln!(f, "    {:<12} {:<32} {}", d.node, d.counter, d.count)?;
            }
        }
        let passed = self.steps.iter().filter(|s| s.passed).count();
        if self.interrupted {
            writeln!(
                f,
                "  interrupted: {} of {} traffic items run",
                self.steps.len(),
                self.planned_steps
            )?;
        }
        if let Some(c) = &self.strategies {
            writeln!(
                f,
                "  eni-reattach against ip-move (the same drill run again):"
            )?;
            for i in &c.items {
                for (k, way) in ["there", "back"].iter().enumerate() {
                    let ratio = i.ratio[k].map_or("-".into(), |r| format!("{r:.1}x"));
                    writeln!(
                        f,
                        "    traffic[{}] {way:<5}  eni-reattach {:.3} s, ip-move {:.3} s: {ratio}",
                        i.index, i.eni_reattach_s[k], i.ip_move_s[k]
                    )?;
                }
            }
        }
        let shown: Vec<_> = self
            .timing
            .iter()
            .filter(|r| !r.is_default || self.timing_used.iter().any(|u| u == r.name))
            .collect();
        if !shown.is_empty() {
            writeln!(f, "  timing (used by the expectations, or changed):")?;
            for r in shown {
                let basis = match (r.is_default, r.basis) {
                    (false, _) => "set for this lab".to_string(),
                    (true, vmcnet_topo::Basis::Sourced(s)) => format!("sourced: {s}"),
                    (true, vmcnet_topo::Basis::Assumed) => "ASSUMED".to_string(),
                };
                writeln!(f, "    {:<22} {:>9}{:<2} {basis}", r.name, r.value, r.unit)?;
            }
        }
        writeln!(
            f,
            "  {} frames carried, {:.3} s of virtual time",
            self.frames_delivered, self.virtual_time_s
        )?;
        writeln!(f, "{passed} passed, {} failed", self.steps.len() - passed)
    }
}

/// Control actions one a line, each indented by `indent`, in the order they were asked for, in
/// time, times aligned on the right: when asked, what, and when it took effect (or why it
/// failed, or `pending`).
pub fn timeline_text(timeline: &[crate::control::action::TimelineEvent], indent: &str) -> String {
    let mut events: Vec<_> = timeline.iter().collect();
    events.sort_by_key(|e| e.requested_at);
    let width = events
        .iter()
        .map(|e| e.requested_at.to_string().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for e in events {
        let effect = match (&e.took_effect_at, &e.error) {
            (Some(t), _) => format!("took effect {t}"),
            (None, Some(why)) => format!("failed: {why}"),
            (None, None) => "pending".into(),
        };
        out += &format!(
            "{indent}{:>width$}  {:<40} {effect}\n",
            e.requested_at.to_string(),
            e.action.to_string()
        );
    }
    out
}
