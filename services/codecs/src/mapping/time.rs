//! Event-time parsing for mapped fields.

use geostream_model::TimeFormat;
use geostream_model::time::format_description::OwnedFormatItem;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::time::{OffsetDateTime, PrimitiveDateTime};
use serde_json::Value;

/// A compiled [`TimeFormat`] plus the zone for local times.
#[derive(Debug, Clone)]
pub struct TimeParser {
    kind: Kind,
    zone: Option<jiff::tz::TimeZone>,
}

#[derive(Debug, Clone)]
enum Kind {
    Rfc3339,
    /// Seconds since the epoch times 10^-exp: 0 = s, 3 = ms, 6 = us, 9 = ns.
    Epoch(u32),
    Custom {
        desc: OwnedFormatItem,
        has_offset: bool,
    },
}

impl TimeParser {
    /// Compiles a format and an optional IANA time zone (used for custom formats without an
    /// offset; UTC when none is given).
    pub fn new(format: &TimeFormat, zone: Option<&str>) -> Result<Self, String> {
        let kind = match format {
            TimeFormat::Rfc3339 => Kind::Rfc3339,
            TimeFormat::UnixS => Kind::Epoch(0),
            TimeFormat::UnixMs => Kind::Epoch(3),
            TimeFormat::UnixUs => Kind::Epoch(6),
            TimeFormat::UnixNs => Kind::Epoch(9),
            TimeFormat::Custom(d) => {
                let desc = geostream_model::time::format_description::parse_owned::<2>(d)
                    .map_err(|e| format!("time_format {d:?} is not a time format description: {e}"))?;
                Kind::Custom { desc, has_offset: d.contains("[offset") }
            }
        };
        let zone = match zone {
            None => None,
            Some(z) => Some(
                jiff::tz::TimeZone::get(z)
                    .map_err(|e| format!("time_zone {z:?} is not a known IANA time zone: {e}"))?,
            ),
        };
        Ok(TimeParser { kind, zone })
    }

    /// Parses a JSON value (number or string) as an event time.
    pub fn parse(&self, v: &Value) -> Result<OffsetDateTime, String> {
        match &self.kind {
            Kind::Rfc3339 => {
                let s = v.as_str().ok_or_else(|| format!("expected an RFC 3339 string, found {}", short(v)))?;
                OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|e| format!("{s:?} is not RFC 3339: {e}"))
            }
            Kind::Epoch(exp) => {
                // Integers (the usual case) scale exactly as `epoch_nanos` would scale their decimal
                // text, without formatting and re-parsing it.
                if let Value::Number(n) = v
                    && let Some(i) = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
                {
                    return OffsetDateTime::from_unix_timestamp_nanos(i * 10_i128.pow(9 - exp))
                        .map_err(|_| format!("epoch value {n} is outside the representable time range"));
                }
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.trim().to_owned(),
                    other => return Err(format!("expected an epoch number, found {}", short(other))),
                };
                let nanos = epoch_nanos(&text, *exp).ok_or_else(|| format!("{text:?} is not an epoch number"))?;
                OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .map_err(|_| format!("epoch value {text} is outside the representable time range"))
            }
            Kind::Custom { desc, has_offset } => {
                let s = v.as_str().ok_or_else(|| format!("expected a time string, found {}", short(v)))?;
                let s = s.trim();
                if *has_offset {
                    return OffsetDateTime::parse(s, desc).map_err(|e| format!("{s:?} does not match the format: {e}"));
                }
                let local =
                    PrimitiveDateTime::parse(s, desc).map_err(|e| format!("{s:?} does not match the format: {e}"))?;
                match &self.zone {
                    None => Ok(local.assume_utc()),
                    Some(tz) => in_zone(local, tz),
                }
            }
        }
    }
}

/// A local date-time in `tz` to UTC. In a DST gap or overlap jiff's "compatible" rule applies (the
/// later instant in a gap, the earlier in an overlap), as RFC 5545 and Temporal do.
fn in_zone(local: PrimitiveDateTime, tz: &jiff::tz::TimeZone) -> Result<OffsetDateTime, String> {
    let civil = jiff::civil::DateTime::new(
        i16::try_from(local.year()).map_err(|_| "year out of range".to_owned())?,
        u8::from(local.month()) as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        local.nanosecond() as i32,
    )
    .map_err(|e| format!("local time {local} is out of range: {e}"))?;
    let ts = tz.to_timestamp(civil).map_err(|e| format!("local time {local} cannot be placed in the zone: {e}"))?;
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond())
        .map_err(|_| format!("local time {local} is outside the representable time range"))
}

