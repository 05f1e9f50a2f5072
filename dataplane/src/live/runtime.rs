//! The engine of a live lab: one thread runs every node as a direct call, as the sim does, with
//! the monotonic clock for time, and waits in epoll on every TAP, on a timerfd set to the
//! timeline's next event (link delays and rates are the timeline's timestamped queues, never a
//! sleep) and on the signals that end it.

use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use vmcnet_topo::Topology;

use super::control::{self, ControlServer};
use super::netns::{self, IfaceConfig};
use super::port::KernelPort;
use super::probe::mono_ns;
use super::state::{self, LabState};
use super::tap::{
    Tap, VnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_UDP_L4, VNET_HDR_LEN,
};
use super::LabName;
use crate::control::action::Strategy;
use crate::control::Lab;
use crate::node::endpoint::{Endpoint, EndpointConfig};
use crate::runtime::sim::{LinkId, NodeId};
use crate::time::Instant;
use crate::wire::gso::{self, Gso, GsoKind};
use crate::wire::Frame;

/// The largest GSO super-frame a namespace's stack builds: room left under IP's 64 KiB for the
/// Geneve encapsulation (50 bytes) a super-frame gets between two hosts, and to spare.
pub const GSO_MAX_SIZE: u32 = 62 * 1024;

/// Frames read from one TAP before the others get their turn.
pub const BATCH: usize = 32;
/// After frames last moved, the engine polls its TAPs this long before it sleeps.
pub const BUSY_POLL: Duration = Duration::from_micros(100);
/// With an engine CPU ([`LiveLab::pin_engine`]): the engine moves to it when frames have ended
/// [`SHORT_WAKES_TO_PIN`] sleeps in a row, each shorter than [`UNPIN_AFTER_SLEEP`], or when it
/// has been busy this long without a sleep ...
pub const PIN_AFTER: Duration = Duration::from_millis(2);
pub const SHORT_WAKES_TO_PIN: u32 = 2;
/// ... and leaves it when it goes to sleep after a sleep at least this long.
pub const UNPIN_AFTER_SLEEP: Duration = Duration::from_millis(1);
/// The engine wakes at least this often with nothing to do (to notice a stop request).
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// The CPUs of `set`, as `0,1,3`.
pub fn cpu_list(set: &nix::sched::CpuSet) -> String {
    let cpus = (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    cpus.map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// Why the live runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("--cpu {cpu}: this process may run on CPUs {any} only")]
    Cpu { cpu: usize, any: String },
    #[error("lab {lab} is up already (pid {pid}); `vmcnet down {lab}` stops it")]
    Busy { lab: String, pid: u32 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("{name:?} is not an endpoint of the topology; its endpoints: {endpoints}")]
    UnknownEndpoint { name: String, endpoints: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LiveError {
    let what = what.into();
    move |source| LiveError::Io { what, source }
}

fn nix_err(what: &str) -> impl FnOnce(nix::Error) -> LiveError + '_ {
    move |e| LiveError::Io {
        what: what.to_string(),
        source: io::Error::from(e),
    }
}

/// The runtime's clock: the monotonic clock, from the lab's start. Nodes never read it; the
/// runtime passes its readings in.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `CLOCK_MONOTONIC` at instant zero, in ns: every namespace shares that clock, so a
    /// process in one (a probe) stamps its packets on the lab's timeline.
    start_mono_ns: u64,
    /// The wall-clock time of instant zero, for captures' timestamps.
    epoch: SystemTime,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start_mono_ns: mono_ns(),
            epoch: SystemTime::now(),
        }
    }

    pub fn now(&self) -> Instant {
        self.of_mono(mono_ns())
    }

    /// The instant of a `CLOCK_MONOTONIC` reading (zero if before the lab began).
    pub fn of_mono(&self, ns: u64) -> Instant {
        Instant::from_nanos(ns.saturating_sub(self.start_mono_ns))
    }

    /// The `CLOCK_MONOTONIC` reading of an instant.
    pub fn mono_of(&self, t: Instant) -> u64 {
        self.start_mono_ns + t.as_nanos()
    }

    /// The wall-clock time of instant zero.
    pub fn epoch(&self) -> SystemTime {
        self.epoch
    }
}

