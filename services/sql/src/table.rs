//! The `observations` table: one Arrow batch per window.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use geostream_model::geojson::GeometryValue;
use geostream_model::time::OffsetDateTime;
use geostream_model::{Observation, Window};

/// The table name queries read.
pub const TABLE: &str = "observations";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The schema of the `observations` table (see the crate documentation for the meaning).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("feed", DataType::Utf8, false),
        Field::new("track", DataType::Utf8, true),
        Field::new("time", ts(), false),
        Field::new("received", ts(), false),
        Field::new("lon", DataType::Float64, true),
        Field::new("lat", DataType::Float64, true),
        Field::new("geometry", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, false),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
    ]))
}

/// Why an observation cannot be a row: its id and the problem.
pub(crate) type RowError = (String, String);

fn nanos(o: &Observation, field: &str, t: OffsetDateTime) -> Result<i64, RowError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        (o.id.to_string(), format!("{field} {t} is outside the years 1677 to 2262 that a nanosecond timestamp holds"))
    })
}

fn window_nanos(t: OffsetDateTime) -> Result<i64, RowError> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| (String::new(), format!("window bound {t} is outside the years 1677 to 2262")))
}

/// The window's observations as one batch, in the order given.
pub(crate) fn batch(window: &Window, observations: &[Observation]) -> Result<RecordBatch, RowError> {
    let n = observations.len();
    let mut ids = Vec::with_capacity(n);
    let mut feeds = Vec::with_capacity(n);
    let mut tracks = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut receiveds = Vec::with_capacity(n);
    let mut lons = Vec::with_capacity(n);
    let mut lats = Vec::with_capacity(n);
    let mut geometries = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    for o in observations {
        ids.push(o.id.to_string());
        feeds.push(o.feed.as_str());
        tracks.push(o.track.as_ref().map(|t| t.as_str()));
        times.push(nanos(o, "time", o.time)?);
        receiveds.push(nanos(o, "received", o.received)?);
        let (lon, lat) = match &o.geometry.value {
            GeometryValue::Point { coordinates } if coordinates.len() >= 2 => {
                (Some(coordinates[0]), Some(coordinates[1]))
            }
            _ => (None, None),
        };
        lons.push(lon);
        lats.push(lat);
        geometries.push(
            serde_json::to_string(&o.geometry)
                .map_err(|e| (o.id.to_string(), format!("geometry does not serialize: {e}")))?,
        );
        attributes.push(
            serde_json::to_string(&o.attributes)
                .map_err(|e| (o.id.to_string(), format!("attributes do not serialize: {e}")))?,
        );
    }
    let (start, end) = (window_nanos(window.start)?, window_nanos(window.end)?);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(feeds)),
        Arc::new(StringArray::from(tracks)),
        Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from(receiveds).with_timezone("UTC")),
        Arc::new(Float64Array::from(lons)),
        Arc::new(Float64Array::from(lats)),
        Arc::new(StringArray::from(geometries)),
        Arc::new(StringArray::from(attributes)),
        Arc::new(TimestampNanosecondArray::from(vec![start; n]).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from(vec![end; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| (String::new(), format!("cannot build the batch (a bug): {e}")))
}
