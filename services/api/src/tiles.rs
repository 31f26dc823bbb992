//! Mapbox Vector Tiles (spec 2.1) of GeoJSON features: tile addressing, Web Mercator projection
//! into tile coordinates (extent 4096), clipping to the tile plus a buffer, and properties. Pure:
//! the handler fetches the features through the same queries as the JSON endpoints and hands
//! them here. The protobuf encoding is geozero's MVT writer, driven with coordinates already in
//! tile space, because its own scaling is linear in the input and Web Mercator is not linear in
//! latitude.
//!
//! Geometries: Point and MultiPoint (kept when inside the buffered tile), Polygon and
//! MultiPolygon (each ring clipped to the buffered tile, exterior rings wound clockwise in tile
//! coordinates and holes the other way, as the spec asks). Lines are left out: neither layer
//! (latest positions, aggregate bins) has them.

use geozero::mvt::{Message, MvtWriter, Tile, tile};
use geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};
use serde_json::Value;

use crate::params::Bbox;
use crate::problem::ApiError;

/// Tile coordinate units per tile edge (the spec's usual value).
pub const EXTENT: u32 = 4096;

/// Units around the tile that features are kept in, so symbols and outlines that straddle an
/// edge are drawn whole on both sides.
pub const BUFFER: u32 = 64;

/// Deepest zoom served: beyond it a tile is narrower than the engines' geo_point precision.
pub const MAX_ZOOM: u8 = 24;

/// Web Mercator's latitude limit: the projection is square there.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// A tile address (XYZ scheme, y from the north).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileId {
    /// Zoom.
    pub z: u8,
    /// Column, from the antimeridian eastwards.
    pub x: u32,
    /// Row, from the north.
    pub y: u32,
}

/// The layers served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// The newest position of each track.
    Latest,
    /// Aggregate bins, shards summed.
    Aggregates,
}

impl LayerKind {
    /// From the URL segment.
    pub fn from_id(id: &str) -> Result<LayerKind, ApiError> {
        match id {
            "latest" => Ok(LayerKind::Latest),
            "aggregates" => Ok(LayerKind::Aggregates),
            other => Err(ApiError::NotFound(format!("no tile layer {other:?}; the layers are latest and aggregates"))),
        }
    }

    /// The layer's name inside the tile (what a style's `source-layer` names).
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Latest => "latest",
            LayerKind::Aggregates => "aggregates",
        }
    }
}

fn bad_tile(problem: String) -> ApiError {
    ApiError::param("tile", problem, format!("use /{{z}}/{{x}}/{{y}}.mvt with z in 0..={MAX_ZOOM} and x, y below 2^z"))
}

impl TileId {
    /// Parses the three path segments; the last one carries the `.mvt` suffix.
    pub fn parse(z: &str, x: &str, y_mvt: &str) -> Result<TileId, ApiError> {
        let y = y_mvt.strip_suffix(".mvt").ok_or_else(|| bad_tile(format!("{y_mvt:?} does not end in .mvt")))?;
        let num = |name: &str, s: &str| {
            s.parse::<u32>().map_err(|_| bad_tile(format!("{name} {s:?} is not a non-negative integer")))
        };
        let z = num("z", z)?;
        if z > u32::from(MAX_ZOOM) {
            return Err(bad_tile(format!("zoom {z} is above {MAX_ZOOM}")));
        }
        let (x, y) = (num("x", x)?, num("y", y)?);
        let n = 1u64 << z;
        if u64::from(x) >= n || u64::from(y) >= n {
            return Err(bad_tile(format!("tile {x}/{y} does not exist at zoom {z} (both must be below {n})")));
        }
        Ok(TileId { z: z as u8, x, y })
    }

    fn n(self) -> f64 {
        f64::from(1u32 << self.z.min(31))
    }

    /// The tile's WGS84 bounds, optionally grown by `buffer` tile units on each side (cut at the
    /// edges of the world, so the box never wraps).
    pub fn bounds(self, buffer: u32) -> Bbox {
        let n = self.n();
        let b = f64::from(buffer) / f64::from(EXTENT);
        let wx0 = (f64::from(self.x) - b).max(0.0);
        let wx1 = (f64::from(self.x) + 1.0 + b).min(n);
        let wy0 = (f64::from(self.y) - b).max(0.0);
        let wy1 = (f64::from(self.y) + 1.0 + b).min(n);
        Bbox { west: world_lon(wx0, n), east: world_lon(wx1, n), north: world_lat(wy0, n), south: world_lat(wy1, n) }
    }

