//! Kafka record payloads (GeoJSON Features) to Arrow record batches, one schema per kind.
//!
//! Every table has the common columns
//!
//! | column | type | notes |
//! |---|---|---|
//! | `id` | Utf8, not null | the record id (32 hex) |
//! | `feed` | Utf8 | observations always; events when they concern one feed; aggregates never |
//! | `track` | Utf8 | |
//! | `time` | Timestamp(µs, UTC), not null | event time; an aggregate's window start |
//! | `geometry` | Binary (WKB, 2D, little endian) | null for non-spatial events and aggregates |
//! | `bbox` | Struct{xmin, ymin, xmax, ymax: Float64} | the geometry's bounds (GeoParquet 1.1 covering) |
//! | `feature` | Utf8, not null | the Feature JSON exactly as it was in Kafka |
//! | `kafka_partition` | Int32, not null | where it was read |
//! | `kafka_offset` | Int64, not null | |
//!
//! followed by the kind's own: observations `received`; events `kind`, `analytic`, `fence`,
//! `window_start`, `window_end`; aggregates `kind`, `analytic`, `bin`, `shard`, `version`, `count`,
//! `window_start`, `window_end`. Altitudes are not in the WKB (2D); `feature` keeps them.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use geo::BoundingRect;
use geostream_model::{Aggregate, Event, Observation};
use time::OffsetDateTime;

use crate::kind::ArchiveKind;
use crate::layout::HourKey;

/// Why a payload is not archived.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// Not a record of the topic's kind (the sink dead-letters the same record as `malformed`).
    #[error("not a valid {kind} record: {reason}")]
    Malformed {
        /// The topic's kind.
        kind: ArchiveKind,
        /// The parser's complaint.
        reason: String,
    },
    /// The geometry could not be encoded as WKB.
    #[error("geometry not encodable as WKB: {0}")]
    Wkb(String),
}

/// The geometry as stored: WKB, its bounds and its GeoParquet type name.
#[derive(Debug, Clone, PartialEq)]
pub struct Geo {
    /// Well-known binary, 2D, little endian.
    pub wkb: Vec<u8>,
    /// `[xmin, ymin, xmax, ymax]`.
    pub bbox: [f64; 4],
    /// `Point`, `LineString`, …, as GeoParquet's `geometry_types` names them.
    pub type_name: &'static str,
}

/// The kind-specific columns of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    /// Observation columns.
    Observation {
        /// When geostream received it.
        received: OffsetDateTime,
    },
    /// Event columns.
    Event {
        /// enter, exit, ...
        kind: String,
        /// The analytic.
        analytic: String,
        /// The fence id.
        fence: Option<String>,
        /// The window, if any.
        window: Option<(OffsetDateTime, OffsetDateTime)>,
    },
    /// Aggregate columns.
    Aggregate {
        /// bin or sql.
        kind: String,
        /// The analytic.
        analytic: String,
        /// The bin or group key.
        bin: String,
        /// The processor shard.
        shard: Option<u32>,
        /// The correction version.
        version: u32,
        /// Observations aggregated.
        count: u64,
        /// The window.
        window: (OffsetDateTime, OffsetDateTime),
    },
}

/// One record ready for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The record id.
    pub id: String,
    /// The feed.
    pub feed: Option<String>,
    /// The track.
    pub track: Option<String>,
    /// Event time (aggregates: window start); decides the hour directory.
    pub time: OffsetDateTime,
    /// The geometry, if any.
    pub geo: Option<Geo>,
    /// The payload as it was in Kafka.
    pub feature: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The kind's own columns.
    pub extra: Extra,
}

