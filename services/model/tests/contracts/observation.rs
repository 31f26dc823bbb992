//! Observation contract: GeoJSON shape, deterministic id, validation.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::time::Duration;

use crate::common::*;
use geojson::{Geometry, GeometryValue, Position};
use geostream_model::{ModelError, Observation, RecordId};
use proptest::prelude::*;
use serde_json::json;

fn round_trip(o: &Observation) -> Observation {
    let text = serde_json::to_string(o).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn serializes_as_a_geojson_feature() {
    let o = sample_observation();
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(
        v,
        json!({
            "type": "Feature",
            "id": o.id.to_string(),
            "geometry": {"type": "Point", "coordinates": [10.3951, 63.4305]},
            "properties": {
                "feed": "ais-norway",
                "track": "257123456",
                "time": "2024-05-01T12:00:00.123456789Z",
                "received": "2024-05-01T12:00:01.5Z",
                "speed": 12.5,
                "heading": 270,
                "name": "FRAM"
            }
        })
    );
    let text = serde_json::to_string(&o).unwrap();
    let f = geojson::Feature::from_str(&text).unwrap();
    assert_eq!(f.id, Some(geojson::feature::Id::String(o.id.to_string())));
    assert_eq!(f.geometry, Some(o.geometry.clone()));
    assert_eq!(f.property("feed"), Some(&json!("ais-norway")));
    assert_eq!(round_trip(&o), o);
}

#[test]
fn untracked_observation_omits_track() {
    let mut o = sample_observation();
    o.track = None;
    o.refresh_id();
    let v = serde_json::to_value(&o).unwrap();
    assert!(v["properties"].get("track").is_none());
    assert_eq!(round_trip(&o), o);
    assert_eq!(o.kafka_key(), o.id.to_string());
    assert_eq!(sample_observation().kafka_key(), "257123456");
}

#[test]
fn times_are_written_in_utc() {
    let text = serde_json::to_string(&sample_observation())
        .unwrap()
        .replace("2024-05-01T12:00:00.123456789Z", "2024-05-01T14:00:00.123456789+02:00");
    let o: Observation = serde_json::from_str(&text).unwrap();
    assert_eq!(o, sample_observation());
    assert!(serde_json::to_string(&o).unwrap().contains("12:00:00.123456789Z"));
    o.validate().unwrap();
}

/// Pins the id scheme. If this fails, the id of every stored observation changes: that is a
/// data-contract break (duplicates in the indices, broken dedup across the upgrade) and needs a
/// new domain tag version and a migration note, not an update of this literal.
#[test]
fn golden_id() {
    assert_eq!(sample_observation().id.to_string(), "48995625f8e0ed2eb8b0ecc8e670c1bd");
}

#[test]
fn id_is_deterministic() {
    assert_eq!(sample_observation().id, sample_observation().id);
    assert_eq!(sample_observation().compute_id(), sample_observation().id);
}

#[test]
fn id_ignores_received_attributes_and_bbox() {
    let base = sample_observation();
    let mut o = base.clone();
    o.received += Duration::from_secs(3600);
    o.attributes.insert("enriched".into(), json!(true));
    o.attributes.remove("speed");
    o.geometry.bbox = Some(vec![10.0, 63.0, 11.0, 64.0]);
    assert_eq!(o.compute_id(), base.id);
    // Offsets do not matter either: the id hashes the instant.
    let mut o = base.clone();
    o.time = o.time.to_offset(time::macros::offset!(+05:30));
    assert_eq!(o.compute_id(), base.id);
    // -0.0 and 0.0 are the same coordinate.
    let a =
        Observation::new(feed("f"), None, base.time, base.time, Geometry::new_point([0.0, 1.0]), Default::default());
    let b =
        Observation::new(feed("f"), None, base.time, base.time, Geometry::new_point([-0.0, 1.0]), Default::default());
    assert_eq!(a.id, b.id);
}

#[test]
fn id_changes_with_each_identifying_field() {
    let base = sample_observation();
    let changed = |f: &dyn Fn(&mut Observation)| {
        let mut o = base.clone();
        f(&mut o);
        o.compute_id()
    };
    let ids = [
        changed(&|o| o.feed = feed("ais-sweden")),
        changed(&|o| o.track = None),
        changed(&|o| o.track = Some(track("257123457"))),
        changed(&|o| o.time += Duration::from_nanos(1)),
        changed(&|o| o.time -= Duration::from_nanos(1)),
        changed(&|o| o.geometry = Geometry::new_point([next_up(10.3951), 63.4305])),
        changed(&|o| o.geometry = Geometry::new_point([10.3951, next_up(63.4305)])),
        changed(&|o| o.geometry = Geometry::new_point([10.3951, 63.4305, 0.0])),
        changed(&|o| o.geometry = Geometry::new_multi_point([[10.3951, 63.4305]])),
    ];
    for (i, id) in ids.iter().enumerate() {
        assert_ne!(*id, base.id, "change {i} kept the id");
        for (j, other) in ids.iter().enumerate().skip(i + 1) {
            assert_ne!(id, other, "changes {i} and {j} collide");
        }
    }
}

#[test]
fn id_distinguishes_geometry_type_and_structure() {
    let p = |x: f64| Position::from([x, x]);
    let geoms = [
        Geometry::new_line_string([p(1.0), p(2.0), p(3.0)]),
        Geometry::new_multi_point([p(1.0), p(2.0), p(3.0)]),
        Geometry::new_multi_line_string([vec![p(1.0), p(2.0), p(3.0)]]),
        Geometry::new_multi_line_string([vec![p(1.0)], vec![p(2.0), p(3.0)]]),
        Geometry::new_multi_line_string([vec![p(1.0), p(2.0)], vec![p(3.0)]]),
        Geometry::new_polygon([vec![p(1.0), p(2.0), p(3.0)]]),
        Geometry::new_multi_polygon([vec![vec![p(1.0), p(2.0), p(3.0)]]]),
        Geometry::new_geometry_collection([Geometry::new_line_string([p(1.0), p(2.0), p(3.0)])]),
    ];
    let base = sample_observation();
    let ids: Vec<RecordId> = geoms
        .iter()
        .map(|g| {
            let mut o = base.clone();
            o.geometry = g.clone();
            o.compute_id()
        })
        .collect();
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            assert_ne!(ids[i], ids[j], "{:?} and {:?} collide", geoms[i], geoms[j]);
        }
    }
}

