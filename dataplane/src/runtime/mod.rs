//! Runtimes: what runs the nodes and does their I/O.
//!
//! - [`sim`]: one thread, a virtual clock, deterministic: the same run gives the same frames,
//!   bit for bit. Used by tests, drills and scale runs; needs no privileges.
//!
//! A live runtime (threads, channels, TAP devices in network namespaces) will run the same nodes.

pub mod sim;
