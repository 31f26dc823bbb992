//! Validated identifiers. Each type can only hold a valid value: construction goes through
//! `FromStr` / `TryFrom`, and deserialization validates too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{IdKind, IdProblem, ModelError, quote_input};

/// Checks a lowercase label: `[a-z0-9]` plus `-` (and `_` where `allow_underscore`), starting
/// with a letter or digit, optionally also ending with one, at most `max` characters.
fn check_label(
    input: &str,
    max: usize,
    why_max: &'static str,
    allow_underscore: bool,
    alnum_end: bool,
) -> Result<(), IdProblem> {
    let allowed = if allow_underscore { "a-z, 0-9, '-' and '_'" } else { "a-z, 0-9 and '-'" };
    let mut len = 0;
    for (pos, ch) in input.chars().enumerate() {
        len = pos + 1;
        match ch {
            'a'..='z' | '0'..='9' | '-' => {}
            '_' if allow_underscore => {}
            c if c.is_uppercase() => return Err(IdProblem::Uppercase { ch, pos }),
            _ => return Err(IdProblem::BadChar { ch, pos, allowed }),
        }
    }
    // All characters are ASCII from here on, so byte and character positions agree.
    if len == 0 {
        return Err(IdProblem::Empty);
    }
    if len > max {
        return Err(IdProblem::TooLong { len, max, unit: "characters", why: why_max });
    }
    let bytes = input.as_bytes();
    let first = bytes[0];
    if !first.is_ascii_alphanumeric() {
        return Err(IdProblem::BadStart { ch: char::from(first) });
    }
    let last = bytes[len - 1];
    if alnum_end && !last.is_ascii_alphanumeric() {
        return Err(IdProblem::BadEnd { ch: char::from(last) });
    }
    Ok(())
}

