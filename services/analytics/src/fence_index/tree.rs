//! The cell tree: a 16-ary subdivision of the lon/lat rectangle in which every cell lists, per
//! shape, either "the whole cell is inside" or the few edges that cross the cell plus a reference
//! point whose winding numbers are known.
//!
//! # Layout and cost
//!
//! A cell is split into 4 by 4 children while the work a point in it would do exceeds
//! [`LEAF_COST`] edge tests (a circle test counts [`CIRCLE_COST`]) or while it is coarser than
//! 1/[`RESOLUTION`] of a shape whose boundary crosses it, down to [`MAX_DEPTH`]; edges several
//! fences share exactly (copies of one outline, neighbours on a common border) count once for
//! the split, since no split separates them (`separable_cost`). Children in no
//! fence are not stored. A query converts the point to 32-bit cell coordinates, looks up the level
//! [`TOP_DEPTH`] cell in a flat table and descends from there, one 16-byte node per level, then
//! tests the leaf's few boundary entries, packed contiguously. A point query is therefore a handful
//! of dependent memory reads plus a few exact edge tests; on random points the reads (cache and
//! TLB misses) dominate, which is why nodes are small and a covering fence is stored inline.
//!
//! # Why a point query is exact
//!
//! For a polygon, a leaf entry stores a reference point `r` inside the cell, the winding number of
//! each ring around `r` that has edges in the cell, and those edges (every edge that meets the
//! cell, slightly enlarged). For a query point `p` in the cell the segment `r -> p` stays inside
//! the cell, so only the stored edges can cross it, and the winding number of each ring around `p`
//! is its number around `r` plus the signed crossings ([`crossing`], exact). Rings without edges in
//! the cell have the same winding number over the whole cell, so the build already decided them:
//! if one puts the cell outside the polygon the entry is dropped, otherwise it is omitted. A point
//! lying on a stored edge is on the polygon's boundary and is reported outside. The winding rule
//! per ring (inside the exterior, outside every hole) is geo's, so answers equal geo's `Contains`.
//!
//! Points are assigned to cells with a fixed-point conversion whose rounding can put a point a
//! hair (about 1e-13 degrees) outside its cell, so cells are enlarged by [`EXPAND`] (1e-9 degrees)
//! when edges are collected and when a cell is declared uniformly inside.
//!
//! Circles are classified per cell by the smallest and largest haversine distance from the centre
//! to the cell, with a margin above the formula's rounding error; only boundary cells evaluate
//! the haversine distance per point.

use super::predicates::{Pt, Rect, crossing, on_segment, segment_meets_rect, winding};
use super::shape::{Geom, Shape, haversine_m};

/// Deepest level (cells of about 60 by 30 centimetres at the equator).
const MAX_DEPTH: u32 = 13;
/// Enlargement of every cell, in degrees, against rounding in the point-to-cell assignment.
const EXPAND: f64 = 1e-9;
/// A cell is split while its per-point work (edges plus circle tests) exceeds this...
const LEAF_COST: usize = 8;
/// ...or while it is larger than 1/`RESOLUTION` of a shape whose boundary crosses it, so that
/// around small shapes, too, most of their area answers without a test (a lone 8-edge polygon or
/// a circle would otherwise sit in one leaf and test every point near it).
const RESOLUTION: f64 = 8.0;
/// Work of one circle test in units of one edge test.
const CIRCLE_COST: usize = 4;
/// Levels served by the top table: one lookup replaces the first `TOP_DEPTH` steps of the descent.
const TOP_DEPTH: u32 = 4;
/// Cells per axis at [`TOP_DEPTH`].
const TOP_SIDE: u64 = 1 << (2 * TOP_DEPTH);
/// A top-table entry for a cell in no fence.
const EMPTY: u32 = u32::MAX;
/// Set in [`Node::meta`] of internal nodes; the low 16 bits are then the child mask.
const INTERNAL: u32 = 1 << 31;
/// The tree stops splitting beyond this many nodes (1 GiB of nodes): a guard against fence sets
/// far beyond the sizes this is built for, which then get coarser leaves, never wrong answers.
const MAX_NODES: usize = 1 << 26;

