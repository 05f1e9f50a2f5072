//! Probes: sequence-numbered UDP datagrams sent at a steady interval, and the sink that records
//! which arrived and when. Run one each way between two endpoints and loss is known per
//! direction: which datagrams were lost, when the first and last of them were sent, and the
//! longest run of them (the outage, to within one interval).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::time::Instant;

/// Bytes of UDP payload in a probe: its sequence number (4) and the instant it was sent, in
/// nanoseconds (8).
pub const PROBE_PAYLOAD: usize = 12;
/// Datagrams a sink's socket holds between two steps.
const SINK_QUEUE: usize = 64;

/// What a probe sender did.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub dst: Ipv4Addr,
    pub port: u16,
    /// The local port the probes leave from.
    pub src_port: u16,
    /// Probes asked for.
    pub count: u32,
    #[serde(rename = "interval_us", serialize_with = "ser_us")]
    pub interval: Duration,
    /// When the first probe was sent.
    #[serde(rename = "started_us", serialize_with = "ser_instant")]
    pub started: Instant,
    pub sent: u32,
    pub done: bool,
}

fn ser_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

fn ser_instant<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.as_micros())
}

impl ProbeReport {
    /// When probe `seq` was (or is to be) sent.
    pub fn sent_at(&self, seq: u32) -> Instant {
        self.started + self.interval * seq
    }
}

/// A probe that arrived at a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProbeArrival {
    /// Who sent it, as the sink sees it (after any NAT).
    pub from: SocketAddrV4,
    pub seq: u32,
    #[serde(rename = "at_us", serialize_with = "ser_instant")]
    pub at: Instant,
}

/// Loss of one probe stream, as its sink saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeLoss {
    pub sent: u32,
    pub received: u32,
    pub lost: u32,
    /// When the first and the last lost probe were sent.
    #[serde(serialize_with = "ser_opt_instant")]
    pub first_lost_sent: Option<Instant>,
    #[serde(serialize_with = "ser_opt_instant")]
    pub last_lost_sent: Option<Instant>,
    /// The longest run of consecutive lost probes times the interval: the outage, to within one
    /// interval.
    #[serde(rename = "outage_us", serialize_with = "ser_us")]
    pub outage: Duration,
}

fn ser_opt_instant<S: serde::Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.as_micros()),
        None => s.serialize_none(),
    }
}

/// What the sink saw of the stream `report` sent: `arrivals` from `from` (the sender's address
/// as the sink sees it).
pub fn loss(report: &ProbeReport, arrivals: &[ProbeArrival], from: SocketAddrV4) -> ProbeLoss {
    let mut got = vec![false; report.sent as usize];
    for a in arrivals.iter().filter(|a| a.from == from) {
        if let Some(g) = got.get_mut(a.seq as usize) {
            *g = true;
        }
    }
    let lost: Vec<u32> = (0..report.sent).filter(|s| !got[*s as usize]).collect();
    let mut longest = 0u32;
    let mut run = 0u32;
    for g in &got {
        run = if *g { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    ProbeLoss {
        sent: report.sent,
        received: report.sent - lost.len() as u32,
        lost: lost.len() as u32,
        first_lost_sent: lost.first().map(|s| report.sent_at(*s)),
        last_lost_sent: lost.last().map(|s| report.sent_at(*s)),
        outage: report.interval * longest,
    }
}

/// The sender's state.
pub(super) struct ProbeApp {
    pub(super) socket: Option<SocketHandle>,
    next_send: Instant,
}

impl ProbeApp {
    pub(super) fn new(socket: Option<SocketHandle>, start: Instant) -> Self {
        ProbeApp {
            socket,
            next_send: start,
        }
    }

    /// Send every probe due by `now`.
    pub(super) fn step(
        &mut self,
        r: &mut ProbeReport,
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let Some(h) = self.socket else {
            r.done = true;
            return false;
        };
        let s = sockets.get_mut::<udp::Socket>(h);
        let to = IpEndpoint::new(IpAddress::Ipv4(r.dst), r.port);
        let mut changed = false;
        while r.sent < r.count && self.next_send <= now && s.can_send() {
            let mut payload = [0u8; PROBE_PAYLOAD];
            payload[..4].copy_from_slice(&r.sent.to_be_bytes());
            payload[4..].copy_from_slice(&self.next_send.as_nanos().to_be_bytes());
            if s.send_slice(&payload, to).is_err() {
                break;
            }
            r.sent += 1;
            self.next_send += r.interval;
            changed = true;
        }
        if r.sent == r.count && !r.done {
            r.done = true;
            changed = true;
        }
        changed
    }

    pub(super) fn deadline(&self, r: &ProbeReport) -> Option<Instant> {
        (!r.done).then_some(self.next_send)
    }
}

/// A probe sink on a UDP port: records every probe that arrives.
pub(super) struct ProbeSink {
    pub(super) port: u16,
    pub(super) handle: SocketHandle,
    pub(super) arrivals: Vec<ProbeArrival>,
}

impl ProbeSink {
    pub(super) fn socket(port: u16) -> udp::Socket<'static> {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; SINK_QUEUE],
                vec![0u8; SINK_QUEUE * PROBE_PAYLOAD],
            )
        };
        let mut s = udp::Socket::new(buffer(), buffer());
        s.bind(port).expect("a probe port is nonzero");
        s
    }

    /// Take what arrived.
    pub(super) fn step(&mut self, now: Instant, sockets: &mut SocketSet<'static>) {
        let s = sockets.get_mut::<udp::Socket>(self.handle);
        while let Ok((data, meta)) = s.recv() {
            let IpAddress::Ipv4(ip) = meta.endpoint.addr;
            if data.len() < 4 {
                continue;
            }
            let seq = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            self.arrivals.push(ProbeArrival {
                from: SocketAddrV4::new(ip, meta.endpoint.port),
                seq,
                at: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_the_longest_run_of_lost_probes() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
        let r = ProbeReport {
            dst: Ipv4Addr::new(10, 0, 0, 2),
            port: 9,
            src_port: 40000,
            count: 10,
            interval: Duration::from_millis(10),
            started: Instant::from_millis(100),
            sent: 10,
            done: true,
        };
        // 2 lost, then 3, 4, 5 lost: the longest run is 3.
        let arrivals: Vec<_> = [0, 1, 3, 7, 8, 9]
            .iter()
            .map(|&seq| ProbeArrival {
                from,
                seq,
                at: Instant::ZERO,
            })
            .chain(std::iter::once(ProbeArrival {
                from: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 1),
                seq: 2,
                at: Instant::ZERO,
            }))
            .collect();
        let l = loss(&r, &arrivals, from);
        assert_eq!((l.sent, l.received, l.lost), (10, 6, 4));
        assert_eq!(l.first_lost_sent, Some(Instant::from_millis(120)));
        assert_eq!(l.last_lost_sent, Some(Instant::from_millis(160)));
        assert_eq!(l.outage, Duration::from_millis(30));
    }
}
