//! The geofence state machine: scenarios, a property test of the enter/exit invariants under
//! random walks and fence swaps, checkpoints, and real AIS tracks through the port limits.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use geo::{Contains, Point};
use geostream_analytics::{ConfigError, FenceIndex, GeofenceConfig, GeofenceState, Geofencer, Observed, Skip};
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::{AnalyticId, Event, EventKind, FeedId, FenceId, FenceShape, FenceSpec, Observation, TrackId};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn fence_id(s: &str) -> FenceId {
    FenceId::new(s).expect("a valid fence id")
}

fn square(id: &str, x0: f64, y0: f64, size: f64) -> FenceSpec {
    let (x1, y1) = (x0 + size, y0 + size);
    FenceSpec {
        id: fence_id(id),
        version: 1,
        name: format!("square {id}"),
        geometry: FenceShape::Geometry(Geometry::new_polygon([[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]])),
        properties: json!({"berth": id}).as_object().cloned().unwrap_or_default(),
        enabled: true,
    }
}

fn circle(id: &str, center: [f64; 2], radius_m: f64) -> FenceSpec {
    FenceSpec {
        id: fence_id(id),
        version: 1,
        name: format!("circle {id}"),
        geometry: FenceShape::Circle { center, radius_m },
        properties: Map::new(),
        enabled: true,
    }
}

fn index(specs: &[FenceSpec]) -> Arc<FenceIndex> {
    Arc::new(FenceIndex::build(specs).expect("test fences build"))
}

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

fn config() -> GeofenceConfig {
    GeofenceConfig::new(AnalyticId::new("harbour").expect("analytic id"))
}

fn geofencer(cfg: GeofenceConfig, specs: &[FenceSpec]) -> Geofencer {
    Geofencer::new(cfg, index(specs)).expect("a valid configuration")
}

/// Feeds observations and returns the events of each, as `kind:fence` strings.
fn run(g: &mut Geofencer, observations: &[Observation]) -> Vec<Vec<String>> {
    observations
        .iter()
        .map(|o| {
            let mut out = Vec::new();
            g.observe(o, &mut out);
            out.iter().map(short).collect()
        })
        .collect()
}

fn short(e: &Event) -> String {
    let fence = e.fence.as_ref().map_or("-", |f| f.id.as_str());
    format!("{}:{fence}", e.kind)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn enter_then_exit_with_reason_duration_and_deterministic_ids() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let track = [
        obs("ais", "1", 0, -0.5, 0.5),
        obs("ais", "1", 60, 0.5, 0.5),
        obs("ais", "1", 120, 0.6, 0.5),
        obs("ais", "1", 300, 1.5, 0.5),
    ];
    let mut all = Vec::new();
    let mut kinds = Vec::new();
    for o in &track {
        let mut out = Vec::new();
        assert_eq!(g.observe(o, &mut out), Observed::Applied);
        kinds.push(out.iter().map(short).collect::<Vec<_>>());
        all.extend(out);
    }
    assert_eq!(kinds, [vec![], strs(&["enter:a"]), vec![], strs(&["exit:a"])]);
    let (enter, exit) = (&all[0], &all[1]);
    assert_eq!(enter.time, t(60));
    assert_eq!(enter.observation, Some(track[1].id));
    assert_eq!(enter.fence.as_ref().map(|f| f.version), Some(1));
    assert_eq!(enter.attributes.get("fence_name"), Some(&json!("square a")));
    assert_eq!(exit.time, t(300));
    assert_eq!(exit.attributes.get("reason"), Some(&json!("left")));
    assert_eq!(exit.attributes.get("duration_s"), Some(&json!(240.0)));
    assert_eq!(exit.geometry, Some(Geometry::new_point([1.5, 0.5])));
    for e in &all {
        e.validate().expect("events are valid records with matching ids");
    }

    // The same input from the same start gives the same events, ids included.
    let mut again = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let mut replay = Vec::new();
    for o in &track {
        again.observe(o, &mut replay);
    }
    assert_eq!(replay, all);
}

