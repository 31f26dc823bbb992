//! From a [`FenceSpec`] to the shapes the index evaluates: polygons (one per member of a
//! MultiPolygon, with antimeridian-crossing ones unwrapped and duplicated) and circles, after the
//! checks that make a fence unambiguous.

use geo::algorithm::sweep::{Cross, Intersections};
use geo::{Distance, Haversine, Line, LineIntersection, Point};
use geostream_model::geojson::{GeometryValue, Position};
use geostream_model::{FenceShape, FenceSpec, ModelError};

use super::error::FenceError;
use super::predicates::{Pt, Rect, orient, winding};

/// A ring of a polygon: closed (first position repeated last), at least 4 positions.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub(crate) hole: bool,
    pub(crate) pts: Vec<Pt>,
}

/// What one shape is.
#[derive(Debug, Clone)]
pub(crate) enum Geom {
    /// Rings of one polygon; `rings[0]` is the exterior.
    Polygon(Vec<Ring>),
    /// Points closer than `radius_m` (haversine, metres) to `center`.
    Circle { center: Pt, radius_m: f64 },
}

/// One evaluable piece of a fence. A fence contains a point iff any of its shapes does.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) fence: u32,
    pub(crate) geom: Geom,
    /// Bounding box. Polygons unwrapped across the antimeridian and circles near it may extend
    /// beyond ±180; [`Shape::meets`] accounts for that.
    pub(crate) bbox: Rect,
}

impl Shape {
    /// The shape's size in degrees: the larger side of a polygon's box, a circle's diameter in
    /// degrees of latitude. The tree refines cells on its boundary down to a fraction of it.
    pub(crate) fn extent(&self) -> f64 {
        match self.geom {
            Geom::Polygon(_) => (self.bbox.x1 - self.bbox.x0).max(self.bbox.y1 - self.bbox.y0),
            Geom::Circle { radius_m, .. } => (2.0 * radius_m / earth_radius_m()).to_degrees(),
        }
    }
}

/// Mean Earth radius geo's `Haversine` uses (GRS80 R1), in metres.
pub(crate) fn earth_radius_m() -> f64 {
    Haversine.radius()
}

/// Haversine distance in metres between two `[lon, lat]` positions: geo's, so the index and
/// any brute-force check agree to the last bit.
#[inline]
pub(crate) fn haversine_m(a: Pt, b: Pt) -> f64 {
    Haversine.distance(Point::new(a[0], a[1]), Point::new(b[0], b[1]))
}

impl Shape {
    /// Whether the shape's bounding box meets `r` (circles are tested at ±360 too, since their
    /// box may wrap around the antimeridian).
    pub(crate) fn meets(&self, r: &Rect) -> bool {
        match self.geom {
            Geom::Polygon(_) => self.bbox.intersects(r),
            Geom::Circle { .. } => [-360.0, 0.0, 360.0].into_iter().any(|s| {
                let shifted = Rect { x0: self.bbox.x0 + s, x1: self.bbox.x1 + s, ..self.bbox };
                shifted.intersects(r)
            }),
        }
    }
}

/// Checks `spec` and turns it into shapes for fence number `fence`.
pub(crate) fn prepare(spec: &FenceSpec, fence: u32) -> Result<Vec<Shape>, FenceError> {
    let id = spec.id.as_str();
    let spec_err = |source: ModelError| FenceError::Spec { fence: id.to_owned(), version: spec.version, source };
    spec.validate().map_err(spec_err)?;
    match &spec.geometry {
        FenceShape::Circle { center, radius_m } => Ok(vec![circle(fence, *center, *radius_m)]),
        FenceShape::Geometry(g) => {
            let polygons: Vec<&Vec<Vec<Position>>> = match &g.value {
                GeometryValue::Polygon { coordinates } => vec![coordinates],
                GeometryValue::MultiPolygon { coordinates } => coordinates.iter().collect(),
                other => {
                    // validate() refuses these already; kept as an error rather than a panic.
                    return Err(spec_err(ModelError::InvalidGeometry {
                        subject: format!("fence {id:?}"),
                        location: String::new(),
                        problem: format!(
                            "is a {}; fences must be a Polygon, MultiPolygon or Circle",
                            other.type_name()
                        ),
                    }));
                }
            };
            let mut shapes = Vec::new();
            for (k, rings) in polygons.into_iter().enumerate() {
                let rings: Vec<Ring> = rings
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Ring { hole: i > 0, pts: r.iter().map(xy).collect() })
                    .collect();
                polygon_shapes(id, spec.version, fence, k, rings, &mut shapes)?;
            }
            if shapes.is_empty() {
                return Err(FenceError::NoArea { fence: id.to_owned(), version: spec.version });
            }
            Ok(shapes)
        }
    }
}

/// `[lon, lat]` of a validated position (altitude dropped).
fn xy(p: &Position) -> Pt {
    let c = p.as_slice();
    [c.first().copied().unwrap_or(f64::NAN), c.get(1).copied().unwrap_or(f64::NAN)]
}

fn circle(fence: u32, center: Pt, radius_m: f64) -> Shape {
    Shape { fence, geom: Geom::Circle { center, radius_m }, bbox: circle_bbox(center, radius_m) }
}

