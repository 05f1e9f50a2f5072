//! Time as the nodes see it: an instant passed in by the runtime, never read from a clock.
//!
//! The sim runtime starts its virtual clock at zero; the live runtime maps the monotonic clock
//! onto the same type. Nanosecond resolution, so that per-link delays can be modelled exactly.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, in nanoseconds since the runtime started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    pub const ZERO: Instant = Instant { nanos: 0 };

    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    pub const fn from_micros(micros: u64) -> Self {
        Instant {
            nanos: micros * 1_000,
        }
    }

    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            nanos: millis * 1_000_000,
        }
    }

    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    pub const fn as_micros(self) -> u64 {
        self.nanos / 1_000
    }

    pub const fn as_millis(self) -> u64 {
        self.nanos / 1_000_000
    }

    /// Seconds as a float, for reports.
    pub fn as_secs_f64(self) -> f64 {
        self.nanos as f64 / 1e9
    }

    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// This instant as smoltcp sees it (microseconds).
    pub fn to_smoltcp(self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.as_micros() as i64)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant {
            nanos: self.nanos.saturating_add(d.as_nanos() as u64),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Instant {
    /// `t+1.234567s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t+{}.{:06}s",
            self.nanos / 1_000_000_000,
            (self.nanos % 1_000_000_000) / 1_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_display() {
        let t = Instant::from_millis(1500) + Duration::from_micros(7);
        assert_eq!(t.as_micros(), 1_500_007);
        assert_eq!(
            t - Instant::from_millis(500),
            Duration::from_micros(1_000_007)
        );
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t.to_string(), "t+1.500007s");
        assert_eq!(t.to_smoltcp().total_micros(), 1_500_007);
    }
}
