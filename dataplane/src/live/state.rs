//! What a lab created in the kernel, and who owns it: `/run/vmcnet/LAB.json`.
//!
//! The file is written before each namespace is created, so that whatever stops the owner (a
//! `kill -9` in the middle of `up`), `vmcnet down LAB` or the next `up` finds all of it. TAPs
//! need no record: they are not persistent and go with the owner's file descriptors.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
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
    make_run_dir()?;
    let tmp = PathBuf::from(RUN_DIR).join(format!(".{lab}.json.tmp"));
    let json = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    fs::write(&tmp, json)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path(lab))
}

/// The lock file of `lab`.
pub fn lock_path(lab: &LabName) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{lab}.lock"))
}

/// Where a live drill of `lab` keeps its programs' output (inside [`RUN_DIR`], root's alone).
pub fn scratch_path(lab: &LabName) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{lab}.drill"))
}

/// A lab's lock: its owner holds it, exclusively, for the lab's whole life, so that two
/// `up`s of one lab cannot both build it, and `down` knows the owner runs (a PID alone could
/// have been reused).
pub struct LabLock(#[allow(dead_code)] Flock<fs::File>);

/// Take `lab`'s lock if no one holds it; `None` if its owner does.
pub fn try_lock(lab: &LabName) -> io::Result<Option<LabLock>> {
    make_run_dir()?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(lab))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(LabLock(lock))),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

/// Whether `lab`'s owner runs: someone holds its lock.
pub fn owned(lab: &LabName) -> bool {
    let Ok(file) = fs::OpenOptions::new().write(true).open(lock_path(lab)) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

fn make_run_dir() -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(RUN_DIR)
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
/// control socket, a drill's scratch directory and its state file. The caller holds the lab's
/// lock ([`try_lock`]); the lock file itself stays until the lock is let go ([`unlock`]).
pub fn remove(lab: &LabName) -> io::Result<Removed> {
    // Only names with the lab's prefix: a state file cannot make it delete another namespace.
    let mut names: Vec<String> = match read(lab) {
        Ok(Some(s)) => s.namespaces.into_iter().map(|(_, ns)| ns).collect(),
        Ok(None) | Err(_) => Vec::new(),
    };
    names.retain(|n| n.starts_with(&lab.prefix()));
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
    match fs::remove_dir_all(scratch_path(lab)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for p in [socket_path(lab), path(lab)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(removed)
}

/// Remove the lab's lock file, then let the lock go: the last thing a lab leaves.
pub fn unlock(lab: &LabName, lock: LabLock) -> io::Result<()> {
    let r = match fs::remove_file(lock_path(lab)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    drop(lock);
    r
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