impl Row {
    /// Parses a payload of `kind`'s topic.
    pub fn parse(kind: ArchiveKind, partition: i32, offset: i64, payload: &[u8]) -> Result<Row, RowError> {
        let malformed = |reason: String| RowError::Malformed { kind, reason };
        let feature = std::str::from_utf8(payload).map_err(|e| malformed(e.to_string()))?.to_owned();
        let row =
            |id: String, feed, track, time, geometry: Option<&geojson::Geometry>, extra| -> Result<Row, RowError> {
                Ok(Row {
                    id,
                    feed,
                    track,
                    time,
                    geo: geometry.map(encode).transpose()?,
                    feature: String::new(),
                    partition,
                    offset,
                    extra,
                })
            };
        let mut r = match kind {
            ArchiveKind::Observations => {
                let o: Observation = serde_json::from_str(&feature).map_err(|e| malformed(e.to_string()))?;
                row(
                    o.id.to_string(),
                    Some(o.feed.as_str().to_owned()),
                    o.track.as_ref().map(|t| t.as_str().to_owned()),
                    o.time,
                    Some(&o.geometry),
                    Extra::Observation { received: o.received },
                )?
            }
            ArchiveKind::Events => {
                let e: Event = serde_json::from_str(&feature).map_err(|e| malformed(e.to_string()))?;
                row(
                    e.id.to_string(),
                    e.feed.as_ref().map(|f| f.as_str().to_owned()),
                    e.track.as_ref().map(|t| t.as_str().to_owned()),
                    e.time,
                    e.geometry.as_ref(),
                    Extra::Event {
                        kind: e.kind.as_str().to_owned(),
                        analytic: e.analytic.as_str().to_owned(),
                        fence: e.fence.as_ref().map(|f| f.id.as_str().to_owned()),
                        window: e.window.map(|w| (w.start, w.end)),
                    },
                )?
            }
            ArchiveKind::Aggregates => {
                let a: Aggregate = serde_json::from_str(&feature).map_err(|e| malformed(e.to_string()))?;
                row(
                    a.id.to_string(),
                    None,
                    None,
                    a.window.start,
                    a.geometry.as_ref(),
                    Extra::Aggregate {
                        kind: a.kind.as_str().to_owned(),
                        analytic: a.analytic.as_str().to_owned(),
                        bin: a.bin.clone(),
                        shard: a.shard,
                        version: a.version,
                        count: a.count,
                        window: (a.window.start, a.window.end),
                    },
                )?
            }
        };
        r.feature = feature;
        Ok(r)
    }

    /// The hour directory the row belongs to.
    pub fn hour(&self) -> HourKey {
        HourKey::of(self.time)
    }

    /// Rough in-memory size, for the flush bound.
    pub fn approx_bytes(&self) -> usize {
        self.feature.len() + self.geo.as_ref().map_or(0, |g| g.wkb.len() + 32) + self.id.len() + 64
    }
}

/// Encodes a GeoJSON geometry as 2D WKB with its bounds.
pub fn encode(g: &geojson::Geometry) -> Result<Geo, RowError> {
    let geom: geo_types::Geometry<f64> =
        geo_types::Geometry::try_from(&g.value).map_err(|e| RowError::Wkb(e.to_string()))?;
    let mut wkb = Vec::new();
    wkb::writer::write_geometry(&mut wkb, &geom, &wkb::writer::WriteOptions::default())
        .map_err(|e| RowError::Wkb(e.to_string()))?;
    let bbox = geom.bounding_rect().map(|r| [r.min().x, r.min().y, r.max().x, r.max().y]);
    let Some(bbox) = bbox else {
        return Err(RowError::Wkb("the geometry is empty".into()));
    };
    Ok(Geo { wkb, bbox, type_name: type_name(&geom) })
}

