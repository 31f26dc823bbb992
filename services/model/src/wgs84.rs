//! Coordinate checks shared by observations, events, aggregates and fences.

use geojson::{Geometry, GeometryValue, Position};

use crate::error::ModelError;

/// Where in a geometry something is wrong, and what.
pub(crate) struct GeoProblem {
    pub(crate) location: String,
    pub(crate) problem: String,
}

impl GeoProblem {
    fn at(location: String, problem: impl Into<String>) -> Self {
        GeoProblem { location, problem: problem.into() }
    }

    pub(crate) fn into_error(self, subject: String) -> ModelError {
        ModelError::InvalidGeometry { subject, location: self.location, problem: self.problem }
    }
}

/// A WGS84 position: `[lon, lat]` or `[lon, lat, alt]`, finite, lon in [-180, 180], lat in
/// [-90, 90].
pub(crate) fn check_position(p: &Position) -> Result<(), String> {
    let c = p.as_slice();
    if c.len() < 2 {
        return Err(format!("position has {} number(s); it needs at least longitude and latitude", c.len()));
    }
    if let Some(i) = c.iter().position(|v| !v.is_finite()) {
        let name = ["longitude", "latitude", "altitude"].get(i).unwrap_or(&"coordinate");
        return Err(format!("{name} is {}, coordinates must be finite numbers", c[i]));
    }
    if !(-180.0..=180.0).contains(&c[0]) {
        return Err(format!("longitude {} is outside [-180, 180]", c[0]));
    }
    if !(-90.0..=90.0).contains(&c[1]) {
        return Err(format!("latitude {} is outside [-90, 90] (are longitude and latitude swapped?)", c[1]));
    }
    Ok(())
}

fn check_positions(ps: &[Position], loc: &str) -> Result<(), GeoProblem> {
    if ps.is_empty() {
        return Err(GeoProblem::at(loc.to_owned(), "has no positions"));
    }
    for (i, p) in ps.iter().enumerate() {
        check_position(p).map_err(|e| GeoProblem::at(format!("{loc} position {i}"), e))?;
    }
    Ok(())
}

fn check_parts(parts: &[Vec<Position>], loc: &str, part: &str) -> Result<(), GeoProblem> {
    if parts.is_empty() {
        return Err(GeoProblem::at(loc.to_owned(), format!("has no {part}s")));
    }
    for (i, ps) in parts.iter().enumerate() {
        check_positions(ps, &format!("{loc} {part} {i},"))?;
    }
    Ok(())
}

/// Every position of `g` is a valid WGS84 position and no part is empty.
pub(crate) fn check_geometry(g: &Geometry) -> Result<(), GeoProblem> {
    check_value(&g.value, "")
}

fn check_value(v: &GeometryValue, loc: &str) -> Result<(), GeoProblem> {
    match v {
        GeometryValue::Point { coordinates } => {
            check_position(coordinates).map_err(|e| GeoProblem::at(loc.to_owned(), e))
        }
        GeometryValue::MultiPoint { coordinates } | GeometryValue::LineString { coordinates } => {
            check_positions(coordinates, loc)
        }
        GeometryValue::MultiLineString { coordinates } => check_parts(coordinates, loc, "line"),
        GeometryValue::Polygon { coordinates } => check_parts(coordinates, loc, "ring"),
        GeometryValue::MultiPolygon { coordinates } => {
            if coordinates.is_empty() {
                return Err(GeoProblem::at(loc.to_owned(), "has no polygons"));
            }
            for (i, rings) in coordinates.iter().enumerate() {
                check_parts(rings, &format!("{loc} polygon {i},"), "ring")?;
            }
            Ok(())
        }
        GeometryValue::GeometryCollection { geometries } => {
            if geometries.is_empty() {
                return Err(GeoProblem::at(loc.to_owned(), "has no geometries"));
            }
            for (i, g) in geometries.iter().enumerate() {
                check_value(&g.value, &format!("{loc} geometry {i},"))?;
            }
            Ok(())
        }
    }
    .map_err(tidy)
}

/// Location strings are built with trailing commas for nesting; drop the dangling one.
fn tidy(mut p: GeoProblem) -> GeoProblem {
    if p.location.ends_with(',') {
        p.location.pop();
    }
    p
}
