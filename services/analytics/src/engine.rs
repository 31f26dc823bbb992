//! Runs a set of analytics over observations and turns their signals into the records the
//! processor produces: [`Event`]s and [`Aggregate`]s with deterministic ids.
//!
//! The caller feeds each track's observations in event-time order and moves the watermark with
//! [`Engine::advance`]; the live processor releases observations once the watermark passed them,
//! `geostream analyze` sorts a whole file first. Motion and gaps work on point observations; other
//! geometries are counted as skipped for them (bins use the point too).

use std::collections::BTreeMap;

use geostream_model::geojson::{Geometry, GeometryValue};
use geostream_model::time::OffsetDateTime;
use geostream_model::{Aggregate, AggregateKind, Event, EventKind, Observation, Window};
use serde_json::Value;

use crate::bins::{Added, BinAggregator, BinResult};
use crate::gaps::{GapDetector, GapSignal};
use crate::motion::{Fix, MotionConfig, Signal, TrackMotion};
use crate::spec::{AnalyticKind, AnalyticSpec, SpecError};

const NS: i128 = 1_000_000_000;

/// A result.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// For `<tenant>.events`.
    Event(Box<Event>),
    /// For `<tenant>.aggregates`.
    Aggregate(Box<Aggregate>),
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

/// Observations an analytic could not use, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Not a Point geometry.
    pub not_a_point: u64,
    /// Older than the state it would have changed (bins: past the allowed lateness).
    pub late: u64,
    /// Same or older time than the track's previous observation.
    pub out_of_order: u64,
}

struct Last {
    feed: String,
    lon: f64,
    lat: f64,
}

enum State {
    Motion { cfg: MotionConfig, tracks: BTreeMap<String, TrackMotion> },
    Gaps { threshold_s: u64, detector: GapDetector, last: BTreeMap<String, Last> },
    Bins { agg: Box<BinAggregator>, properties: Vec<String> },
}

struct Running {
    spec: AnalyticSpec,
    state: State,
}

/// The analytics of one processor partition (or of one `analyze` run).
pub struct Engine {
    running: Vec<Running>,
    skipped: Skipped,
}

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

impl Engine {
    /// Validates the specs and sets up empty state for the enabled ones.
    pub fn new(specs: &[AnalyticSpec]) -> Result<Self, SpecError> {
        let mut running = Vec::new();
        for spec in specs.iter().filter(|s| s.enabled) {
            spec.validate()?;
            let state = match &spec.analytic {
                AnalyticKind::Motion { stop_speed_mps, stop_after_s, max_speed_mps, jump_min_distance_m } => {
                    State::Motion {
                        cfg: MotionConfig {
                            stop_speed_mps: *stop_speed_mps,
                            stop_after_ns: i128::from(*stop_after_s) * NS,
                            max_speed_mps: *max_speed_mps,
                            jump_min_distance_m: *jump_min_distance_m,
                        },
                        tracks: BTreeMap::new(),
                    }
                }
                AnalyticKind::Gaps { threshold_s } => State::Gaps {
                    threshold_s: *threshold_s,
                    detector: GapDetector::new(i128::from(*threshold_s) * NS),
                    last: BTreeMap::new(),
                },
                AnalyticKind::Bins { cells, allowed_lateness_s, properties, .. } => {
                    let windows = spec
                        .window_spec()
                        .ok_or_else(|| SpecError { id: spec.id.to_string(), problem: "no window".into() })?;
                    let agg = BinAggregator::new(*cells, windows, i128::from(*allowed_lateness_s) * NS)
                        .map_err(|e| SpecError { id: spec.id.to_string(), problem: e.to_string() })?;
                    State::Bins { agg: Box::new(agg), properties: properties.clone() }
                }
            };
            running.push(Running { spec: spec.clone(), state });
        }
        Ok(Self { running, skipped: Skipped::default() })
    }