/// Shared trait impls of the string-backed identifier newtypes.
macro_rules! string_id {
    ($name:ident, $kind:expr, $check:path) => {
        impl $name {
            /// Validates `input` and wraps it.
            pub fn new(input: impl Into<String>) -> Result<Self, ModelError> {
                let input = input.into();
                match $check(&input) {
                    Ok(()) => Ok(Self(input)),
                    Err(problem) => Err(ModelError::InvalidId { kind: $kind, input: quote_input(&input), problem }),
                }
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(s: String) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ModelError;
            fn try_from(s: &str) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A tenant: a lowercase RFC 1123 DNS label of at most [`TenantId::MAX_LEN`] characters
/// (`a-z`, `0-9`, `-`; first and last character a letter or digit).
///
/// The tenant is part of Kafka topic names (`<prefix><tenant>.<name>`), index names
/// (`geostream-<tenant>-<name>`), consumer groups and the Kubernetes objects of the tenant's Helm
/// release (`geostream-<tenant>-<stage>`). The DNS label rule keeps it legal in all of them (Kafka
/// allows `[a-zA-Z0-9._-]`, index names must be lowercase and free of `\/*?"<>| ,#:` and must not
/// start with `-_+`). The length limit is tighter than a DNS label's 63 because Kubernetes is the
/// tightest consumer: a StatefulSet name must leave room for the `-<hash>` of its
/// `controller-revision-hash` label within 63 characters, i.e. at most 52 characters, and
/// `geostream-` + tenant + `-operator` must fit in that.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Longest tenant id, in characters (see the type's documentation for why).
    pub const MAX_LEN: usize = 32;
}

fn check_tenant(input: &str) -> Result<(), IdProblem> {
    check_label(
        input,
        TenantId::MAX_LEN,
        "so derived Kafka topic, index and Kubernetes object names stay within their limits",
        false,
        true,
    )
}

string_id!(TenantId, IdKind::Tenant, check_tenant);

/// Maximum length of slug identifiers (feeds, fences, analytics).
pub const MAX_SLUG_LEN: usize = 128;

fn check_slug(input: &str) -> Result<(), IdProblem> {
    // A leading '-' is refused so an id can never be mistaken for a command-line flag.
    check_label(input, MAX_SLUG_LEN, "ids are used in keys, document fields and URLs", true, false)
}

/// A feed (one configured data source of a tenant): a lowercase slug, `a-z`, `0-9`, `-`, `_`,
/// 1 to [`MAX_SLUG_LEN`] characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedId(String);
string_id!(FeedId, IdKind::Feed, check_slug);

/// A geofence: same rules as [`FeedId`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FenceId(String);
string_id!(FenceId, IdKind::Fence, check_slug);

/// An analytic (a configured geofence, motion, bin or SQL job): same rules as [`FeedId`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnalyticId(String);
string_id!(AnalyticId, IdKind::Analytic, check_slug);

/// A tracked object within a feed (vessel MMSI, vehicle id, tag serial): any non-empty string of
/// at most [`TrackId::MAX_BYTES`] bytes without control characters.
///
/// Track ids come from devices, so the rule is permissive; control characters are refused because
/// they break log lines, CSV exports and terminal output. It is the Kafka key of observations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(String);

impl TrackId {
    /// Longest track id, in bytes of UTF-8.
    pub const MAX_BYTES: usize = 256;
}

fn check_track(input: &str) -> Result<(), IdProblem> {
    if input.is_empty() {
        return Err(IdProblem::Empty);
    }
    if let Some(pos) = input.chars().position(char::is_control) {
        return Err(IdProblem::ControlChar { pos });
    }
    if input.len() > TrackId::MAX_BYTES {
        return Err(IdProblem::TooLong {
            len: input.len(),
            max: TrackId::MAX_BYTES,
            unit: "bytes",
            why: "track ids are Kafka keys and keyword fields",
        });
    }
    Ok(())
}

string_id!(TrackId, IdKind::Track, check_track);

/// The deterministic id of an observation, event or aggregate: 16 bytes of a SHA-256 over the
/// record's identifying fields, written as 32 lowercase hex digits (the GeoJSON `id` and the
/// Elasticsearch `_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId([u8; 16]);

impl RecordId {
    /// Wraps raw id bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        RecordId(bytes)
    }

    /// The raw id bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the input length.
        if hex::encode_to_slice(self.0, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for RecordId {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        let fail = |problem| ModelError::InvalidId { kind: IdKind::Record, input: quote_input(s), problem };
        for (pos, ch) in s.chars().enumerate() {
            match ch {
                '0'..='9' | 'a'..='f' => {}
                'A'..='F' => return Err(fail(IdProblem::Uppercase { ch, pos })),
                _ => {
                    return Err(fail(IdProblem::BadChar { ch, pos, allowed: "0-9 and a-f" }));
                }
            }
        }
        let mut bytes = [0u8; 16];
        if s.len() != 32 || hex::decode_to_slice(s, &mut bytes).is_err() {
            return Err(fail(IdProblem::WrongLength { len: s.len(), expected: 32 }));
        }
        Ok(RecordId(bytes))
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RecordId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record id of 32 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RecordId, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tenant_err(s: &str) -> String {
        TenantId::new(s).unwrap_err().to_string()
    }

    #[test]
    fn tenant_messages_say_what_and_where() {
        assert_eq!(
            tenant_err("Acme"),
            "invalid tenant id \"Acme\": character 'A' at position 0 is uppercase; tenant ids are lowercase DNS labels like \"acme-ports\""
        );
        assert!(tenant_err("").contains("it is empty"));
        let long = "a".repeat(40);
        let m = tenant_err(&long);
        assert!(m.contains("40 characters long, the limit is 32"), "{m}");
        let m = tenant_err("acme_ports");
        assert!(m.contains("character '_' at position 4 is not allowed"), "{m}");
        assert!(tenant_err("-acme").contains("starts with '-'"));
        assert!(tenant_err("acme-").contains("ends with '-'"));
        assert!(tenant_err("acmé").contains("'é' at position 3"));
    }

    #[test]
    fn valid_tenants() {
        for t in ["a", "acme-ports", "0", "a-b-c", &"z".repeat(TenantId::MAX_LEN)] {
            assert_eq!(TenantId::new(t).unwrap().as_str(), t);
        }
    }

    #[test]
    fn tenant_serde_validates() {
        let t: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(t, "acme");
        let e = serde_json::from_str::<TenantId>("\"ACME\"").unwrap_err();
        assert!(e.to_string().contains("uppercase"), "{e}");
    }

    #[test]
    fn slugs() {
        assert!(FeedId::new("ais_norway-1").is_ok());
        assert!(FeedId::new("_x").unwrap_err().to_string().contains("starts with '_'"));
        assert!(FeedId::new("x-").is_ok());
        let m = FenceId::new("a b").unwrap_err().to_string();
        assert!(m.contains("invalid fence id \"a b\": character ' ' at position 1"), "{m}");
        assert!(FeedId::new("a".repeat(129)).is_err());
        assert!(FeedId::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn tracks() {
        assert!(TrackId::new("MMSI 257 123 456 / Ærø").is_ok());
        assert!(TrackId::new("").is_err());
        let m = TrackId::new("a\nb").unwrap_err().to_string();
        assert!(m.contains("control character at position 1"), "{m}");
        assert!(TrackId::new("x".repeat(257)).unwrap_err().to_string().contains("257 bytes"));
    }

    #[test]
    fn record_id_round_trip() {
        let id = RecordId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_hex(), id.to_string());
        assert_eq!(id.to_string().parse::<RecordId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
        assert!("AB".repeat(16).parse::<RecordId>().unwrap_err().to_string().contains("uppercase"));
        assert!("ab".parse::<RecordId>().unwrap_err().to_string().contains("exactly 32"));
        assert!("zz".parse::<RecordId>().is_err());
    }
}
