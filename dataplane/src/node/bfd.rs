//! A BFD session in asynchronous mode (RFC 5880), as the NSX Edges run between them to tell
//! whether the other is alive. The session is a state machine with no I/O: it takes control
//! packets and the passing of time, gives control packets out, and says when it came up or
//! went down; the Edge that holds it carries the packets and passes the news on.
//!
//! Simplifications, each deterministic by design:
//! - packets go at the multiples of the interval, in every state: no jitter (RFC 5880 §6.8.7
//!   asks for 0–25% less), and no slower pace while the session is not up (§6.8.3);
//! - both ends are configured alike, so the detection time is the remote's multiplier times
//!   the larger of our required receive interval and its desired transmit interval (§6.8.4);
//! - no authentication, echo, demand mode or poll sequence.
//!
//! Beside the session's state, it keeps what an HA pair needs to know: whether the peer is
//! dead, that is, nothing was heard from it for the detection time (from the session's start,
//! if nothing ever was). A peer that says Down is alive: the session comes back up with it.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::Notice;
use crate::counters;
use crate::time::Instant;
use crate::wire::bfd::{self, Control, State};
use crate::wire::{Frame, MacAddr};

/// A session's configuration, as the control plane programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdConfig {
    pub local: (MacAddr, Ipv4Addr),
    /// The peer, MAC and address both programmed (no ARP).
    pub peer: (MacAddr, Ipv4Addr),
    pub interval: Duration,
    pub multiplier: u8,
    /// Our discriminator, not zero.
    pub discriminator: u32,
}

counters! {
    /// A BFD session's packets and transitions.
    pub struct BfdCounters {
        pub bfd_tx,
        pub bfd_rx,
        /// Received but not for this session (another discriminator) or malformed.
        pub bfd_rx_discarded,
        /// The session came up.
        pub bfd_up,
        /// The session left Up (the peer fell silent, or said it was down).
        pub bfd_down,
        /// The peer was declared dead: nothing heard for the detection time.
        pub bfd_peer_dead,
    }
}

/// One BFD session.
#[derive(Debug)]
pub struct Session {
    cfg: BfdConfig,
    state: State,
    diag: u8,
    remote_discriminator: u32,
    /// The detection time, from the last packet received.
    detect: Duration,
    /// When the peer was last heard from, or (nothing heard yet) when the session started: the
    /// detection time runs from here.
    last_heard: Instant,
    /// Nothing was heard from the peer for the detection time, nor since.
    peer_dead: bool,
    next_tx: Instant,
    pub counters: BfdCounters,
}

