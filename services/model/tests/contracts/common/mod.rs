//! Shared builders and proptest strategies for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use geojson::{Geometry, Position};
use geostream_model::{FeedId, Observation, TrackId};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

pub fn feed(s: &str) -> FeedId {
    FeedId::new(s).unwrap()
}

pub fn track(s: &str) -> TrackId {
    TrackId::new(s).unwrap()
}

pub fn attrs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("attributes must be an object"),
    }
}

/// The next representable f64 above `x` (f64::next_up needs Rust 1.86; the workspace targets 1.85).
pub fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        return f64::from_bits(1);
    }
    if x > 0.0 { f64::from_bits(x.to_bits() + 1) } else { f64::from_bits(x.to_bits() - 1) }
}

pub fn sample_observation() -> Observation {
    Observation::new(
        feed("ais-norway"),
        Some(track("257123456")),
        datetime!(2024-05-01 12:00:00.123456789 UTC),
        datetime!(2024-05-01 12:00:01.5 UTC),
        Geometry::new_point([10.3951, 63.4305]),
        attrs(json!({"speed": 12.5, "heading": 270, "name": "FRAM"})),
    )
}

// ---- strategies ----

pub fn lon() -> impl Strategy<Value = f64> {
    prop_oneof![Just(-180.0), Just(180.0), Just(0.0), -180.0..=180.0f64]
}

pub fn lat() -> impl Strategy<Value = f64> {
    prop_oneof![Just(-90.0), Just(90.0), Just(0.0), -90.0..=90.0f64]
}

pub fn position() -> impl Strategy<Value = Position> {
    (lon(), lat(), proptest::option::of(-500.0..9000.0f64)).prop_map(|(x, y, z)| match z {
        Some(z) => Position::from([x, y, z]),
        None => Position::from([x, y]),
    })
}

fn ring() -> impl Strategy<Value = Vec<Position>> {
    proptest::collection::vec(position(), 3..6).prop_map(|mut r| {
        r.push(r[0].clone());
        r
    })
}

pub fn geometry() -> impl Strategy<Value = Geometry> {
    prop_oneof![
        4 => position().prop_map(Geometry::new_point),
        1 => proptest::collection::vec(position(), 1..4).prop_map(Geometry::new_multi_point),
        1 => proptest::collection::vec(position(), 2..5).prop_map(Geometry::new_line_string),
        1 => proptest::collection::vec(proptest::collection::vec(position(), 2..4), 1..3)
            .prop_map(Geometry::new_multi_line_string),
        1 => proptest::collection::vec(ring(), 1..3).prop_map(Geometry::new_polygon),
        1 => proptest::collection::vec(proptest::collection::vec(ring(), 1..3), 1..3)
            .prop_map(Geometry::new_multi_polygon),
    ]
}

/// Any instant RFC 3339 can express (years 0000 to 9999), to the nanosecond.
pub fn instant() -> impl Strategy<Value = OffsetDateTime> {
    let min = datetime!(0000-01-01 00:00 UTC).unix_timestamp_nanos();
    let max = datetime!(9999-12-31 23:59:59.999999999 UTC).unix_timestamp_nanos();
    prop_oneof![
        (min..=max),
        // Dense around the present, where real data lives.
        (1_500_000_000_000_000_000i128..2_000_000_000_000_000_000i128),
    ]
    .prop_map(|n| OffsetDateTime::from_unix_timestamp_nanos(n).unwrap())
}

pub fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,20}"
}

pub fn track_id() -> impl Strategy<Value = TrackId> {
    "[^\\p{Cc}]{1,30}".prop_map(|s| TrackId::new(s).unwrap())
}

pub fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

/// Attributes whose names avoid every record's reserved property names.
pub fn attributes() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

pub fn observation() -> impl Strategy<Value = Observation> {
    (slug(), proptest::option::of(track_id()), instant(), instant(), geometry(), attributes())
        .prop_map(|(f, t, time, received, g, a)| Observation::new(FeedId::new(f).unwrap(), t, time, received, g, a))
}
