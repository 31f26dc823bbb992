//! Events: something that happened to a track (entered a fence, stopped, went silent), as a
//! GeoJSON Feature on `<tenant>.events`.

use geojson::Geometry;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ModelError;
use crate::feature::{FeatureDe, clash_error, clash_ser_error, reserved_clash, serialize_feature};
use crate::idhash::IdHasher;
use crate::ids::{AnalyticId, FeedId, FenceId, RecordId, TrackId};
use crate::rfc3339;
use crate::wgs84::check_geometry;
use crate::window::{Window, check_time};

named_enum! {
    /// What happened. Geofence kinds follow the usual semantics: `enter`/`exit` on a transition,
    /// `inside`/`outside` on every observation while in that state, `cross` when a segment
    /// passes through a fence without an observation inside it.
    EventKind, "event kind",
    "enter, exit, inside, outside, cross, dwell, gap, resumed, stop, moving, jump, near" {
        /// The track moved into a fence.
        Enter => "enter",
        /// The track moved out of a fence.
        Exit => "exit",
        /// The track is inside a fence (reported per observation).
        Inside => "inside",
        /// The track is outside a fence (reported per observation).
        Outside => "outside",
        /// The track passed through a fence between two observations.
        Cross => "cross",
        /// The track stayed inside a fence longer than the configured time.
        Dwell => "dwell",
        /// The track sent nothing for longer than the configured time.
        Gap => "gap",
        /// The track reported again after a gap.
        Resumed => "resumed",
        /// The track stopped moving.
        Stop => "stop",
        /// The track started moving.
        Moving => "moving",
        /// The track's position jumped further than physically plausible.
        Jump => "jump",
        /// The track came within the configured distance of a fence or another track.
        Near => "near",
    }
}

/// Which fence, in which version, an event refers to. The version matters: an event produced
/// against an older fence geometry must not be confused with one against the current geometry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceRef {
    /// The fence.
    pub id: FenceId,
    /// The fence spec version the analytic evaluated.
    pub version: u64,
}

/// An event, the record on `<tenant>.events`.
///
/// On the wire: `{"type":"Feature","id":..,"geometry":..|null,"properties":{"kind":..,
/// "analytic":..,"time":..,"feed":..,"track":..,"fence":{"id":..,"version":..},
/// "window":{"start":..,"end":..},"observation":..,<attributes>}}`; absent optional fields are
/// omitted.
///
/// The id hashes analytic, kind, feed, track, fence id and version, window and event time, so the
/// processor re-emitting an event after a restart produces the same id (and the sink writes it
/// once), while any change to those fields is a different event. The feed is included (beyond
/// the track) because two feeds may use the same track ids. The geometry, the triggering
/// observation and the attributes are payload, not identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Deterministic id, see the type documentation.
    pub id: RecordId,
    /// Where it happened (usually the triggering position); null for non-spatial events.
    pub geometry: Option<Geometry>,
    /// What happened.
    pub kind: EventKind,
    /// The analytic that produced it.
    pub analytic: AnalyticId,
    /// Event time: when it happened (not when it was computed).
    pub time: OffsetDateTime,
    /// The feed of the track, if the event concerns one feed.
    pub feed: Option<FeedId>,
    /// The track, if the event concerns one.
    pub track: Option<TrackId>,
    /// The fence, for geofence events.
    pub fence: Option<FenceRef>,
    /// The window, for windowed analytics.
    pub window: Option<Window>,
    /// The observation that triggered the event, if one did (a gap is triggered by silence).
    pub observation: Option<RecordId>,
    /// Analytic-specific extras (dwell seconds, distance, speed, ...).
    pub attributes: Map<String, Value>,
}

/// Builds an [`Event`]; [`EventBuilder::build`] computes the id.
#[derive(Debug, Clone)]
#[must_use = "call build() to get the event"]
pub struct EventBuilder(Event);

impl EventBuilder {
    /// Sets the position.
    pub fn geometry(mut self, g: Geometry) -> Self {
        self.0.geometry = Some(g);
        self
    }
    /// Sets the feed.
    pub fn feed(mut self, feed: FeedId) -> Self {
        self.0.feed = Some(feed);
        self
    }
    /// Sets the track.
    pub fn track(mut self, track: TrackId) -> Self {
        self.0.track = Some(track);
        self
    }
    /// Sets the fence and its version.
    pub fn fence(mut self, id: FenceId, version: u64) -> Self {
        self.0.fence = Some(FenceRef { id, version });
        self
    }
    /// Sets the window.
    pub fn window(mut self, w: Window) -> Self {
        self.0.window = Some(w);
        self
    }
    /// Sets the triggering observation.
    pub fn observation(mut self, id: RecordId) -> Self {
        self.0.observation = Some(id);
        self
    }
    /// Adds one attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.attributes.insert(name.into(), value.into());
        self
    }
    /// Replaces all attributes.
    pub fn attributes(mut self, attributes: Map<String, Value>) -> Self {
        self.0.attributes = attributes;
        self
    }
    /// Computes the id and returns the event. Does not validate; call [`Event::validate`].
    pub fn build(mut self) -> Event {
        self.0.refresh_id();
        self.0
    }
}

