//! The pure part of ingest: bytes in, Kafka-ready records out. No async, no I/O.
//!
//! A [`FeedPipeline`] owns one feed's codec and turns each payload or line into [`Envelope`]s
//! collected in a [`Batch`]: observations for `<tenant>.observations` keyed by track, dead letters
//! for `<tenant>.deadletter` keyed by feed. Sources decode a batch, hand it to the durable writer,
//! and acknowledge their input only once that returned. The envelope has its own compact binary
//! form because it is what the disk spool stores.

use std::collections::HashSet;
use std::fmt::Write as _;

use geostream_codecs::registry::{self, BuildError};
use geostream_codecs::{Codec, Context, Framing, Outcome, Rejection, Summary};
use geostream_model::time::OffsetDateTime;
use geostream_model::{DeadLetter, FeedId, FeedSpec, ReasonCode, Source, Stage, TrackId};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Kafka's default `message.max.bytes` is 1 MiB; a record larger than this would be refused by the
/// broker after sitting in the spool, so it is dead-lettered up front.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// Which topic an envelope goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `<tenant>.observations`.
    Observations,
    /// `<tenant>.deadletter`.
    DeadLetter,
}

impl Route {
    const fn tag(self) -> u8 {
        match self {
            Route::Observations => b'o',
            Route::DeadLetter => b'd',
        }
    }
}

/// One record ready for Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Destination topic.
    pub route: Route,
    /// Kafka key: the track id (observations) or the feed id (dead letters).
    pub key: Vec<u8>,
    /// JSON value.
    pub value: Vec<u8>,
}

/// A spooled envelope did not parse; only possible if the spool format changed under it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spooled envelope is malformed: {0}")]
pub struct EnvelopeError(&'static str);

impl Envelope {
    /// The spool form: route tag, key length (u32 LE), key, value. The spool frames and checksums
    /// the whole thing, so no further integrity data is needed here.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.key.len() + self.value.len());
        out.push(self.route.tag());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        out
    }

    /// Parses [`Envelope::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (&tag, rest) = bytes.split_first().ok_or(EnvelopeError("empty"))?;
        let route = match tag {
            b'o' => Route::Observations,
            b'd' => Route::DeadLetter,
            _ => return Err(EnvelopeError("unknown route tag")),
        };
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(EnvelopeError("short key length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(EnvelopeError("key longer than record"));
        }
        let (key, value) = rest.split_at(len);
        Ok(Envelope { route, key: key.to_vec(), value: value.to_vec() })
    }
}

/// The records decoded from some input, with their tallies.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records in input order.
    pub envelopes: Vec<Envelope>,
    /// Event time of each envelope (none for dead letters), for replay pacing.
    pub event_times: Vec<Option<OffsetDateTime>>,
    /// Identity of each envelope (observation id, or a hash of a rejection), for de-duplication.
    pub fingerprints: Vec<[u8; 16]>,
    /// Accepted / rejected / skipped counts.
    pub summary: Summary,
    /// Input units (payloads or lines) decoded.
    pub inputs: u64,
    /// Input bytes decoded.
    pub input_bytes: u64,
}

impl Batch {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// Number of records to write.
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    /// Keeps only the envelopes `keep` says yes to (by fingerprint), fixing up the tallies'
    /// accepted count; used by pollers to drop items unchanged since the previous poll.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8; 16]) -> bool) -> usize {
        let mut dropped = 0;
        let mut i = 0;
        while i < self.envelopes.len() {
            if keep(&self.fingerprints[i]) {
                i += 1;
            } else {
                if self.envelopes[i].route == Route::Observations {
                    self.summary.accepted = self.summary.accepted.saturating_sub(1);
                }
                self.envelopes.remove(i);
                self.event_times.remove(i);
                self.fingerprints.remove(i);
                dropped += 1;
            }
        }
        dropped
    }

    /// Appends another batch.
    pub fn extend(&mut self, other: Batch) {
        self.envelopes.extend(other.envelopes);
        self.event_times.extend(other.event_times);
        self.fingerprints.extend(other.fingerprints);
        self.summary.accepted += other.summary.accepted;
        for (k, v) in other.summary.rejected {
            *self.summary.rejected.entry(k).or_default() += v;
        }
        for (k, v) in other.summary.skipped {
            *self.summary.skipped.entry(k).or_default() += v;
        }
        self.summary.tracks.extend(other.summary.tracks);
        self.inputs += other.inputs;
        self.input_bytes += other.input_bytes;
    }
}

