//! Geofence point-evaluation throughput (BRIEF section 6), with the baseline measured in the same
//! run so the figures read as ratios.
//!
//! One evaluation is one point against the whole fence set: every fence containing it, as a
//! sorted list of fence numbers. Two fence sets:
//!
//! - `geofence_real/*`: the real sets in `tests/data` (41 Australian port limits, 177 countries,
//!   56 US states, 33 London boroughs; 306 fences with 61,852 positions once Russia's three
//!   overshooting longitudes are snapped and the self-crossing Richmond upon Thames is left out,
//!   both as the index build reports them).
//! - `geofence_10k/*`: 10,000 generated fences around real places (centred on positions of the
//!   real sets: a fence picked at random, then one of its positions), half circles of 100 m to
//!   5 km, half star-shaped polygons of 150 m to 4 km (`tests/common/mod.rs`).
//!
//! Fence and point sets come from `benches/common`, shared with the `tile38` bench.
//!
//! Point sets (deterministic): `near` picks a fence at random and a uniform point in its bounding
//! box (doubled in size for the generated set), so every point is a candidate for the baseline
//! and many lie near boundaries; `world` is uniform in lon/lat; `ais` are the 3,038 real AIS
//! positions of the codecs samples.
//!
//! References: `rtree_contains_*` is the baseline the brief names, an `rstar` R-tree over fence
//! bounding boxes and, for every candidate, geo's `Contains` (polygons) or geo's haversine distance
//! (circles). `rtree_intervaltree_near` replaces `Contains` with geo's own edge index,
//! `IntervalTreeMultiPolygon`, built per fence up front: what geo offers without our code.
//! `geofence_build/real` times building our index from the real specs (fences per second).

mod common;

use std::hint::black_box;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geo::algorithm::indexed::IntervalTreeMultiPolygon;
use geo::{Contains, Point};
use geostream_analytics::FenceIndex;
use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};

type Boxes = RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>;

fn boxes(b: impl Iterator<Item = [f64; 4]>) -> Boxes {
    RTree::bulk_load(
        b.enumerate().map(|(i, b)| GeomWithData::new(Rectangle::from_corners([b[0], b[1]], [b[2], b[3]]), i)).collect(),
    )
}

/// Runs our index over `points`, returning the number of hits (so nothing is optimised away).
fn run_index(index: &FenceIndex, points: &[[f64; 2]]) -> usize {
    let mut out = Vec::new();
    let mut hits = 0;
    for p in points {
        index.query(p[0], p[1], &mut out);
        hits += out.len();
    }
    hits
}

/// The baseline: R-tree candidates, then each candidate's exact test; sorted like ours.
fn run_baseline(tree: &Boxes, points: &[[f64; 2]], contains: impl Fn(usize, [f64; 2]) -> bool) -> usize {
    let mut out = Vec::new();
    let mut hits = 0;
    for p in points {
        out.clear();
        out.extend(tree.locate_all_at_point(&[p[0], p[1]]).map(|c| c.data).filter(|&i| contains(i, *p)));
        out.sort_unstable();
        hits += out.len();
    }
    hits
}

fn real(c: &mut Criterion) {
    let common::RealSet { index, geos, boxes: bbs, .. } = common::real_set();
    let tree = boxes(bbs.iter().copied());
    let interval: Vec<IntervalTreeMultiPolygon<f64>> = geos.iter().map(IntervalTreeMultiPolygon::new).collect();
    let contains = |i: usize, p: [f64; 2]| geos[i].contains(&Point::new(p[0], p[1]));

    let sets = common::real_points(&bbs);
    for (name, points) in &sets {
        // Same answers, or the comparison is meaningless.
        assert_eq!(run_index(&index, points), run_baseline(&tree, points, contains), "{name}: hit counts differ");
    }

    let mut g = c.benchmark_group("geofence_real");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (name, points) in &sets {
        g.throughput(Throughput::Elements(points.len() as u64));
        g.bench_function(format!("index_{name}"), |b| b.iter(|| run_index(&index, black_box(points))));
        g.bench_function(format!("rtree_contains_{name}"), |b| {
            b.iter(|| run_baseline(&tree, black_box(points), contains))
        });
        if *name == "near" {
            g.bench_function("rtree_intervaltree_near", |b| {
                b.iter(|| run_baseline(&tree, black_box(points), |i, p| interval[i].contains(&Point::new(p[0], p[1]))))
            });
        }
    }
    g.finish();

    let specs: Vec<_> = common::real_fences(true).into_iter().map(|f| f.spec).collect();
    let mut g = c.benchmark_group("geofence_build");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.throughput(Throughput::Elements(index.len() as u64));
    g.bench_function("real", |b| b.iter(|| FenceIndex::build_skipping_invalid(black_box(&specs)).0.len()));
    g.finish();
}

fn generated(c: &mut Criterion) {
    let (fences, index, bbs) = common::generated_set();
    let tree = boxes(bbs.iter().copied());
    let contains = |i: usize, p: [f64; 2]| fences[i].area.contains(p);
    let sets = common::generated_points(&bbs);
    for (name, points) in &sets {
        assert_eq!(run_index(&index, points), run_baseline(&tree, points, contains), "10k {name}: hit counts differ");
    }

    let mut g = c.benchmark_group("geofence_10k");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (name, points) in &sets {
        g.throughput(Throughput::Elements(points.len() as u64));
        g.bench_function(format!("index_{name}"), |b| b.iter(|| run_index(&index, black_box(points))));
        g.bench_function(format!("rtree_contains_{name}"), |b| {
            b.iter(|| run_baseline(&tree, black_box(points), contains))
        });
    }
    g.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, real, generated);
}
criterion_main!(group::benches);
