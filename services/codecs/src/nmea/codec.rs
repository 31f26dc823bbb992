//! [`Codec`] for NMEA 0183 GPS: sentences of one fix epoch merged into one observation.

use geostream_model::geojson::Geometry;
use geostream_model::time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use geostream_model::{FeedId, Observation, ReasonCode, TrackId};
use serde_json::{Map, Value};

use super::sentence::{Fix, Kind, LatLon, Line, NANOS_PER_DAY, NmeaError, frame, parse_fix};
use crate::codec::{Codec, Context, Framing, Outcome, Rejection, Skip, located, merge_attributes};
use crate::doc_common::reason_for;

/// Knots to metres per second (1852 m / 3600 s).
pub const KNOTS_TO_MPS: f64 = 1852.0 / 3600.0;

const HALF_DAY: u64 = NANOS_PER_DAY / 2;

/// Options of the NMEA codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NmeaOptions {
    /// Accept sentences without a `*hh` checksum (some loggers strip it). Off by default: such
    /// sentences are rejected with reason `checksum`.
    pub allow_missing_checksum: bool,
}

/// One fix epoch being assembled: the merged fields of the sentences sharing a UTC time of day.
#[derive(Debug, Clone)]
struct Epoch {
    time: u64,
    date: Option<(Date, &'static str)>,
    pos: Option<LatLon>,
    talker: [u8; 2],
    speed_kn: Option<f64>,
    course_deg: Option<f64>,
    alt_m: Option<f64>,
    geoid_sep_m: Option<f64>,
    hdop: Option<f64>,
    satellites: Option<u32>,
    quality: Option<u8>,
    mode: Option<u8>,
    sentences: Vec<&'static str>,
    feed: FeedId,
    track: Option<TrackId>,
    received: OffsetDateTime,
    location: String,
    source_attributes: Map<String, Value>,
    raw: Vec<u8>,
}

impl Epoch {
    fn merge(&mut self, kind: Kind, fix: &Fix, talker: [u8; 2], raw: &[u8]) {
        if self.pos.is_none() && fix.pos.is_some() {
            self.pos = fix.pos;
            self.talker = talker;
        }
        // RMC's speed and course win over VTG's; otherwise the first one seen.
        if kind == Kind::Rmc {
            self.speed_kn = fix.speed_kn.or(self.speed_kn);
            self.course_deg = fix.course_deg.or(self.course_deg);
        } else {
            self.speed_kn = self.speed_kn.or(fix.speed_kn);
            self.course_deg = self.course_deg.or(fix.course_deg);
        }
        self.alt_m = self.alt_m.or(fix.alt_m);
        self.geoid_sep_m = self.geoid_sep_m.or(fix.geoid_sep_m);
        self.hdop = self.hdop.or(fix.hdop);
        self.satellites = self.satellites.or(fix.satellites);
        self.quality = self.quality.or(fix.quality);
        self.mode = self.mode.or(fix.mode);
        if let Some(d) = fix.date {
            self.date = self.date.or(Some((d, if kind == Kind::Zda { "zda" } else { "rmc" })));
        }
        if !self.sentences.contains(&kind.as_str()) {
            self.sentences.push(kind.as_str());
        }
        if !self.raw.is_empty() {
            self.raw.push(b'\n');
        }
        if self.raw.len() < 4096 {
            self.raw.extend_from_slice(raw);
        }
    }
}

/// NMEA 0183 GPS sentences (GGA, RMC, GLL, VTG, GNS, ZDA from any talker) to observations, one per
/// fix epoch.
///
/// # Outcomes
///
/// Every line yields exactly one outcome, and every completed fix epoch yields one more:
/// - a position sentence with a valid fix (GGA quality > 0, RMC/GLL status `A`, GNS mode not all
///   `N`) or a VTG with data is merged into the current epoch: `Skipped(Fragment)`;
/// - the epoch's observation is emitted when a sentence with a different UTC time arrives, or at
///   [`Codec::finish`]; an epoch that fails validation is rejected then (`null_island`,
///   `invalid_time`, `invalid_coordinates`) with the epoch's sentences as raw bytes;
/// - no-fix sentences, ZDA, GSA, GSV, any other talker sentence, `$P...` proprietary and `!`
///   (AIS) sentences: `Skipped(NotAPosition)`; `#` comments: `Skipped(Comment)`; blank lines:
///   `Skipped(Blank)`;
/// - checksum mismatch or missing checksum: `Rejected(checksum)`; anything else broken:
///   `Rejected(malformed)` or `Rejected(invalid_coordinates)`.
///
/// # Epochs, dates and tracks
///
/// A receiver reports one fix as several sentences with the same UTC time of day. VTG carries no
/// time: it joins the epoch in progress when that has no speed or course yet, else it is held
/// for the next epoch (receivers that send VTG before RMC/GGA) and dropped if a no-fix sentence
/// comes first; RMC's speed and course win over VTG's.
/// The date comes from an RMC or ZDA of the same epoch; otherwise the last RMC/ZDA date is carried
/// forward, moving to the next day when the time of day falls by more than 12 hours (midnight).
/// Before any date is known, the date is taken from `ctx.received` (the UTC date nearest to the
/// received time, i.e. within ±12 h of it), marked `date_source: "received"`.
///
/// The track id is `ctx.source_attributes["device"]` when present (a string or number), else the
/// feed id: a GPS feed is usually one receiver.
///
/// Attributes: `talker`, `sentences` (e.g. `"RMC,GGA"`), `date_source` (`rmc`, `zda`, `carried`,
/// `received`) and where present `speed_mps` (knots × 1852/3600, 6 decimals), `course_deg`,
/// `alt_m` (above mean sea level; the geometry stays 2D), `geoid_sep_m`, `hdop`, `satellites`,
/// `fix_quality` (GGA), `faa_mode`; plus the context's source attributes. Implausible speeds are
/// not filtered here (motion analytics flag jumps).
#[derive(Debug)]
pub struct NmeaCodec {
    opts: NmeaOptions,
    epoch: Option<Epoch>,
    /// Last known date and the time of day it applied to.
    last_date: Option<(Date, u64)>,
    /// A VTG that arrived when the epoch in progress already had speed and course: it belongs to
    /// the next epoch (receivers that send VTG before RMC/GGA).
    pending_vtg: Option<(Fix, [u8; 2], Vec<u8>)>,
}

impl Default for NmeaCodec {
    fn default() -> Self {
        Self::new(NmeaOptions::default())
    }
}

impl NmeaCodec {
    /// A codec with the given options.
    pub fn new(opts: NmeaOptions) -> Self {
        Self { opts, epoch: None, last_date: None, pending_vtg: None }
    }

