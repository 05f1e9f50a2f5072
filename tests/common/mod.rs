//! What the end-to-end tests share: where the repository is, and its default lab.

#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};

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