/// Moves event times onto the wall clock for one pass of a repeated file: an event at `origin`
/// happens at `anchor`, later ones follow at `speed` times the recorded pace, earlier ones precede
/// it the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retime {
    /// The event time that lands on `anchor`. `None` until the first observation passes, which
    /// then becomes the origin (line files are read in time order, so their first observation is
    /// their earliest without reading ahead).
    pub origin: Option<OffsetDateTime>,
    /// When the pass's first event happens.
    pub anchor: OffsetDateTime,
    /// Replay speed factor (`original` = 1); positive and finite.
    pub speed: f64,
}

impl Retime {
    /// `anchor + (time - origin) / speed`, taking `time` as the origin if there is none yet.
    pub fn apply(&mut self, time: OffsetDateTime) -> OffsetDateTime {
        let origin = *self.origin.get_or_insert(time);
        let gap = time - origin;
        let scaled = if self.speed == 1.0 {
            // Exact at the recorded pace, whatever the span.
            gap
        } else {
            // Nanoseconds through f64: deterministic for the same inputs (ids depend on it);
            // `as` saturates absurd gaps instead of panicking.
            let nanos = (gap.whole_nanoseconds() as f64 / self.speed).round();
            geostream_model::time::Duration::nanoseconds(nanos as i64)
        };
        // A result beyond the calendar keeps the anchor: such a record cannot be placed anyway.
        self.anchor.checked_add(scaled).unwrap_or(self.anchor)
    }
}

/// One feed's decoder: codec state plus the rules that turn outcomes into envelopes.
pub struct FeedPipeline {
    feed: FeedId,
    codec: Box<dyn Codec>,
    track_from: Option<String>,
    max_record_bytes: usize,
    line_ctx: Context,
    retime: Option<Retime>,
}

impl std::fmt::Debug for FeedPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedPipeline").field("feed", &self.feed).field("codec", &self.codec.name()).finish()
    }
}

/// Everything registration can check about a feed without running it: the spec's own rules and
/// that its codec builds (mapping paths, units, CRS, time formats, format options). Registering
/// through the CLI, the API or a SensorFeed all call this, so a bad mapping is refused where it
/// is written instead of failing later when ingest starts the feed.
pub fn check_feed(spec: &FeedSpec) -> Result<(), String> {
    spec.validate().map_err(|e| e.to_string())?;
    registry::build(spec.format, &spec.mapping, &spec.options)
        .map(drop)
        .map_err(|e| format!("feed {:?}: {e}", spec.id.as_str()))
}

impl FeedPipeline {
    /// Builds the codec the spec asks for.
    pub fn new(spec: &FeedSpec) -> Result<Self, BuildError> {
        let codec = registry::build(spec.format, &spec.mapping, &spec.options)?;
        let track_from = match &spec.source {
            Source::Mqtt { track_from_topic, .. } => track_from_topic.clone(),
            _ => None,
        };
        Ok(Self {
            feed: spec.id.clone(),
            codec,
            track_from,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            line_ctx: Context::new(spec.id.clone(), OffsetDateTime::UNIX_EPOCH),
            retime: None,
        })
    }

    /// Rebases the event time of every observation decoded from now on (and recomputes its id,
    /// which includes the time); `None` keeps times as decoded.
    pub fn set_retime(&mut self, retime: Option<Retime>) {
        self.retime = retime;
    }

    /// The rebasing in force, with the origin it took from the first observation if it had none.
    pub fn retime(&self) -> Option<Retime> {
        self.retime
    }

    /// Lowers the per-record size limit (tests; brokers with a smaller `message.max.bytes`).
    #[must_use]
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// The feed.
    pub fn feed(&self) -> &FeedId {
        &self.feed
    }

    /// How the codec wants its input cut.
    pub fn framing(&self) -> Framing {
        self.codec.framing()
    }

