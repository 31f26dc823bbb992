//! From Kafka records to bulk items: the document, the index, the `_id` and the operation.
//!
//! | topic | index | `_id` | operation |
//! |---|---|---|---|
//! | observations | `geostream-<tenant>-observations-<day>` | record id | `create` |
//! | observations (with a track) | `geostream-<tenant>-latest` | track id | `index`, external version = event time in ms |
//! | events | `geostream-<tenant>-events` | record id | `create` |
//! | aggregates | `geostream-<tenant>-aggregates` | record id | `index`, external version = aggregate version |
//!
//! `create` makes a redelivery a no-op (409, counted as delivered). External versions make
//! `latest` keep the newest position by event time however late an older one arrives, and let an
//! aggregate correction (same id, higher version) replace the earlier value but never the reverse.

use geostream_model::{Aggregate, Event, IndexKind, Naming, Observation, ReasonCode, TenantId, TopicKind};
use serde_json::{Map, Value, json};

use crate::templates::observation_index;

/// How an item is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `create`: fails with 409 when the `_id` exists (a duplicate, so delivered).
    Create,
    /// `index` with `version_type=external`: applied only if `version` is higher than the stored one.
    External {
        /// The external version.
        version: u64,
    },
}

/// One bulk item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Which record of the batch it came from.
    pub record: usize,
    /// The index kind (for metrics).
    pub kind: IndexKind,
    /// The concrete index.
    pub index: String,
    /// The document id.
    pub id: String,
    /// The operation.
    pub op: Op,
    /// The document as JSON.
    pub source: Vec<u8>,
}

/// A record the sink cannot write: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    /// The reason code.
    pub reason: ReasonCode,
    /// What was wrong.
    pub detail: String,
}

/// Builds the items of one record read from `topic`. A record that is not a valid Feature of
/// the topic's record type is [`ReasonCode::Malformed`]; a record from a topic the sink does not
/// read is [`ReasonCode::Unsupported`].
pub fn items(
    naming: &Naming,
    tenant: &TenantId,
    topic: TopicKind,
    record: usize,
    payload: Option<&[u8]>,
) -> Result<Vec<Item>, Unwritable> {
    let malformed = |detail: String| Unwritable { reason: ReasonCode::Malformed, detail };
    let payload = payload.ok_or_else(|| malformed("the record has no value (a tombstone)".into()))?;
    let not_a = |what: &str, e: &dyn std::fmt::Display| malformed(format!("not a valid {what} Feature: {e}"));
    match topic {
        TopicKind::Observations => {
            let obs: Observation = serde_json::from_slice(payload).map_err(|e| not_a("observation", &e))?;
            obs.validate().map_err(|e| not_a("observation", &e))?;
            let source = document(&obs, Some(&obs.geometry)).map_err(|e| not_a("observation", &e))?;
            let mut out = vec![Item {
                record,
                kind: IndexKind::Observations,
                index: observation_index(naming, tenant, obs.time),
                id: obs.id.to_string(),
                op: Op::Create,
                source: source.clone(),
            }];
            if let Some(track) = &obs.track {
                out.push(Item {
                    record,
                    kind: IndexKind::Latest,
                    index: naming.index(tenant, IndexKind::Latest),
                    id: track.as_str().to_owned(),
                    op: Op::External { version: version_of(obs.time) },
                    source,
                });
            }
            Ok(out)
        }
        TopicKind::Events => {
            let ev: Event = serde_json::from_slice(payload).map_err(|e| not_a("event", &e))?;
            ev.validate().map_err(|e| not_a("event", &e))?;
            Ok(vec![Item {
                record,
                kind: IndexKind::Events,
                index: naming.index(tenant, IndexKind::Events),
                id: ev.id.to_string(),
                op: Op::Create,
                source: document(&ev, ev.geometry.as_ref()).map_err(|e| not_a("event", &e))?,
            }])
        }
        TopicKind::Aggregates => {
            let agg: Aggregate = serde_json::from_slice(payload).map_err(|e| not_a("aggregate", &e))?;
            agg.validate().map_err(|e| not_a("aggregate", &e))?;
            Ok(vec![Item {
                record,
                kind: IndexKind::Aggregates,
                index: naming.index(tenant, IndexKind::Aggregates),
                id: agg.id.to_string(),
                op: Op::External { version: u64::from(agg.version) },
                source: document(&agg, agg.geometry.as_ref()).map_err(|e| not_a("aggregate", &e))?,
            }])
        }
        other => Err(Unwritable {
            reason: ReasonCode::Unsupported,
            detail: format!("the sink does not write records of the {other} topic"),
        }),
    }
}