    /// The box to ask the engine for: the tile and its buffer. At the top and bottom rows it
    /// reaches the poles, so points beyond Web Mercator's limit are still found (and drawn at
    /// the edge).
    pub fn query_bbox(self) -> Bbox {
        let mut b = self.bounds(BUFFER);
        if self.y == 0 {
            b.north = 90.0;
        }
        if u64::from(self.y) + 1 == 1u64 << self.z {
            b.south = -90.0;
        }
        b
    }

    /// A WGS84 position in this tile's coordinates (0..EXTENT inside, y downwards).
    pub fn project(self, lon: f64, lat: f64) -> (f64, f64) {
        let n = self.n();
        let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
        let wx = (lon + 180.0) / 360.0 * n;
        let wy = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
        let e = f64::from(EXTENT);
        ((wx - f64::from(self.x)) * e, (wy - f64::from(self.y)) * e)
    }
}

fn world_lon(wx: f64, n: f64) -> f64 {
    wx / n * 360.0 - 180.0
}

fn world_lat(wy: f64, n: f64) -> f64 {
    (std::f64::consts::PI * (1.0 - 2.0 * wy / n)).sinh().atan().to_degrees()
}

/// Why a tile could not be encoded (a bug or an unencodable value, never the client's fault).
#[derive(Debug, thiserror::Error)]
#[error("vector tile: {0}")]
pub struct TileError(String);

impl From<geozero::error::GeozeroError> for TileError {
    fn from(e: geozero::error::GeozeroError) -> Self {
        TileError(e.to_string())
    }
}

impl From<TileError> for ApiError {
    fn from(e: TileError) -> Self {
        ApiError::Upstream(e.to_string())
    }
}

/// A geometry in integer tile coordinates, clipped and ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum TileGeometry {
    /// One or more points.
    Points(Vec<[i32; 2]>),
    /// Polygons: each a list of closed rings (first and last position equal), exterior first.
    Polygons(Vec<Vec<Vec<[i32; 2]>>>),
}

fn coords(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?))
}

/// Twice the signed area in tile coordinates (y down): positive is clockwise on screen.
fn area2(ring: &[[i32; 2]]) -> i64 {
    ring.windows(2).map(|w| i64::from(w[0][0]) * i64::from(w[1][1]) - i64::from(w[1][0]) * i64::from(w[0][1])).sum()
}

/// Clips a ring (open, projected) to the square `lo..=hi` on both axes (Sutherland–Hodgman: the
/// square is convex, so one pass per edge is exact; a concave ring may keep zero-width slivers
/// along the edge, which render as nothing).
fn clip_ring(ring: &[(f64, f64)], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    type Inside = fn((f64, f64), f64) -> bool;
    type Cross = fn((f64, f64), (f64, f64), f64) -> (f64, f64);
    let at_x: Cross = |a, b, c| (c, a.1 + (b.1 - a.1) * (c - a.0) / (b.0 - a.0));
    let at_y: Cross = |a, b, c| (a.0 + (b.0 - a.0) * (c - a.1) / (b.1 - a.1), c);
    let edges: [(Inside, Cross, f64); 4] = [
        (|p, c| p.0 >= c, at_x, lo),
        (|p, c| p.0 <= c, at_x, hi),
        (|p, c| p.1 >= c, at_y, lo),
        (|p, c| p.1 <= c, at_y, hi),
    ];
    let mut out = ring.to_vec();
    for (inside, cross, c) in edges {
        let input = std::mem::take(&mut out);
        let Some(&last) = input.last() else { break };
        let mut prev = last;
        for &cur in &input {
            match (inside(cur, c), inside(prev, c)) {
                (true, true) => out.push(cur),
                (true, false) => {
                    out.push(cross(prev, cur, c));
                    out.push(cur);
                }
                (false, true) => out.push(cross(prev, cur, c)),
                (false, false) => {}
            }
            prev = cur;
        }
    }
    out
}

