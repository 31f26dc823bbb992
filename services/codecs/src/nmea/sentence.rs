//! NMEA 0183 framing (`$ttSSS,f1,f2,...*hh`) and the typed position sentences GGA, RMC, GLL, VTG,
//! GNS and ZDA. Works on borrowed bytes; every field is bounds- and range-checked, so any input
//! yields a sentence, a skip or an [`NmeaError`], never a panic.

use geostream_model::time::{Date, Month};
use geostream_model::{Classify, ErrorClass, ReasonCode};

use crate::ais::sentence::{hex_digit, xor};

/// Nanoseconds in a day.
pub const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Everything that can go wrong with one NMEA line. [`NmeaError::reason`] gives the dead-letter
/// reason code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NmeaError {
    /// The XOR of the bytes between `$` and `*` does not match the two hex digits after `*`.
    #[error("NMEA checksum mismatch: computed 0x{computed:02X}, sentence says 0x{stated:02X}")]
    Checksum {
        /// What the bytes hash to.
        computed: u8,
        /// What the sentence claims.
        stated: u8,
    },
    /// No `*hh` checksum and the codec does not accept sentences without one.
    #[error("NMEA sentence has no '*hh' checksum (not accepted: allow_missing_checksum is off)")]
    MissingChecksum,
    /// The line is not an NMEA sentence or a field is broken.
    #[error("NMEA {sentence}: malformed {field}: {why}")]
    Malformed {
        /// Sentence type (`GGA`, ...) or `sentence` for framing errors.
        sentence: &'static str,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Latitude or longitude parsed but lies outside [-90, 90] / [-180, 180].
    #[error("NMEA {sentence}: coordinates out of range: lat {lat}, lon {lon}")]
    InvalidCoordinates {
        /// Sentence type.
        sentence: &'static str,
        /// Latitude in degrees.
        lat: f64,
        /// Longitude in degrees.
        lon: f64,
    },
}

impl NmeaError {
    /// The dead-letter reason code.
    pub fn reason(&self) -> ReasonCode {
        match self {
            NmeaError::Checksum { .. } | NmeaError::MissingChecksum => ReasonCode::Checksum,
            NmeaError::Malformed { .. } => ReasonCode::Malformed,
            NmeaError::InvalidCoordinates { .. } => ReasonCode::InvalidCoordinates,
        }
    }
}

impl Classify for NmeaError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

const fn bad(sentence: &'static str, field: &'static str, why: &'static str) -> NmeaError {
    NmeaError::Malformed { sentence, field, why }
}

/// A framed sentence: talker, type and the comma-separated fields after the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The two-character talker id (`GP`, `GN`, `GL`, `GA`, `GB`, `BD`, ...).
    pub talker: [u8; 2],
    /// The three-character sentence type (`GGA`, `RMC`, ...).
    pub kind: [u8; 3],
    /// Everything after the address field's comma, up to `*` (or the end).
    pub fields: &'a [u8],
}

/// What a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Empty or whitespace only.
    Blank,
    /// A `#` comment.
    Comment,
    /// A well-formed line that is not a talker sentence: `!` (AIS) or `$P...` proprietary.
    Other,
    /// A checksum-verified talker sentence.
    Sentence(Frame<'a>),
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |p| p + 1);
    line.get(start..end).unwrap_or_default()
}

