//! Typed control actions: the only way the control model changes.
//!
//! An action is requested at an instant and takes effect after its latency (from the topology's
//! `[timing]`): then the model changes and the nodes concerned are programmed through
//! [`Node::configure`](crate::node::Node::configure). Both instants go on the lab's timeline log,
//! which the CLI and reports read.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use vmcnet_topo::{link_name, LinkKind, Timing};

use super::model::{EdgeFact, EdgeVnic, EdgeVnicIface, RouteDest, RouteFact, SegmentFact};
use super::{Lab, Maintenance};
use crate::node::edge::{EdgeIface, IfaceRole};
use crate::node::host::Vnic;
use crate::node::vpc_router::VpcTarget;
use crate::node::Change;
use crate::node::Port;
use crate::runtime::sim::{LinkId, NodeId, Sim, Stop};
use crate::time::Instant;
use vmcnet_topo::Gateway;

/// A change of the SDDC or AWS state, as the control planes make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// EC2 AssignPrivateIpAddresses with AllowReassignment: `ip` moves to `eni` from whichever
    /// ENI held it.
    AssignSecondaryIp {
        eni: String,
        ip: Ipv4Addr,
    },
    /// EC2 CreateRoute in the main route table, to an ENI.
    CreateRoute {
        dest: Ipv4Net,
        eni: String,
    },
    /// EC2 ReplaceRoute in the main route table: the route to `dest` now targets `eni`.
    ReplaceRoute {
        dest: Ipv4Net,
        eni: String,
    },
    /// EC2 DeleteRoute in the main route table.
    DeleteRoute {
        dest: Ipv4Net,
    },
    /// EC2 DetachNetworkInterface: routes to the ENI turn `blackhole`.
    DetachEni {
        eni: String,
    },
    /// EC2 AttachNetworkInterface to an ESXi host that has no ENI.
    AttachEni {
        eni: String,
        host: String,
    },
    /// vMotion's switchover begins: the VM (or Edge) stops forwarding.
    StunVm {
        vm: String,
    },
    /// The VM (or Edge) resumes on `host` (its own or another) and announces itself there
    /// (RARP). An Edge keeps its role; its uplink address is where the ENIs have it.
    ResumeVm {
        vm: String,
        host: String,
    },
    /// NSX makes `edge` the active Edge, the other one standby.
    SetActiveEdge {
        edge: String,
    },
    /// `edge` takes the active role on its own, having lost BFD to its peer; a peer that still
    /// runs keeps its role too (dual active), and the control plane follows the newer one.
    PromoteEdge {
        edge: String,
    },
    /// `edge` steps down to standby: the older of two actives once BFD is back.
    StandbyEdge {
        edge: String,
    },
    /// BFD between the Edges stops getting through (both keep running).
    CutBfd,
    HealBfd,
    /// The Edge VM stops (its host stays up): it forwards nothing.
    StopEdge {
        edge: String,
    },
    /// The host fails: its links go dark, the VMs and Edge on it stop (an active Edge loses
    /// the role). Nothing restarts them elsewhere: that is vSphere HA's and NSX's work.
    FailHost {
        host: String,
    },
    /// The host comes back: its links carry again, its VMs run again, an Edge on it as standby.
    RecoverHost {
        host: String,
    },
    /// NSX creates a segment: each Edge gets an interface on it (its gateway), the hosts learn
    /// it. The VPC's route to it is the reconciler's to add.
    AddSegment {
        name: String,
        cidr: Ipv4Net,
        gateway: Gateway,
    },
    /// NSX deletes a segment with no VM on it.
    RemoveSegment {
        name: String,
    },
    /// A host joins a cluster (a replacement, or the spare of a maintenance): its TEP on the
    /// underlay, no ENI yet (AttachEni gives it one). Cluster 1 may hold a 17th host then.
    AddHost {
        host: String,
        cluster: String,
    },
    /// A host with nothing on it and no ENI leaves the SDDC.
    RemoveHost {
        host: String,
    },
    /// VMC's reconciler, having noticed a change (the active Edge's host, the segments), makes
    /// the AWS calls that follow it (see [`Lab::set_reconciler`]).
    Reconcile,
    /// vSphere HA restarts a VM (or Edge) of a dead host on `host`.
    HaRestart {
        vm: String,
        host: String,
    },
    /// The reconciler stops acting (its credentials revoked, say), or starts again: healed, it
    /// catches up with what changed meanwhile.
    BreakReconciler,
    HealReconciler,
    /// VMC's maintenance of a host: a spare host joins and takes an available ENI, what runs on
    /// the host moves to the spare by vMotion, then the host's ENI is detached and the host
    /// leaves. Each step starts when the one before it has taken effect.
    Maintenance {
        host: String,
    },
}

/// How the reconciler follows the active Edge to another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Move the uplink's secondary IP to the new host's ENI and re-target the routes (VMC's way).
    IpMove,
    /// Detach the Edge's ENI from the old host and attach it to the new one (the slow path).
    EniReattach,
}

impl Action {
    /// A vMotion of `vm` to `host`, requested at one instant: the VM is stunned, and resumes on
    /// `host` after the stun.
    pub fn vmotion(vm: &str, host: &str) -> [Action; 2] {
        [
            Action::StunVm { vm: vm.into() },
            Action::ResumeVm {
                vm: vm.into(),
                host: host.into(),
            },
        ]
    }

    /// The object the action is on.
    pub fn object(&self) -> String {
        match self {
            Action::AssignSecondaryIp { eni, .. }
            | Action::DetachEni { eni }
            | Action::AttachEni { eni, .. } => eni.clone(),
            Action::CreateRoute { dest, .. }
            | Action::ReplaceRoute { dest, .. }
            | Action::DeleteRoute { dest } => dest.to_string(),
            Action::StunVm { vm } | Action::ResumeVm { vm, .. } => vm.clone(),
            Action::SetActiveEdge { edge } | Action::StopEdge { edge } => edge.clone(),
            Action::FailHost { host } | Action::RecoverHost { host } => host.clone(),
            Action::AddSegment { name, .. } | Action::RemoveSegment { name } => name.clone(),
            Action::AddHost { host, .. } | Action::RemoveHost { host } => host.clone(),
            Action::Reconcile => "reconciler".into(),
            Action::HaRestart { vm, .. } => vm.clone(),
            Action::BreakReconciler | Action::HealReconciler => "reconciler".into(),
            Action::PromoteEdge { edge } | Action::StandbyEdge { edge } => edge.clone(),
            Action::CutBfd | Action::HealBfd => "bfd".into(),
            Action::Maintenance { host } => host.clone(),
        }
    }

