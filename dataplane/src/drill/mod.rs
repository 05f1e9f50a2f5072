//! Drills: a drill file names traffic to send across a lab and what must hold; the runner sends
//! it in the sim runtime and writes a report.
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
//! Failover drills will add timed actions to the same file, on the same timeline.

pub mod file;
pub mod report;
pub mod run;

pub use file::{DrillFile, Expect, Traffic};
pub use report::{DrillReport, StepResult};
pub use run::{run_drill, DrillError, RunOptions};
