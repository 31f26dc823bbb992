//! Roaming fences: a track near another track.
//!
//! # Semantics
//!
//! - Tracks are (feed, track) pairs. A *target* is a track the analytic's `targets` filter takes;
//!   its last fix (position and event time) is kept. A *source* is a track the `sources` filter
//!   takes; each of its observations is compared with the last fixes of the targets (never with
//!   itself). A track may be both, so with empty filters every track watches every other one and
//!   a meeting of two tracks gives one event per side.
//! - A (source, target) pair is *near* when the great-circle distance (geo's haversine, mean Earth
//!   radius) between the source's observation and the target's last fix is at most `distance_m`.
//!   A target whose last fix is more than `max_age_s` older than the observation is ignored: a
//!   vessel that stopped reporting an hour ago is not "near" anything now.
//! - `near` is emitted once, at the source observation that finds the pair near. It re-arms only
//!   when a later observation of the source finds the target more than `distance_m * 1.1` away
//!   (hysteresis: two tracks moving side by side at about `distance_m` would otherwise produce an
//!   event at every fix), or when the pair is forgotten (below). An observation that finds the
//!   target stale neither emits nor re-arms.
//! - Pairs are evaluated at the source's observations only; a target moving up to a silent source
//!   is seen when the source reports (or, with the target also a source, at the target's own
//!   observation, as the other side of the pair).
//! - Memory is bounded by event time: when the watermark passes a target's last fix by
//!   `max_age_s`, the target is forgotten, and so are the pairs of a source whose last
//!   observation the watermark passed by `max_age_s`; a forgotten pair is re-armed.
//! - It sees the tracks of the stream it is given: in the processor that is one input partition
//!   (observations are keyed by track, so tracks of other partitions are not compared).
//!
//! Candidate targets come from an R-tree (`rstar`) over the last fixes, searched with a lon/lat
//! box around the source that is a little larger than `distance_m` (split at the antimeridian,
//! widened to every longitude near the poles); the haversine distance decides. So an observation
//! costs a tree lookup, not a pass over every track.

use std::collections::{BTreeMap, BTreeSet};

use geo::{Distance, Haversine, Point};
use geostream_model::{FeedId, FenceId, Observation, TrackId};
use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spec::TrackFilter;

/// Mean Earth radius of geo's haversine (m).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Separation that re-arms a pair, as a multiple of `distance_m`.
pub const HYSTERESIS: f64 = 1.1;

/// A track: feed and track id (two feeds may use the same track ids).
pub type TrackKey = (FeedId, TrackId);

/// The settings of one `near` analytic.
#[derive(Debug, Clone, PartialEq)]
pub struct NearConfig {
    /// How close makes `near` (m).
    pub distance_m: f64,
    /// Targets older than this against the observation are ignored (ns).
    pub max_age_ns: i128,
    /// Which tracks are targets.
    pub targets: TrackFilter,
    /// Which tracks are sources.
    pub sources: TrackFilter,
}

/// A pair that came near.
#[derive(Debug, Clone, PartialEq)]
pub struct NearHit {
    /// The target.
    pub other: TrackKey,
    /// Its last fix: event time (ns), lon, lat.
    pub other_fix: Fix,
    /// Distance from the source's observation (m).
    pub distance_m: f64,
}

/// A position at an event time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    /// Event time, ns since the Unix epoch.
    pub time_ns: i128,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
}

/// What [`NearTracker::observe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearObserved {
    /// Used (possibly as neither side: the filters took it nowhere).
    Applied,
    /// Older than the target's last fix: not used.
    OutOfOrder,
}

/// One target in [`NearState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    /// Feed.
    pub feed: FeedId,
    /// Track.
    pub track: TrackId,
    /// Last fix.
    pub fix: Fix,
}

/// One near pair in [`NearState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairEntry {
    /// Source feed.
    pub feed: FeedId,
    /// Source track.
    pub track: TrackId,
    /// Target feed.
    pub other_feed: FeedId,
    /// Target track.
    pub other_track: TrackId,
    /// Event time of the source's last observation (ns).
    pub evaluated_ns: i128,
}

/// The checkpointable state of a [`NearTracker`]: targets and near pairs, sorted. The search tree
/// is rebuilt from the targets on restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearState {
    targets: Vec<TargetEntry>,
    pairs: Vec<PairEntry>,
}

impl NearState {
    /// Targets known.
    pub fn targets(&self) -> &[TargetEntry] {
        &self.targets
    }

    /// Pairs currently near (not re-armed).
    pub fn pairs(&self) -> &[PairEntry] {
        &self.pairs
    }
}

/// The pairs of one source.
#[derive(Debug, Clone, Default)]
struct SourcePairs {
    /// Event time of the source's last observation (ns).
    last_ns: i128,
    /// Targets it is near (not re-armed).
    targets: BTreeSet<TrackKey>,
}