/// What the lab does with a control request, as its handler decides.
pub enum Answer {
    /// Answer with this exit status and text.
    Text { code: u8, text: String },
    /// Stream a pcap of this link to the client until it goes away; with a pair of addresses,
    /// only the IPv4 packets between them (the overlay between two hosts' TEPs, on one host's
    /// underlay link).
    Capture(LinkId, Option<(Ipv4Addr, Ipv4Addr)>),
}

/// Decides what each control request does: the command line's, in the binary.
pub type Handler<'a> = dyn FnMut(&mut LiveLab, &[String]) -> Answer + 'a;

/// One live endpoint: its node in the lab, its namespace and its TAP.
pub struct LivePort {
    pub node: NodeId,
    pub tap: Tap,
    /// The endpoint it stands for (its name, address, MAC); its namespace is the lab's
    /// [`LabName::netns`] of that name.
    pub config: EndpointConfig,
}

/// Why [`LiveLab::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`vmcnet down`, or a service manager).
    Terminate,
}

impl Ended {
    /// The exit status a shell expects: 128 + the signal's number.
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Interrupt => 130,
            Ended::Terminate => 143,
        }
    }
}

/// The flags the signals that end a lab set, and a pipe that wakes the engine.
pub struct Signals {
    pub interrupt: Arc<AtomicBool>,
    pub terminate: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    /// Catch SIGINT, SIGTERM and SIGHUP (which ends a lab as SIGTERM does).
    pub fn install() -> io::Result<Signals> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        signal_hook::flag::register(SIGINT, interrupt.clone())?;
        signal_hook::flag::register(SIGTERM, terminate.clone())?;
        signal_hook::flag::register(SIGHUP, terminate.clone())?;
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        Ok(Signals {
            interrupt,
            terminate,
            wake,
        })
    }

    /// The signal that arrived, if any.
    pub fn ended(&self) -> Option<Ended> {
        if self.interrupt.load(Ordering::Relaxed) {
            Some(Ended::Interrupt)
        } else if self.terminate.load(Ordering::Relaxed) {
            Some(Ended::Terminate)
        } else {
            None
        }
    }
}

/// A lab whose endpoints are kernels in namespaces.
pub struct LiveLab {
    pub name: LabName,
    pub lab: Lab,
    pub ports: Vec<LivePort>,
    state: LabState,
    clock: Clock,
    /// Captures streaming to clients, with the flag that rises when the client went away.
    captures: Vec<(LinkId, Arc<AtomicBool>)>,
    /// Held for the lab's life; let go last.
    lock: Option<state::LabLock>,
    /// When frames last moved between the lab and a kernel.
    last_busy: Instant,
    /// The engine's CPU, if it has one.
    pin: Option<Pinning>,
}

/// Where the engine thread runs: on its own CPU while a stream keeps it busy, anywhere while
/// traffic comes now and then. Measured on 2 cores (`make bench-live`): pinned, one iperf3
/// stream runs about 15% faster, as the kernels' stacks keep the other core; but a ping then
/// wakes the pinned CPU from idle, which on a VM costs tens of microseconds a round trip, where
/// the kernel would have woken the engine on the pinging CPU, awake already.
pub struct Pinning {
    /// The engine's CPU, alone and as a set.
    cpu: usize,
    engine: nix::sched::CpuSet,
    /// The CPUs the process may use, for when the engine is not pinned.
    any: nix::sched::CpuSet,
    pinned: bool,
    /// When the engine last went to sleep, and when it woke from that sleep.
    asleep_since: Instant,
    awake_since: Instant,
    /// How many wakes in a row frames ended a sleep shorter than [`UNPIN_AFTER_SLEEP`].
    short_wakes: u32,
}

impl Pinning {
    /// The engine's CPU `cpu`: one the process may run on.
    pub fn new(cpu: usize) -> Result<Pinning, LiveError> {
        use nix::sched::{sched_getaffinity, CpuSet};
        let any = sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map_err(nix_err("sched_getaffinity"))?;
        let mut engine = CpuSet::new();
        if !any.is_set(cpu).unwrap_or(false) || engine.set(cpu).is_err() {
            return Err(LiveError::Cpu {
                cpu,
                any: cpu_list(&any),
            });
        }
        Ok(Pinning {
            cpu,
            engine,
            any,
            pinned: false,
            asleep_since: Instant::ZERO,
            awake_since: Instant::ZERO,
            short_wakes: 0,
        })
    }

