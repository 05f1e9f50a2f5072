//! `vmcnet`: the command line of the emulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;
use vmcnet::control::Lab;
use vmcnet::drill::{run_drill, DrillFile, RunOptions};
use vmcnet_topo::Topology;

/// Packet-level emulator of a VMware Cloud on AWS SDDC and its Connected VPC.
///
/// Every host, ENI, the NSX Edge, the VPC router and each VM, EC2 instance and S3 endpoint is a
/// node that forwards real Ethernet frames. TOPO is a topology file (see topo/default.toml);
/// the word `default` names the built-in default lab.
#[derive(Parser)]
#[command(name = "vmcnet", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a topology: every error names the field and the line.
    Validate {
        /// Topology file, or `default`.
        topo: String,
    },
    /// Show the state of a topology as tables (or JSON).
    Show {
        /// Topology file, or `default`.
        topo: String,
        /// What to show.
        what: ShowWhat,
        /// Print JSON instead of tables: ENIs as `aws ec2 describe-network-interfaces` prints them,
        /// route tables as `aws ec2 describe-route-tables`, the Tier-0 routing table as NSX's
        /// Policy API `routing-table`.
        #[arg(long)]
        json: bool,
    },
    /// Run a drill: send its traffic across the emulated network and check what it expects.
    ///
    /// Exits with status 1 when an expectation fails. Ctrl-C stops it where it is, still
    /// printing the report and closing the pcaps whole (status 130; SIGTERM 143).
    Drill {
        /// Topology file, or `default`.
        topo: String,
        /// Drill file (e.g. scripts/drills/smoke.toml).
        drill: PathBuf,
        /// Capture every link: a pcap per link into DIR, or, for a path ending in .pcapng, one
        /// file with an interface per link, named after it (read them with tcpdump -r or
        /// tshark -r).
        #[arg(long, value_name = "DIR|FILE.pcapng")]
        pcap: Option<PathBuf>,
        /// With --pcap: capture only these links (comma-separated, named after their two ends:
        /// esxi-2--eni-2, eni-2--vpc-router, esxi-1--underlay). A capture writes each frame once
        /// for every link it crosses, so fewer links write less.
        #[arg(long, value_delimiter = ',', value_name = "LINK,…", requires = "pcap")]
        pcap_links: Option<Vec<String>>,
        /// Write report.json, report.txt and timeline.svg (the drill as one picture) into DIR.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Write the drill as one picture to FILE (SVG): a lane per probe direction with its
        /// losses and one-way delay, and every action as a line at the instant it took effect.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Run the drill live (Linux, root): the lab's endpoints are network namespaces, its
        /// traffic real programs in them (probe agents, ping -i, iperf3), its actions applied
        /// on the lab's clock. Same drill files, same report.
        #[arg(long)]
        live: bool,
        /// With --live: the lab's name (1 to 6 lowercase letters and digits).
        #[arg(long, default_value = "drill", requires = "live")]
        lab: String,
        /// With --live: the lab's engine takes this CPU while a stream keeps it busy, as with
        /// `vmcnet up --cpu`.
        #[arg(long, value_name = "N", requires = "live")]
        cpu: Option<usize>,
    },
    /// A live drill's probe at one end (run by `drill --live` in an endpoint's namespace):
    /// sends sequence-numbered UDP datagrams on a schedule, records the peer's, prints JSON.
    #[command(hide = true)]
    ProbeAgent {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        to: std::net::Ipv4Addr,
        #[arg(long)]
        stream: u32,
        #[arg(long)]
        interval_ns: u64,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        start_mono_ns: u64,
        #[arg(long)]
        linger_ms: u64,
    },
    /// Bring a lab up live: each VM, EC2 instance and S3 endpoint becomes a network namespace
    /// whose interface is a TAP served by this process, so ping, iperf3, traceroute and tcpdump
    /// run across the emulated SDDC and VPC. Needs root and /dev/net/tun.
    ///
    /// Prints what runs where, then serves the lab until Ctrl-C (status 130), SIGTERM (143) or
    /// `vmcnet down LAB`, and removes everything it created on the way out. Every name it
    /// gives the kernel starts with vmc-LAB-; what it created is recorded in
    /// /run/vmcnet/LAB.json, so that `vmcnet down LAB` cleans up after a crash too.
    Up {
        /// Topology file, or `default`.
        topo: String,
        /// The lab's name: 1 to 6 lowercase letters and digits.
        #[arg(long, default_value = "lab")]
        lab: String,
        /// Make only these endpoints live (comma-separated names); the others stay the sim's
        /// endpoints, which answer ARP and ping. Default: every VM, EC2 instance and S3.
        #[arg(long, value_delimiter = ',', value_name = "NODE,…")]
        only: Option<Vec<String>>,
        /// Run the lab's engine (every node, every TAP) on this CPU while a stream keeps it
        /// busy, and anywhere while traffic comes now and then. On 2 cores, `--cpu 1` leaves
        /// the other core to the endpoints' stacks: one iperf3 stream runs about 15% faster
        /// (`make bench-live`), pings as fast. Default: wherever the kernel puts it.
        #[arg(long, value_name = "N")]
        cpu: Option<usize>,
    },
    /// Run a command in a live endpoint's namespace: `vmcnet exec lab web-1 -- ping 172.31.16.10`.
    Exec {
        /// The lab's name.
        lab: String,
        /// The endpoint (a VM, EC2 instance or S3 endpoint of the topology).
        node: String,
        /// The command and its arguments, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Ask a live lab: `show eni|routes|tier0|hosts|segments [--json]` (the views and JSON
    /// shapes of `vmcnet show`), `show stats|links|timeline`, or a drill's action, now:
    /// `vmotion VM|EDGE [to] HOST`, `fail-host HOST`, `recover-host HOST`, `fail-edge EDGE`,
    /// `maintenance HOST`, `add-segment NAME CIDR [--gateway cgw|mgw]`, `del-segment NAME`,
    /// `break-reconciler`, `heal-reconciler`, `cut-bfd`, `heal-bfd`. `vmcnet ctl LAB help` lists
    /// them.
    Ctl {
        /// The lab's name.
        lab: String,
        /// The request.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        request: Vec<String>,
    },
    /// Stream a link of a live lab as pcap: `vmcnet capture lab esxi-2--eni-2 | tcpdump -r -`.
    /// Any link between two nodes (`vmcnet ctl LAB show links` lists them): an ENI
    /// (esxi-2--eni-2, eni-2--vpc-router), a host's overlay (esxi-1--underlay), the Edge's
    /// uplink (edge-1.uplink--esxi-2); or the overlay between two hosts (esxi-1--esxi-2: their
    /// TEPs' Geneve packets, either way). Nanosecond timestamps; the snap length holds a whole
    /// super-frame. Runs until Ctrl-C, the reader goes away or the lab ends.
    Capture {
        /// The lab's name.
        lab: String,
        /// The link, by name.
        link: String,
        /// Write the pcap to FILE (`-`: standard output, the default).
        #[arg(short = 'w', value_name = "FILE", default_value = "-")]
        write: String,
    },
    /// Stop a live lab and remove everything it created (namespaces, the processes in them,
    /// TAPs, its state file), whether its process runs or died.
    Down {
        /// The lab's name.
        lab: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ShowWhat {
    /// The ENIs of the Connected VPC: in-use (mapped to a host) or available.
    Eni,
    /// The VPC main route table and the Edge's (Tier-0) route table; with --json, the VPC's
    /// route tables.
    Routes,
    /// The active Edge's Tier-0 routing table (the CGW's and MGW's segments connected).
    Tier0,
    /// The ESXi hosts: cluster, TEP, ENI, the VMs and Edges on each.
    Hosts,
    /// The SDDC segments: gateway, CIDR, VNI, VMs.
    Segments,
}

/// The sim allocates a buffer per encapsulated frame; mimalloc makes that a fraction of
/// glibc's cost.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that returns the write's error (a closed pipe) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[path = "cli/live.rs"]
mod live;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A reader that went away (`vmcnet show … | head`) ends the output quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vmcnet: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { topo } => {
            let t = load_topo(&topo)?;
            outln!("{}: valid: {}", t.name, t.summary())?;
            let lab = Lab::build(&t, 1);
            outln!(
                "{} routes in the VPC main route table, {} of its quota of {}",
                lab.vpc_routes().len(),
                lab.model.routes_used(),
                lab.model.route_quota
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { topo, what, json } => {
            let t = load_topo(&topo)?;
            let lab = Lab::build(&t, 1);
            show(&lab, what, json, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            topo,
            lab,
            only,
            cpu,
        } => live::up(&topo, &lab, only.as_deref(), cpu),
        Command::Exec { lab, node, cmd } => live::exec(&lab, &node, &cmd),
        Command::Down { lab } => live::down(&lab),
        Command::Ctl { lab, request } => live::ctl(&lab, &request),
        Command::Capture { lab, link, write } => live::capture(&lab, &link, &write),
        Command::ProbeAgent {
            port,
            to,
            stream,
            interval_ns,
            count,
            start_mono_ns,
            linger_ms,
        } => {
            let plan = vmcnet::live::probe::AgentPlan {
                port,
                to,
                stream,
                interval: std::time::Duration::from_nanos(interval_ns),
                count,
                start_mono_ns,
                linger: std::time::Duration::from_millis(linger_ms),
            };
            let r = vmcnet::live::probe::run_agent(&plan).context("probe agent")?;
            outln!("{}", serde_json::to_string(&r)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Drill {
            topo,
            drill,
            pcap,
            pcap_links,
            report,
            svg,
            json,
            live,
            lab,
            cpu,
        } => {
            if live && pcap.is_some() {
                anyhow::bail!("--pcap: a live drill's links are captured with `vmcnet capture`");
            }
            let t = load_topo(&topo)?;
            let d = DrillFile::load(&drill)?;
            if live {
                let (r, code) =
                    live::drill(&t, &topo, &d, &lab, cpu, report.as_deref(), svg.as_deref())?;
                print_report(&r, report, svg, json)?;
                return Ok(code);
            }
            let signals = StopSignals::install()?;
            let opts = RunOptions {
                pcap_dir: pcap,
                pcap_links,
                stop: Some(signals.stop.clone()),
                ..RunOptions::default()
            };
            check_outputs(report.as_deref(), svg.as_deref())?;
            let r = run_drill(&t, &d, &opts)?;
            print_report(&r, report, svg, json)?;
            Ok(if r.interrupted {
                signals.exit_code()
            } else if r.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The signal that stops a drill: the first SIGINT (Ctrl-C), SIGTERM or SIGHUP sets `stop`, so
/// that the drill stops where it is and still writes its report and closes its pcaps whole, and
/// notes which it was in `signal`; a second one exits at once.
struct StopSignals {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // Registered first, so it sees the flag as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())
                .context("installing the signal handlers")?;
            signal_hook::flag::register(sig, stop.clone())
                .context("installing the signal handlers")?;
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
                .context("installing the signal handlers")?;
        }
        Ok(StopSignals { stop, signal })
    }

    /// The exit status of a run the signal stopped: 128 + its number (130 for Ctrl-C, 143 for
    /// SIGTERM).
    fn exit_code(&self) -> ExitCode {
        let sig = self.signal.load(Ordering::SeqCst);
        ExitCode::from(128 + if sig == 0 { 2 } else { sig as u8 })
    }
}

/// A drill's report: the files first (a reader of stdout that goes away does not lose them),
/// then text or JSON on stdout.
fn print_report(
    r: &vmcnet::drill::DrillReport,
    report: Option<PathBuf>,
    svg: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    if let Some(dir) = report {
        write(&dir.join("report.json"), &serde_json::to_string_pretty(r)?)?;
        write(&dir.join("report.txt"), &r.to_string())?;
        write(&dir.join("timeline.svg"), &vmcnet::drill::svg::render(r))?;
    }
    if let Some(file) = svg {
        write(&file, &vmcnet::drill::svg::render(r))?;
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?)?;
    } else {
        out!("{r}")?;
    }
    Ok(())
}

/// Every output path is checked before a drill runs.
fn check_outputs(report: Option<&Path>, svg: Option<&Path>) -> Result<()> {
    if let Some(dir) = report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--report {}: cannot create", dir.display()))?;
    }
    if let Some(file) = svg {
        std::fs::File::create(file)
            .with_context(|| format!("--svg {}: cannot create", file.display()))?;
    }
    Ok(())
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn load_topo(arg: &str) -> Result<Topology> {
    if arg == "default" && !Path::new(arg).exists() {
        return Ok(vmcnet_topo::parse(
            vmcnet_topo::DEFAULT_TOPOLOGY,
            "topo/default.toml",
        )?);
    }
    Ok(vmcnet_topo::load(Path::new(arg))?)
}

/// Write a view of the lab's state to `w`: `vmcnet show`'s and `vmcnet ctl LAB show`'s.
fn show(lab: &Lab, what: ShowWhat, json: bool, w: &mut dyn std::io::Write) -> Result<()> {
    match what {
        ShowWhat::Eni => {
            let rows = lab.enis();
            if json {
                #[derive(Serialize)]
                #[serde(rename_all = "PascalCase")]
                struct Out<'a> {
                    network_interfaces: &'a [vmcnet::control::state::EniRow],
                }
                return print_json(
                    w,
                    &Out {
                        network_interfaces: &rows,
                    },
                );
            }
            let mut t = table(&[
                "ENI",
                "Status",
                "Host",
                "Primary IP",
                "Secondary IPs",
                "Src/dst check",
                "Subnet",
            ]);
            for r in rows {
                let secondary: Vec<&str> = r
                    .private_ip_addresses
                    .iter()
                    .filter(|p| !p.primary)
                    .map(|p| p.private_ip_address.as_str())
                    .collect();
                let attached = r
                    .host
                    .clone()
                    .or(r.attachment.as_ref().map(|a| a.instance_id.clone()));
                t.add_row(vec![
                    r.network_interface_id,
                    r.status,
                    attached.unwrap_or_else(|| "-".into()),
                    r.private_ip_address,
                    if secondary.is_empty() {
                        "-".into()
                    } else {
                        secondary.join(", ")
                    },
                    if r.source_dest_check { "on" } else { "off" }.into(),
                    r.subnet_id,
                ]);
            }
            writeln!(w, "{t}")?;
        }
        ShowWhat::Routes => {
            if json {
                return print_json(w, &serde_json::json!({ "RouteTables": lab.route_tables() }));
            }
            for rt in lab.route_tables() {
                let subnets: Vec<&str> = rt
                    .associations
                    .iter()
                    .filter_map(|a| a.subnet_id.as_deref())
                    .collect();
                if rt.associations.iter().any(|a| a.main) {
                    writeln!(w, "VPC {} main route table", lab.topo.vpc.id)?;
                } else {
                    writeln!(
                        w,
                        "VPC {} route table {} (subnets: {}; not programmed by VMC)",
                        lab.topo.vpc.id,
                        rt.route_table_id,
                        subnets.join(", ")
                    )?;
                }
                let mut t = table(&["Destination", "Target", "State"]);
                for r in rt.routes {
                    t.add_row(vec![r.destination(), r.target(), r.state]);
                }
                writeln!(w, "{t}")?;
                writeln!(w)?;
            }
            show(lab, ShowWhat::Tier0, false, w)?;
        }
        ShowWhat::Tier0 => {
            if json {
                return print_json(w, &lab.tier0_routing_table());
            }
            let edge = lab.model.active_edge().map_or("-", |e| e.name.as_str());
            writeln!(w, "Edge {edge} (Tier-0, CGW, MGW) route table")?;
            let mut t = table(&["Destination", "Next hop", "Type", "Interface", "SNAT"]);
            for r in lab.tier0_routes() {
                t.add_row(vec![
                    r.network,
                    if r.next_hop.is_empty() {
                        "connected".into()
                    } else {
                        r.next_hop
                    },
                    r.route_type.into(),
                    r.interface,
                    if r.snat { "yes" } else { "" }.into(),
                ]);
            }
            writeln!(w, "{t}")?;
        }
        ShowWhat::Hosts => {
            let rows = lab.hosts();
            if json {
                return print_json(w, &rows);
            }
            let mut t = table(&["Host", "Cluster", "TEP", "ENI", "VMs", "Edges"]);
            for r in rows {
                t.add_row(vec![
                    r.host,
                    r.cluster,
                    r.tep,
                    r.eni.unwrap_or_else(|| "-".into()),
                    r.vms.join(", "),
                    r.edges.join(", "),
                ]);
            }
            writeln!(w, "{t}")?;
        }
        ShowWhat::Segments => {
            let rows = lab.segments();
            if json {
                return print_json(w, &rows);
            }
            let mut t = table(&["Segment", "Gateway", "CIDR", "Gateway IP", "VNI", "VMs"]);
            for r in rows {
                t.add_row(vec![
                    r.segment,
                    r.gateway,
                    r.cidr,
                    r.gateway_ip,
                    r.vni.to_string(),
                    r.vms.join("\n"),
                ]);
            }
            writeln!(w, "{t}")?;
        }
    }
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn print_json<T: Serialize>(w: &mut dyn std::io::Write, v: &T) -> Result<()> {
    writeln!(w, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}
