//! The fence index on the real fence sets (ports, countries, US states, London boroughs) against
//! an independent brute force: geo's `Contains` over every fence, with no index of ours involved.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::{RealFence, SplitMix, real_fences};
use geo::{BoundingRect, Contains, CoordsIter, Point, Rect};
use geostream_analytics::{FenceError, FenceIndex};
use proptest::prelude::*;

struct Fixture {
    index: FenceIndex,
    /// The fences the index accepted, with their number in the index and bounding box.
    fences: Vec<(u32, RealFence, Rect<f64>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let all = real_fences(true);
        let (index, _) = FenceIndex::build_skipping_invalid(all.iter().map(|f| &f.spec));
        let fences = all
            .into_iter()
            .filter_map(|f| {
                let n = index.position(&f.spec.id)?;
                let bbox = f.geo.bounding_rect()?;
                Some((n, f, bbox))
            })
            .collect();
        Fixture { index, fences }
    })
}

/// The fences containing `p` by brute force: every fence whose box holds the point, then geo.
fn brute_force(fx: &Fixture, p: [f64; 2]) -> Vec<u32> {
    let pt = Point::new(p[0], p[1]);
    let mut v: Vec<u32> = fx
        .fences
        .iter()
        .filter(|(_, _, b)| {
            b.contains(&pt) || b.min().x == p[0] || b.max().x == p[0] || b.min().y == p[1] || b.max().y == p[1]
        })
        .filter(|(_, f, _)| f.geo.contains(&pt))
        .map(|(n, _, _)| *n)
        .collect();
    v.sort_unstable();
    v
}

fn indexed(fx: &Fixture, p: [f64; 2]) -> Vec<u32> {
    let mut out = Vec::new();
    fx.index.query(p[0], p[1], &mut out);
    out
}

#[test]
fn the_real_sets_build_except_a_twisted_borough_and_raw_russia() {
    let raw = real_fences(false);
    let positions: usize = raw.iter().map(|f| f.geo.coords_count()).sum();
    assert_eq!(raw.len(), 307);
    assert_eq!(positions, 61_942, "41 ports, 177 countries, 56 states, 33 boroughs");

    let err = FenceIndex::build(raw.iter().map(|f| &f.spec)).expect_err("two fences are refused");
    let refused: Vec<&str> = err.problems.iter().filter_map(FenceError::fence).collect();
    assert_eq!(refused, ["country-018-russia", "borough-019-richmond-upon-thames"]);
    let russia = err.problems[0].to_string();
    assert!(russia.contains("longitude 180.00000000000006 is outside [-180, 180]"), "{russia}");
    assert!(russia.contains("polygon 0, ring 0, position"), "{russia}");
    let richmond = err.problems[1].to_string();
    assert!(richmond.contains("ring 0 edge 6 (positions 6-7) crosses ring 0 edge 8 (positions 8-9)"), "{richmond}");

    // With Russia's three overshooting longitudes snapped to 180 only Richmond remains.
    let fx = fixture();
    assert_eq!(fx.index.len(), 306);
    assert_eq!(fx.fences.len(), 306);
}

#[test]
fn every_vertex_of_every_fence_is_on_a_boundary_and_agrees_with_geo() {
    let fx = fixture();
    let mut checked = 0usize;
    for (n, f, _) in &fx.fences {
        for c in f.geo.coords_iter() {
            let p = [c.x, c.y];
            let got = indexed(fx, p);
            assert!(!got.contains(n), "{} contains its own vertex {p:?}", f.spec.id);
            assert_eq!(got, brute_force(fx, p), "at {p:?}, a vertex of {}", f.spec.id);
            checked += 1;
        }
    }
    assert!(checked > 60_000);
}

#[test]
fn points_near_every_edge_agree_with_geo() {
    // A hair (1e-9 degrees) either side of each edge's midpoint: the places where a rounding
    // error or a missed edge in a cell would show.
    let fx = fixture();
    let mut inside = 0usize;
    for (_, f, _) in fx.fences.iter().step_by(3) {
        for poly in &f.geo.0 {
            for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                for l in ring.lines() {
                    let (dx, dy) = (l.end.x - l.start.x, l.end.y - l.start.y);
                    let len = dx.hypot(dy);
                    if len == 0.0 {
                        continue;
                    }
                    let m = [l.start.x + dx / 2.0, l.start.y + dy / 2.0];
                    for s in [-1e-9, 0.0, 1e-9] {
                        let p = [m[0] - dy / len * s, m[1] + dx / len * s];
                        let got = indexed(fx, p);
                        inside += usize::from(!got.is_empty());
                        assert_eq!(got, brute_force(fx, p), "at {p:?} near an edge of {}", f.spec.id);
                    }
                }
            }
        }
    }
    assert!(inside > 1_000, "the offsets must land inside fences too ({inside})");
}

#[test]
fn a_deterministic_sample_of_the_world_agrees_with_geo() {
    let fx = fixture();
    let mut rng = SplitMix(2024);
    let mut per_fence: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..20_000 {
        let p = [rng.range(-180.0, 180.0), rng.range(-90.0, 90.0)];
        let got = indexed(fx, p);
        for n in &got {
            *per_fence.entry(*n).or_default() += 1;
        }
        assert_eq!(got, brute_force(fx, p), "at {p:?}");
    }
    assert!(per_fence.len() > 100, "a world sample reaches many countries ({})", per_fence.len());
}