impl Session {
    /// A session, Down, that sends its first packet at the first multiple of the interval at or
    /// after `now`.
    pub fn new(cfg: BfdConfig, now: Instant) -> Session {
        let detect = cfg.interval.saturating_mul(u32::from(cfg.multiplier));
        let next_tx = next_multiple(now, cfg.interval, true);
        Session {
            cfg,
            state: State::Down,
            diag: bfd::DIAG_NONE,
            remote_discriminator: 0,
            detect,
            last_heard: now,
            peer_dead: false,
            next_tx,
            counters: BfdCounters::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &BfdConfig {
        &self.cfg
    }

    /// Whether the peer is dead: nothing heard from it for the detection time, nor since.
    pub fn peer_dead(&self) -> bool {
        self.peer_dead
    }

    /// When the session declares its peer dead if nothing arrives: the detection time after
    /// the last packet received (or the session's start), unless it is dead already.
    fn detect_at(&self) -> Option<Instant> {
        (!self.peer_dead).then(|| self.last_heard + self.detect)
    }

    /// When the session next wants [`Session::poll`] called.
    pub fn poll_at(&self) -> Instant {
        self.detect_at()
            .map_or(self.next_tx, |d| d.min(self.next_tx))
    }

    /// Time passed: declare the peer dead once the detection time has gone by without a packet,
    /// then send the packet due, if one is. Returns the packet and what to tell the control plane.
    pub fn poll(&mut self, now: Instant) -> (Option<Frame>, Option<Notice>) {
        let mut change = None;
        if self.detect_at().is_some_and(|d| now >= d) {
            // RFC 5880 §6.8.1: forget the remote's discriminator, and leave Init or Up.
            if self.state != State::Down {
                self.set_state(State::Down, bfd::DIAG_DETECTION_TIME_EXPIRED);
            }
            self.remote_discriminator = 0;
            self.peer_dead = true;
            self.counters.bfd_peer_dead += 1;
            change = Some(Notice::BfdPeerDead);
        }
        let mut sent = None;
        if now >= self.next_tx {
            sent = Some(self.packet());
            self.counters.bfd_tx += 1;
            self.next_tx = next_multiple(now, self.cfg.interval, false);
        }
        (sent, change)
    }

    /// A frame arrived on the node's port for the session: take it if it is a control packet for us (RFC
    /// 5880 §6.8.6). Returns what to tell the control plane.
    pub fn receive(&mut self, now: Instant, frame: &[u8]) -> Option<Notice> {
        let Some(c) = bfd::parse(frame).filter(|c| {
            c.your_discriminator == 0 || c.your_discriminator == self.cfg.discriminator
        }) else {
            self.counters.bfd_rx_discarded += 1;
            return None;
        };
        self.counters.bfd_rx += 1;
        self.remote_discriminator = c.my_discriminator;
        let required_rx = self.cfg.interval;
        let remote_tx = Duration::from_micros(u64::from(c.desired_min_tx_us));
        self.detect = required_rx
            .max(remote_tx)
            .saturating_mul(u32::from(c.detect_mult));
        self.last_heard = now;
        self.peer_dead = false;
        match (self.state, c.state) {
            (State::Down | State::Init | State::Up, State::AdminDown) => {
                self.set_state(State::Down, bfd::DIAG_NEIGHBOR_DOWN)
            }
            (State::Down, State::Down) => self.set_state(State::Init, bfd::DIAG_NONE),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.set_state(State::Up, bfd::DIAG_NONE)
            }
            (State::Up, State::Down) => self.set_state(State::Down, bfd::DIAG_NEIGHBOR_DOWN),
            _ => None,
        }
    }

    fn set_state(&mut self, to: State, diag: u8) -> Option<Notice> {
        let from = std::mem::replace(&mut self.state, to);
        if from == to {
            return None;
        }
        self.diag = diag;
        match (from, to) {
            (_, State::Up) => {
                self.counters.bfd_up += 1;
                Some(Notice::BfdUp)
            }
            (State::Up, _) => {
                self.counters.bfd_down += 1;
                None
            }
            _ => None,
        }
    }

    fn packet(&self) -> Frame {
        let us = u32::try_from(self.cfg.interval.as_micros()).unwrap_or(u32::MAX);
        let c = Control {
            diag: self.diag,
            state: self.state,
            detect_mult: self.cfg.multiplier,
            my_discriminator: self.cfg.discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx_us: us,
            required_min_rx_us: us,
        };
        bfd::frame(self.cfg.local, self.cfg.peer, &c)
    }
}

/// The first multiple of `interval` after `now` (or at it, with `inclusive`).
fn next_multiple(now: Instant, interval: Duration, inclusive: bool) -> Instant {
    let i = interval.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
    let n = now.as_nanos();
    let k = if inclusive { n.div_ceil(i) } else { n / i + 1 };
    Instant::from_nanos(k.saturating_mul(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(500);
    const MULT: u8 = 3;

    fn pair() -> (Session, Session) {
        let a = (MacAddr::local(0xed, 1), Ipv4Addr::new(169, 254, 0, 1));
        let b = (MacAddr::local(0xed, 2), Ipv4Addr::new(169, 254, 0, 2));
        let cfg = |local, peer, discriminator| BfdConfig {
            local,
            peer,
            interval: INTERVAL,
            multiplier: MULT,
            discriminator,
        };
        (
            Session::new(cfg(a, b, 1), Instant::ZERO),
            Session::new(cfg(b, a, 2), Instant::ZERO),
        )
    }

    /// Run both sessions until `end`, packets crossing in `delay` unless `cut` says the path is
    /// down at the instant one is sent. Packets due are delivered before the sessions are
    /// polled. Returns each side's transitions with their instants.
    #[allow(clippy::type_complexity)]
    fn run(
        s: &mut (Session, Session),
        end: Instant,
        delay: Duration,
        cut: impl Fn(Instant) -> bool,
    ) -> (Vec<(Instant, Notice)>, Vec<(Instant, Notice)>) {
        let mut in_flight: Vec<(Instant, bool, Frame)> = Vec::new();
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        loop {
            let now = [s.0.poll_at(), s.1.poll_at()]
                .into_iter()
                .chain(in_flight.iter().map(|f| f.0))
                .min()
                .expect("timers");
            if now > end {
                return (ta, tb);
            }
            while let Some(i) = in_flight.iter().position(|f| f.0 <= now) {
                let (_, to_a, f) = in_flight.remove(i);
                let (side, log) = if to_a {
                    (&mut s.0, &mut ta)
                } else {
                    (&mut s.1, &mut tb)
                };
                if let Some(t) = side.receive(now, &f) {
                    log.push((now, t));
                }
            }
            for (to_a, side, log) in [(false, &mut s.0, &mut ta), (true, &mut s.1, &mut tb)] {
                if side.poll_at() <= now {
                    let (f, t) = side.poll(now);
                    if let Some(t) = t {
                        log.push((now, t));
                    }
                    if let Some(f) = f.filter(|_| !cut(now)) {
                        in_flight.push((now + delay, to_a, f));
                    }
                }
            }
        }
    }

    #[test]
    fn two_sessions_come_up_in_three_packets_each_way() {
        let mut s = pair();
        let d = Duration::from_micros(40);
        let (a, b) = run(&mut s, Instant::from_millis(10_000), d, |_| false);
        // Down/Down at 0 makes both Init; Init at one interval makes both Up.
        let up = Instant::ZERO + INTERVAL + d;
        assert_eq!(a, vec![(up, Notice::BfdUp)]);
        assert_eq!(b, vec![(up, Notice::BfdUp)]);
        assert_eq!(s.0.state(), State::Up);
        // A packet every interval from 0 to 10 s, each way.
        let sent = 10_000 / INTERVAL.as_millis() as u64 + 1;
        assert_eq!(s.0.counters.bfd_tx, sent);
        // The last one is still on its way at the end.
        assert_eq!(s.1.counters.bfd_rx, sent - 1);
    }

    #[test]
    fn a_silent_peer_is_dead_multiplier_intervals_after_its_last_packet() {
        let mut s = pair();
        let d = Duration::from_micros(40);
        let cut_at = Instant::from_millis(4_200);
        let (a, b) = run(&mut s, Instant::from_millis(10_000), d, |t| t >= cut_at);
        let last = Instant::from_millis(4_000) + d;
        let dead = last + INTERVAL * u32::from(MULT);
        assert_eq!(a[1], (dead, Notice::BfdPeerDead));
        assert_eq!(b[1], (dead, Notice::BfdPeerDead));
        assert!(s.0.peer_dead());
        assert_eq!(a.len(), 2, "no flapping once down: {a:?}");
        assert_eq!(s.0.state(), State::Down);
    }

    #[test]
    fn a_healed_path_brings_the_session_back_one_interval_after_the_first_packet() {
        let mut s = pair();
        let d = Duration::from_micros(40);
        let (cut, heal) = (Instant::from_millis(2_000), Instant::from_millis(6_100));
        let (a, _) = run(&mut s, Instant::from_millis(10_000), d, |t| {
            t >= cut && t < heal
        });
        // First packets through at 6.5 s (Down: both go Init), Up at 7.0 s.
        let up = Instant::from_millis(7_000) + d;
        assert_eq!(a.last(), Some(&(up, Notice::BfdUp)));
        assert_eq!(a.len(), 3, "up, down, up: {a:?}");
    }

    #[test]
    fn a_peer_that_says_down_takes_the_session_down_and_strangers_are_ignored() {
        let (mut a, mut b) = pair();
        let t = Instant::from_millis(1_000);
        let (fb, _) = b.poll(Instant::ZERO);
        assert_eq!(a.receive(Instant::ZERO, &fb.expect("sent")), None);
        let (fa, _) = a.poll(Instant::ZERO);
        b.receive(Instant::ZERO, &fa.expect("sent"));
        let (fb, _) = b.poll(Instant::ZERO + INTERVAL);
        assert_eq!(
            a.receive(Instant::ZERO + INTERVAL, &fb.expect("sent")),
            Some(Notice::BfdUp)
        );
        // Another session's packet (its "your discriminator" is not ours) changes nothing.
        let stranger = bfd::frame(
            (MacAddr::local(0xed, 3), Ipv4Addr::new(169, 254, 0, 3)),
            a.config().local,
            &Control {
                diag: 0,
                state: State::Down,
                detect_mult: 3,
                my_discriminator: 77,
                your_discriminator: 76,
                desired_min_tx_us: 1,
                required_min_rx_us: 1,
            },
        );
        assert_eq!(a.receive(t, &stranger), None);
        assert_eq!(a.counters.bfd_rx_discarded, 1);
        assert_eq!(a.state(), State::Up);
        // The peer restarted: it says Down, and the session goes down with it; the peer is
        // alive, so nothing is said of it, and the session comes back up with the peer.
        let (_, b2) = pair();
        let mut b2 = b2;
        let (f, _) = b2.poll(t);
        assert_eq!(a.receive(t, &f.expect("sent")), None);
        assert_eq!(a.state(), State::Down);
        assert!(!a.peer_dead());
        assert_eq!(a.counters.bfd_down, 1);
    }

    #[test]
    fn a_peer_never_heard_is_dead_one_detection_time_after_the_start() {
        let mut s = pair();
        let start = Instant::from_millis(250);
        s.0 = Session::new(s.0.config().clone(), start);
        let (a, _) = run(&mut s, Instant::from_millis(10_000), Duration::ZERO, |_| {
            true
        });
        assert_eq!(
            a,
            vec![(start + INTERVAL * u32::from(MULT), Notice::BfdPeerDead)]
        );
        // Its first packet went at the first multiple of the interval after the start.
        let sent = (10_000 - 500) / 500 + 1;
        assert_eq!(s.0.counters.bfd_tx, sent);
    }
}
