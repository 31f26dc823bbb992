//! The engine as the processor and `geostream analyze` drive it: checkpoints that continue
//! exactly, invariants under random input (proptest), and a golden test of geofence `inside`
//! events on real AIS positions against the Australian port limits, checked against a brute-force
//! replay with geo's `Contains`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use geo::{BoundingRect, Contains, Distance, Haversine, Point};
use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{Engine, EngineConfig, EngineState, Output, SqlFactory, WindowSql};
use geostream_analytics::near::HYSTERESIS;
use geostream_analytics::spec::AnalyticSpec;
use geostream_model::geojson::Geometry;
use geostream_model::time::{Duration, OffsetDateTime};
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, FeedId, FenceId, FenceShape, FenceSpec, Observation, TrackId, Window,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// A stand-in for the DataFusion runner: per window, the row count and the sum of latitudes, so a
/// lost or repeated row changes the result.
struct SummarySql(AnalyticId);

impl WindowSql for SummarySql {
    fn run(&mut self, window: &Window, observations: &[Observation]) -> Result<Vec<Aggregate>, String> {
        let mut a = Aggregate::new(AggregateKind::Sql, self.0.clone(), *window, "all");
        a.count = observations.len() as u64;
        let lat: f64 = observations.iter().filter_map(common::lon_lat).map(|p| p[1]).sum();
        a.values.insert("lat_sum".into(), lat);
        Ok(vec![a])
    }
}

fn summary_sql(spec: &AnalyticSpec) -> Result<Box<dyn WindowSql>, String> {
    Ok(Box::new(SummarySql(spec.id.clone())))
}

fn specs(json: &str) -> Vec<AnalyticSpec> {
    serde_json::from_str(json).expect("valid test specs")
}

fn port_fences() -> Vec<common::RealFence> {
    common::real_fences(true).into_iter().filter(|f| f.spec.id.as_str().starts_with("port-")).collect()
}

fn port_index() -> Arc<FenceIndex> {
    let specs: Vec<FenceSpec> = port_fences().into_iter().map(|f| f.spec).collect();
    Arc::new(FenceIndex::build(&specs).expect("the port limits are valid fences"))
}

/// The real AIS positions, without repeated ids, in event-time order.
fn ais() -> Vec<Observation> {
    let mut obs = common::ais_observations();
    obs.sort_by_key(|o| (o.time, o.id));
    obs.dedup_by_key(|o| o.id);
    obs
}

/// Every kind at once, over the AIS positions.
const ALL_KINDS: &str = r#"[
    {"id": "motion", "analytic": {"kind": "motion", "max_speed_mps": 40}},
    {"id": "gaps", "analytic": {"kind": "gaps", "threshold_s": 600}},
    {"id": "density", "analytic": {"kind": "bins", "cells": {"kind": "h3", "resolution": 5}, "window_s": 600,
     "hop_s": 300, "allowed_lateness_s": 900, "properties": ["sog_mps"]}},
    {"id": "ports", "analytic": {"kind": "geofence", "inside": true, "dwell_s": 600}},
    {"id": "meet", "analytic": {"kind": "near", "distance_m": 5000, "max_age_s": 1800}},
    {"id": "zones", "analytic": {"kind": "join", "properties": ["abbrev"]}},
    {"id": "per-10-min", "analytic": {"kind": "sql", "query": "select count(*) from observations",
     "window_s": 600, "allowed_lateness_s": 900}}
]"#;

/// The input as a processor sees it: roughly in order (neighbours swapped), the watermark 10
/// minutes behind the newest event time.
fn steps(obs: &[Observation]) -> Vec<(Observation, OffsetDateTime)> {
    let mut obs = obs.to_vec();
    for i in (0..obs.len().saturating_sub(1)).step_by(3) {
        obs.swap(i, i + 1);
    }
    let mut newest = OffsetDateTime::UNIX_EPOCH;
    obs.into_iter()
        .map(|o| {
            newest = newest.max(o.time);
            (o, newest - Duration::minutes(10))
        })
        .collect()
}

