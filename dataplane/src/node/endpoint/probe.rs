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

/// Bytes of UDP payload in a probe: its sequence number (4), its stream's id (4), and the
/// instant it was sent, in nanoseconds (8). The sink tells streams apart by the id, not by the
/// source address: NAT on the way (S3's traffic leaves the Edge source-NATed) changes that.
pub const PROBE_PAYLOAD: usize = 16;
/// Datagrams a sink's socket holds between two steps.
const SINK_QUEUE: usize = 64;

/// What a probe sender did.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub dst: Ipv4Addr,
    pub port: u16,
    /// The local port the probes leave from.
    pub src_port: u16,
    /// The id its probes carry.
    pub stream: u32,
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
    /// The id of its stream.
    pub stream: u32,
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
    /// Each run of consecutive lost probes, in order (the first [`MAX_RUNS`]).
    pub lost_runs: Vec<LostRun>,
    /// More runs were lost than `lost_runs` holds.
    pub lost_runs_truncated: bool,
    /// One-way delay over time, in at most [`DELAY_BINS`] bins of equal length.
    pub delay: Vec<DelayBin>,
}

/// Runs of loss a [`ProbeLoss`] lists.
pub const MAX_RUNS: usize = 1000;
/// Bins of one-way delay a [`ProbeLoss`] holds.
pub const DELAY_BINS: u32 = 500;

/// A run of consecutive lost probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LostRun {
    /// When the first and the last probe of the run were sent.
    #[serde(rename = "first_sent_us", serialize_with = "ser_instant")]
    pub first_sent: Instant,
    #[serde(rename = "last_sent_us", serialize_with = "ser_instant")]
    pub last_sent: Instant,
    pub count: u32,
}

/// The one-way delay of the probes sent in a span of time that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DelayBin {
    /// When the span starts (probes sent from then on).
    #[serde(rename = "from_us", serialize_with = "ser_instant")]
    pub from: Instant,
    #[serde(rename = "min_us", serialize_with = "ser_us")]
    pub min: Duration,
    #[serde(rename = "max_us", serialize_with = "ser_us")]
    pub max: Duration,
    /// Probes of the span that arrived.
    pub count: u32,
}

fn ser_opt_instant<S: serde::Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.as_micros()),
        None => s.serialize_none(),
    }
}

/// The id of the probe stream from `ip`:`port`.
pub fn stream_id(ip: Ipv4Addr, port: u16) -> u32 {
    u32::from(ip).rotate_left(16) ^ u32::from(port)
}

/// What the sink saw of the stream `report` sent, among its `arrivals`.
pub fn loss(report: &ProbeReport, arrivals: &[ProbeArrival]) -> ProbeLoss {
    let mut got = vec![false; report.sent as usize];
    // Spans of `per_bin` probes each.
    let per_bin = report.sent.div_ceil(DELAY_BINS).max(1);
    let mut bins: Vec<Option<DelayBin>> = vec![None; report.sent.div_ceil(per_bin) as usize];
    for a in arrivals.iter().filter(|a| a.stream == report.stream) {
        let Some(g) = got.get_mut(a.seq as usize) else {
            continue;
        };
        *g = true;
        let sent = report.sent_at(a.seq);
        let d = a.at.saturating_since(sent);
        let k = (a.seq / per_bin) as usize;
        let b = bins[k].get_or_insert(DelayBin {
            from: report.sent_at(k as u32 * per_bin),
            min: d,
            max: d,
            count: 0,
        });
        b.min = b.min.min(d);
        b.max = b.max.max(d);
        b.count += 1;
    }
    let mut lost_runs = Vec::new();
    let mut lost_runs_truncated = false;
    let mut k = 0;
    while k < got.len() {
        if got[k] {
            k += 1;
            continue;
        }
        let first = k;
        while k < got.len() && !got[k] {
            k += 1;
        }
        if lost_runs.len() == MAX_RUNS {
            lost_runs_truncated = true;
            break;
        }
        lost_runs.push(LostRun {
            first_sent: report.sent_at(first as u32),
            last_sent: report.sent_at(k as u32 - 1),
            count: (k - first) as u32,
        });
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
        lost_runs,
        lost_runs_truncated,
        delay: bins.into_iter().flatten().collect(),
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
            payload[4..8].copy_from_slice(&r.stream.to_be_bytes());
            payload[8..].copy_from_slice(&self.next_send.as_nanos().to_be_bytes());
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
            if data.len() < 8 {
                continue;
            }
            let seq = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let stream = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            self.arrivals.push(ProbeArrival {
                from: SocketAddrV4::new(ip, meta.endpoint.port),
                stream,
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
            stream: 7,
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
                stream: 7,
                seq,
                at: Instant::ZERO,
            })
            .chain(std::iter::once(ProbeArrival {
                from,
                stream: 8,
                seq: 2,
                at: Instant::ZERO,
            }))
            .collect();
        let l = loss(&r, &arrivals);
        assert_eq!((l.sent, l.received, l.lost), (10, 6, 4));
        assert_eq!(l.first_lost_sent, Some(Instant::from_millis(120)));
        assert_eq!(l.last_lost_sent, Some(Instant::from_millis(160)));
        assert_eq!(l.outage, Duration::from_millis(30));
        let runs: Vec<_> = l
            .lost_runs
            .iter()
            .map(|r| (r.first_sent, r.count))
            .collect();
        assert_eq!(
            runs,
            [
                (Instant::from_millis(120), 1),
                (Instant::from_millis(140), 3)
            ]
        );
        assert_eq!(l.lost_runs[1].last_sent, Instant::from_millis(160));
    }

    #[test]
    fn delay_bins_hold_the_one_way_delay_of_what_arrived() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
        let sent = DELAY_BINS * 2;
        let r = ProbeReport {
            dst: Ipv4Addr::new(10, 0, 0, 2),
            port: 9,
            src_port: 40000,
            stream: 7,
            count: sent,
            interval: Duration::from_millis(1),
            started: Instant::ZERO,
            sent,
            done: true,
        };
        // Probe n takes n microseconds; odd probes of the first two bins are lost.
        let arrivals: Vec<_> = (0..sent)
            .filter(|n| *n >= 4 || n % 2 == 0)
            .map(|seq| ProbeArrival {
                from,
                stream: 7,
                seq,
                at: r.sent_at(seq) + Duration::from_micros(u64::from(seq)),
            })
            .collect();
        let l = loss(&r, &arrivals);
        assert_eq!(l.delay.len(), DELAY_BINS as usize);
        assert_eq!(l.delay[0].count, 1);
        assert_eq!(l.delay[0].min, Duration::ZERO);
        assert_eq!(l.delay[1].from, Instant::from_millis(2));
        assert_eq!(l.delay[2].count, 2);
        assert_eq!(l.delay[2].min, Duration::from_micros(4));
        assert_eq!(l.delay[2].max, Duration::from_micros(5));
    }
}