#[test]
fn a_track_first_seen_inside_enters_and_one_first_seen_outside_does_nothing() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    assert_eq!(run(&mut g, &[obs("ais", "in", 0, 0.5, 0.5)]), [strs(&["enter:a"])]);
    assert_eq!(run(&mut g, &[obs("ais", "out", 0, 5.0, 5.0)]), [Vec::<String>::new()]);
}

#[test]
fn tracks_of_different_feeds_with_the_same_id_are_separate() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let events =
        run(&mut g, &[obs("ais", "7", 0, 0.5, 0.5), obs("gps", "7", 1, 5.0, 5.0), obs("ais", "7", 2, 0.5, 0.6)]);
    assert_eq!(events, [strs(&["enter:a"]), vec![], vec![]]);
    assert_eq!(g.state().len(), 2);
}

#[test]
fn moving_between_adjacent_fences_exits_before_entering() {
    let mut g = geofencer(config(), &[square("b", 1.0, 0.0, 1.0), square("a", 0.0, 0.0, 1.0)]);
    let events = run(&mut g, &[obs("f", "1", 0, 0.5, 0.5), obs("f", "1", 1, 1.5, 0.5), obs("f", "1", 2, 1.0, 0.5)]);
    assert_eq!(
        events,
        [strs(&["enter:a"]), strs(&["exit:a", "enter:b"]), strs(&["exit:b"])],
        "the shared edge is in neither"
    );
}

#[test]
fn inside_and_outside_are_reported_per_observation_as_configured() {
    let cfg =
        GeofenceConfig { inside: true, outside: true, fences: Some(vec![fence_id("a"), fence_id("b")]), ..config() };
    let mut g = geofencer(cfg, &[square("a", 0.0, 0.0, 1.0), square("b", 5.0, 5.0, 1.0), square("c", 0.0, 0.0, 2.0)]);
    let events = run(&mut g, &[obs("f", "1", 0, 0.5, 0.5), obs("f", "1", 10, 0.6, 0.5), obs("f", "1", 20, 9.0, 9.0)]);
    assert_eq!(
        events,
        [
            strs(&["enter:a", "inside:a", "outside:b"]),
            strs(&["inside:a", "outside:b"]),
            strs(&["exit:a", "outside:a", "outside:b"]),
        ],
        "fence c is not in the analytic's list"
    );
}

#[test]
fn configurations_that_would_flood_or_make_no_sense_are_refused() {
    let check = |cfg: GeofenceConfig| Geofencer::new(cfg, index(&[])).map(drop);
    let e: ConfigError = check(GeofenceConfig { outside: true, ..config() }).expect_err("outside needs a list");
    assert_eq!(e.field, "outside");
    assert!(e.to_string().contains("\"harbour\"") && e.to_string().contains("explicit `fences` list"), "{e}");
    let many = (0..65).map(|i| fence_id(&format!("f{i}"))).collect();
    assert!(check(GeofenceConfig { outside: true, fences: Some(many), ..config() }).is_err());
    assert_eq!(check(GeofenceConfig { dwell_s: Some(0), ..config() }).expect_err("zero dwell").field, "dwell_s");
    assert_eq!(check(GeofenceConfig { fences: Some(vec![]), ..config() }).expect_err("empty list").field, "fences");
    let twice = Some(vec![fence_id("a"), fence_id("a")]);
    assert_eq!(check(GeofenceConfig { fences: twice, ..config() }).expect_err("duplicate").field, "fences");
    // Unknown fields in the registry entry are errors, not silently ignored.
    let parsed: Result<GeofenceConfig, _> = serde_json::from_value(json!({"analytic": "h", "dwel_s": 60}));
    assert!(parsed.is_err());
}

#[test]
fn dwell_fires_once_per_visit_after_the_threshold() {
    let cfg = GeofenceConfig { dwell_s: Some(300), ..config() };
    let mut g = geofencer(cfg, &[square("a", 0.0, 0.0, 1.0)]);
    let o = |s, lon| obs("f", "1", s, lon, 0.5);
    let events = run(
        &mut g,
        &[o(0, 0.5), o(200, 0.5), o(299, 0.5), o(300, 0.5), o(900, 0.5), o(1000, 2.0), o(1100, 0.5), o(1500, 0.5)],
    );
    assert_eq!(
        events,
        [
            strs(&["enter:a"]),
            vec![],
            vec![],
            strs(&["dwell:a"]),
            vec![],
            strs(&["exit:a"]),
            strs(&["enter:a"]),
            strs(&["dwell:a"]),
        ]
    );
}

