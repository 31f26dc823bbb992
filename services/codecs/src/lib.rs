//! Decoders and the normaliser: the bytes a sensor sends (JSON, GeoJSON, CSV, NMEA 0183, AIS,
//! GTFS-realtime, GPX, CAP, Esri JSON, CoT) become `geostream_model` Observations or typed decode errors
//! that map to dead-letter reason codes. Field mapping, units, time parsing and reprojection live here.
//!
//! Must not: do I/O of any kind (no files, sockets, clocks read implicitly, async or threads). Every
//! function is a pure transformation so it can be fuzzed and tested exhaustively; the ingest stage owns
//! the sources. Must never panic on any input.
//!
//! # What is here
//!
//! - [`codec`]: the [`Codec`] interface every format implements (framing, outcomes, summaries).
//! - [`ais`]: AIS (AIVDM/AIVDO) sentences to typed messages and Observations. Hand-written rather than
//!   built on the `nmea-parser` crate because that crate panics on real data (type 26 and short
//!   payloads in a real exactEarth satellite capture) and the performance target is at least twice its
//!   speed: the decoder here frames and checks a sentence on borrowed bytes, de-armors the payload into a
//!   stack buffer and bounds-checks every bit read, so any input yields a message or an error, never a
//!   panic, without a heap allocation per single-sentence message.
//!
//! Status: the other formats arrive with the feed-adapter issue; this crate is the place they go.

pub mod ais;
pub mod codec;

pub use codec::{Codec, Context, Framing, Outcome, Rejection, Skip, Summary, decode_all};
