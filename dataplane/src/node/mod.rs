//! Nodes: the things that forward frames. Each is a state machine with no I/O.
//!
//! A node takes a frame on a port, or the passing of time, and gives frames out on its ports.
//! It never reads a clock, sleeps, locks or touches a file descriptor: `now` is passed in, and
//! the runtime (sim or live) carries what lands in the [`Outbox`] across the links. Nodes are
//! `Send`, so a runtime may run them on any thread. Configuration changes made by the control
//! plane (an IP moved, a route re-targeted) are method calls at a given instant.
//!
//! - [`host`]: an ESXi host: per-segment switching, the Geneve TEP, the uplink to its ENI.
//! - [`underlay`]: the SDDC underlay network that carries Geneve between host TEPs.
//! - [`edge`]: the NSX Edge: Tier-0 with the CGW and MGW gateways, ARP, routing, ICMP, SNAT.
//! - [`bfd`]: the BFD session the Edges run between them.
//! - [`eni`]: an AWS elastic network interface: its IPs, attachment, source/destination check.
//! - [`vpc_router`]: the VPC's implicit router: route tables, IP→ENI delivery, gateway endpoints.
//! - [`endpoint`]: a VM, vCenter, an EC2 instance or S3: a smoltcp stack with traffic apps.
//! - [`route`]: the longest-prefix-match route table shared by Tier-0 and the VPC.

pub mod arp_cache;
pub mod bfd;
pub mod edge;
pub mod endpoint;
pub mod eni;
pub mod host;
pub mod route;
pub mod underlay;
pub mod vpc_router;

use std::any::Any;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::time::Instant;
use crate::wire::{Frame, MacAddr};

/// A port number on a node. What each number means is the node's own business; each node kind
/// documents its port layout.
pub type Port = u16;

/// Frames nodes give out, with the node and port each leaves from.
///
/// Nodes and tests see only [`Outbox::send`] and [`Outbox::drain`] (and, for what a node tells
/// the control plane rather than a link, [`Outbox::notify`] and [`Outbox::take_notices`]). A
/// runtime hands the same outbox to every node it calls at one instant and takes what was sent
/// as a batch: it alone puts each frame onto its link and decides when it reaches the far end
/// (frames on links that take time wait on the runtime's timeline, never here).
#[derive(Debug, Default)]
pub struct Outbox {
    /// The node whose frames are being sent.
    from: u32,
    sent: Vec<Sent>,
    /// What nodes told the control plane. The control plane reads what it needs from its own
    /// model and the nodes' state; a notice only says when to look.
    notices: Vec<Notice>,
}

/// News a node gives the control plane, beside its frames: what the control plane of the system
/// emulated learns from the data plane (what an Edge's BFD session learned of its peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An Edge's BFD session to its peer came up.
    BfdUp,
    /// An Edge heard nothing from its peer for BFD's detection time: the peer is dead, or cut
    /// off.
    BfdPeerDead,
}

/// A frame sent out of a node's port, not yet on its link; or, with [`Sent::ARRIVING`] set in
/// `from`, a frame handed straight to that node's port (injected by a runtime or a test).
#[derive(Debug)]
pub(crate) struct Sent {
    pub from: u32,
    pub port: Port,
    pub frame: Frame,
}

impl Sent {
    pub const ARRIVING: u32 = 1 << 31;
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Send `frame` out of `port`.
    #[inline]
    pub fn send(&mut self, port: Port, frame: Frame) {
        self.sent.push(Sent {
            from: self.from,
            port,
            frame,
        });
    }

    /// Tell the control plane `notice`.
    pub fn notify(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// Take what nodes told the control plane, in order.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    pub(crate) fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Forget every frame sent.
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// Take the frames out in the order they were sent.
    pub fn drain(&mut self) -> impl Iterator<Item = (Port, Frame)> + '_ {
        self.sent.drain(..).map(|s| (s.port, s.frame))
    }

    /// Frames sent from now on come from `node`.
    #[inline]
    pub(crate) fn set_from(&mut self, node: usize) {
        self.from = node as u32;
    }

    /// A frame arriving at `node`:`port`, behind the frames sent so far.
    pub(crate) fn arrive(&mut self, node: usize, port: Port, frame: Frame) {
        self.sent.push(Sent {
            from: node as u32 | Sent::ARRIVING,
            port,
            frame,
        });
    }