#[test]
fn dwell_reports_the_time_inside_so_far() {
    let cfg = GeofenceConfig { dwell_s: Some(60), ..config() };
    let mut g = geofencer(cfg, &[square("a", 0.0, 0.0, 1.0)]);
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    out.clear();
    g.observe(&obs("f", "1", 90, 0.5, 0.5), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attributes.get("duration_s"), Some(&json!(90.0)));
    assert_eq!(out[0].time, t(90), "reported at the observation that showed it");
}

#[test]
fn cross_needs_both_ends_outside() {
    let specs = [square("a", 0.0, 0.0, 1.0), circle("c", [10.0, 0.5], 20_000.0)];
    let cfg = GeofenceConfig { cross: true, ..config() };
    let mut g = geofencer(cfg.clone(), &specs);
    let events = run(
        &mut g,
        &[
            obs("f", "1", 0, -1.0, 0.5),
            obs("f", "1", 10, 2.0, 0.5),  // through a
            obs("f", "1", 20, 0.5, 0.5),  // into a: enter, not cross
            obs("f", "1", 30, 2.0, 0.6),  // out of a
            obs("f", "1", 40, 11.0, 0.5), // through c
            obs("f", "1", 50, 2.0, 3.0),  // past both
        ],
    );
    assert_eq!(events, [vec![], strs(&["cross:a"]), strs(&["enter:a"]), strs(&["exit:a"]), strs(&["cross:c"]), vec![]]);

    let mut g = geofencer(config(), &specs);
    assert_eq!(
        run(&mut g, &[obs("f", "1", 0, -1.0, 0.5), obs("f", "1", 10, 2.0, 0.5)]),
        [Vec::<String>::new(), vec![]],
        "cross is off by default"
    );

    let mut g = geofencer(cfg, &specs);
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, -1.0, 0.5), &mut out);
    g.observe(&obs("f", "1", 10, 2.0, 0.5), &mut out);
    assert_eq!(out[0].geometry, Some(Geometry::new_line_string([[-1.0, 0.5], [2.0, 0.5]])));
    assert_eq!(out[0].attributes.get("from_time").and_then(Value::as_str), Some("2023-11-14T22:13:20Z"));
}

#[test]
fn out_of_order_duplicate_and_unusable_observations_are_skipped() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let mut out = Vec::new();
    let first = obs("f", "1", 100, 0.5, 0.5);
    assert_eq!(g.observe(&first, &mut out), Observed::Applied);
    assert_eq!(g.observe(&first, &mut out), Observed::Skipped(Skip::Duplicate));
    assert_eq!(g.observe(&obs("f", "1", 99, 5.0, 5.0), &mut out), Observed::Skipped(Skip::OutOfOrder));
    // Another reading at the same instant is applied.
    assert_eq!(g.observe(&obs("f", "1", 100, 5.0, 5.0), &mut out), Observed::Applied);
    let mut untracked = obs("f", "1", 200, 0.5, 0.5);
    untracked.track = None;
    assert_eq!(g.observe(&untracked, &mut out), Observed::Skipped(Skip::NoTrack));
    let mut line = obs("f", "1", 200, 0.5, 0.5);
    line.geometry = Geometry::new_line_string([[0.0, 0.0], [1.0, 1.0]]);
    assert_eq!(g.observe(&line, &mut out), Observed::Skipped(Skip::NotAPoint));
    let mut bad = obs("f", "1", 200, 0.5, 0.5);
    bad.geometry = Geometry::new_point([f64::NAN, 0.5]);
    assert_eq!(g.observe(&bad, &mut out), Observed::Skipped(Skip::NotAPoint));
    let kinds: Vec<String> = out.iter().map(short).collect();
    assert_eq!(kinds, ["enter:a", "exit:a"]);
    assert_eq!(Skip::OutOfOrder.as_str(), "out_of_order");
}

