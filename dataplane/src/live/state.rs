//! What a lab created in the kernel, and who owns it: `/run/vmcnet/LAB.json`.
//!
//! The file is written before each namespace is created, so that whatever stops the owner (a
//! `kill -9` in the middle of `up`), `vmcnet down LAB` or the next `up` finds all of it. TAPs
//! need no record: they are not persistent and go with the owner's file descriptors.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{netns, LabName, RUN_DIR};

/// A lab's state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    pub lab: String,
    /// The process that serves the lab.
    pub pid: u32,
    /// The topology file it runs.
    pub topology: String,
    /// Namespaces created (or about to be), by node: `(node, namespace)`.
    pub namespaces: Vec<(String, String)>,
    /// The control socket.
    pub socket: String,
}

/// The state file of `lab`.
pub fn path(lab: &LabName) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{lab}.json"))
}

/// The control socket of `lab`.
pub fn socket_path(lab: &LabName) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{lab}.sock"))
}

/// Read a lab's state file; `None` if it has none.
pub fn read(lab: &LabName) -> io::Result<Option<LabState>> {
    match fs::read_to_string(path(lab)) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path(lab).display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write the state file (readable by root only), through a temporary file and a rename, so
/// that a reader never sees half of it.
pub fn write(lab: &LabName, state: &LabState) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(RUN_DIR)?;
    let tmp = PathBuf::from(RUN_DIR).join(format!(".{lab}.json.tmp"));
    let json = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    fs::write(&tmp, json)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path(lab))
}

/// Whether process `pid` runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the command, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// What [`remove`] took away.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub processes_killed: usize,
}

/// Remove everything `lab` left in the kernel and under [`RUN_DIR`]: the namespaces of its
/// state file and any other namespace with its prefix (with the processes in them), its
/// control socket and its state file. The owner must be gone.
pub fn remove(lab: &LabName) -> io::Result<Removed> {
    let mut names: Vec<String> = match read(lab) {
        Ok(Some(s)) => s.namespaces.into_iter().map(|(_, ns)| ns).collect(),
        Ok(None) | Err(_) => Vec::new(),
    };
    for ns in netns::list_with_prefix(&lab.prefix()) {
        if !names.contains(&ns) {
            names.push(ns);
        }
    }
    let mut removed = Removed::default();
    for ns in names {
        if !netns::exists(&ns) {
            continue;
        }
        removed.processes_killed += netns::delete(&ns).map_err(io::Error::other)?;
        removed.namespaces.push(ns);
    }
    for p in [socket_path(lab), path(lab)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
