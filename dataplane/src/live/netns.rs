//! Named network namespaces, kept where and as `ip netns` keeps them, and the configuration of
//! a namespace's one interface over rtnetlink.
//!
//! A named namespace is a bind mount of a namespace file (`/proc/thread-self/ns/net` of a thread
//! that has just unshared its network namespace) onto an empty file `/run/netns/NAME`, so
//! `ip netns exec NAME ...` and `ip -n NAME ...` work on the namespaces made here too.
//!
//! Everything that touches a namespace runs on a dedicated thread that has entered it ([`create`]
//! unshares on one, [`run_in`] enters one with `setns`): the network namespace belongs to a
//! thread, so the rest of the process, and the root namespace's addresses and routes, are never
//! affected. [`configure_iface`] refuses to run on a thread that is in the process's own
//! namespace.
//!
//! rtnetlink is spoken synchronously: one request at a time, each with `NLM_F_ACK`, and the
//! kernel's answer (with its extended-ack message, if any) turned into a [`NetnsError`].

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkHeader, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where named namespaces live, as iproute2 keeps them (so `ip netns exec NAME` works too).
pub const NETNS_DIR: &str = "/run/netns";

/// The longest interface name the kernel takes (`IFNAMSIZ` less the NUL).
const IFNAME_MAX: usize = 15;

/// The longest file name (`NAME_MAX`).
const NETNS_NAME_MAX: usize = 255;

/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Length of a netlink message header.
const NLMSG_HDR_LEN: usize = 16;

/// What went wrong with a namespace or its interface.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace name cannot name a file in [`NETNS_DIR`].
    #[error("bad network namespace name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    /// [`create`] found `/run/netns/NAME` already there.
    #[error("network namespace {name}: already exists ({NETNS_DIR}/{name})")]
    Exists { name: String },
    /// [`run_in`] found no `/run/netns/NAME`.
    #[error("network namespace {name}: does not exist (no {NETNS_DIR}/{name})")]
    NotFound { name: String },
    /// A system call about the namespace failed.
    #[error("network namespace {name}: {op}: {source}")]
    Os {
        name: String,
        op: String,
        #[source]
        source: io::Error,
    },
    /// An interface's settings cannot be applied as given.
    #[error("interface {ifname:?}: {reason}")]
    BadConfig { ifname: String, reason: String },
    /// A request about an interface failed (`detail` holds the kernel's extended-ack message).
    #[error("interface {ifname}: {op}: {source}{detail}")]
    Iface {
        ifname: String,
        op: String,
        #[source]
        source: io::Error,
        detail: String,
    },
    /// [`configure_iface`] was called on a thread in the process's own network namespace.
    #[error(
        "interface {ifname}: refusing to configure it from the process's own network namespace \
         (configure_iface must run within run_in)"
    )]
    InRootNamespace { ifname: String },
    /// [`delete`] was asked to remove a name bound to init's or this process's own namespace.
    #[error(
        "network namespace {name} is init's or this process's own: refusing to delete it or \
         kill what runs in it"
    )]
    HostNamespace { name: String },
}

impl NetnsError {
    /// The OS error number behind the error, if a system call or the kernel reported one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetnsError::Os { source, .. } | NetnsError::Iface { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    fn os(name: &str, op: impl Into<String>, source: impl Into<io::Error>) -> NetnsError {
        NetnsError::Os {
            name: name.to_string(),
            op: op.into(),
            source: source.into(),
        }
    }

    fn iface(ifname: &str, op: impl Into<String>, err: RtnlError) -> NetnsError {
        NetnsError::Iface {
            ifname: ifname.to_string(),
            op: op.into(),
            source: err.io,
            detail: err.extack.map(|m| format!(" ({m})")).unwrap_or_default(),
        }
    }
}

// ---- named namespaces ----