    /// A context for input received now at `location`.
    pub fn context(&self, received: OffsetDateTime, location: impl Into<String>) -> Context {
        let mut ctx = Context::new(self.feed.clone(), received);
        ctx.location = location.into();
        ctx
    }

    /// Decodes one framed unit: a line for line codecs, a whole payload for document codecs.
    pub fn decode_unit(&mut self, input: &[u8], ctx: &Context, batch: &mut Batch) {
        batch.inputs += 1;
        batch.input_bytes += input.len() as u64;
        let Self { codec, feed, track_from, max_record_bytes, retime, .. } = self;
        let mut emit =
            |o: Outcome| push(feed, track_from.as_deref(), *max_record_bytes, retime.as_mut(), o, ctx, batch);
        codec.decode(input, ctx, &mut emit);
    }

    /// Decodes a whole payload (an HTTP body, an MQTT or Kafka message), cutting it into lines
    /// first when the codec reads lines. Locations become `<ctx.location> line N`.
    pub fn decode_payload(&mut self, payload: &[u8], ctx: &Context, batch: &mut Batch) {
        match self.codec.framing() {
            Framing::Document => self.decode_unit(payload, ctx, batch),
            Framing::Lines => {
                let body = payload.strip_suffix(b"\n").unwrap_or(payload);
                if body.is_empty() {
                    return;
                }
                let mut line_ctx = std::mem::replace(&mut self.line_ctx, ctx.clone());
                line_ctx.clone_from(ctx);
                for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    line_ctx.location.clear();
                    if ctx.location.is_empty() {
                        let _ = write!(line_ctx.location, "line {}", i + 1);
                    } else {
                        let _ = write!(line_ctx.location, "{} line {}", ctx.location, i + 1);
                    }
                    self.decode_unit(line, &line_ctx, batch);
                }
                self.line_ctx = line_ctx;
            }
        }
    }

    /// Counts `raw` as one input unit and dead-letters it without decoding, for input the source
    /// itself refuses before the codec sees it (a line over the line limit, a file too large to
    /// read as one document). `detail` says why; the location is put in front of it.
    pub fn reject_unit(&mut self, raw: &[u8], reason: ReasonCode, detail: &str, ctx: &Context, batch: &mut Batch) {
        batch.inputs += 1;
        batch.input_bytes += raw.len() as u64;
        let detail = if ctx.location.is_empty() { detail.to_owned() } else { format!("{}: {detail}", ctx.location) };
        push_rejection(&self.feed, Rejection { reason, detail, raw: raw.to_vec() }, ctx, batch);
    }

    /// End of a stream (connection closed, file done): flushes what the codec still holds, such as
    /// an incomplete multi-part AIS message.
    pub fn finish(&mut self, ctx: &Context, batch: &mut Batch) {
        let Self { codec, feed, track_from, max_record_bytes, retime, .. } = self;
        let mut emit =
            |o: Outcome| push(feed, track_from.as_deref(), *max_record_bytes, retime.as_mut(), o, ctx, batch);
        codec.finish(ctx, &mut emit);
    }
}

