//! `vmcnet`: the command line of the emulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// printing the report and closing the pcaps whole (status 130).
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
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ShowWhat {
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
            show(&lab, what, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Drill {
            topo,
            drill,
            pcap,
            report,
            svg,
            json,
        } => {
            let t = load_topo(&topo)?;
            let d = DrillFile::load(&drill)?;
            let opts = RunOptions {
                pcap_dir: pcap,
                stop: Some(stop_on_ctrl_c()?),
                ..RunOptions::default()
            };
            // Every output path is checked before the drill runs.
            if let Some(dir) = &report {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("--report {}: cannot create", dir.display()))?;
            }
            if let Some(file) = &svg {
                std::fs::File::create(file)
                    .with_context(|| format!("--svg {}: cannot create", file.display()))?;
            }
            let r = run_drill(&t, &d, &opts)?;
            // The files first: a reader of stdout that goes away does not lose them.
            if let Some(dir) = report {
                write(&dir.join("report.json"), &serde_json::to_string_pretty(&r)?)?;
                write(&dir.join("report.txt"), &r.to_string())?;
                write(&dir.join("timeline.svg"), &vmcnet::drill::svg::render(&r))?;
            }
            if let Some(file) = svg {
                write(&file, &vmcnet::drill::svg::render(&r))?;
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                out!("{r}")?;
            }
            Ok(if r.interrupted {
                ExitCode::from(130)
            } else if r.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// A flag that the first Ctrl-C (SIGINT; SIGTERM and SIGHUP too) sets, so that a drill stops where it is and
/// still writes its report and closes its pcaps whole; a second one exits at once.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("vmcnet: interrupted; finishing the report (Ctrl-C again to quit at once)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
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

fn show(lab: &Lab, what: ShowWhat, json: bool) -> Result<()> {
    match what {
        ShowWhat::Eni => {
            let rows = lab.enis();
            if json {
                #[derive(Serialize)]
                #[serde(rename_all = "PascalCase")]
                struct Out<'a> {
                    network_interfaces: &'a [vmcnet::control::state::EniRow],
                }
                return print_json(&Out {
                    network_interfaces: &rows,
                });
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
            outln!("{t}")?;
        }
        ShowWhat::Routes => {
            if json {
                return print_json(&serde_json::json!({ "RouteTables": lab.route_tables() }));
            }
            for rt in lab.route_tables() {
                let subnets: Vec<&str> = rt
                    .associations
                    .iter()
                    .filter_map(|a| a.subnet_id.as_deref())
                    .collect();
                if rt.associations.iter().any(|a| a.main) {
                    outln!("VPC {} main route table", lab.topo.vpc.id)?;
                } else {
                    outln!(
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
                outln!("{t}")?;
                outln!()?;
            }
            show(lab, ShowWhat::Tier0, false)?;
        }
        ShowWhat::Tier0 => {
            if json {
                return print_json(&lab.tier0_routing_table());
            }
            let edge = lab.model.active_edge().map_or("-", |e| e.name.as_str());
            outln!("Edge {edge} (Tier-0, CGW, MGW) route table")?;
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
            outln!("{t}")?;
        }
        ShowWhat::Hosts => {
            let rows = lab.hosts();
            if json {
                return print_json(&rows);
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
            outln!("{t}")?;
        }
        ShowWhat::Segments => {
            let rows = lab.segments();
            if json {
                return print_json(&rows);
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
            outln!("{t}")?;
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

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}
