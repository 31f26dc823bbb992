//! Decode errors of the AIS decoder, each mapping to a dead-letter [`ReasonCode`].

use geostream_model::{Classify, ErrorClass, ReasonCode};

use super::message::Header;

/// Why a multi-part group was given up ([`AisError::Incomplete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompleteCause {
    /// More groups were pending than the decoder keeps; the oldest one was dropped.
    Evicted,
    /// A fragment arrived for the same key that cannot belong to the pending group (a new first
    /// part, a different part count, or a different payload for a part already held).
    Superseded,
    /// The group waited longer than the configured number of lines.
    Expired,
    /// [`Decoder::flush`](super::Decoder::flush) was called (end of input).
    Flushed,
}

impl IncompleteCause {
    fn as_str(self) -> &'static str {
        match self {
            IncompleteCause::Evicted => "evicted because too many groups were pending",
            IncompleteCause::Superseded => "superseded by a fragment that starts a new message with the same key",
            IncompleteCause::Expired => "expired: the remaining fragments did not arrive in time",
            IncompleteCause::Flushed => "still pending at end of input",
        }
    }
}

impl std::fmt::Display for IncompleteCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong decoding one AIS line or message. Messages say what, where and
/// why; [`AisError::reason`] gives the dead-letter reason code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AisError {
    /// The sentence checksum (XOR of the bytes between `!` and `*`) does not match.
    #[error("AIS sentence: checksum mismatch: computed 0x{computed:02X}, sentence says 0x{stated:02X}")]
    Checksum {
        /// What the bytes hash to.
        computed: u8,
        /// What the sentence claims.
        stated: u8,
    },
    /// The NMEA 4.0 tag block checksum does not match.
    #[error("AIS tag block: checksum mismatch: computed 0x{computed:02X}, tag block says 0x{stated:02X}")]
    TagBlockChecksum {
        /// What the tag block bytes hash to.
        computed: u8,
        /// What the tag block claims.
        stated: u8,
    },
    /// The line looks like an AIS sentence but its framing or a field is broken.
    #[error("AIS sentence: malformed {field}: {why}")]
    Malformed {
        /// The part of the sentence at fault (`checksum`, `fragment count`, `payload`, ...).
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A payload character outside the AIS 6-bit armoring alphabet.
    #[error("AIS payload: invalid armoring character {ch:?} at payload offset {pos}")]
    Armoring {
        /// The offending character (as a byte, shown as char).
        ch: char,
        /// Its offset in the (reassembled) payload.
        pos: usize,
    },
    /// The payload holds fewer bits than the message type needs.
    #[error("AIS message type {msg_type}: payload too short: {bits} bits, field {field} needs {need}")]
    TooShort {
        /// Message type (0 if even the type did not fit).
        msg_type: u8,
        /// Bits available.
        bits: usize,
        /// Bits the read needed.
        need: usize,
        /// The field being read.
        field: &'static str,
    },
    /// A message type (or type 24 part) this decoder does not decode; the header was decoded.
    #[error(
        "AIS message type {} (repeat {}, mmsi {}) is not decoded by geostream",
        header.msg_type,
        header.repeat,
        header.mmsi
    )]
    Unsupported {
        /// Type, repeat indicator and MMSI of the message.
        header: Header,
    },
    /// A multi-part message never completed.
    #[error(
        "AIS multi-part message (talker {talker}, channel {channel}, sequence id {seq}) incomplete: \
         {received} of {total} fragments received; {cause}"
    )]
    Incomplete {
        /// Talker id, e.g. `AI`.
        talker: String,
        /// Radio channel (`A`, `B`, ...) or `-` if empty.
        channel: char,
        /// Sequential message id or `-` if empty.
        seq: char,
        /// How many fragments arrived.
        received: u8,
        /// How many the message has.
        total: u8,
        /// Why the decoder gave up.
        cause: IncompleteCause,
    },
}

impl AisError {
    /// The dead-letter reason code for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            AisError::Checksum { .. } | AisError::TagBlockChecksum { .. } => ReasonCode::Checksum,
            AisError::Malformed { .. } | AisError::Armoring { .. } | AisError::TooShort { .. } => ReasonCode::Malformed,
            AisError::Unsupported { .. } => ReasonCode::Unsupported,
            AisError::Incomplete { .. } => ReasonCode::Incomplete,
        }
    }

    pub(crate) const fn malformed(field: &'static str, why: &'static str) -> Self {
        AisError::Malformed { field, why }
    }
}

impl Classify for AisError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}
