//! Helpers shared by the codecs (built for GTFS-realtime, GPX and CAP; AIS, NMEA, Esri JSON and CoT
//! use them too): building a validated observation from parts, the coordinate and ring rules, and
//! turning each failure into the right dead-letter reason.

use geostream_model::geojson::{Geometry, Position};
use geostream_model::time::OffsetDateTime;
use geostream_model::{ModelError, Observation, ReasonCode, TrackId};
use serde_json::{Map, Value};

use crate::codec::{Context, Outcome, Rejection, located};

/// A rejection with the context's location in front of `detail`.
pub(crate) fn reject(ctx: &Context, reason: ReasonCode, detail: String, raw: &[u8]) -> Outcome {
    Outcome::Rejected(Rejection { reason, detail: located(&ctx.location, detail), raw: raw.to_vec() })
}

/// Checks one longitude/latitude pair: finite and in range.
pub(crate) fn check_lon_lat(lon: f64, lat: f64) -> Result<(), String> {
    if !lon.is_finite() || !lat.is_finite() || !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(format!("coordinates out of range or not finite: lon {lon}, lat {lat}"));
    }
    Ok(())
}

/// Checks a point: finite and in range (`invalid_coordinates`), and not exactly (0, 0)
/// (`null_island`: receivers without a fix report it).
pub(crate) fn check_point(lon: f64, lat: f64) -> Result<(), (ReasonCode, String)> {
    check_lon_lat(lon, lat).map_err(|e| (ReasonCode::InvalidCoordinates, e))?;
    if lon == 0.0 && lat == 0.0 {
        return Err((ReasonCode::NullIsland, "position is exactly (0, 0): no fix".to_owned()));
    }
    Ok(())
}

/// Checks a polygon ring: at least 4 positions and closed (the first and last positions have the
/// same longitude and latitude; a third coordinate may differ).
pub(crate) fn check_ring(ring: &[Position]) -> Result<(), String> {
    if ring.len() < 4 {
        return Err(format!("has {} positions, at least 4 needed", ring.len()));
    }
    let xy = |p: &Position| p.as_slice().get(..2).map(<[f64]>::to_vec);
    if ring.first().map(xy) != ring.last().map(xy) {
        return Err("is not closed (first and last positions differ)".to_owned());
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
    for key in Observation::RESERVED_PROPERTIES {
        attributes.remove(*key);
    }
    ctx.merge_source_attributes(&mut attributes);
    match Observation::try_new(ctx.feed.clone(), Some(track), time, ctx.received, geometry, attributes) {
        Ok(o) => Outcome::Observation(Box::new(o)),
        Err(e) => reject(ctx, reason_for(&e), format!("{what}: {e}"), raw),
    }
}

/// The dead-letter reason for an observation the model refused to build.
pub(crate) fn reason_for(e: &ModelError) -> ReasonCode {
    match e {
        ModelError::InvalidGeometry { .. } => ReasonCode::InvalidCoordinates,
        ModelError::InvalidField { field, .. } if field == "time" || field == "received" => ReasonCode::InvalidTime,
        _ => ReasonCode::Schema,
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
