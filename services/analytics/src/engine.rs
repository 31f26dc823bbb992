//! Runs a set of analytics over observations and turns their signals into the records the
//! processor produces: [`Event`]s and [`Aggregate`]s with deterministic ids, observations enriched
//! by `join` analytics, and reports of failed SQL windows.
//!
//! The caller feeds each track's observations in event-time order and moves the watermark with
//! [`Engine::advance`]; the live processor releases observations once the watermark passed them,
//! `geostream analyze` sorts a whole file first. Motion, gaps, geofence and near work on point
//! observations; other geometries are counted as skipped for them (bins use the point too). Join
//! and SQL take every observation of their feeds.
//!
//! # Fences
//!
//! Every `geofence` and `join` analytic of an engine evaluates the same fence set, the
//! [`FenceIndex`] given to [`Engine::build`]; [`Engine::replace_fences`] swaps it for all of them
//! at once, so no observation sees two versions of the set.
//!
//! # Checkpoints
//!
//! [`Engine::state`] is plain serde data ([`EngineState`], ordered maps, so its JSON is byte for
//! byte reproducible); [`Engine::build`] continues from it. An engine restored from the state it
//! had after some input produces, for the rest of the input, exactly what an engine that never
//! stopped produces. Per analytic the state is kept only if the analytic's id, version and kind are
//! unchanged (a raised version means the definition changed, so its old state would be wrong);
//! otherwise that analytic starts empty (a disabled analytic has no state, so it starts empty when
//! enabled again). Geofence state is restored against the fences given to
//! `build`, with [`Geofencer::restore`]: visits to fences that are gone meanwhile are closed with
//! an `exit`, emitted with the first outputs of the restored engine.
//!
//! # SQL
//!
//! `sql` analytics keep the observations of each open window (in the state, so they survive a
//! checkpoint). When the watermark passes a window's end the engine hands the window and its
//! observations, sorted by (time, id), to the [`WindowSql`] the caller's [`SqlFactory`] built, and
//! sets the version of the aggregates it returns (1 first; a late observation within the allowed
//! lateness re-runs the window and its results come again with the same ids and version + 1). A
//! failure becomes [`Output::Failed`]. Without a factory an engine refuses SQL specs: the runner
//! (DataFusion) lives in the `geostream-sql` crate, outside this pure core.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::{Duration, OffsetDateTime};
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, Event, EventKind, FeedId, FenceId, Observation, TrackId, Window,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bins::{Added, BinAggregator, BinResult};
use crate::fence_index::FenceIndex;
use crate::gaps::{GapDetector, GapSignal};
use crate::geofence::{GeofenceState, Geofencer, Observed, Skip};
use crate::motion::{Fix, MotionConfig, Signal, TrackMotion};
use crate::near::{NearConfig, NearHit, NearObserved, NearState, NearTracker};
use crate::spec::{AnalyticKind, AnalyticSpec, SpecError};
use crate::sql_windows::{SqlWindows, SqlWindowsState};

const NS: i128 = 1_000_000_000;

/// A result.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// For `<tenant>.events`.
    Event(Box<Event>),
    /// For `<tenant>.aggregates`.
    Aggregate(Box<Aggregate>),
    /// An observation enriched by a `join` analytic (for the processor's enriched topic).
    Joined(Box<Observation>),
    /// An analytic failed on some input (e.g. a SQL window); reported, never retried.
    Failed {
        /// The analytic.
        analytic: AnalyticId,
        /// What failed.
        message: String,
    },
}

/// Runs an analytic's SQL over the observations of one closed window. The `geostream-sql` crate
/// implements it with DataFusion; the trait keeps this crate free of DataFusion, so the analytics
/// core builds and tests quickly and stays pure.
pub trait WindowSql: Send {
    /// The window's results, each an [`Aggregate`] of kind `sql` with a deterministic id. An error
    /// is a message naming what failed (the query, a column, a value); the window is then skipped
    /// and reported, never retried.
    fn run(&mut self, window: &Window, observations: &[Observation]) -> Result<Vec<Aggregate>, String>;
}

/// Builds the [`WindowSql`] of a `sql` analytic (an error names what is wrong with its query).
pub type SqlFactory = dyn Fn(&AnalyticSpec) -> Result<Box<dyn WindowSql>, String> + Send + Sync;

/// What an engine runs.
pub struct EngineConfig<'a> {
    /// The analytics; disabled ones are skipped.
    pub specs: &'a [AnalyticSpec],
    /// The fences of `geofence` and `join` analytics.
    pub fences: Arc<FenceIndex>,
    /// Builds the runners of `sql` analytics; without it, SQL specs are refused.
    pub sql: Option<&'a SqlFactory>,
}

/// Observations an analytic could not use, by reason (since the engine was built; not part of
/// the state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Not a Point geometry (or a Point outside WGS84 range).
    pub not_a_point: u64,
    /// Older than the state it would have changed (bins, SQL: past the allowed lateness).
    pub late: u64,
    /// Same or older time than the track's previous observation.
    pub out_of_order: u64,
}

/// The position a `gap` event is placed at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Last {
    feed: String,
    lon: f64,
    lat: f64,
}

/// The checkpointable state of an [`Engine`]: the last watermark and, per analytic id, its
/// version and its kind's state. Plain data with ordered maps, so serialising the same state
/// always gives the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineState {
    /// The highest watermark given to [`Engine::advance`] (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watermark_ns: Option<i128>,
    #[serde(default)]
    analytics: BTreeMap<AnalyticId, AnalyticState>,
}

impl EngineState {
    /// The analytics that have state, by id.
    pub fn analytics(&self) -> impl Iterator<Item = &AnalyticId> {
        self.analytics.keys()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyticState {
    version: u64,
    state: KindState,
}

/// Externally tagged: serde's buffering of internally tagged enums cannot carry the i128 times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum KindState {
    Motion { tracks: BTreeMap<String, TrackMotion> },
    Gaps { detector: GapDetector, last: BTreeMap<String, Last> },
    Bins { bins: Box<BinAggregator> },
    Geofence { tracks: GeofenceState },
    Near { near: NearState },
    Join {},
    Sql { windows: SqlWindowsState },
}

impl KindState {
    fn kind(&self) -> &'static str {
        match self {
            KindState::Motion { .. } => "motion",
            KindState::Gaps { .. } => "gaps",
            KindState::Bins { .. } => "bins",
            KindState::Geofence { .. } => "geofence",
            KindState::Near { .. } => "near",
            KindState::Join {} => "join",
            KindState::Sql { .. } => "sql",
        }
    }
}

