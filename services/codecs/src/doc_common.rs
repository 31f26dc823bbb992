//! Helpers shared by the document codecs (GTFS-realtime, GPX, CAP): building a validated
//! observation from parts and turning each failure into the right dead-letter reason.

use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::{Observation, ReasonCode, TrackId};
use serde_json::{Map, Value};

use crate::codec::{Context, Outcome, Rejection};

/// A rejection with the context's location in front of `detail`.
pub(crate) fn reject(ctx: &Context, reason: ReasonCode, detail: String, raw: &[u8]) -> Outcome {
    let detail = if ctx.location.is_empty() { detail } else { format!("{}: {detail}", ctx.location) };
    Outcome::Rejected(Rejection { reason, detail, raw: raw.to_vec() })
}

/// Checks one longitude/latitude pair: finite and in range.
pub(crate) fn check_lon_lat(lon: f64, lat: f64) -> Result<(), String> {
    if !lon.is_finite() || !lat.is_finite() || !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(format!("coordinates out of range or not finite: lon {lon}, lat {lat}"));
    }
    Ok(())
}

/// Builds and validates an observation, merging the context's source attributes (record
/// attributes win). `what` names the record in error details (e.g. `entity 12`).
pub(crate) fn observation(
    ctx: &Context,
    what: &str,
    track: &str,
    time: OffsetDateTime,
    geometry: Geometry,
    mut attributes: Map<String, Value>,
    raw: &[u8],
) -> Outcome {
    let track = match TrackId::new(track) {
        Ok(t) => t,
        Err(e) => return reject(ctx, ReasonCode::Schema, format!("{what}: track id: {e}"), raw),
    };
    for (k, v) in &ctx.source_attributes {
        attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for key in Observation::RESERVED_PROPERTIES {
        attributes.remove(*key);
    }
    match Observation::try_new(ctx.feed.clone(), Some(track), time, ctx.received, geometry, attributes) {
        Ok(o) => Outcome::Observation(Box::new(o)),
        Err(e) => {
            let msg = e.to_string();
            let reason = if msg.contains("time") { ReasonCode::InvalidTime } else { ReasonCode::InvalidCoordinates };
            reject(ctx, reason, format!("{what}: {msg}"), raw)
        }
    }
}

/// Puts `value` under `key` when it is `Some`.
pub(crate) fn put(attrs: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        attrs.insert(key.to_owned(), v.into());
    }
}

/// A float attribute, skipped when not finite (JSON has no NaN).
pub(crate) fn put_f64(attrs: &mut Map<String, Value>, key: &str, value: Option<f64>) {
    if let Some(n) = value.and_then(serde_json::Number::from_f64) {
        attrs.insert(key.to_owned(), Value::Number(n));
    }
}