/// Frames one line and verifies its checksum. An NMEA 4.0 tag block (`\...\`) before the
/// sentence is skipped. Bytes after the two checksum digits (receiver metadata) are ignored.
pub fn frame(line: &[u8], allow_missing_checksum: bool) -> Result<Line<'_>, NmeaError> {
    let mut rest = trim(line);
    match rest.first() {
        None => return Ok(Line::Blank),
        Some(b'#') => return Ok(Line::Comment),
        Some(b'\\') => {
            let tail = rest.get(1..).unwrap_or_default();
            let end = tail.iter().position(|&c| c == b'\\').ok_or(bad("sentence", "tag block", "no closing '\\'"))?;
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        _ => {}
    }
    let (body, stated) = match rest.iter().position(|&c| c == b'*') {
        Some(star) => {
            let stated = match rest.get(star + 1..star + 3) {
                Some(&[a, b]) => hex_digit(a).zip(hex_digit(b)).map(|(a, b)| a << 4 | b),
                _ => None,
            }
            .ok_or(bad("sentence", "checksum", "not two hexadecimal digits after '*'"))?;
            (rest.get(..star).unwrap_or_default(), Some(stated))
        }
        None => (rest, None),
    };
    let (start, body) = body.split_first().ok_or(bad("sentence", "start", "empty sentence"))?;
    match start {
        b'$' => {}
        // AIS and other encapsulated sentences belong to the AIS codec.
        b'!' => return Ok(Line::Other),
        _ => return Err(bad("sentence", "start", "not an NMEA sentence (no '$' or '!' start)")),
    }
    match stated {
        Some(stated) => {
            let computed = xor(body);
            if computed != stated {
                return Err(NmeaError::Checksum { computed, stated });
            }
        }
        None if allow_missing_checksum => {}
        None => return Err(NmeaError::MissingChecksum),
    }
    if !body.iter().all(|c| (0x20..0x7f).contains(c)) {
        return Err(bad("sentence", "characters", "control or non-ASCII byte in the sentence"));
    }
    let comma = body.iter().position(|&c| c == b',').unwrap_or(body.len());
    let addr = body.get(..comma).unwrap_or_default();
    let fields = body.get(comma + 1..).unwrap_or_default();
    if addr.first() == Some(&b'P') {
        return Ok(Line::Other);
    }
    match *addr {
        [t0, t1, k0, k1, k2] if addr.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) => {
            Ok(Line::Sentence(Frame { talker: [t0, t1], kind: [k0, k1, k2], fields }))
        }
        _ => Err(bad("sentence", "address", "not a two-character talker and a three-letter type")),
    }
}

/// Latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// The fix-relevant content of one position sentence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Fix {
    /// UTC time of day in nanoseconds, if the sentence carries one.
    pub time: Option<u64>,
    /// Calendar date (RMC, ZDA).
    pub date: Option<Date>,
    /// Whether the sentence reports a valid fix (GGA quality > 0, RMC/GLL status A, GNS mode not
    /// all `N`, VTG mode not `N`). ZDA reports `false`: it is time only.
    pub valid: bool,
    /// Position, when valid and present.
    pub pos: Option<LatLon>,
    /// Speed over ground in knots.
    pub speed_kn: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// Altitude above mean sea level in metres (GGA, GNS).
    pub alt_m: Option<f64>,
    /// Geoid separation in metres (GGA, GNS).
    pub geoid_sep_m: Option<f64>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// Satellites used.
    pub satellites: Option<u32>,
    /// GGA fix quality (0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning, ...).
    pub quality: Option<u8>,
    /// FAA mode indicator (RMC, GLL, VTG; first character for GNS).
    pub mode: Option<u8>,
}

/// The sentence types this module decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Fix data: time, position, quality, satellites, HDOP, altitude.
    Gga,
    /// Recommended minimum: time, status, position, speed, course, date.
    Rmc,
    /// Geographic position: position, time, status.
    Gll,
    /// Course and speed over ground (no time).
    Vtg,
    /// GNSS fix data (multi-constellation GGA).
    Gns,
    /// Time and date.
    Zda,
}

impl Kind {
    /// The three-letter sentence type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gga => "GGA",
            Kind::Rmc => "RMC",
            Kind::Gll => "GLL",
            Kind::Vtg => "VTG",
            Kind::Gns => "GNS",
            Kind::Zda => "ZDA",
        }
    }

    /// The kind for a sentence type, if decoded here.
    pub fn from_type(t: [u8; 3]) -> Option<Kind> {
        match &t {
            b"GGA" => Some(Kind::Gga),
            b"RMC" => Some(Kind::Rmc),
            b"GLL" => Some(Kind::Gll),
            b"VTG" => Some(Kind::Vtg),
            b"GNS" => Some(Kind::Gns),
            b"ZDA" => Some(Kind::Zda),
            _ => None,
        }
    }
}

/// Up to 20 fields; NMEA 0183 sentences have at most 82 characters, so real ones have fewer.
struct Fields<'a> {
    kind: &'static str,
    f: [&'a [u8]; 20],
}