enum State {
    Motion { cfg: MotionConfig, tracks: BTreeMap<String, TrackMotion> },
    Gaps { threshold_s: u64, detector: GapDetector, last: BTreeMap<String, Last> },
    Bins { agg: Box<BinAggregator>, properties: Vec<String> },
    Geofence(Box<Geofencer>),
    Near(Box<NearTracker>),
    Join { attribute: String, properties: Vec<String>, selected: Option<BTreeSet<FenceId>> },
    Sql { runner: Box<dyn WindowSql>, windows: SqlWindows },
}

impl State {
    fn needs_point(&self) -> bool {
        !matches!(self, State::Join { .. } | State::Sql { .. })
    }
}

struct Running {
    spec: AnalyticSpec,
    state: State,
}

/// The analytics of one processor partition (or of one `analyze` run).
pub struct Engine {
    running: Vec<Running>,
    skipped: Skipped,
    fences: Arc<FenceIndex>,
    watermark_ns: Option<i128>,
    /// Outputs of [`Engine::build`] (exits of fences gone since the checkpoint), emitted with
    /// the next call's outputs.
    pending: Vec<Output>,
    /// Scratch for fence numbers, reused across observations.
    hits: Vec<u32>,
    /// Tracks forgotten since the engine was built (not part of the state).
    forgotten: u64,
}

/// How often, in fractions of its `forget_after_s`, an analytic sweeps its tracks: a track is
/// forgotten between `forget_after_s` and 17/16 of it after its last report. A sweep walks every
/// track, so doing it at every watermark would cost as much as the observations themselves.
const FORGET_SWEEPS: i128 = 16;

