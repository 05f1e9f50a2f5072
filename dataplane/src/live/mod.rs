//! The live runtime (Linux): each live endpoint of a lab is a network namespace whose one
//! interface is a TAP device served by `vmcnet`, so the kernel's own stack (ping, iperf3,
//! traceroute, tcpdump) talks through the emulated SDDC and VPC.
//!
//! - [`tap`]: the TAP device, with a virtio-net header on every frame.
//! - [`netns`]: named namespaces (as `ip netns` keeps them) and their interface, over rtnetlink.
//! - [`state`]: what a lab created in the kernel, in `/run/vmcnet/LAB.json`, so that `down`, or
//!   the next `up` after a crash, removes all of it.
//! - [`control`]: the control socket, `/run/vmcnet/LAB.sock`, and the capture streams.
//! - [`drill`]: drill files run live, by ping, iperf3 and probe agents in the namespaces.
//! - [`probe`]: the probe agent a live drill runs in each namespace.
//! - [`runtime`]: one engine thread runs the nodes as direct calls under the monotonic clock and
//!   polls every TAP with epoll.
//!
//! Every name a lab creates in the kernel starts with `vmc-LAB`: namespaces are
//! `vmc-LAB-NODE`, the TAP inside each is `vmc-LAB-N` (at most 15 bytes, the kernel's limit).

pub mod control;
pub mod drill;
pub mod netns;
pub mod port;
pub mod probe;
pub mod runtime;
pub mod state;
pub mod tap;

use std::fmt;

/// At most this many bytes in a lab's name, so that `vmc-LAB-NNNN` fits an interface name.
pub const LAB_NAME_MAX: usize = 6;

/// A lab's name: 1 to [`LAB_NAME_MAX`] lowercase letters and digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabName(String);

impl LabName {
    /// Check a lab name.
    pub fn new(name: &str) -> Result<LabName, String> {
        let ok = !name.is_empty()
            && name.len() <= LAB_NAME_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(LabName(name.to_string()))
        } else {
            Err(format!(
                "bad lab name {name:?}: 1 to {LAB_NAME_MAX} lowercase letters and digits \
                 (every name the lab gives the kernel starts with vmc-LAB, and an interface \
                 name holds 15 bytes)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What every name this lab creates in the kernel starts with.
    pub fn prefix(&self) -> String {
        format!("vmc-{}-", self.0)
    }

    /// The namespace of node `node`.
    pub fn netns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix())
    }

    /// The TAP of the `i`th live endpoint, inside its namespace.
    pub fn tap(&self, i: usize) -> String {
        format!("{}{i}", self.prefix())
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where labs keep their state files and control sockets.
pub const RUN_DIR: &str = "/run/vmcnet";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_fit_the_kernels_limits() {
        let lab = LabName::new("abcdef").unwrap();
        assert_eq!(lab.netns("web-1"), "vmc-abcdef-web-1");
        assert!(lab.tap(9999).len() <= 15, "{}", lab.tap(9999));
        for bad in ["", "abcdefg", "Lab", "a-b", "a/b", "a b", "é"] {
            assert!(LabName::new(bad).is_err(), "{bad:?}");
        }
    }
}
