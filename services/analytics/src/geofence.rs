//! The geofence state machine: per track and fence, turns positions in event-time order into
//! `enter`, `exit`, `cross`, `dwell` and, if configured, `inside`/`outside` events.
//!
//! # Semantics
//!
//! - State is kept per (feed, track) and fence: a track is *inside* a fence from the observation
//!   that is first inside it (an `enter`) to the first later observation outside it (an `exit`).
//!   So per track and fence, enter and exit alternate and the first is always an enter; a track
//!   first seen outside gets no exit. Containment is the [`FenceIndex`]'s (open sets: on the edge
//!   is outside).
//! - `cross`: the straight segment between two consecutive positions of a track meets a fence
//!   while neither position is inside it (and the track was not inside it). Touching the edge
//!   counts; see [`FenceIndex::segment_hits`] for the path the segment takes.
//! - `dwell`: once per visit, at the first observation at least `dwell_s` seconds (event time)
//!   after the enter, while still inside. Only observations are evidence: a track that goes silent
//!   inside gets its dwell when it reports again, if it is still inside then.
//! - `inside` per observation for every fence containing the position; `outside` per observation
//!   for every fence of the analytic's explicit fence list not containing it (an explicit list of
//!   at most [`MAX_OUTSIDE_FENCES`] is required, otherwise every observation would report every
//!   other fence in the set).
//! - Input must be in event-time order per track (the processor orders by watermark). An
//!   observation older than the track's last is skipped ([`Skip::OutOfOrder`]); the same
//!   observation again (same id and time) is skipped as a duplicate; a different observation at
//!   the same time is applied.
//! - Event ids are the model's deterministic ids (analytic, kind, feed, track, fence id and
//!   version, time): replaying the same input from the same checkpoint yields the same events.
//!   Within one observation, events come out as exits, crosses, enters, dwells, insides, outsides,
//!   each by fence id.
//!
//! # Replacing the fence set
//!
//! [`Geofencer::replace_fences`] swaps the whole index at once; no observation ever sees a mix of
//! two versions. For a track inside a fence:
//! - the fence is gone (removed, disabled, or dropped from the analytic's list): an `exit` is
//!   emitted right away, at `max(at, the track's last observation time)` and the last position,
//!   with attribute `reason` = `fence_removed`, `fence_disabled` or `fence_deselected` and the
//!   version the visit was under;
//! - the fence's geometry changed (same id, new version): nothing happens at the swap; the next
//!   observation of the track is evaluated against the new geometry and either continues the
//!   visit (same enter time, events now name the new version) or exits (`reason` = `left`).
//!
//! A fence added by the new set produces an enter at the next observation inside it. Restoring a
//! checkpoint against a fence set that changed meanwhile ([`Geofencer::restore`]) applies the
//! same rules.
//!
//! # State
//!
//! [`GeofenceState`] is plain serde data (ordered maps, so its serialisation is byte for byte
//! reproducible): per track the last observation (time, position, id) and the open visits (fence,
//! version, enter time, whether the dwell was emitted). Checkpoint it with the input offsets it
//! reflects.
//!
//! State is per track, so it grows with every track ever seen unless tracks are forgotten:
//! [`Geofencer::forget_before`] drops the tracks silent since a cutoff (the engine calls it with the
//! analytic's `forget_after_s`), ending their open visits with `exit`, `reason` = `forgotten`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::{Duration, OffsetDateTime};
use geostream_model::{
    AnalyticId, Classify, ErrorClass, Event, EventBuilder, EventKind, FeedId, FenceId, Observation, RecordId, TrackId,
    rfc3339,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fence_index::{FenceIndex, FenceInfo};

/// Most fences an analytic reporting `outside` may list (each observation reports each of them).
pub const MAX_OUTSIDE_FENCES: usize = 64;

/// A geofence analytic's configuration (an entry of the analytics registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeofenceConfig {
    /// The analytic's id; events carry it and it is part of their ids.
    pub analytic: AnalyticId,
    /// The fences to evaluate; all enabled fences of the set when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fences: Option<Vec<FenceId>>,
    /// Emit `inside` for every observation inside a fence.
    #[serde(default)]
    pub inside: bool,
    /// Emit `outside` for every observation outside a listed fence (needs `fences`).
    #[serde(default)]
    pub outside: bool,
    /// Emit `cross` when a segment passes through a fence without a position inside it.
    #[serde(default)]
    pub cross: bool,
    /// Emit `dwell` once per visit after this many seconds inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<u64>,
    /// Copy the fence's properties into events as the attribute `fence_properties`.
    #[serde(default)]
    pub copy_properties: bool,
}

