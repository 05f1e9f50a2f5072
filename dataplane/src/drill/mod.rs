//! Drills: a drill file names traffic to send across a lab and what must hold; the runner sends
//! it in the sim runtime and writes a report, which [`svg`] draws as one timeline.
//!
//! ```toml
//! name = "smoke"
//! seed = 1
//!
//! [[traffic]]
//! kind = "ping"            # ping | tcp | traceroute
//! from = "web-1"           # an endpoint (VM, EC2 instance, S3)
//! to = "ec2-1"             # an endpoint or an address
//! count = 3
//! expect = { received = 3, reply_ttl = 63 }
//! ```
//!
//! Traffic runs in file order, each item once the one before it has finished (or timed out).
//!
//! A drill with actions or probes is timed: its probes run at once, each from its `start`,
//! beside the actions, each at its `at`, on one timeline; VMC's reconciler follows:
//!
//! ```toml
//! reconciler = "ip-move"   # ip-move | eni-reattach | off
//!
//! [[action]]
//! kind = "vmotion"         # vmotion | fail-host | recover-host | fail-edge | maintenance
//!                          # | add-segment | del-segment | break-reconciler | heal-reconciler
//!                          # | cut-bfd | heal-bfd
//! at = "1s"
//! vm = "edge-1"
//! to = "esxi-3"
//!
//! [[traffic]]
//! kind = "probe"           # UDP each way, sequence-numbered
//! from = "web-1"
//! to = "ec2-1"
//! duration = "10s"
//! interval = "1ms"
//! expect = { outage = "vmotion_stun", outage_back = "vmotion_stun + control_plane_notice + max(move_secondary_ip, replace_route)" }
//! ```

pub mod file;
pub mod formula;
pub mod report;
pub mod run;
pub mod svg;

pub use file::{DrillFile, Expect, Traffic};
pub use report::{DrillReport, StepResult};
pub use run::{run_drill, DrillError, RunOptions};
