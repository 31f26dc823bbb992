use geostream_model::geojson::Geometry;
use geostream_model::{FenceId, FenceShape, FenceSpec, ModelError};

use super::*;

type Ring<'a> = &'a [[f64; 2]];

pub(crate) fn spec(id: &str, geometry: FenceShape) -> FenceSpec {
    FenceSpec {
        id: FenceId::new(id).unwrap_or_else(|e| panic!("test fence id {id:?}: {e}")),
        version: 1,
        name: id.to_owned(),
        geometry,
        properties: Map::new(),
        enabled: true,
    }
}

pub(crate) fn polygon(id: &str, rings: &[Ring]) -> FenceSpec {
    spec(id, FenceShape::Geometry(Geometry::new_polygon(rings.iter().map(|r| r.to_vec()))))
}

pub(crate) fn multipolygon(id: &str, polys: &[&[Ring]]) -> FenceSpec {
    spec(id, FenceShape::Geometry(Geometry::new_multi_polygon(polys.iter().map(|p| p.iter().map(|r| r.to_vec())))))
}

pub(crate) fn circle(id: &str, center: [f64; 2], radius_m: f64) -> FenceSpec {
    spec(id, FenceShape::Circle { center, radius_m })
}

fn index(specs: &[FenceSpec]) -> FenceIndex {
    FenceIndex::build(specs).unwrap_or_else(|e| panic!("test fences must build: {e}"))
}

/// Ids of the fences containing `(lon, lat)`.
fn ids(ix: &FenceIndex, lon: f64, lat: f64) -> Vec<String> {
    let mut out = Vec::new();
    ix.query(lon, lat, &mut out);
    out.iter().filter_map(|&n| ix.fence(n)).map(|f| f.id.to_string()).collect()
}

const SQUARE: Ring = &[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]];
const HOLE: Ring = &[[4.0, 4.0], [4.0, 6.0], [6.0, 6.0], [6.0, 4.0], [4.0, 4.0]];

#[test]
fn polygon_with_hole_interior_hole_and_outside() {
    let ix = index(&[polygon("sq", &[SQUARE, HOLE])]);
    assert_eq!(ids(&ix, 1.0, 1.0), ["sq"]);
    assert_eq!(ids(&ix, 5.0, 5.0), Vec::<String>::new(), "inside the hole");
    assert_eq!(ids(&ix, 11.0, 5.0), Vec::<String>::new());
    assert_eq!(ids(&ix, 3.999_999_999, 5.0), ["sq"]);
}

#[test]
fn points_on_edges_and_vertices_are_outside() {
    let ix = index(&[polygon("sq", &[SQUARE, HOLE])]);
    for p in [[0.0, 5.0], [10.0, 10.0], [5.0, 0.0], [4.0, 5.0], [6.0, 6.0], [5.0, 4.0]] {
        assert_eq!(ids(&ix, p[0], p[1]), Vec::<String>::new(), "{p:?} is on the boundary");
    }
    // A slanted edge: the midpoint of (0,0)-(10,10) in a triangle is exactly on it.
    let ix = index(&[polygon("tri", &[&[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 0.0]]])]);
    assert!(ids(&ix, 5.0, 5.0).is_empty());
    assert_eq!(ids(&ix, 5.0, 4.999_999_999_999), ["tri"]);
}

#[test]
fn adjacent_fences_share_their_edge_and_neither_holds_it() {
    let left = polygon("left", &[&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]);
    let right = polygon("right", &[&[[1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 0.0]]]);
    let ix = index(&[left, right]);
    assert_eq!(ids(&ix, 0.5, 0.5), ["left"]);
    assert_eq!(ids(&ix, 1.5, 0.5), ["right"]);
    assert!(ids(&ix, 1.0, 0.5).is_empty());
}

