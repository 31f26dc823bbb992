//! Decoded AIS messages to geostream records: position reports become [`Observation`]s, static
//! reports stay typed ([`StaticReport`]) for a later track-enrichment stage.

use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::{Classify, ErrorClass, FeedId, ModelError, Observation, ReasonCode, TrackId};
use serde_json::{Map, Value};

use super::decoder::Decoded;
use super::message::{Header, Message, StaticDataPart};

/// Knots to metres per second.
pub const KNOTS_TO_MPS: f64 = 0.514_444;

/// A type 5 or 24 message kept typed, with its time and source, to enrich the track `mmsi`.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticReport {
    /// The vessel's MMSI (the track id as a number).
    pub mmsi: u32,
    /// Event time (tag block, trailing receive time, or the caller's received time).
    pub time: OffsetDateTime,
    /// Receiving station / tag block source, if any.
    pub source: Option<String>,
    /// The message ([`Message::StaticVoyage`] or [`Message::StaticDataReport`]).
    pub message: Message,
}

/// What a decoded message becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalised {
    /// A position report (types 1, 2, 3, 18, 19, 21, 27).
    Observation(Box<Observation>),
    /// Static and voyage data (types 5, 24).
    Static(Box<StaticReport>),
    /// A message that is neither (type 4 base station): nothing to emit.
    Ignored(Header),
}

/// Why a decoded message could not become a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NormaliseError {
    /// Longitude or latitude not available (181/91) or out of range.
    #[error("AIS type {} from mmsi {}: no usable position (lon {lon:?}, lat {lat:?})", header.msg_type, header.mmsi)]
    InvalidCoordinates {
        /// The message header.
        header: Header,
        /// Longitude as decoded (`None` = not available).
        lon: Option<f64>,
        /// Latitude as decoded.
        lat: Option<f64>,
    },
    /// The position is exactly (0, 0), a common sign of a missing fix.
    #[error("AIS type {} from mmsi {}: position is exactly 0,0 (no fix)", header.msg_type, header.mmsi)]
    NullIsland {
        /// The message header.
        header: Header,
    },
    /// The tag block / receive time is not a representable time.
    #[error("AIS receive time {ms} ms since the Unix epoch is not a representable time")]
    InvalidTime {
        /// The time as given.
        ms: i64,
    },
    /// The record failed the model's validation (e.g. the MMSI is not a valid track id).
    #[error("AIS record invalid: {0}")]
    Model(#[from] ModelError),
}

impl NormaliseError {
    /// The dead-letter reason code.
    pub fn reason(&self) -> ReasonCode {
        match self {
            NormaliseError::InvalidCoordinates { .. } => ReasonCode::InvalidCoordinates,
            NormaliseError::NullIsland { .. } => ReasonCode::NullIsland,
            NormaliseError::InvalidTime { .. } => ReasonCode::InvalidTime,
            NormaliseError::Model(_) => ReasonCode::Schema,
        }
    }
}

impl Classify for NormaliseError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

fn event_time(d: &Decoded<'_>, received: OffsetDateTime) -> Result<OffsetDateTime, NormaliseError> {
    match d.meta.time_ms() {
        Some(ms) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|_| NormaliseError::InvalidTime { ms }),
        None => Ok(received),
    }
}

/// Attributes collected as a list and turned into a map once ([`Attrs::into_map`]): building a
/// `BTreeMap` from a list sorts it and fills the nodes in one go, where inserting a dozen keys one
/// by one searches and shifts the node each time (most of the normalisation cost per message).
struct Attrs(Vec<(String, Value)>);

impl Attrs {
    /// The motion fields every position report carries, in SI units where they have one.
    #[allow(clippy::too_many_arguments)]
    fn motion(
        &mut self,
        class: &str,
        sog_knots: Option<f64>,
        cog_deg: Option<f64>,
        heading_deg: Option<u16>,
        accuracy: bool,
        raim: bool,
        second: u8,
    ) {
        self.put("class", class);
        self.opt_f("sog_mps", sog_knots.map(|k| r6(k * KNOTS_TO_MPS)));
        self.opt_f("cog_deg", cog_deg);
        self.opt_f("heading_deg", heading_deg.map(f64::from));
        self.put("accuracy", accuracy);
        self.put("raim", raim);
        // 60 and above mean "not available" or a positioning-system state, not a second.
        if second < 60 {
            self.put("second", second);
        }
    }

    fn new() -> Self {
        // A position report has up to 14 attributes.
        Attrs(Vec::with_capacity(16))
    }
    /// The map; a key put twice keeps its last value, as with `Map::insert`.
    fn into_map(self) -> Map<String, Value> {
        self.0.into_iter().collect()
    }
    fn put(&mut self, k: &str, v: impl Into<Value>) {
        self.0.push((k.to_owned(), v.into()));
    }
    fn opt_f(&mut self, k: &str, v: Option<f64>) {
        if let Some(v) = v.and_then(serde_json::Number::from_f64) {
            self.0.push((k.to_owned(), Value::Number(v)));
        }
    }
    fn text(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.put(k, v);
        }
    }
}