fn build(specs: &[AnalyticSpec], fences: Arc<FenceIndex>, state: Option<EngineState>) -> Engine {
    let factory: &SqlFactory = &summary_sql;
    Engine::build(EngineConfig { specs, fences, sql: Some(factory) }, state).expect("valid specs")
}

fn drive(e: &mut Engine, steps: &[(Observation, OffsetDateTime)], out: &mut Vec<Output>) {
    for (o, w) in steps {
        out.extend(e.advance(*w));
        out.extend(e.observe(o));
    }
}

/// Through JSON and back, as a checkpoint file would go; the JSON must be reproducible.
fn checkpoint(e: &Engine) -> EngineState {
    let json = serde_json::to_string(&e.state()).expect("the state serialises");
    let back: EngineState = serde_json::from_str(&json).expect("the state deserialises");
    assert_eq!(serde_json::to_string(&back).expect("serialises again"), json, "byte for byte");
    back
}

#[test]
fn a_restored_engine_continues_exactly_like_one_that_never_stopped() {
    let specs = specs(ALL_KINDS);
    let fences = port_index();
    let steps = steps(&ais());
    let mut e = build(&specs, Arc::clone(&fences), None);
    let mut reference = Vec::new();
    drive(&mut e, &steps, &mut reference);
    reference.extend(e.finish());
    let mut kinds = BTreeSet::new();
    for o in &reference {
        kinds.insert(match o {
            Output::Event(e) => format!("event:{}", e.kind),
            Output::Aggregate(a) => format!("aggregate:{}", a.kind),
            Output::Joined(_) => "joined".into(),
            Output::Failed { message, .. } => panic!("nothing fails here: {message}"),
        });
    }
    for k in ["event:enter", "event:exit", "event:inside", "event:near", "event:gap", "aggregate:bin", "joined"] {
        assert!(kinds.contains(k), "the input exercises {k}: {kinds:?}");
    }
    assert!(kinds.contains("aggregate:sql"), "{kinds:?}");

    let n = steps.len();
    for split in [1, n / 7, n / 3, n / 2, n - 1] {
        let mut e = build(&specs, Arc::clone(&fences), None);
        let mut out = Vec::new();
        drive(&mut e, &steps[..split], &mut out);
        let state = checkpoint(&e);
        drop(e);
        let mut e = build(&specs, Arc::clone(&fences), Some(state));
        drive(&mut e, &steps[split..], &mut out);
        out.extend(e.finish());
        assert_eq!(out.len(), reference.len(), "split at {split}");
        assert!(out == reference, "split at {split}: outputs differ");
    }
}