/// The external version of a `latest` document: event time in milliseconds. The engines refuse
/// negative versions, so times before 1970 all share version 0 (the first of them to arrive stays
/// until a post-1970 position replaces it).
pub fn version_of(time: geostream_model::time::OffsetDateTime) -> u64 {
    let ms = time.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
}

/// The indexed document: the Feature as on the wire plus `location`. Written straight from the
/// record with `location` appended as the last member: going through a `Value` tree (a map per
/// object) was most of the sink's CPU time per record.
pub fn document(
    record: &impl serde::Serialize,
    geometry: Option<&geostream_model::geojson::Geometry>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::to_vec(record)?;
    let point = match geometry {
        Some(g) => representative_point(&serde_json::to_value(g)?),
        None => None,
    };
    if let Some([lon, lat]) = point
        && out.last() == Some(&b'}')
        && out.len() > 2
    {
        out.pop();
        out.extend_from_slice(b",\"location\":");
        serde_json::to_writer(&mut out, &json!({"lon": lon, "lat": lat}))?;
        out.push(b'}');
    }
    Ok(out)
}

/// A point standing for a geometry in `geo_point` queries: the point itself, else the centre of the
/// bounding box of all positions. `None` for a null or empty geometry. Bounding boxes across the
/// antimeridian are not special-cased (their centre lands on the far side of the globe); such
/// shapes are found correctly through `geometry` on engines with `geo_shape`.
pub fn representative_point(geometry: &Value) -> Option<[f64; 2]> {
    let mut bbox: Option<[f64; 4]> = None;
    collect(geometry, &mut bbox);
    bbox.map(|[w, s, e, n]| [(w + e) / 2.0, (s + n) / 2.0])
}

fn collect(geometry: &Value, bbox: &mut Option<[f64; 4]>) {
    let Some(obj) = geometry.as_object() else { return };
    if let Some(Value::Array(geometries)) = obj.get("geometries") {
        for g in geometries {
            collect(g, bbox);
        }
    }
    if let Some(c) = obj.get("coordinates") {
        positions(c, bbox);
    }
}

fn positions(c: &Value, bbox: &mut Option<[f64; 4]>) {
    let Value::Array(items) = c else { return };
    if let (Some(lon), Some(lat)) = (items.first().and_then(Value::as_f64), items.get(1).and_then(Value::as_f64)) {
        let b = bbox.get_or_insert([lon, lat, lon, lat]);
        *b = [b[0].min(lon), b[1].min(lat), b[2].max(lon), b[3].max(lat)];
        return;
    }
    for item in items {
        positions(item, bbox);
    }
}