fn to_time(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn point(lon: f64, lat: f64) -> Geometry {
    Geometry::new(GeometryValue::new_point([lon, lat]))
}

fn rfc3339(ns: i128) -> Value {
    use geostream_model::time::format_description::well_known::Rfc3339;
    Value::String(to_time(ns).format(&Rfc3339).unwrap_or_default())
}

/// The position of a Point observation with a usable WGS84 position.
fn lon_lat(obs: &Observation) -> Option<(f64, f64)> {
    let GeometryValue::Point { coordinates } = &obs.geometry.value else { return None };
    let c = coordinates.as_slice();
    let (lon, lat) = (*c.first()?, *c.get(1)?);
    ((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)).then_some((lon, lat))
}

impl Engine {
    /// Validates the specs and sets up empty state for the enabled ones, with an empty fence set
    /// and no SQL runner (SQL specs are refused).
    pub fn new(specs: &[AnalyticSpec]) -> Result<Self, SpecError> {
        let fences = Arc::new(FenceIndex::build_skipping_invalid(std::iter::empty()).0);
        Self::build(EngineConfig { specs, fences, sql: None }, None)
    }

    /// `state` from [`Engine::state`] of an earlier run (a checkpoint). Per analytic, state is
    /// kept only if the analytic's id, version and kind are unchanged; otherwise that analytic
    /// starts empty. Geofence state is restored with [`Geofencer::restore`] against the given
    /// fences (so removed fences exit, per its rules, at the checkpoint's watermark or the track's
    /// last observation, whichever is later); those exits come with the next call's outputs.
    pub fn build(config: EngineConfig<'_>, state: Option<EngineState>) -> Result<Self, SpecError> {
        let EngineConfig { specs, fences, sql } = config;
        let (watermark_ns, mut saved) = state.map_or((None, BTreeMap::new()), |s| (s.watermark_ns, s.analytics));
        let restore_at = watermark_ns.map_or(OffsetDateTime::UNIX_EPOCH, to_time);
        let mut running = Vec::new();
        let mut pending = Vec::new();
        let mut ids = BTreeSet::new();
        for spec in specs.iter().filter(|s| s.enabled) {
            spec.validate()?;
            let err = |problem: String| SpecError { id: spec.id.to_string(), problem };
            if !ids.insert(spec.id.clone()) {
                return Err(err("the id is given twice; analytic ids must be unique".into()));
            }
            let prior = saved
                .remove(&spec.id)
                .filter(|s| s.version == spec.version && s.state.kind() == spec.analytic.name())
                .map(|s| s.state);
            let state = match &spec.analytic {
                AnalyticKind::Motion { stop_speed_mps, stop_after_s, max_speed_mps, jump_min_distance_m, .. } => {
                    State::Motion {
                        cfg: MotionConfig {
                            stop_speed_mps: *stop_speed_mps,
                            stop_after_ns: i128::from(*stop_after_s) * NS,
                            max_speed_mps: *max_speed_mps,
                            jump_min_distance_m: *jump_min_distance_m,
                        },
                        tracks: match prior {
                            Some(KindState::Motion { tracks }) => tracks,
                            _ => BTreeMap::new(),
                        },
                    }
                }
                AnalyticKind::Gaps { threshold_s, .. } => {
                    let (detector, last) = match prior {
                        Some(KindState::Gaps { detector, last }) => (detector, last),
                        _ => (GapDetector::new(i128::from(*threshold_s) * NS), BTreeMap::new()),
                    };
                    State::Gaps { threshold_s: *threshold_s, detector, last }
                }
                AnalyticKind::Bins { cells, allowed_lateness_s, properties, .. } => {
                    let windows = spec.window_spec().ok_or_else(|| err("no window".into()))?;
                    let lateness = i128::from(*allowed_lateness_s) * NS;
                    let agg = match prior {
                        // Settings changed under the same version (a spec edited outside the
                        // registry, which would have raised it) make the old bins meaningless.
                        Some(KindState::Bins { bins }) if bins.has_settings(cells, &windows, lateness) => bins,
                        _ => Box::new(BinAggregator::new(*cells, windows, lateness).map_err(|e| err(e.to_string()))?),
                    };
                    State::Bins { agg, properties: properties.clone() }
                }
                AnalyticKind::Geofence { .. } => {
                    let cfg = spec.geofence_config().ok_or_else(|| err("not a geofence".into()))?;
                    let g = match prior {
                        Some(KindState::Geofence { tracks }) => {
                            let mut events = Vec::new();
                            let g = Geofencer::restore(cfg, Arc::clone(&fences), tracks, restore_at, &mut events)
                                .map_err(|e| err(format!("analytic.{} {}", e.field, e.problem)))?;
                            pending.extend(events.into_iter().map(|e| Output::Event(Box::new(e))));
                            g
                        }
                        _ => Geofencer::new(cfg, Arc::clone(&fences))
                            .map_err(|e| err(format!("analytic.{} {}", e.field, e.problem)))?,
                    };
                    State::Geofence(Box::new(g))
                }
                AnalyticKind::Near { distance_m, targets, sources, max_age_s } => {
                    let cfg = NearConfig {
                        distance_m: *distance_m,
                        max_age_ns: i128::from(*max_age_s) * NS,
                        targets: targets.clone(),
                        sources: sources.clone(),
                    };
                    let tracker = match prior {
                        Some(KindState::Near { near }) => NearTracker::restore(cfg, near),
                        _ => NearTracker::new(cfg),
                    };
                    State::Near(Box::new(tracker))
                }
                AnalyticKind::Join { attribute, properties, fences: list } => State::Join {
                    attribute: attribute.clone(),
                    properties: properties.clone(),
                    selected: list.as_ref().map(|l| l.iter().cloned().collect()),
                },
                AnalyticKind::Sql { allowed_lateness_s, .. } => {
                    let Some(factory) = sql else {
                        return Err(err(
                            "kind `sql` needs the geostream-sql runner (DataFusion), which this program was built \
                             without; remove the analytic or run it where the SQL runner is available"
                                .into(),
                        ));
                    };
                    let runner = factory(spec).map_err(|e| err(format!("analytic.query: {e}")))?;
                    let windows = spec.window_spec().ok_or_else(|| err("no window".into()))?;
                    let lateness = i128::from(*allowed_lateness_s) * NS;
                    let windows = match prior {
                        Some(KindState::Sql { windows: s }) => SqlWindows::restore(windows, lateness, s),
                        _ => SqlWindows::new(windows, lateness),
                    };
                    State::Sql { runner, windows }
                }
            };
            running.push(Running { spec: spec.clone(), state });
        }
        Ok(Self { running, skipped: Skipped::default(), fences, watermark_ns, pending, hits: Vec::new(), forgotten: 0 })
    }

    /// The state, for a checkpoint (see the module documentation).
    pub fn state(&self) -> EngineState {
        let analytics = self
            .running
            .iter()
            .map(|r| {
                let state = match &r.state {
                    State::Motion { tracks, .. } => KindState::Motion { tracks: tracks.clone() },
                    State::Gaps { detector, last, .. } => {
                        KindState::Gaps { detector: detector.clone(), last: last.clone() }
                    }
                    State::Bins { agg, .. } => KindState::Bins { bins: agg.clone() },
                    State::Geofence(g) => KindState::Geofence { tracks: g.state().clone() },
                    State::Near(n) => KindState::Near { near: n.state() },
                    State::Join { .. } => KindState::Join {},
                    State::Sql { windows, .. } => KindState::Sql { windows: windows.state() },
                };
                (r.spec.id.clone(), AnalyticState { version: r.spec.version, state })
            })
            .collect();
        EngineState { watermark_ns: self.watermark_ns, analytics }
    }

    /// What was skipped so far.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Tracks forgotten so far (`forget_after_s`), over all analytics.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Atomic swap of the fence set for all geofence/join analytics; returns the exits it causes
    /// (see [`Geofencer::replace_fences`]). `at` is the event time from which the new set
    /// applies, normally the watermark.
    pub fn replace_fences(&mut self, fences: Arc<FenceIndex>, at: OffsetDateTime) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.pending);
        let mut events = Vec::new();
        for r in &mut self.running {
            if let State::Geofence(g) = &mut r.state {
                g.replace_fences(Arc::clone(&fences), at, &mut events);
            }
        }
        self.fences = fences;
        out.extend(events.into_iter().map(|e| Output::Event(Box::new(e))));
        out
    }

    /// Takes one observation (in event-time order within its track).
    pub fn observe(&mut self, obs: &Observation) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.pending);
        let pos = lon_lat(obs);
        if pos.is_none() && self.running.iter().any(|r| r.state.needs_point() && r.spec.wants_feed(obs.feed.as_str())) {
            self.skipped.not_a_point += 1;
        }
        let t = obs.time.unix_timestamp_nanos();
        let fences = Arc::clone(&self.fences);
        for r in &mut self.running {
            if !r.spec.wants_feed(obs.feed.as_str()) {
                continue;
            }
            let analytic = &r.spec.id;
            match &mut r.state {
                State::Join { attribute, properties, selected } => {
                    let list = match pos {
                        Some((lon, lat)) => {
                            fences.query(lon, lat, &mut self.hits);
                            joined_fences(&fences, &self.hits, properties, selected.as_ref())
                        }
                        None => Vec::new(),
                    };
                    let mut enriched = obs.clone();
                    enriched.attributes.insert(attribute.clone(), Value::Array(list));
                    out.push(Output::Joined(Box::new(enriched)));
                }
                State::Sql { windows, .. } => {
                    if !windows.add(obs, t) {
                        self.skipped.late += 1;
                    }
                }
                State::Geofence(g) => {
                    let mut events = Vec::new();
                    match g.observe(obs, &mut events) {
                        Observed::Applied | Observed::Skipped(Skip::NoTrack) => {}
                        // Not a Point was counted above; a Point out of range is counted here.
                        Observed::Skipped(Skip::NotAPoint) => {
                            if pos.is_some() {
                                self.skipped.not_a_point += 1;
                            }
                        }
                        Observed::Skipped(Skip::OutOfOrder | Skip::Duplicate) => self.skipped.out_of_order += 1,
                    }
                    out.extend(events.into_iter().map(|e| Output::Event(Box::new(e))));
                }
                State::Near(n) => {
                    let (Some((lon, lat)), Some(track)) = (pos, &obs.track) else { continue };
                    let mut hits = Vec::new();
                    if n.observe(obs, track, crate::near::Fix { time_ns: t, lon, lat }, &mut hits)
                        == NearObserved::OutOfOrder
                    {
                        self.skipped.out_of_order += 1;
                    }
                    for h in hits {
                        out.push(Output::Event(Box::new(near_event(analytic, obs, track, (lon, lat), h))));
                    }
                }
                State::Motion { cfg, tracks } => {
                    let (Some((lon, lat)), Some(track)) = (pos, &obs.track) else { continue };
                    let m = tracks.entry(track.as_str().to_owned()).or_default();
                    let Ok(update) = m.update(Fix { time_ns: t, lon, lat }, cfg) else {
                        self.skipped.out_of_order += 1;
                        continue;
                    };
                    for s in update.signals {
                        let (kind, attrs): (EventKind, Vec<(&str, Value)>) = match s {
                            Signal::Stop { since_ns } => (EventKind::Stop, vec![("since", rfc3339(since_ns))]),
                            Signal::Moving => (EventKind::Moving, vec![]),
                            Signal::Jump { distance_m, implied_speed_mps } => (
                                EventKind::Jump,
                                vec![
                                    ("distance_m", Value::from(distance_m)),
                                    ("implied_speed_mps", Value::from(implied_speed_mps)),
                                ],
                            ),
                        };
                        let mut b = Event::builder(analytic.clone(), kind, obs.time)
                            .feed(obs.feed.clone())
                            .track(track.clone())
                            .geometry(point(lon, lat))
                            .observation(obs.id);
                        for (k, v) in attrs {
                            b = b.attribute(k, v);
                        }
                        out.push(Output::Event(Box::new(b.build())));
                    }
                }
                State::Gaps { threshold_s, detector, last } => {
                    let (Some((lon, lat)), Some(track)) = (pos, &obs.track) else { continue };
                    if let Some(GapSignal::Resumed { at_ns, silent_ns, .. }) = detector.observe(track.as_str(), t) {
                        let b = Event::builder(analytic.clone(), EventKind::Resumed, to_time(at_ns))
                            .feed(obs.feed.clone())
                            .track(track.clone())
                            .geometry(point(lon, lat))
                            .observation(obs.id)
                            .attribute("silent_s", Value::from(silent_ns as f64 / 1e9))
                            .attribute("threshold_s", Value::from(*threshold_s));
                        out.push(Output::Event(Box::new(b.build())));
                    }
                    last.insert(track.as_str().to_owned(), Last { feed: obs.feed.as_str().to_owned(), lon, lat });
                }
                State::Bins { agg, properties } => {
                    let Some((lon, lat)) = pos else { continue };
                    let values: Vec<(&str, f64)> = properties
                        .iter()
                        .filter_map(|p| obs.attributes.get(p).and_then(Value::as_f64).map(|v| (p.as_str(), v)))
                        .collect();
                    match agg.add(t, lon, lat, &values) {
                        Added::Counted(_) => {}
                        Added::Late => self.skipped.late += 1,
                        Added::NoCell => self.skipped.not_a_point += 1,
                    }
                }
            }
        }
        out
    }

    /// Moves the watermark: declares gaps, emits the windows that ended (bins, SQL), forgets
    /// `near` targets that are too old and the tracks silent past their analytic's
    /// `forget_after_s` (geofence visits they leave open end with an `exit`).
    pub fn advance(&mut self, watermark: OffsetDateTime) -> Vec<Output> {
        let w = watermark.unix_timestamp_nanos();
        let old = self.watermark_ns;
        let new = old.map_or(w, |o| o.max(w));
        self.watermark_ns = Some(new);
        let mut out = self.advance_inner(w, true);
        self.forget(old, new, &mut out);
        out
    }

    /// Sweeps an analytic's tracks when the watermark crosses a multiple of its sweep step,
    /// forgetting those silent for `forget_after_s` before that multiple. The processor advances
    /// the watermark at points that depend on how records were batched, but never past the next
    /// observation's time; with the cutoff taken from the multiple rather than the watermark, and
    /// exits stamped from each track's own last report, any run over the same input forgets the
    /// same tracks before the same observations and emits the same events. Never from
    /// [`Engine::finish`]: the end of a file is not silence.
    fn forget(&mut self, old: Option<i128>, new: i128, out: &mut Vec<Output>) {
        for r in &mut self.running {
            let Some(after_s) = r.spec.analytic.forget_after_s() else { continue };
            let after = i128::from(after_s) * NS;
            let step = (after / FORGET_SWEEPS).max(NS);
            if old.is_some_and(|o| o.div_euclid(step) == new.div_euclid(step)) {
                continue;
            }
            let cutoff = new.div_euclid(step) * step - after;
            match &mut r.state {
                State::Motion { tracks, .. } => {
                    let before = tracks.len();
                    tracks.retain(|_, m| m.last_time_ns().is_some_and(|t| t >= cutoff));
                    self.forgotten += (before - tracks.len()) as u64;
                }
                State::Gaps { detector, last, .. } => {
                    for track in detector.forget_before(cutoff) {
                        last.remove(&track);
                        self.forgotten += 1;
                    }
                }
                State::Geofence(g) => {
                    // Before the earliest representable time nothing can be that old.
                    let Ok(cutoff) = OffsetDateTime::from_unix_timestamp_nanos(cutoff) else { continue };
                    let mut events = Vec::new();
                    let after = Duration::seconds(i64::try_from(after_s).unwrap_or(i64::MAX));
                    self.forgotten += g.forget_before(cutoff, after, &mut events) as u64;
                    out.extend(events.into_iter().map(|e| Output::Event(Box::new(e))));
                }
                _ => {}
            }
        }
    }

    /// End of a finite input (`geostream analyze`): emits every open window; declares no gaps,
    /// since the end of a file is not silence.
    pub fn finish(&mut self) -> Vec<Output> {
        self.advance_inner(i128::from(i64::MAX), false)
    }

    fn advance_inner(&mut self, w: i128, gaps: bool) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.pending);
        for r in &mut self.running {
            let analytic = &r.spec.id;
            match &mut r.state {
                State::Motion { .. } | State::Geofence(_) | State::Join { .. } => {}
                State::Gaps { threshold_s, detector, last } if gaps => {
                    for s in detector.advance(w) {
                        let GapSignal::Gap { track, last_ns, at_ns } = s else { continue };
                        let mut b = Event::builder(analytic.clone(), EventKind::Gap, to_time(at_ns))
                            .attribute("last_report", rfc3339(last_ns))
                            .attribute("threshold_s", Value::from(*threshold_s));
                        if let Some(l) = last.get(&track) {
                            b = b.geometry(point(l.lon, l.lat));
                            if let Ok(f) = FeedId::new(l.feed.as_str()) {
                                b = b.feed(f);
                            }
                        }
                        if let Ok(tr) = TrackId::new(track.as_str()) {
                            b = b.track(tr);
                        }
                        out.push(Output::Event(Box::new(b.build())));
                    }
                }
                State::Gaps { .. } => {}
                State::Bins { agg, .. } => {
                    let cells = *agg.cells();
                    for res in agg.advance(w) {
                        if let Some(a) = aggregate(analytic, &cells, res) {
                            out.push(Output::Aggregate(Box::new(a)));
                        }
                    }
                }
                State::Near(n) => n.advance(w),
                State::Sql { runner, windows } => {
                    windows.advance(w, |due| {
                        let window = match Window::new(to_time(due.start_ns), to_time(due.end_ns)) {
                            Ok(window) => window,
                            Err(e) => {
                                out.push(Output::Failed { analytic: analytic.clone(), message: e.to_string() });
                                return;
                            }
                        };
                        match runner.run(&window, due.observations) {
                            Ok(aggregates) => {
                                for mut a in aggregates {
                                    a.version = due.version;
                                    out.push(Output::Aggregate(Box::new(a)));
                                }
                            }
                            Err(message) => out.push(Output::Failed {
                                analytic: analytic.clone(),
                                message: format!(
                                    "window {} to {}: {message}",
                                    rfc3339(due.start_ns).as_str().unwrap_or_default(),
                                    rfc3339(due.end_ns).as_str().unwrap_or_default()
                                ),
                            }),
                        }
                    });
                }
            }
        }
        out
    }
}