fn collect_events(out: &[Output]) -> Vec<geostream_model::Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some((**e).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn golden_inside_events_per_port_match_a_brute_force_replay_with_geo_contains() {
    let obs = ais();
    let ports = port_fences();
    let index = port_index();
    assert_eq!(index.len(), ports.len(), "every port limit is indexed");
    let specs = specs(r#"[{"id": "ports", "analytic": {"kind": "geofence", "inside": true}}]"#);
    let mut e = build(&specs, index, None);
    let mut out = Vec::new();
    for o in &obs {
        out.extend(e.advance(o.time));
        out.extend(e.observe(o));
    }
    out.extend(e.finish());
    assert_eq!(e.skipped().out_of_order, 0, "the input has no repeats and is in order");
    let mut engine_counts: BTreeMap<String, u64> = BTreeMap::new();
    for ev in collect_events(&out) {
        if ev.kind.as_str() == "inside" {
            *engine_counts.entry(ev.fence.expect("inside names its fence").id.to_string()).or_default() += 1;
        }
    }

    let boxes: Vec<_> = ports.iter().map(|f| f.geo.bounding_rect().expect("a polygon has a box")).collect();
    let mut reference: BTreeMap<String, u64> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.track.is_some()) {
        let Some([lon, lat]) = common::lon_lat(o) else { continue };
        let p = Point::new(lon, lat);
        for (f, b) in ports.iter().zip(&boxes) {
            let inside_box = b.min().x <= lon && lon <= b.max().x && b.min().y <= lat && lat <= b.max().y;
            if inside_box && f.geo.contains(&p) {
                *reference.entry(f.spec.id.to_string()).or_default() += 1;
            }
        }
    }
    assert!(reference.len() >= 3, "the sample visits several ports: {reference:?}");
    assert_eq!(engine_counts, reference);
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn t(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).expect("a valid time")
}

fn obs(feed: &str, track: &str, s: i64, lon: f64, lat: f64) -> Observation {
    Observation::new(
        FeedId::new(feed).expect("feed id"),
        Some(TrackId::new(track).expect("track id")),
        t(s),
        t(s),
        Geometry::new_point([lon, lat]),
        Map::new(),
    )
}

fn square(id: &str, x0: f64, y0: f64, size: f64, version: u64) -> FenceSpec {
    let (x1, y1) = (x0 + size, y0 + size);
    FenceSpec {
        id: FenceId::new(id).expect("fence id"),
        version,
        name: id.to_owned(),
        geometry: FenceShape::Geometry(Geometry::new_polygon([[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]])),
        properties: Map::new(),
        enabled: true,
    }
}

/// One random step: a track moves, the fence set changes, or the engine restarts from a checkpoint.
#[derive(Debug, Clone)]
enum Step {
    Move { track: u8, dx: f64, dy: f64, dt: i64 },
    Fences(Vec<(u8, f64, f64, f64)>),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..4, -0.3f64..0.3, -0.3f64..0.3, 0i64..120).prop_map(|(track, dx, dy, dt)| Step::Move { track, dx, dy, dt }),
        1 => prop::collection::vec((0u8..5, -1.0f64..1.0, -1.0f64..1.0, 0.2f64..1.0), 0..4).prop_map(Step::Fences),
        1 => Just(Step::Restart),
    ]
}

fn fence_set(list: &[(u8, f64, f64, f64)], version: u64) -> Arc<FenceIndex> {
    let mut seen = BTreeSet::new();
    let specs: Vec<FenceSpec> = list
        .iter()
        .filter(|f| seen.insert(f.0))
        .map(|&(id, x, y, s)| square(&format!("f{id}"), x, y, s, version))
        .collect();
    Arc::new(FenceIndex::build(&specs).expect("squares are valid"))
}

/// Outputs as JSON, sorted.
fn canonical(out: &[Output]) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .map(|o| match o {
            Output::Event(e) => serde_json::to_string(e).expect("an event serialises"),
            Output::Aggregate(a) => serde_json::to_string(a).expect("an aggregate serialises"),
            Output::Joined(j) => serde_json::to_string(j).expect("an observation serialises"),
            Output::Failed { analytic, message } => format!("failed {analytic}: {message}"),
        })
        .collect();
    v.sort();
    v
}

/// Short `forget_after_s` for the kinds that forget tracks (sweeps every 25 s of event time).
const FORGETFUL: &str = r#"[
    {"id": "m", "analytic": {"kind": "motion", "forget_after_s": 400}},
    {"id": "g", "analytic": {"kind": "gaps", "threshold_s": 150, "forget_after_s": 400}},
    {"id": "f", "analytic": {"kind": "geofence", "cross": true, "forget_after_s": 400}}
]"#;

