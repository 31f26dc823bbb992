//! NMEA 0183 framing of AIS sentences: tag blocks, the `!--VDM`/`!--VDO` fields, the checksum and
//! the receiver metadata some captures append after the checksum. Works on borrowed bytes only.

use super::error::AisError;

/// Why a line was skipped without being an AIS sentence. Not an error: mixed streams carry these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipKind {
    /// Empty or whitespace-only line.
    Blank,
    /// A comment line starting with `#`.
    Comment,
    /// Another NMEA sentence (`$GPGGA`, Gatehouse `$PGHP`, `!--ALR`, ...).
    OtherNmea,
    /// Anything else (no `!`/`$` sentence start).
    Junk,
}

/// Receiver metadata of a line: from an NMEA 4.0 tag block (`\c:..,s:..*hh\`) or from fields
/// after the checksum (`*hh,<station>,<unix time>` USCG style, `*hh,<epoch ms>` exactEarth style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineMeta<'a> {
    /// Source / receiving station: tag block `s:` or a trailing `r...`/`b...` station field.
    pub source: Option<&'a str>,
    /// Tag block `c:` time in Unix milliseconds (seconds are scaled; values >= 10^11 are taken as ms).
    pub tag_time_ms: Option<i64>,
    /// Receive time after the checksum, in Unix milliseconds (13+ digits are ms, fewer are seconds).
    pub receive_time_ms: Option<i64>,
}

impl LineMeta<'_> {
    /// The best event time the line carries: the tag block time, else the trailing receive time.
    pub fn time_ms(&self) -> Option<i64> {
        self.tag_time_ms.or(self.receive_time_ms)
    }
}

/// One framed, checksum-verified AIS sentence (a fragment of a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentence<'a> {
    /// Talker id (`AI`, `AB`, `BS`, `SA`, ...).
    pub talker: [u8; 2],
    /// `VDO` (own ship) rather than `VDM`.
    pub own_ship: bool,
    /// Number of fragments of the message, 1..=9.
    pub total: u8,
    /// This fragment's number, 1..=total.
    pub num: u8,
    /// Sequential message id 0..=9 (multi-part messages), if given.
    pub seq: Option<u8>,
    /// Radio channel (`A`, `B`, `1`, `2`), if given.
    pub channel: Option<u8>,
    /// The armored payload characters (not yet validated).
    pub payload: &'a [u8],
    /// Fill bits 0..=5.
    pub fill: u8,
    /// Tag block and trailing metadata.
    pub meta: LineMeta<'a>,
}

/// What a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A framed AIS sentence.
    Sentence(Sentence<'a>),
    /// Not AIS; skipped.
    Skip(SkipKind),
}

/// XOR of all bytes: the NMEA checksum.
#[inline]
pub(crate) fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, &b| a ^ b)
}

/// One hexadecimal digit's value, either case (NMEA checksums).
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex2(s: &[u8]) -> Option<u8> {
    match s {
        [a, b] => Some(hex_digit(*a)? << 4 | hex_digit(*b)?),
        _ => None,
    }
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Unix time that may be in seconds or milliseconds, to milliseconds.
fn unix_to_ms(v: i64, is_ms: bool) -> i64 {
    if is_ms { v } else { v.saturating_mul(1000) }
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |p| p + 1);
    line.get(start..end).unwrap_or_default()
}

