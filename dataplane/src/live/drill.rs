//! `vmcnet drill TOPO DRILL --live`: the same drill files as the sim, run by real programs in a
//! live lab's namespaces, with the actions applied on the lab's clock, and the same report.
//!
//! - `probe` items: a probe agent at each end (`vmcnet probe-agent`, [`super::probe`]).
//! - `ping` items: `ping -i`.
//! - `tcp` items: `iperf3` (`-n BYTES`, paced with `-b` for a stream at a rate), its server
//!   on the target. iperf3 does not check the payload (TCP's checksum does), so a live report's
//!   `pattern_ok` says only that the bytes arrived; and it ends its test before the last bytes
//!   are acknowledged, so live, `complete` means the connection survived (see [`tcp_step`]).
//! - `traceroute` items run in the sim only, for now.
//!
//! Every program starts through `vmcnet exec`, a moment before its item's instant (a shell
//! `sleep` waits out the rest), and writes its output to a file of a temporary directory, read
//! once it has exited.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmcnet_topo::Topology;

use super::probe::{AgentPlan, AgentReport};
use super::runtime::{Ended, LiveLab, Pinning, Signals};
use super::LabName;
use crate::control::action::Strategy;
use crate::control::Lab;
use crate::drill::file::{DrillFile, Reconciler, Traffic};
use crate::drill::report::{DrillReport, Tables, TcpInterval};
use crate::drill::run::{self, DrillError, ProbeOutcome};
use crate::node::endpoint::probe::{self, ProbeArrival, ProbeReport};
use crate::node::endpoint::{
    AppReport, Endpoint, EndpointKind, PingReport, TcpConnStats, TcpSendReport,
};
use crate::time::Instant;

/// Between the lab coming up and the drill's instant zero: time for every program to start.
const LEAD: Duration = Duration::from_millis(1500);
/// A probe agent listens this long after its last datagram.
const LINGER: Duration = Duration::from_millis(500);
/// How long past its schedule the drill waits for programs still running (a TCP transfer
/// behind an outage) before it stops them and counts them failed.
const OVERTIME: Duration = Duration::from_secs(120);
/// How long a ping waits for each reply.
const PING_WAIT_S: &str = "1";

/// How to run a live drill.
#[derive(Debug, Clone)]
pub struct LiveDrillOptions {
    pub lab: LabName,
    /// The topology file, for the state file.
    pub topo_path: String,
    /// The `vmcnet` binary, to run `vmcnet exec` and `vmcnet probe-agent`.
    pub exe: PathBuf,
    /// The engine's CPU while a stream keeps it busy ([`LiveLab::pin_engine`]).
    pub cpu: Option<usize>,
}

/// A program of the drill, stopped (and waited for) when dropped.
struct Program {
    child: Child,
    out: PathBuf,
}