#[test]
fn fence_properties_are_copied_when_asked() {
    let mut g = geofencer(GeofenceConfig { copy_properties: true, ..config() }, &[square("a", 0.0, 0.0, 1.0)]);
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    assert_eq!(out[0].attributes.get("fence_properties"), Some(&json!({"berth": "a"})));
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    out.clear();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    assert_eq!(out[0].attributes.get("fence_properties"), None);
}

#[test]
fn swapping_the_fence_set_closes_removed_and_disabled_fences_at_once() {
    let mut g = geofencer(
        config(),
        &[square("gone", 0.0, 0.0, 1.0), square("off", 0.0, 0.0, 1.0), square("kept", 0.0, 0.0, 1.0)],
    );
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    assert_eq!(out.iter().map(short).collect::<Vec<_>>(), ["enter:gone", "enter:kept", "enter:off"]);
    out.clear();

    let mut off = square("off", 0.0, 0.0, 1.0);
    off.enabled = false;
    let mut kept = square("kept", 0.0, 0.0, 1.0);
    kept.version = 2;
    g.replace_fences(index(&[kept, off]), t(50), &mut out);
    let reasons: Vec<(String, Option<&Value>)> = out.iter().map(|e| (short(e), e.attributes.get("reason"))).collect();
    assert_eq!(
        reasons,
        [
            ("exit:gone".to_owned(), Some(&json!("fence_removed"))),
            ("exit:off".to_owned(), Some(&json!("fence_disabled")))
        ]
    );
    for e in &out {
        assert_eq!(e.time, t(50), "at the swap's time");
        assert_eq!(e.fence.as_ref().map(|f| f.version), Some(1), "under the version the visit was in");
        assert_eq!(e.observation, None, "no observation triggered it");
        e.validate().expect("a valid event");
    }
    out.clear();

    // A swap dated before the track's last observation is not allowed to reorder its events.
    let mut g2 = geofencer(config(), &[square("gone", 0.0, 0.0, 1.0)]);
    g2.observe(&obs("f", "1", 100, 0.5, 0.5), &mut out);
    out.clear();
    g2.replace_fences(index(&[]), t(50), &mut out);
    assert_eq!(out[0].time, t(100));
    out.clear();

    // The changed fence continues the visit under its new version.
    g.observe(&obs("f", "1", 60, 0.6, 0.5), &mut out);
    assert!(out.is_empty(), "{out:?}");
    g.observe(&obs("f", "1", 70, 3.0, 3.0), &mut out);
    assert_eq!(out.iter().map(short).collect::<Vec<_>>(), ["exit:kept"]);
    assert_eq!(out[0].fence.as_ref().map(|f| f.version), Some(2));
    assert_eq!(out[0].attributes.get("duration_s"), Some(&json!(70.0)), "the visit began at the first enter");
}

#[test]
fn a_changed_geometry_is_applied_at_the_next_observation() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    out.clear();
    let mut moved = square("a", 10.0, 10.0, 1.0);
    moved.version = 2;
    g.replace_fences(index(&[moved, square("new", 0.0, 0.0, 1.0)]), t(10), &mut out);
    assert!(out.is_empty(), "nothing at the swap itself");
    g.observe(&obs("f", "1", 20, 0.5, 0.5), &mut out);
    assert_eq!(out.iter().map(short).collect::<Vec<_>>(), ["exit:a", "enter:new"]);
    assert_eq!(out[0].attributes.get("reason"), Some(&json!("left")));
    assert_eq!(out[0].fence.as_ref().map(|f| f.version), Some(2));
}

