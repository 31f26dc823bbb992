//! AIS (AIVDM/AIVDO) decoding: NMEA framing with tag blocks and receiver metadata, checksums,
//! 6-bit payload de-armoring, multi-part reassembly, typed messages 1/2/3/4/5/18/19/21/24/27 and
//! normalisation to [`Observation`](geostream_model::Observation)s.
//!
//! ```
//! use geostream_codecs::ais::{Decoder, Message, Output};
//!
//! let mut dec = Decoder::default();
//! let out = dec.push_line(b"!AIVDM,1,1,,A,15RTgt0PAso;90TKcjM8h6g208CQ,0*4A").unwrap();
//! let Output::Message(d) = out else { panic!("expected a message") };
//! let Message::Position(p) = d.message else { panic!("expected a position report") };
//! assert_eq!(p.header.mmsi, 371_798_000);
//! assert_eq!(p.sog_knots, Some(12.3));
//! ```
//!
//! Pipeline: [`Decoder::push_line`] frames a line ([`sentence::parse_line`]), verifies the
//! checksum, decodes single-sentence messages straight from the line into a stack bit buffer, and
//! collects fragments of multi-part messages in a bounded pool of groups (reused buffers, no
//! allocation per sentence once warm). [`normalise`] turns a [`Decoded`] message into an
//! observation or a typed [`StaticReport`]. Every error maps to a dead-letter reason code.

mod bits;
mod codec;
mod decoder;
mod error;
mod message;
mod normalise;
pub mod sentence;

pub use bits::{AIS_TEXT_CAP, AisText, MAX_PAYLOAD_CHARS};
pub use codec::AisCodec;
pub use decoder::{Decoded, Decoder, DecoderOptions, Output};
pub use error::{AisError, IncompleteCause};
pub use message::{
    AidToNavigation, BaseStationReport, ClassBExtended, ClassBPosition, Dimensions, Header, LongRangePosition, Message,
    PositionReport, StaticDataPart, StaticDataReport, StaticVoyage,
};
pub use normalise::{KNOTS_TO_MPS, NormaliseError, Normalised, StaticReport, normalise, static_attributes};
pub use sentence::{LineMeta, SkipKind};