fn push(
    feed: &FeedId,
    track_from: Option<&str>,
    max_record_bytes: usize,
    retime: Option<&mut Retime>,
    outcome: Outcome,
    ctx: &Context,
    batch: &mut Batch,
) {
    match outcome {
        Outcome::Observation(mut obs) => {
            if obs.track.is_none()
                && let Some(track) = track_from.and_then(|name| ctx.source_attributes.get(name)).and_then(track_value)
            {
                obs.track = Some(track);
                obs.refresh_id();
            }
            if let Some(retime) = retime {
                obs.time = retime.apply(obs.time);
                obs.refresh_id();
                // A paced record is decoded ahead of its (rebased) time and sent when that time
                // comes, so that is when it was received; `received` before `time` would read as
                // a record from the future, and feed status would show the decode as last seen.
                obs.received = obs.received.max(obs.time);
            }
            let value = match serde_json::to_vec(&obs) {
                Ok(v) => v,
                Err(e) => {
                    let rejection = Rejection {
                        reason: ReasonCode::Schema,
                        detail: format!("observation could not be serialised: {e}"),
                        raw: Vec::new(),
                    };
                    return push_rejection(feed, rejection, ctx, batch);
                }
            };
            if value.len() > max_record_bytes {
                let rejection = Rejection {
                    reason: ReasonCode::TooLarge,
                    detail: format!(
                        "observation is {} bytes as JSON, over the {max_record_bytes}-byte record limit",
                        value.len()
                    ),
                    raw: value,
                };
                return push_rejection(feed, rejection, ctx, batch);
            }
            batch.summary.accepted += 1;
            if let Some(t) = &obs.track {
                batch.summary.tracks.insert(t.as_str().to_owned());
            }
            batch.fingerprints.push(*obs.id.as_bytes());
            batch.event_times.push(Some(obs.time));
            batch.envelopes.push(Envelope {
                route: Route::Observations,
                key: obs.kafka_key().as_bytes().to_vec(),
                value,
            });
        }
        Outcome::Rejected(r) => push_rejection(feed, r, ctx, batch),
        Outcome::Skipped(s) => batch.summary.add(&Outcome::Skipped(s)),
    }
}

fn push_rejection(feed: &FeedId, r: Rejection, ctx: &Context, batch: &mut Batch) {
    let mut h = Sha256::new();
    h.update(r.reason.as_str().as_bytes());
    h.update([0]);
    h.update(&r.raw);
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&h.finalize()[..16]);
    let reason = r.reason;
    let mut dl = DeadLetter::new(r.raw, Stage::Ingest, reason, r.detail, ctx.received).with_feed(feed.as_str());
    if !ctx.location.is_empty() {
        dl = dl.with_source(ctx.location.clone());
    }
    // A dead letter is a plain struct of strings and bytes; serialising it cannot fail, but if it
    // ever did the record would be lost, so fall back to a minimal hand-built object.
    let value = serde_json::to_vec(&dl).unwrap_or_else(|_| {
        format!("{{\"stage\":\"ingest\",\"reason\":\"{}\",\"detail\":\"unserialisable dead letter\"}}", reason.as_str())
            .into_bytes()
    });
    batch.summary.add(&Outcome::Rejected(Rejection { reason, detail: String::new(), raw: Vec::new() }));
    batch.fingerprints.push(fp);
    batch.event_times.push(None);
    batch.envelopes.push(Envelope { route: Route::DeadLetter, key: feed.as_str().as_bytes().to_vec(), value });
}

fn track_value(v: &Value) -> Option<TrackId> {
    match v {
        Value::String(s) => TrackId::new(s.as_str()).ok(),
        Value::Number(n) => TrackId::new(n.to_string()).ok(),
        _ => None,
    }
}

/// Remembers what the previous poll of a feed returned, so an unchanged item is forwarded once.
///
/// Only the previous answer is kept (not every id ever seen): memory stays bounded by one response,
/// and an item that disappears and comes back is new again, which is what a feed means by it.
#[derive(Debug, Default)]
pub struct Deduper {
    previous: HashSet<[u8; 16]>,
}

impl Deduper {
    /// Drops from `batch` every record the previous answer also had, remembers this answer, and
    /// returns how many were dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> usize {
        let current: HashSet<[u8; 16]> = batch.fingerprints.iter().copied().collect();
        let previous = std::mem::take(&mut self.previous);
        let dropped = batch.retain(|fp| !previous.contains(fp));
        self.previous = current;
        dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::Duration;
    use geostream_model::{Format, Observation};

    fn spec(format: Format, source: Source) -> FeedSpec {
        let mut s: FeedSpec = serde_json::from_value(serde_json::json!({
            "id": "f1", "type": "t", "source": {"kind": "http_push"}, "format": "geojson",
            "mapping": {"track": "properties.track", "time": "properties.time"}
        }))
        .unwrap();
        s.format = format;
        s.source = source;
        s
    }