/// A cell, 16 bytes; the descent reads one per level, and the common cases need no second read
/// before the leaf's entries: a single fence covering the whole cell is stored inline.
///
/// Children in no fence are not stored: an internal node keeps a 16-bit mask of its non-empty
/// children, stored contiguously from `first` in mask order, and a query stepping into an empty
/// child is done.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Internal: index of the first stored child. Leaf: index of its first boundary entry in
    /// the blob.
    first: u32,
    /// The fences covering the whole cell: the fence itself when `inside_len` is 1, otherwise
    /// the start of `inside_len` fences in `Tree::inside`.
    inside: u32,
    inside_len: u32,
    /// Internal: [`INTERNAL`] | child mask. Leaf: the number of boundary entries.
    meta: u32,
}

/// Marks a fence number (in `inside` and in blob headers) whose fence has several shapes, so only
/// those answers need deduplicating.
pub(crate) const MULTI: u32 = 1 << 31;

/// One 32-byte unit of the boundary blob. Integers travel as `f64` bit patterns.
///
/// A circle entry is one word: `[header, lon, lat, radius_m]`. A polygon entry is a header word
/// `[header, ref lon, ref lat, total words]`, then per ring a word `[ring header, -, -, -]`
/// followed by one word `[a.lon, a.lat, b.lon, b.lat]` per edge. A header holds the kind in the
/// top two bits, the number of rings in bits 32..62 and the fence in the low 32 bits; a ring
/// header holds the winding number around the reference point in the low 32 bits, the hole flag
/// in bit 32 and the number of edges in bits 33..63.
type Word = [f64; 4];

const KIND_CIRCLE: u64 = 1 << 62;
const KIND_POLYGON: u64 = 2 << 62;

#[inline(always)]
fn bits(x: f64) -> u64 {
    x.to_bits()
}

#[inline(always)]
fn word_of(x: u64) -> f64 {
    f64::from_bits(x)
}

/// The built tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    inside: Vec<u32>,
    blob: Vec<Word>,
    /// For each cell of level [`TOP_DEPTH`] (row-major), the node where queries start (that
    /// cell's node or the leaf above it), or [`EMPTY`].
    top: Vec<u32>,
    /// Per shape, its fence number as stored (with [`MULTI`]); used while building.
    ids: Vec<u32>,
    /// Number of boundary entries and of stored edges, for [`TreeStats`].
    boundary_entries: usize,
    stored_edges: usize,
}

/// Sizes of the tree, for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Stored cells (internal and leaves; cells in no fence are not stored).
    pub nodes: usize,
    /// Inside, polygon-boundary and circle-boundary entries over all cells.
    pub entries: usize,
    /// Stored edges (an edge crossing several leaves is stored once per leaf).
    pub edges: usize,
    /// Deepest level reached.
    pub depth: u32,
    /// Memory held by the tree, in bytes.
    pub bytes: usize,
}

/// A ring's part in a pending polygon entry.
#[derive(Debug, Clone)]
struct PRing {
    /// Index of the ring in the shape.
    ring: usize,
    hole: bool,
    /// Winding number around the entry's reference point.
    w: i32,
    /// Indices `i` of the ring's edges `pts[i] -> pts[i + 1]` that meet the cell.
    edges: Vec<u32>,
}

/// A shape whose boundary meets the cell being built.
#[derive(Debug, Clone)]
enum Pending {
    Polygon { shape: u32, r: Pt, rings: Vec<PRing> },
    Circle { shape: u32 },
}

impl Pending {
    fn cost(&self) -> usize {
        match self {
            Pending::Polygon { rings, .. } => 1 + rings.iter().map(|r| r.edges.len()).sum::<usize>(),
            Pending::Circle { .. } => CIRCLE_COST,
        }
    }
}

/// What a shape is within one cell.
enum Derived {
    Outside,
    Inside,
    Boundary(Pending),
}

/// What a cell holds: the fences covering it and the shapes whose boundary crosses it.
#[derive(Default)]
struct Content {
    inside: Vec<u32>,
    boundary: Vec<Pending>,
}

impl Content {
    fn is_empty(&self) -> bool {
        self.inside.is_empty() && self.boundary.is_empty()
    }
}

/// The cell `(ix, iy)` of level `depth`, exact: every bound is a multiple of a power of two.
fn cell_rect(depth: u32, ix: u64, iy: u64) -> Rect {
    let n = (1u64 << (2 * depth)) as f64;
    let (w, h) = (360.0 / n, 180.0 / n);
    Rect {
        x0: -180.0 + ix as f64 * w,
        y0: -90.0 + iy as f64 * h,
        x1: -180.0 + (ix + 1) as f64 * w,
        y1: -90.0 + (iy + 1) as f64 * h,
    }
}