impl GeofenceConfig {
    /// A configuration emitting enter and exit only.
    pub fn new(analytic: AnalyticId) -> Self {
        GeofenceConfig {
            analytic,
            fences: None,
            inside: false,
            outside: false,
            cross: false,
            dwell_s: None,
            copy_properties: false,
        }
    }

    /// Checks the combination of options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |field: &'static str, problem: String| ConfigError { analytic: self.analytic.to_string(), field, problem };
        if let Some(list) = &self.fences {
            if list.is_empty() {
                return Err(bad("fences", "is an empty list; leave it out to evaluate every fence".into()));
            }
            let mut seen = BTreeSet::new();
            if let Some(dup) = list.iter().find(|f| !seen.insert(*f)) {
                return Err(bad("fences", format!("lists {:?} twice", dup.as_str())));
            }
        }
        if self.outside {
            match &self.fences {
                None => {
                    return Err(bad(
                        "outside",
                        format!(
                            "needs an explicit `fences` list (at most {MAX_OUTSIDE_FENCES}): every observation reports \
                             every listed fence it is outside of"
                        ),
                    ));
                }
                Some(list) if list.len() > MAX_OUTSIDE_FENCES => {
                    return Err(bad(
                        "outside",
                        format!(
                            "is set with {} fences listed; at most {MAX_OUTSIDE_FENCES} are allowed, since every \
                             observation reports each of them",
                            list.len()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.dwell_s == Some(0) {
            return Err(bad("dwell_s", "is 0; give the dwell time in seconds (at least 1) or leave it out".into()));
        }
        if self.dwell_s.is_some_and(|s| i64::try_from(s).is_err()) {
            return Err(bad("dwell_s", "is too large".into()));
        }
        Ok(())
    }
}

/// An unusable [`GeofenceConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("geofence analytic {analytic:?}: field `{field}` {problem}")]
pub struct ConfigError {
    /// The analytic id.
    pub analytic: String,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong and what would be valid.
    pub problem: String,
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

/// The last observation applied to a track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastFix {
    /// Its event time.
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// Its id.
    pub observation: RecordId,
}

/// An open visit of a track to a fence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visit {
    /// The fence version the track was last evaluated inside.
    pub version: u64,
    /// Event time of the enter.
    #[serde(with = "rfc3339")]
    pub since: OffsetDateTime,
    /// Whether this visit's dwell event was emitted.
    #[serde(default)]
    pub dwell_emitted: bool,
}

/// Everything known about one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackState {
    /// The last observation applied.
    pub last: LastFix,
    /// Open visits, by fence.
    #[serde(default)]
    pub visits: BTreeMap<FenceId, Visit>,
}

/// The checkpointable state of a [`Geofencer`]: per feed and track, a [`TrackState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeofenceState {
    tracks: BTreeMap<FeedId, BTreeMap<TrackId, TrackState>>,
}

impl GeofenceState {
    /// One track's state.
    pub fn track(&self, feed: &FeedId, track: &TrackId) -> Option<&TrackState> {
        self.tracks.get(feed)?.get(track)
    }

    /// Every track, by feed and track id.
    pub fn tracks(&self) -> impl Iterator<Item = (&FeedId, &TrackId, &TrackState)> {
        self.tracks.iter().flat_map(|(f, ts)| ts.iter().map(move |(t, s)| (f, t, s)))
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.tracks.values().map(BTreeMap::len).sum()
    }

    /// Whether no track is known.
    pub fn is_empty(&self) -> bool {
        self.tracks.values().all(BTreeMap::is_empty)
    }
}

/// Why an observation changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It has no track id, so there is no state to follow.
    NoTrack,
    /// Its geometry is not a Point with a valid WGS84 position.
    NotAPoint,
    /// It is older than the track's last observation.
    OutOfOrder,
    /// It is the track's last observation again.
    Duplicate,
}

impl Skip {
    /// Stable name, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Skip::NoTrack => "no_track",
            Skip::NotAPoint => "not_a_point",
            Skip::OutOfOrder => "out_of_order",
            Skip::Duplicate => "duplicate",
        }
    }
}