    /// Where the engine's helper threads (a capture's writer) run: every CPU the process may
    /// use but the engine's, or all of them if that is the only one.
    pub fn helpers(&self) -> nix::sched::CpuSet {
        let mut others = self.any;
        let _ = others.unset(self.cpu);
        let any_left = (0..nix::sched::CpuSet::count()).any(|c| others.is_set(c).unwrap_or(false));
        if any_left {
            others
        } else {
            self.any
        }
    }

    /// Whether the engine should be on its CPU, at `now`, as it is about to sleep
    /// (`sleeping`) or to poll on.
    fn wants_pinned(&mut self, now: Instant, sleeping: bool) -> bool {
        if sleeping {
            let last_sleep = self.awake_since.saturating_since(self.asleep_since);
            self.asleep_since = now;
            // A long sleep before this one: traffic comes now and then, not as a stream.
            self.pinned && last_sleep < UNPIN_AFTER_SLEEP
        } else {
            // Woken by frames after short sleeps, or busy for a while: a stream.
            self.pinned
                || self.short_wakes >= SHORT_WAKES_TO_PIN
                || now.saturating_since(self.awake_since) >= PIN_AFTER
        }
    }

    /// The engine woke from a sleep at `now`, by frames from a kernel (`by_frames`) or else.
    fn woke(&mut self, now: Instant, by_frames: bool) {
        self.awake_since = now;
        // A short sleep ended by a timer (a link's delay) says nothing of a stream.
        let short = now.saturating_since(self.asleep_since) < UNPIN_AFTER_SLEEP;
        self.short_wakes = match by_frames && short {
            true => self.short_wakes.saturating_add(1),
            false => 0,
        };
    }
}

/// What `up` found left by a lab whose owner died, and removed.
pub type Cleaned = Vec<String>;

