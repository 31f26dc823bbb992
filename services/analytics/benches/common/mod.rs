//! Shared by the benchmarks (`geofence`, `tile38`): the fence sets and the point sets, so that every
//! figure compared across targets is measured on the same fences and the same points.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
mod data;

pub use data::*;
use geo::{BoundingRect, MultiPolygon};
use geostream_analytics::FenceIndex;

/// Points per generated point set.
pub const POINTS: usize = 10_000;

/// The real fences the index accepts (Richmond upon Thames, self-crossing, is refused), with their
/// geometries and bounding boxes, and the index built from them.
pub struct RealSet {
    pub index: FenceIndex,
    pub specs: Vec<geostream_model::FenceSpec>,
    pub geos: Vec<MultiPolygon<f64>>,
    pub boxes: Vec<[f64; 4]>,
}

pub fn real_set() -> RealSet {
    let all = real_fences(true);
    let index = FenceIndex::build_skipping_invalid(all.iter().map(|f| &f.spec)).0;
    let mut set = RealSet { index, specs: Vec::new(), geos: Vec::new(), boxes: Vec::new() };
    for f in all {
        if set.index.position(&f.spec.id).is_none() {
            continue;
        }
        let Some(b) = f.geo.bounding_rect() else { continue };
        set.boxes.push([b.min().x, b.min().y, b.max().x, b.max().y]);
        set.specs.push(f.spec);
        set.geos.push(f.geo);
    }
    set
}

/// The 10,000 generated fences of the `geofence_10k` figures, their index and boxes.
pub fn generated_set() -> (Vec<GeneratedFence>, FenceIndex, Vec<[f64; 4]>) {
    let fences = generated_fences(10_000, 11);
    let index = FenceIndex::build(fences.iter().map(|f| &f.spec)).expect("generated fences are valid");
    let boxes = fences.iter().map(|f| f.area.bbox()).collect();
    (fences, index, boxes)
}

/// `near`, `world` and `ais` for the real set (`boxes` from [`real_set`]).
pub fn real_points(boxes: &[[f64; 4]]) -> [(&'static str, Vec<[f64; 2]>); 3] {
    [("near", near(boxes, 1.0, POINTS, 7)), ("world", world(POINTS, 8)), ("ais", ais_points())]
}

/// `near`, `world` and `ais` for the generated set (`boxes` from [`generated_set`]); near points
/// come from boxes doubled in size, since the fences are small.
pub fn generated_points(boxes: &[[f64; 4]]) -> [(&'static str, Vec<[f64; 2]>); 3] {
    [("near", near(boxes, 2.0, POINTS, 12)), ("world", world(POINTS, 13)), ("ais", ais_points())]
}

/// The real AIS positions as `[lon, lat]`.
pub fn ais_points() -> Vec<[f64; 2]> {
    ais_observations().iter().filter_map(lon_lat).collect()
}

/// `n` points, each uniform in the bounding box (scaled by `grow` about its centre) of a fence
/// picked at random: every point is a box candidate, and many lie near boundaries.
pub fn near(boxes: &[[f64; 4]], grow: f64, n: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|_| {
            let b = boxes[(rng.next_u64() % boxes.len() as u64) as usize];
            let (w, h) = ((b[2] - b[0]) * grow, (b[3] - b[1]) * grow);
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            [
                rng.range(cx - w / 2.0, cx + w / 2.0).clamp(-180.0, 180.0),
                rng.range(cy - h / 2.0, cy + h / 2.0).clamp(-90.0, 90.0),
            ]
        })
        .collect()
}

/// `n` points uniform in lon/lat.
pub fn world(n: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut rng = SplitMix(seed);
    (0..n).map(|_| [rng.range(-180.0, 180.0), rng.range(-90.0, 90.0)]).collect()
}