impl Program {
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn stop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    fn output(&mut self) -> String {
        self.stop();
        fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A traffic item running.
enum Running {
    Probe {
        index: usize,
        plans: [AgentPlan; 2],
        agents: [Program; 2],
        interval: Duration,
        start: Instant,
        kinds: [EndpointKind; 2],
    },
    Ping {
        index: usize,
        dst: Ipv4Addr,
        count: u32,
        start: Instant,
        ping: Program,
    },
    Tcp {
        index: usize,
        dst: Ipv4Addr,
        port: u16,
        bytes: u64,
        rate_bps: Option<u64>,
        start: Instant,
        client: Program,
        server: Program,
    },
}

impl Running {
    /// The programs whose end the drill waits for (not the servers).
    fn clients(&mut self) -> Vec<&mut Program> {
        match self {
            Running::Probe { agents, .. } => agents.iter_mut().collect(),
            Running::Ping { ping, .. } => vec![ping],
            Running::Tcp { client, .. } => vec![client],
        }
    }
}

/// A temporary directory for the programs' output, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run `drill` live on `topo`. Signals stop it where it is; the report then says interrupted.
pub fn run_live_drill(
    topo: &Topology,
    drill: &DrillFile,
    opts: &LiveDrillOptions,
    signals: &Signals,
) -> Result<DrillReport, DrillError> {
    run_inner(topo, drill, opts, signals).map_err(|e| e.located(drill))
}

fn run_inner(
    topo: &Topology,
    drill: &DrillFile,
    opts: &LiveDrillOptions,
    signals: &Signals,
) -> Result<DrillReport, DrillError> {
    // The file is checked against the topology as the sim checks it.
    let sim = Lab::build(topo, drill.seed);
    run::check_names(&sim, drill)?;
    let formulas = run::check_formulas(topo, drill)?;
    drill
        .check()
        .map_err(|v| DrillError::input(v.field, v.message))?;
    for (index, t) in drill.traffic.iter().enumerate() {
        if matches!(t, Traffic::Traceroute { .. }) {
            return Err(DrillError::input(
                run::traffic(index).key("kind"),
                "a live drill runs probe, ping and tcp items; traceroute runs in the sim only",
            ));
        }
        if matches!(t, Traffic::Probe { .. } | Traffic::Tcp { .. })
            && run::endpoint_named_or_at(&sim, t.to()).is_none()
        {
            return Err(DrillError::input(
                run::traffic(index).key("to"),
                format!(
                    "`{}`: a probe's or a TCP item's target must be an endpoint",
                    t.to()
                ),
            ));
        }
    }
    let live_err = |e: &dyn std::fmt::Display| DrillError::Live(e.to_string());
    // The drill's own endpoints go live; the others stay the sim's, which answer ARP and ping.
    let mut endpoints: Vec<String> = Vec::new();
    for t in &drill.traffic {
        for name in [t.from(), t.to()] {
            let id = run::endpoint_named_or_at(&sim, name);
            if let Some(ep) = id.and_then(|id| sim.sim.get::<Endpoint>(id)) {
                let name = ep.config().name.clone();
                if !endpoints.contains(&name) {
                    endpoints.push(name);
                }
            }
        }
    }
    let pinning = (opts.cpu.map(Pinning::new).transpose()).map_err(|e| live_err(&e))?;
    let (mut live, _) = LiveLab::up(
        topo,
        &opts.topo_path,
        opts.lab.clone(),
        drill.seed,
        Some(&endpoints),
    )
    .map_err(|e| live_err(&e))?;
    if let Some(p) = pinning {
        live.pin_engine(p);
    }
    // In the lab's own corner of /run/vmcnet (root's alone; `up` removed a stale one), so that
    // nobody can plant a link where a program's output goes.
    let scratch = Scratch(super::state::scratch_path(&opts.lab));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch.0)
        .map_err(|e| live_err(&e))?;
    live.lab.set_reconciler(match drill.reconciler {
        Reconciler::IpMove => Some(Strategy::IpMove),
        Reconciler::EniReattach => Some(Strategy::EniReattach),
        Reconciler::Off => None,
    });
    live.start_clock_in(LEAD);
    let before = Tables::of(&live.lab);
    run::check_tables(&before, drill)?;
    for (index, a) in drill.actions.iter().enumerate() {
        for action in run::lab_actions(a) {
            live.lab
                .request(Instant::ZERO + a.at(), action)
                .map_err(|e| {
                    DrillError::input(
                        vmcnet_topo::FieldPath::new("action").index(index),
                        e.to_string(),
                    )
                })?;
        }
    }

    let ip_of = |name: &str| sim.resolve(name).expect("checked");
    let node_at = |name: &str| {
        let id = run::endpoint_named_or_at(&sim, name).expect("checked");
        sim.sim
            .get::<Endpoint>(id)
            .expect("an endpoint")
            .config()
            .clone()
    };
    let mut end = Instant::ZERO + drill.last_action_at();
    let mut running = Vec::new();
    let launcher = Launcher {
        live: &live,
        exe: &opts.exe,
        dir: &scratch.0,
    };
    for (index, t) in drill.traffic.iter().enumerate() {
        let from = node_at(t.from());
        match t {
            Traffic::Probe {
                start,
                duration,
                interval,
                port,
                ..
            } => {
                let to = node_at(t.to());
                let count = (duration.as_nanos() / interval.as_nanos().max(1)) as u32;
                let start = Instant::ZERO + *start;
                end = end.max(start + *interval * count);
                let plan = |me: &crate::node::endpoint::EndpointConfig, peer: Ipv4Addr| AgentPlan {
                    port: *port,
                    to: peer,
                    stream: probe::stream_id(me.ip, *port),
                    interval: *interval,
                    count,
                    start_mono_ns: live.clock().mono_of(start),
                    linger: LINGER,
                };
                let plans = [plan(&from, to.ip), plan(&to, from.ip)];
                let agents = [
                    launcher.agent(index, 0, &from.name, &plans[0])?,
                    launcher.agent(index, 1, &to.name, &plans[1])?,
                ];
                running.push(Running::Probe {
                    index,
                    plans,
                    agents,
                    interval: *interval,
                    start,
                    kinds: [from.kind, to.kind],
                });
            }
            Traffic::Ping {
                count,
                interval,
                size,
                start,
                ..
            } => {
                let dst = ip_of(t.to());
                let start = Instant::ZERO + start.unwrap_or_default();
                end = end.max(start + interval.saturating_mul(*count));
                let cmd = format!(
                    "exec ping -n -c {count} -i {:.3} -s {size} -W {PING_WAIT_S} {dst}",
                    interval.as_secs_f64()
                );
                let ping = launcher.later(index, "ping", &from.name, start, &cmd)?;
                running.push(Running::Ping {
                    index,
                    dst,
                    count: *count,
                    start,
                    ping,
                });
            }
            Traffic::Tcp {
                port,
                rate,
                start,
                duration,
                ..
            } => {
                let to = node_at(t.to());
                let bytes = t.tcp_bytes().expect("checked");
                let start = Instant::ZERO + start.unwrap_or_default();
                end = end.max(start + duration.unwrap_or_default());
                let rate_bps = rate.map(|r| r.bits_per_sec()).filter(|&b| b > 0);
                let server = launcher.now(
                    index,
                    "server",
                    &to.name,
                    &[
                        "iperf3",
                        "-s",
                        "-1",
                        "-J",
                        "-p",
                        &port.to_string(),
                        "-B",
                        &to.ip.to_string(),
                    ],
                )?;
                let pace = rate_bps.map(|b| format!(" -b {b}")).unwrap_or_default();
                let cmd = format!(
                    "exec iperf3 -c {} -p {port} -n {bytes}{pace} -J -i 0.1 --connect-timeout 5000",
                    to.ip
                );
                let client = launcher.later(index, "client", &from.name, start, &cmd)?;
                running.push(Running::Tcp {
                    index,
                    dst: to.ip,
                    port: *port,
                    bytes,
                    rate_bps,
                    start,
                    client,
                    server,
                });
            }
            Traffic::Traceroute { .. } => unreachable!("refused above"),
        }
    }

    // The drill's schedule, then on until every program has ended and what the actions set
    // off has played out, or until the overtime runs out.
    let schedule_end = end + LINGER + Duration::from_secs(1);
    let bar = progress(drill, schedule_end);
    let mut ended: Option<Ended> = None;
    while ended.is_none() && live.lab.sim.now() < schedule_end {
        let next = (live.lab.sim.now() + PROGRESS_STEP).min(schedule_end);
        ended = live
            .run(signals, None, Some(next))
            .map_err(|e| live_err(&e))?;
        bar.set_position(live.lab.sim.now().as_millis());
    }
    bar.set_message("waiting for the programs to end");
    let cap = end + OVERTIME;
    while ended.is_none() && live.lab.sim.now() < cap {
        let busy = live.lab.pending_actions()
            || running
                .iter_mut()
                .any(|r| r.clients().iter_mut().any(|p| !p.exited()));
        if !busy {
            break;
        }
        let next = live.lab.sim.now() + Duration::from_millis(100);
        ended = live
            .run(signals, None, Some(next))
            .map_err(|e| live_err(&e))?;
    }
    bar.finish_and_clear();
    let interrupted = ended.is_some();
    let now = live.lab.sim.now();
    let clock = live.clock();
    let mut steps = Vec::new();
    for r in running {
        steps.push(match r {
            Running::Probe {
                index,
                plans,
                mut agents,
                interval,
                start,
                kinds,
            } => {
                let reports: Vec<AgentReport> = agents
                    .iter_mut()
                    .map(|a| serde_json::from_str(&a.output()).unwrap_or_default())
                    .collect();
                let arrivals = |k: usize| -> Vec<ProbeArrival> {
                    reports[k]
                        .arrivals
                        .iter()
                        .map(|a| ProbeArrival {
                            from: a.from,
                            stream: a.stream,
                            seq: a.seq,
                            at: clock.of_mono(a.at_mono_ns),
                        })
                        .collect()
                };
                let sent = |k: usize| ProbeReport {
                    dst: plans[k].to,
                    port: plans[k].port,
                    src_port: plans[k].port,
                    stream: plans[k].stream,
                    count: plans[k].count,
                    interval,
                    started: start,
                    sent: reports[k].sent,
                    done: reports[k].sent == plans[k].count,
                };
                let losses = vec![
                    probe::loss(&sent(0), &arrivals(1)),
                    probe::loss(&sent(1), &arrivals(0)),
                ];
                run::probe_verdict(
                    ProbeOutcome {
                        index,
                        interval,
                        report: sent(0),
                        losses,
                        kinds,
                        now,
                        interrupted,
                    },
                    &drill.traffic[index],
                    &formulas[index],
                )
            }
            Running::Ping {
                index,
                dst,
                count,
                start,
                mut ping,
            } => {
                let report = parse_ping(&ping.output(), dst, count);
                let t = &drill.traffic[index];
                run::judged(
                    index,
                    t,
                    dst,
                    start,
                    now - start,
                    AppReport::Ping(report),
                    None,
                )
            }
            Running::Tcp {
                index,
                dst,
                port,
                bytes,
                rate_bps,
                start,
                mut client,
                mut server,
            } => {
                let out = client.output();
                let (report, took) =
                    parse_iperf3_client(&out, dst, port, bytes, rate_bps, start, now);
                let conn = parse_iperf3_server(&server.output());
                let mut step = tcp_step(index, drill, start, took, report, conn);
                step.intervals = Some(parse_iperf3_intervals(&out, start));
                step
            }
        });
    }
    steps.sort_by_key(|s| s.index);
    if interrupted {
        for s in &mut steps {
            s.failures.push("interrupted".into());
            s.passed = false;
        }
    }
    let report = run::report(topo, drill, &live.lab, steps, interrupted, before)?;
    live.down().map_err(|e| live_err(&e))?;
    Ok(report)
}

/// How often a live drill's progress bar moves.
const PROGRESS_STEP: Duration = Duration::from_millis(200);

/// A bar over the drill's schedule, in milliseconds of the lab's clock, on standard error;
/// drawn only where that is a terminal.
fn progress(drill: &DrillFile, end: Instant) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(end.as_millis()),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} ms {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("drill {} (live)", drill.name));
    bar
}