/// The point's cell coordinates at the finest resolution (32 bits per axis). The caller ensures
/// lon in [-180, 180] and lat in [-90, 90].
#[inline(always)]
fn fixed(p: Pt) -> (u32, u32) {
    const SX: f64 = 4_294_967_296.0 / 360.0;
    const SY: f64 = 4_294_967_296.0 / 180.0;
    // `as` saturates, and lon = 180 lands one past the last cell, hence the min.
    let x = (((p[0] + 180.0) * SX) as u64).min(u64::from(u32::MAX));
    let y = (((p[1] + 90.0) * SY) as u64).min(u64::from(u32::MAX));
    (x as u32, y as u32)
}

impl Tree {
    /// Builds the tree over `shapes`. Polygons whose reference point cannot be placed off every
    /// ring (not expected for real coordinates) are still indexed exactly, only less finely.
    pub(crate) fn build(shapes: &[Shape]) -> Tree {
        let mut tree = Tree::default();
        let mut shapes_per_fence: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for s in shapes {
            *shapes_per_fence.entry(s.fence).or_default() += 1;
        }
        tree.ids = shapes
            .iter()
            .map(|s| if shapes_per_fence.get(&s.fence).is_some_and(|&n| n > 1) { s.fence | MULTI } else { s.fence })
            .collect();
        let mut roots = Vec::with_capacity(shapes.len());
        for (i, s) in shapes.iter().enumerate() {
            let shape = i as u32;
            match &s.geom {
                Geom::Circle { .. } => roots.push(Pending::Circle { shape }),
                Geom::Polygon(rings) => {
                    // A virtual parent holding every edge and a reference point anywhere off the
                    // rings: valid for every cell, so the root derives from it like any child.
                    let world = Rect { x0: -180.0, y0: -90.0, x1: 180.0, y1: 90.0 };
                    let candidates = reference_candidates(s.bbox.expanded(1.0)).chain(reference_candidates(world));
                    let found = candidates.take(512).find_map(|r| {
                        let ws: Option<Vec<i32>> = rings.iter().map(|ring| winding(&ring.pts, r)).collect();
                        ws.map(|ws| (r, ws))
                    });
                    let Some((r, ws)) = found else { continue };
                    let prings = rings
                        .iter()
                        .zip(ws)
                        .enumerate()
                        .map(|(ri, (ring, w))| PRing {
                            ring: ri,
                            hole: ring.hole,
                            w,
                            edges: (0..ring.pts.len().saturating_sub(1) as u32).collect(),
                        })
                        .collect();
                    roots.push(Pending::Polygon { shape, r, rings: prings });
                }
            }
        }
        let root = tree.derive_cell(shapes, &roots, 0, 0, 0, &[]);
        tree.nodes.push(Node::default());
        tree.fill(shapes, 0, 0, 0, 0, root);
        tree.ids = Vec::new();
        tree.top = tree.top_table();
        tree
    }

    /// What cell `(ix, iy)` of level `depth` holds, given its parent's boundary shapes and the
    /// fences covering an ancestor that queries skip (see [`Tree::fill`]).
    fn derive_cell(
        &self,
        shapes: &[Shape],
        parent: &[Pending],
        depth: u32,
        ix: u64,
        iy: u64,
        inherited: &[u32],
    ) -> Content {
        let cell = cell_rect(depth, ix, iy);
        let ex = cell.expanded(EXPAND);
        let mut c = Content { inside: inherited.to_vec(), boundary: Vec::new() };
        for p in parent {
            match derive(shapes, p, &cell, &ex) {
                Derived::Outside => {}
                Derived::Inside => c.inside.push(self.stored_fence(p)),
                Derived::Boundary(b) => c.boundary.push(b),
            }
        }
        c
    }

