//! Esri JSON features ([`EsriJsonCodec`]): the FeatureSet an ArcGIS REST `query` answers with
//! (`{"geometryType": ..., "spatialReference": {"wkid": ...}, "features": [{"attributes": {...},
//! "geometry": {...}}]}`), or a single feature (`{"attributes": ..., "geometry": ...}`), one per
//! document (an HTTP body, a file, a message).
//!
//! Track, time and attributes come from the feed's mapping, whose paths resolve against each
//! **feature object**: `attributes.OBJECTID`, `attributes.last_update` (Esri date fields are epoch
//! milliseconds: `time_format: unix_ms`), and `geometry.z` or `geometry.m` if wanted. Without a
//! track path an observation is untracked; without a time path its time is the receive time. The
//! position is the feature's own geometry unless the mapping names `lon`/`lat` or a `geometry` path.
//!
//! Geometries (read with serde into typed structs; the coordinate layout follows the geometry's
//! `hasZ`/`hasM`, else the document's, else a third value is z):
//! - point `{"x", "y", "z"?}` → Point (z as third coordinate); `"x": null` or `"NaN"` is an empty
//!   point;
//! - multipoint `{"points"}` → MultiPoint;
//! - polyline `{"paths"}` → LineString (one path) or MultiLineString; a path needs 2 positions;
//! - polygon `{"rings"}` → Polygon or MultiPolygon. Esri marks outer rings by clockwise and holes by
//!   counter-clockwise order and lists them in any order; here every hole goes to the smallest outer
//!   ring that contains it (a hole inside no outer ring becomes an outer ring itself, as GDAL and
//!   Esri's arcgis-to-geojson do) and the rings are rewound to RFC 7946 (outer counter-clockwise,
//!   holes clockwise). A ring needs 4 positions and must be closed. Orientation is taken in the
//!   source coordinates, which every supported projection preserves;
//! - measures (`m`) are not coordinates in GeoJSON and are dropped (map `geometry.m` to keep a
//!   point's); true curves (`curvePaths`, `curveRings`) and envelopes are `unsupported`.
//!
//! Coordinates are reprojected to WGS84 by the mapping's reprojection ([`crate::mapping::Crs`]):
//! from the mapping's `crs` when it names one (the way to read a spatial reference with no built-in
//! definition, e.g. a state plane given only as WKT), else from the geometry's own
//! `spatialReference`, else the document's, else WGS84. A spatial reference is read from
//! `latestWkid`, then `wkid`: 4326 passes through, 3857/102100/900913 and WGS84 UTM (326xx/327xx)
//! are reprojected, any other (or a WKT-only one) is `unsupported` and says how to fix it (set
//! `mapping.crs`, or ask the server for `outSR=4326`).
//!
//! A feature without geometry (a table, `returnGeometry=false`) is rejected with `schema`, unless
//! [`EsriJsonOptions::skip_null_geometry`] counts it as skipped (`NotAPosition`). A payload that
//! is not JSON is `malformed`; an ArcGIS error answer (`{"error": {"code", "message"}}`, sent with
//! HTTP 200) is one `schema` rejection carrying the server's message. Each rejected feature
//! carries itself re-serialised as JSON; one bad feature never fails the rest.

use geostream_model::geojson::{GeometryValue, Position};
use geostream_model::{Mapping, ReasonCode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::doc_common::{check_ring, reject};
use crate::mapping::{CompiledMapping, Crs, Failure, MappingError, kind};

/// Options of the Esri JSON codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EsriJsonOptions {
    /// Count features without (or with an empty) geometry as skipped instead of rejecting them.
    pub skip_null_geometry: bool,
}

/// Esri JSON FeatureSets and features through a mapping, see the module documentation.
#[derive(Debug)]
pub struct EsriJsonCodec {
    mapping: CompiledMapping,
    /// The mapping names a CRS: it overrides every spatial reference in the payloads.
    mapping_crs: bool,
    opts: EsriJsonOptions,
}

