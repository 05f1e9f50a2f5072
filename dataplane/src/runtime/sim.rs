//! The simulation runtime: every node in one thread, under a virtual clock.
//!
//! One timeline orders everything that happens: node timers, frames arriving over links and
//! control actions, by (virtual time, sequence number), ties broken by the order they were put
//! on it. A run is a pure function of the lab, the seed and the inputs. Time advances only to the
//! next event, so an idle minute costs nothing.
//!
//! Each link direction has a delay, a rate and a byte-limited queue ([`LinkSpec`]): a frame sent
//! onto a busy link waits for the frames before it, is dropped and counted
//! (`tx_dropped_queue_full`) when the queue holds no room for it, and arrives when its last bit
//! has crossed. The frames crossing a link direction wait in that direction's own queue, in the
//! order they arrive; only the first is on the timeline. A link that takes no time (zero delay,
//! unlimited rate) keeps the fast path: its frames join a first-in, first-out queue of the
//! current instant instead of the timeline.
//!
//! Every link can be captured: the frame is handed to a [`FrameSink`] as it is sent onto the
//! link, stamped with the virtual time.

use std::any::Any;
use std::cmp::Ordering as CmpOrdering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vmcnet_topo::LinkSpec;

use crate::capture::FrameSink;
use crate::control::plan::LabPlan;
use crate::counters;
use crate::node::{Change, Node, Outbox, Port, Sent};
use crate::time::Instant;
use crate::wire::{Frame, ETH_HEADER_LEN};

/// Index of a node in the simulation.
pub type NodeId = usize;
/// Index of a link.
pub type LinkId = usize;

/// A point-to-point link between two node ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub a: (NodeId, Port),
    pub b: (NodeId, Port),
    /// The parameters of each direction.
    pub spec: LinkSpec,
}

counters! {
    /// What the runtime itself saw.
    pub struct SimCounters {
        /// Frames sent onto links.
        pub delivered,
        /// Frames sent out of a port with no link, or still in flight on a link that was
        /// unplugged.
        pub dropped_unlinked,
        /// Frames a link's queue had no room for.
        pub tx_dropped_queue_full,
        /// Frames larger than their link's MTU.
        pub tx_dropped_too_big,
        /// Node calls (handle + poll).
        pub node_calls,
    }
}

counters! {
    /// What one direction of a link carried.
    pub struct LinkCounters {
        pub tx_frames,
        pub tx_bytes,
        /// The queue had no room for the frame.
        pub tx_dropped_queue_full,
        /// The frame was larger than the link's MTU (+ 14 bytes of Ethernet).
        pub tx_dropped_too_big,
        /// The link was unplugged while the frame crossed it.
        pub dropped_in_flight,
    }
}

/// Where a port's frames go: the peer port, over which link direction, whether that link is
/// captured and whether it takes time. Kept small (16 bytes), as it is read for every frame.
#[derive(Debug, Clone, Copy)]
struct Wire {
    peer: u32,
    peer_port: Port,
    captured: bool,
    timed: bool,
    /// `link * 2`, plus 1 for the direction from `b` to `a`.
    dir: u32,
    /// Frames shorter than this take the fast path, straight to the peer: one past the
    /// longest frame the link carries; 0 (none) when the link is captured or takes time.
    fast_below: u32,
}

impl Wire {
    fn link(self) -> LinkId {
        (self.dir / 2) as LinkId
    }

    /// Set [`Wire::fast_below`] for a link with parameters `spec`.
    fn set_fast_below(&mut self, spec: &LinkSpec) {
        self.fast_below = if self.captured || self.timed {
            0
        } else {
            let limit = (spec.mtu as usize).saturating_add(ETH_HEADER_LEN + 1);
            u32::try_from(limit).unwrap_or(u32::MAX)
        };
    }
}

/// One direction of a link: its parameters, when its sender is next free, what it carried and
/// the frames crossing it.
#[derive(Debug)]
struct Direction {
    spec: LinkSpec,
    /// `spec.delay` in nanoseconds, and the longest frame it carries (its MTU + 14): read
    /// for every frame.
    delay_ns: u64,
    frame_limit: usize,
    /// The serialization time of the last frame length sent, in nanoseconds: a link's frames
    /// mostly have one length (full segments one way, ACKs the other), and it is a division.
    last_len: usize,
    last_serialization_ns: u64,
    busy_until: Instant,
    counters: LinkCounters,
    /// Where its frames arrive: the node and port at the far end, and whether the link is
    /// plugged in there (that port's wire is this link's), kept as the wiring changes.
    to: (u32, Port),
    plugged: bool,
    /// The frames crossing it, in (arrival, sequence) order. Only the first is on the timeline:
    /// a link's frames arrive in the order they were sent, so the timeline holds one entry a
    /// busy link rather than one a frame.
    crossing: VecDeque<Crossing>,
    /// When the last frame sent onto it arrives (while `crossing` holds any).
    last_at: Instant,
}

/// A frame on a link that takes time: when it arrives, and its place on the timeline.
#[derive(Debug)]
struct Crossing {
    at: Instant,
    seq: u64,
    frame: Frame,
}

/// Something on the timeline.
#[derive(Debug, Clone, Copy)]
enum What {
    /// A node asked to be polled.
    Timer(u32),
    /// The first frame crossing link direction `dir` arrives.
    Deliver(u32),
    /// A control action comes due; the caller of the run applies it.
    Control(u64),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: Instant,
    seq: u64,
    what: What,
}

