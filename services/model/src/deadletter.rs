//! Dead letters: records a stage could not handle, kept with their raw bytes and a reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::naming::Stage;
use crate::rfc3339;

named_enum! {
    /// Why a record was dead-lettered. A closed list: dashboards, alerts and replay tools switch
    /// on these codes, so adding one is a contract change and renaming one is a break. The wire
    /// form is the snake_case name ([`ReasonCode::as_str`]); unknown codes fail to deserialize.
    ReasonCode, "reason code",
    "malformed, schema, checksum, unsupported, invalid_coordinates, null_island, invalid_time, future_time, too_large, incomplete, late, mapping, rejected, unknown_feed" {
        /// The bytes could not be parsed in the feed's format at all (broken JSON, CSV, NMEA).
        Malformed => "malformed",
        /// Parsed, but a required field is missing or has the wrong type.
        Schema => "schema",
        /// An NMEA sentence's checksum did not match.
        Checksum => "checksum",
        /// A message type or format variant geostream does not decode.
        Unsupported => "unsupported",
        /// Coordinates are out of range, not finite, or otherwise unusable.
        InvalidCoordinates => "invalid_coordinates",
        /// The position is exactly (0, 0), the usual sign of a missing fix.
        NullIsland => "null_island",
        /// The time could not be parsed or is not representable.
        InvalidTime => "invalid_time",
        /// The event time lies further in the future than the allowed clock skew.
        FutureTime => "future_time",
        /// The record exceeds the configured size limit.
        TooLarge => "too_large",
        /// A multi-part message (e.g. multi-sentence AIS) never completed.
        Incomplete => "incomplete",
        /// The event time is older than the window's allowed lateness.
        Late => "late",
        /// The search engine rejected the document because it does not fit the index mapping.
        Mapping => "mapping",
        /// A sink rejected the record for another permanent (non-retryable) reason.
        Rejected => "rejected",
        /// The record names a feed that is not registered for the tenant.
        UnknownFeed => "unknown_feed",
    }
}

/// A record on `<tenant>.deadletter`: a plain JSON object (not a Feature) holding the raw input
/// as standard base64, so nothing is lost and the record can be fixed and replayed.
///
/// Unknown fields are ignored when reading, so older tools can read newer dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The input as received (possibly cut to [`DeadLetter::MAX_RAW_BYTES`]).
    #[serde(with = "base64_bytes")]
    pub raw: Vec<u8>,
    /// Size of the input before it was cut; present only if `raw` was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_size: Option<u64>,
    /// The feed the input claimed or was received on. A plain string, not a validated feed id,
    /// because an invalid or unknown feed is itself a reason to dead-letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// The stage that gave up on it.
    pub stage: Stage,
    /// Why, from the closed list.
    pub reason: ReasonCode,
    /// Human-readable detail (the parser's or search engine's message).
    pub detail: String,
    /// Where it came from: `topic/partition/offset`, a URL, `file:line`, a peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it was dead-lettered.
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
}

impl DeadLetter {
    /// Largest raw payload kept. Base64 grows it by a third, which keeps a dead letter well under
    /// Kafka's default 1 MiB message limit even when the input itself was too large.
    pub const MAX_RAW_BYTES: usize = 512 * 1024;

    /// A dead letter for `raw`, cutting it to [`DeadLetter::MAX_RAW_BYTES`] if needed. The time
    /// is converted to UTC; `feed` and `source` start empty.
    pub fn new(
        raw: impl Into<Vec<u8>>,
        stage: Stage,
        reason: ReasonCode,
        detail: impl Into<String>,
        time: OffsetDateTime,
    ) -> Self {
        let mut raw = raw.into();
        let original_size = (raw.len() > Self::MAX_RAW_BYTES).then_some(raw.len() as u64);
        raw.truncate(Self::MAX_RAW_BYTES);
        DeadLetter {
            raw,
            original_size,
            feed: None,
            stage,
            reason,
            detail: detail.into(),
            source: None,
            time: rfc3339::to_utc(time),
        }
    }

    /// Sets the feed.
    #[must_use]
    pub fn with_feed(mut self, feed: impl Into<String>) -> Self {
        self.feed = Some(feed.into());
        self
    }

    /// Sets the source.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(raw))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format_args!("`raw` is not standard base64: {e}")))
    }
}