/// Create a named network namespace NAME, as `ip netns add` does: make sure [`NETNS_DIR`]
/// exists and is a shared mount, create the empty file `/run/netns/NAME` (an error if it
/// exists), then, on a dedicated thread, unshare a new network namespace and bind-mount the
/// thread's namespace file onto it. On any failure the file is removed again.
pub fn create(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    prepare_dir(name)?;
    let path = ns_path(name);
    create_placeholder(name, &path)?;
    if let Err(e) = bind_new_netns(name, &path) {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

/// Delete a named namespace: SIGKILL every process whose network namespace it is (other than
/// this process), unmount `/run/netns/NAME` (lazily) and remove the file. A namespace that does
/// not exist is not an error. Returns how many processes were killed.
pub fn delete(name: &str) -> Result<usize, NetnsError> {
    check_name(name)?;
    let path = ns_path(name);
    let target = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(NetnsError::os(name, format!("stat {}", path.display()), e)),
    };
    // A name bound to the host's namespace (`ip netns attach NAME 1`) is not ours to kill.
    for own in ["/proc/1/ns/net", "/proc/self/ns/net"] {
        if fs::metadata(own).is_ok_and(|m| same_file(&m, &target)) {
            return Err(NetnsError::HostNamespace {
                name: name.to_string(),
            });
        }
    }
    let killed = kill_members(name, &target)?;
    unmount(name, &path)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(killed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(killed),
        Err(e) => Err(NetnsError::os(
            name,
            format!("remove {}", path.display()),
            e,
        )),
    }
}

/// Whether `/run/netns/NAME` exists (false for a name that cannot be a namespace's).
pub fn exists(name: &str) -> bool {
    check_name(name).is_ok() && ns_path(name).exists()
}

/// The names in [`NETNS_DIR`] that start with `prefix`, sorted (none if the directory is
/// missing or unreadable).
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Run `f` on a new thread that has entered namespace NAME (`setns` on `/run/netns/NAME`), and
/// return its result; the thread ends afterwards. A panic in `f` is resumed on the caller.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    check_name(name)?;
    let file = open_ns(name)?;
    let owned = name.to_string();
    let handle = thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<T, NetnsError> {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetnsError::os(&owned, "setns", e))?;
            drop(file);
            Ok(f())
        })
        .map_err(|e| NetnsError::os(name, "spawn thread", e))?;
    join(handle)
}

/// `/run/netns/NAME`.
fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// A namespace name must be one plain file name.
fn check_name(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("not a file name")
    } else if name.contains('/') || name.contains('\0') {
        Some("contains '/' or NUL")
    } else if name.len() > NETNS_NAME_MAX {
        Some("longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetnsError::BadName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Create [`NETNS_DIR`] and make it a shared mount (bind-mounting it onto itself first if it is
/// not a mount point), under an exclusive lock on the directory as iproute2 takes it, so that
/// concurrent creators do not stack bind mounts.
fn prepare_dir(name: &str) -> Result<(), NetnsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_DIR)
        .map_err(|e| NetnsError::os(name, format!("create {NETNS_DIR}"), e))?;
    // As iproute2: go on without the lock if it cannot be had.
    let _lock = File::open(NETNS_DIR)
        .ok()
        .and_then(|dir| Flock::lock(dir, FlockArg::LockExclusive).ok());
    make_dir_shared(name)
}

/// `mount --make-rshared /run/netns`, bind-mounting it onto itself first if need be.
fn make_dir_shared(name: &str) -> Result<(), NetnsError> {
    let mut bound = false;
    loop {
        let shared = mount(
            None::<&str>,
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        );
        match shared {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(NETNS_DIR),
                    NETNS_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| {
                    NetnsError::os(name, format!("bind-mount {NETNS_DIR} on itself"), e)
                })?;
                bound = true;
            }
            Err(e) => {
                return Err(NetnsError::os(
                    name,
                    format!("mount --make-rshared {NETNS_DIR}"),
                    e,
                ))
            }
        }
    }
}

/// Create the empty file the namespace will be mounted on.
fn create_placeholder(name: &str, path: &Path) -> Result<(), NetnsError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(NetnsError::Exists {
            name: name.to_string(),
        }),
        Err(e) => Err(NetnsError::os(
            name,
            format!("create {}", path.display()),
            e,
        )),
    }
}