/// A TCP item's step, live. iperf3 ends its test once the client has handed TCP its last
/// byte, without waiting for it to be acknowledged, so after a stall some bytes are still in
/// flight when both ends count: the sim's `complete` (every byte acknowledged) cannot be asked
/// of it. Live, `complete` means the connection survived: no error, the server saw it, and
/// bytes moved again after its longest stall.
fn tcp_step(
    index: usize,
    drill: &DrillFile,
    start: Instant,
    took: Duration,
    report: TcpSendReport,
    conn: Option<TcpConnStats>,
) -> crate::drill::StepResult {
    let t = &drill.traffic[index];
    let ex = t.expect();
    let resumed = report.longest_stall.is_zero()
        || report.finished.is_some_and(|f| {
            report
                .longest_stall_from
                .is_some_and(|from| f > from + report.longest_stall)
        });
    let survived = report.error.is_none() && conn.is_some() && resumed;
    let mut r = crate::drill::StepResult::new(
        index,
        t,
        report.dst,
        start,
        took,
        AppReport::TcpSend(report.clone()),
    );
    r.server_connection = conn.clone();
    match (ex.complete.unwrap_or(true), survived) {
        (true, false) => r.failures.push(match (&report.error, &conn) {
            (Some(e), _) => format!("iperf3 failed: {e}"),
            (None, None) => "the server saw no connection".into(),
            (None, Some(_)) => "no byte moved after the longest stall".into(),
        }),
        (false, true) => r
            .failures
            .push("the connection survived, expected it to fail".into()),
        _ => {}
    }
    if let (Some(want), Some(c)) = (ex.server_sees_source, &conn) {
        if *c.peer.ip() != want {
            r.failures.push(format!(
                "the server saw source {}, expected {want}",
                c.peer.ip()
            ));
        }
    }
    if let Some(within) = ex.within {
        if took > within {
            r.failures.push(format!(
                "took {:.3} s, expected within {:.3} s",
                took.as_secs_f64(),
                within.as_secs_f64()
            ));
        }
    }
    r.passed = r.failures.is_empty();
    r
}