    /// Fills node `node`, cell `(ix, iy)` of level `depth`, with `content`, splitting it while
    /// that pays. Queries start at the top table, below the nodes above [`TOP_DEPTH`], so the
    /// fences covering those nodes move down to their children.
    fn fill(&mut self, shapes: &[Shape], node: usize, depth: u32, ix: u64, iy: u64, content: Content) {
        let cell = cell_rect(depth, ix, iy);
        let cost: usize = content.boundary.iter().map(Pending::cost).sum();
        let coarse = content
            .boundary
            .iter()
            .any(|b| shapes.get(shape_of(b)).is_some_and(|s| (cell.y1 - cell.y0) * RESOLUTION > s.extent()));
        let costly = cost > LEAF_COST && (coarse || separable_cost(shapes, &content.boundary, cost) > LEAF_COST);
        let split = (costly || coarse) && depth < MAX_DEPTH && self.nodes.len() < MAX_NODES;
        if !split {
            let (inside, inside_len) = self.store_inside(&content.inside);
            let first = self.blob.len() as u32;
            let n = content.boundary.iter().filter(|b| self.push_boundary(shapes, b)).count() as u32;
            self.set_node(node, Node { first, inside, inside_len, meta: n });
            return;
        }
        let skipped = depth < TOP_DEPTH;
        let inherited: &[u32] = if skipped { &content.inside } else { &[] };
        let children: Vec<(u64, u64, Content)> = (0..16u64)
            .map(|c| {
                let (cx, cy) = (ix * 4 + (c & 3), iy * 4 + (c >> 2));
                (cx, cy, self.derive_cell(shapes, &content.boundary, depth + 1, cx, cy, inherited))
            })
            .collect();
        let mask = children.iter().enumerate().filter(|(_, c)| !c.2.is_empty()).fold(0u32, |m, (i, _)| m | 1 << i);
        let (inside, inside_len) = if skipped { (0, 0) } else { self.store_inside(&content.inside) };
        let first = self.nodes.len();
        self.set_node(node, Node { first: first as u32, inside, inside_len, meta: INTERNAL | mask });
        self.nodes.extend(std::iter::repeat_n(Node::default(), mask.count_ones() as usize));
        drop(content);
        for (slot, (cx, cy, child)) in children.into_iter().filter(|c| !c.2.is_empty()).enumerate() {
            self.fill(shapes, first + slot, depth + 1, cx, cy, child);
        }
    }

    fn store_inside(&mut self, fences: &[u32]) -> (u32, u32) {
        match fences {
            [] => (0, 0),
            [one] => (*one, 1),
            many => {
                let start = self.inside.len() as u32;
                self.inside.extend_from_slice(many);
                (start, many.len() as u32)
            }
        }
    }

    /// Walks the tree down to [`TOP_DEPTH`] and records where each top cell's queries start.
    fn top_table(&self) -> Vec<u32> {
        let mut top = vec![EMPTY; (TOP_SIDE * TOP_SIDE) as usize];
        let mut stack = vec![(0u32, 0u32, 0u64, 0u64)];
        while let Some((node, depth, ix, iy)) = stack.pop() {
            let Some(n) = self.nodes.get(node as usize) else { continue };
            if n.meta & INTERNAL == 0 || depth == TOP_DEPTH {
                // Every top cell under this node starts here.
                let span = 1u64 << (2 * (TOP_DEPTH - depth));
                for y in iy * span..(iy + 1) * span {
                    for x in ix * span..(ix + 1) * span {
                        if let Some(t) = top.get_mut((y * TOP_SIDE + x) as usize) {
                            *t = node;
                        }
                    }
                }
            } else {
                let mut slot = 0;
                for c in 0..16u64 {
                    if n.meta & (1 << c) != 0 {
                        stack.push((n.first + slot, depth + 1, ix * 4 + (c & 3), iy * 4 + (c >> 2)));
                        slot += 1;
                    }
                }
            }
        }
        top
    }

    /// The fence number of a pending shape as stored: with [`MULTI`] set when the fence has
    /// several shapes.
    fn stored_fence(&self, p: &Pending) -> u32 {
        self.ids.get(shape_of(p)).copied().unwrap_or(u32::MAX)
    }

    fn set_node(&mut self, node: usize, value: Node) {
        if let Some(n) = self.nodes.get_mut(node) {
            *n = value;
        }
    }

