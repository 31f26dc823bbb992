//! Exact planar predicates on lon/lat coordinates.
//!
//! Every decision about which side of an edge a point lies on goes through [`orient`], the
//! adaptive-precision orientation test of the `robust` crate (Shewchuk's predicates, which geo's
//! own `Contains` uses), so no rounding can put a point on the wrong side: the answers equal those
//! of exact arithmetic on the given `f64` coordinates.

/// A position: `[lon, lat]` in degrees.
pub(crate) type Pt = [f64; 2];

/// Positive if `c` lies left of the directed line `a -> b`, negative if right, zero if on it.
/// Exact in sign.
#[inline(always)]
pub(crate) fn orient(a: Pt, b: Pt, c: Pt) -> f64 {
    robust::orient2d(
        robust::Coord { x: a[0], y: a[1] },
        robust::Coord { x: b[0], y: b[1] },
        robust::Coord { x: c[0], y: c[1] },
    )
}

/// Whether `p` lies on the closed segment `a`-`b`.
#[inline(always)]
pub(crate) fn on_segment(a: Pt, b: Pt, p: Pt) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
        && orient(a, b, p) == 0.0
}

/// Winding number of the closed ring `ring` (first position repeated last) around `p`, or `None`
/// if `p` lies on the ring. The classic crossing rule (upward edges include their start, downward
/// edges their end), as in geo's `coord_pos_relative_to_ring`.
pub(crate) fn winding(ring: &[Pt], p: Pt) -> Option<i32> {
    let mut w = 0;
    for e in ring.windows(2) {
        let (a, b) = (e[0], e[1]);
        if on_segment(a, b, p) {
            return None;
        }
        if a[1] <= p[1] {
            if b[1] > p[1] && orient(a, b, p) > 0.0 {
                w += 1;
            }
        } else if b[1] <= p[1] && orient(a, b, p) < 0.0 {
            w -= 1;
        }
    }
    Some(w)
}

/// How the winding number of edge `a -> b`'s ring changes when moving from `r` to `p`: +1, -1 or 0.
///
/// The caller guarantees that neither `r` nor `p` lies on the edge. Degenerate contacts (the path
/// passing exactly through a vertex, or running along an edge) are resolved by symbolically moving
/// the path an infinitesimal distance to its left: a vertex on the line `r -> p` counts as right of
/// it. Because the moved path touches no vertex, every contact is a transversal crossing, and since
/// neither end lies on the ring the moved ends have the same winding numbers as `r` and `p`, so the
/// sum over a ring's edges is exactly `winding(p) - winding(r)`.
#[inline(always)]
pub(crate) fn crossing(r: Pt, p: Pt, a: Pt, b: Pt) -> i32 {
    let a_left = orient(r, p, a) > 0.0;
    let b_left = orient(r, p, b) > 0.0;
    if a_left == b_left {
        return 0;
    }
    // The edge straddles the line through r and p; it crosses the segment iff r and p lie on
    // opposite sides of the edge's line (neither is on it, see above, so neither sign is zero).
    if (orient(a, b, r) > 0.0) == (orient(a, b, p) > 0.0) {
        return 0;
    }
    if a_left { 1 } else { -1 }
}

/// An axis-aligned rectangle `[x0, x1] x [y0, y1]` in degrees (closed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub(crate) x0: f64,
    pub(crate) y0: f64,
    pub(crate) x1: f64,
    pub(crate) y1: f64,
}

impl Rect {
    #[cfg(test)]
    pub(crate) fn contains(&self, p: Pt) -> bool {
        p[0] >= self.x0 && p[0] <= self.x1 && p[1] >= self.y0 && p[1] <= self.y1
    }

    pub(crate) fn intersects(&self, o: &Rect) -> bool {
        self.x0 <= o.x1 && o.x0 <= self.x1 && self.y0 <= o.y1 && o.y0 <= self.y1
    }

    pub(crate) fn center(&self) -> Pt {
        [self.x0 + (self.x1 - self.x0) * 0.5, self.y0 + (self.y1 - self.y0) * 0.5]
    }

    pub(crate) fn expanded(&self, by: f64) -> Rect {
        Rect { x0: self.x0 - by, y0: self.y0 - by, x1: self.x1 + by, y1: self.y1 + by }
    }

    /// The smallest rectangle holding every point of `pts` (`None` when empty).
    pub(crate) fn around(pts: impl IntoIterator<Item = Pt>) -> Option<Rect> {
        let mut it = pts.into_iter();
        let first = it.next()?;
        let mut r = Rect { x0: first[0], y0: first[1], x1: first[0], y1: first[1] };
        for p in it {
            r.x0 = r.x0.min(p[0]);
            r.x1 = r.x1.max(p[0]);
            r.y0 = r.y0.min(p[1]);
            r.y1 = r.y1.max(p[1]);
        }
        Some(r)
    }
}

/// Whether the closed segment `a`-`b` meets the closed rectangle `r`. Exact: the bounding boxes
/// must overlap and the rectangle's corners must not all lie strictly on one side of the segment's
/// line (the separating-axis test for a segment and a box).
pub(crate) fn segment_meets_rect(a: Pt, b: Pt, r: &Rect) -> bool {
    if a[0].max(b[0]) < r.x0 || a[0].min(b[0]) > r.x1 || a[1].max(b[1]) < r.y0 || a[1].min(b[1]) > r.y1 {
        return false;
    }
    let corners = [[r.x0, r.y0], [r.x1, r.y0], [r.x1, r.y1], [r.x0, r.y1]];
    let (mut left, mut right) = (false, false);
    for c in corners {
        let o = orient(a, b, c);
        if o >= 0.0 {
            left = true;
        }
        if o <= 0.0 {
            right = true;
        }
    }
    left && right
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [Pt; 5] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];

    #[test]
    fn winding_of_a_counterclockwise_square() {
        assert_eq!(winding(&SQUARE, [0.5, 0.5]), Some(1));
        assert_eq!(winding(&SQUARE, [1.5, 0.5]), Some(0));
        assert_eq!(winding(&SQUARE, [1.0, 0.5]), None);
        assert_eq!(winding(&SQUARE, [0.0, 0.0]), None);
        // Level with a vertex, outside: the half-open rule must not count the vertex twice.
        assert_eq!(winding(&SQUARE, [-1.0, 1.0]), Some(0));
    }

    #[test]
    fn crossings_sum_to_the_winding_difference_even_through_vertices() {
        // Paths from outside to inside, one through a vertex exactly and one along an edge's line.
        for (r, p) in [([2.0, 2.0], [0.5, 0.5]), ([-1.0, 0.0], [0.5, 0.5]), ([2.0, 0.0], [-1.0, 0.0])] {
            let sum: i32 = SQUARE.windows(2).map(|e| crossing(r, p, e[0], e[1])).sum();
            let (Some(wr), Some(wp)) = (winding(&SQUARE, r), winding(&SQUARE, p)) else {
                panic!("test points must be off the ring");
            };
            assert_eq!(sum, wp - wr, "path {r:?} -> {p:?}");
        }
    }

    #[test]
    fn segment_against_rectangle() {
        let r = Rect { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };
        assert!(segment_meets_rect([-1.0, 0.5], [2.0, 0.5], &r));
        assert!(segment_meets_rect([1.0, 1.0], [2.0, 2.0], &r), "touching a corner counts");
        assert!(!segment_meets_rect([1.5, 0.0], [2.0, 1.0], &r));
        // Bounding boxes overlap but the diagonal passes beside the corner.
        assert!(!segment_meets_rect([0.5, 2.0], [2.0, 0.5], &r));
    }
}