    fn close(&mut self, out: &mut dyn FnMut(Outcome)) {
        if let Some(e) = self.epoch.take() {
            out(self.emit(e));
        }
    }

    /// The date of epoch `e`, updating the carried date.
    fn epoch_date(&mut self, e: &Epoch) -> (Date, &'static str) {
        if let Some((d, src)) = e.date {
            self.last_date = Some((d, e.time));
            return (d, src);
        }
        let (base, base_tod, src) = match self.last_date {
            Some((d, t)) => (d, t, "carried"),
            None => {
                let r = e.received.to_offset(geostream_model::time::UtcOffset::UTC);
                (r.date(), u64::from(r.time().nanosecond()) + tod_secs(r.time()), "received")
            }
        };
        let d = if e.time + HALF_DAY < base_tod {
            base.next_day().unwrap_or(base)
        } else if e.time > base_tod + HALF_DAY {
            base.previous_day().unwrap_or(base)
        } else {
            base
        };
        if src == "carried" {
            self.last_date = Some((d, e.time));
        }
        (d, src)
    }

    fn emit(&mut self, e: Epoch) -> Outcome {
        let (date, date_source) = self.epoch_date(&e);
        let reject = |reason: ReasonCode, detail: String| {
            Outcome::Rejected(Rejection { reason, detail: located(&e.location, detail), raw: e.raw.clone() })
        };
        let Some(pos) = e.pos else {
            // Cannot happen: epochs open only with a valid position or are filled by one.
            return reject(ReasonCode::InvalidCoordinates, "NMEA fix epoch without a position".to_owned());
        };
        if pos.lat == 0.0 && pos.lon == 0.0 {
            return reject(ReasonCode::NullIsland, "NMEA fix at exactly 0,0 (no real fix)".to_owned());
        }
        let time = nanos_to_time(e.time)
            .map(|t| PrimitiveDateTime::new(date, t).assume_utc())
            .ok_or(())
            .map_err(|()| reject(ReasonCode::InvalidTime, "NMEA time of day out of range".to_owned()));
        let time = match time {
            Ok(t) => t,
            Err(o) => return o,
        };
        let mut a = Map::new();
        a.insert("talker".to_owned(), String::from_utf8_lossy(&e.talker).into_owned().into());
        a.insert("sentences".to_owned(), e.sentences.join(",").into());
        a.insert("date_source".to_owned(), date_source.into());
        let mut num = |k: &str, v: Option<f64>| {
            if let Some(n) = v.and_then(serde_json::Number::from_f64) {
                a.insert(k.to_owned(), Value::Number(n));
            }
        };
        num("speed_mps", e.speed_kn.map(|k| r6(k * KNOTS_TO_MPS)));
        num("course_deg", e.course_deg);
        num("alt_m", e.alt_m);
        num("geoid_sep_m", e.geoid_sep_m);
        num("hdop", e.hdop);
        if let Some(s) = e.satellites {
            a.insert("satellites".to_owned(), s.into());
        }
        if let Some(q) = e.quality {
            a.insert("fix_quality".to_owned(), q.into());
        }
        if let Some(m) = e.mode.filter(u8::is_ascii_alphanumeric) {
            a.insert("faa_mode".to_owned(), char::from(m).to_string().into());
        }
        merge_attributes(&e.source_attributes, &mut a);
        let geom = Geometry::new_point([pos.lon, pos.lat]);
        match Observation::try_new(e.feed.clone(), e.track.clone(), time, e.received, geom, a) {
            Ok(o) => Outcome::Observation(Box::new(o)),
            Err(err) => reject(reason_for(&err), format!("NMEA fix invalid: {err}")),
        }
    }