#[test]
fn overlapping_fences_are_all_reported_in_id_order() {
    let ix = index(&[
        polygon("b", &[SQUARE]),
        circle("a", [5.0, 5.0], 100_000.0),
        multipolygon("c", &[&[SQUARE], &[&[[20.0, 0.0], [30.0, 0.0], [30.0, 10.0], [20.0, 0.0]]]]),
    ]);
    assert_eq!(ids(&ix, 5.0, 5.0), ["a", "b", "c"]);
    assert_eq!(ids(&ix, 29.0, 5.0), ["c"]);
}

#[test]
fn holes_wound_like_their_exterior_are_still_holes() {
    // RFC 7946 wants holes clockwise; plenty of data does not care. The winding rule per ring
    // (inside the exterior, outside every hole) does not depend on it.
    let same_way: Ring = &[[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]];
    let ix = index(&[polygon("sq", &[SQUARE, same_way])]);
    assert!(ids(&ix, 5.0, 5.0).is_empty());
    assert_eq!(ids(&ix, 2.0, 5.0), ["sq"]);
}

#[test]
fn circles_use_the_haversine_distance_strictly() {
    let c = [151.2093, -33.8688];
    let ix = index(&[circle("sydney", c, 1_000.0)]);
    assert_eq!(ids(&ix, c[0], c[1]), ["sydney"]);
    // Walk east until just outside; the answer must flip exactly where geo's distance reaches 1000.
    let mut lon = c[0];
    while shape::haversine_m(c, [lon, c[1]]) < 1_000.0 {
        assert_eq!(ids(&ix, lon, c[1]), ["sydney"], "at {lon}");
        lon += 1e-5;
    }
    assert!(ids(&ix, lon, c[1]).is_empty(), "at {lon}");
}

#[test]
fn circles_across_the_antimeridian_and_round_a_pole() {
    let ix = index(&[circle("dateline", [179.99, 0.0], 5_000.0), circle("pole", [0.0, 89.99], 5_000.0)]);
    assert_eq!(ids(&ix, -179.99, 0.0), ["dateline"], "2.2 km away across the seam");
    assert_eq!(ids(&ix, 180.0, 0.0), ["dateline"]);
    assert!(ids(&ix, -179.9, 0.0).is_empty());
    assert_eq!(ids(&ix, 180.0, 90.0), ["pole"]);
    assert_eq!(ids(&ix, -123.0, 89.97), ["pole"], "beyond the pole on the other side");
}

#[test]
fn a_polygon_drawn_across_the_antimeridian_equals_its_split_form() {
    let drawn =
        polygon("drawn", &[&[[178.0, -18.0], [-178.0, -18.0], [-178.0, -15.0], [178.0, -15.0], [178.0, -18.0]]]);
    let split = multipolygon(
        "split",
        &[
            &[&[[178.0, -18.0], [180.0, -18.0], [180.0, -15.0], [178.0, -15.0], [178.0, -18.0]]],
            &[&[[-180.0, -18.0], [-178.0, -18.0], [-178.0, -15.0], [-180.0, -15.0], [-180.0, -18.0]]],
        ],
    );
    let ix = index(&[drawn, split]);
    let mut checked = 0;
    for i in 0..=200 {
        for j in 0..=40 {
            let lon = -180.0 + 360.0 * f64::from(i) / 200.0;
            let lat = -20.0 + 7.0 * f64::from(j) / 40.0;
            let got = ids(&ix, lon, lat);
            let d = got.iter().any(|f| f == "drawn");
            let s = got.iter().any(|f| f == "split");
            // The split form has a boundary along ±180 that the drawn form does not.
            if lon.abs() != 180.0 {
                assert_eq!(d, s, "({lon}, {lat})");
            }
            checked += usize::from(d);
        }
    }
    assert!(checked > 0, "the grid must reach into the fence");
    assert_eq!(ids(&ix, 179.0, -16.0), ["drawn", "split"]);
    assert_eq!(ids(&ix, -179.0, -16.0), ["drawn", "split"]);
    assert_eq!(ids(&ix, 180.0, -16.0), ["drawn"], "the split form's seam is its boundary");
    assert!(ids(&ix, 0.0, -16.0).is_empty(), "not the long way round");
}

