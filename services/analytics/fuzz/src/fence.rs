//! Fence definitions as the processor, the api, the operator and `geostream analyze --fences` take
//! them, and the index the processor builds from them.

use geostream_analytics::{FenceError, FenceIndex};
use geostream_model::geojson::GeometryValue;
use geostream_model::{FenceId, FenceShape, FenceSpec};
use serde_json::{Map, Value};

use crate::explained;

/// Caps the work per input so a large seed (a country set) stays a few milliseconds.
const MAX_PROBES: usize = 256;
const MAX_SINGLE_INDEXES: usize = 8;

/// `data` is JSON: a GeoJSON FeatureCollection of fences (as `geostream analyze --fences` reads
/// it), a list of fence specs (a GeofenceSet's list, the CLI's files), one spec (a registry
/// record), or a bare fence geometry. Every spec is checked alone and the whole set is indexed.
pub fn check(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let specs = specs_of(value);
    let accepted: Vec<bool> = specs.iter().map(check_one).collect();
    check_set(&specs, &accepted);
}

fn fence_id(i: usize) -> FenceId {
    FenceId::new(format!("f{i}")).unwrap_or_else(|e| panic!("fixture fence id: {e}"))
}

fn shape_of(value: Value) -> Option<FenceShape> {
    match serde_json::from_value(value) {
        Ok(s) => Some(s),
        Err(e) => {
            explained("fence geometry", &e.to_string());
            None
        }
    }
}

fn specs_of(value: Value) -> Vec<FenceSpec> {
    let spec = |i: usize, geometry: FenceShape, properties: Map<String, Value>| FenceSpec {
        id: fence_id(i),
        version: 0,
        name: format!("fence {i}"),
        geometry,
        properties,
        enabled: true,
    };
    match value.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            let Some(features) = value.get("features").and_then(Value::as_array) else { return Vec::new() };
            features
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    let props = f.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
                    shape_of(f.get("geometry")?.clone()).map(|g| spec(i, g, props))
                })
                .collect()
        }
        Some(_) => shape_of(value).map(|g| spec(0, g, Map::new())).into_iter().collect(),
        None if value.is_array() => match serde_json::from_value::<Vec<FenceSpec>>(value) {
            Ok(specs) => specs,
            Err(e) => {
                explained("fence list", &e.to_string());
                Vec::new()
            }
        },
        None => match serde_json::from_value::<FenceSpec>(value) {
            Ok(s) => vec![s],
            Err(e) => {
                explained("fence spec", &e.to_string());
                Vec::new()
            }
        },
    }
}

/// Points worth asking about: vertices, circle centres and points just beside them.
fn probes(specs: &[&FenceSpec]) -> Vec<[f64; 2]> {
    let mut out = Vec::new();
    for spec in specs {
        match &spec.geometry {
            FenceShape::Circle { center, radius_m } => {
                out.push(*center);
                // Roughly the radius in degrees of latitude: just inside and just outside.
                let d = radius_m / 111_195.0;
                out.extend([[center[0], center[1] + d * 0.9], [center[0], center[1] + d * 1.1]]);
            }
            FenceShape::Geometry(g) => {
                let polygons: Vec<_> = match &g.value {
                    GeometryValue::Polygon { coordinates } => vec![coordinates],
                    GeometryValue::MultiPolygon { coordinates } => coordinates.iter().collect(),
                    _ => Vec::new(),
                };
                for ring in polygons.into_iter().flatten() {
                    for w in ring.windows(2) {
                        let (a, b) = (w[0].as_slice(), w[1].as_slice());
                        if let ([ax, ay, ..], [bx, by, ..]) = (a, b) {
                            out.extend([[*ax, *ay], [(ax + bx) / 2.0, (ay + by) / 2.0]]);
                        }
                    }
                }
            }
        }
        if out.len() >= MAX_PROBES {
            break;
        }
    }
    out.truncate(MAX_PROBES);
    out
}

