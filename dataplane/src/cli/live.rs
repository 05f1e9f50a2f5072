//! `vmcnet up`, `exec` and `down`: the live lab from the command line.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vmcnet::drill::file::DrillAction;
use vmcnet::drill::run::lab_actions;
use vmcnet::live::control;
use vmcnet::live::runtime::{Answer, LiveLab, Signals};
use vmcnet::live::{netns, state, LabName};

use super::ShowWhat;

/// How long `down` waits for a running lab to remove itself before it kills it.
const DOWN_GRACE: Duration = Duration::from_secs(10);

fn need_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the live lab creates network namespaces and TAP devices: run it as root");
    }
    need_tun()
}

/// A lab's namespaces, state and socket are root's alone.
fn need_root_to(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("{what} a live lab needs root: its namespaces, state and control socket are root's");
    }
    Ok(())
}

fn need_tun() -> Result<()> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        bail!("the live lab needs /dev/net/tun (the tun module): none on this machine");
    }
    Ok(())
}

pub fn up(topo: &str, lab: &str, only: Option<&[String]>, cpu: Option<usize>) -> Result<ExitCode> {
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let t = super::load_topo(topo)?;
    let pinning = cpu.map(vmcnet::live::runtime::Pinning::new).transpose()?;
    need_root()?;
    // The handlers go in first, so that a Ctrl-C while the lab is built still removes it.
    let signals = Signals::install().context("installing the signal handlers")?;
    let (mut live, cleaned) = LiveLab::up(&t, topo, name.clone(), 1, only)?;
    if let Some(p) = pinning {
        live.pin_engine(p);
    }
    if !cleaned.is_empty() {
        eprintln!(
            "vmcnet: lab {name}: its last owner died; removed what it left: {}",
            cleaned.join(", ")
        );
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "endpoint",
        "kind",
        "address",
        "gateway",
        "runs on",
        "namespace",
    ]);
    for p in &live.ports {
        let c = &p.config;
        let runs_on = match live.lab.model.vm(&c.name) {
            Some(vm) => vm.host.clone(),
            None => c.kind.side().to_string(),
        };
        table.add_row([
            c.name.clone(),
            c.kind.as_str().to_string(),
            format!("{}/{}", c.ip, c.prefix_len),
            c.gateway.to_string(),
            runs_on,
            live.name.netns(&c.name),
        ]);
    }
    outln!("{table}")?;
    let server = match live.listen() {
        Ok(server) => server,
        Err(e) => {
            // Nothing is left behind of a lab that could not be served.
            let _ = live.down();
            return Err(e.into());
        }
    };
    let first = live
        .ports
        .first()
        .map(|p| p.config.name.as_str())
        .unwrap_or("NODE");
    outln!(
        "lab {name} is up (pid {}): `vmcnet exec {name} {first} -- ping ADDRESS`; \
         Ctrl-C or `vmcnet down {name}` ends it",
        std::process::id()
    )?;
    let ended = live.serve(server, &signals, &mut answer);
    let removed = live.down();
    let ended = ended?;
    removed?;
    eprintln!("vmcnet: lab {name} removed");
    Ok(ExitCode::from(ended.exit_code() as u8))
}

pub fn exec(lab: &str, node: &str, cmd: &[String]) -> Result<ExitCode> {
    need_root_to("running a command in")?;
    let (name, st) = running(lab)?;
    let Some((_, ns)) = st.namespaces.iter().find(|(n, _)| n == node) else {
        let nodes: Vec<&str> = st.namespaces.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "lab {name} has no endpoint {node:?}; it has: {}",
            nodes.join(", ")
        );
    };
    let path = format!("{}/{ns}", netns::NETNS_DIR);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {ns}"))?;
    let e = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    bail!("{}: {e}", cmd[0]);
}

pub fn down(lab: &str) -> Result<ExitCode> {
    need_root_to("taking down")?;
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let st = state::read(&name)?;
    let lock = match state::try_lock(&name)? {
        Some(lock) => lock,
        None => {
            let Some(st) = &st else {
                bail!(
                    "lab {name} is locked ({}) by a process that left no state file",
                    state::lock_path(&name).display()
                );
            };
            stop_owner(&name, st.pid)?
        }
    };
    let removed = state::remove(&name)?;
    state::unlock(&name, lock)?;
    if st.is_none() && removed.namespaces.is_empty() {
        bail!(
            "lab {name} is not up (no {}, no namespace {}*)",
            state::path(&name).display(),
            name.prefix()
        );
    }
    let mut what = format!("lab {name} is down");
    if !removed.namespaces.is_empty() {
        what += &format!("; removed {}", removed.namespaces.join(", "));
    }
    if removed.processes_killed > 0 {
        what += &format!(" and {} processes in them", removed.processes_killed);
    }
    outln!("{what}")?;
    Ok(ExitCode::SUCCESS)
}