#[test]
fn a_polar_cap_drawn_to_the_pole_is_taken_as_written() {
    // Like Natural Earth's Antarctica: along the coast, down the 180 meridian, along the pole.
    let cap: Ring = &[[-180.0, -70.0], [0.0, -65.0], [180.0, -70.0], [180.0, -90.0], [-180.0, -90.0], [-180.0, -70.0]];
    let ix = index(&[polygon("cap", &[cap])]);
    assert_eq!(ids(&ix, 90.0, -80.0), ["cap"]);
    assert_eq!(ids(&ix, -179.5, -89.0), ["cap"]);
    assert!(ids(&ix, 90.0, -60.0).is_empty());
}

#[test]
fn invalid_points_are_in_no_fence() {
    let ix = index(&[polygon("sq", &[SQUARE]), circle("c", [0.0, 0.0], 1e7)]);
    for (lon, lat) in [(f64::NAN, 1.0), (1.0, f64::NAN), (f64::INFINITY, 0.0), (180.5, 0.0), (0.0, -90.5)] {
        assert!(ids(&ix, lon, lat).is_empty(), "({lon}, {lat})");
    }
}

#[test]
fn an_empty_set_answers_nothing() {
    let ix = index(&[]);
    assert!(ix.is_empty());
    assert!(ids(&ix, 0.0, 0.0).is_empty());
}

#[test]
fn a_self_crossing_ring_is_refused_with_where() {
    let bowtie = polygon("bowtie", &[&[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]]);
    let err = FenceIndex::check(&bowtie).expect_err("a bowtie is ambiguous");
    assert!(matches!(err, FenceError::RingsCross { polygon: 0, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"bowtie\"") && msg.contains("ring 0 edge 0") && msg.contains("ring 0 edge 2"), "{msg}");
    assert!(msg.contains("(5, 5)"), "{msg}");
}

#[test]
fn a_hole_crossing_its_exterior_is_refused() {
    let hole: Ring = &[[8.0, 4.0], [12.0, 4.0], [12.0, 6.0], [8.0, 6.0], [8.0, 4.0]];
    let err = FenceIndex::check(&polygon("p", &[SQUARE, hole])).expect_err("rings cross");
    assert!(err.to_string().contains("ring 0 edge 1") && err.to_string().contains("ring 1 edge"), "{err}");
}

#[test]
fn a_hole_outside_its_exterior_is_refused() {
    let far: Ring = &[[20.0, 4.0], [22.0, 4.0], [22.0, 6.0], [20.0, 6.0], [20.0, 4.0]];
    let err = FenceIndex::check(&multipolygon("p", &[&[SQUARE], &[SQUARE, far]])).expect_err("stray hole");
    assert_eq!(err, FenceError::HoleOutside { fence: "p".into(), version: 1, polygon: 1, ring: 1 });
    assert!(err.to_string().contains("make the fence a MultiPolygon"), "{err}");
}

#[test]
fn spikes_repeated_positions_and_flat_members_are_accepted() {
    // Shapes found in the real data: a spike out and back (Oregon), a repeated position, and a
    // MultiPolygon member of zero area (Delaware, Newham).
    let spiky: Ring = &[
        [0.0, 0.0],
        [10.0, 0.0],
        [10.0, 5.0],
        [15.0, 5.0],
        [10.0, 5.0],
        [10.0, 10.0],
        [10.0, 10.0],
        [0.0, 10.0],
        [0.0, 0.0],
    ];
    let flat: Ring = &[[20.0, 0.0], [21.0, 1.0], [20.0, 0.0], [20.0, 0.0]];
    let ix = index(&[multipolygon("p", &[&[spiky], &[flat]])]);
    assert_eq!(ids(&ix, 5.0, 5.0), ["p"]);
    assert!(ids(&ix, 12.0, 5.0).is_empty(), "on the spike");
    assert!(ids(&ix, 12.0, 5.1).is_empty(), "beside the spike");
    assert!(ids(&ix, 20.5, 0.5).is_empty(), "on the flat member");
}

#[test]
fn a_fence_without_area_is_refused() {
    let line: Ring = &[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]];
    let err = FenceIndex::check(&polygon("line", &[line])).expect_err("no area");
    assert_eq!(err, FenceError::NoArea { fence: "line".into(), version: 1 });
}

