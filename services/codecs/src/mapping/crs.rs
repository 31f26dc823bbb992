//! Source coordinate reference systems and reprojection to WGS84 longitude/latitude, with the
//! pure-Rust `proj4rs` crate (a port of proj4js by 3liz).
//!
//! Accepted names (case-insensitive):
//! - WGS84 itself: `EPSG:4326`, `WGS84`, `CRS84`, `OGC:CRS84`, `urn:ogc:def:crs:OGC:1.3:CRS84`,
//!   `urn:ogc:def:crs:EPSG::4326` (no reprojection; a mapping names lon and lat separately, so the
//!   axis order of EPSG:4326 does not matter);
//! - Web Mercator: `EPSG:3857` (also `EPSG:900913`, `EPSG:102100`);
//! - UTM on WGS84: `EPSG:32601`..`EPSG:32660` (north) and `EPSG:32701`..`EPSG:32760` (south);
//! - any proj string starting with `+proj=` that `proj4rs` accepts (it needs no grid files).
//!
//! The EPSG codes are turned into proj strings here rather than through the `crs-definitions`
//! feature, which would compile in thousands of definitions for the three families needed.

use proj4rs::Proj;
use proj4rs::transform::{Transform, TransformClosure, transform};

/// A source CRS, ready to reproject.
#[derive(Debug)]
pub enum Crs {
    /// WGS84 longitude/latitude in degrees: nothing to do.
    Wgs84,
    /// A projected (or other) CRS: reprojected to WGS84.
    Proj {
        /// The name as written in the mapping.
        name: String,
        /// The source projection.
        src: Box<Proj>,
        /// WGS84 longitude/latitude.
        dst: Box<Proj>,
    },
}

/// Why a CRS name is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crs {name:?} is not supported: {problem}")]
pub struct CrsError {
    /// The name as written.
    pub name: String,
    /// Why.
    pub problem: String,
}

const WEB_MERCATOR: &str = "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +no_defs";
const WGS84_LONLAT: &str = "+proj=longlat +datum=WGS84 +no_defs";

struct Pt(f64, f64, f64);

impl Transform for Pt {
    fn transform_coordinates<F: TransformClosure>(&mut self, f: &mut F) -> proj4rs::errors::Result<()> {
        f(self.0, self.1, self.2).map(|(x, y, z)| {
            self.0 = x;
            self.1 = y;
            self.2 = z;
        })
    }
}

fn proj_string_for(name: &str) -> Result<Option<String>, String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.starts_with("+proj=") {
        return Ok(Some(name.trim().to_owned()));
    }
    let code = lower
        .strip_prefix("epsg:")
        .or_else(|| lower.strip_prefix("urn:ogc:def:crs:epsg::"))
        .or_else(|| lower.strip_prefix("http://www.opengis.net/def/crs/epsg/0/"));
    match (lower.as_str(), code) {
        ("wgs84" | "crs84" | "ogc:crs84" | "urn:ogc:def:crs:ogc:1.3:crs84", _) => Ok(None),
        (_, Some(code)) => {
            let n: u32 = code.parse().map_err(|_| format!("{code:?} is not an EPSG code"))?;
            match n {
                4326 => Ok(None),
                3857 | 900_913 | 102_100 => Ok(Some(WEB_MERCATOR.to_owned())),
                32601..=32660 => Ok(Some(format!("+proj=utm +zone={} +datum=WGS84 +units=m +no_defs", n - 32600))),
                32701..=32760 => {
                    Ok(Some(format!("+proj=utm +zone={} +south +datum=WGS84 +units=m +no_defs", n - 32700)))
                }
                _ => Err(format!(
                    "EPSG:{n} is not one of the built-in codes (4326, 3857, 326xx/327xx UTM); give a +proj= string"
                )),
            }
        }
        _ => Err("expected EPSG:<code>, WGS84/CRS84 or a +proj= string".to_owned()),
    }
}

impl Crs {
    /// Resolves a CRS name; `None` means WGS84.
    pub fn parse(name: Option<&str>) -> Result<Crs, CrsError> {
        let Some(name) = name else { return Ok(Crs::Wgs84) };
        let err = |problem: String| CrsError { name: name.to_owned(), problem };
        let Some(def) = proj_string_for(name).map_err(err)? else { return Ok(Crs::Wgs84) };
        let src = Proj::from_proj_string(&def).map_err(|e| err(format!("proj4rs: {e}")))?;
        if !src.has_inverse() {
            return Err(err("the projection has no inverse in proj4rs".to_owned()));
        }
        let dst = Proj::from_proj_string(WGS84_LONLAT).map_err(|e| err(format!("proj4rs: {e}")))?;
        Ok(Crs::Proj { name: name.to_owned(), src: Box::new(src), dst: Box::new(dst) })
    }