/// Parses a decimal number (optionally signed, with a fraction or an exponent) scaled by
/// 10^-`exp` seconds into nanoseconds, exactly where the text allows.
fn epoch_nanos(text: &str, exp: u32) -> Option<i128> {
    let unit_ns: i128 = 10_i128.pow(9 - exp);
    if text.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        let ns = f * unit_ns as f64;
        return (ns.is_finite() && ns.abs() < 1e30).then(|| ns.round() as i128);
    }
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 30
    {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ns = whole.checked_mul(unit_ns)?;
    // Fraction digits up to nanosecond resolution; finer digits are truncated.
    let digits = (9 - exp) as usize;
    let mut scale = unit_ns;
    for b in frac.bytes().take(digits) {
        scale /= 10;
        ns = ns.checked_add(i128::from(b - b'0') * scale)?;
    }
    Some(if neg { -ns } else { ns })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 { format!("{}...", s.chars().take(40).collect::<String>()) } else { s }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn p(f: TimeFormat, v: Value) -> Result<OffsetDateTime, String> {
        TimeParser::new(&f, None).unwrap().parse(&v)
    }

    #[test]
    fn epochs() {
        let t = p(TimeFormat::UnixMs, json!(1517966773840_i64)).unwrap();
        assert_eq!(t.unix_timestamp_nanos(), 1_517_966_773_840_000_000);
        assert_eq!(p(TimeFormat::UnixS, json!(1.5)).unwrap().unix_timestamp_nanos(), 1_500_000_000);
        assert_eq!(
            p(TimeFormat::UnixS, json!("1633611601.25")).unwrap().unix_timestamp_nanos(),
            1_633_611_601_250_000_000
        );
        assert_eq!(p(TimeFormat::UnixUs, json!("-1")).unwrap().unix_timestamp_nanos(), -1000);
        assert_eq!(p(TimeFormat::UnixNs, json!(7)).unwrap().unix_timestamp_nanos(), 7);
        assert_eq!(p(TimeFormat::UnixS, json!(1.5e9)).unwrap().unix_timestamp(), 1_500_000_000);
        for bad in [json!("x"), json!(""), json!("."), json!("1.2.3"), json!(true), json!(null), json!("1e400")] {
            assert!(p(TimeFormat::UnixS, bad.clone()).is_err(), "{bad}");
        }
        assert!(p(TimeFormat::UnixS, json!(1e300)).is_err());
    }

    #[test]
    fn rfc3339_and_custom() {
        let t = p(TimeFormat::Rfc3339, json!("2021-10-07T13:00:01Z")).unwrap();
        assert_eq!(t.unix_timestamp(), 1_633_611_601);
        assert!(p(TimeFormat::Rfc3339, json!("2021-10-07 13:00:01")).is_err());
        let f = TimeFormat::Custom("[year]-[month]-[day] [hour]:[minute]:[second]".into());
        assert_eq!(p(f.clone(), json!("2021-10-07 13:00:01")).unwrap().unix_timestamp(), 1_633_611_601);
        // Europe/Paris is UTC+2 in October (CEST).
        let tp = TimeParser::new(&f, Some("Europe/Paris")).unwrap();
        assert_eq!(tp.parse(&json!("2021-10-07 15:00:01")).unwrap().unix_timestamp(), 1_633_611_601);
        // ... and UTC+1 in January.
        assert_eq!(tp.parse(&json!("2021-01-07 14:00:00")).unwrap().unix_timestamp(), 1_610_024_400);
        let fo = TimeFormat::Custom(
            "[day]/[month]/[year] [hour]:[minute] [offset_hour sign:mandatory]:[offset_minute]".into(),
        );
        assert_eq!(p(fo, json!("07/10/2021 15:00 +02:00")).unwrap().unix_timestamp(), 1_633_611_600);
        assert!(TimeParser::new(&TimeFormat::Custom("[nonsense".into()), None).is_err());
        assert!(TimeParser::new(&TimeFormat::Rfc3339, Some("Mars/Olympus")).is_err());
    }
}