    /// Appends a boundary entry to the blob; false if the pending shape did not match its shape.
    fn push_boundary(&mut self, shapes: &[Shape], p: &Pending) -> bool {
        let fence = u64::from(self.stored_fence(p));
        match (p, shapes.get(shape_of(p)).map(|s| &s.geom)) {
            (Pending::Circle { .. }, Some(&Geom::Circle { center, radius_m })) => {
                self.blob.push([word_of(KIND_CIRCLE | fence), center[0], center[1], radius_m]);
            }
            (Pending::Polygon { r, rings, .. }, Some(Geom::Polygon(shape_rings))) => {
                let header = self.blob.len();
                self.blob.push([word_of(KIND_POLYGON | (rings.len() as u64) << 32 | fence), r[0], r[1], 0.0]);
                for pr in rings {
                    let pts = shape_rings.get(pr.ring).map_or(&[][..], |r| &r.pts[..]);
                    let ring_header = self.blob.len();
                    self.blob.push([0.0; 4]);
                    let before = self.blob.len();
                    self.blob
                        .extend(pr.edges.iter().filter_map(|&i| edge(pts, i)).map(|(a, b)| [a[0], a[1], b[0], b[1]]));
                    let n = (self.blob.len() - before) as u64;
                    self.stored_edges += n as usize;
                    let meta = u64::from(pr.w as u32) | u64::from(pr.hole) << 32 | n << 33;
                    if let Some(w) = self.blob.get_mut(ring_header) {
                        w[0] = word_of(meta);
                    }
                }
                let total = (self.blob.len() - header) as u64;
                if let Some(w) = self.blob.get_mut(header) {
                    w[3] = word_of(total);
                }
            }
            _ => return false,
        }
        self.boundary_entries += 1;
        true
    }

    /// Appends to `out` the fence of every shape containing `p` (lon in [-180, 180], lat in
    /// [-90, 90], checked by the caller). `out` may hold duplicates when several shapes of one
    /// fence contain the point; the caller sorts and deduplicates.
    #[inline]
    pub(crate) fn query(&self, p: Pt, out: &mut Vec<u32>) {
        let (x, y) = fixed(p);
        let top_shift = 32 - 2 * TOP_DEPTH;
        let cell = u64::from(y >> top_shift) * TOP_SIDE + u64::from(x >> top_shift);
        let Some(&start) = self.top.get(cell as usize) else { return };
        let mut node = start as usize;
        // The shift selecting the child below level TOP_DEPTH; a leaf found in the top table
        // stops before it is used.
        let mut shift = 30 - 2 * TOP_DEPTH as i32;
        while let Some(n) = self.nodes.get(node) {
            match n.inside_len {
                0 => {}
                1 => push(out, n.inside),
                len => {
                    for &f in self.inside.get(n.inside as usize..(n.inside + len) as usize).unwrap_or(&[]) {
                        push(out, f);
                    }
                }
            }
            if n.meta & INTERNAL == 0 {
                if n.meta > 0 {
                    self.leaf_query(n.first as usize, n.meta, p, out);
                }
                return;
            }
            if shift < 0 {
                return;
            }
            let c = ((y >> shift) & 3) * 4 + ((x >> shift) & 3);
            let bit = 1u32 << c;
            if n.meta & bit == 0 {
                return;
            }
            node = n.first as usize + (n.meta & (bit - 1) & 0xFFFF).count_ones() as usize;
            shift -= 2;
        }
    }

    /// Evaluates the `entries` boundary entries of a leaf starting at `blob[at]`.
    fn leaf_query(&self, mut at: usize, entries: u32, p: Pt, out: &mut Vec<u32>) {
        for _ in 0..entries {
            let Some(h) = self.blob.get(at) else { return };
            let header = bits(h[0]);
            let fence = header as u32;
            let known = fence & MULTI != 0 && out.contains(&(fence & !MULTI));
            if header & KIND_POLYGON != 0 {
                let total = bits(h[3]) as usize;
                if !known && self.polygon_contains(at, [h[1], h[2]], p) {
                    out.push(fence & !MULTI);
                }
                at += total.max(1);
            } else {
                if !known && haversine_m([h[1], h[2]], p) < h[3] {
                    out.push(fence & !MULTI);
                }
                at += 1;
            }
        }
    }