    /// What was skipped so far.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Takes one observation (in event-time order within its track).
    pub fn observe(&mut self, obs: &Observation) -> Vec<Output> {
        let mut out = Vec::new();
        let GeometryValue::Point { coordinates } = &obs.geometry.value else {
            self.skipped.not_a_point += 1;
            return out;
        };
        let (lon, lat) = (coordinates[0], coordinates[1]);
        let t = obs.time.unix_timestamp_nanos();
        let track = obs.track.as_ref().map(|t| t.as_str().to_owned());
        for r in &mut self.running {
            if !r.spec.wants_feed(obs.feed.as_str()) {
                continue;
            }
            let analytic = r.spec.id.clone();
            match &mut r.state {
                State::Motion { cfg, tracks } => {
                    let Some(track) = &track else { continue };
                    let m = tracks.entry(track.clone()).or_default();
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
                            .geometry(point(lon, lat))
                            .observation(obs.id);
                        if let Some(tr) = &obs.track {
                            b = b.track(tr.clone());
                        }
                        for (k, v) in attrs {
                            b = b.attribute(k, v);
                        }
                        out.push(Output::Event(Box::new(b.build())));
                    }
                }
                State::Gaps { threshold_s, detector, last } => {
                    let Some(track) = &track else { continue };
                    if let Some(GapSignal::Resumed { at_ns, silent_ns, .. }) = detector.observe(track, t) {
                        let mut b = Event::builder(analytic.clone(), EventKind::Resumed, to_time(at_ns))
                            .feed(obs.feed.clone())
                            .geometry(point(lon, lat))
                            .observation(obs.id)
                            .attribute("silent_s", Value::from(silent_ns as f64 / 1e9))
                            .attribute("threshold_s", Value::from(*threshold_s));
                        if let Some(tr) = &obs.track {
                            b = b.track(tr.clone());
                        }
                        out.push(Output::Event(Box::new(b.build())));
                    }
                    last.insert(track.clone(), Last { feed: obs.feed.as_str().to_owned(), lon, lat });
                }
                State::Bins { agg, properties } => {
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

    /// Moves the watermark: declares gaps and emits the windows that ended.
    pub fn advance(&mut self, watermark: OffsetDateTime) -> Vec<Output> {
        self.advance_inner(watermark.unix_timestamp_nanos(), true)
    }

    /// End of a finite input (`geostream analyze`): emits every open window; declares no gaps,
    /// since the end of a file is not silence.
    pub fn finish(&mut self) -> Vec<Output> {
        self.advance_inner(i128::from(i64::MAX), false)
    }

    fn advance_inner(&mut self, w: i128, gaps: bool) -> Vec<Output> {
        let mut out = Vec::new();
        for r in &mut self.running {
            let analytic = r.spec.id.clone();
            match &mut r.state {
                State::Motion { .. } => {}
                State::Gaps { threshold_s, detector, last } if gaps => {
                    for s in detector.advance(w) {
                        let GapSignal::Gap { track, last_ns, at_ns } = s else { continue };
                        let mut b = Event::builder(analytic.clone(), EventKind::Gap, to_time(at_ns))
                            .attribute("last_report", rfc3339(last_ns))
                            .attribute("threshold_s", Value::from(*threshold_s));
                        if let Some(l) = last.get(&track) {
                            b = b.geometry(point(l.lon, l.lat));
                            if let Ok(f) = geostream_model::FeedId::new(l.feed.as_str()) {
                                b = b.feed(f);
                            }
                        }
                        if let Ok(tr) = geostream_model::TrackId::new(track.as_str()) {
                            b = b.track(tr);
                        }
                        out.push(Output::Event(Box::new(b.build())));
                    }
                }
                State::Gaps { .. } => {}
                State::Bins { agg, .. } => {
                    let cells = *agg.cells();
                    for res in agg.advance(w) {
                        if let Some(a) = aggregate(&analytic, &cells, res) {
                            out.push(Output::Aggregate(Box::new(a)));
                        }
                    }
                }
            }
        }
        out
    }
}

fn aggregate(analytic: &geostream_model::AnalyticId, cells: &crate::bins::CellSpec, r: BinResult) -> Option<Aggregate> {
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
}
