//! The probe of a live drill: a process in an endpoint's namespace that sends
//! sequence-numbered UDP datagrams to its peer on a fixed schedule and records, on the same
//! port, which of the peer's arrived and when. Two of them, one at each end, give loss per
//! direction, as the sim's probes do, and the same datagrams (sequence number, stream id, the
//! instant it was to be sent).
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds, which every namespace shares with the engine: the
//! drill maps them onto the lab's instants.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::endpoint::probe::PROBE_PAYLOAD;

/// What one probe agent is to do.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    /// The port it sends from and listens on (its peer's too).
    pub port: u16,
    pub to: Ipv4Addr,
    /// The id its datagrams carry.
    pub stream: u32,
    pub interval: Duration,
    pub count: u32,
    /// When the first datagram is due (`CLOCK_MONOTONIC`, ns).
    pub start_mono_ns: u64,
    /// How long it listens after its last datagram, for the peer's last ones.
    pub linger: Duration,
}

/// A datagram the agent received.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Arrival {
    pub seq: u32,
    pub stream: u32,
    /// `CLOCK_MONOTONIC`, ns.
    pub at_mono_ns: u64,
    pub from: SocketAddrV4,
}

/// What the agent did and saw, printed as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentReport {
    pub sent: u32,
    /// Datagrams the kernel refused to send (no route, unreachable).
    pub send_errors: u32,
    pub arrivals: Vec<Arrival>,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Run a probe agent to its end.
pub fn run_agent(plan: &AgentPlan) -> io::Result<AgentReport> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, plan.port))?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let rx = sock.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        let mut buf = [0u8; 64];
        while !stopped.load(Ordering::Relaxed) {
            let Ok((n, from)) = rx.recv_from(&mut buf) else {
                continue;
            };
            let at_mono_ns = mono_ns();
            let SocketAddr::V4(from) = from else { continue };
            if n < PROBE_PAYLOAD {
                continue;
            }
            arrivals.push(Arrival {
                seq: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
                stream: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                at_mono_ns,
                from,
            });
        }
        arrivals
    });
    let dst = SocketAddrV4::new(plan.to, plan.port);
    let mut report = AgentReport::default();
    for seq in 0..plan.count {
        let offset = (plan.interval.as_nanos() as u64).saturating_mul(seq as u64);
        let due = plan.start_mono_ns.saturating_add(offset);
        let now = mono_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let mut payload = [0u8; PROBE_PAYLOAD];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        payload[4..8].copy_from_slice(&plan.stream.to_be_bytes());
        payload[8..].copy_from_slice(&due.to_be_bytes());
        match sock.send_to(&payload, dst) {
            Ok(_) => report.sent += 1,
            // Sent as far as the kernel goes: lost on the way, as a datagram is.
            Err(_) => {
                report.sent += 1;
                report.send_errors += 1;
            }
        }
    }
    std::thread::sleep(plan.linger);
    stop.store(true, Ordering::Relaxed);
    report.arrivals = receiver
        .join()
        .map_err(|_| io::Error::other("the receiving thread panicked"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_sending_to_itself_receives_every_datagram_after_it_was_due() {
        // A free port, and the agent sends to itself on loopback.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let plan = AgentPlan {
            port,
            to: Ipv4Addr::LOCALHOST,
            stream: 7,
            interval: Duration::from_millis(2),
            count: 20,
            start_mono_ns: mono_ns() + 10_000_000,
            linger: Duration::from_millis(100),
        };
        let r = run_agent(&plan).unwrap();
        assert_eq!((r.sent, r.send_errors), (20, 0));
        let seqs: Vec<u32> = r.arrivals.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (0..20).collect::<Vec<_>>());
        for a in &r.arrivals {
            assert_eq!(a.stream, 7);
            assert_eq!(a.from, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
            let due = plan.start_mono_ns + plan.interval.as_nanos() as u64 * a.seq as u64;
            assert!(
                a.at_mono_ns >= due,
                "seq {} arrived before it was due",
                a.seq
            );
        }
    }
}
