//! The fence index: which fences contain a point, exactly, at millions of points per second.
//!
//! # Semantics
//!
//! - Coordinates are WGS84 longitude/latitude in degrees. Polygon edges are straight lines in
//!   lon/lat (RFC 7946 §3.1.1), exactly as geo evaluates them.
//! - A polygon contains a point iff the point is inside its exterior ring and outside all its
//!   holes by the winding rule, and lies on none of its rings: **fences are open sets; a point
//!   exactly on an edge or vertex is outside.** This is geo's `Contains` (and PostGIS's
//!   `ST_Contains`) to the last bit; the decisions use exact orientation predicates, so no rounding
//!   moves a point across an edge. A MultiPolygon contains a point iff one of its polygons does, so
//!   a point on an edge shared by two members (or two adjacent fences) is in neither.
//! - A circle contains a point iff geo's haversine distance (mean Earth radius 6,371,008.8 m)
//!   from the centre is strictly below the radius. The sphere differs from the ellipsoid by up to
//!   about 0.5 %: a 1,000 m circle may reach 995 to 1,005 m on the ground.
//! - Points outside lon [-180, 180] / lat [-90, 90] or not finite are in no fence.
//!
//! # The antimeridian
//!
//! Fences split at ±180 into a MultiPolygon (RFC 7946 §3.1.9, how Natural Earth ships Fiji and
//! Russia) work as written; a point exactly on lon ±180 is then on the split edge, hence outside.
//! A ring with an edge spanning more than 180 degrees of longitude is read as crossing the
//! antimeridian the short way (how drawing tools write a fence around Fiji), provided every such
//! ring closes after unwrapping: the polygon is unwrapped and indexed twice, 360 degrees apart.
//! (RFC 7946 would read such an edge as going the long way round; a fence meant to span more than
//! half the globe needs intermediate vertices.) Edges along a pole (both ends at lat ±90) and rings
//! that only close after going round a pole are taken as written: polar caps drawn in lon/lat, like
//! Natural Earth's Antarctica. Circles use the haversine distance, which has no seam.
//!
//! # Validation
//!
//! [`FenceIndex::build`] refuses, with one [`FenceError`] per fence naming it and the problem:
//! whatever [`FenceSpec::validate`] refuses (unclosed rings, fewer than 4 positions, coordinates out
//! of range or not finite, bad radius, empty name); polygons whose rings cross (properly: at one
//! point inside both edges), since a twisted ring's inside depends on the fill rule rather than on
//! the drawing; holes outside their exterior; fences that enclose no area; duplicate ids.
//! Spikes, repeated positions and zero-area members of a MultiPolygon are accepted (real boundary
//! data has them) and change nothing. Disabled fences are skipped without validation.

mod error;
mod predicates;
mod shape;
mod tree;

use std::collections::{BTreeMap, BTreeSet};

use geo::{Closest, HaversineClosestPoint, Line, Point};
use geostream_model::{FenceId, FenceSpec, MAX_FENCES_PER_TENANT};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::{Map, Value};

pub use error::{BuildError, FenceError};
pub use tree::TreeStats;

use predicates::{Pt, Rect, orient};
use shape::{Geom, Shape};

/// What the index keeps of a fence besides its geometry: what events name and carry.
#[derive(Debug, Clone, PartialEq)]
pub struct FenceInfo {
    /// The fence id.
    pub id: FenceId,
    /// The spec version the index was built from.
    pub version: u64,
    /// Human-readable name.
    pub name: String,
    /// The spec's free properties.
    pub properties: Map<String, Value>,
}

/// An immutable index over one version of a fence set. Build it off the hot path and swap it in
/// whole (it is `Send + Sync`; share it behind an `Arc`).
#[derive(Debug)]
pub struct FenceIndex {
    /// Enabled fences, sorted by id: a fence's number is its position here.
    fences: Vec<FenceInfo>,
    /// Ids of disabled fences in the set.
    disabled: BTreeSet<FenceId>,
    shapes: Vec<Shape>,
    tree: tree::Tree,
    /// Shape bounding boxes, for segment queries.
    boxes: RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>,
}

