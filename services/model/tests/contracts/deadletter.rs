//! Dead-letter contract: JSON shape, base64 payload, closed reason codes.
#![allow(clippy::unwrap_used)]

use geostream_model::{DeadLetter, ReasonCode, Stage};
use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

/// Exhaustive on purpose: a new variant does not compile until it is given a slot here, and the
/// slot check below then fails until it is also in `ReasonCode::ALL`.
fn slot(r: ReasonCode) -> usize {
    match r {
        ReasonCode::Malformed => 0,
        ReasonCode::Schema => 1,
        ReasonCode::Checksum => 2,
        ReasonCode::Unsupported => 3,
        ReasonCode::InvalidCoordinates => 4,
        ReasonCode::NullIsland => 5,
        ReasonCode::InvalidTime => 6,
        ReasonCode::FutureTime => 7,
        ReasonCode::TooLarge => 8,
        ReasonCode::Incomplete => 9,
        ReasonCode::Late => 10,
        ReasonCode::Mapping => 11,
        ReasonCode::Rejected => 12,
        ReasonCode::UnknownFeed => 13,
    }
}

#[test]
fn all_lists_every_reason_once() {
    assert_eq!(ReasonCode::ALL.len(), 14);
    for (i, r) in ReasonCode::ALL.iter().enumerate() {
        assert_eq!(slot(*r), i, "{r} is out of place in ALL");
    }
}

#[test]
fn reason_codes_round_trip_with_stable_names() {
    let expected = [
        "malformed",
        "schema",
        "checksum",
        "unsupported",
        "invalid_coordinates",
        "null_island",
        "invalid_time",
        "future_time",
        "too_large",
        "incomplete",
        "late",
        "mapping",
        "rejected",
        "unknown_feed",
    ];
    for (r, name) in ReasonCode::ALL.iter().zip(expected) {
        assert_eq!(r.as_str(), name);
        assert_eq!(r.to_string(), name);
        assert_eq!(serde_json::to_value(r).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<ReasonCode>(json!(name)).unwrap(), *r);
        assert_eq!(name.parse::<ReasonCode>().unwrap(), *r);
    }
}

#[test]
fn unknown_reason_is_rejected() {
    assert!(serde_json::from_value::<ReasonCode>(json!("oops")).is_err());
    assert!(serde_json::from_value::<ReasonCode>(json!("Malformed")).is_err());
    let m = "oops".parse::<ReasonCode>().unwrap_err().to_string();
    assert!(m.starts_with("unknown reason code \"oops\"; expected one of: malformed, schema"), "{m}");
    let mut v = serde_json::to_value(sample()).unwrap();
    v["reason"] = json!("oops");
    assert!(serde_json::from_value::<DeadLetter>(v).is_err());
}

fn sample() -> DeadLetter {
    DeadLetter::new(
        b"!AIVDM,1,1,,B,bad*00".to_vec(),
        Stage::Ingest,
        ReasonCode::Checksum,
        "checksum 00 does not match computed 5C",
        datetime!(2024-05-01 14:00 +02:00),
    )
    .with_feed("ais-norway")
    .with_source("tcp://ais.example.org:5631 line 17")
}

#[test]
fn wire_format() {
    let d = sample();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v,
        json!({
            "raw": "IUFJVkRNLDEsMSwsQixiYWQqMDA=",
            "feed": "ais-norway",
            "stage": "ingest",
            "reason": "checksum",
            "detail": "checksum 00 does not match computed 5C",
            "source": "tcp://ais.example.org:5631 line 17",
            "time": "2024-05-01T12:00:00Z"
        })
    );
    assert_eq!(serde_json::from_value::<DeadLetter>(v).unwrap(), d);
    // Minimal form; unknown fields from newer writers are tolerated.
    let minimal = json!({
        "raw": "", "stage": "sink", "reason": "mapping", "detail": "d",
        "time": "2024-05-01T12:00:00Z", "added_later": 1
    });
    let d: DeadLetter = serde_json::from_value(minimal).unwrap();
    assert!(d.raw.is_empty() && d.feed.is_none() && d.source.is_none());
    let bad = json!({"raw": "not base64!", "stage": "sink", "reason": "mapping", "detail": "d",
        "time": "2024-05-01T12:00:00Z"});
    let e = serde_json::from_value::<DeadLetter>(bad).unwrap_err().to_string();
    assert!(e.contains("`raw` is not standard base64"), "{e}");
}

#[test]
fn oversized_raw_is_cut_and_size_kept() {
    let raw = vec![7u8; DeadLetter::MAX_RAW_BYTES + 10];
    let d = DeadLetter::new(raw, Stage::Ingest, ReasonCode::TooLarge, "big", datetime!(2024-05-01 12:00 UTC));
    assert_eq!(d.raw.len(), DeadLetter::MAX_RAW_BYTES);
    assert_eq!(d.original_size, Some(DeadLetter::MAX_RAW_BYTES as u64 + 10));
    let text = serde_json::to_string(&d).unwrap();
    assert!(text.len() < 1024 * 1024, "must fit Kafka's default message size");
    assert_eq!(serde_json::from_str::<DeadLetter>(&text).unwrap(), d);
}

proptest! {
    #[test]
    fn prop_round_trip(
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        stage in proptest::sample::select(Stage::ALL),
        reason in proptest::sample::select(ReasonCode::ALL),
        detail in "\\PC{0,40}",
        feed in proptest::option::of("\\PC{0,20}"),
        source in proptest::option::of("\\PC{0,20}"),
        secs in 0i64..4_000_000_000,
    ) {
        let mut d = DeadLetter::new(
            raw, stage, reason, detail,
            time::OffsetDateTime::from_unix_timestamp(secs).unwrap(),
        );
        d.feed = feed;
        d.source = source;
        let text = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<DeadLetter>(&text).unwrap(), d);
    }
}
