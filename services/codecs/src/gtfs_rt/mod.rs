//! GTFS-realtime VehiclePositions: a protobuf `FeedMessage` (one HTTP body or file) to one
//! observation per vehicle with a position.
//!
//! The message types are generated at build time by prost from the official
//! `proto/gtfs-realtime.proto` (google/transit), compiled by the pure-Rust `protox` so no system
//! `protoc` is needed.
//!
//! Per entity:
//! - a `vehicle` with a `position` becomes an observation: track = `vehicle.vehicle.id`, else the
//!   vehicle label, else the entity id; time = `vehicle.timestamp`, else the header timestamp, else
//!   the context's received time; geometry = Point `[longitude, latitude]`; attributes `trip_id`,
//!   `route_id`, `direction_id`, `start_date`, `label`, `bearing_deg`, `speed_mps`, `odometer_m`,
//!   `current_status`, `stop_id`, `congestion_level`, `occupancy_status` (enums by their proto name);
//! - a `vehicle` without a position is rejected (`schema`), with the entity id in the detail;
//! - other entities (trip updates, alerts, shapes, stops) and deleted entities are skipped
//!   (`NotAPosition`).
//!
//! Bytes that are not a `FeedMessage` are one `malformed` rejection for the whole payload.

use geostream_model::ReasonCode;
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use prost::Message;
use serde_json::Map;

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::doc_common::{check_point, observation, put, put_f64, reject};

/// The generated GTFS-realtime protobuf types (package `transit_realtime`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/transit_realtime.rs"));
}

use proto::vehicle_position::{CongestionLevel, OccupancyStatus, VehicleStopStatus};

/// GTFS-realtime `FeedMessage` payloads to vehicle observations.
#[derive(Debug, Default, Clone)]
pub struct GtfsRtCodec;

impl GtfsRtCodec {
    /// A codec; it keeps no state between payloads.
    pub fn new() -> Self {
        Self
    }
}

impl Codec for GtfsRtCodec {
    fn name(&self) -> &'static str {
        "gtfs-rt"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let msg = match proto::FeedMessage::decode(input) {
            Ok(m) => m,
            Err(e) => {
                out(reject(ctx, ReasonCode::Malformed, format!("not a GTFS-realtime FeedMessage: {e}"), input));
                return;
            }
        };
        let header_time = msg.header.timestamp;
        for entity in &msg.entity {
            out(entity_outcome(entity, header_time, ctx));
        }
    }
}

fn unix_time(secs: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()
}

fn entity_outcome(entity: &proto::FeedEntity, header_time: Option<u64>, ctx: &Context) -> Outcome {
    let raw = || entity.encode_to_vec();
    let Some(vp) = entity.vehicle.as_ref().filter(|_| !entity.is_deleted.unwrap_or(false)) else {
        return Outcome::Skipped(Skip::NotAPosition);
    };
    let what = format!("entity {:?}", entity.id);
    let Some(pos) = vp.position.as_ref() else {
        return reject(ctx, ReasonCode::Schema, format!("{what}: vehicle without position"), &raw());
    };
    let (lon, lat) = (f64::from(pos.longitude), f64::from(pos.latitude));
    if let Err((reason, e)) = check_point(lon, lat) {
        return reject(ctx, reason, format!("{what}: {e}"), &raw());
    }
    let descriptor = vp.vehicle.as_ref();
    let non_empty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let track =
        descriptor.and_then(|d| non_empty(&d.id).or_else(|| non_empty(&d.label))).unwrap_or_else(|| entity.id.clone());
    let time = match vp.timestamp.or(header_time) {
        Some(t) => match unix_time(t) {
            Some(t) => t,
            None => return reject(ctx, ReasonCode::InvalidTime, format!("{what}: timestamp {t} out of range"), &raw()),
        },
        None => ctx.received,
    };

    let mut a = Map::new();
    if let Some(trip) = &vp.trip {
        put(&mut a, "trip_id", trip.trip_id.clone());
        put(&mut a, "route_id", trip.route_id.clone());
        put(&mut a, "direction_id", trip.direction_id);
        put(&mut a, "start_date", trip.start_date.clone());
    }
    put(&mut a, "label", descriptor.and_then(|d| d.label.clone()));
    put_f64(&mut a, "bearing_deg", pos.bearing.map(f64::from));
    put_f64(&mut a, "speed_mps", pos.speed.map(f64::from));
    put_f64(&mut a, "odometer_m", pos.odometer);
    put(
        &mut a,
        "current_status",
        vp.current_status.and_then(|v| VehicleStopStatus::try_from(v).ok()).map(|v| v.as_str_name()),
    );
    put(&mut a, "stop_id", vp.stop_id.clone());
    put(
        &mut a,
        "congestion_level",
        vp.congestion_level.and_then(|v| CongestionLevel::try_from(v).ok()).map(|v| v.as_str_name()),
    );
    put(
        &mut a,
        "occupancy_status",
        vp.occupancy_status.and_then(|v| OccupancyStatus::try_from(v).ok()).map(|v| v.as_str_name()),
    );
    observation(ctx, &what, &track, time, Geometry::new_point([lon, lat]), a, &raw())
}