impl Event {
    /// Property names the record itself uses; attributes must not use them.
    pub const RESERVED_PROPERTIES: &'static [&'static str] =
        &["kind", "analytic", "time", "feed", "track", "fence", "window", "observation"];

    /// Starts an event with its required fields; the time is converted to UTC.
    pub fn builder(analytic: AnalyticId, kind: EventKind, time: OffsetDateTime) -> EventBuilder {
        EventBuilder(Event {
            id: RecordId::from_bytes([0; 16]),
            geometry: None,
            kind,
            analytic,
            time: rfc3339::to_utc(time),
            feed: None,
            track: None,
            fence: None,
            window: None,
            observation: None,
            attributes: Map::new(),
        })
    }

    /// The id this event's identifying fields hash to.
    pub fn compute_id(&self) -> RecordId {
        let mut h = IdHasher::new("geostream.event.v1");
        h.str(self.analytic.as_str());
        h.str(self.kind.as_str());
        h.opt_str(self.feed.as_ref().map(FeedId::as_str));
        h.opt_str(self.track.as_ref().map(TrackId::as_str));
        h.present(self.fence.is_some());
        if let Some(f) = &self.fence {
            h.str(f.id.as_str());
            h.u64(f.version);
        }
        h.present(self.window.is_some());
        if let Some(w) = &self.window {
            h.time(w.start);
            h.time(w.end);
        }
        h.time(self.time);
        h.finish()
    }

    /// Recomputes `id` after identifying fields were changed.
    pub fn refresh_id(&mut self) {
        self.id = self.compute_id();
    }

    /// Checks geometry, times, window, attribute names and that `id` matches the content.
    pub fn validate(&self) -> Result<(), ModelError> {
        let subject = || format!("{} event {} of analytic {:?}", self.kind, self.id, self.analytic.as_str());
        if let Some(g) = &self.geometry {
            check_geometry(g).map_err(|p| p.into_error(subject()))?;
        }
        check_time(&subject(), "time", self.time)?;
        if let Some(w) = &self.window {
            w.check(&subject())?;
        }
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_error(subject(), key, Self::RESERVED_PROPERTIES));
        }
        let computed = self.compute_id();
        if computed != self.id {
            return Err(ModelError::IdMismatch {
                subject: subject(),
                stored: self.id.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct PropsRef<'a> {
    kind: EventKind,
    analytic: &'a AnalyticId,
    #[serde(with = "rfc3339")]
    time: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<&'a FeedId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<&'a TrackId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: Option<&'a FenceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<&'a Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observation: Option<&'a RecordId>,
    #[serde(flatten)]
    attributes: &'a Map<String, Value>,
}

#[derive(Deserialize)]
struct Props {
    kind: EventKind,
    analytic: AnalyticId,
    #[serde(with = "rfc3339")]
    time: OffsetDateTime,
    #[serde(default)]
    feed: Option<FeedId>,
    #[serde(default)]
    track: Option<TrackId>,
    #[serde(default)]
    fence: Option<FenceRef>,
    #[serde(default)]
    window: Option<Window>,
    #[serde(default)]
    observation: Option<RecordId>,
    #[serde(flatten)]
    attributes: Map<String, Value>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(key) = reserved_clash(&self.attributes, Self::RESERVED_PROPERTIES) {
            return Err(clash_ser_error(key));
        }
        let props = PropsRef {
            kind: self.kind,
            analytic: &self.analytic,
            time: self.time,
            feed: self.feed.as_ref(),
            track: self.track.as_ref(),
            fence: self.fence.as_ref(),
            window: self.window.as_ref(),
            observation: self.observation.as_ref(),
            attributes: &self.attributes,
        };
        serialize_feature(s, &self.id, &self.geometry, &props)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = FeatureDe::<Option<Geometry>, Props>::deserialize(d)?;
        let p = f.properties;
        Ok(Event {
            id: f.id,
            geometry: f.geometry,
            kind: p.kind,
            analytic: p.analytic,
            time: p.time,
            feed: p.feed,
            track: p.track,
            fence: p.fence,
            window: p.window,
            observation: p.observation,
            attributes: p.attributes,
        })
    }
}