#[test]
fn validate_reports_what_and_where() {
    let base = sample_observation();
    base.validate().unwrap();

    let with_geom = |g: Geometry| {
        let mut o = base.clone();
        o.geometry = g;
        o.refresh_id();
        o.validate().unwrap_err().to_string()
    };
    let m = with_geom(Geometry::new_point([190.0, 10.0]));
    assert!(m.contains("longitude 190 is outside [-180, 180]"), "{m}");
    let m = with_geom(Geometry::new_point([10.0, -90.5]));
    assert!(m.contains("latitude -90.5 is outside [-90, 90]"), "{m}");
    let m = with_geom(Geometry::new_point([f64::NAN, 10.0]));
    assert!(m.contains("longitude is NaN"), "{m}");
    let m = with_geom(Geometry::new_line_string([[1.0, 1.0], [1.0, f64::INFINITY]]));
    assert!(m.contains("geometry position 1: latitude is inf"), "{m}");
    let m = with_geom(Geometry::new_multi_polygon([
        vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
        vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 100.0], [0.0, 0.0]]],
    ]));
    assert!(m.contains("geometry polygon 1, ring 0, position 2: latitude 100"), "{m}");
    let m = with_geom(Geometry::new_multi_point(Vec::<[f64; 2]>::new()));
    assert!(m.contains("has no positions"), "{m}");
    let m = with_geom(Geometry::new(GeometryValue::Point { coordinates: Position::from(vec![1.0]) }));
    assert!(m.contains("at least longitude and latitude"), "{m}");

    let mut o = base.clone();
    o.time += Duration::from_nanos(1);
    let e = o.validate().unwrap_err();
    assert!(matches!(e, ModelError::IdMismatch { .. }), "{e}");

    let mut o = base.clone();
    o.attributes.insert("time".into(), json!(1));
    let m = o.validate().unwrap_err().to_string();
    assert!(m.contains("field `attributes.time` uses a reserved property name"), "{m}");
    assert!(serde_json::to_string(&o).is_err());

    // The attribute limit: at it is fine, one more is refused with the count and the limit.
    let mut o = base.clone();
    for i in o.attributes.len()..Observation::MAX_ATTRIBUTES {
        o.attributes.insert(format!("a{i}"), json!(i));
    }
    o.refresh_id();
    o.validate().unwrap();
    o.attributes.insert("one_more".into(), json!(true));
    o.refresh_id();
    let m = o.validate().unwrap_err().to_string();
    assert!(m.contains("field `properties` has 257 attributes, the limit is 256"), "{m}");

    let mut o = base.clone();
    o.time = time::macros::datetime!(-0001-01-01 00:00 UTC);
    o.refresh_id();
    let m = o.validate().unwrap_err().to_string();
    assert!(m.contains("field `time`"), "{m}");
    assert!(
        Observation::try_new(
            feed("f"),
            None,
            base.time,
            base.time,
            Geometry::new_point([0.0, 91.0]),
            Default::default()
        )
        .is_err()
    );
}