#[test]
fn model_validation_errors_name_the_fence_and_the_position() {
    let out_of_range = polygon("far", &[&[[0.0, 0.0], [181.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]);
    let err = FenceIndex::check(&out_of_range).expect_err("longitude 181");
    assert!(matches!(err, FenceError::Spec { source: ModelError::InvalidGeometry { .. }, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"far\"") && msg.contains("ring 0, position 1") && msg.contains("181"), "{msg}");
    let unclosed = polygon("open", &[&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]);
    assert!(FenceIndex::check(&unclosed).expect_err("unclosed").to_string().contains("not closed"));
    assert!(FenceIndex::check(&circle("c", [0.0, 0.0], -1.0)).is_err());
}

#[test]
fn build_reports_every_refused_fence_and_skipping_keeps_the_rest() {
    let good = polygon("good", &[SQUARE]);
    let bowtie = polygon("bowtie", &[&[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]]);
    let mut dup = circle("good", [0.0, 0.0], 10.0);
    dup.version = 7;
    let bad_radius = circle("zero", [0.0, 0.0], 0.0);
    let specs = [good.clone(), bowtie, dup, bad_radius];
    let err = FenceIndex::build(&specs).expect_err("three problems");
    let which: Vec<Option<&str>> = err.problems.iter().map(FenceError::fence).collect();
    assert_eq!(which, [Some("good"), Some("bowtie"), Some("zero")]);
    assert!(matches!(err.problems[0], FenceError::Duplicate { first: 1, second: 7, .. }));
    assert!(err.to_string().starts_with("3 fences of the fence set cannot be indexed"), "{err}");

    let (ix, problems) = FenceIndex::build_skipping_invalid(&specs[..2]);
    assert_eq!(problems.len(), 1);
    assert_eq!(ids(&ix, 1.0, 1.0), ["good"]);
    assert_eq!(geostream_model::Classify::class(&err), geostream_model::ErrorClass::User);
}

#[test]
fn disabled_fences_are_skipped_but_known() {
    let mut off = polygon("off", &[&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]]);
    off.enabled = false;
    let ix = index(&[off, polygon("on", &[SQUARE])]);
    assert_eq!(ix.len(), 1);
    let id = |s: &str| FenceId::new(s).unwrap_or_else(|e| panic!("{e}"));
    assert!(ix.is_disabled(&id("off")));
    assert!(!ix.is_disabled(&id("on")));
    assert_eq!(ix.position(&id("on")), Some(0));
    assert_eq!(ix.position(&id("off")), None);
}

#[test]
fn segments_report_fences_they_pass_through() {
    let ix = index(&[polygon("sq", &[SQUARE]), circle("c", [50.0, 5.0], 100_000.0), polygon("far", &[HOLE])]);
    let hits = |a: [f64; 2], b: [f64; 2]| {
        let mut out = Vec::new();
        ix.segment_hits(a, b, &mut out);
        out.iter().filter_map(|&n| ix.fence(n)).map(|f| f.id.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(hits([-5.0, 5.0], [15.0, 5.0]), ["far", "sq"]);
    assert_eq!(hits([-5.0, 1.0], [15.0, 1.0]), ["sq"]);
    assert_eq!(hits([40.0, 5.0], [60.0, 5.0]), ["c"]);
    assert!(hits([-5.0, 20.0], [15.0, 20.0]).is_empty());
    assert_eq!(hits([-5.0, 10.0], [15.0, 10.0]), ["sq"], "grazing the top edge counts");
}

#[test]
fn segments_across_the_antimeridian_take_the_short_way() {
    let ix = index(&[polygon("mid", &[SQUARE]), circle("seam", [180.0, 0.0], 50_000.0)]);
    let mut out = Vec::new();
    ix.segment_hits([179.0, 0.2], [-179.0, 0.2], &mut out);
    let names: Vec<String> = out.iter().filter_map(|&n| ix.fence(n)).map(|f| f.id.to_string()).collect();
    assert_eq!(names, ["seam"], "not through the square at lon 0..10");
    assert_eq!(
        split_at_antimeridian([179.0, 0.0], [-179.0, 2.0]),
        vec![([179.0, 0.0], [180.0, 1.0]), ([-180.0, 1.0], [-179.0, 2.0])]
    );
}

#[test]
fn the_tree_refines_only_where_boundaries_are() {
    let ix = index(&[polygon("sq", &[SQUARE])]);
    let s = ix.stats();
    assert!(s.nodes < 2_000 && s.edges < 300 && s.bytes < 1 << 20, "{s:?}");
    // A tiny fence is refined to a fraction of its own size, not to the deepest level.
    let tiny = index(&[circle("berth", [151.2, -33.86], 50.0)]);
    let t = tiny.stats();
    assert!(t.depth < 13 && t.nodes < 2_000, "{t:?}");
    assert_eq!(ids(&tiny, 151.2, -33.86), ["berth"]);
}

#[test]
fn a_set_over_the_tenant_limit_keeps_the_first_fences_by_id_and_reports_the_rest() {
    // The production limit (MAX_FENCES_PER_TENANT) takes a minute to index in a debug build; the
    // rule is the same for any limit.
    let specs: Vec<FenceSpec> = (0..7).rev().map(|i| circle(&format!("f{i}"), [i as f64, 0.0], 50.0)).collect();
    let (index, problems) = FenceIndex::build_within(&specs, 5);
    assert_eq!(index.len(), 5);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(text.contains("fences") && text.contains("(7) exceeds 5"), "{text}");
    assert_eq!(index.position(&FenceId::new("f5").expect("an id")), None, "the last fences by id are left out");
    assert_eq!(index.position(&FenceId::new("f6").expect("an id")), None);
    assert!(index.position(&FenceId::new("f4").expect("an id")).is_some());
    let (index, problems) = FenceIndex::build_within(&specs, 7);
    assert_eq!((index.len(), problems.len()), (7, 0), "at the limit");
    assert_eq!(FenceIndex::build_skipping_invalid(&specs).0.len(), 7, "the production limit is far above");
}

/// The Falkland Islands outline as Natural Earth's 1:110m countries have it (public domain; the
/// shape repeated in the fuzzer's seed `services/analytics/fuzz/seeds/fence/natural-earth-copies-28s.json`).
const FALKLANDS: Ring = &[
    [-61.2, -51.85],
    [-60.0, -51.25],
    [-59.15, -51.5],
    [-58.55, -51.1],
    [-57.75, -51.55],
    [-58.05, -51.9],
    [-59.4, -52.2],
    [-59.85, -51.85],
    [-60.7, -52.3],
    [-61.2, -51.85],
];

#[test]
fn copies_of_one_polygon_get_the_tree_of_one_copy() {
    // Ten fences with the same outline put ten coincident edges in every cell along it. The
    // tree used to split on their sum down to the deepest level along the whole coastline (the
    // fuzzer's 28 s input); now it splits as for one copy.
    let one = index(&[polygon("f0", &[FALKLANDS])]);
    let copies: Vec<FenceSpec> = (0..10).map(|i| polygon(&format!("f{i}"), &[FALKLANDS])).collect();
    let ten = index(&copies);
    let (s1, s10) = (one.stats(), ten.stats());
    assert_eq!((s10.nodes, s10.depth), (s1.nodes, s1.depth), "one copy {s1:?}, ten copies {s10:?}");
    assert_eq!(s10.edges, 10 * s1.edges, "every copy keeps its edges in every leaf");
    let all: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    assert_eq!(ids(&ten, -59.5, -51.7), all, "inside: every copy");
    assert!(ids(&ten, -61.0, -52.2).is_empty(), "outside: none");
    // A point on the shared outline is on every copy's boundary: outside all of them.
    assert!(ids(&ten, -60.6, -51.55).is_empty());
}
