//! The drill runner: builds the lab in the sim runtime, sends each traffic item, checks it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use vmcnet_topo::{FieldPath, Topology};

use super::file::{DrillAction, DrillFile, Reconciler, Traffic};
use super::formula;
use super::report::{
    DrillReport, DropCount, ExpectedOutage, ProbeResult, StepResult, StrategyComparison, Tables,
};
use crate::capture::{CaptureWriters, PcapFile, PcapNgFile};
use crate::control::action::{Action, Strategy};
use crate::control::Lab;
use crate::node::endpoint::probe;
use crate::node::endpoint::{
    AppReport, Endpoint, TcpConnStats, TcpStream, PING_TIMEOUT, TCP_STALL_TIMEOUT,
};
use crate::runtime::sim::{NodeId, Sim, Stop};
use crate::time::Instant;

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Capture every link: a pcap per link into this directory (created if missing), or, for
    /// a path ending in `.pcapng`, one pcapng file with an interface per link.
    pub pcap_dir: Option<PathBuf>,
    /// Capture only these links (by name, as `web-1--esxi-1`); every link when `None`.
    pub pcap_links: Option<Vec<String>>,
    /// Virtual time a traffic item may take, past the time its own schedule needs (a ping's
    /// `count - 1` intervals), before it counts as failed.
    pub step_timeout: Duration,
    /// Set (from another thread: a Ctrl-C handler) to stop early: the item running ends where
    /// it is, the rest are skipped, and the report and pcaps are written whole.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            pcap_dir: None,
            pcap_links: None,
            step_timeout: Duration::from_secs(120),
            stop: None,
        }
    }
}