#[test]
fn dropping_a_fence_from_the_analytic_list_closes_its_visits() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    let mut out = Vec::new();
    g.observe(&obs("f", "1", 0, 0.5, 0.5), &mut out);
    out.clear();
    let cfg = GeofenceConfig { fences: Some(vec![fence_id("other")]), ..config() };
    let g2 = Geofencer::restore(cfg, index(&[square("a", 0.0, 0.0, 1.0)]), g.state().clone(), t(5), &mut out)
        .expect("valid config");
    assert_eq!(out.iter().map(short).collect::<Vec<_>>(), ["exit:a"]);
    assert_eq!(out[0].attributes.get("reason"), Some(&json!("fence_deselected")));
    assert!(
        g2.state()
            .track(&FeedId::new("f").expect("feed"), &TrackId::new("1").expect("track"))
            .is_some_and(|s| s.visits.is_empty())
    );
}

#[test]
fn a_checkpoint_round_trips_and_continues_identically() {
    let specs = [square("a", 0.0, 0.0, 1.0), circle("c", [3.0, 0.5], 50_000.0)];
    let cfg = GeofenceConfig { cross: true, dwell_s: Some(30), inside: true, ..config() };
    let walk: Vec<Observation> = (0..40)
        .map(|i| obs("f", if i % 2 == 0 { "a" } else { "b" }, i64::from(i) * 10, -1.0 + f64::from(i) * 0.12, 0.5))
        .collect();
    let (head, tail) = walk.split_at(17);

    let mut straight = geofencer(cfg.clone(), &specs);
    let expected: Vec<Vec<String>> = run(&mut straight, &walk);

    let mut first = geofencer(cfg.clone(), &specs);
    let mut events = run(&mut first, head);
    let json = serde_json::to_string(first.state()).expect("state serialises");
    let state: GeofenceState = serde_json::from_str(&json).expect("state deserialises");
    assert_eq!(&state, first.state());
    assert_eq!(serde_json::to_string(&state).expect("again"), json, "byte for byte");
    let mut none = Vec::new();
    let mut resumed = Geofencer::restore(cfg, index(&specs), state, t(0), &mut none).expect("valid config");
    assert!(none.is_empty());
    events.extend(run(&mut resumed, tail));
    assert_eq!(events, expected);
    assert!(
        expected.iter().flatten().any(|e| e.starts_with("dwell"))
            && expected.iter().flatten().any(|e| e.starts_with("enter"))
    );
}