impl<'a> Fields<'a> {
    fn split(kind: &'static str, fields: &'a [u8]) -> Self {
        let mut f: [&[u8]; 20] = [&[]; 20];
        for (slot, part) in f.iter_mut().zip(fields.split(|&c| c == b',')) {
            *slot = part;
        }
        Fields { kind, f }
    }

    fn get(&self, i: usize) -> &'a [u8] {
        self.f.get(i).copied().unwrap_or_default()
    }

    fn time(&self, i: usize) -> Result<Option<u64>, NmeaError> {
        parse_time(self.get(i)).map_err(|why| bad(self.kind, "UTC time", why))
    }

    fn num(&self, i: usize, field: &'static str) -> Result<Option<f64>, NmeaError> {
        parse_num(self.get(i)).map_err(|why| bad(self.kind, field, why))
    }

    fn uint(&self, i: usize, field: &'static str) -> Result<Option<u32>, NmeaError> {
        let s = self.get(i);
        if s.is_empty() {
            return Ok(None);
        }
        digits(s).map(Some).ok_or(bad(self.kind, field, "not an unsigned integer"))
    }

    fn pos(&self, i: usize) -> Result<Option<LatLon>, NmeaError> {
        let lat =
            parse_angle(self.get(i), self.get(i + 1), 2, b'N', b'S').map_err(|why| bad(self.kind, "latitude", why))?;
        let lon = parse_angle(self.get(i + 2), self.get(i + 3), 3, b'E', b'W')
            .map_err(|why| bad(self.kind, "longitude", why))?;
        match (lat, lon) {
            (None, None) => Ok(None),
            (Some(lat), Some(lon)) => {
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
                    Ok(Some(LatLon { lat, lon }))
                } else {
                    Err(NmeaError::InvalidCoordinates { sentence: self.kind, lat, lon })
                }
            }
            _ => Err(bad(self.kind, "position", "latitude or longitude missing")),
        }
    }

    fn char(&self, i: usize) -> Option<u8> {
        match self.get(i) {
            [c] => Some(*c),
            _ => None,
        }
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0')))
}

/// A decimal number: optional sign, digits, optional fraction. No exponents, `inf` or `nan`.
fn parse_num(s: &[u8]) -> Result<Option<f64>, &'static str> {
    if s.is_empty() {
        return Ok(None);
    }
    let unsigned = s.strip_prefix(b"-").or_else(|| s.strip_prefix(b"+")).unwrap_or(s);
    let mut dots = 0;
    let mut nd = 0;
    for &c in unsigned {
        match c {
            b'.' => dots += 1,
            b'0'..=b'9' => nd += 1,
            _ => return Err("not a decimal number"),
        }
    }
    if dots > 1 || nd == 0 || s.len() > 32 {
        return Err("not a decimal number");
    }
    std::str::from_utf8(s).ok().and_then(|t| t.parse::<f64>().ok()).map(Some).ok_or("not a decimal number")
}

/// `hhmmss` with an optional fraction, to nanoseconds of the day.
fn parse_time(s: &[u8]) -> Result<Option<u64>, &'static str> {
    if s.is_empty() {
        return Ok(None);
    }
    let (hms, frac) = match s.iter().position(|&c| c == b'.') {
        Some(p) => (s.get(..p).unwrap_or_default(), s.get(p + 1..).unwrap_or_default()),
        None => (s, &[][..]),
    };
    let &[h0, h1, m0, m1, s0, s1] = hms else { return Err("not hhmmss[.sss]") };
    let two = |a: u8, b: u8| digits(&[a, b]).map(u64::from);
    let (Some(h), Some(m), Some(sec)) = (two(h0, h1), two(m0, m1), two(s0, s1)) else {
        return Err("not hhmmss[.sss]");
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err("hour, minute or second out of range");
    }
    if frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
        return Err("fraction of a second is not 1 to 9 digits");
    }
    let mut nanos = 0u64;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |&c| u64::from(c - b'0'));
    }
    Ok(Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + nanos))
}