impl LiveLab {
    /// Build the lab of `topo` with its endpoints (VMs, EC2 instances, S3; all of them, or those
    /// named in `only`) live: a namespace each, a TAP in it served by this process; the others
    /// stay the sim's endpoints. First removes what a dead owner of the same lab
    /// left. On failure, removes what it created.
    pub fn up(
        topo: &Topology,
        topo_path: &str,
        name: LabName,
        seed: u64,
        only: Option<&[String]>,
    ) -> Result<(LiveLab, Cleaned), LiveError> {
        let (mut plan, model) = Lab::plan(topo, seed);
        let endpoints: Vec<String> = (0..plan.nodes.len())
            .filter_map(|id| Some(plan.get_mut::<Endpoint>(id)?.config().name.clone()))
            .collect();
        if let Some(unknown) = only.into_iter().flatten().find(|n| !endpoints.contains(n)) {
            return Err(LiveError::UnknownEndpoint {
                name: unknown.clone(),
                endpoints: endpoints.join(", "),
            });
        }
        let (lock, cleaned) = take_over(&name)?;
        let mut configs = Vec::new();
        for id in 0..plan.nodes.len() {
            let Some(ep) = plan.get_mut::<Endpoint>(id) else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&ep.config().name)) {
                // Not live: it stays the sim's endpoint (it answers ARP and ping).
                continue;
            }
            let config = ep.config().clone();
            plan.nodes[id] = Box::new(KernelPort::new(config.clone()));
            configs.push((id, config));
        }
        let mut lab = Lab::from_plan(topo, plan, model);
        // The SDDC as VMC runs it: the reconciler keeps the uplink and the routes on the
        // active Edge's host; NSX and vSphere react to failures.
        lab.set_reconciler(Some(Strategy::IpMove));
        lab.set_sddc_automation(true);

        let mut live = LiveLab {
            state: LabState {
                lab: name.to_string(),
                pid: std::process::id(),
                topology: topo_path.to_string(),
                namespaces: Vec::new(),
                socket: state::socket_path(&name).display().to_string(),
            },
            name,
            lab,
            ports: Vec::new(),
            clock: Clock::start(),
            captures: Vec::new(),
            lock: Some(lock),
            last_busy: Instant::ZERO,
            pin: None,
        };
        for (i, (node, config)) in configs.into_iter().enumerate() {
            live.add_port(i, node, config)?;
        }
        live.clock = Clock::start();
        Ok((live, cleaned))
    }

    /// Record, create and configure the namespace of one endpoint, with its TAP.
    fn add_port(
        &mut self,
        i: usize,
        node: NodeId,
        config: EndpointConfig,
    ) -> Result<(), LiveError> {
        let ns = self.name.netns(&config.name);
        self.state
            .namespaces
            .push((config.name.clone(), ns.clone()));
        state::write(&self.name, &self.state).map_err(io_err(format!(
            "writing {}",
            state::path(&self.name).display()
        )))?;
        netns::create(&ns)?;
        let tap_name = self.name.tap(i);
        let iface = IfaceConfig {
            ifname: tap_name.clone(),
            mac: config.mac.0,
            mtu: config.ip_mtu as u32,
            addr: config.ip,
            prefix_len: config.prefix_len,
            gateway: (!config.gateway.is_unspecified()).then_some(config.gateway),
            gso_max_size: Some(GSO_MAX_SIZE),
        };
        let tap = netns::run_in(&ns, move || -> Result<Tap, LiveError> {
            let tap = Tap::open_with_offloads(&tap_name)
                .map_err(io_err(format!("creating TAP {tap_name}")))?;
            netns::configure_iface(&iface)?;
            Ok(tap)
        })??;
        self.ports.push(LivePort { node, tap, config });
        Ok(())
    }

    /// Run the engine on its CPU while a stream keeps it busy ([`PIN_AFTER`]), anywhere the
    /// process may run while it sleeps between frames.
    pub fn pin_engine(&mut self, mut pinning: Pinning) {
        let now = self.clock.now();
        (pinning.asleep_since, pinning.awake_since) = (now, now);
        self.pin = Some(pinning);
    }

    /// Pin or unpin the engine: it is about to sleep (`sleeping`) or to poll again.
    fn place_engine(&mut self, now: Instant, sleeping: bool) {
        if let Some(pin) = self.pin.as_mut().map(|p| p.wants_pinned(now, sleeping)) {
            self.set_pinned(pin);
        }
    }

    /// Move the engine to its CPU, or let it run anywhere. Pinning is only a matter of speed:
    /// should the kernel refuse (the CPU went offline, a cpuset changed), the engine says so
    /// once and runs on, anywhere.
    fn set_pinned(&mut self, pin: bool) {
        let Some(p) = self.pin.as_mut().filter(|p| p.pinned != pin) else {
            return;
        };
        let to = if pin { &p.engine } else { &p.any };
        let me = nix::unistd::Pid::from_raw(0);
        match nix::sched::sched_setaffinity(me, to) {
            Ok(()) => p.pinned = pin,
            Err(e) => {
                eprintln!("vmcnet: the engine cannot be pinned ({e}); it runs anywhere");
                let _ = nix::sched::sched_setaffinity(me, &p.any);
                self.pin = None;
            }
        }
    }

    /// The runtime's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Start the lab's clock `lead` from now, so that its instant zero is when what a drill
    /// sets up has started. Only before the lab first runs.
    pub fn start_clock_in(&mut self, lead: Duration) {
        debug_assert_eq!(self.lab.sim.now(), Instant::ZERO, "the lab has run already");
        self.clock = Clock {
            start_mono_ns: mono_ns() + lead.as_nanos() as u64,
            epoch: SystemTime::now() + lead,
        };
    }

    /// Listen on the lab's control socket: before the lab is announced, so that a `ctl` sent
    /// as soon as `up` says the lab is up finds it.
    pub fn listen(&self) -> Result<ControlServer, LiveError> {
        let path = state::socket_path(&self.name);
        ControlServer::listen(&path).map_err(io_err(format!("listening on {}", path.display())))
    }

    /// Serve the control socket (`/run/vmcnet/LAB.sock`, from [`LiveLab::listen`]) and run
    /// until a signal ends the lab; `handler` decides what each request does.
    pub fn serve(
        &mut self,
        server: ControlServer,
        signals: &Signals,
        handler: &mut Handler,
    ) -> Result<Ended, LiveError> {
        match self.run(signals, Some((&server, handler)), None)? {
            Some(ended) => Ok(ended),
            None => unreachable!("a run without a deadline ends by a signal"),
        }
    }

    /// Run until a signal ends the lab (`Some`) or until `until` (`None`), answering control
    /// requests if a server is given.
    pub fn run(
        &mut self,
        signals: &Signals,
        mut control: Option<(&ControlServer, &mut Handler)>,
        until: Option<Instant>,
    ) -> Result<Option<Ended>, LiveError> {
        const SIGNAL: u64 = u64::MAX;
        const TIMER: u64 = u64::MAX - 1;
        const CONTROL: u64 = u64::MAX - 2;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(nix_err("epoll"))?;
        for (i, p) in self.ports.iter().enumerate() {
            epoll
                .add(
                    p.tap.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, i as u64),
                )
                .map_err(nix_err("epoll_ctl"))?;
        }
        epoll
            .add(
                signals.wake.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL),
            )
            .map_err(nix_err("epoll_ctl"))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(nix_err("timerfd"))?;
        epoll
            .add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TIMER))
            .map_err(nix_err("epoll_ctl"))?;

        if let Some((server, _)) = &control {
            epoll
                .add(
                    server.wake.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, CONTROL),
                )
                .map_err(nix_err("epoll_ctl"))?;
        }
        let mut buf = vec![0u8; VNET_HDR_LEN + 65_535 + 14];
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            let now = self.clock.now();
            self.lab.run_until(now);
            self.flush();
            self.sweep_captures();
            if let Some(ended) = signals.ended() {
                return Ok(Some(ended));
            }
            if until.is_some_and(|u| now >= u) {
                return Ok(None);
            }
            let next = [self.lab.sim.next_event_at(), until]
                .into_iter()
                .flatten()
                .min();
            let wait = match next {
                Some(at) => at.saturating_since(now).min(IDLE_WAKE),
                None => IDLE_WAKE,
            };
            // Busy a moment ago: poll rather than sleep, as NAPI does, so that a stream's next
            // frames do not each pay for a wake-up. Idle, the engine sleeps.
            let busy = now.saturating_since(self.last_busy) < BUSY_POLL;
            let sleeping = !(wait.is_zero() || busy);
            self.place_engine(now, sleeping);
            let timeout = if !sleeping {
                EpollTimeout::ZERO
            } else {
                timer
                    .set(
                        Expiration::OneShot(TimeSpec::from_duration(wait)),
                        TimerSetTimeFlags::empty(),
                    )
                    .map_err(nix_err("timerfd_settime"))?;
                EpollTimeout::NONE
            };
            let n = match epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => 0,
                Err(e) => return Err(nix_err("epoll_wait")(e)),
            };
            // Frames are handed in at the instant they were read, once the timeline has
            // caught up with it.
            let now = self.clock.now();
            if sleeping {
                let by_frames = events[..n].iter().any(|e| e.data() < CONTROL);
                if let Some(p) = &mut self.pin {
                    p.woke(now, by_frames);
                }
            }
            self.lab.run_until(now);
            for ev in &events[..n] {
                match ev.data() {
                    SIGNAL => drain(&signals.wake),
                    CONTROL => {
                        if let Some((server, handler)) = control.as_mut() {
                            server.drain_wake();
                            while let Ok(req) = server.requests.try_recv() {
                                self.answer(req, handler);
                            }
                        }
                    }
                    TIMER => {
                        let _ = timer.unset();
                    }
                    i => self.receive(i as usize, &mut buf),
                }
            }
        }
    }

    /// Answer one control request.
    fn answer(&mut self, req: control::Request, handler: &mut Handler) {
        let answer = handler(self, &req.args);
        let result = match answer {
            Answer::Text { code, text } => control::answer(&req.conn, code, &text),
            Answer::Capture(link, between) => {
                if self.captures.iter().any(|(l, _)| *l == link) {
                    let name = &self.lab.sim.links()[link].name;
                    control::answer(
                        &req.conn,
                        2,
                        &format!("vmcnet: {name} is captured already\n"),
                    )
                } else {
                    // Its writer thread keeps off a pinned engine's CPU.
                    let cpus = self.pin.as_ref().map(Pinning::helpers);
                    let epoch = self.clock.epoch();
                    match control::capture_stream(req.conn, epoch, between, cpus) {
                        Ok(sink) => {
                            self.captures.push((link, sink.closed.clone()));
                            self.lab.sim.capture(link, Box::new(sink));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        // A client that went away has nothing to be told.
        let _ = result;
    }

    /// Stop the captures whose client went away.
    fn sweep_captures(&mut self) {
        let sim = &mut self.lab.sim;
        self.captures.retain(|(link, closed)| {
            if closed.load(Ordering::Relaxed) {
                sim.take_capture(*link);
                false
            } else {
                true
            }
        });
    }

    /// Read up to [`BATCH`] frames from port `i`'s TAP into the lab.
    fn receive(&mut self, i: usize, buf: &mut [u8]) {
        let Some(p) = self.ports.get(i) else {
            return;
        };
        let node = p.node;
        for _ in 0..BATCH {
            let n = match self.ports[i].tap.recv(buf) {
                Ok(n) => n,
                Err(_) => break,
            };
            let Some(hdr) = VnetHdr::parse(&buf[..n]) else {
                continue;
            };
            let port = self.lab.sim.get_mut::<KernelPort>(node);
            let Some(port) = port else { return };
            let Some(frame) = from_kernel(hdr, &buf[VNET_HDR_LEN..n]) else {
                port.counters.rx_dropped_offload += 1;
                continue;
            };
            port.counters.rx_frames += 1;
            port.counters.rx_bytes += frame.len() as u64;
            self.last_busy = self.clock.now();
            self.lab.sim.emit(node, 0, frame);
        }
    }

    /// Write what the lab sent each kernel to its TAP.
    fn flush(&mut self) {
        for p in &self.ports {
            let Some(port) = self.lab.sim.get_mut::<KernelPort>(p.node) else {
                continue;
            };
            while let Some(mut frame) = port.pop() {
                let len = frame.len();
                let hdr = to_kernel(&frame);
                hdr.write(frame.prepend(VNET_HDR_LEN));
                match p.tap.send(&frame) {
                    Ok(_) => {
                        port.counters.tx_frames += 1;
                        port.counters.tx_bytes += len as u64;
                        let max = &mut port.counters.tx_max_frame_bytes;
                        *max = (*max).max(len as u64);
                    }
                    // The kernel's queue is full, or the interface is down: dropped, as a NIC
                    // drops.
                    Err(_) => port.counters.tx_dropped += 1,
                }
            }
        }
    }

    /// The state file's record.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Remove the lab's namespaces (and every process in them), its TAPs, its state file and
    /// its control socket.
    pub fn down(mut self) -> Result<state::Removed, LiveError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<state::Removed, LiveError> {
        let Some(lock) = self.lock.take() else {
            return Ok(state::Removed::default());
        };
        // TAPs go when their file descriptor closes.
        self.ports.clear();
        let what = format!("removing lab {}", self.name);
        let removed = state::remove(&self.name).map_err(io_err(what.clone()))?;
        state::unlock(&self.name, lock).map_err(io_err(what))?;
        Ok(removed)
    }
}

impl Drop for LiveLab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("vmcnet: removing lab {}: {e}", self.name);
        }
    }
}

/// A frame from a kernel, with what its virtio-net header says: a checksum left partial is
/// completed here (one pass over bytes just read); a GSO super-frame keeps its metadata and
/// crosses the lab whole. `None` for an offload the lab does not take (IPv6 segmentation).
fn from_kernel(hdr: VnetHdr, bytes: &[u8]) -> Option<Frame> {
    let mut frame = Frame::copy_from_slice(bytes);
    let partial = hdr.flags & VNET_F_NEEDS_CSUM != 0;
    let kind = match hdr.gso_type {
        VNET_GSO_NONE => {
            if partial
                && !gso::complete_checksum(
                    &mut frame,
                    hdr.csum_start as usize,
                    hdr.csum_offset as usize,
                )
            {
                return None;
            }
            return Some(frame);
        }
        VNET_GSO_TCPV4 => GsoKind::Tcp4,
        VNET_GSO_UDP_L4 => GsoKind::Udp4,
        _ => return None,
    };
    if !partial || hdr.gso_size == 0 {
        return None;
    }
    let gso = Gso {
        kind,
        size: hdr.gso_size,
        csum_start: hdr.csum_start,
        csum_offset: hdr.csum_offset,
    };
    frame.set_gso(Some(gso)).then_some(frame)
}

/// The virtio-net header a frame goes to a kernel with: a super-frame's metadata, or none.
fn to_kernel(frame: &Frame) -> VnetHdr {
    let Some(g) = frame.gso() else {
        return VnetHdr::default();
    };
    VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: match g.kind {
            GsoKind::Tcp4 => VNET_GSO_TCPV4,
            GsoKind::Udp4 => VNET_GSO_UDP_L4,
        },
        hdr_len: g.header_len(frame).unwrap_or(0) as u16,
        gso_size: g.size,
        csum_start: g.csum_start,
        csum_offset: g.csum_offset,
    }
}

