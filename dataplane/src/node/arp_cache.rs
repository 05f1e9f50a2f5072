//! An ARP cache with a queue of frames waiting for resolution, as a router keeps one.
//!
//! A frame for an unresolved next hop waits (at most [`MAX_QUEUED`] per next hop) while a
//! request is sent every [`RETRY`]; after [`MAX_TRIES`] requests the waiting frames are given
//! back as failed, so that the router can answer them with host-unreachable.

use std::net::Ipv4Addr;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::time::Instant;
use crate::wire::{Frame, MacAddr};

pub const RETRY: Duration = Duration::from_secs(1);
/// An entry not confirmed for this long is asked for again when next used; it keeps forwarding
/// meanwhile (Linux's STALE state), so a wrong entry (a spoofed reply) heals within this time of
/// use.
pub const REACHABLE: Duration = Duration::from_secs(60);
/// An entry not confirmed for this long is forgotten when next used: the frame waits for a
/// fresh answer (Linux collects such stale entries after `gc_stale_time`). The lab's aging
/// time, as the hosts' MAC tables: past it, nothing a spoofed frame taught is used again.
pub const EXPIRE: Duration = Duration::from_secs(300);
pub const MAX_TRIES: u8 = 3;
pub const MAX_QUEUED: usize = 16;

/// Index of the interface a neighbour is on.
pub type IfaceIdx = usize;

#[derive(Debug)]
struct Pending {
    iface: IfaceIdx,
    ip: Ipv4Addr,
    frames: Vec<Frame>,
    tries: u8,
    next_try: Instant,
}

/// What [`ArpCache::enqueue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// First frame for this next hop: send a request now.
    SendRequest,
    /// A request is already out; the frame waits.
    Waiting,
    /// The queue is full; the frame is dropped.
    Dropped,
}

/// Timers that fired.
#[derive(Debug, Default)]
pub struct Expired {
    /// Requests to send again: (interface, address).
    pub retry: Vec<(IfaceIdx, Ipv4Addr)>,
    /// Frames whose next hop never answered.
    pub failed: Vec<Frame>,
}

/// A resolved neighbour.
#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: MacAddr,
    /// When it last answered (or announced itself).
    confirmed: Instant,
    /// When it was last asked again since.
    asked: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct ArpCache {
    entries: FxHashMap<(IfaceIdx, Ipv4Addr), Entry>,
    pending: Vec<Pending>,
}

