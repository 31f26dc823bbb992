//! Serde helpers writing [`OffsetDateTime`] as RFC 3339 in UTC (`2024-05-01T12:00:00.5Z`).
//!
//! All record times are UTC on the wire so they sort and compare as text and every consumer sees
//! the same representation; a time parsed with another offset is converted, not rejected.
//! Use with `#[serde(with = "geostream_model::rfc3339")]`, or [`option`] for `Option` fields.

use serde::{Deserialize, Deserializer, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats `t` in UTC. Fails for years outside 0000..=9999, which RFC 3339 cannot express.
pub fn format(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.checked_to_offset(UtcOffset::UTC).ok_or(time::error::Format::InvalidComponent("year"))?.format(&Rfc3339)
}

/// `t` in UTC, or unchanged if the conversion would leave the supported year range (validation
/// then reports it; constructors must not panic on odd input).
pub(crate) fn to_utc(t: OffsetDateTime) -> OffsetDateTime {
    t.checked_to_offset(UtcOffset::UTC).unwrap_or(t)
}

/// Parses an RFC 3339 timestamp and converts it to UTC.
pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339).map(to_utc)
}

/// Whether `t` can be written as RFC 3339 (years 0000 to 9999 in UTC).
pub fn is_representable(t: OffsetDateTime) -> bool {
    t.checked_to_offset(UtcOffset::UTC).is_some_and(|u| (0..=9999).contains(&u.year()))
}

/// Serializes as RFC 3339 UTC.
pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = format(*t).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// Deserializes RFC 3339 (any offset) into UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = OffsetDateTime;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp like \"2024-05-01T12:00:00Z\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OffsetDateTime, E> {
            parse(v).map_err(|e| E::custom(format_args!("invalid RFC 3339 time {v:?}: {e}")))
        }
    }
    d.deserialize_str(V)
}

/// The same for `Option<OffsetDateTime>`; `None` is written as `null`.
pub mod option {
    use super::*;

    /// Serializes `Some` as RFC 3339 UTC and `None` as null.
    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes null or an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super")] OffsetDateTime);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn utc_on_the_wire() {
        let t = datetime!(2024-05-01 14:00:00.000000001 +02:00);
        assert_eq!(format(t).unwrap(), "2024-05-01T12:00:00.000000001Z");
        let back = parse("2024-05-01T14:00:00.000000001+02:00").unwrap();
        assert_eq!(back, t);
        assert_eq!(back.offset(), UtcOffset::UTC);
        assert!(is_representable(t));
        let edge = datetime!(9999-12-31 23:00 -02:00);
        assert!(!is_representable(edge));
        assert!(format(edge).is_err());
        assert_eq!(to_utc(edge), edge);
        assert!(!is_representable(datetime!(-0001-12-31 23:00 UTC)));
    }
}
