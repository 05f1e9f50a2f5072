//! What the end-to-end tests share: where the repository is, and its default lab.

#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};

use vmcnet::capture::MemorySink;
use vmcnet::runtime::sim::{LinkId, Sim};
use vmcnet_topo::Topology;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// topo/default.toml, loaded and validated.
pub fn default_topo() -> Topology {
    vmcnet_topo::load(&root().join("topo/default.toml")).expect("default topology")
}

/// Capture the link named `name` into memory (see [`take_memory_capture`]); its id.
pub fn capture_in_memory(sim: &mut Sim, name: &str) -> LinkId {
    let link = sim
        .link_by_name(name)
        .unwrap_or_else(|| panic!("no link named {name}"));
    sim.capture(link, Box::new(MemorySink::default()));
    link
}

/// Take the capture off `link`, where a [`MemorySink`] was put: what it holds.
pub fn take_memory_capture(sim: &mut Sim, link: LinkId) -> MemorySink {
    let sink = sim.take_capture(link).expect("a capture on the link");
    *(sink as Box<dyn std::any::Any>)
        .downcast::<MemorySink>()
        .expect("a MemorySink")
}