    fn push_spec() -> Source {
        Source::HttpPush { token_ref: None, max_body_bytes: None }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_714_600_000).unwrap()
    }

    const POINT: &str = r#"{"type":"Feature","id":"a","geometry":{"type":"Point","coordinates":[10.5,50.25]},"properties":{"time":"2024-05-01T12:00:00Z","track":"v1"}}"#;

    #[test]
    fn registration_checks_what_the_codec_needs_beyond_the_spec_rules() {
        let good = spec(Format::Geojson, push_spec());
        check_feed(&good).unwrap();
        // A unit the spec's own rules accept (a non-empty name) but no codec knows.
        let mut bad = good.clone();
        bad.mapping.attributes.insert("speed".into(), "properties.speed".into());
        bad.mapping.units.insert("speed".into(), "furlongs_per_fortnight".into());
        bad.validate().unwrap();
        let m = check_feed(&bad).unwrap_err();
        assert!(m.contains("feed \"f1\"") && m.contains("furlongs_per_fortnight"), "{m}");
        // The spec's own rules still come first.
        let mut bad = good;
        bad.mapping.units.insert(String::new(), "knots".into());
        assert!(check_feed(&bad).unwrap_err().contains("mapping.units"));
    }

    #[test]
    fn envelope_round_trips_and_refuses_garbage() {
        let e = Envelope { route: Route::DeadLetter, key: b"k".to_vec(), value: b"{}".to_vec() };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        let empty_key = Envelope { route: Route::Observations, key: vec![], value: b"v".to_vec() };
        assert_eq!(Envelope::decode(&empty_key.encode()).unwrap(), empty_key);
        assert!(Envelope::decode(b"").is_err());
        assert!(Envelope::decode(b"x\0\0\0\0").is_err());
        assert!(Envelope::decode(b"o\x09\0\0\0abc").is_err());
        assert!(Envelope::decode(b"o\x01\0").is_err());
    }

    #[test]
    fn observations_are_keyed_by_track_and_rejections_become_dead_letters() {
        let mut p = FeedPipeline::new(&spec(Format::Geojson, push_spec())).unwrap();
        let mut batch = Batch::default();
        let ctx = p.context(now(), "http push");
        p.decode_payload(POINT.as_bytes(), &ctx, &mut batch);
        p.decode_payload(b"{not json", &ctx, &mut batch);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.summary.accepted, 1);
        assert_eq!(batch.summary.rejected_total(), 1);
        let obs = &batch.envelopes[0];
        assert_eq!(obs.route, Route::Observations);
        assert_eq!(obs.key, b"v1");
        let parsed: Observation = serde_json::from_slice(&obs.value).unwrap();
        assert_eq!(parsed.feed.as_str(), "f1");
        let dl = &batch.envelopes[1];
        assert_eq!(dl.route, Route::DeadLetter);
        assert_eq!(dl.key, b"f1");
        let dead: DeadLetter = serde_json::from_slice(&dl.value).unwrap();
        assert_eq!(dead.raw, b"{not json");
        assert_eq!(dead.stage, Stage::Ingest);
        assert_eq!(dead.reason, ReasonCode::Malformed);
        assert_eq!(dead.source.as_deref(), Some("http push"));
        assert_eq!(batch.event_times[0].map(|t| t.unix_timestamp()), Some(1_714_564_800));
        assert_eq!(batch.event_times[1], None);
    }

    #[test]
    fn line_codecs_get_payloads_cut_into_numbered_lines() {
        let mut nmea = spec(Format::Nmea, push_spec());
        nmea.mapping = Default::default();
        let mut p = FeedPipeline::new(&nmea).unwrap();
        let mut batch = Batch::default();
        let ctx = p.context(now(), "mqtt gps/1");
        let payload = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n$GPRMC,bad*00\n";
        p.decode_payload(payload, &ctx, &mut batch);
        // NMEA assembles a fix across sentences and emits it when the stream ends or moves on.
        p.finish(&ctx, &mut batch);
        assert_eq!(batch.inputs, 2);
        assert_eq!(batch.summary.accepted, 1);
        let dl = batch.envelopes.iter().find(|e| e.route == Route::DeadLetter).unwrap();
        let dead: DeadLetter = serde_json::from_slice(&dl.value).unwrap();
        assert_eq!(dead.source.as_deref(), Some("mqtt gps/1 line 2"));
        assert_eq!(dead.raw, b"$GPRMC,bad*00");
    }

    #[test]
    fn refused_units_become_located_dead_letters_and_count_as_input() {
        let mut p = FeedPipeline::new(&spec(Format::Nmea, push_spec())).unwrap();
        let mut batch = Batch::default();
        let ctx = p.context(now(), "tcp 10.0.0.1:5000 line 7");
        p.reject_unit(b"$GPGGA,xxxx", ReasonCode::TooLarge, "line is too long", &ctx, &mut batch);
        assert_eq!((batch.inputs, batch.input_bytes, batch.len()), (1, 11, 1));
        assert_eq!(batch.summary.rejected.get("too_large"), Some(&1));
        assert_eq!(batch.event_times, [None]);
        let dead: DeadLetter = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
        assert_eq!(dead.reason, ReasonCode::TooLarge);
        assert_eq!(dead.raw, b"$GPGGA,xxxx");
        assert_eq!(dead.detail, "tcp 10.0.0.1:5000 line 7: line is too long");
        assert_eq!(dead.source.as_deref(), Some("tcp 10.0.0.1:5000 line 7"));
    }

    #[test]
    fn oversized_observations_are_dead_lettered_not_dropped() {
        let mut p = FeedPipeline::new(&spec(Format::Geojson, push_spec())).unwrap().with_max_record_bytes(50);
        let mut batch = Batch::default();
        p.decode_payload(POINT.as_bytes(), &p.context(now(), ""), &mut batch);
        assert_eq!(batch.summary.accepted, 0);
        assert_eq!(batch.summary.rejected.get("too_large"), Some(&1));
        let dead: DeadLetter = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
        let obs: Observation = serde_json::from_slice(&dead.raw).unwrap();
        assert_eq!(obs.track.unwrap().as_str(), "v1");
    }

    #[test]
    fn topic_capture_becomes_the_track_only_when_the_record_has_none() {
        let source = Source::Mqtt {
            url: "mqtt://b:1883".into(),
            topics: vec!["fleet/+/pos".into()],
            qos: 1,
            protocol: Default::default(),
            client_id: None,
            username: None,
            password_ref: None,
            ca_file: None,
            topic_template: Some("fleet/{device}/pos".into()),
            track_from_topic: Some("device".into()),
        };
        let mut untracked = spec(Format::Geojson, source.clone());
        untracked.mapping.track = None;
        let mut p = FeedPipeline::new(&untracked).unwrap();
        let mut ctx = p.context(now(), "mqtt fleet/d7/pos");
        ctx.source_attributes.insert("device".into(), Value::String("d7".into()));
        let mut batch = Batch::default();
        p.decode_payload(POINT.as_bytes(), &ctx, &mut batch);
        let first: Observation = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
        assert_eq!(first.track.as_ref().unwrap().as_str(), "d7");
        assert_eq!(first.id, first.compute_id(), "id recomputed after the track was set");
        assert_eq!(batch.envelopes[0].key, b"d7");
        // AIS brings its own track (the MMSI), which the topic must not override.
        let mut ais = spec(Format::Ais, source);
        ais.mapping = Default::default();
        let mut p = FeedPipeline::new(&ais).unwrap();
        let mut batch = Batch::default();
        p.decode_payload(b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A\n", &ctx, &mut batch);
        let own: Observation = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
        assert_eq!(own.track.unwrap().as_str(), "371798000");
    }

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn retime_maps_event_times_onto_the_anchor_at_the_replay_speed() {
        let anchor = now();
        let mut r = Retime { origin: Some(at(0)), anchor, speed: 1.0 };
        assert_eq!(r.apply(at(0)), anchor, "the origin lands on the anchor");
        assert_eq!(r.apply(at(90)), anchor + Duration::seconds(90));
        assert_eq!(r.apply(at(-30)), anchor - Duration::seconds(30), "before the origin: before the anchor");
        let nanos = at(0) + Duration::nanoseconds(123_456_789);
        assert_eq!(r.apply(nanos), anchor + Duration::nanoseconds(123_456_789), "exact at speed 1");
        let mut fast = Retime { origin: Some(at(0)), anchor, speed: 60.0 };
        assert_eq!(fast.apply(at(120)), anchor + Duration::seconds(2));
        assert_eq!(fast.apply(at(-60)), anchor - Duration::seconds(1));
        assert_eq!(fast.apply(at(1)), anchor + Duration::nanoseconds(16_666_667), "rounded to the nanosecond");
        let mut slow = Retime { origin: Some(at(0)), anchor, speed: 0.5 };
        assert_eq!(slow.apply(at(3)), anchor + Duration::seconds(6));
        let mut lazy = Retime { origin: None, anchor, speed: 2.0 };
        assert_eq!(lazy.apply(at(50)), anchor, "the first time seen becomes the origin");
        assert_eq!(lazy.origin, Some(at(50)));
        assert_eq!(lazy.apply(at(54)), anchor + Duration::seconds(2));
        assert_eq!(lazy.apply(at(40)), anchor - Duration::seconds(5));
        let mut absurd = Retime { origin: Some(OffsetDateTime::UNIX_EPOCH), anchor, speed: 1e-300 };
        let _ = absurd.apply(at(0));
    }

    #[test]
    fn retimed_observations_get_new_ids_stable_for_the_same_pass() {
        let decode = |retime: Option<Retime>| {
            let mut p = FeedPipeline::new(&spec(Format::Geojson, push_spec())).unwrap();
            p.set_retime(retime);
            let mut batch = Batch::default();
            p.decode_payload(POINT.as_bytes(), &p.context(now(), "file"), &mut batch);
            let obs: Observation = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
            assert_eq!(batch.event_times[0], Some(obs.time), "pacing sees the rebased time");
            assert_eq!(batch.fingerprints[0], *obs.id.as_bytes());
            (obs, p.retime())
        };
        let (plain, none) = decode(None);
        assert_eq!(none, None);
        assert_eq!(plain.time.unix_timestamp(), 1_714_564_800);
        let pass = |anchor| Some(Retime { origin: None, anchor, speed: 1.0 });
        let (first, used) = decode(pass(at(0)));
        assert_eq!(first.time, at(0), "the first observation is the origin");
        assert_eq!(used.unwrap().origin, Some(plain.time), "the origin it took is kept for checkpoints");
        assert_eq!(first.id, first.compute_id(), "id recomputed after the time changed");
        assert_ne!(first.id, plain.id);
        let (again, _) = decode(pass(at(0)));
        assert_eq!(again.id, first.id, "the same pass gives the same ids (restart mid-pass)");
        let (next, _) = decode(pass(at(10)));
        assert_ne!(next.id, first.id, "the next pass has its own ids");
        assert_eq!(next.time, at(10));
        // Decoded now, due in an hour: received when it is due, not before its own time.
        let later = now() + Duration::hours(1);
        let (ahead, _) = decode(pass(later));
        assert_eq!((ahead.time, ahead.received), (later, later));
        assert_eq!(ahead.id, ahead.compute_id(), "received is not part of the id");
    }

    #[test]
    fn deduper_forwards_only_what_the_previous_answer_lacked() {
        let mut p = FeedPipeline::new(&spec(Format::Geojson, push_spec())).unwrap();
        let other = POINT.replace("10.5", "11.5");
        let decode = |p: &mut FeedPipeline, docs: &[&str]| {
            let mut b = Batch::default();
            for d in docs {
                let ctx = p.context(now(), "poll");
                p.decode_payload(d.as_bytes(), &ctx, &mut b);
            }
            b
        };
        let mut d = Deduper::default();
        let mut first = decode(&mut p, &[POINT, "{bad"]);
        assert_eq!(d.filter(&mut first), 0);
        let mut second = decode(&mut p, &[POINT, &other, "{bad"]);
        assert_eq!(d.filter(&mut second), 2, "the repeated point and the repeated bad record");
        assert_eq!(second.len(), 1);
        assert_eq!(second.summary.accepted, 1);
        let mut third = decode(&mut p, &[&other]);
        assert_eq!(d.filter(&mut third), 1, "unchanged since the previous answer");
        let mut fourth = decode(&mut p, &[POINT]);
        assert_eq!(d.filter(&mut fourth), 0, "POINT was missing from the previous answer, so it is new again");
    }
}
