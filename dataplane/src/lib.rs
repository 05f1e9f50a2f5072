//! vmcnet: a packet-level data-plane emulator of a VMware Cloud on AWS SDDC and the customer's
//! Connected VPC.
//!
//! Every host, ENI, Edge, the VPC router and each endpoint is a [`node::Node`] that forwards
//! real Ethernet frames. The layers, bottom up:
//!
//! - [`time`]: the instant a node is told it is; nodes never read a clock.
//! - [`wire`]: frames, parsed in place and built in `BytesMut`; no I/O.
//! - [`node`]: the node kinds, each an I/O-free state machine.
//! - [`control`]: turns a topology into a wired lab of nodes; the control-plane state (ENIs,
//!   route tables) as the CLI shows it.
//! - [`runtime`]: runs the nodes: `sim`, one thread under a virtual clock, deterministic.
//! - [`capture`]: pcap files of any link.
//! - [`drill`]: drill files (traffic and assertions), the runner and its report.
//! - `live` (Linux): the live lab, each endpoint a kernel in a network namespace over a TAP.

pub mod capture;
pub mod control;
pub mod drill;
#[cfg(target_os = "linux")]
pub mod live;
pub mod node;
pub mod runtime;
pub mod time;
pub mod wire;