    fn open(&mut self, time: u64, ctx: &Context) -> Epoch {
        Epoch {
            time,
            date: None,
            pos: None,
            talker: [b'-'; 2],
            speed_kn: None,
            course_deg: None,
            alt_m: None,
            geoid_sep_m: None,
            hdop: None,
            satellites: None,
            quality: None,
            mode: None,
            sentences: Vec::new(),
            feed: ctx.feed.clone(),
            track: track_of(ctx),
            received: ctx.received,
            location: ctx.location.clone(),
            source_attributes: ctx.source_attributes.clone(),
            raw: Vec::new(),
        }
    }
}

impl NmeaCodec {
    fn handle(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) -> Result<Outcome, NmeaError> {
        let frame = match frame(input, self.opts.allow_missing_checksum)? {
            Line::Blank => return Ok(Outcome::Skipped(Skip::Blank)),
            Line::Comment => return Ok(Outcome::Skipped(Skip::Comment)),
            Line::Other => return Ok(Outcome::Skipped(Skip::NotAPosition)),
            Line::Sentence(f) => f,
        };
        let Some(kind) = Kind::from_type(frame.kind) else { return Ok(Outcome::Skipped(Skip::NotAPosition)) };
        let fix = parse_fix(kind, frame.fields)?;
        // A new time of day ends the epoch in progress, whatever the sentence holds.
        if let (Some(t), Some(e)) = (fix.time, &self.epoch)
            && e.time != t
        {
            self.close(out);
        }
        if let (Some(d), Some(t)) = (fix.date, fix.time)
            && self.epoch.as_ref().is_none_or(|e| e.time != t)
        {
            // A date for a time with no epoch in progress (ZDA or a no-fix RMC): carry it.
            self.last_date = Some((d, t));
        }
        if kind == Kind::Zda {
            if let (Some(d), Some(e)) = (fix.date, self.epoch.as_mut()) {
                e.date = e.date.or(Some((d, "zda")));
            }
            return Ok(Outcome::Skipped(Skip::NotAPosition));
        }
        if kind == Kind::Vtg {
            if !fix.valid {
                return Ok(Outcome::Skipped(Skip::NotAPosition));
            }
            match &mut self.epoch {
                Some(e) if e.speed_kn.is_none() && e.course_deg.is_none() => e.merge(kind, &fix, frame.talker, input),
                _ => self.pending_vtg = Some((fix, frame.talker, input.to_vec())),
            }
            return Ok(Outcome::Skipped(Skip::Fragment));
        }
        if !fix.valid {
            if fix.time.is_some() {
                // A no-fix epoch: a VTG waiting for the next epoch belonged to this one.
                self.pending_vtg = None;
            }
            return Ok(Outcome::Skipped(Skip::NotAPosition));
        }
        match (&mut self.epoch, fix.time) {
            (Some(e), _) => e.merge(kind, &fix, frame.talker, input),
            (None, Some(t)) if fix.pos.is_some() => {
                let mut e = self.open(t, ctx);
                e.merge(kind, &fix, frame.talker, input);
                if let Some((v, talker, raw)) = self.pending_vtg.take() {
                    e.merge(Kind::Vtg, &v, talker, &raw);
                }
                self.epoch = Some(e);
            }
            // A position-less sentence with no epoch to join.
            (None, _) => return Ok(Outcome::Skipped(Skip::NotAPosition)),
        }
        Ok(Outcome::Skipped(Skip::Fragment))
    }
}

impl Codec for NmeaCodec {
    fn name(&self) -> &'static str {
        "nmea"
    }

    fn framing(&self) -> Framing {
        Framing::Lines
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let outcome = self.handle(input, ctx, out).unwrap_or_else(|e| {
            Outcome::Rejected(Rejection {
                reason: e.reason(),
                detail: located(&ctx.location, e.to_string()),
                raw: input.to_vec(),
            })
        });
        out(outcome);
    }

    fn finish(&mut self, _ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        self.close(out);
    }
}

fn track_of(ctx: &Context) -> Option<TrackId> {
    let device = match ctx.source_attributes.get("device") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    TrackId::new(device.unwrap_or_else(|| ctx.feed.as_str().to_owned())).ok()
}

fn tod_secs(t: Time) -> u64 {
    let (h, m, s) = t.as_hms();
    (u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(s)) * 1_000_000_000
}

fn nanos_to_time(n: u64) -> Option<Time> {
    if n >= NANOS_PER_DAY {
        return None;
    }
    let secs = n / 1_000_000_000;
    let nanos = u32::try_from(n % 1_000_000_000).ok()?;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    Time::from_hms_nano(u8::try_from(h).ok()?, u8::try_from(m).ok()?, u8::try_from(s).ok()?, nanos).ok()
}

/// Rounds to 6 decimals so unit conversions do not print as 0.0720000000001.
fn r6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