fn ring_in_tile(tile: TileId, ring: &Value, exterior: bool) -> Option<Vec<[i32; 2]>> {
    let mut pts: Vec<(f64, f64)> =
        ring.as_array()?.iter().filter_map(coords).map(|(lon, lat)| tile.project(lon, lat)).collect();
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    let (lo, hi) = (-f64::from(BUFFER), f64::from(EXTENT + BUFFER));
    let clipped = clip_ring(&pts, lo, hi);
    let mut out: Vec<[i32; 2]> = Vec::with_capacity(clipped.len() + 1);
    for (x, y) in clipped {
        let p = [x.round() as i32, y.round() as i32];
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    while out.len() > 1 && out.first() == out.last() {
        out.pop();
    }
    if out.len() < 3 {
        return None;
    }
    let first = out[0];
    out.push(first);
    let a = area2(&out);
    if a == 0 {
        return None;
    }
    // Exterior rings clockwise (positive), holes counter-clockwise, whatever the input's winding.
    if (a > 0) != exterior {
        out.reverse();
    }
    Some(out)
}

fn polygon_in_tile(tile: TileId, rings: &Value) -> Option<Vec<Vec<[i32; 2]>>> {
    let rings = rings.as_array()?;
    let exterior = ring_in_tile(tile, rings.first()?, true)?;
    let mut out = vec![exterior];
    out.extend(rings.iter().skip(1).filter_map(|r| ring_in_tile(tile, r, false)));
    Some(out)
}

/// A GeoJSON geometry in `tile`'s coordinates, clipped to the tile and its buffer; `None` when
/// nothing of it falls there or its type is not encoded (lines, collections).
pub fn tile_geometry(tile: TileId, geometry: &Value) -> Option<TileGeometry> {
    let c = geometry.get("coordinates")?;
    let (lo, hi) = (-f64::from(BUFFER), f64::from(EXTENT + BUFFER));
    let point = |v: &Value| {
        let (lon, lat) = coords(v)?;
        let (x, y) = tile.project(lon, lat);
        ((lo..=hi).contains(&x) && (lo..=hi).contains(&y)).then(|| [x.round() as i32, y.round() as i32])
    };
    let geom = match geometry.get("type")?.as_str()? {
        "Point" => TileGeometry::Points(point(c).into_iter().collect()),
        "MultiPoint" => TileGeometry::Points(c.as_array()?.iter().filter_map(point).collect()),
        "Polygon" => TileGeometry::Polygons(polygon_in_tile(tile, c).into_iter().collect()),
        "MultiPolygon" => {
            TileGeometry::Polygons(c.as_array()?.iter().filter_map(|p| polygon_in_tile(tile, p)).collect())
        }
        _ => return None,
    };
    match &geom {
        TileGeometry::Points(p) if p.is_empty() => None,
        TileGeometry::Polygons(p) if p.is_empty() => None,
        _ => Some(geom),
    }
}

/// A feature's properties as tile tags: scalars as they are, one level of nested objects
/// flattened to `outer.inner` (an aggregate's `window.start`), arrays and deeper values as JSON
/// text, nulls left out. The feature id becomes the `id` property: MVT ids are integers and ours
/// are strings.
pub fn tags(feature: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(id) = feature.get("id").filter(|v| !v.is_null()) {
        out.push(("id".to_owned(), id.clone()));
    }
    let Some(props) = feature.get("properties").and_then(Value::as_object) else { return out };
    for (k, v) in props {
        match v {
            Value::Null => {}
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    match iv {
                        Value::Null => {}
                        Value::Object(_) | Value::Array(_) => {
                            out.push((format!("{k}.{ik}"), Value::String(iv.to_string())))
                        }
                        _ => out.push((format!("{k}.{ik}"), iv.clone())),
                    }
                }
            }
            Value::Array(_) => out.push((k.clone(), Value::String(v.to_string()))),
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

fn write_property(w: &mut MvtWriter, i: usize, key: &str, v: &Value) -> Result<(), TileError> {
    let text;
    let cv = match v {
        Value::Bool(b) => ColumnValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ColumnValue::Long(i),
            (None, Some(u), _) => ColumnValue::ULong(u),
            (_, _, Some(f)) => ColumnValue::Double(f),
            _ => return Ok(()),
        },
        Value::String(s) => ColumnValue::String(s),
        other => {
            text = other.to_string();
            ColumnValue::String(&text)
        }
    };
    w.property(i, key, &cv)?;
    Ok(())
}

fn write_geometry(w: &mut MvtWriter, g: &TileGeometry) -> Result<(), TileError> {
    let xy = |w: &mut MvtWriter, p: [i32; 2], i: usize| w.xy(f64::from(p[0]), f64::from(p[1]), i);
    match g {
        TileGeometry::Points(pts) if pts.len() == 1 => {
            w.point_begin(0)?;
            xy(w, pts[0], 0)?;
            w.point_end(0)?;
        }
        TileGeometry::Points(pts) => {
            w.multipoint_begin(pts.len(), 0)?;
            for (i, p) in pts.iter().enumerate() {
                xy(w, *p, i)?;
            }
            w.multipoint_end(0)?;
        }
        TileGeometry::Polygons(polys) => {
            let multi = polys.len() > 1;
            if multi {
                w.multipolygon_begin(polys.len(), 0)?;
            }
            for (pi, rings) in polys.iter().enumerate() {
                w.polygon_begin(!multi, rings.len(), pi)?;
                for (ri, ring) in rings.iter().enumerate() {
                    w.linestring_begin(false, ring.len(), ri)?;
                    for (i, p) in ring.iter().enumerate() {
                        xy(w, *p, i)?;
                    }
                    w.linestring_end(false, ri)?;
                }
                w.polygon_end(!multi, pi)?;
            }
            if multi {
                w.multipolygon_end(0)?;
            }
        }
    }
    Ok(())
}

/// One layer of `features` (GeoJSON Features) in `tile`; features with nothing in the tile are
/// left out. Returns the layer and how many features it holds.
pub fn layer(tile: TileId, name: &str, features: &[Value]) -> Result<(tile::Layer, usize), TileError> {
    let mut w = MvtWriter::new_unscaled(EXTENT)?;
    let mut n = 0usize;
    for f in features {
        let Some(g) = f.get("geometry").and_then(|g| tile_geometry(tile, g)) else { continue };
        w.feature_begin(n as u64)?;
        w.properties_begin()?;
        for (i, (k, v)) in tags(f).iter().enumerate() {
            write_property(&mut w, i, k, v)?;
        }
        w.properties_end()?;
        w.geometry_begin()?;
        write_geometry(&mut w, &g)?;
        w.geometry_end()?;
        w.feature_end(n as u64)?;
        n += 1;
    }
    Ok((w.layer(name), n))
}

/// A whole tile of named layers, protobuf-encoded. Empty layers are left out (an empty tile is
/// valid and zero bytes long).
pub fn encode(tile: TileId, layers: &[(&str, &[Value])]) -> Result<Vec<u8>, TileError> {
    let mut t = Tile::default();
    for (name, features) in layers {
        let (l, n) = layer(tile, name, features)?;
        if n > 0 {
            t.layers.push(l);
        }
    }
    Ok(t.encode_to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geozero::mvt::tile::GeomType;
    use serde_json::json;

    /// Collects decoded geometry as rings/points of integer tile coordinates.
    #[derive(Default)]
    struct Collect {
        parts: Vec<Vec<[i32; 2]>>,
    }

    impl GeomProcessor for Collect {
        fn xy(&mut self, x: f64, y: f64, _idx: usize) -> geozero::error::Result<()> {
            if self.parts.is_empty() {
                self.parts.push(Vec::new());
            }
            self.parts.last_mut().unwrap().push([x as i32, y as i32]);
            Ok(())
        }
        fn point_begin(&mut self, _idx: usize) -> geozero::error::Result<()> {
            self.parts.push(Vec::new());
            Ok(())
        }
        fn linestring_begin(&mut self, _t: bool, _n: usize, _idx: usize) -> geozero::error::Result<()> {
            self.parts.push(Vec::new());
            Ok(())
        }
    }

    /// A decoded feature: its type, its points or rings, its properties as text.
    type DecodedFeature = (GeomType, Vec<Vec<[i32; 2]>>, Vec<(String, String)>);

    struct Decoded {
        name: String,
        extent: u32,
        features: Vec<DecodedFeature>,
    }

    fn decode(bytes: &[u8]) -> Vec<Decoded> {
        let t = Tile::decode(bytes).unwrap();
        t.layers
            .iter()
            .map(|l| Decoded {
                name: l.name.clone(),
                extent: l.extent.unwrap(),
                features: l
                    .features
                    .iter()
                    .map(|f| {
                        let mut c = Collect::default();
                        geozero::mvt::process_geom(f, &mut c).unwrap();
                        let props = f
                            .tags
                            .chunks(2)
                            .map(|kv| {
                                let v = &l.values[kv[1] as usize];
                                let s = v
                                    .string_value
                                    .clone()
                                    .or(v.int_value.map(|i| i.to_string()))
                                    .or(v.sint_value.map(|i| i.to_string()))
                                    .or(v.uint_value.map(|i| i.to_string()))
                                    .or(v.double_value.map(|d| d.to_string()))
                                    .or(v.bool_value.map(|b| b.to_string()))
                                    .unwrap();
                                (l.keys[kv[0] as usize].clone(), s)
                            })
                            .collect();
                        (f.r#type(), c.parts, props)
                    })
                    .collect(),
            })
            .collect()
    }

    fn tid(z: u8, x: u32, y: u32) -> TileId {
        TileId { z, x, y }
    }

    #[test]
    fn tile_addresses_are_checked() {
        assert_eq!(TileId::parse("3", "4", "5.mvt").unwrap(), tid(3, 4, 5));
        assert_eq!(TileId::parse("0", "0", "0.mvt").unwrap(), tid(0, 0, 0));
        for (z, x, y) in [
            ("3", "8", "0.mvt"),
            ("3", "0", "8.mvt"),
            ("25", "0", "0.mvt"),
            ("3", "1", "1.png"),
            ("3", "1", "1"),
            ("-1", "0", "0.mvt"),
            ("a", "0", "0.mvt"),
            ("3", "1.5", "1.mvt"),
        ] {
            match TileId::parse(z, x, y) {
                Err(ApiError::InvalidParameter { parameter, .. }) => assert_eq!(parameter, "tile"),
                other => panic!("{z}/{x}/{y}: {other:?}"),
            }
        }
        assert!(matches!(LayerKind::from_id("roads"), Err(ApiError::NotFound(_))));
        assert_eq!(LayerKind::from_id("aggregates").unwrap().name(), "aggregates");
        assert_eq!(LayerKind::from_id("latest").unwrap(), LayerKind::Latest);
    }

    #[test]
    fn bounds_follow_web_mercator() {
        let world = tid(0, 0, 0).bounds(0);
        assert_eq!((world.west, world.east), (-180.0, 180.0));
        assert!((world.north - MAX_LAT).abs() < 1e-9 && (world.south + MAX_LAT).abs() < 1e-9);
        // Zoom 1: four quadrants meeting at (0, 0).
        let ne = tid(1, 1, 0).bounds(0);
        assert_eq!((ne.west, ne.east), (0.0, 180.0));
        assert!(ne.south.abs() < 1e-9 && (ne.north - MAX_LAT).abs() < 1e-9);
        // A buffer grows the box but never past the world's edge.
        let b = tid(1, 1, 0).bounds(BUFFER);
        assert!(b.west < 0.0 && b.east == 180.0 && b.south < 0.0 && b.north == ne.north);
        // The engine query reaches the poles on the top and bottom rows only.
        assert_eq!(tid(1, 1, 0).query_bbox().north, 90.0);
        assert!(tid(1, 1, 0).query_bbox().south > -90.0);
        assert_eq!(tid(1, 1, 1).query_bbox().south, -90.0);
        assert!(tid(2, 1, 1).query_bbox().north < 90.0);
    }

    #[test]
    fn projection_lands_in_the_tile_that_bounds_the_point() {
        // A known tile: Oslo at zoom 10 is 10/542/297.
        let t = tid(10, 542, 297);
        let (x, y) = t.project(10.75, 59.91);
        assert!((0.0..4096.0).contains(&x) && (0.0..4096.0).contains(&y), "{x} {y}");
        let b = t.bounds(0);
        assert!(b.contains(10.75, 59.91));
        // Corners project to the tile's corners.
        let (x0, y0) = t.project(b.west, b.north);
        let (x1, y1) = t.project(b.east, b.south);
        assert!(x0.abs() < 1e-6 && y0.abs() < 1e-6 && (x1 - 4096.0).abs() < 1e-6 && (y1 - 4096.0).abs() < 1e-6);
        // Latitudes past the projection's limit stick to the edge instead of going infinite.
        let (_, top) = tid(0, 0, 0).project(0.0, 90.0);
        assert_eq!(top.round(), 0.0);
    }

    #[test]
    fn points_in_the_tile_and_buffer_are_kept_and_decode_back() {
        let t = tid(10, 542, 297);
        let b = t.bounds(0);
        let inside = json!({"type": "Feature", "id": "v1/1", "geometry": {"type": "Point", "coordinates": [10.75, 59.91]},
            "properties": {"track": "v1", "speed": 3.5, "count": 7, "moored": false, "feed": "ais", "nothing": null,
                "window": {"start": "2024-01-01T00:00:00Z", "end": null}, "list": [1, 2]}});
        let outside = json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [12.0, 59.91]}, "properties": {"track": "far"}});
        // Just across the east edge: in the buffer, so kept, with x beyond the extent.
        let edge_lon = b.east + (b.east - b.west) * 0.5 * f64::from(BUFFER) / 4096.0;
        let buffered = json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [edge_lon, 59.91]}, "properties": {"track": "edge"}});
        let no_geometry = json!({"type": "Feature", "geometry": null, "properties": {"track": "none"}});
        let bytes = encode(t, &[("latest", &[inside, outside, buffered, no_geometry]), ("empty", &[])]).unwrap();
        let layers = decode(&bytes);
        assert_eq!(layers.len(), 1, "empty layers are left out");
        let l = &layers[0];
        assert_eq!((l.name.as_str(), l.extent), ("latest", 4096));
        assert_eq!(l.features.len(), 2);
        let (kind, parts, props) = &l.features[0];
        assert_eq!(*kind, GeomType::Point);
        let (x, y) = t.project(10.75, 59.91);
        assert_eq!(parts, &vec![vec![[x.round() as i32, y.round() as i32]]]);
        let get = |k: &str| props.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        assert_eq!(get("id"), Some("v1/1"));
        assert_eq!(get("track"), Some("v1"));
        assert_eq!(get("speed"), Some("3.5"));
        assert_eq!(get("count"), Some("7"));
        assert_eq!(get("moored"), Some("false"));
        assert_eq!(get("window.start"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(get("window.end"), None);
        assert_eq!(get("nothing"), None);
        assert_eq!(get("list"), Some("[1,2]"));
        let (_, parts, props) = &l.features[1];
        assert!(parts[0][0][0] > 4096 && parts[0][0][0] <= 4096 + BUFFER as i32, "{parts:?}");
        assert_eq!(props, &vec![("track".to_owned(), "edge".to_owned())]);
        // Nothing at all in the tile: an empty (zero-byte) tile.
        assert!(
            encode(
                tid(10, 0, 0),
                &[("latest", &[json!({"geometry": {"type": "Point", "coordinates": [10.75, 59.91]}})])]
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn multipoints_keep_only_their_points_in_the_tile() {
        let t = tid(1, 1, 0);
        let g = json!({"type": "MultiPoint", "coordinates": [[10.0, 10.0], [-100.0, 10.0], [100.0, 60.0]]});
        let TileGeometry::Points(p) = tile_geometry(t, &g).unwrap() else { panic!() };
        assert_eq!(p.len(), 2);
        let bytes = encode(t, &[("p", &[json!({"geometry": g})])]).unwrap();
        let l = &decode(&bytes)[0];
        assert_eq!(l.features[0].0, GeomType::Point);
        assert_eq!(l.features[0].1.concat(), p);
        assert!(tile_geometry(t, &json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})).is_none());
        assert!(tile_geometry(t, &json!({"type": "Point"})).is_none());
    }

    #[test]
    fn polygons_are_clipped_wound_and_closed() {
        let t = tid(2, 2, 1); // lon 0..90, lat 0..66.5
        // A square crossing the tile's west edge, given clockwise in lon/lat (wrong for GeoJSON).
        let sq = json!({"type": "Polygon", "coordinates": [[[-20.0, 10.0], [-20.0, 30.0], [20.0, 30.0], [20.0, 10.0], [-20.0, 10.0]]]});
        let TileGeometry::Polygons(polys) = tile_geometry(t, &sq).unwrap() else { panic!() };
        let ring = &polys[0][0];
        assert_eq!(ring.first(), ring.last(), "closed");
        assert!(area2(ring) > 0, "exterior clockwise on screen: {ring:?}");
        let min_x = ring.iter().map(|p| p[0]).min().unwrap();
        assert_eq!(min_x, -(BUFFER as i32), "cut at the buffer: {ring:?}");
        let (x20, _) = t.project(20.0, 10.0);
        assert_eq!(ring.iter().map(|p| p[0]).max().unwrap(), x20.round() as i32);

        // A polygon with a hole, both wound the GeoJSON way; the hole comes out counter-clockwise.
        let holed = json!({"type": "Polygon", "coordinates": [
            [[10.0, 10.0], [60.0, 10.0], [60.0, 50.0], [10.0, 50.0], [10.0, 10.0]],
            [[20.0, 20.0], [20.0, 40.0], [40.0, 40.0], [40.0, 20.0], [20.0, 20.0]]]});
        let bytes = encode(t, &[("a", &[json!({"geometry": holed})])]).unwrap();
        let l = &decode(&bytes)[0];
        let (kind, rings, _) = &l.features[0];
        assert_eq!(*kind, GeomType::Polygon);
        assert_eq!(rings.len(), 2);
        // The decoder gives rings open (ClosePath implied): close them to measure.
        let closed = |r: &Vec<[i32; 2]>| {
            let mut r = r.clone();
            r.push(r[0]);
            r
        };
        assert!(area2(&closed(&rings[0])) > 0 && area2(&closed(&rings[1])) < 0, "{rings:?}");
        let (x, y) = t.project(10.0, 50.0);
        assert!(rings[0].contains(&[x.round() as i32, y.round() as i32]));

        // Entirely outside, or collapsed to nothing at this zoom: left out.
        let away =
            json!({"type": "Polygon", "coordinates": [[[-60.0, 10.0], [-50.0, 10.0], [-50.0, 20.0], [-60.0, 10.0]]]});
        assert!(tile_geometry(t, &away).is_none());
        let speck = json!({"type": "Polygon", "coordinates": [[[10.0, 10.0], [10.000001, 10.0], [10.0, 10.000001], [10.0, 10.0]]]});
        assert!(tile_geometry(t, &speck).is_none());
        // A multipolygon with one part inside and one outside keeps one polygon.
        let multi = json!({"type": "MultiPolygon", "coordinates": [away["coordinates"].clone(), holed_outer()]});
        let TileGeometry::Polygons(p) = tile_geometry(t, &multi).unwrap() else { panic!() };
        assert_eq!(p.len(), 1);
        let two = json!({"type": "MultiPolygon", "coordinates": [holed_outer(), [[[70.0, 10.0], [80.0, 10.0], [80.0, 20.0], [70.0, 10.0]]]]});
        let l = &decode(&encode(t, &[("m", &[json!({"geometry": two})])]).unwrap())[0];
        assert_eq!((l.features[0].0, l.features[0].1.len()), (GeomType::Polygon, 2));
    }

    fn holed_outer() -> Value {
        json!([[[10.0, 10.0], [60.0, 10.0], [60.0, 50.0], [10.0, 50.0], [10.0, 10.0]]])
    }

    #[test]
    fn clipping_a_ring_inside_changes_nothing_and_outside_leaves_nothing() {
        let ring = [(10.0, 10.0), (100.0, 10.0), (100.0, 100.0)];
        assert_eq!(clip_ring(&ring, 0.0, 4096.0), ring.to_vec());
        assert!(clip_ring(&[(-10.0, -10.0), (-5.0, -10.0), (-5.0, -5.0)], 0.0, 4096.0).is_empty());
        // A ring enclosing the whole square becomes the square.
        let big = [(-1e4, -1e4), (1e4, -1e4), (1e4, 1e4), (-1e4, 1e4)];
        let mut got = clip_ring(&big, 0.0, 10.0);
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        got.dedup();
        assert_eq!(got, vec![(0.0, 0.0), (0.0, 10.0), (10.0, 0.0), (10.0, 10.0)]);
    }
}