    /// Whether the polygon entry at `blob[at]` with reference `r` contains `p`.
    #[inline]
    fn polygon_contains(&self, at: usize, r: Pt, p: Pt) -> bool {
        let Some(h) = self.blob.get(at) else { return false };
        let rings = (bits(h[0]) >> 32) as u32 & 0x3FFF_FFFF;
        let mut at = at + 1;
        for _ in 0..rings {
            let Some(rh) = self.blob.get(at) else { return false };
            let meta = bits(rh[0]);
            let (mut w, hole, n) = (meta as u32 as i32, (meta >> 32) & 1 == 1, (meta >> 33) as usize);
            let edges = self.blob.get(at + 1..at + 1 + n).unwrap_or(&[]);
            for e in edges {
                let (a, b) = ([e[0], e[1]], [e[2], e[3]]);
                if on_segment(a, b, p) {
                    return false;
                }
                w += crossing(r, p, a, b);
            }
            if (w != 0) == hole {
                return false;
            }
            at += 1 + n;
        }
        true
    }

    pub(crate) fn stats(&self) -> TreeStats {
        let mut depth = 0;
        let mut stack = vec![(0usize, 0u32)];
        while let Some((i, d)) = stack.pop() {
            depth = depth.max(d);
            if let Some(n) = self.nodes.get(i)
                && n.meta & INTERNAL != 0
            {
                let k = (n.meta & 0xFFFF).count_ones() as usize;
                stack.extend((0..k).map(|c| (n.first as usize + c, d + 1)));
            }
        }
        TreeStats {
            nodes: self.nodes.len(),
            entries: self.inside.len() + self.boundary_entries,
            edges: self.stored_edges,
            depth,
            bytes: self.nodes.len() * std::mem::size_of::<Node>()
                + self.inside.len() * 4
                + self.blob.len() * std::mem::size_of::<Word>()
                + self.top.len() * 4,
        }
    }
}

/// Adds a fence to an answer, deduplicating only fences with several shapes.
#[inline(always)]
fn push(out: &mut Vec<u32>, f: u32) {
    if f & MULTI == 0 {
        out.push(f);
    } else if !out.contains(&(f & !MULTI)) {
        out.push(f & !MULTI);
    }
}

fn shape_of(p: &Pending) -> usize {
    match p {
        Pending::Polygon { shape, .. } | Pending::Circle { shape } => *shape as usize,
    }
}

/// The part of a cell's `cost` that splitting can reduce: each edge counted once however many
/// entries have it, and an entry whose every edge another entry already has counts nothing. The
/// same polygon registered as several fences (or a shape repeated inside a MultiPolygon) puts
/// coincident edges in every cell along its boundary; no split ever separates them, and splitting
/// on their sum went down to [`MAX_DEPTH`] along the whole boundary: ten copies of one island's
/// 10-vertex polygon took about 30 s to index. Without coincident edges this is `cost` itself, so
/// other sets get exactly the tree they got before.
fn separable_cost(shapes: &[Shape], boundary: &[Pending], cost: usize) -> usize {
    // (edge with its ends in a fixed order, entry), sorted: equal edges become neighbours.
    let mut edges: Vec<([u64; 4], usize)> = Vec::new();
    for (entry, p) in boundary.iter().enumerate() {
        let (Pending::Polygon { rings, .. }, Some(Geom::Polygon(shape_rings))) =
            (p, shapes.get(shape_of(p)).map(|s| &s.geom))
        else {
            continue;
        };
        for pr in rings {
            let pts = shape_rings.get(pr.ring).map_or(&[][..], |r| &r.pts[..]);
            for (a, b) in pr.edges.iter().filter_map(|&i| edge(pts, i)) {
                let (a, b) = if (a[0], a[1]) <= (b[0], b[1]) { (a, b) } else { (b, a) };
                edges.push(([a[0].to_bits(), a[1].to_bits(), b[0].to_bits(), b[1].to_bits()], entry));
            }
        }
    }
    edges.sort_unstable();
    let mut repeated = 0;
    let mut contributes = vec![false; boundary.len()];
    for (i, (key, entry)) in edges.iter().enumerate() {
        if i > 0 && edges.get(i - 1).is_some_and(|(prev, _)| prev == key) {
            repeated += 1;
        } else if let Some(c) = contributes.get_mut(*entry) {
            *c = true;
        }
    }
    let copies =
        boundary.iter().zip(&contributes).filter(|(p, c)| matches!(p, Pending::Polygon { .. }) && !**c).count();
    cost.saturating_sub(repeated + copies)
}

/// Edge `i` of a ring.
#[inline]
fn edge(pts: &[Pt], i: u32) -> Option<(Pt, Pt)> {
    let i = i as usize;
    Some((*pts.get(i)?, *pts.get(i + 1)?))
}