    /// Whether coordinates need reprojection.
    pub fn is_wgs84(&self) -> bool {
        matches!(self, Crs::Wgs84)
    }

    /// `(x, y)` in this CRS to WGS84 `(lon, lat)` in degrees. `None` if the point cannot be
    /// reprojected (outside the projection's domain, not finite).
    pub fn to_wgs84(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        match self {
            Crs::Wgs84 => Some((x, y)),
            Crs::Proj { src, dst, .. } => {
                if !(x.is_finite() && y.is_finite()) {
                    return None;
                }
                let mut p = Pt(x, y, 0.0);
                transform(src, dst, &mut p).ok()?;
                let (lon, lat) = (p.0.to_degrees(), p.1.to_degrees());
                (lon.is_finite() && lat.is_finite()).then_some((lon, lat))
            }
        }
    }

    /// WGS84 `(lon, lat)` in degrees to this CRS (the inverse of [`Crs::to_wgs84`]; for tests and
    /// tools).
    pub fn from_wgs84(&self, lon: f64, lat: f64) -> Option<(f64, f64)> {
        match self {
            Crs::Wgs84 => Some((lon, lat)),
            Crs::Proj { src, dst, .. } => {
                let mut p = Pt(lon.to_radians(), lat.to_radians(), 0.0);
                transform(dst, src, &mut p).ok()?;
                (p.0.is_finite() && p.1.is_finite()).then_some((p.0, p.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Web Mercator on the sphere, closed form: an independent computation.
    fn merc(lon: f64, lat: f64) -> (f64, f64) {
        let r = 6_378_137.0_f64;
        (r * lon.to_radians(), r * (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0).tan().ln())
    }

    #[test]
    fn web_mercator_matches_closed_form() {
        let crs = Crs::parse(Some("EPSG:3857")).unwrap();
        for (lon, lat) in [(10.0, 50.0), (-122.4194, 37.7749), (151.2093, -33.8688), (0.0, 0.0), (179.9, 84.0)] {
            let (x, y) = merc(lon, lat);
            let (lo, la) = crs.to_wgs84(x, y).unwrap();
            assert!((lo - lon).abs() < 1e-9 && (la - lat).abs() < 1e-9, "{lon},{lat} -> {lo},{la}");
        }
        // Published value: lon 10, lat 50 is x 1113194.9079327357, y 6446275.841017158.
        let (lo, la) = crs.to_wgs84(1_113_194.907_932_735_7, 6_446_275.841_017_158).unwrap();
        assert!((lo - 10.0).abs() < 1e-9 && (la - 50.0).abs() < 1e-9);
    }

    #[test]
    fn utm_known_points() {
        // The CN Tower, 43°38′33.24″N 79°23′13.7″W, is 630084 E 4833439 N in UTM zone 17 (the
        // worked example of the Wikipedia UTM article; metre resolution).
        let crs = Crs::parse(Some("EPSG:32617")).unwrap();
        let (lon, lat) = crs.to_wgs84(630_084.0, 4_833_439.0).unwrap();
        let (elon, elat) = (-(79.0 + 23.0 / 60.0 + 13.7 / 3600.0), 43.0 + 38.0 / 60.0 + 33.24 / 3600.0);
        assert!((lon - elon).abs() < 2e-5 && (lat - elat).abs() < 2e-5, "{lon},{lat}");
        // The central meridian on the equator is exactly the false easting (and, south, northing).
        let (lon, lat) = Crs::parse(Some("EPSG:32633")).unwrap().to_wgs84(500_000.0, 0.0).unwrap();
        assert!((lon - 15.0).abs() < 1e-9 && lat.abs() < 1e-9);
        let (lon, lat) = Crs::parse(Some("epsg:32756")).unwrap().to_wgs84(500_000.0, 10_000_000.0).unwrap();
        assert!((lon - 153.0).abs() < 1e-9 && lat.abs() < 1e-9);
    }

    #[test]
    fn names() {
        assert!(Crs::parse(None).unwrap().is_wgs84());
        assert!(Crs::parse(Some("EPSG:4326")).unwrap().is_wgs84());
        assert!(Crs::parse(Some("CRS84")).unwrap().is_wgs84());
        assert!(Crs::parse(Some("+proj=utm +zone=32 +datum=WGS84")).is_ok());
        for bad in ["EPSG:2154x", "EPSG:32661", "EPSG:27700", "mercator", "+proj=nonsense"] {
            assert!(Crs::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
