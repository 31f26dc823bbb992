//! The in-memory live layer of the local backend: what Kafka holds that the archive does not yet.
//! Pure: the shell feeds it records and the archive's progress; queries read it.
//!
//! It keeps two things:
//! - the newest position of every track (seeded from the archive at start, then kept current from
//!   the observations topic), so `latest` never needs the archive;
//! - the tail of each topic from the archive's progress on, keyed by partition and offset. A record
//!   below the archive's progress for its partition is in an archive file, so queries leave it out
//!   of the tail view and [`LiveLayer::trim`] drops it.
//!
//! The tail is bounded: when the archive falls behind by more than `max_tail` records, the oldest
//! are dropped and counted, since answering without them beats running out of memory; the
//! `dropped` figure (a metric) says queries may then miss records until the archive catches up.

use std::collections::{BTreeMap, HashMap};

use geostream_model::TopicKind;
use serde_json::Value;

use crate::local::select::{nanos, track_of};

/// Next offset the archive still needs per (topic kind, partition): everything below is archived.
pub type Progress = HashMap<(TopicKind, i32), i64>;

/// The topics the layer follows, in the order of its tails.
pub const KINDS: [TopicKind; 3] = [TopicKind::Observations, TopicKind::Events, TopicKind::Aggregates];

fn slot(kind: TopicKind) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Not a topic the layer follows.
    #[error("topic kind {0:?} is not followed")]
    Topic(TopicKind),
    /// No value, not JSON, or not a Feature with an id (the sink dead-letters these).
    #[error("not a Feature with an id: {0}")]
    Malformed(String),
}

/// The layer.
#[derive(Debug, Default)]
pub struct LiveLayer {
    latest: HashMap<String, Value>,
    tails: [BTreeMap<(i32, i64), Value>; 3],
    max_tail: usize,
    dropped: u64,
}

fn time_of(f: &Value) -> Option<i64> {
    f.pointer("/properties/time").and_then(Value::as_str).and_then(nanos)
}

impl LiveLayer {
    /// An empty layer holding at most `max_tail` records per topic.
    pub fn new(max_tail: usize) -> LiveLayer {
        LiveLayer { max_tail: max_tail.max(1), ..LiveLayer::default() }
    }

    /// Offers an observation as a track's newest position: taken when the track has none yet or an
    /// older one (equal times keep the first, as the engine's external versions do).
    pub fn offer_latest(&mut self, feature: Value) {
        let Some(track) = track_of(&feature).map(str::to_owned) else { return };
        let Some(t) = time_of(&feature) else { return };
        match self.latest.get(&track) {
            Some(prev) if time_of(prev).is_some_and(|p| p >= t) => {}
            _ => {
                self.latest.insert(track, feature);
            }
        }
    }

    /// Takes one Kafka record.
    pub fn apply(&mut self, kind: TopicKind, partition: i32, offset: i64, payload: Option<&[u8]>) -> Result<(), Skip> {
        let i = slot(kind).ok_or(Skip::Topic(kind))?;
        let payload = payload.ok_or_else(|| Skip::Malformed("the record has no value".into()))?;
        let feature: Value = serde_json::from_slice(payload).map_err(|e| Skip::Malformed(e.to_string()))?;
        if feature.get("id").and_then(Value::as_str).is_none() {
            return Err(Skip::Malformed("no string `id`".into()));
        }
        if kind == TopicKind::Observations {
            self.offer_latest(feature.clone());
        }
        let tail = &mut self.tails[i];
        tail.insert((partition, offset), feature);
        while tail.len() > self.max_tail {
            // The oldest across partitions is not known; the lowest partition's oldest is a fair,
            // cheap choice, and any drop is counted.
            tail.pop_first();
            self.dropped += 1;
        }
        Ok(())
    }

    /// Drops tail records the archive holds.
    pub fn trim(&mut self, progress: &Progress) {
        for (i, kind) in KINDS.iter().enumerate() {
            self.tails[i].retain(|(p, o), _| progress.get(&(*kind, *p)).is_none_or(|next| o >= next));
        }
    }

