//! Jittered exponential backoff: how every stage waits before retrying what
//! [`Classify::retryable`](crate::Classify::retryable) says may succeed later.
//!
//! Each wait is drawn uniformly from the upper half of the exponential cap ("equal jitter"):
//! never near zero, so a retry storm cannot form, and spread, so many feeds that lost the same
//! broker do not come back in lockstep.

use std::time::Duration;

/// Backoff state for one retrying loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubling per failure up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), attempt: 0 }
    }

    /// The cap of the next wait (without jitter): `base * 2^failures`, at most `max`.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next wait, given a uniform draw `unit` in `[0, 1)` (the caller owns randomness so this
    /// stays deterministic under test).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let cap = self.cap();
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The next wait with a random draw.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `Retry-After` as delta-seconds or an HTTP date, relative to `now`. Dates in the past mean
/// "now"; unreadable values are ignored (the caller's backoff applies). Callers bound the result:
/// a server may ask for anything.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is a subset of RFC 2822 syntax.
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let d = at - now;
    Some(if d.is_positive() { d.unsigned_abs() } else { Duration::ZERO })
}

#[cfg(test)]
mod retry_after_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = time::OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_inside_bounds_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut caps = Vec::new();
        for unit in [0.0, 0.5, 0.999, 1.0, 7.0, -1.0] {
            let cap = b.cap();
            let d = b.next_delay_with(unit);
            assert!(d <= cap && d >= cap / 2, "{d:?} outside [{:?}, {cap:?}]", cap / 2);
            caps.push(cap.as_millis());
        }
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
        let mut huge = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(huge.next_delay() <= Duration::from_secs(30));
        }
    }
}