#[test]
fn the_state_format_is_plain_json() {
    let mut g = geofencer(config(), &[square("a", 0.0, 0.0, 1.0)]);
    g.observe(&obs("f", "1", 0, 0.5, 0.25), &mut Vec::new());
    let v = serde_json::to_value(g.state()).expect("json");
    let track = &v["tracks"]["f"]["1"];
    assert_eq!(track["last"]["time"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(track["last"]["lat"], json!(0.25));
    assert_eq!(track["visits"]["a"], json!({"version": 1, "since": "2023-11-14T22:13:20Z", "dwell_emitted": false}));
}

// ---- property test: invariants under random walks and swaps ----

#[derive(Debug, Clone)]
enum Step {
    Move { track: usize, lon: f64, lat: f64 },
    Swap { seed: u64 },
}

/// A fence set drawn from a seed: some squares and circles over the unit area, some versions
/// bumped, some fences left out.
fn fence_set(seed: u64) -> Vec<FenceSpec> {
    let mut rng = common::SplitMix(seed);
    let mut specs = Vec::new();
    for i in 0..6 {
        if rng.unit() < 0.2 {
            continue;
        }
        let mut s = if i % 2 == 0 {
            square(&format!("f{i}"), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0), rng.range(0.2, 1.2))
        } else {
            circle(&format!("f{i}"), [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)], rng.range(10_000.0, 80_000.0))
        };
        s.version = 1 + rng.next_u64() % 3;
        s.enabled = rng.unit() > 0.1;
        specs.push(s);
    }
    specs
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        10 => (0..3usize, -1.5..1.5f64, -1.5..1.5f64).prop_map(|(track, lon, lat)| Step::Move { track, lon, lat }),
        1 => any::<u64>().prop_map(|seed| Step::Swap { seed }),
    ];
    prop::collection::vec(step, 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn enter_and_exit_alternate_starting_with_enter(seed in any::<u64>(), steps in steps()) {
        let cfg = GeofenceConfig { cross: true, dwell_s: Some(40), inside: true, ..config() };
        let mut g = Geofencer::new(cfg, index(&fence_set(seed))).expect("valid config");
        let mut history: BTreeMap<(String, String), Vec<EventKind>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        let mut clock = 0i64;
        for step in steps {
            clock += 10;
            let mut out = Vec::new();
            match step {
                Step::Move { track, lon, lat } => {
                    let o = obs("f", &track.to_string(), clock, lon, lat);
                    prop_assert_eq!(g.observe(&o, &mut out), Observed::Applied);
                    // After every observation, the open visits are exactly the fences containing it.
                    let mut hits = Vec::new();
                    g.index().query(lon, lat, &mut hits);
                    let want: BTreeSet<String> =
                        hits.iter().filter_map(|&n| g.index().fence(n)).map(|f| f.id.to_string()).collect();
                    let state = g.state().track(&o.feed, o.track.as_ref().expect("tracked")).expect("known track");
                    let open: BTreeSet<String> = state.visits.keys().map(ToString::to_string).collect();
                    prop_assert_eq!(open, want);
                }
                Step::Swap { seed } => g.replace_fences(index(&fence_set(seed)), OffsetDateTime::UNIX_EPOCH, &mut out),
            }
            for e in &out {
                prop_assert!(e.validate().is_ok());
                prop_assert!(ids.insert(e.id), "event ids are unique: {:?}", e);
                let track = e.track.as_ref().map(ToString::to_string).unwrap_or_default();
                let fence = e.fence.as_ref().map(|f| f.id.to_string()).unwrap_or_default();
                let key = (track, fence);
                history.entry(key).or_default().push(e.kind);
            }
        }
        for (key, kinds) in history {
            let mut inside = false;
            for k in kinds {
                match k {
                    EventKind::Enter => { prop_assert!(!inside, "{:?}: enter while inside", key); inside = true; }
                    EventKind::Exit => { prop_assert!(inside, "{:?}: exit while outside", key); inside = false; }
                    EventKind::Dwell | EventKind::Inside => prop_assert!(inside, "{:?}: {} while outside", key, k),
                    EventKind::Cross => prop_assert!(!inside, "{:?}: cross while inside", key),
                    other => prop_assert!(false, "unexpected {}", other),
                }
            }
        }
    }
}

// ---- real AIS tracks through the Australian port limits ----

#[test]
fn real_ais_tracks_enter_and_leave_ports_as_a_brute_force_replay_says() {
    let fences = common::real_fences(true);
    let ports: Vec<&common::RealFence> = fences.iter().filter(|f| f.spec.id.as_str().starts_with("port-")).collect();
    let mut g = geofencer(config(), &ports.iter().map(|f| f.spec.clone()).collect::<Vec<_>>());

    let mut observations = common::ais_observations();
    // Event-time order per track, as the processor delivers it.
    observations.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));

    let mut events = Vec::new();
    let mut applied = 0usize;
    for o in &observations {
        if g.observe(o, &mut events) == Observed::Applied {
            applied += 1;
        }
    }
    // Independent replay: geo's Contains per applied position, transitions counted per track.
    let mut inside: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut last: BTreeMap<String, (OffsetDateTime, geostream_model::RecordId)> = BTreeMap::new();
    let (mut enters, mut exits, mut replayed) = (0usize, 0usize, 0usize);
    for o in &observations {
        let (Some(track), Some(p)) = (o.track.as_ref(), common::lon_lat(o)) else { continue };
        // Sorted by time, so nothing is out of order; a repeated observation is skipped.
        if last.get(track.as_str()) == Some(&(o.time, o.id)) {
            continue;
        }
        last.insert(track.to_string(), (o.time, o.id));
        replayed += 1;
        for f in &ports {
            let now = f.geo.contains(&Point::new(p[0], p[1]));
            let was = inside.insert((track.to_string(), f.spec.id.to_string()), now).unwrap_or(false);
            enters += usize::from(now && !was);
            exits += usize::from(was && !now);
        }
    }
    let count = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
    assert_eq!((count(EventKind::Enter), count(EventKind::Exit)), (enters, exits));
    assert!(enters > 0, "some vessels are in port");
    assert_eq!(applied, replayed);
}