impl EsriJsonCodec {
    /// Compiles the mapping (paths resolve against each feature object).
    pub fn new(mapping: &Mapping, opts: EsriJsonOptions) -> Result<Self, MappingError> {
        Ok(EsriJsonCodec { mapping: CompiledMapping::new(mapping)?, mapping_crs: mapping.crs.is_some(), opts })
    }

    /// Replaces the compiled mapping (e.g. to set a different future-time skew).
    pub fn map_mapping(mut self, f: impl FnOnce(CompiledMapping) -> CompiledMapping) -> Self {
        self.mapping = f(self.mapping);
        self
    }

    fn feature(&self, f: &Value, doc: &DocInfo, whole: Option<&[u8]>, ctx: &Context, index: Option<usize>) -> Outcome {
        let raw = || match whole {
            Some(b) => b.to_vec(),
            None => serde_json::to_vec(f).unwrap_or_default(),
        };
        let at = |d: &str| match index {
            Some(i) => format!("feature {i}: {d}"),
            None => d.to_owned(),
        };
        let fail = |e: Failure| reject(ctx, e.reason, at(&e.detail), &raw());
        let Some(obj) = f.as_object() else {
            return reject(ctx, ReasonCode::Schema, at("not an object"), &raw());
        };
        if self.mapping.has_position() {
            return self.mapping.apply(f, ctx).map_or_else(fail, |o| Outcome::Observation(Box::new(o)));
        }
        let parsed = match obj.get("geometry") {
            None | Some(Value::Null) => None,
            Some(g) => match EsriGeometry::deserialize(g) {
                Ok(g) => Some(g),
                Err(e) => return fail(Failure { reason: ReasonCode::Schema, detail: format!("geometry: {e}") }),
            },
        };
        let geometry = match parsed.as_ref().map(|g| g.to_geojson(doc)).transpose() {
            Ok(g) => g.flatten(),
            Err(e) => return fail(e),
        };
        let Some(geometry) = geometry else {
            if self.opts.skip_null_geometry {
                return Outcome::Skipped(Skip::NotAPosition);
            }
            let detail = "feature has no geometry (missing, null or empty); options.skip_null_geometry counts such \
                          features as skipped";
            return reject(ctx, ReasonCode::Schema, at(detail), &raw());
        };
        let own;
        let crs = if self.mapping_crs {
            self.mapping.crs()
        } else {
            match parsed.as_ref().and_then(|g| g.spatial_reference.as_ref()).filter(|sr| sr.is_known()) {
                Some(sr) => match sr.crs() {
                    Ok(c) => {
                        own = c;
                        // `None` is WGS84, which the mapping's CRS is when the mapping names none.
                        own.as_ref().unwrap_or(self.mapping.crs())
                    }
                    Err(e) => return fail(e),
                },
                None => match &doc.crs {
                    DocCrs::Mapping => self.mapping.crs(),
                    DocCrs::Own(c) => c,
                    DocCrs::Bad(e) => return fail(e.clone()),
                },
            }
        };
        self.mapping
            .apply_with_native(f, Some(geometry), crs, ctx)
            .map_or_else(fail, |o| Outcome::Observation(Box::new(o)))
    }
}

impl Codec for EsriJsonCodec {
    fn name(&self) -> &'static str {
        "esri_json"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let doc: Value = match serde_json::from_slice(input) {
            Ok(v) => v,
            Err(e) => return out(reject(ctx, ReasonCode::Malformed, format!("not JSON: {e}"), input)),
        };
        let Some(obj) = doc.as_object() else {
            return out(reject(ctx, ReasonCode::Schema, format!("expected an object, got {}", kind(&doc)), input));
        };
        if let Some(err) = obj.get("error") {
            return out(reject(ctx, ReasonCode::Schema, server_error(err), input));
        }
        let info = match DocInfo::new(obj, self.mapping_crs) {
            Ok(i) => i,
            Err(e) => return out(reject(ctx, e.reason, e.detail, input)),
        };
        match obj.get("features") {
            Some(Value::Array(features)) => {
                for (i, f) in features.iter().enumerate() {
                    out(self.feature(f, &info, None, ctx, Some(i)));
                }
            }
            Some(other) => out(reject(
                ctx,
                ReasonCode::Schema,
                format!("\"features\" is {}, not an array of features", kind(other)),
                input,
            )),
            None if obj.contains_key("geometry") || obj.contains_key("attributes") => {
                out(self.feature(&doc, &info, Some(input), ctx, None));
            }
            None => out(reject(
                ctx,
                ReasonCode::Schema,
                "expected an Esri JSON FeatureSet ({\"features\": [...]}) or a feature ({\"attributes\": {...}, \
                 \"geometry\": {...}}); a bare geometry has to be wrapped as {\"geometry\": ...}"
                    .to_owned(),
                input,
            )),
        }
    }
}