/// What [`Geofencer::observe`] did with an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Evaluated; its events (possibly none) were appended.
    Applied,
    /// Not evaluated, for this reason; no events.
    Skipped(Skip),
}

/// A geofence analytic over one fence set.
#[derive(Debug)]
pub struct Geofencer {
    config: GeofenceConfig,
    selected: Option<BTreeSet<FenceId>>,
    dwell: Option<Duration>,
    index: Arc<FenceIndex>,
    state: GeofenceState,
    /// Scratch for fence numbers, reused across observations.
    hits: Vec<u32>,
    scratch: Vec<u32>,
}

impl Geofencer {
    /// A geofencer with no tracks yet.
    pub fn new(config: GeofenceConfig, index: Arc<FenceIndex>) -> Result<Self, ConfigError> {
        config.validate()?;
        let selected = config.fences.as_ref().map(|l| l.iter().cloned().collect());
        let dwell = config.dwell_s.and_then(|s| i64::try_from(s).ok()).map(Duration::seconds);
        Ok(Geofencer {
            config,
            selected,
            dwell,
            index,
            state: GeofenceState::default(),
            hits: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// A geofencer continuing from a checkpoint. Visits to fences that `index` no longer has are
    /// closed as by [`Geofencer::replace_fences`] at `at`, with their events appended to `out`.
    pub fn restore(
        config: GeofenceConfig,
        index: Arc<FenceIndex>,
        state: GeofenceState,
        at: OffsetDateTime,
        out: &mut Vec<Event>,
    ) -> Result<Self, ConfigError> {
        let mut g = Geofencer::new(config, index)?;
        g.state = state;
        g.close_missing(at, out);
        Ok(g)
    }

    /// The configuration.
    pub fn config(&self) -> &GeofenceConfig {
        &self.config
    }

    /// The current fence index.
    pub fn index(&self) -> &Arc<FenceIndex> {
        &self.index
    }

    /// The state, for a checkpoint.
    pub fn state(&self) -> &GeofenceState {
        &self.state
    }

    /// Forgets the tracks whose last observation is older than `cutoff`, returning how many. Each
    /// open visit of a forgotten track ends with an `exit` at its last observation time plus
    /// `after` (when it became forgettable: a time fixed by the input, so a replay gives the same
    /// event id whenever its sweep runs) and the last position, `reason` = `forgotten`, as when
    /// its fence is removed. So per track and fence enter and exit still alternate, and "who is
    /// inside" stops counting tracks that went silent. A forgotten track that reports again is
    /// new (inside a fence, it `enter`s).
    pub fn forget_before(&mut self, cutoff: OffsetDateTime, after: Duration, out: &mut Vec<Event>) -> usize {
        let analytic = &self.config.analytic;
        let mut gone = 0;
        self.state.tracks.retain(|feed, tracks| {
            tracks.retain(|track, ts| {
                if ts.last.time >= cutoff {
                    return true;
                }
                let last = &ts.last;
                let time = last.time.saturating_add(after);
                for (fence, visit) in &ts.visits {
                    let e = Event::builder(analytic.clone(), EventKind::Exit, time)
                        .feed(feed.clone())
                        .track(track.clone())
                        .fence(fence.clone(), visit.version)
                        .geometry(Geometry::new_point([last.lon, last.lat]))
                        .attribute("reason", "forgotten")
                        .attribute("entered", rfc3339::format(visit.since).unwrap_or_default())
                        .attribute("duration_s", seconds(time - visit.since));
                    out.push(e.build());
                }
                gone += 1;
                false
            });
            !tracks.is_empty()
        });
        gone
    }

    /// Replaces the fence set atomically (see the module documentation for what happens to open
    /// visits). `at` is the event time from which the new set applies, normally the watermark.
    pub fn replace_fences(&mut self, index: Arc<FenceIndex>, at: OffsetDateTime, out: &mut Vec<Event>) {
        self.index = index;
        self.close_missing(at, out);
    }

    fn close_missing(&mut self, at: OffsetDateTime, out: &mut Vec<Event>) {
        let index = Arc::clone(&self.index);
        let selected = self.selected.as_ref();
        let analytic = &self.config.analytic;
        for (feed, tracks) in &mut self.state.tracks {
            for (track, ts) in tracks {
                let last = &ts.last;
                ts.visits.retain(|fence, visit| {
                    let reason = if selected.is_some_and(|s| !s.contains(fence)) {
                        "fence_deselected"
                    } else if index.position(fence).is_some() {
                        return true;
                    } else if index.is_disabled(fence) {
                        "fence_disabled"
                    } else {
                        "fence_removed"
                    };
                    let time = at.max(last.time);
                    let e = Event::builder(analytic.clone(), EventKind::Exit, time)
                        .feed(feed.clone())
                        .track(track.clone())
                        .fence(fence.clone(), visit.version)
                        .geometry(Geometry::new_point([last.lon, last.lat]))
                        .attribute("reason", reason)
                        .attribute("entered", rfc3339::format(visit.since).unwrap_or_default())
                        .attribute("duration_s", seconds(time - visit.since));
                    out.push(e.build());
                    false
                });
            }
        }
    }

    /// Applies one observation and appends its events to `out`.
    pub fn observe(&mut self, obs: &Observation, out: &mut Vec<Event>) -> Observed {
        let Some(track) = &obs.track else { return Observed::Skipped(Skip::NoTrack) };
        let Some([lon, lat]) = point_of(&obs.geometry) else { return Observed::Skipped(Skip::NotAPoint) };
        let prev = self.state.tracks.get(&obs.feed).and_then(|t| t.get(track));
        if let Some(prev) = prev {
            if obs.time < prev.last.time {
                return Observed::Skipped(Skip::OutOfOrder);
            }
            if obs.time == prev.last.time && obs.id == prev.last.observation {
                return Observed::Skipped(Skip::Duplicate);
            }
        }

        let index = Arc::clone(&self.index);
        let mut hits = std::mem::take(&mut self.hits);
        index.query(lon, lat, &mut hits);
        if let Some(sel) = &self.selected {
            hits.retain(|&n| index.fence(n).is_some_and(|f| sel.contains(&f.id)));
        }
        let inside: Vec<&FenceInfo> = hits.iter().filter_map(|&n| index.fence(n)).collect();

        let ctx = Ctx { config: &self.config, obs, track, point: [lon, lat] };
        let empty = BTreeMap::new();
        let visits = prev.map_or(&empty, |p| &p.visits);
        let is_inside = |id: &FenceId| inside.binary_search_by(|f| f.id.cmp(id)).is_ok();

        // Exits: open visits whose fence no longer contains the position.
        for (id, visit) in visits {
            if !is_inside(id) {
                let info = index.position(id).and_then(|n| index.fence(n));
                let version = info.map_or(visit.version, |f| f.version);
                let e = ctx
                    .event(EventKind::Exit, id, version, info)
                    .attribute("reason", "left")
                    .attribute("entered", rfc3339::format(visit.since).unwrap_or_default())
                    .attribute("duration_s", seconds(obs.time - visit.since));
                out.push(e.build());
            }
        }

        // Crosses: fences the segment from the last position meets, with neither end inside.
        if let (true, Some(prev)) = (self.config.cross, prev) {
            let from = [prev.last.lon, prev.last.lat];
            let mut seg = std::mem::take(&mut self.scratch);
            index.segment_hits(from, [lon, lat], &mut seg);
            if !seg.is_empty() {
                let mut at_from = Vec::new();
                index.query(from[0], from[1], &mut at_from);
                for &n in &seg {
                    let Some(info) = index.fence(n) else { continue };
                    let wanted = self.selected.as_ref().is_none_or(|s| s.contains(&info.id));
                    if wanted
                        && !is_inside(&info.id)
                        && !visits.contains_key(&info.id)
                        && at_from.binary_search(&n).is_err()
                    {
                        let e = ctx
                            .event(EventKind::Cross, &info.id, info.version, Some(info))
                            .geometry(Geometry::new_line_string([from, [lon, lat]]))
                            .attribute("from_time", rfc3339::format(prev.last.time).unwrap_or_default());
                        out.push(e.build());
                    }
                }
            }
            self.scratch = seg;
        }

        // Enters, then dwells of continuing visits; the new visit map is built alongside.
        let mut next_visits = BTreeMap::new();
        let mut dwells = Vec::new();
        for info in &inside {
            match visits.get(&info.id) {
                None => {
                    out.push(ctx.event(EventKind::Enter, &info.id, info.version, Some(info)).build());
                    next_visits.insert(
                        info.id.clone(),
                        Visit { version: info.version, since: obs.time, dwell_emitted: false },
                    );
                }
                Some(v) => {
                    let mut v = Visit { version: info.version, ..v.clone() };
                    if let Some(t) = self.dwell {
                        let inside_for = obs.time - v.since;
                        if !v.dwell_emitted && inside_for >= t {
                            v.dwell_emitted = true;
                            dwells.push(
                                ctx.event(EventKind::Dwell, &info.id, info.version, Some(info))
                                    .attribute("entered", rfc3339::format(v.since).unwrap_or_default())
                                    .attribute("duration_s", seconds(inside_for))
                                    .build(),
                            );
                        }
                    }
                    next_visits.insert(info.id.clone(), v);
                }
            }
        }
        out.append(&mut dwells);

        if self.config.inside {
            for info in &inside {
                let since = next_visits.get(&info.id).map_or(obs.time, |v: &Visit| v.since);
                out.push(
                    ctx.event(EventKind::Inside, &info.id, info.version, Some(info))
                        .attribute("duration_s", seconds(obs.time - since))
                        .build(),
                );
            }
        }
        if self.config.outside {
            for id in self.config.fences.iter().flatten() {
                if is_inside(id) {
                    continue;
                }
                if let Some(info) = index.position(id).and_then(|n| index.fence(n)) {
                    out.push(ctx.event(EventKind::Outside, id, info.version, Some(info)).build());
                }
            }
        }

        let state = TrackState { last: LastFix { time: obs.time, lon, lat, observation: obs.id }, visits: next_visits };
        self.state.tracks.entry(obs.feed.clone()).or_default().insert(track.clone(), state);
        self.hits = hits;
        Observed::Applied
    }
}

/// What every event of one observation shares.
struct Ctx<'a> {
    config: &'a GeofenceConfig,
    obs: &'a Observation,
    track: &'a TrackId,
    point: [f64; 2],
}

impl Ctx<'_> {
    fn event(&self, kind: EventKind, fence: &FenceId, version: u64, info: Option<&FenceInfo>) -> EventBuilder {
        let mut b = Event::builder(self.config.analytic.clone(), kind, self.obs.time)
            .feed(self.obs.feed.clone())
            .track(self.track.clone())
            .fence(fence.clone(), version)
            .observation(self.obs.id)
            .geometry(Geometry::new_point(self.point));
        if let Some(info) = info {
            b = b.attribute("fence_name", info.name.clone());
            if self.config.copy_properties {
                b = b.attribute("fence_properties", Value::Object(info.properties.clone()));
            }
        }
        b
    }
}

/// The position of a Point geometry, if it is a valid WGS84 one.
fn point_of(g: &Geometry) -> Option<[f64; 2]> {
    let GeometryValue::Point { coordinates } = &g.value else { return None };
    let c = coordinates.as_slice();
    let (lon, lat) = (*c.first()?, *c.get(1)?);
    ((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)).then_some([lon, lat])
}

/// A duration in seconds as a JSON number (fractional seconds kept).
fn seconds(d: Duration) -> Value {
    serde_json::Number::from_f64(d.as_seconds_f64()).map_or(Value::Null, Value::Number)
}
