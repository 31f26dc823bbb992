//! Fence specs: named areas the geofence analytics test tracks against. Stored on
//! `<tenant>.fences`, written by the api and the operator, read by the processor.

use geojson::{Geometry, GeometryValue, Position};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::ids::FenceId;
use crate::wgs84::check_position;

/// Largest circle radius: half the Earth's circumference; anything larger covers the globe.
pub const MAX_RADIUS_M: f64 = 20_037_508.0;

/// Most positions in one fence's rings, all polygons together. Every processor holds every fence
/// and tests observations against its edges; a million positions is far beyond port limits or
/// detailed country borders and still small enough for that.
pub const MAX_FENCE_POSITIONS: usize = 1_000_000;

/// Most fences one tenant may register. Every processor of the tenant holds all of them in its
/// index and rebuilds it on every change; 100,000 is ten times the largest set benchmarked
/// (`scripts/bench.sh`, geofence) and far beyond real port, zone or country sets.
pub const MAX_FENCES_PER_TENANT: usize = 100_000;

/// The area of a fence: a GeoJSON Polygon or MultiPolygon, or a circle.
///
/// On the wire it is the GeoJSON geometry object itself, or
/// `{"type":"Circle","center":[lon,lat],"radius_m":500}` (circles are not GeoJSON, but "within
/// 500 m of the berth" is the most common fence and approximating it by a polygon loses meaning).
#[derive(Debug, Clone, PartialEq)]
pub enum FenceShape {
    /// A Polygon or MultiPolygon (other types fail validation).
    Geometry(Geometry),
    /// All points within `radius_m` metres (great-circle) of `center`.
    Circle {
        /// `[lon, lat]` in WGS84.
        center: [f64; 2],
        /// Radius in metres, positive and at most [`MAX_RADIUS_M`].
        radius_m: f64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircleWire {
    #[serde(rename = "type")]
    tag: CircleTag,
    center: [f64; 2],
    radius_m: f64,
}

#[derive(Serialize, Deserialize)]
enum CircleTag {
    Circle,
}

impl Serialize for FenceShape {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FenceShape::Geometry(g) => g.serialize(s),
            FenceShape::Circle { center, radius_m } => {
                CircleWire { tag: CircleTag::Circle, center: *center, radius_m: *radius_m }.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for FenceShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Specs are small and rare; buffering lets us dispatch on "type" with clear errors.
        let v = Value::deserialize(d)?;
        match v.get("type").and_then(Value::as_str) {
            Some("Circle") => {
                let c: CircleWire = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(FenceShape::Circle { center: c.center, radius_m: c.radius_m })
            }
            Some("Polygon" | "MultiPolygon") => {
                let g: Geometry = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(FenceShape::Geometry(g))
            }
            Some(other) => Err(D::Error::custom(format_args!(
                "fence geometry must be a Polygon, MultiPolygon or Circle, not {other:?}"
            ))),
            None => Err(D::Error::custom("fence geometry needs a \"type\": Polygon, MultiPolygon or Circle")),
        }
    }
}

fn yes() -> bool {
    true
}

/// A fence: an area with an id, a version and free properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceSpec {
    /// The fence's id, unique within the tenant.
    pub id: FenceId,
    /// Spec version, raised on every change; events name the version they were computed with.
    #[serde(default)]
    pub version: u64,
    /// Human-readable name.
    pub name: String,
    /// The area.
    pub geometry: FenceShape,
    /// Free properties, copied to events if the analytic asks for them.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Disabled fences stay registered but are not evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Why a GeoJSON FeatureCollection does not give fences.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceCollectionError {
    /// The document has no `features` list.
    #[error("a FeatureCollection needs a `features` list")]
    NotACollection,
    /// One feature (by position) cannot be a fence.
    #[error("feature {index}: {problem}")]
    Feature {
        /// Position in `features`, from 0.
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
}

impl FenceSpec {
    /// The fences of a GeoJSON FeatureCollection, as `geostream fences apply` and `analyze
    /// --fences` read a file: the id from `properties.id` (else the feature's `id`), the name from
    /// `properties.name` (else the id), the other properties kept; Polygons and MultiPolygons only.
    /// Shapes are parsed, not validated (see [`FenceSpec::validate`]).
    pub fn from_feature_collection(doc: &Value) -> Result<Vec<FenceSpec>, FenceCollectionError> {
        let features = doc.get("features").and_then(Value::as_array).ok_or(FenceCollectionError::NotACollection)?;
        let mut out = Vec::with_capacity(features.len());
        for (index, f) in features.iter().enumerate() {
            let bad = |problem: String| FenceCollectionError::Feature { index, problem };
            let props = f.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            let text = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let id = props
                .get("id")
                .and_then(text)
                .or_else(|| f.get("id").and_then(text))
                .ok_or_else(|| bad("has no fence id: give it `properties.id` or a feature `id`".into()))?;
            let fence_id = FenceId::new(id.as_str()).map_err(|e| bad(format!("fence id {id:?}: {e}")))?;
            let name = props.get("name").and_then(text).unwrap_or_else(|| id.clone());
            let geometry = f.get("geometry").cloned().unwrap_or(Value::Null);
            let kind = geometry.get("type").and_then(Value::as_str).unwrap_or("none");
            if !matches!(kind, "Polygon" | "MultiPolygon") {
                return Err(bad(format!("fence {id:?} has geometry {kind}; fences are Polygons or MultiPolygons")));
            }
            let geometry: FenceShape =
                serde_json::from_value(geometry).map_err(|e| bad(format!("fence {id:?}: geometry: {e}")))?;
            let mut properties = props;
            properties.remove("id");
            properties.remove("name");
            out.push(FenceSpec { id: fence_id, version: 0, name, geometry, properties, enabled: true });
        }
        Ok(out)
    }

    /// Checks the name and the shape: Polygon/MultiPolygon rings closed with at least 4
    /// positions, coordinates finite and in range; circle centre in range and radius positive.
    /// Messages name the fence and the polygon, ring and position.
    pub fn validate(&self) -> Result<(), ModelError> {
        let subject = format!("fence {:?}", self.id.as_str());
        if self.name.trim().is_empty() {
            return Err(ModelError::InvalidField {
                subject,
                field: "name".into(),
                problem: "must not be empty".into(),
            });
        }
        let geo_err = |location: String, problem: String| ModelError::InvalidGeometry {
            subject: subject.clone(),
            location,
            problem,
        };
        if let FenceShape::Geometry(g) = &self.geometry {
            let positions: usize = match &g.value {
                GeometryValue::Polygon { coordinates } => coordinates.iter().map(Vec::len).sum(),
                GeometryValue::MultiPolygon { coordinates } => coordinates.iter().flatten().map(Vec::len).sum(),
                _ => 0,
            };
            if positions > MAX_FENCE_POSITIONS {
                return Err(geo_err(
                    String::new(),
                    format!(
                        "has {positions} positions, the limit is {MAX_FENCE_POSITIONS}; simplify it (e.g. \
                         `ogr2ogr -simplify`) or split it into several fences"
                    ),
                ));
            }
        }
        match &self.geometry {
            FenceShape::Circle { center, radius_m } => {
                check_position(&Position::from(*center)).map_err(|p| geo_err(" center".into(), p))?;
                if !(radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= MAX_RADIUS_M) {
                    return Err(geo_err(
                        " radius_m".into(),
                        format!("is {radius_m}; it must be a number above 0 and at most {MAX_RADIUS_M} m"),
                    ));
                }
            }
            FenceShape::Geometry(g) => match &g.value {
                GeometryValue::Polygon { coordinates } => {
                    check_polygon(coordinates, "").map_err(|(l, p)| geo_err(l, p))?;
                }
                GeometryValue::MultiPolygon { coordinates } => {
                    if coordinates.is_empty() {
                        return Err(geo_err(String::new(), "MultiPolygon has no polygons".into()));
                    }
                    for (i, poly) in coordinates.iter().enumerate() {
                        check_polygon(poly, &format!(" polygon {i},")).map_err(|(l, p)| geo_err(l, p))?;
                    }
                }
                other => {
                    return Err(geo_err(
                        String::new(),
                        format!("is a {}; fences must be a Polygon, MultiPolygon or Circle", other.type_name()),
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Ring rules from RFC 7946 §3.1.6: a linear ring is closed and has at least four positions.
fn check_polygon(rings: &[Vec<Position>], loc: &str) -> Result<(), (String, String)> {
    if rings.is_empty() {
        return Err((loc.trim_end_matches(',').to_owned(), "polygon has no rings".into()));
    }
    for (r, ring) in rings.iter().enumerate() {
        let ring_loc = format!("{loc} ring {r}");
        if ring.len() < 4 {
            return Err((
                ring_loc,
                format!("has {} positions; a ring needs at least 4 (a triangle plus the closing position)", ring.len()),
            ));
        }
        for (i, p) in ring.iter().enumerate() {
            check_position(p).map_err(|e| (format!("{ring_loc}, position {i}"), e))?;
        }
        let (first, last) = (&ring[0], &ring[ring.len() - 1]);
        if first.as_slice() != last.as_slice() {
            return Err((
                ring_loc,
                format!(
                    "is not closed: the first position {:?} differs from the last {:?}",
                    first.as_slice(),
                    last.as_slice()
                ),
            ));
        }
    }
    Ok(())
}
