//! Observations: one position report of one thing at one time, as a GeoJSON Feature.

use std::borrow::Cow;

use geojson::Geometry;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ModelError;
use crate::feature::{FeatureDe, clash_error, clash_ser_error, reserved_clash, serialize_feature};
use crate::idhash::IdHasher;
use crate::ids::{FeedId, RecordId, TrackId};
use crate::rfc3339;
use crate::wgs84::check_geometry;
use crate::window::check_time;

/// A normalised observation, the record on `<tenant>.observations`.
///
/// On the wire it is a GeoJSON Feature:
/// `{"type":"Feature","id":"<32 hex>","geometry":{...},"properties":{"feed":..,"track":..,
/// "time":..,"received":..,<attributes>}}`, readable by any GeoJSON or Kafka tool.
///
/// # The id
///
/// The id hashes what identifies the *reading*: feed, track, event time (nanoseconds since the
/// epoch) and the exact geometry (type, structure, coordinate bits). It deliberately leaves out
/// `received` and the attributes: a reading delivered twice (a source retrying, ingest restarting
/// before its ack, a file replayed) gets a later `received` and possibly enriched attributes, but
/// must get the same id so the sink's idempotent `create` and the processor's dedup treat it as
/// the same record. Changing this scheme changes every id ever written: it is a data contract.
///
/// Fields are public for reading and building; after changing an identifying field call
/// [`Observation::refresh_id`], and [`Observation::validate`] catches a stale id.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Deterministic id, see the type documentation.
    pub id: RecordId,
    /// Where, in WGS84 longitude/latitude (optionally altitude in metres).
    pub geometry: Geometry,
    /// The feed that produced it.
    pub feed: FeedId,
    /// The tracked object, if the feed has one (some feeds report anonymous readings).
    pub track: Option<TrackId>,
    /// Event time: when the reading was taken, as reported by the source.
    pub time: OffsetDateTime,
    /// When geostream received it; diagnostic only, not part of the id.
    pub received: OffsetDateTime,
    /// The feed's mapped attributes (speed, heading, name, ...), flattened into `properties`.
    pub attributes: Map<String, Value>,
}

impl Observation {
    /// Property names the record itself uses; attributes must not use them.
    pub const RESERVED_PROPERTIES: &'static [&'static str] = &["feed", "track", "time", "received"];

    /// Most attributes of one observation (top-level keys). Real feeds map a few dozen; a record
    /// with hundreds is a mapping that copies a whole document, which would bloat every index.
    pub const MAX_ATTRIBUTES: usize = 256;

    /// Builds an observation and computes its id. Times are converted to UTC. Does not validate;
    /// see [`Observation::try_new`].
    pub fn new(
        feed: FeedId,
        track: Option<TrackId>,
        time: OffsetDateTime,
        received: OffsetDateTime,
        geometry: Geometry,
        attributes: Map<String, Value>,
    ) -> Self {
        let mut o = Observation {
            id: RecordId::from_bytes([0; 16]),
            geometry,
            feed,
            track,
            time: rfc3339::to_utc(time),
            received: rfc3339::to_utc(received),
            attributes,
        };
        o.refresh_id();
        o
    }

    /// [`Observation::new`] followed by [`Observation::validate`].
    pub fn try_new(
        feed: FeedId,
        track: Option<TrackId>,
        time: OffsetDateTime,
        received: OffsetDateTime,
        geometry: Geometry,
        attributes: Map<String, Value>,
    ) -> Result<Self, ModelError> {
        let o = Self::new(feed, track, time, received, geometry, attributes);
        // `new` just computed the id from this content, so only the content needs checking.
        o.validate_content()?;
        Ok(o)
    }

    /// The id this observation's identifying fields hash to.
    pub fn compute_id(&self) -> RecordId {
        let mut h = IdHasher::new("geostream.observation.v1");
        h.str(self.feed.as_str());
        h.opt_str(self.track.as_ref().map(TrackId::as_str));
        h.time(self.time);
        h.geometry(&self.geometry);
        h.finish()
    }

    /// Recomputes `id` after identifying fields were changed.
    pub fn refresh_id(&mut self) {
        self.id = self.compute_id();
    }

    /// The Kafka key: the track id, so one track's observations stay ordered in one partition;
    /// untracked observations are keyed by their id, which spreads them evenly.
    pub fn kafka_key(&self) -> Cow<'_, str> {
        match &self.track {
            Some(t) => Cow::Borrowed(t.as_str()),
            None => Cow::Owned(self.id.to_string()),
        }
    }

    /// Checks coordinates (finite, lon in [-180, 180], lat in [-90, 90], no empty parts), times
    /// (expressible in RFC 3339), attribute names, and that `id` matches the content.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.validate_content()?;
        let computed = self.compute_id();
        if computed != self.id {
            return Err(ModelError::IdMismatch {
                subject: format!("observation {} of feed {:?}", self.id, self.feed.as_str()),
                stored: self.id.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }

    /// [`Observation::validate`] without the id check. The subject string for messages is only
    /// built when something is wrong (this runs once per decoded record).
    fn validate_content(&self) -> Result<(), ModelError> {
        let subject = || format!("observation {} of feed {:?}", self.id, self.feed.as_str());
        check_geometry(&self.geometry).map_err(|p| p.into_error(subject()))?;
        for (field, t) in [("time", self.time), ("received", self.received)] {
            if !rfc3339::is_representable(t) {
                check_time(&subject(), field, t)?;
            }
        }
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_error(subject(), key, Self::RESERVED_PROPERTIES));
        }
        if self.attributes.len() > Self::MAX_ATTRIBUTES {
            return Err(ModelError::InvalidField {
                subject: subject(),
                field: "properties".into(),
                problem: format!(
                    "has {} attributes, the limit is {}; map only the fields you need (each becomes a \
                     field of the search engine's mapping)",
                    self.attributes.len(),
                    Self::MAX_ATTRIBUTES
                ),
            });
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct PropsRef<'a> {
    feed: &'a FeedId,
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<&'a TrackId>,
    #[serde(with = "rfc3339")]
    time: OffsetDateTime,
    #[serde(with = "rfc3339")]
    received: OffsetDateTime,
    #[serde(flatten)]
    attributes: &'a Map<String, Value>,
}

#[derive(Deserialize)]
struct Props {
    feed: FeedId,
    #[serde(default)]
    track: Option<TrackId>,
    #[serde(with = "rfc3339")]
    time: OffsetDateTime,
    #[serde(with = "rfc3339")]
    received: OffsetDateTime,
    #[serde(flatten)]
    attributes: Map<String, Value>,
}

impl Serialize for Observation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_ser_error(key));
        }
        let props = PropsRef {
            feed: &self.feed,
            track: self.track.as_ref(),
            time: self.time,
            received: self.received,
            attributes: &self.attributes,
        };
        serialize_feature(s, &self.id, &self.geometry, &props)
    }
}

impl<'de> Deserialize<'de> for Observation {
    /// Reads the Feature as written; the id is taken as is (check it with `validate`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FeatureDe::<Geometry, Props>::deserialize(d)?;
        Ok(Observation {
            id: f.id,
            geometry: f.geometry,
            feed: f.properties.feed,
            track: f.properties.track,
            time: f.properties.time,
            received: f.properties.received,
            attributes: f.properties.attributes,
        })
    }
}