/// The `near` state machine of one analytic.
#[derive(Debug)]
pub struct NearTracker {
    cfg: NearConfig,
    targets: BTreeMap<TrackKey, Fix>,
    active: BTreeMap<TrackKey, SourcePairs>,
    // Derived from the two maps above (rebuilt on restore), so forgetting costs only what is
    // forgotten rather than a pass over every track at each watermark.
    tree: RTree<GeomWithData<[f64; 2], TrackKey>>,
    targets_by_time: BTreeSet<(i128, TrackKey)>,
    sources_by_time: BTreeSet<(i128, TrackKey)>,
    targeted_by: BTreeMap<TrackKey, BTreeSet<TrackKey>>,
}

impl NearTracker {
    /// No tracks yet.
    pub fn new(cfg: NearConfig) -> Self {
        Self::restore(cfg, NearState::default())
    }

    /// Continues from a checkpoint.
    pub fn restore(cfg: NearConfig, state: NearState) -> Self {
        let targets: BTreeMap<TrackKey, Fix> = state.targets.into_iter().map(|t| ((t.feed, t.track), t.fix)).collect();
        let mut active: BTreeMap<TrackKey, SourcePairs> = BTreeMap::new();
        let mut targeted_by: BTreeMap<TrackKey, BTreeSet<TrackKey>> = BTreeMap::new();
        for p in state.pairs {
            let source = (p.feed, p.track);
            let target = (p.other_feed, p.other_track);
            targeted_by.entry(target.clone()).or_default().insert(source.clone());
            let sp = active.entry(source).or_default();
            sp.last_ns = sp.last_ns.max(p.evaluated_ns);
            sp.targets.insert(target);
        }
        let tree =
            RTree::bulk_load(targets.iter().map(|(k, f)| GeomWithData::new([f.lon, f.lat], k.clone())).collect());
        let targets_by_time = targets.iter().map(|(k, f)| (f.time_ns, k.clone())).collect();
        let sources_by_time = active.iter().map(|(k, sp)| (sp.last_ns, k.clone())).collect();
        NearTracker { cfg, targets, active, tree, targets_by_time, sources_by_time, targeted_by }
    }

    /// The state, for a checkpoint.
    pub fn state(&self) -> NearState {
        NearState {
            targets: self
                .targets
                .iter()
                .map(|((feed, track), fix)| TargetEntry { feed: feed.clone(), track: track.clone(), fix: *fix })
                .collect(),
            pairs: self
                .active
                .iter()
                .flat_map(|((feed, track), sp)| {
                    sp.targets.iter().map(move |(of, ot)| PairEntry {
                        feed: feed.clone(),
                        track: track.clone(),
                        other_feed: of.clone(),
                        other_track: ot.clone(),
                        evaluated_ns: sp.last_ns,
                    })
                })
                .collect(),
        }
    }

    /// Takes one observation of `track` at `fix`; appends the pairs it finds newly near, by target.
    pub fn observe(&mut self, obs: &Observation, track: &TrackId, fix: Fix, out: &mut Vec<NearHit>) -> NearObserved {
        let key: TrackKey = (obs.feed.clone(), track.clone());
        if self.cfg.targets.matches(obs) {
            match self.targets.get(&key) {
                Some(old) if fix.time_ns < old.time_ns => return NearObserved::OutOfOrder,
                Some(old) => {
                    self.tree.remove(&GeomWithData::new([old.lon, old.lat], key.clone()));
                    self.targets_by_time.remove(&(old.time_ns, key.clone()));
                }
                None => {}
            }
            self.targets.insert(key.clone(), fix);
            self.tree.insert(GeomWithData::new([fix.lon, fix.lat], key.clone()));
            self.targets_by_time.insert((fix.time_ns, key.clone()));
        }
        if !self.cfg.sources.matches(obs) {
            return NearObserved::Applied;
        }
        let d = self.cfg.distance_m;
        let max_age = self.cfg.max_age_ns;
        let fresh = |f: &Fix| fix.time_ns - f.time_ns <= max_age;
        let here = Point::new(fix.lon, fix.lat);

        // Pairs already near: re-arm those that separated beyond the hysteresis.
        let mut sp = self.active.remove(&key).unwrap_or_default();
        self.sources_by_time.remove(&(sp.last_ns, key.clone()));
        sp.last_ns = sp.last_ns.max(fix.time_ns);
        let targets = &self.targets;
        let targeted_by = &mut self.targeted_by;
        sp.targets.retain(|other| {
            let keep = targets
                .get(other)
                .is_some_and(|f| !fresh(f) || Haversine.distance(here, Point::new(f.lon, f.lat)) <= d * HYSTERESIS);
            if !keep {
                unlink(targeted_by, other, &key);
            }
            keep
        });

        let mut found: Vec<NearHit> = Vec::new();
        for envelope in search_boxes(fix.lon, fix.lat, d) {
            for c in self.tree.locate_in_envelope(&envelope) {
                let other = &c.data;
                if *other == key || sp.targets.contains(other) {
                    continue;
                }
                let Some(f) = self.targets.get(other) else { continue };
                if !fresh(f) {
                    continue;
                }
                let distance_m = Haversine.distance(here, Point::new(f.lon, f.lat));
                if distance_m <= d {
                    found.push(NearHit { other: other.clone(), other_fix: *f, distance_m });
                }
            }
        }
        // Tree order depends on insertion history; events come out by target instead.
        found.sort_by(|a, b| a.other.cmp(&b.other));
        found.dedup_by(|a, b| a.other == b.other);
        for h in &found {
            sp.targets.insert(h.other.clone());
            self.targeted_by.entry(h.other.clone()).or_default().insert(key.clone());
        }
        if !sp.targets.is_empty() {
            self.sources_by_time.insert((sp.last_ns, key.clone()));
            self.active.insert(key, sp);
        }
        out.append(&mut found);
        NearObserved::Applied
    }