/// `(d)ddmm.mmmm` plus hemisphere to signed degrees. `deg_digits` is 2 for latitude, 3 for
/// longitude, but receivers differ in zero padding, so the degrees are whatever precedes the two
/// minute digits before the point.
fn parse_angle(v: &[u8], hemi: &[u8], deg_digits: usize, pos: u8, neg: u8) -> Result<Option<f64>, &'static str> {
    if v.is_empty() && hemi.is_empty() {
        return Ok(None);
    }
    let sign = match hemi {
        [c] if *c == pos => 1.0,
        [c] if *c == neg => -1.0,
        _ => return Err("hemisphere missing or not N/S (latitude), E/W (longitude)"),
    };
    let int_len = v.iter().position(|&c| c == b'.').unwrap_or(v.len());
    if !(3..=deg_digits + 2).contains(&int_len) {
        return Err("not (d)ddmm.mmmm");
    }
    let (deg, min) = v.split_at(int_len - 2);
    let deg = digits(deg).ok_or("degrees are not digits")?;
    if !min.get(..2).is_some_and(|m| m.iter().all(u8::is_ascii_digit)) {
        return Err("minutes are not digits");
    }
    let min = match parse_num(min) {
        Ok(Some(m)) if m < 60.0 => m,
        Ok(Some(_)) => return Err("minutes are 60 or more"),
        _ => return Err("minutes are not a decimal number"),
    };
    Ok(Some(sign * (f64::from(deg) + min / 60.0)))
}

/// `ddmmyy`; two-digit years 80..99 are 1980..1999, 00..79 are 2000..2079 (GPS began in 1980).
fn parse_date(s: &[u8]) -> Result<Option<Date>, &'static str> {
    if s.is_empty() {
        return Ok(None);
    }
    let &[d0, d1, m0, m1, y0, y1] = s else { return Err("not ddmmyy") };
    let (Some(d), Some(m), Some(y)) = (digits(&[d0, d1]), digits(&[m0, m1]), digits(&[y0, y1])) else {
        return Err("not ddmmyy");
    };
    let year = if y >= 80 { 1900 + y } else { 2000 + y };
    ymd(year, d, m).map(Some)
}

fn ymd(year: u32, day: u32, month: u32) -> Result<Date, &'static str> {
    let month = u8::try_from(month).ok().and_then(|m| Month::try_from(m).ok()).ok_or("month out of range")?;
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    let day = u8::try_from(day).map_err(|_| "day out of range")?;
    Date::from_calendar_date(year, month, day).map_err(|_| "not a calendar date")
}