/// Rounds to 6 decimals so unit conversions do not print as 5.144440000000001.
fn r6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Turns a decoded message into a record of feed `feed`. The event time is the tag block time,
/// else the trailing receive time, else `received` (when geostream got the line).
///
/// Attributes: `mmsi`, `msg_type`, and where available `sog_mps` (knots × 0.514444), `cog_deg`,
/// `heading_deg`, `nav_status`, `rot`, `accuracy`, `raim`, `second`, `class` (`A`/`B`), `name`,
/// `ship_type`, `aid_type`, `virtual_aid`, `off_position`, `gnss`, `source`, `own_ship`. Values
/// the message marks as not available are omitted.
pub fn normalise(d: &Decoded<'_>, feed: &FeedId, received: OffsetDateTime) -> Result<Normalised, NormaliseError> {
    let h = d.message.header();
    let time = event_time(d, received)?;
    let mut a = Attrs::new();
    a.put("mmsi", h.mmsi);
    a.put("msg_type", h.msg_type);
    let (lon, lat) = match &d.message {
        Message::Position(m) => {
            a.motion("A", m.sog_knots, m.cog_deg, m.heading_deg, m.accuracy, m.raim, m.second);
            a.put("nav_status", m.nav_status);
            if let Some(rot) = m.rot {
                a.put("rot", rot);
            }
            (m.lon, m.lat)
        }
        Message::ClassB(m) => {
            a.motion("B", m.sog_knots, m.cog_deg, m.heading_deg, m.accuracy, m.raim, m.second);
            (m.lon, m.lat)
        }
        Message::ClassBExtended(m) => {
            a.motion("B", m.sog_knots, m.cog_deg, m.heading_deg, m.accuracy, m.raim, m.second);
            a.text("name", m.shipname.as_str());
            if m.shiptype != 0 {
                a.put("ship_type", m.shiptype);
            }
            (m.lon, m.lat)
        }
        Message::AidToNavigation(m) => {
            a.put("aid_type", m.aid_type);
            a.text("name", m.name.as_str());
            a.put("accuracy", m.accuracy);
            a.put("raim", m.raim);
            a.put("virtual_aid", m.virtual_aid);
            a.put("off_position", m.off_position);
            if m.second < 60 {
                a.put("second", m.second);
            }
            (m.lon, m.lat)
        }
        Message::LongRange(m) => {
            a.put("class", "A");
            a.opt_f("sog_mps", m.sog_knots.map(|k| r6(k * KNOTS_TO_MPS)));
            a.opt_f("cog_deg", m.cog_deg);
            a.put("nav_status", m.nav_status);
            a.put("accuracy", m.accuracy);
            a.put("raim", m.raim);
            a.put("gnss", m.gnss);
            (m.lon, m.lat)
        }
        Message::StaticVoyage(_) | Message::StaticDataReport(_) => {
            return Ok(Normalised::Static(Box::new(StaticReport {
                mmsi: h.mmsi,
                time,
                source: d.meta.source.map(str::to_owned),
                message: d.message.clone(),
            })));
        }
        Message::BaseStation(_) => return Ok(Normalised::Ignored(h)),
    };
    let (Some(lon), Some(lat)) = (lon, lat) else {
        return Err(NormaliseError::InvalidCoordinates { header: h, lon, lat });
    };
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(NormaliseError::InvalidCoordinates { header: h, lon: Some(lon), lat: Some(lat) });
    }
    if lon == 0.0 && lat == 0.0 {
        return Err(NormaliseError::NullIsland { header: h });
    }
    if let Some(src) = d.meta.source {
        a.put("source", src);
    }
    if d.own_ship {
        a.put("own_ship", true);
    }
    let track = TrackId::new(h.mmsi.to_string())?;
    let obs =
        Observation::try_new(feed.clone(), Some(track), time, received, Geometry::new_point([lon, lat]), a.into_map())?;
    Ok(Normalised::Observation(Box::new(obs)))
}

/// Names of the static-data fields of a type 5 or 24 message as attributes (for enrichment):
/// `name`, `callsign`, `imo`, `ship_type`, `destination`, `draught_m`, `to_bow`, ... Empty and
/// not-available values are omitted.
pub fn static_attributes(message: &Message) -> Map<String, Value> {
    let mut a = Attrs::new();
    match message {
        Message::StaticVoyage(m) => {
            a.text("name", m.shipname.as_str());
            a.text("callsign", m.callsign.as_str());
            if m.imo != 0 {
                a.put("imo", m.imo);
            }
            if m.shiptype != 0 {
                a.put("ship_type", m.shiptype);
            }
            a.text("destination", m.destination.as_str());
            if m.draught_m > 0.0 {
                a.opt_f("draught_m", Some(m.draught_m));
            }
            put_dims(&mut a, &m.dimensions);
        }
        Message::StaticDataReport(m) => match &m.part {
            StaticDataPart::A { shipname } => a.text("name", shipname.as_str()),
            StaticDataPart::B { shiptype, callsign, dimensions, mothership_mmsi, .. } => {
                if *shiptype != 0 {
                    a.put("ship_type", *shiptype);
                }
                a.text("callsign", callsign.as_str());
                put_dims(&mut a, dimensions);
                if let Some(mm) = mothership_mmsi {
                    a.put("mothership_mmsi", *mm);
                }
            }
        },
        _ => {}
    }
    a.into_map()
}

fn put_dims(a: &mut Attrs, d: &super::message::Dimensions) {
    if d.to_bow + d.to_stern > 0 {
        a.put("to_bow", d.to_bow);
        a.put("to_stern", d.to_stern);
    }
    if u16::from(d.to_port) + u16::from(d.to_starboard) > 0 {
        a.put("to_port", d.to_port);
        a.put("to_starboard", d.to_starboard);
    }
}
