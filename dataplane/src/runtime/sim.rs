//! The simulation runtime: every node in one thread, under a virtual clock.
//!
//! Frames cross links instantly and are handled in the order they were sent (FIFO), so a run is
//! a pure function of the topology, the seed and the inputs. Time advances only to the next
//! timer a node asked for ([`Node::poll_at`]), so an idle minute costs nothing.
//!
//! Every link can be captured: the frame is handed to a [`FrameSink`] as it crosses, stamped with
//! the virtual time.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::FrameSink;
use crate::counters;
use crate::node::{InFlight, Node, Outbox, Port};
use crate::time::Instant;
use crate::wire::Frame;

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
}

counters! {
    /// What the runtime itself saw.
    pub struct SimCounters {
        /// Frames carried across links.
        pub delivered,
        /// Frames sent out of a port with no link.
        pub dropped_unlinked,
        /// Node calls (handle + poll).
        pub node_calls,
    }
}

/// Where a port's frames go: the peer port, over which link, and whether that link is captured.
/// Kept small (12 bytes), as it is read for every frame.
#[derive(Debug, Clone, Copy)]
struct Wire {
    peer: u32,
    peer_port: Port,
    captured: bool,
    link: u32,
}

/// A node that asked to be polled again without time passing is polled this much later, so a
/// confused node cannot stall the clock.
const MIN_TIMER_STEP: Duration = Duration::from_micros(1);

/// The simulation.
pub struct Sim {
    nodes: Vec<Box<dyn Node>>,
    links: Vec<Link>,
    /// Per node, per port: where its frames go.
    wiring: Vec<Vec<Option<Wire>>>,
    captures: Vec<Option<Box<dyn FrameSink>>>,
    now: Instant,
    timers: BinaryHeap<Reverse<(Instant, NodeId)>>,
    /// Per node: the earliest timer entry queued for it, if any.
    scheduled: Vec<Option<Instant>>,
    /// Nodes called since their timer was last read, and a flag per node. Timers matter only
    /// when time advances, so they are read once a node after a burst of frames, not per frame.
    dirty: Vec<NodeId>,
    is_dirty: Vec<bool>,
    /// Frames in flight, in order.
    outbox: Outbox,
    /// The wave of frames being handled (kept to reuse its buffer).
    wave: Vec<InFlight>,
    /// Set from outside (a Ctrl-C handler) to stop the run where it is.
    interrupt: Option<Arc<AtomicBool>>,
    pub counters: SimCounters,
}

impl Wire {
    fn new((peer, peer_port): (NodeId, Port), link: LinkId) -> Wire {
        Wire {
            peer: peer as u32,
            peer_port,
            captured: false,
            link: link as u32,
        }
    }
}

