//! `vmcnet up`, `exec` and `down`: the live lab from the command line.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vmcnet::live::runtime::{LiveLab, Signals};
use vmcnet::live::{netns, state, LabName};

/// How long `down` waits for a running lab to remove itself before it kills it.
const DOWN_GRACE: Duration = Duration::from_secs(10);

fn need_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the live lab creates network namespaces and TAP devices: run it as root");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        bail!("the live lab needs /dev/net/tun (the tun module): none on this machine");
    }
    Ok(())
}

pub fn up(topo: &str, lab: &str) -> Result<ExitCode> {
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let t = super::load_topo(topo)?;
    need_root()?;
    // The handlers go in first, so that a Ctrl-C while the lab is built still removes it.
    let signals = Signals::install().context("installing the signal handlers")?;
    let (mut live, cleaned) = LiveLab::up(&t, topo, name.clone(), 1)?;
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
        let runs_on = match live.lab.model.vm(&p.name) {
            Some(vm) => vm.host.clone(),
            None => c.kind.side().to_string(),
        };
        table.add_row([
            p.name.clone(),
            c.kind.as_str().to_string(),
            format!("{}/{}", c.ip, c.prefix_len),
            c.gateway.to_string(),
            runs_on,
            p.netns.clone(),
        ]);
    }
    outln!("{table}")?;
    let first = live
        .ports
        .first()
        .map(|p| p.name.as_str())
        .unwrap_or("NODE");
    outln!(
        "lab {name} is up (pid {}): `vmcnet exec {name} {first} -- ping ADDRESS`; \
         Ctrl-C or `vmcnet down {name}` ends it",
        std::process::id()
    )?;
    let ended = live.run(&signals);
    let removed = live.down();
    let ended = ended?;
    removed?;
    eprintln!("vmcnet: lab {name} removed");
    Ok(ExitCode::from(ended.exit_code() as u8))
}

pub fn exec(lab: &str, node: &str, cmd: &[String]) -> Result<ExitCode> {
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let Some(st) = state::read(&name)? else {
        bail!("lab {name} is not up (no {})", state::path(&name).display());
    };
    if !state::alive(st.pid) {
        bail!(
            "lab {name}: its process ({}) is gone; `vmcnet down {name}` cleans up",
            st.pid
        );
    }
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
    let name = LabName::new(lab).map_err(anyhow::Error::msg)?;
    let st = state::read(&name)?;
    if let Some(st) = &st {
        if st.pid != std::process::id() && state::alive(st.pid) {
            stop_owner(&name, st.pid)?;
        }
    }
    let removed = state::remove(&name)?;
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

/// Ask a lab's process to end (it removes what it created), and kill it if it does not.
fn stop_owner(name: &LabName, pid: u32) -> Result<()> {
    let pid_t = Pid::from_raw(pid as i32);
    kill(pid_t, Signal::SIGTERM).with_context(|| format!("stopping lab {name} (pid {pid})"))?;
    let since = Instant::now();
    while state::alive(pid) {
        if since.elapsed() > DOWN_GRACE {
            eprintln!("vmcnet: lab {name}: pid {pid} did not end in {DOWN_GRACE:?}; killing it");
            let _ = kill(pid_t, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