impl FenceIndex {
    /// Builds the index, or reports every fence it refuses (see the module documentation).
    pub fn build<'a>(specs: impl IntoIterator<Item = &'a FenceSpec>) -> Result<FenceIndex, BuildError> {
        let (index, problems) = Self::build_skipping_invalid(specs);
        if problems.is_empty() { Ok(index) } else { Err(BuildError { problems }) }
    }

    /// Builds the index from the fences it accepts and returns the refused ones alongside, for a
    /// caller that prefers a partly updated set to a stale one.
    pub fn build_skipping_invalid<'a>(specs: impl IntoIterator<Item = &'a FenceSpec>) -> (FenceIndex, Vec<FenceError>) {
        Self::build_within(specs, MAX_FENCES_PER_TENANT)
    }

    /// [`FenceIndex::build_skipping_invalid`] with at most `max_fences` fences (tests use small ones).
    fn build_within<'a>(
        specs: impl IntoIterator<Item = &'a FenceSpec>,
        max_fences: usize,
    ) -> (FenceIndex, Vec<FenceError>) {
        let mut problems = Vec::new();
        let specs: Vec<&FenceSpec> = specs.into_iter().collect();
        // An id given twice is ambiguous: neither spec is indexed.
        let mut first_version: BTreeMap<&FenceId, u64> = BTreeMap::new();
        let mut duplicated = BTreeSet::new();
        for spec in &specs {
            match first_version.get(&spec.id) {
                None => {
                    first_version.insert(&spec.id, spec.version);
                }
                Some(&first) => {
                    if duplicated.insert(&spec.id) {
                        problems.push(FenceError::Duplicate {
                            fence: spec.id.to_string(),
                            first,
                            second: spec.version,
                        });
                    }
                }
            }
        }
        let mut accepted: Vec<(&FenceSpec, Vec<Shape>)> = Vec::new();
        let mut disabled = BTreeSet::new();
        for spec in specs {
            if duplicated.contains(&spec.id) {
                continue;
            }
            if !spec.enabled {
                disabled.insert(spec.id.clone());
                continue;
            }
            match shape::prepare(spec, 0) {
                Ok(s) => accepted.push((spec, s)),
                Err(e) => problems.push(e),
            }
        }
        // Fence numbers follow the ids, so answers and events come out in id order.
        accepted.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        // The registry refuses sets over the tenant's limit, but the topic can be written by other
        // producers: then the first fences by id are kept and the rest reported, so the tenant's
        // processors still run. (Fence numbers are 31 bits in the tree, far above this.)
        const _: () = assert!(MAX_FENCES_PER_TENANT < tree::MULTI as usize);
        if accepted.len() > max_fences {
            problems.push(FenceError::TooLarge {
                what: "fences (only the first ones by id are indexed)",
                count: accepted.len(),
                limit: max_fences,
            });
            accepted.truncate(max_fences);
        }
        let mut fences = Vec::with_capacity(accepted.len());
        let mut shapes = Vec::new();
        for (n, (spec, s)) in accepted.into_iter().enumerate() {
            shapes.extend(s.into_iter().map(|shape| Shape { fence: n as u32, ..shape }));
            fences.push(FenceInfo {
                id: spec.id.clone(),
                version: spec.version,
                name: spec.name.clone(),
                properties: spec.properties.clone(),
            });
        }
        let edges: usize = shapes
            .iter()
            .map(|s| match &s.geom {
                Geom::Polygon(rings) => rings.iter().map(|r| r.pts.len()).sum(),
                Geom::Circle { .. } => 0,
            })
            .sum();
        // Leaves hold each edge a few times over; stay well inside u32 offsets.
        const MAX_EDGES: usize = 64 << 20;
        if edges > MAX_EDGES || shapes.len() >= u32::MAX as usize {
            problems.push(FenceError::TooLarge { what: "polygon positions", count: edges, limit: MAX_EDGES });
            fences.clear();
            shapes.clear();
        }
        let tree = tree::Tree::build(&shapes);
        let boxes = RTree::bulk_load(
            shapes
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    let b = s.bbox;
                    // Circle boxes may wrap past ±180: store them at every offset that overlaps.
                    let shifts: &[f64] = match s.geom {
                        Geom::Circle { .. } => &[-360.0, 0.0, 360.0],
                        Geom::Polygon(_) => &[0.0],
                    };
                    shifts.iter().filter(move |&&dx| b.x0 + dx <= 180.0 && b.x1 + dx >= -180.0).map(move |&dx| {
                        let r = Rectangle::from_corners([b.x0 + dx, b.y0], [b.x1 + dx, b.y1]);
                        GeomWithData::new(r, i as u32)
                    })
                })
                .collect(),
        );
        (FenceIndex { fences, disabled, shapes, tree, boxes }, problems)
    }

    /// Checks one spec as [`FenceIndex::build`] would (for the api, at registration time).
    pub fn check(spec: &FenceSpec) -> Result<(), FenceError> {
        shape::prepare(spec, 0).map(drop)
    }

    /// Number of indexed (enabled, valid) fences.
    pub fn len(&self) -> usize {
        self.fences.len()
    }

    /// Whether no fence is indexed.
    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    /// The indexed fences, sorted by id; a fence's number is its position.
    pub fn fences(&self) -> &[FenceInfo] {
        &self.fences
    }

    /// Fence number `n`.
    pub fn fence(&self, n: u32) -> Option<&FenceInfo> {
        self.fences.get(n as usize)
    }

    /// The number of fence `id`, if it is indexed.
    pub fn position(&self, id: &FenceId) -> Option<u32> {
        self.fences.binary_search_by(|f| f.id.cmp(id)).ok().map(|i| i as u32)
    }

    /// Whether `id` is in the set but disabled.
    pub fn is_disabled(&self, id: &FenceId) -> bool {
        self.disabled.contains(id)
    }

    /// Sizes of the acceleration structure.
    pub fn stats(&self) -> TreeStats {
        self.tree.stats()
    }

    /// The numbers of the fences containing `(lon, lat)`, ascending, in `out` (cleared first).
    /// Allocation-free once `out` has grown to the largest answer.
    #[inline]
    pub fn query(&self, lon: f64, lat: f64, out: &mut Vec<u32>) {
        out.clear();
        if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
            return;
        }
        self.tree.query([lon, lat], out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Whether fence number `fence` contains `(lon, lat)`.
    pub fn contains(&self, fence: u32, lon: f64, lat: f64) -> bool {
        let mut out = Vec::new();
        self.query(lon, lat, &mut out);
        out.binary_search(&fence).is_ok()
    }

    /// The numbers of the fences whose area the track segment `from -> to` meets (touching
    /// counts), ascending, in `out` (cleared first). The segment goes the short way in longitude,
    /// so a segment across the antimeridian is split there. Polygons take it as a straight line in
    /// lon/lat, like their own edges; circles as the great-circle arc (geo's haversine closest
    /// point), which for the short hops between consecutive positions is the same path.
    pub fn segment_hits(&self, from: [f64; 2], to: [f64; 2], out: &mut Vec<u32>) {
        out.clear();
        let valid = |p: [f64; 2]| (-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1]);
        if !(valid(from) && valid(to)) {
            return;
        }
        for (a, b) in split_at_antimeridian(from, to) {
            let bbox = AABB::from_corners([a[0].min(b[0]), a[1].min(b[1])], [a[0].max(b[0]), a[1].max(b[1])]);
            for hit in self.boxes.locate_in_envelope_intersecting(&bbox) {
                let Some(shape) = self.shapes.get(hit.data as usize) else { continue };
                if out.contains(&shape.fence) {
                    continue;
                }
                if segment_meets_shape(shape, a, b) {
                    out.push(shape.fence);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// The pieces of the segment `a -> b` going the short way in longitude: itself, or two pieces
/// meeting at ±180 when it crosses the antimeridian.
fn split_at_antimeridian(a: Pt, b: Pt) -> Vec<(Pt, Pt)> {
    let dx = b[0] - a[0];
    if dx.abs() <= 180.0 {
        return vec![(a, b)];
    }
    // Unwrap b next to a, cut at the seam, and map the far piece back.
    let (edge, b_unwrapped) = if dx > 0.0 { (-180.0, b[0] - 360.0) } else { (180.0, b[0] + 360.0) };
    let t = (edge - a[0]) / (b_unwrapped - a[0]);
    let lat = a[1] + (b[1] - a[1]) * t.clamp(0.0, 1.0);
    vec![(a, [edge, lat]), ([-edge, lat], b)]
}

fn segment_meets_shape(shape: &Shape, a: Pt, b: Pt) -> bool {
    match &shape.geom {
        Geom::Circle { center, radius_m } => {
            let line = Line::new((a[0], a[1]), (b[0], b[1]));
            let c = Point::new(center[0], center[1]);
            match line.haversine_closest_point(&c) {
                Closest::Intersection(p) | Closest::SinglePoint(p) => {
                    shape::haversine_m(*center, [p.x(), p.y()]) < *radius_m
                }
                // A degenerate arc (antipodal ends): fall back to the ends.
                Closest::Indeterminate => {
                    shape::haversine_m(*center, a) < *radius_m || shape::haversine_m(*center, b) < *radius_m
                }
            }
        }
        Geom::Polygon(rings) => {
            let sb = Rect { x0: a[0].min(b[0]), y0: a[1].min(b[1]), x1: a[0].max(b[0]), y1: a[1].max(b[1]) };
            if !sb.intersects(&shape.bbox) {
                return false;
            }
            // The segment meets the closed polygon iff it meets a ring or lies inside; the caller
            // only asks for segments whose ends are not inside, but a whole segment strictly
            // inside is still reported correctly through the end test.
            let meets_ring = rings.iter().any(|r| {
                r.pts.windows(2).any(|e| {
                    let eb = Rect {
                        x0: e[0][0].min(e[1][0]),
                        y0: e[0][1].min(e[1][1]),
                        x1: e[0][0].max(e[1][0]),
                        y1: e[0][1].max(e[1][1]),
                    };
                    eb.intersects(&sb) && segments_meet(a, b, e[0], e[1])
                })
            });
            meets_ring || polygon_contains_point(rings, a)
        }
    }
}

/// Whether the closed segments `a-b` and `c-d` share a point. Exact.
fn segments_meet(a: Pt, b: Pt, c: Pt, d: Pt) -> bool {
    let (o1, o2) = (orient(a, b, c), orient(a, b, d));
    let (o3, o4) = (orient(c, d, a), orient(c, d, b));
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0)) && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0)) {
        return true;
    }
    (o1 == 0.0 && predicates::on_segment(a, b, c))
        || (o2 == 0.0 && predicates::on_segment(a, b, d))
        || (o3 == 0.0 && predicates::on_segment(c, d, a))
        || (o4 == 0.0 && predicates::on_segment(c, d, b))
}

/// Brute-force containment of one polygon (same semantics as the tree).
fn polygon_contains_point(rings: &[shape::Ring], p: Pt) -> bool {
    rings.iter().all(|r| match predicates::winding(&r.pts, p) {
        None => false,
        Some(w) => (w != 0) != r.hole,
    })
}

#[cfg(test)]
mod tests;
