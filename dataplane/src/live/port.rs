//! [`KernelPort`]: the node that stands where an endpoint was when the endpoint is a kernel in a
//! namespace. Like every node it does no I/O: frames the lab sends it wait in its queue until
//! the runtime writes them to the TAP; frames the TAP gives are injected into its port.

use std::collections::VecDeque;

use crate::counters;
use crate::node::endpoint::EndpointConfig;
use crate::node::{Counters, Node, Outbox, Port};
use crate::time::Instant;
use crate::wire::Frame;

/// Frames held for the TAP at most; past that they are dropped and counted, as a full TAP
/// queue drops.
pub const TX_QUEUE_FRAMES: usize = 1024;

counters! {
    /// What crossed a kernel port.
    pub struct KernelPortCounters {
        /// Frames from the kernel (read from the TAP).
        pub rx_frames,
        pub rx_bytes,
        /// Frames to the kernel (written to the TAP).
        pub tx_frames,
        pub tx_bytes,
        /// Frames for the kernel dropped because the queue was full or the TAP refused them.
        pub tx_dropped,
        /// Frames from the kernel dropped unread: a checksum or segmentation offload this
        /// runtime did not switch on.
        pub rx_dropped_offload,
        /// The longest frame written to the TAP, in bytes (more than the MTU: a super-frame).
        pub tx_max_frame_bytes,
    }
}

/// A live endpoint: the lab side of a TAP.
pub struct KernelPort {
    /// The endpoint this port stands for (its address, MAC, gateway, MTU).
    pub config: EndpointConfig,
    queue: VecDeque<Frame>,
    pub counters: KernelPortCounters,
}

impl KernelPort {
    pub fn new(config: EndpointConfig) -> Self {
        KernelPort {
            config,
            queue: VecDeque::new(),
            counters: KernelPortCounters::default(),
        }
    }

    /// The next frame for the kernel.
    pub fn pop(&mut self) -> Option<Frame> {
        self.queue.pop_front()
    }

    /// Whether frames wait for the kernel.
    pub fn has_frames(&self) -> bool {
        !self.queue.is_empty()
    }
}

impl Node for KernelPort {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> &'static str {
        self.config.kind.as_str()
    }

    fn port_name(&self, _port: Port) -> String {
        "tap".to_string()
    }

    fn handle(&mut self, _now: Instant, _port: Port, frame: Frame, _out: &mut Outbox) {
        if self.queue.len() >= TX_QUEUE_FRAMES {
            self.counters.tx_dropped += 1;
            return;
        }
        self.queue.push_back(frame);
    }

    fn counters(&self) -> Counters {
        self.counters.list()
    }
}