/// On a thread of its own: unshare a new network namespace and bind-mount it onto `path`.
fn bind_new_netns(name: &str, path: &Path) -> Result<(), NetnsError> {
    let owned = name.to_string();
    let target = path.to_path_buf();
    let handle = thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<(), NetnsError> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetnsError::os(&owned, "unshare(CLONE_NEWNET)", e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| NetnsError::os(&owned, format!("bind-mount onto {}", target.display()), e))
        })
        .map_err(|e| NetnsError::os(name, "spawn thread", e))?;
    join(handle)
}

/// Wait for a namespace thread; a panic on it is resumed here.
fn join<T>(handle: thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Open `/run/netns/NAME` for `setns`.
fn open_ns(name: &str) -> Result<File, NetnsError> {
    let path = ns_path(name);
    File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            NetnsError::NotFound {
                name: name.to_string(),
            }
        } else {
            NetnsError::os(name, format!("open {}", path.display()), e)
        }
    })
}

/// Whether two files are the same inode.
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// SIGKILL every other process whose network namespace is `target`; how many were signalled.
fn kill_members(name: &str, target: &Metadata) -> Result<usize, NetnsError> {
    let proc_dir = fs::read_dir("/proc").map_err(|e| NetnsError::os(name, "read /proc", e))?;
    let me = std::process::id();
    let mut killed = 0;
    for pid in proc_dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if pid == me || !in_namespace(pid, target) {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        match kill(Pid::from_raw(raw), Signal::SIGKILL) {
            Ok(()) => killed += 1,
            Err(Errno::ESRCH) => {}
            Err(e) => return Err(NetnsError::os(name, format!("kill process {pid}"), e)),
        }
    }
    Ok(killed)
}

/// Whether process `pid`'s network namespace is `target` (false if it is gone).
fn in_namespace(pid: u32, target: &Metadata) -> bool {
    fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| same_file(&m, target))
}

/// Detach the namespace mount; a file that is not (or no longer) mounted is fine.
fn unmount(name: &str, path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(NetnsError::os(
            name,
            format!("umount {}", path.display()),
            e,
        )),
    }
}

// ---- the interface ----

/// Interface settings for a namespace's one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceConfig {
    /// The interface, already in the namespace (a TAP), e.g. `vmc-lab-3`.
    pub ifname: String,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The Ethernet payload MTU, as `ip link set mtu` takes it.
    pub mtu: u32,
    /// Its IPv4 address.
    pub addr: Ipv4Addr,
    /// The prefix length of its subnet (0 to 32).
    pub prefix_len: u8,
    /// The next hop of the default route, if any.
    pub gateway: Option<Ipv4Addr>,
    /// If set, `IFLA_GSO_MAX_SIZE` of the link (ignored where the kernel cannot set it).
    pub gso_max_size: Option<u32>,
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, NetnsError> {
    check_ifname(name)?;
    let mut rtnl = Rtnl::open().map_err(|e| NetnsError::iface(name, "open rtnetlink", e))?;
    rtnl.link_index(name)
        .map_err(|e| NetnsError::iface(name, "look up its index", e))
}