impl Event {
    /// (time, sequence) as one number: compared with two instructions rather than two
    /// comparisons and a select.
    #[inline]
    fn key(&self) -> u128 {
        (u128::from(self.at.as_nanos()) << 64) | u128::from(self.seq)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
    // The heap compares with these: each one comparison of the keys.
    #[inline]
    fn lt(&self, other: &Self) -> bool {
        other.key() < self.key()
    }
    #[inline]
    fn le(&self, other: &Self) -> bool {
        other.key() <= self.key()
    }
    #[inline]
    fn gt(&self, other: &Self) -> bool {
        other.key() > self.key()
    }
    #[inline]
    fn ge(&self, other: &Self) -> bool {
        other.key() >= self.key()
    }
}
impl Ord for Event {
    /// Reversed, so that the max-heap gives the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.key().cmp(&self.key())
    }
}

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The deadline was reached; the clock reads it.
    Deadline,
    /// The condition of [`Sim::run_while`] held.
    Done,
    /// The interrupt flag was raised.
    Interrupted,
    /// A control action scheduled with [`Sim::schedule_control`] came due; the clock reads its
    /// instant. Apply it, then run on.
    Control { at: Instant, token: u64 },
    /// A node told the control plane something ([`crate::node::Outbox::notify`]): look at what
    /// changed, then run on. The instant's frames are all carried first.
    Notice,
}

/// A run's deadline, and the condition that ends it early.
type Run<'a> = (Instant, &'a mut dyn FnMut(&Sim) -> bool);

/// A node that asked to be polled again without time passing is polled this much later, so a
/// confused node cannot stall the clock.
const MIN_TIMER_STEP: Duration = Duration::from_micros(1);
/// Frames handled between two reads of the interrupt flag.
const INTERRUPT_CHECK_EVERY: u32 = 256;

/// The simulation.
pub struct Sim {
    nodes: Vec<Box<dyn Node>>,
    links: Vec<Link>,
    /// Per link direction (`link * 2 + side`).
    dirs: Vec<Direction>,
    /// Per node, per port: where its frames go.
    wiring: Vec<Vec<Option<Wire>>>,
    captures: Vec<Option<Box<dyn FrameSink>>>,
    now: Instant,
    /// The timeline: timers, frames on links that take time, control actions.
    events: BinaryHeap<Event>,
    /// Frames sent at the current instant are carried in waves: the outbox collects what the
    /// nodes send while the previous wave is handled, then becomes the next wave. Frames on
    /// zero-time links are handled within the wave; the others go on the timeline. `wave` is
    /// the reused buffer; `rest` holds what is left of a wave a run returned in the middle of.
    wave: Vec<Sent>,
    rest: Vec<Sent>,
    /// Whether the timeline's earliest event is due now: read for every frame, so kept rather
    /// than looked up, by whatever changes the timeline or the clock.
    due: bool,
    /// The sequence number of the last thing put on the timeline.
    seq: u64,
    /// Per node: the earliest timer entry queued for it, if any.
    scheduled: Vec<Option<Instant>>,
    /// Nodes called since their timer was last read, and a flag per node. Timers matter only
    /// when time advances, so they are read once a node after a burst of frames, not per frame.
    /// The flag of a node without timers ([`Node::has_timers`]) is always set.
    dirty: Vec<NodeId>,
    is_dirty: Vec<bool>,
    /// Handed to every node call; collects the next wave.
    outbox: Outbox,
    /// Set from outside (a Ctrl-C handler) to stop the run where it is.
    interrupt: Option<Arc<AtomicBool>>,
    until_interrupt_check: u32,
    pub counters: SimCounters,
}