fn type_name(g: &geo_types::Geometry<f64>) -> &'static str {
    use geo_types::Geometry as G;
    match g {
        G::Point(_) => "Point",
        G::Line(_) | G::LineString(_) => "LineString",
        G::Polygon(_) | G::Rect(_) | G::Triangle(_) => "Polygon",
        G::MultiPoint(_) => "MultiPoint",
        G::MultiLineString(_) => "MultiLineString",
        G::MultiPolygon(_) => "MultiPolygon",
        G::GeometryCollection(_) => "GeometryCollection",
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The fields of the `bbox` struct column. Nullable, and null where the struct is: readers (and
/// DataFusion's `get_field`) that look at a child without its parent's validity then see null,
/// not a value Parquet never stored for that row.
pub fn bbox_fields() -> Fields {
    Fields::from(
        ["xmin", "ymin", "xmax", "ymax"]
            .map(|n| Field::new(n, DataType::Float64, true))
            .into_iter()
            .collect::<Vec<_>>(),
    )
}

/// The Arrow schema of a kind's table (and of every file of it).
pub fn schema(kind: ArchiveKind) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("feed", DataType::Utf8, true),
        Field::new("track", DataType::Utf8, true),
        Field::new("time", utc_micros(), false),
        Field::new("geometry", DataType::Binary, true),
        Field::new("bbox", DataType::Struct(bbox_fields()), true),
        Field::new("feature", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ];
    match kind {
        ArchiveKind::Observations => fields.push(Field::new("received", utc_micros(), false)),
        ArchiveKind::Events => fields.extend([
            Field::new("kind", DataType::Utf8, false),
            Field::new("analytic", DataType::Utf8, false),
            Field::new("fence", DataType::Utf8, true),
            Field::new("window_start", utc_micros(), true),
            Field::new("window_end", utc_micros(), true),
        ]),
        ArchiveKind::Aggregates => fields.extend([
            Field::new("kind", DataType::Utf8, false),
            Field::new("analytic", DataType::Utf8, false),
            Field::new("bin", DataType::Utf8, false),
            Field::new("shard", DataType::Int32, true),
            Field::new("version", DataType::Int64, false),
            Field::new("count", DataType::Int64, false),
            Field::new("window_start", utc_micros(), false),
            Field::new("window_end", utc_micros(), false),
        ]),
    }
    Arc::new(Schema::new(fields))
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}

/// Builds one batch of `kind` from rows (all of that kind).
pub fn to_batch(kind: ArchiveKind, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut id = StringBuilder::new();
    let mut feed = StringBuilder::new();
    let mut track = StringBuilder::new();
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut geometry = BinaryBuilder::new();
    let mut bbox: [Float64Builder; 4] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    let mut bbox_valid = Vec::with_capacity(n);
    let mut feature = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for r in rows {
        id.append_value(&r.id);
        feed.append_option(r.feed.as_deref());
        track.append_option(r.track.as_deref());
        time.append_value(micros(r.time));
        match &r.geo {
            Some(g) => {
                geometry.append_value(&g.wkb);
                for (b, v) in bbox.iter_mut().zip(g.bbox) {
                    b.append_value(v);
                }
                bbox_valid.push(true);
            }
            None => {
                geometry.append_null();
                for b in &mut bbox {
                    b.append_null();
                }
                bbox_valid.push(false);
            }
        }
        feature.append_value(&r.feature);
        partition.append_value(r.partition);
        offset.append_value(r.offset);
    }
    let bbox_children: Vec<ArrayRef> = bbox.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    let bbox = StructArray::try_new(bbox_fields(), bbox_children, Some(NullBuffer::from(bbox_valid)))?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(feed.finish()),
        Arc::new(track.finish()),
        Arc::new(time.finish()),
        Arc::new(geometry.finish()),
        Arc::new(bbox),
        Arc::new(feature.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
    ];
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    match kind {
        ArchiveKind::Observations => {
            let mut received = ts();
            for r in rows {
                match &r.extra {
                    Extra::Observation { received: t } => received.append_value(micros(*t)),
                    _ => return Err(wrong_kind(kind)),
                }
            }
            columns.push(Arc::new(received.finish()));
        }
        ArchiveKind::Events => {
            let (mut k, mut analytic, mut fence, mut ws, mut we) =
                (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), ts(), ts());
            for r in rows {
                let Extra::Event { kind: ek, analytic: a, fence: f, window } = &r.extra else {
                    return Err(wrong_kind(kind));
                };
                k.append_value(ek);
                analytic.append_value(a);
                fence.append_option(f.as_deref());
                ws.append_option(window.map(|w| micros(w.0)));
                we.append_option(window.map(|w| micros(w.1)));
            }
            columns.extend([
                Arc::new(k.finish()) as ArrayRef,
                Arc::new(analytic.finish()),
                Arc::new(fence.finish()),
                Arc::new(ws.finish()),
                Arc::new(we.finish()),
            ]);
        }
        ArchiveKind::Aggregates => {
            let (mut k, mut analytic, mut bin) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
            let (mut shard, mut version, mut count) =
                (Int32Builder::with_capacity(n), Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
            let (mut ws, mut we) = (ts(), ts());
            for r in rows {
                let Extra::Aggregate { kind: ak, analytic: a, bin: b, shard: s, version: v, count: c, window } =
                    &r.extra
                else {
                    return Err(wrong_kind(kind));
                };
                k.append_value(ak);
                analytic.append_value(a);
                bin.append_value(b);
                shard.append_option(s.and_then(|s| i32::try_from(s).ok()));
                version.append_value(i64::from(*v));
                count.append_value(i64::try_from(*c).unwrap_or(i64::MAX));
                ws.append_value(micros(window.0));
                we.append_value(micros(window.1));
            }
            columns.extend([
                Arc::new(k.finish()) as ArrayRef,
                Arc::new(analytic.finish()),
                Arc::new(bin.finish()),
                Arc::new(shard.finish()),
                Arc::new(version.finish()),
                Arc::new(count.finish()),
                Arc::new(ws.finish()),
                Arc::new(we.finish()),
            ]);
        }
    }
    RecordBatch::try_new(schema(kind), columns)
}

fn wrong_kind(kind: ArchiveKind) -> ArrowError {
    ArrowError::InvalidArgumentError(format!("a row of another kind in a batch of {kind}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Float64Type;
    use geo_traits::to_geo::ToGeoGeometry;
    use geostream_model::geojson::{Geometry, GeometryValue};
    use geostream_model::{AggregateKind, AnalyticId, EventKind, FeedId, TrackId, Window};
    use time::macros::datetime;

    pub(crate) fn observation(i: u32) -> Observation {
        let t = datetime!(2026-11-26 10:00 UTC) + time::Duration::seconds(i64::from(i) * 97);
        Observation::try_new(
            FeedId::new("ais-norway").unwrap(),
            Some(TrackId::new(format!("25712345{}", i % 7)).unwrap()),
            t,
            t + time::Duration::seconds(2),
            Geometry::new_point([10.39 + f64::from(i) * 1e-3, 63.43]),
            serde_json::Map::from_iter([("speed".to_owned(), serde_json::json!(f64::from(i) / 10.0))]),
        )
        .unwrap()
    }

    fn round_trip(value: GeometryValue) {
        let g = Geometry::new(value);
        let enc = encode(&g).unwrap();
        let back = wkb::reader::read_wkb(&enc.wkb).unwrap().to_geometry();
        let want: geo_types::Geometry<f64> = geo_types::Geometry::try_from(&g.value).unwrap();
        assert_eq!(back, want);
        assert_eq!(enc.wkb[0], 1, "little endian");
    }

    #[test]
    fn wkb_round_trips_points_lines_polygons_and_multis() {
        round_trip(GeometryValue::new_point([10.5, 63.25]));
        round_trip(GeometryValue::new_line_string([[0.0, 0.0], [1.0, 1.5], [2.0, -1.0]]));
        round_trip(GeometryValue::new_polygon([
            vec![[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]],
            vec![[1.0, 1.0], [2.0, 1.0], [2.0, 2.0], [1.0, 1.0]],
        ]));
        round_trip(GeometryValue::new_multi_point([[1.0, 2.0], [3.0, 4.0]]));
        round_trip(GeometryValue::new_multi_line_string([vec![[0.0, 0.0], [1.0, 1.0]]]));
        round_trip(GeometryValue::new_multi_polygon([vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]]));
        let enc = encode(&Geometry::new_line_string([[5.0, 60.0, 12.0], [6.0, 59.0, 3.0]])).unwrap();
        assert_eq!(enc.bbox, [5.0, 59.0, 6.0, 60.0]);
        assert_eq!(enc.type_name, "LineString");
        assert_eq!(
            wkb::reader::read_wkb(&enc.wkb).unwrap().to_geometry(),
            geo_types::Geometry::LineString(vec![(5.0, 60.0), (6.0, 59.0)].into()),
            "2D: the altitude stays in the feature JSON"
        );
    }

    #[test]
    fn observations_become_rows_with_the_exact_payload() {
        let o = observation(3);
        let payload = serde_json::to_vec(&o).unwrap();
        let r = Row::parse(ArchiveKind::Observations, 2, 41, &payload).unwrap();
        assert_eq!(r.id, o.id.to_string());
        assert_eq!(r.feature.as_bytes(), payload.as_slice());
        assert_eq!((r.partition, r.offset), (2, 41));
        assert_eq!(r.hour().hour_dir(), "hour=10");
        let batch = to_batch(
            ArchiveKind::Observations,
            &[
                r.clone(),
                Row::parse(ArchiveKind::Observations, 2, 42, &serde_json::to_vec(&observation(4)).unwrap()).unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema(ArchiveKind::Observations));
        let bbox = batch.column_by_name("bbox").unwrap().as_struct();
        assert_eq!(bbox.column_by_name("xmin").unwrap().as_primitive::<Float64Type>().value(0), 10.393);
        assert_eq!(batch.column_by_name("feature").unwrap().as_string::<i32>().value(0), r.feature);
    }

    #[test]
    fn non_spatial_events_and_aggregates_have_null_geometry_and_bbox() {
        let t = datetime!(2026-11-26 23:59:59 UTC);
        let e = Event::builder(AnalyticId::new("gaps").unwrap(), EventKind::Gap, t)
            .feed(FeedId::new("ais").unwrap())
            .track(TrackId::new("1").unwrap())
            .build();
        let r = Row::parse(ArchiveKind::Events, 0, 0, &serde_json::to_vec(&e).unwrap()).unwrap();
        assert!(r.geo.is_none());
        let b = to_batch(ArchiveKind::Events, &[r]).unwrap();
        assert!(b.column_by_name("geometry").unwrap().is_null(0));
        assert!(b.column_by_name("bbox").unwrap().is_null(0));
        let xmin = b.column_by_name("bbox").unwrap().as_struct().column_by_name("xmin").unwrap().clone();
        assert!(xmin.is_null(0), "a child read without the struct's validity must be null too");
        assert_eq!(b.column_by_name("kind").unwrap().as_string::<i32>().value(0), "gap");

        let w = Window::new(datetime!(2026-11-26 10:00 UTC), datetime!(2026-11-26 10:05 UTC)).unwrap();
        let mut a = Aggregate::new(AggregateKind::Bin, AnalyticId::new("bins").unwrap(), w, "u4pru");
        a.version = 3;
        a.count = 12;
        a.geometry = Some(Geometry::new_point([10.0, 63.0]));
        let r = Row::parse(ArchiveKind::Aggregates, 1, 5, &serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(r.time, w.start);
        let b = to_batch(ArchiveKind::Aggregates, &[r]).unwrap();
        assert_eq!(b.schema(), schema(ArchiveKind::Aggregates));
        assert_eq!(
            b.column_by_name("version").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0),
            3
        );
    }

    #[test]
    fn payloads_of_another_kind_or_garbage_are_malformed() {
        let o = serde_json::to_vec(&observation(1)).unwrap();
        assert!(matches!(Row::parse(ArchiveKind::Events, 0, 0, &o), Err(RowError::Malformed { .. })));
        assert!(matches!(Row::parse(ArchiveKind::Observations, 0, 0, b"\xff{"), Err(RowError::Malformed { .. })));
        let r = Row::parse(ArchiveKind::Observations, 0, 0, &o).unwrap();
        assert!(to_batch(ArchiveKind::Events, &[r]).is_err());
    }
}