/// Take the lab's lock, refusing a lab whose owner runs; remove what a dead owner left.
/// Returns the lock and what was removed.
fn take_over(name: &LabName) -> Result<(state::LabLock, Cleaned), LiveError> {
    let lock = state::try_lock(name).map_err(io_err(format!("locking lab {name}")))?;
    let Some(lock) = lock else {
        let pid = state::read(name).ok().flatten().map_or(0, |s| s.pid);
        return Err(LiveError::Busy {
            lab: name.to_string(),
            pid,
        });
    };
    let removed = state::remove(name).map_err(io_err(format!("removing lab {name}")))?;
    Ok((lock, removed.namespaces))
}

fn drain(mut s: &UnixStream) {
    let mut b = [0u8; 64];
    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pinning on a CPU this process may use, its clock at `t(0)`.
    fn pinning() -> Pinning {
        let any = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        let cpu = (0..nix::sched::CpuSet::count()).find(|&c| any.is_set(c).unwrap_or(false));
        Pinning::new(cpu.expect("a CPU")).unwrap()
    }

    fn t(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// Sleep from `at` for `us`, woken by frames or not; then whether it wants its CPU on the
    /// poll that follows. `p.pinned` follows what it wants, as `set_pinned` makes it.
    fn sleep(p: &mut Pinning, at: u64, us: u64, by_frames: bool) -> bool {
        p.pinned = p.wants_pinned(t(at), true);
        p.woke(t(at + us), by_frames);
        p.pinned = p.wants_pinned(t(at + us), false);
        p.pinned
    }

    #[test]
    fn frames_ending_short_sleeps_twice_in_a_row_pin_the_engine() {
        let mut p = pinning();
        assert!(
            !sleep(&mut p, 0, 50, true),
            "one short wake is not a stream"
        );
        assert!(sleep(&mut p, 200, 50, true), "two are");
        // Short sleeps keep it there.
        assert!(sleep(&mut p, 400, 300, true));
        assert!(sleep(&mut p, 800, 900, false));
    }

    #[test]
    fn short_sleeps_ended_by_a_timer_or_broken_by_a_long_one_do_not_pin() {
        let mut p = pinning();
        // A ping over links that take time: timers end the short sleeps.
        for k in 0..10 {
            assert!(!sleep(&mut p, k * 200_000, 250, false));
            assert!(!sleep(&mut p, k * 200_000 + 300, 250, false));
            // Then the long wait for the next ping, which frames end.
            assert!(!sleep(&mut p, k * 200_000 + 600, 199_000, true));
        }
        // A short wake by frames after a long sleep counts once, not twice.
        assert!(!sleep(&mut p, 2_000_000, 5_000, true));
        assert!(!sleep(&mut p, 2_010_000, 50, true));
    }

    #[test]
    fn busy_for_a_while_pins_and_a_long_sleep_then_a_sleep_unpins() {
        let mut p = pinning();
        p.woke(t(100), true);
        assert!(!p.wants_pinned(t(1_100), false), "busy 1 ms");
        p.pinned = p.wants_pinned(t(2_100), false);
        assert!(p.pinned, "busy 2 ms: a stream");
        // The stream ends: the engine sleeps (pinned) until traffic comes again, 1 s later.
        assert!(sleep(&mut p, 2_200, 1_000_000, true));
        // At its next sleep it lets go, and stays off for the pings that follow.
        assert!(!p.wants_pinned(t(1_002_300), true));
        p.pinned = false;
        p.woke(t(1_202_300), true);
        assert!(!p.wants_pinned(t(1_202_400), false));
    }
}
