//! GPX 1.0 / 1.1 documents: every track point, route point and waypoint with a position becomes an
//! observation.
//!
//! Parsed with the georust `gpx` crate (it reads both versions and checks coordinate ranges); its
//! result is checked again here. The crate drops `<extensions>` (Garmin heart rate, cadence), so they
//! are not attributes.
//!
//! - track: `<name>#<index>` where name is the `<trk>`/`<rte>` name, else the file's
//!   `<metadata><name>`, else `gpx`; index is `<track index>` for track points, `rte<route index>` for
//!   route points and `wpt` for waypoints (all of a file's waypoints share one track);
//! - time: the point's `<time>`. A point without one is rejected (`invalid_time`) unless
//!   [`GpxOptions::allow_missing_time`] is set: then its time is the context's received time plus
//!   `seq` milliseconds, with the attribute `time_source: "received+seq_ms"`. `seq` is the point's
//!   index within its track or route (waypoints: within the file) and every point carries it. The
//!   offset matters: a planned route (the Strava sample: 113 points, only 81 distinct positions, as it
//!   goes out and back) would otherwise give repeated positions the same time and so the same
//!   observation id, and dedup would drop them; with it the route replays whole and in order;
//! - geometry: Point `[lon, lat]` (elevation goes to the `ele_m` attribute, not a third coordinate);
//! - attributes: `kind` (`trkpt`, `rtept`, `wpt`), `seq`, `segment` (track points), `ele_m`,
//!   `name`, `speed_mps`, `hdop`, `sat`, `sym`.
//!
//! A document the crate cannot read is one `malformed` rejection.

use geostream_model::ReasonCode;
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use serde_json::{Map, Value};

use crate::codec::{Codec, Context, Framing, Outcome};
use crate::doc_common::{check_lon_lat, observation, put, put_f64, reject};

/// Options for [`GpxCodec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpxOptions {
    /// Accept points without `<time>`, timing them at the context's received time plus their `seq`
    /// in milliseconds (see the module documentation).
    pub allow_missing_time: bool,
}

/// GPX documents to point observations.
#[derive(Debug, Default, Clone)]
pub struct GpxCodec {
    opts: GpxOptions,
}

impl GpxCodec {
    /// A codec with the given options.
    pub fn new(opts: GpxOptions) -> Self {
        Self { opts }
    }
}

impl Codec for GpxCodec {
    fn name(&self) -> &'static str {
        "gpx"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let doc = match gpx::read(input) {
            Ok(d) => d,
            Err(e) => return out(reject(ctx, ReasonCode::Malformed, format!("not a GPX document: {e}"), input)),
        };
        let file_name = doc.metadata.as_ref().and_then(|m| m.name.as_deref()).filter(|n| !n.trim().is_empty());
        let name_or = |n: Option<&str>| -> String {
            n.filter(|n| !n.trim().is_empty()).or(file_name).unwrap_or("gpx").trim().to_owned()
        };
        for (i, trk) in doc.tracks.iter().enumerate() {
            let track = format!("{}#{i}", name_or(trk.name.as_deref()));
            let mut seq = 0u64;
            for (s, segment) in trk.segments.iter().enumerate() {
                for p in &segment.points {
                    out(self.point(ctx, &track, "trkpt", seq, Some(s), p, input));
                    seq += 1;
                }
            }
        }
        for (i, rte) in doc.routes.iter().enumerate() {
            let track = format!("{}#rte{i}", name_or(rte.name.as_deref()));
            for (seq, p) in (0u64..).zip(&rte.points) {
                out(self.point(ctx, &track, "rtept", seq, None, p, input));
            }
        }
        let track = format!("{}#wpt", name_or(None));
        for (seq, p) in (0u64..).zip(&doc.waypoints) {
            out(self.point(ctx, &track, "wpt", seq, None, p, input));
        }
    }
}

impl GpxCodec {
    #[allow(clippy::too_many_arguments)]
    fn point(
        &self,
        ctx: &Context,
        track: &str,
        kind: &str,
        seq: u64,
        segment: Option<usize>,
        p: &gpx::Waypoint,
        raw: &[u8],
    ) -> Outcome {
        let what = format!("{kind} {seq} of {track:?}");
        let pt = p.point();
        let (lon, lat) = (pt.x(), pt.y());
        if let Err(e) = check_lon_lat(lon, lat) {
            return reject(ctx, ReasonCode::InvalidCoordinates, format!("{what}: {e}"), raw);
        }
        let mut a = Map::new();
        a.insert("kind".to_owned(), Value::from(kind));
        a.insert("seq".to_owned(), Value::from(seq));
        put(&mut a, "segment", segment);
        let time = match p.time {
            Some(t) => OffsetDateTime::from(t),
            None if self.opts.allow_missing_time => {
                let offset = i64::try_from(seq).unwrap_or(i64::MAX);
                let Some(t) = ctx.received.checked_add(geostream_model::time::Duration::milliseconds(offset)) else {
                    return reject(
                        ctx,
                        ReasonCode::InvalidTime,
                        format!("{what}: received time + seq out of range"),
                        raw,
                    );
                };
                a.insert("time_source".to_owned(), Value::from("received+seq_ms"));
                t
            }
            None => return reject(ctx, ReasonCode::InvalidTime, format!("{what}: no <time>"), raw),
        };
        put_f64(&mut a, "ele_m", p.elevation);
        put(&mut a, "name", p.name.clone());
        put_f64(&mut a, "speed_mps", p.speed);
        put_f64(&mut a, "hdop", p.hdop);
        put(&mut a, "sat", p.sat);
        put(&mut a, "sym", p.symbol.clone());
        observation(ctx, &what, track, time, Geometry::new_point([lon, lat]), a, raw)
    }
}