/// Frames one line. `verify_tag_block` decides whether a wrong tag block checksum is an error
/// (some real captures write `*00` for every tag block).
pub fn parse_line(line: &[u8], verify_tag_block: bool) -> Result<Line<'_>, AisError> {
    let line = trim(line);
    let Some(&first) = line.first() else { return Ok(Line::Skip(SkipKind::Blank)) };
    let mut meta = LineMeta::default();
    let mut rest = line;
    match first {
        b'#' => return Ok(Line::Skip(SkipKind::Comment)),
        b'\\' => {
            let tail = &line[1..];
            let end =
                tail.iter().position(|&c| c == b'\\').ok_or(AisError::malformed("tag block", "no closing '\\'"))?;
            let (tag, after) = tail.split_at(end);
            parse_tag_block(tag, verify_tag_block, &mut meta)?;
            rest = &after[1..];
        }
        _ => {}
    }
    match rest.first() {
        Some(b'!') => {}
        Some(b'$') => return Ok(Line::Skip(SkipKind::OtherNmea)),
        _ => return Ok(Line::Skip(SkipKind::Junk)),
    }
    // Address field: !ttVDM / !ttVDO.
    let addr_end = rest.iter().position(|&c| c == b',' || c == b'*').unwrap_or(rest.len());
    let addr = &rest[1..addr_end];
    let own_ship = match addr {
        [_, _, b'V', b'D', b'M'] => false,
        [_, _, b'V', b'D', b'O'] => true,
        _ => return Ok(Line::Skip(SkipKind::OtherNmea)),
    };
    let talker = [addr[0], addr[1]];
    if !talker.iter().all(u8::is_ascii_alphanumeric) {
        return Err(AisError::malformed("talker id", "not two letters or digits"));
    }
    let star = rest.iter().position(|&c| c == b'*').ok_or(AisError::malformed("checksum", "no '*' in sentence"))?;
    let body = &rest[1..star];
    let after = &rest[star + 1..];
    let stated = hex2(after.get(..2).unwrap_or(after))
        .ok_or(AisError::malformed("checksum", "not two hexadecimal digits after '*'"))?;
    let computed = xor(body);
    if computed != stated {
        return Err(AisError::Checksum { computed, stated });
    }
    // Receiver metadata after the checksum starts with ','; anything else there (seen in real
    // files: a literal "\x0d\x0a") is outside the checksummed sentence and ignored.
    if let [b',', trailing @ ..] = &after[2..] {
        parse_trailing(trailing, &mut meta);
    }

    let mut fields = body.split(|&c| c == b',');
    let _addr = fields.next();
    let (Some(total), Some(num), Some(seq), Some(chan), Some(payload), Some(fill), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(AisError::malformed("field count", "an AIS sentence has 7 comma-separated fields"));
    };
    let total = match total {
        [d @ b'1'..=b'9'] => d - b'0',
        _ => return Err(AisError::malformed("fragment count", "not a digit 1..9")),
    };
    let num = match num {
        [d @ b'1'..=b'9'] if d - b'0' <= total => d - b'0',
        _ => return Err(AisError::malformed("fragment number", "not a digit 1..fragment count")),
    };
    let seq = match seq {
        [] => None,
        [d @ b'0'..=b'9'] => Some(d - b'0'),
        _ => return Err(AisError::malformed("sequential message id", "not empty or a digit 0..9")),
    };
    let channel = match chan {
        [] => None,
        [c] if c.is_ascii_alphanumeric() => Some(*c),
        _ => return Err(AisError::malformed("channel", "not empty or one letter or digit")),
    };
    let fill = match fill {
        [] => 0,
        [d @ b'0'..=b'5'] => d - b'0',
        _ => return Err(AisError::malformed("fill bits", "not a digit 0..5")),
    };
    Ok(Line::Sentence(Sentence { talker, own_ship, total, num, seq, channel, payload, fill, meta }))
}

fn parse_tag_block<'a>(tag: &'a [u8], verify: bool, meta: &mut LineMeta<'a>) -> Result<(), AisError> {
    let star = tag.iter().rposition(|&c| c == b'*').ok_or(AisError::malformed("tag block", "no '*' checksum"))?;
    let (body, cs) = (&tag[..star], &tag[star + 1..]);
    if verify {
        let stated = hex2(cs).ok_or(AisError::malformed("tag block", "checksum is not two hexadecimal digits"))?;
        let computed = xor(body);
        if stated != computed {
            return Err(AisError::TagBlockChecksum { computed, stated });
        }
    }
    for field in body.split(|&c| c == b',') {
        match field {
            [b'c', b':', v @ ..] => {
                let t = digits(v).ok_or(AisError::malformed("tag block time (c:)", "not a Unix time"))?;
                meta.tag_time_ms = Some(unix_to_ms(t, t >= 100_000_000_000));
            }
            [b's', b':', v @ ..] => {
                meta.source = std::str::from_utf8(v).ok().filter(|s| !s.is_empty());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Receiver fields after the checksum. Unknown fields are ignored; nothing here is an error
/// because the sentence itself was intact.
fn parse_trailing<'a>(fields: &'a [u8], meta: &mut LineMeta<'a>) {
    for f in fields.split(|&c| c == b',') {
        match f {
            [b'r' | b'b', rest @ ..] if !rest.is_empty() && rest.iter().all(u8::is_ascii_alphanumeric) => {
                meta.source = meta.source.or_else(|| std::str::from_utf8(f).ok());
            }
            _ if f.len() >= 9 && meta.receive_time_ms.is_none() => {
                if let Some(t) = digits(f) {
                    meta.receive_time_ms = Some(unix_to_ms(t, f.len() >= 13));
                }
            }
            _ => {}
        }
    }
}
