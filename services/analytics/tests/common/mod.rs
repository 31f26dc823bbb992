//! Shared by the tests and the benchmark: the real fence sets in `tests/data`, read into
//! `FenceSpec`s and, independently of the index, into geo geometries for brute-force checks.
#![allow(dead_code)]

use geo::{Coord, LineString, MultiPolygon, Polygon};
use geostream_model::geojson::Geometry;
use geostream_model::{FenceId, FenceShape, FenceSpec};
use serde_json::Value;

/// One real fence set: (id prefix, file bytes, property holding the name, or None for the feature id).
pub const SETS: &[(&str, &[u8], Option<&str>)] = &[
    ("port", include_bytes!("../data/amsa_australian_port_limits.geojson"), Some("port")),
    ("country", include_bytes!("../data/naturalearth_110m_admin0_countries.geojson"), Some("name")),
    ("state", include_bytes!("../data/us_states_census2017_10m.geojson"), Some("name")),
    ("borough", include_bytes!("../data/london_boroughs.geojson"), None),
];

/// A real fence: its spec and the same rings as a geo MultiPolygon.
pub struct RealFence {
    pub spec: FenceSpec,
    pub geo: MultiPolygon<f64>,
}

/// Natural Earth's Russia has three longitudes of 180.00000000000006 (a rounding artefact of
/// the shapefile, see PROVENANCE.md); the model refuses them, as it should. The loader snaps
/// longitudes within 1e-9 of ±180 back onto it, the one edit made to the real data, and only
/// when `clean` is set.
fn snap(lon: f64, clean: bool) -> f64 {
    if clean && lon.abs() > 180.0 && lon.abs() - 180.0 < 1e-9 { 180f64.copysign(lon) } else { lon }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Every feature of every real set, in file order. With `clean`, Russia's overshooting
/// longitudes are snapped to 180 (see [`snap`]).
pub fn real_fences(clean: bool) -> Vec<RealFence> {
    let mut out = Vec::new();
    for (prefix, bytes, name_prop) in SETS {
        let doc: Value = serde_json::from_slice(bytes).expect("test data is JSON");
        let features = doc["features"].as_array().expect("a FeatureCollection");
        for (i, f) in features.iter().enumerate() {
            let name = match name_prop {
                Some(p) => f["properties"][p].as_str().map(str::to_owned),
                None => f["id"].as_str().map(str::to_owned),
            }
            .unwrap_or_else(|| format!("{prefix} {i}"));
            let mut geometry = f["geometry"].clone();
            let polygons: Vec<Vec<Vec<Vec<f64>>>> = match geometry["type"].as_str() {
                Some("Polygon") => vec![serde_json::from_value(geometry["coordinates"].clone()).expect("rings")],
                Some("MultiPolygon") => serde_json::from_value(geometry["coordinates"].clone()).expect("polygons"),
                other => panic!("unexpected geometry {other:?}"),
            };
            let polygons: Vec<Vec<Vec<Vec<f64>>>> = polygons
                .into_iter()
                .map(|p| {
                    p.into_iter().map(|r| r.into_iter().map(|c| vec![snap(c[0], clean), c[1]]).collect()).collect()
                })
                .collect();
            geometry["coordinates"] = if geometry["type"] == "Polygon" {
                serde_json::to_value(&polygons[0]).expect("json")
            } else {
                serde_json::to_value(&polygons).expect("json")
            };
            let geo = MultiPolygon(
                polygons
                    .iter()
                    .map(|p| {
                        let mut rings =
                            p.iter().map(|r| LineString(r.iter().map(|c| Coord { x: c[0], y: c[1] }).collect()));
                        let exterior = rings.next().expect("an exterior ring");
                        Polygon::new(exterior, rings.collect())
                    })
                    .collect(),
            );
            let geometry: Geometry = serde_json::from_value(geometry).expect("a GeoJSON geometry");
            let spec = FenceSpec {
                id: FenceId::new(format!("{prefix}-{i:03}-{}", slug(&name))).expect("a valid fence id"),
                version: 1,
                name,
                geometry: FenceShape::Geometry(geometry),
                properties: f["properties"].as_object().cloned().unwrap_or_default(),
                enabled: true,
            };
            out.push(RealFence { spec, geo });
        }
    }
    out
}

/// A small deterministic generator (SplitMix64) so tests and benchmarks need no RNG crate.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// The real AIS captures the golden tests use (in the codecs crate's test data; provenance there).
pub const AIS_FILES: &[(&str, &[u8])] = &[
    (
        "amsa_risky_exactearth_sat_ais_epochms_1.nmea",
        include_bytes!("../../../codecs/tests/data/amsa_risky_exactearth_sat_ais_epochms_1.nmea"),
    ),
    (
        "amsa_risky_tagblock_c_timestamped.nmea",
        include_bytes!("../../../codecs/tests/data/amsa_risky_tagblock_c_timestamped.nmea"),
    ),
];

/// Every position report of the AIS captures, decoded by geostream's own AIS codec.
pub fn ais_observations() -> Vec<geostream_model::Observation> {
    use geostream_codecs::ais::{AisCodec, DecoderOptions};
    use geostream_codecs::{Context, Outcome, decode_all};
    // Long after both captures, so only lines without a time of their own take it.
    let received =
        geostream_model::time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a valid receive time");
    let mut out = Vec::new();
    for (name, bytes) in AIS_FILES {
        let ctx = Context::new(geostream_model::FeedId::new("ais").expect("feed id"), received);
        // AMSA writes `*00` as every tag block checksum; the codec's option for such feeds.
        let opts = DecoderOptions { verify_tag_block_checksum: false, ..DecoderOptions::default() };
        let outcomes = decode_all(&mut AisCodec::new(opts), bytes, &ctx);
        let before = out.len();
        out.extend(outcomes.into_iter().filter_map(|o| match o {
            Outcome::Observation(o) => Some(*o),
            _ => None,
        }));
        assert!(out.len() > before, "{name} decodes to observations");
    }
    out
}

/// `[lon, lat]` of a Point observation.
pub fn lon_lat(o: &geostream_model::Observation) -> Option<[f64; 2]> {
    match &o.geometry.value {
        geostream_model::geojson::GeometryValue::Point { coordinates } => {
            let c = coordinates.as_slice();
            Some([*c.first()?, *c.get(1)?])
        }
        _ => None,
    }
}

/// A generated fence and, for brute-force checks, its area in geo terms.
pub struct GeneratedFence {
    pub spec: FenceSpec,
    pub area: Area,
}

pub enum Area {
    Circle { center: [f64; 2], radius_m: f64 },
    Polygon(Polygon<f64>),
}

impl Area {
    /// Brute-force containment with the index's semantics: geo's `Contains` for polygons, geo's
    /// haversine distance strictly below the radius for circles.
    pub fn contains(&self, p: [f64; 2]) -> bool {
        use geo::{Contains, Distance, Haversine, Point};
        match self {
            Area::Circle { center, radius_m } => {
                Haversine.distance(Point::new(center[0], center[1]), Point::new(p[0], p[1])) < *radius_m
            }
            Area::Polygon(poly) => poly.contains(&Point::new(p[0], p[1])),
        }
    }

    /// A box around the area (generous for circles), for candidate filtering.
    pub fn bbox(&self) -> [f64; 4] {
        match self {
            Area::Circle { center, radius_m } => {
                let dlat = radius_m / 111_000.0 * 1.01;
                let dlon = dlat / center[1].to_radians().cos();
                [center[0] - dlon, center[1] - dlat, center[0] + dlon, center[1] + dlat]
            }
            Area::Polygon(poly) => {
                use geo::BoundingRect;
                poly.bounding_rect().map_or([0.0; 4], |r| [r.min().x, r.min().y, r.max().x, r.max().y])
            }
        }
    }
}

/// `n` fences around real places: centred on positions of the real fence sets (a fence of the
/// 307 picked at random, then one of its positions: coasts, ports, borders, boroughs), half
/// circles of 100 m to 5 km, half star-shaped polygons of 5 to 12 vertices and 150 m to 4 km
/// (berths, depots, stores, sites).
/// Deterministic for a seed. Positions within a degree of the antimeridian or beyond 80 degrees
/// of latitude are not used, so every fence is a plain lon/lat shape.
pub fn generated_fences(n: usize, seed: u64) -> Vec<GeneratedFence> {
    let places: Vec<Vec<[f64; 2]>> = real_fences(true)
        .iter()
        .map(|f| {
            use geo::CoordsIter;
            f.geo
                .coords_iter()
                .map(|c| [c.x, c.y])
                .filter(|p| p[0].abs() < 179.0 && p[1].abs() < 80.0)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect();
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let fence = &places[(rng.next_u64() % places.len() as u64) as usize];
            let c = fence[(rng.next_u64() % fence.len() as u64) as usize];
            let id = FenceId::new(format!("gen-{i:05}")).expect("a valid id");
            let (geometry, area) = if i % 2 == 0 {
                let radius_m = 100.0 * 50f64.powf(rng.unit());
                (FenceShape::Circle { center: c, radius_m }, Area::Circle { center: c, radius_m })
            } else {
                let k = 5 + (rng.next_u64() % 8) as usize;
                let r = 150.0 * 26f64.powf(rng.unit());
                let mut ring: Vec<[f64; 2]> = (0..k)
                    .map(|j| {
                        let a = (j as f64 + rng.range(-0.3, 0.3)) * std::f64::consts::TAU / k as f64;
                        let d = r * rng.range(0.5, 1.0);
                        let dlat = d * a.sin() / 111_320.0;
                        let dlon = d * a.cos() / (111_320.0 * c[1].to_radians().cos());
                        [c[0] + dlon, c[1] + dlat]
                    })
                    .collect();
                ring.push(ring[0]);
                let poly = Polygon::new(LineString(ring.iter().map(|p| Coord { x: p[0], y: p[1] }).collect()), vec![]);
                (FenceShape::Geometry(Geometry::new_polygon([ring])), Area::Polygon(poly))
            };
            let spec = FenceSpec {
                id,
                version: 1,
                name: format!("generated {i}"),
                geometry,
                properties: serde_json::Map::new(),
                enabled: true,
            };
            GeneratedFence { spec, area }
        })
        .collect()
}