/// Starts the drill's programs in the lab's namespaces.
struct Launcher<'a> {
    live: &'a LiveLab,
    exe: &'a Path,
    dir: &'a Path,
}

impl Launcher<'_> {
    /// `vmcnet exec LAB NODE -- ARGS…` now, its output to a file of its own.
    fn now(
        &self,
        index: usize,
        what: &str,
        node: &str,
        args: &[&str],
    ) -> Result<Program, DrillError> {
        let out = self.dir.join(format!("{index}-{what}.out"));
        let file = fs::File::create(&out).map_err(|e| DrillError::Live(e.to_string()))?;
        let child = Command::new(self.exe)
            .args(["exec", self.live.name.as_str(), node, "--"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| DrillError::Live(format!("{}: {e}", self.exe.display())))?;
        Ok(Program { child, out })
    }

    /// A shell command in `node`, started at instant `at` of the lab (a `sleep` waits until
    /// then).
    fn later(
        &self,
        index: usize,
        what: &str,
        node: &str,
        at: Instant,
        cmd: &str,
    ) -> Result<Program, DrillError> {
        // On the monotonic clock: before the lab's instant zero its clock reads zero.
        let due = self.live.clock().mono_of(at);
        let wait = Duration::from_nanos(due.saturating_sub(super::probe::mono_ns()));
        let script = format!("sleep {:.6}; {cmd}", wait.as_secs_f64());
        self.now(index, what, node, &["sh", "-c", &script])
    }

    /// A probe agent in `node`.
    fn agent(
        &self,
        index: usize,
        k: usize,
        node: &str,
        p: &AgentPlan,
    ) -> Result<Program, DrillError> {
        let exe = self.exe.display().to_string();
        let args = [
            exe.as_str(),
            "probe-agent",
            "--port",
            &p.port.to_string(),
            "--to",
            &p.to.to_string(),
            "--stream",
            &p.stream.to_string(),
            "--interval-ns",
            &p.interval.as_nanos().to_string(),
            "--count",
            &p.count.to_string(),
            "--start-mono-ns",
            &p.start_mono_ns.to_string(),
            "--linger-ms",
            &p.linger.as_millis().to_string(),
        ];
        self.now(index, &format!("probe{k}"), node, &args)
    }
}

