//! Event and aggregate contracts: GeoJSON shape, deterministic ids, validation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::common::*;
use geojson::Geometry;
use geostream_model::{Aggregate, AggregateKind, AnalyticId, Event, EventKind, FenceId, ModelError, RecordId, Window};
use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

fn analytic(s: &str) -> AnalyticId {
    AnalyticId::new(s).unwrap()
}

fn window() -> Window {
    Window::new(datetime!(2024-05-01 12:00 UTC), datetime!(2024-05-01 12:05 UTC)).unwrap()
}

fn full_event() -> Event {
    Event::builder(analytic("harbour-geofence"), EventKind::Enter, datetime!(2024-05-01 12:00:00.25 UTC))
        .geometry(Geometry::new_point([10.39, 63.43]))
        .feed(feed("ais-norway"))
        .track(track("257123456"))
        .fence(FenceId::new("trondheim-port").unwrap(), 3)
        .window(window())
        .observation(sample_observation().id)
        .attribute("speed", 4.5)
        .build()
}

fn aggregate() -> Aggregate {
    let mut a = Aggregate::new(AggregateKind::Bin, analytic("density-h3"), window(), "8a2a1072b59ffff");
    a.count = 42;
    a.values = BTreeMap::from([("speed_mean".to_owned(), 7.25), ("speed_max".to_owned(), 14.0)]);
    a.geometry = Some(Geometry::new_point([10.39, 63.43]));
    a
}

#[test]
fn event_wire_format() {
    let e = full_event();
    e.validate().unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(
        v,
        json!({
            "type": "Feature",
            "id": e.id.to_string(),
            "geometry": {"type": "Point", "coordinates": [10.39, 63.43]},
            "properties": {
                "kind": "enter",
                "analytic": "harbour-geofence",
                "time": "2024-05-01T12:00:00.25Z",
                "feed": "ais-norway",
                "track": "257123456",
                "fence": {"id": "trondheim-port", "version": 3},
                "window": {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:05:00Z"},
                "observation": sample_observation().id.to_string(),
                "speed": 4.5
            }
        })
    );
    let text = serde_json::to_string(&e).unwrap();
    geojson::Feature::from_str(&text).unwrap();
    assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
}

#[test]
fn minimal_event_has_null_geometry() {
    let e = Event::builder(analytic("gaps"), EventKind::Gap, datetime!(2024-05-01 12:00 UTC)).build();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["geometry"], json!(null));
    assert_eq!(v["properties"], json!({"kind": "gap", "analytic": "gaps", "time": "2024-05-01T12:00:00Z"}));
    let back: Event = serde_json::from_value(v).unwrap();
    assert_eq!(back, e);
    let f = geojson::Feature::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert!(f.geometry.is_none());
}

#[test]
fn event_kinds_serialize_lowercase() {
    assert_eq!(EventKind::ALL.len(), 12);
    for k in EventKind::ALL {
        let s = serde_json::to_string(k).unwrap();
        assert_eq!(s, format!("\"{}\"", k.as_str()));
        assert_eq!(s, s.to_lowercase());
        assert_eq!(serde_json::from_str::<EventKind>(&s).unwrap(), *k);
    }
    assert!(serde_json::from_str::<EventKind>("\"Enter\"").is_err());
}

#[test]
fn event_id_sensitivity() {
    let base = full_event();
    let changed = |f: &dyn Fn(&mut Event)| {
        let mut e = base.clone();
        f(&mut e);
        e.compute_id()
    };
    let ids = [
        changed(&|e| e.analytic = analytic("other")),
        changed(&|e| e.kind = EventKind::Exit),
        changed(&|e| e.feed = None),
        changed(&|e| e.track = Some(track("257123457"))),
        changed(&|e| e.track = None),
        changed(&|e| e.fence.as_mut().unwrap().version = 4),
        changed(&|e| e.fence.as_mut().unwrap().id = FenceId::new("other").unwrap()),
        changed(&|e| e.fence = None),
        changed(&|e| e.window.as_mut().unwrap().start -= Duration::from_nanos(1)),
        changed(&|e| e.window.as_mut().unwrap().end += Duration::from_nanos(1)),
        changed(&|e| e.window = None),
        changed(&|e| e.time += Duration::from_nanos(1)),
    ];
    for (i, id) in ids.iter().enumerate() {
        assert_ne!(*id, base.id, "change {i} kept the id");
        for (j, other) in ids.iter().enumerate().skip(i + 1) {
            assert_ne!(id, other, "changes {i} and {j} collide");
        }
    }
    // Payload is not identity.
    let same = [
        changed(&|e| e.geometry = None),
        changed(&|e| e.observation = None),
        changed(&|e| {
            e.attributes.clear();
        }),
    ];
    assert!(same.iter().all(|id| *id == base.id));
    assert_eq!(full_event().id, base.id);
}