/// Configure a namespace's interface. MUST be called on a thread inside the target namespace
/// (within [`run_in`]'s closure); on a thread in the process's own namespace it fails with
/// [`NetnsError::InRootNamespace`] and changes nothing.
///
/// Over one rtnetlink socket: bring `lo` up; on `ifname` set the MAC, the MTU and (if asked) the
/// GSO maximum size, then bring it up; add `addr/prefix_len` (with its broadcast address); add a
/// default route via the gateway, if any. Nothing else is changed.
pub fn configure_iface(cfg: &IfaceConfig) -> Result<(), NetnsError> {
    let name = cfg.ifname.as_str();
    check_ifname(name)?;
    check_prefix_len(cfg)?;
    ensure_own_namespace(name)?;
    disable_ipv6(name)?;
    let mut rtnl = Rtnl::open().map_err(|e| NetnsError::iface(name, "open rtnetlink", e))?;
    let step = |op: &str| {
        let op = op.to_string();
        move |e| NetnsError::iface(name, op, e)
    };

    let lo = rtnl
        .link_index("lo")
        .map_err(|e| NetnsError::iface("lo", "look up", e))?;
    rtnl.link_up(lo)
        .map_err(|e| NetnsError::iface("lo", "set up", e))?;

    let index = rtnl.link_index(name).map_err(step("look up its index"))?;
    rtnl.set_link(index, LinkAttribute::Address(cfg.mac.to_vec()))
        .map_err(step(&format!("set MAC {}", fmt_mac(&cfg.mac))))?;
    rtnl.set_link(index, LinkAttribute::Mtu(cfg.mtu))
        .map_err(step(&format!("set MTU {}", cfg.mtu)))?;
    if let Some(size) = cfg.gso_max_size {
        set_gso_max_size(&mut rtnl, index, size)
            .map_err(step(&format!("set gso_max_size {size}")))?;
    }
    rtnl.link_up(index).map_err(step("set up"))?;
    rtnl.add_address(index, cfg.addr, cfg.prefix_len)
        .map_err(step(&format!(
            "add address {}/{}",
            cfg.addr, cfg.prefix_len
        )))?;
    if let Some(gateway) = cfg.gateway {
        rtnl.add_default_route(index, gateway)
            .map_err(step(&format!("add default route via {gateway}")))?;
    }
    Ok(())
}

