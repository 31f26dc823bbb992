//! Event-time watermarks per input partition.
//!
//! A partition's watermark is the largest event time seen on it minus the allowed lateness; the
//! stage's watermark is the minimum over the partitions that are not idle, and it never goes back.
//! A partition that has delivered nothing for `idle_after` (of the caller's processing time) stops
//! holding the watermark back, so one quiet partition cannot stall every window; when it speaks
//! again it is counted again, and records older than the watermark are late.
//!
//! Times are nanoseconds since the Unix epoch (`i128`, as `OffsetDateTime::unix_timestamp_nanos`)
//! so the state is plain numbers that serialise exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Settings of the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkConfig {
    /// How far behind the newest event time a record may arrive and still count (ns).
    pub lateness_ns: i128,
    /// Processing time without records after which a partition no longer holds the watermark (ns).
    pub idle_after_ns: i128,
}

/// Whether a record is within the lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    /// At or after the watermark: it counts.
    OnTime,
    /// Before the watermark: it goes to the dead-letter topic with reason `late`.
    Late {
        /// The watermark it missed (ns).
        watermark_ns: i128,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Partition {
    max_event_ns: i128,
    last_seen_ns: i128,
}

/// The watermark state of one stage instance; checkpointed with its input offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    config: WatermarkConfig,
    partitions: BTreeMap<i32, Partition>,
    /// The watermark last reported; it only moves forward.
    current_ns: Option<i128>,
}

impl Watermarks {
    /// No partition seen yet; the watermark is undefined until one is.
    pub fn new(config: WatermarkConfig) -> Self {
        Self { config, partitions: BTreeMap::new(), current_ns: None }
    }

    /// Classifies a record of `partition` with event time `event_ns` received at processing time
    /// `now_ns`, and takes it into account if it is on time.
    pub fn observe(&mut self, partition: i32, event_ns: i128, now_ns: i128) -> Lateness {
        if let Some(w) = self.current_ns
            && event_ns < w
        {
            // Still proof the partition is alive.
            if let Some(p) = self.partitions.get_mut(&partition) {
                p.last_seen_ns = p.last_seen_ns.max(now_ns);
            }
            return Lateness::Late { watermark_ns: w };
        }
        let p = self.partitions.entry(partition).or_insert(Partition { max_event_ns: event_ns, last_seen_ns: now_ns });
        p.max_event_ns = p.max_event_ns.max(event_ns);
        p.last_seen_ns = p.last_seen_ns.max(now_ns);
        Lateness::OnTime
    }

    /// Forgets a partition (revoked in a rebalance); its new owner restores it from a checkpoint.
    pub fn remove(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The watermark at processing time `now_ns` (ns), advancing it if the partitions allow.
    pub fn advance(&mut self, now_ns: i128) -> Option<i128> {
        let active = self
            .partitions
            .values()
            .filter(|p| now_ns.saturating_sub(p.last_seen_ns) < self.config.idle_after_ns)
            .map(|p| p.max_event_ns)
            .min();
        // All idle: nothing holds the watermark back but the newest data itself.
        let candidate = active.or_else(|| self.partitions.values().map(|p| p.max_event_ns).max());
        if let Some(c) = candidate.map(|c| c.saturating_sub(self.config.lateness_ns)) {
            self.current_ns = Some(self.current_ns.map_or(c, |w| w.max(c)));
        }
        self.current_ns
    }

    /// The watermark as last advanced.
    pub fn current(&self) -> Option<i128> {
        self.current_ns
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const S: i128 = 1_000_000_000;

    fn wm() -> Watermarks {
        Watermarks::new(WatermarkConfig { lateness_ns: 10 * S, idle_after_ns: 60 * S })
    }

    #[test]
    fn slowest_active_partition_holds_the_watermark() {
        let mut w = wm();
        assert_eq!(w.advance(0), None);
        w.observe(0, 100 * S, 0);
        w.observe(1, 50 * S, 0);
        assert_eq!(w.advance(1), Some(40 * S));
        w.observe(1, 80 * S, 2);
        assert_eq!(w.advance(3), Some(70 * S));
        assert_eq!(w.observe(0, 69 * S, 4), Lateness::Late { watermark_ns: 70 * S });
        assert_eq!(w.observe(0, 70 * S, 4), Lateness::OnTime);
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back_and_counts_again_when_it_speaks() {
        let mut w = wm();
        w.observe(0, 100 * S, 0);
        w.observe(1, 10 * S, 0);
        assert_eq!(w.advance(S), Some(0));
        w.observe(0, 200 * S, 59 * S);
        assert_eq!(w.advance(59 * S), Some(0), "partition 1 not idle yet");
        assert_eq!(w.advance(61 * S), Some(190 * S), "partition 1 idle: partition 0 alone");
        // Partition 1 comes back with old data: late, and the watermark does not go back.
        assert_eq!(w.observe(1, 20 * S, 62 * S), Lateness::Late { watermark_ns: 190 * S });
        assert_eq!(w.advance(62 * S), Some(190 * S));
    }

    #[test]
    fn everything_idle_still_advances_with_the_newest_data() {
        let mut w = wm();
        w.observe(0, 100 * S, 0);
        w.observe(1, 300 * S, 0);
        assert_eq!(w.advance(1000 * S), Some(290 * S));
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Watermarks>(&json).unwrap(), w, "checkpoints restore exactly");
    }

    proptest! {
        #[test]
        fn prop_watermark_never_goes_back_and_on_time_records_are_not_below_it(
            records in prop::collection::vec((0i32..4, 0i128..1000, 0i128..100), 1..200)
        ) {
            let mut w = wm();
            let mut now = 0i128;
            let mut last: Option<i128> = None;
            for (p, e, dt) in records {
                now += dt * S / 10;
                let before = w.current();
                if w.observe(p, e * S, now) == Lateness::OnTime
                    && let Some(b) = before
                {
                    prop_assert!(e * S >= b);
                }
                let cur = w.advance(now);
                if let (Some(l), Some(c)) = (last, cur) {
                    prop_assert!(c >= l);
                }
                last = cur;
            }
        }
    }
}