/// Points of `cell` to try as reference points: the centre, then a Halton sequence, all strictly
/// inside the cell.
fn reference_candidates(cell: Rect) -> impl Iterator<Item = Pt> {
    fn halton(mut i: u32, base: u32) -> f64 {
        let (mut f, mut r) = (1.0, 0.0);
        while i > 0 {
            f /= f64::from(base);
            r += f * f64::from(i % base);
            i /= base;
        }
        r
    }
    std::iter::once([0.5, 0.5])
        .chain((1..).map(|i| [halton(i, 2), halton(i, 3)]))
        .map(move |[fx, fy]| [cell.x0 + (cell.x1 - cell.x0) * fx, cell.y0 + (cell.y1 - cell.y0) * fy])
        .filter(move |p| p[0] > cell.x0 && p[0] < cell.x1 && p[1] > cell.y0 && p[1] < cell.y1)
}

/// What the parent's pending shape `p` is within `cell` (`ex` is the cell enlarged by [`EXPAND`]).
fn derive(shapes: &[Shape], p: &Pending, cell: &Rect, ex: &Rect) -> Derived {
    let Some(shape) = shapes.get(shape_of(p)) else { return Derived::Outside };
    if !shape.meets(ex) {
        return Derived::Outside;
    }
    match (p, &shape.geom) {
        (Pending::Circle { .. }, Geom::Circle { center, radius_m }) => {
            let (dmin, dmax) = distance_range(*center, ex);
            // Above the haversine formula's rounding error (centimetres near the antipode).
            let margin = 0.1 + radius_m * 1e-9;
            if dmax < radius_m - margin {
                Derived::Inside
            } else if dmin > radius_m + margin {
                Derived::Outside
            } else {
                Derived::Boundary(p.clone())
            }
        }
        (Pending::Polygon { shape: si, r, rings }, Geom::Polygon(shape_rings)) => {
            derive_polygon(*si, *r, rings, shape_rings, cell, ex).unwrap_or_else(|| Derived::Boundary(p.clone()))
        }
        _ => Derived::Outside,
    }
}

/// Derives a polygon entry for a child cell, or `None` when no reference point off the child's
/// edges was found (the caller then keeps the parent's entry, which stays valid in the child).
fn derive_polygon(
    shape: u32,
    r: Pt,
    rings: &[PRing],
    shape_rings: &[super::shape::Ring],
    cell: &Rect,
    ex: &Rect,
) -> Option<Derived> {
    let pts_of = |pr: &PRing| shape_rings.get(pr.ring).map_or(&[][..], |r| &r.pts[..]);
    let child_edges: Vec<Vec<u32>> = rings
        .iter()
        .map(|pr| {
            let pts = pts_of(pr);
            pr.edges
                .iter()
                .copied()
                .filter(|&i| edge(pts, i).is_some_and(|(a, b)| segment_meets_rect(a, b, ex)))
                .collect()
        })
        .collect();
    // The winding number of every parent ring around q, from the parent's reference point. Exact
    // when q lies on none of the parent's edges, which holds for the points used below: an edge
    // through q would meet the cell and be one of the child's edges, which q is checked against.
    let winding_at = |q: Pt| -> Vec<i32> {
        rings
            .iter()
            .map(|pr| {
                let pts = pts_of(pr);
                pr.w + pr.edges.iter().filter_map(|&i| edge(pts, i)).map(|(a, b)| crossing(r, q, a, b)).sum::<i32>()
            })
            .collect()
    };
    let satisfied = |pr: &PRing, w: i32| (w != 0) != pr.hole;

    if child_edges.iter().all(Vec::is_empty) {
        // No ring crosses the cell: it is uniformly inside or outside; its centre decides.
        let ws = winding_at(cell.center());
        let inside = rings.iter().zip(ws).all(|(pr, w)| satisfied(pr, w));
        return Some(if inside { Derived::Inside } else { Derived::Outside });
    }
    let on_child_edge = |q: Pt| {
        rings.iter().zip(&child_edges).any(|(pr, es)| {
            let pts = pts_of(pr);
            es.iter().filter_map(|&i| edge(pts, i)).any(|(a, b)| on_segment(a, b, q))
        })
    };
    let r2 = reference_candidates(*cell).take(256).find(|&q| !on_child_edge(q))?;
    let ws = winding_at(r2);
    let mut kept = Vec::new();
    for ((pr, es), w) in rings.iter().zip(child_edges).zip(ws) {
        if es.is_empty() {
            // This ring does not cross the cell, so its verdict holds for the whole cell.
            if !satisfied(pr, w) {
                return Some(Derived::Outside);
            }
        } else {
            kept.push(PRing { ring: pr.ring, hole: pr.hole, w, edges: es });
        }
    }
    Some(Derived::Boundary(Pending::Polygon { shape, r: r2, rings: kept }))
}