#[test]
fn event_validation() {
    let mut e = full_event();
    e.kind = EventKind::Exit;
    assert!(matches!(e.validate(), Err(ModelError::IdMismatch { .. })));
    let mut e = full_event();
    e.window = Some(Window { start: datetime!(2024-05-01 12:05 UTC), end: datetime!(2024-05-01 12:00 UTC) });
    e.refresh_id();
    let m = e.validate().unwrap_err().to_string();
    assert!(m.contains("field `window`") && m.contains("start must be before end"), "{m}");
    let mut e = full_event();
    e.attributes.insert("fence".into(), json!("x"));
    let m = e.validate().unwrap_err().to_string();
    assert!(m.contains("attributes.fence"), "{m}");
    assert!(serde_json::to_string(&e).is_err());
    assert!(Window::new(datetime!(2024-05-01 12:00 UTC), datetime!(2024-05-01 12:00 UTC)).is_err());
}

#[test]
fn aggregate_wire_format_and_versioning() {
    let a = aggregate();
    a.validate().unwrap();
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v["properties"],
        json!({
            "kind": "bin",
            "analytic": "density-h3",
            "window": {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:05:00Z"},
            "bin": "8a2a1072b59ffff",
            "version": 1,
            "count": 42,
            "values": {"speed_max": 14.0, "speed_mean": 7.25}
        })
    );
    assert_eq!(v["type"], "Feature");
    let text = serde_json::to_string(&a).unwrap();
    geojson::Feature::from_str(&text).unwrap();
    assert_eq!(serde_json::from_str::<Aggregate>(&text).unwrap(), a);

    // A correction: same id, higher version.
    let mut c = a.clone();
    c.version = 2;
    c.count = 43;
    c.values.insert("speed_mean".into(), 7.5);
    c.geometry = None;
    c.kind = AggregateKind::Sql;
    assert_eq!(c.compute_id(), a.id);
    c.validate().unwrap();
}

#[test]
fn aggregate_id_sensitivity() {
    let base = aggregate();
    let mut ids: Vec<RecordId> = Vec::new();
    let mut a = base.clone();
    a.analytic = analytic("other");
    ids.push(a.compute_id());
    let mut a = base.clone();
    a.window.start -= Duration::from_nanos(1);
    ids.push(a.compute_id());
    let mut a = base.clone();
    a.window.end += Duration::from_nanos(1);
    ids.push(a.compute_id());
    let mut a = base.clone();
    a.bin.push('0');
    ids.push(a.compute_id());
    for (i, id) in ids.iter().enumerate() {
        assert_ne!(*id, base.id, "change {i} kept the id");
    }
}

#[test]
fn aggregate_validation() {
    let mut a = aggregate();
    a.values.insert("ratio".into(), f64::NAN);
    let m = a.validate().unwrap_err().to_string();
    assert!(m.contains("field `values.ratio` is NaN"), "{m}");
    let mut a = aggregate();
    a.bin = "x".repeat(Aggregate::MAX_BIN_BYTES + 1);
    a.refresh_id();
    assert!(a.validate().unwrap_err().to_string().contains("field `bin`"));
}

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        slug(),
        proptest::sample::select(EventKind::ALL),
        instant(),
        proptest::option::of(geometry()),
        proptest::option::of(slug()),
        proptest::option::of(track_id()),
        proptest::option::of((slug(), any::<u64>())),
        proptest::option::of((instant(), 1u64..10_000_000)),
        attributes(),
    )
        .prop_map(|(a, kind, time, g, f, t, fence, w, attrs)| {
            let mut b = Event::builder(analytic(&a), kind, time).attributes(attrs);
            if let Some(g) = g {
                b = b.geometry(g);
            }
            if let Some(f) = f {
                b = b.feed(feed(&f));
            }
            if let Some(t) = t {
                b = b.track(t);
            }
            if let Some((id, v)) = fence {
                b = b.fence(FenceId::new(id).unwrap(), v);
            }
            if let Some((start, secs)) = w
                && let Some(end) = start.checked_add(time::Duration::seconds(secs as i64))
                && let Ok(w) = Window::new(start, end)
            {
                b = b.window(w);
            }
            b.build()
        })
}

proptest! {
    #[test]
    fn prop_event_round_trip(e in event_strategy()) {
        let text = serde_json::to_string(&e).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.compute_id(), e.id);
        geojson::Feature::from_str(&text).unwrap();
    }

    #[test]
    fn prop_event_id_sensitive_to_time(e in event_strategy(), nanos in 1u64..1_000_000) {
        let mut c = e.clone();
        c.time += Duration::from_nanos(nanos);
        prop_assert_ne!(c.compute_id(), e.id);
    }

    #[test]
    fn prop_aggregate_round_trip(
        a in slug(), start in instant(), secs in 1i64..100_000, bin in "\\PC{0,20}",
        version in any::<u32>(), count in any::<u64>(),
        values in proptest::collection::btree_map("[a-z_]{1,10}", -1e12..1e12f64, 0..4),
        g in proptest::option::of(geometry()),
    ) {
        let end = start.checked_add(time::Duration::seconds(secs));
        prop_assume!(end.is_some_and(geostream_model::rfc3339::is_representable));
        let w = Window::new(start, end.unwrap()).unwrap();
        let mut agg = Aggregate::new(AggregateKind::Bin, analytic(&a), w, bin);
        agg.version = version;
        agg.count = count;
        agg.values = values;
        agg.geometry = g;
        prop_assert!(agg.validate().is_ok());
        let text = serde_json::to_string(&agg).unwrap();
        let back: Aggregate = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, agg);
    }
}