/// Ask a lab's owner to end (it removes what it created), kill it if it does not, and take
/// the lock it lets go when it ends.
fn stop_owner(name: &LabName, pid: u32) -> Result<state::LabLock> {
    let pid_t = Pid::from_raw(pid as i32);
    // The lock is held, so `pid` (from the state file the owner wrote) is the owner.
    kill(pid_t, Signal::SIGTERM).with_context(|| format!("stopping lab {name} (pid {pid})"))?;
    let since = Instant::now();
    let mut killed = false;
    loop {
        if let Some(lock) = state::try_lock(name)? {
            return Ok(lock);
        }
        if !killed && since.elapsed() > DOWN_GRACE {
            eprintln!("vmcnet: lab {name}: pid {pid} did not end in {DOWN_GRACE:?}; killing it");
            let _ = kill(pid_t, Signal::SIGKILL);
            killed = true;
        }
        if since.elapsed() > 3 * DOWN_GRACE {
            bail!("lab {name}: pid {pid} still holds the lab's lock");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request to a live lab, as `vmcnet ctl LAB …` sends it.
#[derive(Parser)]
#[command(
    name = "vmcnet ctl LAB",
    no_binary_name = true,
    disable_version_flag = true,
    about = "Ask a live lab for its state, or run a drill's action in it now."
)]
struct CtlArgs {
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// The lab's state: the views and JSON shapes of `vmcnet show`, and the live lab's own.
    Show {
        what: CtlShow,
        /// JSON, as `vmcnet show --json` prints it (eni, routes, tier0, hosts, segments); stats
        /// as `{"node": {"counter": value}}`.
        #[arg(long)]
        json: bool,
    },
    /// vMotion of a VM or an Edge to a host: `vmotion edge-1 to esxi-3`.
    Vmotion { vm: String, host: String },
    /// A host fails: vSphere HA restarts what ran on it, NSX promotes the standby Edge.
    FailHost { host: String },
    /// A failed host comes back.
    RecoverHost { host: String },
    /// The Edge VM dies; its host stays.
    FailEdge { edge: String },
    /// VMC's maintenance of a host: a spare joins, takes an ENI, the host is evacuated.
    Maintenance { host: String },
    /// NSX creates a segment; the reconciler adds its route.
    AddSegment {
        name: String,
        cidr: String,
        #[arg(long, default_value = "cgw")]
        gateway: String,
    },
    /// NSX deletes a segment; the reconciler deletes its route.
    DelSegment { name: String },
    /// VMC's reconciler stops acting.
    BreakReconciler,
    /// The reconciler acts again, and catches up.
    HealReconciler,
    /// BFD between the Edges stops getting through.
    CutBfd,
    /// BFD gets through again.
    HealBfd,
    /// Stream a link as pcap (what `vmcnet capture` asks).
    Capture { link: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum CtlShow {
    /// The ENIs of the Connected VPC.
    Eni,
    /// The VPC route tables and the Tier-0's.
    Routes,
    /// The active Edge's Tier-0 routing table.
    Tier0,
    /// The ESXi hosts.
    Hosts,
    /// The SDDC segments.
    Segments,
    /// Every node's counters that are not zero, and the live endpoints' TAPs.
    Stats,
    /// Every link, with the frames it carried each way and what it dropped, by cause.
    Links,
    /// Every control action asked for, and when it took effect.
    Timeline,
}

/// What the lab does with a control request.
fn answer(live: &mut LiveLab, args: &[String]) -> Answer {
    // `vmotion VM to HOST` reads as the drill files' `vm` and `to`.
    let mut args = args.to_vec();
    if args.len() == 4 && args[0] == "vmotion" && args[2] == "to" {
        args.remove(2);
    }
    let cmd = match CtlArgs::try_parse_from(&args) {
        Ok(c) => c.cmd,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            return Answer::Text {
                code,
                text: e.render().to_string(),
            };
        }
    };
    match run_ctl(live, cmd) {
        Ok(a) => a,
        Err(e) => Answer::Text {
            code: 2,
            text: format!("vmcnet: {e:#}\n"),
        },
    }
}

fn run_ctl(live: &mut LiveLab, cmd: CtlCmd) -> Result<Answer> {
    let text = |text: String| Ok(Answer::Text { code: 0, text });
    let action = match cmd {
        CtlCmd::Show { what, json } => {
            let view = match what {
                CtlShow::Eni => ShowWhat::Eni,
                CtlShow::Routes => ShowWhat::Routes,
                CtlShow::Tier0 => ShowWhat::Tier0,
                CtlShow::Hosts => ShowWhat::Hosts,
                CtlShow::Segments => ShowWhat::Segments,
                CtlShow::Stats => return text(stats(live, json)),
                CtlShow::Links => return text(links(live)),
                CtlShow::Timeline => {
                    let now = live.lab.sim.now();
                    let tl = vmcnet::drill::report::timeline_text(live.lab.timeline(), "  ");
                    return text(format!("now {now}\n{tl}"));
                }
            };
            let mut out = Vec::new();
            super::show(&live.lab, view, json, &mut out)?;
            return text(String::from_utf8_lossy(&out).into_owned());
        }
        CtlCmd::Capture { link } => {
            let lab = &live.lab;
            if let Some(id) = lab.sim.link_by_name(&link) {
                return Ok(Answer::Capture(id, None));
            }
            // HOST--HOST: the overlay between two hosts, on the first one's underlay link.
            let tep = |h: &str| lab.model.host(h).map(|h| h.tep);
            if let Some((a, b)) = link.split_once("--") {
                let underlay = lab
                    .sim
                    .link_by_name(&format!("{a}--{}", vmcnet::control::UNDERLAY));
                if let (Some(id), Some(ta), Some(tb)) = (underlay, tep(a), tep(b)) {
                    if a != b {
                        return Ok(Answer::Capture(id, Some((ta, tb))));
                    }
                }
            }
            bail!(
                "no link {link:?}; `vmcnet ctl {} show links` lists them, and HOST--HOST is \
                 the overlay between two hosts",
                live.name
            );
        }
        CtlCmd::Vmotion { vm, host } => {
            serde_json::json!({"kind": "vmotion", "vm": vm, "to": host})
        }
        CtlCmd::FailHost { host } => serde_json::json!({"kind": "fail-host", "host": host}),
        CtlCmd::RecoverHost { host } => serde_json::json!({"kind": "recover-host", "host": host}),
        CtlCmd::FailEdge { edge } => serde_json::json!({"kind": "fail-edge", "edge": edge}),
        CtlCmd::Maintenance { host } => serde_json::json!({"kind": "maintenance", "host": host}),
        CtlCmd::AddSegment {
            name,
            cidr,
            gateway,
        } => {
            serde_json::json!({"kind": "add-segment", "name": name, "cidr": cidr, "gateway": gateway})
        }
        CtlCmd::DelSegment { name } => serde_json::json!({"kind": "del-segment", "name": name}),
        CtlCmd::BreakReconciler => serde_json::json!({"kind": "break-reconciler"}),
        CtlCmd::HealReconciler => serde_json::json!({"kind": "heal-reconciler"}),
        CtlCmd::CutBfd => serde_json::json!({"kind": "cut-bfd"}),
        CtlCmd::HealBfd => serde_json::json!({"kind": "heal-bfd"}),
    };
    let mut action = action;
    action["at"] = "0s".into();
    let action: DrillAction = serde_json::from_value(action).context("the action")?;
    let now = live.lab.sim.now();
    let mut said = String::new();
    for a in lab_actions(&action) {
        let what = a.to_string();
        live.lab.request(now, a).with_context(|| what.clone())?;
        said += &format!("requested at {now}: {what}\n");
    }
    said += &format!(
        "(`vmcnet ctl {} show timeline` tells when it takes effect)\n",
        live.name
    );
    text(said)
}

/// Every node's counters that are not zero: a table, or JSON (`{"node": {"counter": n}}`).
fn stats(live: &LiveLab, json: bool) -> String {
    if json {
        let mut nodes = serde_json::Map::new();
        for (_, node) in live.lab.sim.nodes() {
            let counters: serde_json::Map<String, serde_json::Value> = node
                .counters()
                .into_iter()
                .filter(|(_, v)| *v != 0)
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            if !counters.is_empty() {
                nodes.insert(node.name().to_string(), counters.into());
            }
        }
        return format!("{}\n", serde_json::Value::Object(nodes));
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["node", "kind", "counter", "value"]);
    for (_, node) in live.lab.sim.nodes() {
        for (counter, value) in node.counters() {
            if value != 0 {
                t.add_row([
                    node.name().to_string(),
                    node.kind().to_string(),
                    counter.to_string(),
                    value.to_string(),
                ]);
            }
        }
    }
    format!("{t}\n")
}

/// Every link, with what it carried each way and what it dropped, by cause.
fn links(live: &LiveLab) -> String {
    let sim = &live.lab.sim;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "link",
        "frames a->b",
        "frames b->a",
        "queue full",
        "too big",
        "lost unplugged",
    ]);
    for (id, l) in sim.links().iter().enumerate() {
        let [ab, ba] = sim.link_counters(id);
        let both = |f: fn(&vmcnet::runtime::sim::LinkCounters) -> u64| (f(ab) + f(ba)).to_string();
        t.add_row([
            l.name.clone(),
            ab.tx_frames.to_string(),
            ba.tx_frames.to_string(),
            both(|c| c.tx_dropped_queue_full),
            both(|c| c.tx_dropped_too_big),
            both(|c| c.dropped_in_flight),
        ]);
    }
    format!("{t}\n")
}

