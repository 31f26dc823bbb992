//! The one interface every format implements, so the ingest stage, `geostream decode` and the
//! benchmarks drive all formats the same way.
//!
//! A [`Codec`] is a per-feed state machine (AIS reassembles multi-part messages, NMEA carries the
//! date from RMC to GGA). The caller frames the bytes as the codec's [`Framing`] asks: one line at a
//! time for line formats, one whole payload (an HTTP body, a file, an MQTT message) for documents.
//! Every input ends as exactly one kind of [`Outcome`] per record it contained: an observation, a
//! rejection carrying the raw bytes and a reason code (for the dead-letter topic), or something
//! deliberately skipped (a comment, another NMEA sentence type) that is counted but not an error.

use std::fmt::Write as _;

use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Observation, ReasonCode};
use serde_json::{Map, Value};

/// How the caller must cut the byte stream before handing it to [`Codec::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One line per call, without its line terminator (`\n` or `\r\n`).
    Lines,
    /// One complete payload per call (a file, an HTTP body, a Kafka or MQTT message).
    Document,
}

/// What a codec needs to know about where the bytes came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The feed the bytes belong to.
    pub feed: FeedId,
    /// When ingest received the bytes; the fallback event time for formats without one.
    pub received: OffsetDateTime,
    /// Where in the source the bytes sit, for messages (e.g. `line 12`, `mqtt topic a/b`).
    pub location: String,
    /// Source-level attributes to merge into every observation (e.g. an MQTT topic segment).
    pub source_attributes: serde_json::Map<String, serde_json::Value>,
}

impl Context {
    /// A context with no location and no source attributes.
    pub fn new(feed: FeedId, received: OffsetDateTime) -> Self {
        Self { feed, received, location: String::new(), source_attributes: serde_json::Map::new() }
    }

    /// Adds the source attributes to a record's attributes. The record's own values win, and the
    /// names the observation itself uses (`feed`, `time`, ...) are never taken from the source.
    pub fn merge_source_attributes(&self, attributes: &mut Map<String, Value>) {
        merge_attributes(&self.source_attributes, attributes);
    }
}

/// [`Context::merge_source_attributes`] for codecs that keep a copy of the source attributes
/// until they emit (NMEA assembles an epoch across lines).
pub(crate) fn merge_attributes(source: &Map<String, Value>, attributes: &mut Map<String, Value>) {
    for (k, v) in source {
        if !Observation::RESERVED_PROPERTIES.contains(&k.as_str()) {
            attributes.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// `detail` prefixed with where it happened (`line 12: ...`), when that is known.
pub(crate) fn located(location: &str, detail: String) -> String {
    if location.is_empty() { detail } else { format!("{location}: {detail}") }
}

/// A record that could not become an observation: everything the dead-letter topic needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The closed-list reason.
    pub reason: ReasonCode,
    /// What, where and why, for a person.
    pub detail: String,
    /// The bytes of the record (the line, or the payload or the part of it that failed).
    pub raw: Vec<u8>,
}

/// Why a record was skipped without being an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// An empty line.
    Blank,
    /// A comment line.
    Comment,
    /// A well-formed record of a kind this format does not turn into observations (e.g. an NMEA
    /// GSV sentence, an AIS static report, a GeoJSON feature without geometry when allowed).
    NotAPosition,
    /// A fragment of a multi-part message; the observation comes with the last fragment.
    Fragment,
    /// An exact repeat the format itself identifies as such.
    Duplicate,
}

impl Skip {
    /// The name used in summaries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Skip::Blank => "Blank",
            Skip::Comment => "Comment",
            Skip::NotAPosition => "NotAPosition",
            Skip::Fragment => "Fragment",
            Skip::Duplicate => "Duplicate",
        }
    }
}

/// One result of decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A normalised, validated observation.
    Observation(Box<Observation>),
    /// A record that goes to the dead-letter topic.
    Rejected(Rejection),
    /// Counted, not forwarded, not an error.
    Skipped(Skip),
}

/// A decoder for one format, holding the per-feed state that format needs.
pub trait Codec: Send {
    /// The format's name as used in feed specs and `geostream decode --format`.
    fn name(&self) -> &'static str;

