//! Error taxonomy shared by every geostream crate, and this crate's own validation error.
//!
//! Every error in geostream falls into one of three classes, and the class decides what the
//! pipeline does with the record or request that caused it:
//!
//! - [`ErrorClass::External`]: something outside the process failed (Kafka or Elasticsearch
//!   unreachable, a network timeout, HTTP 429 or 5xx). The input was fine, so the operation is
//!   **retryable**, with backoff; the record must not be dropped or dead-lettered for it.
//! - [`ErrorClass::User`]: the input or the configuration is wrong (a malformed sensor message, an
//!   invalid feed spec, a document the search engine's mapping rejects). Retrying cannot help, so it
//!   is **not retryable**: a record goes to the dead-letter topic with a [`ReasonCode`], a request or
//!   spec goes back to the user with a message that says what, where and why.
//! - [`ErrorClass::Internal`]: a bug or a broken invariant in geostream itself. **Not retryable**;
//!   it is logged loudly and surfaced in telemetry so somebody fixes the code.
//!
//! [`ReasonCode`]: crate::ReasonCode

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which side is at fault for an error; decides retry versus dead-letter versus bug report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Bad input or configuration: not retryable; dead-letter the record or tell the user.
    User,
    /// A dependency (Kafka, Elasticsearch, network, upstream HTTP) failed: retry with backoff.
    External,
    /// A bug in geostream: not retryable; report it.
    Internal,
}

impl ErrorClass {
    /// Stable lowercase name, suitable as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::User => "user",
            ErrorClass::External => "external",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every error type in geostream so generic code (retry loops, sinks, telemetry)
/// can decide what to do without knowing the concrete error.
pub trait Classify {
    /// Which side is at fault.
    fn class(&self) -> ErrorClass;

    /// Whether trying the same operation again may succeed. By default only external errors are;
    /// override when a specific external failure is known to be permanent.
    fn retryable(&self) -> bool {
        self.class() == ErrorClass::External
    }
}

/// The kind of identifier an [`IdProblem`] refers to; it selects the wording of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A [`TenantId`](crate::TenantId).
    Tenant,
    /// A [`FeedId`](crate::FeedId).
    Feed,
    /// A [`FenceId`](crate::FenceId).
    Fence,
    /// An [`AnalyticId`](crate::AnalyticId).
    Analytic,
    /// A [`TrackId`](crate::TrackId).
    Track,
    /// A [`RecordId`](crate::RecordId).
    Record,
}

impl IdKind {
    /// The noun used in messages, e.g. "tenant id".
    pub const fn noun(self) -> &'static str {
        match self {
            IdKind::Tenant => "tenant id",
            IdKind::Feed => "feed id",
            IdKind::Fence => "fence id",
            IdKind::Analytic => "analytic id",
            IdKind::Track => "track id",
            IdKind::Record => "record id",
        }
    }

    /// What a valid identifier of this kind looks like, appended to every message.
    pub const fn hint(self) -> &'static str {
        match self {
            IdKind::Tenant => "tenant ids are lowercase DNS labels like \"acme-ports\"",
            IdKind::Feed => "feed ids are lowercase slugs like \"ais-norway\" or \"bus_positions\"",
            IdKind::Fence => "fence ids are lowercase slugs like \"harbour-limits\"",
            IdKind::Analytic => "analytic ids are lowercase slugs like \"harbour-geofence\"",
            IdKind::Track => "track ids are non-empty printable strings of at most 256 bytes",
            IdKind::Record => "record ids are 32 lowercase hexadecimal digits",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Exactly what is wrong with an identifier. Positions count characters from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdProblem {
    /// The identifier is the empty string.
    Empty,
    /// The identifier is longer than allowed.
    TooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
        /// Unit of `len` and `max` ("characters" or "bytes").
        unit: &'static str,
        /// Why the limit exists.
        why: &'static str,
    },
    /// The identifier does not have the one length allowed.
    WrongLength {
        /// Its length in characters.
        len: usize,
        /// The required length.
        expected: usize,
    },
    /// An uppercase letter where only lowercase is allowed.
    Uppercase {
        /// The offending character.
        ch: char,
        /// Its position.
        pos: usize,
    },
    /// A character outside the allowed set.
    BadChar {
        /// The offending character.
        ch: char,
        /// Its position.
        pos: usize,
        /// The allowed set, in words.
        allowed: &'static str,
    },
    /// A control character (newline, tab, NUL, ...).
    ControlChar {
        /// Its position.
        pos: usize,
    },
    /// The first character is not a letter or digit.
    BadStart {
        /// The offending character.
        ch: char,
    },
    /// The last character is not a letter or digit.
    BadEnd {
        /// The offending character.
        ch: char,
    },
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Empty => f.write_str("it is empty"),
            IdProblem::TooLong { len, max, unit, why } => {
                write!(f, "it is {len} {unit} long, the limit is {max} {unit} ({why})")
            }
            IdProblem::WrongLength { len, expected } => {
                write!(f, "it is {len} characters long, it must be exactly {expected}")
            }
            IdProblem::Uppercase { ch, pos } => {
                write!(f, "character {ch:?} at position {pos} is uppercase")
            }
            IdProblem::BadChar { ch, pos, allowed } => {
                write!(f, "character {ch:?} at position {pos} is not allowed (allowed: {allowed})")
            }
            IdProblem::ControlChar { pos } => {
                write!(f, "it contains a control character at position {pos}")
            }
            IdProblem::BadStart { ch } => {
                write!(f, "it starts with {ch:?}; it must start with a letter or digit")
            }
            IdProblem::BadEnd { ch } => {
                write!(f, "it ends with {ch:?}; it must end with a letter or digit")
            }
        }
    }
}

