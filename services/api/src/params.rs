//! Query parameters: parsed and checked here, so handlers only see valid values and every bad
//! value becomes a 400 naming the parameter and the fix.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use serde_json::Value;

use crate::problem::ApiError;

/// A WGS84 bounding box. `west > east` crosses the antimeridian (allowed, as in OGC API).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// Minimum longitude.
    pub west: f64,
    /// Minimum latitude.
    pub south: f64,
    /// Maximum longitude.
    pub east: f64,
    /// Maximum latitude.
    pub north: f64,
}

const BBOX_FIX: &str = "give four numbers minLon,minLat,maxLon,maxLat in WGS84 degrees, e.g. bbox=5.0,52.0,6.0,53.0";

impl Bbox {
    /// Parses `minLon,minLat,maxLon,maxLat` (the OGC 2D form).
    pub fn parse(raw: &str) -> Result<Bbox, ApiError> {
        let bad = |problem: String| ApiError::param("bbox", problem, BBOX_FIX);
        let nums: Vec<&str> = raw.split(',').map(str::trim).collect();
        if nums.len() != 4 {
            return Err(bad(format!("{raw:?} has {} values, not 4", nums.len())));
        }
        let mut v = [0.0f64; 4];
        for (slot, s) in v.iter_mut().zip(&nums) {
            *slot =
                s.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| bad(format!("{s:?} is not a number")))?;
        }
        let [west, south, east, north] = v;
        for lon in [west, east] {
            if !(-180.0..=180.0).contains(&lon) {
                return Err(bad(format!("longitude {lon} is outside -180..180")));
            }
        }
        for lat in [south, north] {
            if !(-90.0..=90.0).contains(&lat) {
                return Err(bad(format!("latitude {lat} is outside -90..90")));
            }
        }
        if south > north {
            return Err(bad(format!(
                "minLat {south} is greater than maxLat {north} (the order is minLon,minLat,maxLon,maxLat)"
            )));
        }
        Ok(Bbox { west, south, east, north })
    }

    /// Whether a point lies inside (edges included), antimeridian-aware.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let lon_ok = if self.west <= self.east {
            lon >= self.west && lon <= self.east
        } else {
            lon >= self.west || lon <= self.east
        };
        lon_ok && lat >= self.south && lat <= self.north
    }
}

/// Parses an RFC 3339 time parameter.
pub fn time(name: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|e| {
        ApiError::param(name, format!("{raw:?} is not an RFC 3339 time ({e})"), "use e.g. 2024-05-01T12:00:00Z")
    })
}

/// An optional time range; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub start: Option<OffsetDateTime>,
    /// Inclusive end.
    pub end: Option<OffsetDateTime>,
}

impl TimeRange {
    /// From `start`/`end` parameters.
    pub fn from_params(start: Option<&str>, end: Option<&str>) -> Result<TimeRange, ApiError> {
        let r = TimeRange {
            start: start.map(|s| time("start", s)).transpose()?,
            end: end.map(|s| time("end", s)).transpose()?,
        };
        if let (Some(s), Some(e)) = (r.start, r.end)
            && s > e
        {
            return Err(ApiError::param("end", "is before start", "give an end at or after start"));
        }
        Ok(r)
    }

    /// From the OGC `datetime` parameter: an instant, or `start/end` with `..` (or nothing) for an open end.
    pub fn from_datetime(raw: &str) -> Result<TimeRange, ApiError> {
        let fix = "use an RFC 3339 instant or an interval such as 2024-05-01T00:00:00Z/.. or ../2024-05-02T00:00:00Z";
        let end_of = |s: &str| -> Result<Option<OffsetDateTime>, ApiError> {
            match s.trim() {
                "" | ".." => Ok(None),
                t => OffsetDateTime::parse(t, &Rfc3339)
                    .map(Some)
                    .map_err(|e| ApiError::param("datetime", format!("{t:?} is not an RFC 3339 time ({e})"), fix)),
            }
        };
        let r = match raw.split_once('/') {
            None => {
                let t = end_of(raw)?.ok_or_else(|| ApiError::param("datetime", "is empty", fix))?;
                TimeRange { start: Some(t), end: Some(t) }
            }
            Some((a, b)) => {
                if b.contains('/') {
                    return Err(ApiError::param("datetime", "has more than one '/'", fix));
                }
                TimeRange { start: end_of(a)?, end: end_of(b)? }
            }
        };
        if let (Some(s), Some(e)) = (r.start, r.end)
            && s > e
        {
            return Err(ApiError::param("datetime", "the interval ends before it starts", fix));
        }
        Ok(r)
    }
}

/// Parses `limit`, defaulting to `default` and refusing values outside `1..=max`.
pub fn limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::param(
            "limit",
            format!("{raw:?} is not a whole number from 1 to {max}"),
            format!("e.g. limit={default}"),
        )),
    }
}

/// `true`/`false`.
pub fn flag(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::param(name, format!("{other:?} is not a boolean"), "use true or false")),
    }
}

