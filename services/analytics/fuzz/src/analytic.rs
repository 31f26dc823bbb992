//! Analytic definitions as `geostream analyze --analytics` (YAML, one spec or a list) and the
//! processor's registry (JSON) read them, and the engine the processor builds from them.

use std::sync::Arc;

use geostream_analytics::FenceIndex;
use geostream_analytics::engine::{Engine, EngineConfig, EngineState, Output};
use geostream_analytics::spec::{AnalyticKind, AnalyticSpec};
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, FenceId, FenceShape, FenceSpec, Observation, TrackId};
use serde_json::{Map, Value, json};

use crate::explained;

/// The fences of the operator's example GeofenceSet (a pilot-station circle and a berth polygon),
/// so `geofence` and `join` analytics that name them have something to meet.
fn fences() -> Arc<FenceIndex> {
    let fence = |id: &str, geometry: FenceShape| FenceSpec {
        id: FenceId::new(id).unwrap_or_else(|e| panic!("fixture fence id: {e}")),
        version: 1,
        name: id.to_owned(),
        geometry,
        properties: json!({"zone": "pilotage"}).as_object().cloned().unwrap_or_default(),
        enabled: true,
    };
    let berth = Geometry::new_polygon([[
        [151.20, -33.86],
        [151.21, -33.86],
        [151.21, -33.87],
        [151.20, -33.87],
        [151.20, -33.86],
    ]]);
    let specs = [
        fence("pilot-station", FenceShape::Circle { center: [151.2093, -33.8688], radius_m: 500.0 }),
        fence("berth-4", FenceShape::Geometry(berth)),
    ];
    Arc::new(FenceIndex::build(&specs).unwrap_or_else(|e| panic!("fixture fences: {e}")))
}

fn at(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or_else(|e| panic!("fixture time: {e}"))
}

/// Two vessels crossing the berth and the pilot station, one stopping, with a gap and a late fix.
fn observations() -> Vec<Observation> {
    let t0 = 1_700_000_000;
    let steps: [(&str, &str, i64, f64, f64, f64); 10] = [
        ("ais", "vessel-a", 0, 151.195, -33.865, 6.0),
        ("ais", "vessel-b", 5, 151.2093, -33.8700, 0.1),
        ("ais", "vessel-a", 60, 151.205, -33.865, 5.0),
        ("ais", "vessel-b", 65, 151.2093, -33.8700, 0.0),
        ("ais", "vessel-a", 120, 151.2093, -33.8688, 4.0),
        ("gps", "vessel-b", 700, 151.2094, -33.8700, 0.0),
        ("ais", "vessel-a", 4000, 151.30, -33.80, 12.0),
        ("ais", "vessel-a", 4001, 152.30, -33.80, 300.0),
        ("ais", "vessel-b", 30, 151.2093, -33.8700, 0.0),
        ("ais", "vessel-b", 9000, 179.999, -33.8700, 1.0),
    ];
    steps
        .iter()
        .map(|&(feed, track, s, lon, lat, sog)| {
            let mut attributes = Map::new();
            attributes.insert("sog_mps".into(), json!(sog));
            attributes.insert("kind".into(), Value::from(if track == "vessel-a" { "tanker" } else { "tug" }));
            Observation::new(
                FeedId::new(feed).unwrap_or_else(|e| panic!("fixture feed id: {e}")),
                Some(TrackId::new(track).unwrap_or_else(|e| panic!("fixture track id: {e}"))),
                at(t0 + s),
                at(t0 + s),
                Geometry::new_point([lon, lat]),
                attributes,
            )
        })
        .collect()
}

fn check_outputs(outputs: &[Output]) {
    for o in outputs {
        match o {
            Output::Event(e) => e.validate().unwrap_or_else(|err| panic!("invalid event {e:?}: {err}")),
            Output::Aggregate(a) => a.validate().unwrap_or_else(|err| panic!("invalid aggregate {a:?}: {err}")),
            Output::Joined(obs) => obs.validate().unwrap_or_else(|err| panic!("invalid joined {obs:?}: {err}")),
            Output::Failed { message, .. } => explained("analytic run", message),
        }
    }
}