/// The emulated network is IPv4: switch IPv6 off in the namespace (only ever called inside
/// one), so that the kernel sends no router solicitations or MLD reports into it. A kernel
/// without IPv6 has nothing to switch off.
fn disable_ipv6(ifname: &str) -> Result<(), NetnsError> {
    for conf in ["all", "default", ifname] {
        let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
        match fs::write(&path, "1") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NetnsError::Iface {
                    ifname: ifname.to_string(),
                    op: format!("write {path}"),
                    source: e,
                    detail: String::new(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Set `IFLA_GSO_MAX_SIZE`, where the kernel can.
fn set_gso_max_size(rtnl: &mut Rtnl, index: u32, size: u32) -> Result<(), RtnlError> {
    match rtnl.set_link(index, LinkAttribute::GsoMaxSize(size)) {
        Err(e) if matches!(e.errno(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => Ok(()),
        other => other,
    }
}

/// An interface name the kernel can take.
fn check_ifname(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(NetnsError::BadConfig {
            ifname: name.to_string(),
            reason: format!(
                "not an interface name (1 to {IFNAME_MAX} bytes, no '/', NUL or whitespace)"
            ),
        })
    }
}

/// An IPv4 prefix length is at most 32.
fn check_prefix_len(cfg: &IfaceConfig) -> Result<(), NetnsError> {
    if cfg.prefix_len <= 32 {
        Ok(())
    } else {
        Err(NetnsError::BadConfig {
            ifname: cfg.ifname.clone(),
            reason: format!("prefix length {} is over 32", cfg.prefix_len),
        })
    }
}

/// Refuse to go on if the calling thread is in the process's own network namespace.
fn ensure_own_namespace(ifname: &str) -> Result<(), NetnsError> {
    let stat = |path: &str| {
        fs::metadata(path).map_err(|e| NetnsError::Iface {
            ifname: ifname.to_string(),
            op: format!("stat {path}"),
            source: e,
            detail: String::new(),
        })
    };
    let thread_ns = stat("/proc/thread-self/ns/net")?;
    let process_ns = stat("/proc/self/ns/net")?;
    if same_file(&thread_ns, &process_ns) {
        Err(NetnsError::InRootNamespace {
            ifname: ifname.to_string(),
        })
    } else {
        Ok(())
    }
}

/// `aa:bb:cc:dd:ee:ff`.
fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The broadcast address of `addr/prefix_len`, none for /31 and /32 (as `ip addr add ... brd +`).
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host_mask))
}

// ---- synchronous rtnetlink ----

/// A failed rtnetlink request: the OS error, and the kernel's extended-ack message if any.
#[derive(Debug)]
struct RtnlError {
    io: io::Error,
    extack: Option<String>,
}

impl RtnlError {
    fn errno(&self) -> Option<i32> {
        self.io.raw_os_error()
    }

    fn invalid(what: String) -> RtnlError {
        RtnlError {
            io: io::Error::new(io::ErrorKind::InvalidData, what),
            extack: None,
        }
    }
}

impl From<io::Error> for RtnlError {
    fn from(io: io::Error) -> RtnlError {
        RtnlError { io, extack: None }
    }
}

/// One message of a reply: its type and payload.
struct Reply {
    message_type: u16,
    payload: Vec<u8>,
}

/// An rtnetlink socket in the calling thread's network namespace.
struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// Open and bind the socket, asking for capped acks with the kernel's error messages.
    fn open() -> Result<Rtnl, RtnlError> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Older kernels lack these; the errors are then plain errnos.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Rtnl { socket, seq: 0 })
    }

    /// The index of interface `name` (`RTM_GETLINK` by `IFLA_IFNAME`).
    fn link_index(&mut self, name: &str) -> Result<u32, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), 0)?;
        let reply = replies
            .iter()
            .find(|r| r.message_type == libc::RTM_NEWLINK)
            .ok_or_else(|| RtnlError::invalid(format!("no RTM_NEWLINK answer for {name}")))?;
        let header = LinkHeader::parse(&reply.payload)
            .map_err(|e| RtnlError::invalid(format!("bad RTM_NEWLINK answer: {e}")))?;
        Ok(header.index)
    }

    /// Set one attribute of link `index` (`RTM_SETLINK`).
    fn set_link(&mut self, index: u32, attribute: LinkAttribute) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attribute);
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Set link `index` up.
    fn link_up(&mut self, index: u32) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Add `addr/prefix_len` to link `index`, with its broadcast address.
    fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<(), RtnlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        if let Some(brd) = broadcast(addr, prefix_len) {
            msg.attributes.push(AddressAttribute::Broadcast(brd));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Add `default via gateway dev index` to the main table.
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), RtnlError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Send one request with `NLM_F_REQUEST | NLM_F_ACK | flags` and collect the messages that
    /// answer it until the ack; a negative ack is an error.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<Reply>, RtnlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        self.read_answer(self.seq)
    }

    /// Read datagrams until the ack (or error, or done) of request `seq`.
    fn read_answer(&self, seq: u32) -> Result<Vec<Reply>, RtnlError> {
        let mut replies = Vec::new();
        loop {
            let (datagram, from) = self.socket.recv_from_full()?;
            if from.port_number() != 0 {
                continue; // not from the kernel
            }
            if let Some(end) = parse_datagram(&datagram, seq, &mut replies)? {
                return end.map(|()| replies);
            }
        }
    }
}

/// Go through the messages of one datagram: those answering `seq` are added to `replies`;
/// returns `Some(result)` once the request's ack, error or done has been seen.
#[allow(clippy::type_complexity)]
fn parse_datagram(
    datagram: &[u8],
    seq: u32,
    replies: &mut Vec<Reply>,
) -> Result<Option<Result<(), RtnlError>>, RtnlError> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let msg = NetlinkBuffer::new_checked(rest)
            .map_err(|e| RtnlError::invalid(format!("bad netlink message: {e}")))?;
        let len = msg.length() as usize;
        if msg.sequence_number() == seq {
            match msg.message_type() {
                NLMSG_ERROR => return Ok(Some(ack_result(msg.flags(), msg.payload()))),
                NLMSG_DONE => return Ok(Some(Ok(()))),
                NLMSG_NOOP => {}
                message_type => replies.push(Reply {
                    message_type,
                    payload: msg.payload().to_vec(),
                }),
            }
        }
        rest = rest.get(align4(len)..).unwrap_or_default();
    }
    Ok(None)
}