fn near_a_fence() -> impl Strategy<Value = [f64; 2]> {
    let n = fixture().fences.len();
    (0..n, 0.0..1.0f64, 0.0..1.0f64).prop_map(|(i, u, v)| {
        let b = &fixture().fences[i].2;
        [b.min().x + (b.max().x - b.min().x) * u, b.min().y + (b.max().y - b.min().y) * v]
    })
}

fn at_a_vertex_nudged() -> impl Strategy<Value = [f64; 2]> {
    let n = fixture().fences.len();
    (0..n, any::<prop::sample::Index>(), -2i32..=2, -2i32..=2).prop_map(|(i, k, sx, sy)| {
        let g = &fixture().fences[i].1.geo;
        let c = g.coords_iter().nth(k.index(g.coords_count())).unwrap_or_default();
        // Zero to two ulps either way: on, or as close to a vertex as f64 gets.
        let nudge = |v: f64, s: i32| (0..s.abs()).fold(v, |v, _| ulp_step(v, s > 0));
        [nudge(c.x, sx), nudge(c.y, sy)]
    })
}

/// The next f64 above (`up`) or below `v` (`f64::next_up` needs Rust 1.86; the MSRV is 1.85).
fn ulp_step(v: f64, up: bool) -> f64 {
    if v == 0.0 {
        let tiny = f64::from_bits(1);
        return if up { tiny } else { -tiny };
    }
    let bits = v.to_bits();
    // Away from zero is one more in the bit pattern, for either sign.
    if (v > 0.0) == up { f64::from_bits(bits + 1) } else { f64::from_bits(bits - 1) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn index_equals_brute_force_in_fence_boxes(p in near_a_fence()) {
        let fx = fixture();
        prop_assert_eq!(indexed(fx, p), brute_force(fx, p));
    }

    #[test]
    fn index_equals_brute_force_next_to_vertices(p in at_a_vertex_nudged()) {
        let fx = fixture();
        prop_assert_eq!(indexed(fx, p), brute_force(fx, p));
    }

    #[test]
    fn index_equals_brute_force_anywhere(lon in -180.0..=180.0f64, lat in -90.0..=90.0f64) {
        let fx = fixture();
        prop_assert_eq!(indexed(fx, [lon, lat]), brute_force(fx, [lon, lat]));
    }
}

#[test]
fn golden_ais_positions_in_australian_port_limits() {
    // Inside counts per port from real AIS positions, against geo's Contains over the same
    // polygons, each position tested against every port.
    let fx = fixture();
    let ports: Vec<&(u32, RealFence, Rect<f64>)> =
        fx.fences.iter().filter(|(_, f, _)| f.spec.id.as_str().starts_with("port-")).collect();
    assert_eq!(ports.len(), 41);
    let positions: Vec<[f64; 2]> = common::ais_observations().iter().filter_map(common::lon_lat).collect();

    let mut by_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_geo: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for p in &positions {
        fx.index.query(p[0], p[1], &mut out);
        for (n, f, _) in &ports {
            if out.contains(n) {
                *by_index.entry(f.spec.id.as_str()).or_default() += 1;
            }
            if f.geo.contains(&Point::new(p[0], p[1])) {
                *by_geo.entry(f.spec.id.as_str()).or_default() += 1;
            }
        }
    }
    assert_eq!(by_index, by_geo);
    // Pinned so a change in either the decoder or the fences shows up here; the equality above is
    // the check of the index.
    let total: usize = by_geo.values().sum();
    assert_eq!((positions.len(), by_geo.len(), total), (3_038, 17, 109), "{by_geo:?}");
    assert_eq!(by_geo.get("port-024-kwinana"), Some(&33));
    assert_eq!(by_geo.get("port-016-fremantle"), Some(&27));
}

#[test]
fn generated_fences_around_real_places_agree_with_brute_force() {
    // The benchmark's generator (circles and star polygons of 100 m to 5 km), smaller: every
    // answer against geo's Contains and geo's haversine distance over all fences.
    let fences = common::generated_fences(2_000, 5);
    let index = FenceIndex::build(fences.iter().map(|f| &f.spec)).expect("generated fences are valid");
    let boxes: Vec<[f64; 4]> = fences.iter().map(|f| f.area.bbox()).collect();
    let mut rng = SplitMix(6);
    let mut out = Vec::new();
    let (mut hits, mut circle_hits) = (0usize, 0usize);
    for _ in 0..5_000 {
        let b = boxes[(rng.next_u64() % boxes.len() as u64) as usize];
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        let p = [rng.range(b[0] - w / 2.0, b[2] + w / 2.0), rng.range(b[1] - h / 2.0, b[3] + h / 2.0)];
        index.query(p[0], p[1], &mut out);
        let want: Vec<u32> = fences
            .iter()
            .filter(|f| f.area.contains(p))
            .filter_map(|f| index.position(&f.spec.id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(out, want, "at {p:?}");
        hits += out.len();
        circle_hits +=
            fences.iter().filter(|f| matches!(f.area, common::Area::Circle { .. }) && f.area.contains(p)).count();
    }
    assert!(hits > 1_000 && circle_hits > 300, "{hits} hits, {circle_hits} in circles");
}