#[test]
fn tracks_silent_past_forget_after_are_forgotten_with_an_exit_and_come_back_new() {
    let mut e = build(&specs(FORGETFUL), fence_set(&[(0, -0.5, -0.5, 1.0)], 1), None);
    let mut out = Vec::new();
    let mut report = |e: &mut Engine, track: &str, s: i64, lon: f64| {
        out.extend(e.advance(t(s)));
        out.extend(e.observe(&obs("f", track, s, lon, 0.0)));
    };
    // `a` reports inside fence f0 at 0 s and 10 s, then only `b` reports, outside, every 100 s.
    report(&mut e, "a", 0, 0.0);
    report(&mut e, "a", 10, 0.0001);
    for s in (100..=400).step_by(100) {
        report(&mut e, "b", s, 1.5);
    }
    assert_eq!(e.forgotten(), 0, "at 400 s `a` has been silent 390 s, under forget_after_s");
    report(&mut e, "b", 500, 1.5);
    assert_eq!(e.forgotten(), 3, "swept at 500 s: `a` gone from motion, gaps and geofence");
    let state = serde_json::to_value(e.state()).expect("the state serialises");
    assert!(!state.to_string().contains("\"a\""), "no trace of `a` in the state: {state}");
    report(&mut e, "a", 1100, 0.0002);

    let events: Vec<(String, String, i64, Option<String>)> = collect_events(&out)
        .into_iter()
        .filter(|ev| ev.track.as_ref().is_some_and(|t| t.as_str() == "a"))
        .map(|ev| {
            let reason = ev.attributes.get("reason").and_then(Value::as_str).map(str::to_owned);
            (ev.analytic.to_string(), ev.kind.as_str().to_owned(), ev.time.unix_timestamp() - 1_700_000_000, reason)
        })
        .collect();
    let want = |a: &str, k: &str, s: i64, r: Option<&str>| (a.to_owned(), k.to_owned(), s, r.map(str::to_owned));
    assert_eq!(
        events,
        vec![
            want("f", "enter", 0, None),
            want("g", "gap", 160, None),
            // Stamped when `a` became forgettable (last report + forget_after_s), not at the sweep.
            want("f", "exit", 410, Some("forgotten")),
            // New again: an enter, and no `resumed` since the gap was forgotten with the track.
            want("f", "enter", 1100, None),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The processor advances the watermark at points that depend on its batches and restarts
    /// from checkpoints; neither may change what is forgotten or any output.
    #[test]
    fn extra_watermark_advances_and_restarts_change_no_output_forgetting_included(
        moves in prop::collection::vec((0u8..6, -0.3f64..0.3, -0.3f64..0.3, 0i64..200, 0u8..4), 1..120),
    ) {
        let specs = specs(FORGETFUL);
        let fences = fence_set(&[(0, -0.5, -0.5, 1.0), (1, 0.2, 0.2, 0.6)], 1);
        let mut pos = [[0.0f64; 2]; 6];
        let mut now = 0i64;
        let mut input = Vec::new();
        for &(track, dx, dy, dt, extra) in &moves {
            now += dt;
            let p = &mut pos[track as usize];
            p[0] = (p[0] + dx).clamp(-2.0, 2.0);
            p[1] = (p[1] + dy).clamp(-2.0, 2.0);
            input.push((obs("f", &format!("t{track}"), now, p[0], p[1]), extra));
        }
        let mut e = build(&specs, Arc::clone(&fences), None);
        let mut reference = Vec::new();
        for (o, _) in &input {
            reference.extend(e.advance(o.time));
            reference.extend(e.observe(o));
        }
        let mut e = build(&specs, Arc::clone(&fences), None);
        let mut out = Vec::new();
        let mut prev = t(0);
        for (o, extra) in &input {
            match extra {
                // A batch ended between two observations: the watermark moved part of the way.
                0 => out.extend(e.advance(prev + (o.time - prev) / 2)),
                1 => out.extend(e.advance(o.time)),
                2 => e = build(&specs, Arc::clone(&fences), Some(checkpoint(&e))),
                _ => {}
            }
            out.extend(e.advance(o.time));
            out.extend(e.observe(o));
            prev = o.time;
        }
        // The same outputs; only their order across analytics may differ (each advance emits
        // analytic by analytic), which downstream, keyed by the deterministic ids, never sees.
        prop_assert_eq!(canonical(&out), canonical(&reference));
    }

    #[test]
    fn enter_and_exit_alternate_per_track_and_fence_across_swaps_and_restarts(
        steps in prop::collection::vec(step(), 1..80),
    ) {
        // Tracks silent for 300 s are forgotten: their exits must keep the alternation too.
        let specs = specs(r#"[{"id": "g", "analytic": {"kind": "geofence", "cross": true, "forget_after_s": 300}}]"#);
        let mut fences = fence_set(&[(0, -0.5, -0.5, 1.0), (1, 0.2, 0.2, 0.6)], 1);
        let mut e = build(&specs, Arc::clone(&fences), None);
        let mut pos = [[0.0f64; 2]; 4];
        let mut now = 0i64;
        let mut out = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Move { track, dx, dy, dt } => {
                    now += dt;
                    let p = &mut pos[*track as usize];
                    p[0] = (p[0] + dx).clamp(-2.0, 2.0);
                    p[1] = (p[1] + dy).clamp(-2.0, 2.0);
                    out.extend(e.advance(t(now)));
                    out.extend(e.observe(&obs("f", &format!("t{track}"), now, p[0], p[1])));
                }
                Step::Fences(list) => {
                    fences = fence_set(list, i as u64 + 2);
                    out.extend(e.replace_fences(Arc::clone(&fences), t(now)));
                }
                Step::Restart => {
                    let state = checkpoint(&e);
                    e = build(&specs, Arc::clone(&fences), Some(state));
                }
            }
        }
        let mut inside: BTreeMap<(String, String), bool> = BTreeMap::new();
        for ev in collect_events(&out) {
            let key = (ev.track.expect("a track").to_string(), ev.fence.expect("a fence").id.to_string());
            let was = inside.entry(key.clone()).or_insert(false);
            match ev.kind.as_str() {
                "enter" => { prop_assert!(!*was, "enter twice: {:?}", key); *was = true; }
                "exit" => { prop_assert!(*was, "exit without enter: {:?}", key); *was = false; }
                "cross" => prop_assert!(!*was, "cross while inside: {:?}", key),
                other => prop_assert!(false, "unexpected {}", other),
            }
        }
    }

    #[test]
    fn bin_counts_sum_to_the_input_count(
        points in prop::collection::vec((0i64..3600, -1.0f64..1.0, -1.0f64..1.0), 1..200),
        lag in 0i64..900,
        restart_at in 0usize..200,
    ) {
        let specs = specs(
            r#"[{"id": "b", "analytic": {"kind": "bins", "cells": {"kind": "geohash", "precision": 3},
                 "window_s": 300, "allowed_lateness_s": 600}}]"#,
        );
        let fences = fence_set(&[], 1);
        let mut e = build(&specs, Arc::clone(&fences), None);
        let mut latest: BTreeMap<_, (u32, u64)> = BTreeMap::new();
        let mut keep = |out: Vec<Output>| {
            for o in out {
                if let Output::Aggregate(a) = o {
                    let v = latest.entry(a.id).or_insert((0, 0));
                    assert!(a.version > v.0, "versions rise");
                    *v = (a.version, a.count);
                }
            }
        };
        let mut newest = 0;
        let mut late = 0;
        for (i, (s, lon, lat)) in points.iter().enumerate() {
            if i == restart_at {
                late += e.skipped().late;
                let state = checkpoint(&e);
                e = build(&specs, Arc::clone(&fences), Some(state));
            }
            newest = newest.max(*s);
            keep(e.advance(t(newest - lag)));
            keep(e.observe(&obs("f", &format!("t{i}"), *s, *lon, *lat)));
        }
        keep(e.finish());
        late += e.skipped().late;
        let binned: u64 = latest.values().map(|v| v.1).sum();
        prop_assert_eq!(binned + late, points.len() as u64);
    }

    #[test]
    fn near_never_repeats_for_a_pair_without_a_separation_beyond_the_hysteresis(
        moves in prop::collection::vec((0u8..5, -300.0f64..300.0, -300.0f64..300.0, 0i64..30), 1..200),
        restart_at in 0usize..200,
    ) {
        let specs = specs(r#"[{"id": "n", "analytic": {"kind": "near", "distance_m": 500, "max_age_s": 120}}]"#);
        let fences = fence_set(&[], 1);
        let mut e = build(&specs, Arc::clone(&fences), None);
        // Metres east/north of a point at 60 degrees north.
        let to_deg = |x: f64, y: f64| (10.0 + x / (111_195.0 * 0.5), 60.0 + y / 111_195.0);
        let mut pos = [[0.0f64; 2]; 5];
        let mut last: BTreeMap<String, (i64, f64, f64)> = BTreeMap::new();
        // Per (source, target): whether the pair may fire (armed).
        let mut armed: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut now = 0;
        for (i, (k, dx, dy, dt)) in moves.iter().enumerate() {
            if i == restart_at {
                let state = checkpoint(&e);
                e = build(&specs, Arc::clone(&fences), Some(state));
            }
            now += dt;
            let p = &mut pos[*k as usize];
            p[0] = (p[0] + dx).clamp(-2000.0, 2000.0);
            p[1] = (p[1] + dy).clamp(-2000.0, 2000.0);
            let (lon, lat) = to_deg(p[0], p[1]);
            let me = format!("t{k}");
            let out = e.observe(&obs("f", &me, now, lon, lat));
            last.insert(me.clone(), (now, lon, lat));
            let fired: BTreeSet<String> = collect_events(&out)
                .into_iter()
                .map(|ev| ev.attributes["other_track"].as_str().unwrap_or_default().to_owned())
                .collect();
            for (other, &(at, olon, olat)) in &last {
                if *other == me || now - at > 120 {
                    prop_assert!(!fired.contains(other), "fired for itself or a stale target");
                    continue;
                }
                let d = Haversine.distance(Point::new(lon, lat), Point::new(olon, olat));
                let a = armed.entry((me.clone(), other.clone())).or_insert(true);
                if fired.contains(other) {
                    prop_assert!(*a, "{} fired for {} again without separating", me, other);
                    prop_assert!(d <= 500.0, "fired at {} m", d);
                    *a = false;
                } else if *a {
                    prop_assert!(d > 500.0, "{} missed {} at {} m", me, other, d);
                } else if d > 500.0 * HYSTERESIS {
                    *a = true;
                }
            }
        }
    }
}