/// An `NLMSG_ERROR` payload as a result: an ack is `Ok`, an error code an `Err` with the
/// kernel's extended-ack message if it sent one.
fn ack_result(flags: u16, payload: &[u8]) -> Result<(), RtnlError> {
    let err = ErrorBuffer::new_checked(payload)
        .map_err(|e| RtnlError::invalid(format!("bad netlink error message: {e}")))?;
    match err.code() {
        None => Ok(()),
        Some(code) => Err(RtnlError {
            io: io::Error::from_raw_os_error(code.get().saturating_abs()),
            extack: extack_message(flags, err.payload()),
        }),
    }
}

/// The `NLMSGERR_ATTR_MSG` of an error's payload (after the code: the request's header, or
/// the whole request if not capped, then the attributes if `NLM_F_ACK_TLVS`).
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDR_LEN
    } else {
        let len: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        align4(u32::from_ne_bytes(len) as usize)
    };
    let tlvs = payload.get(request_len..)?;
    NlasIterator::new(tlvs)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
        .filter(|text| !text.is_empty())
}

/// Round up to netlink's 4-byte alignment.
fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Whether the namespace tests can run here: as root, with a TUN/TAP device.
    fn privileged() -> bool {
        let root = nix::unistd::geteuid().is_root();
        let tun = Path::new("/dev/net/tun").exists();
        if !(root && tun) {
            eprintln!("skipped: needs root and /dev/net/tun");
        }
        root && tun
    }

    /// Deletes its namespace when dropped, so a failing test leaves nothing behind.
    struct Guard(String);

    impl Guard {
        fn new(suffix: &str) -> Guard {
            let name = format!("vmcnt-{}-{suffix}", std::process::id());
            let _ = delete(&name);
            Guard(name)
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Err(e) = delete(&self.0) {
                eprintln!("cleanup of {}: {e}", self.0);
            }
        }
    }

    /// Run `program args` and return its stdout; panic on failure.
    fn run(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The identity of the calling thread's network namespace.
    fn thread_ns() -> (u64, u64) {
        let m = fs::metadata("/proc/thread-self/ns/net").expect("stat own namespace");
        (m.dev(), m.ino())
    }

    #[test]
    fn pure_helpers() {
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 1, 2, 3), 24),
            Some(Ipv4Addr::new(10, 1, 2, 255))
        );
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 1, 2, 3), 0),
            Some(Ipv4Addr::BROADCAST)
        );
        assert_eq!(broadcast(Ipv4Addr::new(10, 1, 2, 3), 31), None);
        assert_eq!(fmt_mac(&[2, 0, 0, 0, 0xab, 1]), "02:00:00:00:ab:01");
        assert_eq!(align4(13), 16);
        assert_eq!(align4(16), 16);
        assert!(check_name("vmc-lab-a").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(
                matches!(check_name(bad), Err(NetnsError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(check_ifname("vmc-lab-3").is_ok());
        assert!(check_ifname("0123456789abcdef").is_err());
        assert!(!exists("../etc"));
    }

    #[test]
    fn lifecycle() {
        if !privileged() {
            return;
        }
        let guard = Guard::new("a");
        let name = guard.0.clone();
        create(&name).expect("create");
        assert!(exists(&name));
        assert!(list_with_prefix(&format!("vmcnt-{}-", std::process::id())).contains(&name));
        assert!(matches!(create(&name), Err(NetnsError::Exists { .. })));

        let outside = thread_ns();
        let (inside, lo) = run_in(&name, || (thread_ns(), ifindex("lo"))).expect("run_in");
        assert_ne!(inside, outside, "run_in stayed in the caller's namespace");
        assert!(lo.expect("lo in the new namespace") > 0);
        assert_eq!(thread_ns(), outside);

        // `ip netns` sees it, and a process in it is killed by delete.
        run("ip", &["netns", "exec", &name, "true"]);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &name, "sleep", "60"])
            .spawn()
            .expect("spawn sleep");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let in_ns = fs::metadata(ns_path(&name)).expect("stat namespace");
        while !in_namespace(child.id(), &in_ns) {
            assert!(std::time::Instant::now() < deadline, "sleep never entered");
            thread::sleep(std::time::Duration::from_millis(10));
        }

        assert_eq!(delete(&name).expect("delete"), 1);
        assert!(!child.wait().expect("wait").success());
        assert!(!exists(&name));
        assert!(!list_with_prefix(&name).contains(&name));
        assert!(matches!(
            run_in(&name, || ()),
            Err(NetnsError::NotFound { .. })
        ));
    }

    #[test]
    fn delete_missing_is_ok() {
        if !privileged() {
            return;
        }
        let guard = Guard::new("b");
        assert_eq!(delete(&guard.0).expect("delete missing"), 0);
        assert!(!exists(&guard.0));
    }

    #[test]
    fn configure_iface_refuses_root_namespace() {
        // An interface that does not exist, so that nothing could change even if the check
        // did not hold.
        let cfg = IfaceConfig {
            ifname: "vmcnt-none0".to_string(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addr: Ipv4Addr::new(192, 0, 2, 1),
            prefix_len: 24,
            gateway: None,
            gso_max_size: None,
        };
        assert!(matches!(
            configure_iface(&cfg),
            Err(NetnsError::InRootNamespace { .. })
        ));
    }

    #[test]
    fn configure_tap() {
        if !privileged() {
            return;
        }
        let guard = Guard::new("c");
        let name = guard.0.clone();
        create(&name).expect("create");
        let tap = "vmcnt-tap0";
        run(
            "ip",
            &[
                "netns", "exec", &name, "ip", "tuntap", "add", "dev", tap, "mode", "tap",
            ],
        );

        let cfg = IfaceConfig {
            ifname: tap.to_string(),
            mac: [0x02, 0x56, 0x4d, 0x43, 0x00, 0x07],
            mtu: 1400,
            addr: Ipv4Addr::new(10, 9, 8, 7),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 9, 8, 1)),
            gso_max_size: Some(32_000),
        };
        let again = cfg.clone();
        let again_cfg = cfg.clone();
        run_in(&name, move || configure_iface(&cfg))
            .expect("run_in")
            .expect("configure_iface");

        let link = run("ip", &["-n", &name, "-d", "link", "show", tap]);
        assert!(link.contains("link/ether 02:56:4d:43:00:07"), "{link}");
        assert!(link.contains("mtu 1400"), "{link}");
        assert!(link.contains("gso_max_size 32000"), "{link}");
        assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
        let addr = run("ip", &["-n", &name, "-4", "addr", "show", "dev", tap]);
        assert!(addr.contains("inet 10.9.8.7/24 brd 10.9.8.255"), "{addr}");
        let lo = run("ip", &["-n", &name, "link", "show", "lo"]);
        assert!(lo.contains("UP"), "{lo}");
        let route = run("ip", &["-n", &name, "-4", "route", "show", "default"]);
        assert!(
            route.contains(&format!("default via 10.9.8.1 dev {tap}")),
            "{route}"
        );

        // A second run reports the duplicate address, naming the interface and the errno.
        let err = run_in(&name, move || configure_iface(&again))
            .expect("run_in")
            .expect_err("address added twice");
        assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
        assert!(err.to_string().contains(tap), "{err}");

        // A bad MTU is the kernel's EINVAL, with its explanation when it gives one.
        let mut bad = IfaceConfig {
            mtu: 1_000_000,
            ..again_cfg
        };
        bad.gateway = None;
        let err = run_in(&name, move || configure_iface(&bad))
            .expect("run_in")
            .expect_err("MTU over the maximum");
        eprintln!("expected error: {err}");
        assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
        assert!(err.to_string().contains("set MTU 1000000"), "{err}");

        // The tap is nowhere in the root namespace.
        let root = run("ip", &["-4", "addr", "show"]);
        assert!(!root.contains("10.9.8.7"), "{root}");
    }
}