/// A box around every point within `radius_m` of `center`, slightly generous. Latitudes are
/// clamped to ±90; longitudes may extend beyond ±180 (the box wraps), or span all 360 degrees
/// when the circle holds a pole.
pub(crate) fn circle_bbox(center: Pt, radius_m: f64) -> Rect {
    // Generous by a millionth of the radius plus a nanodegree: the box only prunes work, so it
    // must never be smaller than the circle the haversine test draws.
    let delta = (radius_m / earth_radius_m()).to_degrees() * (1.0 + 1e-6) + 1e-9;
    let (lat0, lat1) = (center[1] - delta, center[1] + delta);
    let full = Rect { x0: -180.0, y0: lat0.max(-90.0), x1: 180.0, y1: lat1.min(90.0) };
    if lat0 <= -90.0 || lat1 >= 90.0 {
        return full;
    }
    // The widest longitude offset of a small circle (the classic bounding-coordinates formula).
    let s = delta.to_radians().sin() / center[1].to_radians().cos();
    if s.is_nan() || s >= 1.0 {
        return full;
    }
    let dlon = s.asin().to_degrees() * (1.0 + 1e-6) + 1e-9;
    if dlon >= 180.0 {
        return full;
    }
    Rect { x0: center[0] - dlon, y0: lat0, x1: center[0] + dlon, y1: lat1 }
}

/// Whether edge `a -> b` jumps across the antimeridian: more than 180 degrees of longitude, unless
/// it runs along a pole (how polar caps such as Natural Earth's Antarctica close their rings).
fn wraps(a: Pt, b: Pt) -> bool {
    (b[0] - a[0]).abs() > 180.0 && !(a[1] == b[1] && a[1].abs() == 90.0)
}

/// The ring with every wrapping edge taken the short way round (longitudes continue past ±180),
/// and how far the last position ended up from the first (0 for a ring that closes, ±360 for a
/// ring around a pole).
fn unwrap_ring(pts: &[Pt]) -> (Vec<Pt>, f64) {
    let mut out = Vec::with_capacity(pts.len());
    let mut shift = 0.0;
    let mut prev: Option<Pt> = None;
    for &p in pts {
        if let Some(q) = prev
            && wraps(q, p)
        {
            shift += if p[0] > q[0] { -360.0 } else { 360.0 };
        }
        out.push([p[0] + shift, p[1]]);
        prev = Some(p);
    }
    (out, shift)
}

/// Checks one polygon and appends its shapes (none if it encloses nothing; two if it crosses the
/// antimeridian).
fn polygon_shapes(
    id: &str,
    version: u64,
    fence: u32,
    polygon: usize,
    mut rings: Vec<Ring>,
    out: &mut Vec<Shape>,
) -> Result<(), FenceError> {
    // Antimeridian: a ring with an edge spanning more than 180 degrees of longitude is read as
    // crossing it the short way, provided unwrapping closes every such ring; a ring that only
    // closes after going round a pole is taken as written (a polar cap drawn in lon/lat).
    let crossing: Vec<bool> = rings.iter().map(|r| r.pts.windows(2).any(|e| wraps(e[0], e[1]))).collect();
    let mut unwrapped = false;
    if crossing.iter().any(|&c| c) {
        let candidates: Vec<(Vec<Pt>, f64)> = rings.iter().map(|r| unwrap_ring(&r.pts)).collect();
        if candidates.iter().all(|(_, net)| *net == 0.0) {
            for (ring, (pts, _)) in rings.iter_mut().zip(candidates) {
                ring.pts = pts;
            }
            align_holes(&mut rings);
            unwrapped = true;
        }
    }

    check_crossings(id, version, polygon, &rings)?;
    check_holes(id, version, polygon, &rings)?;

    let Some(exterior) = rings.first() else { return Ok(()) };
    if !has_area(&exterior.pts) {
        // Contains no point at all, so leaving it out changes no answer.
        return Ok(());
    }
    let Some(bbox) = Rect::around(exterior.pts.iter().copied()) else { return Ok(()) };
    let shape = Shape { fence, geom: Geom::Polygon(rings), bbox };
    if unwrapped {
        // The unwrapped polygon covers longitudes beyond ±180; a copy shifted by 360 degrees
        // covers them from the other side, so queries in [-180, 180] find it either way.
        for shift in [-360.0, 360.0] {
            let moved = Rect { x0: bbox.x0 + shift, x1: bbox.x1 + shift, ..bbox };
            if moved.x0 <= 180.0 && moved.x1 >= -180.0 {
                out.push(shifted(&shape, shift));
            }
        }
    }
    out.push(shape);
    Ok(())
}