impl Default for Sim {
    fn default() -> Self {
        Sim {
            nodes: Vec::new(),
            links: Vec::new(),
            dirs: Vec::new(),
            wiring: Vec::new(),
            captures: Vec::new(),
            now: Instant::ZERO,
            events: BinaryHeap::new(),
            wave: Vec::new(),
            rest: Vec::new(),
            due: false,
            seq: 0,
            scheduled: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            outbox: Outbox::new(),
            interrupt: None,
            until_interrupt_check: INTERRUPT_CHECK_EVERY,
            counters: SimCounters::default(),
        }
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulation of a lab plan: its nodes and its links, at time zero.
    pub fn from_plan(plan: LabPlan) -> Sim {
        let mut sim = Sim::new();
        for node in plan.nodes {
            sim.add_node(node);
        }
        for l in plan.links {
            sim.connect_with(&l.name, l.a, l.b, l.spec);
        }
        sim
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Stop running as soon as `flag` is set, even within one instant (zero-time links can carry
    /// a whole exchange at one instant): frames in flight stay where they are.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// When the timeline's next event (a timer, a frame on a timed link, a control action) is
    /// due, if any: a live runtime waits until then.
    pub fn next_event_at(&self) -> Option<Instant> {
        self.events.peek().map(|e| e.at)
    }

    /// Whether the interrupt flag is set.
    pub fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Add a node.
    ///
    /// # Panics
    /// Past 2^31 nodes.
    pub fn add_node(&mut self, node: Box<dyn Node>) -> NodeId {
        assert!(self.nodes.len() < Sent::ARRIVING as usize, "too many nodes");
        // A node without timers stays marked as called: it never joins `dirty`.
        self.is_dirty.push(!node.has_timers());
        self.nodes.push(node);
        self.wiring.push(Vec::new());
        self.scheduled.push(None);
        let id = self.nodes.len() - 1;
        self.read_timer(id);
        id
    }

    /// Link two node ports with a link that takes no time. A port already linked is re-linked
    /// (its old link goes dead).
    pub fn connect(&mut self, name: &str, a: (NodeId, Port), b: (NodeId, Port)) -> LinkId {
        self.connect_with(name, a, b, LinkSpec::INSTANT)
    }

    /// Link two node ports; each direction has the parameters `spec`.
    pub fn connect_with(
        &mut self,
        name: &str,
        a: (NodeId, Port),
        b: (NodeId, Port),
        spec: LinkSpec,
    ) -> LinkId {
        let id = self.links.len();
        self.links.push(Link {
            name: name.to_string(),
            a,
            b,
            spec,
        });
        for (node, port) in [b, a] {
            self.dirs.push(Direction {
                spec,
                delay_ns: spec.delay.as_nanos() as u64,
                frame_limit: (spec.mtu as usize).saturating_add(ETH_HEADER_LEN),
                last_len: 0,
                last_serialization_ns: spec.rate.serialization_nanos(0),
                busy_until: Instant::ZERO,
                counters: LinkCounters::default(),
                to: (node as u32, port),
                plugged: false,
                crossing: VecDeque::new(),
                last_at: Instant::ZERO,
            });
        }
        self.captures.push(None);
        self.wire(id);
        id
    }

    /// Plug a link's two ports in, with its current parameters and capture state.
    fn wire(&mut self, link: LinkId) {
        let Link { a, b, spec, .. } = self.links[link].clone();
        let captured = self.captures[link].is_some();
        for (side, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            let mut w = Wire {
                peer: to.0 as u32,
                peer_port: to.1,
                captured,
                timed: !spec.is_instant(),
                dir: (link * 2 + side) as u32,
                fast_below: 0,
            };
            w.set_fast_below(&spec);
            self.wire_port(from, Some(w));
        }
    }

    /// Unlink a link's two ports (a VM leaving a host, an ENI detached). Frames still crossing
    /// it are lost.
    pub fn disconnect(&mut self, link: LinkId) {
        let Link { a, b, .. } = self.links[link].clone();
        for end in [a, b] {
            if matches!(self.peer(end), Some(w) if w.link() == link) {
                self.wire_port(end, None);
            }
        }
    }

    /// Plug a link that was unplugged back in.
    pub fn reconnect(&mut self, link: LinkId) {
        self.wire(link);
    }

    /// Whether both ends of `link` are plugged in.
    pub fn is_connected(&self, link: LinkId) -> bool {
        let Link { a, b, .. } = &self.links[link];
        [a, b]
            .iter()
            .all(|end| matches!(self.peer(**end), Some(w) if w.link() == link))
    }

    /// What each direction of `link` carried: `[a → b, b → a]`.
    pub fn link_counters(&self, link: LinkId) -> [&LinkCounters; 2] {
        [
            &self.dirs[link * 2].counters,
            &self.dirs[link * 2 + 1].counters,
        ]
    }

    fn wire_port(&mut self, (node, port): (NodeId, Port), to: Option<Wire>) {
        let ports = &mut self.wiring[node];
        if ports.len() <= port as usize {
            ports.resize(port as usize + 1, None);
        }
        let old = std::mem::replace(&mut ports[port as usize], to);
        // Only the directions of the link unplugged and of the one plugged in arrive here
        // (or anywhere whose wire changed).
        for link in [old, to].into_iter().flatten().map(Wire::link) {
            for dir in [link * 2, link * 2 + 1] {
                let (node, port) = self.dirs[dir].to;
                let plugged = self.peer((node as NodeId, port)).map(Wire::link) == Some(link);
                self.dirs[dir].plugged = plugged;
            }
        }
    }

    fn peer(&self, (node, port): (NodeId, Port)) -> Option<Wire> {
        self.wiring[node].get(port as usize).copied().flatten()
    }

    /// Mark both ends of `link` as captured or not.
    fn set_captured(&mut self, link: LinkId, captured: bool) {
        let Link { a, b, spec, .. } = self.links[link].clone();
        for (node, port) in [a, b] {
            if let Some(Some(w)) = self.wiring[node].get_mut(port as usize) {
                if w.link() == link {
                    w.captured = captured;
                    w.set_fast_below(&spec);
                }
            }
        }
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    pub fn link_by_name(&self, name: &str) -> Option<LinkId> {
        self.links.iter().position(|l| l.name == name)
    }

    /// Capture every frame sent onto `link`, either way.
    pub fn capture(&mut self, link: LinkId, sink: Box<dyn FrameSink>) {
        self.captures[link] = Some(sink);
        self.set_captured(link, true);
    }

    /// Stop capturing; returns the sink (to flush or inspect it).
    pub fn take_capture(&mut self, link: LinkId) -> Option<Box<dyn FrameSink>> {
        self.set_captured(link, false);
        self.captures[link].take()
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &dyn Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (i, n.as_ref()))
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    pub fn node(&self, id: NodeId) -> &dyn Node {
        self.nodes[id].as_ref()
    }

    /// A node as its concrete type.
    pub fn get<T: Node>(&self, id: NodeId) -> Option<&T> {
        let n: &dyn Any = self.nodes.get(id)?.as_ref();
        n.downcast_ref()
    }

    /// A node as its concrete type, to change its state. Its timer is re-read on the next run,
    /// as after a frame: a node without timers puts nothing on the timeline.
    pub fn get_mut<T: Node>(&mut self, id: NodeId) -> Option<&mut T> {
        if id < self.nodes.len() {
            self.touch(id);
        }
        let n: &mut dyn Any = self.nodes.get_mut(id)?.as_mut();
        n.downcast_mut()
    }

    /// Note that `node` was called or changed: its timer is read again before time advances.
    #[inline]
    fn touch(&mut self, node: NodeId) {
        if !self.is_dirty[node] {
            self.is_dirty[node] = true;
            self.dirty.push(node);
        }
    }

    /// Program a change into a node now (see [`Node::configure`]); what the node sends because
    /// of it goes out with the frames of the current instant.
    pub fn configure(&mut self, node: NodeId, change: &Change) {
        self.outbox.set_from(node);
        self.nodes[node].configure(self.now, change, &mut self.outbox);
        self.touch(node);
    }

    /// Hand a frame to a node's port now, as if it arrived on a link: behind the frames
    /// already sent at this instant.
    pub fn inject(&mut self, node: NodeId, port: Port, frame: Frame) {
        self.outbox.arrive(node, port, frame);
    }

    /// Send a frame out of a node's port now, as if the node had sent it (a live runtime's
    /// kernel endpoint, whose frames come from a TAP): it takes the node's link, with its
    /// capture, delay and rate.
    pub fn emit(&mut self, node: NodeId, port: Port, frame: Frame) {
        self.outbox.set_from(node);
        self.outbox.send(port, frame);
    }

    /// Put a control action on the timeline at `at` (not before now): a run that reaches it
    /// returns [`Stop::Control`] with `token`.
    pub fn schedule_control(&mut self, at: Instant, token: u64) {
        self.push_event(at.max(self.now), What::Control(token));
    }

    fn push_event(&mut self, at: Instant, what: What) {
        self.seq += 1;
        self.events.push(Event {
            at,
            seq: self.seq,
            what,
        });
        self.read_due();
    }

    /// Note whether the timeline's earliest event is due now.
    #[inline]
    fn read_due(&mut self) {
        self.due = self.events.peek().is_some_and(|e| e.at <= self.now);
    }

    /// Handle everything due at the current instant: what the timeline holds for now, in
    /// (time, sequence) order, and the frames that causes on zero-time links, wave after wave.
    /// Events due now were put on the timeline before the frames of the current wave were sent,
    /// so they go first. Returns early when interrupted, when a control action comes due or when a
    /// node told the control plane something (once for what it told).
    pub fn settle(&mut self) -> Option<Stop> {
        self.read_due();
        self.drive(None)
    }

    /// Settle; then, for a run (`run`: its deadline and condition), move the clock to the next
    /// event and settle again, until the run stops. One function for both, so that settling is
    /// inlined once, and a run that moves the clock for nearly every frame (links that take
    /// time) does not call out to settle each time.
    #[inline(never)]
    fn drive(&mut self, mut run: Option<Run<'_>>) -> Option<Stop> {
        loop {
            if let Some(stop) = self.settle_due() {
                return Some(stop);
            }
            let (deadline, done) = run.as_mut()?;
            if done(self) {
                return Some(Stop::Done);
            }
            if self.interrupted() {
                return Some(Stop::Interrupted);
            }
            match self.events.peek() {
                Some(e) if e.at <= *deadline => {
                    self.now = self.now.max(e.at);
                    self.due = true;
                }
                _ => {
                    self.now = self.now.max(*deadline);
                    return Some(if done(self) {
                        Stop::Done
                    } else {
                        Stop::Deadline
                    });
                }
            }
        }
    }

    /// [`Sim::settle`] with the due flag already read (the run loop sets it as it moves the
    /// clock to the earliest event). Inlined into [`Sim::drive`], its one caller.
    #[inline(always)]
    fn settle_due(&mut self) -> Option<Stop> {
        loop {
            let stop = self.settle_once();
            while let Some(node) = self.dirty.pop() {
                self.is_dirty[node] = false;
                self.read_timer(node);
            }
            if stop.is_some() {
                return stop;
            }
            if self.outbox.has_notices() {
                self.outbox.take_notices();
                return Some(Stop::Notice);
            }
            if self.due || !self.outbox.is_empty() || !self.rest.is_empty() {
                continue;
            }
            return None;
        }
    }

    fn settle_once(&mut self) -> Option<Stop> {
        loop {
            while self.due {
                if let Some(stop) = self.pop_due() {
                    return Some(stop);
                }
            }
            let mut wave = std::mem::take(&mut self.wave);
            if self.rest.is_empty() {
                self.outbox.take_sent(&mut wave);
            } else {
                std::mem::swap(&mut wave, &mut self.rest);
            }
            if wave.is_empty() {
                self.wave = wave;
                return None;
            }
            // The flag is read once a wave, and once every so many frames of a long run of
            // waves.
            let n = wave.len() as u32;
            if n >= self.until_interrupt_check {
                self.until_interrupt_check = INTERRUPT_CHECK_EVERY;
                if self.interrupted() {
                    self.rest = wave;
                    return Some(Stop::Interrupted);
                }
            } else {
                self.until_interrupt_check -= n;
            }
            // Handling a frame puts nothing on the timeline for the current instant (a link
            // that takes time delivers later; timers are read after the wave): no event comes
            // due in the middle of a wave.
            for s in wave.drain(..) {
                self.carry(s);
            }
            debug_assert!(!self.due, "an event came due in the middle of a wave");
            self.wave = wave;
            // Nothing due and no next wave (frames onto links that take time): settled.
            if !self.due && self.outbox.is_empty() {
                return None;
            }
        }
    }

    /// Take the timeline's earliest event, which is due now, and act on it.
    fn pop_due(&mut self) -> Option<Stop> {
        let mut top = self.events.peek_mut().expect("a due event");
        let e = *top;
        match e.what {
            What::Deliver(dir) => {
                let d = &mut self.dirs[dir as usize];
                let frame = d.crossing.pop_front().expect("a frame crossing").frame;
                // The link's next frame takes its place on the timeline.
                match d.crossing.front() {
                    Some(next) => {
                        top.at = next.at;
                        top.seq = next.seq;
                        drop(top);
                    }
                    None => {
                        PeekMut::pop(top);
                    }
                }
                let (node, port) = (d.to.0 as NodeId, d.to.1);
                if d.plugged {
                    self.read_due();
                    self.handle(node, port, frame);
                } else {
                    d.counters.dropped_in_flight += 1;
                    self.counters.dropped_unlinked += 1;
                    self.read_due();
                }
            }
            What::Timer(id) => {
                PeekMut::pop(top);
                self.read_due();
                self.fire(e.at, id as NodeId);
            }
            What::Control(token) => {
                PeekMut::pop(top);
                self.read_due();
                return Some(Stop::Control { at: e.at, token });
            }
        }
        None
    }

    /// Put a frame a node sent onto its link: across a zero-time link it arrives at once; a
    /// link that takes time puts it on the timeline.
    #[inline]
    fn carry(&mut self, s: Sent) {
        if s.from & Sent::ARRIVING != 0 {
            let node = (s.from & !Sent::ARRIVING) as NodeId;
            return self.handle(node, s.port, s.frame);
        }
        let w = match self
            .wiring
            .get(s.from as usize)
            .and_then(|ports| ports.get(s.port as usize))
        {
            Some(Some(w)) => *w,
            _ => {
                self.counters.dropped_unlinked += 1;
                return;
            }
        };
        // One test for everything off the fast path: a link that takes time, a capture, a
        // frame too long for its link.
        if s.frame.len() >= w.fast_below as usize {
            return self.carry_slow(s, w);
        }
        self.counters.delivered += 1;
        self.handle(w.peer as NodeId, w.peer_port, s.frame);
    }

    /// [`Sim::carry`] for a frame that may be too long, a link that takes time or a captured
    /// link.
    #[inline]
    fn carry_slow(&mut self, s: Sent, w: Wire) {
        let d = &mut self.dirs[w.dir as usize];
        if s.frame.len() > d.frame_limit {
            let limit = d.frame_limit;
            return self.carry_oversized(s, w, limit);
        }
        if w.timed {
            let changed = send_timed(
                d,
                &mut self.captures,
                &mut self.counters,
                (&mut self.events, &mut self.seq),
                self.now,
                w,
                s.frame,
            );
            if changed {
                self.read_due();
            }
            return;
        }
        if w.captured {
            if let Some(sink) = self.captures[w.link()].as_mut() {
                sink.write(self.now, &s.frame);
            }
        }
        self.counters.delivered += 1;
        self.handle(w.peer as NodeId, w.peer_port, s.frame);
    }

    /// A frame longer than its link's MTU: a GSO super-frame crosses whole if each of its
    /// segments would fit, as long as the link takes no time; a link with a queue and a rate
    /// sees the segments. Anything else is dropped as too big. Out of line: the fast path of
    /// `carry` stays small.
    #[cold]
    #[inline(never)]
    fn carry_oversized(&mut self, s: Sent, w: Wire, limit: usize) {
        let segment = s
            .frame
            .gso()
            .and_then(|g| g.segment_ip_len(&s.frame))
            .map(|l| l + ETH_HEADER_LEN);
        let fits = segment.is_some_and(|seg| seg <= limit);
        if fits && !w.timed {
            return self.carry_whole(s, w);
        }
        // Cut where it fits; a super-frame whose headers contradict its metadata cuts into
        // nothing, and is dropped as too big with the rest.
        let segments = match fits {
            true => crate::wire::gso::segment(&s.frame),
            false => Vec::new(),
        };
        if segments.is_empty() {
            self.dirs[w.dir as usize].counters.tx_dropped_too_big += 1;
            self.counters.tx_dropped_too_big += 1;
        }
        // The segments leave the same port in the next wave of this instant (not by calling
        // `carry` again: a recursive `carry` would not be inlined into the fast path).
        self.outbox.set_from(s.from as usize);
        for frame in segments {
            self.outbox.send(s.port, frame);
        }
    }

    /// A super-frame on a link that takes no time: it arrives at once, whole.
    fn carry_whole(&mut self, s: Sent, w: Wire) {
        if w.captured {
            if let Some(sink) = self.captures[w.link()].as_mut() {
                sink.write(self.now, &s.frame);
            }
        }
        self.counters.delivered += 1;
        self.handle(w.peer as NodeId, w.peer_port, s.frame);
    }

    /// A frame arrives at `node`:`port` now.
    #[inline]
    fn handle(&mut self, node: NodeId, port: Port, frame: Frame) {
        self.outbox.set_from(node);
        self.nodes[node].handle(self.now, port, frame, &mut self.outbox);
        self.counters.node_calls += 1;
        self.touch(node);
    }

    /// Run until `deadline`: handle frames, fire timers in time order. Returns
    /// [`Stop::Deadline`] with the clock at `deadline`, or earlier when interrupted, when a
    /// control action comes due or when a node tells the control plane something.
    pub fn run_until(&mut self, deadline: Instant) -> Stop {
        self.run_while(deadline, |_| false)
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> Stop {
        self.run_until(self.now + d)
    }

    /// Run until `done` holds (checked whenever the clock is about to advance), until
    /// `deadline`, until interrupted, until a control action comes due or until a node tells
    /// the control plane something.
    pub fn run_while(&mut self, deadline: Instant, mut done: impl FnMut(&Sim) -> bool) -> Stop {
        self.drive(Some((deadline, &mut done)))
            .expect("a run returns only when it stops")
    }

    /// A timer entry for `id` queued for `t` came due: poll the node if it is still due, or
    /// queue its real time. Out of line: in a timed lab, frames come due far more often.
    #[inline(never)]
    fn fire(&mut self, t: Instant, id: NodeId) {
        if self.scheduled[id] == Some(t) {
            self.scheduled[id] = None;
        }
        match self.nodes[id].poll_at() {
            Some(at) if at <= self.now => {
                self.outbox.set_from(id);
                self.nodes[id].poll(self.now, &mut self.outbox);
                self.counters.node_calls += 1;
                self.read_timer(id);
                if let Some(again) = self.nodes[id].poll_at() {
                    if again <= self.now {
                        self.queue_timer(id, self.now + MIN_TIMER_STEP);
                    }
                }
            }
            Some(at) => self.queue_timer(id, at),
            None => {}
        }
    }

    /// Note the node's next timer.
    fn read_timer(&mut self, id: NodeId) {
        if let Some(at) = self.nodes[id].poll_at() {
            self.queue_timer(id, at.max(self.now));
        }
    }

    /// Queue a timer entry unless an earlier one is already queued for the node.
    fn queue_timer(&mut self, id: NodeId, at: Instant) {
        if self.scheduled[id].is_none_or(|s| at < s) {
            self.queue_timer_entry(at, id);
        }
    }

    fn queue_timer_entry(&mut self, at: Instant, id: NodeId) {
        self.scheduled[id] = Some(at);
        self.push_event(at, What::Timer(id as u32));
    }
}

/// Send a frame onto a link direction that takes time: behind the frames still waiting, if
/// the queue has room; it arrives once its last bit has crossed. Returns whether the timeline
/// changed (the direction had no frame crossing).
#[inline]
fn send_timed(
    d: &mut Direction,
    captures: &mut [Option<Box<dyn FrameSink>>],
    counters: &mut SimCounters,
    (events, seq): (&mut BinaryHeap<Event>, &mut u64),
    now: Instant,
    w: Wire,
    frame: Frame,
) -> bool {
    let len = frame.len();
    // In nanoseconds, as `Instant` and `Duration` would compute it.
    let start = d.busy_until.as_nanos().max(now.as_nanos());
    // Bytes ahead of this frame: what the sender still has to send at its rate.
    let waiting = d.spec.rate.bytes_in_nanos(start - now.as_nanos());
    if waiting.saturating_add(len as u64) > d.spec.queue.0 {
        d.counters.tx_dropped_queue_full += 1;
        counters.tx_dropped_queue_full += 1;
        return false;
    }
    if len != d.last_len {
        d.last_len = len;
        d.last_serialization_ns = d.spec.rate.serialization_nanos(len);
    }
    let busy_until = start.saturating_add(d.last_serialization_ns);
    d.busy_until = Instant::from_nanos(busy_until);
    d.counters.tx_frames += 1;
    d.counters.tx_bytes += len as u64;
    if w.captured {
        if let Some(sink) = captures[w.link()].as_mut() {
            sink.write(now, &frame);
        }
    }
    counters.delivered += 1;
    *seq += 1;
    let c = Crossing {
        at: Instant::from_nanos(busy_until.saturating_add(d.delay_ns)),
        seq: *seq,
        frame,
    };
    if d.crossing.is_empty() {
        events.push(Event {
            at: c.at,
            seq: c.seq,
            what: What::Deliver(w.dir),
        });
        d.last_at = c.at;
        d.crossing.push_back(c);
        true
    } else if d.last_at <= c.at {
        d.last_at = c.at;
        d.crossing.push_back(c);
        false
    } else {
        overtake(d, events, w.dir, c);
        true
    }
}

/// A frame that arrives before the last frame crossing its link (which a link whose parameters
/// never change does not see): it takes its place in the order, and on the timeline if it
/// arrives first.
#[cold]
#[inline(never)]
fn overtake(d: &mut Direction, events: &mut BinaryHeap<Event>, dir: u32, c: Crossing) {
    let i = d
        .crossing
        .partition_point(|f| (f.at, f.seq) < (c.at, c.seq));
    if i == 0 {
        let mut all = std::mem::take(events).into_vec();
        for e in &mut all {
            if matches!(e.what, What::Deliver(x) if x == dir) {
                (e.at, e.seq) = (c.at, c.seq);
            }
        }
        *events = BinaryHeap::from(all);
    }
    d.crossing.insert(i, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MemorySink;
    use crate::node::Counters;
    use vmcnet_topo::{ByteSize, Rate};

    /// Echoes every frame back, and sends "tick" every 10 ms until 50 ms.
    struct Echo {
        name: String,
        next_tick: Option<Instant>,
        seen: Vec<(Instant, Frame)>,
    }

    impl Node for Echo {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn handle(&mut self, now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
            self.seen.push((now, frame.clone()));
            if frame.as_ref() != b"echo" {
                out.send(port, Frame::copy_from_slice(b"echo"));
            }
        }
        fn poll(&mut self, now: Instant, out: &mut Outbox) {
            out.send(0, Frame::copy_from_slice(b"tick"));
            let next = now + Duration::from_millis(10);
            self.next_tick = (next <= Instant::from_millis(50)).then_some(next);
        }
        fn poll_at(&self) -> Option<Instant> {
            self.next_tick
        }
        fn counters(&self) -> Counters {
            vec![("seen", self.seen.len() as u64)]
        }
    }

    fn echo(name: &str, tick: Option<Instant>) -> Box<Echo> {
        Box::new(Echo {
            name: name.into(),
            next_tick: tick,
            seen: Vec::new(),
        })
    }

    #[test]
    fn timers_fire_in_order_and_frames_cross_links() {
        let mut sim = Sim::new();
        let a = sim.add_node(echo("a", Some(Instant::from_millis(10))));
        let b = sim.add_node(echo("b", None));
        let l = sim.connect("a--b", (a, 0), (b, 0));
        sim.capture(l, Box::new(MemorySink::default()));
        sim.run_until(Instant::from_millis(100));
        assert_eq!(sim.now(), Instant::from_millis(100));
        let bn = sim.get::<Echo>(b).unwrap();
        let times: Vec<u64> = bn.seen.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, vec![10, 20, 30, 40, 50]);
        assert_eq!(
            sim.get::<Echo>(a).unwrap().seen.len(),
            5,
            "echoes came back"
        );
        let cap = sim.take_capture(l).unwrap();
        let mem = (cap as Box<dyn Any>).downcast::<MemorySink>().unwrap();
        assert_eq!(mem.frames.len(), 10);
        assert_eq!(sim.node(a).counters(), vec![("seen", 5)]);
    }

    #[test]
    fn unlinked_ports_drop_and_disconnect_cuts() {
        let mut sim = Sim::new();
        let a = sim.add_node(echo("a", Some(Instant::from_millis(10))));
        let b = sim.add_node(echo("b", None));
        let l = sim.connect("a--b", (a, 0), (b, 0));
        sim.run_until(Instant::from_millis(15));
        sim.disconnect(l);
        sim.run_until(Instant::from_millis(100));
        assert_eq!(sim.get::<Echo>(b).unwrap().seen.len(), 1);
        assert_eq!(sim.counters.dropped_unlinked, 4);
        assert_eq!(sim.node_id("b"), Some(b));
    }

    /// Bounces every frame back at once, forever, and raises `flag` at the 1000th.
    struct Bouncer {
        seen: u64,
        flag: Arc<AtomicBool>,
    }

    impl Node for Bouncer {
        fn name(&self) -> &str {
            "bouncer"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn handle(&mut self, _now: Instant, port: Port, frame: Frame, out: &mut Outbox) {
            self.seen += 1;
            if self.seen == 1000 {
                self.flag.store(true, Ordering::Relaxed);
            }
            out.send(port, frame);
        }
        fn counters(&self) -> Counters {
            vec![("seen", self.seen)]
        }
    }

    #[test]
    fn an_endless_exchange_at_one_instant_stops_when_interrupted() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut sim = Sim::new();
        sim.set_interrupt(flag.clone());
        let bouncer = |flag: &Arc<AtomicBool>| {
            Box::new(Bouncer {
                seen: 0,
                flag: flag.clone(),
            })
        };
        let a = sim.add_node(bouncer(&flag));
        let b = sim.add_node(bouncer(&flag));
        sim.connect("a--b", (a, 0), (b, 0));
        sim.inject(a, 0, Frame::copy_from_slice(b"ball"));
        assert_eq!(
            sim.run_while(Instant::from_millis(10), |_| false),
            Stop::Interrupted
        );
        let seen = sim.get::<Bouncer>(a).unwrap().seen + sim.get::<Bouncer>(b).unwrap().seen;
        // Each bouncer raises the flag at its 1000th frame: a raises it at the 1999th in all.
        assert!(
            (1999..1999 + INTERRUPT_CHECK_EVERY as u64).contains(&seen),
            "stopped within one check interval of the flag: {seen}"
        );
        assert_eq!(sim.now(), Instant::ZERO);
    }

    /// Records what arrives and when; sends nothing.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<(Instant, Frame)>,
    }

    impl Node for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn handle(&mut self, now: Instant, _port: Port, frame: Frame, _out: &mut Outbox) {
            self.seen.push((now, frame));
        }
        fn counters(&self) -> Counters {
            vec![("seen", self.seen.len() as u64)]
        }
    }

    /// Sends the frames it is given out of port 1, all at once, when a frame arrives on port 0.
    struct Burst(Vec<Frame>);

    impl Node for Burst {
        fn name(&self) -> &str {
            "burst"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn handle(&mut self, _now: Instant, _port: Port, _frame: Frame, out: &mut Outbox) {
            for f in self.0.drain(..) {
                out.send(1, f);
            }
        }
        fn counters(&self) -> Counters {
            Vec::new()
        }
    }

    fn spec(delay_us: u64, rate: Rate, queue: u64) -> LinkSpec {
        LinkSpec {
            delay: Duration::from_micros(delay_us),
            rate,
            queue: ByteSize(queue),
            mtu: 9000,
        }
    }

    #[test]
    fn a_frame_larger_than_the_links_mtu_is_dropped_and_counted() {
        let link = LinkSpec {
            mtu: 1500,
            ..spec(10, Rate::gbit(1), 1 << 20)
        };
        // 1514 bytes (a 1500-byte packet) fit; 1515 do not.
        let mut sim = Sim::new();
        let frames = [1514, 1515, 60]
            .iter()
            .map(|n| Frame::copy_from_slice(&vec![1; *n]))
            .collect();
        let burst = sim.add_node(Box::new(Burst(frames)));
        let rec = sim.add_node(Box::new(Recorder::default()));
        let l = sim.connect_with("burst--rec", (burst, 1), (rec, 0), link);
        sim.inject(burst, 0, Frame::copy_from_slice(b"go"));
        sim.run_until(Instant::from_millis(1));
        let lens: Vec<usize> = sim
            .get::<Recorder>(rec)
            .unwrap()
            .seen
            .iter()
            .map(|f| f.1.len())
            .collect();
        assert_eq!(lens, vec![1514, 60]);
        assert_eq!(sim.link_counters(l)[0].tx_dropped_too_big, 1);
    }

    /// A burst of `n` frames of `len` bytes sent at t = 1 ms onto a link with `link`.
    fn burst_over(n: usize, len: usize, link: LinkSpec) -> (Sim, NodeId, LinkId) {
        let mut sim = Sim::new();
        let frames = (0..n)
            .map(|i| Frame::copy_from_slice(&vec![i as u8; len]))
            .collect();
        let burst = sim.add_node(Box::new(Burst(frames)));
        let rec = sim.add_node(Box::new(Recorder::default()));
        let l = sim.connect_with("burst--rec", (burst, 1), (rec, 0), link);
        sim.run_until(Instant::from_millis(1));
        sim.inject(burst, 0, Frame::copy_from_slice(b"go"));
        (sim, rec, l)
    }

    #[test]
    fn a_frame_arrives_after_its_serialization_and_the_delay_and_waits_for_those_before_it() {
        let link = spec(30, Rate::gbit(1), 1 << 20);
        let (len, n) = (1000, 3);
        let (mut sim, rec, l) = burst_over(n, len, link);
        sim.capture(l, Box::new(MemorySink::default()));
        sim.run_until(Instant::from_millis(2));
        let sent = Instant::from_millis(1);
        let ser = link.rate.serialization(len);
        let got: Vec<Instant> = sim
            .get::<Recorder>(rec)
            .unwrap()
            .seen
            .iter()
            .map(|f| f.0)
            .collect();
        let want: Vec<Instant> = (1..=n as u32)
            .map(|k| sent + ser * k + link.delay)
            .collect();
        assert_eq!(got, want);
        let [ab, ba] = sim.link_counters(l);
        assert_eq!((ab.tx_frames, ab.tx_bytes), (n as u64, (n * len) as u64));
        assert_eq!(ba.tx_frames, 0);
        // The capture stamps each frame as it is sent onto the link.
        let cap = sim.take_capture(l).unwrap();
        let mem = (cap as Box<dyn Any>).downcast::<MemorySink>().unwrap();
        assert!(mem.frames.iter().all(|(t, _)| *t == sent));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (len, n, queue) = (1000, 10, 4500);
        let (mut sim, rec, l) = burst_over(n, len, spec(10, Rate::gbit(1), queue));
        sim.run_until(Instant::from_millis(2));
        let fits = queue as usize / len;
        let seen = &sim.get::<Recorder>(rec).unwrap().seen;
        assert_eq!(seen.len(), fits);
        // The first frames got through, in order; the later ones were dropped.
        let firsts: Vec<u8> = seen.iter().map(|(_, f)| f[0]).collect();
        assert_eq!(firsts, (0..fits as u8).collect::<Vec<_>>());
        let [ab, _] = sim.link_counters(l);
        assert_eq!(ab.tx_dropped_queue_full, (n - fits) as u64);
        assert_eq!(sim.counters.tx_dropped_queue_full, (n - fits) as u64);
    }

    #[test]
    fn a_frame_in_flight_on_an_unplugged_link_is_lost() {
        let (mut sim, rec, l) = burst_over(1, 100, spec(100, Rate::UNLIMITED, 1 << 20));
        sim.run_until(Instant::from_millis(1) + Duration::from_micros(50));
        sim.disconnect(l);
        sim.run_until(Instant::from_millis(2));
        assert!(sim.get::<Recorder>(rec).unwrap().seen.is_empty());
        assert_eq!(sim.link_counters(l)[0].dropped_in_flight, 1);
        sim.reconnect(l);
        assert!(sim.is_connected(l));
    }

    #[test]
    fn a_frame_that_overtakes_those_crossing_before_it_arrives_first() {
        // No action changes a link's parameters while frames cross it; were one to cut its
        // delay, a frame sent after could arrive before.
        let mut sim = Sim::new();
        let a = sim.add_node(Box::new(Recorder::default()));
        let b = sim.add_node(Box::new(Recorder::default()));
        let l = sim.connect_with("a--b", (a, 0), (b, 0), spec(100, Rate::UNLIMITED, 1 << 20));
        sim.emit(a, 0, Frame::copy_from_slice(b"slow"));
        sim.run_until(Instant::from_micros(10));
        sim.dirs[l * 2].delay_ns = 10_000;
        for f in [b"fast", b"next"] {
            sim.emit(a, 0, Frame::copy_from_slice(f));
        }
        sim.run_until(Instant::from_millis(1));
        let seen: Vec<(u64, &[u8])> = sim
            .get::<Recorder>(b)
            .unwrap()
            .seen
            .iter()
            .map(|(t, f)| (t.as_micros(), f.as_ref()))
            .collect();
        let want: Vec<(u64, &[u8])> = vec![(20, b"fast"), (20, b"next"), (100, b"slow")];
        assert_eq!(seen, want);
    }

    #[test]
    fn a_frame_arrives_if_its_link_is_plugged_in_when_it_does() {
        let (mut sim, rec, l) = burst_over(1, 100, spec(100, Rate::UNLIMITED, 1 << 20));
        sim.run_until(Instant::from_millis(1) + Duration::from_micros(50));
        sim.disconnect(l);
        sim.reconnect(l);
        sim.run_until(Instant::from_millis(2));
        assert_eq!(sim.get::<Recorder>(rec).unwrap().seen.len(), 1);
        // Its far end's port taken by another link: the frames crossing are lost.
        let (mut sim, rec, l) = burst_over(1, 100, spec(100, Rate::UNLIMITED, 1 << 20));
        sim.run_until(Instant::from_millis(1) + Duration::from_micros(50));
        let other = sim.add_node(Box::new(Recorder::default()));
        sim.connect("other--rec", (other, 0), (rec, 0));
        sim.run_until(Instant::from_millis(2));
        assert!(sim.get::<Recorder>(rec).unwrap().seen.is_empty());
        assert_eq!(sim.link_counters(l)[0].dropped_in_flight, 1);
        assert!(!sim.is_connected(l));
    }

    #[test]
    fn control_actions_come_due_in_time_and_insertion_order() {
        let mut sim = Sim::new();
        let a = sim.add_node(echo("a", Some(Instant::from_millis(10))));
        let b = sim.add_node(echo("b", None));
        sim.connect_with("a--b", (a, 0), (b, 0), spec(1000, Rate::UNLIMITED, 1 << 20));
        sim.schedule_control(Instant::from_millis(11), 7);
        sim.schedule_control(Instant::from_millis(11), 8);
        sim.schedule_control(Instant::from_millis(5), 6);
        let mut got = Vec::new();
        loop {
            match sim.run_until(Instant::from_millis(100)) {
                Stop::Control { at, token } => {
                    assert_eq!(sim.now(), at);
                    // The tick sent at 10 ms crosses the 1 ms link and is due at 11 ms too, but
                    // it was put on the timeline after the actions: it comes after them.
                    let at_b = sim.get::<Echo>(b).unwrap().seen.len();
                    got.push((at.as_millis(), token, at_b));
                }
                Stop::Deadline => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, vec![(5, 6, 0), (11, 7, 0), (11, 8, 0)]);
        let times: Vec<u64> = sim
            .get::<Echo>(b)
            .unwrap()
            .seen
            .iter()
            .map(|(t, _)| t.as_millis())
            .collect();
        assert_eq!(times, vec![11, 21, 31, 41, 51]);
    }
}