/// The ArcGIS error answer as a message.
fn server_error(err: &Value) -> String {
    let code = err.get("code").map(Value::to_string).unwrap_or_else(|| "?".to_owned());
    let message = err.get("message").and_then(Value::as_str).unwrap_or("(no message)");
    let details = match err.get("details") {
        Some(Value::Array(d)) if !d.is_empty() => {
            format!(" ({})", d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        }
        _ => String::new(),
    };
    format!("the server answered with an error instead of features: code {code}: {message}{details}")
}

/// What a FeatureSet says for all its features.
struct DocInfo {
    crs: DocCrs,
    has_z: Option<bool>,
    has_m: Option<bool>,
}

enum DocCrs {
    /// The mapping's CRS: the document names none (or WGS84), or the mapping's `crs` overrides it.
    Mapping,
    /// The document's spatial reference, a projected one.
    Own(Crs),
    /// A spatial reference that cannot be used; every feature that relies on it is rejected.
    Bad(Failure),
}

impl DocInfo {
    fn new(obj: &serde_json::Map<String, Value>, mapping_crs: bool) -> Result<Self, Failure> {
        let schema =
            |what: &str, e: serde_json::Error| Failure { reason: ReasonCode::Schema, detail: format!("{what}: {e}") };
        let flag = |key: &str| match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => bool::deserialize(v).map(Some).map_err(|e| schema(key, e)),
        };
        let (has_z, has_m) = (flag("hasZ")?, flag("hasM")?);
        let sr = match obj.get("spatialReference") {
            None | Some(Value::Null) => None,
            Some(v) => Some(SpatialReference::deserialize(v).map_err(|e| schema("spatialReference", e))?)
                .filter(SpatialReference::is_known),
        };
        let crs = match sr {
            _ if mapping_crs => DocCrs::Mapping,
            None => DocCrs::Mapping,
            Some(sr) => match sr.crs() {
                Ok(Some(c)) => DocCrs::Own(c),
                Ok(None) => DocCrs::Mapping,
                Err(e) => DocCrs::Bad(e),
            },
        };
        Ok(DocInfo { crs, has_z, has_m })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpatialReference {
    wkid: Option<i64>,
    latest_wkid: Option<i64>,
    wkt: Option<String>,
}

impl SpatialReference {
    /// Whether it says anything: `{}` or `{"wkid": null}` does not, and the next one in line applies.
    fn is_known(&self) -> bool {
        self.wkid.is_some() || self.latest_wkid.is_some() || self.wkt.is_some()
    }

    /// The CRS to reproject from; `Ok(None)` is WGS84.
    fn crs(&self) -> Result<Option<Crs>, Failure> {
        let unsupported = |what: String| Failure {
            reason: ReasonCode::Unsupported,
            detail: format!(
                "{what} has no built-in definition (built in: 4326, 3857/102100/900913, WGS84 UTM 326xx/327xx); \
                 set mapping.crs to its +proj= string, or query with outSR=4326"
            ),
        };
        let Some(code) = self.latest_wkid.or(self.wkid) else {
            return Err(unsupported("a spatialReference given only as WKT".to_owned()));
        };
        let name = format!("EPSG:{code}");
        let described = match (self.wkid, self.latest_wkid) {
            (Some(w), Some(l)) if w != l => format!("spatialReference wkid {w} (latestWkid {l})"),
            _ => format!("spatialReference wkid {code}"),
        };
        match Crs::parse(Some(&name)) {
            Ok(c) if c.is_wgs84() => Ok(None),
            Ok(c) => Ok(Some(c)),
            Err(_) => Err(unsupported(described)),
        }
    }
}

/// An Esri x or y: a number, or `"NaN"`/`null` for an empty point.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Coord {
    Number(f64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EsriGeometry {
    x: Option<Coord>,
    y: Option<Coord>,
    z: Option<f64>,
    points: Option<Vec<Vec<Option<f64>>>>,
    paths: Option<Vec<Vec<Vec<Option<f64>>>>>,
    rings: Option<Vec<Vec<Vec<Option<f64>>>>>,
    curve_paths: Option<IgnoredAny>,
    curve_rings: Option<IgnoredAny>,
    xmin: Option<IgnoredAny>,
    has_z: Option<bool>,
    has_m: Option<bool>,
    spatial_reference: Option<SpatialReference>,
}

fn schema(detail: impl Into<String>) -> Failure {
    Failure { reason: ReasonCode::Schema, detail: detail.into() }
}

impl EsriGeometry {
    /// The geometry in GeoJSON terms, still in its source coordinates; `None` when it is empty.
    fn to_geojson(&self, doc: &DocInfo) -> Result<Option<GeometryValue>, Failure> {
        if self.curve_paths.is_some() || self.curve_rings.is_some() {
            return Err(Failure {
                reason: ReasonCode::Unsupported,
                detail: "true curves (curvePaths/curveRings) are not decoded; query with returnTrueCurves=false"
                    .to_owned(),
            });
        }
        let has_z = self.has_z.or(doc.has_z);
        let has_m = self.has_m.or(doc.has_m);
        let pos = |p: &[Option<f64>], what: &dyn Fn() -> String| {
            position(p, has_z, has_m).map_err(|e| schema(format!("{}: {e}", what())))
        };
        if let Some(points) = &self.points {
            let coords = points
                .iter()
                .enumerate()
                .map(|(i, p)| pos(p, &|| format!("points[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((!coords.is_empty()).then_some(GeometryValue::MultiPoint { coordinates: coords }));
        }
        if let Some(paths) = &self.paths {
            let mut lines = Vec::with_capacity(paths.len());
            for (i, path) in paths.iter().enumerate() {
                let line = path
                    .iter()
                    .enumerate()
                    .map(|(j, p)| pos(p, &|| format!("paths[{i}][{j}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if line.len() < 2 {
                    return Err(schema(format!("paths[{i}] has {} positions, at least 2 needed", line.len())));
                }
                lines.push(line);
            }
            return Ok(match lines.len() {
                0 => None,
                1 => lines.pop().map(|coordinates| GeometryValue::LineString { coordinates }),
                _ => Some(GeometryValue::MultiLineString { coordinates: lines }),
            });
        }
        if let Some(rings) = &self.rings {
            let mut out = Vec::with_capacity(rings.len());
            for (i, ring) in rings.iter().enumerate() {
                let r = ring.iter().enumerate().map(|(j, p)| pos(p, &|| format!("rings[{i}][{j}]"))).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?;
                check_ring(&r).map_err(|e| schema(format!("rings[{i}] {e}")))?;
                out.push(r);
            }
            return Ok(polygons(out));
        }
        if self.x.is_some() || self.y.is_some() {
            let num = |c: &Option<Coord>, name: &str| match c {
                None => Ok(None),
                Some(Coord::Number(n)) => Ok(Some(*n)),
                Some(Coord::Text(t)) if t.eq_ignore_ascii_case("nan") => Ok(None),
                Some(Coord::Text(t)) => Err(schema(format!("{name} is the text {t:?}, not a number"))),
            };
            return Ok(match (num(&self.x, "x")?, num(&self.y, "y")?) {
                (Some(x), Some(y)) => {
                    let coordinates = match self.z.filter(|_| has_z != Some(false)) {
                        Some(z) => Position::from([x, y, z]),
                        None => Position::from([x, y]),
                    };
                    Some(GeometryValue::Point { coordinates })
                }
                (None, None) => None,
                _ => return Err(schema("a point has x or y but not both")),
            });
        }
        if self.xmin.is_some() {
            return Err(Failure {
                reason: ReasonCode::Unsupported,
                detail: "an envelope (xmin/ymin/xmax/ymax) is not a feature geometry".to_owned(),
            });
        }
        // `{}` is how ArcGIS writes an empty geometry of any type.
        Ok(None)
    }
}

/// One Esri coordinate array as a GeoJSON position: `[x, y]` plus z when there is one. The third
/// value is z unless the geometry says it has m and no z.
fn position(p: &[Option<f64>], has_z: Option<bool>, has_m: Option<bool>) -> Result<Position, String> {
    let (Some(Some(x)), Some(Some(y))) = (p.first(), p.get(1)) else {
        return Err(format!("{} value(s); x and y must be numbers", p.len()));
    };
    let z_present = match (has_z, has_m) {
        (Some(z), _) => z,
        (None, Some(true)) => false,
        (None, _) => true,
    };
    Ok(match p.get(2).copied().flatten().filter(|_| z_present) {
        Some(z) => Position::from([*x, *y, z]),
        None => Position::from([*x, *y]),
    })
}

/// Twice the signed area of a ring (shoelace); positive for counter-clockwise rings with y up.
fn signed_area2(ring: &[Position]) -> f64 {
    ring.windows(2).map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1]).sum()
}

/// Whether (x, y) lies strictly inside `ring` (even-odd rule); `None` when it is on the boundary.
fn inside(ring: &[Position], x: f64, y: f64) -> Option<bool> {
    let mut inside = false;
    for w in ring.windows(2) {
        let (x1, y1, x2, y2) = (w[0][0], w[0][1], w[1][0], w[1][1]);
        let cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1);
        let within = x >= x1.min(x2) && x <= x1.max(x2) && y >= y1.min(y2) && y <= y1.max(y2);
        if cross == 0.0 && within {
            return None;
        }
        if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
            inside = !inside;
        }
    }
    Some(inside)
}

/// Whether `hole` lies in `outer`: decided by its first vertex that is not on `outer`'s boundary
/// (rings that share vertices are common); a hole entirely on the boundary counts as inside.
fn contains(outer: &[Position], hole: &[Position]) -> bool {
    hole.iter().find_map(|p| inside(outer, p[0], p[1])).unwrap_or(true)
}

/// Esri rings (outer clockwise, holes counter-clockwise, any order) as a GeoJSON Polygon or
/// MultiPolygon with RFC 7946 winding; `None` when there are no rings.
fn polygons(rings: Vec<Vec<Position>>) -> Option<GeometryValue> {
    // A zero-area (degenerate) ring has no orientation; it is kept as an outer ring.
    let (mut outers, mut holes): (Vec<_>, Vec<_>) = rings.into_iter().partition(|r| signed_area2(r) <= 0.0);
    let mut polys: Vec<Vec<Vec<Position>>> = outers
        .iter_mut()
        .map(|r| {
            r.reverse();
            vec![r.clone()]
        })
        .collect();
    let areas: Vec<f64> = outers.iter().map(|r| signed_area2(r).abs()).collect();
    for hole in holes.iter_mut() {
        let owner =
            (0..outers.len()).filter(|&i| contains(&outers[i], hole)).min_by(|&a, &b| areas[a].total_cmp(&areas[b]));
        match owner {
            Some(i) => {
                hole.reverse();
                polys[i].push(std::mem::take(hole));
            }
            // Already counter-clockwise, as a GeoJSON outer ring must be.
            None => polys.push(vec![std::mem::take(hole)]),
        }
    }
    match polys.len() {
        0 => None,
        1 => polys.pop().map(|coordinates| GeometryValue::Polygon { coordinates }),
        _ => Some(GeometryValue::MultiPolygon { coordinates: polys }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ring(pts: &[(f64, f64)]) -> Vec<Position> {
        pts.iter().map(|&(x, y)| Position::from([x, y])).collect()
    }

    #[test]
    fn winding_and_hole_assignment() {
        // Outer clockwise (Esri), hole counter-clockwise inside it, and a second outer elsewhere.
        let outer = ring(&[(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0), (0.0, 0.0)]);
        let hole = ring(&[(2.0, 2.0), (4.0, 2.0), (4.0, 4.0), (2.0, 4.0), (2.0, 2.0)]);
        let other = ring(&[(20.0, 0.0), (20.0, 1.0), (21.0, 1.0), (21.0, 0.0), (20.0, 0.0)]);
        assert!(signed_area2(&outer) < 0.0 && signed_area2(&hole) > 0.0);
        let Some(GeometryValue::MultiPolygon { coordinates }) = polygons(vec![hole.clone(), outer, other]) else {
            panic!()
        };
        assert_eq!(coordinates.len(), 2);
        assert_eq!(coordinates[0].len(), 2, "the hole listed first still goes to its outer ring");
        assert!(signed_area2(&coordinates[0][0]) > 0.0, "outer rings counter-clockwise");
        assert!(signed_area2(&coordinates[0][1]) < 0.0, "holes clockwise");
        assert_eq!(coordinates[1].len(), 1);
        // A lone counter-clockwise ring is an outer ring, as it is.
        let Some(GeometryValue::Polygon { coordinates }) = polygons(vec![hole.clone()]) else { panic!() };
        assert_eq!(coordinates, vec![hole]);
    }

    #[test]
    fn nested_island_goes_to_the_smallest_outer_ring() {
        let big = ring(&[(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0), (0.0, 0.0)]);
        let big_hole = ring(&[(1.0, 1.0), (9.0, 1.0), (9.0, 9.0), (1.0, 9.0), (1.0, 1.0)]);
        let island = ring(&[(3.0, 3.0), (3.0, 7.0), (7.0, 7.0), (7.0, 3.0), (3.0, 3.0)]);
        let island_hole = ring(&[(4.0, 4.0), (6.0, 4.0), (6.0, 6.0), (4.0, 6.0), (4.0, 4.0)]);
        let Some(GeometryValue::MultiPolygon { coordinates }) =
            polygons(vec![big, big_hole, island, island_hole.clone()])
        else {
            panic!()
        };
        assert_eq!(coordinates.len(), 2);
        assert_eq!(coordinates[1].len(), 2);
        let mut expected = island_hole;
        expected.reverse();
        assert_eq!(coordinates[1][1], expected);
    }

    #[test]
    fn layouts() {
        let p = [Some(1.0), Some(2.0), Some(3.0), Some(4.0)];
        assert_eq!(position(&p, Some(true), Some(true)).unwrap().as_slice(), &[1.0, 2.0, 3.0]);
        assert_eq!(position(&p[..3], None, Some(true)).unwrap().as_slice(), &[1.0, 2.0], "x, y, m");
        assert_eq!(position(&p[..3], None, None).unwrap().as_slice(), &[1.0, 2.0, 3.0]);
        assert_eq!(position(&p[..3], Some(false), None).unwrap().as_slice(), &[1.0, 2.0]);
        assert!(position(&[Some(1.0), None], None, None).is_err());
        assert!(position(&[Some(1.0)], None, None).is_err());
    }

    #[test]
    fn boundary_points_do_not_decide() {
        let outer = ring(&[(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0), (0.0, 0.0)]);
        assert_eq!(inside(&outer, 0.0, 5.0), None);
        assert_eq!(inside(&outer, 5.0, 5.0), Some(true));
        assert_eq!(inside(&outer, 15.0, 5.0), Some(false));
        // A hole touching the outer ring at its first vertex is decided by the next one.
        let hole = ring(&[(0.0, 5.0), (2.0, 6.0), (2.0, 4.0), (0.0, 5.0)]);
        assert!(contains(&outer, &hole));
    }
}