    /// How long the action takes to take effect.
    ///
    /// - moving a secondary IP: `move_secondary_ip`;
    /// - a route: `replace_route`;
    /// - detaching or attaching an ENI: half of `eni_reattach` each;
    /// - stunning a VM: at once; resuming it: `vmotion_stun` (the switchover);
    /// - a standby Edge becoming active: `promotion`.
    pub fn latency(&self, t: &Timing) -> Duration {
        match self {
            Action::AssignSecondaryIp { .. } => t.move_secondary_ip,
            Action::CreateRoute { .. }
            | Action::ReplaceRoute { .. }
            | Action::DeleteRoute { .. } => t.replace_route,
            Action::DetachEni { .. } | Action::AttachEni { .. } => t.eni_reattach / 2,
            Action::StunVm { .. } => Duration::ZERO,
            Action::ResumeVm { .. } => t.vmotion_stun,
            Action::SetActiveEdge { .. } | Action::PromoteEdge { .. } => t.promotion,
            Action::StandbyEdge { .. } | Action::CutBfd | Action::HealBfd => Duration::ZERO,
            Action::StopEdge { .. }
            | Action::FailHost { .. }
            | Action::RecoverHost { .. }
            | Action::AddSegment { .. }
            | Action::RemoveSegment { .. }
            | Action::RemoveHost { .. } => Duration::ZERO,
            Action::AddHost { .. } => t.replacement_host,
            Action::Reconcile => t.control_plane_notice,
            Action::HaRestart { .. } => t.ha_restart,
            Action::BreakReconciler | Action::HealReconciler | Action::Maintenance { .. } => {
                Duration::ZERO
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AssignSecondaryIp { eni, ip } => write!(f, "assign secondary IP {ip} to {eni}"),
            Action::CreateRoute { dest, eni } => write!(f, "create route {dest} -> {eni}"),
            Action::ReplaceRoute { dest, eni } => write!(f, "replace route {dest} -> {eni}"),
            Action::DeleteRoute { dest } => write!(f, "delete route {dest}"),
            Action::DetachEni { eni } => write!(f, "detach {eni}"),
            Action::AttachEni { eni, host } => write!(f, "attach {eni} to {host}"),
            Action::StunVm { vm } => write!(f, "stun {vm}"),
            Action::ResumeVm { vm, host } => write!(f, "resume {vm} on {host}"),
            Action::SetActiveEdge { edge } => write!(f, "make {edge} the active Edge"),
            Action::PromoteEdge { edge } => write!(f, "{edge} takes the active role"),
            Action::StandbyEdge { edge } => write!(f, "{edge} steps down to standby"),
            Action::CutBfd => write!(f, "cut BFD between the Edges"),
            Action::HealBfd => write!(f, "heal BFD between the Edges"),
            Action::StopEdge { edge } => write!(f, "stop {edge}"),
            Action::FailHost { host } => write!(f, "fail {host}"),
            Action::RecoverHost { host } => write!(f, "recover {host}"),
            Action::AddSegment {
                name,
                cidr,
                gateway,
            } => {
                write!(f, "add segment {name} {cidr} ({gateway:?})")
            }
            Action::RemoveSegment { name } => write!(f, "remove segment {name}"),
            Action::AddHost { host, cluster } => write!(f, "add {host} to {cluster}"),
            Action::RemoveHost { host } => write!(f, "remove {host}"),
            Action::Reconcile => write!(f, "reconcile"),
            Action::HaRestart { vm, host } => write!(f, "HA restarts {vm} on {host}"),
            Action::BreakReconciler => write!(f, "break the reconciler"),
            Action::HealReconciler => write!(f, "heal the reconciler"),
            Action::Maintenance { host } => write!(f, "maintenance of {host}"),
        }
    }
}

/// One action on the timeline: what, on which object, when it was requested and when it took
/// effect (or why it could not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    #[serde(flatten)]
    pub action: Action,
    pub object: String,
    #[serde(serialize_with = "ser_instant")]
    pub requested_at: Instant,
    /// `None` until it takes effect, and for an action that failed.
    #[serde(serialize_with = "ser_opt_instant")]
    pub took_effect_at: Option<Instant>,
    /// Why the action failed when it came due (an ENI already attached, a route missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TimelineEvent {
    /// Asked for, and yet to take effect or fail.
    pub fn is_pending(&self) -> bool {
        self.took_effect_at.is_none() && self.error.is_none()
    }
}

fn ser_instant<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.as_secs_f64())
}

fn ser_opt_instant<S: serde::Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Why an action cannot be requested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no ENI is named `{0}`")]
    UnknownEni(String),
    #[error("no host is named `{0}`")]
    UnknownHost(String),
    #[error("no VM is named `{0}`")]
    UnknownVm(String),
    #[error("no Edge is named `{0}`")]
    UnknownEdge(String),
    #[error("no segment is named `{0}`")]
    UnknownSegment(String),
    #[error("{0} is in the past: the lab's clock reads {1}")]
    InThePast(Instant, Instant),
}

impl Lab {
    /// Request `action` at `at` (now or later): it takes effect after its latency, while the lab
    /// runs. Returns its index in [`Lab::timeline`]. What it names must exist now, except hosts
    /// and segments, which earlier actions may create: everything is checked again when due.
    pub fn request(&mut self, at: Instant, action: Action) -> Result<usize, ActionError> {
        if at < self.sim.now() {
            return Err(ActionError::InThePast(at, self.sim.now()));
        }
        match self.check_names(&action) {
            Err(ActionError::UnknownHost(_)) | Err(ActionError::UnknownSegment(_)) => {}
            other => other?,
        }
        let due = at + action.latency(&self.topo.timing);
        let index = self.timeline.len();
        self.timeline.push(TimelineEvent {
            object: action.object(),
            action,
            requested_at: at,
            took_effect_at: None,
            error: None,
        });
        self.sim.schedule_control(due, index as u64);
        Ok(index)
    }

    /// Every action requested, in the order requested.
    pub fn timeline(&self) -> &[TimelineEvent] {
        &self.timeline
    }

    /// Whether an action requested has yet to take effect (or fail).
    pub fn pending_actions(&self) -> bool {
        self.timeline.iter().any(TimelineEvent::is_pending)
    }

    /// Run VMC's reconciler with `strategy`, or (`None`) none. It watches the active Edge's host
    /// and the segments; `control_plane_notice` after a change it makes the AWS calls that
    /// follow it, each then taking its own latency.
    pub fn set_reconciler(&mut self, strategy: Option<Strategy>) {
        self.reconciler = strategy;
    }

    /// Let NSX and vSphere react as they do: BFD makes the standby Edge active when the active
    /// one stops, vSphere HA restarts what ran on a failed host and brings a replacement host.
    pub fn set_sddc_automation(&mut self, on: bool) {
        self.automation = on;
        // What BFD learned while nobody reacted counts from now.
        self.ha_roles();
    }