#[test]
fn fences_can_be_swapped_for_join_analytics_too() {
    let specs = specs(r#"[{"id": "z", "analytic": {"kind": "join"}}]"#);
    let mut e = build(&specs, fence_set(&[(0, 0.0, 0.0, 1.0)], 1), None);
    let joined = |out: Vec<Output>| match out.as_slice() {
        [Output::Joined(o)] => o.attributes["fences"].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(joined(e.observe(&obs("f", "a", 0, 0.5, 0.5)))[0]["id"], "f0");
    assert!(e.replace_fences(fence_set(&[(1, 0.0, 0.0, 1.0)], 2), t(1)).is_empty());
    let list = joined(e.observe(&obs("f", "a", 2, 0.5, 0.5)));
    assert_eq!((list[0]["id"].clone(), list[0]["version"].clone()), (Value::from("f1"), Value::from(2)));
}

/// From fuzzing (services/analytics/fuzz, target `analytic`; the crash input was this list in YAML
/// with a second, disabled spec): a grid bin of a track at 179.999° E had an outline reaching past
/// 180°, so its aggregate failed validation.
#[test]
fn grid_bins_beside_the_antimeridian_give_valid_aggregates() {
    let specs = specs(
        r#"[{"id": "grid-hopping", "feeds": ["ais"], "analytic": {"kind": "bins", "cells": {"kind": "grid",
            "size_m": 183}, "window_s": 600, "hop_s": 60, "allowed_lateness_s": 120, "properties": ["sog_mps"]}}]"#,
    );
    let mut e = build(&specs, Arc::new(FenceIndex::build(&[]).expect("no fences")), None);
    let mut out = Vec::new();
    for (s, lon) in [(0, 179.999), (10, -179.999), (20, 180.0), (30, -180.0)] {
        let mut o = obs("ais", "vessel-b", 1_700_009_000 + s, lon, -33.87);
        o.attributes.insert("sog_mps".into(), Value::from(1.0));
        o.refresh_id();
        out.extend(e.observe(&o));
    }
    out.extend(e.finish());
    let aggregates: Vec<&Aggregate> =
        out.iter().filter_map(|o| if let Output::Aggregate(a) = o { Some(a.as_ref()) } else { None }).collect();
    assert!(!aggregates.is_empty());
    for a in aggregates {
        a.validate().unwrap_or_else(|err| panic!("{err}: {a:?}"));
    }
}