    /// Swap the frames sent into `batch` (which must be empty), leaving the outbox empty with
    /// `batch`'s old capacity: both buffers are reused, batch after batch.
    #[inline]
    pub(crate) fn take_sent(&mut self, batch: &mut Vec<Sent>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.sent, batch);
    }
}

/// A change of forwarding state that the control plane programs into a node, at an instant. Each
/// node kind takes the changes that concern it and ignores the rest.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// ENI: attached to this host or instance, or (`None`) detached.
    EniAttachment(Option<String>),
    /// ENI: holds a secondary private IP, or no longer does.
    EniSecondaryIp { ip: Ipv4Addr, held: bool },
    /// VPC router: the ENI that holds `ip`, or none.
    RouterIpOwner { ip: Ipv4Addr, eni: Option<String> },
    /// VPC router: an ENI was attached or detached.
    RouterEniAttached { eni: String, attached: bool },
    /// VPC router: the main table's route to `dest`, or (`None`) its deletion.
    RouterRoute {
        dest: Ipv4Net,
        target: Option<vpc_router::VpcTarget>,
    },
    /// Host: plug a vNIC into `port`.
    HostPlug { port: Port, vnic: host::Vnic },
    /// Host: unplug the vNIC on `port` (the VM left).
    HostUnplug { port: Port },
    /// Host: the MAC of the ENI its uplink now reaches, or none.
    HostEniMac(Option<MacAddr>),
    /// Host: the local vNIC port that owns an address of its ENI, or none.
    HostUplinkOwner { ip: Ipv4Addr, port: Option<Port> },
    /// Host: the directory the central control plane programs into every host (where each
    /// VM's MAC lives, its address, the distributed router's segments).
    HostDirectory(std::sync::Arc<host::Directory>),
    /// Host: announce the vNIC on `port` to its segment with a RARP, as ESXi does when a VM
    /// resumes after a vMotion, so that every switch learns where its MAC is now.
    HostAnnounce { port: Port },
    /// Underlay: frames for `mac` (a host's TEP) leave on `port`.
    UnderlayPort { mac: MacAddr, port: Port },
    /// Edge: active or standby.
    EdgeActive(bool),
    /// Edge: a new interface (a segment created), on `port`, which the control plane hands out.
    EdgeAddIface { port: Port, iface: edge::EdgeIface },
    /// Edge: the interface on `port` is gone (its segment deleted); the port stays unused.
    EdgeRemoveIface { port: Port },
    /// Edge: a new BFD session to the other Edge (the Edge VM started), or (`None`) none (it
    /// died).
    EdgeBfd(Option<bfd::BfdConfig>),
}

/// A node's counters, by name, in a fixed order (for tables and JSON).
pub type Counters = Vec<(&'static str, u64)>;

/// One frame-forwarding element of the emulated network.
pub trait Node: Any + Send {
    /// The node's name, unique in a lab (`esxi-1`, `eni-2`, `vpc-router`, `web-1`).
    fn name(&self) -> &str;

    /// The kind of node, for tables (`host`, `edge`, `eni`, …).
    fn kind(&self) -> &'static str;

    /// A name for a port, for capture files and link names (`uplink`, `overlay`, `vnic:web-1`).
    fn port_name(&self, port: Port) -> String {
        format!("p{port}")
    }

    /// A frame arrived on `port` at `now`.
    fn handle(&mut self, now: Instant, port: Port, frame: Frame, out: &mut Outbox);

    /// Time passed: run timers due at or before `now` (ARP retries, TCP retransmits, apps).
    fn poll(&mut self, _now: Instant, _out: &mut Outbox) {}

    /// When the node next wants [`Node::poll`] called, if ever.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Whether the node can ever want [`Node::poll`] called. A node that never can (its
    /// [`Node::poll_at`] is always `None`) says `false`, and the runtime does not ask it for its
    /// timer after every frame. Fixed for the node's life.
    fn has_timers(&self) -> bool {
        true
    }

    /// The control plane changed what this node forwards by, at `now`. Frames the change makes
    /// the node send (an announcement) go to `out`.
    fn configure(&mut self, _now: Instant, _change: &Change, _out: &mut Outbox) {}

    /// Counters named for what happened (`rx_dropped_no_route`).
    fn counters(&self) -> Counters;
}

/// A counter struct that lists itself by field name. Generates `fn list(&self) -> Counters`.
#[macro_export]
macro_rules! counters {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: u64,)* }
        impl $name {
            /// Every counter by name, in declaration order.
            pub fn list(&self) -> $crate::node::Counters {
                vec![$((stringify!($field), self.$field),)*]
            }
        }
    };
}