/// Moves each unwrapped hole by a multiple of 360 degrees so it sits over its exterior.
fn align_holes(rings: &mut [Ring]) {
    let Some((exterior, holes)) = rings.split_first_mut() else { return };
    let Some(ext_box) = Rect::around(exterior.pts.iter().copied()) else { return };
    let ext_mid = ext_box.center()[0];
    for hole in holes {
        let Some(b) = Rect::around(hole.pts.iter().copied()) else { continue };
        let mid = b.center()[0];
        let best = [-360.0, 0.0, 360.0]
            .into_iter()
            .min_by(|a, c| ((mid + a) - ext_mid).abs().total_cmp(&((mid + c) - ext_mid).abs()))
            .unwrap_or(0.0);
        if best != 0.0 {
            for p in &mut hole.pts {
                p[0] += best;
            }
        }
    }
}

fn shifted(shape: &Shape, dx: f64) -> Shape {
    let geom = match &shape.geom {
        Geom::Polygon(rings) => Geom::Polygon(
            rings
                .iter()
                .map(|r| Ring { hole: r.hole, pts: r.pts.iter().map(|p| [p[0] + dx, p[1]]).collect() })
                .collect(),
        ),
        Geom::Circle { center, radius_m } => Geom::Circle { center: *center, radius_m: *radius_m },
    };
    Shape { fence: shape.fence, geom, bbox: Rect { x0: shape.bbox.x0 + dx, x1: shape.bbox.x1 + dx, ..shape.bbox } }
}

/// Whether a ring has three positions not on one line (otherwise it encloses nothing).
fn has_area(pts: &[Pt]) -> bool {
    let Some(&a) = pts.first() else { return false };
    let Some(&b) = pts.iter().find(|p| **p != a) else { return false };
    pts.iter().any(|&c| orient(a, b, c) != 0.0)
}

/// An edge handed to geo's sweep, remembering where it came from for the message.
#[derive(Clone)]
struct SweepEdge {
    ring: usize,
    edge: usize,
    line: Line<f64>,
}

impl Cross for SweepEdge {
    type Scalar = f64;
    fn line(&self) -> Line<f64> {
        self.line
    }
}

/// Refuses a polygon two of whose edges cross properly (meet at one point inside both). Touching
/// (a vertex on another edge, shared vertices, edges overlapping along a line, zero-length edges)
/// is accepted: real boundary data has spikes and repeated points, and they leave the inside
/// well defined. Uses geo's sweep-line intersection search (O((n + k) log n)) rather than geo's
/// `Validation`, which compares every pair of edges (seconds for an 11,000-position port limit)
/// and also refuses those harmless spikes.
fn check_crossings(id: &str, version: u64, polygon: usize, rings: &[Ring]) -> Result<(), FenceError> {
    let edges = rings.iter().enumerate().flat_map(|(ri, r)| {
        r.pts.windows(2).enumerate().map(move |(ei, e)| SweepEdge {
            ring: ri,
            edge: ei,
            line: Line::new((e[0][0], e[0][1]), (e[1][0], e[1][1])),
        })
    });
    for (a, b, hit) in Intersections::from_iter(edges) {
        if let LineIntersection::SinglePoint { intersection, is_proper: true } = hit {
            let (first, second) = if (a.ring, a.edge) <= (b.ring, b.edge) { (a, b) } else { (b, a) };
            let name = |e: &SweepEdge| format!("ring {} edge {} (positions {}-{})", e.ring, e.edge, e.edge, e.edge + 1);
            return Err(FenceError::RingsCross {
                fence: id.to_owned(),
                version,
                polygon,
                first: name(&first),
                second: name(&second),
                lon: intersection.x,
                lat: intersection.y,
            });
        }
    }
    Ok(())
}

/// Refuses holes outside their exterior. Rings do not cross (checked before), so one position of
/// the hole off the exterior ring decides; a hole lying entirely on its exterior is accepted.
fn check_holes(id: &str, version: u64, polygon: usize, rings: &[Ring]) -> Result<(), FenceError> {
    let Some((exterior, holes)) = rings.split_first() else { return Ok(()) };
    for (i, hole) in holes.iter().enumerate() {
        let side = hole.pts.iter().find_map(|&p| winding(&exterior.pts, p));
        if side == Some(0) {
            return Err(FenceError::HoleOutside { fence: id.to_owned(), version, polygon, ring: i + 1 });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapping_closes_a_ring_across_the_antimeridian_and_not_one_round_a_pole() {
        let fiji = [[179.0, -17.0], [-179.0, -17.0], [-179.0, -16.0], [179.0, -16.0], [179.0, -17.0]];
        let (pts, net) = unwrap_ring(&fiji);
        assert_eq!(net, 0.0);
        assert_eq!(pts[1], [181.0, -17.0]);
        let cap = [[-180.0, 80.0], [0.0, 80.0], [179.0, 80.0], [-180.0, 80.0]];
        assert_ne!(unwrap_ring(&cap).1, 0.0);
        assert!(!wraps([180.0, -90.0], [-180.0, -90.0]), "an edge along the pole is taken as written");
    }

    #[test]
    fn circle_box_wraps_and_covers_poles() {
        let b = circle_bbox([179.9, 0.0], 50_000.0);
        assert!(b.x1 > 180.0 && b.x0 < 179.9);
        let polar = circle_bbox([0.0, 89.9], 50_000.0);
        assert_eq!((polar.x0, polar.x1, polar.y1), (-180.0, 180.0, 90.0));
    }
}