    /// NSX's Edge HA, from what the Edges' BFD sessions know now (after each action that took
    /// effect and each notice from an Edge):
    /// - a standby whose peer is dead (BFD heard nothing for its detection time) takes the
    ///   active role after `promotion`: alone if no active Edge runs, beside the active one if
    ///   it runs but is cut off (split brain);
    /// - two active Edges, and a session up between them (the first side to come up knows):
    ///   the one active longer steps down (assumed: the newer keeps the role, as the control
    ///   plane already follows it);
    /// - no active Edge, and a session up between those that run (both came back as standby):
    ///   the one active last takes the role.
    ///
    /// An Edge that is stunned does nothing until it resumes; a role change already on its way
    /// for an Edge is not asked for again.
    fn ha_roles(&mut self) {
        if !self.automation {
            return;
        }
        let m = &self.model;
        let session = |e: &EdgeFact| {
            self.sim
                .get::<crate::node::edge::Edge>(e.node)
                .and_then(|n| n.bfd())
                .map(|s| (s.state() == crate::wire::bfd::State::Up, s.peer_dead()))
        };
        let pending = |edge: &str| {
            self.timeline.iter().any(|t| {
                t.is_pending()
                    && matches!(&t.action,
                        Action::SetActiveEdge { edge: e }
                        | Action::PromoteEdge { edge: e }
                        | Action::StandbyEdge { edge: e } if e == edge)
            })
        };
        let awake: Vec<&EdgeFact> = m
            .edges
            .iter()
            .filter(|e| m.edge_runs(e) && !e.stunned)
            .collect();
        let any_active = m.active_edge().is_some();
        let mut asks = Vec::new();
        for e in awake.iter().filter(|e| !e.active) {
            if session(e).is_some_and(|(_, dead)| dead) && !pending(&e.name) {
                let edge = e.name.clone();
                asks.push(match any_active {
                    false => Action::SetActiveEdge { edge },
                    true => Action::PromoteEdge { edge },
                });
            }
        }
        let up = |e: &&EdgeFact| session(e).is_some_and(|(up, _)| up);
        let actives: Vec<&EdgeFact> = awake.iter().copied().filter(|e| e.active).collect();
        if actives.len() > 1 && actives.iter().any(up) {
            let older = actives.iter().min_by_key(|e| e.promoted).expect("two");
            if !pending(&older.name) {
                let edge = older.name.clone();
                asks.push(Action::StandbyEdge { edge });
            }
        }
        if !any_active && asks.is_empty() && awake.len() > 1 && awake.iter().any(up) {
            // max_by_key keeps the last of equals: take the first Edge on a tie.
            let last = awake.iter().rev().max_by_key(|e| e.promoted).expect("two");
            if awake.iter().all(|e| !pending(&e.name)) {
                let edge = last.name.clone();
                asks.push(Action::SetActiveEdge { edge });
            }
        }
        let now = self.sim.now();
        for a in asks {
            self.request(now, a).expect("a known Edge");
        }
    }

    /// Start a BFD session on each Edge that came to run (a fresh one, as a VM that boots), end
    /// the session of each that stopped.
    fn program_bfd(&mut self, ran: &[bool]) {
        let mut changes = Vec::new();
        for (e, &was) in self.model.edges.iter().zip(ran) {
            let runs = self.model.edge_runs(e);
            if runs != was {
                let cfg = runs
                    .then(|| super::bfd_config(&self.model, e, &self.topo.timing))
                    .flatten();
                changes.push((e.node, Change::EdgeBfd(cfg)));
            }
        }
        for (node, c) in changes {
            self.configure(node, c);
        }
    }

    /// Cut BFD between the Edges (`cut`): their HA links go dark, and stay dark when an Edge
    /// moves or its host comes back (`resume_edge`, `set_host_failed`). Heal it: plug back the
    /// HA links of the Edges whose links are up.
    fn cut_bfd(&mut self, cut: bool) {
        self.bfd_cut = cut;
        let m = &self.model;
        let links: Vec<_> = m
            .edges
            .iter()
            .filter(|e| cut || m.edge_links_up(e))
            .map(|e| e.ha().link)
            .collect();
        for l in links {
            match cut {
                true => self.sim.disconnect(l),
                false => self.sim.reconnect(l),
            }
        }
    }

    /// NSX's and vSphere's reactions to an action that took effect now.
    fn react(&mut self, a: &Action) {
        let now = self.sim.now();
        let t = self.topo.timing.clone();
        if let Action::FailHost { host } = a {
            let dead = now + t.ha_host_dead;
            // The dead host's ENI is released.
            if let Some(eni) = self.model.eni_of_host(host).map(|e| e.id.clone()) {
                self.request(dead, Action::DetachEni { eni })
                    .expect("a known ENI");
            }
            // vSphere HA restarts what ran there on the cluster's other hosts, in turn.
            let cluster = self
                .model
                .host(host)
                .map(|h| h.cluster.clone())
                .unwrap_or_default();
            let others: Vec<String> = self
                .model
                .hosts
                .iter()
                .filter(|h| h.cluster == cluster && h.name != *host && !h.failed)
                .map(|h| h.name.clone())
                .collect();
            for (k, vm) in self.runs_on(host).into_iter().enumerate() {
                if let Some(to) = others.get(k % others.len().max(1)) {
                    let restart = Action::HaRestart {
                        vm,
                        host: to.clone(),
                    };
                    self.request(dead, restart).expect("known names");
                }
            }
            // A replacement host joins the cluster and takes an available ENI.
            self.bring_host(&cluster);
        }
    }

    /// A new host on its way into `cluster`: it joins after `replacement_host` and then takes an
    /// available ENI, as soon as one is free. Returns its name.
    fn bring_host(&mut self, cluster: &str) -> String {
        let host = loop {
            self.host_names += 1;
            let name = format!("esxi-{}", self.host_names);
            let taken = self.model.host(&name).is_some()
                || self.joining.contains(&name)
                || self.model.vm(&name).is_some()
                || self.model.edge(&name).is_some();
            if !taken {
                break name;
            }
        };
        let add = Action::AddHost {
            host: host.clone(),
            cluster: cluster.to_string(),
        };
        self.request(self.sim.now(), add).expect("no names checked");
        self.joining.push(host.clone());
        host
    }

    /// Maintenance of `host` is asked for: its spare is on its way, or, while another host of
    /// its cluster is in maintenance, it waits its turn (VMC takes one host of a cluster at a
    /// time; the 17th ENI holds one spare).
    fn start_maintenance(&mut self, host: &str) -> Result<(), String> {
        if self.maintenance.iter().any(|m| m.host == host) {
            return Err(format!("{host} is in maintenance already"));
        }
        let h = self.model.host(host).expect("checked");
        if h.failed {
            return Err(format!("{host} has failed"));
        }
        let cluster = h.cluster.clone();
        self.maintenance.push(Maintenance {
            host: host.to_string(),
            cluster,
            spare: None,
            evacuating: false,
            detaching: false,
        });
        Ok(())
    }

    /// Moves hosts on their way in and hosts in maintenance on by a step, each as soon as the
    /// state allows: a joined host takes a free ENI; a host in maintenance is evacuated by
    /// vMotion once its spare has an ENI, gives its ENI back once nothing runs on it and the
    /// reconciler has moved the Edge's IP and routes off that ENI, and leaves once detached.
    fn progress_hosts(&mut self) {
        let now = self.sim.now();
        // Joined hosts without an ENI take a free one.
        let mut k = 0;
        while k < self.joining.len() {
            let host = self.joining[k].clone();
            let free = self
                .model
                .enis
                .iter()
                .find(|e| e.sddc && e.attachment.is_none() && !self.attach_pending(&e.id))
                .map(|e| e.id.clone());
            match (self.model.host(&host).is_some(), free) {
                (true, Some(eni)) => {
                    self.joining.remove(k);
                    self.request(now, Action::AttachEni { eni, host })
                        .expect("known names");
                }
                _ => k += 1,
            }
        }
        let mut i = 0;
        while i < self.maintenance.len() {
            let m = self.maintenance[i].clone();
            let Some(spare) = m.spare else {
                // Its turn comes when no host before it in its cluster is in maintenance.
                if !self.maintenance[..i].iter().any(|o| o.cluster == m.cluster) {
                    let spare = self.bring_host(&m.cluster);
                    self.maintenance[i].spare = Some(spare);
                }
                i += 1;
                continue;
            };
            if self.model.eni_of_host(&spare).is_none() {
                i += 1;
                continue;
            }
            if !m.evacuating {
                self.maintenance[i].evacuating = true;
                for vm in self.runs_on(&m.host) {
                    self.request(now, Action::StunVm { vm: vm.clone() })
                        .expect("known names");
                    let resume = Action::ResumeVm {
                        vm,
                        host: spare.clone(),
                    };
                    self.request(now, resume).expect("known names");
                }
            }
            if !self.runs_on(&m.host).is_empty() {
                i += 1;
                continue;
            }
            match self.model.eni_of_host(&m.host) {
                Some(eni) => {
                    let id = eni.id.clone();
                    let busy = !eni.secondary_ips.is_empty()
                        || self
                            .model
                            .main_table
                            .iter()
                            .any(|r| r.target == VpcTarget::Eni(id.clone()));
                    if !busy && !m.detaching {
                        self.maintenance[i].detaching = true;
                        self.request(now, Action::DetachEni { eni: id })
                            .expect("known names");
                    }
                    i += 1;
                }
                None => {
                    self.maintenance.remove(i);
                    self.request(now, Action::RemoveHost { host: m.host })
                        .expect("known names");
                    // The next host of its cluster may begin.
                    i = 0;
                }
            }
        }
    }