#[test]
fn deserialization_rejects_non_features_and_bad_fields() {
    let good = serde_json::to_value(sample_observation()).unwrap();
    let mut v = good.clone();
    v["type"] = json!("Point");
    assert!(serde_json::from_value::<Observation>(v).is_err());
    let mut v = good.clone();
    v["properties"]["feed"] = json!("Bad Feed");
    let e = serde_json::from_value::<Observation>(v).unwrap_err().to_string();
    assert!(e.contains("invalid feed id"), "{e}");
    let mut v = good.clone();
    v["properties"]["time"] = json!("yesterday");
    let e = serde_json::from_value::<Observation>(v).unwrap_err().to_string();
    assert!(e.contains("invalid RFC 3339 time \"yesterday\""), "{e}");
    let mut v = good.clone();
    v["id"] = json!(42);
    assert!(serde_json::from_value::<Observation>(v).is_err());
    // Foreign members and bbox are tolerated.
    let mut v = good;
    v["bbox"] = json!([0, 0, 1, 1]);
    v["foo"] = json!("bar");
    assert_eq!(serde_json::from_value::<Observation>(v).unwrap(), sample_observation());
}

proptest! {
    #[test]
    fn prop_round_trip(o in observation()) {
        prop_assert!(o.validate().is_ok(), "{:?}", o.validate());
        let text = serde_json::to_string(&o).unwrap();
        let back: Observation = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &o);
        prop_assert!(back.validate().is_ok());
        let f = geojson::Feature::from_str(&text).unwrap();
        prop_assert_eq!(f.geometry.as_ref(), Some(&o.geometry));
    }

    #[test]
    fn prop_id_ignores_received_and_attributes(
        o in observation(), received in instant(), a in attributes()
    ) {
        let mut changed = o.clone();
        changed.received = received;
        changed.attributes = a;
        prop_assert_eq!(changed.compute_id(), o.id);
    }

    #[test]
    fn prop_id_sensitive_to_each_coordinate(o in observation(), pick in any::<prop::sample::Index>()) {
        let mut n = 0;
        for_each_position(&o.geometry.value, &mut |p: &Position| n += p.len());
        let want = pick.index(n);
        let mut changed = o.clone();
        let mut i = 0;
        for_each_position_mut(&mut changed.geometry.value, &mut |p: &mut Position| {
            for c in p.as_slice_mut() {
                if i == want {
                    *c = next_up(*c);
                }
                i += 1;
            }
        });
        prop_assert_ne!(changed.compute_id(), o.id);
    }

    #[test]
    fn prop_id_sensitive_to_time_feed_track(o in observation(), nanos in 1u64..1_000_000_000, other in slug()) {
        let mut t = o.clone();
        t.time += Duration::from_nanos(nanos);
        prop_assert_ne!(t.compute_id(), o.id);
        if other != o.feed.as_str() {
            let mut f = o.clone();
            f.feed = feed(&other);
            prop_assert_ne!(f.compute_id(), o.id);
        }
        let mut k = o.clone();
        k.track = match &o.track {
            Some(_) => None,
            None => Some(track(&other)),
        };
        prop_assert_ne!(k.compute_id(), o.id);
    }
}

fn for_each_position(v: &GeometryValue, f: &mut dyn FnMut(&Position)) {
    match v {
        GeometryValue::Point { coordinates } => f(coordinates),
        GeometryValue::MultiPoint { coordinates } | GeometryValue::LineString { coordinates } => {
            coordinates.iter().for_each(f)
        }
        GeometryValue::MultiLineString { coordinates } | GeometryValue::Polygon { coordinates } => {
            coordinates.iter().flatten().for_each(f)
        }
        GeometryValue::MultiPolygon { coordinates } => coordinates.iter().flatten().flatten().for_each(f),
        GeometryValue::GeometryCollection { geometries } => {
            for g in geometries {
                for_each_position(&g.value, f);
            }
        }
    }
}

fn for_each_position_mut(v: &mut GeometryValue, f: &mut dyn FnMut(&mut Position)) {
    match v {
        GeometryValue::Point { coordinates } => f(coordinates),
        GeometryValue::MultiPoint { coordinates } | GeometryValue::LineString { coordinates } => {
            coordinates.iter_mut().for_each(f)
        }
        GeometryValue::MultiLineString { coordinates } | GeometryValue::Polygon { coordinates } => {
            coordinates.iter_mut().flatten().for_each(f)
        }
        GeometryValue::MultiPolygon { coordinates } => coordinates.iter_mut().flatten().flatten().for_each(f),
        GeometryValue::GeometryCollection { geometries } => {
            for g in geometries {
                for_each_position_mut(&mut g.value, f);
            }
        }
    }
}