/// Longest excerpt of offending input quoted in a message, so a megabyte of garbage does not end
/// up in every log line.
const MAX_QUOTED_CHARS: usize = 80;

/// Shortens `input` for quoting in an error message.
pub(crate) fn quote_input(input: &str) -> String {
    if input.chars().count() <= MAX_QUOTED_CHARS {
        input.to_owned()
    } else {
        let mut s: String = input.chars().take(MAX_QUOTED_CHARS).collect();
        s.push('…');
        s
    }
}

/// A validation failure of a record, spec, identifier or name defined in this crate.
///
/// Always [`ErrorClass::User`] and never retryable: the same input fails the same way again.
/// Every message says what is wrong, where (field, ring, position) and what would be valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// An identifier (tenant, feed, fence, analytic, track, record) is malformed.
    #[error("invalid {kind} {input:?}: {problem}; {}", kind.hint())]
    InvalidId {
        /// Which kind of identifier.
        kind: IdKind,
        /// The offending input (shortened if very long).
        input: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// The Kafka topic prefix is not usable.
    #[error(
        "invalid topic prefix {prefix:?}: {problem}; topic prefixes may be empty or use a-z, A-Z, 0-9, '.', '_' and '-'"
    )]
    InvalidTopicPrefix {
        /// The offending prefix (shortened if very long).
        prefix: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A name that should be one of a closed set of values is not.
    #[error("unknown {what} {input:?}; expected one of: {expected}")]
    UnknownName {
        /// What kind of name, e.g. "stage".
        what: &'static str,
        /// The offending input (shortened if very long).
        input: String,
        /// The valid names, comma separated.
        expected: &'static str,
    },

    /// A geometry is unusable: out of range, not finite, malformed ring, wrong type.
    #[error("{subject}: geometry{location}: {problem}")]
    InvalidGeometry {
        /// The record or spec, e.g. `fence "harbour"` or `observation 3f…`.
        subject: String,
        /// Where in the geometry, e.g. " polygon 0, ring 1, position 3"; empty for the whole.
        location: String,
        /// What is wrong and what would be valid.
        problem: String,
    },

    /// A field of a record or spec has an unusable value.
    #[error("{subject}: field `{field}` {problem}")]
    InvalidField {
        /// The record or spec, e.g. `feed "ais-norway"`.
        subject: String,
        /// Dotted path of the field, e.g. `source.qos`.
        field: String,
        /// What is wrong and what would be valid.
        problem: String,
    },

    /// A record's id is not the id its content hashes to.
    #[error(
        "{subject}: id {stored} does not match the id computed from its content ({computed}); the record was changed after its id was assigned, or was produced with a different id scheme"
    )]
    IdMismatch {
        /// The record, e.g. `observation`.
        subject: String,
        /// The id the record carries.
        stored: String,
        /// The id its content hashes to.
        computed: String,
    },
}

impl Classify for ModelError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_are_user_errors_and_not_retryable() {
        let e = ModelError::UnknownName { what: "stage", input: "x".into(), expected: "a, b" };
        assert_eq!(e.class(), ErrorClass::User);
        assert!(!e.retryable());
    }

    #[test]
    fn default_retryable_follows_class() {
        struct Down;
        impl Classify for Down {
            fn class(&self) -> ErrorClass {
                ErrorClass::External
            }
        }
        assert!(Down.retryable());
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let long = "x".repeat(10_000);
        let q = quote_input(&long);
        assert_eq!(q.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(q.ends_with('…'));
    }
}