/// `ping`'s output as the sim's ping report: the replies' round trips and TTLs, distinct
/// sequence numbers answered.
pub fn parse_ping(out: &str, dst: Ipv4Addr, count: u32) -> PingReport {
    let mut seqs = std::collections::BTreeSet::new();
    let mut rtts = Vec::new();
    let mut ttls = Vec::new();
    let mut sent = 0;
    for line in out.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        if line.contains(" bytes from ") {
            if let Some(seq) = field("icmp_seq=").and_then(|s| s.parse::<u32>().ok()) {
                seqs.insert(seq);
            }
            ttls.push(field("ttl=").and_then(|t| t.parse().ok()).unwrap_or(0));
            let ms: f64 = field("time=").and_then(|t| t.parse().ok()).unwrap_or(0.0);
            rtts.push(Duration::from_secs_f64(ms / 1e3));
        }
        if let Some((n, _)) = line.split_once(" packets transmitted") {
            sent = n.trim().parse().unwrap_or(0);
        }
    }
    PingReport {
        dst,
        count,
        sent,
        received: seqs.len() as u32,
        rtts,
        reply_ttls: ttls,
        errors: Vec::new(),
        done: true,
    }
}

/// iperf3's client JSON as the sim's TCP report, and how long the transfer took.
pub fn parse_iperf3_client(
    out: &str,
    dst: Ipv4Addr,
    port: u16,
    bytes: u64,
    rate_bps: Option<u64>,
    start: Instant,
    now: Instant,
) -> (TcpSendReport, Duration) {
    let j: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    let sent = &j["end"]["sum_sent"];
    let received = j["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let error = match j["error"].as_str() {
        Some(e) => Some(e.to_string()),
        None if j.is_null() => Some("iperf3 gave no report".to_string()),
        None => None,
    };
    let seconds = sent["seconds"].as_f64().filter(|_| error.is_none());
    let finished = seconds.map(|s| start + Duration::from_secs_f64(s));
    // The longest run of intervals that moved nothing.
    let (mut stall, mut stall_from) = (Duration::ZERO, None);
    let mut run: Option<(f64, f64)> = None;
    for i in j["intervals"].as_array().into_iter().flatten() {
        let sum = &i["sum"];
        let (from, to) = (
            sum["start"].as_f64().unwrap_or(0.0),
            sum["end"].as_f64().unwrap_or(0.0),
        );
        if sum["bytes"].as_u64() == Some(0) {
            let r = run.get_or_insert((from, to));
            r.1 = to;
            let d = Duration::from_secs_f64((r.1 - r.0).max(0.0));
            if d > stall {
                stall = d;
                stall_from = Some(start + Duration::from_secs_f64(r.0));
            }
        } else {
            run = None;
        }
    }
    let local_port = j["start"]["connected"][0]["local_port"]
        .as_u64()
        .unwrap_or(0) as u16;
    let took = finished.unwrap_or(now).saturating_since(start);
    (
        TcpSendReport {
            dst,
            port,
            src_port: local_port,
            requested: bytes,
            acked: received.min(sent["bytes"].as_u64().unwrap_or(0)),
            started: start,
            finished,
            error,
            icmp_errors: Vec::new(),
            retransmits: sent["retransmits"].as_u64().unwrap_or(0),
            rate_bps,
            longest_stall: stall,
            longest_stall_from: stall_from,
            done: true,
        },
        took,
    )
}

