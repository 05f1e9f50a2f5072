//! vmcnet-topo: the topology of an emulated VMware Cloud on AWS SDDC and its Connected VPC.
//!
//! - [`model`]: the serde schema of a topology file (TOML) and its defaults.
//! - [`links`]: every link of a lab, its kind, and each direction's delay, rate and queue.
//! - [`scale`]: large topologies built in code, for scale runs.
//! - [`validate`]: the rules of VMC and AWS a topology must follow; every error names the field
//!   and the line of the file.
//!
//! Load a topology with [`load`] (from a file) or [`parse`] (from text); check one built in code
//! with [`Topology::validate`].

pub mod links;
pub mod model;
pub mod scale;
pub mod validate;

pub use links::{
    edge_iface_end, instance_eni_id, link_name, ByteSize, LinkKind, LinkOpt, LinkSpec, Links,
    PlannedLink, Rate, EDGE_HA_IFACE, EDGE_RESERVED_IFACES, EDGE_UPLINK_IFACE, UNDERLAY,
    VPC_ROUTER,
};
pub use model::*;
pub use validate::{name_ok, FieldPath, TopoError, Violation};

use std::path::Path;

/// The default lab, as shipped in `topo/default.toml`.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../default.toml");

/// Read, parse and validate a topology file.
pub fn load(path: &Path) -> Result<Topology, TopoError> {
    let src = std::fs::read_to_string(path).map_err(|e| TopoError::io(path, e))?;
    parse(&src, &path.display().to_string())
}

/// Parse and validate a topology from text; `origin` names it in errors (a file path).
pub fn parse(src: &str, origin: &str) -> Result<Topology, TopoError> {
    validate::parse_and_validate(src, origin)
}