    /// The tail of `kind` not yet archived according to `progress`, in write order per partition.
    pub fn tail<'a>(&'a self, kind: TopicKind, progress: &'a Progress) -> impl Iterator<Item = &'a Value> + 'a {
        let i = slot(kind);
        i.into_iter().flat_map(move |i| {
            self.tails[i]
                .iter()
                .filter(move |((p, o), _)| progress.get(&(kind, *p)).is_none_or(|next| o >= next))
                .map(|(_, f)| f)
        })
    }

    /// Every track's newest position.
    pub fn latest(&self) -> impl Iterator<Item = &Value> {
        self.latest.values()
    }

    /// Tracks known.
    pub fn tracks(&self) -> usize {
        self.latest.len()
    }

    /// Records held in the tails.
    pub fn tail_len(&self) -> usize {
        self.tails.iter().map(BTreeMap::len).sum()
    }

    /// Records dropped because the archive fell too far behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obs(id: &str, track: &str, t: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
            "properties": {"track": track, "time": t}}),
        )
        .unwrap()
    }

    #[test]
    fn latest_keeps_the_newest_by_event_time_and_the_first_of_ties() {
        let mut l = LiveLayer::new(100);
        l.apply(TopicKind::Observations, 0, 0, Some(&obs("a", "t1", "2024-05-01T00:00:05Z"))).unwrap();
        l.apply(TopicKind::Observations, 0, 1, Some(&obs("b", "t1", "2024-05-01T00:00:01Z"))).unwrap();
        l.apply(TopicKind::Observations, 0, 2, Some(&obs("c", "t1", "2024-05-01T00:00:05Z"))).unwrap();
        l.apply(TopicKind::Observations, 1, 0, Some(&obs("d", "t2", "2024-05-01T00:00:00Z"))).unwrap();
        let mut got: Vec<&str> = l.latest().map(|f| f["id"].as_str().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, ["a", "d"]);
        assert_eq!(l.tracks(), 2);
        // Seeding from the archive follows the same rule.
        l.offer_latest(json!({"id": "z", "properties": {"track": "t2", "time": "2024-04-01T00:00:00Z"}}));
        assert!(l.latest().any(|f| f["id"] == "d"));
    }

    #[test]
    fn the_tail_view_and_trim_follow_the_archive_progress() {
        let mut l = LiveLayer::new(100);
        for o in 0..5 {
            l.apply(TopicKind::Events, 0, o, Some(&obs(&format!("e{o}"), "t", "2024-05-01T00:00:00Z"))).unwrap();
        }
        l.apply(TopicKind::Events, 1, 7, Some(&obs("x", "t", "2024-05-01T00:00:00Z"))).unwrap();
        let progress: Progress = HashMap::from([((TopicKind::Events, 0), 3)]);
        let ids: Vec<&str> = l.tail(TopicKind::Events, &progress).map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["e3", "e4", "x"], "offsets below the progress are archived; partition 1 has none");
        assert_eq!(l.tail(TopicKind::Observations, &progress).count(), 0);
        l.trim(&progress);
        assert_eq!(l.tail_len(), 3);
        assert_eq!(l.tail(TopicKind::Events, &Progress::new()).count(), 3);
    }

    #[test]
    fn bad_records_are_refused_and_the_tail_is_bounded() {
        let mut l = LiveLayer::new(2);
        assert!(matches!(l.apply(TopicKind::Events, 0, 0, None), Err(Skip::Malformed(_))));
        assert!(matches!(l.apply(TopicKind::Events, 0, 0, Some(b"{")), Err(Skip::Malformed(_))));
        assert!(matches!(l.apply(TopicKind::Events, 0, 0, Some(b"{\"type\":\"Feature\"}")), Err(Skip::Malformed(_))));
        assert_eq!(l.apply(TopicKind::Feeds, 0, 0, Some(b"{}")), Err(Skip::Topic(TopicKind::Feeds)));
        for o in 0..5 {
            l.apply(TopicKind::Events, 0, o, Some(&obs(&format!("e{o}"), "t", "2024-05-01T00:00:00Z"))).unwrap();
        }
        assert_eq!(l.tail_len(), 2);
        assert_eq!(l.dropped(), 3);
        let none = Progress::new();
        let ids: Vec<&str> = l.tail(TopicKind::Events, &none).map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["e3", "e4"], "the oldest go first");
    }
}
