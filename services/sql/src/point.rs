//! The point value of the SQL functions: OGC WKB (2D Point, 21 bytes), and GeoJSON text read
//! wherever a point is expected so the `geometry` column works without a conversion.
//!
//! WKB rather than GeoJSON text as the value `st_point` returns: fixed size, no float printing or
//! parsing per row, and any Arrow or GIS tool reads it.

use geostream_model::geojson::{Geometry, GeometryValue};

/// Length of a 2D WKB Point.
pub(crate) const WKB_POINT_LEN: usize = 21;
const WKB_POINT: u32 = 1;

/// Little-endian 2D WKB Point.
pub(crate) fn wkb_point(lon: f64, lat: f64) -> [u8; WKB_POINT_LEN] {
    let mut b = [0u8; WKB_POINT_LEN];
    b[0] = 1;
    b[1..5].copy_from_slice(&WKB_POINT.to_le_bytes());
    b[5..13].copy_from_slice(&lon.to_le_bytes());
    b[13..21].copy_from_slice(&lat.to_le_bytes());
    b
}

/// What a point argument holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Parsed {
    /// Longitude, latitude.
    Point(f64, f64),
    /// Well-formed, but not a Point (a LineString observation, say): functions answer null, like
    /// the `lon`/`lat` columns.
    NotAPoint,
}

/// Reads a WKB Point (either byte order); bytes that start with `{` are taken as GeoJSON text,
/// since DataFusion may have coerced a text argument to binary.
pub(crate) fn from_bytes(b: &[u8]) -> Result<Parsed, String> {
    if b.first() == Some(&b'{') {
        let s = std::str::from_utf8(b).map_err(|e| format!("is neither WKB nor UTF-8 GeoJSON: {e}"))?;
        return from_geojson(s);
    }
    let (order, rest) = b.split_first().ok_or("is empty, not a WKB point")?;
    let u32_at = |bytes: &[u8]| -> Option<u32> {
        let a: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(if *order == 0 { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    };
    let f64_at = |bytes: &[u8]| -> Option<f64> {
        let a: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(if *order == 0 { f64::from_be_bytes(a) } else { f64::from_le_bytes(a) })
    };
    if *order > 1 {
        return Err(format!("is not WKB (byte order marker {order}, expected 0 or 1)"));
    }
    let kind = u32_at(rest).ok_or("is too short for WKB")?;
    if kind != WKB_POINT {
        // Other WKB geometry types are well-formed values, just not points.
        return if (2..=7).contains(&kind) {
            Ok(Parsed::NotAPoint)
        } else {
            Err(format!("is WKB of type {kind}; only 2D geometries (Point is 1) are supported"))
        };
    }
    if b.len() != WKB_POINT_LEN {
        return Err(format!("is a WKB point of {} bytes, expected {WKB_POINT_LEN}", b.len()));
    }
    match (f64_at(&b[5..]), f64_at(&b[13..])) {
        (Some(x), Some(y)) => Ok(Parsed::Point(x, y)),
        _ => Err("is too short for a WKB point".into()),
    }
}

/// Reads GeoJSON geometry text.
pub(crate) fn from_geojson(s: &str) -> Result<Parsed, String> {
    let g: Geometry = s.parse().map_err(|e| format!("is not GeoJSON geometry text: {e}"))?;
    Ok(match &g.value {
        GeometryValue::Point { coordinates } if coordinates.len() >= 2 => Parsed::Point(coordinates[0], coordinates[1]),
        _ => Parsed::NotAPoint,
    })
}

/// A GeoJSON Point geometry, for the aggregate.
pub(crate) fn geometry(lon: f64, lat: f64) -> Geometry {
    Geometry::new(GeometryValue::new_point([lon, lat]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_round_trips_and_reads_big_endian() {
        let b = wkb_point(10.5, -63.25);
        assert_eq!(from_bytes(&b), Ok(Parsed::Point(10.5, -63.25)));
        let mut be = vec![0u8];
        be.extend_from_slice(&1u32.to_be_bytes());
        be.extend_from_slice(&10.5f64.to_be_bytes());
        be.extend_from_slice(&(-63.25f64).to_be_bytes());
        assert_eq!(from_bytes(&be), Ok(Parsed::Point(10.5, -63.25)));
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let whole = wkb_point(1.0, 2.0);
        let mut long = whole.to_vec();
        long.push(0);
        for bad in [&b""[..], &[1], &[1, 1, 0, 0, 0], &[7, 1, 0, 0, 0], &[1, 99, 0, 0, 0], &whole[..20], &long[..]] {
            assert!(from_bytes(bad).is_err(), "{bad:?}");
        }
        let line = [1u8, 2, 0, 0, 0];
        assert_eq!(from_bytes(&line), Ok(Parsed::NotAPoint));
    }

    #[test]
    fn geojson_text_is_read() {
        assert_eq!(from_geojson(r#"{"type":"Point","coordinates":[1.5,2.5]}"#), Ok(Parsed::Point(1.5, 2.5)));
        assert_eq!(from_bytes(br#"{"type":"Point","coordinates":[1.5,2.5]}"#), Ok(Parsed::Point(1.5, 2.5)));
        assert_eq!(from_geojson(r#"{"type":"LineString","coordinates":[[1,2],[3,4]]}"#), Ok(Parsed::NotAPoint));
        assert!(from_geojson("POINT(1 2)").is_err());
    }
}