/// A lab whose owner runs, and its state file.
fn running(lab: &str) -> Result<(LabName, state::LabState)> {
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let Some(st) = state::read(&name)? else {
        bail!("lab {name} is not up (no {})", state::path(&name).display());
    };
    if !state::owned(&name) {
        bail!(
            "lab {name}: its process ({}) is gone; `vmcnet down {name}` cleans up",
            st.pid
        );
    }
    Ok((name, st))
}

/// The control socket of a running lab.
fn socket_of(lab: &str) -> Result<(LabName, std::path::PathBuf)> {
    let (name, st) = running(lab)?;
    Ok((name, std::path::PathBuf::from(st.socket)))
}

pub fn ctl(lab: &str, request: &[String]) -> Result<ExitCode> {
    need_root_to("asking")?;
    let (name, path) = socket_of(lab)?;
    let (header, mut reader) = control::request(&path, request)
        .with_context(|| format!("asking lab {name} ({})", path.display()))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out)?;
    if header.code == 0 {
        std::io::stdout().lock().write_all(&out)?;
    } else {
        std::io::stderr().lock().write_all(&out)?;
    }
    Ok(ExitCode::from(header.code))
}

pub fn capture(lab: &str, link: &str, file: &str) -> Result<ExitCode> {
    need_root_to("capturing in")?;
    let (name, path) = socket_of(lab)?;
    let args = ["capture".to_string(), link.to_string()];
    let (header, mut reader) = control::request(&path, &args)
        .with_context(|| format!("asking lab {name} ({})", path.display()))?;
    if header.code != 0 {
        let mut why = String::new();
        std::io::Read::read_to_string(&mut reader, &mut why)?;
        eprint!("{why}");
        return Ok(ExitCode::from(header.code));
    }
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(file).with_context(|| format!("-w {file}: cannot create"))?)
    };
    // Copied as it comes, so that `tcpdump -r -` reads it live.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmcnet drill TOPO DRILL --live`: the report and the exit status.
pub fn drill(
    t: &vmcnet_topo::Topology,
    topo: &str,
    d: &vmcnet::drill::DrillFile,
    lab: &str,
    cpu: Option<usize>,
    report: Option<&std::path::Path>,
    svg: Option<&std::path::Path>,
) -> Result<(vmcnet::drill::DrillReport, ExitCode)> {
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    // Checked here, before anything is built; the drill makes its own.
    cpu.map(vmcnet::live::runtime::Pinning::new).transpose()?;
    need_root()?;
    super::check_outputs(report, svg)?;
    let signals = Signals::install().context("installing the signal handlers")?;
    let opts = vmcnet::live::drill::LiveDrillOptions {
        lab: name,
        topo_path: topo.to_string(),
        exe: std::env::current_exe().context("finding the vmcnet binary")?,
        cpu,
    };
    let r = vmcnet::live::drill::run_live_drill(t, d, &opts, &signals)?;
    let code = match signals.ended() {
        Some(ended) if r.interrupted => ExitCode::from(ended.exit_code() as u8),
        _ if r.passed => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    };
    Ok((r, code))
}