    /// Forgets the targets and the pair sources the watermark has left `max_age_s` behind.
    pub fn advance(&mut self, watermark_ns: i128) {
        let horizon = watermark_ns.saturating_sub(self.cfg.max_age_ns);
        while self.targets_by_time.first().is_some_and(|(t, _)| *t < horizon) {
            let Some((_, k)) = self.targets_by_time.pop_first() else { break };
            if let Some(f) = self.targets.remove(&k) {
                self.tree.remove(&GeomWithData::new([f.lon, f.lat], k.clone()));
            }
            for source in self.targeted_by.remove(&k).unwrap_or_default() {
                if let Some(sp) = self.active.get_mut(&source) {
                    sp.targets.remove(&k);
                    if sp.targets.is_empty() {
                        self.sources_by_time.remove(&(sp.last_ns, source.clone()));
                        self.active.remove(&source);
                    }
                }
            }
        }
        while self.sources_by_time.first().is_some_and(|(t, _)| *t < horizon) {
            let Some((_, source)) = self.sources_by_time.pop_first() else { break };
            if let Some(sp) = self.active.remove(&source) {
                for target in &sp.targets {
                    unlink(&mut self.targeted_by, target, &source);
                }
            }
        }
    }

    /// Targets known.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether no target is known.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

fn unlink(targeted_by: &mut BTreeMap<TrackKey, BTreeSet<TrackKey>>, target: &TrackKey, source: &TrackKey) {
    if let Some(s) = targeted_by.get_mut(target) {
        s.remove(source);
        if s.is_empty() {
            targeted_by.remove(target);
        }
    }
}

/// Lon/lat boxes holding every point within `distance_m` of (lon, lat), with a margin.
fn search_boxes(lon: f64, lat: f64, distance_m: f64) -> Vec<AABB<[f64; 2]>> {
    let dlat = (distance_m / EARTH_RADIUS_M).to_degrees() * 1.01 + 1e-9;
    let (lat0, lat1) = ((lat - dlat).max(-90.0), (lat + dlat).min(90.0));
    let widest = lat0.abs().max(lat1.abs());
    // Near a pole a small circle spans every longitude.
    let dlon = if widest >= 89.999 { 360.0 } else { dlat / widest.to_radians().cos() };
    if dlon >= 180.0 {
        return vec![AABB::from_corners([-180.0, lat0], [180.0, lat1])];
    }
    let (lon0, lon1) = (lon - dlon, lon + dlon);
    let mut boxes = vec![AABB::from_corners([lon0.max(-180.0), lat0], [lon1.min(180.0), lat1])];
    if lon0 < -180.0 {
        boxes.push(AABB::from_corners([lon0 + 360.0, lat0], [180.0, lat1]));
    }
    if lon1 > 180.0 {
        boxes.push(AABB::from_corners([-180.0, lat0], [lon1 - 360.0, lat1]));
    }
    boxes
}

/// The fence id a target appears under in `near` events: `track-` and 32 hex digits of a SHA-256
/// over its feed and track id. Events hash their fence into the id, so two targets met by the same
/// source at the same time get different event ids; track ids may hold any character, fence ids
/// only slugs, hence the hash (the readable ids are in the event's attributes).
pub fn target_fence_id(other: &TrackKey) -> Option<FenceId> {
    let mut h = Sha256::new();
    for part in [other.0.as_str(), other.1.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    FenceId::new(format!("track-{hex}")).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstar::Envelope;

    #[test]
    fn search_boxes_cover_the_circle_across_the_antimeridian_and_poles() {
        let b = search_boxes(179.99, 0.0, 5_000.0);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[1].contains_point(&[-179.99, 0.0]));
        let b = search_boxes(10.0, 89.99, 5_000.0);
        assert_eq!(b.len(), 1);
        assert!(b[0].contains_point(&[-170.0, 89.99]), "every longitude near the pole");
        // A point at exactly the distance due east at 60 degrees is inside the box.
        let b = search_boxes(0.0, 60.0, 1_000.0);
        let east = 1_000.0 / (EARTH_RADIUS_M * 60f64.to_radians().cos());
        assert!(b[0].contains_point(&[east.to_degrees(), 60.0]));
    }

    #[test]
    fn target_fence_ids_are_valid_and_distinct() {
        let k = |f: &str, t: &str| (FeedId::new(f).unwrap(), TrackId::new(t).unwrap());
        let a = target_fence_id(&k("ais", "1 2")).unwrap();
        let b = target_fence_id(&k("ais1", " 2")).unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("track-"));
    }
}