impl ArpCache {
    #[inline]
    pub fn lookup(&self, iface: IfaceIdx, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&(iface, ip)).map(|e| e.mac)
    }

    /// The MAC to send to now, and whether to ask the neighbour again (its entry is older than
    /// [`REACHABLE`] and it was not asked in the last [`RETRY`]). An entry older than
    /// [`EXPIRE`] is forgotten: none.
    #[inline]
    pub fn lookup_for_use(
        &mut self,
        now: Instant,
        iface: IfaceIdx,
        ip: Ipv4Addr,
    ) -> Option<(MacAddr, bool)> {
        let e = self.entries.get_mut(&(iface, ip))?;
        if now >= e.confirmed + EXPIRE {
            self.entries.remove(&(iface, ip));
            return None;
        }
        let ask = now >= e.confirmed + REACHABLE && e.asked.is_none_or(|a| now >= a + RETRY);
        if ask {
            e.asked = Some(now);
        }
        Some((e.mac, ask))
    }

    /// Learn (or update) a neighbour at `now`; returns the frames that were waiting for it.
    pub fn learn(
        &mut self,
        now: Instant,
        iface: IfaceIdx,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Vec<Frame> {
        self.entries.insert(
            (iface, ip),
            Entry {
                mac,
                confirmed: now,
                asked: None,
            },
        );
        match self
            .pending
            .iter()
            .position(|p| p.iface == iface && p.ip == ip)
        {
            Some(i) => self.pending.remove(i).frames,
            None => Vec::new(),
        }
    }

    /// Queue a frame for an unresolved next hop.
    pub fn enqueue(
        &mut self,
        now: Instant,
        iface: IfaceIdx,
        ip: Ipv4Addr,
        frame: Frame,
    ) -> Enqueued {
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.iface == iface && p.ip == ip)
        {
            if p.frames.len() >= MAX_QUEUED {
                return Enqueued::Dropped;
            }
            p.frames.push(frame);
            return Enqueued::Waiting;
        }
        self.pending.push(Pending {
            iface,
            ip,
            frames: vec![frame],
            tries: 1,
            next_try: now + RETRY,
        });
        Enqueued::SendRequest
    }

    /// Run the retry timers due at `now`.
    pub fn expire(&mut self, now: Instant) -> Expired {
        let mut ex = Expired::default();
        self.pending.retain_mut(|p| {
            if p.next_try > now {
                return true;
            }
            if p.tries >= MAX_TRIES {
                ex.failed.append(&mut p.frames);
                return false;
            }
            p.tries += 1;
            p.next_try = now + RETRY;
            ex.retry.push((p.iface, p.ip));
            true
        });
        ex
    }

    /// Cancel every pending resolution; returns the frames that were waiting.
    pub fn cancel_pending(&mut self) -> Vec<Frame> {
        self.pending.drain(..).flat_map(|p| p.frames).collect()
    }

    /// When the next retry timer fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.next_try).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    #[test]
    fn queue_then_learn_releases_frames() {
        let mut c = ArpCache::default();
        let t0 = Instant::ZERO;
        assert_eq!(
            c.enqueue(t0, 1, IP, Frame::copy_from_slice(b"a")),
            Enqueued::SendRequest
        );
        assert_eq!(
            c.enqueue(t0, 1, IP, Frame::copy_from_slice(b"b")),
            Enqueued::Waiting
        );
        assert_eq!(c.next_deadline(), Some(t0 + RETRY));
        let frames = c.learn(t0, 1, IP, MacAddr::local(1, 1));
        assert_eq!(
            frames,
            vec![Frame::copy_from_slice(b"a"), Frame::copy_from_slice(b"b")]
        );
        assert_eq!(c.lookup(1, IP), Some(MacAddr::local(1, 1)));
        assert_eq!(c.lookup(2, IP), None);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn an_entry_past_reachable_keeps_forwarding_and_is_asked_again_once_a_retry() {
        let mut c = ArpCache::default();
        let (mac, t0) = (MacAddr::local(1, 1), Instant::from_millis(5));
        c.learn(t0, 1, IP, mac);
        let just_before = t0 + (REACHABLE - std::time::Duration::from_nanos(1));
        assert_eq!(c.lookup_for_use(just_before, 1, IP), Some((mac, false)));
        let stale = t0 + REACHABLE;
        assert_eq!(c.lookup_for_use(stale, 1, IP), Some((mac, true)));
        assert_eq!(c.lookup_for_use(stale, 1, IP), Some((mac, false)));
        assert_eq!(c.lookup_for_use(stale + RETRY, 1, IP), Some((mac, true)));
        // An answer confirms it again.
        c.learn(stale + RETRY, 1, IP, mac);
        assert_eq!(
            c.lookup_for_use(stale + RETRY * 2, 1, IP),
            Some((mac, false))
        );
    }

    #[test]
    fn an_entry_past_expire_is_forgotten_and_the_next_frame_waits_for_an_answer() {
        let mut c = ArpCache::default();
        let (spoofed, t0) = (MacAddr::local(9, 9), Instant::from_millis(5));
        c.learn(t0, 1, IP, spoofed);
        let before = t0 + (EXPIRE - std::time::Duration::from_nanos(1));
        assert_eq!(c.lookup_for_use(before, 1, IP).map(|e| e.0), Some(spoofed));
        assert_eq!(c.lookup_for_use(t0 + EXPIRE, 1, IP), None);
        assert_eq!(c.lookup(1, IP), None);
        assert_eq!(
            c.enqueue(t0 + EXPIRE, 1, IP, Frame::copy_from_slice(b"a")),
            Enqueued::SendRequest
        );
    }

    #[test]
    fn cancel_returns_waiting_frames_and_stops_timers() {
        let mut c = ArpCache::default();
        c.enqueue(Instant::ZERO, 0, IP, Frame::copy_from_slice(b"a"));
        c.enqueue(Instant::ZERO, 1, IP, Frame::copy_from_slice(b"b"));
        assert_eq!(c.cancel_pending().len(), 2);
        assert_eq!(c.next_deadline(), None);
        assert!(c.expire(Instant::from_millis(10_000)).retry.is_empty());
    }

    #[test]
    fn retries_then_fails() {
        let mut c = ArpCache::default();
        c.enqueue(Instant::ZERO, 0, IP, Frame::copy_from_slice(b"a"));
        for _ in 0..MAX_QUEUED {
            c.enqueue(Instant::ZERO, 0, IP, Frame::copy_from_slice(b"x"));
        }
        assert_eq!(
            c.enqueue(Instant::ZERO, 0, IP, Frame::new()),
            Enqueued::Dropped
        );
        let mut retries = 0;
        let t = loop {
            let t = c.next_deadline().expect("a timer");
            let ex = c.expire(t);
            retries += ex.retry.len();
            if !ex.failed.is_empty() {
                assert_eq!(ex.failed.len(), MAX_QUEUED);
                break t;
            }
        };
        assert_eq!(retries, (MAX_TRIES - 1) as usize);
        assert_eq!(t, Instant::ZERO + RETRY * MAX_TRIES as u32);
        assert_eq!(c.next_deadline(), None);
    }
}