/// iperf3's intervals, on the lab's clock (the client started at `start`).
pub fn parse_iperf3_intervals(out: &str, start: Instant) -> Vec<TcpInterval> {
    let j: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    let at = |s: f64| (start + Duration::from_secs_f64(s.max(0.0))).as_secs_f64();
    j["intervals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let sum = &i["sum"];
            TcpInterval {
                from_s: at(sum["start"].as_f64().unwrap_or(0.0)),
                to_s: at(sum["end"].as_f64().unwrap_or(0.0)),
                bytes: sum["bytes"].as_u64().unwrap_or(0),
                retransmits: sum["retransmits"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

/// iperf3's server JSON as the connection the server saw: its peer (after any NAT) and the
/// bytes it received. iperf3 does not check the payload: `pattern_ok` says the bytes arrived.
pub fn parse_iperf3_server(out: &str) -> Option<TcpConnStats> {
    let j: serde_json::Value = serde_json::from_str(out).ok()?;
    let c = &j["start"]["connected"][0];
    let peer = SocketAddrV4::new(
        c["remote_host"].as_str()?.parse().ok()?,
        c["remote_port"].as_u64()? as u16,
    );
    Some(TcpConnStats {
        peer,
        bytes: j["end"]["sum_received"]["bytes"].as_u64()?,
        pattern_ok: true,
        peer_closed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_becomes_a_ping_report() {
        let out = "PING 172.31.16.10 (172.31.16.10) 56(84) bytes of data.\n\
                   64 bytes from 172.31.16.10: icmp_seq=1 ttl=63 time=1.62 ms\n\
                   64 bytes from 172.31.16.10: icmp_seq=3 ttl=63 time=0.369 ms\n\
                   64 bytes from 172.31.16.10: icmp_seq=3 ttl=63 time=0.4 ms (DUP!)\n\
                   \n--- 172.31.16.10 ping statistics ---\n\
                   3 packets transmitted, 2 received, 33% packet loss, time 403ms\n";
        let r = parse_ping(out, Ipv4Addr::new(172, 31, 16, 10), 3);
        assert_eq!((r.sent, r.received), (3, 2));
        assert_eq!(r.reply_ttls, vec![63, 63, 63]);
        assert_eq!(r.rtts[0], Duration::from_micros(1620));
    }

    #[test]
    fn iperf3_json_becomes_a_tcp_report_with_its_longest_stall() {
        let out = r#"{"start":{"connected":[{"local_port":40000}]},
            "intervals":[{"sum":{"start":0,"end":0.1,"bytes":100}},
                         {"sum":{"start":0.1,"end":0.2,"bytes":0}},
                         {"sum":{"start":0.2,"end":0.3,"bytes":0}},
                         {"sum":{"start":0.3,"end":0.4,"bytes":50}}],
            "end":{"sum_sent":{"bytes":150,"seconds":0.4,"retransmits":3},
                   "sum_received":{"bytes":150}}}"#;
        let start = Instant::from_millis(500);
        let (r, took) =
            parse_iperf3_client(out, Ipv4Addr::LOCALHOST, 5201, 150, None, start, start);
        assert_eq!((r.acked, r.retransmits, r.src_port), (150, 3, 40000));
        assert_eq!(r.error, None);
        assert_eq!(took, Duration::from_millis(400));
        assert_eq!(r.longest_stall, Duration::from_millis(200));
        assert_eq!(
            r.longest_stall_from,
            Some(start + Duration::from_millis(100))
        );
        let iv = parse_iperf3_intervals(out, start);
        assert_eq!(iv.len(), 4);
        assert_eq!((iv[1].from_s, iv[1].to_s, iv[1].bytes), (0.6, 0.7, 0));
        let (bad, _) = parse_iperf3_client("", Ipv4Addr::LOCALHOST, 5201, 150, None, start, start);
        assert!(bad.error.is_some());
    }
}