/// Appends one item to an NDJSON bulk body: the action line, then the document line.
pub fn append_bulk(body: &mut Vec<u8>, item: &Item) {
    let mut meta = Map::new();
    meta.insert("_index".into(), Value::String(item.index.clone()));
    meta.insert("_id".into(), Value::String(item.id.clone()));
    let action = match item.op {
        Op::Create => "create",
        Op::External { version } => {
            meta.insert("version".into(), json!(version));
            meta.insert("version_type".into(), json!("external"));
            "index"
        }
    };
    let line = json!({ action: meta });
    // Serializing a Value built from strings and integers cannot fail.
    body.extend_from_slice(line.to_string().as_bytes());
    body.push(b'\n');
    body.extend_from_slice(&item.source);
    body.push(b'\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::geojson::Geometry;
    use geostream_model::time::macros::datetime;
    use geostream_model::{AggregateKind, AnalyticId, EventKind, FeedId, TrackId, Window};

    fn acme() -> TenantId {
        "acme".parse().unwrap()
    }

    fn obs(track: Option<&str>, t: geostream_model::time::OffsetDateTime, lon: f64) -> Observation {
        Observation::try_new(
            FeedId::new("ais").unwrap(),
            track.map(|t| TrackId::new(t).unwrap()),
            t,
            t,
            Geometry::new_point([lon, 63.43]),
            Map::from_iter([("speed".to_owned(), json!(12.5))]),
        )
        .unwrap()
    }

    fn build(topic: TopicKind, payload: &[u8]) -> Result<Vec<Item>, Unwritable> {
        items(&Naming::default(), &acme(), topic, 7, Some(payload))
    }

    #[test]
    fn the_document_is_the_record_plus_location_and_nothing_else() {
        let o = obs(Some("v1"), datetime!(2024-05-01 12:00 UTC), 10.39);
        let doc: Value = serde_json::from_slice(&document(&o, Some(&o.geometry)).unwrap()).unwrap();
        let mut expected = serde_json::to_value(&o).unwrap();
        expected.as_object_mut().unwrap().insert("location".into(), json!({"lon": 10.39, "lat": 63.43}));
        assert_eq!(doc, expected);
        // No geometry: exactly the record, no location.
        let e = Event::builder(AnalyticId::new("gaps").unwrap(), EventKind::Gap, o.time).feed(o.feed.clone()).build();
        let doc: Value = serde_json::from_slice(&document(&e, None).unwrap()).unwrap();
        assert_eq!(doc, serde_json::to_value(&e).unwrap());
    }

    #[test]
    fn an_observation_with_a_track_is_created_and_versions_latest() {
        let o = obs(Some("257123456"), datetime!(2024-05-01 12:00:00.250 UTC), 10.39);
        let items = build(TopicKind::Observations, &serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].index, "geostream-acme-observations-2024.05.01");
        assert_eq!(items[0].id, o.id.to_string());
        assert_eq!(items[0].op, Op::Create);
        assert_eq!(items[0].record, 7);
        assert_eq!(items[1].index, "geostream-acme-latest");
        assert_eq!(items[1].id, "257123456");
        assert_eq!(items[1].op, Op::External { version: 1_714_564_800_250 });
        let doc: Value = serde_json::from_slice(&items[0].source).unwrap();
        assert_eq!(doc["location"], json!({"lon": 10.39, "lat": 63.43}));
        assert_eq!(doc["properties"]["track"], "257123456");
        assert_eq!(doc["properties"]["speed"], 12.5);
        assert_eq!(doc["id"], o.id.to_string());
    }

    #[test]
    fn an_observation_without_a_track_has_no_latest_document() {
        let o = obs(None, datetime!(2024-05-01 12:00 UTC), 10.0);
        let items = build(TopicKind::Observations, &serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind, IndexKind::Observations);
    }

    #[test]
    fn later_event_times_get_higher_versions() {
        let a = version_of(datetime!(2024-05-01 12:00:00 UTC));
        let b = version_of(datetime!(2024-05-01 12:00:00.001 UTC));
        assert!(b > a);
        assert_eq!(version_of(datetime!(1969-07-20 20:17 UTC)), 0);
        assert_eq!(version_of(datetime!(1970-01-01 00:00:00.005 UTC)), 5);
    }

    #[test]
    fn malformed_records_say_why() {
        for (payload, want) in [
            (&b"not json"[..], "not a valid observation Feature"),
            (br#"{"type":"FeatureCollection","features":[]}"#, "not a valid observation Feature"),
            (br#"{"type":"Feature","id":"x","geometry":null,"properties":{}}"#, "not a valid observation Feature"),
        ] {
            let e = build(TopicKind::Observations, payload).unwrap_err();
            assert_eq!(e.reason, ReasonCode::Malformed);
            assert!(e.detail.contains(want), "{}", e.detail);
        }
        let tomb = items(&Naming::default(), &acme(), TopicKind::Observations, 0, None).unwrap_err();
        assert!(tomb.detail.contains("tombstone"));
        // A stale id (content changed after the id was computed) is refused, not stored under a wrong id.
        let mut o = obs(Some("t"), datetime!(2024-05-01 12:00 UTC), 10.0);
        o.geometry = Geometry::new_point([11.0, 63.0]);
        let e = build(TopicKind::Observations, &serde_json::to_vec(&o).unwrap()).unwrap_err();
        assert_eq!(e.reason, ReasonCode::Malformed);
        let e = build(TopicKind::Feeds, b"{}").unwrap_err();
        assert_eq!(e.reason, ReasonCode::Unsupported);
    }

    #[test]
    fn events_are_created_and_aggregates_versioned() {
        let t = datetime!(2024-05-01 12:00 UTC);
        let ev = Event::builder(AnalyticId::new("harbour").unwrap(), EventKind::Enter, t)
            .geometry(Geometry::new_point([10.0, 60.0]))
            .track(TrackId::new("v1").unwrap())
            .build();
        let items = build(TopicKind::Events, &serde_json::to_vec(&ev).unwrap()).unwrap();
        assert_eq!((items.len(), items[0].op, items[0].index.as_str()), (1, Op::Create, "geostream-acme-events"));
        assert_eq!(items[0].id, ev.id.to_string());
        // An observation is not an event.
        let o = obs(Some("t"), t, 10.0);
        assert!(build(TopicKind::Events, &serde_json::to_vec(&o).unwrap()).is_err());

        let w = Window::new(t, datetime!(2024-05-01 12:05 UTC)).unwrap();
        let mut agg = Aggregate::new(AggregateKind::Bin, AnalyticId::new("bins").unwrap(), w, "8/1/2");
        agg.version = 3;
        agg.count = 9;
        let items = build(TopicKind::Aggregates, &serde_json::to_vec(&agg).unwrap()).unwrap();
        assert_eq!(items[0].op, Op::External { version: 3 });
        assert_eq!(items[0].index, "geostream-acme-aggregates");
        let doc: Value = serde_json::from_slice(&items[0].source).unwrap();
        assert!(doc.get("location").is_none(), "no geometry, no location: {doc}");
    }

    #[test]
    fn representative_points() {
        assert_eq!(representative_point(&json!({"type": "Point", "coordinates": [1.0, 2.0, 30.0]})), Some([1.0, 2.0]));
        let poly = json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [0.0, 0.0]]]});
        assert_eq!(representative_point(&poly), Some([2.0, 1.0]));
        let coll = json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [-10.0, -10.0]},
            {"type": "LineString", "coordinates": [[10.0, 10.0], [0.0, 0.0]]}
        ]});
        assert_eq!(representative_point(&coll), Some([0.0, 0.0]));
        assert_eq!(representative_point(&Value::Null), None);
        assert_eq!(representative_point(&json!({"type": "MultiPoint", "coordinates": []})), None);
    }

    #[test]
    fn bulk_lines() {
        let mut body = Vec::new();
        let item = |op| Item {
            record: 0,
            kind: IndexKind::Latest,
            index: "i".into(),
            id: "a\"b".into(),
            op,
            source: br#"{"x":1}"#.to_vec(),
        };
        append_bulk(&mut body, &item(Op::Create));
        append_bulk(&mut body, &item(Op::External { version: 42 }));
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0], json!({"create": {"_index": "i", "_id": "a\"b"}}));
        assert_eq!(lines[1], json!({"x": 1}));
        assert_eq!(
            lines[2],
            json!({"index": {"_index": "i", "_id": "a\"b", "version": 42, "version_type": "external"}})
        );
        assert!(text.ends_with('\n'), "the bulk API needs a final newline");
    }
}