/// A paging cursor: the sort values of the last item returned (the engine's `search_after`),
/// opaque to clients (base64url of the JSON array).
pub fn encode_cursor(sort: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(sort).unwrap_or_default())
}

/// Reads a cursor made by [`encode_cursor`]; `expected` sort values per item.
pub fn decode_cursor(raw: &str, expected: usize) -> Result<Vec<Value>, ApiError> {
    let bad = || {
        ApiError::param(
            "cursor",
            "is not a cursor this API issued",
            "follow the `next` link as given, or start again without cursor",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let v: Vec<Value> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v.len() != expected || v.iter().any(|x| x.is_array() || x.is_object()) {
        return Err(bad());
    }
    Ok(v)
}

/// A keyword filter value (feed, track, kind, analytic): non-empty, bounded.
pub fn keyword(name: &str, raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > 512 => Err(ApiError::param(
            name,
            "is empty or longer than 512 bytes",
            format!("give one {name} id, or leave {name} out"),
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::macros::datetime;
    use serde_json::json;

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidParameter { parameter, .. } => parameter,
            other => panic!("not a parameter error: {other:?}"),
        }
    }

    #[test]
    fn bboxes() {
        assert_eq!(Bbox::parse("5,52,6,53").unwrap(), Bbox { west: 5.0, south: 52.0, east: 6.0, north: 53.0 });
        assert_eq!(Bbox::parse(" -180 , -90, 180 ,90").unwrap().north, 90.0);
        for bad in ["", "1,2,3", "1,2,3,4,5", "a,2,3,4", "1,2,3,NaN", "1,2,3,inf", "-181,0,0,1", "0,-91,1,1", "0,5,1,4"]
        {
            let e = Bbox::parse(bad).unwrap_err();
            assert_eq!(param_of(e.clone()), "bbox", "{bad}");
            assert!(e.to_string().contains("minLon,minLat,maxLon,maxLat"), "the fix is named: {e}");
        }
        let across = Bbox::parse("170,-10,-170,10").unwrap();
        assert!(across.contains(175.0, 0.0) && across.contains(-175.0, 0.0) && !across.contains(0.0, 0.0));
        let b = Bbox::parse("0,0,1,1").unwrap();
        assert!(b.contains(0.0, 0.0) && b.contains(1.0, 1.0) && !b.contains(1.0001, 0.5) && !b.contains(0.5, -0.1));
    }

    #[test]
    fn times_and_ranges() {
        let r = TimeRange::from_params(Some("2024-05-01T00:00:00Z"), None).unwrap();
        assert_eq!(r, TimeRange { start: Some(datetime!(2024-05-01 00:00 UTC)), end: None });
        assert_eq!(param_of(TimeRange::from_params(Some("yesterday"), None).unwrap_err()), "start");
        assert_eq!(param_of(TimeRange::from_params(None, Some("2024-13-01T00:00:00Z")).unwrap_err()), "end");
        assert_eq!(
            param_of(TimeRange::from_params(Some("2024-05-02T00:00:00Z"), Some("2024-05-01T00:00:00Z")).unwrap_err()),
            "end"
        );
        let i = TimeRange::from_datetime("2024-05-01T00:00:00Z").unwrap();
        assert_eq!(i.start, i.end);
        assert_eq!(TimeRange::from_datetime("../2024-05-01T00:00:00Z").unwrap().start, None);
        assert_eq!(TimeRange::from_datetime("2024-05-01T00:00:00Z/").unwrap().end, None);
        assert_eq!(TimeRange::from_datetime("../..").unwrap(), TimeRange::default());
        for bad in ["", "x", "a/b", "2024-05-02T00:00:00Z/2024-05-01T00:00:00Z", "../../.."] {
            assert_eq!(param_of(TimeRange::from_datetime(bad).unwrap_err()), "datetime", "{bad}");
        }
    }

    #[test]
    fn limits_flags_keywords() {
        assert_eq!(limit(None, 10, 100).unwrap(), 10);
        assert_eq!(limit(Some("100"), 10, 100).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(param_of(limit(Some(bad), 10, 100).unwrap_err()), "limit");
        }
        assert!(flag("include_retracted", Some("true")).unwrap());
        assert!(!flag("include_retracted", None).unwrap());
        assert_eq!(param_of(flag("include_retracted", Some("yes")).unwrap_err()), "include_retracted");
        assert_eq!(keyword("feed", Some("ais")).unwrap().as_deref(), Some("ais"));
        assert_eq!(param_of(keyword("feed", Some("")).unwrap_err()), "feed");
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let sort = vec![json!(1714560000000i64), json!("abc")];
        let c = encode_cursor(&sort);
        assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'), "{c}");
        assert_eq!(decode_cursor(&c, 2).unwrap(), sort);
        assert_eq!(param_of(decode_cursor(&c, 3).unwrap_err()), "cursor");
        assert_eq!(param_of(decode_cursor("!!", 2).unwrap_err()), "cursor");
        let nested = encode_cursor(&[json!({"a": 1}), json!(1)]);
        assert_eq!(param_of(decode_cursor(&nested, 2).unwrap_err()), "cursor");
    }
}