    /// Whether an attachment of `eni` was asked for and has yet to take effect (or fail).
    fn attach_pending(&self, eni: &str) -> bool {
        self.timeline.iter().any(|e| {
            matches!(&e.action, Action::AttachEni { eni: x, .. } if x == eni) && e.is_pending()
        })
    }

    /// The VMs and Edges placed on `host`.
    fn runs_on(&self, host: &str) -> Vec<String> {
        let vms = self.model.vms.iter().filter(|v| v.host == host);
        let edges = self.model.edges.iter().filter(|e| e.host == host);
        vms.map(|v| v.name.clone())
            .chain(edges.map(|e| e.name.clone()))
            .collect()
    }

    /// vSphere HA restarts `vm` on `host`, if it still sits on its dead host.
    fn ha_restart(&mut self, vm: &str, host: &str) -> Result<(), String> {
        let on = self
            .model
            .vm(vm)
            .map(|v| v.host.clone())
            .or_else(|| self.model.edge(vm).map(|e| e.host.clone()))
            .expect("checked");
        if !self.model.host(&on).is_some_and(|h| h.failed) {
            return Err(format!("{vm} runs on {on}, which is up"));
        }
        if let Some(v) = self.model.vm_mut(vm) {
            v.stunned = false;
        }
        self.resume_vm(vm, host)
    }

    /// What the reconciler watches: the active Edge's host, and the segments.
    fn watched(&self) -> (Option<String>, Vec<Ipv4Net>) {
        (
            self.model.active_edge().map(|e| e.host.clone()),
            self.model.segments.iter().map(|s| s.cidr).collect(),
        )
    }

    /// The reconciler noticed a change: it acts after `control_plane_notice`.
    /// Changes noticed while a pass is pending are taken by that pass.
    fn notice(&mut self) {
        let pending = self
            .timeline
            .iter()
            .any(|e| e.action == Action::Reconcile && e.is_pending());
        if self.reconciler.is_some() && !pending {
            let now = self.sim.now();
            self.request(now, Action::Reconcile).expect("names nothing");
        }
    }

