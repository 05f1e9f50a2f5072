//! The SDDC underlay: the network between host TEPs that carries Geneve. It switches frames by
//! destination MAC to the port of the host that owns it; the control plane programs the table.
//!
//! Ports: one per host, in the order the hosts were connected.

use rustc_hash::FxHashMap;

use super::{Change, Counters, Node, Outbox, Port};
use crate::counters;
use crate::time::Instant;
use crate::wire::{self, Frame, MacAddr};

counters! {
    /// What the underlay did with frames.
    pub struct UnderlayCounters {
        pub forwarded,
        pub rx_dropped_unknown_dst,
        pub rx_dropped_runt,
    }
}

/// The underlay switch.
#[derive(Debug)]
pub struct Underlay {
    name: String,
    /// Destination MAC (as a number) → port.
    table: FxHashMap<u64, Port>,
    /// The last destination looked up and its port: a flow's frames skip the table. Changing
    /// the table forgets it.
    last: Option<(u64, Port)>,
    pub counters: UnderlayCounters,
}

impl Underlay {
    pub fn new(name: &str) -> Self {
        Underlay {
            name: name.to_string(),
            table: FxHashMap::default(),
            last: None,
            counters: UnderlayCounters::default(),
        }
    }

    /// Frames for `mac` leave on `port`.
    pub fn set_port(&mut self, mac: MacAddr, port: Port) {
        self.table.insert(mac.to_u64(), port);
        self.last = None;
    }
}

impl Node for Underlay {
    fn name(&self) -> &str {
        &self.name
    }

    fn configure(&mut self, _now: Instant, change: &Change, _out: &mut Outbox) {
        if let Change::UnderlayPort { mac, port } = change {
            self.set_port(*mac, *port);
        }
    }

    fn kind(&self) -> &'static str {
        "underlay"
    }

    fn has_timers(&self) -> bool {
        false
    }

    fn handle(&mut self, _now: Instant, _port: Port, frame: Frame, out: &mut Outbox) {
        let Some(dst) = wire::eth_dst(&frame) else {
            self.counters.rx_dropped_runt += 1;
            return;
        };
        let dst = dst.to_u64();
        let port = match self.last {
            Some((mac, p)) if mac == dst => Some(p),
            _ => {
                let p = self.table.get(&dst).copied();
                if let Some(p) = p {
                    self.last = Some((dst, p));
                }
                p
            }
        };
        match port {
            Some(p) => {
                self.counters.forwarded += 1;
                out.send(p, frame);
            }
            None => self.counters.rx_dropped_unknown_dst += 1,
        }
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}