/// The `join` list: `{id, version, name, properties}` per containing fence, by fence id.
fn joined_fences(
    fences: &FenceIndex,
    hits: &[u32],
    properties: &[String],
    selected: Option<&BTreeSet<FenceId>>,
) -> Vec<Value> {
    hits.iter()
        .filter_map(|&n| fences.fence(n))
        .filter(|f| selected.is_none_or(|s| s.contains(&f.id)))
        .map(|f| {
            let props: Map<String, Value> =
                properties.iter().filter_map(|p| f.properties.get(p).map(|v| (p.clone(), v.clone()))).collect();
            let mut entry = Map::new();
            entry.insert("id".into(), Value::from(f.id.as_str()));
            entry.insert("version".into(), Value::from(f.version));
            entry.insert("name".into(), Value::from(f.name.as_str()));
            entry.insert("properties".into(), Value::Object(props));
            Value::Object(entry)
        })
        .collect()
}

fn near_event(analytic: &AnalyticId, obs: &Observation, track: &TrackId, (lon, lat): (f64, f64), h: NearHit) -> Event {
    let mut b = Event::builder(analytic.clone(), EventKind::Near, obs.time)
        .feed(obs.feed.clone())
        .track(track.clone())
        .geometry(point(lon, lat))
        .observation(obs.id)
        .attribute("other_feed", h.other.0.as_str())
        .attribute("other_track", h.other.1.as_str())
        .attribute("other_time", rfc3339(h.other_fix.time_ns))
        .attribute("other_position", Value::from(vec![h.other_fix.lon, h.other_fix.lat]))
        .attribute("distance_m", Value::from(h.distance_m));
    if let Some(fence) = crate::near::target_fence_id(&h.other) {
        b = b.fence(fence, 0);
    }
    b.build()
}