/// Smallest and largest haversine distance, in metres, from `c` to any point of `rect`.
///
/// On the sphere the extremes over a lon/lat rectangle lie at its corners, at the centre or its
/// antipode if inside, on a parallel edge at the longitude nearest to or farthest from the
/// centre's, or on a meridian edge where the great circle through the centre is closest to or
/// farthest from it; all of these are evaluated.
pub(crate) fn distance_range(c: Pt, rect: &Rect) -> (f64, f64) {
    let (mut dmin, mut dmax) = (f64::INFINITY, 0.0f64);
    let mut consider = |q: Pt| {
        let d = haversine_m(c, q);
        dmin = dmin.min(d);
        dmax = dmax.max(d);
    };
    for q in [[rect.x0, rect.y0], [rect.x1, rect.y0], [rect.x1, rect.y1], [rect.x0, rect.y1]] {
        consider(q);
    }
    let in_x = |x: f64| x >= rect.x0 && x <= rect.x1;
    let in_y = |y: f64| y >= rect.y0 && y <= rect.y1;
    for k in [-360.0, 0.0, 360.0] {
        for x in [c[0] + k, c[0] + 180.0 + k] {
            if in_x(x) {
                consider([x, rect.y0]);
                consider([x, rect.y1]);
                if in_y(-c[1]) {
                    consider([x, -c[1]]);
                }
                if in_y(c[1]) {
                    consider([x, c[1]]);
                }
            }
        }
    }
    for x in [rect.x0, rect.x1] {
        // cos d = sin(lat_c) sin(lat) + cos(lat_c) cos(lat) cos(dlon) = rho cos(lat - star)
        let dl = (x - c[0]).to_radians();
        let lat_c = c[1].to_radians();
        let star = lat_c.sin().atan2(lat_c.cos() * dl.cos()).to_degrees();
        for y in [star, star - 180.0, star + 180.0] {
            if in_y(y) {
                consider([x, y]);
            }
        }
    }
    (dmin, dmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_exact_and_points_land_in_their_cell() {
        let r = cell_rect(2, 5, 3);
        assert_eq!((r.x0, r.x1, r.y0, r.y1), (-67.5, -45.0, -56.25, -45.0));
        for p in [[-180.0, -90.0], [180.0, 90.0], [0.0, 0.0], [-67.5, -56.25], [151.2093, -33.8688]] {
            let (x, y) = fixed(p);
            for depth in 0..=MAX_DEPTH {
                let shift = 32 - 2 * depth;
                let (ix, iy) = (u64::from(x) >> shift, u64::from(y) >> shift);
                assert!(cell_rect(depth, ix, iy).expanded(EXPAND).contains(p), "{p:?} at depth {depth}");
            }
        }
    }

    #[test]
    fn distance_range_brackets_sampled_distances() {
        let rects = [
            Rect { x0: 10.0, y0: 40.0, x1: 12.0, y1: 42.0 },
            Rect { x0: -180.0, y0: -90.0, x1: 180.0, y1: 90.0 },
            Rect { x0: 170.0, y0: -10.0, x1: 180.0, y1: 10.0 },
        ];
        for c in [[11.0, 41.0], [0.0, 0.0], [-175.0, 5.0], [100.0, -89.0]] {
            for rect in &rects {
                let (lo, hi) = distance_range(c, rect);
                for i in 0..=20 {
                    for j in 0..=20 {
                        let q = [
                            rect.x0 + (rect.x1 - rect.x0) * f64::from(i) / 20.0,
                            rect.y0 + (rect.y1 - rect.y0) * f64::from(j) / 20.0,
                        ];
                        let d = haversine_m(c, q);
                        assert!(d >= lo - 1e-6 && d <= hi + 1e-6, "{c:?} {rect:?} {q:?}: {d} not in [{lo}, {hi}]");
                    }
                }
            }
        }
    }
}