/// One spec alone: checked as the processor's registry checks it (`validate`, then the index's
/// own check); an accepted one round-trips and indexes as exactly one fence.
fn check_one(spec: &FenceSpec) -> bool {
    let validated = spec.validate().map_err(|e| e.to_string());
    let checked = FenceIndex::check(spec).map_err(|e| e.to_string());
    if let Err(m) = &validated {
        explained("fence validation", m);
    }
    if let Err(m) = &checked {
        explained("fence index check", m);
    }
    if validated.is_err() {
        return checked.is_ok();
    }
    let json = serde_json::to_string(spec).unwrap_or_else(|e| panic!("valid fence does not serialise: {e}: {spec:?}"));
    let back: FenceSpec =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("valid fence does not read back: {e}: {json}"));
    assert_eq!(&back, spec, "fence changed in a JSON round trip: {json}");
    if checked.is_ok() {
        let enabled = FenceSpec { enabled: true, ..spec.clone() };
        let index = FenceIndex::build([&enabled]).unwrap_or_else(|e| panic!("checked fence does not index: {e}"));
        assert_eq!(index.len(), 1, "one checked fence, {} indexed", index.len());
        if let FenceShape::Circle { center, .. } = spec.geometry {
            assert!(index.contains(0, center[0], center[1]), "circle does not contain its centre: {spec:?}");
        }
    }
    checked.is_ok()
}

/// The set as the processor indexes it: exactly the enabled, unduplicated, individually accepted
/// fences are indexed, every refusal names its problem, and the shared index answers every probe
/// as the fences' own single-fence indexes do.
fn check_set(specs: &[FenceSpec], accepted: &[bool]) {
    let (index, problems) = FenceIndex::build_skipping_invalid(specs);
    for p in &problems {
        explained("fence set", &p.to_string());
    }
    if problems.iter().any(|p| matches!(p, FenceError::TooLarge { .. })) {
        return;
    }
    let count = |id: &FenceId| specs.iter().filter(|s| &s.id == id).count();
    let expected: Vec<&FenceSpec> =
        specs.iter().zip(accepted).filter(|(s, ok)| **ok && s.enabled && count(&s.id) == 1).map(|(s, _)| s).collect();
    assert_eq!(index.len(), expected.len(), "indexed fences differ from the accepted ones; problems: {problems:?}");
    let mut singles: Vec<(u32, FenceIndex)> = Vec::new();
    for spec in expected.iter().take(MAX_SINGLE_INDEXES) {
        let n = index.position(&spec.id).unwrap_or_else(|| panic!("accepted fence {} not in the index", spec.id));
        let single = FenceIndex::build([*spec]).unwrap_or_else(|e| panic!("accepted fence does not index: {e}"));
        singles.push((n, single));
    }
    let points = probes(&expected);
    let (mut out, mut one, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in points.iter().enumerate() {
        index.query(p[0], p[1], &mut out);
        assert!(out.windows(2).all(|w| w[0] < w[1]), "query answer not ascending: {out:?}");
        assert!(out.iter().all(|n| (*n as usize) < index.len()), "query names a fence beyond the set: {out:?}");
        for (n, single) in &singles {
            single.query(p[0], p[1], &mut one);
            assert_eq!(out.contains(n), !one.is_empty(), "fence {n} at {p:?}: set and single index disagree");
        }
        // A track that starts inside a fence meets it.
        let next = points[(i + 1) % points.len()];
        if !((-180.0..=180.0).contains(&next[0]) && (-90.0..=90.0).contains(&next[1])) {
            continue;
        }
        index.segment_hits(*p, next, &mut hits);
        assert!(hits.windows(2).all(|w| w[0] < w[1]), "segment hits not ascending: {hits:?}");
        for n in &out {
            assert!(hits.contains(n), "segment {p:?} -> {next:?} starts inside fence {n} but does not meet it");
        }
    }
}