fn aggregate(analytic: &AnalyticId, cells: &crate::bins::CellSpec, r: BinResult) -> Option<Aggregate> {
    let window = Window::new(to_time(r.window_start_ns), to_time(r.window_end_ns)).ok()?;
    let mut a = Aggregate::new(AggregateKind::Bin, analytic.clone(), window, r.cell.clone());
    a.version = u32::try_from(r.version).unwrap_or(u32::MAX);
    a.count = r.count;
    for (name, s) in &r.stats {
        a.values.insert(format!("{name}_count"), s.count as f64);
        a.values.insert(format!("{name}_sum"), s.sum);
        a.values.insert(format!("{name}_avg"), s.avg());
        a.values.insert(format!("{name}_min"), s.min);
        a.values.insert(format!("{name}_max"), s.max);
    }
    a.values.retain(|_, v| v.is_finite());
    if let Some(ring) = cells.outline(&r.cell) {
        let ring: Vec<Vec<f64>> = ring.iter().map(|p| vec![p[0], p[1]]).collect();
        a.geometry = Some(Geometry::new(GeometryValue::new_polygon(vec![ring])));
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::{FeedId, TrackId};

    fn obs(track: &str, t: i64, lon: f64, lat: f64, speed: f64) -> Observation {
        let mut attrs = serde_json::Map::new();
        attrs.insert("speed".into(), Value::from(speed));
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000 + t).unwrap();
        Observation::try_new(
            FeedId::new("f").unwrap(),
            Some(TrackId::new(track).unwrap()),
            time,
            time,
            point(lon, lat),
            attrs,
        )
        .unwrap()
    }

    fn specs() -> Vec<AnalyticSpec> {
        from_json(
            r#"[
            {"id": "motion", "analytic": {"kind": "motion"}},
            {"id": "gaps", "analytic": {"kind": "gaps", "threshold_s": 300}},
            {"id": "bins", "analytic": {"kind": "bins", "cells": {"kind": "geohash", "precision": 5},
             "window_s": 600, "properties": ["speed"]}}
        ]"#,
        )
    }

    fn from_json(s: &str) -> Vec<AnalyticSpec> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn events_and_aggregates_are_valid_records_with_stable_ids() {
        let run = || {
            let mut e = Engine::new(&specs()).unwrap();
            let mut out = Vec::new();
            let input = [
                obs("a", 0, 10.0, 50.0, 1.0),
                obs("b", 10, 10.0001, 50.0, 2.0),
                obs("a", 30, 10.0, 50.0, 3.0),
                obs("a", 200, 10.0, 50.0, 0.0),
                obs("a", 1000, 20.0, 50.0, 5.0),
            ];
            for o in &input {
                out.extend(e.advance(o.time));
                out.extend(e.observe(o));
            }
            out.extend(e.finish());
            out
        };
        let out = run();
        let mut kinds = BTreeMap::new();
        let mut bin_total = 0;
        for o in &out {
            match o {
                Output::Event(ev) => {
                    ev.validate().unwrap();
                    *kinds.entry(ev.kind.as_str()).or_insert(0) += 1;
                }
                Output::Aggregate(a) => {
                    a.validate().unwrap();
                    bin_total += a.count;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(bin_total, 5, "every observation in exactly one tumbling window");
        assert_eq!(kinds.get("stop"), Some(&1), "{kinds:?}");
        assert_eq!(kinds.get("jump"), Some(&1), "{kinds:?}: 10 degrees in 800 s");
        assert_eq!(kinds.get("gap"), Some(&2), "{kinds:?}: a (200 -> 1000) and b (10 -> end, declared at 1000)");
        assert_eq!(kinds.get("resumed"), Some(&1), "{kinds:?}");
        assert_eq!(run(), out, "deterministic, ids included");
    }

    #[test]
    fn invalid_specs_are_refused_with_the_field() {
        let bad: Vec<AnalyticSpec> =
            serde_json::from_str(r#"[{"id": "g", "analytic": {"kind": "gaps", "threshold_s": 0}}]"#).unwrap();
        let e = Engine::new(&bad).err().unwrap().to_string();
        assert!(e.contains("threshold_s"), "{e}");
        let bad: Vec<AnalyticSpec> = serde_json::from_str(
            r#"[{"id": "b", "analytic": {"kind": "bins", "cells": {"kind": "h3", "resolution": 20}, "window_s": 60}}]"#,
        )
        .unwrap();
        assert!(Engine::new(&bad).err().unwrap().to_string().contains("resolution 20"));
    }

    fn fence(id: &str, x0: f64, y0: f64, size: f64, props: Value) -> geostream_model::FenceSpec {
        let (x1, y1) = (x0 + size, y0 + size);
        geostream_model::FenceSpec {
            id: FenceId::new(id).unwrap(),
            version: 3,
            name: format!("fence {id}"),
            geometry: geostream_model::FenceShape::Geometry(Geometry::new_polygon([[
                [x0, y0],
                [x1, y0],
                [x1, y1],
                [x0, y1],
                [x0, y0],
            ]])),
            properties: props.as_object().cloned().unwrap_or_default(),
            enabled: true,
        }
    }

    fn fences(specs: &[geostream_model::FenceSpec]) -> Arc<FenceIndex> {
        Arc::new(FenceIndex::build(specs).unwrap())
    }

    fn engine(specs: &[AnalyticSpec], f: Arc<FenceIndex>) -> Engine {
        Engine::build(EngineConfig { specs, fences: f, sql: None }, None).unwrap()
    }

    fn events(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(format!(
                    "{}:{}:{}",
                    e.kind,
                    e.track.as_ref().map_or("", |t| t.as_str()),
                    e.attributes
                        .get("other_track")
                        .and_then(Value::as_str)
                        .map_or_else(|| e.fence.as_ref().map_or(String::new(), |f| f.id.to_string()), str::to_owned)
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn geofence_kind_runs_the_geofencer_over_the_engine_fences() {
        let specs =
            from_json(r#"[{"id": "harbour", "analytic": {"kind": "geofence", "inside": true, "dwell_s": 60}}]"#);
        let mut e = engine(&specs, fences(&[fence("a", 0.0, 0.0, 1.0, Value::Null)]));
        let mut out = Vec::new();
        for o in [obs("1", 0, -0.5, 0.5, 0.0), obs("1", 10, 0.5, 0.5, 0.0), obs("1", 100, 0.5, 0.6, 0.0)] {
            out.extend(e.observe(&o));
        }
        out.extend(e.observe(&obs("1", 200, 2.0, 0.5, 0.0)));
        assert_eq!(events(&out), ["enter:1:a", "inside:1:a", "dwell:1:a", "inside:1:a", "exit:1:a"]);
        // Replacing the set closes open visits at once.
        e.observe(&obs("2", 300, 0.5, 0.5, 0.0));
        let out = e.replace_fences(fences(&[]), OffsetDateTime::from_unix_timestamp(1_700_000_400).unwrap());
        assert_eq!(events(&out), ["exit:2:a"]);
    }

    #[test]
    fn geofence_spec_errors_name_the_field() {
        let bad = from_json(r#"[{"id": "g", "analytic": {"kind": "geofence", "outside": true}}]"#);
        let e = Engine::new(&bad).err().unwrap().to_string();
        assert!(e.contains("analytic.outside"), "{e}");
        let bad = from_json(r#"[{"id": "g", "analytic": {"kind": "geofence", "dwell_s": 0}}]"#);
        assert!(Engine::new(&bad).err().unwrap().to_string().contains("dwell_s"));
        let unknown: Result<Vec<AnalyticSpec>, _> =
            serde_json::from_str(r#"[{"id": "g", "analytic": {"kind": "geofence", "insid": true}}]"#);
        assert!(unknown.unwrap_err().to_string().contains("insid"));
    }

    #[test]
    fn near_fires_once_per_pair_and_rearms_only_beyond_the_hysteresis() {
        let specs = from_json(r#"[{"id": "near", "analytic": {"kind": "near", "distance_m": 1000}}]"#);
        let mut e = engine(&specs, fences(&[]));
        // 0.01 degrees of latitude is about 1,112 m.
        let steps = [
            (obs("a", 0, 10.0, 50.0, 0.0), vec![]),
            (obs("b", 1, 10.0, 50.02, 0.0), vec![]),
            (obs("b", 2, 10.0, 50.005, 0.0), vec!["near:b:a"]),
            (obs("a", 3, 10.0, 50.0, 0.0), vec!["near:a:b"]),
            // 1,050 m: beyond the distance but inside the hysteresis, so no re-arm.
            (obs("b", 4, 10.0, 50.00944, 0.0), vec![]),
            (obs("b", 5, 10.0, 50.005, 0.0), vec![]),
            // 1,334 m: separated; the next approach fires again.
            (obs("b", 6, 10.0, 50.012, 0.0), vec![]),
            (obs("b", 7, 10.0, 50.001, 0.0), vec!["near:b:a"]),
        ];
        for (i, (o, want)) in steps.iter().enumerate() {
            assert_eq!(events(&e.observe(o)), *want, "step {i}");
        }
    }

    #[test]
    fn near_ignores_stale_targets_and_respects_filters() {
        let specs = from_json(
            r#"[{"id": "near", "analytic": {"kind": "near", "distance_m": 500, "max_age_s": 60,
                 "targets": {"attribute": {"name": "speed", "value": 0.0}}, "sources": {"feeds": ["f"]}}}]"#,
        );
        let mut e = engine(&specs, fences(&[]));
        assert!(e.observe(&obs("buoy", 0, 10.0, 50.0, 0.0)).is_empty());
        assert!(e.observe(&obs("ship", 100, 10.0, 50.001, 5.0)).is_empty(), "the buoy is 100 s old");
        assert!(e.observe(&obs("buoy", 110, 10.0, 50.0, 0.0)).is_empty(), "buoy -> ship: ship is no target");
        let out = e.observe(&obs("ship", 120, 10.0, 50.001, 5.0));
        assert_eq!(events(&out), ["near:ship:buoy"]);
        let Output::Event(ev) = &out[0] else { panic!() };
        ev.validate().unwrap();
        let d = ev.attributes["distance_m"].as_f64().unwrap();
        assert!((d - 111.2).abs() < 1.0, "{d}");
        let bad = from_json(r#"[{"id": "n", "analytic": {"kind": "near", "distance_m": -1}}]"#);
        assert!(Engine::new(&bad).err().unwrap().to_string().contains("distance_m"));
    }

    #[test]
    fn near_events_of_one_source_at_one_time_have_distinct_ids() {
        let specs = from_json(r#"[{"id": "near", "analytic": {"kind": "near", "distance_m": 1000}}]"#);
        let mut e = engine(&specs, fences(&[]));
        e.observe(&obs("b", 0, 10.0, 50.001, 0.0));
        e.observe(&obs("c", 0, 10.0, 49.999, 0.0));
        let out = e.observe(&obs("a", 1, 10.0, 50.0, 0.0));
        assert_eq!(events(&out), ["near:a:b", "near:a:c"]);
        let ids: BTreeSet<_> = out
            .iter()
            .map(|o| match o {
                Output::Event(e) => e.id,
                _ => panic!(),
            })
            .collect();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn join_lists_the_containing_fences_with_chosen_properties() {
        let specs = from_json(
            r#"[{"id": "j", "analytic": {"kind": "join", "attribute": "zones", "properties": ["berth"]}},
                {"id": "k", "feeds": ["other"], "analytic": {"kind": "join"}}]"#,
        );
        let f = fences(&[
            fence("a", 0.0, 0.0, 1.0, serde_json::json!({"berth": 7, "secret": 1})),
            fence("b", 0.5, 0.0, 1.0, Value::Null),
        ]);
        let mut e = engine(&specs, f);
        let out = e.observe(&obs("1", 0, 0.7, 0.5, 0.0));
        assert_eq!(out.len(), 1, "only the analytic of the observation's feed");
        let Output::Joined(j) = &out[0] else { panic!("{out:?}") };
        assert_eq!(
            j.attributes["zones"],
            serde_json::json!([
                {"id": "a", "version": 3, "name": "fence a", "properties": {"berth": 7}},
                {"id": "b", "version": 3, "name": "fence b", "properties": {}}
            ])
        );
        assert_eq!(j.id, obs("1", 0, 0.7, 0.5, 0.0).id, "the observation keeps its id");
        let out = e.observe(&obs("1", 1, 5.0, 5.0, 0.0));
        let Output::Joined(j) = &out[0] else { panic!() };
        assert_eq!(j.attributes["zones"], serde_json::json!([]), "in no fence: an empty list");
        let bad = from_json(r#"[{"id": "j", "analytic": {"kind": "join", "attribute": "track"}}]"#);
        assert!(Engine::new(&bad).err().unwrap().to_string().contains("analytic.attribute"));
    }

    /// Counts a window's rows; fails on windows holding a track named "boom".
    struct CountSql(AnalyticId);

    impl WindowSql for CountSql {
        fn run(&mut self, window: &Window, observations: &[Observation]) -> Result<Vec<Aggregate>, String> {
            if observations.iter().any(|o| o.track.as_ref().is_some_and(|t| t.as_str() == "boom")) {
                return Err("division by zero".into());
            }
            let sorted = observations.windows(2).all(|w| (w[0].time, w[0].id) <= (w[1].time, w[1].id));
            let mut a = Aggregate::new(AggregateKind::Sql, self.0.clone(), *window, "all");
            a.count = observations.len() as u64;
            a.values.insert("sorted".into(), f64::from(u8::from(sorted)));
            Ok(vec![a])
        }
    }

    fn count_sql(spec: &AnalyticSpec) -> Result<Box<dyn WindowSql>, String> {
        Ok(Box::new(CountSql(spec.id.clone())))
    }

    #[test]
    fn sql_runs_closed_windows_corrects_within_lateness_and_reports_failures() {
        let specs = from_json(
            r#"[{"id": "q", "analytic": {"kind": "sql", "query": "select count(*) from observations",
                 "window_s": 60, "allowed_lateness_s": 60}}]"#,
        );
        let e = Engine::new(&specs).err().unwrap().to_string();
        assert!(e.contains("geostream-sql"), "{e}");
        let factory: &SqlFactory = &count_sql;
        let cfg = EngineConfig { specs: &specs, fences: fences(&[]), sql: Some(factory) };
        let mut e = Engine::build(cfg, None).unwrap();
        let at = |s: i64| OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap();
        // 1_700_000_000 is 20 s into a minute: windows start at 1_699_999_980 + 60k.
        e.observe(&obs("a", 30, 0.0, 0.0, 0.0));
        e.observe(&obs("b", 10, 0.0, 0.0, 0.0));
        assert!(e.advance(at(30)).is_empty());
        let out = e.advance(at(40));
        let Output::Aggregate(a) = &out[0] else { panic!("{out:?}") };
        assert_eq!((a.count, a.version, a.values["sorted"]), (2, 1, 1.0));
        e.observe(&obs("c", 5, 0.0, 0.0, 0.0));
        let out = e.advance(at(50));
        let Output::Aggregate(b) = &out[0] else { panic!("{out:?}") };
        assert_eq!((b.id, b.count, b.version), (a.id, 3, 2), "a correction: same id, next version");
        e.advance(at(100));
        assert!(e.observe(&obs("d", 5, 0.0, 0.0, 0.0)).is_empty());
        assert_eq!(e.skipped().late, 1, "past the lateness");
        e.observe(&obs("boom", 110, 0.0, 0.0, 0.0));
        let out = e.finish();
        assert!(
            matches!(&out[..], [Output::Failed { analytic, message }] if analytic.as_str() == "q" && message.contains("division by zero")),
            "{out:?}"
        );
    }

    #[test]
    fn a_changed_spec_drops_only_its_own_state() {
        let f = fences(&[fence("a", 0.0, 0.0, 1.0, Value::Null)]);
        let specs = from_json(
            r#"[{"id": "g", "analytic": {"kind": "geofence"}},
                {"id": "h", "analytic": {"kind": "geofence"}}]"#,
        );
        let mut e = engine(&specs, Arc::clone(&f));
        assert_eq!(events(&e.observe(&obs("1", 0, 0.5, 0.5, 0.0))), ["enter:1:a", "enter:1:a"]);
        let state: EngineState = serde_json::from_str(&serde_json::to_string(&e.state()).unwrap()).unwrap();
        let mut changed = specs.clone();
        changed[1].version = 1;
        let mut e = Engine::build(EngineConfig { specs: &changed, fences: f, sql: None }, Some(state.clone())).unwrap();
        let out = e.observe(&obs("1", 10, 0.5, 0.5, 0.0));
        assert_eq!(events(&out), ["enter:1:a"], "h starts empty, g continues its visit");
        let Output::Event(ev) = &out[0] else { panic!() };
        assert_eq!(ev.analytic.as_str(), "h");
        // Same id, other kind: dropped as well.
        let other = from_json(r#"[{"id": "g", "analytic": {"kind": "gaps", "threshold_s": 10}}]"#);
        let e = Engine::build(EngineConfig { specs: &other, fences: fences(&[]), sql: None }, Some(state)).unwrap();
        assert_eq!(e.state().analytics.get(&AnalyticId::new("g").unwrap()).unwrap().state.kind(), "gaps");
    }

    #[test]
    fn restoring_against_a_smaller_fence_set_exits_with_the_next_outputs() {
        let specs = from_json(r#"[{"id": "g", "analytic": {"kind": "geofence"}}]"#);
        let mut e = engine(&specs, fences(&[fence("a", 0.0, 0.0, 1.0, Value::Null)]));
        e.observe(&obs("1", 0, 0.5, 0.5, 0.0));
        e.advance(OffsetDateTime::from_unix_timestamp(1_700_000_050).unwrap());
        let mut e =
            Engine::build(EngineConfig { specs: &specs, fences: fences(&[]), sql: None }, Some(e.state())).unwrap();
        let out = e.advance(OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap());
        assert_eq!(events(&out), ["exit:1:a"]);
        let Output::Event(ev) = &out[0] else { panic!() };
        assert_eq!(
            ev.time,
            OffsetDateTime::from_unix_timestamp(1_700_000_050).unwrap(),
            "at the checkpoint's watermark"
        );
        assert_eq!(ev.attributes["reason"], "fence_removed");
    }

    #[test]
    fn duplicate_analytic_ids_are_refused() {
        let specs = from_json(
            r#"[{"id": "g", "analytic": {"kind": "gaps", "threshold_s": 5}},
                {"id": "g", "analytic": {"kind": "motion"}}]"#,
        );
        assert!(Engine::new(&specs).err().unwrap().to_string().contains("twice"));
    }

    #[test]
    fn bins_restored_under_changed_settings_start_again_and_huge_sums_stay_writable() {
        let spec = |precision: u8| {
            from_json(&format!(
                r#"[{{"id": "b", "analytic": {{"kind": "bins", "cells": {{"kind": "geohash", "precision": {precision}}},
                 "window_s": 600, "properties": ["speed"]}}}}]"#
            ))
        };
        let fences = || fences(&[]);
        let mut e = Engine::build(EngineConfig { specs: &spec(5), fences: fences(), sql: None }, None).unwrap();
        e.observe(&obs("a", 0, 10.0, 50.0, 1e308));
        e.observe(&obs("b", 1, 10.0, 50.0, 1e308));
        // The sum saturates instead of becoming infinity, which JSON cannot hold.
        let text = serde_json::to_string(&e.state()).expect("a state with huge sums is still writable");
        let state: EngineState = serde_json::from_str(&text).unwrap();
        // Same settings: the bin continues (three observations in it at the end).
        let mut same =
            Engine::build(EngineConfig { specs: &spec(5), fences: fences(), sql: None }, Some(state.clone())).unwrap();
        same.observe(&obs("c", 2, 10.0, 50.0, 1.0));
        let count = |out: Vec<Output>| {
            out.iter()
                .filter_map(|o| match o {
                    Output::Aggregate(a) => Some((a.bin.clone(), a.count, a.values.get("speed_sum").copied())),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let got = count(same.finish());
        let old_bin = got[0].0.clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, 3);
        assert_eq!(got[0].2, Some(f64::MAX), "saturated, finite");
        // Other cells under the same version: the old bins (of precision 5 cells) are dropped.
        let mut changed =
            Engine::build(EngineConfig { specs: &spec(4), fences: fences(), sql: None }, Some(state)).unwrap();
        changed.observe(&obs("c", 2, 10.0, 50.0, 1.0));
        let got = count(changed.finish());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len() + 1, old_bin.len(), "a cell of one digit less: {got:?} {old_bin}");
        assert_eq!(got[0].1, 1, "only the new observation");
    }
}
