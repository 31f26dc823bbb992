//! NMEA 0183 GPS decoding: framing and checksums, the position sentences GGA, RMC, GLL, VTG, GNS
//! and ZDA from any talker (`GP`, `GN`, `GL`, `GA`, `GB`, `BD`, ...), and [`NmeaCodec`], which merges
//! the sentences of one fix epoch into one observation.
//!
//! ```
//! use geostream_codecs::nmea::{Kind, Line, frame, parse_fix};
//!
//! let line = b"$GPRMC,110124,A,5505.330990,N,03858.587325,E,152.6,86.2,310317,8.9,E,D*2E";
//! let Ok(Line::Sentence(f)) = frame(line, false) else { panic!("expected a sentence") };
//! let fix = parse_fix(Kind::from_type(f.kind).unwrap(), f.fields).unwrap();
//! let pos = fix.pos.unwrap();
//! assert!((pos.lat - 55.088_849_8).abs() < 1e-6 && (pos.lon - 38.976_455_4).abs() < 1e-6);
//! assert_eq!(fix.speed_kn, Some(152.6));
//! ```
//!
//! Hand-written. The `nmea` crate (AeroRust) was considered but not yet measured against the
//! samples here (its own test logs are among them): what the codec needs beyond per-sentence
//! parsing (epoch boundaries, date carry-over across midnight, errors naming the failing field and
//! mapping to reason codes, one outcome per line, no panics, borrowed bytes) would have to be
//! written around it anyway, and the parser itself is small (six sentence types, checksum,
//! ddmm.mmmm, dates). The XOR checksum is shared with the AIS
//! framing ([`crate::ais::sentence`]).

mod codec;
mod sentence;

pub use codec::{KNOTS_TO_MPS, NmeaCodec, NmeaOptions};
pub use sentence::{Fix, Frame, Kind, LatLon, Line, NANOS_PER_DAY, NmeaError, frame, parse_fix};