/// Decodes the fields of a sentence of kind `kind`.
pub fn parse_fix(kind: Kind, fields: &[u8]) -> Result<Fix, NmeaError> {
    let name = kind.as_str();
    let f = Fields::split(name, fields);
    let mut fix = Fix::default();
    match kind {
        Kind::Gga => {
            fix.time = f.time(0)?;
            let quality = f.uint(5, "fix quality")?;
            fix.quality = quality.and_then(|q| u8::try_from(q).ok());
            fix.valid = quality.is_some_and(|q| q > 0);
            fix.satellites = f.uint(6, "satellites")?;
            fix.hdop = f.num(7, "HDOP")?;
            fix.alt_m = f.num(8, "altitude")?;
            fix.geoid_sep_m = f.num(10, "geoid separation")?;
            fix.pos = f.pos(1)?;
        }
        Kind::Rmc => {
            fix.time = f.time(0)?;
            fix.valid = f.char(1) == Some(b'A');
            fix.speed_kn = f.num(6, "speed")?;
            fix.course_deg = f.num(7, "course")?;
            fix.date = parse_date(f.get(8)).map_err(|why| bad(name, "date", why))?;
            fix.mode = f.char(11);
            fix.pos = f.pos(2)?;
        }
        Kind::Gll => {
            fix.time = f.time(4)?;
            fix.valid = f.char(5) == Some(b'A') || (f.get(5).is_empty() && !f.get(0).is_empty());
            fix.mode = f.char(6);
            fix.pos = f.pos(0)?;
        }
        Kind::Vtg => {
            // NMEA 2.3+: course,T,course,M,knots,N,kmh,K[,mode]; older: course,course,knots,kmh.
            if f.get(1) == b"T" {
                fix.course_deg = f.num(0, "course")?;
                fix.speed_kn = f.num(4, "speed")?;
                if fix.speed_kn.is_none() {
                    fix.speed_kn = f.num(6, "speed (km/h)")?.map(|k| k / 1.852);
                }
                fix.mode = f.char(8);
            } else {
                fix.course_deg = f.num(0, "course")?;
                fix.speed_kn = f.num(2, "speed")?;
            }
            fix.valid = fix.mode != Some(b'N') && (fix.speed_kn.is_some() || fix.course_deg.is_some());
        }
        Kind::Gns => {
            fix.time = f.time(0)?;
            let mode = f.get(5);
            fix.mode = mode.first().copied();
            fix.valid = mode.iter().any(|&c| c != b'N');
            fix.satellites = f.uint(6, "satellites")?;
            fix.hdop = f.num(7, "HDOP")?;
            fix.alt_m = f.num(8, "altitude")?;
            fix.geoid_sep_m = f.num(9, "geoid separation")?;
            fix.pos = f.pos(1)?;
        }
        Kind::Zda => {
            fix.time = f.time(0)?;
            let (d, m, y) = (f.uint(1, "day")?, f.uint(2, "month")?, f.uint(3, "year")?);
            fix.date = match (d, m, y) {
                (Some(d), Some(m), Some(y)) => Some(ymd(y, d, m).map_err(|why| bad(name, "date", why))?),
                (None, None, None) => None,
                _ => return Err(bad(name, "date", "day, month and year must all be present or all empty")),
            };
        }
    }
    if let Some(c) = fix.course_deg
        && !(0.0..=360.0).contains(&c)
    {
        return Err(bad(name, "course", "outside 0..360 degrees"));
    }
    if fix.speed_kn.is_some_and(|s| s < 0.0) {
        return Err(bad(name, "speed", "negative"));
    }
    if !fix.valid {
        fix.pos = None;
    }
    Ok(fix)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn angles() {
        let a = parse_angle(b"5505.330990", b"N", 2, b'N', b'S').unwrap().unwrap();
        assert!((a - (55.0 + 5.330990 / 60.0)).abs() < 1e-12);
        let w = parse_angle(b"12118.8685453", b"W", 3, b'E', b'W').unwrap().unwrap();
        assert!((w + (121.0 + 18.8685453 / 60.0)).abs() < 1e-12);
        assert!(parse_angle(b"5560.0", b"N", 2, b'N', b'S').is_err());
        assert!(parse_angle(b"55.0", b"N", 2, b'N', b'S').is_err());
        assert!(parse_angle(b"5505.0", b"X", 2, b'N', b'S').is_err());
        assert_eq!(parse_angle(b"", b"", 2, b'N', b'S'), Ok(None));
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(parse_time(b"110124").unwrap(), Some(39_684_000_000_000));
        assert_eq!(parse_time(b"105153.71").unwrap(), Some(39_113_710_000_000));
        assert!(parse_time(b"245959").is_err());
        assert!(parse_time(b"1201").is_err());
        assert_eq!(parse_date(b"310317").unwrap().map(|d| d.to_string()), Some("2017-03-31".to_owned()));
        assert!(parse_date(b"310217").is_err());
    }

    #[test]
    fn frames() {
        assert!(matches!(frame(b"$GPGLL,,,,,,V,N*64", false), Ok(Line::Sentence(_))));
        assert_eq!(frame(b"$GPGLL,,,,,,V,N*65", false), Err(NmeaError::Checksum { computed: 0x64, stated: 0x65 }));
        assert_eq!(frame(b"$GPGLL,,,,,,V,N", false), Err(NmeaError::MissingChecksum));
        assert!(matches!(frame(b"$GPGLL,,,,,,V,N", true), Ok(Line::Sentence(_))));
        assert_eq!(frame(b"  # hi", false), Ok(Line::Comment));
        assert_eq!(frame(b"\r", false), Ok(Line::Blank));
        assert!(matches!(frame(b"foobar", false), Err(NmeaError::Malformed { .. })));
    }
}