impl Default for Sim {
    fn default() -> Self {
        Sim {
            nodes: Vec::new(),
            links: Vec::new(),
            wiring: Vec::new(),
            captures: Vec::new(),
            now: Instant::ZERO,
            timers: BinaryHeap::new(),
            scheduled: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            outbox: Outbox::new(),
            wave: Vec::new(),
            interrupt: None,
            counters: SimCounters::default(),
        }
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::default()
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Stop running as soon as `flag` is set, even within one instant (links have no delay, so
    /// a whole transfer can happen at one instant): frames in flight stay where they are.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Whether the interrupt flag is set.
    pub fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    pub fn add_node(&mut self, node: Box<dyn Node>) -> NodeId {
        self.nodes.push(node);
        self.wiring.push(Vec::new());
        self.scheduled.push(None);
        self.is_dirty.push(false);
        let id = self.nodes.len() - 1;
        self.read_timer(id);
        id
    }

    /// Link two node ports. A port already linked is re-linked (its old link goes dead).
    pub fn connect(&mut self, name: &str, a: (NodeId, Port), b: (NodeId, Port)) -> LinkId {
        let id = self.links.len();
        self.links.push(Link {
            name: name.to_string(),
            a,
            b,
        });
        self.captures.push(None);
        self.wire_port(a, Some(Wire::new(b, id)));
        self.wire_port(b, Some(Wire::new(a, id)));
        id
    }

    /// Unlink a link's two ports (a VM leaving a host, an ENI detached).
    pub fn disconnect(&mut self, link: LinkId) {
        let Link { a, b, .. } = self.links[link].clone();
        for end in [a, b] {
            if matches!(self.peer(end), Some(w) if w.link as LinkId == link) {
                self.wire_port(end, None);
            }
        }
    }

    fn wire_port(&mut self, (node, port): (NodeId, Port), to: Option<Wire>) {
        let ports = &mut self.wiring[node];
        if ports.len() <= port as usize {
            ports.resize(port as usize + 1, None);
        }
        ports[port as usize] = to;
    }

    fn peer(&self, (node, port): (NodeId, Port)) -> Option<Wire> {
        self.wiring[node].get(port as usize).copied().flatten()
    }

    /// Mark both ends of `link` as captured or not.
    fn set_captured(&mut self, link: LinkId, captured: bool) {
        let Link { a, b, .. } = self.links[link].clone();
        for (node, port) in [a, b] {
            if let Some(Some(w)) = self.wiring[node].get_mut(port as usize) {
                if w.link as LinkId == link {
                    w.captured = captured;
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

    /// Capture every frame that crosses `link`, either way.
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

    /// A node as its concrete type, to change its state. Its timer is re-read afterwards, on
    /// the next run.
    pub fn get_mut<T: Node>(&mut self, id: NodeId) -> Option<&mut T> {
        self.timers.push(Reverse((self.now, id)));
        self.scheduled[id] = Some(self.now);
        let n: &mut dyn Any = self.nodes.get_mut(id)?.as_mut();
        n.downcast_mut()
    }

    /// Hand a frame to a node's port now, as if it arrived on a link.
    pub fn inject(&mut self, node: NodeId, port: Port, frame: Frame) {
        self.outbox.arrive(node, port, frame);
    }

    /// Run until every frame in flight at the current time has been handled.
    pub fn settle(&mut self) {
        let mut wave = std::mem::take(&mut self.wave);
        loop {
            if self.interrupted() {
                break;
            }
            self.outbox.take_wave(&mut wave);
            if wave.is_empty() {
                break;
            }
            for f in wave.drain(..) {
                let (node, port) = if f.arriving {
                    (f.node as NodeId, f.port)
                } else {
                    match self.wiring[f.node as usize]
                        .get(f.port as usize)
                        .copied()
                        .flatten()
                    {
                        Some(w) => {
                            if w.captured {
                                if let Some(sink) = self.captures[w.link as usize].as_mut() {
                                    sink.write(self.now, &f.frame);
                                }
                            }
                            self.counters.delivered += 1;
                            (w.peer as NodeId, w.peer_port)
                        }
                        None => {
                            self.counters.dropped_unlinked += 1;
                            continue;
                        }
                    }
                };
                self.outbox.set_from(node);
                self.nodes[node].handle(self.now, port, f.frame, &mut self.outbox);
                self.counters.node_calls += 1;
                if !self.is_dirty[node] {
                    self.is_dirty[node] = true;
                    self.dirty.push(node);
                }
            }
        }
        self.wave = wave;
        while let Some(node) = self.dirty.pop() {
            self.is_dirty[node] = false;
            self.read_timer(node);
        }
    }

    /// Run until `deadline`: handle frames, fire timers in time order; the clock ends at
    /// `deadline` (unless interrupted).
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            self.settle();
            if self.interrupted() {
                return;
            }
            match self.timers.peek() {
                Some(&Reverse((t, id))) if t <= deadline => {
                    self.timers.pop();
                    self.now = self.now.max(t);
                    self.fire(t, id);
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Run until `done` holds (checked after every timer), or until `deadline`, or until
    /// interrupted. Returns whether `done` held.
    pub fn run_while(&mut self, deadline: Instant, mut done: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            if self.interrupted() {
                return false;
            }
            match self.timers.peek() {
                Some(&Reverse((t, id))) if t <= deadline => {
                    self.timers.pop();
                    self.now = self.now.max(t);
                    self.fire(t, id);
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return done(self);
                }
            }
        }
    }

    /// A timer entry for `id` queued for `t` came due: poll the node if it is still due, or
    /// queue its real time.
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
            self.scheduled[id] = Some(at);
            self.timers.push(Reverse((at, id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MemorySink;
    use crate::node::Counters;

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
        assert!(!sim.run_while(Instant::from_millis(10), |_| false));
        assert!(sim.interrupted());
        let seen = sim.get::<Bouncer>(a).unwrap().seen + sim.get::<Bouncer>(b).unwrap().seen;
        assert_eq!(
            seen, 1999,
            "stopped at the first wave after the flag went up"
        );
        assert_eq!(sim.now(), Instant::ZERO);
    }
}