    /// How input must be framed.
    fn framing(&self) -> Framing;

    /// Decodes one line or document and reports each record it held through `out`.
    /// Must not panic on any input.
    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome));

    /// End of input: reports what is still pending (e.g. incomplete multi-part messages).
    fn finish(&mut self, ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let _ = (ctx, out);
    }
}

/// Runs `codec` over a whole byte buffer, framing it as the codec asks, and collects outcomes.
/// Line numbers go into each context's `location`. Meant for files, tests and benchmarks.
pub fn decode_all(codec: &mut dyn Codec, bytes: &[u8], ctx: &Context) -> Vec<Outcome> {
    let mut out = Vec::new();
    match codec.framing() {
        Framing::Document => codec.decode(bytes, ctx, &mut |o| out.push(o)),
        Framing::Lines => {
            let mut line_ctx = ctx.clone();
            // A final newline ends the last line; it does not start an empty one.
            let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                line_ctx.location.clear();
                let _ = write!(line_ctx.location, "line {}", i + 1);
                codec.decode(line, &line_ctx, &mut |o| out.push(o));
            }
        }
    }
    codec.finish(ctx, &mut |o| out.push(o));
    out
}

/// Tallies outcomes for summaries (`geostream decode`, metrics, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Observations produced.
    pub accepted: u64,
    /// Rejections by reason.
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Skips by kind ([`Skip::as_str`]).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// Distinct track ids among the observations.
    pub tracks: std::collections::BTreeSet<String>,
}

impl Summary {
    /// Adds one outcome.
    pub fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Observation(obs) => {
                self.accepted += 1;
                if let Some(t) = &obs.track {
                    self.tracks.insert(t.as_str().to_owned());
                }
            }
            Outcome::Rejected(r) => *self.rejected.entry(r.reason.as_str()).or_default() += 1,
            Outcome::Skipped(s) => *self.skipped.entry(s.as_str()).or_default() += 1,
        }
    }

    /// Total rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ais::AisCodec;
    use serde_json::json;

    fn ctx() -> Context {
        let received = OffsetDateTime::UNIX_EPOCH + geostream_model::time::Duration::days(20_000);
        let mut c = Context::new("ais".parse().unwrap(), received);
        c.source_attributes.insert("device".into(), json!("rx1"));
        c.source_attributes.insert("feed".into(), json!("spoofed"));
        c.source_attributes.insert("mmsi".into(), json!(1));
        c
    }

    #[test]
    fn source_attributes_fill_gaps_but_never_override_or_use_reserved_names() {
        let mut codec = AisCodec::default();
        let out = decode_all(&mut codec, b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A\n", &ctx());
        let [Outcome::Observation(obs)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(obs.attributes["device"], json!("rx1"));
        assert_eq!(obs.attributes["mmsi"], json!(371_798_000), "the record's own value wins");
        assert!(!obs.attributes.contains_key("feed"), "reserved names never come from the source");
        obs.validate().unwrap();
        let back: Observation = serde_json::from_slice(&serde_json::to_vec(obs).unwrap()).unwrap();
        assert_eq!(&back, obs.as_ref());
    }

    #[test]
    fn lines_are_located_and_summarised() {
        let mut codec = AisCodec::default();
        let input = b"# a comment\n\nfoobar\r\n!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A\n";
        let out = decode_all(&mut codec, input, &ctx());
        assert_eq!(out.len(), 4, "one outcome per line, no extra for the final newline: {out:?}");
        let Outcome::Rejected(r) = &out[2] else { panic!("{:?}", out[2]) };
        assert!(r.detail.starts_with("line 3: "), "{}", r.detail);
        assert_eq!(r.raw, b"foobar");
        let mut s = Summary::default();
        out.iter().for_each(|o| s.add(o));
        assert_eq!(s.accepted, 1);
        assert_eq!(s.rejected.get("malformed"), Some(&1));
        assert_eq!(s.skipped.get("Comment"), Some(&1));
        assert_eq!(s.skipped.get("Blank"), Some(&1));
        assert_eq!(s.tracks.len(), 1);
    }
}