    /// The AWS calls that put the uplink address and the main table's segment routes where the
    /// active Edge is, requested now.
    fn reconcile(&mut self) -> Result<(), String> {
        let Some(strategy) = self.reconciler else {
            return Err("no reconciler runs".into());
        };
        if self.reconciler_broken {
            return Err("the reconciler is broken: nothing done".into());
        }
        let Some(edge) = self.model.active_edge() else {
            return Err("no Edge is active".into());
        };
        let host = edge.host.clone();
        let ip = self.model.uplink_ip;
        let holder = self.model.holder_of(ip).map(|e| e.id.clone());
        let now = self.sim.now();
        let mut calls = Vec::new();
        let target = match strategy {
            Strategy::IpMove => {
                let Some(eni) = self.model.eni_of_host(&host).map(|e| e.id.clone()) else {
                    return Err(format!("{host} has no ENI"));
                };
                if holder.as_deref() != Some(eni.as_str()) {
                    calls.push((
                        now,
                        Action::AssignSecondaryIp {
                            eni: eni.clone(),
                            ip,
                        },
                    ));
                }
                eni
            }
            Strategy::EniReattach => {
                let Some(eni) = holder else {
                    return Err(format!("no ENI holds {ip}"));
                };
                let attached_to = self
                    .model
                    .eni(&eni)
                    .and_then(|e| e.attachment.as_ref())
                    .map(|a| a.instance.clone());
                if attached_to.as_deref() != Some(host.as_str()) {
                    let detach = self.topo.timing.eni_reattach / 2;
                    if attached_to.is_some() {
                        calls.push((now, Action::DetachEni { eni: eni.clone() }));
                    }
                    // The new host's own ENI makes way.
                    if let Some(own) = self.model.eni_of_host(&host).map(|e| e.id.clone()) {
                        calls.push((now, Action::DetachEni { eni: own }));
                    }
                    let host = host.clone();
                    calls.push((
                        now + detach,
                        Action::AttachEni {
                            eni: eni.clone(),
                            host,
                        },
                    ));
                }
                eni
            }
        };
        let segments: Vec<Ipv4Net> = self.model.segments.iter().map(|s| s.cidr).collect();
        let stale: Vec<Ipv4Net> = self
            .model
            .main_table
            .iter()
            .filter_map(|r| match (&r.dest, &r.target) {
                (RouteDest::Cidr(c), VpcTarget::Eni(e))
                    if !segments.contains(c) && self.model.eni(e).is_some_and(|e| e.sddc) =>
                {
                    Some(*c)
                }
                _ => None,
            })
            .collect();
        // Routes of segments gone first, to make room in the quota.
        for dest in stale {
            calls.push((now, Action::DeleteRoute { dest }));
        }
        // A route per segment to the target ENI; no route for a segment that is gone.
        for cidr in &segments {
            match self.model.route(*cidr) {
                None => calls.push((
                    now,
                    Action::CreateRoute {
                        dest: *cidr,
                        eni: target.clone(),
                    },
                )),
                Some(r) if r.target != VpcTarget::Eni(target.clone()) => calls.push((
                    now,
                    Action::ReplaceRoute {
                        dest: *cidr,
                        eni: target.clone(),
                    },
                )),
                Some(_) => {}
            }
        }
        for (at, call) in calls {
            self.request(at, call).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Run the lab until `done` holds, until `deadline` or until interrupted, applying control
    /// actions as they come due (see [`Sim::run_while`]).
    pub fn run_while(&mut self, deadline: Instant, mut done: impl FnMut(&Sim) -> bool) -> Stop {
        loop {
            match self.sim.run_while(deadline, &mut done) {
                Stop::Control { token, .. } => self.apply(token as usize),
                // What each Edge's session knows is read where it is; the notice only says
                // that it changed.
                Stop::Notice => self.ha_roles(),
                stop => return stop,
            }
        }
    }

    /// Run the lab until `deadline` (or until interrupted).
    pub fn run_until(&mut self, deadline: Instant) -> Stop {
        self.run_while(deadline, |_| false)
    }

    fn check_names(&self, a: &Action) -> Result<(), ActionError> {
        let m = &self.model;
        let eni = |id: &String| {
            m.eni(id)
                .map(|_| ())
                .ok_or_else(|| ActionError::UnknownEni(id.clone()))
        };
        let host = |h: &String| {
            m.host(h)
                .map(|_| ())
                .ok_or_else(|| ActionError::UnknownHost(h.clone()))
        };
        let vm_or_edge = |v: &String| {
            (m.vm(v).is_some() || m.edge(v).is_some())
                .then_some(())
                .ok_or_else(|| ActionError::UnknownVm(v.clone()))
        };
        match a {
            Action::AssignSecondaryIp { eni: e, .. }
            | Action::CreateRoute { eni: e, .. }
            | Action::ReplaceRoute { eni: e, .. }
            | Action::DetachEni { eni: e } => eni(e),
            Action::DeleteRoute { .. } => Ok(()),
            Action::AttachEni { eni: e, host: h } => eni(e).and_then(|_| host(h)),
            Action::StunVm { vm: v } => vm_or_edge(v),
            Action::HaRestart { vm: v, host: h } => vm_or_edge(v).and_then(|_| host(h)),
            Action::ResumeVm { vm: v, host: h } => vm_or_edge(v).and_then(|_| host(h)),
            Action::FailHost { host: h }
            | Action::RecoverHost { host: h }
            | Action::Maintenance { host: h } => host(h),
            Action::AddSegment { .. }
            | Action::AddHost { .. }
            | Action::Reconcile
            | Action::BreakReconciler
            | Action::HealReconciler => Ok(()),
            Action::RemoveHost { host: h } => host(h),
            Action::RemoveSegment { name } => m
                .segments
                .iter()
                .any(|s| s.name == *name)
                .then_some(())
                .ok_or_else(|| ActionError::UnknownSegment(name.clone())),
            Action::CutBfd | Action::HealBfd => Ok(()),
            Action::SetActiveEdge { edge }
            | Action::StopEdge { edge }
            | Action::PromoteEdge { edge }
            | Action::StandbyEdge { edge } => m
                .edge(edge)
                .map(|_| ())
                .ok_or_else(|| ActionError::UnknownEdge(edge.clone())),
        }
    }

    /// Action `index` of the timeline comes due now: change the model, program the nodes.
    fn apply(&mut self, index: usize) {
        let action = self.timeline[index].action.clone();
        // What the action names may have gone since it was requested (a host removed, a
        // segment deleted): it fails then, as the API call would.
        if let Err(e) = self.check_names(&action) {
            self.timeline[index].error = Some(e.to_string());
            return;
        }
        let watched = self.watched();
        let ran: Vec<bool> = self
            .model
            .edges
            .iter()
            .map(|e| self.model.edge_runs(e))
            .collect();
        let result = match &action {
            Action::AssignSecondaryIp { eni, ip } => self.assign_secondary_ip(eni, *ip),
            Action::CreateRoute { dest, eni } => self.set_route(*dest, Some(eni), false),
            Action::ReplaceRoute { dest, eni } => self.set_route(*dest, Some(eni), true),
            Action::DeleteRoute { dest } => self.set_route(*dest, None, true),
            Action::DetachEni { eni } => self.detach_eni(eni),
            Action::AttachEni { eni, host } => self.attach_eni(eni, host),
            Action::StunVm { vm } => self.stun_vm(vm),
            Action::ResumeVm { vm, host } => self.resume_vm(vm, host),
            Action::SetActiveEdge { edge } => self.set_active_edge(edge, true),
            Action::PromoteEdge { edge } => self.set_active_edge(edge, false),
            Action::StandbyEdge { edge } => self.standby_edge(edge),
            Action::CutBfd if self.bfd_cut => Err("BFD is cut already".into()),
            Action::CutBfd => {
                self.cut_bfd(true);
                Ok(())
            }
            Action::HealBfd if !self.bfd_cut => Err("BFD is not cut".into()),
            Action::HealBfd => {
                self.cut_bfd(false);
                Ok(())
            }
            Action::StopEdge { edge } => self.stop_edge(edge),
            Action::FailHost { host } => self.set_host_failed(host, true),
            Action::RecoverHost { host } => self.set_host_failed(host, false),
            Action::AddSegment {
                name,
                cidr,
                gateway,
            } => self.add_segment(name, *cidr, *gateway),
            Action::RemoveSegment { name } => self.remove_segment(name),
            Action::AddHost { host, cluster } => self.add_host(host, cluster),
            Action::RemoveHost { host } => self.remove_host(host),
            Action::Reconcile => self.reconcile(),
            Action::HaRestart { vm, host } => self.ha_restart(vm, host),
            Action::BreakReconciler => {
                self.reconciler_broken = true;
                Ok(())
            }
            Action::HealReconciler => {
                self.reconciler_broken = false;
                self.notice();
                Ok(())
            }
            Action::Maintenance { host } => self.start_maintenance(host),
        };
        if result.is_ok() {
            self.progress_hosts();
        }
        self.program_bfd(&ran);
        if result.is_ok() && self.automation {
            self.react(&action);
            self.ha_roles();
        }
        // The reconciler notices an active Edge on another host, or a segment come or gone; an
        // Edge that merely stopped leaves nothing to follow until another is active.
        let now_watched = self.watched();
        if result.is_ok() && now_watched.0.is_some() && now_watched != watched {
            self.notice();
        }
        let e = &mut self.timeline[index];
        match result {
            Ok(()) => e.took_effect_at = Some(self.sim.now()),
            Err(msg) => e.error = Some(msg),
        }
    }

    fn configure(&mut self, node: NodeId, change: Change) {
        self.sim.configure(node, &change);
    }

    /// Plug the link `name` between `ends` in: the one that joined them before, or a new one
    /// with the topology's parameters for it.
    fn plug(
        &mut self,
        name: &str,
        kind: LinkKind,
        ends: ((NodeId, Port), (NodeId, Port)),
    ) -> LinkId {
        let before = self
            .sim
            .links()
            .iter()
            .position(|l| l.name == name && (l.a, l.b) == ends);
        match before {
            Some(l) => {
                self.sim.reconnect(l);
                l
            }
            None => {
                let spec = self.topo.links.spec(name, kind);
                self.sim.connect_with(name, ends.0, ends.1, spec)
            }
        }
    }

    fn assign_secondary_ip(&mut self, eni: &str, ip: Ipv4Addr) -> Result<(), String> {
        let old = self.model.holder_of(ip).map(|e| e.id.clone());
        if old.as_deref() == Some(eni) {
            return Ok(());
        }
        if let Some(old) = &old {
            let f = self.model.eni_mut(old).expect("holder exists");
            if f.primary_ip == ip {
                return Err(format!("{ip} is the primary address of {old}"));
            }
            f.secondary_ips.retain(|a| *a != ip);
            let node = f.node;
            self.configure(node, Change::EniSecondaryIp { ip, held: false });
        }
        let f = self.model.eni_mut(eni).expect("checked");
        f.secondary_ips.push(ip);
        let node = f.node;
        self.configure(node, Change::EniSecondaryIp { ip, held: true });
        let router = self.router;
        self.configure(
            router,
            Change::RouterIpOwner {
                ip,
                eni: Some(eni.to_string()),
            },
        );
        self.program_uplink_owners();
        Ok(())
    }

    fn set_route(&mut self, dest: Ipv4Net, eni: Option<&str>, replace: bool) -> Result<(), String> {
        // As AWS: the local route stays as it is, and a CIDR a prefix list's route covers
        // takes no route of its own.
        for r in &self.model.main_table {
            if r.target == VpcTarget::Local && r.dest == RouteDest::Cidr(dest) {
                return Err(format!("{dest} is the VPC's local route"));
            }
            if let RouteDest::PrefixList { id, cidrs } = &r.dest {
                if cidrs.contains(&dest) {
                    return Err(format!(
                        "{dest} is in prefix list {id}, which has its route"
                    ));
                }
            }
        }
        let at = self
            .model
            .main_table
            .iter()
            .position(|r| r.dest == RouteDest::Cidr(dest));
        match (at, eni, replace) {
            (Some(_), Some(_), false) => return Err(format!("a route to {dest} exists")),
            (None, _, true) => return Err(format!("no route to {dest}")),
            (None, Some(eni), false) => {
                if self.model.routes_used() >= self.model.route_quota as usize {
                    return Err(format!(
                        "the main route table is full ({} routes)",
                        self.model.route_quota
                    ));
                }
                self.model.main_table.push(RouteFact {
                    dest: RouteDest::Cidr(dest),
                    target: VpcTarget::Eni(eni.to_string()),
                    origin: "CreateRoute",
                });
            }
            (Some(i), Some(eni), true) => {
                self.model.main_table[i].target = VpcTarget::Eni(eni.to_string())
            }
            (Some(i), None, _) => {
                self.model.main_table.remove(i);
            }
            (None, None, false) => return Err(format!("no route to {dest}")),
        }
        let target = eni.map(|e| VpcTarget::Eni(e.to_string()));
        let router = self.router;
        self.configure(router, Change::RouterRoute { dest, target });
        Ok(())
    }

    fn detach_eni(&mut self, eni: &str) -> Result<(), String> {
        let f = self.model.eni_mut(eni).expect("checked");
        let Some(was) = f.attachment.take() else {
            return Err(format!("{eni} is not attached"));
        };
        if !f.sddc {
            f.attachment = Some(was);
            return Err(format!("{eni} is an instance's primary interface"));
        }
        let (node, link) = (f.node, f.host_link.take());
        self.configure(node, Change::EniAttachment(None));
        let router = self.router;
        self.configure(
            router,
            Change::RouterEniAttached {
                eni: eni.to_string(),
                attached: false,
            },
        );
        if let Some(l) = link {
            self.sim.disconnect(l);
        }
        if let Some(h) = self.model.host(&was.instance).map(|h| h.node) {
            self.configure(h, Change::HostEniMac(None));
        }
        self.program_uplink_owners();
        Ok(())
    }

    fn attach_eni(&mut self, eni: &str, host: &str) -> Result<(), String> {
        if let Some(other) = self.model.eni_of_host(host) {
            return Err(format!("{host} already has {}", other.id));
        }
        if self.model.host(host).expect("checked").failed {
            return Err(format!("{host} is down"));
        }
        let hnode = self.model.host(host).expect("checked").node;
        let f = self.model.eni_mut(eni).expect("checked");
        if let Some(a) = &f.attachment {
            return Err(format!("{eni} is attached to {}", a.instance));
        }
        if !f.sddc {
            return Err(format!("{eni} is an instance's primary interface"));
        }
        f.attachments += 1;
        f.attachment = Some(super::attachment(eni, f.attachments, host, 1));
        let (node, mac) = (f.node, f.mac);
        let ends = (
            (hnode, crate::node::host::UPLINK),
            (node, crate::node::eni::INSTANCE),
        );
        let link = self.plug(&link_name(host, eni), LinkKind::Eni, ends);
        self.model.eni_mut(eni).expect("checked").host_link = Some(link);
        self.configure(node, Change::EniAttachment(Some(host.to_string())));
        let router = self.router;
        self.configure(
            router,
            Change::RouterEniAttached {
                eni: eni.to_string(),
                attached: true,
            },
        );
        self.configure(hnode, Change::HostEniMac(Some(mac)));
        self.program_uplink_owners();
        Ok(())
    }

    fn stun_vm(&mut self, vm: &str) -> Result<(), String> {
        if self.model.edge(vm).is_some() {
            return self.stun_edge(vm);
        }
        let v = self.model.vm_mut(vm).expect("checked");
        if v.stunned {
            return Err(format!("{vm} is already stunned"));
        }
        v.stunned = true;
        let link = v.link;
        self.sim.disconnect(link);
        Ok(())
    }

    fn resume_vm(&mut self, vm: &str, host: &str) -> Result<(), String> {
        if self.model.host(host).expect("checked").failed {
            return Err(format!("{host} is down"));
        }
        if self.model.edge(vm).is_some() {
            return self.resume_edge(vm, host);
        }
        let v = self.model.vm(vm).expect("checked").clone();
        let (old_host, old_port) = (v.host.clone(), v.port);
        let old_node = self.model.host(&old_host).expect("known").node;
        let new_node = self.model.host(host).expect("checked").node;
        self.sim.disconnect(v.link);
        self.configure(old_node, Change::HostUnplug { port: old_port });
        self.model.set_vnic(&old_host, old_port, None);
        let port = self.model.free_port(host).expect("checked");
        let vnic = Vnic {
            name: vm.to_string(),
            mac: v.mac,
            attach: crate::node::host::Attachment::Segment(self.model.segments[v.segment].vni),
        };
        self.configure(new_node, Change::HostPlug { port, vnic });
        self.model.set_vnic(host, port, Some(vm.to_string()));
        let ends = ((v.node, 0), (new_node, port));
        let link = self.plug(&link_name(vm, host), LinkKind::Vnic, ends);
        let f = self.model.vm_mut(vm).expect("checked");
        f.host = host.to_string();
        f.port = port;
        f.link = link;
        f.stunned = false;
        self.program_directory();
        self.configure(new_node, Change::HostAnnounce { port });
        Ok(())
    }

    fn stun_edge(&mut self, edge: &str) -> Result<(), String> {
        let e = self.model.edge_mut(edge).expect("checked");
        if e.stunned {
            return Err(format!("{edge} is already stunned"));
        }
        e.stunned = true;
        let links: Vec<LinkId> = e.links().collect();
        for l in links {
            self.sim.disconnect(l);
        }
        Ok(())
    }

    /// An Edge resumes on `host`: each of its interfaces' vNICs unplugged from the old host and
    /// plugged into the new one, its role kept; hosts learn where its MACs are.
    fn resume_edge(&mut self, edge: &str, host: &str) -> Result<(), String> {
        let e = self.model.edge(edge).expect("checked").clone();
        let old_node = self.model.host(&e.host).expect("the Edge's host").node;
        let new_node = self.model.host(host).expect("checked").node;
        for l in e.links() {
            self.sim.disconnect(l);
        }
        // The uplink first, then the segments, then the HA interface (see `EdgeFact::vnics`).
        let mut announce = Vec::new();
        for (i, v) in e.vnics.iter().enumerate() {
            self.configure(old_node, Change::HostUnplug { port: v.host_port });
            self.model.set_vnic(&e.host, v.host_port, None);
            let port = self.model.free_port(host).expect("checked");
            let (attach, kind, iface_name) = self.model.edge_vnic_plug(v.iface);
            let name = format!("{edge}/{iface_name}");
            let vnic = Vnic {
                name: name.clone(),
                mac: v.mac,
                attach,
            };
            self.configure(new_node, Change::HostPlug { port, vnic });
            self.model.set_vnic(host, port, Some(name));
            let link_name = link_name(&vmcnet_topo::edge_iface_end(edge, &iface_name), host);
            let link = self.plug(&link_name, kind, ((e.node, v.edge_port), (new_node, port)));
            let f = self.model.edge_mut(edge).expect("checked");
            f.vnics[i].host_port = port;
            f.vnics[i].link = link;
            match v.iface {
                EdgeVnicIface::Segment(_) => announce.push(port),
                EdgeVnicIface::Ha if self.bfd_cut => {
                    // Plugged in, dark until BFD is healed.
                    self.sim.disconnect(link);
                }
                EdgeVnicIface::Ha | EdgeVnicIface::Uplink => {}
            }
        }
        let f = self.model.edge_mut(edge).expect("checked");
        f.host = host.to_string();
        f.stunned = false;
        self.program_uplink_owners();
        self.program_directory();
        for port in announce {
            self.configure(new_node, Change::HostAnnounce { port });
        }
        Ok(())
    }

    fn stop_edge(&mut self, edge: &str) -> Result<(), String> {
        let e = self.model.edge_mut(edge).expect("checked");
        if e.stopped {
            return Err(format!("{edge} is stopped already"));
        }
        e.stopped = true;
        e.active = false;
        let (node, links) = (e.node, e.links().collect::<Vec<_>>());
        self.configure(node, Change::EdgeActive(false));
        for l in links {
            self.sim.disconnect(l);
        }
        self.program_uplink_owners();
        self.program_directory();
        Ok(())
    }

    /// A new segment: a VNI never used before, an interface on it for each Edge (plugged into
    /// its host), the hosts' directory.
    fn add_segment(&mut self, name: &str, cidr: Ipv4Net, gateway: Gateway) -> Result<(), String> {
        let m = &self.model;
        if m.segments.iter().any(|s| s.name == name) {
            return Err(format!("a segment is named {name} already"));
        }
        if vmcnet_topo::EDGE_RESERVED_IFACES.contains(&name) {
            return Err(format!("{name} names an interface of every Edge"));
        }
        if let Some(s) = m.segments.iter().find(|s| overlaps(s.cidr, cidr)) {
            return Err(format!("{cidr} overlaps segment {} ({})", s.name, s.cidr));
        }
        if overlaps(self.topo.vpc.cidr, cidr) {
            return Err(format!(
                "{cidr} overlaps the VPC CIDR {}",
                self.topo.vpc.cidr
            ));
        }
        let vni = m.next_vni;
        self.model.next_vni += 1;
        let gateway_ip = vmcnet_topo::nth_addr(cidr, 1);
        self.model.segments.push(SegmentFact {
            name: name.to_string(),
            gateway,
            cidr,
            gateway_ip,
            vni,
        });
        let segment = EdgeVnicIface::Segment(self.model.segments.len() - 1);
        let (attach, kind, iface_name) = self.model.edge_vnic_plug(segment);
        for i in 0..self.model.edges.len() {
            let mac = self.model.new_mac(super::mac_kind::EDGE);
            let e = &self.model.edges[i];
            let (edge_name, host, node, edge_port) =
                (e.name.clone(), e.host.clone(), e.node, e.next_port);
            let links_up = self.model.edge_links_up(e);
            let link_name = link_name(&vmcnet_topo::edge_iface_end(&edge_name, &iface_name), &host);
            let mtu = self.topo.links.spec(&link_name, kind).mtu as usize;
            let ifc = EdgeIface {
                name: name.to_string(),
                mac,
                ip: gateway_ip,
                net: cidr,
                role: IfaceRole::Segment,
                mtu,
            };
            let add = Change::EdgeAddIface {
                port: edge_port,
                iface: ifc,
            };
            self.configure(node, add);
            let host_node = self.model.host(&host).expect("the Edge's host").node;
            let host_port = self.model.free_port(&host).expect("the Edge's host");
            let vnic = Vnic {
                name: format!("{edge_name}/{iface_name}"),
                mac,
                attach,
            };
            self.configure(
                host_node,
                Change::HostPlug {
                    port: host_port,
                    vnic: vnic.clone(),
                },
            );
            self.model.set_vnic(&host, host_port, Some(vnic.name));
            let link = self.plug(
                &link_name,
                kind,
                ((node, edge_port), (host_node, host_port)),
            );
            if !links_up {
                // Plugged in, dark like the Edge's other links: until its host comes back, or
                // its vMotion plugs them all in again; a stopped Edge's stay dark.
                self.sim.disconnect(link);
            }
            let e = self.model.edge_mut(&edge_name).expect("exists");
            e.next_port += 1;
            e.insert_vnic(EdgeVnic {
                iface: segment,
                mac,
                edge_port,
                host_port,
                link,
            });
        }
        self.program_directory();
        Ok(())
    }

    /// A segment with no VM on it goes: each Edge's interface on it, unplugged.
    fn remove_segment(&mut self, name: &str) -> Result<(), String> {
        let idx = self
            .model
            .segments
            .iter()
            .position(|s| s.name == name)
            .expect("checked");
        if let Some(v) = self.model.vms.iter().find(|v| v.segment == idx) {
            return Err(format!("{} is still on {name}", v.name));
        }
        self.model.segments.remove(idx);
        for v in &mut self.model.vms {
            if v.segment > idx {
                v.segment -= 1;
            }
        }
        for i in 0..self.model.edges.len() {
            let e = &mut self.model.edges[i];
            let at = e
                .vnics
                .iter()
                .position(|v| v.iface == EdgeVnicIface::Segment(idx))
                .expect("an interface on every segment");
            let ifc = e.vnics.remove(at);
            for v in &mut e.vnics {
                if let EdgeVnicIface::Segment(j) = &mut v.iface {
                    if *j > idx {
                        *j -= 1;
                    }
                }
            }
            let (node, host) = (e.node, e.host.clone());
            self.configure(
                node,
                Change::EdgeRemoveIface {
                    port: ifc.edge_port,
                },
            );
            let host_node = self.model.host(&host).expect("the Edge's host").node;
            self.configure(
                host_node,
                Change::HostUnplug {
                    port: ifc.host_port,
                },
            );
            self.model.set_vnic(&host, ifc.host_port, None);
            self.sim.disconnect(ifc.link);
        }
        self.program_directory();
        Ok(())
    }

    /// A new host in `cluster`: a host node with the next TEP, its link to the underlay, the
    /// directory.
    fn add_host(&mut self, name: &str, cluster: &str) -> Result<(), String> {
        use vmcnet_topo::validate::{MAX_HOSTS, MAX_HOSTS_PER_CLUSTER};
        if self.model.host(name).is_some() || self.sim.node_id(name).is_some() {
            return Err(format!("a node is named {name} already"));
        }
        let Some(first) = self.topo.sddc.clusters.first() else {
            return Err("the SDDC has no cluster".into());
        };
        if !self.topo.sddc.clusters.iter().any(|c| c.name == cluster) {
            return Err(format!("no cluster is named {cluster}"));
        }
        let in_cluster = self
            .model
            .hosts
            .iter()
            .filter(|h| h.cluster == cluster)
            .count();
        // Cluster 1 takes a 17th host while one is replaced or in maintenance.
        let spare = usize::from(cluster == first.name);
        if in_cluster >= MAX_HOSTS_PER_CLUSTER + spare {
            return Err(format!("{cluster} holds {in_cluster} hosts already"));
        }
        // Like cluster 1, the SDDC may hold one host over its limit while one is replaced.
        if self.model.hosts.len() > MAX_HOSTS {
            return Err(format!(
                "the SDDC holds {} hosts already",
                self.model.hosts.len()
            ));
        }
        let i = self.model.hosts_created;
        let tep = crate::node::host::Tep {
            ip: super::tep_ip(&self.topo, i),
            mac: self.model.new_mac(super::mac_kind::TEP),
        };
        let node = self
            .sim
            .add_node(Box::new(crate::node::host::Host::new(name, tep, None)));
        let underlay = self
            .sim
            .node_id(vmcnet_topo::UNDERLAY)
            .expect("the underlay");
        let port = i as Port;
        self.configure(underlay, Change::UnderlayPort { mac: tep.mac, port });
        let link = self.plug(
            &link_name(name, vmcnet_topo::UNDERLAY),
            LinkKind::Underlay,
            ((node, crate::node::host::OVERLAY), (underlay, port)),
        );
        self.model.hosts.push(super::model::HostFact {
            name: name.to_string(),
            cluster: cluster.to_string(),
            tep: tep.ip,
            tep_mac: tep.mac,
            node,
            vnics: Vec::new(),
            underlay_link: link,
            failed: false,
        });
        self.model.hosts_created += 1;
        self.program_directory();
        Ok(())
    }

    /// A host with no VM, no Edge and no ENI leaves: its underlay link goes dark.
    fn remove_host(&mut self, name: &str) -> Result<(), String> {
        let m = &self.model;
        if let Some(v) = m.vms.iter().find(|v| v.host == name) {
            return Err(format!("{} is still on {name}", v.name));
        }
        if let Some(e) = m.edges.iter().find(|e| e.host == name) {
            return Err(format!("{} is still on {name}", e.name));
        }
        if let Some(e) = m.eni_of_host(name) {
            return Err(format!("{name} still has {}", e.id));
        }
        let i = m
            .hosts
            .iter()
            .position(|h| h.name == name)
            .expect("checked");
        let h = self.model.hosts.remove(i);
        self.sim.disconnect(h.underlay_link);
        self.program_directory();
        Ok(())
    }

    /// Take a host down, or bring it back: its underlay and ENI links, the vNIC links of what
    /// runs on it, and the VMs' and Edges' running state.
    fn set_host_failed(&mut self, host: &str, failed: bool) -> Result<(), String> {
        let h = self
            .model
            .hosts
            .iter_mut()
            .find(|h| h.name == host)
            .expect("checked");
        if h.failed == failed {
            return Err(format!(
                "{host} is {} already",
                if failed { "down" } else { "up" }
            ));
        }
        h.failed = failed;
        // A stunned VM's or stopped Edge's links stay down when the host comes back.
        let mut links = vec![h.underlay_link];
        links.extend(self.model.eni_of_host(host).and_then(|e| e.host_link));
        let m = &self.model;
        links.extend(
            m.vms
                .iter()
                .filter(|v| v.host == host && (failed || !v.stunned))
                .map(|v| v.link),
        );
        let mut edges = Vec::new();
        for e in m.edges.iter().filter(|e| e.host == host) {
            if failed || m.edge_links_up(e) {
                // A cut HA link stays dark until BFD is healed.
                let dark = |l: &LinkId| !failed && self.bfd_cut && *l == e.ha().link;
                links.extend(e.links().filter(|l| !dark(l)));
            }
            edges.push((e.name.clone(), e.node));
        }
        for l in links {
            if failed {
                self.sim.disconnect(l);
            } else {
                self.sim.reconnect(l);
            }
        }
        // An Edge on a failed host loses the active role; it comes back as standby.
        for (name, node) in edges {
            self.model.edge_mut(&name).expect("listed").active = false;
            self.configure(node, Change::EdgeActive(false));
        }
        self.program_uplink_owners();
        self.program_directory();
        Ok(())
    }

    /// `edge` becomes active; `exclusive`, the other steps down (NSX's failover), otherwise
    /// it keeps whatever role it has (an Edge that lost BFD to a peer that still runs).
    fn set_active_edge(&mut self, edge: &str, exclusive: bool) -> Result<(), String> {
        if !self
            .model
            .edge_runs(self.model.edge(edge).expect("checked"))
        {
            return Err(format!("{edge} does not run"));
        }
        self.model.promotions += 1;
        let promoted = self.model.promotions;
        for e in &mut self.model.edges {
            if e.name == edge {
                e.active = true;
                e.promoted = promoted;
            } else if exclusive {
                e.active = false;
            }
        }
        let changes: Vec<_> = self
            .model
            .edges
            .iter()
            .map(|e| (e.node, Change::EdgeActive(e.active)))
            .collect();
        for (node, c) in changes {
            self.configure(node, c);
        }
        self.program_uplink_owners();
        self.program_directory();
        Ok(())
    }

    /// `edge` steps down to standby.
    fn standby_edge(&mut self, edge: &str) -> Result<(), String> {
        let e = self.model.edge_mut(edge).expect("checked");
        if !e.active {
            return Err(format!("{edge} is standby already"));
        }
        e.active = false;
        let node = e.node;
        self.configure(node, Change::EdgeActive(false));
        self.program_uplink_owners();
        self.program_directory();
        Ok(())
    }

    /// Program every host with the directory of the model as it is now.
    pub(crate) fn program_directory(&mut self) {
        let dir = std::sync::Arc::new(self.model.directory());
        let hosts: Vec<_> = self.model.hosts.iter().map(|h| h.node).collect();
        for node in hosts {
            self.configure(node, Change::HostDirectory(dir.clone()));
        }
    }

    /// Tell every host which local vNIC owns each address of its ENI: the uplink address
    /// belongs to the uplink of an active Edge that runs there, if that host's ENI holds it
    /// (two hosts may, for a moment, while both Edges are active).
    fn program_uplink_owners(&mut self) {
        let ip = self.model.uplink_ip;
        let m = &self.model;
        let hosts: Vec<_> = m
            .hosts
            .iter()
            .map(|h| {
                let holds = m
                    .eni_of_host(&h.name)
                    .is_some_and(|e| e.secondary_ips.contains(&ip));
                let port = m
                    .edges
                    .iter()
                    .filter(|e| e.host == h.name && e.active && m.edge_runs(e))
                    .max_by_key(|e| e.promoted)
                    .filter(|_| holds)
                    .map(|e| e.uplink().host_port);
                (h.node, port)
            })
            .collect();
        for (node, port) in hosts {
            self.configure(node, Change::HostUplinkOwner { ip, port });
        }
    }
}

/// Whether two networks share an address.
fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