/// `text` as YAML and, when it is JSON, as the registry reads it. Each spec is validated alone;
/// an accepted one round-trips unchanged; the set builds an engine exactly when every enabled
/// spec is valid, no id repeats and none needs the SQL runner (not linked here); that engine runs
/// a fixed track set, checkpoints, restores and finishes without panicking, and everything it
/// emits validates.
pub fn check(text: &str) {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Err(e) => explained("YAML", &e.to_string()),
        Ok(v) => {
            let specs = if v.is_sequence() {
                serde_yaml::from_value::<Vec<AnalyticSpec>>(v)
            } else {
                serde_yaml::from_value::<AnalyticSpec>(v).map(|s| vec![s])
            };
            match specs {
                Ok(specs) => check_specs(&specs),
                Err(e) => explained("analytic spec (YAML)", &e.to_string()),
            }
        }
    }
    match serde_json::from_str::<AnalyticSpec>(text) {
        Ok(spec) => check_specs(&[spec]),
        Err(e) => explained("analytic spec (JSON)", &e.to_string()),
    }
}

fn check_spec(spec: &AnalyticSpec) -> bool {
    if let Err(e) = spec.validate() {
        explained("analytic validation", &e.problem);
        return false;
    }
    let json = serde_json::to_string(spec).unwrap_or_else(|e| panic!("valid analytic does not serialise: {e}"));
    let back: AnalyticSpec =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("valid analytic does not read back: {e}: {json}"));
    assert_eq!(&back, spec, "analytic changed in a JSON round trip: {json}");
    let yaml = serde_yaml::to_string(spec).unwrap_or_else(|e| panic!("valid analytic does not serialise as YAML: {e}"));
    let back: AnalyticSpec = serde_yaml::from_str(&yaml)
        .unwrap_or_else(|e| panic!("valid analytic does not read back from YAML: {e}: {yaml}"));
    assert_eq!(&back, spec, "analytic changed in a YAML round trip: {yaml}");
    true
}

fn check_specs(specs: &[AnalyticSpec]) {
    let mut buildable = true;
    for (i, spec) in specs.iter().enumerate() {
        let valid = check_spec(spec);
        let repeated = specs[..i].iter().any(|s| s.enabled && s.id == spec.id);
        let sql = matches!(spec.analytic, AnalyticKind::Sql { .. });
        buildable &= !spec.enabled || (valid && !repeated && !sql);
    }
    let fences = fences();
    let config = || EngineConfig { specs, fences: Arc::clone(&fences), sql: None };
    let mut engine = match Engine::build(config(), None) {
        Ok(e) => e,
        Err(e) => {
            assert!(!buildable, "valid analytics refused by the engine: {e}");
            return explained("engine", &e.problem);
        }
    };
    assert!(buildable, "the engine took analytics that do not validate, repeat an id or need SQL: {specs:?}");
    let observations = observations();
    let (first, rest) = observations.split_at(observations.len() / 2);
    for obs in first {
        check_outputs(&engine.observe(obs));
    }
    check_outputs(&engine.advance(at(1_700_000_100)));
    // A checkpoint must read back as it was written and restore an engine that carries on.
    let state = engine.state();
    let json = serde_json::to_string(&state).unwrap_or_else(|e| panic!("engine state does not serialise: {e}"));
    let back: EngineState =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("engine state does not read back: {e}: {json}"));
    assert_eq!(back, state, "engine state changed in a JSON round trip: {json}");
    let mut engine =
        Engine::build(config(), Some(back)).unwrap_or_else(|e| panic!("engine does not restore its checkpoint: {e}"));
    for obs in rest {
        check_outputs(&engine.observe(obs));
    }
    check_outputs(&engine.advance(at(1_700_010_000)));
    check_outputs(&engine.finish());
}