/// Why a drill could not run (a failed assertion is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The drill file asks for what the lab cannot do: the field, and why. `at` is the file
    /// and line of the field, once known.
    #[error("{}", input_message(.at, .path, .message))]
    Input {
        path: FieldPath,
        message: String,
        at: Option<String>,
    },
    /// The live lab could not be built or run.
    #[error("live lab: {0}")]
    Live(String),
    /// A pcap file could not be written (the cause is the error's source).
    #[error("pcap {}", path.display())]
    Pcap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--pcap-links` names a link the lab does not have.
    #[error("--pcap-links: the lab has no link {name:?}; {hint}")]
    PcapLink { name: String, hint: String },
    /// A file per link needs more files than the process may open.
    #[error(
        "--pcap DIR needs a file for each of the lab's {links} links, more than this process \
         may open (ulimit -n); --pcap FILE.pcapng writes one file with an interface per link"
    )]
    PcapFiles {
        links: usize,
        #[source]
        source: std::io::Error,
    },
}

fn input_message(at: &Option<String>, path: &FieldPath, message: &str) -> String {
    match at {
        Some(at) => format!("{at}: {path}: {message}"),
        None => format!("{path}: {message}"),
    }
}

impl DrillError {
    pub(crate) fn input(path: FieldPath, message: impl Into<String>) -> Self {
        DrillError::Input {
            path,
            message: message.into(),
            at: None,
        }
    }

    /// The error with the file and line of its field in `drill`, when it has one.
    pub(crate) fn located(self, drill: &DrillFile) -> Self {
        match self {
            DrillError::Input { path, message, .. } => {
                let at = drill.locate(&path);
                DrillError::Input { path, message, at }
            }
            e => e,
        }
    }
}

/// The path of traffic item `index`.
pub(crate) fn traffic(index: usize) -> FieldPath {
    FieldPath::new("traffic").index(index)
}

/// Run `drill` on `topo` and report. A drill with the `eni-reattach` reconciler runs a second
/// time with `ip-move`, and its report compares the two strategies' outages.
pub fn run_drill(
    topo: &Topology,
    drill: &DrillFile,
    opts: &RunOptions,
) -> Result<DrillReport, DrillError> {
    let mut report = run_once(topo, drill, opts).map_err(|e| e.located(drill))?;
    if drill.reconciler == Reconciler::EniReattach && !report.interrupted {
        let mut ip_move = drill.clone();
        ip_move.reconciler = Reconciler::IpMove;
        let other = run_once(
            topo,
            &ip_move,
            &RunOptions {
                pcap_dir: None,
                ..opts.clone()
            },
        )
        .map_err(|e| e.located(drill))?;
        report.strategies = Some(StrategyComparison::of(&report, &other));
    }
    Ok(report)
}

fn run_once(
    topo: &Topology,
    drill: &DrillFile,
    opts: &RunOptions,
) -> Result<DrillReport, DrillError> {
    let mut lab = Lab::build(topo, drill.seed);
    if let Some(stop) = &opts.stop {
        lab.sim.set_interrupt(stop.clone());
    }
    check_names(&lab, drill)?;
    let formulas = check_formulas(topo, drill)?;
    let timed = drill.is_timed();
    // Read from a file, it passed these already; built or edited in code, it may not have.
    drill
        .check()
        .map_err(|v| DrillError::input(v.field, v.message))?;
    lab.set_reconciler(match drill.reconciler {
        Reconciler::IpMove => Some(Strategy::IpMove),
        Reconciler::EniReattach => Some(Strategy::EniReattach),
        Reconciler::Off => None,
    });
    if timed {
        lab.set_sddc_automation(true);
        request_actions(&mut lab, drill)?;
    }
    let before = Tables::of(&lab);
    // What the drill expects of the tables names what the lab has, before it runs.
    check_tables(&before, drill)?;
    let pcaps = start_pcaps(&mut lab, opts)?;
    let mut steps = Vec::new();
    if timed {
        steps = run_timed(&mut lab, drill, &formulas, opts.step_timeout)?;
    } else {
        for (index, t) in drill.traffic.iter().enumerate() {
            if lab.sim.interrupted() {
                break;
            }
            steps.push(run_step(&mut lab, index, t, opts.step_timeout));
        }
    }
    finish_pcaps(&mut lab, pcaps)?;
    let interrupted = lab.sim.interrupted();
    report(topo, drill, &lab, steps, interrupted, before)
}

/// The report of a drill that ran on `lab` (in the sim or live): its steps, the tables before
/// and after, and what the drill expects of them at the end.
pub(crate) fn report(
    topo: &Topology,
    drill: &DrillFile,
    lab: &Lab,
    steps: Vec<StepResult>,
    interrupted: bool,
    before: Tables,
) -> Result<DrillReport, DrillError> {
    let unprogrammed: Vec<String> = lab
        .model
        .segments
        .iter()
        .filter(|s| lab.model.route(s.cidr).is_none())
        .map(|s| s.name.clone())
        .collect();
    let after = Tables::of(lab);
    let mut failures = check_tables(&after, drill)?;
    if let Some(want) = &drill.expect.unprogrammed {
        if *want != unprogrammed {
            failures.push(format!(
                "segments without a route: [{}], expected [{}]",
                unprogrammed.join(", "),
                want.join(", ")
            ));
        }
    }
    Ok(DrillReport {
        drill: drill.name.clone(),
        topology: topo.name.clone(),
        seed: drill.seed,
        passed: !interrupted && failures.is_empty() && steps.iter().all(|s| s.passed),
        interrupted,
        planned_steps: drill.traffic.len(),
        steps,
        virtual_time_s: lab.sim.now().as_secs_f64(),
        frames_delivered: lab.sim.counters.delivered,
        drops: drops(lab),
        timeline: lab.timeline().to_vec(),
        unprogrammed,
        failures,
        before,
        after,
        timing: topo.timing.rows(),
        timing_used: timing_used(drill),
        strategies: None,
    })
}

/// The drill's expectations of the route tables and ENIs at the end: what differs. A route
/// table, route or ENI the lab does not have is an error (the check could not fail).
pub(crate) fn check_tables(after: &Tables, drill: &DrillFile) -> Result<Vec<String>, DrillError> {
    let mut failures = Vec::new();
    let bad = |field: &'static str, index: usize, message: String| {
        DrillError::input(FieldPath::new("expect").key(field).index(index), message)
    };
    for (i, want) in drill.expect.routes.iter().enumerate() {
        let id = if want.table == "main" {
            crate::control::state::MAIN_ROUTE_TABLE_ID
        } else {
            want.table.as_str()
        };
        let table = after
            .route_tables
            .iter()
            .find(|t| t.route_table_id == id)
            .ok_or_else(|| bad("routes", i, format!("no route table `{}`", want.table)))?;
        if want.target.is_none() && want.state.is_none() {
            return Err(bad(
                "routes",
                i,
                "names neither a target nor a state: it checks nothing".into(),
            ));
        }
        let Some(route) = table
            .routes
            .iter()
            .find(|r| r.destination() == want.destination)
        else {
            failures.push(format!("{id}: no route to {} at the end", want.destination));
            continue;
        };
        if let Some(t) = &want.target {
            if route.target() != *t {
                failures.push(format!(
                    "{id}: {} targets {} at the end, expected {t}",
                    want.destination,
                    route.target()
                ));
            }
        }
        if let Some(s) = &want.state {
            if !["active", "blackhole"].contains(&s.as_str()) {
                return Err(bad(
                    "routes",
                    i,
                    format!("state `{s}`: active or blackhole"),
                ));
            }
            if route.state != *s {
                failures.push(format!(
                    "{id}: {} is {} at the end, expected {s}",
                    want.destination, route.state
                ));
            }
        }
    }
    for (i, want) in drill.expect.enis.iter().enumerate() {
        let eni = after
            .network_interfaces
            .iter()
            .find(|e| e.network_interface_id == want.id)
            .ok_or_else(|| bad("enis", i, format!("no ENI `{}`", want.id)))?;
        if want.status.is_none() && want.host.is_none() {
            return Err(bad(
                "enis",
                i,
                "names neither a status nor a host: it checks nothing".into(),
            ));
        }
        if let Some(s) = &want.status {
            if !["in-use", "available"].contains(&s.as_str()) {
                return Err(bad("enis", i, format!("status `{s}`: in-use or available")));
            }
            if eni.status != *s {
                failures.push(format!(
                    "{} is {} at the end, expected {s}",
                    want.id, eni.status
                ));
            }
        }
        if let Some(h) = &want.host {
            if eni.host.as_deref() != Some(h.as_str()) {
                failures.push(format!(
                    "{} is attached to {} at the end, expected {h}",
                    want.id,
                    eni.host.as_deref().unwrap_or("nothing")
                ));
            }
        }
    }
    Ok(failures)
}

/// The timing parameters the drill's expected outages name (`bfd_dead` counts as its two).
pub(crate) fn timing_used(drill: &DrillFile) -> Vec<String> {
    let formulas: Vec<&str> = drill
        .traffic
        .iter()
        .flat_map(|t| [&t.expect().outage, &t.expect().outage_back])
        .flatten()
        .map(String::as_str)
        .collect();
    let named = |name: &str| {
        formulas.iter().any(|f| {
            f.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == name || (w == "bfd_dead" && name.starts_with("bfd_")))
        })
    };
    vmcnet_topo::Timing::default()
        .rows()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| named(n))
        .map(String::from)
        .collect()
}

/// Every outage expectation evaluated under the topology's timing: per traffic item, the
/// outage from `from` to `to` and back, with the formula each came from; `None` for `open`
/// (still out when the probes end).
pub(crate) type Formulas = Vec<[Option<(String, Option<Duration>)>; 2]>;

pub(crate) fn check_formulas(topo: &Topology, drill: &DrillFile) -> Result<Formulas, DrillError> {
    drill
        .traffic
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let ex = t.expect();
            let one = |field: &'static str, f: &Option<String>| {
                f.as_ref()
                    .map(|f| {
                        if f.trim() == "open" {
                            return Ok((f.clone(), None));
                        }
                        formula::eval(f, &topo.timing)
                            .map(|d| (f.clone(), Some(d)))
                            .map_err(|message| {
                                DrillError::input(traffic(index).key("expect").key(field), message)
                            })
                    })
                    .transpose()
            };
            Ok([
                one("outage", &ex.outage)?,
                one("outage_back", &ex.outage_back)?,
            ])
        })
        .collect()
}

/// Put the drill's actions on the lab's timeline.
fn request_actions(lab: &mut Lab, drill: &DrillFile) -> Result<(), DrillError> {
    for (index, a) in drill.actions.iter().enumerate() {
        let at = Instant::ZERO + a.at();
        for action in lab_actions(a) {
            lab.request(at, action).map_err(|e| {
                DrillError::input(FieldPath::new("action").index(index), e.to_string())
            })?;
        }
    }
    Ok(())
}

/// The control actions a drill's action asks of the lab.
pub fn lab_actions(a: &DrillAction) -> Vec<Action> {
    match a {
        DrillAction::Vmotion { vm, to, .. } => Action::vmotion(vm, to).to_vec(),
        DrillAction::FailHost { host, .. } => vec![Action::FailHost { host: host.clone() }],
        DrillAction::RecoverHost { host, .. } => {
            vec![Action::RecoverHost { host: host.clone() }]
        }
        DrillAction::Maintenance { host, .. } => {
            vec![Action::Maintenance { host: host.clone() }]
        }
        DrillAction::FailEdge { edge, .. } => vec![Action::StopEdge { edge: edge.clone() }],
        DrillAction::AddSegment {
            name,
            cidr,
            gateway,
            ..
        } => vec![Action::AddSegment {
            name: name.clone(),
            cidr: *cidr,
            gateway: *gateway,
        }],
        DrillAction::DelSegment { name, .. } => {
            vec![Action::RemoveSegment { name: name.clone() }]
        }
        DrillAction::BreakReconciler { .. } => vec![Action::BreakReconciler],
        DrillAction::HealReconciler { .. } => vec![Action::HealReconciler],
        DrillAction::CutBfd { .. } => vec![Action::CutBfd],
        DrillAction::HealBfd { .. } => vec![Action::HealBfd],
    }
}

/// A probe item both ways, started.
struct Probing {
    index: usize,
    ends: [(NodeId, NodeId, usize); 2],
    port: u16,
    interval: Duration,
}

/// A timed drill: every traffic item runs at once, from its own start, beside the actions.
fn run_timed(
    lab: &mut Lab,
    drill: &DrillFile,
    formulas: &Formulas,
    timeout: Duration,
) -> Result<Vec<StepResult>, DrillError> {
    let mut probes = Vec::new();
    let mut end = Instant::ZERO + drill.last_action_at();
    let mut streams = Vec::new();
    for (index, t) in drill.traffic.iter().enumerate() {
        if !matches!(t, Traffic::Probe { .. }) {
            // Ping, TCP and traceroute start at their instants; a ping's schedule, a stream's
            // duration keep the drill going.
            let start = Instant::ZERO + t.start().unwrap_or_default();
            let scheduled = match t {
                Traffic::Tcp { duration, .. } => duration.unwrap_or_default(),
                Traffic::Ping {
                    count, interval, ..
                } => interval.saturating_mul(*count) + PING_TIMEOUT,
                _ => Duration::ZERO,
            };
            end = end.max(start + scheduled);
            streams.push((start, index));
            continue;
        }
        let Traffic::Probe {
            start,
            duration,
            interval,
            port,
            ..
        } = t
        else {
            unreachable!("the others are streams")
        };
        let a = lab.id(t.from()).expect("checked");
        let b = endpoint_named_or_at(lab, t.to()).ok_or_else(|| {
            DrillError::input(
                traffic(index).key("to"),
                format!(
                    "a probe's target must be an endpoint, to run its sink: `{}`",
                    t.to()
                ),
            )
        })?;
        let count = (duration.as_nanos() / interval.as_nanos().max(1)) as u32;
        let start = Instant::ZERO + *start;
        let mut ends = [(a, b, 0); 2];
        for (k, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            let dst = lab.sim.get::<Endpoint>(to).expect("endpoint").config().ip;
            lab.sim
                .get_mut::<Endpoint>(to)
                .expect("endpoint")
                .probe_listen(*port);
            let ep: &mut Endpoint = lab.sim.get_mut(from).expect("endpoint");
            ends[k] = (from, to, ep.probe(start, dst, *port, count, *interval));
        }
        end = end.max(start + *interval * count);
        probes.push(Probing {
            index,
            ends,
            port: *port,
            interval: *interval,
        });
    }
    // Pings, TCP streams and traceroutes start at their instants, in order.
    streams.sort_by_key(|(start, _)| *start);
    let mut started = Vec::new();
    for (start, index) in streams {
        if start > lab.sim.now() {
            lab.run_until(start);
        }
        if lab.sim.interrupted() {
            break;
        }
        let l = launch(lab, &drill.traffic[index], super::file::TCP_GIVE_UP);
        started.push((index, l.from, l.dst, l.app, l.server, lab.sim.now()));
    }
    let streams_done = |sim: &Sim| {
        started.iter().all(|(_, from, _, app, _, _)| {
            sim.get::<Endpoint>(*from)
                .is_some_and(|e| e.app(*app).done())
        })
    };
    // Long enough for the last probe to cross; then on until the streams are done and what
    // the actions set off (HA, a replacement host) has played out, or a day of virtual time.
    let settle = Duration::from_secs(1).min(timeout);
    lab.run_until(end + settle);
    let cap = lab.sim.now() + Duration::from_secs(24 * 3600);
    while (lab.pending_actions() || !streams_done(&lab.sim))
        && lab.sim.now() < cap
        && !lab.sim.interrupted()
    {
        let next = lab.sim.now() + Duration::from_secs(60);
        if streams_done(&lab.sim) {
            lab.run_until(next.min(cap));
        } else {
            lab.run_while(next.min(cap), streams_done);
        }
    }
    let interrupted = lab.sim.interrupted();
    let mut steps: Vec<StepResult> = probes
        .into_iter()
        .map(|p| probe_result(lab, drill, formulas, p, interrupted))
        .collect();
    for (index, from, dst, app, server, start) in started {
        let mut r = app_result(
            lab,
            index,
            &drill.traffic[index],
            dst,
            start,
            from,
            app,
            server,
        );
        if interrupted {
            r.failures.push("interrupted".into());
            r.passed = false;
        }
        steps.push(r);
    }
    steps.sort_by_key(|r| r.index);
    Ok(steps)
}

fn probe_result(
    lab: &Lab,
    drill: &DrillFile,
    formulas: &Formulas,
    p: Probing,
    interrupted: bool,
) -> StepResult {
    let t = &drill.traffic[p.index];
    let kind = |id| lab.sim.get::<Endpoint>(id).expect("endpoint").config().kind;
    let kinds = [kind(p.ends[0].0), kind(p.ends[0].1)];
    let mut losses = Vec::new();
    let mut there = None;
    for (from, to, app) in p.ends {
        let sender = lab.sim.get::<Endpoint>(from).expect("endpoint");
        let AppReport::Probe(r) = sender.app(app).clone() else {
            unreachable!("a probe app")
        };
        let arrivals = lab
            .sim
            .get::<Endpoint>(to)
            .and_then(|e| e.probe_arrivals(p.port))
            .unwrap_or(&[]);
        losses.push(probe::loss(&r, arrivals));
        there.get_or_insert(r);
    }
    let report = there.expect("two directions");
    probe_verdict(
        ProbeOutcome {
            index: p.index,
            interval: p.interval,
            report,
            losses,
            kinds,
            now: lab.sim.now(),
            interrupted,
        },
        t,
        &formulas[p.index],
    )
}

/// What a probe item found, both ways, however it ran (sim or live).
pub(crate) struct ProbeOutcome {
    pub index: usize,
    pub interval: Duration,
    /// The sender's report of the way there.
    pub report: crate::node::endpoint::probe::ProbeReport,
    /// Loss there and back.
    pub losses: Vec<crate::node::endpoint::probe::ProbeLoss>,
    pub kinds: [crate::node::endpoint::EndpointKind; 2],
    /// When the run ended.
    pub now: Instant,
    pub interrupted: bool,
}

/// A probe item's step: its outages each way against what the drill expects.
pub(crate) fn probe_verdict(
    o: ProbeOutcome,
    t: &Traffic,
    want: &[Option<(String, Option<Duration>)>; 2],
) -> StepResult {
    let (dst, start) = (o.report.dst, o.report.started);
    let last_sent = o.report.sent.checked_sub(1).map(|s| o.report.sent_at(s));
    let (losses, interrupted) = (o.losses, o.interrupted);
    let p = (o.index, o.interval);
    let took = o.now - start;
    let mut r = StepResult::new(p.0, t, dst, start, took, AppReport::Probe(o.report));
    if interrupted {
        r.failures.push("interrupted".into());
    }
    for (k, (loss, want)) in losses.iter().zip(want).enumerate() {
        let way = if k == 0 { "there" } else { "back" };
        let still_out = loss.last_lost_sent.is_some() && loss.last_lost_sent == last_sent;
        let open = matches!(want, Some((_, None)));
        if still_out && !open {
            r.failures.push(format!(
                "{way}: still losing when the probes ended: the outage lasts longer than {:.3} s",
                loss.outage.as_secs_f64()
            ));
        }
        if open && !still_out {
            r.failures.push(format!(
                "{way}: the outage ended ({:.3} s at most), expected it still open when the probes ended",
                loss.outage.as_secs_f64()
            ));
        }
        let Some((formula, Some(want))) = want else {
            continue;
        };
        // No outage expected means no probe lost; otherwise within one interval.
        let met = if want.is_zero() {
            loss.lost == 0
        } else {
            loss.outage.abs_diff(*want) <= p.1
        };
        if !met {
            r.failures.push(format!(
                "outage {way} {:.3} s, expected {:.3} s ({formula}) within {:.3} s",
                loss.outage.as_secs_f64(),
                want.as_secs_f64(),
                p.1.as_secs_f64()
            ));
        }
    }
    r.probe = Some(ProbeResult {
        there: losses[0].clone(),
        back: losses[1].clone(),
        expected: want
            .iter()
            .map(|f| {
                f.as_ref().map(|(f, d)| ExpectedOutage {
                    formula: f.clone(),
                    seconds: d.map(|d| d.as_secs_f64()),
                })
            })
            .collect(),
        kinds: o.kinds,
    });
    r.passed = r.failures.is_empty();
    r
}

pub(crate) fn check_names(lab: &Lab, drill: &DrillFile) -> Result<(), DrillError> {
    for (index, t) in drill.traffic.iter().enumerate() {
        if lab.endpoint(t.from()).is_none() {
            return Err(DrillError::input(
                traffic(index).key("from"),
                format!(
                    "`{}` is not an endpoint of the topology (VMs, EC2 instances, S3)",
                    t.from()
                ),
            ));
        }
        if lab.resolve(t.to()).is_none() {
            return Err(DrillError::input(
                traffic(index).key("to"),
                format!("`{}` is neither an endpoint nor an IPv4 address", t.to()),
            ));
        }
        if matches!(t, Traffic::Tcp { .. }) && endpoint_named_or_at(lab, t.to()).is_none() {
            return Err(DrillError::input(
                traffic(index).key("to"),
                format!(
                    "a TCP target must be an endpoint, to run its server: `{}`",
                    t.to()
                ),
            ));
        }
    }
    Ok(())
}

/// The endpoint called `name`, or holding the address `name`.
pub(crate) fn endpoint_named_or_at(lab: &Lab, name: &str) -> Option<NodeId> {
    if lab.endpoint(name).is_some() {
        return lab.id(name);
    }
    let ip: Ipv4Addr = name.parse().ok()?;
    lab.sim
        .nodes()
        .find(|(id, _)| {
            lab.sim
                .get::<Endpoint>(*id)
                .is_some_and(|e| e.config().ip == ip)
        })
        .map(|(id, _)| id)
}

/// Capture every link, into a file of its own or one pcapng file; returns each captured link
/// with its file.
fn start_pcaps(lab: &mut Lab, opts: &RunOptions) -> Result<Vec<(usize, PathBuf)>, DrillError> {
    let Some(path) = &opts.pcap_dir else {
        return Ok(Vec::new());
    };
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DrillError::Pcap { path, source }
    };
    let links = lab.sim.links().to_vec();
    // The links to capture, by index: those named, or all.
    let chosen: Vec<usize> = match &opts.pcap_links {
        None => (0..links.len()).collect(),
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let Some(i) = lab.sim.link_by_name(name) else {
                    return Err(DrillError::PcapLink {
                        name: name.clone(),
                        hint: link_hint(&links, name),
                    });
                };
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
            chosen
        }
    };
    if path.extension().is_some_and(|x| x == "pcapng") {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
        }
        let names: Vec<String> = chosen.iter().map(|&i| links[i].name.clone()).collect();
        let file = PcapNgFile::create(path, &names).map_err(err(path))?;
        for (interface, &i) in chosen.iter().enumerate() {
            lab.sim.capture(i, Box::new(file.sink(interface as u32)));
        }
        return Ok(chosen.iter().map(|&i| (i, path.clone())).collect());
    }
    std::fs::create_dir_all(path).map_err(err(path))?;
    let writers = CaptureWriters::new().map_err(err(path))?;
    let mut captured = Vec::new();
    for &i in &chosen {
        let file = path.join(format!("{}.pcap", links[i].name));
        match PcapFile::create(&file, &writers) {
            Ok(f) => {
                lab.sim.capture(i, Box::new(f));
                captured.push((i, file));
            }
            Err(source) => {
                // Nothing half-made is left behind: the files opened so far go.
                for (link, made) in &captured {
                    drop(lab.sim.take_capture(*link));
                    let _ = std::fs::remove_file(made);
                }
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    return Err(DrillError::PcapFiles {
                        links: links.len(),
                        source,
                    });
                }
                return Err(err(&file)(source));
            }
        }
    }
    Ok(captured)
}

/// What to say of a link name the lab does not have: the links whose names hold it, or how
/// links are named.
fn link_hint(links: &[crate::runtime::sim::Link], name: &str) -> String {
    let near: Vec<&str> = links
        .iter()
        .map(|l| l.name.as_str())
        .filter(|l| !name.is_empty() && l.contains(name))
        .take(12)
        .collect();
    if near.is_empty() {
        let first = links.first().map_or("web-1--esxi-1", |l| l.name.as_str());
        format!("a link is named after its two ends, as {first}")
    } else {
        format!("did you mean: {}", near.join(", "))
    }
}

fn finish_pcaps(lab: &mut Lab, links: Vec<(usize, PathBuf)>) -> Result<(), DrillError> {
    for (i, path) in links {
        if let Some(mut sink) = lab.sim.take_capture(i) {
            sink.finish()
                .map_err(|source| DrillError::Pcap { path, source })?;
        }
    }
    Ok(())
}

fn run_step(lab: &mut Lab, index: usize, t: &Traffic, timeout: Duration) -> StepResult {
    let start = lab.sim.now();
    let Launched {
        from,
        dst,
        app,
        server,
    } = launch(lab, t, TCP_STALL_TIMEOUT);
    // A ping's last request leaves (count - 1) intervals after the first.
    let scheduled = match t {
        Traffic::Ping {
            count, interval, ..
        } => interval.saturating_mul(count.saturating_sub(1)),
        _ => Duration::ZERO,
    };
    let timeout = scheduled + timeout;
    let deadline = start + timeout;
    let stop = lab.run_while(deadline, |sim| {
        sim.get::<Endpoint>(from).is_some_and(|e| e.app(app).done())
    });
    let finished = stop == Stop::Done;
    let interrupted = stop == Stop::Interrupted;
    let took = lab.sim.now() - start;
    let mut r = app_result(lab, index, t, dst, start, from, app, server);
    if interrupted {
        r.failures.push(format!(
            "interrupted after {:.3} s of virtual time",
            took.as_secs_f64()
        ));
    } else if !finished {
        r.failures.push(format!(
            "did not finish within {} s of virtual time",
            timeout.as_secs()
        ));
    }
    r.passed = r.failures.is_empty();
    r
}

/// A ping, TCP or traceroute item started: its sender, target address, app and TCP server.
struct Launched {
    from: NodeId,
    dst: Ipv4Addr,
    app: usize,
    server: Server,
}

/// Start item `t` now; a TCP stream gives up after `give_up` without progress.
fn launch(lab: &mut Lab, t: &Traffic, give_up: Duration) -> Launched {
    let now = lab.sim.now();
    let from = lab.id(t.from()).expect("checked");
    let dst = lab.resolve(t.to()).expect("checked");
    let server = tcp_server(lab, t);
    let ep: &mut Endpoint = lab.sim.get_mut(from).expect("endpoint");
    let app = match t {
        Traffic::Ping {
            count,
            interval,
            size,
            ..
        } => ep.ping(now, dst, *count, *interval, *size),
        Traffic::Tcp { port, rate, .. } => ep.tcp_stream(
            now,
            dst,
            *port,
            TcpStream {
                bytes: t.tcp_bytes().expect("checked"),
                rate_bps: rate.map(|r| r.bits_per_sec()),
                give_up,
            },
        ),
        Traffic::Traceroute { max_hops, .. } => ep.traceroute(now, dst, *max_hops),
        Traffic::Probe { .. } => unreachable!("a probe is set up on its own"),
    };
    Launched {
        from,
        dst,
        app,
        server,
    }
}

/// Where a TCP item's server listens: its endpoint, port, and the connections it had before.
type Server = Option<(NodeId, u16, usize)>;

/// Start the server of a TCP item on its target (once per port).
fn tcp_server(lab: &mut Lab, t: &Traffic) -> Server {
    let Traffic::Tcp { port, .. } = t else {
        return None;
    };
    let id = endpoint_named_or_at(lab, t.to()).expect("checked");
    let ep: &mut Endpoint = lab.sim.get_mut(id).expect("endpoint");
    if ep.tcp_server(*port).is_none() {
        ep.tcp_listen(*port);
    }
    let before = ep.tcp_server(*port).map_or(0, |s| s.connections.len());
    Some((id, *port, before))
}

/// The outcome of the app `app` of endpoint `from`, checked against the item's expectations.
#[allow(clippy::too_many_arguments)]
fn app_result(
    lab: &Lab,
    index: usize,
    t: &Traffic,
    dst: Ipv4Addr,
    start: Instant,
    from: NodeId,
    app: usize,
    server: Server,
) -> StepResult {
    let report = lab
        .sim
        .get::<Endpoint>(from)
        .expect("endpoint")
        .app(app)
        .clone();
    let conn = server.and_then(|(id, port, before)| {
        let s = lab.sim.get::<Endpoint>(id)?.tcp_server(port)?;
        s.connections.get(before).cloned()
    });
    let took = match &report {
        AppReport::TcpSend(s) => s.finished.unwrap_or(lab.sim.now()) - start,
        _ => lab.sim.now() - start,
    };
    judged(index, t, dst, start, took, report, conn)
}

/// A ping, TCP or traceroute item's step (however it ran, sim or live), with what its `expect`
/// finds wrong.
pub(crate) fn judged(
    index: usize,
    t: &Traffic,
    dst: Ipv4Addr,
    start: Instant,
    took: Duration,
    app: AppReport,
    conn: Option<TcpConnStats>,
) -> StepResult {
    let mut r = StepResult::new(index, t, dst, start, took, app);
    r.server_connection = conn.clone();
    evaluate(&mut r, t, conn.as_ref());
    r.passed = r.failures.is_empty();
    r
}

fn evaluate(r: &mut StepResult, t: &Traffic, conn: Option<&TcpConnStats>) {
    let ex = t.expect();
    if let Some(within) = ex.within {
        if r.duration_s > within.as_secs_f64() {
            r.failures.push(format!(
                "took {:.3} s, expected within {:.3} s",
                r.duration_s,
                within.as_secs_f64()
            ));
        }
    }
    match (&r.app, t) {
        (AppReport::Ping(p), Traffic::Ping { count, .. }) => {
            let want = ex.received.unwrap_or(*count);
            if p.received != want {
                r.failures
                    .push(format!("{} replies, expected {want}", p.received));
            }
            if let Some(ttl) = ex.reply_ttl {
                if let Some(bad) = p.reply_ttls.iter().find(|&&x| x != ttl) {
                    r.failures
                        .push(format!("a reply arrived with TTL {bad}, expected {ttl}"));
                }
            }
        }
        (AppReport::TcpSend(s), Traffic::Tcp { .. }) => {
            let bytes = &t.tcp_bytes().expect("checked");
            let complete = s.error.is_none()
                && s.finished.is_some()
                && s.acked == *bytes
                && conn.is_some_and(|c| c.bytes == *bytes && c.pattern_ok);
            match (ex.complete.unwrap_or(true), complete) {
                (true, false) => r.failures.push(match (&s.error, conn) {
                    (Some(e), _) => format!("transfer failed: {e}"),
                    (None, None) => "the server saw no connection".into(),
                    (None, Some(c)) if !c.pattern_ok => "the server received corrupted data".into(),
                    (None, Some(c)) => format!(
                        "{} of {bytes} bytes acknowledged, {} received",
                        s.acked, c.bytes
                    ),
                }),
                (false, true) => r
                    .failures
                    .push("the transfer completed, expected it to fail".into()),
                _ => {}
            }
            if let Some(want) = ex.server_sees_source {
                match conn {
                    Some(c) if *c.peer.ip() == want => {}
                    Some(c) => r.failures.push(format!(
                        "the server saw source {}, expected {want}",
                        c.peer.ip()
                    )),
                    None => r.failures.push(format!(
                        "the server saw no connection, expected one from {want}"
                    )),
                }
            }
        }
        (AppReport::Traceroute(tr), Traffic::Traceroute { .. }) => {
            if ex.reached.unwrap_or(true) != tr.reached {
                r.failures.push(if tr.reached {
                    "reached the target, expected not to".into()
                } else {
                    "did not reach the target".into()
                });
            }
            if let Some(want) = &ex.hops {
                let got = super::report::hop_strings(&tr.hops);
                if &got != want {
                    r.failures.push(format!(
                        "hops {}, expected {}",
                        got.join(" "),
                        want.join(" ")
                    ));
                }
            }
        }
        _ => r.failures.push("internal: report of another kind".into()),
    }
}

/// Non-zero drop counters of every node, then of every link (by direction).
pub(crate) fn drops(lab: &Lab) -> Vec<DropCount> {
    let links = lab.sim.links().iter().enumerate().flat_map(|(i, l)| {
        let [ab, ba] = lab.sim.link_counters(i);
        let ends = |from: (usize, u16), to: (usize, u16)| {
            format!(
                "{} -> {}",
                lab.sim.node(from.0).name(),
                lab.sim.node(to.0).name()
            )
        };
        [(ab, ends(l.a, l.b)), (ba, ends(l.b, l.a))]
            .into_iter()
            .flat_map(|(c, dir)| {
                c.list()
                    .into_iter()
                    .filter(|(k, v)| k.contains("dropped") && *v > 0)
                    .map(move |(k, v)| DropCount {
                        node: format!("link {dir}"),
                        counter: k.to_string(),
                        count: v,
                    })
            })
            .collect::<Vec<_>>()
    });
    let nodes = lab.sim.nodes().flat_map(|(_, n)| {
        n.counters()
            .into_iter()
            .filter(|(k, v)| k.contains("dropped") && *v > 0)
            .map(|(k, v)| DropCount {
                node: n.name().to_string(),
                counter: k.to_string(),
                count: v,
            })
            .collect::<Vec<_>>()
    });
    nodes.chain(links).collect()
}
